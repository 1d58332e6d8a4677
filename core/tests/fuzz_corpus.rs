//! Runs every input saved in fuzz/corpus/<target>/ through the same property the fuzz
//! target checks (pam_totp_core::fuzzing), on stable Rust, so CI keeps what fuzzing found.

use std::path::Path;

fn corpus(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{} fails its property", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus {}", dir.display());
}

#[test]
fn secret_file_corpus() {
    corpus("secret_file", pam_totp_core::fuzzing::secret_file);
}

#[test]
fn state_file_corpus() {
    corpus("state_file", pam_totp_core::fuzzing::state_file);
}

#[test]
fn options_corpus() {
    corpus("options", pam_totp_core::fuzzing::options);
}

#[test]
fn answer_corpus() {
    corpus("answer", pam_totp_core::fuzzing::answer);
}

#[test]
fn google_authenticator_file_corpus() {
    corpus(
        "google_authenticator_file",
        pam_totp_core::fuzzing::google_authenticator_file,
    );
}
