//! Backup (recovery) codes: generation, the accepted spellings, salted hashing, matching.
//!
//! Owns: the backup code format. Never stores or logs a code in clear; the secret file
//! holds only `v1$salt$sha256(salt || code)` strings.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Crockford's base32 alphabet (no i, l, o, u): read aloud and typed without confusion.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters in a generated code (50 bits), shown as two groups of five: `7kq2m-x9d4p`.
pub const CODE_LEN: usize = 10;
/// Scratch codes imported from google-authenticator are 8 decimal digits.
pub const IMPORTED_LEN: usize = 8;

/// Generates `n` fresh codes, formatted for display (`xxxxx-xxxxx`).
pub fn generate(n: usize) -> Result<Vec<Zeroizing<String>>, getrandom::Error> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut raw = Zeroizing::new([0u8; CODE_LEN]);
        getrandom::getrandom(raw.as_mut())?;
        let mut s = Zeroizing::new(String::with_capacity(CODE_LEN + 1));
        for (i, b) in raw.iter().enumerate() {
            if i == CODE_LEN / 2 {
                s.push('-');
            }
            // 256 is a multiple of 32, so masking is unbiased.
            s.push(char::from(ALPHABET[usize::from(b & 31)]));
        }
        out.push(s);
    }
    Ok(out)
}

/// Brings a typed answer to canonical form, or None if it cannot be a backup code.
/// Accepts either case, spaces and hyphens anywhere, and o/i/l for 0/1/1 (Crockford).
pub fn normalize(answer: &str) -> Option<Zeroizing<String>> {
    let mut s = Zeroizing::new(String::with_capacity(CODE_LEN));
    for c in answer.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' => continue,
            'o' => '0',
            'i' | 'l' => '1',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        if s.len() == CODE_LEN {
            return None;
        }
        s.push(c);
    }
    let imported = s.len() == IMPORTED_LEN && s.bytes().all(|b| b.is_ascii_digit());
    (s.len() == CODE_LEN || imported).then_some(s)
}

fn digest(salt: &[u8], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.as_bytes());
    h.finalize().into()
}

/// Hashes a canonical code with a fresh 128-bit salt.
pub fn hash(canonical: &str) -> Result<String, getrandom::Error> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)?;
    Ok(format!(
        "v1${}${}",
        data_encoding::HEXLOWER.encode(&salt),
        data_encoding::HEXLOWER.encode(&digest(&salt, canonical))
    ))
}

/// Whether a stored hash string is well formed (checked when a secret file is parsed).
/// Checks the characters only (every login parses the file; decoding every entry there
/// was a tenth of a login): exactly what [`parse_hash`] accepts.
pub fn is_valid_hash(stored: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut parts = stored.split('$');
    parts.next() == Some("v1")
        && parts.next().is_some_and(|s| hex(s, 32))
        && parts.next().is_some_and(|s| hex(s, 64))
        && parts.next().is_none()
}

fn parse_hash(stored: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = stored.split('$');
    if parts.next()? != "v1" {
        return None;
    }
    let salt = data_encoding::HEXLOWER.decode(parts.next()?.as_bytes()).ok()?;
    let h = data_encoding::HEXLOWER.decode(parts.next()?.as_bytes()).ok()?;
    (parts.next().is_none() && salt.len() == 16 && h.len() == 32).then_some((salt, h))
}

/// Returns the index of the stored hash matching `canonical`. Every entry is hashed and
/// compared in constant time, so timing does not reveal which entry (if any) matched.
pub fn find(stored: &[String], canonical: &str) -> Option<usize> {
    let mut found = None;
    for (i, s) in stored.iter().enumerate() {
        if let Some((salt, h)) = parse_hash(s) {
            if bool::from(digest(&salt, canonical).ct_eq(h.as_slice())) {
                found = Some(i);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_distinct_and_in_format() {
        let codes = generate(10).unwrap();
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 11);
            assert_eq!(&c[5..6], "-");
            assert_eq!(normalize(c).unwrap().len(), CODE_LEN);
        }
        let mut v: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 10);
    }

    #[test]
    fn typed_variants_normalize_to_the_same_code() {
        let want = normalize("7kq2m-x9d10").unwrap();
        for typed in ["7KQ2M-X9D10", "7kq2m x9d1o", " 7kq2mx9dlO ", "7kq2m-x9dI0"] {
            assert_eq!(
                normalize(typed).as_deref().map(|s| s.as_str()),
                Some(want.as_str()),
                "{typed}"
            );
        }
        assert!(normalize("7kq2m-x9d1").is_none(), "too short");
        assert!(normalize("7kq2m-x9d100").is_none(), "too long");
        assert!(normalize("7kq2m-x9du0").is_none(), "u is not in the alphabet");
        assert_eq!(
            normalize("1234 5678").unwrap().as_str(),
            "12345678",
            "imported scratch code"
        );
        assert!(normalize("1234567a").is_none(), "8 chars only when all digits");
        assert!(normalize("").is_none());
    }

    #[test]
    fn hash_matches_only_its_code() {
        let a = hash("7kq2mx9d10").unwrap();
        let b = hash("12345678").unwrap();
        assert!(is_valid_hash(&a));
        let stored = vec![a.clone(), b];
        assert_eq!(find(&stored, "7kq2mx9d10"), Some(0));
        assert_eq!(find(&stored, "12345678"), Some(1));
        assert_eq!(find(&stored, "7kq2mx9d11"), None);
        assert_ne!(hash("7kq2mx9d10").unwrap(), a, "salted: same code, different hash");
    }

    #[test]
    fn malformed_hashes_are_detected() {
        for bad in [
            "",
            "v1$",
            "v2$00$00",
            "v1$zz$zz",
            "v1$00112233445566778899aabbccddeeff$00",
        ] {
            assert!(!is_valid_hash(bad), "{bad}");
        }
    }
    #[test]
    fn the_character_check_accepts_exactly_what_decodes() {
        let good = hash(&normalize("7kq2m-x9d10").unwrap()).unwrap();
        let mut cases = vec![
            good.clone(),
            good.to_uppercase(),
            format!("{good}$"),
            String::new(),
            "v1$$".into(),
        ];
        for i in 0..good.len() {
            for c in ['0', 'f', 'g', 'A', '$', ' '] {
                let mut b = good.clone().into_bytes();
                b[i] = c as u8;
                cases.push(String::from_utf8(b).unwrap());
            }
            cases.push(format!("{}{}", &good[..i], &good[i + 1..]));
        }
        for c in cases {
            assert_eq!(is_valid_hash(&c), parse_hash(&c).is_some(), "{c}");
        }
    }
}
