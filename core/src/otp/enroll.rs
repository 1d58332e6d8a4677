//! A new secret: keys, backup codes, names, and the otpauth URI an app scans.
//!
//! Owns: how much randomness a key has, the default names, the URI's parameters and escaping.
//! Never: writes anything (the secret file's one writer is [`crate::files::secret_file`]).

use zeroize::Zeroizing;

use crate::error::Error;
use crate::files::secret::{Device, Kind, SecretFile};
use crate::otp::Params;

/// 160-bit keys, as RFC 4226 recommends and every app supports.
pub const KEY_BYTES: usize = 20;

pub const DEFAULT_BACKUP_CODES: usize = 10;

/// The name of a first authenticator when none is given (and of the one enrolled at login).
pub const DEFAULT_DEVICE_NAME: &str = "phone";

/// This host's name (the default issuer and the part after `@` in labels).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The issuer shown in the app: `issuer` from the configuration, else the host name.
pub fn default_issuer(configured: Option<&str>) -> String {
    configured.map(str::to_string).unwrap_or_else(host_name)
}

/// The account label shown in the app: `user@host`.
pub fn default_label(user: &str) -> String {
    format!("{user}@{}", host_name())
}

/// A base32 key in groups of four, for typing it in by hand.
pub fn grouped(key_b32: &str) -> Zeroizing<String> {
    let groups: Vec<&str> = key_b32
        .as_bytes()
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    Zeroizing::new(groups.join(" "))
}

/// Backup codes two per line, indented, as every place that shows them prints them.
pub fn backup_code_lines(codes: &[Zeroizing<String>]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for pair in codes.chunks(2) {
        let line: Vec<&str> = pair.iter().map(|c| c.as_str()).collect();
        out.push_str(&format!("    {}\n", line.join("    ")));
    }
    out
}

/// A new authenticator with a fresh 160-bit key from the OS random source.
pub fn new_device(
    name: &str,
    kind: Kind,
    params: Params,
    issuer: &str,
    label: &str,
    now: u64,
) -> Result<Device, Error> {
    let rng = |e: getrandom::Error| Error::Config(format!("the OS random source failed: {e}"));
    let mut key = Zeroizing::new(vec![0u8; KEY_BYTES]);
    getrandom::getrandom(&mut key).map_err(rng)?;
    Ok(Device {
        name: name.to_string(),
        kind,
        key,
        params,
        counter: 0,
        issuer: issuer.to_string(),
        label: label.to_string(),
        created: now,
    })
}

/// A fresh enrollment: `device` and `n_backup` backup codes; returns the file and the codes
/// in clear (to be shown once).
pub fn new_secret(device: Device, n_backup: usize) -> Result<(SecretFile, Vec<Zeroizing<String>>), Error> {
    let (codes, hashes) = new_backup_codes(n_backup)?;
    let file = SecretFile {
        devices: vec![device],
        backup_codes: hashes,
    };
    Ok((file, codes))
}

/// `n` new backup codes: (codes in clear for display, hashes to store).
pub fn new_backup_codes(n: usize) -> Result<(Vec<Zeroizing<String>>, Vec<String>), Error> {
    let rng = |e: getrandom::Error| Error::Config(format!("the OS random source failed: {e}"));
    let codes = crate::otp::backup::generate(n).map_err(rng)?;
    let mut hashes = Vec::with_capacity(n);
    for c in &codes {
        let canonical =
            crate::otp::backup::normalize(c).ok_or_else(|| Error::Config("generated an invalid backup code".into()))?;
        hashes.push(crate::otp::backup::hash(&canonical).map_err(rng)?);
    }
    Ok((codes, hashes))
}

fn uri_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Key URI (`otpauth://totp/ISSUER:LABEL?secret=…&issuer=…&algorithm=…&digits=…&period=…`,
/// or `otpauth://hotp/…&counter=N`). Every parameter is spelled out: apps that miss one
/// silently assume a default and then show wrong codes.
pub fn otpauth_uri(d: &Device) -> Zeroizing<String> {
    let secret = crate::otp::encode_base32(&d.key);
    let name = if d.issuer.is_empty() {
        uri_escape(&d.label)
    } else {
        format!("{}:{}", uri_escape(&d.issuer), uri_escape(&d.label))
    };
    let tail = match d.kind {
        Kind::Totp => format!("period={}", d.params.period()),
        Kind::Hotp => format!("counter={}", d.counter),
    };
    Zeroizing::new(format!(
        "otpauth://{}/{name}?secret={}&issuer={}&algorithm={}&digits={}&{tail}",
        d.kind.name(),
        secret.as_str(),
        uri_escape(&d.issuer),
        d.params.algorithm().name(),
        d.params.digits(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_backup_codes_are_laid_out_for_reading() {
        assert_eq!(grouped("GEZDGNBVGY").as_str(), "GEZD GNBV GY");
        let codes: Vec<Zeroizing<String>> = ["a", "b", "c"].iter().map(|c| Zeroizing::new(c.to_string())).collect();
        assert_eq!(backup_code_lines(&codes).as_str(), "    a    b\n    c\n");
        assert!(default_label("bob").starts_with("bob@"));
    }

    #[test]
    fn uri_carries_every_parameter_and_escapes_names() {
        let mut d = new_device("phone", Kind::Totp, Params::DEFAULT, "ACME Corp", "bob@web 1", 0).unwrap();
        d.key = Zeroizing::new(b"12345678901234567890".to_vec());
        assert_eq!(
            otpauth_uri(&d).as_str(),
            "otpauth://totp/ACME%20Corp:bob@web%201?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME%20Corp&algorithm=SHA1&digits=6&period=30"
        );
        d.kind = Kind::Hotp;
        d.counter = 7;
        assert_eq!(
            otpauth_uri(&d).as_str(),
            "otpauth://hotp/ACME%20Corp:bob@web%201?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME%20Corp&algorithm=SHA1&digits=6&counter=7"
        );
    }
}
