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
    // One others can list (the module takes it): a warning, not "private".
    std::fs::set_permissions(f.state_dir(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (_, _, _, j) = doctor(&f, &pam, &sshd);
    assert!(has(&j, "state-dir", "warning") && !has(&j, "state-dir", "ok"), "{j}");
    std::fs::set_permissions(f.state_dir(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let (_, _, _, j) = doctor(&f, &pam, &sshd);
    assert!(has(&j, "state-dir", "ok"), "{j}");

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

/// Each of these was reported as fine (0 errors, exit 0) while logins broke.
#[test]
fn what_doctor_used_to_pass_is_an_error() {
    let f = Fixture::new();
    let good = [("sshd", "@include common-auth\n"), ("common-auth", GOOD_COMMON_AUTH)];

    // 1. A state directory whose parent does not exist: the module does not create parents,
    //    so every login through it is refused, nullok too.
    let (pam, sshd) = setup(&f, &good, GOOD_SSHD);
    let missing = f.root.join("no-such-dir/state");
    let mut c = std::process::Command::new(cli_path());
    c.env_remove("SUDO_UID");
    c.args(["--config", f.root.join("pam_totp.conf").to_str().unwrap()])
        .args(["--state-dir", missing.to_str().unwrap()])
        .args(["doctor", "--json", "--pam-dir", &pam, "--sshd-config", &sshd]);
    let (rc, out, err) = output(c);
    assert_eq!(rc, 1, "{out}{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(has(&j, "state-dir", "error"), "{j}");
    f.service(
        "svc",
        &format!(
            "auth required {} config={} state_dir={} nullok\n",
            f.root.join("pam_totp.so").display(),
            f.root.join("pam_totp.conf").display(),
            missing.display()
        ),
    );
    let u = TestUser::create();
    let r = f.auth("svc", &u.name, &[]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "what doctor says is what the module does: {r:?}");
    assert!(!missing.parent().unwrap().exists(), "the module made no parent");

    // 2. pam_totp twice: pam-auth-update's profile in common-auth and a line by hand.
    let (pam, sshd) = setup(
        &f,
        &[
            ("sshd", "@include common-auth\nauth required pam_totp.so\n"),
            ("common-auth", GOOD_COMMON_AUTH),
        ],
        GOOD_SSHD,
    );
    let (rc, out, _, j) = doctor(&f, &pam, &sshd);
    assert_eq!(rc, 1, "{out}");
    assert!(has(&j, "totp-twice", "error"), "{j}");
    assert!(out.contains("common-auth:4 and sshd:2"), "{out}");

    // 3. A typo in pam_totp.conf: which option, what it expects, and the rest is checked.
    let (pam, sshd) = setup(&f, &good, GOOD_SSHD);
    std::fs::write(
        f.root.join("pam_totp.conf"),
        "# comments\nwindow = 2\nlockout = 5m\nmax_failures = 0\nnullok = true\n",
    )
    .unwrap();
    let (rc, out, err, j) = doctor(&f, &pam, &sshd);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        out.contains("line 3: option `lockout`: `5m` is not a value it can read; it takes a whole number")
            && out.contains("e.g. `lockout = 300`"),
        "{out}"
    );
    assert!(out.contains("option `max_failures`: must be between 1 and"), "{out}");
    assert!(
        has(&j, "enabled", "ok") && has(&j, "state-dir", "info"),
        "the rest is checked: {j}"
    );
    assert_eq!(j["errors"], 2, "{j}");
    // The module refuses every login with it, and its log line says the same.
    f.simple("svc", "nullok");
    let r = f.auth("svc", &u.name, &[]);
    assert_eq!(r.rc, PAM_SERVICE_ERR, "{r:?}");
    assert!(r.logged(&["option `lockout`", "takes a whole number"]), "{:?}", r.logs);
}

/// A PAM example from the documentation: where it is, its lines, and whether it is marked as
/// one doctor must reject (`<!-- doctor: rejects -->` before a Markdown block, `.\" pam-example:
/// doctor rejects` in a man page's `.nf` block).
struct Example {
    at: String,
    lines: String,
    rejected: bool,
}

/// The PAM lines of a block (`auth ...`, `-auth ...`, `@include ...`, comments), when it
/// has an auth line; None for any other block.
fn pam_lines(block: &[&str]) -> Option<String> {
    let pam: Vec<&str> = block
        .iter()
        .map(|l| l.trim())
        .filter(|l| {
            [
                "auth ",
                "auth\t",
                "-auth ",
                "@include ",
                "account ",
                "session ",
                "password ",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    pam.iter()
        .any(|l| l.starts_with("auth") || l.starts_with("-auth"))
        .then(|| pam.join("\n") + "\n")
}

fn markdown_examples(path: &std::path::Path) -> Vec<Example> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].trim_start().starts_with("```") {
            i += 1;
            continue;
        }
        let start = i;
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim_start().starts_with("```"))
            .unwrap_or(lines.len());
        if let Some(pam) = pam_lines(&lines[start + 1..end]) {
            let marked = start > 0 && lines[start - 1].trim() == "<!-- doctor: rejects -->";
            out.push(Example {
                at: format!("{}:{}", path.display(), start + 1),
                lines: pam,
                rejected: marked,
            });
        }
        i = end + 1;
    }
    out
}

fn man_examples(path: &std::path::Path) -> Vec<Example> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i] != ".nf" {
            i += 1;
            continue;
        }
        let end = (i + 1..lines.len()).find(|&j| lines[j] == ".fi").unwrap_or(lines.len());
        let block: Vec<String> = lines[i + 1..end]
            .iter()
            .filter(|l| !l.starts_with('.'))
            .map(|l| l.replace("\\-", "-").replace("\\e", "\\"))
            .collect();
        let block: Vec<&str> = block.iter().map(String::as_str).collect();
        if let Some(pam) = pam_lines(&block) {
            let marked = lines[i + 1..end].contains(&".\\\" pam-example: doctor rejects");
            out.push(Example {
                at: format!("{}:{}", path.display(), i + 1),
                lines: pam,
                rejected: marked,
            });
        }
        i = end + 1;
    }
    out
}

/// Every PAM example in the man pages (as packaging/build generates them), README.md and
/// docs/*.md goes through `pam-totp doctor` as the sudo service (with Debian's common-auth
/// beside it for `@include`): no error, or, for one marked as wrong, an error.
#[test]
fn every_pam_example_in_the_man_pages_and_the_docs_passes_doctor() {
    let f = Fixture::new();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let man = f.root.join("man");
    let (rc, out, err) = output({
        let mut c = std::process::Command::new(built_next_to_the_harness("pam-totp-docs"));
        c.arg(&man);
        c
    });
    assert_eq!(rc, 0, "{out}{err}");
    let mut examples = Vec::new();
    for e in std::fs::read_dir(&man).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x != "conf") {
            examples.extend(man_examples(&p));
        }
    }
    let man_count = examples.len();
    examples.extend(markdown_examples(&repo.join("README.md")));
    for e in std::fs::read_dir(repo.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            examples.extend(markdown_examples(&p));
        }
    }
    assert!(man_count >= 5, "the man pages' examples were not found");
    assert!(examples.len() >= 12, "{} examples", examples.len());
    assert!(
        examples.iter().any(|e| e.rejected),
        "the man page's wrong layout is marked"
    );
    let debian_common_auth =
        "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\n";
    let mut wrong = Vec::new();
    for (i, ex) in examples.iter().enumerate() {
        let pam = f.root.join(format!("examples-{i}"));
        std::fs::create_dir_all(&pam).unwrap();
        std::fs::write(pam.join("sudo"), &ex.lines).unwrap();
        if !ex.lines.contains("common-auth") || ex.lines.contains("pam_totp") {
            std::fs::write(pam.join("common-auth"), debian_common_auth).unwrap();
        }
        let (rc, out, err) = output(f.cli(&[
            "doctor",
            "--json",
            "--pam-dir",
            pam.to_str().unwrap(),
            "--sshd-config",
            "/nonexistent/sshd_config",
        ]));
        let j: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        let errors = j["errors"].as_u64().unwrap();
        assert!(
            has(&j, "enabled", "ok"),
            "{}: pam_totp not seen in\n{}\n{j}",
            ex.at,
            ex.lines
        );
        if (errors > 0) != ex.rejected || (rc != 0) != ex.rejected {
            wrong.push(format!(
                "{} ({}):\n{}{}",
                ex.at,
                if ex.rejected {
                    "marked wrong, but doctor accepts it"
                } else {
                    "doctor rejects it"
                },
                ex.lines,
                j["findings"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
