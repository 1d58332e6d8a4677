//! Who is running, which configuration applies, which user is meant; formatting and
//! output helpers.
//!
//! Output rules for every command: text another user controls (issuer, label, paths, user
//! and host names, error details) goes through [`safe`] before it reaches a terminal; JSON
//! goes through [`json_line`]; nothing is written with `println!` (a closed stdout would
//! panic after something was saved): [`print`] returns the error, and the caller says what
//! was already done.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use pam_totp_core::account::{protected_group_of, Account, Accounts, SystemAccounts};
use pam_totp_core::clock::{Clock, SystemClock};
use pam_totp_core::config::{Config, Date};
use pam_totp_core::state::any::AnyStore;
pub use pam_totp_core::text::terminal_safe;
use pam_totp_core::text::unsafe_char;

#[derive(Debug)]
pub struct Ctx {
    pub cfg: Config,
    pub me: Account,
    pub root: bool,
    /// Set when run through sudo by a user other than root (a help desk rule): then the
    /// command does not change root or members of `protected_groups`, and every change is
    /// logged with who ran sudo.
    pub sudo: Option<SudoCaller>,
    /// `--state-dir` was given (the vault helper uses the system's only).
    pub state_dir_given: bool,
    /// Every problem of the configuration file, for `doctor` ([`Ctx::new_for_doctor`]); the
    /// other commands stop at the first one.
    pub config_problems: Vec<String>,
}

/// Who ran `sudo pam-totp ...`: `SUDO_UID` and `SUDO_USER`, which sudo sets itself (a caller
/// cannot pass their own through sudo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoCaller {
    pub uid: String,
    pub user: String,
}

impl Ctx {
    pub fn new(config: Option<&Path>, state_dir: Option<&Path>) -> Result<Ctx, String> {
        Ctx::with(config, state_dir, false)
    }

    /// [`Ctx::new`] for `doctor`: a configuration file with problems does not stop it; they
    /// are kept in `config_problems` and its valid settings apply, so the other checks go on.
    pub fn new_for_doctor(config: Option<&Path>, state_dir: Option<&Path>) -> Result<Ctx, String> {
        Ctx::with(config, state_dir, true)
    }

    fn with(config: Option<&Path>, state_dir: Option<&Path>, lenient: bool) -> Result<Ctx, String> {
        let sudo_uid = std::env::var_os("SUDO_UID");
        let sudo = run_by_sudo_for_non_root(nix::unistd::geteuid().is_root(), sudo_uid.as_deref());
        if sudo && config.is_some() {
            return Err(format!(
                "--config is refused under sudo: it would let a sudo rule for pam-totp use a configuration (and a state directory) other than {}; run as root without sudo or drop the option",
                pam_totp_core::config::DEFAULT_CONFIG_PATH
            ));
        }
        if sudo && state_dir.is_some() {
            return Err(format!(
                "--state-dir is refused under sudo: it would let a sudo rule for pam-totp act on files outside {}; run as root without sudo or drop the option",
                pam_totp_core::config::DEFAULT_STATE_DIR
            ));
        }
        let mut args = Vec::new();
        if let Some(c) = config {
            let c = std::path::absolute(c).map_err(|e| format!("{}: {e}", c.display()))?;
            args.push(format!("config={}", c.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mut cfg, config_problems) = if lenient {
            match Config::load_checked(&args, pam_totp_core::files::fs::read_config) {
                Ok(c) => c,
                // The file cannot be used at all: the defaults, and that.
                Err(e) => {
                    let mut cfg = Config::default();
                    if let Some(c) = config {
                        cfg.config_path = std::path::absolute(c).map_err(|e| format!("{}: {e}", c.display()))?;
                    }
                    (cfg, vec![e.to_string()])
                }
            }
        } else {
            let cfg = Config::load(&args, pam_totp_core::files::fs::read_config).map_err(|e| e.to_string())?;
            (cfg, Vec::new())
        };
        if let Some(d) = state_dir {
            cfg.state_dir = std::path::absolute(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .map_err(|e| format!("cannot look up uid {uid}: {e}"))?
            .ok_or_else(|| format!("uid {uid} is not in the user database"))?;
        let me = Account {
            name: user.name,
            uid: uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        };
        let caller = sudo.then(|| SudoCaller {
            uid: sudo_uid.unwrap_or_default().to_string_lossy().into_owned(),
            user: std::env::var_os("SUDO_USER")
                .map(|u| u.to_string_lossy().into_owned())
                .unwrap_or_else(|| "?".into()),
        });
        Ok(Ctx {
            cfg,
            me,
            root: uid.is_root(),
            sudo: caller,
            state_dir_given: state_dir.is_some(),
            config_problems,
        })
    }

    /// Who acts, for log lines: `uid=0`, or through sudo `uid=1001 (sudo user=alice)`.
    pub fn by(&self) -> String {
        match &self.sudo {
            Some(c) => format!("uid={} (sudo user={})", c.uid, c.user),
            None => format!("uid={}", self.me.uid),
        }
    }

    /// [`Ctx::target`] for commands that change the account's enrollment or state: also
    /// [`Ctx::may_change`].
    pub fn target_to_change(&self, user: Option<&str>, what: &str) -> Result<Account, String> {
        let account = self.target(user, what)?;
        self.may_change(&account, what)?;
        Ok(account)
    }

    /// Run through sudo by a user other than root (a help desk rule such as
    /// `pam-totp unlock --user *`), refuses to change root or a member (primary or
    /// supplementary) of a group in `protected_groups`; the refusal is logged. Otherwise
    /// (root itself, a user for themselves) everything is allowed as before. `what` reads
    /// "unlock", "change the backup codes of" ...
    /// With `store = "fleet"` an account protected on any host of the fleet (its document
    /// marked by that host) is refused too: `unlock` and `reset` act on every host, so
    /// protection is the fleet's, not this host's.
    pub fn may_change(&self, account: &Account, what: &str) -> Result<(), String> {
        if self.sudo.is_none() {
            return Ok(());
        }
        let why = match self.protected(account) {
            Some(why) => why,
            None => match self.protected_in_fleet(account) {
                Ok(false) => return Ok(()),
                Ok(true) => format!(
                    "{} is protected on another host of the fleet (root there, or a member of a group in that host's protected_groups)",
                    safe(&account.name)
                ),
                Err(e) => format!(
                    "cannot tell whether another host of the fleet protects {} ({e})",
                    safe(&account.name)
                ),
            },
        };
        syslog(&format!(
            "refused to {what} user={} by {}: {}",
            account.name,
            self.by(),
            why
        ));
        Err(format!(
            "refusing to {what} {}: {why}. Run through sudo by another user, pam-totp does not change root or members of protected_groups ({}); an administrator with full root rights runs it outside sudo's environment (`sudo su -`, then pam-totp; `sudo -i` keeps SUDO_UID)",
            safe(&account.name),
            safe_path(&self.cfg.config_path)
        ))
    }

    /// Why `account` is protected — root (uid 0), or a member (primary or supplementary) of
    /// a group in `protected_groups` — or why that cannot be told (then it counts as
    /// protected); `None` for anyone else. In words, for a refusal.
    pub fn protected(&self, account: &Account) -> Option<String> {
        if account.uid == 0 {
            return Some("it is the root account (uid 0)".to_string());
        }
        match protected_group_of(account, &self.cfg.protected_groups) {
            Ok(None) => None,
            Ok(Some(g)) => Some(format!(
                "{} is a member of the protected group {}",
                safe(&account.name),
                safe(&g)
            )),
            Err(e) => Some(format!(
                "cannot tell whether {} is in a protected group ({e})",
                safe(&account.name)
            )),
        }
    }

    /// The account a command acts on: yourself, or (root only) `--user NAME`.
    pub fn target(&self, user: Option<&str>, what: &str) -> Result<Account, String> {
        match user {
            None => Ok(self.me.clone()),
            Some(name) if name == self.me.name => Ok(self.me.clone()),
            Some(name) => {
                if !self.root {
                    return Err(format!("only root can {what} another user (run with sudo)"));
                }
                lookup(name)
            }
        }
    }

    pub fn require_root(&self, what: &str) -> Result<(), String> {
        if self.root {
            Ok(())
        } else {
            Err(format!("only root can {what} (run with sudo)"))
        }
    }

    /// Whether a host of the fleet marked `account` protected (false without the fleet store).
    fn protected_in_fleet(&self, account: &Account) -> Result<bool, String> {
        let Some(store) = self.store_if_exists()? else {
            return Ok(false);
        };
        match store.fleet() {
            Some(f) => f.protected_in_fleet(&account.name).map_err(|e| e.to_string()),
            None => Ok(false),
        }
    }

    /// [`Ctx::store`] for writes to `account`'s state: with the fleet store, an account
    /// protected on this host has its document marked so (see [`Ctx::may_change`]).
    pub fn store_for(&self, account: &Account) -> Result<AnyStore, String> {
        let store = self.store()?;
        self.mark_if_protected(&store, account);
        Ok(store)
    }

    /// Marks `account`'s fleet document when the account is protected on this host.
    pub fn mark_if_protected(&self, store: &AnyStore, account: &Account) {
        if self.cfg.store == pam_totp_core::config::StoreKind::Fleet
            && SystemAccounts.protected(account, &self.cfg.protected_groups)
        {
            store.mark_protected();
        }
    }

    /// The state store, for commands that write state. The command line never creates the
    /// state directory (a sudo rule for `pam-totp unlock` must not make root create
    /// directories): a missing one is an error.
    pub fn store(&self) -> Result<AnyStore, String> {
        self.store_if_exists()?.ok_or_else(|| {
            format!(
                "the state directory {} does not exist; the module or the package creates it",
                safe_path(&self.cfg.state_dir)
            )
        })
    }

    /// The state store if its directory exists, for commands that only read: `None` means
    /// no state yet (read it as `State::default()`). With `store = "fleet"` it is the fleet
    /// store through pam-totp-stated (root only; no fallback to the local state: a change
    /// must reach every host or fail).
    pub fn store_if_exists(&self) -> Result<Option<AnyStore>, String> {
        if self.cfg.store == pam_totp_core::config::StoreKind::Fleet && !self.root {
            return Err(format!(
                "the state is in the fleet store (store = \"fleet\" in {}), which only root can read: run with sudo",
                safe_path(&self.cfg.config_path)
            ));
        }
        AnyStore::open_existing(&self.cfg).map_err(|e| e.to_string())
    }

    pub fn now(&self) -> u64 {
        SystemClock.now()
    }
}

/// Whether we run as root through sudo started by someone other than root (effective uid 0,
/// `SUDO_UID` set and not `0`): then `--config` and `--state-dir` are refused, so a sudo
/// rule such as `pam-totp unlock --user *` cannot reach files outside the real state
/// directory. sudo sets `SUDO_UID` itself; a caller cannot remove it through sudo.
fn run_by_sudo_for_non_root(euid_root: bool, sudo_uid: Option<&std::ffi::OsStr>) -> bool {
    euid_root && sudo_uid.is_some_and(|u| u != "0")
}

/// A system program run with a cleared environment (as `doctor` runs them).
pub fn program(path: &str) -> std::process::Command {
    let mut c = std::process::Command::new(path);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C");
    c
}

/// User-controlled text on its way to a terminal: control characters as visible escapes.
pub fn safe(s: &str) -> Cow<'_, str> {
    terminal_safe(s)
}

/// A path on its way to a terminal (see [`safe`]).
pub fn safe_path(p: &Path) -> String {
    terminal_safe(&p.to_string_lossy()).into_owned()
}

/// One JSON value as one line. serde_json escapes C0 controls inside strings but writes DEL,
/// the C1 controls (U+0080..U+009F, which include the 8-bit CSI) and the characters that
/// reorder or break a terminal line (bidirectional overrides such as U+202E, U+2028 ...:
/// [`unsafe_char`]) raw; they can only occur inside strings, where `\uXXXX` means the same
/// character, so they are escaped too. (All of them are in the Basic Multilingual Plane:
/// one `\uXXXX` each.)
pub fn json_line(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if !s.chars().any(unsafe_char) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a change made under the secret file's lock ([`update_secret`]) did not happen: the
/// core's error (locking, reading or writing the file), or the command's own refusal of
/// what it found there, in words.
///
/// [`update_secret`]: pam_totp_core::files::secret_file::update_secret
#[derive(Debug)]
pub enum Change {
    Core(pam_totp_core::error::Error),
    Refused(String),
}

impl From<pam_totp_core::error::Error> for Change {
    fn from(e: pam_totp_core::error::Error) -> Self {
        Change::Core(e)
    }
}

impl From<String> for Change {
    fn from(s: String) -> Self {
        Change::Refused(s)
    }
}

/// Writes `text` and a newline to stdout and flushes. A closed pipe (EPIPE: Rust ignores
/// SIGPIPE) is an error the caller words, saying what was already done.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// [`print`] for commands that changed nothing: the error says so.
pub fn print_result(text: &str) -> Result<(), String> {
    print(text).map_err(|e| format!("could not print the result: {}", describe(&e)))
}

/// An I/O error in words ("Broken pipe"), without the "(os error 32)" noise.
pub fn describe(e: &std::io::Error) -> String {
    pam_totp_core::error::describe_io(e)
}

pub fn lookup(name: &str) -> Result<Account, String> {
    if !pam_totp_core::account::valid_user_name(name) {
        return Err(format!("{:?} is not a valid user name", name));
    }
    SystemAccounts
        .lookup(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no such user: {}", safe(name)))
}

/// `2026-11-23 06:40 UTC`
pub fn format_time(t: u64) -> String {
    let (y, m, d) = Date::from_unix(t).to_ymd();
    let s = t % 86400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", s / 3600, (s % 3600) / 60)
}

/// Sends one line to syslog (authpriv.notice) for administrative actions; best effort.
pub fn syslog(msg: &str) {
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    // <85> = facility authpriv (10) * 8 + severity notice (5).
    let line = format!(
        "<85>pam-totp[{}]: {}",
        std::process::id(),
        pam_totp_core::text::log_quote(msg)
    );
    let _ = sock.send_to(line.as_bytes(), "/dev/log");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn sudo_by_a_non_root_user_is_detected() {
        assert!(run_by_sudo_for_non_root(true, Some(OsStr::new("1000"))));
        assert!(run_by_sudo_for_non_root(true, Some(OsStr::new(""))));
        assert!(!run_by_sudo_for_non_root(true, Some(OsStr::new("0"))), "sudo by root");
        assert!(!run_by_sudo_for_non_root(true, None), "root without sudo");
        assert!(
            !run_by_sudo_for_non_root(false, Some(OsStr::new("1000"))),
            "not root at all"
        );
    }

    #[test]
    fn json_lines_carry_no_raw_control_characters() {
        let v = serde_json::json!({"issuer": "a\u{1b}[2K\rb\u{7f}\u{9b}31m"});
        let line = json_line(&v);
        assert!(!line.chars().any(char::is_control), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn json_lines_carry_no_raw_bidi_overrides_or_line_separators() {
        let v =
            serde_json::json!({"name": "evil\u{202E}gpj.exe", "label": "a\u{2028}b\u{2066}c\u{200F}", "ok": "Zürich"});
        let line = json_line(&v);
        assert!(!line.chars().any(unsafe_char), "{line}");
        assert!(line.contains("evil\\u202egpj.exe"), "{line}");
        assert!(line.contains("a\\u2028b\\u2066c\\u200f"), "{line}");
        assert!(line.contains("Zürich"), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn protected_groups_come_from_the_accounts_group_list_and_an_unknown_group_refuses() {
        let root = Account {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
        };
        // root's primary group is root (gid 0): found through getgrouplist, not a member list.
        assert_eq!(
            protected_group_of(&root, &["root".into()]).unwrap().as_deref(),
            Some("root")
        );
        // A default group this distribution lacks protects nobody; a configured one must exist.
        assert!(protected_group_of(&root, &["wheel-that-is-not-here".into()]).is_err());
        let nobody = Account {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            home: "/nonexistent".into(),
        };
        assert_eq!(protected_group_of(&nobody, &["root".into()]).unwrap(), None);
    }
}
