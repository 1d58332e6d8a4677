//! pam-totp-core: everything of pam_totp except the FFI boundary.
//!
//! | file | owns |
//! |---|---|
//! | `account.rs` | user name -> account (the canonical name every key uses) |
//! | `otp.rs` | HOTP/TOTP codes, base32 |
//! | `clock.rs` | the one reader of the system time |
//! | `qr.rs` | terminal QR codes |
//! | `secret.rs` | secret file v1 format |
//! | `backup.rs` | backup code format and hashing |
//! | `state.rs` | the state record (TOML form: versions 1, 2) |
//! | `statefile.rs` | state file format 3 on disk: two checksummed slots + counters |
//! | `store.rs` | locked, atomic state updates (the only writer of state) |
//! | `fs.rs` | safe opening of files in places others can write |
//! | `config.rs` | options: module arguments + pam_totp.conf |
//! | `doctor.rs` | the configuration checks of `pam-totp doctor` |
//! | `pamstack.rs` | libpam's auth stack modelled: the enroll_on_login gate, ways around pam_totp |
//! | `enroll.rs` | a new secret, its otpauth URI, and the one secret-file reader and writer |
//! | `fuzzing.rs` | properties checked by the fuzz targets and the corpus regression test |
//! | `import.rs` | reading google-authenticator files |
//! | `verify.rs` | the decision for one answer |
//! | `login.rs` | one login attempt, start to finish; the [`login::Outcome`] |
//! | `text.rs` | outside text made safe for a terminal |
//! | `tokens.rs` | hardware token seed files (CSV, RFC 6030 PSKC) read into records |
//! | `error.rs` | the error type |
//! | `fleet.rs` | the fleet store: protocol to pam-totp-stated, its client, the store a login opens |
#![forbid(unsafe_code)]

pub mod account;
pub mod admin;
pub mod clock;
pub mod config;
pub mod error;
pub mod files;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod login;
pub mod otp;
pub mod pamstack;
pub mod state;
pub mod text;
