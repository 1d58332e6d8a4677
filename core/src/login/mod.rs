//! One login attempt, start to finish: configuration, user, secret file, state, prompt,
//! decision, stored state, message and log line.
//!
//! Owns: the order of those steps and which [`Outcome`] each failure becomes. Everything
//! the host program provides (conversation, PAM items, syslog) comes through [`Host`], the
//! user database through [`Accounts`] and the time through [`Clock`], so every path is
//! unit-tested without PAM, root or the real clock.
//! Never: returns an accepting outcome on an error path; logs a code, secret or password.

mod explain;
mod forward_pass;
mod host;
mod lost_state;
mod not_enrolled;
mod prompt;
pub mod verify;

use explain::*;
use forward_pass::*;
pub use host::{Accepted, ConvError, Host, Kept, KeptCode, Level, Outcome, Request, KEPT_CODE_MAX_AGE};
use lost_state::*;
use not_enrolled::*;
use prompt::*;

use zeroize::Zeroizing;

use crate::account::{resolve, Account, Accounts, Unresolved};
use crate::clock::Clock;
use crate::config::{Config, Date, FORWARD_PASS_PROMPT};
use crate::files::secret::SecretFile;
use crate::files::secret_file::{key_file, load_secret, load_secret_stamped, secret_unchanged};
use crate::login::verify::{decide, Count, Decision, How, Policy};
use crate::state::any::AnyStore;
use crate::state::store::StateStore;
use crate::text::{log_name, log_quote, log_quote_long};

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
            // The options could not be read, so whether this is a forward_pass line is known
            // from the module arguments alone (pam_totp.conf may set it too: the gate then
            // does not pass either, the line being reached before any password).
            let split_line = req.args.contains(&"forward_pass");
            explain_refusal(&mut cx, req, split_line, BAD_CONFIG);
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

    let path = key_file(&cfg, &account);
    let (secret, stamp) = match load_secret_stamped(&path, &account) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let mode = if after_split { Mode::AfterSplit } else { Mode::Prompting };
            return not_enrolled(&mut cx, &cfg, req, &account, &path, clock, mode);
        }
        Err(e) => {
            cx.log(Level::Err, &format!("refused: secret file: {e}"));
            explain_refusal(&mut cx, req, false, KEYS_UNUSABLE);
            return Outcome::BadSecretFile;
        }
    };
    cx.debug(&format!(
        "secret file {} read ({} authenticator(s), {} backup codes)",
        path.display(),
        secret.devices.len(),
        secret.backup_codes.len()
    ));
    note_legacy_keys(&mut cx, &cfg, &path);

    let store = match open_store(&mut cx, &cfg) {
        Ok(s) => s,
        Err(e) => {
            cx.log(Level::Err, &format!("refused: state directory: {e}"));
            explain_refusal(&mut cx, req, false, STATE_UNAVAILABLE);
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

/// With `key_store = "vault"`: says in the log, on every login it happens to, that the keys
/// came from a secret file the user can read (not migrated yet).
fn note_legacy_keys<H: Host>(cx: &mut Ctx<'_, H>, cfg: &Config, file: &crate::files::secret_file::KeyFile) {
    if file.in_vault && file.fleet.is_none() && crate::files::fleet_vault::FleetVault::of(cfg).is_some() {
        cx.log(
            Level::Notice,
            &format!(
                "keys read from this host's vault file {}: the fleet vault has none for this user yet, so other hosts cannot read them; `pam-totp migrate` moves them there",
                file.display()
            ),
        );
        return;
    }
    if cfg.key_store == crate::config::KeyStore::Vault && !file.in_vault {
        cx.log(
            Level::Notice,
            &format!(
                "keys read from the secret file {}, which its user can read; `pam-totp migrate` moves them into the vault",
                file.display()
            ),
        );
    }
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

/// "verification code from authenticator \"phone\"" (never the code itself), and its clock
/// offset when it has one or this code changed it.
fn describe_accepted(how: &How) -> String {
    match how {
        How::Totp { device, clock, .. } => {
            let name = log_name(device);
            let tail = match (clock.resynced, clock.was == clock.now) {
                (true, _) => format!(
                    "; resynchronised after two consecutive codes out of the window: its clock is {} (clock offset {} -> {})",
                    ahead_or_behind(clock.now),
                    signed_secs(clock.was),
                    signed_secs(clock.now)
                ),
                (false, true) if clock.now == 0 => String::new(),
                (false, true) => format!(" (clock offset {})", signed_secs(clock.now)),
                (false, false) => format!(
                    "; its clock drifted: clock offset {} -> {}",
                    signed_secs(clock.was),
                    signed_secs(clock.now)
                ),
            };
            format!("verification code from authenticator \"{name}\"{tail}")
        }
        How::Hotp { device, counter } => format!(
            "verification code from authenticator \"{}\" (counter-based, counter {counter})",
            log_name(device)
        ),
        How::Backup { .. } => "backup code".into(),
    }
}

/// "+90 s", "-180 s", "0 s".
pub(crate) fn signed_secs(offset: i64) -> String {
    if offset > 0 {
        format!("+{offset} s")
    } else {
        format!("{offset} s")
    }
}

/// "90 s ahead of this host's", "180 s behind this host's", "in step with this host's".
fn ahead_or_behind(offset: i64) -> String {
    match offset {
        0 => "in step with this host's".into(),
        o if o > 0 => format!("{o} s ahead of this host's"),
        o => format!("{} s behind this host's", o.unsigned_abs()),
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
pub(crate) fn policy(cfg: &Config, local: bool) -> Policy {
    Policy {
        window: cfg.window,
        skew_range: cfg.skew_range,
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

#[cfg(test)]
mod tests;
