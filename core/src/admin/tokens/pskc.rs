//! RFC 6030 PSKC documents (see the parent module for what is supported), their AES-128-CBC
//! decryption and MAC check under a pre-shared key.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use roxmltree::{Document, Node, ParsingOptions};
use zeroize::Zeroizing;

use super::*;

pub(super) const PSKC_NS: &str = "urn:ietf:params:xml:ns:keyprov:pskc";
/// XML Encryption: `EncryptionMethod`, `CipherData`, `CipherValue`, `CipherReference`.
pub(super) const XENC_NS: &str = "http://www.w3.org/2001/04/xmlenc#";
/// XML Signature: `KeyName`.
pub(super) const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub(super) const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
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
pub(super) const AES_BLOCK: usize = 16;

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

pub(super) fn xml_error(e: roxmltree::Error) -> TokenError {
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
pub(super) fn check_markup(text: &str) -> Result<(), TokenError> {
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
pub(super) fn namespace_of(node: Node) -> String {
    match node.tag_name().namespace().filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("namespace {}", shown(ns)),
        None => "no namespace".into(),
    }
}

/// The element children of `node` named `name` in namespace `ns`. One named `name` in
/// another namespace (or none) is an error, not skipped: it is a value a reader going by
/// local names would take, placed next to the real one.
pub(super) fn children<'a, 'input: 'a>(
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
pub(super) fn child<'a, 'input: 'a>(
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
pub(super) fn pskc<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    name: &'static str,
) -> Result<Option<Node<'a, 'input>>, String> {
    child(node, PSKC_NS, name)
}

/// Whether `node` has an element child with local name `name`, in any namespace: only to
/// notice what is not supported and refuse it (refusing more is safe).
pub(super) fn has_any(node: Node, name: &str) -> bool {
    node.children().any(|n| n.is_element() && n.tag_name().name() == name)
}

/// All text directly inside `node`, comments skipped. Zeroized on drop: it may be a secret.
pub(super) fn text_of(node: Node) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::new());
    for t in node.children().filter(|n| n.is_text()) {
        s.push_str(t.text().unwrap_or(""));
    }
    s
}

/// The trimmed text of the child `name` in `ns`, when there is one and it is not blank.
pub(super) fn child_text(node: Node, ns: &'static str, name: &'static str) -> Result<Option<String>, String> {
    let Some(n) = child(node, ns, name)? else {
        return Ok(None);
    };
    let t = text_of(n);
    let t = t.trim();
    Ok((!t.is_empty()).then(|| t.to_string()))
}

/// Base64 with whitespace (line breaks, indentation) removed.
pub(super) fn base64_value(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut clean = Zeroizing::new(String::with_capacity(text.len()));
    clean.extend(text.chars().filter(|c| !c.is_whitespace()));
    data_encoding::BASE64.decode(clean.as_bytes()).ok().map(Zeroizing::new)
}

/// How the container says its values are protected (its `EncryptionKey`).
pub(super) enum Protection {
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
pub(super) enum MacAlg {
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
    pub(super) fn verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
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
pub(super) struct Crypto<'p> {
    psk: Option<&'p [u8]>,
    protection: Protection,
    /// The `MACMethod` algorithm (HMAC-SHA1 when there is no `MACMethod`), or why it is
    /// unusable; only an error when a `ValueMAC` needs it.
    mac_alg: Result<MacAlg, String>,
    /// The decrypted `MACMethod/MACKey`, when there is one and a pre-shared key was given.
    pub(super) mac_key: Option<Zeroizing<Vec<u8>>>,
    /// The container has a `MACMethod`: every encrypted value must come with its `ValueMAC`.
    mac_required: bool,
}

impl<'p> Crypto<'p> {
    pub(super) fn new(root: Node, psk: Option<&'p [u8]>) -> Result<Self, TokenError> {
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
    pub(super) fn secret(&self, secret: Node) -> Result<(Zeroizing<Vec<u8>>, bool), String> {
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
pub(super) fn encrypted_bytes(node: Node) -> Result<Vec<u8>, String> {
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

pub(super) fn decrypt_value(node: Node, psk: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let cipher = encrypted_bytes(node)?;
    aes128_cbc_decrypt(psk, &cipher).map_err(str::to_string)
}

/// AES-128-CBC as xmlenc writes it: a 16-byte IV, then the ciphertext, PKCS#7 padded.
pub(super) fn aes128_cbc_decrypt(key: &[u8], iv_and_ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, &'static str> {
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

pub(super) fn pskc_kind(uri: &str) -> Option<TokenKind> {
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
pub(super) fn suite_algorithm(suite: &str) -> Option<Algorithm> {
    let s = suite.trim().to_ascii_uppercase();
    let s = s.strip_prefix("HMAC-").unwrap_or(&s);
    Algorithm::parse(&s.replace('-', ""))
}

/// A `PlainValue` integer of `Data/<name>`, if present.
pub(super) fn data_int(data: Option<Node>, name: &'static str) -> Result<Option<u64>, String> {
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

pub(super) fn key_package(package: Node, index: usize, crypto: &Crypto) -> Result<TokenRecord, TokenError> {
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
pub(super) fn package_record(
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
