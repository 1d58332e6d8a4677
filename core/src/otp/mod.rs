//! HOTP (RFC 4226) and TOTP (RFC 6238) as pure functions of (key, counter | time, params).
//!
//! Owns: computing a code and comparing an answer to it. Never reads the clock, a file or
//! the environment; never formats a code into anything but the returned buffer.

pub mod backup;
pub mod enroll;
pub mod qr;

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The HMAC hash function of a secret (the otpauth `algorithm` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// Parameters of one TOTP credential. Constructed only through [`Params::new`], which
/// enforces the ranges every authenticator app supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    algorithm: Algorithm,
    digits: u32,
    period: u64,
}

impl Params {
    pub const DEFAULT: Params = Params {
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
    };

    /// `digits` must be 6 or 8 and `period` 15..=300 seconds.
    pub fn new(algorithm: Algorithm, digits: u32, period: u64) -> Option<Self> {
        if !(digits == 6 || digits == 8) || !(15..=300).contains(&period) {
            return None;
        }
        Some(Params {
            algorithm,
            digits,
            period,
        })
    }
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    pub fn digits(&self) -> u32 {
        self.digits
    }
    pub fn period(&self) -> u64 {
        self.period
    }
    /// The RFC 6238 time step `T = floor(unix_time / period)`.
    pub fn step_at(&self, unix_time: u64) -> u64 {
        unix_time / self.period
    }
}

fn hmac_digest(alg: Algorithm, key: &[u8], msg: &[u8]) -> Zeroizing<Vec<u8>> {
    // new_from_slice only fails for fixed-size-key MACs; HMAC takes any key length.
    macro_rules! run {
        ($h:ty) => {{
            let mut mac = match <Hmac<$h>>::new_from_slice(key) {
                Ok(m) => m,
                Err(_) => unreachable!("HMAC accepts keys of any length"),
            };
            mac.update(msg);
            Zeroizing::new(mac.finalize().into_bytes().to_vec())
        }};
    }
    match alg {
        Algorithm::Sha1 => run!(sha1::Sha1),
        Algorithm::Sha256 => run!(sha2::Sha256),
        Algorithm::Sha512 => run!(sha2::Sha512),
    }
}

/// The key HMAC really uses (RFC 2104): a key longer than the hash's block is hashed first,
/// and a shorter one is padded with zero bytes — so `K` and `K` followed by zeros give the
/// same codes. Returned without trailing zero bytes, so every key that gives the same codes
/// gives the same value (the replay guard is keyed by it).
pub fn effective_key(alg: Algorithm, key: &[u8]) -> Zeroizing<Vec<u8>> {
    use sha2::Digest;
    let block = match alg {
        Algorithm::Sha1 | Algorithm::Sha256 => 64,
        Algorithm::Sha512 => 128,
    };
    let mut k = if key.len() > block {
        Zeroizing::new(match alg {
            Algorithm::Sha1 => sha1::Sha1::digest(key).to_vec(),
            Algorithm::Sha256 => sha2::Sha256::digest(key).to_vec(),
            Algorithm::Sha512 => sha2::Sha512::digest(key).to_vec(),
        })
    } else {
        Zeroizing::new(key.to_vec())
    };
    while k.last() == Some(&0) {
        k.pop();
    }
    k
}

/// RFC 4226 HOTP value for `counter`, as the decimal code with leading zeros.
pub fn hotp(key: &[u8], counter: u64, alg: Algorithm, digits: u32) -> Zeroizing<String> {
    let digest = hmac_digest(alg, key, &counter.to_be_bytes());
    // Dynamic truncation (RFC 4226 section 5.3).
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let bin = (u32::from(digest[offset] & 0x7f) << 24)
        | (u32::from(digest[offset + 1]) << 16)
        | (u32::from(digest[offset + 2]) << 8)
        | u32::from(digest[offset + 3]);
    let value = bin % 10u32.pow(digits);
    Zeroizing::new(format!("{value:0width$}", width = digits as usize))
}

/// TOTP code for the time step `step` (see [`Params::step_at`]).
pub fn totp_at_step(key: &[u8], step: u64, p: &Params) -> Zeroizing<String> {
    hotp(key, step, p.algorithm, p.digits)
}

/// Finds the time step in `[step - window, step + window]` whose code equals `answer`.
///
/// Every candidate is computed and compared in constant time, so the time taken does not
/// tell an attacker which step (if any) matched or how many leading digits were right.
/// Returns the latest matching step (a code matches at most one step in practice).
pub fn find_step(key: &[u8], answer: &str, now_step: u64, window: u64, p: &Params) -> Option<u64> {
    let lo = now_step.saturating_sub(window);
    let hi = now_step.saturating_add(window);
    find_counter(key, answer, lo, hi, p.algorithm, p.digits)
}

/// Finds the counter in `lo..=hi` whose HOTP code equals `answer`, computing and comparing
/// every candidate in constant time; the latest match wins.
pub fn find_counter(key: &[u8], answer: &str, lo: u64, hi: u64, alg: Algorithm, digits: u32) -> Option<u64> {
    let value = code_value(answer, digits)?;
    Keyed::new(key, alg, digits).find(value, lo, hi, None)
}

/// An answer of exactly `digits` ASCII digits as its number; anything else is no code.
pub fn code_value(answer: &str, digits: u32) -> Option<u32> {
    if answer.len() != digits as usize || !answer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    answer.parse().ok()
}

/// One key made ready for many HOTP values: the HMAC's keyed state (RFC 2104's inner and
/// outer pads, each hashed once) is computed here, once, and copied for each counter, so a
/// counter costs two compressions of the hash and no allocation — what lets a login search
/// a quarter of an hour of time steps either side of the window for the price of a few.
pub struct Keyed {
    mac: KeyedMac,
    modulus: u32,
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyed(<redacted>)")
    }
}

#[derive(Clone)]
enum KeyedMac {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

impl Keyed {
    pub fn new(key: &[u8], alg: Algorithm, digits: u32) -> Keyed {
        // new_from_slice only fails for fixed-size-key MACs; HMAC takes any key length.
        macro_rules! keyed {
            ($v:ident, $h:ty) => {
                match <Hmac<$h>>::new_from_slice(key) {
                    Ok(m) => KeyedMac::$v(m),
                    Err(_) => unreachable!("HMAC accepts keys of any length"),
                }
            };
        }
        let mac = match alg {
            Algorithm::Sha1 => keyed!(Sha1, sha1::Sha1),
            Algorithm::Sha256 => keyed!(Sha256, sha2::Sha256),
            Algorithm::Sha512 => keyed!(Sha512, sha2::Sha512),
        };
        Keyed {
            mac,
            modulus: 10u32.pow(digits),
        }
    }

    /// The HOTP value of `counter` as a number (RFC 4226 section 5.3, then modulo 10^digits).
    pub fn value(&self, counter: u64) -> u32 {
        fn truncate(d: &[u8]) -> u32 {
            let offset = usize::from(d[d.len() - 1] & 0x0f);
            (u32::from(d[offset] & 0x7f) << 24)
                | (u32::from(d[offset + 1]) << 16)
                | (u32::from(d[offset + 2]) << 8)
                | u32::from(d[offset + 3])
        }
        macro_rules! run {
            ($m:expr) => {{
                let mut m = $m.clone();
                m.update(&counter.to_be_bytes());
                let mut d = m.finalize().into_bytes();
                let v = truncate(&d);
                zeroize::Zeroize::zeroize(d.as_mut_slice());
                v
            }};
        }
        let bin = match &self.mac {
            KeyedMac::Sha1(m) => run!(m),
            KeyedMac::Sha256(m) => run!(m),
            KeyedMac::Sha512(m) => run!(m),
        };
        bin % self.modulus
    }

    /// The latest counter in `lo..=hi`, leaving out `skip` (an inclusive range), whose value
    /// is `answer`. Every candidate is computed and compared in constant time.
    pub fn find(&self, answer: u32, lo: u64, hi: u64, skip: Option<(u64, u64)>) -> Option<u64> {
        let mut found = None;
        if lo > hi {
            return None;
        }
        for c in lo..=hi {
            if skip.is_some_and(|(a, b)| (a..=b).contains(&c)) {
                continue;
            }
            if bool::from(self.value(c).ct_eq(&answer)) {
                found = Some(c);
            }
        }
        found
    }
}

/// Decodes an RFC 4648 base32 secret as written by authenticator tooling: case-insensitive,
/// spaces and hyphens ignored, padding optional. Returns None on any other character.
pub fn decode_base32(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut clean = Zeroizing::new(String::with_capacity(s.len()));
    let mut padding = false;
    for c in s.chars() {
        match c {
            ' ' | '-' => {}
            '=' => padding = true,
            c if c.is_ascii_alphanumeric() && !padding => clean.push(c.to_ascii_uppercase()),
            _ => return None,
        }
    }
    data_encoding::BASE32_NOPAD
        .decode(clean.as_bytes())
        .ok()
        .map(Zeroizing::new)
}

/// Encodes a key as unpadded upper-case base32, the form otpauth URIs use.
pub fn encode_base32(key: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(data_encoding::BASE32_NOPAD.encode(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_give_the_same_codes_have_the_same_effective_key() {
        let k = b"12345678901234567890".to_vec();
        let mut padded = k.clone();
        padded.extend_from_slice(&[0, 0, 0]);
        for alg in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(hotp(&k, 7, alg, 6), hotp(&padded, 7, alg, 6), "HMAC pads with zeros");
            assert_eq!(effective_key(alg, &k), effective_key(alg, &padded));
        }
        let long = vec![7u8; 100];
        let hashed = effective_key(Algorithm::Sha1, &long);
        assert_eq!(hotp(&long, 3, Algorithm::Sha1, 6), hotp(&hashed, 3, Algorithm::Sha1, 6));
        assert_ne!(
            effective_key(Algorithm::Sha1, b"a"),
            effective_key(Algorithm::Sha1, b"b")
        );
    }

    // RFC 6238 Appendix B seeds: ASCII "12345678901234567890" repeated to the hash size.
    const SEED20: &[u8] = b"12345678901234567890";
    const SEED32: &[u8] = b"12345678901234567890123456789012";
    const SEED64: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc6238_appendix_b_vectors_all_algorithms() {
        let table: &[(u64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for &(t, s1, s256, s512) in table {
            for (alg, key, want) in [
                (Algorithm::Sha1, SEED20, s1),
                (Algorithm::Sha256, SEED32, s256),
                (Algorithm::Sha512, SEED64, s512),
            ] {
                let p = Params::new(alg, 8, 30).unwrap();
                assert_eq!(totp_at_step(key, p.step_at(t), &p).as_str(), want, "{alg:?} t={t}");
            }
        }
    }

    #[test]
    fn rfc4226_appendix_d_hotp_vectors() {
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489",
        ];
        for (c, w) in want.iter().enumerate() {
            assert_eq!(hotp(SEED20, c as u64, Algorithm::Sha1, 6).as_str(), *w);
        }
    }

    #[test]
    fn window_edges_are_inclusive_and_nothing_beyond() {
        let p = Params::DEFAULT;
        let now = 1_000_000u64;
        for (offset, window, ok) in [
            (-1i64, 1u64, true),
            (1, 1, true),
            (-2, 1, false),
            (2, 1, false),
            (0, 0, true),
            (1, 0, false),
            (3, 3, true),
            (-3, 3, true),
            (4, 3, false),
        ] {
            let s = (now as i64 + offset) as u64;
            let code = totp_at_step(SEED20, s, &p);
            assert_eq!(
                find_step(SEED20, &code, now, window, &p),
                ok.then_some(s),
                "offset {offset} window {window}"
            );
        }
    }

    #[test]
    fn keyed_values_are_the_codes_of_hotp() {
        for (alg, key) in [
            (Algorithm::Sha1, SEED20),
            (Algorithm::Sha256, SEED32),
            (Algorithm::Sha512, SEED64),
        ] {
            for digits in [6, 8] {
                let k = Keyed::new(key, alg, digits);
                for c in [0u64, 1, 59 / 30, 37_037_036, u64::MAX] {
                    let want: u32 = hotp(key, c, alg, digits).parse().unwrap();
                    assert_eq!(k.value(c), want, "{alg:?} {digits} {c}");
                }
            }
        }
        for key in [&[7u8; 100][..], &[9u8; 64][..], &[1u8; 65][..], &[][..]] {
            for alg in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
                let want: u32 = hotp(key, 3, alg, 6).parse().unwrap();
                assert_eq!(Keyed::new(key, alg, 6).value(3), want, "{alg:?}, {} bytes", key.len());
            }
        }
        let k = Keyed::new(SEED20, Algorithm::Sha1, 6);
        let v = k.value(10);
        assert_eq!(k.find(v, 0, 20, None), Some(10));
        assert_eq!(
            k.find(v, 0, 20, Some((9, 11))),
            None,
            "a skipped counter is not looked at"
        );
        assert_eq!(k.find(v, 11, 20, None), None);
        assert_eq!(code_value("012345", 6), Some(12345));
        for bad in ["12345", "1234567", "12345a", "+12345", " 12345", ""] {
            assert_eq!(code_value(bad, 6), None, "{bad:?}");
        }
    }

    #[test]
    fn wrong_length_answer_never_matches() {
        let p = Params::DEFAULT;
        let code = totp_at_step(SEED20, 5, &p);
        assert_eq!(find_step(SEED20, &code[..5], 5, 1, &p), None);
        assert_eq!(find_step(SEED20, &format!("{}0", code.as_str()), 5, 1, &p), None);
        assert_eq!(find_step(SEED20, "", 5, 1, &p), None);
    }

    #[test]
    fn step_zero_window_does_not_underflow() {
        let p = Params::DEFAULT;
        let code = totp_at_step(SEED20, 0, &p);
        assert_eq!(find_step(SEED20, &code, 0, 5, &p), Some(0));
    }

    #[test]
    fn base32_accepts_app_spellings_and_rejects_garbage() {
        let key = decode_base32("GEZD GNBV-GY3T QOJQ gezdgnbvgy3tqojq====").unwrap();
        assert_eq!(key.as_slice(), SEED20);
        assert_eq!(encode_base32(SEED20).as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(decode_base32("GEZD1").is_none(), "1 is not in the base32 alphabet");
        assert!(decode_base32("GEZD\u{0}").is_none());
        assert!(decode_base32("Ü").is_none());
        assert!(decode_base32("GE==ZD").is_none(), "padding only at the end");
    }

    #[test]
    fn params_reject_unsupported_values() {
        assert!(Params::new(Algorithm::Sha1, 7, 30).is_none());
        assert!(Params::new(Algorithm::Sha1, 6, 0).is_none());
        assert!(Params::new(Algorithm::Sha1, 6, 100_000).is_none());
        assert!(Params::new(Algorithm::Sha512, 8, 60).is_some());
        assert_eq!(Algorithm::parse("sha256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("md5"), None);
    }
}
