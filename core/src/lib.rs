//! pam-totp-core: everything of pam_totp except the FFI boundary.
//!
//! One folder per concern; each file opens with what it owns and what it must never do.
//! The login path (`login/`, `state/`, `files/`, `fleet/`, `otp/`, `pamstack/`) never imports
//! `admin/`, which only the command line uses.
//!
//! | concern | the one owner |
//! |---|---|
//! | computing a code (HOTP, TOTP, base32) | `otp/mod.rs` |
//! | backup codes; a new key and its otpauth URI; terminal QR codes | `otp/backup.rs`, `otp/enroll.rs`, `otp/qr.rs` |
//! | trusting or refusing a file (symlinks, owner, mode, size, the user's identity) | `files/fs.rs` |
//! | the secret file: format; where it is, its one reader and writer, its lock | `files/secret.rs`; `files/secret_file.rs` |
//! | the state record (what is remembered between logins) | `state/mod.rs` |
//! | locking and writing state (format 3 on disk; the local store) | `state/file.rs`; `state/store.rs` |
//! | the store a login opens (local, fleet, the fallback) | `state/any.rs` (fleet side: `state/fleet.rs`) |
//! | the daemon protocol (requests, answers, the one codec) | `fleet/proto.rs` |
//! | the etcd document (key, write id, protection mark); the daemon's client | `fleet/document.rs`; `fleet/client.rs` |
//! | one login, start to finish; the types the module sees | `login/mod.rs`; `login/host.rs` |
//! | the decision for one answer (right, wrong, replay, lockout) | `login/verify.rs` |
//! | the prompt; forward_pass; not enrolled and enrollment at login | `login/prompt.rs`; `login/forward_pass.rs`; `login/not_enrolled.rs` |
//! | what a user refused before the code prompt is told; a lost state directory in the log | `login/explain.rs`; `login/lost_state.rs` |
//! | parsing options (module arguments + pam_totp.conf) | `config.rs` |
//! | deciding a PAM stack is unsafe (libpam's parser and an exhaustive walk) | `pamstack/` (`parse.rs`, `walk.rs`) |
//! | `pam-totp doctor`'s checks | `admin/doctor.rs` |
//! | parsing token files: CSV, RFC 6030 PSKC; google-authenticator files | `admin/tokens/` (`csv.rs`, `pskc.rs`); `admin/google.rs` |
//! | user name → account; escaping a name for a file or key; protected accounts | `account.rs` |
//! | outside text on its way to a terminal or a log line | `text.rs` |
//! | the time | `clock.rs` |
//! | errors and their messages | `error.rs` (the fleet's: `fleet::FleetError`; token files': `admin::tokens::TokenError`) |
//!
//! Outside this crate: choosing a PAM return code is `pam_totp/src/lib.rs` (one `match` over
//! [`login::Outcome`]); talking to etcd is `stated/src/main.rs`.
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
pub mod vault;
