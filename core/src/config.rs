//! pam_totp.conf + module arguments -> one validated [`Config`].
//!
//! Owns: the list of options (the [`OPTIONS`] table is the single source for parsing,
//! `--help` and the man pages), their defaults, ranges and precedence (argument over file
//! over default). Never: ignores an unknown or malformed option — that is an error, and the
//! module refuses the login.

use std::path::{Path, PathBuf};

use crate::error::Error;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/security/pam_totp.conf";
pub const DEFAULT_SECRET_TEMPLATE: &str = "%h/.config/pam-totp/secret.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pam-totp";
pub const DEFAULT_PROMPT: &str = "Verification code: ";
pub const FORWARD_PASS_PROMPT: &str = "Password & verification code: ";
pub const DEFAULT_WINDOW: u64 = 1;
pub const MAX_WINDOW: u64 = 10;
/// `skew_range`: seconds either side searched for a code out of the window.
pub const DEFAULT_SKEW_RANGE: u64 = 900;
pub const MAX_SKEW_RANGE: u64 = crate::state::MAX_OFFSET as u64;
pub const DEFAULT_MAX_FAILURES: u32 = 6;
pub const DEFAULT_HOTP_WINDOW: u64 = 10;
pub const MAX_HOTP_WINDOW: u64 = 100;
pub const DEFAULT_LOCKOUT: u64 = 300;
pub const MAX_LOCKOUT: u64 = 7 * 24 * 3600;
pub const MAX_REMEMBER: u64 = 90 * 24 * 3600;
pub use crate::account::DEFAULT_PROTECTED_GROUPS;
/// Most names `protected_groups` may list.
pub const MAX_PROTECTED_GROUPS: usize = 64;
/// Where `pam-totp-stated` listens and the module and the CLI reach it (`fleet_socket`).
pub const DEFAULT_FLEET_SOCKET: &str = "/run/pam-totp/stated.sock";
pub const DEFAULT_FLEET_NAMESPACE: &str = "default";
/// The daemon's deadline for one etcd call; shorter than the module's 2 s per request.
pub const DEFAULT_FLEET_TIMEOUT_MS: u64 = 1500;
pub const MAX_FLEET_TIMEOUT_MS: u64 = 1900;
/// Most URLs `fleet.endpoints` may list.
pub const MAX_FLEET_ENDPOINTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Flag,
    Number,
    Path,
    Text,
    Date,
    /// A TOML array of names; pam_totp.conf only (a module argument is an error).
    List,
}

#[derive(Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub doc: &'static str,
    /// A TOML value for the commented example in pam_totp.conf ("" = not valid in the file).
    pub example: &'static str,
}

/// Every option, in the order the documentation lists them.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec { name: "secret", kind: Kind::Path, default: DEFAULT_SECRET_TEMPLATE, doc: "Path template of the user's secret file: %u is the user name, %h the home directory, %% a percent sign. Files under the user's home are read with the user's file-system identity.", example: "\"%h/.config/pam-totp/secret.toml\"" },
    OptionSpec { name: "state_dir", kind: Kind::Path, default: DEFAULT_STATE_DIR, doc: "Root-only directory for per-user state (replay guard, failures, lockout, used backup codes, remembered hosts). Created 0700 if missing; its parent directory must exist (never created: a mistyped path refuses logins instead of starting an empty state).", example: "\"/var/lib/pam-totp\"" },
    OptionSpec { name: "config", kind: Kind::Path, default: DEFAULT_CONFIG_PATH, doc: "Configuration file to read instead of the default (module argument only). It must exist when given.", example: "" },
    OptionSpec { name: "window", kind: Kind::Number, default: "1", doc: "Time steps accepted either side of the current one, for clock skew (0-10).", example: "1" },
    OptionSpec { name: "skew_range", kind: Kind::Number, default: "900", doc: "Seconds either side of the window in which a wrong code is also looked for (0 = off, at most 3600). A code found there (within a user's first 4 consecutive failures) is still refused and counted, and the user is told that their authenticator's clock (or this host's) looks that far off. Two consecutive such codes of one authenticator that agree on its offset within 5 minutes resynchronise it (RFC 6238 section 6): the second is accepted, and from then on its window is centred on that offset and follows its drift, never wider (docs/how-it-decides.md: Clocks).", example: "900" },
    OptionSpec { name: "max_failures", kind: Kind::Number, default: "6", doc: "Consecutive wrong answers that lock the user out (1-1000000).", example: "6" },
    OptionSpec { name: "hotp_window", kind: Kind::Number, default: "10", doc: "Counter-based (HOTP) authenticators: how many codes ahead of the next expected one are accepted, for button presses that never reached this host (1-100). The counter then moves past the accepted one.", example: "10" },
    OptionSpec { name: "lockout", kind: Kind::Number, default: "300", doc: "Seconds a lockout lasts (1-604800).", example: "300" },
    OptionSpec { name: "nullok", kind: Kind::Flag, default: "off", doc: "Users without a secret file are not asked for a code (the module returns PAM_IGNORE). Any other problem with the file still refuses the login.", example: "false" },
    OptionSpec { name: "enforce_after", kind: Kind::Date, default: "none", doc: "YYYY-MM-DD (UTC). Before this date users without a secret file are let through with a warning; from it they are refused.", example: "\"2027-01-01\"" },
    OptionSpec { name: "enroll_on_login", kind: Kind::Flag, default: "off", doc: "Users without a secret file are walked through enrollment at login: QR code, a code to confirm, backup codes. Offered only when a requisite password module comes before pam_totp in the service's /etc/pam.d stack; otherwise they are refused and it is logged.", example: "false" },
    OptionSpec { name: "remember", kind: Kind::Number, default: "0", doc: "Seconds during which the same user from the same remote host on the same service is not asked again (0 = off, at most 90 days). A remembered host whose expiry is further away than now + N is not honoured: lowering N shortens those already remembered.", example: "0" },
    OptionSpec { name: "prompt", kind: Kind::Text, default: DEFAULT_PROMPT, doc: "Prompt text. Use [prompt=Text with spaces] in PAM files.", example: "\"Verification code: \"" },
    OptionSpec { name: "forward_pass", kind: Kind::Flag, default: "off", doc: "Ask once for password followed by the code and pass the password as PAM_AUTHTOK to the next module (use_first_pass). A right code is spent here; a wrong one is not counted here but kept for the next pam_totp line after the password module, which counts it (docs/enable.md: One prompt for clients that can send only one password).", example: "false" },
    OptionSpec { name: "debug", kind: Kind::Flag, default: "off", doc: "Log more detail (never codes or secrets).", example: "false" },
    OptionSpec { name: "issuer", kind: Kind::Text, default: "the host name", doc: "Issuer shown in the authenticator app for new enrollments (pam-totp enroll).", example: "\"example.org\"" },
    OptionSpec { name: "digits", kind: Kind::Number, default: "6", doc: "Code length for new enrollments, 6 or 8 (pam-totp enroll).", example: "6" },
    OptionSpec { name: "algorithm", kind: Kind::Text, default: "SHA1", doc: "HMAC algorithm for new enrollments: SHA1 (what every app supports), SHA256 or SHA512 (pam-totp enroll).", example: "\"SHA1\"" },
    OptionSpec { name: "key_store", kind: Kind::Text, default: "home", doc: "Where new enrollments keep a user's keys: vault (STATE_DIR/vault/, root-only: no process of the user can read them) or home (the legacy secret file at the secret= template, readable by the user). Keys already in the vault are always read from there; a user with keys in no vault is read from the secret= file until `pam-totp migrate` moves them.", example: "\"home\"" },
    OptionSpec { name: "store", kind: Kind::Text, default: "local", doc: "Where the per-user state lives: local (the state_dir of this host) or fleet (shared by every host through pam-totp-stated and etcd, so a code, a backup code and the failure count are one for the whole fleet; docs/fleet.md).", example: "\"local\"" },
    OptionSpec { name: "fleet_socket", kind: Kind::Path, default: DEFAULT_FLEET_SOCKET, doc: "With store=fleet: the Unix socket of pam-totp-stated. It and its directory must be owned by root and not writable by group or others, and the daemon must run as root.", example: "\"/run/pam-totp/stated.sock\"" },
    OptionSpec { name: "store_unavailable", kind: Kind::Text, default: "deny", doc: "With store=fleet, when the fleet store is down (the daemon is not running, or reports that etcd answers none of its requests): deny (refuse the login) or local (decide on this host's own state in state_dir and log degraded on every such login: time-based codes only, a code spent elsewhere within its window may work here once; backup and HOTP codes, users not known to be enrolled and remembered hosts are refused). A login that merely got no answer in time is refused either way. A code is always asked.", example: "\"deny\"" },
    OptionSpec { name: "protected_groups", kind: Kind::List, default: "[\"root\", \"sudo\", \"wheel\"]", doc: "In pam_totp.conf only: group names. Run through sudo by a user other than root (a help desk rule), pam-totp refuses to change the enrollment or state of root or of any member of these groups (primary or supplementary): unlock, reset, enroll, backup-codes, devices, import. pam-totp import tokens refuses their tokens without --allow-protected, also when root runs it. With store=fleet the protection is the fleet's: the module (at each login) and pam-totp mark the fleet document of an account protected on their host, and the help desk on every host refuses it.", example: "[\"root\", \"sudo\", \"wheel\"]" },
    OptionSpec { name: "fleet.endpoints", kind: Kind::List, default: "[]", doc: "In pam_totp.conf only, read by pam-totp-stated: the etcd members' client URLs. https:// (with ca_file, cert_file and key_file); http:// only to a loopback address.", example: "[\"https://etcd1.example.org:2379\", \"https://etcd2.example.org:2379\", \"https://etcd3.example.org:2379\"]" },
    OptionSpec { name: "fleet.namespace", kind: Kind::Text, default: DEFAULT_FLEET_NAMESPACE, doc: "In pam_totp.conf only: the fleet's name in the etcd keys pam-totp/v1/NAMESPACE/users/USER (and, with key_store=vault, pam-totp/v1/NAMESPACE/vault/USER) (letters, digits, . _ -; at most 64). Hosts that share users share it.", example: "\"default\"" },
    OptionSpec { name: "fleet.ca_file", kind: Kind::Path, default: "none", doc: "In pam_totp.conf only: PEM file of the CA that signed the etcd members' certificates.", example: "\"/etc/pam-totp/etcd-ca.pem\"" },
    OptionSpec { name: "fleet.cert_file", kind: Kind::Path, default: "none", doc: "In pam_totp.conf only: PEM client certificate of this host; its CN is the etcd user (give it a role limited to the key prefix).", example: "\"/etc/pam-totp/host.pem\"" },
    OptionSpec { name: "fleet.key_file", kind: Kind::Path, default: "none", doc: "In pam_totp.conf only: PEM private key of cert_file, readable by root only.", example: "\"/etc/pam-totp/host-key.pem\"" },
    OptionSpec { name: "fleet.vault_key_file", kind: Kind::Path, default: "none", doc: "In pam_totp.conf only: with store=fleet and key_store=vault, the fleet vault's keys: 64 hex digits per line (32 random bytes: openssl rand -hex 32), root's only (0600 or 0400). The first line seals every new write; later lines are older keys still opened, so a rotation is: a new first line on every host, pam-totp rekey, then the old line removed. The same file on every host of the namespace; a host without it (or without the key a record names) cannot read users' keys and refuses their logins (docs/fleet.md).", example: "\"/etc/pam-totp/vault.keys\"" },
    OptionSpec { name: "fleet.timeout_ms", kind: Kind::Number, default: "1500", doc: "In pam_totp.conf only: the daemon's deadline in milliseconds for one etcd call (10-1900); the module waits at most 2 s for an answer and refuses after that.", example: "1500" },
];

/// Where new enrollments keep a user's keys (`key_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStore {
    /// `STATE_DIR/vault/`, root-only.
    Vault,
    /// The legacy secret file at the `secret=` template.
    Home,
}

/// How the module and the command line reach the per-user state (`store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Local,
    Fleet,
}

/// What a fleet login does when the shared store does not answer (`store_unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    Deny,
    Local,
}

/// The `[fleet]` table of pam_totp.conf, read by `pam-totp-stated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    pub endpoints: Vec<String>,
    pub namespace: String,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The fleet vault's key ring (`fleet.vault_key_file`).
    pub vault_key_file: Option<PathBuf>,
    pub timeout_ms: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            endpoints: Vec::new(),
            namespace: DEFAULT_FLEET_NAMESPACE.into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            vault_key_file: None,
            timeout_ms: DEFAULT_FLEET_TIMEOUT_MS,
        }
    }
}

/// Checks one `fleet.endpoints` URL: `https://HOST:PORT`, or `http://` to a loopback address
/// only (plain text elsewhere would give the network the fleet's state).
fn check_endpoint(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL (https://HOST:PORT)"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty()
        || rest.contains(['/', '@', '?', '#'])
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("{url:?}: only scheme://HOST:PORT, without a path or user"));
    }
    let host = match rest.strip_prefix('[') {
        Some(r) => r.split_once(']').map(|(h, _)| h).unwrap_or(""),
        None => rest.rsplit_once(':').map(|(h, _)| h).unwrap_or(rest),
    };
    let port_ok = rest.rsplit_once(':').is_some_and(|(_, p)| {
        !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    if host.is_empty() || !port_ok {
        return Err(format!("{url:?}: needs a host and a port (https://HOST:PORT)"));
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(format!(
            "{url:?}: http:// is refused except to a loopback address; use https://"
        )),
        _ => Err(format!("{url:?}: the scheme must be https:// (or http:// to loopback)")),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The shipped /etc/security/pam_totp.conf: every option that may appear in the file,
/// commented out with its default or an example, and its description.
/// Settings the shipped pam_totp.conf makes, for new installs (the code's defaults stay what
/// existing configurations were written against): keys go to the vault.
pub const SHIPPED_SETTINGS: &[(&str, &str)] = &[("key_store", "\"vault\"")];

pub fn commented_config_file() -> String {
    let mut out = String::from(
        "# /etc/security/pam_totp.conf: defaults for pam_totp.so and the pam-totp command (TOML).\n\
         # Arguments on a module line override these settings. See pam_totp.conf(5) and pam_totp(8).\n\
         # An unknown or malformed setting makes pam_totp refuse every login and log why.\n",
    );
    let top = OPTIONS.iter().filter(|o| !o.name.starts_with("fleet."));
    let fleet = OPTIONS.iter().filter(|o| o.name.starts_with("fleet."));
    let mut in_fleet = false;
    for o in top.chain(fleet).filter(|o| !o.example.is_empty()) {
        let key = o.name.strip_prefix("fleet.").unwrap_or(o.name);
        if key != o.name && !in_fleet {
            in_fleet = true;
            out.push_str("\n# For store = \"fleet\": read by pam-totp-stated (docs/fleet.md).\n#[fleet]\n");
        }
        out.push('\n');
        let mut line = String::from("#");
        for word in format!("{} (default: {})", o.doc, o.default).split_whitespace() {
            if line.len() + word.len() > 88 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        match SHIPPED_SETTINGS.iter().find(|(k, _)| *k == o.name) {
            Some((_, v)) => out.push_str(&format!("\n# Set for new installs:\n{key} = {v}\n")),
            None => out.push_str(&format!("\n#{key} = {}\n", o.example)),
        }
    }
    out
}

/// A calendar date as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub i64);

impl Date {
    /// Parses `YYYY-MM-DD` strictly (a real calendar date).
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = &s[r];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) {
            return None;
        }
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if d < 1 || d > days_in_month[(m - 1) as usize] {
            return None;
        }
        Some(Date(days_from_civil(y, m, d)))
    }

    pub fn from_unix(secs: u64) -> Date {
        Date((secs / 86400) as i64)
    }

    /// Unix seconds at 00:00 UTC of this date.
    pub fn start_unix(self) -> u64 {
        (self.0.max(0) as u64) * 86400
    }

    pub fn to_ymd(self) -> (i64, i64, i64) {
        civil_from_days(self.0)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.to_ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

// Howard Hinnant's algorithms (public domain) for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The effective configuration of one PAM call or CLI run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub secret: String,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    pub window: u64,
    pub skew_range: u64,
    pub hotp_window: u64,
    pub max_failures: u32,
    pub lockout: u64,
    pub nullok: bool,
    pub enforce_after: Option<Date>,
    pub enroll_on_login: bool,
    pub remember: u64,
    pub prompt: String,
    pub forward_pass: bool,
    pub debug: bool,
    /// Defaults for `pam-totp enroll`; the module does not use them.
    pub issuer: Option<String>,
    pub digits: u32,
    pub algorithm: crate::otp::Algorithm,
    /// pam_totp.conf only; for `pam-totp` run through sudo (the module does not use it).
    pub protected_groups: Vec<String>,
    pub key_store: KeyStore,
    pub store: StoreKind,
    pub fleet_socket: PathBuf,
    pub store_unavailable: Unavailable,
    /// pam_totp.conf only (`[fleet]`); for `pam-totp-stated`.
    pub fleet: FleetConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            secret: DEFAULT_SECRET_TEMPLATE.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            config_path: DEFAULT_CONFIG_PATH.into(),
            window: DEFAULT_WINDOW,
            skew_range: DEFAULT_SKEW_RANGE,
            hotp_window: DEFAULT_HOTP_WINDOW,
            max_failures: DEFAULT_MAX_FAILURES,
            lockout: DEFAULT_LOCKOUT,
            nullok: false,
            enforce_after: None,
            enroll_on_login: false,
            remember: 0,
            prompt: DEFAULT_PROMPT.into(),
            forward_pass: false,
            debug: false,
            issuer: None,
            digits: 6,
            algorithm: crate::otp::Algorithm::Sha1,
            protected_groups: DEFAULT_PROTECTED_GROUPS.iter().map(|g| g.to_string()).collect(),
            key_store: KeyStore::Home,
            store: StoreKind::Local,
            fleet_socket: DEFAULT_FLEET_SOCKET.into(),
            store_unavailable: Unavailable::Deny,
            fleet: FleetConfig::default(),
        }
    }
}

/// A value as written: a module argument is always text; in TOML it has a type.
enum Value<'a> {
    Text(&'a str),
    Toml(&'a toml::Value),
}

fn err(origin: &str, name: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("{origin}: option `{name}`: {why}"))
}

/// What option `name` takes, with an example line: "takes a whole number (Seconds a
/// lockout lasts (1-604800).), e.g. `lockout = 300`".
fn expects(name: &str) -> Option<String> {
    let spec = OPTIONS.iter().find(|o| o.name == name)?;
    let what = match spec.kind {
        Kind::Flag => "true or false",
        Kind::Number => "a whole number",
        Kind::Path => "a path in double quotes",
        Kind::Text => "text in double quotes",
        Kind::Date => "a date in double quotes",
        Kind::List => "a list in brackets",
    };
    let key = name.strip_prefix("fleet.").unwrap_or(name);
    let example = match spec.example {
        "" => String::new(),
        ex => format!(", e.g. `{key} = {ex}`"),
    };
    Some(format!("takes {what} ({}){example}", spec.doc))
}

/// A TOML syntax error of pam_totp.conf as one message naming the line and, when the line
/// is a setting, the option and what it expects; and the line's index (0-based) if known.
fn toml_problem(origin: &str, text: &str, e: &toml::de::Error) -> (Error, Option<usize>) {
    let Some(span) = e.span() else {
        return (
            Error::Config(format!("{origin}: {}", crate::text::toml_error_position(text, e))),
            None,
        );
    };
    let index = text[..span.start.min(text.len())].matches('\n').count();
    let line = text.lines().nth(index).unwrap_or("").trim();
    // The table the line is in: settings under [fleet] are fleet.NAME.
    let table = text
        .lines()
        .take(index)
        .filter_map(|l| {
            let l = l.trim();
            (l.starts_with('[') && !l.starts_with("[[")).then(|| l.trim_matches(|c| c == '[' || c == ']').trim())
        })
        .last();
    let setting = line
        .split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        });
    let n = index + 1;
    let message = match setting {
        Some((key, value)) => {
            let name = match table {
                Some(t) if !t.is_empty() => format!("{t}.{key}"),
                _ => key.to_string(),
            };
            let value = crate::text::terminal_safe(value);
            match expects(&name) {
                Some(what) => {
                    format!("{origin}: line {n}: option `{name}`: `{value}` is not a value it can read; it {what}")
                }
                None => format!(
                    "{origin}: line {n}: unknown option `{}` (and `{value}` is not a TOML value)",
                    name.escape_debug()
                ),
            }
        }
        None => format!(
            "{origin}: line {n}: not a setting TOML can read (`{}`)",
            crate::text::terminal_safe(line)
        ),
    };
    (Error::Config(message), Some(index))
}

/// Every problem of pam_totp.conf `text` (see [`Config::load_checked`]), and the text with
/// the lines TOML cannot read blanked, which parses.
fn check_file_text(path: &Path, text: &str) -> (String, Vec<String>) {
    let origin = path.display().to_string();
    let mut lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    // Each round blanks one line TOML cannot read; a file has few.
    for _ in 0..64 {
        let joined = lines.join("\n");
        match toml::from_str::<toml::Table>(&joined) {
            Ok(table) => {
                let mut errors = Vec::new();
                Config::default().apply_table(&origin, &table, &mut errors);
                problems.extend(errors.into_iter().map(|e| e.to_string()));
                return (joined, problems);
            }
            Err(e) => {
                let (problem, index) = toml_problem(&origin, &joined, &e);
                problems.push(problem.to_string());
                match index {
                    Some(i) if lines.get(i).is_some_and(|l| !l.trim().is_empty()) => lines[i] = "",
                    _ => break,
                }
            }
        }
    }
    // What is left cannot be read: nothing of the file applies.
    (String::new(), problems)
}

impl Config {
    /// Builds the configuration: defaults, then the config file (the one named by a
    /// `config=` argument, else the default path if it exists), then the arguments.
    /// `read_file(path)` returns `Ok(None)` when the file does not exist.
    pub fn load(args: &[&str], read_file: impl Fn(&Path) -> Result<Option<String>, Error>) -> Result<Config, Error> {
        let mut cfg = Config::default();
        let mut explicit_config = None;
        for a in args {
            if let Some(p) = a.strip_prefix("config=") {
                if p.is_empty() || !p.starts_with('/') {
                    return Err(err("module arguments", "config", "must be an absolute path"));
                }
                explicit_config = Some(PathBuf::from(p));
            }
        }
        let path = explicit_config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        match read_file(&path)? {
            Some(text) => cfg.apply_file(&path, &text)?,
            None if explicit_config.is_some() => {
                return Err(Error::Config(format!("config file {} does not exist", path.display())))
            }
            None => {}
        }
        cfg.config_path = path;
        for a in args {
            let (name, value) = match a.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (*a, None),
            };
            if name == "config" {
                continue;
            }
            if name.starts_with("fleet.") || name == "fleet" {
                return Err(err(
                    "module arguments",
                    name,
                    "only valid in pam_totp.conf, in its [fleet] table",
                ));
            }
            cfg.set("module arguments", name, value.map(Value::Text))?;
        }
        Ok(cfg)
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), Error> {
        let origin = path.display().to_string();
        let table: toml::Table = toml::from_str(text).map_err(|e| toml_problem(&origin, text, &e).0)?;
        let mut problems = Vec::new();
        self.apply_table(&origin, &table, &mut problems);
        problems.into_iter().next().map_or(Ok(()), Err)
    }

    /// Applies every setting of a parsed pam_totp.conf, each problem pushed to `problems`
    /// (in the file's order) and the setting left at its previous value.
    fn apply_table(&mut self, origin: &str, table: &toml::Table, problems: &mut Vec<Error>) {
        for (name, value) in table {
            if name == "config" {
                problems.push(err(origin, name, "only valid as a module argument"));
                continue;
            }
            if name == "fleet" {
                let Some(fleet) = value.as_table() else {
                    problems.push(err(origin, name, "must be a table: [fleet]"));
                    continue;
                };
                for (key, v) in fleet {
                    if let Err(e) = self.set(origin, &format!("fleet.{key}"), Some(Value::Toml(v))) {
                        problems.push(e);
                    }
                }
                continue;
            }
            if name.starts_with("fleet.") {
                problems.push(Error::Config(format!(
                    "{origin}: unknown option `{}`",
                    name.escape_debug()
                )));
                continue;
            }
            if let Err(e) = self.set(origin, name, Some(Value::Toml(value))) {
                problems.push(e);
            }
        }
    }

    /// For `pam-totp doctor`: every problem of the configuration file (each bad line or
    /// setting, with the option it is about and what that option expects), and the
    /// configuration its valid settings give, so the other checks can go on. The module
    /// never uses this: [`Config::load`] refuses on the first problem, and every login with it.
    /// `Err` only when the file cannot be used at all (unreadable, unsafe, or a `config=`
    /// that does not exist).
    pub fn load_checked(
        args: &[&str],
        read_file: impl Fn(&Path) -> Result<Option<String>, Error>,
    ) -> Result<(Config, Vec<String>), Error> {
        // Only `config=` is read from the arguments (the command line's --config).
        let explicit = args.iter().find_map(|a| a.strip_prefix("config="));
        if let Some(p) = explicit {
            if p.is_empty() || !p.starts_with('/') {
                return Err(err("module arguments", "config", "must be an absolute path"));
            }
        }
        let path = PathBuf::from(explicit.unwrap_or(DEFAULT_CONFIG_PATH));
        let mut cfg = Config::default();
        let mut problems = Vec::new();
        match read_file(&path)? {
            Some(text) => {
                let (good, found) = check_file_text(&path, &text);
                problems = found;
                if let Ok(table) = toml::from_str::<toml::Table>(&good) {
                    // Each bad setting keeps its default (its problem is in `problems`).
                    cfg.apply_table(&path.display().to_string(), &table, &mut Vec::new());
                }
            }
            None if explicit.is_some() => {
                return Err(Error::Config(format!("config file {} does not exist", path.display())))
            }
            None => {}
        }
        cfg.config_path = path;
        Ok((cfg, problems))
    }

    fn set(&mut self, origin: &str, name: &str, value: Option<Value<'_>>) -> Result<(), Error> {
        let spec = OPTIONS
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| Error::Config(format!("{origin}: unknown option `{}`", name.escape_debug())))?;
        let e = |why: &str| err(origin, name, why);
        match spec.kind {
            Kind::Flag => {
                let on = match value {
                    None => true,
                    Some(Value::Toml(toml::Value::Boolean(b))) => *b,
                    Some(_) => return Err(e("is a flag: write it without a value (or true/false in the file)")),
                };
                match name {
                    "nullok" => self.nullok = on,
                    "enroll_on_login" => self.enroll_on_login = on,
                    "forward_pass" => self.forward_pass = on,
                    _ => self.debug = on,
                }
            }
            Kind::Number => {
                let n: u64 = match value {
                    Some(Value::Text(t)) if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) => {
                        t.parse().map_err(|_| e("number too large"))?
                    }
                    Some(Value::Toml(toml::Value::Integer(i))) if *i >= 0 => *i as u64,
                    _ => return Err(e("needs a non-negative whole number")),
                };
                let (lo, hi) = match name {
                    "window" => (0, MAX_WINDOW),
                    "skew_range" => (0, MAX_SKEW_RANGE),
                    "hotp_window" => (1, MAX_HOTP_WINDOW),
                    "max_failures" => (1, 1_000_000),
                    "lockout" => (1, MAX_LOCKOUT),
                    "digits" => (6, 8),
                    "fleet.timeout_ms" => (10, MAX_FLEET_TIMEOUT_MS),
                    _ => (0, MAX_REMEMBER),
                };
                if !(lo..=hi).contains(&n) {
                    return Err(e(&format!("must be between {lo} and {hi}")));
                }
                match name {
                    "window" => self.window = n,
                    "skew_range" => self.skew_range = n,
                    "hotp_window" => self.hotp_window = n,
                    "max_failures" => self.max_failures = n as u32,
                    "lockout" => self.lockout = n,
                    "digits" if n == 7 => return Err(e("must be 6 or 8")),
                    "digits" => self.digits = n as u32,
                    "fleet.timeout_ms" => self.fleet.timeout_ms = n,
                    _ => self.remember = n,
                }
            }
            Kind::List if name == "fleet.endpoints" => {
                let Some(Value::Toml(toml::Value::Array(items))) = value else {
                    return Err(e("needs a list of URLs, e.g. [\"https://etcd1.example.org:2379\"]"));
                };
                if items.len() > MAX_FLEET_ENDPOINTS {
                    return Err(e(&format!("lists more than {MAX_FLEET_ENDPOINTS} URLs")));
                }
                let mut urls = Vec::with_capacity(items.len());
                for item in items {
                    let url = item.as_str().ok_or_else(|| e("every entry must be a URL in quotes"))?;
                    check_endpoint(url).map_err(|w| e(&w))?;
                    urls.push(url.to_string());
                }
                self.fleet.endpoints = urls;
            }
            Kind::List => {
                let Some(Value::Toml(toml::Value::Array(items))) = value else {
                    return Err(e(match value {
                        Some(Value::Text(_)) | None => {
                            "only valid in pam_totp.conf, as a list: protected_groups = [\"root\", \"sudo\", \"wheel\"]"
                        }
                        Some(_) => "needs a list of group names, e.g. [\"root\", \"sudo\", \"wheel\"]",
                    }));
                };
                if items.len() > MAX_PROTECTED_GROUPS {
                    return Err(e(&format!("lists more than {MAX_PROTECTED_GROUPS} groups")));
                }
                let mut groups = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(g) if valid_group_name(g) => groups.push(g.to_string()),
                        _ => return Err(e("every entry must be a group name (text without spaces, control characters, `:`, `,` or `/`, not starting with `-`)")),
                    }
                }
                self.protected_groups = groups;
            }
            Kind::Path | Kind::Text | Kind::Date => {
                let s = match value {
                    Some(Value::Text(t)) => t,
                    Some(Value::Toml(toml::Value::String(s))) => s.as_str(),
                    _ => return Err(e("needs a value (name=value)")),
                };
                if s.is_empty() || s.chars().any(|c| c.is_control()) {
                    return Err(e("must be non-empty text without control characters"));
                }
                match name {
                    "secret" => {
                        check_template(s).map_err(|w| e(&w))?;
                        self.secret = s.to_string();
                    }
                    "state_dir" => {
                        if !s.starts_with('/') {
                            return Err(e("must be an absolute path"));
                        }
                        self.state_dir = PathBuf::from(s);
                    }
                    "prompt" => self.prompt = s.to_string(),
                    "key_store" => {
                        self.key_store = match s {
                            "vault" => KeyStore::Vault,
                            "home" => KeyStore::Home,
                            _ => return Err(e("must be vault or home")),
                        }
                    }
                    "store" => {
                        self.store = match s {
                            "local" => StoreKind::Local,
                            "fleet" => StoreKind::Fleet,
                            _ => return Err(e("must be local or fleet")),
                        }
                    }
                    "store_unavailable" => {
                        self.store_unavailable = match s {
                            "deny" => Unavailable::Deny,
                            "local" => Unavailable::Local,
                            _ => return Err(e("must be deny or local")),
                        }
                    }
                    "fleet_socket"
                    | "fleet.ca_file"
                    | "fleet.cert_file"
                    | "fleet.key_file"
                    | "fleet.vault_key_file" => {
                        if !s.starts_with('/') {
                            return Err(e("must be an absolute path"));
                        }
                        let p = PathBuf::from(s);
                        match name {
                            "fleet_socket" => self.fleet_socket = p,
                            "fleet.ca_file" => self.fleet.ca_file = Some(p),
                            "fleet.cert_file" => self.fleet.cert_file = Some(p),
                            "fleet.vault_key_file" => self.fleet.vault_key_file = Some(p),
                            _ => self.fleet.key_file = Some(p),
                        }
                    }
                    "fleet.namespace" => {
                        let ok = s.len() <= 64
                            && s != "."
                            && s != ".."
                            && s.bytes()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
                        if !ok {
                            return Err(e("letters, digits, `.`, `_` and `-` only, at most 64"));
                        }
                        self.fleet.namespace = s.to_string();
                    }
                    "issuer" => self.issuer = Some(s.to_string()),
                    "algorithm" => {
                        self.algorithm =
                            crate::otp::Algorithm::parse(s).ok_or_else(|| e("must be SHA1, SHA256 or SHA512"))?
                    }
                    _ => {
                        self.enforce_after = Some(Date::parse(s).ok_or_else(|| e("must be a date YYYY-MM-DD"))?);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A group name `protected_groups` may hold: what `getent group NAME` can be asked about
/// without it being read as an option or a list.
pub fn valid_group_name(g: &str) -> bool {
    crate::account::valid_user_name(g)
        && !g.starts_with('-')
        && !g.chars().any(|c| c.is_whitespace() || c == ':' || c == ',')
}

fn check_template(t: &str) -> Result<(), String> {
    if !(t.starts_with('/') || t.starts_with("%h")) {
        return Err("must be an absolute path or start with %h".into());
    }
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('u' | 'h' | '%') => {}
                _ => return Err("only %u, %h and %% may follow a %".into()),
            }
        }
    }
    if t.ends_with('/') {
        return Err("must name a file, not a directory".into());
    }
    Ok(())
}

/// Expands a secret path template for a user. The user name must already have passed
/// [`crate::account::valid_user_name`] (no `/`, no `..`, no control characters).
pub fn expand_template(t: &str, user: &str, home: &Path) -> PathBuf {
    let mut out = String::new();
    let mut chars = t.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('u') => out.push_str(user),
                Some('h') => out.push_str(&home.to_string_lossy()),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    PathBuf::from(out)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

#[cfg(test)]
mod readme_tests {
    /// The options table (docs/options.md) lists exactly the options of [`super::OPTIONS`], with their
    /// descriptions, so the documentation cannot drift from the parser.
    #[test]
    fn readme_lists_every_option_with_its_description() {
        let readme = include_str!("../../docs/options.md");
        let rows: Vec<&str> = readme
            .lines()
            .filter(|l| l.starts_with("| `") && l.matches(" | ").count() == 2)
            .collect();
        for o in super::OPTIONS {
            let row = rows
                .iter()
                .find(|r| r.starts_with(&format!("| `{}", o.name)) && r.contains(o.doc))
                .unwrap_or_else(|| {
                    panic!(
                        "docs/options.md has no row for option `{}` with its current description",
                        o.name
                    )
                });
            assert!(row.contains(o.name));
        }
        let documented = rows.iter().filter(|r| r.ends_with(" |") && r.contains("` | `")).count();
        assert_eq!(documented, super::OPTIONS.len(), "docs/options.md: extra rows");
    }
}
