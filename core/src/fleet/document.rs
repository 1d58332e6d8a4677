//! A user's document in etcd: its key, and its value (a write id line, the protection mark,
//! the state's TOML text).
//!
//! Owns: the etcd key layout ([`user_key`]), the write id ([`write_id`]), the protection mark
//! ([`document_protected`]) and the size limits of a stored value.
//! Never: prints a document (it holds the per-user key).

use super::FleetError;
use crate::account::escape_user;

/// The largest state text stored (a state file is at most 64 KiB on disk, too: the limit of
/// `files::fs`, checked by a test); a document is that and its write id line ([`MAX_STORED`]).
pub const MAX_DOCUMENT: usize = 64 * 1024;
/// The largest value a document may have in etcd or on the wire: [`MAX_DOCUMENT`] and the
/// write id line.
pub const MAX_STORED: usize = MAX_DOCUMENT + WRITE_ID_LINE;

/// The etcd key of a user's document: `pam-totp/v1/<namespace>/users/<escaped user>`.
pub fn user_key(namespace: &str, user: &str) -> String {
    format!("{}{}", users_prefix(namespace), escape_user(user))
}

/// The prefix of every user's key in a namespace.
pub fn users_prefix(namespace: &str) -> String {
    format!("pam-totp/v1/{namespace}/users/")
}

/// The etcd key of a user's sealed keys in the fleet vault:
/// `pam-totp/v1/<namespace>/vault/<escaped user>` (an etcd role for a host covers
/// `pam-totp/v1/<namespace>/`, both prefixes).
pub fn vault_key(namespace: &str, user: &str) -> String {
    format!("{}{}", vault_prefix(namespace), escape_user(user))
}

/// The prefix of every user's sealed keys in a namespace.
pub fn vault_prefix(namespace: &str) -> String {
    format!("pam-totp/v1/{namespace}/vault/")
}

/// The key of `user`'s document of `space`.
pub fn space_key(space: super::Space, namespace: &str, user: &str) -> String {
    match space {
        super::Space::State => user_key(namespace, user),
        super::Space::Vault => vault_key(namespace, user),
    }
}

/// The prefix of the documents of `space`.
pub fn space_prefix(space: super::Space, namespace: &str) -> String {
    match space {
        super::Space::State => users_prefix(namespace),
        super::Space::Vault => vault_prefix(namespace),
    }
}

/// The first line of every document: the TOML comment `# write_id <32 hex digits>`, a random
/// id made for each compare-and-swap, then the state's TOML text. No two writes share an
/// id, so the daemon can tell its own transaction from any other one when etcd's answer was
/// lost (a member killed after it committed): byte-equal documents are the same write. A
/// comment, so the document is still a state file's text to any TOML reader (an older
/// release's too).
const WRITE_ID_PREFIX: &[u8] = b"# write_id ";
const WRITE_ID_HEX: usize = 32;
const WRITE_ID_LINE: usize = WRITE_ID_PREFIX.len() + WRITE_ID_HEX + 1;

/// The line after the write id of a document whose account is protected on some host of the
/// fleet (root, or a member of a group in that host's `protected_groups`): a help desk on any
/// host refuses to change it (`pam-totp unlock`/`reset` through sudo). Sticky: once any host
/// marked it, every later write keeps it, `reset` too. A TOML comment, like the write id, so
/// the document is still a state file's text to a release that does not know the mark.
const PROTECTED_LINE: &[u8] = b"# protected\n";

/// A new document: a fresh write id, the protection mark if `protected`, the state's text.
pub fn compose_document(state_toml: &str, protected: bool) -> Result<Vec<u8>, FleetError> {
    let mut id = [0u8; WRITE_ID_HEX / 2];
    getrandom::getrandom(&mut id).map_err(|e| FleetError::Refused(format!("the OS random source failed: {e}")))?;
    let mut v = Vec::with_capacity(WRITE_ID_LINE + PROTECTED_LINE.len() + state_toml.len());
    v.extend_from_slice(WRITE_ID_PREFIX);
    v.extend_from_slice(data_encoding::HEXLOWER.encode(&id).as_bytes());
    v.push(b'\n');
    if protected {
        v.extend_from_slice(PROTECTED_LINE);
    }
    v.extend_from_slice(state_toml.as_bytes());
    Ok(v)
}

/// Whether a document carries the protection mark (see [`PROTECTED_LINE`]).
pub fn document_protected(value: &[u8]) -> bool {
    write_id(value).is_some() && value[WRITE_ID_LINE..].starts_with(PROTECTED_LINE)
}

/// The write id a document starts with, if it has a well-formed one.
pub fn write_id(value: &[u8]) -> Option<&[u8]> {
    let rest = value.strip_prefix(WRITE_ID_PREFIX)?;
    let (id, after) = (rest.get(..WRITE_ID_HEX)?, rest.get(WRITE_ID_HEX..)?);
    (id.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) && after.starts_with(b"\n")).then_some(id)
}

/// The state text of a document: what follows its write id line (a document without one,
/// written by hand with `etcdctl put`, is the state text as a whole).
pub fn document_state(value: &[u8]) -> &[u8] {
    match write_id(value) {
        Some(_) => &value[WRITE_ID_LINE..],
        None => value,
    }
}

/// One stored document and its etcd `mod_revision`.
#[derive(Clone, PartialEq, Eq)]
pub struct Doc {
    pub revision: u64,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The document holds the per-user key: never printed.
        write!(f, "Doc {{ revision: {}, {} bytes }}", self.revision, self.value.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;

    #[test]
    fn every_document_carries_its_own_write_id_and_reads_back_as_the_state() {
        let st = State {
            failures: 3,
            ..State::default()
        };
        let text = st.to_toml().unwrap();
        let (a, b) = (
            compose_document(&text, false).unwrap(),
            compose_document(&text, false).unwrap(),
        );
        assert_ne!(a, b, "two writes of the same state are two documents");
        assert_ne!(write_id(&a), write_id(&b));
        for d in [&a, &b] {
            assert_eq!(write_id(d).unwrap().len(), 32);
            assert_eq!(document_state(d), text.as_bytes());
            // A state file's text as a whole to any TOML reader (the id is a comment): what
            // `etcdctl get` shows, and what a release that knows no write id reads.
            assert!(d.starts_with(b"# write_id "));
            assert_eq!(State::parse(std::str::from_utf8(d).unwrap()).unwrap(), st);
            assert_eq!(
                State::parse(std::str::from_utf8(document_state(d)).unwrap()).unwrap(),
                st
            );
        }
        // A value put by hand is the state text as a whole; a malformed id line is not an id.
        assert_eq!(document_state(text.as_bytes()), text.as_bytes());
        assert_eq!(write_id(text.as_bytes()), None);
        for bad in [
            "# write_id 0123\nversion = 2\n",
            "# write_id 0123456789ABCDEF0123456789abcdef\nversion = 2\n",
            "# write_id 0123456789abcdef0123456789abcdef version = 2\n",
            "# write_id 0123456789abcdef0123456789abcdef",
            "# write_id 0123456789abcdef0123456789abcdefX\n",
            "#write_id 0123456789abcdef0123456789abcdef\n",
        ] {
            assert_eq!(write_id(bad.as_bytes()), None, "{bad}");
            assert_eq!(document_state(bad.as_bytes()), bad.as_bytes());
        }
    }

    #[test]
    fn the_protection_mark_is_a_comment_line_after_the_write_id() {
        let st = State {
            failures: 1,
            ..State::default()
        };
        let text = st.to_toml().unwrap();
        let marked = compose_document(&text, true).unwrap();
        let plain = compose_document(&text, false).unwrap();
        assert!(document_protected(&marked));
        assert!(!document_protected(&plain));
        // Still the state's text to any reader (a release that does not know the mark).
        for d in [&marked, &plain] {
            assert_eq!(
                State::parse(std::str::from_utf8(document_state(d)).unwrap()).unwrap(),
                st
            );
            assert_eq!(State::parse(std::str::from_utf8(d).unwrap()).unwrap(), st);
        }
        // Only right after a well-formed write id; a value put by hand is not marked.
        assert!(!document_protected(b"# protected\nversion = 2\n"));
    }

    #[test]
    fn the_document_limit_is_the_state_files() {
        assert_eq!(MAX_DOCUMENT as u64, crate::files::fs::MAX_FILE_SIZE);
    }

    #[test]
    fn keys_escape_the_user() {
        assert_eq!(vault_key("default", "bob"), "pam-totp/v1/default/vault/bob");
        assert_eq!(vault_key("prod", "../x"), "pam-totp/v1/prod/vault/%2E.%2Fx");
        assert_eq!(user_key("default", "bob"), "pam-totp/v1/default/users/bob");
        assert_eq!(user_key("prod", "../x"), "pam-totp/v1/prod/users/%2E.%2Fx");
        assert!(user_key("prod", "a/b").starts_with(&users_prefix("prod")));
    }
}
