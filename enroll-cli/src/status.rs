//! `pam-totp status`: what the module knows about a user.
//!
//! Root reads this about other users, whose secret file (issuer, label) and state
//! (remembered hosts) hold text they chose: every such field is printed through
//! [`safe`], so it cannot move root's cursor or redraw a line.

use pam_totp_core::files::secret_file::{key_file, load_secret};
use pam_totp_core::login::human_duration;
use pam_totp_core::state::store::StateStore;
use pam_totp_core::state::State;

use crate::context::{format_time, json_line, print_result, safe, safe_path, Ctx};

pub fn run(ctx: &Ctx, user: Option<&str>, json: bool) -> Result<(), String> {
    let account = ctx.target(user, "show the status of")?;
    if let Some(st) = crate::vault::applies(ctx, &account)? {
        return vault_status(ctx, &account.name, &st, json);
    }
    let path = key_file(&ctx.cfg, &account);
    let secret = load_secret(&path, &account);
    // The state directory is root-only: users see the rest without it. A missing state
    // directory is "no state yet" (the command line never creates it).
    let state = if ctx.root {
        Some(match ctx.store_if_exists()? {
            Some(store) => store.peek(&account.name).map_err(|e| e.to_string())?,
            None => State::default(),
        })
    } else {
        None
    };
    let now = ctx.now();

    let mut j = serde_json::json!({ "user": account.name, "file": path.path });
    let mut lines = vec![format!("User:             {}", safe(&account.name))];
    match &secret {
        Ok(None) => {
            j["enrolled"] = false.into();
            lines.push(format!("Enrolled:         no (no {})", safe_path(&path)));
        }
        Err(e) => {
            j["enrolled"] = false.into();
            j["error"] = e.to_string().into();
            lines.push(format!(
                "Enrolled:         secret file unusable: {}",
                safe(&e.to_string())
            ));
        }
        Ok(Some(s)) => {
            // The first authenticator's fields stay at the top level, as before devices.
            let first = &s.devices[0];
            let created = s
                .devices
                .iter()
                .map(|d| d.created)
                .filter(|&t| t > 0)
                .min()
                .unwrap_or(0);
            j["enrolled"] = true.into();
            j["created"] = created.into();
            j["issuer"] = first.issuer.clone().into();
            j["label"] = first.label.clone().into();
            j["algorithm"] = first.params.algorithm().name().into();
            j["digits"] = first.params.digits().into();
            j["period"] = first.params.period().into();
            j["devices"] = s
                .devices
                .iter()
                .map(|d| crate::devices::device_json(d, state.as_ref()))
                .collect::<Vec<_>>()
                .into();
            j["backup_codes_total"] = s.backup_codes.len().into();
            lines.push(format!(
                "Enrolled:         yes, {} ({})",
                format_time(created),
                safe_path(&path)
            ));
            lines.push(format!(
                "Authenticators:   {} (`pam-totp devices list` shows them as a table)",
                s.devices.len()
            ));
            for d in &s.devices {
                lines.push(format!("  {}", crate::devices::device_line(d, state.as_ref())));
            }
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
        j["enrolled_on_record"] = if st.enrolled > 0 {
            st.enrolled.into()
        } else {
            serde_json::Value::Null
        };
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
        lockout_lines(&mut lines, st.locked_until, st.failures, now);
        if st.enrolled > 0 {
            lines.push(format!(
                "On record:        enrolled since {} (a missing secret file is refused until `pam-totp reset`)",
                format_time(st.enrolled)
            ));
        }
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
                safe(&r.rhost),
                safe(&r.service),
                format_time(r.until)
            ));
        }
    } else {
        lines.push("Lockout, last login: only root can read the state (sudo pam-totp status)".into());
    }
    if json {
        print_result(&json_line(&j))
    } else {
        print_result(&lines.join("\n"))
    }
}

/// The status of a user's own keys in the vault, as the helper tells it (no key).
fn vault_status(ctx: &Ctx, user: &str, st: &pam_totp_core::vault::Answer, json: bool) -> Result<(), String> {
    let now = ctx.now();
    let enrolled = st.place == "vault";
    let locked = st.locked_until > now;
    if json {
        let j = serde_json::json!({
            "user": user,
            "file": st.file,
            "place": st.place,
            "enrolled": enrolled,
            "devices": st.devices,
            "backup_codes_left": st.backup_codes,
            "failures": st.failures,
            "locked": locked,
            "locked_until": if locked { Some(st.locked_until) } else { None },
        });
        return print_result(&json_line(&j));
    }
    let mut lines = vec![format!("User:             {}", safe(user))];
    if !enrolled {
        lines.push("Enrolled:         no (run `pam-totp enroll`)".into());
    } else {
        lines.push(format!(
            "Enrolled:         yes, in the vault ({}; root-only)",
            safe(st.file.as_deref().unwrap_or("?"))
        ));
        lines.push(format!("Authenticators:   {}", st.devices.len()));
        for d in &st.devices {
            lines.push(format!(
                "  \"{}\": {}, {}, {} digits{}; added {}",
                safe(&d.name),
                d.kind,
                d.algorithm,
                d.digits,
                if d.kind == "totp" {
                    format!(", every {} s", d.period)
                } else {
                    String::new()
                },
                format_time(d.created)
            ));
        }
        lines.push(format!("Backup codes:     {} left", st.backup_codes));
    }
    lockout_lines(&mut lines, st.locked_until, st.failures, now);
    print_result(&lines.join("\n"))
}

/// The lockout and failure lines of a status, both ways it is shown.
fn lockout_lines(lines: &mut Vec<String>, locked_until: u64, failures: u32, now: u64) {
    lines.push(if locked_until > now {
        format!(
            "Locked out:       until {} ({} from now)",
            format_time(locked_until),
            human_duration(locked_until - now)
        )
    } else {
        "Locked out:       no".to_string()
    });
    lines.push(format!("Failed attempts:  {failures} in a row"));
}
