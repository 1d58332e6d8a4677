//! `pam-totp-vault`: installed setuid root, the one privileged path through which a user
//! changes their own keys in the vault (`pam-totp` runs it; nobody else needs to).
//!
//! Fenced like sudo-rs's setuid code: it starts from an empty environment; takes no
//! argument, configuration or path from its caller — the caller is who the kernel says
//! (`getuid()`), the configuration is the system's (`/etc/security/pam_totp.conf`); it makes
//! no core dump and cannot be traced (not dumpable); it reads one request of at most
//! `MAX_REQUEST` bytes from stdin and writes one answer to stdout; every rule is
//! `pam_totp_core::vault::serve`, unit- and integration-tested without privilege tricks.
//! Exit status: 0 when the answer says ok, 1 when it refuses, 2 when it cannot run.
#![forbid(unsafe_code)]

use std::io::{Read, Write};

use pam_totp_core::account::{Account, Accounts, SystemAccounts};
use pam_totp_core::clock::SystemClock;
use pam_totp_core::config::{Config, DEFAULT_CONFIG_PATH};
use pam_totp_core::vault::{serve, Answer, Log, Request, MAX_REQUEST};

struct Syslog {
    user: String,
}

impl Log for Syslog {
    fn log(&mut self, line: &str) {
        // logger(1) is not run (no program is started with privilege); the line goes to
        // stderr of the helper, which pam-totp shows, and to syslog through the socket.
        let msg = format!(
            "<{}>pam-totp-vault[{}]: user={} {}",
            10 * 8 + 5, // authpriv.notice
            std::process::id(),
            pam_totp_core::text::log_quote(&self.user),
            pam_totp_core::text::log_quote_long(line)
        );
        if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
            let _ = s.send_to(msg.as_bytes(), "/dev/log");
        }
    }
}

fn fail(why: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "pam-totp-vault: {why}");
    std::process::exit(2)
}

fn main() {
    // Nothing of the caller's environment reaches what runs here (NSS, the locale, TZ).
    for (k, _) in std::env::vars_os() {
        std::env::remove_var(k);
    }
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // No core dump, no ptrace by the caller (setuid processes start non-dumpable; made sure).
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    if nix::sys::prctl::set_dumpable(false).is_err() {
        fail("cannot make this process non-dumpable");
    }
    // Nothing of the caller's limits decides what is written (a file size limit would make
    // a write fail on purpose), and files are made with root's group, not the caller's.
    for r in [
        nix::sys::resource::Resource::RLIMIT_FSIZE,
        nix::sys::resource::Resource::RLIMIT_AS,
        nix::sys::resource::Resource::RLIMIT_DATA,
        nix::sys::resource::Resource::RLIMIT_CPU,
    ] {
        let inf = nix::sys::resource::RLIM_INFINITY;
        // Where this process may not raise a hard limit (no CAP_SYS_RESOURCE), up to it;
        // the state store refuses to decide anything under too low a file size limit.
        if nix::sys::resource::setrlimit(r, inf, inf).is_err() {
            if let Ok((_, hard)) = nix::sys::resource::getrlimit(r) {
                let _ = nix::sys::resource::setrlimit(r, hard, hard);
            }
        }
    }
    if nix::unistd::geteuid().is_root() {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 1024, 1024);
        if nix::unistd::setgid(nix::unistd::Gid::from_raw(0)).is_err() {
            fail("cannot take root's group");
        }
    }
    if std::env::args_os().len() > 1 {
        fail("takes no arguments (pam-totp runs it)");
    }
    if !nix::unistd::geteuid().is_root() {
        fail("not installed setuid root: ask an administrator to reinstall the pam-totp package");
    }
    let uid = nix::unistd::getuid();
    let account: Account = match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => match SystemAccounts.lookup(&u.name) {
            Ok(Some(a)) if a.uid == uid.as_raw() => a,
            _ => fail("your account cannot be looked up"),
        },
        _ => fail("your account cannot be looked up"),
    };
    let cfg = match Config::load(&[], pam_totp_core::files::fs::read_config) {
        Ok(c) => c,
        Err(e) => fail(&format!("{} is not usable: {e}", DEFAULT_CONFIG_PATH)),
    };
    let mut input = Vec::new();
    if std::io::stdin()
        .take(MAX_REQUEST as u64 + 1)
        .read_to_end(&mut input)
        .is_err()
        || input.len() > MAX_REQUEST
    {
        fail("the request is unreadable or too large");
    }
    let input = zeroize::Zeroizing::new(input);
    let req: Request = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(_) => fail("the request is malformed"),
    };
    let mut log = Syslog {
        user: account.name.clone(),
    };
    let answer: Answer = serve(&cfg, &account, req, &SystemClock, &mut log);
    let out = serde_json::to_string(&answer).unwrap_or_else(|_| fail("cannot write the answer"));
    if writeln!(std::io::stdout(), "{out}").is_err() {
        fail("cannot write the answer");
    }
    std::process::exit(if answer.ok { 0 } else { 1 });
}
