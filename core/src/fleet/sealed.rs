//! The fleet vault's record: a user's keys (a secret file's text) sealed with
//! XChaCha20-Poly1305 under the fleet's vault key, bound to the namespace and the user.
//!
//! Owns: the key ring (`fleet.vault_key_file`: 64 hex digits a line, the first the key new
//! records are sealed with, later ones older keys still opened), the record's text
//! (FILEFORMAT.md, "The fleet vault"), sealing and opening.
//! Never: prints, logs or returns a key of the ring, or a record's plaintext except to the
//! caller that opens it; opens a record bound to another user or namespace; accepts a record
//! whose tag does not verify (no fail-open: every failure is an `Err`).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The most keys a ring may hold (a rotation needs two; a few more for slow rollouts).
pub const MAX_RING_KEYS: usize = 16;
/// The most plaintext (a secret file's text) a record seals: with the nonce, the tag and
/// base64, a record stays well under the fleet's document limit.
pub const MAX_SEALED_PLAIN: usize = 40 * 1024;
const RECORD_VERSION: u32 = 1;
const AAD_LABEL: &[u8] = b"pam_totp fleet vault v1\0";
const KEY_ID_LABEL: &[u8] = b"pam_totp fleet vault key id\0";

/// One key of the ring and its id (the first 8 bytes of SHA-256 of a label and the key, in
/// hex: a record names the key that sealed it without revealing anything of it).
struct RingKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

/// The fleet's vault keys, newest (the one new records are sealed with) first.
pub struct Ring {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only, never a key.
        write!(f, "Ring {:?}", self.ids())
    }
}

/// The id of a vault key (see [`RingKey`]).
pub fn key_id(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(KEY_ID_LABEL);
    h.update(key);
    data_encoding::HEXLOWER.encode(&h.finalize()[..8])
}

impl Ring {
    /// Parses a ring file's text: one key per line as 64 hex digits (32 random bytes, e.g.
    /// `openssl rand -hex 32`); blank lines and lines starting with `#` are skipped. At
    /// least one key, at most [`MAX_RING_KEYS`], no key twice. Errors name the line, never
    /// its text.
    pub fn parse(text: &str) -> Result<Ring, String> {
        let mut keys: Vec<RingKey> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut key = Zeroizing::new([0u8; 32]);
            let ok = line.len() == 64
                && line.is_ascii()
                && data_encoding::HEXLOWER_PERMISSIVE
                    .decode_mut(line.as_bytes(), &mut key[..])
                    .is_ok();
            if !ok {
                return Err(format!(
                    "line {} is not a key (64 hex digits, e.g. from `openssl rand -hex 32`)",
                    n + 1
                ));
            }
            if key.iter().all(|&b| b == 0) {
                return Err(format!("line {} is an all-zero key", n + 1));
            }
            let id = key_id(&key);
            if keys.iter().any(|k| k.id == id) {
                return Err(format!("line {} repeats a key of an earlier line", n + 1));
            }
            if keys.len() == MAX_RING_KEYS {
                return Err(format!("more than {MAX_RING_KEYS} keys"));
            }
            keys.push(RingKey { id, key });
        }
        if keys.is_empty() {
            return Err("no key (64 hex digits a line, e.g. from `openssl rand -hex 32`)".into());
        }
        Ok(Ring { keys })
    }

    /// The ids of the ring's keys, the current one first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// The id of the key new records are sealed with.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }
}

/// A sealed record as stored (after the document's write id line).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    version: u32,
    key_id: String,
    nonce: String,
    sealed: String,
}

/// Why a record could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// Not a record of this format.
    Malformed(String),
    /// Sealed with a key this host's ring does not hold (its id).
    UnknownKey(String),
    /// The tag does not verify: the record was changed, sealed for another user or
    /// namespace, or with another key that has the same id (never in practice).
    Forged,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::Malformed(why) => write!(f, "the sealed record is malformed: {why}"),
            SealError::UnknownKey(id) => write!(
                f,
                "the record is sealed with vault key {id}, which this host's fleet.vault_key_file does not hold"
            ),
            SealError::Forged => write!(
                f,
                "the sealed record does not verify (changed, or sealed for another user or namespace)"
            ),
        }
    }
}

/// The associated data: the label, then the namespace, the user and the key id, each as an
/// 8-byte big-endian length and its bytes. A record copied to another user's key, or
/// another namespace's, does not open.
fn aad(namespace: &str, user: &str, key_id: &str) -> Vec<u8> {
    let mut a = AAD_LABEL.to_vec();
    for part in [namespace.as_bytes(), user.as_bytes(), key_id.as_bytes()] {
        a.extend_from_slice(&(part.len() as u64).to_be_bytes());
        a.extend_from_slice(part);
    }
    a
}

/// Seals `plain` (a secret file's text) for `user` of `namespace` with the ring's current
/// key and a fresh random nonce: the record's text.
pub fn seal(ring: &Ring, namespace: &str, user: &str, plain: &[u8]) -> Result<String, String> {
    if plain.len() > MAX_SEALED_PLAIN {
        return Err(format!(
            "the keys are {} bytes, more than the fleet vault holds ({MAX_SEALED_PLAIN})",
            plain.len()
        ));
    }
    let k = &ring.keys[0];
    let mut nonce = [0u8; 24];
    getrandom::getrandom(&mut nonce).map_err(|e| format!("the OS random source failed: {e}"))?;
    let cipher = XChaCha20Poly1305::new_from_slice(&k.key[..]).map_err(|_| "bad key length".to_string())?;
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad(namespace, user, &k.id),
            },
        )
        .map_err(|_| "sealing failed".to_string())?;
    let rec = Record {
        version: RECORD_VERSION,
        key_id: k.id.clone(),
        nonce: data_encoding::HEXLOWER.encode(&nonce),
        sealed: data_encoding::BASE64.encode(&sealed),
    };
    toml::to_string(&rec).map_err(|e| e.to_string())
}

/// A record opened.
pub struct Opened {
    /// The secret file's text.
    pub plain: Zeroizing<String>,
    /// The id of the key that sealed it.
    pub key_id: String,
    /// Whether that is the ring's current key (else `pam-totp rekey` seals it again).
    pub current: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opened {{ key_id: {}, current: {} }}", self.key_id, self.current)
    }
}

fn parse_record(text: &[u8]) -> Result<Record, SealError> {
    let text = std::str::from_utf8(text).map_err(|_| SealError::Malformed("not UTF-8".into()))?;
    let rec: Record = toml::from_str(text).map_err(|e| SealError::Malformed(e.message().to_string()))?;
    if rec.version != RECORD_VERSION {
        return Err(SealError::Malformed(format!("unknown version {}", rec.version)));
    }
    Ok(rec)
}

/// The id of the key a record (its text) names, if it is a record.
pub fn record_key_id(text: &[u8]) -> Option<String> {
    parse_record(text).ok().map(|r| r.key_id)
}

/// Opens a record (its text, without the write id line) of `user` of `namespace`.
pub fn open(ring: &Ring, namespace: &str, user: &str, text: &[u8]) -> Result<Opened, SealError> {
    let rec = parse_record(text)?;
    let Some((i, k)) = ring.keys.iter().enumerate().find(|(_, k)| k.id == rec.key_id) else {
        return Err(SealError::UnknownKey(crate::text::log_name(&rec.key_id)));
    };
    let mut nonce = [0u8; 24];
    let nonce_ok = rec.nonce.len() == 48
        && data_encoding::HEXLOWER
            .decode_mut(rec.nonce.as_bytes(), &mut nonce)
            .is_ok();
    if !nonce_ok {
        return Err(SealError::Malformed("the nonce is not 48 hex digits".into()));
    }
    let sealed = data_encoding::BASE64
        .decode(rec.sealed.as_bytes())
        .map_err(|_| SealError::Malformed("the sealed text is not base64".into()))?;
    let cipher = XChaCha20Poly1305::new_from_slice(&k.key[..]).map_err(|_| SealError::Forged)?;
    let plain = cipher
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: &aad(namespace, user, &k.id),
            },
        )
        .map_err(|_| SealError::Forged)?;
    let plain = Zeroizing::new(plain);
    let text = std::str::from_utf8(&plain).map_err(|_| SealError::Malformed("the keys are not UTF-8".into()))?;
    Ok(Opened {
        plain: Zeroizing::new(text.to_string()),
        key_id: k.id.clone(),
        current: i == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const K2: &str = "2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c";

    #[test]
    fn a_record_opens_only_for_its_user_namespace_and_a_ring_with_its_key() {
        let ring = Ring::parse(&format!("# the fleet's vault keys\n{K1}\n")).unwrap();
        let plain = b"version = 2\n[[device]]\nname = \"phone\"\nsecret = \"JBSWY3DPEHPK3PXP\"\n";
        let rec = seal(&ring, "prod", "alice", plain).unwrap();
        assert!(!rec.contains("JBSWY3DPEHPK3PXP") && !rec.contains("phone"), "{rec}");
        let o = open(&ring, "prod", "alice", rec.as_bytes()).unwrap();
        assert_eq!(o.plain.as_bytes(), plain);
        assert!(o.current);
        assert_eq!(o.key_id, ring.current_id());
        // Two seals of the same keys differ (a fresh nonce each time).
        assert_ne!(seal(&ring, "prod", "alice", plain).unwrap(), rec);
        // Bound to the user and the namespace.
        assert_eq!(
            open(&ring, "prod", "bob", rec.as_bytes()).unwrap_err(),
            SealError::Forged
        );
        assert_eq!(
            open(&ring, "dev", "alice", rec.as_bytes()).unwrap_err(),
            SealError::Forged
        );
        // Another key: refused by its id, never tried.
        let other = Ring::parse(K2).unwrap();
        assert!(matches!(
            open(&other, "prod", "alice", rec.as_bytes()),
            Err(SealError::UnknownKey(id)) if id == ring.current_id()
        ));
        // Any changed byte of the sealed text fails to verify or to parse.
        let r: toml::Table = toml::from_str(&rec).unwrap();
        let sealed = data_encoding::BASE64
            .decode(r["sealed"].as_str().unwrap().as_bytes())
            .unwrap();
        for i in 0..sealed.len() {
            let mut s = sealed.clone();
            s[i] ^= 1;
            let t = rec.replace(r["sealed"].as_str().unwrap(), &data_encoding::BASE64.encode(&s));
            assert_eq!(
                open(&ring, "prod", "alice", t.as_bytes()).unwrap_err(),
                SealError::Forged
            );
        }
        // A record claiming another key id of the same ring does not verify either.
        let both = Ring::parse(&format!("{K2}\n{K1}\n")).unwrap();
        let t = rec.replace(ring.current_id(), both.current_id());
        assert_eq!(
            open(&both, "prod", "alice", t.as_bytes()).unwrap_err(),
            SealError::Forged
        );
    }

    #[test]
    fn a_rotation_opens_old_records_and_seals_new_ones_with_the_first_key() {
        let old = Ring::parse(K1).unwrap();
        let rec = seal(&old, "ns", "alice", b"x").unwrap();
        let rotated = Ring::parse(&format!("{K2}\n{K1}\n")).unwrap();
        let o = open(&rotated, "ns", "alice", rec.as_bytes()).unwrap();
        assert!(!o.current);
        assert_eq!(o.key_id, old.current_id());
        let again = seal(&rotated, "ns", "alice", o.plain.as_bytes()).unwrap();
        assert_eq!(record_key_id(again.as_bytes()).unwrap(), rotated.current_id());
        assert!(open(&rotated, "ns", "alice", again.as_bytes()).unwrap().current);
        // The old line dropped: the new record still opens, the old one no longer does.
        let new_only = Ring::parse(K2).unwrap();
        assert!(open(&new_only, "ns", "alice", again.as_bytes()).is_ok());
        assert!(matches!(
            open(&new_only, "ns", "alice", rec.as_bytes()),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn ring_files_are_checked_line_by_line_without_echoing_them() {
        for (bad, line) in [
            ("", 0),
            ("# nothing\n\n", 0),
            (&K1[..63], 1),
            (&format!("{K1}0"), 1),
            (&format!("{K1}\nzz{}", &K2[2..]), 2),
            (&format!("{K1}\n{K1}"), 2),
            (&"00".repeat(32), 1),
        ] {
            let e = Ring::parse(bad).unwrap_err();
            if line > 0 {
                assert!(e.starts_with(&format!("line {line} ")), "{e}");
            }
            assert!(!e.contains(&K1[..16]) && !e.contains(&K2[..16]), "{e}");
        }
        let many: String = (1..=17).map(|i| format!("{:064x}\n", i)).collect();
        assert!(Ring::parse(&many).unwrap_err().contains("more than 16"));
        let r = Ring::parse(&format!("  {}  \n", K1.to_uppercase())).unwrap();
        assert_eq!(r.ids(), vec![key_id(&[1u8; 32])]);
        assert!(!format!("{r:?}").contains(&K1[..16]));
    }

    #[test]
    fn oversized_keys_and_malformed_records_are_refused() {
        let ring = Ring::parse(K1).unwrap();
        assert!(seal(&ring, "n", "u", &vec![b'a'; MAX_SEALED_PLAIN + 1]).is_err());
        for bad in [
            "",
            "version = 2\nkey_id = \"a\"\nnonce = \"b\"\nsealed = \"c\"\n",
            "version = 1\nkey_id = \"a\"\nnonce = \"b\"\n",
            "version = 1\nkey_id = \"a\"\nnonce = \"b\"\nsealed = \"c\"\nextra = 1\n",
        ] {
            assert!(
                matches!(open(&ring, "n", "u", bad.as_bytes()), Err(SealError::Malformed(_))),
                "{bad}"
            );
        }
        let rec = seal(&ring, "n", "u", b"k").unwrap();
        let r: toml::Table = toml::from_str(&rec).unwrap();
        let short = rec.replace(r["nonce"].as_str().unwrap(), "00");
        assert!(matches!(
            open(&ring, "n", "u", short.as_bytes()),
            Err(SealError::Malformed(_))
        ));
    }
}
