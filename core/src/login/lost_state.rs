//! A state directory that was lost (emptied, purged, or `state_dir` pointed somewhere new)
//! is said loudly in the log, where a login notices it.
//!
//! What is lost with it: the record of spent backup codes (they would work again) and of
//! HOTP counters, the record that a user enrolled (a missing secret file then counts as
//! "not enrolled"), lockouts, and with `key_store = "vault"` the keys themselves (users are
//! then not enrolled: refused, or let through by `nullok`/`enforce_after` without a code).
//! The module cannot tell a first installation from a loss by itself, so it refuses nothing
//! more than before; it logs at LOG_ERR where it happens (docs/troubleshooting.md).
//!
//! Owns: those log lines. Never: decides a login.

use super::*;

/// Opens the login's store; a local state directory that had to be created is logged as
/// possibly lost state (the package creates it at installation, so on a working host the
/// module never does).
pub(super) fn open_store<H: Host>(cx: &mut Ctx<'_, H>, cfg: &Config) -> Result<AnyStore, crate::error::Error> {
    let local = cfg.store == crate::config::StoreKind::Local;
    let missing = local && std::fs::symlink_metadata(&cfg.state_dir).is_err();
    let store = AnyStore::open(cfg)?;
    if missing && std::fs::symlink_metadata(&cfg.state_dir).is_ok() {
        cx.log(
            Level::Err,
            &format!(
                "created the state directory {}, which did not exist: if this host had pam_totp state before (a purge, a new state_dir, a restore without it), spent backup codes and counter-based codes work again, lockouts and enrollment records are gone{}; restore it from a backup, or have users make new backup codes (pam-totp backup-codes --regenerate)",
                cfg.state_dir.display(),
                if cfg.key_store == crate::config::KeyStore::Vault {
                    ", and so are the keys of the vault (those users are not enrolled any more)"
                } else {
                    ""
                }
            ),
        );
    }
    Ok(store)
}

/// With `key_store = "vault"`, a user let through as not enrolled on a host that has no vault
/// at all: if users had keys there, the state directory (and the vault in it) was lost and
/// they now pass without a code. Said at LOG_ERR on every such login.
pub(super) fn note_no_vault<H: Host>(cx: &mut Ctx<'_, H>, cfg: &Config) {
    if cfg.key_store != crate::config::KeyStore::Vault || cfg.store != crate::config::StoreKind::Local {
        return;
    }
    let vault = crate::files::secret_file::vault_dir(cfg);
    if std::fs::symlink_metadata(&vault).is_err() {
        cx.log(
            Level::Err,
            &format!(
                "let through without a code as not enrolled, and there is no vault ({}) although key_store = vault: if users had keys in it, the state directory was lost and they are not asked for a code any more; restore it from a backup (docs/troubleshooting.md)",
                vault.display()
            ),
        );
    }
}
