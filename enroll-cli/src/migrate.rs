//! `pam-totp migrate`: moves users' keys out of files they can read — secret files at the
//! `secret=` template (versions 1 and 2) and `~/.google_authenticator` — into the vault.
//!
//! Per user, in this order, so that an interruption never leaves a user without keys: the
//! keys are written to the vault (a new file, never over one), then the old file is removed;
//! if it cannot be removed the vault copy is removed again and the user is reported as not
//! migrated (two copies would leave the one the user can read working as a second factor).
//! The same keys and the same backup-code hashes are kept, so the phone keeps working and a
//! spent backup code stays spent (the state keys both by what they are, not by the file).
//! Root only; never acts on a user who already has keys in the vault. With the fleet vault
//! (`store = "fleet"`, `key_store = "vault"`) the keys go there, and a file of this host's
//! vault is a source too (a host that kept keys locally before it joined the fleet).

use std::path::PathBuf;

use clap::Args;
use pam_totp_core::account::Account;
use pam_totp_core::admin::google::parse_google_authenticator;
use pam_totp_core::files::fleet_vault::FleetVault;
use pam_totp_core::files::fs::with_fs_identity;
use pam_totp_core::files::secret::SecretFile;
use pam_totp_core::files::secret_file::{
    keys_within, load_secret, local_vault_file, remove_secret, save_secret, secret_path, vault_file, KeyFile,
};
use pam_totp_core::otp::enroll::DEFAULT_DEVICE_NAME;

use crate::context::{lookup, program, safe, safe_path, syslog, Ctx};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The user to migrate.
    #[arg(long, value_name = "NAME", conflicts_with = "all", required_unless_present = "all")]
    user: Option<String>,
    /// Every account (getent passwd) that has a secret file or a ~/.google_authenticator.
    #[arg(long)]
    all: bool,
    /// One JSON object: {"migrated": [{"user", "from"}], "already": [...], "failed": [{"user", "reason"}]}.
    #[arg(long)]
    json: bool,
}

/// What happened to one user.
enum Done {
    Migrated {
        from: PathBuf,
    },
    /// Keys already in the vault (a file left elsewhere is ignored by the module); with the
    /// fleet vault, this host's files holding the same keys are removed (`removed`).
    Already {
        left: Option<PathBuf>,
        removed: Vec<PathBuf>,
    },
    /// Nothing to migrate (only with `--all`, where such users are not listed).
    Nothing,
}

pub fn run(ctx: &Ctx, a: MigrateArgs) -> Result<(), String> {
    ctx.require_root("migrate keys into the vault")?;
    if ctx.sudo.is_some() {
        // A help desk rule must not reach this: it moves every user's keys.
        ctx.may_change(&ctx.me, "migrate")?;
    }
    let accounts = match &a.user {
        Some(name) => vec![lookup(name)?],
        None => all_accounts()?,
    };
    let mut migrated = Vec::new();
    let mut already = Vec::new();
    let mut failed = Vec::new();
    for account in &accounts {
        match migrate_one(ctx, account) {
            Ok(Done::Migrated { from }) => {
                syslog(&format!(
                    "migrate user={}: keys moved from {} into the vault by {}",
                    account.name,
                    from.display(),
                    ctx.by()
                ));
                migrated.push((account.name.clone(), from));
            }
            Ok(Done::Already { left, removed }) => {
                for r in &removed {
                    syslog(&format!(
                        "migrate user={}: left-over {} removed (its keys are in the fleet vault) by {}",
                        account.name,
                        r.display(),
                        ctx.by()
                    ));
                }
                already.push((account.name.clone(), left, removed))
            }
            Ok(Done::Nothing) if a.user.is_none() => {}
            Ok(Done::Nothing) => failed.push((
                account.name.clone(),
                "has no secret file and no ~/.google_authenticator".to_string(),
            )),
            Err(why) => failed.push((account.name.clone(), why)),
        }
    }
    let out = if a.json {
        serde_json::json!({
            "migrated": migrated.iter().map(|(u, f)| serde_json::json!({"user": u, "from": f})).collect::<Vec<_>>(),
            "already": already.iter().map(|(u, left, removed)| serde_json::json!({"user": u, "left": left, "removed": removed})).collect::<Vec<_>>(),
            "failed": failed.iter().map(|(u, r)| serde_json::json!({"user": u, "reason": r})).collect::<Vec<_>>(),
        })
        .to_string()
    } else {
        let mut lines = Vec::new();
        for (u, f) in &migrated {
            lines.push(format!("{}: keys moved from {} into the vault", safe(u), safe_path(f)));
        }
        for (u, left, removed) in &already {
            for r in removed {
                lines.push(format!(
                    "{}: already in the fleet vault; removed {} (the same keys)",
                    safe(u),
                    safe_path(r)
                ));
            }
            lines.push(match left {
                Some(f) => format!(
                    "{}: already in the vault; {} is left over and ignored (remove it)",
                    safe(u),
                    safe_path(f)
                ),
                None => format!("{}: already in the vault", safe(u)),
            });
        }
        for (u, r) in &failed {
            lines.push(format!("{}: not migrated: {r}", safe(u)));
        }
        if lines.is_empty() {
            lines.push("nobody to migrate: no secret files and no ~/.google_authenticator files".into());
        }
        lines.join("\n")
    };
    crate::context::print(&out).map_err(|e| format!("could not print the result: {}", crate::context::describe(&e)))?;
    if !failed.is_empty() {
        return Err(format!("{} user(s) not migrated", failed.len()));
    }
    // Every user's keys of this host are in the fleet vault: from now on the module reads
    // keys there only (a file written later in a home, or left in this host's vault, is
    // never read again).
    if let (None, Some(fv)) = (&a.user, FleetVault::of(&ctx.cfg)) {
        if !fv.retired() {
            fv.retire()
                .map_err(|e| format!("every user was migrated, but this host could not be marked so: {e}"))?;
            syslog(&format!(
                "migrate --all: this host's key files are retired (keys are read from the fleet vault only) by {}",
                ctx.by()
            ));
            eprintln!("pam-totp: this host now reads keys from the fleet vault only");
        }
    }
    Ok(())
}

fn migrate_one(ctx: &Ctx, account: &Account) -> Result<Done, String> {
    let vault = vault_file(&ctx.cfg, account);
    let legacy = secret_path(&ctx.cfg, account);
    let ga = KeyFile::legacy(account.home.join(".google_authenticator"));
    // With the fleet vault, this host's vault file is moved too (root's: looked at as root).
    let local = local_vault_file(&ctx.cfg, account);
    let local_there = vault.fleet.is_some() && std::fs::symlink_metadata(&local.path).is_ok();
    if let Some(in_fleet) = load_secret(&vault, account)
        .map_err(|e| e.to_string())?
        .filter(|_| vault.fleet.is_some())
    {
        // This host's files beside the fleet's record: the same keys (left over) are removed;
        // other keys are two enrollments, for an administrator to decide between.
        let mut removed = Vec::new();
        let local_file = local_there.then_some(&local);
        for f in local_file.into_iter().chain([&legacy, &ga]) {
            if !(f.in_vault || exists_as_user(f, account)) {
                continue;
            }
            let Some(keys) = keys_in(ctx, account, f, f.path == ga.path)? else {
                continue;
            };
            if !keys_within(&keys, &in_fleet) {
                return Err(two_places(f, account));
            }
            remove_secret(f, account).map_err(|e| format!("{}: {e}", safe_path(f)))?;
            removed.push(f.path.clone());
        }
        return Ok(Done::Already { left: None, removed });
    }
    if load_secret(&vault, account).map_err(|e| e.to_string())?.is_some() {
        let left = if local_there {
            Some(local.path.clone())
        } else {
            [&legacy, &ga]
                .into_iter()
                .find(|f| exists_as_user(f, account))
                .map(|f| f.path.clone())
        };
        return Ok(Done::Already {
            left,
            removed: Vec::new(),
        });
    }
    // Nothing there: nothing to check (with --all, most accounts; their homes may be places
    // such as /var/mail that no secret file could be trusted in anyway).
    if !local_there && !exists_as_user(&legacy, account) && !exists_as_user(&ga, account) {
        return Ok(Done::Nothing);
    }
    let from_local = if local_there {
        load_secret(&local, account).map_err(|e| e.to_string())?
    } else {
        None
    };
    let (secret, from): (SecretFile, &KeyFile) = match from_local {
        Some(s) => (s, &local),
        None => match load_secret(&legacy, account).map_err(|e| e.to_string())? {
            Some(s) => (s, &legacy),
            None => match keys_in(ctx, account, &ga, true)? {
                Some(s) => (s, &ga),
                None => return Ok(Done::Nothing),
            },
        },
    };
    save_secret(&vault, account, &secret, false).map_err(|e| format!("could not write the vault: {e}"))?;
    match remove_secret(from, account) {
        Ok(_) => {}
        Err(e) => {
            // Two copies would leave the one the user can read working: undo.
            let undo = remove_secret(&vault, account);
            return Err(format!(
                "{} could not be removed ({e}){}; the keys stay where they were",
                safe_path(from),
                match undo {
                    Ok(_) => String::new(),
                    Err(u) => format!(
                        ", and the vault copy could not be removed either ({u}): remove {} by hand",
                        safe_path(&vault)
                    ),
                }
            ));
        }
    }
    crate::admin::record_enrollment(ctx, account)?;
    Ok(Done::Migrated {
        from: from.path.clone(),
    })
}

/// The keys `f` holds: a key file (a vault file or a secret file), or, `google`, a
/// `~/.google_authenticator` read as its user and converted. `Ok(None)`: no such file.
fn keys_in(ctx: &Ctx, account: &Account, f: &KeyFile, google: bool) -> Result<Option<SecretFile>, String> {
    if !google {
        return load_secret(f, account).map_err(|e| format!("{}: {e}", safe_path(f)));
    }
    let Some(text) = crate::import::read_as_user(account, f)? else {
        return Ok(None);
    };
    let parsed = parse_google_authenticator(&text).map_err(|e| format!("{}: {e}", safe_path(f)))?;
    crate::import::ga_secret(ctx, account, &parsed, DEFAULT_DEVICE_NAME.to_string()).map(Some)
}

/// The refusal for a user whose keys on this host are not the fleet vault's.
fn two_places(f: &KeyFile, account: &Account) -> String {
    format!(
        "keys in two places: {} holds other keys than the fleet vault (an enrollment on another host, perhaps not by the user, while this host kept its own); the module refuses the user until one is removed: `pam-totp reset --user {}` removes both, then they enroll again",
        safe_path(f),
        safe(&account.name)
    )
}

/// Whether `file` exists, looked at as the user (it is in their home).
fn exists_as_user(file: &KeyFile, account: &Account) -> bool {
    with_fs_identity(account.uid, account.gid, &file.path, || {
        std::fs::symlink_metadata(&file.path).is_ok()
    })
    .unwrap_or(false)
}

/// Every account `getent passwd` lists (NSS: local files, SSSD/LDAP where they enumerate).
fn all_accounts() -> Result<Vec<Account>, String> {
    let out = program("/usr/bin/getent")
        .arg("passwd")
        .output()
        .map_err(|e| format!("cannot run getent passwd: {}", crate::context::describe(&e)))?;
    if !out.status.success() {
        return Err("getent passwd failed".into());
    }
    Ok(crate::report::parse_passwd(&String::from_utf8_lossy(&out.stdout)))
}

/// `pam-totp rekey`: every record of the fleet vault sealed with the ring's first key.
pub fn rekey(ctx: &Ctx, json: bool) -> Result<(), String> {
    ctx.require_root("seal the fleet vault again")?;
    if ctx.sudo.is_some() {
        // A help desk rule must not reach this: it touches every user's keys.
        ctx.may_change(&ctx.me, "rekey")?;
    }
    let fv = FleetVault::of(&ctx.cfg).ok_or_else(|| {
        format!(
            "rekey seals the fleet vault: {} does not keep keys there (store = \"fleet\" and key_store = \"vault\")",
            safe_path(&ctx.cfg.config_path)
        )
    })?;
    let ring = fv.ring().map_err(|e| e.to_string())?;
    let users = fv.users().map_err(|e| e.to_string())?;
    let (mut again, mut current, mut failed) = (Vec::new(), 0usize, Vec::new());
    for u in &users {
        match fv.rekey(&ring, u) {
            Ok(true) => again.push(u.clone()),
            Ok(false) => current += 1,
            Err(e) => failed.push((u.clone(), e.to_string())),
        }
    }
    syslog(&format!(
        "rekey: {} record(s) of the fleet vault sealed again with key {} by {} ({} already, {} failed)",
        again.len(),
        ring.current_id(),
        ctx.by(),
        current,
        failed.len()
    ));
    let out = if json {
        serde_json::json!({
            "key_id": ring.current_id(),
            "sealed_again": again,
            "current": current,
            "failed": failed.iter().map(|(u, r)| serde_json::json!({"user": u, "reason": r})).collect::<Vec<_>>(),
        })
        .to_string()
    } else {
        let mut lines = vec![format!(
            "{} record(s) sealed again with key {}; {} already were",
            again.len(),
            ring.current_id(),
            current
        )];
        for (u, r) in &failed {
            lines.push(format!("{}: not sealed again: {r}", safe(u)));
        }
        if failed.is_empty() && !users.is_empty() {
            lines.push("every record opens with the first key: older lines of fleet.vault_key_file may now be removed on every host".into());
        }
        lines.join("\n")
    };
    crate::context::print(&out).map_err(|e| format!("could not print the result: {}", crate::context::describe(&e)))?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} record(s) not sealed again", failed.len()))
    }
}
