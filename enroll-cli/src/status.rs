//! `pam-totp status`: what the module knows about a user.

use pam_totp_core::enroll::{load_secret, secret_path};
use pam_totp_core::login::human_duration;
use pam_totp_core::store::StateStore;

use crate::context::{format_time, Ctx};

pub fn run(ctx: &Ctx, user: Option<&str>, json: bool) -> Result<(), String> {
    let account = ctx.target(user, "show the status of")?;
    let path = secret_path(&ctx.cfg, &account);
    let secret = load_secret(&path, &account);
    // The state directory is root-only: users see the rest without it.
    let state = if ctx.root {
        Some(ctx.store()?.peek(&account.name).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let now = ctx.now();

    let mut j = serde_json::json!({ "user": account.name, "file": path });
    let mut lines = vec![format!("User:             {}", account.name)];
    match &secret {
        Ok(None) => {
            j["enrolled"] = false.into();
            lines.push(format!("Enrolled:         no (no {})", path.display()));
        }
        Err(e) => {
            j["enrolled"] = false.into();
            j["error"] = e.to_string().into();
            lines.push(format!("Enrolled:         secret file unusable: {e}"));
        }
        Ok(Some(s)) => {
            j["enrolled"] = true.into();
            j["created"] = s.created.into();
            j["issuer"] = s.issuer.clone().into();
            j["label"] = s.label.clone().into();
            j["algorithm"] = s.params.algorithm().name().into();
            j["digits"] = s.params.digits().into();
            j["period"] = s.params.period().into();
            j["backup_codes_total"] = s.backup_codes.len().into();
            lines.push(format!(
                "Enrolled:         yes, {} ({})",
                format_time(s.created),
                path.display()
            ));
            lines.push(format!(
                "Codes:            {}, {} digits, every {} s; issuer \"{}\", account \"{}\"",
                s.params.algorithm().name(),
                s.params.digits(),
                s.params.period(),
                s.issuer,
                s.label
            ));
            match &state {
                Some(st) => {
                    let left = st.backup_codes_left(&s.backup_codes);
                    j["backup_codes_left"] = left.into();
                    lines.push(format!("Backup codes:     {left} of {} left", s.backup_codes.len()));
                }
                None => lines.push(format!(
                    "Backup codes:     {} issued (run as root to see how many are used)",
                    s.backup_codes.len()
                )),
            }
        }
    }
    if let Some(st) = &state {
        let locked = st.is_locked(now);
        j["locked"] = locked.into();
        j["locked_until"] = if locked {
            st.locked_until.into()
        } else {
            serde_json::Value::Null
        };
        j["failures"] = st.failures.into();
        j["last_success"] = if st.last_success > 0 {
            st.last_success.into()
        } else {
            serde_json::Value::Null
        };
        let remembered: Vec<_> = st
            .remembered
            .iter()
            .filter(|r| r.until > now)
            .map(|r| serde_json::json!({"rhost": r.rhost, "service": r.service, "until": r.until}))
            .collect();
        j["remembered_hosts"] = remembered.into();
        lines.push(if locked {
            format!(
                "Locked out:       until {} ({} from now)",
                format_time(st.locked_until),
                human_duration(st.locked_until - now)
            )
        } else {
            "Locked out:       no".to_string()
        });
        lines.push(format!("Failed attempts:  {} in a row", st.failures));
        lines.push(format!(
            "Last code login:  {}",
            if st.last_success > 0 {
                format_time(st.last_success)
            } else {
                "never".into()
            }
        ));
        for r in st.remembered.iter().filter(|r| r.until > now) {
            lines.push(format!(
                "Remembered host:  {} on {} until {}",
                r.rhost,
                r.service,
                format_time(r.until)
            ));
        }
    } else {
        lines.push("Lockout, last login: only root can read the state (sudo pam-totp status)".into());
    }
    if json {
        println!("{j}");
    } else {
        println!("{}", lines.join("\n"));
    }
    Ok(())
}
