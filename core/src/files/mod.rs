//! Files a user or an administrator hands us, opened as root.
//!
//! | file | owns |
//! |---|---|
//! | `fs.rs` | safe opening in places others can write: no symlinks, owner and mode checks, size caps, the user's file-system identity |
//! | `secret.rs` | the secret file format (v2; v1 read and upgraded): types, parse, serialize |
//! | `secret_file.rs` | where a user's keys are (vault file, fleet vault, secret file) and the one reader, writer and remover of them (their lock) |
//! | `fleet_vault.rs` | the fleet vault: keys sealed in etcd through the daemon, the key ring |

pub mod fleet_vault;
pub mod fs;
pub mod secret;
pub mod secret_file;
