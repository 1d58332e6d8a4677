//! The pam-totp command line, run as root and as the user, checked against the real module
//! (through libpam), oathtool, zbarimg (a real QR decoder), tmux (a real terminal) and
//! files written by the real google-authenticator command.

use pam_totp_tests::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

#[test]
fn json_enrollment_is_accepted_by_the_module_and_a_backup_code_works_once() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let j = f.enroll_json(&u.name, &[]);
    let secret = j["secret"].as_str().unwrap();
    assert_eq!(
        j["otpauth_uri"].as_str().unwrap(),
        format!(
            "otpauth://totp/{issuer}:{user}@{issuer}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits=6&period=30",
            issuer = j["issuer"].as_str().unwrap(),
            user = u.name
        )
    );
    assert_eq!(j["file"].as_str().unwrap(), u.secret_path().to_str().unwrap());
    let md = std::fs::metadata(u.secret_path()).unwrap();
    assert_eq!(
        (md.uid(), md.mode() & 0o777),
        (u.uid, 0o600),
        "owned by the user, private"
    );
    assert_eq!(std::fs::metadata(u.secret_dir()).unwrap().mode() & 0o777, 0o700);
    let codes: Vec<&str> = j["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 10);
    assert!(
        !std::fs::read_to_string(u.secret_path()).unwrap().contains(codes[0]),
        "backup codes stored only hashed"
    );

    assert_eq!(f.auth("svc", &u.name, &[&code_now(secret)]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u.name, &[codes[3]]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u.name, &[codes[3]]).rc, PAM_AUTH_ERR);
    let (_, out, _) = output(f.cli(&["status", "--user", &u.name, "--json"]));
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["enrolled"], true);
    assert_eq!(st["backup_codes_left"], 9);
    assert!(st["last_success"].as_u64().unwrap() > 0);
}

#[test]
fn terminal_qr_code_decodes_to_the_exact_uri() {
    for (mode, ascii) in [("utf8", false), ("ascii", true)] {
        let f = Fixture::new();
        let u = TestUser::create();
        let (rc, out, err) = output(f.cli(&[
            "enroll",
            "--user",
            &u.name,
            "--no-confirm",
            "--qr",
            mode,
            "--issuer",
            "ACME Corp",
        ]));
        assert_eq!(rc, 0, "{err}");
        let uri = out.lines().find_map(|l| l.strip_prefix("URI: ")).unwrap();
        assert!(uri.starts_with("otpauth://totp/ACME%20Corp:"), "{uri}");
        assert_eq!(decode_terminal_qr(&out, ascii), uri, "{mode}");
    }
}

#[test]
fn interactive_enrollment_in_a_real_terminal() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    // The user enrolls themselves, in a terminal; `sleep` keeps the pane for reading.
    let cmd = format!(
        "runuser -u {} -- {} --config {} --state-dir {} enroll; echo EXIT=$?; sleep 60",
        u.name,
        cli_path().display(),
        f.root.join("pam_totp.conf").display(),
        f.state_dir().display()
    );
    let t = Tmux::start(&cmd);
    let screen = t.wait_for("Enter the 6-digit code shown in the app to confirm:");
    assert!(screen.contains("Scan this QR code"), "{screen}");
    assert!(
        screen.contains('▀') || screen.contains('▄'),
        "QR drawn with half blocks:\n{screen}"
    );
    let secret = secret_in_uri(&screen);
    let grouped = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("Or add it by hand:  key "))
        .unwrap();
    assert_eq!(grouped.replace(' ', ""), secret, "key shown in groups of four");
    t.type_line(&wrong_code(&secret));
    t.wait_for("That code does not match. Codes change every 30 seconds");
    assert!(!u.secret_path().exists(), "nothing saved before a code matches");
    t.type_line(&code_now(&secret));
    // Seed 000: the user names the authenticator (an empty answer takes the default).
    t.wait_for("Name for this authenticator [phone]:");
    t.type_line("");
    let screen = t.wait_for("EXIT=");
    assert!(screen.contains("Code confirmed."), "{screen}");
    assert!(screen.contains("EXIT=0"), "{screen}");
    let codes: Vec<&str> = backup_codes_shown(&screen);
    assert_eq!(codes.len(), 10, "ten backup codes shown:\n{screen}");
    assert_eq!(std::fs::metadata(u.secret_path()).unwrap().uid(), u.uid);
    // The code typed to confirm was for this step; the module wants a fresh step, so use
    // the next one (within the skew window).
    let next = oathtool(&secret, now() + 30, "sha1", 6);
    assert_eq!(f.auth("svc", &u.name, &[&next]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u.name, &[codes[0]]).rc, PAM_SUCCESS);
}

#[test]
fn reset_unlock_and_regenerate_take_effect_on_the_module() {
    let f = Fixture::new();
    f.simple("svc", "max_failures=2 lockout=600");
    let u = TestUser::create();
    let j = f.enroll_json(&u.name, &[]);
    let secret = j["secret"].as_str().unwrap().to_string();
    let old_code = j["backup_codes"][0].as_str().unwrap().to_string();

    // Lock, unlock.
    for _ in 0..2 {
        f.auth("svc", &u.name, &[&wrong_code(&secret)]);
    }
    assert_eq!(f.auth("svc", &u.name, &[&code_now(&secret)]).rc, PAM_AUTH_ERR, "locked");
    let (_, out, _) = output(f.cli(&["status", "--user", &u.name]));
    assert!(out.contains("Locked out:       until"), "{out}");
    let (rc, out, err) = output(f.cli(&["unlock", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("is unlocked"), "{out}");
    assert_eq!(
        f.auth("svc", &u.name, &[&code_now(&secret)]).rc,
        PAM_SUCCESS,
        "unlocked"
    );

    // Regenerate (by the user themselves): old backup codes stop working, new ones work.
    let (rc, out, err) = output(f.cli_as(&u.name, &["backup-codes", "--regenerate", "--json"]));
    assert_eq!(rc, 0, "{err}");
    let new: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&new);
    let new_code = new["backup_codes"][0].as_str().unwrap();
    assert_eq!(f.auth("svc", &u.name, &[&old_code]).rc, PAM_AUTH_ERR);
    assert_eq!(f.auth("svc", &u.name, &[new_code]).rc, PAM_SUCCESS);

    // Reset: the user is no longer enrolled and must enroll again.
    let (rc, out, err) = output(f.cli(&["reset", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("must run `pam-totp enroll` again"), "{out}");
    assert!(!u.secret_path().exists());
    let r = f.auth("svc", &u.name, &[&oathtool(&secret, now() + 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["refused: not enrolled"]), "{:?}", r.logs);
}

#[test]
fn import_from_a_real_google_authenticator_file() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    // The real command, run as the user, writing their file as it does in production.
    let ga = google_authenticator(&u, GA_TIME_BASED);
    let (ga_secret, scratch) = (ga.secret, ga.scratch);
    assert_eq!(scratch.len(), 5);

    let (rc, out, err) = output(f.cli_as(&u.name, &["import", "google-authenticator"]));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("5 scratch codes became backup codes"), "{out}");
    assert_eq!(
        f.auth("svc", &u.name, &[&code_now(&ga_secret)]).rc,
        PAM_SUCCESS,
        "the phone keeps working"
    );
    assert_eq!(f.auth("svc", &u.name, &[&scratch[2]]).rc, PAM_SUCCESS);
    assert_eq!(
        f.auth("svc", &u.name, &[&scratch[2]]).rc,
        PAM_AUTH_ERR,
        "scratch code once"
    );

    // An old 80-bit secret, as early google-authenticator versions wrote.
    let u2 = TestUser::create();
    let old = u2.home.join("old_ga");
    std::fs::write(&old, "GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n12345678\n").unwrap();
    std::os::unix::fs::chown(&old, Some(u2.uid), Some(u2.gid)).unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    let (rc, _, err) = output(f.cli(&[
        "import",
        "google-authenticator",
        "--user",
        &u2.name,
        "--file",
        old.to_str().unwrap(),
    ]));
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        f.auth("svc", &u2.name, &[&code_now("GEZDGNBVGY3TQOJQ")]).rc,
        PAM_SUCCESS
    );

    // HOTP files are refused with a clear message.
    let u3 = TestUser::create();
    google_authenticator(&u3, GA_COUNTER_BASED);
    // Counter-based files import since issue 12, their counter carried over.
    let (rc, out, err) = output(f.cli_as(&u3.name, &["import", "google-authenticator"]));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("counter-based (HOTP), next counter 1"), "{out}");
    assert!(u3.secret_path().exists());
}

#[test]
fn errors_are_one_line_on_stderr_with_a_nonzero_exit() {
    let f = Fixture::new();
    let u = TestUser::create();
    let other = TestUser::create();
    let unwritable = TestUser::create();
    std::fs::set_permissions(&unwritable.home, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    f.enroll_json(&u.name, &[]);
    let bad = TestUser::create();
    bad.write_secret("version = 1\nsecret = 42\n");

    let cases: Vec<(Command, &str)> = vec![
        (
            f.cli_as(&u.name, &["enroll", "--user", &other.name, "--no-confirm"]),
            "only root can enroll another user",
        ),
        (
            f.cli(&["enroll", "--user", "nosuchuser-ptt", "--no-confirm"]),
            "no such user: nosuchuser-ptt",
        ),
        (
            f.cli(&["enroll", "--user", &u.name, "--no-confirm"]),
            "is already enrolled",
        ),
        (
            f.cli_as(&other.name, &["backup-codes", "--regenerate"]),
            "is not enrolled",
        ),
        (
            f.cli_as(&u.name, &["reset", "--user", &other.name]),
            "only root can reset a user",
        ),
        (
            f.cli_as(&u.name, &["unlock", "--user", &u.name]),
            "only root can unlock a user",
        ),
        (
            f.cli(&["enroll", "--user", &unwritable.name, "--no-confirm"]),
            "could not save the secret",
        ),
        (f.cli(&["enroll", "--user", &bad.name, "--no-confirm"]), "malformed"),
        (
            f.cli(&["import", "google-authenticator", "--user", &other.name]),
            "does not exist",
        ),
        (
            f.cli(&["enroll", "--user", "../etc", "--no-confirm"]),
            "is not a valid user name",
        ),
    ];
    for (cmd, want) in cases {
        let desc = format!("{cmd:?}");
        let (rc, out, err) = output(cmd);
        assert_eq!(rc, 1, "{desc}: {err}");
        assert_eq!(err.lines().count(), 1, "{desc}: {err}");
        assert!(err.starts_with("pam-totp: ") && err.contains(want), "{desc}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{desc}: {err}"
        );
        assert!(
            !out.contains("otpauth://"),
            "{desc}: a secret was shown for a failed enrollment"
        );
    }
    let (rc, _, err) = output(f.cli(&["enroll", "--digits", "7"]));
    assert_eq!(rc, 2, "usage errors exit 2: {err}");
    let (rc, out, _) = output(f.cli(&["--help"]));
    assert_eq!(rc, 0);
    for c in ["enroll", "status", "backup-codes", "reset", "unlock", "import"] {
        assert!(out.contains(c), "--help lists {c}");
    }
}

#[test]
fn status_as_the_user_without_enrollment() {
    let f = Fixture::new();
    let u = TestUser::create();
    let (rc, out, err) = output(f.cli_as(&u.name, &["status"]));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("Enrolled:         no"), "{out}");
    let (rc, out, _) = output(f.cli_as(&u.name, &["status", "--json"]));
    assert_eq!(rc, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["enrolled"], false);
}
