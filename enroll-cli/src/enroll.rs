//! `pam-totp enroll`: new secret, QR code, confirmation, save, backup codes.
//!
//! Output after the save can fail (a closed pipe: `pam-totp enroll --json | head -c0`):
//! the error then says that the secret WAS saved, and what to do about what was not shown.

use std::io::{BufRead, IsTerminal, Write};

use pam_totp_core::enroll::{
    backup_code_lines, default_issuer, default_label, grouped, new_secret, otpauth_uri, save_secret, secret_path,
    DEFAULT_BACKUP_CODES,
};
use pam_totp_core::error::{Error, FileProblem};
use pam_totp_core::otp::{self, Algorithm, Params};
use pam_totp_core::secret::SecretFile;
use zeroize::Zeroizing;

use crate::context::{describe, json_line, safe, safe_path, Ctx};
use crate::qr::{self, QrMode};

#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// Enroll this user (root only for other users).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
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
    /// Replace an existing enrollment (the old app entry and backup codes stop working).
    #[arg(long)]
    force: bool,
    /// Print one JSON object (otpauth_uri, secret, backup_codes, file ...) and nothing else;
    /// implies --no-confirm and --qr none.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, a: EnrollArgs) -> Result<(), String> {
    let account = ctx.target(a.user.as_deref(), "enroll")?;
    let path = secret_path(&ctx.cfg, &account);
    if !a.force {
        match pam_totp_core::enroll::load_secret(&path, &account) {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(format!(
                    "{} is already enrolled ({}); use --force to replace it (the current app entry and backup codes will stop working)",
                    safe(&account.name),
                    safe_path(&path)
                ))
            }
            Err(e) => return Err(format!("{e}; fix it or use --force to replace it")),
        }
    }
    // Before anything secret is shown: will we be able to save it?
    pam_totp_core::enroll::check_writable(&path, &account).map_err(|e| format!("could not save the secret: {e}"))?;
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
    let issuer = a.issuer.clone().unwrap_or_else(|| default_issuer(&ctx.cfg));
    let label = a.label.clone().unwrap_or_else(|| default_label(&account.name));
    let (secret, codes) =
        new_secret(params, &issuer, &label, ctx.now(), DEFAULT_BACKUP_CODES).map_err(|e| e.to_string())?;
    let uri = otpauth_uri(&secret);
    let b32 = otp::encode_base32(&secret.key);

    if a.json {
        save(&path, &account, &secret, a.force)?;
        let recorded = crate::admin::record_enrollment(ctx, &account);
        let obj = serde_json::json!({
            "user": account.name,
            "file": path,
            "otpauth_uri": uri.as_str(),
            "secret": b32.as_str(),
            "issuer": issuer,
            "label": label,
            "algorithm": algorithm.name(),
            "digits": digits,
            "period": params.period(),
            "backup_codes": codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        });
        crate::context::print(&json_line(&obj)).map_err(|e| {
            format!(
                "saved {}, but could not print the result: {}; the secret was not shown: replace it with `pam-totp enroll --force`{}",
                safe_path(&path),
                describe(&e),
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
    w(
        &mut out,
        &format!(
            "                    time-based, {}, {} digits, every {} seconds",
            algorithm.name(),
            digits,
            params.period()
        ),
    )?;
    w(
        &mut out,
        &format!("Issuer: {}    Account: {}", safe(&issuer), safe(&label)),
    )?;
    w(&mut out, &format!("URI: {}", uri.as_str()))?;
    w(&mut out, "")?;

    if !a.no_confirm {
        confirm(&mut out, &secret, ctx.now())?;
    }
    save(&path, &account, &secret, a.force)?;
    // The codes are shown even if this fails; its error comes after them.
    let recorded = crate::admin::record_enrollment(ctx, &account);
    // After the save: one write, and an error that says the secret was saved.
    let codes_text = backup_code_lines(&codes);
    let saved = format!("Saved {}.\n\n", safe_path(&path));
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

/// The error of recording the enrollment, to add to another error so neither is lost.
fn also(recorded: &Result<(), String>) -> String {
    match recorded {
        Ok(()) => String::new(),
        Err(e) => format!("; also: {e}"),
    }
}

fn save(
    path: &std::path::Path,
    account: &pam_totp_core::account::Account,
    secret: &SecretFile,
    force: bool,
) -> Result<(), String> {
    save_secret(path, account, secret, force).map_err(|e| match e {
        Error::File {
            problem: FileProblem::AlreadyExists,
            ..
        } => {
            format!(
                "{} is already enrolled ({}); use --force to replace it",
                safe(&account.name),
                safe_path(path)
            )
        }
        e => format!("could not save the secret: {e}"),
    })
}

fn not_saved(e: std::io::Error) -> String {
    format!("cannot write to stdout: {}; nothing was saved", describe(&e))
}

/// Three tries to type the code the app shows; nothing is saved unless one matches.
fn confirm(out: &mut std::io::StdoutLock<'_>, secret: &SecretFile, _start: u64) -> Result<(), String> {
    let stdin = std::io::stdin();
    let digits = secret.params.digits();
    for tries_left in (0..3).rev() {
        write!(out, "Enter the {digits}-digit code shown in the app to confirm: ")
            .and_then(|()| out.flush())
            .map_err(not_saved)?;
        let mut line = Zeroizing::new(String::new());
        let n = stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the code: {e}"))?;
        if n == 0 {
            return Err("no code entered; nothing was saved (use --no-confirm to skip the check)".into());
        }
        let answer: Zeroizing<String> = Zeroizing::new(line.chars().filter(|c| !c.is_whitespace()).collect());
        let now = pam_totp_core::clock::Clock::now(&pam_totp_core::clock::SystemClock);
        let ok = answer.len() == digits as usize
            && otp::find_step(&secret.key, &answer, secret.params.step_at(now), 1, &secret.params).is_some();
        if ok {
            writeln!(out, "Code confirmed.").map_err(not_saved)?;
            return Ok(());
        }
        if tries_left > 0 {
            writeln!(
                out,
                "That code does not match. Codes change every {} seconds: type the one shown now ({tries_left} {} left).",
                secret.params.period(),
                if tries_left == 1 { "try" } else { "tries" }
            )
            .map_err(not_saved)?;
        }
    }
    Err("the code did not match three times; nothing was saved. Check that the phone sets its time automatically, then run `pam-totp enroll` again".into())
}
