//! A user's own keys in the vault, changed without root through the setuid helper
//! `pam-totp-vault` (its rules: `pam_totp_core::vault`).
//!
//! Used when pam-totp runs as a user (not root) for themselves and their keys are in the
//! vault, or they have none and `key_store = "vault"`. The helper uses the system
//! configuration only, so `--config` and `--state-dir` are refused here. A key this
//! process made (a new authenticator) is sent to the helper once and wiped; nothing the
//! helper answers holds a key.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pam_totp_core::account::Account;
use pam_totp_core::config::{KeyStore, DEFAULT_CONFIG_PATH};
use pam_totp_core::vault::{Answer, Change, Request};
use zeroize::Zeroizing;

use crate::context::{describe, safe, Ctx};

/// Where the packages install the helper (setuid root).
pub const HELPER: &str = "/usr/libexec/pam-totp/pam-totp-vault";

/// The helper to run: [`HELPER`], or `PAM_TOTP_VAULT_HELPER` (for tests). Choosing another
/// program gives nothing: this process has no privilege, only the helper's setuid bit does.
fn helper() -> PathBuf {
    std::env::var_os("PAM_TOTP_VAULT_HELPER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(HELPER))
}

/// Runs the helper with one request; its answer, or why it could not be had.
pub fn call(req: &Request) -> Result<Answer, String> {
    let body = Zeroizing::new(serde_json::to_vec(req).map_err(|e| e.to_string())?);
    let path = helper();
    let mut child = Command::new(&path)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {}: {} (is the pam-totp package installed?)",
                path.display(),
                describe(&e)
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&body)
            .map_err(|e| format!("cannot talk to {}: {}", path.display(), describe(&e)))?;
    }
    let mut out = Vec::new();
    if let Some(o) = child.stdout.take() {
        o.take(1 << 20)
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot read {}'s answer: {}", path.display(), describe(&e)))?;
    }
    let mut err = String::new();
    if let Some(e) = child.stderr.take() {
        let _ = e.take(4096).read_to_string(&mut err);
    }
    let status = child.wait().map_err(|e| describe(&e))?;
    if status.code() == Some(2) || out.is_empty() {
        let why = err
            .lines()
            .next()
            .unwrap_or("it gave no answer")
            .trim_start_matches("pam-totp-vault: ");
        return Err(format!("the vault helper failed: {}", safe(why)));
    }
    serde_json::from_slice(&out).map_err(|_| "the vault helper gave a malformed answer".to_string())
}

/// The caller's status through the helper when self-service goes through the vault for
/// `account` (see the module comment), else `None` (root, another user, keys in a secret
/// file, or `key_store = "home"` and nothing in the vault).
pub fn applies(ctx: &Ctx, account: &Account) -> Result<Option<Answer>, String> {
    if ctx.root || account.uid != ctx.me.uid {
        return Ok(None);
    }
    let vault_default = ctx.cfg.key_store == KeyStore::Vault;
    if !vault_default && !helper().exists() {
        return Ok(None);
    }
    let status = match call(&Request::Status) {
        Ok(s) => s,
        Err(e) if vault_default => return Err(e),
        Err(_) => return Ok(None),
    };
    if !status.ok {
        return Err(status.error.unwrap_or_default());
    }
    let vault = status.place == "vault" || (status.place == "none" && vault_default);
    if !vault {
        return Ok(None);
    }
    if ctx.cfg.config_path != std::path::Path::new(DEFAULT_CONFIG_PATH) || ctx.state_dir_given {
        return Err(format!(
            "your keys are in the vault, which is changed through the system configuration only ({DEFAULT_CONFIG_PATH}): run without --config and --state-dir"
        ));
    }
    Ok(Some(status))
}

/// Asks for the code that allows a change (a current code of one of the user's
/// authenticators, or an unused backup code), one line from stdin.
pub fn ask_proof() -> Result<Zeroizing<String>, String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let mut o = std::io::stderr();
        let _ = write!(
            o,
            "A code from one of your authenticators (or an unused backup code) allows this change: "
        );
        let _ = o.flush();
    }
    let mut line = Zeroizing::new(String::new());
    use std::io::BufRead;
    let n = std::io::stdin()
        .lock()
        .take(256)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the code: {}", describe(&e)))?;
    let code = Zeroizing::new(line.trim().to_string());
    if n == 0 || code.is_empty() {
        return Err("no code given: a change to your enrollment needs a current code or an unused backup code; nothing was changed".into());
    }
    Ok(code)
}

/// Sends a change with its proof; `Ok` with the new status, `Err` with the helper's reason.
pub fn change(change: Change) -> Result<Answer, String> {
    let proof = ask_proof()?;
    let a = call(&Request::Change { proof, change })?;
    if a.ok {
        if let Some(w) = &a.error {
            eprintln!("pam-totp: warning: {}", pam_totp_core::text::terminal_safe(w));
        }
        Ok(a)
    } else {
        Err(a.error.unwrap_or_else(|| "refused".into()))
    }
}

/// Sends a first enrollment.
pub fn enroll(secret: Zeroizing<String>) -> Result<Answer, String> {
    let a = call(&Request::Enroll { secret })?;
    if a.ok {
        Ok(a)
    } else {
        Err(a.error.unwrap_or_else(|| "refused".into()))
    }
}
