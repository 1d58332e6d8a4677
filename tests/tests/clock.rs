//! Clocks (issue 23, part 1), through the real libpam: a code from an authenticator whose
//! clock is off is refused with the reason; two consecutive codes at a steady offset
//! resynchronise it, and the offset survives into the next process; replays stay refused;
//! `devices resync` and `unlock` clear it; `doctor` says when this host's clock is not
//! synchronised. The phone's codes come from oathtool, not from our own generator.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use pam_totp_tests::*;

/// A user whose one TOTP authenticator is named "phone", and a fixture whose `svc` is a plain
/// pam_totp line.
fn phone_user() -> (Fixture, TestUser, String) {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let key = random_key_b32();
    register_secret(&key);
    u.write_secret(&format!(
        "version = 2\n[[device]]\nname = \"phone\"\nsecret = \"{key}\"\n"
    ));
    (f, u, key)
}

/// The phone's code when its clock is `offset` seconds ahead of ours (oathtool).
fn phone(key: &str, offset: i64) -> String {
    oathtool(key, (now() as i64 + offset) as u64, "sha1", 6)
}

/// Waits until a new 30-second step has begun (and is at least 1 s old).
fn next_step() {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(30.0 - since % 30.0 + 1.0));
}

fn devices(f: &Fixture, user: &str) -> serde_json::Value {
    let (rc, out, err) = output(f.cli(&["devices", "list", "--user", user, "--json"]));
    assert_eq!(rc, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn clock_offset(f: &Fixture, user: &str) -> i64 {
    devices(f, user)["devices"][0]["clock_offset"].as_i64().unwrap()
}

fn failures(f: &Fixture, user: &str) -> u64 {
    let (rc, out, err) = output(f.cli(&["status", "--user", user, "--json"]));
    assert_eq!(rc, 0, "{err}");
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["failures"]
        .as_u64()
        .unwrap()
}

/// Two consecutive codes of the phone at `offset` (in two steps, 30 s apart): the first
/// refused with the reason, the second accepted.
fn resync(f: &Fixture, u: &TestUser, key: &str, offset: i64, said: &str) {
    clear_of_a_step_boundary();
    let first = phone(key, offset);
    let r = f.auth("svc", &u.name, &[&first]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert!(r.errors.iter().any(|e| e.contains(said)), "{r:?}");
    next_step();
    let second = phone(key, offset);
    let r = f.auth("svc", &u.name, &[&second]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    let sign = if offset > 0 { "+" } else { "" };
    assert!(
        r.logged(&[
            "accepted verification code from authenticator \"phone\"; resynchronised after two consecutive codes out of the window",
            &format!("clock offset 0 s -> {sign}{offset} s"),
        ]),
        "{:?}",
        r.logs
    );
}

#[test]
fn a_code_from_an_authenticator_three_minutes_slow_is_refused_with_the_reason() {
    let (f, u, key) = phone_user();
    clear_of_a_step_boundary();
    let slow = phone(&key, -180);
    let r = f.auth("svc", &u.name, &[&slow]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_eq!(
        r.errors,
        ["Wrong verification code: your authenticator's clock (or this host's) looks about 3 minutes slow. Set it to the right time, or enter its next code to have this host allow for it."],
        "{r:?}"
    );
    assert!(
        r.logged(&[
            "refused: wrong code: the code of authenticator \"phone\" out of the window; its clock, or this host's, is off: clock offset -180 s (1 consecutive failures)",
            &u.name,
            "service=",
        ]),
        "{:?}",
        r.logs
    );
    assert_eq!(failures(&f, &u.name), 1, "refused and counted");
    // Three minutes fast, too; and a code that is no code at all is just wrong.
    let fast = phone(&key, 180);
    let r = f.auth("svc", &u.name, &[&fast]);
    assert!(r.errors[0].contains("looks about 3 minutes fast"), "{r:?}");
    assert!(
        r.logged(&["clock offset +180 s (2 consecutive failures)"]),
        "{:?}",
        r.logs
    );
    let r = f.auth("svc", &u.name, &[&wrong_code(&key)]);
    assert_eq!(r.errors, ["Wrong verification code."], "{r:?}");
    assert!(
        r.logged(&["refused: wrong code (3 consecutive failures)"]),
        "{:?}",
        r.logs
    );
    // skew_range = 0: no search, no reason.
    f.simple("off", "skew_range=0");
    let r = f.auth("off", &u.name, &[&phone(&key, -180)]);
    assert_eq!(r.errors, ["Wrong verification code."], "{r:?}");
}

#[test]
fn two_codes_at_a_steady_ninety_seconds_resynchronise_and_it_survives_a_restart() {
    let (f, u, key) = phone_user();
    assert_eq!(clock_offset(&f, &u.name), 0);
    resync(&f, &u, &key, 90, "looks about 1 minute 30 seconds fast");
    assert_eq!(clock_offset(&f, &u.name), 90, "devices list shows it");
    let (_, table, _) = output(f.cli(&["devices", "list", "--user", &u.name]));
    assert!(table.contains("+90 s"), "{table}");
    // Every login below is a new process with a new PAM handle, reading the state file.
    clear_of_a_step_boundary();
    // +90 + 2 steps: outside the window centred on +90 (one step either side): refused.
    let r = f.auth("svc", &u.name, &[&phone(&key, 150)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert!(r.logged(&["clock offset +150 s"]), "{:?}", r.logs);
    // +90 + 1 step: inside it (without the offset it would be 4 steps out).
    let inside = phone(&key, 120);
    let r = f.auth("svc", &u.name, &[&inside]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(
        r.logged(&[
            "accepted verification code from authenticator \"phone\"; its clock drifted: clock offset +90 s -> +120 s"
        ]),
        "{:?}",
        r.logs
    );
    // A replay stays a replay with an offset.
    let r = f.auth("svc", &u.name, &[&inside]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_eq!(r.errors, ["That code has already been used. Wait for the next one."]);
    assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);
    // The refused +150 code, told to be a code, is never accepted: it is now in the window.
    let r = f.auth("svc", &u.name, &[&phone(&key, 150)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    // devices resync clears the offset: the phone's next code is out of the window again.
    let (rc, out, err) = output(f.cli(&["devices", "resync", "PHONE", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("Cleared the clock offset of \"phone\"") && out.contains("was +120 s"),
        "{out}"
    );
    assert_eq!(clock_offset(&f, &u.name), 0);
    next_step();
    let r = f.auth("svc", &u.name, &[&phone(&key, 120)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert!(r.errors[0].contains("looks about 2 minutes fast"), "{r:?}");
}

#[test]
fn unlock_clears_the_offset() {
    let (f, u, key) = phone_user();
    resync(&f, &u, &key, -120, "looks about 2 minutes slow");
    assert_eq!(clock_offset(&f, &u.name), -120);
    clear_of_a_step_boundary();
    let (rc, out, err) = output(f.cli(&["unlock", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("1 clock offset(s) cleared"), "{out}");
    assert_eq!(clock_offset(&f, &u.name), 0);
    next_step();
    let r = f.auth("svc", &u.name, &[&phone(&key, -120)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert!(r.errors[0].contains("looks about 2 minutes slow"), "{r:?}");
}

/// A stand-in for /usr/bin/timedatectl answering `show --property=...` with `props`.
fn fake_timedatectl(f: &Fixture, name: &str, props: &[(&str, &str)], status: i32) -> std::path::PathBuf {
    let mut script = String::from("#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in\n");
    for (k, v) in props {
        script.push_str(&format!("  --property={k}) echo '{k}={v}' ;;\n"));
    }
    script.push_str(&format!("esac; done\nexit {status}\n"));
    let p = f.root.join(name);
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn doctor_clock(f: &Fixture, fake: &std::path::Path) -> serde_json::Value {
    let pam = f.root.join("doctor-pam.d");
    std::fs::create_dir_all(&pam).unwrap();
    let conf = f.root.join("pam_totp.conf");
    let state = f.state_dir();
    let cli = cli_path();
    let args = [
        "--config",
        conf.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "doctor",
        "--pam-dir",
        pam.to_str().unwrap(),
        "--json",
    ];
    let mut c = in_namespace(&[(fake, "/usr/bin/timedatectl")], cli.to_str().unwrap(), &args);
    c.env_remove("SUDO_UID");
    let (_, out, err) = output(c);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["check"] == "clock")
        .cloned()
        .unwrap_or_else(|| panic!("no clock finding: {j}"))
}

#[test]
fn doctor_warns_when_this_hosts_clock_is_not_synchronised() {
    let f = Fixture::new();
    let off = fake_timedatectl(&f, "off", &[("NTPSynchronized", "no"), ("NTP", "no")], 0);
    let x = doctor_clock(&f, &off);
    assert_eq!(x["severity"], "warning", "{x}");
    let m = x["message"].as_str().unwrap();
    assert!(
        m.contains("not synchronized and NTP is off") && m.contains("timedatectl set-ntp true"),
        "{m}"
    );
    let waiting = fake_timedatectl(&f, "waiting", &[("NTPSynchronized", "no"), ("NTP", "yes")], 0);
    let x = doctor_clock(&f, &waiting);
    assert_eq!(x["severity"], "warning", "{x}");
    assert!(
        x["message"].as_str().unwrap().contains("NTP has not synchronized it"),
        "{x}"
    );
    let good = fake_timedatectl(&f, "good", &[("NTPSynchronized", "yes"), ("NTP", "yes")], 0);
    assert_eq!(doctor_clock(&f, &good)["severity"], "ok");
    let broken = fake_timedatectl(&f, "broken", &[], 1);
    let x = doctor_clock(&f, &broken);
    assert_eq!(x["severity"], "warning", "{x}");
    assert!(x["message"].as_str().unwrap().contains("cannot tell"), "{x}");
}
