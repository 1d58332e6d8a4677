//! Reading google-authenticator-libpam's `~/.google_authenticator` file (its FILEFORMAT):
//! line 1 the base32 secret, then `" KEY value` option lines (TOTP_AUTH or HOTP_COUNTER,
//! STEP_SIZE, WINDOW_SIZE, DISALLOW_REUSE, RATE_LIMIT, TIME_SKEW), then 8-digit scratch codes.
//!
//! Never: reports file contents in an error (the first line is the secret).

use zeroize::Zeroizing;

use crate::files::secret::{MAX_KEY_BYTES, MIN_KEY_BYTES};
use crate::otp::decode_base32;

#[derive(Debug)]
pub struct GoogleAuthenticatorFile {
    pub key: Zeroizing<Vec<u8>>,
    /// TOTP (`TOTP_AUTH`) or HOTP (`HOTP_COUNTER n`).
    pub kind: crate::files::secret::Kind,
    /// HOTP: the next counter google-authenticator would accept (its `HOTP_COUNTER`).
    pub counter: u64,
    pub period: u64,
    /// WINDOW_SIZE as google-authenticator counts it (codes in total, default 3).
    pub window_size: Option<u64>,
    pub scratch_codes: Vec<Zeroizing<String>>,
    /// Options we read but that have no per-user equivalent (for a note to the admin).
    pub ignored: Vec<String>,
}

/// Why a google-authenticator file was refused: a line number and a reason, never its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleFileError(pub String);

impl std::fmt::Display for GoogleFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GoogleFileError {}

impl std::ops::Deref for GoogleFileError {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<GoogleFileError> for String {
    fn from(e: GoogleFileError) -> String {
        e.0
    }
}

pub fn parse_google_authenticator(text: &str) -> Result<GoogleAuthenticatorFile, GoogleFileError> {
    parse(text).map_err(GoogleFileError)
}

fn parse(text: &str) -> Result<GoogleAuthenticatorFile, String> {
    let mut lines = text.lines();
    let first = lines.next().ok_or("the file is empty")?;
    let key = decode_base32(first.trim()).ok_or("line 1 is not a base32 secret")?;
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
        return Err(format!(
            "the secret is {} bits; at least {} are needed",
            key.len() * 8,
            MIN_KEY_BYTES * 8
        ));
    }
    let mut f = GoogleAuthenticatorFile {
        key,
        kind: crate::files::secret::Kind::Totp,
        counter: 0,
        period: 30,
        window_size: None,
        scratch_codes: vec![],
        ignored: vec![],
    };
    let mut totp = false;
    let mut hotp = false;
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line.trim_end();
        if let Some(opt) = line.strip_prefix("\" ") {
            let mut words = opt.split_whitespace();
            let name = words.next().unwrap_or("");
            let num = |w: Option<&str>| -> Result<u64, String> {
                w.and_then(|v| v.parse().ok())
                    .ok_or(format!("line {n}: {name} needs a number"))
            };
            match name {
                "TOTP_AUTH" => totp = true,
                "HOTP_COUNTER" => {
                    hotp = true;
                    f.counter = num(words.next())?;
                }
                "STEP_SIZE" => {
                    let s = num(words.next())?;
                    if !(15..=300).contains(&s) {
                        return Err(format!("line {n}: STEP_SIZE {s} is outside 15..300"));
                    }
                    f.period = s;
                }
                "WINDOW_SIZE" => f.window_size = Some(num(words.next())?),
                "DISALLOW_REUSE" | "RATE_LIMIT" | "TIME_SKEW" => f.ignored.push(name.to_string()),
                other => f.ignored.push(other.escape_debug().to_string()),
            }
        } else if line.is_empty() {
            continue;
        } else if line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()) {
            f.scratch_codes.push(Zeroizing::new(line.to_string()));
        } else {
            return Err(format!("line {n} is neither an option nor an 8-digit scratch code"));
        }
    }
    match (totp, hotp) {
        (true, false) => {}
        (false, true) => f.kind = crate::files::secret::Kind::Hotp,
        (true, true) => return Err("the file has both TOTP_AUTH and HOTP_COUNTER lines".into()),
        (false, false) => return Err("the file has neither a TOTP_AUTH nor an HOTP_COUNTER line".into()),
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_file() {
        let f = parse_google_authenticator(
            "GEZDGNBVGY3TQOJQ\n\" RATE_LIMIT 3 30 1700000000\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE 56666666\n\" TOTP_AUTH\n12345678\n87654321\n",
        )
        .unwrap();
        assert_eq!(f.key.as_slice(), b"1234567890", "80-bit secrets import");
        assert_eq!(f.window_size, Some(17));
        assert_eq!(f.scratch_codes.len(), 2);
        assert_eq!(f.period, 30);
    }

    #[test]
    fn reads_a_counter_based_file_with_its_counter() {
        let f =
            parse_google_authenticator("GEZDGNBVGY3TQOJQ\n\" HOTP_COUNTER 7\n\" WINDOW_SIZE 3\n12345678\n").unwrap();
        assert_eq!(f.kind, crate::files::secret::Kind::Hotp);
        assert_eq!(f.counter, 7);
        assert_eq!(f.scratch_codes.len(), 1);
    }

    #[test]
    fn refuses_garbage_without_quoting_the_secret() {
        for (text, want) in [
            ("GEZDGNBVGY3TQOJQ\n12345678\n", "TOTP_AUTH"),
            ("GEZDGNBVGY3TQOJQ\n\" HOTP_COUNTER x\n", "HOTP_COUNTER"),
            ("GEZDGNBVGY3TQOJQ\n\" HOTP_COUNTER 1\n\" TOTP_AUTH\n", "both"),
            ("", "empty"),
            ("not base32!\n\" TOTP_AUTH\n", "base32"),
            ("GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\nGEZDGNBV\n", "line 3"),
            ("GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n\" STEP_SIZE x\n", "STEP_SIZE"),
            ("GEZDGNBV\n\" TOTP_AUTH\n", "bits"),
        ] {
            let e = parse_google_authenticator(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("GEZD"), "{e}");
        }
    }
}
