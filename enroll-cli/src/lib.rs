//! The pam-totp command line as a library: the argument definitions ([`Cli`], also the source
//! of the man pages) and [`run`]. `main.rs` only calls it.

#![forbid(unsafe_code)]

mod admin;
mod codesfile;
mod context;
mod devices;
mod doctor;
mod enroll;
mod import;
mod migrate;
mod qr;
mod report;
mod status;
mod vault;

pub use clap;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "pam-totp", version, about = "One-time codes (TOTP and HOTP) for Linux logins: enroll, devices, status, backup codes, reset, unlock, import, migrate, rekey, report, doctor.", long_about = None)]
pub struct Cli {
    /// Configuration file (default /etc/security/pam_totp.conf); use the same as the module line.
    /// Refused when run through sudo by a user other than root.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// State directory (default /var/lib/pam-totp); use the same as the module line. Never
    /// created by pam-totp; refused when run through sudo by a user other than root.
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a secret, show it as a QR code, confirm a code from the app, save backup codes;
    /// with --add, another authenticator for an enrolled user.
    Enroll(enroll::EnrollArgs),
    /// List, remove or rename a user's authenticators (phones, spare phones, tokens).
    Devices {
        #[command(subcommand)]
        action: devices::DevicesCmd,
    },
    /// Show whether a user is enrolled, their authenticators, backup codes, lockout and last
    /// login.
    Status {
        /// The user to show (root only for other users).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show how many backup codes are left, or make a new set.
    BackupCodes {
        /// Replace all backup codes with a new set (the old ones stop working).
        #[arg(long)]
        regenerate: bool,
        /// With --regenerate: write the new codes to this new file (never over an existing
        /// one), mode 0600, owned by the user, as a page to print, instead of showing them
        /// (--json still includes them). If it cannot be written, nothing is changed.
        #[arg(long, value_name = "PATH", requires = "regenerate")]
        output: Option<PathBuf>,
        /// The user (root only for other users).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user's secret and state, so they must enroll again (root only).
    ///
    /// Run through sudo by another user (a help desk rule), root and members of
    /// protected_groups (pam_totp.conf) are refused, and the action is logged with the sudo user.
    Reset {
        #[arg(long, value_name = "NAME")]
        user: String,
    },
    /// Clear a user's lockout and failure count (root only).
    ///
    /// Run through sudo by another user (a help desk rule), root and members of
    /// protected_groups (pam_totp.conf) are refused, and the action is logged with the sudo user.
    Unlock {
        #[arg(long, value_name = "NAME")]
        user: String,
    },
    /// Who has enrolled, and who enforce_after will refuse (root only; reads only).
    ///
    /// Every account with a uid from UID_MIN to UID_MAX (/etc/login.defs) and every account
    /// with a secret or state file: authenticators, backup codes left, failures, lockout,
    /// last code login, remembered hosts; N of M enrolled, and with enforce_after the date,
    /// the days left and who will be refused from it.
    Report(report::ReportArgs),
    /// Check the PAM stacks, sshd, pam_totp.conf, the state directory, your secret file and
    /// the clock for the usual mistakes; exits non-zero if one would lock users out or let
    /// them in without a code.
    Doctor(doctor::DoctorArgs),
    /// Import a secret from another TOTP module, or hardware tokens from a vendor's seed file.
    Import {
        #[command(subcommand)]
        from: import::ImportFrom,
    },
    /// Move users' keys from files they can read (secret files, ~/.google_authenticator)
    /// into the root-only vault (root only).
    ///
    /// The same keys and backup codes (the phone keeps working, a spent backup code stays
    /// spent); the old file is removed, and a user whose file cannot be removed stays where
    /// they were. Users already in the vault are not touched.
    ///
    /// With the fleet vault (store = "fleet", key_store = "vault") the keys go there, this
    /// host's own vault files are moved too, files holding the same keys as the fleet's record
    /// are removed (other keys: reported, "keys in two places"), and `--all` with every user
    /// through retires this host's key files: the module then reads the fleet vault only.
    Migrate(migrate::MigrateArgs),
    /// Seal every user's keys in the fleet vault again with the first key of
    /// fleet.vault_key_file (root only): the middle step of a rotation.
    ///
    /// A rotation: put a new key as the first line of fleet.vault_key_file on every host
    /// (the old key stays as a later line), run `pam-totp rekey` on one host, then remove the
    /// old line everywhere. Logins keep working throughout. A record that cannot be opened
    /// is reported and left as it is.
    Rekey {
        /// One JSON object: {"key_id", "sealed_again": [users], "current": N, "failed": [{"user", "reason"}]}.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one command. `Err` is the one line to print on stderr.
pub fn run(cli: Cli) -> Result<(), String> {
    let ctx = match cli.command {
        // doctor reports every problem of the configuration file and goes on checking.
        Command::Doctor(_) => context::Ctx::new_for_doctor(cli.config.as_deref(), cli.state_dir.as_deref())?,
        _ => context::Ctx::new(cli.config.as_deref(), cli.state_dir.as_deref())?,
    };
    match cli.command {
        Command::Enroll(args) => enroll::run(&ctx, args),
        Command::Devices { action } => devices::run(&ctx, action),
        Command::Status { user, json } => status::run(&ctx, user.as_deref(), json),
        Command::BackupCodes {
            regenerate,
            output,
            user,
            json,
        } => admin::backup_codes(&ctx, user.as_deref(), regenerate, output.as_deref(), json),
        Command::Reset { user } => admin::reset(&ctx, &user),
        Command::Unlock { user } => admin::unlock(&ctx, &user),
        Command::Import { from } => import::run(&ctx, from),
        Command::Report(args) => report::run(&ctx, args),
        Command::Doctor(args) => doctor::run(&ctx, args),
        Command::Migrate(args) => migrate::run(&ctx, args),
        Command::Rekey { json } => migrate::rekey(&ctx, json),
    }
}

/// Keeps clap's own checks of the argument definitions in the test suite.
#[cfg(test)]
#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}
