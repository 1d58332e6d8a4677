//! End to end with real programs: OpenSSH sshd and ssh (keyboard-interactive answered
//! through a pty), sudo and su — each in a private mount namespace whose /etc/pam.d (and
//! /etc/sudoers) are test copies, so the host's files are never touched.

use pam_totp_tests::*;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const PASSWORD: &str = "pw-Secret-42";

fn ssh(f: &Fixture, sshd: &Sshd, user: &TestUser, key: Option<&Path>, password: &str, code: &str) -> Session {
    ssh_login(f, sshd, user, key, password, code, false)
}

/// Whether the module logged `what` for `user` (and no line holds a secret or a password).
fn logged(log: &LogSink, what: &str, user: &TestUser) -> bool {
    log.lines(&[PASSWORD])
        .iter()
        .any(|l| l.contains("pam_totp(") && l.contains(what) && l.contains(&format!("user={}", user.name)))
}

fn enrolled_user(f: &Fixture) -> (TestUser, String) {
    let u = TestUser::create();
    u.set_password(PASSWORD);
    let j = f.enroll_json(&u.name, &[]);
    (u, j["secret"].as_str().unwrap().to_string())
}

#[test]
fn ssh_password_then_code() {
    let f = Fixture::new();
    let (log, sshd) = sshd_with_pam(
        &f,
        &password_then_code(&f, ""),
        "AuthenticationMethods keyboard-interactive",
    );
    let (u, secret) = enrolled_user(&f);

    let code = code_now(&secret);
    let s = ssh(&f, &sshd, &u, None, PASSWORD, &code);
    assert!(s.logged_in_as(&u), "{}\n{}", s.transcript, sshd.log());
    // The prompts the user sees, in order, as documented.
    let p = s.transcript.find("Password:").unwrap();
    let c = s.transcript.find("Verification code:").unwrap();
    assert!(p < c, "{}", s.transcript);
    assert!(logged(&log, "accepted verification code", &u), "{:?}", log.lines(&[]));
    assert!(
        log.lines(&[])
            .iter()
            .any(|l| l.contains("service=sshd rhost=127.0.0.1")),
        "{:?}",
        log.lines(&[])
    );

    // sshd sends a refusal's messages as the instruction of a last info request, which ssh
    // prints at its default LogLevel INFO, not at these tests' LogLevel=ERROR (see
    // ssh_refusals_before_the_code_prompt_say_why): the outcome is asserted here.
    let s = ssh(&f, &sshd, &u, None, PASSWORD, &code);
    assert!(!s.logged_in_as(&u), "replayed code let them in: {}", s.transcript);
    assert!(s.transcript.contains("Permission denied"), "{}", s.transcript);
    assert!(
        logged(&log, "refused: replayed verification code", &u),
        "{:?}",
        log.lines(&[])
    );

    let s = ssh(&f, &sshd, &u, None, PASSWORD, &wrong_code(&secret));
    assert!(!s.logged_in_as(&u), "{}", s.transcript);

    // Without the password, the code is never asked (requisite) and nothing is counted.
    let s = ssh(
        &f,
        &sshd,
        &u,
        None,
        "not-the-password",
        &oathtool(&secret, now() + 30, "sha1", 6),
    );
    assert!(!s.logged_in_as(&u), "{}", s.transcript);
    assert!(!s.transcript.contains("Verification code"), "{}", s.transcript);
    assert!(sshd
        .log()
        .contains(&format!("Accepted keyboard-interactive/pam for {}", u.name)));
}

/// A new SSH key pair in the fixture, its public half in `u`'s authorized_keys: the
/// private key's path.
fn authorized_key(f: &Fixture, u: &TestUser) -> PathBuf {
    let key = f.root.join("id_ed25519");
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
    );
    let ssh_dir = u.home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    std::fs::copy(key.with_extension("pub"), ssh_dir.join("authorized_keys")).unwrap();
    run(
        "chown",
        &["-R", &format!("{}:{}", u.uid, u.gid), ssh_dir.to_str().unwrap()],
    );
    run("chmod", &["-R", "go-rwx", ssh_dir.to_str().unwrap()]);
    key
}

#[test]
fn ssh_key_then_code() {
    let f = Fixture::new();
    let (log, sshd) = sshd_with_pam(
        &f,
        &format!("auth required {}", f.module("")),
        "PubkeyAuthentication yes\nAuthenticationMethods publickey,keyboard-interactive",
    );
    let (u, secret) = enrolled_user(&f);
    let key = authorized_key(&f, &u);

    let s = ssh(&f, &sshd, &u, Some(&key), "unused", &code_now(&secret));
    assert!(s.logged_in_as(&u), "{}\n{}", s.transcript, sshd.log());
    assert!(
        !s.transcript.contains("Password:"),
        "key + code asks no password: {}",
        s.transcript
    );
    assert!(
        sshd.log().contains(&format!("Partial publickey for {}", u.name)),
        "{}",
        sshd.log()
    );

    let s = ssh(&f, &sshd, &u, Some(&key), "unused", &wrong_code(&secret));
    assert!(!s.logged_in_as(&u), "{}", s.transcript);
    assert!(s.transcript.contains("Permission denied"), "{}", s.transcript);
    assert!(logged(&log, "refused: wrong code", &u), "{:?}", log.lines(&[]));
}

/// A copy of /etc/pam.d whose `service` asks for the password, then the code (pam_totp with
/// `module_args`), then checks the account with pam_unix.
fn pam_password_then_code(f: &Fixture, service: &str, module_args: &str) -> std::path::PathBuf {
    pam_dir_copy(
        f,
        &[(
            service,
            &format!(
                "{}\naccount required pam_unix.so\nsession required pam_permit.so\n",
                password_then_code(f, module_args)
            ),
        )],
    )
}

fn sudo_env(f: &Fixture, user: &TestUser, module_args: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let pam_d = pam_password_then_code(f, "sudo", module_args);
    let sudoers = f.root.join("sudoers");
    std::fs::write(
        &sudoers,
        format!(
            "Defaults !lecture, passwd_tries=1, !fqdn\nroot ALL=(ALL:ALL) ALL\n{} ALL=(ALL:ALL) ALL\n",
            user.name
        ),
    )
    .unwrap();
    std::fs::set_permissions(&sudoers, std::os::unix::fs::PermissionsExt::from_mode(0o440)).unwrap();
    (pam_d, sudoers)
}

/// sudo on a terminal (through expect), as a person runs it.
fn sudo(f: &Fixture, pam_d: &Path, sudoers: &Path, user: &TestUser, code: &str, log: &LogSink) -> Session {
    expect_session(
        f,
        &[
            "runuser",
            "-u",
            &user.name,
            "--",
            "sudo",
            "-k",
            "sh",
            "-c",
            "echo SUDO-AS-$(id -un)",
        ],
        &[("password for [^:]*: ?", PASSWORD), ("Verification code: ?", code)],
        &[(pam_d, "/etc/pam.d"), (sudoers, "/etc/sudoers")],
        Some(&log.path),
    )
}

#[test]
fn sudo_asks_for_the_code_and_locks_out() {
    let f = Fixture::new();
    let (u, secret) = enrolled_user(&f);
    let (pam_d, sudoers) = sudo_env(&f, &u, "max_failures=2 lockout=300");
    let ran = |s: &Session| s.transcript.contains("SUDO-AS-root");
    let log = LogSink::new(&f);

    let s = sudo(&f, &pam_d, &sudoers, &u, &code_now(&secret), &log);
    assert!(ran(&s) && s.exit == 0, "{}", s.transcript);
    assert!(
        s.transcript.find("password for") < s.transcript.find("Verification code:"),
        "{}",
        s.transcript
    );

    let s = sudo(&f, &pam_d, &sudoers, &u, &wrong_code(&secret), &log);
    assert!(!ran(&s) && s.exit != 0, "the command must not run: {}", s.transcript);
    assert!(s.transcript.contains("Wrong verification code."), "{}", s.transcript);

    let s = sudo(&f, &pam_d, &sudoers, &u, &wrong_code(&secret), &log);
    assert!(
        s.transcript
            .contains("Too many wrong verification codes: try again in 5 minutes."),
        "{}",
        s.transcript
    );
    let s = sudo(
        &f,
        &pam_d,
        &sudoers,
        &u,
        &oathtool(&secret, now() + 30, "sha1", 6),
        &log,
    );
    assert!(!ran(&s) && s.exit != 0, "locked out: {}", s.transcript);
    assert!(
        s.transcript.contains("Too many wrong verification codes. Try again in"),
        "{}",
        s.transcript
    );
}

#[test]
fn su_on_a_terminal_asks_for_password_and_code() {
    let f = Fixture::new();
    let (target, secret) = enrolled_user(&f);
    let caller = TestUser::create();
    let pam_d = pam_password_then_code(&f, "su", "");
    let log = LogSink::new(&f);
    let su = |code: &str| {
        expect_session(
            &f,
            &[
                "runuser",
                "-u",
                &caller.name,
                "--",
                "su",
                &target.name,
                "-c",
                "echo SU-AS-$(id -un)",
            ],
            &[("Password: ?", PASSWORD), ("Verification code: ?", code)],
            &[(&pam_d, "/etc/pam.d")],
            Some(&log.path),
        )
    };
    let s = su(&code_now(&secret));
    assert!(
        s.transcript.contains(&format!("SU-AS-{}", target.name)),
        "{}",
        s.transcript
    );
    assert!(
        s.transcript.find("Password:") < s.transcript.find("Verification code:"),
        "{}",
        s.transcript
    );
    let s = su(&wrong_code(&secret));
    assert!(
        !s.transcript.contains(&format!("SU-AS-{}", target.name)),
        "{}",
        s.transcript
    );
    assert!(s.transcript.contains("Wrong verification code."), "{}", s.transcript);
    assert!(
        s.transcript.contains("su: Authentication failure") && s.exit != 0,
        "{}",
        s.transcript
    );
}

fn date_in_days(days: i64) -> String {
    pam_totp_core::config::Date(pam_totp_core::config::Date::from_unix(now()).0 + days).to_string()
}

#[test]
fn ssh_enforce_after_warns_until_the_date_then_refuses() {
    let f = Fixture::new();
    let u = TestUser::create();
    u.set_password(PASSWORD);
    for (days, allowed) in [(30, true), (0, false), (-1, false)] {
        let date = date_in_days(days);
        let (log, sshd) = sshd_with_pam(
            &f,
            &password_then_code(&f, &format!("enforce_after={date}")),
            "AuthenticationMethods keyboard-interactive",
        );
        let s = ssh_login(&f, &sshd, &u, None, PASSWORD, "000000", true);
        assert_eq!(s.logged_in_as(&u), allowed, "{date}: {}", s.transcript);
        assert!(
            !s.transcript.contains("Verification code"),
            "not enrolled: no code prompt: {}",
            s.transcript
        );
        if allowed {
            assert!(
                s.transcript
                    .contains(&format!("Two-factor sign-in becomes mandatory on {date}")),
                "{}",
                s.transcript
            );
            assert!(s.transcript.contains("pam-totp enroll"), "{}", s.transcript);
            assert!(
                logged(&log, &format!("not enrolled; allowed until enforce_after={date}"), &u),
                "{:?}",
                log.lines(&[])
            );
        } else {
            assert!(logged(&log, "refused: not enrolled", &u), "{:?}", log.lines(&[]));
        }
    }
}

#[test]
fn ssh_remember_skips_the_code_for_the_same_host_until_reset() {
    let f = Fixture::new();
    let (log, sshd) = sshd_with_pam(
        &f,
        &password_then_code(&f, "remember=3600"),
        "AuthenticationMethods keyboard-interactive",
    );
    let (u, secret) = enrolled_user(&f);

    let s = ssh(&f, &sshd, &u, None, PASSWORD, &code_now(&secret));
    assert!(s.logged_in_as(&u), "{}", s.transcript);
    // Same user, same host, same service: only the password.
    let s = ssh(&f, &sshd, &u, None, PASSWORD, "000000");
    assert!(s.logged_in_as(&u), "{}", s.transcript);
    assert!(!s.transcript.contains("Verification code"), "{}", s.transcript);
    assert!(
        logged(&log, "accepted: remembered host, no code asked", &u),
        "{:?}",
        log.lines(&[])
    );
    // The password is still required.
    let s = ssh(&f, &sshd, &u, None, "wrong password", "000000");
    assert!(!s.logged_in_as(&u), "{}", s.transcript);

    let (_, out, _) = output(f.cli(&["status", "--user", &u.name]));
    assert!(out.contains("Remembered host:  127.0.0.1 on sshd until"), "{out}");
    let (_, out, _) = output(f.cli(&["status", "--user", &u.name, "--json"]));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["remembered_hosts"][0]["rhost"], "127.0.0.1");

    // reset clears it (and the enrollment): the next login is not let through.
    let (rc, _, err) = output(f.cli(&["reset", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    let (_, out, _) = output(f.cli(&["status", "--user", &u.name]));
    assert!(!out.contains("Remembered host"), "{out}");
    let s = ssh(&f, &sshd, &u, None, PASSWORD, "000000");
    assert!(!s.logged_in_as(&u), "{}", s.transcript);
}

fn enroll_session(f: &Fixture, sshd: &Sshd, u: &TestUser) -> Session {
    let args = ssh_args(sshd.port, &u.name, None);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    // A UTF-8 terminal, as users have: OpenSSH escapes non-ASCII otherwise.
    args.splice(0..0, ["env", "LC_ALL=C.UTF-8"]);
    expect_session(
        f,
        &args,
        &[
            ("Password: ?", PASSWORD),
            ("Verification code from the app: ?", TOTP_FROM_SCREEN),
            ("Press Enter once you have saved the backup codes: ?", ""),
            ("Verification code: ?", "000000"),
        ],
        &[],
        None,
    )
}

#[test]
fn ssh_enroll_on_login_shows_a_scannable_qr_and_saves_the_secret() {
    let f = Fixture::new();
    let (log, sshd) = sshd_with_pam(
        &f,
        &password_then_code(&f, "enroll_on_login"),
        "AuthenticationMethods keyboard-interactive",
    );
    let u = TestUser::create();
    u.set_password(PASSWORD);

    let s = enroll_session(&f, &sshd, &u);
    assert!(s.logged_in_as(&u), "{}\n{}", s.transcript, sshd.log());
    // The QR code is on screen before the prompt, and a real decoder reads the URI from it.
    let t = &s.transcript;
    assert!(
        t.find("Scan this QR code") < t.find("Verification code from the app"),
        "{t}"
    );
    let uri = t
        .lines()
        .find_map(|l| l.strip_prefix("URI: "))
        .unwrap_or_else(|| panic!("{t}"))
        .trim()
        .to_string();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert_eq!(decode_terminal_qr(t, false), uri);
    let secret = secret_in_uri(&uri);
    register_secret(&secret);
    let codes: Vec<&str> = backup_codes_shown(t);
    assert_eq!(codes.len(), 10, "backup codes shown: {t}");
    codes.iter().for_each(|c| register_secret(c));
    // Saved as the user's own private file, the same as `pam-totp enroll` writes it.
    let md = std::fs::metadata(u.secret_path()).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&md),
            std::os::unix::fs::MetadataExt::mode(&md) & 0o777
        ),
        (u.uid, 0o600)
    );
    assert!(logged(&log, "enrolled at login", &u), "{:?}", log.lines(&[]));

    // From now on: a normal code login, and the enrollment is not offered again.
    let s = ssh(&f, &sshd, &u, None, PASSWORD, &oathtool(&secret, now() + 30, "sha1", 6));
    assert!(s.logged_in_as(&u), "{}", s.transcript);
    assert!(!s.transcript.contains("Scan this QR code"), "{}", s.transcript);
}

#[test]
fn ssh_enroll_on_login_is_not_offered_when_the_password_does_not_stop_the_stack() {
    let f = Fixture::new();
    let (log, sshd) = sshd_with_pam(
        &f,
        &format!(
            "auth required pam_unix.so\nauth required {}",
            f.module("enroll_on_login")
        ),
        "AuthenticationMethods keyboard-interactive",
    );
    let u = TestUser::create();
    u.set_password(PASSWORD);
    let s = enroll_session(&f, &sshd, &u);
    assert!(!s.logged_in_as(&u), "{}", s.transcript);
    assert!(
        !s.transcript.contains("Scan this QR code") && !s.transcript.contains("secret="),
        "{}",
        s.transcript
    );
    assert!(!u.secret_path().exists());
    assert!(logged(&log, "enroll_on_login not offered", &u), "{:?}", log.lines(&[]));
}

/// A client that can send only one password (ssh's `password` method): password and code in
/// one answer, through the documented three-line forward_pass stack. Wrong codes from someone
/// without the password are not counted; with the password they are.
#[test]
fn ssh_password_method_with_forward_pass_counts_failures_only_after_the_password() {
    let f = Fixture::new();
    let (log, sshd) = sshd_with_pam(
        &f,
        &format!(
            "auth required {}\nauth requisite pam_unix.so use_first_pass\nauth required {}",
            f.module("forward_pass max_failures=2"),
            f.module("max_failures=2")
        ),
        "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nAuthenticationMethods password",
    );
    let (u, secret) = enrolled_user(&f);
    let one_answer = |answer: &str| {
        let mut args = ssh_args(sshd.port, &u.name, None);
        args.insert(1, "-oPreferredAuthentications=password".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_session(&f, &args, &[("assword: ?", answer)], &[], None)
    };
    // Without the password: as many wrong codes as you like, nobody is locked out.
    for _ in 0..4 {
        let s = one_answer(&format!("not-the-password{}", wrong_code(&secret)));
        assert!(!s.logged_in_as(&u), "{}", s.transcript);
    }
    let s = one_answer(&format!("{PASSWORD}{}", code_now(&secret)));
    assert!(s.logged_in_as(&u), "{}\n{}", s.transcript, sshd.log());
    // sshd's syslog lines can arrive well after the session ends when the suite is busy.
    let wait_logged = |what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !logged(&log, what, &u) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        logged(&log, what, &u)
    };
    for what in [
        "at the forward_pass line; the password is checked next",
        "the password module after it let the user through",
    ] {
        assert!(
            wait_logged(what),
            "{what}: not logged\n{:#?}\n{}",
            log.lines(&[PASSWORD]),
            sshd.log()
        );
    }
    // With the password, wrong codes count: two lock the account. Each attempt must have
    // reached the password prompt and been refused (not failed before authentication).
    let mut transcripts = Vec::new();
    for _ in 0..2 {
        let s = one_answer(&format!("{PASSWORD}{}", wrong_code(&secret)));
        assert!(!s.logged_in_as(&u), "{}", s.transcript);
        assert!(
            s.transcript.contains("assword:") && s.transcript.contains("Permission denied"),
            "the attempt did not reach authentication: {}",
            s.transcript
        );
        transcripts.push(s.transcript);
    }
    // The lockout, shown by behaviour (log lines can be late under load): the next step's
    // right code with the right password is refused, after reaching authentication.
    let s = one_answer(&format!("{PASSWORD}{}", oathtool(&secret, now() + 30, "sha1", 6)));
    assert!(!s.logged_in_as(&u), "locked: {}\n{transcripts:?}", s.transcript);
    assert!(s.transcript.contains("Permission denied"), "{}", s.transcript);
}

/// Several authenticators: an ssh login with the code of the user's second one (a spare
/// phone), named in the log; its code is then spent, the first phone's still works.
#[test]
fn ssh_login_with_a_second_authenticators_code() {
    let f = Fixture::new();
    let (log, sshd) = sshd_with_pam(
        &f,
        &password_then_code(&f, ""),
        "AuthenticationMethods keyboard-interactive",
    );
    let (u, first) = enrolled_user(&f);
    // The spare phone added as an administrator would: `pam-totp enroll --add`.
    let j = f.enroll_json(&u.name, &["--add", "--name", "spare phone"]);
    assert_eq!(
        (j["name"].as_str(), j["type"].as_str()),
        (Some("spare phone"), Some("totp"))
    );
    let spare = j["secret"].as_str().unwrap().to_string();
    let code = code_now(&spare);
    let s = ssh(&f, &sshd, &u, None, PASSWORD, &code);
    assert!(s.logged_in_as(&u), "{}\n{}", s.transcript, sshd.log());
    assert!(
        logged(
            &log,
            "accepted verification code from authenticator \"spare phone\"",
            &u
        ),
        "{:?}",
        log.lines(&[])
    );
    let s = ssh(&f, &sshd, &u, None, PASSWORD, &code);
    assert!(!s.logged_in_as(&u), "replayed: {}", s.transcript);
    let s = ssh(&f, &sshd, &u, None, PASSWORD, &code_now(&first));
    assert!(s.logged_in_as(&u), "{}", s.transcript);
}

/// What malware running as the user does: reads the user's secret file, if it can, and makes
/// the code with oathtool; else it can only guess.
fn code_as_malware_makes_it(u: &TestUser) -> String {
    let script = "k=$(sed -n 's/^secret = \"\\([A-Z2-7]*\\)\"/\\1/p' \"$HOME/.config/pam-totp/secret.toml\" 2>/dev/null | head -n1); \
                  if [ -n \"$k\" ]; then oathtool --totp --base32 \"$k\"; else echo 000000; fi";
    let out = Command::new("runuser")
        .args(["-l", &u.name, "-c", script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The key in the home lets any process of the user through sudo's second factor; in the
/// vault it does not. The same attack, through the real sudo, both ways.
#[test]
fn a_process_of_the_user_passes_sudo_with_a_home_secret_but_not_with_the_vault() {
    // Before: keys in the home.
    let f = Fixture::new();
    let (u, _) = enrolled_user(&f);
    let (pam_d, sudoers) = sudo_env(&f, &u, "");
    let log = LogSink::new(&f);
    let code = code_as_malware_makes_it(&u);
    let s = sudo(&f, &pam_d, &sudoers, &u, &code, &log);
    assert!(
        s.transcript.contains("SUDO-AS-root"),
        "the attack works on a home file: {}",
        s.transcript
    );

    // After: the same user's keys in the vault (root enrolls them there).
    let f = Fixture::new();
    std::fs::write(f.root.join("pam_totp.conf"), "key_store = \"vault\"\n").unwrap();
    std::fs::DirBuilder::new().mode(0o700).create(f.state_dir()).unwrap();
    let u = TestUser::create();
    u.set_password(PASSWORD);
    let j = f.enroll_json(&u.name, &[]);
    let key = j["secret"].as_str().unwrap().to_string();
    assert!(!u.secret_path().exists());
    let (pam_d, sudoers) = sudo_env(&f, &u, "");
    let log = LogSink::new(&f);
    let code = code_as_malware_makes_it(&u);
    assert_ne!(code, code_now(&key));
    let s = sudo(&f, &pam_d, &sudoers, &u, &code, &log);
    assert!(
        !s.transcript.contains("SUDO-AS-root") && s.exit != 0,
        "{}",
        s.transcript
    );
    // The owner, with their phone, still gets through.
    let s = sudo(&f, &pam_d, &sudoers, &u, &code_now(&key), &log);
    assert!(s.transcript.contains("SUDO-AS-root"), "{}", s.transcript);
}

/// An ssh login as [`ssh_login`] makes it, at the client's default `LogLevel INFO` (where
/// `ssh` prints the instruction of an info request: the PAM messages of a refusal).
fn ssh_as_users_run_it(
    f: &Fixture,
    sshd: &Sshd,
    u: &TestUser,
    key: Option<&Path>,
    password: &str,
    code: &str,
) -> Session {
    let args: Vec<String> = ssh_args(sshd.port, &u.name, key)
        .into_iter()
        .map(|a| {
            if a == "LogLevel=ERROR" {
                "LogLevel=INFO".into()
            } else {
                a
            }
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    expect_session(
        f,
        &args,
        &[("Password: ?", password), ("Verification code: ?", code)],
        &[],
        None,
    )
}

/// What the user is told for keys that fail a check; for an enrolled user's missing keys.
const KEYS_UNUSABLE: &str =
    "Sign-in refused: your two-factor keys on this host failed a safety check or cannot be read. Ask an administrator to check them";
const KEYS_MISSING: &str =
    "Your two-factor secret is missing on this host. Ask an administrator to reset your enrollment.";

#[test]
fn ssh_refusals_before_the_code_prompt_say_why() {
    let f = Fixture::new();
    let (log, sshd) = sshd_with_pam(
        &f,
        &password_then_code(&f, ""),
        "AuthenticationMethods keyboard-interactive",
    );
    let refused_saying = |u: &TestUser, what: &str, logged_line: &str| {
        let s = ssh_as_users_run_it(&f, &sshd, u, None, PASSWORD, "000000");
        assert!(!s.logged_in_as(u), "{}", s.transcript);
        assert!(!s.transcript.contains("Verification code"), "{}", s.transcript);
        assert!(s.transcript.contains(what), "{what}: {}", s.transcript);
        assert!(s.transcript.contains("Permission denied"), "{}", s.transcript);
        assert!(logged(&log, logged_line, u), "{:?}", log.lines(&[]));
        // Nothing of the host: no path, no mode. (The user's random name and the port are
        // taken out first: a name such as `ptt60654bcc` holds "06" and "064".)
        let said = s
            .transcript
            .replace(&u.name, "USER")
            .replace(&sshd.port.to_string(), "PORT");
        assert!(
            !said.contains(".config")
                && !said.contains("/var/lib")
                && !["0640", "0644", "640", "644", "mode"].iter().any(|m| said.contains(m)),
            "{}",
            s.transcript
        );
        // Without the password: the code line is never reached, and nothing is said.
        let s = ssh_as_users_run_it(&f, &sshd, u, None, "not-the-password", "000000");
        assert!(!s.logged_in_as(u) && !s.transcript.contains(what), "{}", s.transcript);
    };

    // A secret file in the home that its group can read.
    let (readable, secret) = enrolled_user(&f);
    let s = ssh(&f, &sshd, &readable, None, PASSWORD, &code_now(&secret));
    assert!(s.logged_in_as(&readable), "{}", s.transcript);
    std::fs::set_permissions(readable.secret_path(), std::fs::Permissions::from_mode(0o640)).unwrap();
    refused_saying(&readable, KEYS_UNUSABLE, "is accessible by group or others");

    // An enrolled user (per the state) whose secret file is gone.
    let (gone, secret) = enrolled_user(&f);
    let s = ssh(&f, &sshd, &gone, None, PASSWORD, &code_now(&secret));
    assert!(s.logged_in_as(&gone), "{}", s.transcript);
    std::fs::remove_file(gone.secret_path()).unwrap();
    refused_saying(&gone, KEYS_MISSING, "is missing but this user enrolled on");

    // Keys in the vault (key_store = "vault"): a vault file with a wrong mode.
    std::fs::write(f.root.join("pam_totp.conf"), "key_store = \"vault\"\n").unwrap();
    let (in_vault, _) = enrolled_user(&f);
    let v = f.state_dir().join("vault").join(format!("{}.toml", in_vault.name));
    assert!(v.exists() && !in_vault.secret_path().exists());
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused_saying(&in_vault, KEYS_UNUSABLE, "is accessible by group or others");
}

#[test]
fn ssh_key_then_code_says_why_after_the_key() {
    let f = Fixture::new();
    let (log, sshd) = sshd_with_pam(
        &f,
        &format!("auth required {}", f.module("")),
        "PubkeyAuthentication yes\nAuthenticationMethods publickey,keyboard-interactive",
    );
    let (u, _secret) = enrolled_user(&f);
    let key = authorized_key(&f, &u);
    std::fs::set_permissions(u.secret_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    // No password module in this stack: sshd's SSH_AUTH_INFO_0 says the key was accepted.
    let s = ssh_as_users_run_it(&f, &sshd, &u, Some(&key), "unused", "000000");
    assert!(!s.logged_in_as(&u), "{}", s.transcript);
    assert!(s.transcript.contains(KEYS_UNUSABLE), "{}", s.transcript);
    assert!(
        logged(&log, "is accessible by group or others", &u),
        "{:?}",
        log.lines(&[])
    );
}
