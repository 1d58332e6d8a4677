//! Importing OATH hardware tokens: the seed files a token vendor ships, as CSV or as an
//! RFC 6030 PSKC (Portable Symmetric Key Container) XML document, read into
//! [`TokenRecord`]s for `pam-totp` to write into users' secret files.
//!
//! Owns: both formats, the AES-128-CBC decryption and MAC check of RFC 6030 §6.1 (pre-shared
//! key), and the rules a record must pass (user and device name, key length, digits, period).
//!
//! Never: reads a file (callers pass text); puts key material, or a field that could be one,
//! into a [`TokenError`] or into `Debug` output; loads a DTD or expands an entity (a PSKC
//! with a DOCTYPE is refused); accepts more than [`MAX_INPUT_BYTES`] or [`MAX_RECORDS`].
//!
//! PSKC support, precisely: a `KeyContainer` (namespace `urn:ietf:params:xml:ns:keyprov:pskc`,
//! `Version` 1.0) whose `KeyPackage`s each hold one HOTP or TOTP `Key`. Elements are matched
//! by namespace and local name, whatever prefix a vendor gives them (PSKC's own in the PSKC
//! namespace, `CipherData` ... in xmlenc's, `KeyName` in xmldsig's); an element with one of
//! the names read but in another namespace, or twice where one is read, refuses the file
//! rather than being skipped or picked, so a value hidden next to the real one is never
//! imported; unknown elements are ignored. Elements may nest at most [`MAX_DEPTH`](pskc::MAX_DEPTH) deep,
//! have at most [`MAX_ATTRIBUTES`](pskc::MAX_ATTRIBUTES) attributes each and [`MAX_NAMESPACES_IN_SCOPE`](pskc::MAX_NAMESPACES_IN_SCOPE) namespace
//! declarations in scope (checked before parsing: the parser recurses, and its time grows
//! with the square of the other two). Secrets are `PlainValue` (base64) or `EncryptedValue`
//! with `http://www.w3.org/2001/04/xmlenc#aes128-cbc` under a pre-shared key (IV ||
//! ciphertext, PKCS#7 padding). A `ValueMAC` is checked (HMAC over IV || ciphertext with the key in
//! `MACMethod/MACKey`, itself AES-128-CBC under the pre-shared key; without a `MACKey`, the
//! pre-shared key, as earlier PSKC drafts did) and a mismatch refuses the file; with a
//! `MACMethod`, every `EncryptedValue` needs its `ValueMAC`. The MAC covers each encrypted
//! key only: not `UserId`, `SerialNo` or any parameter, so a file whose `UserId` was changed
//! still checks ([`TokenRecord::mac_checked`]; callers say so). A `Secret` holding both a
//! `PlainValue` and an `EncryptedValue`, and any `PlainValue` secret when a pre-shared key
//! is given (the administrator expects an encrypted file), are refused. Not supported,
//! each with its own message: PBKDF2 (passphrase) and certificate (asymmetric) encryption,
//! other ciphers, encrypted `Counter`/`TimeInterval`, `Time` (T0) other than 0, non-decimal
//! or check-digit responses, PINs typed with the code, and keys whose `Policy` excludes OTP.

use std::collections::HashMap;
use std::fmt;

use zeroize::Zeroizing;

use crate::account::valid_user_name;
use crate::files::secret::{valid_device_name, MAX_COUNTER, MAX_KEY_BYTES, MAX_NAME_CHARS, MIN_KEY_BYTES};
use crate::otp::{decode_base32, Algorithm};
use crate::text::terminal_safe;

mod csv;
mod pskc;

pub use csv::parse_csv;
pub use pskc::parse_pskc;

/// Largest token file read (either format).
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Most records (CSV rows, PSKC `KeyPackage`s) in one file.
pub const MAX_RECORDS: usize = 10_000;
/// The one CSV header (names compared case-insensitively, order fixed).
pub const CSV_HEADER: &str = "user,name,type,secret,algorithm,digits,period,counter";

/// The pre-shared key length: AES-128.
pub const PSK_BYTES: usize = 16;
const WHOLE_FILE: &str = "the file";

/// Counter-based (RFC 4226) or time-based (RFC 6238).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Totp,
    Hotp,
}

impl TokenKind {
    pub fn name(self) -> &'static str {
        match self {
            TokenKind::Totp => "totp",
            TokenKind::Hotp => "hotp",
        }
    }
}

/// One token read from a vendor file. Every field has passed the checks of this module.
pub struct TokenRecord {
    /// The account, as the file gives it (CSV `user`; PSKC `Key/UserId`, else
    /// `DeviceInfo/UserId`). Passed [`valid_user_name`]; not resolved against the system.
    pub user: String,
    /// The device: CSV `name`; PSKC `"token " + DeviceInfo/SerialNo` (what is printed on the
    /// fob), or `"token " + Key/@Id` when the package has no serial number.
    /// Passed [`valid_device_name`]; unique per user in the file, ignoring case.
    pub name: String,
    pub kind: TokenKind,
    /// [`MIN_KEY_BYTES`]..=[`MAX_KEY_BYTES`] bytes.
    pub key: Zeroizing<Vec<u8>>,
    pub algorithm: Algorithm,
    /// 6 or 8.
    pub digits: u32,
    /// TOTP time step in seconds, 15..=300 (always 30 in HOTP records, where it means nothing).
    pub period: u64,
    /// HOTP start counter (always 0 in TOTP records).
    pub counter: u64,
    /// Where in the file the record came from, for messages: `line 4`,
    /// `KeyPackage 2 (Id 987654)`.
    pub entry: String,
    /// The key's PSKC `ValueMAC` was checked. It covers the encrypted key only (IV ||
    /// ciphertext), never the user, the device name or any other field of the record: a
    /// file whose `UserId` was changed still checks.
    pub mac_checked: bool,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("user", &self.user)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("key", &format_args!("<{} bytes, not shown>", self.key.len()))
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("counter", &self.counter)
            .field("entry", &self.entry)
            .field("mac_checked", &self.mac_checked)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    Csv,
    Pskc,
}

/// Why a token file was refused. `entry` says where (`line 4`, `KeyPackage 2 (Id 987654)`,
/// `the file`), `why` what; neither ever holds key material or the text of a field that
/// could be a secret, and both are safe to print on a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub entry: String,
    pub why: String,
}

impl TokenError {
    fn new(entry: impl Into<String>, why: impl Into<String>) -> Self {
        TokenError {
            entry: entry.into(),
            why: why.into(),
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.entry, self.why)
    }
}

impl std::error::Error for TokenError {}

/// PSKC when the text is XML (its first character after a byte-order mark and whitespace
/// is `<`), CSV otherwise.
pub fn detect_format(text: &str) -> TokenFormat {
    if strip_bom(text).trim_start().starts_with('<') {
        TokenFormat::Pskc
    } else {
        TokenFormat::Csv
    }
}

/// Reads the key given with `--psk-file`: 32 hex digits (an AES-128 key), whitespace
/// (newlines, spaces between groups) ignored.
pub fn parse_psk_file(text: &str) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    const ENTRY: &str = "the pre-shared key file";
    if text.len() > 4096 {
        return Err(TokenError::new(ENTRY, "it is too large to be a key"));
    }
    let mut hex = Zeroizing::new(String::with_capacity(text.len()));
    for c in strip_bom(text).chars().filter(|c| !c.is_whitespace()) {
        if !c.is_ascii_hexdigit() {
            return Err(TokenError::new(
                ENTRY,
                "it holds a character that is not a hex digit; it must hold 32 hex digits (an AES-128 key)",
            ));
        }
        hex.push(c);
    }
    if hex.len() != PSK_BYTES * 2 {
        return Err(TokenError::new(
            ENTRY,
            format!("it must hold 32 hex digits (an AES-128 key), not {}", hex.len()),
        ));
    }
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| TokenError::new(ENTRY, "it is not hex"))
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

fn check_size(text: &str) -> Result<(), TokenError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(TokenError::new(
            WHOLE_FILE,
            format!("it is larger than {} MiB; split it", MAX_INPUT_BYTES / (1024 * 1024)),
        ));
    }
    Ok(())
}

/// Outside text for a message: control characters made visible, at most 64 characters.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    terminal_safe(&out).into_owned()
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user is empty".into());
    }
    if !valid_user_name(user) {
        return Err(format!("{} is not a valid user name", shown(user)));
    }
    Ok(())
}

/// [`valid_device_name`], the rule of the secret file the record will be written to, with
/// the reason spelled out.
fn check_name(name: &str) -> Result<(), String> {
    if valid_device_name(name) {
        return Ok(());
    }
    let n = name.chars().count();
    Err(if name.trim().is_empty() {
        "the device name is empty".into()
    } else if name.trim() != name {
        "the device name has spaces around it".into()
    } else if n > MAX_NAME_CHARS {
        format!("the device name is {n} characters; at most {MAX_NAME_CHARS} are allowed")
    } else {
        "the device name has a control character".into()
    })
}

fn check_key_len(len: usize) -> Result<(), String> {
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&len) {
        return Err(format!(
            "the secret is {} bits; {} to {} bits are accepted",
            len * 8,
            MIN_KEY_BYTES * 8,
            MAX_KEY_BYTES * 8
        ));
    }
    Ok(())
}

const DIGITS_RULE: &str = "digits must be 6 or 8";
const PERIOD_RULE: &str = "period must be 15 to 300 seconds";

fn check_digits(d: u64) -> Result<u32, String> {
    match d {
        6 | 8 => Ok(d as u32),
        _ => Err(DIGITS_RULE.into()),
    }
}

/// An HOTP counter: at most [`MAX_COUNTER`], as in a secret file.
fn check_counter(c: Option<u64>) -> Result<u64, String> {
    c.filter(|&c| c <= MAX_COUNTER)
        .ok_or_else(|| format!("the counter must be a whole number from 0 to {MAX_COUNTER}"))
}

fn check_period(p: u64) -> Result<u64, String> {
    if (15..=300).contains(&p) {
        Ok(p)
    } else {
        Err(PERIOD_RULE.into())
    }
}

/// A decimal whole number, digits only (no sign, no spaces inside).
fn whole_number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One device name per user (ignoring case, as the secret file does): a second record for
/// the same user and name would overwrite or shadow the first, so the file is refused.
fn check_duplicates(records: &[TokenRecord]) -> Result<(), TokenError> {
    let mut seen: HashMap<(&str, String), &str> = HashMap::new();
    for r in records {
        if let Some(first) = seen.insert((&r.user, r.name.to_lowercase()), &r.entry) {
            return Err(TokenError::new(
                r.entry.clone(),
                format!(
                    "{} already has a device named {} ({first})",
                    shown(&r.user),
                    shown(&r.name)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
