//! The fleet: the per-user state shared by every host, kept in etcd by the local daemon
//! `pam-totp-stated` and reached over a root-only Unix socket.
//!
//! | file | owns |
//! |---|---|
//! | `proto.rs` | the wire protocol, both sides' one codec (requests and answers as enums) |
//! | `document.rs` | a user's etcd key and document (write id, protection mark, limits) |
//! | `client.rs` | the blocking client the module and the CLI use: socket and peer checks, deadlines |
//! | `sealed.rs` | the fleet vault's record: keys sealed with the fleet's vault key (the ring) |
//!
//! The store a login opens on top of it is `crate::state::fleet` (and `crate::state::any`).
//! Never: lets anyone in on an error (every failure is an `Err`, which refuses the login);
//! talks to a socket or a peer that is not root's; logs a document (it holds the per-user
//! key). The protocol is std only (no async runtime, no TLS inside sshd).

pub mod client;
pub mod document;
pub mod proto;
pub mod sealed;

pub use client::{check_socket_path, Client, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
pub use document::{
    compose_document, document_protected, document_state, space_key, space_prefix, user_key, users_prefix, vault_key,
    vault_prefix, write_id, Doc, MAX_DOCUMENT, MAX_STORED,
};
pub use proto::{
    read_frame, write_frame, Request, Response, Space, MAX_FRAME, MAX_LIST_FRAME, MAX_USER, PROTOCOL_VERSION,
};

/// Why a fleet operation failed.
///
/// Only an outage of etcd itself is [`FleetError::Unavailable`]: the daemon's own answer
/// that etcd, unreachable or without a leader, answered none of its requests for a while.
/// A client that got no answer in time, or found no daemon, is
/// [`FleetError::NoAnswer`], never an outage: the client may have been stopped by the very
/// user it authenticates (`su` and `sudo` keep the caller's real uid, so the caller may
/// SIGSTOP them while they wait), or the daemon's backlog filled by that user's own logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// Etcd is down, as the daemon reports: the store may work again later;
    /// `store_unavailable = "local"` may fall back.
    Unavailable(String),
    /// This client got no answer in time, or lost its connection: refused, never a reason
    /// to fall back (see the type's comment).
    NoAnswer(String),
    /// Something is wrong that waiting will not fix (an unsafe socket, a peer that is not
    /// root, a malformed answer or document): never a reason to fall back.
    Refused(String),
}

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetError::Unavailable(m) => write!(f, "the fleet store is unavailable: {m}"),
            FleetError::NoAnswer(m) => write!(f, "the fleet store gave this process no answer: {m}"),
            FleetError::Refused(m) => write!(f, "the fleet store was refused: {m}"),
        }
    }
}
