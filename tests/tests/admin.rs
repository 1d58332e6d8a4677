//! The administrator's side of a rollout (issue 13), through the real libpam and the real
//! user database.

use pam_totp_tests::*;

/// Seed 002: a device is not asked again "unless you ... need to change your password". The
/// module keeps a keyed fingerprint of the shadow hash with each remembered host (never the
/// hash), so a real `chpasswd` ends them.
#[test]
fn a_remembered_host_is_asked_for_a_code_again_after_chpasswd() {
    let f = Fixture::new();
    f.simple("svc", "remember=3600");
    let u = TestUser::create();
    u.set_password("first password 1");
    let key = random_key_b32();
    u.enroll(&key, "");
    let rhost = ["--rhost", "192.0.2.99"];
    assert_eq!(f.auth_with("svc", &u.name, &[&code_now(&key)], &rhost).rc, PAM_SUCCESS);
    let r = f.auth_with("svc", &u.name, &[], &rhost);
    assert_eq!(r.rc, PAM_SUCCESS, "remembered: {r:?}");
    assert!(r.prompts.is_empty());
    u.set_password("second password 2");
    let r = f.auth_with("svc", &u.name, &[], &rhost);
    assert!(
        !r.prompts.is_empty(),
        "asked for a code again after the password changed: {r:?}"
    );
    assert_ne!(r.rc, PAM_SUCCESS);
    let next = oathtool(&key, now() + 30, "sha1", 6);
    assert_eq!(f.auth_with("svc", &u.name, &[&next], &rhost).rc, PAM_SUCCESS);
    assert_eq!(
        f.auth_with("svc", &u.name, &[], &rhost).rc,
        PAM_SUCCESS,
        "remembered again"
    );
    let state = std::fs::read(f.state_dir().join(format!("{}.state", u.name))).unwrap();
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let hash = pam_totp_core::account::shadow_hash(&shadow, &u.name).unwrap();
    let hash = hash.as_bytes();
    assert!(!state.windows(hash.len()).any(|w| w == hash), "never the hash itself");
}
