//! `pam-totp enroll`: new secret, QR code, confirmation, name, save, backup codes; with
//! `--add`, another authenticator for an enrolled user (backup codes kept); with `--hotp`,
//! a counter-based one.
//!
//! The save happens under the secret file's lock, on the file as it is then: `--add` waits
//! at its confirmation prompt with the enrollment it read at the start, and an authenticator
//! removed or backup codes regenerated meanwhile must stay removed or regenerated (see
//! [`store`]).
//!
//! Output after the save can fail (a closed pipe: `pam-totp enroll --json | head -c0`):
//! the error then says that the secret WAS saved, and what to do about what was not shown.

use std::io::{BufRead, IsTerminal, Write};

use pam_totp_core::account::Account;
use pam_totp_core::error::Error;
use pam_totp_core::files::secret::{valid_device_name, Device, Kind, SecretFile, MAX_DEVICES};
use pam_totp_core::files::secret_file::{key_file, load_secret, save_secret, update_secret, KeyFile};
use pam_totp_core::otp::enroll::{
    backup_code_lines, default_issuer, default_label, grouped, new_backup_codes, new_device, otpauth_uri,
    DEFAULT_BACKUP_CODES, DEFAULT_DEVICE_NAME,
};
use pam_totp_core::otp::{self, Algorithm, Params};
use zeroize::Zeroizing;

use crate::context::{describe, json_line, safe, safe_path, syslog, Change, Ctx};
use crate::qr::{self, QrMode};

/// The default name of a counter-based authenticator (`--hotp`).
pub const DEFAULT_HOTP_NAME: &str = "token";

#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// Enroll this user (root only for other users).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Name of this authenticator, e.g. "work phone" (default: asked for in a terminal, else
    /// "phone", or "token" with --hotp; "phone 2" ... when taken).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Add another authenticator to an existing enrollment (the others and the backup codes
    /// keep working).
    #[arg(long, conflicts_with = "force")]
    add: bool,
    /// Counter-based codes (HOTP, RFC 4226): a new code each time the app's button is
    /// pressed, instead of every 30 seconds.
    #[arg(long)]
    hotp: bool,
    /// Issuer shown in the app (default: `issuer` in pam_totp.conf, else the host name).
    #[arg(long, value_name = "TEXT")]
    issuer: Option<String>,
    /// Account label shown in the app (default: user@host).
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Code length.
    #[arg(long, value_parser = ["6", "8"])]
    digits: Option<String>,
    /// HMAC algorithm (SHA1 works with every app).
    #[arg(long, value_parser = ["SHA1", "SHA256", "SHA512"], ignore_case = true)]
    algorithm: Option<String>,
    /// How to draw the QR code.
    #[arg(long, value_enum, default_value = "utf8")]
    qr: QrMode,
    /// Save without asking for a code from the app first.
    #[arg(long)]
    no_confirm: bool,
    /// Replace an existing enrollment: one new authenticator and new backup codes (the old
    /// authenticators and backup codes stop working).
    #[arg(long)]
    force: bool,
    /// Print one JSON object (otpauth_uri, secret, backup_codes, file, name, type ...) and
    /// nothing else; implies --no-confirm and --qr none.
    #[arg(long)]
    json: bool,
    /// Write the backup codes to this new file (never over an existing one), mode 0600, owned
    /// by the user: a page to print. They are then not shown on the terminal (--json still
    /// includes them). Checked before the secret is shown; nothing is saved if it cannot be
    /// written.
    #[arg(long, value_name = "PATH", conflicts_with = "add")]
    backup_codes_file: Option<std::path::PathBuf>,
}

/// `base`, else `base 2`, `base 3` ...: the first not taken in `existing` (ignoring case).
pub fn unique_name(existing: Option<&SecretFile>, base: &str) -> String {
    let taken = |n: &str| existing.is_some_and(|s| s.device(n).is_some());
    if !taken(base) {
        return base.to_string();
    }
    (2..)
        .map(|i| format!("{base} {i}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| base.to_string())
}

/// Whether `name` can be used for a new authenticator next to `existing`.
fn check_new_name(existing: Option<&SecretFile>, account: &Account, name: &str) -> Result<(), String> {
    if !valid_device_name(name) {
        return Err(format!(
            "\"{}\" cannot name an authenticator: {}",
            safe(name),
            crate::devices::name_rule()
        ));
    }
    if let Some(d) = existing.and_then(|s| s.device(name)) {
        return Err(format!(
            "{} already has an authenticator named \"{}\"; choose another --name (`pam-totp devices list` shows them)",
            safe(&account.name),
            safe(&d.name)
        ));
    }
    Ok(())
}

pub fn run(ctx: &Ctx, a: EnrollArgs) -> Result<(), String> {
    let account = ctx.target_to_change(a.user.as_deref(), "enroll")?;
    // A user for themselves, with their keys in the vault: through the helper.
    let via_vault = crate::vault::applies(ctx, &account)?;
    let path = match via_vault {
        Some(_) => pam_totp_core::files::secret_file::vault_file(&ctx.cfg, &account),
        None => key_file(&ctx.cfg, &account),
    };
    let current = match &via_vault {
        Some(st) if st.place == "vault" => Ok(Some(names_only(st))),
        Some(_) => Ok(None),
        None => load_secret(&path, &account),
    };
    // The enrollment this one adds to (--add), or None for a new one.
    let base: Option<SecretFile> = match current {
        Ok(None) if a.add => {
            return Err(format!(
                "{} is not enrolled yet (no {}), so there is nothing to add to; run `pam-totp enroll` without --add",
                safe(&account.name),
                safe_path(&path)
            ))
        }
        Ok(None) => None,
        Ok(Some(s)) if a.add => {
            if s.devices.len() >= MAX_DEVICES {
                return Err(too_many(&account, s.devices.len()));
            }
            Some(s)
        }
        Ok(Some(_)) if a.force => None,
        Ok(Some(_)) => return Err(already_enrolled(&account, &path)),
        Err(_) if a.force => None,
        Err(e) if a.add => return Err(format!("{e}; fix it, or replace the whole enrollment with --force")),
        Err(e) => return Err(format!("{e}; fix it or use --force to replace it")),
    };
    // A new set of keys (--force) goes where new enrollments go: with key_store = "vault"
    // into the vault (the fleet's with store = "fleet"), and the file it replaces is removed
    // once it is saved (a secret file the user can read, or this host's own vault file
    // beside the fleet vault), as are files left beside the fleet's record: one place.
    let path = if a.force
        && base.is_none()
        && via_vault.is_none()
        && ctx.cfg.key_store == pam_totp_core::config::KeyStore::Vault
    {
        let mut target = pam_totp_core::files::secret_file::vault_file(&ctx.cfg, &account);
        if target.path != path.path {
            target.leftovers.push(path.clone());
        }
        target.leftovers.extend(path.leftovers.iter().cloned());
        target
    } else {
        path
    };
    let kind = if a.hotp { Kind::Hotp } else { Kind::Totp };
    let base_name = if a.hotp { DEFAULT_HOTP_NAME } else { DEFAULT_DEVICE_NAME };
    let default_name = unique_name(base.as_ref(), base_name);
    if let Some(n) = &a.name {
        check_new_name(base.as_ref(), &account, n)?;
    }
    // Asked for after the code is confirmed, as the user looks at the app's new entry.
    let ask_name = a.name.is_none() && !a.json && std::io::stdin().is_terminal();
    // Before anything secret is shown: will we be able to save it (and the codes' file)?
    // (The vault's helper checks its own.)
    if via_vault.is_none() {
        pam_totp_core::files::secret_file::check_writable(&path, &account)
            .map_err(|e| format!("could not save the secret: {e}"))?;
    }
    let codes_file = match &a.backup_codes_file {
        Some(p) => {
            let p = crate::codesfile::absolute(p)?;
            crate::codesfile::check(ctx, &account, &p).map_err(|e| format!("{e}; nothing was saved"))?;
            Some(p)
        }
        None => None,
    };
    let algorithm = match &a.algorithm {
        Some(s) => Algorithm::parse(s).ok_or("unknown algorithm")?,
        None => ctx.cfg.algorithm,
    };
    let digits = a
        .digits
        .as_deref()
        .map(|d| if d == "8" { 8 } else { 6 })
        .unwrap_or(ctx.cfg.digits);
    let params = Params::new(algorithm, digits, 30).ok_or("digits must be 6 or 8")?;
    let issuer = a
        .issuer
        .clone()
        .unwrap_or_else(|| default_issuer(ctx.cfg.issuer.as_deref()));
    let label = a.label.clone().unwrap_or_else(|| default_label(&account.name));
    let name = a.name.clone().unwrap_or_else(|| default_name.clone());
    let mut device = new_device(&name, kind, params, &issuer, &label, ctx.now()).map_err(|e| e.to_string())?;
    let uri = otpauth_uri(&device);
    let b32 = otp::encode_base32(&device.key);
    let adding = base.is_some();
    let mode = if adding {
        Mode::Add
    } else if a.force {
        Mode::Replace
    } else {
        Mode::New
    };
    // A name of our choosing may be chosen again at the save; one the user gave may not.
    let mut auto_name = a.name.is_none().then_some(base_name);

    if a.json {
        let Saved { codes, written, .. } = save(
            ctx,
            &path,
            &account,
            mode,
            &mut device,
            auto_name,
            codes_file.as_deref(),
            via_vault.is_some(),
        )?;
        log_added(ctx, &account, &device, mode, written.as_ref());
        let recorded = crate::admin::record_enrollment(ctx, &account);
        let mut obj = serde_json::json!({
            "user": account.name,
            "file": path.path,
            "name": device.name,
            "type": kind.name(),
            "otpauth_uri": uri.as_str(),
            "secret": b32.as_str(),
            "issuer": issuer,
            "label": label,
            "algorithm": algorithm.name(),
            "digits": digits,
            "backup_codes": codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        });
        if let Some(w) = &written {
            obj["backup_codes_file"] = w.path.to_string_lossy().into();
        }
        match kind {
            Kind::Totp => obj["period"] = params.period().into(),
            Kind::Hotp => obj["counter"] = device.counter.into(),
        }
        let line = Zeroizing::new(json_line(&obj));
        crate::context::print(&line).map_err(|e| {
            format!(
                "saved {}, but could not print the result: {}; the secret was not shown: {}{}",
                safe_path(&path),
                describe(&e),
                if adding {
                    format!(
                        "remove it with `pam-totp devices remove \"{}\"` and add it again",
                        safe(&device.name)
                    )
                } else {
                    "replace it with `pam-totp enroll --force`".to_string()
                },
                also(&recorded)
            )
        })?;
        return recorded;
    }

    let mut out = std::io::stdout().lock();
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // Before the save: nothing was saved yet, and the message says so.
    let w = |out: &mut std::io::StdoutLock<'_>, s: &str| {
        writeln!(out, "{s}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to stdout: {}; nothing was saved", describe(&e)))
    };
    if a.qr != QrMode::None {
        w(&mut out, "Scan this QR code with your authenticator app (Google Authenticator, Microsoft Authenticator, FreeOTP, ...):\n")?;
        w(&mut out, &qr::render(&uri, a.qr.into(), ansi)?)?;
    }
    w(&mut out, &format!("Or add it by hand:  key {}", grouped(&b32).as_str()))?;
    let how = match kind {
        Kind::Totp => format!(
            "time-based, {}, {} digits, every {} seconds",
            algorithm.name(),
            digits,
            params.period()
        ),
        Kind::Hotp => format!(
            "counter-based, {}, {} digits, counter starting at {}",
            algorithm.name(),
            digits,
            device.counter
        ),
    };
    w(&mut out, &format!("                    {how}"))?;
    w(
        &mut out,
        &format!("Issuer: {}    Account: {}", safe(&issuer), safe(&label)),
    )?;
    w(&mut out, &format!("URI: {}", uri.as_str()))?;
    w(&mut out, "")?;

    if !a.no_confirm {
        let used = confirm(&mut out, &device, ctx.cfg.hotp_window)?;
        if kind == Kind::Hotp {
            // The confirming code (and every one before it) is spent.
            device.counter = used.saturating_add(1);
        }
    }
    if ask_name {
        device.name = ask_for_name(&mut out, base.as_ref(), &account, &default_name)?;
        if device.name != default_name {
            auto_name = None;
        }
    }
    let Saved { secret, codes, written } = save(
        ctx,
        &path,
        &account,
        mode,
        &mut device,
        auto_name,
        codes_file.as_deref(),
        via_vault.is_some(),
    )?;
    log_added(ctx, &account, &device, mode, written.as_ref());
    // The codes are shown even if this fails; its error comes after them.
    let recorded = crate::admin::record_enrollment(ctx, &account);
    if adding {
        let text = format!(
            "Saved {}: \"{}\" added; {} authenticators: {}. Your backup codes are unchanged.\n\nDone. A code from any of them is accepted when you log in.",
            safe_path(&path),
            safe(&device.name),
            secret.devices.len(),
            secret
                .devices
                .iter()
                .map(|d| format!("\"{}\"", safe(&d.name)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| {
            format!(
                "saved {} (\"{}\" added), but could not print the result: {}{}",
                safe_path(&path),
                safe(&device.name),
                describe(&e),
                also(&recorded)
            )
        })?;
        return recorded;
    }
    if let Some(w) = &written {
        let text = format!(
            "Saved {} (authenticator \"{}\").\n\n{} backup codes written to {} (mode 0600, owned by {}). Each works once, if you lose your phone. Print the file or keep it somewhere safe, then delete it; the codes are not shown again (`pam-totp backup-codes --regenerate` makes a new set).\n\nDone. From now on you will be asked for a verification code when you log in.",
            safe_path(&path),
            safe(&device.name),
            codes.len(),
            safe_path(&w.path),
            safe(&account.name)
        );
        writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| {
            format!(
                "saved {} and the backup codes in {}, but could not print the result: {}{}",
                safe_path(&path),
                safe_path(&w.path),
                describe(&e),
                also(&recorded)
            )
        })?;
        return recorded;
    }
    // After the save: one write, and an error that says the secret was saved.
    let codes_text = backup_code_lines(&codes);
    let saved = format!(
        "Saved {} (authenticator \"{}\").\n\n",
        safe_path(&path),
        safe(&device.name)
    );
    // Sized up front: no reallocation leaves a copy of the codes behind.
    let mut rest = Zeroizing::new(String::with_capacity(saved.len() + codes_text.len() + 512));
    rest.push_str(&saved);
    rest.push_str("Backup codes. Each works once, if you lose your phone. Keep them somewhere safe;\n");
    rest.push_str("they are not shown again (`pam-totp backup-codes --regenerate` makes a new set):\n\n");
    rest.push_str(&codes_text);
    rest.push_str("\nDone. From now on you will be asked for a verification code when you log in.\n");
    out.write_all(rest.as_bytes()).and_then(|()| out.flush()).map_err(|e| {
        format!(
            "saved {}, but could not print the backup codes: {}; if they are not shown above, make a new set with `pam-totp backup-codes --regenerate`{}",
            safe_path(&path),
            describe(&e),
            also(&recorded)
        )
    })?;
    recorded
}

/// How [`store`] saves the new authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `--add`: onto the enrollment as it is at the save.
    Add,
    /// `--force`: a new enrollment in place of whatever is there.
    Replace,
    /// A first enrollment: refused if one was made meanwhile.
    New,
}

/// Saves `device` under the secret file's lock, on the file as it is now (not as it was
/// read before the confirmation prompt, which may have waited for minutes): added to the
/// enrollment ([`Mode::Add`]: it must still exist, have room and not have taken the name
/// meanwhile; a name chosen by us, from `auto_name`, moves on to the next free one), or a
/// new enrollment with the backup codes `hashes`. Returns the file saved.
fn store(
    path: &KeyFile,
    account: &Account,
    mode: Mode,
    device: &mut Device,
    auto_name: Option<&str>,
    hashes: &[String],
) -> Result<SecretFile, String> {
    let fresh = |device: &Device| SecretFile {
        devices: vec![device.clone()],
        backup_codes: hashes.to_vec(),
    };
    let saved = match mode {
        Mode::Replace => {
            let secret = fresh(device);
            replace_secret(path, account, &secret).map_err(|e| format!("could not save the secret: {e}"))?;
            for old in &path.leftovers {
                pam_totp_core::files::secret_file::remove_secret(old, account).map_err(|e| {
                    format!(
                        "the new keys were saved in {}, but {} could not be removed ({e}): remove it, or the user's logins are refused (keys in two places)",
                        safe_path(path),
                        safe_path(old)
                    )
                })?;
            }
            return Ok(secret);
        }
        Mode::New => update_secret(path, account, |current: Option<SecretFile>| -> Result<_, Change> {
            if current.is_some() {
                return Err(already_enrolled(account, path).into());
            }
            let secret = fresh(device);
            Ok((Some(secret.clone()), secret))
        }),
        Mode::Add => update_secret(path, account, |current: Option<SecretFile>| -> Result<_, Change> {
            let Some(mut secret) = current else {
                return Err(format!(
                    "{} is no longer enrolled: {} was removed while this command ran",
                    safe(&account.name),
                    safe_path(path)
                )
                .into());
            };
            if secret.devices.len() >= MAX_DEVICES {
                return Err(too_many(account, secret.devices.len()).into());
            }
            if secret.device(&device.name).is_some() {
                match auto_name {
                    Some(base) => device.name = unique_name(Some(&secret), base),
                    None => check_new_name(Some(&secret), account, &device.name)?,
                }
            }
            secret.devices.push(device.clone());
            Ok((Some(secret.clone()), secret))
        }),
    };
    saved.map_err(|e| match e {
        Change::Refused(why) => {
            format!("{why}; nothing was saved (delete the new entry from the app if it was added there)")
        }
        Change::Core(e) => format!("could not save the secret: {e}"),
    })
}

/// What [`save`] saved: the secret file, the backup codes in clear (to show once; none when
/// adding) and the file they were written to.
struct Saved {
    secret: SecretFile,
    codes: Vec<Zeroizing<String>>,
    written: Option<crate::codesfile::Written>,
}

/// New backup codes (none when adding: the user keeps theirs), written to `codes_file` first
/// when one is asked for, then [`store`]; if the save fails, the file is removed again, so a
/// file only ever holds codes that work.
#[allow(clippy::too_many_arguments)]
fn save(
    ctx: &Ctx,
    path: &KeyFile,
    account: &Account,
    mode: Mode,
    device: &mut Device,
    auto_name: Option<&str>,
    codes_file: Option<&std::path::Path>,
    via_vault: bool,
) -> Result<Saved, String> {
    let (codes, hashes) = if mode == Mode::Add {
        (Vec::new(), Vec::new())
    } else {
        new_backup_codes(DEFAULT_BACKUP_CODES).map_err(|e| e.to_string())?
    };
    let written = match codes_file {
        Some(p) => Some(
            crate::codesfile::write(ctx, account, p, &codes, ctx.now()).map_err(|e| {
                format!("{e}; nothing was saved (delete the new entry from the app if it was added there)")
            })?,
        ),
        None => None,
    };
    let stored = if via_vault {
        store_via_vault(mode, device, &hashes)
    } else {
        store(path, account, mode, device, auto_name, &hashes)
    };
    match stored {
        Ok(secret) => Ok(Saved { secret, codes, written }),
        Err(e) => Err(match written {
            Some(w) => {
                let p = safe_path(&w.path);
                w.undo();
                format!("{e} ({p} was removed again)")
            }
            None => e,
        }),
    }
}

/// [`store`] through the vault's helper: a first enrollment (trust on first use), or, after
/// a current code or an unused backup code, the new authenticator added or the enrollment
/// replaced. Returns the enrollment as the helper lists it (names only: this process never
/// holds the other keys).
fn store_via_vault(mode: Mode, device: &Device, hashes: &[String]) -> Result<SecretFile, String> {
    let fresh = SecretFile {
        devices: vec![device.clone()],
        backup_codes: hashes.to_vec(),
    };
    let answer = match mode {
        Mode::New => crate::vault::enroll(fresh.to_toml()),
        Mode::Add => crate::vault::change(pam_totp_core::vault::Change::Add {
            secret: SecretFile {
                devices: vec![device.clone()],
                backup_codes: Vec::new(),
            }
            .to_toml(),
        }),
        Mode::Replace => crate::vault::change(pam_totp_core::vault::Change::Replace {
            secret: fresh.to_toml(),
        }),
    }
    .map_err(|why| {
        // The helper's "nothing was changed" is said once, as this command says it.
        let why = why.strip_suffix("; nothing was changed").unwrap_or(&why);
        format!("{why}; nothing was saved (delete the new entry from the app if it was added there)")
    })?;
    Ok(names_only(&answer))
}

/// The enrollment a helper's answer lists, for names and counts only: its devices carry no
/// key (this process never reads the vault), so it is never saved.
fn names_only(a: &pam_totp_core::vault::Answer) -> SecretFile {
    SecretFile {
        devices: a
            .devices
            .iter()
            .map(|d| Device {
                name: d.name.clone(),
                kind: Kind::parse(&d.kind).unwrap_or(Kind::Totp),
                key: Zeroizing::new(Vec::new()),
                params: Algorithm::parse(&d.algorithm)
                    .and_then(|al| Params::new(al, d.digits, d.period))
                    .unwrap_or(Params::DEFAULT),
                counter: 0,
                issuer: d.issuer.clone(),
                label: d.label.clone(),
                created: d.created,
            })
            .collect(),
        backup_codes: Vec::new(),
    }
}

/// Writes `secret` in place of the enrollment, under the secret file's lock. A file that
/// cannot be read or locked (malformed, wrong mode ...) is replaced all the same, as
/// `--force` promises, without the lock.
pub fn replace_secret(path: &KeyFile, account: &Account, secret: &SecretFile) -> Result<(), Error> {
    let mut ran = false;
    let r = update_secret(path, account, |_| -> Result<_, Error> {
        ran = true;
        Ok((Some(secret.clone()), ()))
    });
    match r {
        Err(_) if !ran => save_secret(path, account, secret, true),
        r => r,
    }
}

fn too_many(account: &Account, n: usize) -> String {
    format!(
        "{} already has {n} authenticators, the most one user can have; remove one first (`pam-totp devices remove NAME`)",
        safe(&account.name),
    )
}

fn already_enrolled(account: &Account, path: &std::path::Path) -> String {
    format!(
        "{} is already enrolled ({}); use --add to add another authenticator, or --force to replace the enrollment (the current authenticators and backup codes will stop working)",
        safe(&account.name),
        safe_path(path)
    )
}

/// Every enrollment goes on record in syslog: who enrolled whom, which authenticator (by
/// name, never a key), and where backup codes were written.
fn log_added(ctx: &Ctx, account: &Account, device: &Device, mode: Mode, file: Option<&crate::codesfile::Written>) {
    let what = match mode {
        Mode::Add => "added authenticator",
        Mode::Replace => "replaced the enrollment with authenticator",
        Mode::New => "enrolled with authenticator",
    };
    syslog(&format!(
        "enroll: {what} \"{}\" ({}) for user={} by {}{}",
        pam_totp_core::text::log_name(&device.name),
        device.kind.name(),
        account.name,
        ctx.by(),
        file.map(|f| format!(", backup codes written to {}", f.path.display()))
            .unwrap_or_default()
    ));
}

/// The error of recording the enrollment, to add to another error so neither is lost.
fn also(recorded: &Result<(), String>) -> String {
    match recorded {
        Ok(()) => String::new(),
        Err(e) => format!("; also: {e}"),
    }
}

fn not_saved(e: std::io::Error) -> String {
    format!("cannot write to stdout: {}; nothing was saved", describe(&e))
}

fn read_answer(what: &str) -> Result<Option<Zeroizing<String>>, String> {
    let mut line = Zeroizing::new(String::new());
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the {what}: {e}"))?;
    Ok((n > 0).then_some(line))
}

/// Three tries to type the code the app shows; nothing is saved unless one matches.
/// Returns the time step (TOTP) or counter (HOTP: one of the first `hotp_window`) matched.
fn confirm(out: &mut std::io::StdoutLock<'_>, device: &Device, hotp_window: u64) -> Result<u64, String> {
    let p = &device.params;
    let digits = p.digits();
    for tries_left in (0..3).rev() {
        let prompt = match device.kind {
            Kind::Totp => format!("Enter the {digits}-digit code shown in the app to confirm: "),
            Kind::Hotp => {
                format!("Enter the {digits}-digit code the app shows now (press its button for one) to confirm: ")
            }
        };
        write!(out, "{prompt}").and_then(|()| out.flush()).map_err(not_saved)?;
        let Some(line) = read_answer("code")? else {
            return Err("no code entered; nothing was saved (use --no-confirm to skip the check)".into());
        };
        let answer: Zeroizing<String> = Zeroizing::new(line.chars().filter(|c| !c.is_whitespace()).collect());
        let found = if answer.len() != digits as usize {
            None
        } else {
            match device.kind {
                Kind::Totp => {
                    let now = pam_totp_core::clock::Clock::now(&pam_totp_core::clock::SystemClock);
                    otp::find_step(&device.key, &answer, p.step_at(now), 1, p)
                }
                Kind::Hotp => otp::find_counter(
                    &device.key,
                    &answer,
                    device.counter,
                    device.counter + hotp_window.max(1) - 1,
                    p.algorithm(),
                    digits,
                ),
            }
        };
        if let Some(used) = found {
            writeln!(out, "Code confirmed.").map_err(not_saved)?;
            return Ok(used);
        }
        if tries_left > 0 {
            let why = match device.kind {
                Kind::Totp => format!("Codes change every {} seconds: type the one shown now", p.period()),
                Kind::Hotp => format!(
                    "It must be one of the first {} codes of this key: type the one the app shows now",
                    hotp_window.max(1)
                ),
            };
            writeln!(
                out,
                "That code does not match. {why} ({tries_left} {} left).",
                if tries_left == 1 { "try" } else { "tries" }
            )
            .map_err(not_saved)?;
        }
    }
    Err(match device.kind {
        Kind::Totp => "the code did not match three times; nothing was saved. Check that the phone sets its time automatically, then run `pam-totp enroll` again",
        Kind::Hotp => "the code did not match three times; nothing was saved. Check that the app added a counter-based entry, then run `pam-totp enroll` again",
    }
    .into())
}

/// "Name for this authenticator [phone]: " — an empty answer takes the default; a name that
/// is invalid or taken is asked again (three tries).
fn ask_for_name(
    out: &mut std::io::StdoutLock<'_>,
    base: Option<&SecretFile>,
    account: &Account,
    default: &str,
) -> Result<String, String> {
    for _ in 0..3 {
        write!(out, "Name for this authenticator [{}]: ", safe(default))
            .and_then(|()| out.flush())
            .map_err(not_saved)?;
        let Some(line) = read_answer("name")? else {
            return Err("no name entered; nothing was saved (use --name NAME)".into());
        };
        let answer = line.trim();
        if answer.is_empty() {
            return Ok(default.to_string());
        }
        let problem = if !valid_device_name(answer) {
            format!("That cannot name an authenticator: {}.", crate::devices::name_rule())
        } else if let Some(d) = base.and_then(|s| s.device(answer)) {
            format!(
                "{} already has an authenticator named \"{}\"; choose another name.",
                safe(&account.name),
                safe(&d.name)
            )
        } else {
            return Ok(answer.to_string());
        };
        writeln!(out, "{problem}").map_err(not_saved)?;
    }
    Err("no usable name given three times; nothing was saved (use --name NAME)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_totp_core::otp::enroll::new_secret;

    #[test]
    fn default_names_count_up_past_taken_ones_ignoring_case() {
        assert_eq!(unique_name(None, "phone"), "phone");
        let mut d = new_device("Phone", Kind::Totp, Params::DEFAULT, "", "", 0).unwrap();
        let (mut s, _) = new_secret(d.clone(), 0).unwrap();
        assert_eq!(unique_name(Some(&s), "phone"), "phone 2");
        d.name = "phone 2".into();
        s.devices.push(d);
        assert_eq!(unique_name(Some(&s), "phone"), "phone 3");
        assert_eq!(unique_name(Some(&s), "token"), "token");
    }
}
