//! Who is running, which configuration applies, which user is meant; formatting helpers.

use std::path::Path;

use pam_totp_core::account::{Account, Accounts, SystemAccounts};
use pam_totp_core::clock::{Clock, SystemClock};
use pam_totp_core::config::{Config, Date};
use pam_totp_core::store::FileStore;

#[derive(Debug)]
pub struct Ctx {
    pub cfg: Config,
    pub me: Account,
    pub root: bool,
}

impl Ctx {
    pub fn new(config: Option<&Path>, state_dir: Option<&Path>) -> Result<Ctx, String> {
        let mut args = Vec::new();
        if let Some(c) = config {
            let c = std::path::absolute(c).map_err(|e| format!("{}: {e}", c.display()))?;
            args.push(format!("config={}", c.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cfg = Config::load(&args, pam_totp_core::fs::read_config).map_err(|e| e.to_string())?;
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
        Ok(Ctx {
            cfg,
            me,
            root: uid.is_root(),
        })
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

    pub fn store(&self) -> Result<FileStore, String> {
        FileStore::open(&self.cfg.state_dir, true).map_err(|e| e.to_string())
    }

    pub fn now(&self) -> u64 {
        SystemClock.now()
    }
}

pub fn lookup(name: &str) -> Result<Account, String> {
    if !pam_totp_core::account::valid_user_name(name) {
        return Err(format!("{:?} is not a valid user name", name));
    }
    SystemAccounts
        .lookup(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no such user: {name}"))
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
        pam_totp_core::login::log_quote(msg)
    );
    let _ = sock.send_to(line.as_bytes(), "/dev/log");
}
