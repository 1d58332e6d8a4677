//! The command line under hostile conditions: user-controlled text on root's terminal, a
//! narrow sudo rule stretched with --state-dir/--config, a missing state directory, and a
//! stdout that goes away after the secret was saved.

use pam_totp_tests::*;
use std::path::Path;
use std::process::Command;

/// `pam-totp --config <fixture conf> --state-dir DIR ARGS` as root, outside any sudo (the
/// tests themselves may have been started with sudo).
fn cli_with_state_dir(f: &Fixture, state_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(cli_path());
    c.env_remove("SUDO_UID")
        .arg("--config")
        .arg(f.root.join("pam_totp.conf"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args);
    c
}

fn fixture_cli(f: &Fixture, args: &[&str]) -> Command {
    let mut c = f.cli(args);
    c.env_remove("SUDO_UID");
    c
}

fn assert_one_line_error(rc: i32, err: &str, want: &str) {
    assert_eq!(rc, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("pam-totp: ") && err.contains(want), "{err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
}

#[test]
fn status_escapes_control_characters_in_label_and_issuer() {
    let f = Fixture::new();
    let u = TestUser::create();
    let key = random_key_b32();
    // TOML escapes: the file holds the raw ESC, CR and BEL characters.
    u.enroll(
        &key,
        "issuer = \"\\u001b[2K\\rLocked out:       no\"\nlabel = \"\\u001b]0;owned\\u0007\\u009b31mx\"\n",
    );
    for args in [
        vec!["status", "--user", u.name.as_str()],
        vec!["status", "--user", u.name.as_str(), "--json"],
    ] {
        let out = fixture_cli(&f, &args).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            !stdout.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?}: a control character reached the terminal: {stdout:?}"
        );
        assert!(!stdout.as_bytes().contains(&0x1b) && !stdout.as_bytes().contains(&b'\r'));
        if args.contains(&"--json") {
            let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(j["issuer"], "\u{1b}[2K\rLocked out:       no", "JSON keeps the value");
            assert_eq!(j["label"], "\u{1b}]0;owned\u{7}\u{9b}31mx");
        } else {
            assert!(
                stdout.contains(r#"issuer "\u{1b}[2K\rLocked out:       no""#),
                "escaped form shown: {stdout}"
            );
            assert!(
                stdout.contains(r#"account "\u{1b}]0;owned\u{7}\u{9b}31mx""#),
                "{stdout}"
            );
        }
    }
}

#[test]
fn state_dir_and_config_are_refused_under_sudo_by_a_non_root_user() {
    let f = Fixture::new();
    let u = TestUser::create();
    let elsewhere = f.root.join("elsewhere");
    let uid = u.uid.to_string();

    // As sudo leaves it for the command: effective uid 0, SUDO_UID of the caller.
    let mut c = cli_with_state_dir(&f, &elsewhere, &["unlock", "--user", &u.name]);
    c.env("SUDO_UID", &uid).env("SUDO_USER", &u.name);
    let (rc, _, err) = output(c);
    assert_one_line_error(rc, &err, "--config is refused under sudo");
    assert!(!elsewhere.exists());

    let mut c = Command::new(cli_path());
    c.env("SUDO_UID", &uid)
        .env("SUDO_USER", &u.name)
        .arg("--state-dir")
        .arg(&elsewhere)
        .args(["unlock", "--user", &u.name]);
    let (rc, _, err) = output(c);
    assert_one_line_error(rc, &err, "--state-dir is refused under sudo");
    assert!(err.contains("outside /var/lib/pam-totp"), "{err}");
    assert!(!elsewhere.exists());

    // sudo run by root, or root without sudo: the options are kept.
    let mut c = cli_with_state_dir(&f, &elsewhere, &["status", "--user", &u.name]);
    c.env("SUDO_UID", "0").env("SUDO_USER", "root");
    let (rc, out, err) = output(c);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("Locked out:       no"), "{out}");
    let (rc, _, err) = output(cli_with_state_dir(&f, &elsewhere, &["status", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");

    real_sudo_refuses_state_dir_and_config(&f);
}

/// A real sudo, with the sudoers rule of a help desk: `pam-totp unlock --user *`.
fn real_sudo_refuses_state_dir_and_config(f: &Fixture) {
    let helpdesk = TestUser::create();
    let victim = TestUser::create();
    let cli = cli_path();
    let (src, dst) = private_sudoers(
        f,
        &format!(
            "Defaults:{0} !lecture, !fqdn\n{0} ALL=(root) NOPASSWD: {1} unlock --user *\n",
            helpdesk.name,
            cli.display()
        ),
    );
    let somewhere = std::env::temp_dir().join(format!("ptt-sudo-{}", random_hex(4)));
    let sudo = |extra: &[&str]| {
        let mut args = vec!["-u", helpdesk.name.as_str(), "--", "sudo", "-n", cli.to_str().unwrap()];
        args.extend(["unlock", "--user", victim.name.as_str()]);
        args.extend(extra);
        output(in_namespace(&[(&src, dst)], "runuser", &args))
    };
    let (rc, _, err) = sudo(&["--state-dir", somewhere.to_str().unwrap()]);
    let created = somewhere.exists();
    let _ = std::fs::remove_dir_all(&somewhere);
    assert!(!created, "root created {}: {err}", somewhere.display());
    assert_eq!(rc, 1, "{err}");
    // The message comes from pam-totp: sudo did run it, as root, and it refused.
    assert!(err.contains("pam-totp: --state-dir is refused under sudo"), "{err}");

    let conf = f.root.join("pam_totp.conf");
    let (rc, _, err) = sudo(&["--config", conf.to_str().unwrap()]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("pam-totp: --config is refused under sudo"), "{err}");
}

#[test]
fn the_cli_never_creates_a_state_directory() {
    let f = Fixture::new();
    let u = TestUser::create();
    let missing = f.root.join("no-such-state");

    let (rc, out, err) = output(cli_with_state_dir(&f, &missing, &["unlock", "--user", &u.name]));
    assert_one_line_error(
        rc,
        &err,
        &format!(
            "the state directory {} does not exist; the module or the package creates it",
            missing.display()
        ),
    );
    assert!(out.is_empty(), "{out}");
    assert!(!missing.exists(), "unlock created {}", missing.display());

    // Reading commands see "no state yet".
    let (rc, out, err) = output(cli_with_state_dir(&f, &missing, &["status", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("Locked out:       no"), "{out}");
    assert!(out.contains("Failed attempts:  0 in a row"), "{out}");
    let (rc, out, err) = output(cli_with_state_dir(
        &f,
        &missing,
        &["status", "--user", &u.name, "--json"],
    ));
    assert_eq!(rc, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["locked"], false);
    assert!(!missing.exists(), "status created {}", missing.display());
}

/// A pipe whose read end is already closed: every write gets EPIPE.
fn closed_pipe() -> std::io::PipeWriter {
    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    w
}

#[test]
fn enroll_json_into_a_closed_pipe_says_what_was_saved() {
    let f = Fixture::new();
    let u = TestUser::create();
    let mut c = fixture_cli(&f, &["enroll", "--json", "--user", &u.name]);
    c.stdout(closed_pipe());
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not killed, no panic: {:?} {err}",
        out.status
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "saved {}, but could not print the result: Broken pipe",
            u.secret_path().display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("nothing was changed") && !err.contains("panicked"),
        "{err}"
    );
    assert!(u.secret_path().exists(), "the secret was saved");
}

#[test]
fn enroll_into_a_closed_stdout_before_saving_saves_nothing() {
    let f = Fixture::new();
    let u = TestUser::create();
    // The QR code is written before the save: that write fails, nothing is saved.
    let mut c = fixture_cli(&f, &["enroll", "--no-confirm", "--user", &u.name]);
    c.stdout(closed_pipe());
    let (rc, _, err) = output(c);
    assert_one_line_error(rc, &err, "cannot write to stdout: Broken pipe; nothing was saved");
    assert!(!u.secret_path().exists());
}

#[test]
fn status_and_help_into_a_closed_pipe_are_errors_not_panics() {
    let f = Fixture::new();
    let u = TestUser::create();
    let mut c = fixture_cli(&f, &["status", "--user", &u.name]);
    c.stdout(closed_pipe());
    let (rc, _, err) = output(c);
    assert_one_line_error(rc, &err, "could not print the result: Broken pipe");

    let mut c = fixture_cli(&f, &["--help"]);
    c.stdout(closed_pipe());
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some(), "not killed by a signal");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
}
