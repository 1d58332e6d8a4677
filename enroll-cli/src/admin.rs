//! `backup-codes`, `reset`, `unlock`.

use pam_totp_core::enroll::{
    load_secret, new_backup_codes, remove_secret, save_secret, secret_path, DEFAULT_BACKUP_CODES,
};
use pam_totp_core::store::StateStore;

use crate::context::{lookup, syslog, Ctx};

pub fn backup_codes(ctx: &Ctx, user: Option<&str>, regenerate: bool, json: bool) -> Result<(), String> {
    let account = ctx.target(user, "change the backup codes of")?;
    let path = secret_path(&ctx.cfg, &account);
    let mut secret = load_secret(&path, &account)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "{} is not enrolled (no {}); run `pam-totp enroll` first",
                account.name,
                path.display()
            )
        })?;
    if !regenerate {
        let total = secret.backup_codes.len();
        let left = if ctx.root {
            let st = ctx.store()?.peek(&account.name).map_err(|e| e.to_string())?;
            Some(st.backup_codes_left(&secret.backup_codes))
        } else {
            None
        };
        if json {
            println!(
                "{}",
                serde_json::json!({"user": account.name, "backup_codes_total": total, "backup_codes_left": left})
            );
        } else {
            match left {
                Some(l) => {
                    println!("{l} of {total} backup codes left. `pam-totp backup-codes --regenerate` makes a new set.")
                }
                None => println!("{total} backup codes issued. `pam-totp backup-codes --regenerate` makes a new set."),
            }
        }
        return Ok(());
    }
    let (codes, hashes) = new_backup_codes(DEFAULT_BACKUP_CODES).map_err(|e| e.to_string())?;
    secret.backup_codes = hashes;
    save_secret(&path, &account, &secret, true).map_err(|e| format!("could not save the new codes: {e}"))?;
    syslog(&format!(
        "new backup codes for user={} by uid={}",
        account.name, ctx.me.uid
    ));
    if json {
        let list: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        println!("{}", serde_json::json!({"user": account.name, "backup_codes": list}));
    } else {
        println!(
            "New backup codes for {} (the old ones no longer work). Each works once; keep them safe:\n",
            account.name
        );
        print!("{}", pam_totp_core::enroll::backup_code_lines(&codes).as_str());
    }
    Ok(())
}

pub fn reset(ctx: &Ctx, user: &str) -> Result<(), String> {
    ctx.require_root("reset a user")?;
    let account = lookup(user)?;
    let path = secret_path(&ctx.cfg, &account);
    let had_secret = remove_secret(&path, &account).map_err(|e| format!("could not remove the secret: {e}"))?;
    ctx.store()?
        .remove(&account.name)
        .map_err(|e| format!("could not remove the state: {e}"))?;
    syslog(&format!(
        "reset user={}: secret and state removed by uid={}",
        account.name, ctx.me.uid
    ));
    if had_secret {
        println!(
            "Removed {} and the state of {}. They must run `pam-totp enroll` again.",
            path.display(),
            account.name
        );
    } else {
        println!(
            "{} had no secret file ({}); their state was cleared.",
            account.name,
            path.display()
        );
    }
    Ok(())
}

pub fn unlock(ctx: &Ctx, user: &str) -> Result<(), String> {
    ctx.require_root("unlock a user")?;
    let account = lookup(user)?;
    let now = ctx.now();
    let was_locked = ctx
        .store()?
        .update(&account.name, |st| {
            let was = st.is_locked(now);
            st.failures = 0;
            st.locked_until = 0;
            was
        })
        .map_err(|e| e.to_string())?;
    syslog(&format!("unlock user={} by uid={}", account.name, ctx.me.uid));
    println!(
        "{} {}; failure count cleared.",
        account.name,
        if was_locked {
            "is unlocked"
        } else {
            "was not locked out"
        }
    );
    Ok(())
}
