//! `pam-totp import google-authenticator`: keep the phone's entry, bring the scratch codes.

use std::path::PathBuf;

use pam_totp_core::enroll::{load_secret, save_secret, secret_path};
use pam_totp_core::fs::{read_checked, with_fs_identity, Owners};
use pam_totp_core::import::parse_google_authenticator;
use pam_totp_core::otp::{Algorithm, Params};
use pam_totp_core::secret::SecretFile;

use crate::context::{print, safe, safe_path, syslog, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum ImportFrom {
    /// A ~/.google_authenticator file (google-authenticator-libpam). TOTP only.
    GoogleAuthenticator {
        /// Import for this user (root only for other users).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// The file to read (default: the user's ~/.google_authenticator).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Replace an existing pam_totp enrollment.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(ctx: &Ctx, from: ImportFrom) -> Result<(), String> {
    let ImportFrom::GoogleAuthenticator { user, file, force } = from;
    let account = ctx.target(user.as_deref(), "import for")?;
    let src = match file {
        Some(f) => std::path::absolute(&f).map_err(|e| format!("{}: {e}", f.display()))?,
        None => account.home.join(".google_authenticator"),
    };
    // Read it the way the module reads secrets: as the user, no symlinks, private file.
    let owners = Owners(vec![account.uid, 0]);
    let text = with_fs_identity(account.uid, account.gid, &src, || read_checked(&src, &owners))
        .and_then(|r| r)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} does not exist", src.display()))?;
    let ga = parse_google_authenticator(&text).map_err(|e| format!("{}: {e}", src.display()))?;

    let path = secret_path(&ctx.cfg, &account);
    if !force && load_secret(&path, &account).map(|s| s.is_some()).unwrap_or(true) {
        return Err(format!(
            "{} is already enrolled ({}); use --force to replace it",
            account.name,
            path.display()
        ));
    }
    let mut hashes = Vec::with_capacity(ga.scratch_codes.len());
    for c in &ga.scratch_codes {
        hashes.push(pam_totp_core::backup::hash(c).map_err(|e| format!("the OS random source failed: {e}"))?);
    }
    let secret = SecretFile {
        key: ga.key,
        params: Params::new(Algorithm::Sha1, 6, ga.period).ok_or("unsupported step size")?,
        issuer: pam_totp_core::enroll::default_issuer(&ctx.cfg),
        label: pam_totp_core::enroll::default_label(&account.name),
        created: ctx.now(),
        backup_codes: hashes,
    };
    save_secret(&path, &account, &secret, force).map_err(|e| format!("could not save the secret: {e}"))?;
    crate::admin::record_enrollment(ctx, &account)?;
    syslog(&format!(
        "imported google-authenticator secret for user={} by uid={}",
        account.name, ctx.me.uid
    ));
    let mut text = format!(
        "Imported {} into {}: same secret, so the app keeps working; {} scratch code{} became backup codes.",
        safe_path(&src),
        safe_path(&path),
        secret.backup_codes.len(),
        if secret.backup_codes.len() == 1 { "" } else { "s" }
    );
    if let Some(w) = ga.window_size.filter(|&w| w > 3) {
        text.push_str(&format!("\nNote: the file allowed WINDOW_SIZE {w}; pam_totp's window is set for the whole host (module option window=N, steps either side; now {}).", ctx.cfg.window));
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
