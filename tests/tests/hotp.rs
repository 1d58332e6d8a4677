//! Several authenticators per user and counter-based (HOTP) ones, through the real libpam
//! with the built module; every code comes from oathtool (`--totp`, `--hotp -c N`).

use pam_totp_tests::*;
use std::time::Duration;

/// A version-2 secret file with the given `[[device]]` tables.
fn write_devices(u: &TestUser, devices: &[String]) {
    u.write_secret(&format!("version = 2\n{}", devices.join("\n")));
}

fn totp_device(name: &str, key: &str) -> String {
    format!("[[device]]\nname = \"{name}\"\ntype = \"totp\"\nsecret = \"{key}\"\n")
}

fn hotp_device(name: &str, key: &str, counter: u64, digits: u32) -> String {
    format!(
        "[[device]]\nname = \"{name}\"\ntype = \"hotp\"\nsecret = \"{key}\"\ncounter = {counter}\ndigits = {digits}\n"
    )
}

#[test]
fn hotp_codes_are_accepted_within_the_window_and_never_again() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let key = random_key_b32();
    write_devices(&u, &[hotp_device("token", &key, 0, 6)]);
    let r = f.auth("svc", &u.name, &[&hotp(&key, 10, 6)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "counter 10 is beyond the 10-code window from 0");
    let r = f.auth("svc", &u.name, &[&hotp(&key, 9, 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "the last counter of the window: {r:?}");
    assert!(
        r.logged(&["accepted verification code from authenticator \"token\" (counter-based, counter 9)"]),
        "{:?}",
        r.logs
    );
    for c in [9, 3] {
        let r = f.auth("svc", &u.name, &[&hotp(&key, c, 6)]);
        assert_eq!(r.rc, PAM_AUTH_ERR, "counter {c} is spent");
        assert_eq!(
            r.errors,
            vec!["That code has already been used. Wait for the next one."]
        );
    }
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 19, 6)]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 20, 6)]).rc, PAM_SUCCESS);
}

#[test]
fn hotp_window_option_sets_how_far_ahead_codes_are_accepted() {
    let f = Fixture::new();
    f.simple("svc", "hotp_window=3");
    let u = TestUser::create();
    let key = random_key_b32();
    write_devices(&u, &[hotp_device("token", &key, 100, 8)]);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 99, 8)]).rc, PAM_AUTH_ERR);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 103, 8)]).rc, PAM_AUTH_ERR);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 102, 8)]).rc, PAM_SUCCESS);
}

#[test]
fn rewinding_the_counter_in_the_users_file_does_not_bring_back_spent_codes() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let key = random_key_b32();
    write_devices(&u, &[hotp_device("token", &key, 0, 6)]);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 4, 6)]).rc, PAM_SUCCESS);
    // The user can edit their own file; the counter that counts is in the root-only state.
    write_devices(&u, &[hotp_device("token", &key, 0, 6)]);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 4, 6)]).rc, PAM_AUTH_ERR);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 2, 6)]).rc, PAM_AUTH_ERR);
    // Removing the device and adding it back (same key) keeps its guard too.
    write_devices(&u, &[totp_device("phone", &random_key_b32())]);
    write_devices(&u, &[hotp_device("renamed token", &key, 0, 6)]);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 4, 6)]).rc, PAM_AUTH_ERR);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 5, 6)]).rc, PAM_SUCCESS);
}

#[test]
fn two_authenticators_totp_and_hotp_each_with_its_own_replay_guard() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let (phone, spare, token) = (random_key_b32(), random_key_b32(), random_key_b32());
    write_devices(
        &u,
        &[
            totp_device("phone", &phone),
            totp_device("spare phone", &spare),
            hotp_device("desk token", &token, 0, 6),
        ],
    );
    let t = now();
    let spare_code = oathtool(&spare, t, "sha1", 6);
    let r = f.auth("svc", &u.name, &[&spare_code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(r.logged(&["authenticator \"spare phone\""]), "{:?}", r.logs);
    let r = f.auth("svc", &u.name, &[&oathtool(&phone, t, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "the other phone's code for the same step is its own");
    assert!(r.logged(&["authenticator \"phone\""]), "{:?}", r.logs);
    assert_eq!(f.auth("svc", &u.name, &[&spare_code]).rc, PAM_AUTH_ERR, "replay");
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&token, 0, 6)]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&token, 0, 6)]).rc, PAM_AUTH_ERR);
}

#[test]
fn a_version_1_secret_file_still_works_and_its_state_is_upgraded() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let key = random_key_b32();
    u.enroll(&key, "");
    // A state file as version 1 wrote it: the current step already spent.
    std::fs::create_dir_all(f.state_dir()).unwrap();
    std::fs::set_permissions(f.state_dir(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let step = now() / 30;
    let st = f.state_dir().join(format!("{}.state", u.name));
    std::fs::write(&st, format!("version = 1\nlast_step = {step}\nlast_success = 1\n")).unwrap();
    std::fs::set_permissions(&st, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let code = oathtool(&key, step * 30, "sha1", 6);
    assert_eq!(
        f.auth("svc", &u.name, &[&code]).rc,
        PAM_AUTH_ERR,
        "spent under version 1"
    );
    let next = oathtool(&key, step * 30 + 30, "sha1", 6);
    assert_eq!(f.auth("svc", &u.name, &[&next]).rc, PAM_SUCCESS);
    let bytes = std::fs::read(&st).unwrap();
    assert!(bytes.starts_with(b"PTSTATE3"), "rewritten in format 3");
}

#[test]
fn sixteen_logins_racing_one_hotp_code_let_exactly_one_in() {
    let f = Fixture::new();
    // The 15 losers are replays, and replays count as failures: room for them.
    f.simple("svc", "max_failures=100");
    let u = TestUser::create();
    let key = random_key_b32();
    write_devices(&u, &[hotp_device("token", &key, 0, 6)]);
    let code = hotp(&key, 3, 6);
    let runs = race_logins(&[&f], &u.name, &vec![code; 16], Duration::from_millis(400));
    let results: Vec<i32> = runs.iter().map(|r| r.rc).collect();
    assert_one_let_in_the_rest_refused(&results);
    // The counter moved past 3: 4 is next, 3 and below are gone.
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 2, 6)]).rc, PAM_AUTH_ERR);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 4, 6)]).rc, PAM_SUCCESS);
}
