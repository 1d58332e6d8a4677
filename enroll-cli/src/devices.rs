//! `pam-totp devices list|remove|rename|resync`: a user's named authenticators.
//!
//! Also the shapes every command shows a device in ([`device_json`], [`device_line`]), so
//! `status` and `devices list` agree. Names are matched ignoring case, as the secret file
//! keeps them unique. Changes are made under the secret file's lock, on the file as it is
//! then ([`update_enrolled`]: a change made meanwhile by another command is never undone),
//! and go to syslog (authpriv): who changed whose authenticator, by name — never a key.

use pam_totp_core::account::Account;
use pam_totp_core::files::secret::{valid_device_name, Device, Kind, SecretFile, MAX_NAME_CHARS};
use pam_totp_core::files::secret_file::{key_file, load_secret, update_secret, KeyFile};
use pam_totp_core::state::store::StateStore;
use pam_totp_core::state::State;
use pam_totp_core::text::log_name;

use crate::context::{format_time, json_line, print, print_result, safe, safe_path, syslog, Change, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum DevicesCmd {
    /// List a user's authenticators: name, type, algorithm, digits, period or counter, when
    /// added (and, as root, clock offset and when last used).
    List {
        /// The user (root only for other users).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove one authenticator (its codes stop working at once). The last one cannot be
    /// removed: `pam-totp reset` removes the enrollment.
    Remove {
        /// The authenticator's name (case does not matter).
        #[arg(value_name = "NAME")]
        name: String,
        /// The user (root only for other users).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Rename an authenticator.
    Rename {
        /// The current name (case does not matter).
        #[arg(value_name = "OLD")]
        old: String,
        /// The new name: 1 to 64 characters, no control characters or surrounding spaces.
        #[arg(value_name = "NEW")]
        new: String,
        /// The user (root only for other users).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Forget an authenticator's clock offset (root only): its window is centred on this
    /// host's time again. Two consecutive codes out of the window set one
    /// (docs/how-it-decides.md: Clocks); `unlock` and `reset` clear every offset of a user.
    Resync {
        /// The authenticator's name (case does not matter).
        #[arg(value_name = "NAME")]
        name: String,
        /// The user (root only for other users).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
}

pub fn run(ctx: &Ctx, cmd: DevicesCmd) -> Result<(), String> {
    match cmd {
        DevicesCmd::List { user, json } => list(ctx, user.as_deref(), json),
        DevicesCmd::Remove { name, user } => remove(ctx, user.as_deref(), &name),
        DevicesCmd::Rename { old, new, user } => rename(ctx, user.as_deref(), &old, &new),
        DevicesCmd::Resync { name, user } => resync(ctx, user.as_deref(), &name),
    }
}

/// Why a name was refused, for every place that takes one.
pub fn name_rule() -> String {
    format!("a name is 1 to {MAX_NAME_CHARS} characters, without control characters or surrounding spaces")
}

/// One device as JSON: `name`, `type`, `algorithm`, `digits`, `period` (TOTP) or `counter`
/// (HOTP: the file's), `created`, `issuer`, `label`; with the state (root): `last_used`
/// (null if never) and for HOTP `next_counter` (the first counter still accepted);
/// `clock_offset`: seconds its clock is ahead of this host's (negative: behind; 0 in step,
/// and for HOTP), null when the state cannot be read.
pub fn device_json(d: &Device, state: Option<&State>) -> serde_json::Value {
    let mut j = serde_json::json!({
        "name": d.name,
        "type": d.kind.name(),
        "algorithm": d.params.algorithm().name(),
        "digits": d.params.digits(),
        "created": d.created,
        "issuer": d.issuer,
        "label": d.label,
    });
    match d.kind {
        Kind::Totp => j["period"] = d.params.period().into(),
        Kind::Hotp => j["counter"] = d.counter.into(),
    }
    if let Some(st) = state {
        let guard = guard(st, d);
        j["last_used"] = match guard.map(|g| g.last_used).filter(|&t| t > 0) {
            Some(t) => t.into(),
            None => serde_json::Value::Null,
        };
        if d.kind == Kind::Hotp {
            j["next_counter"] = next_counter(d, st).into();
        }
        j["clock_offset"] = clock_offset(d, st).into();
    } else {
        j["clock_offset"] = serde_json::Value::Null;
    }
    j
}

/// Seconds the authenticator's clock is ahead of this host's (0: in step, or HOTP).
fn clock_offset(d: &Device, st: &State) -> i64 {
    match d.kind {
        Kind::Totp => guard(st, d).map_or(0, |g| g.offset),
        Kind::Hotp => 0,
    }
}

/// "in step", "+90 s", "-180 s" ("-" for HOTP).
fn clock_cell(d: &Device, st: &State) -> String {
    match (d.kind, clock_offset(d, st)) {
        (Kind::Hotp, _) => "-".into(),
        (Kind::Totp, 0) => "in step".into(),
        (Kind::Totp, o) if o > 0 => format!("+{o} s"),
        (Kind::Totp, o) => format!("{o} s"),
    }
}

fn guard<'a>(st: &'a State, d: &Device) -> Option<&'a pam_totp_core::state::DeviceState> {
    if st.key.is_empty() {
        return None; // no state yet: no guard either
    }
    // Keyed like the module's (the key HMAC really uses: a key ending in zero bytes gives
    // the same codes as without them, and is one authenticator to the replay guard).
    st.device(&st.device_id(&d.guard_key()))
}

/// HOTP: the first counter the module would accept now (the file's start or past the last
/// one accepted, whichever is later).
fn next_counter(d: &Device, st: &State) -> u64 {
    d.counter.max(guard(st, d).map_or(0, |g| g.counter))
}

/// "totp, SHA1, 6 digits, every 30 s" / "hotp, SHA1, 6 digits, counter 7"
pub fn describe(d: &Device) -> String {
    let tail = match d.kind {
        Kind::Totp => format!("every {} s", d.params.period()),
        Kind::Hotp => format!("counter {}", d.counter),
    };
    format!(
        "{}, {}, {} digits, {tail}",
        d.kind.name(),
        d.params.algorithm().name(),
        d.params.digits()
    )
}

/// One line of text for a device (names and other outside text escaped).
pub fn device_line(d: &Device, state: Option<&State>) -> String {
    let mut s = format!(
        "\"{}\": {}; added {}; issuer \"{}\", account \"{}\"",
        safe(&d.name),
        describe(d),
        added(d.created),
        safe(&d.issuer),
        safe(&d.label)
    );
    if let Some(st) = state {
        if d.kind == Kind::Hotp {
            s.push_str(&format!("; next counter {}", next_counter(d, st)));
        }
        if clock_offset(d, st) != 0 {
            s.push_str(&format!("; clock {}", clock_cell(d, st)));
        }
        s.push_str(&format!("; last used {}", last_used(d, st)));
    }
    s
}

fn added(t: u64) -> String {
    if t == 0 {
        "at an unknown time".into()
    } else {
        format_time(t)
    }
}

fn last_used(d: &Device, st: &State) -> String {
    match guard(st, d).map(|g| g.last_used).filter(|&t| t > 0) {
        Some(t) => format_time(t),
        None => "never".into(),
    }
}

/// The user's secret file, which must exist.
fn load_enrolled(ctx: &Ctx, account: &Account) -> Result<(KeyFile, SecretFile), String> {
    let path = key_file(&ctx.cfg, account);
    let secret = load_secret(&path, account)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| not_enrolled(account, &path))?;
    Ok((path, secret))
}

fn not_enrolled(account: &Account, path: &std::path::Path) -> String {
    format!(
        "{} is not enrolled (no {}); run `pam-totp enroll` first",
        safe(&account.name),
        safe_path(path)
    )
}

/// Changes `account`'s enrollment under the secret file's lock
/// ([`pam_totp_core::files::secret_file::update_secret`]): `f` gets the file as it is now — not a copy
/// read earlier, so a change another command made meanwhile is kept — and returns whether
/// to write it back, and its result. An error of `f` writes nothing.
pub fn update_enrolled<T>(
    ctx: &Ctx,
    account: &Account,
    f: impl FnOnce(&mut SecretFile) -> Result<(bool, T), String>,
) -> Result<(KeyFile, T), String> {
    // Checked first without the lock, which would create the directory of a user who has
    // none (the answer is checked again under it).
    let (path, _) = load_enrolled(ctx, account)?;
    let r = update_secret(&path, account, |current: Option<SecretFile>| -> Result<_, Change> {
        let mut secret = current.ok_or_else(|| not_enrolled(account, &path))?;
        let (write, t) = f(&mut secret)?;
        Ok((write.then_some(secret), t))
    });
    match r {
        Ok(t) => Ok((path, t)),
        Err(Change::Refused(why)) => Err(why),
        Err(Change::Core(e)) => Err(format!(
            "could not change {}: {}",
            safe_path(&path),
            safe(&e.to_string())
        )),
    }
}

/// The state as root sees it (None for other users, who cannot read it).
fn state_for(ctx: &Ctx, account: &Account) -> Result<Option<State>, String> {
    if !ctx.root {
        return Ok(None);
    }
    Ok(Some(match ctx.store_if_exists()? {
        Some(store) => store.peek(&account.name).map_err(|e| e.to_string())?,
        None => State::default(),
    }))
}

fn names(secret: &SecretFile) -> String {
    secret
        .devices
        .iter()
        .map(|d| format!("\"{}\"", safe(&d.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn find(secret: &SecretFile, account: &Account, name: &str) -> Result<usize, String> {
    secret.device_index(name).ok_or_else(|| {
        format!(
            "{} has no authenticator named \"{}\" (they have {})",
            safe(&account.name),
            safe(name),
            names(secret)
        )
    })
}

fn list(ctx: &Ctx, user: Option<&str>, json: bool) -> Result<(), String> {
    let account = ctx.target(user, "list the authenticators of")?;
    if let Some(st) = crate::vault::applies(ctx, &account)? {
        if st.place != "vault" {
            return Err(format!(
                "{} is not enrolled; run `pam-totp enroll`",
                safe(&account.name)
            ));
        }
        if json {
            return print_result(&json_line(&serde_json::json!({
                "user": account.name,
                "file": st.file,
                "devices": st.devices,
            })));
        }
        let mut rows = vec![["NAME", "TYPE", "ALGORITHM", "DIGITS", "PERIOD", "ADDED"]
            .map(String::from)
            .to_vec()];
        for d in &st.devices {
            rows.push(vec![
                safe(&d.name).into_owned(),
                d.kind.clone(),
                d.algorithm.clone(),
                d.digits.to_string(),
                if d.kind == "totp" {
                    format!("{} s", d.period)
                } else {
                    "-".into()
                },
                crate::context::format_time(d.created),
            ]);
        }
        return print_result(table(&rows).trim_end());
    }
    let (path, secret) = load_enrolled(ctx, &account)?;
    let state = state_for(ctx, &account)?;
    if json {
        let devices: Vec<serde_json::Value> = secret.devices.iter().map(|d| device_json(d, state.as_ref())).collect();
        return print_result(&json_line(&serde_json::json!({
            "user": account.name,
            "file": path.path,
            "devices": devices,
        })));
    }
    let mut header = vec!["NAME", "TYPE", "ALGORITHM", "DIGITS", "PERIOD/COUNTER", "ADDED"];
    if state.is_some() {
        header.push("CLOCK");
        header.push("LAST USED");
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for d in &secret.devices {
        let mut row = vec![
            safe(&d.name).into_owned(),
            d.kind.name().to_string(),
            d.params.algorithm().name().to_string(),
            d.params.digits().to_string(),
            match (d.kind, &state) {
                (Kind::Totp, _) => format!("{} s", d.params.period()),
                (Kind::Hotp, Some(st)) => format!("next {}", next_counter(d, st)),
                (Kind::Hotp, None) => format!("from {}", d.counter),
            },
            added(d.created),
        ];
        if let Some(st) = &state {
            row.push(clock_cell(d, st));
            row.push(last_used(d, st));
        }
        rows.push(row);
    }
    let mut text = format!(
        "{} authenticator{} of {} ({}):\n",
        secret.devices.len(),
        if secret.devices.len() == 1 { "" } else { "s" },
        safe(&account.name),
        safe_path(&path)
    );
    text.push_str(&table(&rows));
    print_result(text.trim_end_matches('\n'))
}

/// Columns padded to their widest cell (in characters), two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn remove(ctx: &Ctx, user: Option<&str>, name: &str) -> Result<(), String> {
    let account = ctx.target_to_change(user, "remove an authenticator of")?;
    if crate::vault::applies(ctx, &account)?.is_some() {
        let a = crate::vault::change(pam_totp_core::vault::Change::Remove { name: name.to_string() })?;
        return print_result(&format!(
            "Removed \"{}\"; {} authenticator(s) left. Its codes no longer work.",
            safe(name),
            a.devices.len()
        ));
    }
    let (_, (gone, left, count)) = update_enrolled(ctx, &account, |secret| {
        let i = find(secret, &account, name)?;
        if secret.devices.len() == 1 {
            return Err(format!(
                "\"{}\" is the only authenticator of {}: that would leave no authenticator; `pam-totp reset --user {}` removes the enrollment",
                safe(&secret.devices[0].name),
                safe(&account.name),
                safe(&account.name)
            ));
        }
        let gone = secret.devices.remove(i);
        Ok((true, (gone, names(secret), secret.devices.len())))
    })?;
    syslog(&format!(
        "devices: removed authenticator \"{}\" ({}) of user={} by {}; {} left",
        log_name(&gone.name),
        gone.kind.name(),
        account.name,
        ctx.by(),
        count
    ));
    let text = format!(
        "Removed \"{}\" from the authenticators of {}: its codes no longer work. Left: {}.",
        safe(&gone.name),
        safe(&account.name),
        left
    );
    print(&text).map_err(|e| {
        format!(
            "\"{}\" was removed, but the result could not be printed: {}",
            safe(&gone.name),
            crate::context::describe(&e)
        )
    })
}

fn rename(ctx: &Ctx, user: Option<&str>, old: &str, new: &str) -> Result<(), String> {
    let account = ctx.target_to_change(user, "rename an authenticator of")?;
    if !valid_device_name(new) {
        return Err(format!(
            "\"{}\" cannot name an authenticator: {}",
            safe(new),
            name_rule()
        ));
    }
    if crate::vault::applies(ctx, &account)?.is_some() {
        crate::vault::change(pam_totp_core::vault::Change::Rename {
            old: old.to_string(),
            new: new.to_string(),
        })?;
        return print_result(&format!("Renamed \"{}\" to \"{}\".", safe(old), safe(new)));
    }
    let (_, was) = update_enrolled(ctx, &account, |secret| {
        let i = find(secret, &account, old)?;
        if let Some(j) = secret.device_index(new) {
            if j != i {
                return Err(format!(
                    "{} already has an authenticator named \"{}\"",
                    safe(&account.name),
                    safe(&secret.devices[j].name)
                ));
            }
        }
        let was = std::mem::replace(&mut secret.devices[i].name, new.to_string());
        Ok((was != new, was))
    })?;
    if was == new {
        return print_result(&format!("\"{}\" already has that name; nothing changed.", safe(new)));
    }
    syslog(&format!(
        "devices: renamed authenticator \"{}\" to \"{}\" of user={} by {}",
        log_name(&was),
        log_name(new),
        account.name,
        ctx.by()
    ));
    print(&format!(
        "Renamed \"{}\" to \"{}\" ({}).",
        safe(&was),
        safe(new),
        safe(&account.name)
    ))
    .map_err(|e| {
        format!(
            "\"{}\" was renamed, but the result could not be printed: {}",
            safe(&was),
            crate::context::describe(&e)
        )
    })
}

fn resync(ctx: &Ctx, user: Option<&str>, name: &str) -> Result<(), String> {
    ctx.require_root("resynchronise an authenticator")?;
    let account = ctx.target_to_change(user, "resynchronise an authenticator of")?;
    let (_, secret) = load_enrolled(ctx, &account)?;
    let dev = &secret.devices[find(&secret, &account, name)?];
    if dev.kind != Kind::Totp {
        return Err(format!(
            "\"{}\" is counter-based (HOTP): it has no clock to resynchronise",
            safe(&dev.name)
        ));
    }
    let key = dev.guard_key();
    let was = ctx
        .store_for(&account)?
        .update(&account.name, |st| {
            let id = st.device_id(&key);
            let was = st.device(&id).map_or(0, |g| g.offset);
            st.set_offset(&key, 0);
            was
        })
        .map_err(|e| e.to_string())?;
    if was == 0 {
        return print_result(&format!(
            "\"{}\" of {} had no clock offset; nothing changed.",
            safe(&dev.name),
            safe(&account.name)
        ));
    }
    let signed = if was > 0 {
        format!("+{was} s")
    } else {
        format!("{was} s")
    };
    syslog(&format!(
        "devices: resync authenticator \"{}\" of user={} by {}: clock offset {signed} cleared",
        log_name(&dev.name),
        account.name,
        ctx.by()
    ));
    print_result(&format!(
        "Cleared the clock offset of \"{}\" of {} (was {signed}): its codes are checked against this host's time again.",
        safe(&dev.name),
        safe(&account.name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_end_their_quotes_in_a_log_line() {
        let logged = log_name(r#"a" by uid=0 \"#);
        assert!(!logged.contains('"') && !logged.contains('='), "{logged}");
    }

    #[test]
    fn table_pads_columns_by_characters() {
        let rows = vec![
            vec!["NAME".to_string(), "TYPE".to_string()],
            vec!["téléphone".to_string(), "totp".to_string()],
        ];
        assert_eq!(table(&rows), "  NAME       TYPE\n  téléphone  totp\n");
    }
}
