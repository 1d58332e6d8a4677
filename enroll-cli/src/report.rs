//! `pam-totp report`: who has enrolled, for an administrator rolling out codes (issue 13).
//!
//! Which accounts: every account with a uid from UID_MIN to UID_MAX (/etc/login.defs;
//! every account with `--all-users`), as `getent passwd` lists them (NSS: local files, and
//! SSSD/LDAP where they enumerate), plus every account that has a state file, or a secret
//! file in a central directory (`secret=/etc/pam-totp/%u.toml`); secret files in homes are
//! looked for in the homes of the accounts listed. State files of accounts that no longer
//! exist are named separately.
//!
//! Reads only: secret files through [`load_secret`] (as their user, in homes: the module's
//! own checks), the state directory if it exists (never created). An account whose file
//! cannot be read gets an `error`, and the report goes on.
//!
//! The work per account is [`row`]; [`collect`] runs it over any list of accounts, so it
//! can be measured without a user database (the `bench` test below, `scripts/bench-report`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pam_totp_core::account::unescape_user;
use pam_totp_core::account::{valid_user_name, Account, Accounts, SystemAccounts};
use pam_totp_core::config::{Config, Date};
use pam_totp_core::files::secret_file::{key_file, load_secret};
use pam_totp_core::state::any::AnyStore;
use pam_totp_core::state::store::StateStore;
use pam_totp_core::state::State;

use crate::context::{describe, format_time, json_line, print_result, program, safe, safe_path, Ctx};

/// Defaults of UID_MIN and UID_MAX when /etc/login.defs does not set them.
pub const DEFAULT_UID_MIN: u32 = 1000;
pub const DEFAULT_UID_MAX: u32 = 60000;
const LOGIN_DEFS: &str = "/etc/login.defs";

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Print one JSON object: {"total", "enrolled", "users": [{"user", "enrolled", "devices",
    /// "backup_codes_left", "failures", "locked_until", "last_login", "remembered_hosts", ...}]}.
    #[arg(long)]
    json: bool,
    /// Every account, not only those with a uid from UID_MIN to UID_MAX (/etc/login.defs).
    #[arg(long)]
    all_users: bool,
}

/// One account's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub user: String,
    pub uid: u32,
    /// A secret file the module can use (present, private, well-formed).
    pub enrolled: bool,
    pub devices: usize,
    pub backup_codes_left: usize,
    /// Consecutive wrong answers.
    pub failures: u32,
    /// Set only while the lockout lasts.
    pub locked_until: Option<u64>,
    /// The last accepted code (the state's `last_success`).
    pub last_login: Option<u64>,
    /// Remembered hosts not yet expired.
    pub remembered_hosts: usize,
    /// When the state recorded the enrollment.
    pub enrolled_on_record: Option<u64>,
    /// Why something about this account could not be read (or is wrong).
    pub error: Option<String>,
    /// Where the keys are: "fleet" (the fleet vault, sealed in etcd), "vault" (this host's,
    /// root's only) or "home" (a secret file its user can read).
    pub keys: Option<&'static str>,
}

/// What the report knows about `account`.
pub fn row<S: StateStore>(cfg: &Config, store: Option<&S>, account: &Account, now: u64) -> Row {
    let mut errors: Vec<String> = Vec::new();
    let state = match store.map(|s| s.peek(&account.name)) {
        None => State::default(),
        Some(Ok(st)) => st,
        Some(Err(e)) => {
            errors.push(format!("state: {e}"));
            State::default()
        }
    };
    let path = key_file(cfg, account);
    let secret = match load_secret(&path, account) {
        Ok(s) => s.filter(|s| !s.devices.is_empty()),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    if secret.is_none() && errors.is_empty() && state.enrolled > 0 {
        errors.push(format!(
            "{} is missing but the user enrolled on {}: their logins are refused until `pam-totp reset --user {}`",
            path.display(),
            Date::from_unix(state.enrolled),
            account.name
        ));
    }
    Row {
        user: account.name.clone(),
        uid: account.uid,
        enrolled: secret.is_some(),
        devices: secret.as_ref().map_or(0, |s| s.devices.len()),
        backup_codes_left: secret.as_ref().map_or(0, |s| state.backup_codes_left(&s.backup_codes)),
        failures: state.failures,
        locked_until: state.is_locked(now).then_some(state.locked_until),
        last_login: (state.last_success > 0).then_some(state.last_success),
        remembered_hosts: state.remembered.iter().filter(|r| r.until > now).count(),
        enrolled_on_record: (state.enrolled > 0).then_some(state.enrolled),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
        keys: secret.as_ref().map(|_| match (&path.fleet, path.in_vault) {
            (Some(_), _) => "fleet",
            (None, true) => "vault",
            (None, false) => "home",
        }),
    }
}

/// [`row`] for every account, in the order given.
pub fn collect<'a, S: StateStore>(
    cfg: &Config,
    store: Option<&S>,
    accounts: impl IntoIterator<Item = &'a Account>,
    now: u64,
) -> Vec<Row> {
    accounts.into_iter().map(|a| row(cfg, store, a, now)).collect()
}

fn time(t: Option<u64>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, serde_json::Value::from)
}

impl Row {
    pub fn json(&self) -> serde_json::Value {
        let mut j = serde_json::json!({
            "user": self.user,
            "enrolled": self.enrolled,
            "devices": self.devices,
            "backup_codes_left": self.backup_codes_left,
            "failures": self.failures,
            "locked_until": time(self.locked_until),
            "last_login": time(self.last_login),
            "remembered_hosts": self.remembered_hosts,
            "uid": self.uid,
            "enrolled_on_record": time(self.enrolled_on_record),
            "keys": self.keys,
        });
        if let Some(e) = &self.error {
            j["error"] = e.clone().into();
        }
        j
    }
}

/// The accounts listed and what else was found.
#[derive(Debug, Default)]
pub struct Listing {
    pub accounts: Vec<Account>,
    /// State files (or central secret files) whose account no longer exists.
    pub stale: Vec<String>,
    /// Things the listing could not read, in words.
    pub notes: Vec<String>,
    /// The uid range listed (None: every account).
    pub range: Option<(u32, u32)>,
}

/// The whole report as JSON.
pub fn to_json(cfg: &Config, rows: &[Row], listing: &Listing, now: u64) -> serde_json::Value {
    serde_json::json!({
        "total": rows.len(),
        "enrolled": rows.iter().filter(|r| r.enrolled).count(),
        "users": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "generated": now,
        "uid_range": listing.range.map(|(a, b)| vec![a, b]),
        "enforce_after": cfg.enforce_after.map(|d| d.to_string()),
        "days_left": cfg.enforce_after.map(|d| days_left(d, now)),
        "stale_state": listing.stale,
        "notes": listing.notes,
    })
}

/// Whole days from `now` until `date` begins (UTC), rounded up; 0 once it has begun.
pub fn days_left(date: Date, now: u64) -> u64 {
    date.start_unix().saturating_sub(now).div_ceil(86400)
}

fn when(t: Option<u64>, none: &str) -> String {
    t.map_or_else(|| none.to_string(), format_time)
}

/// The report as text: a table, what could not be read, a summary line, and with
/// `enforce_after` the date, the days left and who will be refused from it.
pub fn to_text(cfg: &Config, rows: &[Row], listing: &Listing, now: u64) -> String {
    let mut table: Vec<Vec<String>> = vec![[
        "USER",
        "UID",
        "ENROLLED",
        "DEVICES",
        "CODES LEFT",
        "FAILURES",
        "LOCKED UNTIL",
        "LAST CODE LOGIN",
        "REMEMBERED",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for r in rows {
        table.push(vec![
            safe(&r.user).into_owned(),
            r.uid.to_string(),
            match (r.enrolled, &r.error) {
                (true, _) => "yes".into(),
                (false, None) => "no".into(),
                (false, Some(_)) => "no (!)".into(),
            },
            r.devices.to_string(),
            if r.enrolled {
                r.backup_codes_left.to_string()
            } else {
                "-".into()
            },
            r.failures.to_string(),
            when(r.locked_until, "-"),
            when(r.last_login, "never"),
            r.remembered_hosts.to_string(),
        ]);
    }
    let mut out = crate::devices::table(&table);
    let problems: Vec<&Row> = rows.iter().filter(|r| r.error.is_some()).collect();
    if !problems.is_empty() {
        out.push_str("\n(!) could not be read or is wrong:\n");
        for r in problems {
            out.push_str(&format!(
                "  {}: {}\n",
                safe(&r.user),
                safe(r.error.as_deref().unwrap_or_default())
            ));
        }
    }
    if !listing.stale.is_empty() {
        out.push_str(&format!(
            "\nFiles of accounts that no longer exist (in {}; remove them by hand): {}\n",
            safe_path(&cfg.state_dir),
            listing
                .stale
                .iter()
                .map(|u| safe(u).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for n in &listing.notes {
        out.push_str(&format!("\nNote: {}\n", safe(n)));
    }
    let in_homes: Vec<&str> = rows
        .iter()
        .filter(|r| r.keys == Some("home"))
        .map(|r| r.user.as_str())
        .collect();
    if !in_homes.is_empty() {
        out.push_str(&format!(
            "\nKeys in a secret file their user can read (any process of theirs can make their codes): {}. `pam-totp migrate --all` moves them into the vault.\n",
            in_homes.iter().map(|u| safe(u).into_owned()).collect::<Vec<_>>().join(", ")
        ));
    }
    let enrolled = rows.iter().filter(|r| r.enrolled).count();
    out.push_str(&format!(
        "\n{enrolled} of {} account{} enrolled ({}).\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        match listing.range {
            Some((lo, hi)) =>
                format!("uid {lo} to {hi}, and accounts with a secret or state file; --all-users lists every account"),
            None => "every account".into(),
        }
    ));
    if let Some(date) = cfg.enforce_after {
        let missing: Vec<String> = rows
            .iter()
            .filter(|r| !r.enrolled)
            .map(|r| safe(&r.user).into_owned())
            .collect();
        let what = if cfg.enroll_on_login {
            "asked to enroll at their next login (enroll_on_login)"
        } else {
            "refused"
        };
        let who = if missing.is_empty() {
            "nobody: every account listed is enrolled".to_string()
        } else {
            format!(
                "{} account{}: {}",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            )
        };
        let left = days_left(date, now);
        out.push_str(&if left > 0 {
            format!(
                "Codes are required from {date} (enforce_after; {left} day{} left). Not enrolled, so {what} from then: {who}.\n",
                if left == 1 { "" } else { "s" }
            )
        } else {
            format!("Codes have been required since {date} (enforce_after). Not enrolled, so {what} now: {who}.\n")
        });
    }
    out.trim_end_matches('\n').to_string()
}

/// UID_MIN and UID_MAX from login.defs(5) text (defaults 1000 and 60000).
pub fn uid_range(login_defs: &str) -> (u32, u32) {
    let value = |key: &str| {
        login_defs.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key)).then(|| w.next().and_then(|v| v.parse::<u32>().ok()))?
        })
    };
    (
        value("UID_MIN").unwrap_or(DEFAULT_UID_MIN),
        value("UID_MAX").unwrap_or(DEFAULT_UID_MAX),
    )
}

/// Accounts from passwd(5)-format text (`getent passwd`), first entry of a name kept,
/// names we never look up skipped.
pub fn parse_passwd(text: &str) -> Vec<Account> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            continue;
        }
        let (Ok(uid), Ok(gid)) = (f[2].parse::<u32>(), f[3].parse::<u32>()) else {
            continue;
        };
        if !valid_user_name(f[0]) || !seen.insert(f[0].to_string()) {
            continue;
        }
        out.push(Account {
            name: f[0].to_string(),
            uid,
            gid,
            home: PathBuf::from(f[5]),
        });
    }
    out
}

/// Names of users with a file in a central secret directory: for a template whose first
/// component with `%u` is the last (`/etc/pam-totp/%u.toml`) or a directory
/// (`/srv/totp/%u/secret.toml`), the entries of the directory before it that fit the
/// pattern. Templates in homes (`%h/...`) give none: those are looked for per account.
pub fn secret_dir_names(template: &str) -> Result<Vec<String>, String> {
    if !template.starts_with('/') {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = template.split('/').collect();
    let Some(i) = parts.iter().position(|p| p.contains("%u")) else {
        return Ok(Vec::new());
    };
    if parts[..i].iter().any(|p| p.contains('%')) {
        return Ok(Vec::new());
    }
    let Some((pre, suf)) = parts[i].split_once("%u") else {
        return Ok(Vec::new());
    };
    if pre.contains('%') || suf.contains('%') {
        return Ok(Vec::new());
    }
    let dir = format!("/{}", parts[1..i].join("/"));
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list the secret directory {dir}: {}", describe(&e))),
    };
    let mut names = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(file) = file.to_str() else { continue };
        if let Some(name) = file.strip_prefix(pre).and_then(|r| r.strip_suffix(suf)) {
            if !name.is_empty() && valid_user_name(name) && !name.starts_with('.') {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// Names with a state file in the state directory.
pub fn state_dir_names(dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {}", safe_path(dir), describe(&e)))?;
    Ok(entries
        .flatten()
        .filter_map(|e| {
            let f = e.file_name();
            f.to_str()?.strip_suffix(".state").and_then(unescape_user)
        })
        .collect())
}

/// The accounts the report covers (see the module comment).
fn list_accounts(ctx: &Ctx, store: Option<&AnyStore>, all: bool) -> Result<Listing, String> {
    let out = program("/usr/bin/getent")
        .arg("passwd")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot list the accounts (getent passwd): {}", describe(&e)))?;
    if !out.status.success() {
        return Err(format!(
            "cannot list the accounts: getent passwd failed ({})",
            out.status
        ));
    }
    let everyone = parse_passwd(&String::from_utf8_lossy(&out.stdout));
    let range = (!all).then(|| uid_range(&std::fs::read_to_string(LOGIN_DEFS).unwrap_or_default()));
    let mut listing = Listing {
        range,
        ..Listing::default()
    };
    let mut listed: BTreeSet<String> = BTreeSet::new();
    for a in everyone {
        if range.is_none_or(|(lo, hi)| (lo..=hi).contains(&a.uid)) {
            listed.insert(a.name.clone());
            listing.accounts.push(a);
        }
    }
    let mut extra: BTreeSet<String> = BTreeSet::new();
    if let Some(s) = store {
        // The users with a state: files in the state directory, or documents in the fleet's
        // namespace (through pam-totp-stated).
        let names = match (s.local_path(), s.fleet()) {
            (Some(dir), _) => state_dir_names(&dir),
            (None, Some(fleet)) => fleet
                .list_users()
                .map_err(|e| format!("cannot list the users of the fleet store: {e}")),
            (None, None) => Ok(Vec::new()),
        };
        match names {
            Ok(n) => extra.extend(n),
            Err(e) => listing.notes.push(e),
        }
    }
    match secret_dir_names(&ctx.cfg.secret) {
        Ok(n) => extra.extend(n),
        Err(e) => listing.notes.push(e),
    }
    for name in extra.difference(&listed.clone()) {
        match SystemAccounts.lookup(name) {
            Ok(Some(a)) if valid_user_name(&a.name) => {
                if listed.insert(a.name.clone()) {
                    listing.accounts.push(a);
                }
            }
            Ok(_) => listing.stale.push(name.clone()),
            Err(e) => listing.notes.push(format!("cannot look up {}: {e}", safe(name))),
        }
    }
    listing.accounts.sort_by(|a, b| (a.uid, &a.name).cmp(&(b.uid, &b.name)));
    Ok(listing)
}

pub fn run(ctx: &Ctx, a: ReportArgs) -> Result<(), String> {
    ctx.require_root("run the report (it reads every user's state)")?;
    let store = ctx
        .store_if_exists()
        .map_err(|e| format!("{e}; fix it first (`pam-totp doctor`)"))?;
    let listing = list_accounts(ctx, store.as_ref(), a.all_users)?;
    let now = ctx.now();
    let rows = collect(&ctx.cfg, store.as_ref(), &listing.accounts, now);
    if a.json {
        print_result(&json_line(&to_json(&ctx.cfg, &rows, &listing, now)))
    } else {
        print_result(&to_text(&ctx.cfg, &rows, &listing, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_totp_core::files::secret::Kind;
    use pam_totp_core::files::secret_file::save_secret;
    use pam_totp_core::otp::enroll::{new_device, new_secret};
    use pam_totp_core::otp::Params;
    use pam_totp_core::state::store::FileStore;
    use std::os::unix::fs::DirBuilderExt;

    #[test]
    fn uid_range_from_login_defs() {
        assert_eq!(uid_range(""), (1000, 60000));
        assert_eq!(uid_range("# UID_MIN 5\nUID_MIN\t\t 2000\nUID_MAX 3000\n"), (2000, 3000));
        assert_eq!(uid_range("UID_MIN x\n"), (1000, 60000));
    }

    #[test]
    fn passwd_lines_become_accounts() {
        let text = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice, Room 1:/home/alice:/bin/sh\n\
                    alice:x:1000:1000::/elsewhere:/bin/sh\nbad\n../x:x:1001:1001::/h:/bin/sh\nbob:x:z:1::/h:/bin/sh\n";
        let a = parse_passwd(text);
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[1].name.as_str(), a[1].uid, a[1].home.as_path()),
            ("alice", 1000, Path::new("/home/alice"))
        );
    }

    #[test]
    fn days_left_round_up_and_stop_at_zero() {
        let d = Date::parse("2027-01-01").unwrap();
        assert_eq!(days_left(d, d.start_unix() - 1), 1);
        assert_eq!(days_left(d, d.start_unix() - 86400), 1);
        assert_eq!(days_left(d, d.start_unix() - 86401), 2);
        assert_eq!(days_left(d, d.start_unix()), 0);
        assert_eq!(days_left(d, d.start_unix() + 5 * 86400), 0);
    }

    fn tmp() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("pam-totp-report-{}-{nanos}-{n}", std::process::id()));
        // The synthetic users must reach their homes inside.
        std::fs::DirBuilder::new().mode(0o711).create(&p).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
        p
    }

    /// `n` synthetic accounts with homes under `root` (owned by uid `base + i` when we are
    /// root, else by us). Every `enrolled_every`-th has a secret with two authenticators; each
    /// has a state file.
    fn synthetic(root: &Path, store: &FileStore, n: u32, enrolled_every: u32, now: u64) -> Vec<Account> {
        let me = nix::unistd::geteuid();
        let mut out = Vec::new();
        for i in 0..n {
            let (uid, gid) = if me.is_root() {
                (200_000 + i, 200_000 + i)
            } else {
                (me.as_raw(), nix::unistd::getegid().as_raw())
            };
            let home = root.join(format!("home{i}"));
            std::fs::DirBuilder::new().mode(0o700).create(&home).unwrap();
            std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
            let a = Account {
                name: format!("user{i:04}"),
                uid,
                gid,
                home,
            };
            if i % enrolled_every == 0 {
                let d = new_device("phone", Kind::Totp, Params::DEFAULT, "h", "l", now).unwrap();
                let (mut s, _) = new_secret(d, 10).unwrap();
                s.devices
                    .push(new_device("token", Kind::Hotp, Params::DEFAULT, "h", "l", now).unwrap());
                save_secret(
                    &pam_totp_core::files::secret_file::KeyFile::legacy(a.home.join(".config/pam-totp/secret.toml")),
                    &a,
                    &s,
                    false,
                )
                .unwrap();
            }
            store
                .update(&a.name, |st| {
                    st.failures = i % 7;
                    if i % 10 == 3 {
                        st.locked_until = now + 300;
                    }
                    if i % enrolled_every == 0 {
                        st.last_success = now - 60;
                        st.enrolled = now - 3600;
                    }
                })
                .unwrap();
            out.push(a);
        }
        out
    }

    #[test]
    fn rows_say_what_the_files_say() {
        let root = tmp();
        let now = 1_800_000_000;
        let store = FileStore::open(&root.join("state"), false).unwrap();
        let accounts = synthetic(&root, &store, 12, 2, now);
        let cfg = Config {
            state_dir: root.join("state"),
            ..Config::default()
        };
        let rows = collect(&cfg, Some(&store), &accounts, now);
        assert_eq!(rows.len(), 12);
        assert!(rows[0].enrolled && rows[0].devices == 2 && rows[0].backup_codes_left == 10);
        assert_eq!(rows[0].last_login, Some(now - 60));
        assert!(!rows[1].enrolled && rows[1].devices == 0 && rows[1].error.is_none());
        assert_eq!(rows[3].locked_until, Some(now + 300));
        assert_eq!(rows[3].failures, 3);
        assert_eq!(rows[4].locked_until, None);
        // A secret file gone after the enrollment was recorded: not enrolled, and why.
        std::fs::remove_file(accounts[2].home.join(".config/pam-totp/secret.toml")).unwrap();
        let r = row(&cfg, Some(&store), &accounts[2], now);
        assert!(!r.enrolled);
        assert!(
            r.error.as_deref().unwrap().contains("is missing but the user enrolled"),
            "{r:?}"
        );

        let listing = Listing {
            range: Some((1000, 60000)),
            ..Listing::default()
        };
        let j = to_json(&cfg, &rows, &listing, now);
        assert_eq!((j["total"].as_u64(), j["enrolled"].as_u64()), (Some(12), Some(6)));
        assert!(j["users"][1]["locked_until"].is_null() && j["users"][1]["last_login"].is_null());
        let cfg = Config {
            enforce_after: Some(Date::from_unix(now + 10 * 86400)),
            ..cfg
        };
        let text = to_text(&cfg, &rows, &listing, now);
        assert!(text.contains("6 of 12 accounts enrolled"), "{text}");
        assert!(
            text.contains(
                "(enforce_after; 10 days left). Not enrolled, so refused from then: 6 accounts: user0001, user0003"
            ),
            "{text}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    /// `scripts/bench-report`: 1,000 synthetic accounts (homes in a temporary directory, a
    /// secret file with two authenticators in every second home, a state file for each), the
    /// report's work over them timed. Not a timed assertion: it prints the figures.
    #[test]
    #[ignore = "benchmark; run by scripts/bench-report"]
    fn bench_report_1000_accounts() {
        let root = tmp();
        let now = pam_totp_core::clock::Clock::now(&pam_totp_core::clock::SystemClock);
        let store = FileStore::open(&root.join("state"), true).unwrap();
        let accounts = synthetic(&root, &store, 1000, 2, now);
        let cfg = Config {
            state_dir: root.join("state"),
            ..Config::default()
        };
        let listing = Listing {
            range: Some((1000, 60000)),
            ..Listing::default()
        };
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = std::time::Instant::now();
            let rows = collect(&cfg, Some(&store), &accounts, now);
            let json = json_line(&to_json(&cfg, &rows, &listing, now));
            let text = to_text(&cfg, &rows, &listing, now);
            times.push(t.elapsed());
            assert_eq!(rows.iter().filter(|r| r.enrolled).count(), 500);
            assert!(json.len() > 1000 && text.len() > 1000);
        }
        let first = times[0];
        times.sort();
        println!(
            "report over 1000 accounts (500 enrolled, 2 authenticators each; 1000 state files): first run {:.1} ms, median of 7 {:.1} ms, fastest {:.1} ms ({} per account at the median)",
            first.as_secs_f64() * 1e3,
            times[3].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            format_args!("{:.0} µs", times[3].as_secs_f64() * 1e6 / 1000.0),
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
