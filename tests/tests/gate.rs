//! The `enroll_on_login` gate (security review finding 1) through the real libpam: the
//! module reads the service's stack from /etc/pam.d, so each test binds its own PAM
//! directory over /etc/pam.d in a private mount namespace (the host's is never touched) and
//! runs pam-harness there, with real pam_unix and a real user's password.
//!
//! Enrollment may be offered only when a wrong password provably stops the stack before
//! pam_totp; otherwise anyone who knows a user name could enroll their own phone.

use std::path::{Path, PathBuf};

use pam_totp_tests::*;

const PASSWORD: &str = "correct horse 42";
const WRONG: &str = "wrong horse 42";

/// A PAM directory holding `files` (`{totp}` stands for the pam_totp line's module and
/// arguments, with enroll_on_login).
fn pam_dir(f: &Fixture, files: &[(&str, &str)]) -> PathBuf {
    let d = f.root.join("gate-pam.d");
    std::fs::create_dir_all(&d).unwrap();
    let totp = f.module("enroll_on_login");
    for (name, text) in files {
        std::fs::write(d.join(name), text.replace("{totp}", &totp)).unwrap();
    }
    d
}

/// One pam_authenticate of `service` with `dir` as /etc/pam.d.
fn login(dir: &Path, service: &str, user: &str, answers: &[&str]) -> (PamRun, String) {
    let harness = harness_path();
    let mut args = vec!["/etc/pam.d", service, user];
    args.extend_from_slice(answers);
    let out = in_namespace(&[(dir, "/etc/pam.d")], harness.to_str().unwrap(), &args)
        .output()
        .unwrap();
    // The enrollment text spans several lines: the secret on screen is registered first,
    // so that no log line may carry it.
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for part in stdout.split("secret=").skip(1) {
        let key: String = part.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if key.len() >= 16 {
            register_secret(&key);
        }
    }
    let r = PamRun::parse(&out);
    assert_no_secrets_in(&r.logs, answers);
    (r, stdout)
}

fn user() -> TestUser {
    let u = TestUser::create();
    u.set_password(PASSWORD);
    u
}

/// The answers of someone who goes through enrollment with wrong codes (three tries).
fn answers(password: &str) -> Vec<&str> {
    vec![password, "000000", "000000", "000000", ""]
}

/// Whether the new secret was shown (QR code, key) and its code asked for.
fn offered(r: &PamRun, stdout: &str) -> bool {
    stdout.contains("Scan this QR code")
        || stdout.contains("otpauth://")
        || r.prompts
            .iter()
            .any(|p| p.starts_with("Verification code from the app"))
}

fn assert_refused_without_enrollment(r: &PamRun, stdout: &str, u: &TestUser) {
    assert_ne!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(!offered(r, stdout), "no QR code, no secret shown: {stdout}");
    assert!(!u.secret_path().exists(), "no secret file written");
}

#[test]
fn wrong_password_through_a_substack_with_requisite_pam_unix_never_reaches_enrollment() {
    let f = Fixture::new();
    let dir = pam_dir(
        &f,
        &[
            ("gate-svc", "auth substack gate-pw\nauth required {totp}\n"),
            ("gate-pw", "auth requisite pam_unix.so\n"),
        ],
    );
    let u = user();
    let (r, out) = login(&dir, "gate-svc", &u.name, &answers(WRONG));
    // A requisite failure in a substack ends only the substack: pam_totp still runs and
    // must refuse to enroll, saying which line lets the wrong password through.
    assert_refused_without_enrollment(&r, &out, &u);
    assert!(
        r.logged(&["enroll_on_login not offered", "gate-pw:1", "substack"]),
        "{:?}",
        r.logs
    );
    // Not even the right password makes this layout a gate.
    let (r, out) = login(&dir, "gate-svc", &u.name, &answers(PASSWORD));
    assert_refused_without_enrollment(&r, &out, &u);
}

#[test]
fn wrong_password_under_a_control_that_ignores_its_failure_never_reaches_enrollment() {
    // The same reason as a requisite pam_sss with ignore_unknown_user (not installed here):
    // the password module's failure is ignored and nothing after it stops the stack.
    let f = Fixture::new();
    let dir = pam_dir(
        &f,
        &[(
            "gate-svc",
            "auth [success=ok default=ignore] pam_unix.so\nauth required {totp}\n",
        )],
    );
    let u = user();
    let (r, out) = login(&dir, "gate-svc", &u.name, &answers(WRONG));
    assert_refused_without_enrollment(&r, &out, &u);
    assert!(r.logged(&["enroll_on_login not offered", "gate-svc:1"]), "{:?}", r.logs);
}

#[test]
fn right_password_behind_success_ok_default_die_is_offered_enrollment() {
    let f = Fixture::new();
    let dir = pam_dir(
        &f,
        &[(
            "gate-svc",
            "auth [success=ok default=die] pam_unix.so\nauth required {totp}\n",
        )],
    );
    let u = user();
    let (r, out) = login(&dir, "gate-svc", &u.name, &answers(PASSWORD));
    assert!(offered(&r, &out), "{r:?}\n{out}");
    assert!(r.logged(&["enrollment at login offered"]), "{:?}", r.logs);
    assert!(!r.logged(&["enroll_on_login not offered"]), "{:?}", r.logs);
    // Wrong codes: nothing saved.
    assert_ne!(r.rc, PAM_SUCCESS);
    assert!(!u.secret_path().exists());
    // A wrong password dies at pam_unix: pam_totp never runs.
    let (r, out) = login(&dir, "gate-svc", &u.name, &answers(WRONG));
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_refused_without_enrollment(&r, &out, &u);
    assert_eq!(r.prompts.len(), 1, "only the password was asked: {:?}", r.prompts);
}

#[test]
fn right_password_from_an_included_requisite_pam_unix_is_offered_enrollment() {
    let f = Fixture::new();
    let dir = pam_dir(
        &f,
        &[
            ("gate-svc", "auth include gate-pw\nauth required {totp}\n"),
            ("gate-pw", "auth requisite pam_unix.so\n"),
        ],
    );
    let u = user();
    let (r, out) = login(&dir, "gate-svc", &u.name, &answers(PASSWORD));
    assert!(offered(&r, &out), "{r:?}\n{out}");
    assert!(r.logged(&["enrollment at login offered"]), "{:?}", r.logs);
    // include keeps requisite's die: a wrong password never reaches pam_totp.
    let (r, out) = login(&dir, "gate-svc", &u.name, &answers(WRONG));
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_refused_without_enrollment(&r, &out, &u);
    assert_eq!(r.prompts.len(), 1, "{:?}", r.prompts);
}

#[test]
fn an_include_that_cannot_be_read_is_never_a_gate() {
    let f = Fixture::new();
    let dir = pam_dir(
        &f,
        &[(
            "gate-svc",
            "auth include gate-missing\nauth requisite pam_unix.so\nauth required {totp}\n",
        )],
    );
    let u = user();
    let (r, out) = login(&dir, "gate-svc", &u.name, &answers(PASSWORD));
    assert_refused_without_enrollment(&r, &out, &u);
    assert!(
        r.logged(&["enroll_on_login not offered", "gate-missing"]),
        "{:?}",
        r.logs
    );
}

/// `enroll_on_login` with `key_store = "vault"`: the key made at the login goes into the vault
/// (root's), never into the home, and the module reads it from there at the next login.
#[test]
fn enrollment_at_login_writes_the_vault_under_key_store_vault() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let f = Fixture::new();
    std::fs::write(f.root.join("pam_totp.conf"), "key_store = \"vault\"\n").unwrap();
    std::fs::create_dir(f.state_dir()).unwrap();
    std::fs::set_permissions(f.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = pam_dir(
        &f,
        &[("gate-svc", "auth requisite pam_unix.so\nauth required {totp}\n")],
    );
    let u = user();
    let (r, out) = login(&dir, "gate-svc", &u.name, &[PASSWORD, "@totp", ""]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}\n{out}");
    assert!(r.logged(&["enrolled at login"]), "{:?}", r.logs);
    let vault = f.state_dir().join("vault").join(format!("{}.toml", u.name));
    let md = std::fs::metadata(&vault).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o600), "root's, private");
    assert!(!u.secret_path().exists(), "nothing in the home");
    // The key shown is the one kept: the next step's code from oathtool logs in from the vault.
    let key: String = out
        .split("secret=")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let next = oathtool(&key, now() + 30, "sha1", 6);
    let (r, out) = login(&dir, "gate-svc", &u.name, &[PASSWORD, &next]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}\n{out}");
    assert!(!offered(&r, &out), "not offered again: {out}");
    assert!(!r.logged(&["keys read from the secret file"]), "{:?}", r.logs);
}
