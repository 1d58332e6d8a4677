//! Self-service on the vault: what a user who is not root may do to their own keys, through
//! the setuid helper `pam-totp-vault` (which runs [`serve`] and nothing else with privilege).
//!
//! Owns: the helper's requests and answers (one JSON object each way), and the rules:
//! - a user with no enrollment anywhere (no keys in the vault, no secret file, no record in
//!   the state that they enrolled) may enroll themselves: trust on first use, logged;
//! - every change to an existing enrollment in the vault — another authenticator, a new set
//!   of keys, a rename, a removal, new backup codes — first needs a current code of one of
//!   the user's authenticators or an unused backup code, decided and counted exactly as a
//!   login (replay guard, failures, lockout), so that a process running as the user (malware,
//!   a stolen session) cannot add its own phone;
//! - the answer never holds a key: a status lists names and parameters only.
//!
//! Never: acts on another user than the caller the kernel names (`uid`); takes a path or a
//! configuration from the caller; returns or logs a key or a code.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::account::Account;
use crate::clock::Clock;
use crate::config::Config;
use crate::files::secret::{valid_device_name, SecretFile, MAX_DEVICES};
use crate::files::secret_file::{key_file, load_secret, remove_secret, update_secret, vault_file, KeyFile};
use crate::login::verify::{decide, Count, Decision};
use crate::state::any::AnyStore;
use crate::state::store::StateStore;

/// The most a request may be (a secret file of one device and a hundred backup-code hashes
/// is a few KiB).
pub const MAX_REQUEST: usize = 64 * 1024;

/// One request of the caller.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Where the caller's keys are and what they are (no key material).
    Status,
    /// A first enrollment: `secret` is a secret file's text (its devices and backup-code
    /// hashes), checked by the one parser.
    Enroll { secret: Zeroizing<String> },
    /// A change to the enrollment in the vault, allowed by `proof` (a current code or an
    /// unused backup code).
    Change { proof: Zeroizing<String>, change: Change },
}

/// What a [`Request::Change`] does.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Adds the one device of `secret` (its backup codes are ignored).
    Add {
        secret: Zeroizing<String>,
    },
    /// Replaces the enrollment with `secret` (`enroll --force`).
    Replace {
        secret: Zeroizing<String>,
    },
    Rename {
        old: String,
        new: String,
    },
    Remove {
        name: String,
    },
    /// New backup codes: the hashes (the codes were shown to the user by the caller).
    BackupCodes {
        hashes: Vec<String>,
    },
}

/// The helper's answer.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    /// Why not (one line for the user), when not `ok`; when `ok`, a warning about what was
    /// done (shown, and the command still succeeds).
    pub error: Option<String>,
    /// `vault`, `home` (a secret file, not migrated) or `none`.
    pub place: String,
    /// The key file, for messages.
    pub file: Option<String>,
    /// Unix seconds the state recorded an enrollment (0: none).
    pub enrolled: u64,
    pub devices: Vec<DeviceInfo>,
    pub backup_codes: usize,
    pub failures: u32,
    pub locked_until: u64,
}

/// An authenticator as a status shows it: no key.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub algorithm: String,
    pub digits: u32,
    pub period: u64,
    pub issuer: String,
    pub label: String,
    pub created: u64,
    /// Seconds its clock is ahead of the host's (0: in step, or HOTP).
    #[serde(default)]
    pub clock_offset: i64,
}

fn refused(why: impl Into<String>) -> Answer {
    Answer {
        ok: false,
        error: Some(why.into()),
        ..Answer::default()
    }
}

/// What the helper logs: one line per change or refusal, never a key or a code.
pub trait Log {
    fn log(&mut self, line: &str);
}

/// Where `account`'s keys are, as root sees it: a vault (the fleet's or this host's), a
/// secret file, or none (then: where an enrollment goes).
fn place(cfg: &Config, account: &Account) -> Result<(KeyFile, Option<SecretFile>), String> {
    let file = key_file(cfg, account);
    match load_secret(&file, account).map_err(|e| e.to_string())? {
        Some(s) => Ok((file, Some(s))),
        None => Ok((vault_file(cfg, account), None)),
    }
}

/// Runs one request for `account` (the caller, as the kernel names them).
pub fn serve(cfg: &Config, account: &Account, req: Request, clock: &dyn Clock, log: &mut dyn Log) -> Answer {
    let (file, current) = match place(cfg, account) {
        Ok(p) => p,
        Err(e) => return refused(format!("your keys cannot be read: {e}; ask an administrator")),
    };
    let store = match AnyStore::open_existing(cfg) {
        Ok(Some(s)) => Some(s),
        Ok(None) => None,
        Err(e) => return refused(format!("the state cannot be read: {e}; ask an administrator")),
    };
    let state = match &store {
        Some(s) => match s.peek(&account.name) {
            Ok(st) => st,
            Err(e) => return refused(format!("the state cannot be read: {e}; ask an administrator")),
        },
        None => Default::default(),
    };
    let status = |file: &KeyFile, secret: Option<&SecretFile>, state: &crate::state::State| Answer {
        ok: true,
        error: None,
        place: match (secret, file.in_vault) {
            (None, _) => "none",
            (Some(_), true) => "vault",
            (Some(_), false) => "home",
        }
        .into(),
        file: secret.map(|_| file.display().to_string()),
        enrolled: state.enrolled,
        devices: secret
            .map(|s| s.devices.iter().map(|d| info(d, state)).collect())
            .unwrap_or_default(),
        backup_codes: secret.map(|s| state.backup_codes_left(&s.backup_codes)).unwrap_or(0),
        failures: state.failures,
        locked_until: state.locked_until,
    };
    match req {
        Request::Status => status(&file, current.as_ref(), &state),
        Request::Enroll { secret } => {
            if cfg.key_store == crate::config::KeyStore::Home {
                return refused(format!(
                    "this host keeps keys in secret files (key_store = \"home\" in {}): run pam-totp enroll there as before",
                    cfg.config_path.display()
                ));
            }
            // Any trace of an enrollment refuses: keys somewhere, the record, or a state that
            // an enrollment or an accepted code made (a secret file moved away must not make
            // room for another phone). Replay guards alone are no trace: a reset keeps them
            // on the fleet (spent codes stay spent) and clears the rest, and the user it told
            // to enroll again must be able to.
            let traces = state.enrolled > 0 || state.last_success > 0;
            if current.is_some() || traces {
                log.log("refused: enroll: already enrolled");
                return refused(if current.is_some() {
                    format!("you are already enrolled ({}): use --add to add an authenticator, or --force to replace the enrollment", file.display())
                } else {
                    "you enrolled before but your keys are gone; ask an administrator to run `pam-totp reset --user NAME`".to_string()
                });
            }
            let Some(store) = store else {
                return refused(
                    "the state directory does not exist yet; ask an administrator (the package creates it)",
                );
            };
            let new = match parse(&secret) {
                Ok(s) => s,
                Err(e) => return refused(e),
            };
            let vault = vault_file(cfg, account);
            // Under the vault file's lock, refused if one appeared meanwhile: two enrollments
            // at once (malware racing the user's own) never leave the user told "saved" for
            // keys that are not the ones kept.
            let saved = update_secret(
                &vault,
                account,
                |cur: Option<SecretFile>| -> Result<_, crate::error::Error> {
                    match cur {
                        Some(_) => Ok((None, false)),
                        None => Ok((Some(new.clone()), true)),
                    }
                },
            );
            match saved {
                Ok(true) => {}
                Ok(false) => {
                    log.log("refused: enroll: an enrollment was made meanwhile");
                    return refused("an enrollment was made meanwhile; nothing was saved (run `pam-totp status`)");
                }
                Err(e) => return refused(format!("could not save your keys: {e}")),
            }
            let now = clock.now();
            if let Err(e) = store.update(&account.name, |st| {
                if st.enrolled == 0 {
                    st.enrolled = now.max(1);
                }
            }) {
                log.log(&format!(
                    "enroll: keys saved, but the enrollment could not be recorded: {e}"
                ));
            }
            log.log(&format!(
                "enrolled into the vault (trust on first use): {} authenticator(s), {} backup codes",
                new.devices.len(),
                new.backup_codes.len()
            ));
            let (file, current) = (vault, Some(new));
            status(&file, current.as_ref(), &state)
        }
        Request::Change { proof, change } => {
            let Some(current) = current else {
                return refused("you are not enrolled: run `pam-totp enroll`");
            };
            if !file.in_vault {
                return refused(format!(
                    "your keys are in {}, not in the vault: ask an administrator to run `pam-totp migrate --user {}`",
                    file.display(),
                    account.name
                ));
            }
            let Some(store) = store else {
                return refused("the state directory does not exist; ask an administrator");
            };
            // The proof is a login: decided and counted the same way. And it is counted before
            // it is looked at: a failure is recorded first, and the code is checked only once
            // that record is stored — so no way of making the write fail (limits, a full disk)
            // checks codes without counting them, or tells a right one by how it fails.
            let now = clock.now();
            let policy = crate::login::policy(cfg, false);
            let pre = store.update(&account.name, |st| {
                if st.is_locked(now) {
                    return None;
                }
                let was = (st.failures, st.locked_until);
                crate::login::verify::fail(&policy, st, now);
                Some(was)
            });
            let was = match pre {
                Ok(Some(was)) => was,
                Ok(None) => {
                    log.log("refused: change of the vault: locked out");
                    return refused("too many wrong codes: try again later; nothing was changed");
                }
                Err(e) => {
                    log.log(&format!(
                        "refused: change of the vault: the attempt could not be recorded: {e}"
                    ));
                    return refused(format!("could not record the code: {e}; nothing was changed"));
                }
            };
            let decision = store.update(&account.name, |st| {
                // The failure counted above, taken back for the decision to count (or not).
                (st.failures, st.locked_until) = was;
                decide(&policy, &current, st, &[proof.as_str()], now, Count::Failures).0
            });
            match decision {
                Ok(Decision::Accepted(_)) => {}
                Ok(d) => {
                    let why = match d {
                        Decision::LockedOut { until }
                        | Decision::Wrong {
                            locked_until: Some(until),
                            ..
                        } => {
                            format!("too many wrong codes: try again in {} s", until.saturating_sub(now))
                        }
                        Decision::Replay { .. } => "that code has already been used: wait for the next one".into(),
                        _ => "wrong code".into(),
                    };
                    log.log(&format!("refused: change of the vault: {why}"));
                    return refused(format!("{why}; nothing was changed"));
                }
                Err(e) => {
                    log.log(&format!(
                        "refused: change of the vault: the decision could not be recorded: {e}"
                    ));
                    return refused(format!("could not record the code: {e}; nothing was changed"));
                }
            }
            let replacing = matches!(change, Change::Replace { .. });
            match apply(&file, account, &current, change) {
                Ok(what) => {
                    log.log(&format!("changed the vault after a code: {what}"));
                    // Made: from here on the answer is never a refusal (the user would be told
                    // nothing was saved, and undo in their app what the vault now holds).
                    let mut warning = None;
                    if replacing {
                        // This host's files beside the fleet's record held the keys just
                        // replaced (left over): they go, as with root's `enroll --force`, or
                        // the next login finds keys in two places.
                        for old in &file.leftovers {
                            match remove_secret(old, account) {
                                Ok(_) => log.log(&format!("removed {} (it held the keys replaced)", old.display())),
                                Err(e) => {
                                    log.log(&format!("could not remove {}: {e}", old.display()));
                                    warning = Some(format!(
                                        "your new keys are saved, but {} (your old keys) could not be removed ({e}): ask an administrator to remove it, or your logins on this host are refused",
                                        old.display()
                                    ));
                                }
                            }
                        }
                    }
                    let st = store.peek(&account.name).unwrap_or_default();
                    let mut answer = match place(cfg, account) {
                        Ok((f, s)) => status(&f, s.as_ref(), &st),
                        Err(e) => {
                            log.log(&format!("changed, but the keys cannot be read back: {e}"));
                            warning = Some(format!(
                                "the change is saved, but your keys cannot be read back on this host ({e}): ask an administrator to run `pam-totp doctor`"
                            ));
                            status(&file, None, &st)
                        }
                    };
                    answer.error = warning;
                    answer
                }
                Err(why) => {
                    log.log(&format!("refused: change of the vault: {why}"));
                    refused(why)
                }
            }
        }
    }
}

fn parse(text: &str) -> Result<SecretFile, String> {
    SecretFile::parse(text).map_err(|e| format!("the new keys are malformed: {e:?}"))
}

fn info(d: &crate::files::secret::Device, state: &crate::state::State) -> DeviceInfo {
    let guard = (d.kind == crate::files::secret::Kind::Totp && !state.key.is_empty())
        .then(|| state.device(&state.device_id(&d.guard_key())))
        .flatten();
    DeviceInfo {
        clock_offset: guard.map_or(0, |g| g.offset),
        name: d.name.clone(),
        kind: d.kind.name().into(),
        algorithm: d.params.algorithm().name().into(),
        digits: d.params.digits(),
        period: d.params.period(),
        issuer: d.issuer.clone(),
        label: d.label.clone(),
        created: d.created,
    }
}

/// Applies a change under the vault file's lock (the fleet vault: one compare-and-swap), on
/// the keys as they are now — which must be the keys the proof was decided on: if they were
/// changed meanwhile (an administrator replaced them after a phone was lost, on this host or
/// another, while this helper was stopped between the two), nothing is changed, or the
/// change would land on keys the proof says nothing about.
fn apply(file: &KeyFile, account: &Account, proven: &SecretFile, change: Change) -> Result<String, String> {
    enum E {
        Refused(String),
        Core(crate::error::Error),
    }
    impl From<crate::error::Error> for E {
        fn from(e: crate::error::Error) -> E {
            E::Core(e)
        }
    }
    let same = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
    let r = update_secret(file, account, |cur: Option<SecretFile>| -> Result<_, E> {
        let mut s = cur.ok_or_else(|| E::Refused("your keys are gone".into()))?;
        if *s.to_toml() != *proven.to_toml() {
            return Err(E::Refused(
                "your keys were changed meanwhile; nothing was changed: run the command again".into(),
            ));
        }
        let what = match change {
            Change::Add { secret } => {
                let new = parse(&secret).map_err(E::Refused)?;
                let [dev] = <[_; 1]>::try_from(new.devices)
                    .map_err(|_| E::Refused("add one authenticator at a time".into()))?;
                if s.devices.iter().any(|d| same(&d.name, &dev.name)) {
                    return Err(E::Refused(format!(
                        "an authenticator is already named \"{}\"",
                        dev.name
                    )));
                }
                if s.devices.len() >= MAX_DEVICES {
                    return Err(E::Refused(format!(
                        "you have {MAX_DEVICES} authenticators, the most; remove one first"
                    )));
                }
                let what = format!("added authenticator \"{}\"", crate::text::log_name(&dev.name));
                s.devices.push(dev);
                what
            }
            Change::Replace { secret } => {
                s = parse(&secret).map_err(E::Refused)?;
                format!("replaced the enrollment ({} authenticator(s))", s.devices.len())
            }
            Change::Rename { old, new } => {
                if !valid_device_name(&new) {
                    return Err(E::Refused("that name cannot name an authenticator".into()));
                }
                if s.devices.iter().any(|d| same(&d.name, &new) && !same(&d.name, &old)) {
                    return Err(E::Refused(format!("an authenticator is already named \"{new}\"")));
                }
                let d = s
                    .devices
                    .iter_mut()
                    .find(|d| same(&d.name, &old))
                    .ok_or_else(|| E::Refused(format!("no authenticator is named \"{old}\"")))?;
                d.name = new.clone();
                format!(
                    "renamed authenticator \"{}\" to \"{}\"",
                    crate::text::log_name(&old),
                    crate::text::log_name(&new)
                )
            }
            Change::Remove { name } => {
                let i = s
                    .devices
                    .iter()
                    .position(|d| same(&d.name, &name))
                    .ok_or_else(|| E::Refused(format!("no authenticator is named \"{name}\"")))?;
                if s.devices.len() == 1 {
                    return Err(E::Refused(
                        "that is your only authenticator; an administrator can reset your enrollment".into(),
                    ));
                }
                s.devices.remove(i);
                format!("removed authenticator \"{}\"", crate::text::log_name(&name))
            }
            Change::BackupCodes { hashes } => {
                let mut check = s.clone();
                check.backup_codes = hashes;
                // Through the parser: the hashes must be well-formed and few enough.
                let checked = parse(&check.to_toml()).map_err(E::Refused)?;
                s.backup_codes = checked.backup_codes;
                format!("new backup codes ({})", s.backup_codes.len())
            }
        };
        Ok((Some(s), what))
    });
    r.map_err(|e| match e {
        E::Refused(w) => w,
        E::Core(e) => format!("could not change your keys: {e}"),
    })
}
