//! `pam-totp import google-authenticator`: keep the phone's entry (time- or counter-based),
//! bring the scratch codes. `pam-totp import tokens`: hardware tokens from a vendor's seed
//! file (CSV or RFC 6030 PSKC), added to each user's authenticators (root only).
//!
//! Never: prints or logs a key, or a field of a token file that could be one (the core's
//! [`TokenError`] is made so); writes part of one user's tokens when another of theirs was
//! refused.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pam_totp_core::account::Account;
use pam_totp_core::admin::google::{parse_google_authenticator, GoogleAuthenticatorFile};
use pam_totp_core::admin::tokens::{self, TokenError, TokenFormat, TokenKind, TokenRecord};
use pam_totp_core::files::fs::{read_checked, with_fs_identity, Owners};
use pam_totp_core::files::secret::{valid_device_name, Device, Kind, SecretFile, MAX_DEVICES};
use pam_totp_core::files::secret_file::{key_file, load_secret, update_secret};
use pam_totp_core::otp::enroll::{default_issuer, default_label, DEFAULT_DEVICE_NAME};
use pam_totp_core::otp::{Algorithm, Params};

use crate::context::{lookup, print, safe, safe_path, syslog, Change, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum ImportFrom {
    /// A ~/.google_authenticator file (google-authenticator-libpam), time-based (TOTP) or
    /// counter-based (HOTP: its HOTP_COUNTER carries over). Replaces the enrollment.
    GoogleAuthenticator {
        /// Import for this user (root only for other users).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// The file to read (default: the user's ~/.google_authenticator).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Name of the imported authenticator (default "phone").
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Replace an existing pam_totp enrollment.
        #[arg(long)]
        force: bool,
    },
    /// Hardware tokens from the vendor's seed file (root only): CSV with the header
    /// `user,name,type,secret,algorithm,digits,period,counter` (secret in base32) or RFC 6030
    /// PSKC (plain or encrypted with a pre-shared AES-128 key). Each token is added to its
    /// user's authenticators; one line of result per token. When a token of a user is
    /// refused, nothing is written for that user.
    ///
    /// A PSKC file's MAC covers the encrypted keys only, not the user names: tokens for root
    /// and members of protected_groups are refused without --allow-protected.
    Tokens {
        /// The seed file (at most 1 MiB; root's, and writable by root only).
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// The file's format (default: PSKC if it is XML, else CSV).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// The pre-shared key of an encrypted PSKC file: 32 hex digits, in a file that group
        /// and others cannot read.
        #[arg(long, value_name = "PATH")]
        psk_file: Option<PathBuf>,
        /// Replace a user's authenticator of the same name (default: refuse that token).
        #[arg(long)]
        force: bool,
        /// Also import tokens for root and for members of protected_groups (default: refuse
        /// them, also when run as root: nothing in a token file, its MAC included, vouches
        /// for the user names in it).
        #[arg(long)]
        allow_protected: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Csv,
    Pskc,
}

pub fn run(ctx: &Ctx, from: ImportFrom) -> Result<(), String> {
    match from {
        ImportFrom::GoogleAuthenticator {
            user,
            file,
            name,
            force,
        } => google_authenticator(ctx, user.as_deref(), file, name, force),
        ImportFrom::Tokens {
            file,
            format,
            psk_file,
            force,
            allow_protected,
        } => import_tokens(ctx, &file, format, psk_file.as_deref(), force, allow_protected),
    }
}

/// A file of the user's (a `~/.google_authenticator`), read the way the module reads
/// secrets: as the user, no symlink, private. `None`: there is none.
pub fn read_as_user(account: &Account, path: &std::path::Path) -> Result<Option<zeroize::Zeroizing<String>>, String> {
    let owners = Owners(vec![account.uid, 0]);
    with_fs_identity(account.uid, account.gid, path, || read_checked(path, &owners))
        .and_then(|r| r)
        .map_err(|e| e.to_string())
}

/// A google-authenticator file's secret as a secret file: the same key (the app keeps
/// working), its unused scratch codes as backup codes.
pub fn ga_secret(
    ctx: &Ctx,
    account: &Account,
    ga: &GoogleAuthenticatorFile,
    name: String,
) -> Result<SecretFile, String> {
    let mut hashes = Vec::with_capacity(ga.scratch_codes.len());
    for c in &ga.scratch_codes {
        hashes.push(pam_totp_core::otp::backup::hash(c).map_err(|e| format!("the OS random source failed: {e}"))?);
    }
    let device = Device {
        name,
        kind: ga.kind,
        key: ga.key.clone(),
        params: Params::new(Algorithm::Sha1, 6, ga.period).ok_or("unsupported step size")?,
        // google-authenticator's HOTP_COUNTER is the next counter it would accept.
        counter: ga.counter,
        issuer: default_issuer(ctx.cfg.issuer.as_deref()),
        label: default_label(&account.name),
        created: ctx.now(),
    };
    Ok(SecretFile {
        devices: vec![device],
        backup_codes: hashes,
    })
}

fn google_authenticator(
    ctx: &Ctx,
    user: Option<&str>,
    file: Option<PathBuf>,
    name: Option<String>,
    force: bool,
) -> Result<(), String> {
    let account = ctx.target_to_change(user, "import for")?;
    let name = name.unwrap_or_else(|| DEFAULT_DEVICE_NAME.to_string());
    if !valid_device_name(&name) {
        return Err(format!(
            "\"{}\" cannot name an authenticator: {}",
            safe(&name),
            crate::devices::name_rule()
        ));
    }
    let src = match file {
        Some(f) => std::path::absolute(&f).map_err(|e| format!("{}: {e}", f.display()))?,
        None => account.home.join(".google_authenticator"),
    };
    // Read it the way the module reads secrets: as the user, no symlinks, private file.
    let text = read_as_user(&account, &src)?.ok_or_else(|| format!("{} does not exist", src.display()))?;
    let ga = parse_google_authenticator(&text).map_err(|e| format!("{}: {e}", src.display()))?;

    let path = key_file(&ctx.cfg, &account);
    if !force && load_secret(&path, &account).map(|s| s.is_some()).unwrap_or(true) {
        return Err(already_enrolled(&account, &path));
    }
    let secret = ga_secret(ctx, &account, &ga, name)?;
    if force {
        crate::enroll::replace_secret(&path, &account, &secret)
            .map_err(|e| format!("could not save the secret: {e}"))?;
    } else {
        // Checked again under the lock: an enrollment made since the check above is kept.
        update_secret(&path, &account, |current: Option<SecretFile>| -> Result<_, Change> {
            if current.is_some() {
                return Err(already_enrolled(&account, &path).into());
            }
            Ok((Some(secret.clone()), ()))
        })
        .map_err(|e| match e {
            Change::Refused(why) => why,
            Change::Core(e) => format!("could not save the secret: {e}"),
        })?;
    }
    crate::admin::record_enrollment(ctx, &account)?;
    syslog(&format!(
        "imported google-authenticator secret ({}) for user={} by {}",
        ga.kind.name(),
        account.name,
        ctx.by()
    ));
    let n = secret.backup_codes.len();
    let mut text = match ga.kind {
        Kind::Totp => format!(
            "Imported {} into {}: same secret, so the app keeps working; {} scratch code{} became backup codes.",
            safe_path(&src),
            safe_path(&path),
            n,
            if n == 1 { "" } else { "s" }
        ),
        Kind::Hotp => format!(
            "Imported {} into {}: same secret, counter-based (HOTP), next counter {}, so the app keeps working; {} scratch code{} became backup codes.",
            safe_path(&src),
            safe_path(&path),
            ga.counter,
            n,
            if n == 1 { "" } else { "s" }
        ),
    };
    match ga.kind {
        Kind::Totp => {
            if let Some(w) = ga.window_size.filter(|&w| w > 3) {
                text.push_str(&format!("\nNote: the file allowed WINDOW_SIZE {w}; pam_totp's window is set for the whole host (module option window=N, steps either side; now {}).", ctx.cfg.window));
            }
        }
        Kind::Hotp => {
            if let Some(w) = ga.window_size.filter(|&w| w > ctx.cfg.hotp_window) {
                text.push_str(&format!("\nNote: the file allowed WINDOW_SIZE {w}; pam_totp's counter-based window is set for the whole host (module option hotp_window=N; now {}).", ctx.cfg.hotp_window));
            }
        }
    }
    if !ga.ignored.is_empty() {
        text.push_str(&format!(
            "\nNote: not carried over (pam_totp always refuses reuse and locks out after repeated failures): {}.",
            safe(&ga.ignored.join(", "))
        ));
    }
    text.push_str("\nThe old file was left in place; remove it once logins with pam_totp work.");
    print(&text).map_err(|e| {
        format!(
            "imported into {}, but the result could not be printed: {}",
            safe_path(&path),
            crate::context::describe(&e)
        )
    })
}

fn already_enrolled(account: &Account, path: &Path) -> String {
    format!(
        "{} is already enrolled ({}); use --force to replace it",
        safe(&account.name),
        safe_path(path)
    )
}

/// The most read of a pre-shared key file (the core refuses more than 4096 bytes).
const MAX_PSK_FILE: u64 = 4097;

/// Reads an administrator's input file ([`read_regular`]), with the messages of this command.
fn read_admin_file(path: &Path, what: &str, max: u64) -> Result<(std::fs::File, Vec<u8>), String> {
    use pam_totp_core::error::{Error, FileProblem};
    let shown = safe_path(path);
    pam_totp_core::files::fs::read_regular(path, max).map_err(|e| match e {
        Error::File {
            problem: FileProblem::NotRegular(_),
            ..
        } => format!("{what} {shown} is not a regular file"),
        Error::File {
            problem: FileProblem::TooLarge { size, max },
            ..
        } => format!("{what} {shown} is {size} bytes; at most {max} are read"),
        Error::File {
            problem: FileProblem::Io(why),
            ..
        } => format!("{what} {shown}: {why}"),
        e => format!("{what} {shown}: {e}"),
    })
}

/// A token file binds seeds to accounts, and root writes what it says: one that a user other
/// than root could have changed (owned by them, or writable by group or others) could hold
/// that user's own token under any account's name, root's included. Checked on the file that
/// was read.
fn refuse_if_others_could_change(f: &std::fs::File, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let md = f
        .metadata()
        .map_err(|e| format!("the token file {}: {e}", safe_path(path)))?;
    if md.uid() != 0 {
        return Err(format!(
            "the token file {} belongs to uid {}, not root: its owner could have put their own token in it under any user's name; `chown root:root` it, check its contents, and import again",
            safe_path(path),
            md.uid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(format!(
            "the token file {} can be changed by group or others (mode {:04o}): anyone could have put their own token in it under any user's name; `chmod 600` it, check its contents, and import again",
            safe_path(path),
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

fn read_psk(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let (f, buf) = read_admin_file(path, "the pre-shared key file", MAX_PSK_FILE)?;
    let buf = zeroize::Zeroizing::new(buf);
    let mode = f.metadata().map_err(|e| e.to_string())?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "the pre-shared key file {} can be read by group or others (mode {:04o}): whoever reads it can decrypt the token seeds; `chmod 600` it (and move it off shared storage)",
            safe_path(path),
            mode & 0o7777
        ));
    }
    let text = std::str::from_utf8(&buf).map_err(|_| {
        format!(
            "the pre-shared key file {} is not text (32 hex digits expected)",
            safe_path(path)
        )
    })?;
    tokens::parse_psk_file(text).map_err(|e| format!("{}: {e}", safe_path(path)))
}

/// The result of one token, as printed.
enum Outcome {
    Added,
    Refused(String),
    /// Fine itself, but another token of the same user was refused.
    Held,
}

/// "(hotp, SHA1, 6 digits)", with the period or start counter when not the usual.
fn token_summary(r: &TokenRecord) -> String {
    let mut s = format!("{}, {}, {} digits", r.kind.name(), r.algorithm.name(), r.digits);
    match r.kind {
        TokenKind::Totp if r.period != 30 => s.push_str(&format!(", every {} s", r.period)),
        TokenKind::Hotp if r.counter != 0 => s.push_str(&format!(", from counter {}", r.counter)),
        _ => {}
    }
    s
}

fn import_tokens(
    ctx: &Ctx,
    file: &Path,
    format: Option<FormatArg>,
    psk_file: Option<&Path>,
    force: bool,
    allow_protected: bool,
) -> Result<(), String> {
    ctx.require_root("import tokens")?;
    let (opened, bytes) = read_admin_file(file, "the token file", tokens::MAX_INPUT_BYTES as u64)?;
    refuse_if_others_could_change(&opened, file)?;
    // It holds every seed in clear (or encrypted): wiped after use.
    let bytes = zeroize::Zeroizing::new(bytes);
    let text =
        std::str::from_utf8(&bytes).map_err(|_| format!("the token file {} is not UTF-8 text", safe_path(file)))?;
    let format = match format {
        Some(FormatArg::Csv) => TokenFormat::Csv,
        Some(FormatArg::Pskc) => TokenFormat::Pskc,
        None => tokens::detect_format(text),
    };
    let psk = psk_file.map(read_psk).transpose()?;
    let parsed = match format {
        TokenFormat::Csv => {
            if psk.is_some() {
                return Err("--psk-file is for encrypted PSKC files; a CSV file holds its secrets in base32".into());
            }
            tokens::parse_csv(text)
        }
        TokenFormat::Pskc => tokens::parse_pskc(text, psk.as_deref().map(|k| k.as_slice())),
    };
    let records = parsed.map_err(|e: TokenError| {
        format!(
            "{}: {}: {}; nothing was imported",
            safe_path(file),
            safe(&e.entry),
            safe(&e.why)
        )
    })?;
    if records.is_empty() {
        return Err(format!(
            "{}: no tokens in the file; nothing was imported",
            safe_path(file)
        ));
    }

    // Grouped by the account's own name (two spellings of one account are one user), in
    // the order users first appear.
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, (Result<Account, String>, Vec<usize>)> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let account = lookup(&r.user);
        let key = match &account {
            Ok(a) => format!("ok:{}", a.name),
            Err(_) => format!("bad:{}", r.user),
        };
        let g = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            (account, Vec::new())
        });
        g.1.push(i);
    }

    let mut outcomes: Vec<Option<Outcome>> = records.iter().map(|_| None).collect();
    let mut shown_user: Vec<String> = records.iter().map(|r| r.user.clone()).collect();
    let mut problems: Vec<String> = Vec::new();
    let (mut added, mut users) = (0usize, 0usize);
    for key in &order {
        let (account, idx) = &groups[key];
        let account = match account {
            Ok(a) => a,
            Err(e) => {
                for &i in idx {
                    outcomes[i] = Some(Outcome::Refused(e.clone()));
                }
                continue;
            }
        };
        for &i in idx {
            shown_user[i] = account.name.clone();
        }
        let (results, warning) = import_for_user(ctx, account, &records, idx, force, allow_protected);
        let all_ok = results.iter().all(|(_, o)| matches!(o, Outcome::Added));
        for (i, o) in results {
            outcomes[i] = Some(o);
        }
        if all_ok {
            added += idx.len();
            users += 1;
        }
        if let Some(w) = warning {
            problems.push(format!("{}: {w}", safe(&account.name)));
        }
    }

    let mut lines = Vec::with_capacity(records.len() + 1);
    let (mut refused, mut held) = (0usize, 0usize);
    for key in &order {
        for &i in &groups[key].1 {
            let r = &records[i];
            let who = safe(&shown_user[i]).into_owned();
            lines.push(match &outcomes[i] {
                Some(Outcome::Added) => format!("{who}: added \"{}\" ({})", safe(&r.name), token_summary(r)),
                Some(Outcome::Refused(why)) => {
                    refused += 1;
                    format!("{who}: {}: refused: {why}", safe(&r.entry))
                }
                Some(Outcome::Held) | None => {
                    held += 1;
                    format!(
                        "{who}: {}: not imported (\"{}\"): another token of {who} was refused, and nothing is written for a user on error",
                        safe(&r.entry),
                        safe(&r.name)
                    )
                }
            });
        }
    }
    if let Some(note) = mac_note(format, &records) {
        lines.push(note);
    }
    let summary = format!(
        "{added} token{} imported for {users} user{}; {refused} refused{}.",
        if added == 1 { "" } else { "s" },
        if users == 1 { "" } else { "s" },
        if held > 0 {
            format!(", {held} more not imported with them")
        } else {
            String::new()
        }
    );
    let failed = refused > 0 || held > 0 || !problems.is_empty();
    if !failed {
        lines.push(summary.clone());
    }
    let printed = print(&lines.join("\n"));
    if failed {
        let mut msg = format!("import tokens from {}: {summary}", safe_path(file));
        if let Some(p) = problems.first() {
            msg.push_str(&format!(" First problem: {p}"));
        }
        if let Err(e) = printed {
            msg.push_str(&format!(
                " (the per-token results could not be printed: {})",
                crate::context::describe(&e)
            ));
        }
        return Err(msg);
    }
    printed.map_err(|e| {
        format!(
            "{summary} But the per-token results could not be printed: {}",
            crate::context::describe(&e)
        )
    })
}

/// What the file's MAC covered, for the output of a PSKC import: that no MAC was checked,
/// or that it covers the keys and not the user names (so no one reads "MAC checked" as
/// "the file is authentic"). None for CSV.
fn mac_note(format: TokenFormat, records: &[TokenRecord]) -> Option<String> {
    if format != TokenFormat::Pskc {
        return None;
    }
    let checked = records.iter().filter(|r| r.mac_checked).count();
    let what = "it covers the encrypted keys only, not the user names, device names or other settings in the \
                file; a token for root or a member of protected_groups is imported only with --allow-protected.";
    Some(if checked == 0 {
        "No MAC checked: nothing in the file was checked for changes.".to_string()
    } else if checked == records.len() {
        format!("MAC checked: {what}")
    } else {
        format!("MAC checked for {checked} of {} keys: {what}", records.len())
    })
}

/// All tokens `idx` of `records` for one account: every one is checked first, and the file
/// is written once, only when none was refused (a failed save refuses them all). The second
/// value is a problem after the save (the enrollment could not be put on record). Root and
/// members of protected_groups are refused without `allow_protected`.
fn import_for_user(
    ctx: &Ctx,
    account: &Account,
    records: &[TokenRecord],
    idx: &[usize],
    force: bool,
    allow_protected: bool,
) -> (Vec<(usize, Outcome)>, Option<String>) {
    let refuse_all = |why: String| idx.iter().map(|&i| (i, Outcome::Refused(why.clone()))).collect();
    if let Err(why) = ctx.may_change(account, "import tokens for") {
        return (refuse_all(why), None);
    }
    // A token file names its users in fields nothing authenticates (a PSKC MAC covers the
    // keys only): whoever could change the file could put a token they hold on root's account.
    if !allow_protected {
        if let Some(why) = ctx.protected(account) {
            syslog(&format!(
                "import tokens: refused for user={} by {}: {why}; no --allow-protected",
                account.name,
                ctx.by()
            ));
            return (
                refuse_all(format!(
                    "{why}; tokens for root and members of protected_groups are imported only with --allow-protected"
                )),
                None,
            );
        }
    }
    let path = key_file(&ctx.cfg, account);
    let now = ctx.now();
    let issuer = default_issuer(ctx.cfg.issuer.as_deref());
    let label = default_label(&account.name);
    // Under the secret file's lock, on the file as it is now: a change another command made
    // since (a device removed, new backup codes) is kept.
    let mut read = false;
    let r = update_secret(&path, account, |existing: Option<SecretFile>| -> Result<_, Change> {
        read = true;
        let mut secret = existing.unwrap_or(SecretFile {
            devices: Vec::new(),
            backup_codes: Vec::new(),
        });
        let mut results = Vec::with_capacity(idx.len());
        // Names added from this file, so two spellings of one account cannot collide silently.
        let mut from_file: Vec<String> = Vec::new();
        for &i in idx {
            let outcome = add_token(
                &mut secret,
                &mut from_file,
                &records[i],
                force,
                &issuer,
                &label,
                now,
                account,
            );
            results.push((i, outcome));
        }
        if results.iter().any(|(_, o)| !matches!(o, Outcome::Added)) {
            for (_, o) in results.iter_mut() {
                if matches!(o, Outcome::Added) {
                    *o = Outcome::Held;
                }
            }
            return Ok((None, results));
        }
        Ok((Some(secret), results))
    });
    let results = match r {
        Ok(results) => results,
        Err(e) => {
            let why = match e {
                Change::Refused(why) => why,
                Change::Core(e) => safe(&e.to_string()).into_owned(),
            };
            return (
                refuse_all(if read {
                    format!("could not save {}: {why}; nothing was written", safe_path(&path))
                } else {
                    format!("the secret file cannot be used: {why}")
                }),
                None,
            );
        }
    };
    if results.iter().any(|(_, o)| !matches!(o, Outcome::Added)) {
        return (results, None);
    }
    for &i in idx {
        let r = &records[i];
        syslog(&format!(
            "import tokens: authenticator \"{}\" ({}) for user={} by {}",
            pam_totp_core::text::log_name(&r.name),
            r.kind.name(),
            account.name,
            ctx.by()
        ));
    }
    (results, crate::admin::record_enrollment(ctx, account).err())
}

#[allow(clippy::too_many_arguments)]
fn add_token(
    secret: &mut SecretFile,
    from_file: &mut Vec<String>,
    r: &TokenRecord,
    force: bool,
    issuer: &str,
    label: &str,
    now: u64,
    account: &Account,
) -> Outcome {
    if !valid_device_name(&r.name) {
        return Outcome::Refused(format!(
            "\"{}\" cannot name an authenticator: {}",
            safe(&r.name),
            crate::devices::name_rule()
        ));
    }
    if from_file.iter().any(|n| n.eq_ignore_ascii_case(&r.name)) {
        return Outcome::Refused(format!(
            "a second token named \"{}\" for {} in this file",
            safe(&r.name),
            safe(&account.name)
        ));
    }
    let Some(params) = Params::new(r.algorithm, r.digits, r.period) else {
        return Outcome::Refused("digits must be 6 or 8 and the period 15 to 300 seconds".into());
    };
    let device = Device {
        name: r.name.clone(),
        kind: match r.kind {
            TokenKind::Totp => Kind::Totp,
            TokenKind::Hotp => Kind::Hotp,
        },
        key: r.key.clone(),
        params,
        counter: r.counter,
        issuer: issuer.to_string(),
        label: label.to_string(),
        created: now,
    };
    match secret.device_index(&r.name) {
        Some(j) if force => secret.devices[j] = device,
        Some(j) => {
            return Outcome::Refused(format!(
                "{} already has an authenticator named \"{}\" (--force replaces it)",
                safe(&account.name),
                safe(&secret.devices[j].name)
            ))
        }
        None if secret.devices.len() >= MAX_DEVICES => {
            return Outcome::Refused(format!(
                "{} would have more than {MAX_DEVICES} authenticators",
                safe(&account.name)
            ))
        }
        None => secret.devices.push(device),
    }
    from_file.push(r.name.clone());
    Outcome::Added
}
