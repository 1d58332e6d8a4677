//! The login flow with a scripted conversation, a fixed clock and a fake user database.

use super::*;
use crate::account::{Account, Accounts};
use crate::clock::FixedClock;
use crate::error::Error;
use crate::otp::backup;
use crate::otp::{totp_at_step, Params};
use crate::state::store::FileStore;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

const KEY_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const KEY: &[u8] = b"12345678901234567890";
const NOW: u64 = 1_800_000_000;

#[derive(Default, Debug)]
struct FakeHost {
    answers: Vec<Result<String, ConvError>>,
    prompts: Vec<String>,
    errors: Vec<String>,
    infos: Vec<String>,
    logs: Vec<(Level, String)>,
    authtok: Option<String>,
    kept: Option<KeptCode>,
    /// `SSH_AUTH_INFO_0` in the PAM environment.
    ssh_auth_info: Option<String>,
}

impl Host for FakeHost {
    fn prompt_hidden(&mut self, text: &str) -> Result<Zeroizing<String>, ConvError> {
        self.prompts.push(text.to_string());
        if self.answers.is_empty() {
            return Err(ConvError);
        }
        self.answers.remove(0).map(Zeroizing::new)
    }
    fn error_msg(&mut self, text: &str) {
        self.errors.push(text.to_string());
    }
    fn info_msg(&mut self, text: &str) {
        self.infos.push(text.to_string());
    }
    fn set_authtok(&mut self, password: &str) -> Result<(), ConvError> {
        self.authtok = Some(password.to_string());
        Ok(())
    }
    fn keep_code(&mut self, kept: Option<KeptCode>) -> Result<(), ConvError> {
        self.kept = kept;
        Ok(())
    }
    fn take_kept_code(&mut self) -> Option<KeptCode> {
        self.kept.take()
    }
    fn log(&mut self, level: Level, msg: &str) {
        self.logs.push((level, msg.to_string()));
    }
    fn pam_env(&self, name: &str) -> Option<String> {
        (name == "SSH_AUTH_INFO_0")
            .then(|| self.ssh_auth_info.clone())
            .flatten()
    }
}

struct FakeAccounts(Account);
impl Accounts for FakeAccounts {
    fn lookup(&self, name: &str) -> Result<Option<Account>, Error> {
        // Matches loosely, as SSSD with case_sensitive = false does: every spelling of the
        // name reaches the one account, whose own name is lower case.
        Ok(name.eq_ignore_ascii_case(&self.0.name).then(|| self.0.clone()))
    }
}

struct Env {
    root: PathBuf,
    accounts: FakeAccounts,
    args: Vec<String>,
}

impl Env {
    fn new() -> Env {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).unwrap();
        let root = std::env::temp_dir().join(format!("pam-totp-login-{}", u64::from_le_bytes(b)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(root.join("home/.config/pam-totp"))
            .unwrap();
        std::fs::write(root.join("pam_totp.conf"), "").unwrap();
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(root.join("pam.d"))
            .unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let account = Account {
            name: "alice".into(),
            uid: me,
            gid: nix::unistd::getegid().as_raw(),
            home: root.join("home"),
        };
        let args = vec![
            format!("config={}", root.join("pam_totp.conf").display()),
            format!("state_dir={}", root.join("state").display()),
        ];
        Env {
            root,
            accounts: FakeAccounts(account),
            args,
        }
    }

    fn secret_path(&self) -> PathBuf {
        self.root.join("home/.config/pam-totp/secret.toml")
    }

    fn enroll(&self, backup_codes: &[&str]) {
        let hashes: Vec<String> = backup_codes
            .iter()
            .map(|c| format!("\"{}\"", backup::hash(&backup::normalize(c).unwrap()).unwrap()))
            .collect();
        let text = format!(
            "version = 1\nsecret = \"{KEY_B32}\"\nbackup_codes = [{}]\n",
            hashes.join(",")
        );
        std::fs::write(self.secret_path(), text).unwrap();
        std::fs::set_permissions(self.secret_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn run(&self, extra: &[&str], answers: &[&str], now: u64) -> (Outcome, FakeHost) {
        self.run_as("alice", extra, answers, now, Some("192.0.2.7"))
    }

    fn run_as(
        &self,
        user: &str,
        extra: &[&str],
        answers: &[&str],
        now: u64,
        rhost: Option<&str>,
    ) -> (Outcome, FakeHost) {
        let host = FakeHost {
            answers: answers.iter().map(|a| Ok(a.to_string())).collect(),
            ..Default::default()
        };
        self.run_host(host, user, extra, answers, now, rhost)
    }

    fn run_host(
        &self,
        mut host: FakeHost,
        user: &str,
        extra: &[&str],
        answers: &[&str],
        now: u64,
        rhost: Option<&str>,
    ) -> (Outcome, FakeHost) {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        let pam_dir = self.root.join("pam.d");
        let req = Request {
            user,
            service: "sshd",
            rhost,
            args: &args,
            pam_dir: Some(&pam_dir),
        };
        let out = authenticate(&mut host, &self.accounts, &FixedClock(now), &req);
        for (_, line) in &host.logs {
            assert!(!line.contains(KEY_B32), "secret in log: {line}");
            for a in answers.iter().filter(|a| a.len() >= 6) {
                assert!(!line.contains(a), "answer in log: {line}");
            }
        }
        (out, host)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn code(now: u64) -> String {
    totp_at_step(KEY, now / 30, &Params::DEFAULT).to_string()
}

#[test]
fn right_code_is_accepted_with_default_prompt() {
    let env = Env::new();
    env.enroll(&[]);
    let (out, host) = env.run(&[], &[&code(NOW)], NOW);
    assert_eq!(out, Outcome::Accepted(Accepted::Totp));
    assert_eq!(host.prompts, vec!["Verification code: "]);
    assert!(host.logs.iter().any(
        |(_, l)| l.contains("accepted verification code") && l.contains("user=alice service=sshd rhost=192.0.2.7")
    ));
}

#[test]
fn same_code_twice_is_a_replay() {
    let env = Env::new();
    env.enroll(&[]);
    assert_eq!(env.run(&[], &[&code(NOW)], NOW).0, Outcome::Accepted(Accepted::Totp));
    let (out, host) = env.run(&[], &[&code(NOW)], NOW + 5);
    assert_eq!(out, Outcome::Replay);
    assert_eq!(
        host.errors,
        vec!["That code has already been used. Wait for the next one."]
    );
}

#[test]
fn not_enrolled_is_refused_by_default_and_ignored_with_nullok() {
    let env = Env::new();
    let (out, host) = env.run(&[], &["123456"], NOW);
    assert_eq!(out, Outcome::NotEnrolled);
    assert!(host.prompts.is_empty());
    assert_eq!(env.run(&["nullok"], &[], NOW).0, Outcome::NotEnrolledAllowed);
}

#[test]
fn nullok_does_not_cover_a_broken_secret_file() {
    let env = Env::new();
    std::fs::write(env.secret_path(), "garbage").unwrap();
    std::fs::set_permissions(env.secret_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let (out, host) = env.run(&["nullok"], &[], NOW);
    assert_eq!(out, Outcome::BadSecretFile);
    assert!(
        host.logs
            .iter()
            .any(|(l, m)| *l == Level::Err && m.contains("malformed")),
        "{:?}",
        host.logs
    );
    assert!(
        host.logs.iter().all(|(_, m)| !m.contains("garbage")),
        "file content must not be logged"
    );
}

#[test]
fn readable_secret_file_is_refused_with_the_fix_in_the_log() {
    let env = Env::new();
    env.enroll(&[]);
    std::fs::set_permissions(env.secret_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, host) = env.run(&[], &[&code(NOW)], NOW);
    assert_eq!(out, Outcome::BadSecretFile);
    assert!(
        host.logs.iter().any(|(_, m)| m.contains("chmod 600")),
        "{:?}",
        host.logs
    );
}

#[test]
fn enforce_after_lets_unenrolled_users_in_until_the_date() {
    let env = Env::new();
    let (out, host) = env.run(
        &["enforce_after=2027-03-01"],
        &[],
        Date::parse("2027-02-28").unwrap().start_unix() + 86399,
    );
    assert_eq!(out, Outcome::NotEnrolledAllowed);
    assert!(host.infos[0].contains("mandatory on 2027-03-01"), "{:?}", host.infos);
    let (out, _) = env.run(
        &["enforce_after=2027-03-01", "nullok"],
        &[],
        Date::parse("2027-03-01").unwrap().start_unix(),
    );
    assert_eq!(
        out,
        Outcome::NotEnrolled,
        "from the date on, even nullok does not let them in"
    );
}

#[test]
fn bad_option_refuses_the_login() {
    let env = Env::new();
    env.enroll(&[]);
    for bad in ["window=abc", "frobnicate", "window=99"] {
        let (out, host) = env.run(&[bad], &[&code(NOW)], NOW);
        assert_eq!(out, Outcome::BadConfig, "{bad}");
        assert!(host.prompts.is_empty());
        assert!(host.logs.iter().any(|(l, _)| *l == Level::Err));
    }
}

#[test]
fn unusable_state_dir_refuses_the_login() {
    let env = Env::new();
    env.enroll(&[]);
    std::fs::write(env.root.join("notadir"), "").unwrap();
    let arg = format!("state_dir={}", env.root.join("notadir").display());
    let (out, _) = env.run(&[&arg], &[&code(NOW)], NOW);
    assert_eq!(out, Outcome::StateUnavailable);
    let arg = format!("state_dir={}", env.root.join("missing/parent/dir").display());
    assert_eq!(env.run(&[&arg], &[&code(NOW)], NOW).0, Outcome::StateUnavailable);
}

#[test]
fn lockout_is_announced_with_its_duration_and_holds_against_the_right_code() {
    let env = Env::new();
    env.enroll(&[]);
    for _ in 0..5 {
        assert_eq!(
            env.run(&["max_failures=6", "lockout=300"], &["000000"], NOW).0,
            Outcome::WrongCode
        );
    }
    let (out, host) = env.run(&["lockout=300"], &["000000"], NOW);
    assert_eq!(out, Outcome::WrongCode);
    assert_eq!(
        host.errors,
        vec!["Wrong verification code. Too many wrong verification codes: try again in 5 minutes."]
    );
    let (out, host) = env.run(&["lockout=300"], &[&code(NOW + 60)], NOW + 60);
    assert_eq!(out, Outcome::LockedOut);
    assert!(host.prompts.is_empty(), "no prompt while locked");
    assert_eq!(
        host.errors,
        vec!["Too many wrong verification codes. Try again in 4 minutes."]
    );
    assert_eq!(
        env.run(&["lockout=300"], &[&code(NOW + 300)], NOW + 300).0,
        Outcome::Accepted(Accepted::Totp)
    );
}

#[test]
fn backup_code_is_accepted_once_and_tells_how_many_are_left() {
    let env = Env::new();
    env.enroll(&["7kq2m-x9d10", "abcde-fghjk"]);
    let (out, host) = env.run(&[], &["7kq2m-x9d10"], NOW);
    assert_eq!(out, Outcome::Accepted(Accepted::Backup));
    assert!(
        host.infos[0].starts_with("Backup code accepted. 1 backup code left"),
        "{:?}",
        host.infos
    );
    assert!(host
        .logs
        .iter()
        .any(|(_, m)| m.contains("accepted backup code, 1 left")));
    assert_eq!(env.run(&[], &["7kq2m-x9d10"], NOW + 100).0, Outcome::Replay);
}

impl Env {
    /// The documented forward_pass stack: the split line, a password module (`password`
    /// decides what it accepts) with use_first_pass, and the checking line. Returns the
    /// split line's outcome, the checking line's (None when the password module stopped the
    /// stack, as `requisite` does), and the host.
    fn run_split(
        &self,
        user: &str,
        extra: &[&str],
        answer: &str,
        password: &str,
        now: u64,
    ) -> (Outcome, Option<Outcome>, FakeHost) {
        let mut a_args = vec!["forward_pass"];
        a_args.extend_from_slice(extra);
        let host = FakeHost {
            answers: vec![Ok(answer.to_string())],
            ..Default::default()
        };
        let (a, mut host) = self.run_host(host, user, &a_args, &[answer], now, Some("192.0.2.7"));
        if host.authtok.as_deref() != Some(password) {
            return (a, None, host);
        }
        host.prompts.clear();
        let (b, host) = self.run_host(host, user, extra, &[], now, Some("192.0.2.7"));
        (a, Some(b), host)
    }

    fn failures(&self) -> u32 {
        FileStore::open(&self.root.join("state"), false)
            .unwrap()
            .peek("alice")
            .unwrap()
            .failures
    }
}

#[test]
fn forward_pass_splits_password_and_code() {
    let env = Env::new();
    env.enroll(&["7kq2m-x9d10"]);
    let c = code(NOW);
    let (a, b, host) = env.run_split("alice", &[], &format!("pass word 42{c}"), "pass word 42", NOW);
    assert_eq!(a, Outcome::Accepted(Accepted::Totp));
    assert_eq!(b, Some(Outcome::Accepted(Accepted::Totp)));
    assert!(host.prompts.is_empty(), "the checking line does not prompt");
    assert_eq!(host.authtok.as_deref(), Some("pass word 42"));
    let (a, b, _) = env.run_split("alice", &[], "hunter2-7kq2m-x9d10", "hunter2-", NOW + 30);
    assert_eq!(
        (a, b),
        (
            Outcome::Accepted(Accepted::Backup),
            Some(Outcome::Accepted(Accepted::Backup))
        )
    );
    let (a, b, host) = env.run_split("alice", &[], "hunter2000000", "hunter2", NOW + 60);
    assert_eq!(a, Outcome::WrongCode);
    assert_eq!(b, Some(Outcome::WrongCode), "decided again after the password");
    assert_eq!(
        host.errors,
        vec!["Wrong verification code."],
        "only the line after the password says why"
    );
    assert_eq!(env.failures(), 1);
}

#[test]
fn forward_pass_counts_wrong_codes_only_after_the_password_is_proven() {
    let env = Env::new();
    env.enroll(&[]);
    // Someone who knows only the user name: the password module stops the stack.
    for i in 0..20 {
        let (a, b, host) = env.run_split("alice", &[], &format!("guess{i}000000"), "the-real-password", NOW + i);
        assert_eq!((a, b), (Outcome::WrongCode, None));
        assert!(host.errors.is_empty(), "nothing tells them the code was wrong");
    }
    assert_eq!(env.failures(), 0, "no failure counted without the password");
    let (_, b, _) = env.run_split("alice", &[], &format!("pw{}", code(NOW + 30)), "pw", NOW + 30);
    assert_eq!(
        b,
        Some(Outcome::Accepted(Accepted::Totp)),
        "the user was not locked out"
    );
    // Someone with the password: the failures count and lock.
    for i in 0..6 {
        env.run_split("alice", &[], "pw000000", "pw", NOW + 100 + i);
    }
    let (a, b, host) = env.run_split("alice", &[], &format!("pw{}", code(NOW + 120)), "pw", NOW + 120);
    assert_eq!((a, b), (Outcome::LockedOut, Some(Outcome::LockedOut)));
    assert!(host.errors[0].starts_with("Too many wrong verification codes"));
}

#[test]
fn forward_pass_split_line_alone_still_refuses_a_wrong_code_and_spends_a_right_one() {
    let env = Env::new();
    env.enroll(&[]);
    assert_eq!(env.run(&["forward_pass"], &["pw000000"], NOW).0, Outcome::WrongCode);
    let right = format!("pw{}", code(NOW));
    assert_eq!(
        env.run(&["forward_pass"], &[&right], NOW).0,
        Outcome::Accepted(Accepted::Totp)
    );
    assert_eq!(env.run(&["forward_pass"], &[&right], NOW + 1).0, Outcome::Replay);
}

#[test]
fn forward_pass_asks_everyone_the_same_and_forwards_the_password_of_users_not_enrolled() {
    let env = Env::new();
    let (a, b, host) = env.run_split("alice", &["nullok"], "just-my-password", "just-my-password", NOW);
    assert_eq!((a, b), (Outcome::NotEnrolledAllowed, Some(Outcome::NotEnrolledAllowed)));
    assert_eq!(host.authtok.as_deref(), Some("just-my-password"));
    let (a, _, host) = env.run_split("nobody", &["nullok"], "whatever123456", "x", NOW);
    assert_eq!(a, Outcome::UnknownUser);
    assert_eq!(host.authtok.as_deref(), Some("whatever123456"));
    env.enroll(&[]);
    // Without the password, an enrolled user and an unknown name look the same.
    let (_, _, enrolled) = env.run_split("alice", &["nullok"], "pw000000", "the-real-one", NOW);
    let (_, _, unknown) = env.run_split("nobody", &["nullok"], "pw000000", "the-real-one", NOW);
    let a_prompt = |extra: &[&str], user: &str| {
        let host = FakeHost {
            answers: vec![Ok("x".into())],
            ..Default::default()
        };
        let mut args = vec!["forward_pass"];
        args.extend_from_slice(extra);
        env.run_host(host, user, &args, &["x"], NOW, None).1.prompts
    };
    assert_eq!(a_prompt(&["nullok"], "alice"), a_prompt(&["nullok"], "nobody"));
    assert_eq!(enrolled.errors, unknown.errors);
    // Nor does the split line tell someone without the password that a user has not
    // enrolled yet (the enforce_after warning comes from the line after the password).
    let (_, b, host) = env_unenrolled_warning();
    assert_eq!(b, None);
    assert!(host.infos.is_empty() && host.errors.is_empty(), "{host:?}");
}

fn env_unenrolled_warning() -> (Outcome, Option<Outcome>, FakeHost) {
    let env = Env::new();
    env.run_split("alice", &["enforce_after=2099-01-01"], "pw", "the-real-one", NOW)
}

#[test]
fn a_kept_code_for_another_user_is_refused() {
    let env = Env::new();
    env.enroll(&[]);
    let host = FakeHost {
        kept: Some(KeptCode {
            user: "mallory".into(),
            at: NOW,
            verdict: Kept::Accepted(Accepted::Totp),
        }),
        ..Default::default()
    };
    let (out, host) = env.run_host(host, "alice", &[], &[], NOW, None);
    assert_eq!(out, Outcome::UnknownUser);
    assert!(host.kept.is_none(), "taken, never left for another line");
}

#[test]
fn an_enrolled_user_whose_secret_file_is_gone_is_refused_even_under_nullok() {
    let env = Env::new();
    env.enroll(&[]);
    assert_eq!(
        env.run(&["nullok"], &[&code(NOW)], NOW).0,
        Outcome::Accepted(Accepted::Totp)
    );
    std::fs::rename(env.secret_path(), env.root.join("moved-away.toml")).unwrap();
    // Nothing proves the password was checked before this line: the user is not told.
    let (out, host) = env.run(&["nullok"], &[], NOW + 60);
    assert_eq!(out, Outcome::SecretMissing);
    assert!(host.errors.is_empty(), "{:?}", host.errors);
    env.pam_stack(PASSWORD_FIRST);
    for extra in [
        &["nullok"][..],
        &["enforce_after=2099-01-01"],
        &["enroll_on_login"],
        &[],
    ] {
        let (out, host) = env.run(extra, &[], NOW + 60);
        assert_eq!(out, Outcome::SecretMissing, "{extra:?}");
        assert!(host.errors[0].contains("Ask an administrator"), "{:?}", host.errors);
        assert!(host.logs.iter().any(|(_, l)| l.contains("pam-totp reset --user alice")));
    }
    // `reset` removes the state, and with it the record.
    FileStore::open(&env.root.join("state"), false)
        .unwrap()
        .remove("alice")
        .unwrap();
    assert_eq!(env.run(&["nullok"], &[], NOW + 60).0, Outcome::NotEnrolledAllowed);
}

#[test]
fn a_remembered_host_ends_with_the_enrollment_it_was_earned_with() {
    let env = Env::new();
    env.enroll(&["7kq2m-x9d10"]);
    assert_eq!(
        env.run(&["remember=3600"], &[&code(NOW)], NOW).0,
        Outcome::Accepted(Accepted::Totp)
    );
    assert_eq!(
        env.run(&["remember=3600"], &[], NOW + 10).0,
        Outcome::Accepted(Accepted::RememberedHost)
    );
    // New backup codes (as `backup-codes --regenerate` writes them): asked again.
    env.enroll(&["abcde-fghjk"]);
    assert_eq!(
        env.run(&["remember=3600"], &[], NOW + 20).0,
        Outcome::ConversationFailed,
        "a code is asked for again"
    );
    assert_eq!(
        env.run(&["remember=3600"], &[&code(NOW + 30)], NOW + 30).0,
        Outcome::Accepted(Accepted::Totp)
    );
    // A new key (enroll --force, import): asked again.
    let other = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    std::fs::write(env.secret_path(), format!("version = 1\nsecret = \"{other}\"\n")).unwrap();
    assert_eq!(
        env.run(&["remember=3600"], &[], NOW + 40).0,
        Outcome::ConversationFailed
    );
}

#[test]
fn cancelled_conversation_is_refused() {
    let env = Env::new();
    env.enroll(&[]);
    let (out, _) = env.run(&[], &[], NOW);
    assert_eq!(out, Outcome::ConversationFailed);
}

#[test]
fn unknown_and_invalid_user_names_are_refused() {
    let env = Env::new();
    env.enroll(&[]);
    for user in ["bob", "../alice", "alice\nfake log line", "", ".."] {
        let (out, host) = env.run_as(user, &[], &[&code(NOW)], NOW, None);
        assert_eq!(out, Outcome::UnknownUser, "{user:?}");
        assert!(
            host.logs.iter().all(|(_, m)| !m.contains('\n')),
            "log injection: {:?}",
            host.logs
        );
    }
}

#[test]
fn remembered_host_skips_the_prompt_only_for_that_host_and_service() {
    let env = Env::new();
    env.enroll(&[]);
    assert_eq!(
        env.run(&["remember=3600"], &[&code(NOW)], NOW).0,
        Outcome::Accepted(Accepted::Totp)
    );
    let (out, host) = env.run(&["remember=3600"], &[], NOW + 100);
    assert_eq!(out, Outcome::Accepted(Accepted::RememberedHost));
    assert!(host.prompts.is_empty());
    let (out, _) = env.run_as("alice", &["remember=3600"], &[], NOW + 100, Some("198.51.100.1"));
    assert_eq!(out, Outcome::ConversationFailed, "another host is asked for a code");
    let (out, _) = env.run_as("alice", &["remember=3600"], &[], NOW + 100, None);
    assert_eq!(out, Outcome::ConversationFailed, "no remote host, no remembering");
    assert_eq!(
        env.run(&["remember=3600"], &[], NOW + 3600).0,
        Outcome::ConversationFailed,
        "expired"
    );
}

#[test]
fn state_that_cannot_be_written_refuses_a_right_code() {
    let env = Env::new();
    env.enroll(&[]);
    // A directory where the temporary file of a new state file would go makes its atomic
    // write fail. (Writes into an existing file fail on a full or read-only disk: the
    // hardening tests run those.)
    let _ = std::fs::DirBuilder::new().mode(0o700).create(env.root.join("state"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(env.root.join("state/.alice.state.tmp"))
        .unwrap();
    let (out, host) = env.run(&[], &[&code(NOW + 30)], NOW + 30);
    assert_eq!(out, Outcome::StateUnavailable);
    assert!(
        host.logs.iter().any(|(_, m)| m.contains("could not record")),
        "{:?}",
        host.logs
    );
}

#[test]
fn outcome_helpers() {
    assert_eq!(human_duration(300), "5 minutes");
    assert_eq!(human_duration(61), "1 minute 1 second");
    assert_eq!(human_duration(0), "0 seconds");
    assert_eq!(human_duration(3600), "1 hour");
    assert_eq!(log_quote("a\nb c\u{1b}"), "a\\nb c\\u{1b}");
}

impl Env {
    fn pam_stack(&self, text: &str) {
        std::fs::write(self.root.join("pam.d/sshd"), text).unwrap();
        std::fs::set_permissions(self.root.join("pam.d/sshd"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

mod enroll_on_login;

#[test]
fn another_spelling_of_the_user_name_shares_the_accounts_replay_guard_and_lockout() {
    let env = Env::new();
    env.enroll(&[]);
    assert_eq!(env.run(&[], &[&code(NOW)], NOW).0, Outcome::Accepted(Accepted::Totp));
    let (out, host) = env.run_as("ALICE", &[], &[&code(NOW)], NOW + 5, None);
    assert_eq!(out, Outcome::Replay, "a code spent as alice is spent for ALICE");
    assert!(
        host.logs.iter().any(|(_, l)| l.contains("user=alice pam_user=ALICE")),
        "{:?}",
        host.logs
    );
    for _ in 0..6 {
        env.run_as("AliCE", &["max_failures=6"], &["000000"], NOW + 10, None);
    }
    assert_eq!(
        env.run(&[], &[&code(NOW + 60)], NOW + 60).0,
        Outcome::LockedOut,
        "wrong codes as AliCE locked out alice"
    );
    let st = std::fs::read_dir(env.root.join("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".state"))
        .collect::<Vec<_>>();
    assert_eq!(st, vec!["alice.state"], "one state file per account");
}

/// Rewrites the secret file while the prompt waits, then answers.
struct ChangingHost {
    inner: FakeHost,
    change: Box<dyn Fn()>,
    answer: String,
}

impl Host for ChangingHost {
    fn prompt_hidden(&mut self, text: &str) -> Result<Zeroizing<String>, ConvError> {
        self.inner.prompts.push(text.to_string());
        (self.change)();
        Ok(Zeroizing::new(self.answer.clone()))
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

#[test]
fn an_authenticator_removed_while_the_prompt_waits_no_longer_counts() {
    let env = Env::new();
    env.enroll(&["7kq2m-x9d10"]);
    let path = env.secret_path();
    let other = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let args: Vec<&str> = env.args.iter().map(String::as_str).collect();
    let run = |answer: String, replacement: String| {
        let p = path.clone();
        let mut host = ChangingHost {
            inner: FakeHost::default(),
            change: Box::new(move || std::fs::write(&p, &replacement).unwrap()),
            answer,
        };
        let pam_dir = env.root.join("pam.d");
        let req = Request {
            user: "alice",
            service: "sshd",
            rhost: None,
            args: &args,
            pam_dir: Some(&pam_dir),
        };
        authenticate(&mut host, &env.accounts, &FixedClock(NOW), &req)
    };
    // The phone is replaced (enroll --force, devices remove) during the prompt.
    let replaced = format!("version = 1\nsecret = \"{other}\"\n");
    assert_eq!(run(code(NOW), replaced.clone()), Outcome::WrongCode);
    // The backup codes are regenerated during the prompt.
    env.enroll(&["7kq2m-x9d10"]);
    let regenerated = format!("version = 1\nsecret = \"{KEY_B32}\"\nbackup_codes = []\n");
    assert_eq!(run("7kq2m-x9d10".into(), regenerated), Outcome::WrongCode);
}

/// Like FakeAccounts, with a password hash that a test can change.
struct ShadowAccounts(Account, std::cell::RefCell<Option<String>>);
impl Accounts for ShadowAccounts {
    fn lookup(&self, name: &str) -> Result<Option<Account>, Error> {
        Ok((name == self.0.name).then(|| self.0.clone()))
    }
    fn password_hash(&self, _: &str) -> Option<Zeroizing<String>> {
        self.1.borrow().clone().map(Zeroizing::new)
    }
}

#[test]
fn a_remembered_host_is_asked_again_once_the_password_changes() {
    let env = Env::new();
    env.enroll(&[]);
    let accounts = ShadowAccounts(env.accounts.0.clone(), std::cell::RefCell::new(Some("$y$old".into())));
    let mut args: Vec<&str> = env.args.iter().map(String::as_str).collect();
    args.push("remember=3600");
    let pam_dir = env.root.join("pam.d");
    let run = |answers: &[&str], now: u64| {
        let mut host = FakeHost {
            answers: answers.iter().map(|a| Ok(a.to_string())).collect(),
            ..Default::default()
        };
        let req = Request {
            user: "alice",
            service: "sshd",
            rhost: Some("192.0.2.7"),
            args: &args,
            pam_dir: Some(&pam_dir),
        };
        authenticate(&mut host, &accounts, &FixedClock(now), &req)
    };
    assert_eq!(run(&[&code(NOW)], NOW), Outcome::Accepted(Accepted::Totp));
    assert_eq!(run(&[], NOW + 10), Outcome::Accepted(Accepted::RememberedHost));
    *accounts.1.borrow_mut() = Some("$y$new".into());
    assert_eq!(
        run(&[], NOW + 20),
        Outcome::ConversationFailed,
        "a code is asked for again"
    );
    assert_eq!(run(&[&code(NOW + 30)], NOW + 30), Outcome::Accepted(Accepted::Totp));
    assert_eq!(run(&[], NOW + 40), Outcome::Accepted(Accepted::RememberedHost));
    let bytes = std::fs::read(env.root.join("state/alice.state")).unwrap();
    assert!(
        !bytes.windows(3).any(|w| w == b"$y$"),
        "the hash itself is never stored"
    );
}

/// sshd's stack with the password checked (requisite) before the code.
const PASSWORD_FIRST: &str = "auth requisite pam_unix.so\nauth required pam_totp.so\n";

#[test]
fn a_refusal_before_the_prompt_says_why_only_where_the_password_was_proven_first() {
    let env = Env::new();
    env.enroll(&[]);
    std::fs::set_permissions(env.secret_path(), std::fs::Permissions::from_mode(0o640)).unwrap();
    // pam_totp first (or alone): a caller without the password learns nothing new.
    env.pam_stack("auth required pam_totp.so\nauth required pam_unix.so\n");
    let (out, host) = env.run(&[], &[], NOW);
    assert_eq!(out, Outcome::BadSecretFile);
    assert!(host.errors.is_empty() && host.prompts.is_empty(), "{host:?}");
    // Over SSH after a key (AuthenticationMethods publickey,keyboard-interactive): told.
    let host = FakeHost {
        ssh_auth_info: Some("publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE".into()),
        ..Default::default()
    };
    let (out, host) = env.run_host(host, "alice", &[], &[], NOW, None);
    assert_eq!(out, Outcome::BadSecretFile);
    assert_eq!(host.errors, vec![KEYS_UNUSABLE.to_string()]);
    // The password module stops the stack first: told, and only what to ask for.
    env.pam_stack(PASSWORD_FIRST);
    let (out, host) = env.run(&[], &[], NOW);
    assert_eq!(out, Outcome::BadSecretFile);
    assert_eq!(host.errors, vec![KEYS_UNUSABLE.to_string()]);
    assert!(!host.errors[0].contains("secret.toml") && !host.errors[0].contains("0640"));
    // Never on the forward_pass line, which runs before the password module.
    let (out, host) = env.run(&["forward_pass"], &["pw123456"], NOW);
    assert_eq!(out, Outcome::BadSecretFile);
    assert!(host.errors.is_empty(), "{host:?}");
}

#[test]
fn not_enrolled_a_bad_option_and_an_unusable_state_say_what_to_ask_for() {
    let env = Env::new();
    env.pam_stack(PASSWORD_FIRST);
    let (out, host) = env.run(&[], &[], NOW);
    assert_eq!(out, Outcome::NotEnrolled);
    assert_eq!(host.errors, vec![NOT_ENROLLED.to_string()]);
    // nullok lets them through, silently as before.
    let (out, host) = env.run(&["nullok"], &[], NOW);
    assert_eq!(out, Outcome::NotEnrolledAllowed);
    assert!(host.errors.is_empty(), "{host:?}");
    let (out, host) = env.run(&["lockout=5m"], &[], NOW);
    assert_eq!(out, Outcome::BadConfig);
    assert_eq!(host.errors, vec![BAD_CONFIG.to_string()]);
    let (out, host) = env.run(&["lockout=5m", "forward_pass"], &[], NOW);
    assert_eq!(out, Outcome::BadConfig);
    assert!(host.errors.is_empty(), "{host:?}");
    env.enroll(&[]);
    std::fs::write(env.root.join("state-file"), "").unwrap();
    let state = format!("state_dir={}", env.root.join("state-file").display());
    let (out, host) = env.run(&[&state], &[], NOW);
    assert_eq!(out, Outcome::StateUnavailable);
    assert_eq!(host.errors, vec![STATE_UNAVAILABLE.to_string()]);
}

#[test]
fn ssh_auth_info_counts_only_methods_that_prove_the_user() {
    assert!(ssh_method_succeeded("publickey ssh-ed25519 AAAA"));
    assert!(ssh_method_succeeded("password\n"));
    assert!(!ssh_method_succeeded(""));
    assert!(!ssh_method_succeeded("keyboard-interactive"));
    assert!(!ssh_method_succeeded("none"));
}
