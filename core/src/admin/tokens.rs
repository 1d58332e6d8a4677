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
//! imported; unknown elements are ignored. Elements may nest at most [`MAX_DEPTH`] deep,
//! have at most [`MAX_ATTRIBUTES`] attributes each and [`MAX_NAMESPACES_IN_SCOPE`] namespace
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

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use roxmltree::{Document, Node, ParsingOptions};
use zeroize::Zeroizing;

use crate::account::valid_user_name;
use crate::files::secret::{valid_device_name, MAX_COUNTER, MAX_KEY_BYTES, MAX_NAME_CHARS, MIN_KEY_BYTES};
use crate::otp::{decode_base32, Algorithm};
use crate::text::terminal_safe;

/// Largest token file read (either format).
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Most records (CSV rows, PSKC `KeyPackage`s) in one file.
pub const MAX_RECORDS: usize = 10_000;
/// The one CSV header (names compared case-insensitively, order fixed).
pub const CSV_HEADER: &str = "user,name,type,secret,algorithm,digits,period,counter";

const CSV_COLUMNS: [&str; 8] = [
    "user",
    "name",
    "type",
    "secret",
    "algorithm",
    "digits",
    "period",
    "counter",
];
const PSKC_NS: &str = "urn:ietf:params:xml:ns:keyprov:pskc";
/// XML Encryption: `EncryptionMethod`, `CipherData`, `CipherValue`, `CipherReference`.
const XENC_NS: &str = "http://www.w3.org/2001/04/xmlenc#";
/// XML Signature: `KeyName`.
const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
/// Deepest element nesting of a PSKC file read (RFC 6030's deepest path, down to a
/// `CipherValue`, is 8 elements).
pub const MAX_DEPTH: usize = 64;
/// Most attributes of one element of a PSKC file, namespace declarations included (RFC
/// 6030's elements have at most 6).
pub const MAX_ATTRIBUTES: usize = 64;
/// Most namespace declarations (`xmlns`, `xmlns:p` attributes) in scope at an element of a
/// PSKC file: its own and its ancestors', a prefix declared again counted again (RFC 6030's
/// files declare at most 5, on the `KeyContainer`).
pub const MAX_NAMESPACES_IN_SCOPE: usize = 64;
const AES_BLOCK: usize = 16;
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

// ---------------------------------------------------------------------------------------
// Shared checks

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

// ---------------------------------------------------------------------------------------
// CSV

/// Reads a CSV token file: the header [`CSV_HEADER`], then one token a row. Blank lines and
/// lines starting with `#` are skipped, CRLF line ends accepted, fields may be quoted as in
/// RFC 4180 (on one line). Empty `algorithm`, `digits`, `period`, `counter` mean SHA1, 6, 30
/// and 0; `period` of an HOTP row and `counter` of a TOTP row are checked but not used.
pub fn parse_csv(text: &str) -> Result<Vec<TokenRecord>, TokenError> {
    check_size(text)?;
    let text = strip_bom(text);
    let mut header_seen = false;
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let entry = format!("line {}", i + 1);
        let fields = split_csv_line(line).map_err(|why| TokenError::new(&entry, why))?;
        if !header_seen {
            let is_header = fields.len() == CSV_COLUMNS.len()
                && fields
                    .iter()
                    .zip(CSV_COLUMNS)
                    .all(|(f, want)| f.trim().eq_ignore_ascii_case(want));
            if !is_header {
                // Not echoed: without its header, the first line may well be a secret.
                return Err(TokenError::new(
                    entry,
                    format!("the first line must be the header `{CSV_HEADER}`"),
                ));
            }
            header_seen = true;
            continue;
        }
        if out.len() == MAX_RECORDS {
            return Err(TokenError::new(
                entry,
                format!("more than {MAX_RECORDS} tokens in one file; split it"),
            ));
        }
        let record = csv_record(&fields, &entry).map_err(|why| TokenError::new(&entry, why))?;
        out.push(record);
    }
    if !header_seen {
        return Err(TokenError::new(
            WHOLE_FILE,
            format!("it is empty; it must start with the header `{CSV_HEADER}`"),
        ));
    }
    check_duplicates(&out)?;
    Ok(out)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits one line into fields. Unquoted fields are trimmed of spaces and tabs and may not
/// contain `"`; quoted fields keep everything between the quotes, `""` standing for `"`.
/// Fields are zeroized on drop: one of them is the secret.
fn split_csv_line(line: &str) -> Result<Vec<Zeroizing<String>>, String> {
    let mut fields = Vec::with_capacity(CSV_COLUMNS.len());
    let mut chars = line.chars().peekable();
    loop {
        if fields.len() > CSV_COLUMNS.len() * 4 {
            return Err(format!(
                "expected {} fields ({CSV_HEADER}), found many more",
                CSV_COLUMNS.len()
            ));
        }
        while chars.next_if(|&c| is_blank(c)).is_some() {}
        let mut field = Zeroizing::new(String::new());
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err("a quoted field has no closing quote".into()),
                    Some('"') => {
                        if chars.next_if_eq(&'"').is_some() {
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some(c) => field.push(c),
                }
            }
            while chars.next_if(|&c| is_blank(c)).is_some() {}
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text follows a closing quote; quote the whole field".into()),
            }
        } else {
            let mut last = true;
            for c in chars.by_ref() {
                match c {
                    ',' => {
                        last = false;
                        break;
                    }
                    '"' => return Err("a `\"` inside an unquoted field; quote the whole field".into()),
                    c => field.push(c),
                }
            }
            let keep = field.trim_end_matches(is_blank).len();
            field.truncate(keep);
            fields.push(field);
            if last {
                return Ok(fields);
            }
        }
    }
}

fn csv_record(fields: &[Zeroizing<String>], entry: &str) -> Result<TokenRecord, String> {
    if fields.len() != CSV_COLUMNS.len() {
        return Err(format!(
            "expected {} fields ({CSV_HEADER}), found {}",
            CSV_COLUMNS.len(),
            fields.len()
        ));
    }
    let user = fields[0].as_str();
    check_user(user)?;
    let name = fields[1].as_str();
    check_name(name)?;
    let kind = match fields[2].trim().to_ascii_lowercase().as_str() {
        "totp" => TokenKind::Totp,
        "hotp" => TokenKind::Hotp,
        "" => return Err("the type is empty; it must be totp or hotp".into()),
        _ => return Err("the type must be totp or hotp".into()),
    };
    let secret = fields[3].trim();
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    let key = decode_base32(secret).ok_or("the secret is not base32 (letters A-Z and digits 2-7)")?;
    check_key_len(key.len())?;
    let algorithm = match fields[4].trim() {
        "" => Algorithm::Sha1,
        a => Algorithm::parse(a).ok_or("the algorithm must be SHA1, SHA256 or SHA512")?,
    };
    let digits = match fields[5].trim() {
        "" => 6,
        d => check_digits(whole_number(d).ok_or(DIGITS_RULE)?)?,
    };
    let period = match fields[6].trim() {
        "" => 30,
        p => check_period(whole_number(p).ok_or(PERIOD_RULE)?)?,
    };
    let counter = match fields[7].trim() {
        "" => 0,
        c => check_counter(whole_number(c))?,
    };
    // Exports often fill every column; the one that does not apply is checked, then unused.
    let (period, counter) = match kind {
        TokenKind::Totp => (period, 0),
        TokenKind::Hotp => (30, counter),
    };
    Ok(TokenRecord {
        user: user.to_string(),
        name: name.to_string(),
        kind,
        key,
        algorithm,
        digits,
        period,
        counter,
        entry: entry.to_string(),
        mac_checked: false,
    })
}

// ---------------------------------------------------------------------------------------
// PSKC

/// Reads an RFC 6030 PSKC document (see the module documentation for what is supported).
/// `psk` is the pre-shared AES-128 key (from [`parse_psk_file`]) that encrypted values
/// need; a file without encrypted values needs none.
pub fn parse_pskc(text: &str, psk: Option<&[u8]>) -> Result<Vec<TokenRecord>, TokenError> {
    check_size(text)?;
    if let Some(psk) = psk {
        if psk.len() != PSK_BYTES {
            return Err(TokenError::new(
                "the pre-shared key",
                format!("it is {} bytes; an AES-128 key is {PSK_BYTES}", psk.len()),
            ));
        }
    }
    let text = strip_bom(text);
    // roxmltree's own limits (ParsingOptions, 0.20) are the DTD and the number of nodes:
    // nesting, attributes and namespace declarations are bounded here.
    check_markup(text)?;
    let options = ParsingOptions {
        // The default, said out loud: a DOCTYPE is an error, so no entity is ever defined,
        // let alone expanded or fetched.
        allow_dtd: false,
        nodes_limit: 1 << 20,
    };
    let doc = Document::parse_with_options(text, options).map_err(xml_error)?;
    let root = doc.root_element();
    if root.tag_name().name() != "KeyContainer" || root.tag_name().namespace() != Some(PSKC_NS) {
        return Err(TokenError::new(
            WHOLE_FILE,
            format!("it is XML but not PSKC: the top element is not a KeyContainer in namespace {PSKC_NS}"),
        ));
    }
    if let Some(v) = root.attribute("Version") {
        if v.trim() != "1.0" && v.trim() != "1" {
            return Err(TokenError::new(
                "KeyContainer",
                format!("Version {} is not supported; only 1.0 (RFC 6030)", shown(v)),
            ));
        }
    }
    let crypto = Crypto::new(root, psk)?;
    let packages = children(root, PSKC_NS, "KeyPackage").map_err(|why| TokenError::new("KeyContainer", why))?;
    if packages.is_empty() {
        return Err(TokenError::new("KeyContainer", "it has no KeyPackage"));
    }
    if packages.len() > MAX_RECORDS {
        return Err(TokenError::new(
            "KeyContainer",
            format!("more than {MAX_RECORDS} KeyPackages in one file; split it"),
        ));
    }
    let mut out = Vec::with_capacity(packages.len());
    for (i, package) in packages.into_iter().enumerate() {
        out.push(key_package(package, i + 1, &crypto)?);
    }
    check_duplicates(&out)?;
    Ok(out)
}

fn xml_error(e: roxmltree::Error) -> TokenError {
    match e {
        roxmltree::Error::DtdDetected => TokenError::new(
            WHOLE_FILE,
            "it has a DOCTYPE; PSKC files have none, and entities are never expanded, so it is refused",
        ),
        roxmltree::Error::NodesLimitReached => {
            TokenError::new(WHOLE_FILE, "it has too many XML nodes for a token file")
        }
        // roxmltree's messages name a position and at most a tag, entity or attribute name
        // or one character, never text content.
        e => TokenError::new(
            WHOLE_FILE,
            format!("it is not well-formed XML: {}", terminal_safe(&e.to_string())),
        ),
    }
}

/// Refuses, before the parser sees the text, markup that would make it use the stack or the
/// time of the process without bound: elements nested deeper than [`MAX_DEPTH`] (roxmltree
/// descends recursively with no limit of its own, so a few kilobytes of nested elements
/// would overflow the stack), an element with more than [`MAX_ATTRIBUTES`] attributes (it
/// compares each with all the others: 30 000 take a second) and more than
/// [`MAX_NAMESPACES_IN_SCOPE`] namespace declarations in scope (it copies every namespace in
/// scope into each element that declares one, comparing each with the others: a 0.8 MB file
/// took hours). Counts `<name` opens and `</`, `/>` closes, skipping comments, CDATA
/// sections, processing instructions, declarations and quoted attribute values; in a
/// start tag, outside quoted values, each `=` as an attribute and each `xmlns` as a
/// namespace declaration. Conservative: text the parser would refuse may be counted oddly,
/// and a name merely containing `xmlns` counts as a declaration, but a well-formed document
/// is never counted lower than it is, and anything the parser lets through (it stops at the
/// first error) was counted.
fn check_markup(text: &str) -> Result<(), TokenError> {
    let b = text.as_bytes();
    // The index just past the first `end` at or after `from` (the end of the text if none).
    let past = |from: usize, end: &[u8]| -> usize {
        b.get(from..)
            .and_then(|rest| rest.windows(end.len()).position(|w| w == end))
            .map_or(b.len(), |p| from + p + end.len())
    };
    let refuse = |at: usize, why: String| {
        let line = b[..at].iter().filter(|&&c| c == b'\n').count() + 1;
        Err(TokenError::new(
            WHOLE_FILE,
            format!("its element at line {line} has {why}: ask the vendor for a new export"),
        ))
    };
    // The namespace declarations of each open element, outermost first.
    let mut open: Vec<usize> = Vec::new();
    let mut in_scope = 0usize;
    let mut i = 0;
    while let Some(p) = b.get(i..).and_then(|rest| rest.iter().position(|&c| c == b'<')) {
        let at = i + p;
        let rest = &b[at..];
        i = if rest.starts_with(b"<!--") {
            past(at + 4, b"-->")
        } else if rest.starts_with(b"<![CDATA[") {
            past(at + 9, b"]]>")
        } else if rest.starts_with(b"<?") {
            past(at + 2, b"?>")
        } else if rest.starts_with(b"<!") {
            past(at + 2, b">")
        } else if rest.starts_with(b"</") {
            in_scope -= open.pop().unwrap_or(0);
            past(at + 2, b">")
        } else {
            if open.len() == MAX_DEPTH {
                return Err(TokenError::new(
                    WHOLE_FILE,
                    format!("its elements are nested more than {MAX_DEPTH} deep; a token file needs about 10"),
                ));
            }
            // To the tag's `>`, outside quoted attribute values, counting attributes and
            // namespace declarations.
            let (mut attributes, mut declarations) = (0usize, 0usize);
            let mut j = at + 1;
            let mut quote = None;
            while let Some(&c) = b.get(j) {
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None if c == b'"' || c == b'\'' => quote = Some(c),
                    None if c == b'>' => break,
                    None if c == b'=' => attributes += 1,
                    None if b[j..].starts_with(b"xmlns") => declarations += 1,
                    None => {}
                }
                if attributes > MAX_ATTRIBUTES {
                    return refuse(
                        at,
                        format!(
                            "more than {MAX_ATTRIBUTES} attributes (namespace declarations included); a token \
                             file has at most a few"
                        ),
                    );
                }
                if in_scope + declarations > MAX_NAMESPACES_IN_SCOPE {
                    return refuse(
                        at,
                        format!(
                            "more than {MAX_NAMESPACES_IN_SCOPE} namespace declarations in scope (xmlns \
                             attributes on it and on the elements it is in); a token file needs about 5"
                        ),
                    );
                }
                j += 1;
            }
            if !(j < b.len() && b[j - 1] == b'/') {
                open.push(declarations);
                in_scope += declarations;
            }
            j + 1
        };
    }
    Ok(())
}

/// Where an element is, for a message: `namespace URI` or `no namespace`.
fn namespace_of(node: Node) -> String {
    match node.tag_name().namespace().filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("namespace {}", shown(ns)),
        None => "no namespace".into(),
    }
}

/// The element children of `node` named `name` in namespace `ns`. One named `name` in
/// another namespace (or none) is an error, not skipped: it is a value a reader going by
/// local names would take, placed next to the real one.
fn children<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    ns: &'static str,
    name: &'static str,
) -> Result<Vec<Node<'a, 'input>>, String> {
    let mut out = Vec::new();
    for n in node
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == name)
    {
        if n.tag_name().namespace() != Some(ns) {
            return Err(format!(
                "{} holds a {name} in {}, not in {ns}; the file is refused rather than guess which value counts",
                node.tag_name().name(),
                namespace_of(n)
            ));
        }
        out.push(n);
    }
    Ok(out)
}

/// The one child `name` in `ns` ([`children`]), or None; two of them are an error.
fn child<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    ns: &'static str,
    name: &'static str,
) -> Result<Option<Node<'a, 'input>>, String> {
    let mut found = children(node, ns, name)?;
    if found.len() > 1 {
        return Err(format!(
            "{} holds {} {name} elements; one is allowed",
            node.tag_name().name(),
            found.len()
        ));
    }
    Ok(found.pop())
}

/// A PSKC child ([`child`] in the PSKC namespace).
fn pskc<'a, 'input: 'a>(node: Node<'a, 'input>, name: &'static str) -> Result<Option<Node<'a, 'input>>, String> {
    child(node, PSKC_NS, name)
}

/// Whether `node` has an element child with local name `name`, in any namespace: only to
/// notice what is not supported and refuse it (refusing more is safe).
fn has_any(node: Node, name: &str) -> bool {
    node.children().any(|n| n.is_element() && n.tag_name().name() == name)
}

/// All text directly inside `node`, comments skipped. Zeroized on drop: it may be a secret.
fn text_of(node: Node) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::new());
    for t in node.children().filter(|n| n.is_text()) {
        s.push_str(t.text().unwrap_or(""));
    }
    s
}

/// The trimmed text of the child `name` in `ns`, when there is one and it is not blank.
fn child_text(node: Node, ns: &'static str, name: &'static str) -> Result<Option<String>, String> {
    let Some(n) = child(node, ns, name)? else {
        return Ok(None);
    };
    let t = text_of(n);
    let t = t.trim();
    Ok((!t.is_empty()).then(|| t.to_string()))
}

/// Base64 with whitespace (line breaks, indentation) removed.
fn base64_value(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut clean = Zeroizing::new(String::with_capacity(text.len()));
    clean.extend(text.chars().filter(|c| !c.is_whitespace()));
    data_encoding::BASE64.decode(clean.as_bytes()).ok().map(Zeroizing::new)
}

/// How the container says its values are protected (its `EncryptionKey`).
enum Protection {
    /// No `EncryptionKey`: any encrypted value is tried with the pre-shared key.
    Unnamed,
    /// `ds:KeyName`: a pre-shared key, by this name.
    PreShared(String),
    /// `DerivedKey`: PBKDF2 from a passphrase (RFC 6030 §6.2).
    Derived,
    /// `ds:X509Data`: encrypted to a certificate (RFC 6030 §6.3).
    Asymmetric,
}

#[derive(Clone, Copy)]
enum MacAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl MacAlg {
    fn from_uri(uri: &str) -> Option<Self> {
        let name = uri.rsplit('#').next().unwrap_or(uri).to_ascii_lowercase();
        match name.as_str() {
            "hmac-sha1" => Some(MacAlg::Sha1),
            "hmac-sha224" => Some(MacAlg::Sha224),
            "hmac-sha256" => Some(MacAlg::Sha256),
            "hmac-sha384" => Some(MacAlg::Sha384),
            "hmac-sha512" => Some(MacAlg::Sha512),
            _ => None,
        }
    }

    /// Whether HMAC(key, data) equals `tag`, compared in constant time.
    fn verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        macro_rules! check {
            ($h:ty) => {{
                match <Hmac<$h>>::new_from_slice(key) {
                    Ok(mut m) => {
                        m.update(data);
                        m.verify_slice(tag).is_ok()
                    }
                    Err(_) => false,
                }
            }};
        }
        match self {
            MacAlg::Sha1 => check!(sha1::Sha1),
            MacAlg::Sha224 => check!(sha2::Sha224),
            MacAlg::Sha256 => check!(sha2::Sha256),
            MacAlg::Sha384 => check!(sha2::Sha384),
            MacAlg::Sha512 => check!(sha2::Sha512),
        }
    }
}

/// The container-wide encryption state every encrypted value is read with.
struct Crypto<'p> {
    psk: Option<&'p [u8]>,
    protection: Protection,
    /// The `MACMethod` algorithm (HMAC-SHA1 when there is no `MACMethod`), or why it is
    /// unusable; only an error when a `ValueMAC` needs it.
    mac_alg: Result<MacAlg, String>,
    /// The decrypted `MACMethod/MACKey`, when there is one and a pre-shared key was given.
    mac_key: Option<Zeroizing<Vec<u8>>>,
    /// The container has a `MACMethod`: every encrypted value must come with its `ValueMAC`.
    mac_required: bool,
}

impl<'p> Crypto<'p> {
    fn new(root: Node, psk: Option<&'p [u8]>) -> Result<Self, TokenError> {
        let container = |why: String| TokenError::new("KeyContainer", why);
        let protection = match pskc(root, "EncryptionKey").map_err(container)? {
            None => Protection::Unnamed,
            Some(ek) if has_any(ek, "DerivedKey") => Protection::Derived,
            Some(ek) if has_any(ek, "X509Data") => Protection::Asymmetric,
            Some(ek) => match child_text(ek, DS_NS, "KeyName").map_err(container)? {
                Some(name) => Protection::PreShared(name),
                None => Protection::Unnamed,
            },
        };
        let method = pskc(root, "MACMethod").map_err(container)?;
        let mac_alg = match method.map(|m| m.attribute("Algorithm")) {
            None => Ok(MacAlg::Sha1),
            Some(None) => Err("MACMethod has no Algorithm".to_string()),
            Some(Some(uri)) => MacAlg::from_uri(uri).ok_or_else(|| {
                format!(
                    "MACMethod {} is not supported; only HMAC-SHA1 and HMAC-SHA2",
                    shown(uri)
                )
            }),
        };
        let mut mac_key = None;
        let mac_key_node = match method {
            Some(m) => pskc(m, "MACKey").map_err(|why| TokenError::new("MACMethod", why))?,
            None => None,
        };
        if let (Some(psk), Some(mk)) = (psk, mac_key_node) {
            if matches!(protection, Protection::PreShared(_) | Protection::Unnamed) {
                let key =
                    decrypt_value(mk, psk).map_err(|why| TokenError::new("MACMethod", format!("its MACKey: {why}")))?;
                mac_key = Some(key);
            }
        }
        Ok(Crypto {
            psk,
            protection,
            mac_alg,
            mac_key,
            mac_required: method.is_some(),
        })
    }

    /// The secret of `Data/Secret`: `PlainValue`, or `EncryptedValue` decrypted after its
    /// `ValueMAC` (if any) is checked; and whether a `ValueMAC` was checked.
    fn secret(&self, secret: Node) -> Result<(Zeroizing<Vec<u8>>, bool), String> {
        let encrypted = match (pskc(secret, "PlainValue")?, pskc(secret, "EncryptedValue")?) {
            (Some(_), Some(_)) => {
                return Err("Data/Secret holds both a PlainValue and an EncryptedValue; the plain one is not protected by the encryption or its MAC, so the file is refused".into())
            }
            (Some(_), None) if self.psk.is_some() => {
                return Err("the secret is a PlainValue (not encrypted), but a pre-shared key was given (--psk-file): the file mixes encrypted and plain keys, or is not the encrypted file expected".into())
            }
            (Some(plain), None) => {
                return base64_value(&text_of(plain))
                    .map(|key| (key, false))
                    .ok_or_else(|| "the secret's PlainValue is not base64".into())
            }
            (None, Some(encrypted)) => encrypted,
            (None, None) => return Err("Data/Secret has neither a PlainValue nor an EncryptedValue".into()),
        };
        match &self.protection {
            Protection::Derived => {
                return Err("the secret is encrypted with a key derived from a passphrase (PBKDF2); only a pre-shared AES-128 key (--psk-file) is supported".into())
            }
            Protection::Asymmetric => {
                return Err("the secret is encrypted to a certificate (asymmetric encryption); only a pre-shared AES-128 key (--psk-file) is supported".into())
            }
            Protection::PreShared(_) | Protection::Unnamed => {}
        }
        let cipher = encrypted_bytes(encrypted)?;
        let Some(psk) = self.psk else {
            let mut why = String::from("the secret is encrypted; give the pre-shared key with --psk-file");
            if let Protection::PreShared(name) = &self.protection {
                why.push_str(&format!(" (the file calls it {})", shown(name)));
            }
            return Err(why);
        };
        let value_mac = pskc(secret, "ValueMAC")?;
        if value_mac.is_none() && self.mac_required {
            return Err("the secret has no ValueMAC, though the file has a MACMethod: it may have been altered".into());
        }
        if let Some(value_mac) = &value_mac {
            let tag = base64_value(&text_of(*value_mac)).ok_or("the secret's ValueMAC is not base64")?;
            let alg = self.mac_alg.clone()?;
            // RFC 6030 §6.1.1: the MAC key is MACMethod/MACKey. Files without one (earlier
            // PSKC drafts) MAC with the encryption key itself.
            let key: &[u8] = self.mac_key.as_deref().map_or(psk, |k| k.as_slice());
            if !alg.verify(key, &cipher, &tag) {
                return Err(
                    "the secret's ValueMAC does not match: wrong pre-shared key (--psk-file), or the file was altered"
                        .into(),
                );
            }
        }
        let key = aes128_cbc_decrypt(psk, &cipher).map_err(str::to_string)?;
        Ok((key, value_mac.is_some()))
    }
}

/// `IV || ciphertext` of an `EncryptedValue` (or `MACKey`), after checking its
/// `EncryptionMethod` is AES-128-CBC. Ciphertext is not secret; it is not zeroized.
fn encrypted_bytes(node: Node) -> Result<Vec<u8>, String> {
    match child(node, XENC_NS, "EncryptionMethod")?.map(|m| m.attribute("Algorithm")) {
        None | Some(None) => return Err("an encrypted value has no EncryptionMethod Algorithm".into()),
        Some(Some(AES128_CBC)) => {}
        Some(Some(other)) => {
            return Err(format!(
                "a value is encrypted with {}; only AES-128-CBC ({AES128_CBC}) is supported",
                shown(other)
            ))
        }
    }
    let data = child(node, XENC_NS, "CipherData")?.ok_or("an encrypted value has no CipherData")?;
    if child(data, XENC_NS, "CipherReference")?.is_some() {
        return Err("a CipherReference (a value stored elsewhere) is not supported".into());
    }
    let value = child(data, XENC_NS, "CipherValue")?.ok_or("an encrypted value has no CipherValue")?;
    let bytes = base64_value(&text_of(value)).ok_or("a CipherValue is not base64")?;
    Ok(bytes.to_vec())
}

fn decrypt_value(node: Node, psk: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let cipher = encrypted_bytes(node)?;
    aes128_cbc_decrypt(psk, &cipher).map_err(str::to_string)
}

/// AES-128-CBC as xmlenc writes it: a 16-byte IV, then the ciphertext, PKCS#7 padded.
fn aes128_cbc_decrypt(key: &[u8], iv_and_ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    if iv_and_ciphertext.len() < 2 * AES_BLOCK || !iv_and_ciphertext.len().is_multiple_of(AES_BLOCK) {
        return Err("an encrypted value is not a 16-byte IV and whole AES blocks");
    }
    let (iv, ciphertext) = iv_and_ciphertext.split_at(AES_BLOCK);
    let decryptor = cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
        .map_err(|_| "the pre-shared key is not an AES-128 key")?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = decryptor
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| "it does not decrypt (bad padding): wrong pre-shared key (--psk-file), or the file was altered")?
        .len();
    buf.truncate(len);
    Ok(buf)
}

fn pskc_kind(uri: &str) -> Option<TokenKind> {
    match uri.trim() {
        "urn:ietf:params:xml:ns:keyprov:pskc:totp"
        | "urn:ietf:params:xml:ns:keyprov:pskc#totp"
        | "http://www.ietf.org/keyprov/pskc#totp" => Some(TokenKind::Totp),
        "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
        | "urn:ietf:params:xml:ns:keyprov:pskc#hotp"
        | "http://www.ietf.org/keyprov/pskc#hotp" => Some(TokenKind::Hotp),
        _ => None,
    }
}

/// `HMAC-SHA256`, `SHA256`, `HMAC-SHA-256`... as an [`Algorithm`].
fn suite_algorithm(suite: &str) -> Option<Algorithm> {
    let s = suite.trim().to_ascii_uppercase();
    let s = s.strip_prefix("HMAC-").unwrap_or(&s);
    Algorithm::parse(&s.replace('-', ""))
}

/// A `PlainValue` integer of `Data/<name>`, if present.
fn data_int(data: Option<Node>, name: &'static str) -> Result<Option<u64>, String> {
    let Some(node) = data.map(|d| pskc(d, name)).transpose()?.flatten() else {
        return Ok(None);
    };
    match (pskc(node, "PlainValue")?, pskc(node, "EncryptedValue")?) {
        (_, Some(_)) => Err(format!("an encrypted Data/{name} is not supported")),
        (Some(plain), None) => whole_number(text_of(plain).trim())
            .map(Some)
            .ok_or_else(|| format!("Data/{name} is not a whole number, 0 or more")),
        (None, None) => Ok(None),
    }
}

fn key_package(package: Node, index: usize, crypto: &Crypto) -> Result<TokenRecord, TokenError> {
    let keys = children(package, PSKC_NS, "Key").map_err(|why| TokenError::new(format!("KeyPackage {index}"), why))?;
    let id = keys
        .first()
        .and_then(|k| k.attribute("Id"))
        .map(str::trim)
        .filter(|id| !id.is_empty());
    let entry = match id {
        Some(id) => format!("KeyPackage {index} (Id {})", shown(id)),
        None => format!("KeyPackage {index}"),
    };
    package_record(package, &keys, id, &entry, crypto).map_err(|why| TokenError::new(entry, why))
}

/// The record of one `KeyPackage`: every parameter is checked before the secret is read.
fn package_record(
    package: Node,
    keys: &[Node],
    id: Option<&str>,
    entry: &str,
    crypto: &Crypto,
) -> Result<TokenRecord, String> {
    let key = match keys {
        [key] => *key,
        [] => return Err("it has no Key".into()),
        _ => return Err("it has more than one Key; RFC 6030 allows one".into()),
    };
    let kind = match key.attribute("Algorithm") {
        None => return Err("its Key has no Algorithm".into()),
        Some(uri) => pskc_kind(uri).ok_or_else(|| {
            format!(
                "algorithm {} is not supported; only HOTP and TOTP tokens can be imported",
                shown(uri)
            )
        })?,
    };
    let device = pskc(package, "DeviceInfo")?;
    let device_text = |name: &'static str| match device {
        Some(d) => child_text(d, PSKC_NS, name),
        None => Ok(None),
    };
    let user = match child_text(key, PSKC_NS, "UserId")? {
        Some(u) => Some(u),
        None => device_text("UserId")?,
    }
    .ok_or("it has no UserId (in its Key or DeviceInfo) naming the account the token is for")?;
    check_user(&user).map_err(|why| format!("UserId: {why}"))?;
    let name = match (device_text("SerialNo")?, id) {
        (Some(serial), _) => format!("token {serial}"),
        (None, Some(id)) => format!("token {id}"),
        (None, None) => return Err("it has neither a DeviceInfo SerialNo nor a Key Id to name the device".into()),
    };
    check_name(&name)?;

    let params = pskc(key, "AlgorithmParameters")?;
    let algorithm = match params.map(|p| child_text(p, PSKC_NS, "Suite")).transpose()?.flatten() {
        None => Algorithm::Sha1,
        Some(suite) => suite_algorithm(&suite).ok_or_else(|| {
            format!(
                "AlgorithmParameters Suite {} is not supported; only HMAC-SHA1, HMAC-SHA256 and HMAC-SHA512",
                shown(&suite)
            )
        })?,
    };
    let digits = match params.map(|p| pskc(p, "ResponseFormat")).transpose()?.flatten() {
        None => 6,
        Some(format) => {
            if let Some(encoding) = format.attribute("Encoding") {
                if !encoding.trim().eq_ignore_ascii_case("DECIMAL") {
                    return Err(format!(
                        "ResponseFormat Encoding {} is not supported; only DECIMAL codes",
                        shown(encoding)
                    ));
                }
            }
            if matches!(format.attribute("CheckDigits").map(str::trim), Some("true" | "1")) {
                return Err("ResponseFormat CheckDigits (a Luhn digit after the code) is not supported".into());
            }
            let length = format.attribute("Length").ok_or("ResponseFormat has no Length")?;
            check_digits(whole_number(length.trim()).ok_or(DIGITS_RULE)?)
                .map_err(|why| format!("ResponseFormat Length: {why}"))?
        }
    };

    if let Some(policy) = pskc(key, "Policy")? {
        let usages: Vec<String> = children(policy, PSKC_NS, "KeyUsage")?
            .into_iter()
            .map(|u| text_of(u).trim().to_string())
            .collect();
        if !usages.is_empty() && !usages.iter().any(|u| u.eq_ignore_ascii_case("OTP")) {
            return Err("its Policy KeyUsage does not include OTP".into());
        }
        if let Some(pin) = pskc(policy, "PINPolicy")? {
            match pin.attribute("PINUsageMode").map(str::trim) {
                None | Some("Local") => {}
                Some(mode) => {
                    return Err(format!(
                        "its PINPolicy wants a PIN with each code (PINUsageMode {}); pam_totp does not check PINs",
                        shown(mode)
                    ))
                }
            }
        }
    }

    let data = pskc(key, "Data")?;
    let (period, counter) = match kind {
        TokenKind::Hotp => match data_int(data, "Counter")? {
            None => (30, 0),
            Some(c) => (
                30,
                check_counter(Some(c)).map_err(|why| format!("Data/Counter: {why}"))?,
            ),
        },
        TokenKind::Totp => {
            if data_int(data, "Time")?.is_some_and(|t0| t0 != 0) {
                return Err(
                    "Data/Time (the TOTP start time T0) is not 0; pam_totp counts time steps from the Unix epoch"
                        .into(),
                );
            }
            let period = match data_int(data, "TimeInterval")? {
                None => 30,
                Some(p) => check_period(p)
                    .map_err(|_| "Data/TimeInterval (the TOTP period) must be 15 to 300 seconds".to_string())?,
            };
            (period, 0)
        }
    };
    let secret = data
        .map(|d| pskc(d, "Secret"))
        .transpose()?
        .flatten()
        .ok_or("it has no Data/Secret; keys kept by reference (KeyReference) cannot be imported")?;
    let (key, mac_checked) = crypto.secret(secret)?;
    check_key_len(key.len())?;
    Ok(TokenRecord {
        user,
        name,
        kind,
        key,
        algorithm,
        digits,
        period,
        counter,
        entry: entry.to_string(),
        mac_checked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otp::{hotp, totp_at_step, Params};

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/tokens/",
                $name
            ))
        };
    }

    /// RFC 4226 / RFC 6238 SHA1 seed, ASCII "12345678901234567890".
    const SEED20: &[u8] = b"12345678901234567890";
    /// RFC 6238 SHA256 seed.
    const SEED32: &[u8] = b"12345678901234567890123456789012";
    /// RFC 6030 §6.1 (Figure 6) pre-shared key, as a --psk-file would hold it.
    const RFC6030_PSK: &str = "12345678901234567890123456789012\n";

    fn hex(b: &[u8]) -> String {
        data_encoding::HEXLOWER.encode(b)
    }

    fn rfc_psk() -> Zeroizing<Vec<u8>> {
        parse_psk_file(RFC6030_PSK).unwrap()
    }

    fn csv_err(text: &str) -> String {
        parse_csv(text).expect_err("should be refused").to_string()
    }

    fn pskc_err(text: &str, psk: Option<&[u8]>) -> String {
        parse_pskc(text, psk).expect_err("should be refused").to_string()
    }

    // ----- CSV -------------------------------------------------------------------------

    #[test]
    fn csv_good_file_totp_hotp_quoted_name_and_defaults() {
        let r = parse_csv(fixture!("good.csv")).unwrap();
        assert_eq!(r.len(), 3);

        assert_eq!(r[0].user, "alice");
        assert_eq!(r[0].name, "Fob 1, desk drawer");
        assert_eq!(r[0].kind, TokenKind::Totp);
        assert_eq!(r[0].key.as_slice(), SEED20);
        assert_eq!(r[0].algorithm, Algorithm::Sha1);
        assert_eq!((r[0].digits, r[0].period, r[0].counter), (6, 30, 0));
        assert_eq!(r[0].entry, "line 4");

        assert_eq!(r[1].user, "bob");
        assert_eq!(r[1].name, "yubikey-5");
        assert_eq!(r[1].kind, TokenKind::Hotp);
        assert_eq!(r[1].key.as_slice(), SEED20, "lower case with spaces is base32 too");
        assert_eq!((r[1].digits, r[1].period, r[1].counter), (8, 30, 7));
        assert_eq!(r[1].entry, "line 6");
        assert_eq!(hotp(&r[1].key, 7, r[1].algorithm, r[1].digits).as_str(), "82162583");

        assert_eq!(r[2].user, "carol");
        assert_eq!(r[2].name, "token \"42\"");
        assert_eq!(r[2].kind, TokenKind::Totp);
        assert_eq!(r[2].key.as_slice(), SEED32);
        assert_eq!(r[2].algorithm, Algorithm::Sha256);
        assert_eq!((r[2].digits, r[2].period, r[2].counter), (8, 60, 0));
    }

    #[test]
    fn csv_crlf_bom_header_case_and_spaces() {
        let text = "\u{feff}USER, Name ,type,SECRET,algorithm,digits,period,counter\r\n\
                    # comment\r\n\
                    \r\n\
                    \u{20} dave , \"a, b\" , hotp , GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ , SHA512 , 6 , 300 , 4611686018427387904 \r\n";
        let r = parse_csv(text).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].user, "dave");
        assert_eq!(r[0].name, "a, b");
        assert_eq!(r[0].algorithm, Algorithm::Sha512);
        assert_eq!(
            (r[0].period, r[0].counter),
            (30, MAX_COUNTER),
            "an HOTP row's period is unused"
        );
        assert_eq!(r[0].entry, "line 4");
    }

    #[test]
    fn csv_malformed_rows_name_the_line_and_hide_the_secret() {
        const S: &str = "JBSWY3DPEHPK3PXP"; // 80 bits, the shortest accepted
        let long_name = "n".repeat(65);
        let cases: Vec<(String, &str)> = vec![
            (format!("alice,fob,tokn,{S},,,,"), "the type must be totp or hotp"),
            (format!("alice,fob,,{S},,,,"), "the type is empty"),
            ("alice,fob,totp,JBSWY3DPEHPK3PX1,,,,".into(), "the secret is not base32"),
            ("alice,fob,totp,JBSWY3DPEHPK3P08,,,,".into(), "the secret is not base32"),
            ("alice,fob,totp,,,,,".into(), "the secret is empty"),
            (
                "alice,fob,totp,JBSWY3DP,,,,".into(),
                "the secret is 40 bits; 80 to 1024 bits are accepted",
            ),
            (format!("alice,fob,totp,{S},,7,,"), "digits must be 6 or 8"),
            (format!("alice,fob,totp,{S},,six,,"), "digits must be 6 or 8"),
            (format!("alice,fob,totp,{S},,,5,"), "period must be 15 to 300 seconds"),
            (format!("alice,fob,totp,{S},,,301,"), "period must be 15 to 300 seconds"),
            (
                format!("alice,fob,hotp,{S},,,,-1"),
                "the counter must be a whole number",
            ),
            (
                format!("alice,fob,hotp,{S},,,,18446744073709551616"),
                "the counter must be a whole number",
            ),
            (
                format!("alice,fob,totp,{S},MD5,,,"),
                "the algorithm must be SHA1, SHA256 or SHA512",
            ),
            (format!("ali/ce,fob,totp,{S},,,,"), "ali/ce is not a valid user name"),
            (format!("..,fob,totp,{S},,,,"), ".. is not a valid user name"),
            (format!(",fob,totp,{S},,,,"), "the user is empty"),
            (format!("alice,,totp,{S},,,,"), "the device name is empty"),
            (
                format!("alice,{long_name},totp,{S},,,,"),
                "the device name is 65 characters; at most 64",
            ),
            (
                format!("alice,\"fob\u{1b}[2J\",totp,{S},,,,"),
                "the device name has a control character",
            ),
            (
                format!("alice,\" fob\",totp,{S},,,,"),
                "the device name has spaces around it",
            ),
            (format!("alice,\"  \",totp,{S},,,,"), "the device name is empty"),
            (format!("alice,fob,totp,{S},,,"), "expected 8 fields"),
            (format!("alice,fob,totp,{S},,,,,"), "expected 8 fields"),
            (
                format!("alice,\"fob,totp,{S},,,,"),
                "a quoted field has no closing quote",
            ),
            (format!("alice,fo\"b,totp,{S},,,,"), "quote the whole field"),
            (format!("alice,\"fob\"x,totp,{S},,,,"), "text follows a closing quote"),
        ];
        for (row, want) in cases {
            let text = format!("{CSV_HEADER}\nzed,ok,totp,{S},,,,\n{row}\n");
            let err = parse_csv(&text).expect_err(&row);
            assert_eq!(err.entry, "line 3", "{row}");
            let msg = err.to_string();
            assert!(msg.starts_with("line 3: "), "{msg}");
            assert!(msg.contains(want), "{row}: {msg}");
            for secret in [S, "JBSWY3DPEHPK3PX1", "JBSWY3DPEHPK3P08", "JBSWY3DP"] {
                assert!(!msg.to_ascii_uppercase().contains(secret), "{row}: {msg}");
            }
            assert!(!msg.contains('\u{1b}'), "{msg}");
        }
    }

    #[test]
    fn csv_bad_header_and_bad_secret_fixtures() {
        let err = parse_csv(fixture!("bad-header.csv")).unwrap_err();
        assert_eq!(err.entry, "line 1");
        assert!(
            err.why
                .contains("the first line must be the header `user,name,type,secret"),
            "{err}"
        );

        let msg = csv_err(fixture!("bad-secret.csv"));
        assert_eq!(msg, "line 4: the secret is not base32 (letters A-Z and digits 2-7)");
    }

    #[test]
    fn csv_without_header_never_echoes_the_first_row() {
        let msg = csv_err("# seeds\nalice,fob,totp,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,,,,\n");
        assert!(msg.starts_with("line 2: the first line must be the header"), "{msg}");
        assert!(!msg.contains("GEZDGNBV") && !msg.contains("alice"), "{msg}");
        assert!(csv_err("").starts_with("the file: it is empty"));
        assert!(csv_err("# only a comment\n\n").starts_with("the file: it is empty"));
    }

    #[test]
    fn csv_same_user_and_device_twice_is_refused() {
        let text = format!("{CSV_HEADER}\nalice,fob,totp,JBSWY3DPEHPK3PXP,,,,\nbob,fob,totp,JBSWY3DPEHPK3PXP,,,,\nalice,FOB,hotp,JBSWY3DPEHPK3PXP,,,,\n");
        assert_eq!(csv_err(&text), "line 4: alice already has a device named FOB (line 2)");
    }

    #[test]
    fn csv_and_pskc_size_and_count_limits() {
        let big = format!("{CSV_HEADER}\n{}", "#".repeat(MAX_INPUT_BYTES));
        assert_eq!(csv_err(&big), "the file: it is larger than 1 MiB; split it");
        let big = format!("<KeyContainer>{}</KeyContainer>", " ".repeat(MAX_INPUT_BYTES));
        assert_eq!(pskc_err(&big, None), "the file: it is larger than 1 MiB; split it");

        let mut rows = String::from(CSV_HEADER);
        for i in 0..=MAX_RECORDS {
            rows.push_str(&format!("\nu{i},f,totp,JBSWY3DPEHPK3PXP,,,,"));
        }
        assert!(rows.len() < MAX_INPUT_BYTES);
        assert_eq!(
            csv_err(&rows),
            "line 10002: more than 10000 tokens in one file; split it"
        );

        let packages = format!(
            "<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">{}</KeyContainer>",
            "<KeyPackage/>".repeat(MAX_RECORDS + 1)
        );
        assert_eq!(
            pskc_err(&packages, None),
            "KeyContainer: more than 10000 KeyPackages in one file; split it"
        );
    }

    #[test]
    fn format_detection() {
        assert_eq!(detect_format(fixture!("good.csv")), TokenFormat::Csv);
        assert_eq!(detect_format(fixture!("rfc6030-figure3.pskcxml")), TokenFormat::Pskc);
        assert_eq!(detect_format("\u{feff} \r\n\t<KeyContainer/>"), TokenFormat::Pskc);
        assert_eq!(
            detect_format("user,name,type,secret,algorithm,digits,period,counter"),
            TokenFormat::Csv
        );
        assert_eq!(detect_format(""), TokenFormat::Csv);
    }

    #[test]
    fn psk_file_is_32_hex_digits_whitespace_tolerated() {
        assert_eq!(
            hex(&parse_psk_file("12345678 90123456\n78901234 56789012\n").unwrap()),
            "12345678901234567890123456789012"
        );
        assert_eq!(
            hex(&parse_psk_file("\u{feff}ABCDEF0123456789abcdef0123456789").unwrap()),
            "abcdef0123456789abcdef0123456789"
        );
        let short = parse_psk_file("1234567890123456789012345678901")
            .unwrap_err()
            .to_string();
        assert_eq!(
            short,
            "the pre-shared key file: it must hold 32 hex digits (an AES-128 key), not 31"
        );
        let long = parse_psk_file("123456789012345678901234567890123456789012345678").unwrap_err();
        assert!(long.why.ends_with("not 48"), "{long}");
        let bad = parse_psk_file("1234567890123456789012345678901g")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not a hex digit") && !bad.contains("12345"), "{bad}");
        assert!(parse_psk_file("").is_err());
    }

    #[test]
    fn debug_and_display_never_show_the_key() {
        let r = parse_csv(fixture!("good.csv")).unwrap();
        let dbg = format!("{:?}", r[0]);
        assert!(dbg.contains("alice") && dbg.contains("<20 bytes, not shown>"), "{dbg}");
        assert!(!dbg.contains("49, 50, 51") && !dbg.contains("1234567890"), "{dbg}");
        let e = TokenError::new("line 4", "digits must be 6 or 8");
        assert_eq!(e.to_string(), "line 4: digits must be 6 or 8");
    }

    // ----- PSKC ------------------------------------------------------------------------

    #[test]
    fn pskc_rfc6030_figure3_plain_hotp() {
        // RFC 6030 Figure 3 verbatim: the plain-value HOTP example with device and user.
        let r = parse_pskc(fixture!("rfc6030-figure3.pskcxml"), None).unwrap();
        assert_eq!(r.len(), 1);
        let t = &r[0];
        assert_eq!(t.key.as_slice(), SEED20);
        assert_eq!(hex(&t.key), "3132333435363738393031323334353637383930");
        assert_eq!(t.kind, TokenKind::Hotp);
        assert_eq!((t.digits, t.counter), (8, 0));
        assert_eq!(t.algorithm, Algorithm::Sha1);
        // Key/UserId wins over DeviceInfo/UserId; kept as given.
        assert_eq!(t.user, "UID=jsmith,DC=example-bank,DC=net");
        assert_eq!(t.name, "token 987654321");
        assert_eq!(t.entry, "KeyPackage 1 (Id 12345678)");
        // RFC 4226 Appendix D: counter 0 truncates to 1284755224.
        assert_eq!(hotp(&t.key, t.counter, t.algorithm, t.digits).as_str(), "84755224");
    }

    #[test]
    fn pskc_rfc6030_figure2_has_no_user_and_a_32_bit_secret() {
        let figure2 = fixture!("rfc6030-figure2.pskcxml");
        assert_eq!(
            pskc_err(figure2, None),
            "KeyPackage 1 (Id 12345678): it has no UserId (in its Key or DeviceInfo) naming the account the token is for"
        );
        // Its secret is "1234": with a user added it is refused as far too short.
        let with_user = figure2.replace("<Issuer>", "<UserId>alice</UserId><Issuer>");
        assert_eq!(
            pskc_err(&with_user, None),
            "KeyPackage 1 (Id 12345678): the secret is 32 bits; 80 to 1024 bits are accepted"
        );
    }

    #[test]
    fn pskc_totp_with_time_interval_and_8_digits_and_hotp_with_counter() {
        let r = parse_pskc(fixture!("totp-and-hotp.pskcxml"), None).unwrap();
        assert_eq!(r.len(), 2);
        let totp = &r[0];
        assert_eq!(totp.kind, TokenKind::Totp);
        assert_eq!((totp.user.as_str(), totp.name.as_str()), ("alice", "token TT0000001"));
        assert_eq!((totp.digits, totp.period, totp.counter), (8, 30, 0));
        assert_eq!(totp.algorithm, Algorithm::Sha256);
        assert_eq!(totp.key.as_slice(), SEED32);
        assert_eq!(totp.entry, "KeyPackage 1 (Id TT0000001#1)");
        // RFC 6238 Appendix B, SHA256 at T = 59 s.
        let p = Params::new(totp.algorithm, totp.digits, totp.period).unwrap();
        assert_eq!(totp_at_step(&totp.key, p.step_at(59), &p).as_str(), "46119246");

        let hotp_rec = &r[1];
        assert_eq!(hotp_rec.kind, TokenKind::Hotp);
        assert_eq!(hotp_rec.user, "bob", "DeviceInfo/UserId when the Key has none");
        assert_eq!(hotp_rec.name, "token 987654", "the Key Id when there is no SerialNo");
        assert_eq!((hotp_rec.digits, hotp_rec.counter), (6, 42));
        assert_eq!(hotp_rec.key.as_slice(), SEED20);
        assert_eq!(hotp_rec.entry, "KeyPackage 2 (Id 987654)");
    }

    #[test]
    fn pskc_rfc6030_figure6_decrypts_with_the_rfc_psk() {
        // RFC 6030 Figure 6 (AES-128-CBC, pre-shared key 12345678901234567890123456789012,
        // HMAC-SHA1 ValueMAC) with only a <UserId> added.
        let psk = rfc_psk();
        let r = parse_pskc(fixture!("rfc6030-figure6-userid.pskcxml"), Some(&psk)).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(hex(&r[0].key), "3132333435363738393031323334353637383930");
        assert_eq!((r[0].kind, r[0].digits, r[0].counter), (TokenKind::Hotp, 8, 0));
        assert_eq!((r[0].user.as_str(), r[0].name.as_str()), ("alice", "token 987654321"));
    }

    #[test]
    fn pskc_rfc6030_figure6_mac_key_and_value_mac() {
        // The RFC states the MAC key: 1122334455667788990011223344556677889900.
        let text = fixture!("rfc6030-figure6.pskcxml");
        let doc = Document::parse(text).unwrap();
        let psk = rfc_psk();
        let crypto = Crypto::new(doc.root_element(), Some(&psk)).unwrap();
        assert_eq!(
            hex(crypto.mac_key.as_deref().unwrap()),
            "1122334455667788990011223344556677889900"
        );
        // ... and the ValueMAC is HMAC-SHA1 over IV || ciphertext with it.
        let secret = doc.descendants().find(|n| n.has_tag_name((PSKC_NS, "Secret"))).unwrap();
        let cipher = encrypted_bytes(pskc(secret, "EncryptedValue").unwrap().unwrap()).unwrap();
        assert_eq!(
            &cipher[..16],
            &(0u8..16).collect::<Vec<_>>()[..],
            "the RFC's IV is 00 01 .. 0f"
        );
        let tag = base64_value("Su+NvtQfmvfJzF6bmQiJqoLRExc=").unwrap();
        assert!(MacAlg::Sha1.verify(crypto.mac_key.as_deref().unwrap(), &cipher, &tag));
        assert_eq!(
            hex(&crypto.secret(secret).unwrap().0),
            "3132333435363738393031323334353637383930"
        );
    }

    #[test]
    fn pskc_encrypted_without_psk_asks_for_it() {
        assert_eq!(
            pskc_err(fixture!("rfc6030-figure6-userid.pskcxml"), None),
            "KeyPackage 1 (Id 12345678): the secret is encrypted; give the pre-shared key with --psk-file \
             (the file calls it Pre-shared-key)"
        );
    }

    #[test]
    fn pskc_wrong_psk_is_refused() {
        let text = fixture!("rfc6030-figure6-userid.pskcxml");
        for wrong in ["12345678901234567890123456789013", "00000000000000000000000000000000"] {
            let psk = parse_psk_file(wrong).unwrap();
            let msg = pskc_err(text, Some(&psk));
            assert!(msg.contains("wrong pre-shared key (--psk-file)"), "{msg}");
            assert!(!msg.contains(wrong) && !msg.contains("3132333435"), "{msg}");
        }
        // Without MACMethod and ValueMAC, the padding alone catches it.
        let no_mac = strip_mac(text);
        let psk = parse_psk_file("00000000000000000000000000000000").unwrap();
        let msg = pskc_err(&no_mac, Some(&psk));
        assert_eq!(
            msg,
            "KeyPackage 1 (Id 12345678): it does not decrypt (bad padding): wrong pre-shared key (--psk-file), \
             or the file was altered"
        );
        // ... and the right key still works without them.
        let r = parse_pskc(&no_mac, Some(&rfc_psk())).unwrap();
        assert_eq!(r[0].key.as_slice(), SEED20);
        // A key of the wrong size never reaches AES.
        assert!(pskc_err(text, Some(&[0u8; 15])).starts_with("the pre-shared key: it is 15 bytes"));
    }

    fn strip_mac(text: &str) -> String {
        let start = text.find("<MACMethod").unwrap();
        let end = text.find("</MACMethod>").unwrap() + "</MACMethod>".len();
        let s = format!("{}{}", &text[..start], &text[end..]);
        let start = s.find("<ValueMAC>").unwrap();
        let end = s.find("</ValueMAC>").unwrap() + "</ValueMAC>".len();
        format!("{}{}", &s[..start], &s[end..])
    }

    #[test]
    fn pskc_tampered_mac_or_ciphertext_is_refused() {
        let text = fixture!("rfc6030-figure6-userid.pskcxml");
        let psk = rfc_psk();
        let tampered_mac = text.replace("Su+NvtQfmvfJzF6bmQiJqoLRExc=", "Tu+NvtQfmvfJzF6bmQiJqoLRExc=");
        let tampered_cipher = text.replace("+cIHItlB3Wra1DUpx", "+cIHItlB3Wra1DUpy");
        for t in [tampered_mac, tampered_cipher] {
            assert_ne!(t, text);
            assert_eq!(
                pskc_err(&t, Some(&psk)),
                "KeyPackage 1 (Id 12345678): the secret's ValueMAC does not match: wrong pre-shared key \
                 (--psk-file), or the file was altered"
            );
        }
        let not_base64 = text.replace("Su+NvtQfmvfJzF6bmQiJqoLRExc=", "not base64!");
        assert!(pskc_err(&not_base64, Some(&psk)).ends_with("the secret's ValueMAC is not base64"));
    }

    #[test]
    fn pskc_other_encryption_is_refused_by_name() {
        let text = fixture!("rfc6030-figure6-userid.pskcxml");
        let psk = rfc_psk();
        let aes256 = text.replace("#aes128-cbc", "#aes256-cbc");
        let msg = pskc_err(&aes256, Some(&psk));
        assert!(
            msg.contains("http://www.w3.org/2001/04/xmlenc#aes256-cbc; only AES-128-CBC"),
            "{msg}"
        );

        let pbkdf2 = text.replace(
            "<ds:KeyName>Pre-shared-key</ds:KeyName>",
            "<xenc11:DerivedKey xmlns:xenc11=\"http://www.w3.org/2009/xmlenc11#\">\
             <xenc11:MasterKeyName>My Password 1</xenc11:MasterKeyName></xenc11:DerivedKey>",
        );
        for psk in [None, Some(&psk[..])] {
            let msg = pskc_err(&pbkdf2, psk);
            assert!(msg.contains("derived from a passphrase (PBKDF2)"), "{msg}");
        }
        let x509 = text.replace(
            "<ds:KeyName>Pre-shared-key</ds:KeyName>",
            "<ds:X509Data><ds:X509Certificate>MIIB</ds:X509Certificate></ds:X509Data>",
        );
        assert!(pskc_err(&x509, None).contains("encrypted to a certificate"));
    }

    #[test]
    fn pskc_missing_userid_names_the_key_package() {
        // Figure 6 verbatim has no UserId; the check comes before any decryption.
        let msg = pskc_err(fixture!("rfc6030-figure6.pskcxml"), Some(&rfc_psk()));
        assert!(msg.starts_with("KeyPackage 1 (Id 12345678): it has no UserId"), "{msg}");
        // The second package of a file, without a Key Id.
        let text = fixture!("totp-and-hotp.pskcxml")
            .replace("<pskc:UserId>bob</pskc:UserId>", "")
            .replace(" Id=\"987654\"", "");
        let err = parse_pskc(&text, None).unwrap_err();
        assert_eq!(err.entry, "KeyPackage 2");
        assert!(err.why.starts_with("it has no UserId"), "{err}");
        let bad_user = fixture!("totp-and-hotp.pskcxml").replace(">bob<", ">../bob<");
        assert_eq!(
            pskc_err(&bad_user, None),
            "KeyPackage 2 (Id 987654): UserId: ../bob is not a valid user name"
        );
    }

    #[test]
    fn pskc_unknown_algorithm_is_refused() {
        assert_eq!(
            pskc_err(fixture!("unknown-algorithm.pskcxml"), None),
            "KeyPackage 1 (Id OC0000001): algorithm urn:ietf:params:xml:ns:keyprov:pskc:ocra is not supported; \
             only HOTP and TOTP tokens can be imported"
        );
    }

    #[test]
    fn pskc_parameters_outside_what_pam_totp_does_are_refused() {
        let base = fixture!("totp-and-hotp.pskcxml");
        let cases = [
            ("Length=\"8\"", "Length=\"7\"", "KeyPackage 1 (Id TT0000001#1): ResponseFormat Length: digits must be 6 or 8"),
            ("Length=\"8\" Encoding=\"DECIMAL\"", "Length=\"8\" Encoding=\"HEXADECIMAL\"", "ResponseFormat Encoding HEXADECIMAL is not supported"),
            ("Length=\"8\" Encoding=\"DECIMAL\"", "Length=\"8\" Encoding=\"DECIMAL\" CheckDigits=\"true\"", "CheckDigits"),
            ("<pskc:PlainValue>30</pskc:PlainValue>", "<pskc:PlainValue>5</pskc:PlainValue>", "Data/TimeInterval (the TOTP period) must be 15 to 300 seconds"),
            ("<pskc:Time>\n                    <pskc:PlainValue>0<", "<pskc:Time>\n                    <pskc:PlainValue>1234<", "Data/Time (the TOTP start time T0) is not 0"),
            ("<pskc:PlainValue>42</pskc:PlainValue>", "<pskc:PlainValue>-1</pskc:PlainValue>", "KeyPackage 2 (Id 987654): Data/Counter is not a whole number"),
            ("<pskc:Suite>HMAC-SHA256</pskc:Suite>", "<pskc:Suite>HMAC-MD5</pskc:Suite>", "Suite HMAC-MD5 is not supported"),
            ("<pskc:KeyUsage>OTP</pskc:KeyUsage>\n            </pskc:Policy>\n        </pskc:Key>\n    </pskc:KeyPackage>\n    <pskc:KeyPackage>", "<pskc:KeyUsage>Encrypt</pskc:KeyUsage>\n            </pskc:Policy>\n        </pskc:Key>\n    </pskc:KeyPackage>\n    <pskc:KeyPackage>", "its Policy KeyUsage does not include OTP"),
            ("PINUsageMode=\"Local\"", "PINUsageMode=\"Prepend\"", "PINUsageMode Prepend"),
            ("<pskc:SerialNo>TT0000001</pskc:SerialNo>", "<pskc:SerialNo>TT0000001 and a long story about this fob, which a vendor put in its serial</pskc:SerialNo>", "the device name is 81 characters; at most 64"),
            ("MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</pskc:PlainValue>", "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA</pskc:PlainValue>", "the secret's PlainValue is not base64"),
            ("<pskc:UserId>bob</pskc:UserId>", "<pskc:UserId>alice</pskc:UserId><pskc:SerialNo>TT0000001</pskc:SerialNo>", "KeyPackage 2 (Id 987654): alice already has a device named token TT0000001 (KeyPackage 1 (Id TT0000001#1))"),
        ];
        for (from, to, want) in cases {
            let text = base.replacen(from, to, 1);
            assert_ne!(text, base, "{from}");
            let msg = pskc_err(&text, None);
            assert!(msg.contains(want), "{to}: {msg}");
            assert!(!msg.contains("MTIzNDU2"), "{msg}");
        }
        // The SHA1 spellings vendors use.
        let sha1 = base.replace("HMAC-SHA256", "HMAC-SHA-1").replace(
            "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=",
            "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=",
        );
        assert_eq!(parse_pskc(&sha1, None).unwrap()[0].algorithm, Algorithm::Sha1);
    }

    #[test]
    fn pskc_truncated_or_foreign_xml_is_refused() {
        let msg = pskc_err(fixture!("truncated.pskcxml"), None);
        assert!(msg.starts_with("the file: it is not well-formed XML: "), "{msg}");
        let msg = pskc_err("<html><body/></html>", None);
        assert!(msg.starts_with("the file: it is XML but not PSKC"), "{msg}");
        let msg = pskc_err("<KeyContainer Version=\"1.0\"><KeyPackage/></KeyContainer>", None);
        assert!(msg.contains("not PSKC"), "no namespace: {msg}");
        let msg = pskc_err(&format!("<KeyContainer Version=\"2.0\" xmlns=\"{PSKC_NS}\"/>"), None);
        assert_eq!(msg, "KeyContainer: Version 2.0 is not supported; only 1.0 (RFC 6030)");
        let msg = pskc_err(&format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\"/>"), None);
        assert_eq!(msg, "KeyContainer: it has no KeyPackage");
        let msg = pskc_err(
            &format!("<KeyContainer xmlns=\"{PSKC_NS}\"><KeyPackage/></KeyContainer>"),
            None,
        );
        assert_eq!(msg, "KeyPackage 1: it has no Key");
    }

    #[test]
    fn pskc_doctype_and_entities_are_refused() {
        let msg = pskc_err(fixture!("doctype-entity.pskcxml"), None);
        assert_eq!(
            msg,
            "the file: it has a DOCTYPE; PSKC files have none, and entities are never expanded, so it is refused"
        );
        // Even an empty internal subset, or a bare entity reference without a DOCTYPE.
        let figure3 = fixture!("rfc6030-figure3.pskcxml");
        let with_doctype = figure3.replacen(
            "<KeyContainer",
            "<!DOCTYPE KeyContainer SYSTEM \"http://example.invalid/x.dtd\">\n<KeyContainer",
            1,
        );
        assert!(pskc_err(&with_doctype, None).contains("DOCTYPE"));
        let with_entity = figure3.replace(">987654321<", ">&xxe;<");
        let msg = pskc_err(&with_entity, None);
        assert!(msg.starts_with("the file: it is not well-formed XML"), "{msg}");
    }

    // ----- Counters, namespaces, nesting ---------------------------------------------

    #[test]
    fn counters_above_the_secret_files_limit_are_refused_with_their_entry() {
        let row = |c: &str| {
            format!("{CSV_HEADER}\nalice,fob,hotp,JBSWY3DPEHPK3PXP,,,,1\nbob,fob,hotp,JBSWY3DPEHPK3PXP,,,,{c}\n")
        };
        assert_eq!(parse_csv(&row("4611686018427387904")).unwrap()[1].counter, MAX_COUNTER);
        for c in ["4611686018427387905", "18446744073709551615", "99999999999999999999"] {
            assert_eq!(
                csv_err(&row(c)),
                "line 3: the counter must be a whole number from 0 to 4611686018427387904",
                "{c}"
            );
        }
        // A TOTP row's counter is checked too, though unused.
        let totp = format!("{CSV_HEADER}\nalice,fob,totp,JBSWY3DPEHPK3PXP,,,,18446744073709551615\n");
        assert!(csv_err(&totp).starts_with("line 2: the counter must be"));

        let base = fixture!("totp-and-hotp.pskcxml");
        let at = |c: &str| {
            base.replace(
                "<pskc:PlainValue>42</pskc:PlainValue>",
                &format!("<pskc:PlainValue>{c}</pskc:PlainValue>"),
            )
        };
        assert_eq!(
            parse_pskc(&at("4611686018427387904"), None).unwrap()[1].counter,
            MAX_COUNTER
        );
        assert_eq!(
            pskc_err(&at("4611686018427387905"), None),
            "KeyPackage 2 (Id 987654): Data/Counter: the counter must be a whole number from 0 to 4611686018427387904"
        );
        assert_eq!(
            pskc_err(&at("18446744073709551615"), None),
            "KeyPackage 2 (Id 987654): Data/Counter: the counter must be a whole number from 0 to 4611686018427387904"
        );
    }

    /// RFC 6030 figure 6 (with a UserId) with `extra` put into its Secret before the
    /// EncryptedValue.
    fn figure6_with(extra: &str) -> String {
        let text = fixture!("rfc6030-figure6-userid.pskcxml");
        let out = text.replacen("<EncryptedValue>", &format!("{extra}<EncryptedValue>"), 1);
        assert_ne!(out, text);
        out
    }

    /// A plain 160-bit key that is not the figure's ("AAAA..."), base64.
    const OTHER_KEY_B64: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUE=";

    #[test]
    fn pskc_plain_value_next_to_an_encrypted_one_is_refused() {
        let psk = rfc_psk();
        // In a foreign namespace: a reader going by local names took it, unauthenticated.
        let foreign = figure6_with(&format!(
            "<x:PlainValue xmlns:x=\"urn:not-pskc\">{OTHER_KEY_B64}</x:PlainValue>"
        ));
        for key in [Some(&psk[..]), None] {
            let msg = pskc_err(&foreign, key);
            assert_eq!(
                msg,
                "KeyPackage 1 (Id 12345678): Secret holds a PlainValue in namespace urn:not-pskc, not in \
                 urn:ietf:params:xml:ns:keyprov:pskc; the file is refused rather than guess which value counts"
            );
        }
        // In no namespace at all.
        let none = figure6_with(&format!("<PlainValue xmlns=\"\">{OTHER_KEY_B64}</PlainValue>"));
        let msg = pskc_err(&none, Some(&psk));
        assert!(msg.contains("Secret holds a PlainValue in no namespace"), "{msg}");
        // In the PSKC namespace, next to the encrypted value: which one counts is unclear.
        let both = figure6_with(&format!("<PlainValue>{OTHER_KEY_B64}</PlainValue>"));
        for key in [Some(&psk[..]), None] {
            assert_eq!(
                pskc_err(&both, key),
                "KeyPackage 1 (Id 12345678): Data/Secret holds both a PlainValue and an EncryptedValue; the plain \
                 one is not protected by the encryption or its MAC, so the file is refused"
            );
        }
        // Two of either.
        let two = fixture!("rfc6030-figure3.pskcxml").replacen(
            "</PlainValue>",
            &format!("</PlainValue><PlainValue>{OTHER_KEY_B64}</PlainValue>"),
            1,
        );
        assert_eq!(
            pskc_err(&two, None),
            "KeyPackage 1 (Id 12345678): Secret holds 2 PlainValue elements; one is allowed"
        );
        // The untampered file still imports.
        let r = parse_pskc(fixture!("rfc6030-figure6-userid.pskcxml"), Some(&psk)).unwrap();
        assert_eq!(r[0].key.as_slice(), SEED20);
    }

    #[test]
    fn pskc_with_a_pre_shared_key_refuses_plain_keys() {
        let psk = rfc_psk();
        // A whole plain file where an encrypted one was expected ...
        for plain in [fixture!("rfc6030-figure3.pskcxml"), fixture!("totp-and-hotp.pskcxml")] {
            assert!(parse_pskc(plain, None).is_ok());
            let msg = pskc_err(plain, Some(&psk));
            assert!(msg.contains("the file mixes encrypted and plain keys"), "{msg}");
            assert!(msg.starts_with("KeyPackage 1 "), "{msg}");
        }
        // ... or a plain package added to an encrypted file.
        let text = fixture!("rfc6030-figure6-userid.pskcxml");
        let second = "<KeyPackage><DeviceInfo><SerialNo>666</SerialNo></DeviceInfo>\
                      <Key Id=\"666\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\">\
                      <Data><Secret><PlainValue>QUFBQUFBQUFBQUFBQUFBQUFBQUE=</PlainValue></Secret></Data>\
                      <UserId>alice</UserId></Key></KeyPackage>";
        let mixed = text.replace("</KeyContainer>", &format!("{second}</KeyContainer>"));
        let err = parse_pskc(&mixed, Some(&psk)).unwrap_err();
        assert_eq!(err.entry, "KeyPackage 2 (Id 666)");
        assert!(err.why.contains("the file mixes encrypted and plain keys"), "{err}");
    }

    #[test]
    fn pskc_elements_read_must_be_in_their_namespace() {
        let base = fixture!("totp-and-hotp.pskcxml");
        let foreign = |from: &str, to: &str| {
            let t = base.replacen(from, to, 1);
            assert_ne!(t, base, "{from}");
            pskc_err(&t, None)
        };
        let cases = [
            (
                "<pskc:PlainValue>42</pskc:PlainValue>",
                "<x:PlainValue xmlns:x=\"urn:x\">7</x:PlainValue>",
                "KeyPackage 2 (Id 987654): Counter holds a PlainValue in namespace urn:x",
            ),
            (
                "<pskc:Counter>",
                "<x:Counter xmlns:x=\"urn:x\"><x:PlainValue>7</x:PlainValue></x:Counter><pskc:Counter>",
                "KeyPackage 2 (Id 987654): Data holds a Counter in namespace urn:x",
            ),
            (
                "<pskc:TimeInterval>",
                "<TimeInterval><pskc:PlainValue>60</pskc:PlainValue></TimeInterval><pskc:TimeInterval>",
                "KeyPackage 1 (Id TT0000001#1): Data holds a TimeInterval in no namespace",
            ),
            (
                "<pskc:UserId>alice</pskc:UserId>",
                "<x:UserId xmlns:x=\"urn:x\">root</x:UserId><pskc:UserId>alice</pskc:UserId>",
                "Key holds a UserId in namespace urn:x",
            ),
            (
                "<pskc:SerialNo>TT0000001</pskc:SerialNo>",
                "<x:SerialNo xmlns:x=\"urn:x\">1</x:SerialNo>",
                "DeviceInfo holds a SerialNo in namespace urn:x",
            ),
            (
                "<pskc:ResponseFormat Length=\"8\"",
                "<x:ResponseFormat xmlns:x=\"urn:x\" Length=\"6\"/><pskc:ResponseFormat Length=\"8\"",
                "AlgorithmParameters holds a ResponseFormat in namespace urn:x",
            ),
            (
                "<pskc:Suite>HMAC-SHA256</pskc:Suite>",
                "<x:Suite xmlns:x=\"urn:x\">HMAC-SHA1</x:Suite><pskc:Suite>HMAC-SHA256</pskc:Suite>",
                "AlgorithmParameters holds a Suite in namespace urn:x",
            ),
            (
                "<pskc:KeyUsage>OTP</pskc:KeyUsage>",
                "<x:KeyUsage xmlns:x=\"urn:x\">OTP</x:KeyUsage>",
                "Policy holds a KeyUsage in namespace urn:x",
            ),
            (
                "<pskc:Key Id=\"987654\"",
                "<x:Key xmlns:x=\"urn:x\"/><pskc:Key Id=\"987654\"",
                "KeyPackage 2: KeyPackage holds a Key in namespace urn:x",
            ),
            (
                "<pskc:KeyPackage>",
                "<KeyPackage/><pskc:KeyPackage>",
                "KeyContainer: KeyContainer holds a KeyPackage in no namespace",
            ),
            (
                "<pskc:UserId>alice</pskc:UserId>",
                "<pskc:UserId>alice</pskc:UserId><pskc:UserId>root</pskc:UserId>",
                "Key holds 2 UserId elements; one is allowed",
            ),
        ];
        for (from, to, want) in cases {
            let msg = foreign(from, to);
            assert!(msg.contains(want), "{to}: {msg}");
        }

        // xmlenc's elements in xmlenc's namespace, the ValueMAC in PSKC's.
        let psk = rfc_psk();
        let text = fixture!("rfc6030-figure6-userid.pskcxml");
        let tampered = [
            (
                text.replacen("<xenc:CipherValue>", "<CipherValue>", 2).replacen("</xenc:CipherValue>", "</CipherValue>", 2),
                "CipherData holds a CipherValue in namespace urn:ietf:params:xml:ns:keyprov:pskc, not in http://www.w3.org/2001/04/xmlenc#",
            ),
            (
                text.replace("<ValueMAC>", "<x:ValueMAC xmlns:x=\"urn:x\">").replace("</ValueMAC>", "</x:ValueMAC>"),
                "Secret holds a ValueMAC in namespace urn:x",
            ),
            (
                text.replace("<ds:KeyName>Pre-shared-key</ds:KeyName>", "<KeyName>Pre-shared-key</KeyName>"),
                "KeyContainer: EncryptionKey holds a KeyName in namespace urn:ietf:params:xml:ns:keyprov:pskc",
            ),
        ];
        for (t, want) in tampered {
            let msg = pskc_err(&t, Some(&psk));
            assert!(msg.contains(want), "{msg}");
        }
        // Prefixes do not matter: the same file with other prefixes imports.
        let renamed = text.replace("xmlns:xenc=", "xmlns:e=").replace("xenc:", "e:").replace(
            "xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\"",
            "xmlns:p=\"urn:ietf:params:xml:ns:keyprov:pskc\"",
        );
        let renamed = prefix_unprefixed(&renamed, "p");
        assert_eq!(parse_pskc(&renamed, Some(&psk)).unwrap()[0].key.as_slice(), SEED20);
    }

    /// Gives every element without a prefix the prefix `p`.
    fn prefix_unprefixed(text: &str, p: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('<') {
            out.push_str(&rest[..i]);
            rest = &rest[i..];
            let (open, name_start) = if rest.starts_with("</") { ("</", 2) } else { ("<", 1) };
            let name: String = rest[name_start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == ':')
                .collect();
            if !name.is_empty() && !name.contains(':') && rest[name_start..].starts_with(|c: char| c.is_alphabetic()) {
                out.push_str(&format!("{open}{p}:"));
                rest = &rest[name_start..];
            } else {
                out.push_str(open);
                rest = &rest[name_start..];
            }
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn pskc_value_mac_covers_the_key_only_so_a_changed_user_id_still_checks() {
        let psk = rfc_psk();
        let text = fixture!("rfc6030-figure6-userid.pskcxml");
        let r = parse_pskc(text, Some(&psk)).unwrap();
        assert_eq!((r[0].user.as_str(), r[0].mac_checked), ("alice", true));
        // What the MAC does not cover: the user (and the device name, the parameters).
        let to_root = text
            .replace(">alice<", ">root<")
            .replace("987654321", "1")
            .replace("Length=\"8\"", "Length=\"6\"");
        let r = parse_pskc(&to_root, Some(&psk)).unwrap();
        assert_eq!(
            (r[0].user.as_str(), r[0].name.as_str(), r[0].digits, r[0].mac_checked),
            ("root", "token 1", 6, true)
        );
        // No MAC checked: plain keys, CSV rows.
        assert!(!parse_pskc(fixture!("rfc6030-figure3.pskcxml"), None).unwrap()[0].mac_checked);
        assert!(!parse_csv(fixture!("good.csv")).unwrap()[0].mac_checked);
    }

    #[test]
    fn pskc_encrypted_value_without_its_value_mac_is_refused_when_the_file_has_a_mac_method() {
        let text = fixture!("rfc6030-figure6-userid.pskcxml");
        let start = text.find("<ValueMAC>").unwrap();
        let end = text.find("</ValueMAC>").unwrap() + "</ValueMAC>".len();
        let no_value_mac = format!("{}{}", &text[..start], &text[end..]);
        assert_eq!(
            pskc_err(&no_value_mac, Some(&rfc_psk())),
            "KeyPackage 1 (Id 12345678): the secret has no ValueMAC, though the file has a MACMethod: it may have \
             been altered"
        );
    }

    fn nested(n: usize) -> String {
        format!(
            "<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">{}{}</KeyContainer>",
            "<a>".repeat(n),
            "</a>".repeat(n)
        )
    }

    #[test]
    fn pskc_deeply_nested_elements_are_refused_before_parsing() {
        let want = "the file: its elements are nested more than 64 deep; a token file needs about 10";
        for n in [100, 2_000, 50_000] {
            assert_eq!(pskc_err(&nested(n), None), want, "{n}");
        }
        // Unclosed, and self-closing at the bottom.
        let open = format!("<KeyContainer xmlns=\"{PSKC_NS}\">{}", "<a x='1'>".repeat(50_000));
        assert_eq!(pskc_err(&open, None), want);
        // 63 inside the container is fine (then refused for what it is).
        assert_eq!(pskc_err(&nested(63), None), "KeyContainer: it has no KeyPackage");
        assert_eq!(pskc_err(&nested(64), None), want);
        // What is not an element is not counted: comments, CDATA, processing instructions,
        // `/>`, and `>` or `/>` inside quoted attribute values.
        let flat = format!(
            "<?xml version=\"1.0\"?><KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\
             <!-- {} --><![CDATA[{}]]><?pi {} ?>{}{}{}</KeyContainer>",
            "<a>".repeat(100),
            "<a>".repeat(100),
            "<a>".repeat(100),
            "<a/>".repeat(100),
            "<a x=\"/>\" y='>'></a>".repeat(100),
            "<a b='/>'>".repeat(60) + &"</a>".repeat(60)
        );
        assert_eq!(pskc_err(&flat, None), "KeyContainer: it has no KeyPackage");
        // The real files pass.
        for f in [fixture!("rfc6030-figure3.pskcxml"), fixture!("totp-and-hotp.pskcxml")] {
            check_markup(f).unwrap();
        }
    }

    /// [`parse_pskc`] of `text`, which must be refused within half a second (on a thread,
    /// so a parse that takes hours fails the test instead of hanging it); the message.
    fn refused_fast(text: String) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let r = parse_pskc(&text, None).map(|_| ()).map_err(|e| e.to_string());
            let _ = tx.send((r, start.elapsed()));
        });
        match rx.recv_timeout(std::time::Duration::from_millis(500)) {
            Ok((Err(msg), took)) => {
                assert!(took < std::time::Duration::from_millis(500), "{took:?}");
                msg
            }
            Ok((Ok(()), _)) => panic!("accepted"),
            Err(_) => panic!("still parsing after half a second"),
        }
    }

    #[test]
    fn pskc_with_thousands_of_namespace_declarations_or_attributes_is_refused_fast_before_parsing() {
        // Elements nested 60 deep, each declaring 50 namespaces, then 48 000 elements each
        // declaring one more: the parser copies every namespace in scope into each element
        // that declares its own, comparing each with the others — hours for these 0.8 MB.
        let mut hostile = format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\n");
        for level in 0..60 {
            hostile.push_str("<a");
            for i in 0..50 {
                hostile.push_str(&format!(" xmlns:n{level}x{i}=\"u\""));
            }
            hostile.push_str(">\n");
        }
        hostile.push_str(&"<b xmlns:z=\"u\"/>".repeat(48_000));
        hostile.push_str(&"</a>".repeat(60));
        hostile.push_str("</KeyContainer>");
        assert!(
            hostile.len() > 750_000 && hostile.len() < MAX_INPUT_BYTES,
            "{}",
            hostile.len()
        );
        assert_eq!(
            refused_fast(hostile),
            "the file: its element at line 3 has more than 64 namespace declarations in scope (xmlns \
             attributes on it and on the elements it is in); a token file needs about 5: ask the vendor for a \
             new export"
        );
        // The same within the attribute limit: 60 nested elements declaring 2 each.
        let mut nested_ns = format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\n");
        for level in 0..60 {
            nested_ns.push_str(&format!("<a xmlns:n{level}=\"u\" xmlns:m{level}=\"u\">\n"));
        }
        nested_ns.push_str(&"<b xmlns:z=\"u\"/>".repeat(20_000));
        nested_ns.push_str(&"</a>".repeat(60));
        nested_ns.push_str("</KeyContainer>");
        assert_eq!(
            refused_fast(nested_ns),
            "the file: its element at line 33 has more than 64 namespace declarations in scope (xmlns \
             attributes on it and on the elements it is in); a token file needs about 5: ask the vendor for a \
             new export"
        );
        // One element with 30 000 attributes: the parser compares each with all the others.
        let mut attrs = format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\n<a");
        for i in 0..30_000 {
            attrs.push_str(&format!(" a{i}=\"\""));
        }
        attrs.push_str("/></KeyContainer>");
        assert_eq!(
            refused_fast(attrs),
            "the file: its element at line 2 has more than 64 attributes (namespace declarations included); \
             a token file has at most a few: ask the vendor for a new export"
        );
    }

    #[test]
    fn pskc_attribute_and_namespace_limits_leave_room_for_real_files() {
        // 64 attributes on an element, 64 namespaces in scope: read (then refused for what
        // the file is not).
        let attrs: String = (0..63).map(|i| format!(" a{i}='>'")).collect();
        let text = format!("<KeyContainer xmlns=\"{PSKC_NS}\"><a{attrs}/></KeyContainer>");
        assert_eq!(pskc_err(&text, None), "KeyContainer: it has no KeyPackage");
        let decls: String = (0..63).map(|i| format!(" xmlns:n{i}=\"u\"")).collect();
        let text = format!("<KeyContainer xmlns=\"{PSKC_NS}\"{decls}><a/></KeyContainer>");
        assert_eq!(pskc_err(&text, None), "KeyContainer: it has no KeyPackage");
        // One more is refused; `xmlns` and `=` inside quoted values, comments, CDATA are not
        // counted.
        let text = format!("<KeyContainer xmlns=\"{PSKC_NS}\"{decls}><a xmlns:x='u'/></KeyContainer>");
        assert!(pskc_err(&text, None).contains("more than 64 namespace declarations in scope"));
        let quoted = format!(
            "<KeyContainer xmlns=\"{PSKC_NS}\"><a b='{}' c=\"{}\"/><!-- {} --><![CDATA[{}]]></KeyContainer>",
            "xmlns=".repeat(100),
            "xmlns:x='' =".repeat(100),
            "<a xmlns:x='u'>".repeat(100),
            "<a xmlns:x='u'>".repeat(100)
        );
        assert_eq!(pskc_err(&quoted, None), "KeyContainer: it has no KeyPackage");
        // Declarations are counted in scope, not in the file: a vendor export that declares
        // the namespaces again in each of 2 000 KeyPackages is read.
        let mut many = format!("<KeyContainer Version=\"1.0\" xmlns=\"{PSKC_NS}\">\n");
        for i in 0..2_000 {
            many.push_str(&format!(
                "<KeyPackage xmlns=\"{PSKC_NS}\" xmlns:ds=\"{DS_NS}\" xmlns:xenc=\"{XENC_NS}\">\
                 <DeviceInfo><SerialNo>{i}</SerialNo></DeviceInfo>\
                 <Key Id=\"{i}\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:hotp\"><Data><Secret>\
                 <PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue></Secret></Data>\
                 <UserId>user{i}</UserId></Key></KeyPackage>\n"
            ));
        }
        many.push_str("</KeyContainer>\n");
        assert!(many.len() < MAX_INPUT_BYTES, "{}", many.len());
        assert_eq!(parse_pskc(&many, None).unwrap().len(), 2_000);
        for f in [
            fixture!("rfc6030-figure2.pskcxml"),
            fixture!("rfc6030-figure3.pskcxml"),
            fixture!("rfc6030-figure6.pskcxml"),
            fixture!("totp-and-hotp.pskcxml"),
        ] {
            check_markup(f).unwrap();
        }
    }
}
