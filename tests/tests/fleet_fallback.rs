//! `store_unavailable = "local"` (security review, pass 3): the fallback to this host's own
//! state is taken only when the fleet is down as its daemon says (or is not running), never
//! because this login got no answer in time; on this host's state no question is answered
//! that decides whether a code is asked; and nothing that is good once in the whole fleet (a
//! backup code, an HOTP code) is spent there. Real etcd, two real daemons, the real libpam.

use pam_totp_tests::fleet::{enrolled_user as user, with_backup_codes as backup_codes, Etcd, Fleet};
use pam_totp_tests::*;

fn fleet(etcd: &Etcd) -> Fleet {
    let fl = pam_totp_tests::fleet::fleet(etcd, "", "store_unavailable = \"local\"", 800);
    fl.a.simple("svc_nullok", "nullok");
    fl.b.simple("svc_nullok", "nullok");
    fl.b.simple("svc_later", "enforce_after=2999-01-01");
    fl
}

/// A user enrolled through the fleet, on a host that has no secret file for them, while etcd
/// is down: this host's state has never heard of the enrollment. Before the fix the fallback
/// answered "not enrolled" from it and nullok (or a future enforce_after) let the password
/// alone in.
#[test]
fn the_fallback_never_answers_whether_a_user_enrolled() {
    let mut etcd = Etcd::single();
    let fl = fleet(&etcd);
    let (u, key) = user();
    assert_eq!(fl.a.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
    // Host B has no secret file for the user (one enrollment, kept elsewhere).
    std::fs::remove_file(u.secret_path()).unwrap();
    let r = fl.b.auth("svc_nullok", &u.name, &[]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "the fleet knows they enrolled: {:?}", r.logs);
    etcd.kill(0);
    for svc in ["svc_nullok", "svc_later"] {
        let r = fl.b.auth(svc, &u.name, &[]);
        assert_eq!(r.rc, PAM_AUTH_ERR, "{svc}, etcd down: {:?}", r.logs);
        assert!(
            r.logged(&[
                "refused: no secret file, and the state cannot be read",
                "the fleet store is unavailable"
            ]),
            "{:?}",
            r.logs
        );
    }
    // A user nobody enrolled is unknown too while the fleet is down.
    let nobody = TestUser::create();
    let r = fl.b.auth("svc_nullok", &nobody.name, &[]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
}

/// `su` and `sudo` keep their caller's real uid, so the caller can stop them (SIGSTOP)
/// while they wait for the daemon; to the client that looks exactly like a daemon that does
/// not answer. Before the fix that was taken as an outage: the login moved to this host's
/// own state, where a code already spent on another host worked again.
#[test]
fn a_login_that_gets_no_answer_in_time_is_refused_not_decided_on_this_hosts_state() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd);
    let (u, key) = user();
    let code = code_now(&key);
    assert_eq!(fl.b.auth("svc", &u.name, &[&code]).rc, PAM_SUCCESS);
    fl.sa.signal("STOP");
    let r = fl.a.auth("svc", &u.name, &[&code]);
    fl.sa.signal("CONT");
    assert_eq!(r.rc, PAM_AUTH_ERR, "spent on B: {:?}", r.logs);
    assert!(!r.logged(&["degraded"]), "no answer is not an outage: {:?}", r.logs);
    assert!(r.logged(&["gave this process no answer"]), "{:?}", r.logs);
    // The daemon goes on: the fleet decides again.
    let r = fl.a.auth("svc", &u.name, &[&code]);
    assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);
    assert!(!r.logged(&["degraded"]), "{:?}", r.logs);
}

/// While etcd is down a host can spend nothing that is good once in the whole fleet: a
/// backup code is refused (not spent), a time-based code still works (its window ends its
/// life). Before the fix the backup code was spent on this host alone and worked again on
/// every other host once etcd was back.
#[test]
fn a_backup_code_is_never_spent_on_this_hosts_state_alone() {
    let mut etcd = Etcd::single();
    let fl = fleet(&etcd);
    let (u, key) = user();
    let codes = backup_codes(&u, &key, 2);
    assert_eq!(fl.a.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
    etcd.kill(0);
    let r = fl.a.auth("svc", &u.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(
        r.logged(&["refused: a backup code while the fleet store is unavailable"]),
        "{:?}",
        r.logs
    );
    assert!(r.logged(&["degraded:"]), "{:?}", r.logs);
    assert!(
        r.errors.iter().any(|m| m.contains("backup code cannot be checked now")),
        "the user is told why: {:?}",
        r.errors
    );
    let next = oathtool(&key, now() + 30, "sha1", 6);
    let r = fl.a.auth("svc", &u.name, &[&next]);
    assert_eq!(r.rc, PAM_SUCCESS, "a time-based code still works: {:?}", r.logs);
    etcd.restart(0);
    etcd.wait_healthy(std::time::Duration::from_secs(20));
    // Good once, in the whole fleet.
    let mut r = fl.b.auth("svc", &u.name, &[&codes[0]]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while r.rc != PAM_SUCCESS && std::time::Instant::now() < until && r.logged(&["unavailable"]) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        r = fl.b.auth("svc", &u.name, &[&codes[0]]);
    }
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    let r = fl.a.auth("svc", &u.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(r.logged(&["refused: used backup code"]), "{:?}", r.logs);
}
