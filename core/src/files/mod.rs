//! Files a user or an administrator hands us, opened as root.
//!
//! | file | owns |
//! |---|---|
//! | `fs.rs` | safe opening in places others can write: no symlinks, owner and mode checks, size caps, the user's file-system identity |
//! | `secret.rs` | the secret file format (v2; v1 read and upgraded): types, parse, serialize |
//! | `secret_file.rs` | where a user's secret file is and the one reader, writer and remover of it (its lock) |

pub mod fs;
pub mod secret;
pub mod secret_file;
