//! Secret file format v2 (and v1, read and upgraded): types, parse, serialize. See
//! FILEFORMAT.md.
//!
//! Owns: what a valid secret file is — one or more named authenticators (TOTP or HOTP, each
//! with its own key and parameters) and the user's backup codes. Never reports file
//! contents in an error (a TOML error message would quote the offending line, which may
//! hold the secret).

use crate::text::toml_error_position;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::otp::{decode_base32, Algorithm, Params};

/// Keys shorter than 80 bits are refused (google-authenticator's old 16-character secrets
/// are 80 bits and must still import); longer than 1024 bits is not a TOTP key.
pub const MIN_KEY_BYTES: usize = 10;
pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_BACKUP_CODES: usize = 100;
/// Authenticators one user may have.
pub const MAX_DEVICES: usize = 16;
/// Longest authenticator name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The name a version-1 file's single authenticator gets.
pub const V1_DEVICE_NAME: &str = "authenticator";
pub const VERSION: i64 = 2;
/// Highest HOTP counter a file may hold (2^62): far beyond any token's life, and with room
/// for the window above it, so the state's counter always fits a TOML integer.
pub const MAX_COUNTER: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RFC 6238: the code follows the clock.
    Totp,
    /// RFC 4226: the code follows a counter the device advances at each press.
    Hotp,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Totp => "totp",
            Kind::Hotp => "hotp",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "totp" => Some(Kind::Totp),
            "hotp" => Some(Kind::Hotp),
            _ => None,
        }
    }
}

/// One authenticator: a phone app entry, a spare phone, a hardware token.
#[derive(Clone)]
pub struct Device {
    pub name: String,
    pub kind: Kind,
    /// The raw HMAC key (decoded from base32).
    pub key: Zeroizing<Vec<u8>>,
    /// Algorithm and digits; the period matters for TOTP only (30 for HOTP).
    pub params: Params,
    /// HOTP: the counter the device starts from (as enrolled or imported). The counter that
    /// may still be accepted lives in the root-only state, which never goes back.
    pub counter: u64,
    pub issuer: String,
    pub label: String,
    /// Unix seconds when added.
    pub created: u64,
}

impl Device {
    /// What the replay guard of this authenticator is keyed by: the key HMAC really uses
    /// ([`crate::otp::effective_key`]), so two entries whose keys give the same codes (a key
    /// and the same key followed by zero bytes) share one guard.
    pub fn guard_key(&self) -> Zeroizing<Vec<u8>> {
        crate::otp::effective_key(self.params.algorithm(), &self.key)
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("key", &"<redacted>")
            .field("params", &self.params)
            .field("counter", &self.counter)
            .field("created", &self.created)
            .finish()
    }
}

/// The `version = N` of a file by a line scan: the first line, before any table header,
/// that is exactly `version = <digits>` (spaces and a trailing comment allowed). `None`
/// when the scan is not sure (the full parser decides then). Whatever it returns, the
/// typed parse that follows must read the same version.
fn quick_version(text: &str) -> Option<i64> {
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') || l.contains("\"\"\"") || l.contains("'''") {
            return None;
        }
        let Some(rest) = l.strip_prefix("version") else {
            continue;
        };
        let rest = rest.trim_start().strip_prefix('=')?.trim_start();
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let tail = rest[end..].trim_start();
        if end == 0 || end > 9 || !(tail.is_empty() || tail.starts_with('#')) {
            return None;
        }
        return rest[..end].parse().ok();
    }
    None
}

/// A validated secret file.
#[derive(Clone)]
pub struct SecretFile {
    /// At least one, at most [`MAX_DEVICES`], names unique (ignoring case).
    pub devices: Vec<Device>,
    /// `v1$salt$hash` strings (see backup.rs).
    pub backup_codes: Vec<String>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("devices", &self.devices)
            .field("backup_codes", &self.backup_codes.len())
            .finish()
    }
}

/// Why a secret file was refused. Never contains file content.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Malformed(String),
    UnsupportedVersion(i64),
}

#[derive(Deserialize)]
struct VersionOnly {
    version: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawV1 {
    version: i64,
    secret: Zeroizing<String>,
    #[serde(default = "default_alg")]
    algorithm: String,
    #[serde(default = "default_digits")]
    digits: i64,
    #[serde(default = "default_period")]
    period: i64,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    backup_codes: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawV2 {
    version: i64,
    #[serde(default)]
    backup_codes: Vec<String>,
    #[serde(default, rename = "device")]
    devices: Vec<RawDevice>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    #[serde(rename = "type", default = "default_type")]
    kind: String,
    secret: Zeroizing<String>,
    #[serde(default = "default_alg")]
    algorithm: String,
    #[serde(default = "default_digits")]
    digits: i64,
    #[serde(default = "default_period")]
    period: i64,
    #[serde(default)]
    counter: i64,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    created: i64,
}

fn default_type() -> String {
    "totp".into()
}
fn default_alg() -> String {
    "SHA1".into()
}
fn default_digits() -> i64 {
    6
}
fn default_period() -> i64 {
    30
}

/// Whether `name` can name an authenticator: 1 to 64 characters after trimming, no control
/// characters (it appears in log lines and on terminals).
pub fn valid_device_name(name: &str) -> bool {
    let n = name.trim();
    !n.is_empty() && n == name && n.chars().count() <= MAX_NAME_CHARS && !n.chars().any(char::is_control)
}

fn device_from_raw(raw: &RawDevice, what: &str) -> Result<Device, ParseError> {
    let bad = |why: String| ParseError::Malformed(format!("{what}: {why}"));
    if !valid_device_name(&raw.name) {
        return Err(bad(
            "the name must be 1 to 64 characters without control characters or surrounding spaces".into(),
        ));
    }
    let kind = Kind::parse(&raw.kind).ok_or_else(|| bad("type must be \"totp\" or \"hotp\"".into()))?;
    let key = decode_base32(&raw.secret).ok_or_else(|| bad("secret is not valid base32".into()))?;
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
        return Err(bad(format!(
            "secret is {} bits; it must be between {} and {} bits",
            key.len() * 8,
            MIN_KEY_BYTES * 8,
            MAX_KEY_BYTES * 8
        )));
    }
    let alg = Algorithm::parse(&raw.algorithm).ok_or_else(|| bad("algorithm must be SHA1, SHA256 or SHA512".into()))?;
    let digits = u32::try_from(raw.digits).ok();
    let period = u64::try_from(raw.period).ok();
    let params = match (digits, period) {
        (Some(d), Some(p)) => Params::new(alg, d, p),
        _ => None,
    }
    .ok_or_else(|| bad("digits must be 6 or 8 and period 15..300".into()))?;
    let counter = u64::try_from(raw.counter)
        .ok()
        .filter(|c| *c <= MAX_COUNTER)
        .ok_or_else(|| bad(format!("counter must be between 0 and {MAX_COUNTER}")))?;
    Ok(Device {
        name: raw.name.clone(),
        kind,
        key,
        params,
        counter,
        issuer: raw.issuer.clone(),
        label: raw.label.clone(),
        created: u64::try_from(raw.created).unwrap_or(0),
    })
}

fn check_backup_codes(codes: &[String]) -> Result<(), ParseError> {
    if codes.len() > MAX_BACKUP_CODES {
        return Err(ParseError::Malformed("too many backup codes".into()));
    }
    if !codes.iter().all(|h| crate::otp::backup::is_valid_hash(h)) {
        return Err(ParseError::Malformed(
            "a backup code entry is not a v1$salt$hash string".into(),
        ));
    }
    Ok(())
}

impl SecretFile {
    /// Parses a version-2 file, or a version-1 file as one TOTP authenticator named
    /// [`V1_DEVICE_NAME`].
    pub fn parse(text: &str) -> Result<SecretFile, ParseError> {
        // Every login parses this file: the version is found by a line scan when it can be
        // (one parse instead of two); the typed parse then confirms it, and anything the
        // scan is unsure of goes through the full table parse first.
        let version = match quick_version(text) {
            Some(v @ (1 | VERSION)) => v,
            _ => {
                let table: toml::Table =
                    toml::from_str(text).map_err(|e| ParseError::Malformed(toml_error_position(text, &e)))?;
                let v = table
                    .get("version")
                    .and_then(toml::Value::as_integer)
                    .map(|version| VersionOnly { version })
                    .ok_or_else(|| ParseError::Malformed("missing or invalid version".into()))?;
                v.version
            }
        };
        let confirm = |found: i64| {
            if found == version {
                Ok(())
            } else {
                Err(ParseError::Malformed("the version line is ambiguous".into()))
            }
        };
        match version {
            1 => {
                let raw: RawV1 =
                    toml::from_str(text).map_err(|e| ParseError::Malformed(toml_error_position(text, &e)))?;
                confirm(raw.version)?;
                check_backup_codes(&raw.backup_codes)?;
                let device = device_from_raw(
                    &RawDevice {
                        name: V1_DEVICE_NAME.into(),
                        kind: "totp".into(),
                        secret: raw.secret,
                        algorithm: raw.algorithm,
                        digits: raw.digits,
                        period: raw.period,
                        counter: 0,
                        issuer: raw.issuer,
                        label: raw.label,
                        created: raw.created,
                    },
                    "secret",
                )
                .map_err(|e| match e {
                    // A v1 file's messages read as before ("secret is not valid base32").
                    ParseError::Malformed(m) => ParseError::Malformed(m.trim_start_matches("secret: ").to_string()),
                    other => other,
                })?;
                Ok(SecretFile {
                    devices: vec![device],
                    backup_codes: raw.backup_codes,
                })
            }
            VERSION => {
                let raw: RawV2 =
                    toml::from_str(text).map_err(|e| ParseError::Malformed(toml_error_position(text, &e)))?;
                confirm(raw.version)?;
                check_backup_codes(&raw.backup_codes)?;
                if raw.devices.is_empty() {
                    return Err(ParseError::Malformed("no [[device]] entry".into()));
                }
                if raw.devices.len() > MAX_DEVICES {
                    return Err(ParseError::Malformed(format!("more than {MAX_DEVICES} authenticators")));
                }
                let mut devices = Vec::with_capacity(raw.devices.len());
                for (i, d) in raw.devices.iter().enumerate() {
                    devices.push(device_from_raw(d, &format!("authenticator {}", i + 1))?);
                }
                let file = SecretFile {
                    devices,
                    backup_codes: raw.backup_codes,
                };
                if let Some(dup) = file.duplicate_name() {
                    return Err(ParseError::Malformed(format!(
                        "two authenticators are named {:?}",
                        crate::text::terminal_safe(&dup)
                    )));
                }
                Ok(file)
            }
            other => Err(ParseError::UnsupportedVersion(other)),
        }
    }

    fn duplicate_name(&self) -> Option<String> {
        for (i, d) in self.devices.iter().enumerate() {
            if self.devices[..i].iter().any(|e| e.name.eq_ignore_ascii_case(&d.name)) {
                return Some(d.name.clone());
            }
        }
        None
    }

    /// The authenticator named `name` (ignoring case).
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name.eq_ignore_ascii_case(name))
    }

    pub fn device_index(&self, name: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.name.eq_ignore_ascii_case(name))
    }

    /// The digit counts of the authenticators (6, 8 or both), for splitting answers.
    pub fn digit_counts(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.devices.iter().map(|d| d.params.digits() as usize).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Serializes as version 2. The result holds the secrets: callers keep it zeroized.
    pub fn to_toml(&self) -> Zeroizing<String> {
        let raw = RawV2 {
            version: VERSION,
            backup_codes: self.backup_codes.clone(),
            devices: self
                .devices
                .iter()
                .map(|d| RawDevice {
                    name: d.name.clone(),
                    kind: d.kind.name().into(),
                    secret: crate::otp::encode_base32(&d.key),
                    algorithm: d.params.algorithm().name().to_string(),
                    digits: i64::from(d.params.digits()),
                    period: d.params.period() as i64,
                    counter: i64::try_from(d.counter).unwrap_or(i64::MAX),
                    issuer: d.issuer.clone(),
                    label: d.label.clone(),
                    created: i64::try_from(d.created).unwrap_or(0),
                })
                .collect(),
        };
        let body = Zeroizing::new(toml::to_string(&raw).unwrap_or_default());
        Zeroizing::new(format!(
            "# pam_totp secret file. Keep it private (mode 0600). See pam-totp(1).\n{}",
            body.as_str()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
algorithm = "SHA1"
digits = 6
period = 30
issuer = "host"
label = "bob@host"
created = 1700000000
backup_codes = []
"#;

    #[test]
    fn a_version_1_file_is_one_authenticator_and_writes_as_version_2() {
        let s = SecretFile::parse(GOOD).unwrap();
        assert_eq!(s.devices.len(), 1);
        let d = &s.devices[0];
        assert_eq!(d.name, V1_DEVICE_NAME);
        assert_eq!(d.kind, Kind::Totp);
        assert_eq!(d.key.as_slice(), b"12345678901234567890");
        assert_eq!(d.params, Params::DEFAULT);
        assert_eq!(d.label, "bob@host");
        let text = s.to_toml();
        assert!(text.contains("version = 2"));
        let again = SecretFile::parse(&text).unwrap();
        assert_eq!(again.devices[0].key.as_slice(), d.key.as_slice());
        assert_eq!(again.devices[0].created, 1700000000);
        assert!(!format!("{s:?}").contains("GEZD"), "Debug must not print the secret");
    }

    #[test]
    fn a_version_2_file_holds_several_named_totp_and_hotp_authenticators() {
        let text = r#"
version = 2
backup_codes = []

[[device]]
name = "phone"
secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

[[device]]
name = "YubiKey, desk"
type = "hotp"
secret = "JBSWY3DPEHPK3PXP"
digits = 8
counter = 42
"#;
        let s = SecretFile::parse(text).unwrap();
        assert_eq!(s.devices.len(), 2);
        assert_eq!(s.devices[1].kind, Kind::Hotp);
        assert_eq!(s.devices[1].counter, 42);
        assert_eq!(s.digit_counts(), vec![6, 8]);
        assert!(s.device("yubikey, DESK").is_some());
        let again = SecretFile::parse(&s.to_toml()).unwrap();
        assert_eq!(again.devices[1].name, "YubiKey, desk");
        assert_eq!(again.devices[1].counter, 42);
    }

    #[test]
    fn minimal_file_uses_defaults() {
        let s = SecretFile::parse("version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\n").unwrap();
        assert_eq!(s.devices[0].key.len(), 10, "80-bit keys are accepted");
        assert_eq!(s.devices[0].params, Params::DEFAULT);
    }

    #[test]
    fn each_bad_file_is_refused_without_quoting_it() {
        let dev =
            |extra: &str| format!("version = 2\n[[device]]\nname = \"a\"\nsecret = \"GEZDGNBVGY3TQOJQ\"\n{extra}");
        let cases = [
            ("".to_string(), "version"),
            ("version = 3\nsecret = \"GEZDGNBVGY3TQOJQ\"".into(), "Version(3)"),
            ("version = 1\nsecret = \"GEZDGNBV\"".into(), "bits"),
            ("version = 1\nsecret = \"GEZDGNBVGY3TQOJ1\"".into(), "base32"),
            (
                "version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\ndigits = 7".into(),
                "digits",
            ),
            (
                "version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\ndigits = 99999999999999".into(),
                "digits",
            ),
            (
                "version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\nperiod = -30".into(),
                "period",
            ),
            (
                "version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\nalgorithm = \"MD5\"".into(),
                "algorithm",
            ),
            ("version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\nbogus = 1".into(), "line 3"),
            (
                "version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\nbackup_codes = [\"x\"]".into(),
                "backup",
            ),
            ("version = 1\nsecret = \"GEZDGNBVGY3TQOJQ".into(), "line"),
            ("version = 1\nsecret = 12".into(), "line 2"),
            ("\u{0}\u{0}".into(), "line"),
            ("version = 2\n".into(), "no [[device]]"),
            (dev("type = \"motp\""), "type"),
            (dev("counter = -1"), "counter"),
            (dev("counter = 9223372036854775807"), "counter"),
            (dev("secret2 = 1"), "line"),
            (
                "version = 2\n[[device]]\nname = \" a\"\nsecret = \"GEZDGNBVGY3TQOJQ\"".into(),
                "name",
            ),
            (
                "version = 2\n[[device]]\nname = \"a\\u001b[2J\"\nsecret = \"GEZDGNBVGY3TQOJQ\"".into(),
                "name",
            ),
            (
                format!("{}[[device]]\nname = \"A\"\nsecret = \"GEZDGNBVGY3TQOJQ\"\n", dev("")),
                "two authenticators",
            ),
        ];
        for (text, want) in cases {
            let e = SecretFile::parse(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text:?}"));
            let msg = format!("{e:?}");
            assert!(msg.contains(want), "{text:?} -> {msg}");
            assert!(!msg.contains("GEZD"), "error quotes the secret: {msg}");
        }
    }

    #[test]
    fn at_most_sixteen_authenticators() {
        let mut text = String::from("version = 2\n");
        for i in 0..17 {
            text.push_str(&format!("[[device]]\nname = \"d{i}\"\nsecret = \"GEZDGNBVGY3TQOJQ\"\n"));
        }
        assert!(SecretFile::parse(&text).is_err());
    }

    #[test]
    fn the_version_scan_is_sure_or_silent_and_the_typed_parse_confirms_it() {
        assert_eq!(quick_version("# c\nversion = 2\n[[device]]\n"), Some(2));
        assert_eq!(quick_version("  version=1 # old\nsecret = \"x\""), Some(1));
        for unsure in [
            "versions = 2\n",
            "version = \"2\"\n",
            "version = 2x\n",
            "[t]\nversion = 2\n",
            "label = \"\"\"\nversion = 1\n\"\"\"\nversion = 2\n",
            "",
        ] {
            assert_eq!(quick_version(unsure), None, "{unsure:?}");
        }
        // A file whose scan and typed parse could disagree is read by the full parser or
        // refused, never read as the other version.
        let v2 = "version = 2\n[[device]]\nname = \"a\"\nsecret = \"GEZDGNBVGY3TQOJQ\"\n";
        assert!(SecretFile::parse(v2).is_ok());
        let tricky = format!("label2 = '''\nversion = 1\n'''\n{v2}");
        assert!(SecretFile::parse(&tricky).is_err());
    }
}
