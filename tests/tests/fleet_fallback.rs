//! `store_unavailable = "local"` (security review, pass 3): the fallback to this host's own
//! state is taken only when the fleet is down as its daemon says (or is not running), never
//! because this login got no answer in time; on this host's state no question is answered
//! that decides whether a code is asked; and nothing that is good once in the whole fleet (a
//! backup code, an HOTP code) is spent there. Real etcd, two real daemons, the real libpam.

use pam_totp_tests::fleet::{enrolled_user as user, with_backup_codes as backup_codes, Etcd, Fleet, Pki, Stated};
use pam_totp_tests::*;
use std::process::Command;
use std::time::Duration;

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
    // An outage once etcd has answered nothing for three deadlines (800 ms here).
    std::thread::sleep(std::time::Duration::from_millis(3000));
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
    // An outage once etcd has answered nothing for three deadlines (800 ms here).
    std::thread::sleep(std::time::Duration::from_millis(3000));
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

fn sh(dir: &std::path::Path, cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Security review, pass 3, the attacker's pass over the fallback (F2): a host whose client
/// certificate etcd refuses (expired here; revoked or untrusted alike) fails the TLS
/// handshake. That is this host's trouble: refused, never an outage to fall back on.
#[test]
fn an_expired_client_certificate_is_refused_never_taken_for_an_outage() {
    let certs = Fixture::new();
    let pki = Pki::new(&certs.root.join("pki"));
    pki.issue("root", "root", false);
    pki.issue("host-a", "pam-totp-host-a", false);
    // Host B's certificate, issued by the same CA, valid only in 2020 (expired).
    let d = pki.dir.clone();
    std::fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca=x\n[x]\ndir=.\ndatabase=index.txt\nnew_certs_dir=.\ncertificate=ca.pem\nprivate_key=ca-key.pem\nserial=serial.txt\ndefault_md=sha256\npolicy=p\ncopy_extensions=none\nunique_subject=no\n[p]\ncommonName=supplied\n[ext]\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    sh(&d, "touch index.txt && echo 1000 > serial.txt");
    sh(
        &d,
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=pam-totp-host-b -keyout host-b-key.pem -out host-b.csr 2>/dev/null && chmod 600 host-b-key.pem",
    );
    sh(
        &d,
        "openssl ca -batch -config ca.cnf -extensions ext -startdate 20200101000000Z -enddate 20200102000000Z -in host-b.csr -out host-b.pem 2>&1",
    );
    let etcd = Etcd::single_tls(&pki);
    let ns = format!("t{}", random_hex(4));
    let table = |host: &str| {
        format!(
            "endpoints = [\"{}\"]\nnamespace = \"{ns}\"\ntimeout_ms = 800\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            etcd.endpoints()[0],
            pki.path("ca.pem").display(),
            pki.path(&format!("{host}.pem")).display(),
            pki.path(&format!("{host}-key.pem")).display()
        )
    };
    let (a, b) = (Fixture::new(), Fixture::new());
    a.simple("svc", "");
    b.simple("svc", "");
    let sa = Stated::start(&a, "store_unavailable = \"local\"", &table("host-a"));
    let sb = Stated::start(&b, "store_unavailable = \"local\"", &table("host-b"));
    let (u, key) = user();
    let code = code_now(&key);
    let r = a.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?} {}", sa.log_text());
    let r = b.auth("svc", &u.name, &[&code]);
    assert!(
        !r.logged(&["degraded"]) && r.rc == PAM_AUTH_ERR,
        "an expired certificate taken for an outage: {:?} {}",
        r.logs,
        sb.log_text()
    );
    // Not even once etcd has "answered nothing" for long: it is not down.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let r = b.auth("svc", &u.name, &[&code]);
    assert!(!r.logged(&["degraded"]) && r.rc == PAM_AUTH_ERR, "{:?}", r.logs);
}

/// The same pass (F3): a daemon killed (as the OOM killer does) leaves its socket with nobody
/// listening; before the fix that was an outage, and a code spent on B worked on A.
#[test]
fn a_killed_daemon_is_refused_never_taken_for_an_outage() {
    let etcd = Etcd::single();
    let mut fl = pam_totp_tests::fleet::fleet(&etcd, "", "store_unavailable = \"local\"", 800);
    let (u, key) = user();
    let code = code_now(&key);
    assert_eq!(fl.b.auth("svc", &u.name, &[&code]).rc, PAM_SUCCESS);
    fl.sa.signal("KILL");
    std::thread::sleep(Duration::from_millis(200));
    assert!(fl.sa.socket.exists(), "the socket file stays");
    let r = fl.a.auth("svc", &u.name, &[&code]);
    fl.sa.stop();
    assert!(!r.logged(&["degraded"]), "{:?}", r.logs);
    assert_eq!(r.rc, PAM_AUTH_ERR, "a code spent on B, with A's daemon killed");
}
