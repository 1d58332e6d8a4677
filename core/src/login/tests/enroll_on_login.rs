//! `enroll_on_login`: the walk through enrollment at a login, behind a password that stops
//! the stack, and what it saves or refuses.

use super::*;

/// Answers the enrollment prompt with the code for the secret the module just showed.
struct EnrollingHost {
    inner: FakeHost,
    answer_with: fn(&str) -> String,
}

impl Host for EnrollingHost {
    fn prompt_hidden(&mut self, text: &str) -> Result<Zeroizing<String>, ConvError> {
        self.inner.prompts.push(text.to_string());
        if text.starts_with("Verification code from the app") {
            let shown = self.inner.infos.join("\n");
            return Ok(Zeroizing::new((self.answer_with)(&shown)));
        }
        Ok(Zeroizing::new(String::new()))
    }
    fn error_msg(&mut self, text: &str) {
        self.inner.error_msg(text)
    }
    fn info_msg(&mut self, text: &str) {
        self.inner.info_msg(text)
    }
    fn set_authtok(&mut self, p: &str) -> Result<(), ConvError> {
        self.inner.set_authtok(p)
    }
    fn keep_code(&mut self, kept: Option<KeptCode>) -> Result<(), ConvError> {
        self.inner.keep_code(kept)
    }
    fn take_kept_code(&mut self) -> Option<KeptCode> {
        self.inner.take_kept_code()
    }
    fn log(&mut self, level: Level, msg: &str) {
        self.inner.log(level, msg)
    }
}

fn code_for_shown_secret(shown: &str) -> String {
    let secret = shown.split("secret=").nth(1).unwrap().split('&').next().unwrap();
    let key = crate::otp::decode_base32(secret).unwrap();
    totp_at_step(&key, NOW / 30, &Params::DEFAULT).to_string()
}

fn enroll_run(env: &Env, answer_with: fn(&str) -> String) -> (Outcome, FakeHost) {
    let mut host = EnrollingHost {
        inner: FakeHost::default(),
        answer_with,
    };
    let mut args: Vec<&str> = env.args.iter().map(String::as_str).collect();
    args.push("enroll_on_login");
    let pam_dir = env.root.join("pam.d");
    let req = Request {
        user: "alice",
        service: "sshd",
        rhost: None,
        args: &args,
        pam_dir: Some(&pam_dir),
    };
    let out = authenticate(&mut host, &env.accounts, &FixedClock(NOW), &req);
    (out, host.inner)
}

#[test]
fn enroll_on_login_behind_a_requisite_password_saves_the_secret_and_spends_the_code() {
    let env = Env::new();
    std::fs::remove_dir(env.root.join("home/.config/pam-totp")).unwrap();
    env.pam_stack("auth requisite pam_unix.so\nauth required pam_totp.so enroll_on_login\n");
    let (out, host) = enroll_run(&env, code_for_shown_secret);
    assert_eq!(out, Outcome::Accepted(Accepted::EnrolledAtLogin), "{:?}", host.logs);
    assert!(
        host.infos[0].contains("Scan this QR code") && host.infos[0].contains('\u{2580}'),
        "QR shown first"
    );
    assert!(host.infos[1].contains("Backup codes"), "{:?}", host.infos);
    assert_eq!(
        host.prompts.last().unwrap(),
        "Press Enter once you have saved the backup codes: "
    );
    let saved = crate::files::secret_file::load_secret(
        &crate::files::secret_file::KeyFile::legacy(env.secret_path()),
        &env.accounts.0,
    )
    .unwrap()
    .unwrap();
    assert_eq!(saved.backup_codes.len(), 10);
    // The confirming code cannot be used again.
    let code = code_for_shown_secret(&host.infos[0]);
    assert_eq!(env.run(&[], &[&code], NOW).0, Outcome::Replay);
}

#[test]
fn enroll_on_login_is_not_offered_without_a_password_that_stops_the_stack() {
    for stack in [
        "auth required pam_unix.so\nauth required pam_totp.so\n",
        "auth required pam_totp.so\n",
        "",
    ] {
        let env = Env::new();
        env.pam_stack(stack);
        let (out, host) = enroll_run(&env, code_for_shown_secret);
        assert_eq!(out, Outcome::NotEnrolled, "{stack:?}");
        assert!(
            host.infos.is_empty() && host.prompts.is_empty(),
            "nothing shown: {:?}",
            host.infos
        );
        assert!(
            host.logs.iter().any(|(_, l)| l.contains("enroll_on_login not offered")),
            "{:?}",
            host.logs
        );
        assert!(!env.secret_path().exists());
    }
}

#[test]
fn enroll_on_login_saves_nothing_after_three_wrong_codes() {
    let env = Env::new();
    env.pam_stack("auth requisite pam_unix.so\nauth required pam_totp.so\n");
    let (out, host) = enroll_run(&env, |_| "000000".into());
    assert_eq!(out, Outcome::WrongCode);
    assert_eq!(host.prompts.len(), 3);
    assert!(!env.secret_path().exists());
    assert!(
        host.logs.iter().all(|(_, l)| !l.contains("secret=")),
        "no URI in the log"
    );
}

#[test]
fn enroll_on_login_with_an_unreadable_state_shows_and_writes_nothing() {
    let env = Env::new();
    env.pam_stack("auth requisite pam_unix.so\nauth required pam_totp.so\n");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(env.root.join("state"))
        .unwrap();
    std::fs::write(env.root.join("state/alice.state"), "not toml").unwrap();
    std::fs::set_permissions(
        env.root.join("state/alice.state"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (out, host) = enroll_run(&env, code_for_shown_secret);
    // The state is read first (it may record an enrollment whose file is missing).
    assert_eq!(out, Outcome::StateUnavailable);
    assert!(
        host.infos.is_empty() && host.prompts.is_empty(),
        "nothing shown: {:?}",
        host.infos
    );
    assert!(!env.secret_path().exists(), "no half enrollment");
    assert!(
        host.logs
            .iter()
            .any(|(_, l)| l.contains("no secret file, and the state cannot be read")),
        "{:?}",
        host.logs
    );
}
