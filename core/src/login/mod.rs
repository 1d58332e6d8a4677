//! One login attempt, start to finish: configuration, user, secret file, state, prompt,
//! decision, stored state, message and log line.
//!
//! Owns: the order of those steps and which [`Outcome`] each failure becomes. Everything
//! the host program provides (conversation, PAM items, syslog) comes through [`Host`], the
//! user database through [`Accounts`] and the time through [`Clock`], so every path is
//! unit-tested without PAM, root or the real clock.
//! Never: returns an accepting outcome on an error path; logs a code, secret or password.

pub mod verify;

use std::path::Path;

use zeroize::Zeroizing;

use crate::account::{resolve, Account, Accounts, Unresolved};
use crate::clock::Clock;
use crate::config::{expand_template, Config, Date, FORWARD_PASS_PROMPT};
use crate::files::secret::SecretFile;
use crate::files::secret_file::{load_secret, load_secret_stamped, secret_unchanged};
use crate::login::verify::{decide, Count, Decision, How, Policy};
use crate::state::any::AnyStore;
use crate::state::store::StateStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Err,
    Notice,
    Info,
    Debug,
}

/// The conversation with the user failed or was cancelled, or PAM refused an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvError;

/// What the module (or a test) provides around the core.
pub trait Host {
    /// Asks a question without echo; `Err` when the conversation fails or is cancelled.
    fn prompt_hidden(&mut self, text: &str) -> Result<Zeroizing<String>, ConvError>;
    fn error_msg(&mut self, text: &str);
    fn info_msg(&mut self, text: &str);
    /// Sets PAM_AUTHTOK for the modules after us (forward_pass).
    fn set_authtok(&mut self, password: &str) -> Result<(), ConvError>;
    /// Keeps (or with None, clears) what the forward_pass line leaves for the pam_totp line
    /// after the password module (PAM data of this handle).
    fn keep_code(&mut self, kept: Option<KeptCode>) -> Result<(), ConvError>;
    /// Takes (and clears) what a forward_pass line earlier in the stack kept.
    fn take_kept_code(&mut self) -> Option<KeptCode>;
    fn log(&mut self, level: Level, msg: &str);
}

/// What the `forward_pass` line leaves for the pam_totp line after the password module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCode {
    /// The account (canonical name) it was kept for.
    pub user: String,
    /// Unix seconds it was kept.
    pub at: u64,
    pub verdict: Kept,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Kept {
    /// The user had no secret file: the next line applies nullok/enforce_after (and says
    /// so), but does not enroll — enrollment through a forward_pass stack is not offered.
    NotEnrolled,
    /// The code was right and is spent; the next line only has to see that the password
    /// module let the user through.
    Accepted(Accepted),
    /// The code was not accepted and nothing was counted: the next line, reached only by
    /// someone who knows the password, decides it again and counts the failure.
    Pending(Zeroizing<String>),
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kept::Accepted(a) => f.debug_tuple("Accepted").field(a).finish(),
            Kept::NotEnrolled => f.write_str("NotEnrolled"),
            Kept::Pending(_) => f.write_str("Pending(<redacted>)"),
        }
    }
}

/// How long a kept code stays usable by the next pam_totp line (one pam_authenticate call
/// takes far less; this only stops a leftover from an earlier attempt in the same handle).
pub const KEPT_CODE_MAX_AGE: u64 = 300;

/// Where the module is called from.
#[derive(Debug)]
pub struct Request<'a> {
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: Option<&'a str>,
    pub args: &'a [&'a str],
    /// Where the service's PAM files are (`/etc/pam.d`), read to decide whether
    /// `enroll_on_login` is safe; None: never offer it.
    pub pam_dir: Option<&'a Path>,
}

/// How a login ended. The module maps each variant to a PAM return code in one `match`;
/// only `Accepted` may become PAM_SUCCESS and only `NotEnrolledAllowed` PAM_IGNORE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Accepted),
    /// No secret file, and `nullok` or a future `enforce_after` date lets the user through.
    NotEnrolledAllowed,
    NotEnrolled,
    WrongCode,
    Replay,
    LockedOut,
    UnknownUser,
    /// The secret file exists but failed a check or did not parse.
    BadSecretFile,
    /// No secret file, but the state records that this user enrolled: the file was removed
    /// or is not reachable (home not mounted). Refused even under nullok.
    SecretMissing,
    /// The state could not be read, locked or written.
    StateUnavailable,
    ConversationFailed,
    /// A module argument or config file setting is unknown or malformed.
    BadConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Totp,
    Hotp,
    Backup,
    RememberedHost,
    /// The user enrolled at this login (`enroll_on_login`) and confirmed a code.
    EnrolledAtLogin,
}

/// Quotes text from outside (user names, host names) for a log line: control characters
/// and non-ASCII are escaped so nobody can forge a second log line.
pub fn log_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().take(256) {
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// [`log_quote`] for our own longer messages (a reason naming a file and line): the same
/// escaping, up to 1024 characters.
fn log_quote_long(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().take(1024) {
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// "5 minutes", "1 minute 4 seconds", "30 seconds".
pub fn human_duration(secs: u64) -> String {
    let plural = |n: u64, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(plural(h, "hour"));
    }
    if m > 0 {
        parts.push(plural(m, "minute"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(plural(s, "second"));
    }
    parts.join(" ")
}

/// `user=NAME [pam_user=TYPED] service=S rhost=H`, every part quoted for the log.
fn who_line(user: &str, typed: Option<&str>, req: &Request<'_>) -> String {
    format!(
        "user={}{} service={} rhost={}",
        log_quote(user),
        typed.map(|t| format!(" pam_user={}", log_quote(t))).unwrap_or_default(),
        log_quote(req.service),
        req.rhost.map(log_quote).unwrap_or_else(|| "-".into())
    )
}

struct Ctx<'h, H: Host> {
    host: &'h mut H,
    who: String,
    debug: bool,
}

impl<H: Host> Ctx<'_, H> {
    fn log(&mut self, level: Level, what: &str) {
        let line = format!("{what} ({})", self.who);
        self.host.log(level, &line);
    }
    fn debug(&mut self, what: &str) {
        if self.debug {
            self.log(Level::Debug, what);
        }
    }
}

/// Runs one authentication. See [`Outcome`] for what can come out.
pub fn authenticate<H: Host>(host: &mut H, accounts: &dyn Accounts, clock: &dyn Clock, req: &Request<'_>) -> Outcome {
    let who = who_line(req.user, None, req);
    let mut cx = Ctx {
        host,
        who,
        debug: false,
    };

    let cfg = match Config::load(req.args, crate::files::fs::read_config) {
        Ok(c) => c,
        Err(e) => {
            cx.log(Level::Err, &format!("refused: {e}"));
            return Outcome::BadConfig;
        }
    };
    cx.debug = cfg.debug;
    cx.debug(&format!(
        "config {}: secret={} state_dir={} window={} max_failures={} lockout={} remember={}",
        cfg.config_path.display(),
        cfg.secret,
        cfg.state_dir.display(),
        cfg.window,
        cfg.max_failures,
        cfg.lockout,
        cfg.remember
    ));

    if cfg.forward_pass {
        return split_line(&mut cx, &cfg, accounts, clock, req);
    }
    // What a forward_pass line earlier in the stack left; taken (and so cleared) whether or
    // not it is used, so it can never serve twice.
    let kept = cx.host.take_kept_code();

    let Some(account) = account_for(&mut cx, accounts, req) else {
        return Outcome::UnknownUser;
    };
    if let Some(k) = &kept {
        if k.user != account.name {
            cx.log(
                Level::Err,
                "refused: the code kept by the forward_pass line was for another user",
            );
            return Outcome::UnknownUser;
        }
    }
    let kept = kept.filter(|k| clock.now().saturating_sub(k.at) <= KEPT_CODE_MAX_AGE);
    if let Some(KeptCode {
        verdict: Kept::Accepted(how),
        ..
    }) = &kept
    {
        cx.log(
            Level::Info,
            "accepted: the forward_pass line accepted the code and the password module after it let the user through",
        );
        return Outcome::Accepted(*how);
    }
    let after_split = kept.is_some();
    let pending = kept.and_then(|k| match k.verdict {
        Kept::Pending(code) => Some(code),
        Kept::Accepted(_) | Kept::NotEnrolled => None,
    });

    let path = expand_template(&cfg.secret, &account.name, &account.home);
    let (secret, stamp) = match load_secret_stamped(&path, &account) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let mode = if after_split { Mode::AfterSplit } else { Mode::Prompting };
            return not_enrolled(&mut cx, &cfg, req, &account, &path, clock, mode);
        }
        Err(e) => {
            cx.log(Level::Err, &format!("refused: secret file: {e}"));
            return Outcome::BadSecretFile;
        }
    };
    cx.debug(&format!(
        "secret file {} read ({} authenticator(s), {} backup codes)",
        path.display(),
        secret.devices.len(),
        secret.backup_codes.len()
    ));

    let store = match AnyStore::open(&cfg) {
        Ok(s) => s,
        Err(e) => {
            cx.log(Level::Err, &format!("refused: state directory: {e}"));
            return Outcome::StateUnavailable;
        }
    };
    mark_if_protected(&cfg, accounts, &account, &store);
    // The answer is decided against the file as it is once the user has answered: an
    // authenticator removed (or backup codes replaced) while the prompt waited — su and the
    // console never time out — must not let its code in. Every writer replaces the file
    // (a new inode) and an edit in place changes its size or times, so one lstat tells
    // whether it must be read again.
    let reload = || {
        if secret_unchanged(&path, &account, &stamp) {
            Ok(Reload::Unchanged)
        } else {
            load_secret(&path, &account).map(Reload::Changed)
        }
    };
    let password = remembered_password(&cfg, accounts, &account, req);
    let ctx = Prompting {
        secret: &secret,
        reload: &reload,
        user: &account.name,
        password: password.as_deref().map(|p| p.as_str()),
    };
    let outcome = check_and_prompt(&mut cx, &cfg, &ctx, &store, req, clock, pending);
    note_degraded(&mut cx, &store);
    outcome
}

/// `store_unavailable = "local"`: says in the log, on every login it happens to, that the
/// decision was made on this host's own state because the fleet store did not answer.
fn note_degraded<H: Host>(cx: &mut Ctx<'_, H>, store: &AnyStore) {
    if let Some(why) = store.degraded() {
        cx.log(
            Level::Err,
            &format!("degraded: decided on this host's own state (store_unavailable=local): {why}"),
        );
    }
}

/// Resolves the PAM user to its account (logging why not); from then on the log lines
/// name the account, and the typed spelling if it differs.
fn account_for<H: Host>(cx: &mut Ctx<'_, H>, accounts: &dyn Accounts, req: &Request<'_>) -> Option<Account> {
    // Everything from here on is keyed by the account's own name, never by the spelling
    // the client typed (see account.rs): one replay guard, lockout and secret per account.
    let account = match resolve(accounts, req.user) {
        Ok(a) => a,
        Err(Unresolved::Invalid) => {
            cx.log(Level::Notice, "refused: invalid user name");
            return None;
        }
        Err(Unresolved::Unknown) => {
            cx.log(Level::Notice, "refused: unknown user");
            return None;
        }
        Err(Unresolved::BadCanonicalName) => {
            cx.log(
                Level::Err,
                "refused: the user database returned an unusable account name",
            );
            return None;
        }
        Err(Unresolved::Lookup(e)) => {
            cx.log(Level::Err, &format!("refused: {e}"));
            return None;
        }
    };
    if account.name != req.user {
        cx.who = who_line(&account.name, Some(req.user), req);
        cx.log(
            Level::Info,
            "the PAM user name is another spelling of this account; using the account name",
        );
    }
    Some(account)
}

/// Where [`not_enrolled`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A line that prompts for the code itself.
    Prompting,
    /// The forward_pass line.
    Split,
    /// The line after the password module, behind a forward_pass line.
    AfterSplit,
}

fn not_enrolled<H: Host>(
    cx: &mut Ctx<'_, H>,
    cfg: &Config,
    req: &Request<'_>,
    account: &Account,
    path: &Path,
    clock: &dyn Clock,
    mode: Mode,
) -> Outcome {
    // On the forward_pass line nobody has proven the password yet: say nothing to the user
    // (the line after the password module repeats the decision and says it); neither line of
    // a forward_pass stack enrolls.
    let split_line = mode == Mode::Split;
    let say = |cx: &mut Ctx<'_, H>, error: bool, text: &str| match (split_line, error) {
        (true, _) => {}
        (false, true) => cx.host.error_msg(text),
        (false, false) => cx.host.info_msg(text),
    };
    // A user pam_totp has seen enrolled is never "not enrolled" again because the file is
    // gone: renaming it would otherwise undo a lockout under nullok, and a home that is not
    // mounted yet (pam_mount, ecryptfs) would skip the code. Only `pam-totp reset` clears it.
    let opened = AnyStore::open(cfg);
    let recorded = opened.as_ref().map_err(|e| e.to_string()).and_then(|st| {
        let r = st.peek(&account.name).map_err(|e| e.to_string());
        note_degraded(cx, st);
        // Whether this user enrolled decides whether a code is asked at all (nullok,
        // enforce_after, enroll_on_login): never answered from this host's own state while
        // the fleet is down. This host may never have seen an enrollment made elsewhere;
        // unknown refuses.
        match (r, st.degraded()) {
            (Ok(_), Some(why)) => Err(format!(
                "whether this user enrolled is the fleet's to say, and the fleet store is unavailable ({why})"
            )),
            (r, _) => r,
        }
    });
    match recorded {
        Err(e) => {
            cx.log(
                Level::Err,
                &format!("refused: no secret file, and the state cannot be read: {e}"),
            );
            return Outcome::StateUnavailable;
        }
        Ok(st) if st.enrolled > 0 => {
            say(
                cx,
                true,
                "Your two-factor secret is missing on this host. Ask an administrator to reset your enrollment.",
            );
            cx.log(
                Level::Err,
                &format!(
                    "refused: {} is missing but this user enrolled on {}; if the secret is really gone, `pam-totp reset --user {}` lets them enroll again",
                    path.display(),
                    Date::from_unix(st.enrolled),
                    log_quote(&account.name)
                ),
            );
            return Outcome::SecretMissing;
        }
        Ok(_) => {}
    }
    let now = clock.now();
    if let Some(date) = cfg.enforce_after {
        if Date::from_unix(now) < date {
            say(
                cx,
                false,
                &format!("Two-factor sign-in becomes mandatory on {date}. Run `pam-totp enroll` to set it up now."),
            );
            cx.log(
                Level::Notice,
                &format!("not enrolled; allowed until enforce_after={date}"),
            );
            return Outcome::NotEnrolledAllowed;
        }
    }
    if cfg.enroll_on_login && mode != Mode::Prompting {
        cx.log(
            Level::Notice,
            "enroll_on_login is not offered through a forward_pass stack (one answer carries the password and the code)",
        );
    } else if cfg.enroll_on_login {
        match password_gate(req) {
            Ok(()) => return enroll_at_login(cx, cfg, account, path, clock),
            // Anyone who knows the user name could otherwise enroll their own phone.
            Err(why) => cx.log(
                Level::Err,
                &format!("enroll_on_login not offered: {}", log_quote_long(&why)),
            ),
        }
    }
    if let Some(date) = cfg.enforce_after {
        cx.log(
            Level::Notice,
            &format!(
                "refused: not enrolled (no {}) and enforce_after={date} has passed",
                path.display()
            ),
        );
        return Outcome::NotEnrolled;
    }
    if cfg.nullok {
        cx.log(Level::Info, "not enrolled; allowed by nullok");
        return Outcome::NotEnrolledAllowed;
    }
    cx.log(Level::Notice, &format!("refused: not enrolled (no {})", path.display()));
    Outcome::NotEnrolled
}

/// Whether the service's auth stack (read from the root-owned PAM directory) provably stops
/// on a wrong password before every pam_totp line that checks codes: see
/// [`crate::pamstack::enrollment_gate_for`]. `Err` says why not, naming the line to change.
fn password_gate(req: &Request<'_>) -> Result<(), String> {
    let Some(dir) = req.pam_dir else {
        return Err("no PAM directory to read the stack from".into());
    };
    let read = |name: &str| -> Option<String> {
        if name.contains('/') || name.starts_with('.') {
            return None;
        }
        crate::files::fs::read_config(&dir.join(name)).ok().flatten()
    };
    crate::pamstack::enrollment_gate_for(req.service, &read)
}

/// `enroll_on_login`: show a new secret (QR code, key, URI), ask for a code from the app
/// (three tries), save the secret with the same writer as `pam-totp enroll`, record the
/// accepted step, and show the backup codes once, behind a last prompt so that every client
/// displays them (OpenSSH only forwards messages together with a prompt).
fn enroll_at_login<H: Host>(
    cx: &mut Ctx<'_, H>,
    cfg: &Config,
    account: &Account,
    path: &Path,
    clock: &dyn Clock,
) -> Outcome {
    let refuse = |cx: &mut Ctx<'_, H>, why: String| {
        cx.log(Level::Err, &format!("refused: enrollment at login failed: {why}"));
        Outcome::NotEnrolled
    };
    let store = match AnyStore::open(cfg) {
        Ok(s) => s,
        Err(e) => return refuse(cx, format!("state directory: {e}")),
    };
    // The state must be usable before anything is shown or written: the confirming code is
    // recorded there, and a secret saved without that record would be a half enrollment.
    match store.peek(&account.name) {
        Err(e) => return refuse(cx, format!("state: {e}")),
        // An enrollment kept on this host alone would be unknown to the fleet.
        Ok(_) if store.degraded().is_some() => {
            note_degraded(cx, &store);
            return refuse(cx, "the fleet store is unavailable".into());
        }
        Ok(st) if st.is_locked(clock.now()) => {
            cx.host.error_msg("Too many wrong verification codes. Try again later.");
            cx.log(Level::Notice, "refused: locked out (enrollment at login)");
            return Outcome::LockedOut;
        }
        Ok(_) => {}
    }
    // Nothing secret is shown before we know it can be saved.
    if let Err(e) = crate::files::secret_file::check_writable(path, account) {
        return refuse(cx, format!("cannot write the secret file: {e}"));
    }
    let Some(params) = crate::otp::Params::new(cfg.algorithm, cfg.digits, 30) else {
        return refuse(cx, "unsupported digits".into());
    };
    let issuer = crate::otp::enroll::default_issuer(cfg);
    let label = crate::otp::enroll::default_label(&account.name);
    // The first authenticator is named as `pam-totp enroll` names one by default.
    let device = match crate::otp::enroll::new_device(
        crate::otp::enroll::DEFAULT_DEVICE_NAME,
        crate::files::secret::Kind::Totp,
        params,
        &issuer,
        &label,
        clock.now(),
    ) {
        Ok(d) => d,
        Err(e) => return refuse(cx, e.to_string()),
    };
    let (secret, codes) = match crate::otp::enroll::new_secret(device, crate::otp::enroll::DEFAULT_BACKUP_CODES) {
        Ok(s) => s,
        Err(e) => return refuse(cx, e.to_string()),
    };
    let device = &secret.devices[0];
    let uri = crate::otp::enroll::otpauth_uri(device);
    let b32 = crate::otp::encode_base32(&device.key);
    let qr = crate::otp::qr::render(&uri, crate::otp::qr::QrMode::Utf8, false).unwrap_or_default();
    let intro = zeroize::Zeroizing::new(format!(
        "Two-factor sign-in is required for this account and you have not set it up yet.\n\
         Scan this QR code with your authenticator app (Google Authenticator, Microsoft Authenticator, FreeOTP, ...):\n\n\
         {qr}\nOr add the key by hand: {}  (time-based, {}, {} digits, every 30 seconds)\nURI: {}\n",
        crate::otp::enroll::grouped(&b32).as_str(),
        params.algorithm().name(),
        params.digits(),
        uri.as_str()
    ));
    cx.host.info_msg(&intro);
    cx.log(Level::Notice, "not enrolled; enrollment at login offered");

    let mut matched = None;
    for tries_left in (0..3).rev() {
        let Ok(answer) = cx.host.prompt_hidden("Verification code from the app: ") else {
            cx.log(Level::Notice, "refused: enrollment at login cancelled");
            return Outcome::ConversationFailed;
        };
        let digits: zeroize::Zeroizing<String> =
            zeroize::Zeroizing::new(answer.chars().filter(|c| !c.is_whitespace()).collect());
        let now = clock.now();
        if digits.len() == params.digits() as usize {
            matched = crate::otp::find_step(&device.key, &digits, params.step_at(now), cfg.window, &params);
        }
        if matched.is_some() {
            break;
        }
        if tries_left > 0 {
            cx.host
                .error_msg("That code does not match. Codes change every 30 seconds: type the one shown now.");
        }
    }
    let Some(step) = matched else {
        cx.host.error_msg(
            "The code did not match three times; nothing was saved. Check that the phone sets its time automatically.",
        );
        cx.log(
            Level::Notice,
            "refused: enrollment at login not confirmed (3 wrong codes)",
        );
        return Outcome::WrongCode;
    };
    if let Err(e) = crate::files::secret_file::save_secret(path, account, &secret, false) {
        return refuse(cx, format!("could not save the secret: {e}"));
    }
    // The confirming code is spent like any accepted code.
    let now = clock.now();
    if let Err(e) = store.update(&account.name, |st| {
        st.spend_step(&device.guard_key(), step, params.period(), now);
        st.record_success(now);
    }) {
        return refuse(cx, format!("could not record the attempt: {e}"));
    }
    note_degraded(cx, &store);
    let list = zeroize::Zeroizing::new(format!(
        "Two-factor sign-in is set up. Backup codes (each works once, if you lose your phone; they are not shown again):\n\n{}",
        crate::otp::enroll::backup_code_lines(&codes).as_str()
    ));
    cx.host.info_msg(&list);
    // The answer does not matter; the prompt makes every client show the codes.
    let _ = cx
        .host
        .prompt_hidden("Press Enter once you have saved the backup codes: ");
    cx.log(
        Level::Notice,
        &format!(
            "enrolled at login: secret file {} written, {} backup codes issued",
            path.display(),
            codes.len()
        ),
    );
    Outcome::Accepted(Accepted::EnrolledAtLogin)
}

/// Splits "password + code" into (password, code) by syntax alone — never by trying which
/// split holds a right code: the code must be decided on the one split whose password the
/// password module then checks, or someone with the password could test codes on a split
/// whose password part is wrong, where no failure is ever counted. The rule:
/// an answer ending in a backup code `xxxxx-xxxxx` (with its hyphen) splits there; else at
/// `digits` (the longest code length the user's authenticators use whose characters at the
/// end are all digits, else the shortest). Not supported here: backup codes typed without the
/// hyphen, and 8-digit imported scratch codes for users with 6-digit codes (ambiguous with a
/// password ending in digits) — they work where the code has its own prompt.
fn forward_pass_split(answer: &str, digits: usize) -> (&str, &str) {
    let n = answer.len();
    let tail = |k: usize| (n >= k && answer.is_char_boundary(n - k)).then(|| answer.split_at(n - k));
    if let Some((pw, code)) = tail(11) {
        let b = code.as_bytes();
        let crockford = |c: &u8| c.is_ascii_alphanumeric() && !matches!(c.to_ascii_lowercase(), b'u');
        if b[5] == b'-' && b[..5].iter().all(crockford) && b[6..].iter().all(crockford) {
            return (pw, code);
        }
    }
    tail(digits).unwrap_or((answer, ""))
}

/// The code length to split at for `secret`'s authenticators: the longest one whose
/// characters at the end of `answer` are all digits, else the shortest.
fn split_digits(answer: &str, secret: &SecretFile) -> usize {
    let mut sorted = secret.digit_counts();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let all_digits =
        |d: usize| answer.len() >= d && answer.as_bytes()[answer.len() - d..].iter().all(u8::is_ascii_digit);
    sorted
        .iter()
        .copied()
        .find(|&d| all_digits(d))
        .unwrap_or_else(|| sorted.iter().copied().min().unwrap_or(6))
}

/// The forward_pass line: one prompt for password and code, the same for every user
/// (enrolled or not, known or not, so the prompt tells nobody who has enrolled); the
/// password part becomes PAM_AUTHTOK for the password module after us (`use_first_pass`).
/// A right code is spent here. A wrong one is NOT counted — nobody has proven the password
/// yet, and counting here would let anyone who knows a user name lock them out — but kept
/// for the pam_totp line after the password module, which counts it. Nothing is shown to the
/// user here; that line says why a code was refused.
fn split_line<H: Host>(
    cx: &mut Ctx<'_, H>,
    cfg: &Config,
    accounts: &dyn Accounts,
    clock: &dyn Clock,
    req: &Request<'_>,
) -> Outcome {
    // Leftovers of an earlier attempt in the same PAM handle must not reach the next line.
    let _ = cx.host.keep_code(None);
    let Ok(answer) = cx.host.prompt_hidden(FORWARD_PASS_PROMPT) else {
        cx.log(Level::Notice, "refused: conversation failed or was cancelled");
        return Outcome::ConversationFailed;
    };
    // Users without a code typed only their password.
    let whole = |cx: &mut Ctx<'_, H>, outcome: Outcome| {
        if cx.host.set_authtok(&answer).is_err() {
            cx.log(Level::Err, "refused: could not set PAM_AUTHTOK for forward_pass");
            return Outcome::ConversationFailed;
        }
        outcome
    };
    let Some(account) = account_for(cx, accounts, req) else {
        return whole(cx, Outcome::UnknownUser);
    };
    let path = expand_template(&cfg.secret, &account.name, &account.home);
    let secret = match load_secret(&path, &account) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = cx.host.keep_code(Some(KeptCode {
                user: account.name.clone(),
                at: clock.now(),
                verdict: Kept::NotEnrolled,
            }));
            let outcome = not_enrolled(cx, cfg, req, &account, &path, clock, Mode::Split);
            return whole(cx, outcome);
        }
        Err(e) => {
            cx.log(Level::Err, &format!("refused: secret file: {e}"));
            return whole(cx, Outcome::BadSecretFile);
        }
    };
    let store = match AnyStore::open(cfg) {
        Ok(s) => s,
        Err(e) => {
            cx.log(Level::Err, &format!("refused: state directory: {e}"));
            return whole(cx, Outcome::StateUnavailable);
        }
    };
    mark_if_protected(cfg, accounts, &account, &store);
    let (pw_part, code_part) = forward_pass_split(&answer, split_digits(&answer, &secret));
    let rhost = req.rhost.filter(|h| !h.is_empty());
    let now = clock.now();
    let password = remembered_password(cfg, accounts, &account, req);
    let result = store.update(&account.name, |st| {
        let key = st.remember_key(&account.name, &secret, password.as_deref().map(|p| p.as_str()));
        let local = store.decides_locally();
        let (d, i) = decide(&policy(cfg, local), &secret, st, &[code_part], now, Count::Nothing);
        // A remembered host does not get past a lockout, nor is it honoured from this
        // host's own state while the fleet is down.
        let remembered = !matches!(d, Decision::LockedOut { .. })
            && !local
            && cfg.remember > 0
            && rhost.is_some_and(|h| st.is_remembered(h, req.service, &key, now, cfg.remember));
        if let (Decision::Accepted(_), true, Some(h)) = (&d, cfg.remember > 0, rhost) {
            st.remember(h, req.service, &key, now.saturating_add(cfg.remember), now);
        }
        (d, i, remembered)
    });
    note_degraded(cx, &store);
    let keep = |cx: &mut Ctx<'_, H>, verdict: Kept| {
        cx.host
            .keep_code(Some(KeptCode {
                user: account.name.clone(),
                at: now,
                verdict,
            }))
            .is_ok()
    };
    let (pw, outcome) = match result {
        Err(e) => {
            cx.log(Level::Err, &format!("refused: could not record the attempt: {e}"));
            return whole(cx, Outcome::StateUnavailable);
        }
        Ok((Decision::Accepted(how), _, _)) => {
            let what = describe_accepted(&how);
            let how = match how {
                How::Totp { .. } => Accepted::Totp,
                How::Hotp { .. } => Accepted::Hotp,
                How::Backup { .. } => Accepted::Backup,
            };
            if !keep(cx, Kept::Accepted(how)) {
                cx.log(
                    Level::Err,
                    "refused: could not keep the verdict for the next pam_totp line",
                );
                return Outcome::ConversationFailed;
            }
            cx.log(
                Level::Info,
                &format!("accepted {what} at the forward_pass line; the password is checked next"),
            );
            (pw_part, Outcome::Accepted(how))
        }
        Ok((_, _, true)) => {
            if !keep(cx, Kept::Accepted(Accepted::RememberedHost)) {
                cx.log(
                    Level::Err,
                    "refused: could not keep the verdict for the next pam_totp line",
                );
                return Outcome::ConversationFailed;
            }
            cx.log(Level::Info, "accepted: remembered host, no code needed (forward_pass)");
            return whole(cx, Outcome::Accepted(Accepted::RememberedHost));
        }
        Ok((d, _, false)) => {
            // The most likely split: the last `digits` characters are the code.
            let code = Zeroizing::new(code_part.to_string());
            if !keep(cx, Kept::Pending(code)) {
                cx.log(
                    Level::Err,
                    "refused: could not keep the code for the next pam_totp line",
                );
                return Outcome::ConversationFailed;
            }
            cx.log(
                Level::Info,
                "code not accepted at the forward_pass line; not counted until the password is verified (the next pam_totp line decides)",
            );
            let outcome = match d {
                Decision::Replay { .. } => Outcome::Replay,
                Decision::LockedOut { .. } => Outcome::LockedOut,
                _ => Outcome::WrongCode,
            };
            (pw_part, outcome)
        }
    };
    if cx.host.set_authtok(pw).is_err() {
        cx.log(Level::Err, "refused: could not set PAM_AUTHTOK for forward_pass");
        return Outcome::ConversationFailed;
    }
    outcome
}

/// An authenticator name inside `"..."` in a log line: only letters, digits, space and
/// `-_.,:@+#/` pass; anything else (quotes, parentheses, `=`, control and non-ASCII
/// characters) is escaped, so a name such as `p") (user=root` can neither end the quotes nor
/// put a `(user=...` field into the line.
fn log_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().take(64) {
        if c == ' ' || c.is_ascii_alphanumeric() || "-_.,:@+#/".contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    out
}

/// "verification code from authenticator \"phone\"" (never the code itself).
fn describe_accepted(how: &How) -> String {
    match how {
        How::Totp { device, .. } => format!("verification code from authenticator \"{}\"", log_name(device)),
        How::Hotp { device, counter } => format!(
            "verification code from authenticator \"{}\" (counter-based, counter {counter})",
            log_name(device)
        ),
        How::Backup { .. } => "backup code".into(),
    }
}

/// With the fleet store, an account protected on this host (root, or in `protected_groups`)
/// has its fleet document marked at this login's write, so that a help desk on another host
/// does not unlock or reset it there (which would act here too). The group lookup is made
/// only with the fleet store.
fn mark_if_protected(cfg: &Config, accounts: &dyn Accounts, account: &Account, store: &AnyStore) {
    if cfg.store == crate::config::StoreKind::Fleet && accounts.protected(account, &cfg.protected_groups) {
        store.mark_protected();
    }
}

/// The decision's policy; `local`: the decision is made on this host's own state because the
/// fleet store is down ([`Policy::totp_only`]).
fn policy(cfg: &Config, local: bool) -> Policy {
    Policy {
        window: cfg.window,
        hotp_window: cfg.hotp_window,
        max_failures: cfg.max_failures,
        lockout: cfg.lockout,
        totp_only: local,
    }
}

/// The account's password hash when a remembered host may be honoured or recorded
/// (`remember=` on and a remote host known); else None, and /etc/shadow is not read.
fn remembered_password(
    cfg: &Config,
    accounts: &dyn Accounts,
    account: &Account,
    req: &Request<'_>,
) -> Option<Zeroizing<String>> {
    (cfg.remember > 0 && req.rhost.is_some_and(|h| !h.is_empty()))
        .then(|| accounts.password_hash(&account.name))
        .flatten()
}

/// What [`check_and_prompt`] decides against.
/// The secret file after the prompt.
enum Reload {
    /// The file read before the prompt is still in place.
    Unchanged,
    /// It changed: read again (`None`: it is gone).
    Changed(Option<SecretFile>),
}

struct Prompting<'a> {
    secret: &'a SecretFile,
    /// Checks the secret file again (after the prompt).
    reload: &'a dyn Fn() -> Result<Reload, crate::error::Error>,
    user: &'a str,
    /// See [`remembered_password`].
    password: Option<&'a str>,
}

/// Asks for a code (or takes the one a forward_pass line kept) and decides it.
fn check_and_prompt<H: Host, S: StateStore>(
    cx: &mut Ctx<'_, H>,
    cfg: &Config,
    p: &Prompting<'_>,
    store: &S,
    req: &Request<'_>,
    clock: &dyn Clock,
    pending: Option<Zeroizing<String>>,
) -> Outcome {
    let (secret, reload, user) = (p.secret, p.reload, p.user);
    // A lockout or remembered host is checked before prompting, from a snapshot; the
    // decision itself re-reads under the lock.
    let snapshot = match store.peek(user) {
        Ok(s) => s,
        Err(e) => {
            cx.log(Level::Err, &format!("refused: state: {e}"));
            return Outcome::StateUnavailable;
        }
    };
    let now = clock.now();
    if snapshot.is_locked(now) {
        let left = snapshot.locked_until - now;
        cx.host.error_msg(&format!(
            "Too many wrong verification codes. Try again in {}.",
            human_duration(left)
        ));
        cx.log(Level::Notice, &format!("refused: locked out for another {left} s"));
        return Outcome::LockedOut;
    }
    let rhost = req.rhost.filter(|h| !h.is_empty());
    // Whether a code is asked is never answered from this host's own state while the fleet
    // is down: a remembered host there may be one the fleet has since ended.
    if cfg.remember > 0 && pending.is_none() && !store.decides_locally() {
        if let Some(h) = rhost {
            let key = snapshot.remember_key(user, secret, p.password);
            if snapshot.is_remembered(h, req.service, &key, now, cfg.remember) {
                cx.log(Level::Info, "accepted: remembered host, no code asked");
                return Outcome::Accepted(Accepted::RememberedHost);
            }
        }
    }

    let was_kept = pending.is_some();
    let answer = match pending {
        Some(code) => code,
        None => match cx.host.prompt_hidden(&cfg.prompt) {
            Ok(a) => a,
            Err(_) => {
                cx.log(Level::Notice, "refused: conversation failed or was cancelled");
                return Outcome::ConversationFailed;
            }
        },
    };
    let fresh;
    // A code kept by the forward_pass line waited at no prompt: the file was just read.
    let secret = if was_kept {
        secret
    } else {
        match reload() {
            Ok(Reload::Unchanged) => secret,
            Ok(Reload::Changed(Some(s))) => {
                fresh = s;
                &fresh
            }
            Ok(Reload::Changed(None)) => {
                cx.log(
                    Level::Err,
                    "refused: the secret file disappeared while the code was asked for",
                );
                return Outcome::SecretMissing;
            }
            Err(e) => {
                cx.log(Level::Err, &format!("refused: secret file: {e}"));
                return Outcome::BadSecretFile;
            }
        }
    };
    // The time is read again: the user may have taken a while to answer.
    let now = clock.now();
    let result = store.update(user, |st| {
        let (d, i) = decide(
            &policy(cfg, store.decides_locally()),
            secret,
            st,
            &[answer.as_str()],
            now,
            Count::Failures,
        );
        if let (Decision::Accepted(_), true, Some(h)) = (&d, cfg.remember > 0, rhost) {
            let key = st.remember_key(user, secret, p.password);
            st.remember(h, req.service, &key, now.saturating_add(cfg.remember), now);
        }
        (d, i)
    });
    let decision = match result {
        Ok((d, _)) => d,
        Err(e) => {
            // Nothing was recorded, so nothing may be accepted: the same code could
            // otherwise be used again.
            cx.log(Level::Err, &format!("refused: could not record the attempt: {e}"));
            return Outcome::StateUnavailable;
        }
    };
    match decision {
        Decision::Accepted(how @ How::Totp { .. }) => {
            cx.log(Level::Info, &format!("accepted {}", describe_accepted(&how)));
            Outcome::Accepted(Accepted::Totp)
        }
        Decision::Accepted(how @ How::Hotp { .. }) => {
            cx.log(Level::Info, &format!("accepted {}", describe_accepted(&how)));
            Outcome::Accepted(Accepted::Hotp)
        }
        Decision::Accepted(How::Backup { left }) => {
            cx.host.info_msg(&format!(
                "Backup code accepted. {left} backup code{} left{}",
                if left == 1 { "" } else { "s" },
                if left <= 3 {
                    "; run `pam-totp backup-codes --regenerate` for a new set."
                } else {
                    "."
                }
            ));
            cx.log(Level::Notice, &format!("accepted backup code, {left} left"));
            Outcome::Accepted(Accepted::Backup)
        }
        Decision::Wrong { failures, locked_until } => {
            locked_message(cx, locked_until, now, "Wrong verification code.");
            match locked_until {
                Some(_) => cx.log(
                    Level::Notice,
                    &format!(
                        "refused: wrong code; locked out for {} s after {} consecutive failures",
                        cfg.lockout, cfg.max_failures
                    ),
                ),
                None => cx.log(
                    Level::Notice,
                    &format!("refused: wrong code ({failures} consecutive failures)"),
                ),
            }
            Outcome::WrongCode
        }
        Decision::Replay { backup, locked_until } => {
            let (msg, what) = if backup {
                ("That backup code has already been used.", "used backup code")
            } else {
                (
                    "That code has already been used. Wait for the next one.",
                    "replayed verification code",
                )
            };
            locked_message(cx, locked_until, now, msg);
            cx.log(
                Level::Notice,
                &format!(
                    "refused: {what}{}",
                    if locked_until.is_some() { "; locked out" } else { "" }
                ),
            );
            Outcome::Replay
        }
        Decision::LockedOut { until } => {
            let left = until.saturating_sub(now);
            cx.host.error_msg(&format!(
                "Too many wrong verification codes. Try again in {}.",
                human_duration(left)
            ));
            cx.log(Level::Notice, &format!("refused: locked out for another {left} s"));
            Outcome::LockedOut
        }
        Decision::NeedsFleet { backup } => {
            let what = if backup {
                "backup code"
            } else {
                "counter-based (HOTP) code"
            };
            cx.host.error_msg(&format!(
                "The shared sign-in service is unreachable, so a {what} cannot be checked now. Use your authenticator app's code, or try again later."
            ));
            cx.log(
                Level::Notice,
                &format!("refused: a {what} while the fleet store is unavailable (decided on this host's own state, which takes time-based codes only); not spent"),
            );
            Outcome::StateUnavailable
        }
    }
}

fn locked_message<H: Host>(cx: &mut Ctx<'_, H>, locked_until: Option<u64>, now: u64, msg: &str) {
    match locked_until {
        Some(until) => cx.host.error_msg(&format!(
            "{msg} Too many wrong verification codes: try again in {}.",
            human_duration(until.saturating_sub(now))
        )),
        None => cx.host.error_msg(msg),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[test]
fn a_device_name_cannot_close_its_quotes_in_a_log_line() {
    let forged = log_name("p\") (user=root service=sudo rhost=-");
    assert!(
        !forged.contains('"') && !forged.contains("(user=") && !forged.contains('='),
        "{forged}"
    );
    assert_eq!(log_name("spare phone"), "spare phone");
}
