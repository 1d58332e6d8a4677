//! Secret file format v1: types, parse, serialize, version check. See FILEFORMAT.md.
//!
//! Owns: what a valid secret file is. Never reports file contents in an error (a TOML
//! error message would quote the offending line, which may hold the secret).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::otp::{decode_base32, Algorithm, Params};

/// Keys shorter than 80 bits are refused (google-authenticator's old 16-character secrets
/// are 80 bits and must still import); longer than 1024 bits is not a TOTP key.
pub const MIN_KEY_BYTES: usize = 10;
pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_BACKUP_CODES: usize = 100;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretFile {
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

fn default_alg() -> String {
    "SHA1".into()
}
fn default_digits() -> i64 {
    6
}
fn default_period() -> i64 {
    30
}

/// A validated secret file.
pub struct SecretFile {
    /// The raw HMAC key (decoded from base32).
    pub key: Zeroizing<Vec<u8>>,
    pub params: Params,
    pub issuer: String,
    pub label: String,
    /// Unix seconds when enrolled.
    pub created: u64,
    /// `v1$salt$hash` strings (see backup.rs).
    pub backup_codes: Vec<String>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("key", &"<redacted>")
            .field("params", &self.params)
            .field("issuer", &self.issuer)
            .field("label", &self.label)
            .field("created", &self.created)
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

/// Describes a TOML error by position only.
pub(crate) fn toml_error_position(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("invalid TOML or unexpected field near line {line}")
        }
        None => "invalid TOML or missing field".to_string(),
    }
}

impl SecretFile {
    pub fn parse(text: &str) -> Result<SecretFile, ParseError> {
        let raw: RawSecretFile =
            toml::from_str(text).map_err(|e| ParseError::Malformed(toml_error_position(text, &e)))?;
        if raw.version != 1 {
            return Err(ParseError::UnsupportedVersion(raw.version));
        }
        let key =
            decode_base32(&raw.secret).ok_or_else(|| ParseError::Malformed("secret is not valid base32".into()))?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(ParseError::Malformed(format!(
                "secret is {} bits; it must be between {} and {} bits",
                key.len() * 8,
                MIN_KEY_BYTES * 8,
                MAX_KEY_BYTES * 8
            )));
        }
        let alg = Algorithm::parse(&raw.algorithm)
            .ok_or_else(|| ParseError::Malformed("algorithm must be SHA1, SHA256 or SHA512".into()))?;
        let digits = u32::try_from(raw.digits).ok();
        let period = u64::try_from(raw.period).ok();
        let params = match (digits, period) {
            (Some(d), Some(p)) => Params::new(alg, d, p),
            _ => None,
        }
        .ok_or_else(|| ParseError::Malformed("digits must be 6 or 8 and period 15..300".into()))?;
        if raw.backup_codes.len() > MAX_BACKUP_CODES {
            return Err(ParseError::Malformed("too many backup codes".into()));
        }
        if !raw.backup_codes.iter().all(|h| crate::backup::is_valid_hash(h)) {
            return Err(ParseError::Malformed(
                "a backup code entry is not a v1$salt$hash string".into(),
            ));
        }
        Ok(SecretFile {
            key,
            params,
            issuer: raw.issuer,
            label: raw.label,
            created: u64::try_from(raw.created).unwrap_or(0),
            backup_codes: raw.backup_codes,
        })
    }

    /// Serializes as version 1. The result holds the secret: callers keep it zeroized.
    pub fn to_toml(&self) -> Zeroizing<String> {
        let raw = RawSecretFile {
            version: 1,
            secret: crate::otp::encode_base32(&self.key),
            algorithm: self.params.algorithm().name().to_string(),
            digits: i64::from(self.params.digits()),
            period: self.params.period() as i64,
            issuer: self.issuer.clone(),
            label: self.label.clone(),
            created: self.created as i64,
            backup_codes: self.backup_codes.clone(),
        };
        let body = toml::to_string(&raw).unwrap_or_default();
        Zeroizing::new(format!(
            "# pam_totp secret file. Keep it private (mode 0600). See pam-totp(1).\n{body}"
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
    fn parses_a_good_file_and_round_trips() {
        let s = SecretFile::parse(GOOD).unwrap();
        assert_eq!(s.key.as_slice(), b"12345678901234567890");
        assert_eq!(s.params, Params::DEFAULT);
        assert_eq!(s.label, "bob@host");
        let again = SecretFile::parse(&s.to_toml()).unwrap();
        assert_eq!(again.key.as_slice(), s.key.as_slice());
        assert_eq!(again.created, 1700000000);
        assert!(!format!("{s:?}").contains("GEZD"), "Debug must not print the secret");
    }

    #[test]
    fn minimal_file_uses_defaults() {
        let s = SecretFile::parse("version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\n").unwrap();
        assert_eq!(s.key.len(), 10, "80-bit keys are accepted");
        assert_eq!(s.params, Params::DEFAULT);
    }

    #[test]
    fn each_bad_file_is_refused_without_quoting_it() {
        let cases = [
            ("", "line"),
            ("version = 2\nsecret = \"GEZDGNBVGY3TQOJQ\"", "Version(2)"),
            ("version = 1\nsecret = \"GEZDGNBV\"", "bits"),
            ("version = 1\nsecret = \"GEZDGNBVGY3TQOJ1\"", "base32"),
            ("version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\ndigits = 7", "digits"),
            (
                "version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\ndigits = 99999999999999",
                "digits",
            ),
            ("version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\nperiod = -30", "period"),
            (
                "version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\nalgorithm = \"MD5\"",
                "algorithm",
            ),
            ("version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\nbogus = 1", "line 3"),
            (
                "version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\nbackup_codes = [\"x\"]",
                "backup",
            ),
            ("version = 1\nsecret = \"GEZDGNBVGY3TQOJQ", "line"),
            ("version = 1\nsecret = 12", "line 2"),
            ("\u{0}\u{0}", "line"),
        ];
        for (text, want) in cases {
            let e = SecretFile::parse(text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text:?}"));
            let msg = format!("{e:?}");
            assert!(msg.contains(want), "{text:?} -> {msg}");
            assert!(!msg.contains("GEZD"), "error quotes the secret: {msg}");
        }
    }
}
