//! What only administrators run: never reached from a login (the module's path is
//! `login/`, which imports nothing from here).
//!
//! | file | owns |
//! |---|---|
//! | `doctor.rs` | the checks of `pam-totp doctor` over PAM stacks, sshd and pam_totp.conf |
//! | `google.rs` | reading google-authenticator-libpam's `~/.google_authenticator` |
//! | `tokens/` | hardware token seed files: CSV (`csv.rs`) and RFC 6030 PSKC (`pskc.rs`) |

pub mod doctor;
pub mod google;
pub mod tokens;
