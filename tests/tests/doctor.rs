//! `pam-totp doctor` against fixture configurations, good and broken.

use pam_totp_tests::*;

const GOOD_COMMON_AUTH: &str = "auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\nauth\trequired\tpam_totp.so nullok\n";
const GOOD_SSHD: &str = "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nAuthenticationMethods publickey,keyboard-interactive\n";

fn setup(f: &Fixture, files: &[(&str, &str)], sshd_config: &str) -> (String, String) {
    let pam = f.root.join("doctor-pam.d");
    std::fs::create_dir_all(&pam).unwrap();
    for (name, text) in files {
        std::fs::write(pam.join(name), text).unwrap();
    }
    let sshd = f.root.join("sshd_config");
    std::fs::write(&sshd, sshd_config).unwrap();
    (pam.display().to_string(), sshd.display().to_string())
}

fn doctor(f: &Fixture, pam: &str, sshd: &str) -> (i32, String, String, serde_json::Value) {
    let (rc, out, err) = output(f.cli(&["doctor", "--pam-dir", pam, "--sshd-config", sshd]));
    let (_, json, _) = output(f.cli(&["doctor", "--pam-dir", pam, "--sshd-config", sshd, "--json"]));
    (
        rc,
        out,
        err,
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}")),
    )
}

fn has(j: &serde_json::Value, check: &str, severity: &str) -> bool {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["check"] == check && x["severity"] == severity)
}

#[test]
fn good_setup_passes() {
    let f = Fixture::new();
    let (pam, sshd) = setup(
        &f,
        &[
            ("sshd", "@include common-auth\naccount required pam_nologin.so\n"),
            ("sudo", "@include common-auth\n"),
            ("common-auth", GOOD_COMMON_AUTH),
        ],
        GOOD_SSHD,
    );
    let (rc, out, err, j) = doctor(&f, &pam, &sshd);
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(j["errors"], 0, "{j}");
    assert!(has(&j, "enabled", "ok"));
    assert!(
        out.contains("sshd: pam_totp is `required` in the auth stack  [common-auth:4]"),
        "{out}"
    );
}

#[test]
fn broken_setups_fail_with_the_line_to_change() {
    let f = Fixture::new();
    // Debian's stock sshd_config (kbd-interactive off, keys alone enough), pam_totp as
    // `sufficient` before a `required` pam_unix in sudo, an unknown option in login.
    let (pam, sshd) = setup(
        &f,
        &[
            ("sshd", "@include common-auth\n"),
            ("common-auth", "auth required pam_unix.so\nauth required pam_totp.so\n"),
            ("sudo", "auth sufficient pam_totp.so\nauth required pam_unix.so\n"),
            (
                "login",
                "auth requisite pam_unix.so\nauth required pam_totp.so windows=3\n",
            ),
        ],
        "Include /nonexistent/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n",
    );
    let (rc, out, err, j) = doctor(&f, &pam, &sshd);
    assert_eq!(rc, 1, "{out}");
    assert!(
        err.starts_with("pam-totp: ") && err.contains("would lock users out or let them in without a code"),
        "{err}"
    );
    for (check, sev) in [
        ("sshd-kbdinteractive", "error"),
        ("sshd-publickey-skips-pam", "error"),
        ("password-not-requisite", "warning"),
        ("control-sufficient", "error"),
        ("code-before-password", "warning"),
        ("bad-option", "error"),
    ] {
        assert!(has(&j, check, sev), "{check}/{sev} missing: {j}");
    }
    assert!(out.contains("set `KbdInteractiveAuthentication yes`"), "{out}");
    assert!(out.contains("unknown option `windows`"), "{out}");
    assert!(out.contains("[common-auth:1]"), "{out}");
}

#[test]
fn bad_secret_file_and_state_dir_are_errors() {
    let f = Fixture::new();
    let (pam, sshd) = setup(
        &f,
        &[("sudo", "auth requisite pam_unix.so\nauth required pam_totp.so\n")],
        GOOD_SSHD,
    );
    std::fs::create_dir(f.state_dir()).unwrap();
    std::fs::set_permissions(f.state_dir(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (rc, _, _, j) = doctor(&f, &pam, &sshd);
    assert_eq!(rc, 1);
    assert!(has(&j, "state-dir", "error"), "{j}");

    let u = TestUser::create();
    u.enroll(&random_key_b32(), "");
    std::fs::set_permissions(u.secret_path(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::set_permissions(f.state_dir(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let (rc, out, _) = output(f.cli_as(&u.name, &["doctor", "--pam-dir", &pam, "--sshd-config", &sshd]));
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("your secret file") && out.contains("chmod 600"), "{out}");
}

/// With the vault, users' own changes go through pam-totp-vault, which reads pam_totp.conf
/// only: a pam_totp line that sets the state directory (keys and state elsewhere) is an error,
/// one that sets the rules for codes a warning; a line that agrees with the file is fine.
#[test]
fn line_options_that_the_vault_helper_does_not_read_are_found() {
    let f = Fixture::new();
    let conf = f.root.join("pam_totp.conf");
    std::fs::write(
        &conf,
        format!("key_store = \"vault\"\nstate_dir = \"{}\"\n", f.state_dir().display()),
    )
    .unwrap();
    let line = |args: &str| {
        format!(
            "auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\tpam_deny.so\nauth\trequired\tpam_permit.so\nauth\trequired\tpam_totp.so config={} {args}\n",
            conf.display()
        )
    };
    for (args, severity) in [
        ("state_dir=/var/lib/elsewhere", Some("error")),
        ("key_store=home", Some("error")),
        ("window=4", Some("warning")),
        ("max_failures=20", Some("warning")),
        ("nullok", None),
        ("", None),
    ] {
        let (pam, sshd) = setup(&f, &[("sshd", &line(args)), ("sudo", &line(""))], GOOD_SSHD);
        let (_, out, _, j) = doctor(&f, &pam, &sshd);
        match severity {
            Some(s) => {
                assert!(has(&j, "line-options-vs-helper", s), "{args}: {out}");
                assert!(out.contains("pam-totp-vault"), "{args}: {out}");
            }
            None => assert!(
                !j["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["check"] == "line-options-vs-helper"),
                "{args}: {out}"
            ),
        }
    }
    // Without the vault (key_store = "home") the helper is not used: nothing to say.
    std::fs::write(&conf, format!("state_dir = \"{}\"\n", f.state_dir().display())).unwrap();
    let (pam, sshd) = setup(&f, &[("sshd", &line("window=4"))], GOOD_SSHD);
    let (_, out, _, j) = doctor(&f, &pam, &sshd);
    assert!(
        !j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["check"] == "line-options-vs-helper"),
        "{out}"
    );
}
