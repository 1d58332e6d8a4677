//! `backup-codes`, `reset`, `unlock`.

use pam_totp_core::otp::enroll::{new_backup_codes, DEFAULT_BACKUP_CODES};

use pam_totp_core::files::secret_file::{key_file, load_secret, remove_secret};
use pam_totp_core::state::store::StateStore;

use crate::context::{json_line, lookup, print, print_result, safe, safe_path, syslog, Ctx};

pub fn backup_codes(
    ctx: &Ctx,
    user: Option<&str>,
    regenerate: bool,
    output: Option<&std::path::Path>,
    json: bool,
) -> Result<(), String> {
    let account = if regenerate {
        ctx.target_to_change(user, "change the backup codes of")?
    } else {
        ctx.target(user, "show the backup codes of")?
    };
    let via_vault = crate::vault::applies(ctx, &account)?;
    if let Some(st) = &via_vault {
        if st.place != "vault" {
            return Err(format!("{} is not enrolled; run `pam-totp enroll` first", account.name));
        }
        if !regenerate {
            let text = if json {
                json_line(&serde_json::json!({"user": account.name, "backup_codes_left": st.backup_codes}))
            } else {
                format!(
                    "{} backup codes left. `pam-totp backup-codes --regenerate` makes a new set.",
                    st.backup_codes
                )
            };
            return print_result(&text);
        }
    }
    let path = match via_vault {
        Some(_) => pam_totp_core::files::secret_file::vault_file(&ctx.cfg, &account),
        None => key_file(&ctx.cfg, &account),
    };
    let secret = match via_vault {
        // Only the codes' count is read below, and not for a regeneration.
        Some(_) => Some(pam_totp_core::files::secret::SecretFile {
            devices: Vec::new(),
            backup_codes: Vec::new(),
        }),
        None => load_secret(&path, &account).map_err(|e| e.to_string())?,
    };
    let secret: pam_totp_core::files::secret::SecretFile = secret.ok_or_else(|| {
        format!(
            "{} is not enrolled (no {}); run `pam-totp enroll` first",
            account.name,
            path.display()
        )
    })?;
    if !regenerate {
        let total = secret.backup_codes.len();
        let left = if ctx.root {
            let st = match ctx.store_if_exists()? {
                Some(store) => store.peek(&account.name).map_err(|e| e.to_string())?,
                None => pam_totp_core::state::State::default(),
            };
            Some(st.backup_codes_left(&secret.backup_codes))
        } else {
            None
        };
        let text = if json {
            json_line(
                &serde_json::json!({"user": account.name, "backup_codes_total": total, "backup_codes_left": left}),
            )
        } else {
            match left {
                Some(l) => {
                    format!("{l} of {total} backup codes left. `pam-totp backup-codes --regenerate` makes a new set.")
                }
                None => format!("{total} backup codes issued. `pam-totp backup-codes --regenerate` makes a new set."),
            }
        };
        return print_result(&text);
    }
    let (codes, hashes) = new_backup_codes(DEFAULT_BACKUP_CODES).map_err(|e| e.to_string())?;
    // The file first: if it cannot be written, nothing has changed.
    let file = match output {
        Some(p) => {
            let p = crate::codesfile::absolute(p)?;
            Some(
                crate::codesfile::write(ctx, &account, &p, &codes, ctx.now())
                    .map_err(|e| format!("{e}; nothing was changed"))?,
            )
        }
        None => None,
    };
    // On the file as it is now, under its lock: an authenticator added or removed since it
    // was read above stays added or removed.
    let saved = if via_vault.is_some() {
        crate::vault::change(pam_totp_core::vault::Change::BackupCodes { hashes }).map(|_| ())
    } else {
        crate::devices::update_enrolled(ctx, &account, |current| {
            current.backup_codes = hashes;
            Ok((true, ()))
        })
        .map(|_| ())
    };
    if let Err(e) = saved {
        let removed = file
            .map(|f| {
                let p = safe_path(&f.path);
                f.undo();
                format!(" ({p} was removed again)")
            })
            .unwrap_or_default();
        return Err(format!("the new codes were not saved: {e}{removed}"));
    }
    syslog(&format!(
        "new backup codes for user={} by {}{}",
        account.name,
        ctx.by(),
        file.as_ref()
            .map(|f| format!(", written to {}", f.path.display()))
            .unwrap_or_default()
    ));
    let text = if json {
        let list: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        let mut j = serde_json::json!({"user": account.name, "backup_codes": list});
        if let Some(f) = &file {
            j["backup_codes_file"] = f.path.to_string_lossy().into();
        }
        zeroize::Zeroizing::new(json_line(&j))
    } else if let Some(f) = &file {
        zeroize::Zeroizing::new(format!(
            "New backup codes for {} written to {} (mode 0600, owned by {}); the old ones no longer work. Print it or keep it somewhere safe, then delete the file.",
            safe(&account.name),
            safe_path(&f.path),
            safe(&account.name)
        ))
    } else {
        zeroize::Zeroizing::new(format!(
            "New backup codes for {} (the old ones no longer work). Each works once; keep them safe:\n\n{}",
            safe(&account.name),
            pam_totp_core::otp::enroll::backup_code_lines(&codes).trim_end_matches('\n')
        ))
    };
    print(&text).map_err(|e| {
        format!(
            "new backup codes were saved in {}, but could not be printed ({}); the old ones no longer work: run `pam-totp backup-codes --regenerate` again to see a new set",
            safe_path(&path),
            crate::context::describe(&e)
        )
    })
}

pub fn reset(ctx: &Ctx, user: &str) -> Result<(), String> {
    ctx.require_root("reset a user")?;
    let account = lookup(user)?;
    ctx.may_change(&account, "reset")?;
    let path = key_file(&ctx.cfg, &account);
    // The state store first: an unusable state directory must not leave the secret removed
    // and the state (with its lockout and enrollment record) behind. One that does not exist
    // holds no state (the module creates it at the first login), but it may be a mistyped
    // --state-dir: the message says which directory held nothing.
    let store = ctx.store_if_exists()?;
    if let Some(store) = &store {
        ctx.mark_if_protected(store, &account);
    }
    let had_secret = remove_secret(&path, &account).map_err(|e| format!("could not remove the secret: {e}"))?;
    if let Some(store) = &store {
        store
            .remove(&account.name)
            .map_err(|e| format!("the secret was removed, but the state could not be: {e}"))?;
    }
    syslog(&format!(
        "reset user={}: secret and state removed by {}",
        account.name,
        ctx.by()
    ));
    let state = match store {
        Some(_) => format!("the state of {}", safe(&account.name)),
        None => format!(
            "no state (the state directory {} does not exist)",
            safe_path(&ctx.cfg.state_dir)
        ),
    };
    let text = if had_secret {
        format!(
            "Removed {} and {state}. They must run `pam-totp enroll` again.",
            safe_path(&path),
        )
    } else {
        format!(
            "{} had no secret file ({}); removed {state}.",
            safe(&account.name),
            safe_path(&path)
        )
    };
    print(&text).map_err(|e| {
        format!(
            "{} was reset, but the result could not be printed: {}",
            safe(&account.name),
            crate::context::describe(&e)
        )
    })
}

pub fn unlock(ctx: &Ctx, user: &str) -> Result<(), String> {
    ctx.require_root("unlock a user")?;
    let account = lookup(user)?;
    ctx.may_change(&account, "unlock")?;
    let now = ctx.now();
    // Remembered hosts go too: an unlock follows a lockout, and a host remembered before it
    // should not skip the code for whoever caused it.
    // Clock offsets go too: an offset set by someone who had two of the user's codes
    // (docs/threat-model.md) should not outlive the help desk's unlock.
    let (was_locked, forgot, offsets) = ctx
        .store_for(&account)?
        .update(&account.name, |st| {
            let was = st.is_locked(now);
            st.failures = 0;
            st.locked_until = 0;
            let forgot = st.remembered.len();
            st.remembered.clear();
            (was, forgot, st.clear_offsets())
        })
        .map_err(|e| e.to_string())?;
    syslog(&format!(
        "unlock user={} by {}: failures cleared, {forgot} remembered host(s) forgotten, {offsets} clock offset(s) cleared",
        account.name,
        ctx.by()
    ));
    let text = format!(
        "{} {}; failure count cleared{}.",
        safe(&account.name),
        if was_locked {
            "is unlocked"
        } else {
            "was not locked out"
        },
        if forgot > 0 {
            format!(", {forgot} remembered host(s) forgotten")
        } else {
            String::new()
        },
    ) + &if offsets > 0 {
        format!(" {offsets} clock offset(s) cleared.")
    } else {
        String::new()
    };
    print(&text).map_err(|e| {
        format!(
            "{} was unlocked, but the result could not be printed: {}",
            safe(&account.name),
            crate::context::describe(&e)
        )
    })
}

/// Run as root, after a secret was written for `account`: records in the root-only state
/// that this user is enrolled, so that from now on a missing secret file refuses the login
/// instead of counting as "not enrolled" under nullok. Users enrolling themselves cannot
/// write the state; the module records them at their first accepted code. Nothing is done
/// when the state directory does not exist yet (the CLI never creates it).
pub fn record_enrollment(ctx: &Ctx, account: &pam_totp_core::account::Account) -> Result<(), String> {
    if !ctx.root {
        return Ok(());
    }
    let Some(store) = pam_totp_core::state::any::AnyStore::open_existing(&ctx.cfg)
        .map_err(|e| format!("the secret was saved, but the state could not be opened: {e}"))?
    else {
        return Ok(());
    };
    ctx.mark_if_protected(&store, account);
    let now = ctx.now();
    store
        .update(&account.name, |st| {
            if st.enrolled == 0 {
                st.enrolled = now.max(1);
            }
        })
        .map_err(|e| format!("the secret was saved, but the enrollment could not be recorded: {e}"))
}
