//! Regressions from the red-team pass over the fleet store (issue 15): a login that waits
//! at its prompt, `reset` on one host of several, a host joining the fleet with local
//! state, and answers that must refuse rather than fall back. One real etcd member and two
//! real daemons, as in fleet.rs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use pam_totp_tests::fleet::{enrolled_user as user, with_backup_codes as backup_codes, Etcd, Fleet};
use pam_totp_tests::*;

fn fleet(etcd: &Etcd, extra_conf: &str) -> Fleet {
    pam_totp_tests::fleet::fleet(etcd, "", extra_conf, 1000)
}

/// A login that answers its prompt only after `wait` (the user opening their app).
fn slow_login(f: &Fixture, user: &str, code: &str, wait: Duration) -> PamRun {
    let gate = f.root.join(format!("gate-{}", random_hex(3)));
    let child = f
        .harness("svc", user, &[code], &["--answer-after", gate.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let prompted = PathBuf::from(format!("{}.prompted", gate.display()));
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !prompted.exists() {
        assert!(std::time::Instant::now() < until, "the login never reached its prompt");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(wait);
    std::fs::write(&gate, "").unwrap();
    PamRun::parse(&child.wait_with_output().unwrap())
}

/// The daemon drops a connection idle for 2 s; a user may take far longer to type. The
/// login must still be decided by the fleet: accepted with the default `deny`, and with
/// `store_unavailable = "local"` never moved to this host's own state (where a code spent
/// on another host would work again).
#[test]
fn a_login_that_waits_at_the_prompt_is_decided_by_the_fleet() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "");
    let (u, key) = user();
    let r = slow_login(&fl.a, &u.name, &code_now(&key), Duration::from_secs(3));
    assert_eq!(r.rc, PAM_SUCCESS, "a slow typist with a healthy fleet: {:?}", r.logs);

    let fl = fleet(&etcd, "store_unavailable = \"local\"");
    let (u, key) = user();
    let code = code_now(&key);
    assert_eq!(fl.b.auth("svc", &u.name, &[&code]).rc, PAM_SUCCESS);
    let r = slow_login(&fl.a, &u.name, &code, Duration::from_secs(3));
    assert_eq!(r.rc, PAM_AUTH_ERR, "spent on B: {:?}", r.logs);
    assert!(!r.logged(&["degraded"]), "waiting is not an outage: {:?}", r.logs);
    let r = slow_login(&fl.a, &u.name, &wrong_code(&key), Duration::from_secs(3));
    assert_eq!(r.rc, PAM_AUTH_ERR);
    let k = format!("pam-totp/v1/{}/users/{}", fl.ns, u.name);
    let doc = String::from_utf8_lossy(&etcd.etcdctl(&["get", &k]).stdout).into_owned();
    // The replay and the wrong code, both answered after a wait, count in the fleet.
    assert!(doc.contains("failures = 2"), "{doc}");
}

/// `reset` on host B while host A still has the user's secret file (configuration
/// management puts it back, or A has its own copy): the codes and backup codes already
/// used stay used on A.
#[test]
fn reset_on_one_host_keeps_spent_codes_spent_on_the_others() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "");
    let (u, key) = user();
    let codes = backup_codes(&u, &key, 2);
    let code = code_now(&key);
    assert_eq!(fl.a.auth("svc", &u.name, &[&codes[0]]).rc, PAM_SUCCESS);
    assert_eq!(fl.a.auth("svc", &u.name, &[&code]).rc, PAM_SUCCESS);
    let copy = fl.a.root.join("secret-copy");
    std::fs::copy(u.secret_path(), &copy).unwrap();
    let (rc, _, err) = output(fl.b.cli(&["reset", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    assert!(!u.secret_path().exists(), "reset removed the secret on this host");
    // Host A's copy of the secret, as configuration management would restore it.
    std::fs::copy(&copy, u.secret_path()).unwrap();
    run("chown", &[&u.name, u.secret_path().to_str().unwrap()]);
    let r = fl.a.auth("svc", &u.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "a used backup code after reset: {:?}", r.logs);
    let r = fl.a.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "a used code after reset: {:?}", r.logs);
    assert_eq!(fl.a.auth("svc", &u.name, &[&codes[1]]).rc, PAM_SUCCESS);
}

/// A host that used the local store joins the fleet: the backup codes used on it, its
/// replay guard and its record that the user enrolled come along into the fleet's first
/// document for that user.
#[test]
fn a_host_joining_the_fleet_brings_its_spent_codes_and_enrollment_record() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "");
    fl.a.simple("loc", "store=local");
    fl.a.simple("fleet_nullok", "nullok");
    let (u, key) = user();
    let codes = backup_codes(&u, &key, 2);
    assert_eq!(fl.a.auth("loc", &u.name, &[&codes[0]]).rc, PAM_SUCCESS);
    assert_eq!(fl.a.auth("loc", &u.name, &[&codes[0]]).rc, PAM_AUTH_ERR);
    let r = fl.a.auth("svc", &u.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "used before the host joined: {:?}", r.logs);
    let r = fl.b.auth("svc", &u.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "and so on every host: {:?}", r.logs);
    // The enrollment record: the secret file gone, nullok does not let the user in.
    std::fs::remove_file(u.secret_path()).unwrap();
    let r = fl.a.auth("fleet_nullok", &u.name, &[]);
    assert!(r.logged(&["is missing but this user enrolled on"]), "{:?}", r.logs);
}

/// A document over the size limit (anyone who can write the prefix can put one there) is
/// refused, not taken as an outage: `store_unavailable = "local"` does not fall back on it.
#[test]
fn an_oversized_document_refuses_and_never_falls_back() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "store_unavailable = \"local\"");
    let (u, key) = user();
    let k = format!("pam-totp/v1/{}/users/{}", fl.ns, u.name);
    let big = format!("version = 2\n# {}\n", "0".repeat(70_000));
    let out = etcd.etcdctl(&["put", &k, &big]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = fl.a.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(!r.logged(&["degraded"]), "{:?}", r.logs);
}

/// Issue 24 (High 2): whoever can write the prefix copies a genuine remembered host into the
/// document for other addresses — one until the year 2100, one with the genuine entry's own
/// expiry. Neither address gets in without a code, on either host; the genuine address is
/// still remembered.
#[test]
fn a_remembered_host_planted_in_etcd_for_another_address_is_still_asked_for_a_code() {
    let etcd = Etcd::single();
    let fl = pam_totp_tests::fleet::fleet(&etcd, "remember=3600", "", 1000);
    let (u, key) = user();
    let genuine = ["--rhost", "192.0.2.10"];
    let r = fl.a.auth_with("svc", &u.name, &[&code_now(&key)], &genuine);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);

    let k = format!("pam-totp/v1/{}/users/{}", fl.ns, u.name);
    let out = etcd.etcdctl(&["get", &k, "--print-value-only"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let value = out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout);
    let text = std::str::from_utf8(pam_totp_core::fleet::document_state(value)).unwrap();
    let mut st = pam_totp_core::state::State::parse(text).unwrap();
    assert_eq!(st.remembered.len(), 1, "{text}");
    let entry = st.remembered[0].clone();
    let mut far = entry.clone();
    far.rhost = "203.0.113.66".into();
    far.until = 4_102_444_800; // 2100-01-01
    let mut same = entry.clone();
    same.rhost = "203.0.113.67".into();
    st.remembered.extend([far, same]);
    let out = etcd.etcdctl(&["put", &k, &st.to_toml().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for (name, host) in [("A", &fl.a), ("B", &fl.b)] {
        for planted in ["203.0.113.66", "203.0.113.67"] {
            let r = host.auth_with("svc", &u.name, &[], &["--rhost", planted]);
            assert!(
                !r.prompts.is_empty() && r.rc != PAM_SUCCESS,
                "host {name}, planted {planted}: the code must be asked for: {r:?}"
            );
            assert!(!r.logged(&["remembered host"]), "{:?}", r.logs);
        }
        let r = host.auth_with("svc", &u.name, &[], &genuine);
        assert_eq!(
            r.rc, PAM_SUCCESS,
            "host {name}: the genuine address is still remembered: {r:?}"
        );
        assert!(r.prompts.is_empty(), "{r:?}");
    }
}
