//! Properties checked by the fuzz targets (fuzz/) and, on the saved corpus, by a regression
//! test on stable Rust in CI (core/tests/fuzz_corpus.rs). Each function must never panic on
//! any input; the asserts inside are the properties.

use crate::config::Config;
use crate::files::secret::SecretFile;
use crate::login::verify::{decide, Decision, Policy};
use crate::state::State;

/// What a leaked key would look like in `text`: runs of base32 characters, with letters,
/// that decode to at least 80 bits. (Checking any line would flag error messages that merely
/// share words or numbers with the input.)
fn key_like(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_uppercase() || ('2'..='7').contains(&c)))
        .filter(|w| w.len() >= 16 && w.chars().any(|c| c.is_ascii_uppercase()))
        .filter(|w| crate::otp::decode_base32(w).is_some_and(|k| k.len() >= crate::files::secret::MIN_KEY_BYTES))
        .collect()
}

/// Secret file parser: no panic; what parses survives a write and a re-read unchanged;
/// an error never quotes the file.
pub fn secret_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match SecretFile::parse(text) {
        Ok(s) => {
            let again = SecretFile::parse(&s.to_toml()).expect("a parsed secret file re-parses after writing");
            assert_eq!(again.devices.len(), s.devices.len());
            for (a, b) in again.devices.iter().zip(&s.devices) {
                assert_eq!(a.key.as_slice(), b.key.as_slice());
                assert_eq!(
                    (a.params, a.kind, a.counter, &a.name),
                    (b.params, b.kind, b.counter, &b.name)
                );
            }
            assert_eq!(again.backup_codes, s.backup_codes);
        }
        Err(e) => {
            let msg = format!("{e:?}");
            for key in key_like(text) {
                assert!(!msg.contains(key), "error quotes the file: {msg}");
            }
        }
    }
}

/// State file parsers: no panic; round trip. Binary input goes to the format-3 reader
/// (whole file and bare record), text to the version 1/2 reader.
pub fn state_file(data: &[u8]) {
    use crate::state::file::{decode_file, decode_payload, encode_payload};
    if let Ok(img) = decode_file(data) {
        let again = decode_payload(&encode_payload(&img.state).expect("a decoded state encodes"))
            .expect("an encoded state decodes");
        assert_eq!(
            (again.key.as_str(), &again.devices),
            (img.state.key.as_str(), &img.state.devices)
        );
        // The slot's record is canonical; the state is that record with, at most, the
        // counts of the counters record.
        let mut slot = decode_payload(&img.payload).expect("the chosen slot decodes");
        assert_eq!(encode_payload(&slot).unwrap(), *img.payload, "the record is canonical");
        (slot.failures, slot.locked_until) = (img.state.failures, img.state.locked_until);
        assert_eq!(slot, img.state);
    }
    if let Ok(st) = decode_payload(data) {
        assert_eq!(encode_payload(&st).unwrap(), data, "the record is canonical");
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(st) = State::parse(text) {
        if let Ok(written) = st.to_toml() {
            assert_eq!(State::parse(&written).expect("re-parse"), st);
        }
    }
}

/// Options: the first line is the module arguments (split on spaces), the rest the config
/// file. No panic; whatever is accepted is in range.
pub fn options(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (args, file) = text.split_once('\n').unwrap_or((text, ""));
    let args: Vec<&str> = args.split(' ').filter(|a| !a.is_empty()).collect();
    let file = file.to_string();
    if let Ok(c) = Config::load(&args, move |_| Ok(Some(file.clone()))) {
        assert!(c.window <= crate::config::MAX_WINDOW);
        assert!(c.max_failures >= 1 && c.lockout >= 1);
        assert!(c.digits == 6 || c.digits == 8);
        assert!(c.state_dir.is_absolute());
    }
}

/// An answer at the prompt (first byte picks the clock): no panic; accepted only if it is
/// the right code for a step in the window (or the one backup code).
pub fn answer(data: &[u8]) {
    let Some((&t, rest)) = data.split_first() else { return };
    let answer = String::from_utf8_lossy(rest);
    let key = b"12345678901234567890";
    let params = crate::otp::Params::DEFAULT;
    let now = 1_800_000_000 + u64::from(t) * 7;
    let backup = "7kq2mx9d10";
    let secret = SecretFile {
        devices: vec![crate::files::secret::Device {
            name: "phone".into(),
            kind: crate::files::secret::Kind::Totp,
            key: zeroize::Zeroizing::new(key.to_vec()),
            params,
            counter: 0,
            issuer: String::new(),
            label: String::new(),
            created: 0,
        }],
        backup_codes: vec![crate::otp::backup::hash(backup).expect("random source")],
    };
    let mut state = State::default();
    let policy = Policy {
        window: 1,
        skew_range: 900,
        hotp_window: 10,
        max_failures: 6,
        lockout: 300,
        totp_only: false,
    };
    let (d, _) = decide(
        &policy,
        &secret,
        &mut state,
        &[&answer],
        now,
        crate::login::verify::Count::Failures,
    );
    if let Decision::Accepted(_) = d {
        let digits: String = answer.chars().filter(|c| !c.is_whitespace()).collect();
        let step = params.step_at(now);
        let is_code = (step - 1..=step + 1).any(|s| crate::otp::totp_at_step(key, s, &params).as_str() == digits);
        let is_backup = crate::otp::backup::normalize(&answer).is_some_and(|c| c.as_str() == backup);
        assert!(is_code || is_backup, "accepted a wrong answer: {answer:?}");
    }
}

/// google-authenticator file import: no panic; errors never quote the secret line.
pub fn google_authenticator_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = crate::admin::google::parse_google_authenticator(text) {
        for key in key_like(text) {
            assert!(!e.contains(key), "error quotes the secret: {e}");
        }
    }
}
