//! `pam-totp doctor`: gathers the configuration (PAM files, `sshd -T` or sshd_config,
//! pam_totp.conf, state directory, your secret file, clock) and prints the core's findings.

use crate::context::program;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pam_totp_core::admin::doctor::{self, Finding, Severity};
use pam_totp_core::files::fs::{Dir, Owners};
use pam_totp_core::files::secret_file::{key_file, load_secret};
use pam_totp_core::pamstack;
use pam_totp_core::text::terminal_safe;

use crate::context::Ctx;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// PAM configuration directory to check.
    #[arg(long, value_name = "DIR", default_value = "/etc/pam.d")]
    pam_dir: PathBuf,
    /// sshd configuration file to check (`sshd -T` reads it when it can; else it is parsed).
    #[arg(long, value_name = "FILE", default_value = "/etc/ssh/sshd_config")]
    sshd_config: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

const SERVICES: &[&str] = &["sshd", "sudo", "login", "su"];

fn glob(pattern: &str) -> Vec<String> {
    let p = Path::new(pattern);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return vec![];
    };
    let Some((pre, post)) = name.split_once('*') else {
        return if p.exists() { vec![pattern.to_string()] } else { vec![] };
    };
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len())
                .map(|n| dir.join(n).display().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn sshd_config(path: &Path) -> Option<(doctor::SshdConfig, String)> {
    let sshd = Path::new("/usr/sbin/sshd");
    if sshd.exists() {
        if let Ok(out) = program("/usr/sbin/sshd").arg("-T").arg("-f").arg(path).output() {
            if out.status.success() {
                return Some((
                    doctor::parse_sshd_t(&String::from_utf8_lossy(&out.stdout)),
                    "sshd -T".into(),
                ));
            }
        }
    }
    if !path.exists() {
        return None;
    }
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let cfg = doctor::parse_sshd_files(&path.display().to_string(), &read, &glob);
    Some((cfg, format!("{} (parsed; `sshd -T` was not usable)", path.display())))
}

fn push(f: &mut Vec<Finding>, severity: Severity, check: &'static str, message: String) {
    f.push(Finding {
        severity,
        check,
        message,
        location: None,
    });
}

/// Refuses to run with real and effective ids that differ (installed set-user-ID or
/// set-group-ID, or started so): doctor runs programs and reads files for root only.
fn same_ids() -> Result<(), String> {
    use nix::unistd::{getegid, geteuid, getgid, getuid};
    if getuid() != geteuid() || getgid() != getegid() {
        return Err(
            "doctor does not run with real and effective user or group ids that differ (set-user-ID?); run it as the user you are".into(),
        );
    }
    Ok(())
}

pub fn run(ctx: &Ctx, a: DoctorArgs) -> Result<(), String> {
    same_ids()?;
    let mut f = Vec::new();
    let read = |name: &str| -> Option<String> {
        if name.contains('/') || name.starts_with('.') {
            return None;
        }
        std::fs::read_to_string(a.pam_dir.join(name)).ok()
    };
    let mut sshd_uses_totp = false;
    for service in SERVICES {
        match pamstack::load(service, &read) {
            None => push(
                &mut f,
                Severity::Info,
                "no-service",
                format!("{} does not exist or cannot be read", a.pam_dir.join(service).display()),
            ),
            Some(stack) => {
                let used = doctor::check_stack(service, &stack, &mut f);
                let line_config = |args: &[&str]| {
                    pam_totp_core::config::Config::load(args, pam_totp_core::files::fs::read_config).ok()
                };
                doctor::check_line_options(service, &stack, &ctx.cfg, &line_config, &mut f);
                if *service == "sshd" {
                    sshd_uses_totp = used;
                }
            }
        }
    }
    if !f.iter().any(|x| x.check == "enabled") {
        push(
            &mut f,
            Severity::Warning,
            "not-enabled-anywhere",
            format!(
                "pam_totp is not enabled for any of {} in {}",
                SERVICES.join(", "),
                a.pam_dir.display()
            ),
        );
    }
    match sshd_config(&a.sshd_config) {
        Some((cfg, source)) => {
            let before = f.len();
            doctor::check_sshd(&cfg, sshd_uses_totp, &mut f);
            if sshd_uses_totp && f.len() == before {
                push(
                    &mut f,
                    Severity::Ok,
                    "sshd",
                    format!("sshd settings fit pam_totp ({source})"),
                );
            }
        }
        None if sshd_uses_totp => push(
            &mut f,
            Severity::Warning,
            "sshd-config",
            format!("cannot read {}", a.sshd_config.display()),
        ),
        None => {}
    }

    check_config_file(ctx, &mut f);
    check_state_dir(ctx, &mut f);
    let probe = match ctx.cfg.store {
        pam_totp_core::config::StoreKind::Local => doctor::FleetProbe::NotTried,
        _ if !ctx.root => doctor::FleetProbe::NotTried,
        _ => match pam_totp_core::state::fleet::FleetStore::new(&ctx.cfg.fleet_socket).ping() {
            Ok(()) => doctor::FleetProbe::Answered,
            Err(
                pam_totp_core::fleet::FleetError::Unavailable(why) | pam_totp_core::fleet::FleetError::NoAnswer(why),
            ) => doctor::FleetProbe::Unavailable(why),
            Err(pam_totp_core::fleet::FleetError::Refused(why)) => doctor::FleetProbe::Refused(why),
        },
    };
    doctor::check_fleet(&ctx.cfg, &probe, &mut f);
    check_fleet_vault(ctx, &mut f);
    // Keys their users can read let any process of the user make the second factor.
    let in_use = f.iter().any(|x| x.check == "enabled");
    if in_use && ctx.cfg.key_store == pam_totp_core::config::KeyStore::Home {
        push(
            &mut f,
            Severity::Warning,
            "keys-readable-by-users",
            format!(
                "new enrollments keep keys in secret files their users can read (key_store = \"home\" in {}): any process of a user can make their codes, and pass sudo's second factor; set key_store = \"vault\" and run `pam-totp migrate --all` (docs/vault.md)",
                ctx.cfg.config_path.display()
            ),
        );
    }
    let mine = key_file(&ctx.cfg, &ctx.me);
    match load_secret(&mine, &ctx.me) {
        Ok(Some(_)) if mine.in_vault => push(
            &mut f,
            Severity::Ok,
            "your-secret",
            format!("your keys are in the vault ({})", mine.display()),
        ),
        Ok(Some(_)) if in_use => push(
            &mut f,
            Severity::Warning,
            "your-secret",
            format!(
                "your secret file {} is usable, but you can read it, and so can any process of yours; `pam-totp migrate --user {}` (root) moves it into the vault",
                mine.display(),
                ctx.me.name
            ),
        ),
        Ok(Some(_)) => push(
            &mut f,
            Severity::Ok,
            "your-secret",
            format!("your secret file {} is usable", mine.display()),
        ),
        Ok(None) => push(
            &mut f,
            Severity::Info,
            "your-secret",
            format!("you ({}) are not enrolled", ctx.me.name),
        ),
        Err(e) => push(
            &mut f,
            Severity::Error,
            "your-secret",
            format!("your secret file: {e}; your logins are refused"),
        ),
    }
    clock_check(ctx, &mut f);

    // Messages carry module names, arguments and file names read from files: nothing of
    // them may reach the terminal as a control sequence (JSON escapes only C0 controls).
    for x in &mut f {
        x.message = terminal_safe(&x.message).into_owned();
        x.location = x.location.as_deref().map(|l| terminal_safe(l).into_owned());
    }
    let errors = f.iter().filter(|x| x.severity == Severity::Error).count();
    let warnings = f.iter().filter(|x| x.severity == Severity::Warning).count();
    // One write, whose failure is one line (println! would panic on a full or closed
    // stdout).
    let text = if a.json {
        serde_json::json!({ "errors": errors, "warnings": warnings, "findings": f }).to_string()
    } else {
        let mut lines: Vec<String> = f
            .iter()
            .map(|x| {
                let sev = match x.severity {
                    Severity::Ok => "ok",
                    Severity::Info => "info",
                    Severity::Warning => "WARNING",
                    Severity::Error => "ERROR",
                };
                match &x.location {
                    Some(l) => format!("{sev:8} {}  [{l}]", x.message),
                    None => format!("{sev:8} {}", x.message),
                }
            })
            .collect();
        lines.push(format!("{errors} error(s), {warnings} warning(s)"));
        lines.join("\n")
    };
    crate::context::print_result(&text)?;
    if errors > 0 {
        return Err(format!(
            "{errors} problem(s) would lock users out or let them in without a code"
        ));
    }
    Ok(())
}

/// pam_totp.conf: each problem (which option, what it expects) as an error; the other checks
/// ran with its valid settings.
fn check_config_file(ctx: &Ctx, f: &mut Vec<Finding>) {
    if !ctx.config_problems.is_empty() {
        for p in &ctx.config_problems {
            push(
                f,
                Severity::Error,
                "config-file",
                format!("{p}; every login through pam_totp is refused until it is fixed (the checks below use the file's valid settings)"),
            );
        }
        return;
    }
    match pam_totp_core::files::fs::read_config(&ctx.cfg.config_path) {
        Ok(Some(_)) => push(
            f,
            Severity::Ok,
            "config-file",
            format!("{} is valid", ctx.cfg.config_path.display()),
        ),
        Ok(None) => push(
            f,
            Severity::Info,
            "config-file",
            format!("{} does not exist; the defaults apply", ctx.cfg.config_path.display()),
        ),
        Err(e) => push(
            f,
            Severity::Error,
            "config-file",
            format!("{e}; every login through pam_totp is refused"),
        ),
    }
}

fn check_state_dir(ctx: &Ctx, f: &mut Vec<Finding>) {
    match Dir::open_with(&ctx.cfg.state_dir, &Owners(vec![0]), false) {
        Ok(Some(_)) => match std::fs::metadata(&ctx.cfg.state_dir).map(|md| md.mode() & 0o777) {
            // The module accepts a directory others can read (it refuses one they can
            // write); the files in it are root's 0600, but its listing names who enrolled.
            Ok(mode) if mode & 0o044 != 0 => push(
                f,
                Severity::Warning,
                "state-dir",
                format!(
                    "{} is root's but mode {mode:04o}: users other than root can list it and learn who is enrolled and who is locked out; chmod 0700 it (the packages make it 0700)",
                    ctx.cfg.state_dir.display()
                ),
            ),
            _ => push(
                f,
                Severity::Ok,
                "state-dir",
                format!("{} is root's and only root can list it", ctx.cfg.state_dir.display()),
            ),
        },
        Ok(None) => match ctx.cfg.state_dir.parent().map(std::fs::metadata) {
            // The module creates the directory itself, never its parents: a mistyped
            // state_dir must not quietly start an empty state (spent backup codes would work
            // again, see docs/troubleshooting.md) in a tree nobody made.
            Some(Ok(md)) if md.is_dir() => push(
                f,
                Severity::Info,
                "state-dir",
                format!(
                    "{} does not exist yet; the module creates it (0700) at the first login",
                    ctx.cfg.state_dir.display()
                ),
            ),
            _ => push(
                f,
                Severity::Error,
                "state-dir",
                format!(
                    "{} does not exist, nor does its parent directory, which the module does not create: every login through pam_totp is refused (nullok too); fix state_dir in {} or create the parent directory",
                    ctx.cfg.state_dir.display(),
                    ctx.cfg.config_path.display()
                ),
            ),
        },
        Err(e) if !ctx.root => push(
            f,
            Severity::Info,
            "state-dir",
            format!("cannot check the state directory as a user ({e}); run doctor as root"),
        ),
        Err(e) => push(
            f,
            Severity::Error,
            "state-dir",
            format!("state directory: {e}; every login through pam_totp is refused"),
        ),
    }
}

/// With the fleet vault: the key ring can be read (root's, well-formed), and no user's keys
/// are left in this host's own vault, where other hosts cannot read them.
fn check_fleet_vault(ctx: &Ctx, f: &mut Vec<Finding>) {
    let Some(fv) = pam_totp_core::files::fleet_vault::FleetVault::of(&ctx.cfg) else {
        return;
    };
    if !ctx.root {
        push(
            f,
            Severity::Info,
            "fleet-vault",
            "run doctor as root to check fleet.vault_key_file".into(),
        );
        return;
    }
    match fv.ring() {
        Ok(ring) => push(
            f,
            Severity::Ok,
            "fleet-vault",
            format!(
                "fleet vault: keys in etcd under pam-totp/v1/{}/vault/, sealed with vault key {} ({} key(s) in fleet.vault_key_file; every host of the namespace needs the same file)",
                fv.namespace,
                ring.current_id(),
                ring.ids().len()
            ),
        ),
        Err(e) => push(
            f,
            Severity::Error,
            "fleet-vault",
            format!("fleet vault: {e}; every user whose keys are in the fleet vault is refused on this host"),
        ),
    }
    if !fv.retired() {
        push(
            f,
            Severity::Warning,
            "fleet-vault",
            "a user the fleet vault has no keys for is still read from this host's own vault file or secret file (which their user can write, in the home) until `pam-totp migrate --all` moves them and retires these files (docs/fleet.md)".into(),
        );
    }
    let local = pam_totp_core::files::secret_file::vault_dir(&ctx.cfg);
    let left = std::fs::read_dir(&local)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name().to_string_lossy().ends_with(".toml")
                        && !e.file_name().to_string_lossy().starts_with('.')
                })
                .count()
        })
        .unwrap_or(0);
    if left > 0 {
        push(
            f,
            Severity::Warning,
            "fleet-vault",
            format!(
                "{left} user(s) keep keys in this host's own vault ({}), which other hosts cannot read; `pam-totp migrate --all` moves them into the fleet vault",
                local.display()
            ),
        );
    }
}

/// Where `doctor` asks whether the clock is synchronised: systemd's timedatectl, by absolute
/// path (it reports the kernel's own view, `adjtimex`'s STA_UNSYNC, as NTPSynchronized).
/// Tests put another program there in a private mount namespace.
const TIMEDATECTL: &str = "/usr/bin/timedatectl";

/// Whether this host's clock is synchronised: a code is checked against it, and a clock off
/// by more than the window refuses right codes (and makes every user's authenticator look
/// off by as much).
fn clock_check(ctx: &Ctx, f: &mut Vec<Finding>) {
    let out = program(TIMEDATECTL)
        .args(["show", "--property=NTPSynchronized", "--property=NTP"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let (severity, message) = clock_finding(out.as_deref(), ctx.cfg.window, ctx.cfg.skew_range);
    push(f, severity, "clock", message);
}

/// The finding for `timedatectl show` output (None: it could not be run).
fn clock_finding(show: Option<&str>, window: u64, skew_range: u64) -> (Severity, String) {
    let consequence = format!(
        "right codes are refused once it is off by more than the window ({window} step(s) of 30 s){}",
        if skew_range > 0 {
            ", and users are told their authenticator's clock looks off"
        } else {
            ""
        }
    );
    let Some(text) = show else {
        return (
            Severity::Warning,
            format!(
                "cannot tell whether the clock is synchronized ({TIMEDATECTL} is missing or failed); {consequence}"
            ),
        );
    };
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::trim)
    };
    match (value("NTPSynchronized"), value("NTP")) {
        (Some("yes"), _) => (Severity::Ok, "the system clock is synchronized (NTP)".into()),
        (Some("no"), Some("no")) => (
            Severity::Warning,
            format!("the system clock is not synchronized and NTP is off (timedatectl): {consequence}; turn it on (`timedatectl set-ntp true`)"),
        ),
        (Some("no"), _) => (
            Severity::Warning,
            format!("the system clock is not synchronized (timedatectl: NTP has not synchronized it): {consequence}; check the time service (`timedatectl timesync-status`, `chronyc tracking`)"),
        ),
        _ => (
            Severity::Warning,
            format!("cannot tell whether the clock is synchronized ({TIMEDATECTL} show said nothing about it); {consequence}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_finding_follows_timedatectl() {
        let sev = |show: Option<&str>| clock_finding(show, 1, 900).0;
        assert_eq!(sev(Some("NTPSynchronized=yes\nNTP=yes\n")), Severity::Ok);
        assert_eq!(sev(Some("NTP=no\nNTPSynchronized=yes\n")), Severity::Ok);
        for bad in [
            Some("NTPSynchronized=no\nNTP=yes\n"),
            Some("NTPSynchronized=no\nNTP=no\n"),
            Some(""),
            Some("NTPSynchronized=maybe\n"),
            None,
        ] {
            assert_eq!(sev(bad), Severity::Warning, "{bad:?}");
        }
        let (_, m) = clock_finding(Some("NTPSynchronized=no\nNTP=no\n"), 1, 900);
        assert!(m.contains("NTP is off") && m.contains("set-ntp true"), "{m}");
    }
}
