//! Accounts: the one place a user name becomes an account.
//!
//! Owns: which names we look up at all ([`valid_user_name`]), the lookup itself
//! ([`Accounts`], [`SystemAccounts`]), and the rule that everything pam_totp keys by a
//! user — state file, lock, `%u` in the secret path, log lines — uses the account's own
//! name (`pw_name`), never the spelling the client typed. Where the user database matches
//! names loosely (SSSD `case_sensitive = false`, winbind, LDAP with case-insensitive
//! matching), `ALICE` and `alice` reach one account, and keying by the typed name would
//! give each spelling its own replay guard, lockout and enrollment.

use std::path::PathBuf;

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account's own name (`pw_name`): the key for state, `%u` and logs.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

pub trait Accounts {
    /// Looks `name` up as the system's user database does (it may match loosely);
    /// `Ok(None)`: no such user.
    fn lookup(&self, name: &str) -> Result<Option<Account>, Error>;

    /// The account's password hash from the local shadow file, if it has one (accounts from
    /// SSSD/LDAP/winbind have none here). Only a keyed fingerprint of it is ever stored: a
    /// remembered host stops counting once the password changes.
    fn password_hash(&self, _name: &str) -> Option<zeroize::Zeroizing<String>> {
        None
    }

    /// Whether `account` is protected on this host: root, or a member of a group in
    /// `protected_groups`. With the fleet store a protected account is marked so in its
    /// fleet document, so that a help desk on another host does not change it either.
    /// A lookup that fails counts as protected (marking is the safe side).
    fn protected(&self, _account: &Account, _groups: &[String]) -> bool {
        false
    }
}

/// The local shadow file, read by the module (root) only when `remember=` is on.
pub const SHADOW: &str = "/etc/shadow";
/// A shadow file larger than this is not read (16 MiB: about 100,000 accounts).
const MAX_SHADOW: u64 = 16 * 1024 * 1024;

/// The hash field of `name`'s line in shadow-format `text`.
pub fn shadow_hash(text: &str, name: &str) -> Option<zeroize::Zeroizing<String>> {
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        (f.next() == Some(name)).then(|| f.next().map(|h| zeroize::Zeroizing::new(h.to_string())))?
    })
}

/// The system user database (getpwnam_r through nix, so NSS modules apply).
#[derive(Debug, Default)]
pub struct SystemAccounts;

impl Accounts for SystemAccounts {
    fn lookup(&self, name: &str) -> Result<Option<Account>, Error> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(Some(Account {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                home: u.dir,
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(Error::UserLookup(e.desc().to_string())),
        }
    }

    fn protected(&self, account: &Account, groups: &[String]) -> bool {
        account.uid == 0 || !matches!(protected_group_of(account, groups), Ok(None))
    }

    fn password_hash(&self, name: &str) -> Option<zeroize::Zeroizing<String>> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let f = std::fs::File::open(SHADOW).ok()?;
        let md = f.metadata().ok()?;
        // Root's own file: owned by root, not writable by others; else it proves nothing.
        if md.uid() != 0 || md.mode() & 0o022 != 0 || md.len() > MAX_SHADOW {
            return None;
        }
        let mut text = zeroize::Zeroizing::new(String::new());
        f.take(MAX_SHADOW).read_to_string(&mut text).ok()?;
        shadow_hash(&text, name)
    }
}

/// A user name we are willing to look up and put into paths and logs: non-empty, at most
/// 256 bytes, no `/`, no control characters, not `.` or `..`.
pub fn valid_user_name(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 256
        && user != "."
        && user != ".."
        && !user.contains('/')
        && !user.chars().any(|c| c.is_control())
}

/// Why [`resolve`] found no usable account.
#[derive(Debug)]
pub enum Unresolved {
    /// Not a name we look up (see [`valid_user_name`]).
    Invalid,
    /// The database has no such user.
    Unknown,
    /// The database answered with a name that is not one we can use as a key.
    BadCanonicalName,
    /// The database could not be read.
    Lookup(Error),
}

/// Looks `name` up and returns the account, whose `name` is the canonical one (which may
/// differ from `name` in case or form). Every caller keys by `account.name`.
pub fn resolve(accounts: &dyn Accounts, name: &str) -> Result<Account, Unresolved> {
    if !valid_user_name(name) {
        return Err(Unresolved::Invalid);
    }
    match accounts.lookup(name) {
        Ok(Some(a)) if valid_user_name(&a.name) => Ok(a),
        Ok(Some(_)) => Err(Unresolved::BadCanonicalName),
        Ok(None) => Err(Unresolved::Unknown),
        Err(e) => Err(Unresolved::Lookup(e)),
    }
}

/// Default of `protected_groups`: accounts a help desk must not change through sudo.
pub const DEFAULT_PROTECTED_GROUPS: &[&str] = &["root", "sudo", "wheel"];

/// Why it cannot be told whether an account is in a protected group (the caller refuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLookupError(pub String);

impl std::fmt::Display for GroupLookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GroupLookupError {}

impl std::ops::Deref for GroupLookupError {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<GroupLookupError> for String {
    fn from(e: GroupLookupError) -> String {
        e.0
    }
}

/// The first group of `groups` that `account` belongs to (its primary group by gid, or a
/// supplementary one by the member list), as `getent group NAME` answers through NSS.
/// A group that does not exist protects nobody; a lookup that fails is an error (the caller
/// refuses: it cannot tell).
pub fn protected_group_of(account: &Account, groups: &[String]) -> Result<Option<String>, GroupLookupError> {
    // The account's groups as sudo and login compute them (initgroups: getgrouplist through
    // NSS), so membership a group's member list does not show — SSSD/AD with
    // ignore_group_members, nested groups, a primary gid — counts too.
    let name = std::ffi::CString::new(account.name.as_str()).map_err(|_| {
        GroupLookupError(format!(
            "{} is not a valid user name",
            crate::text::terminal_safe(&account.name)
        ))
    })?;
    let gids = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(account.gid)).map_err(|e| {
        GroupLookupError(format!(
            "cannot list the groups of {}: {}",
            crate::text::terminal_safe(&account.name),
            e.desc()
        ))
    })?;
    for g in groups {
        match nix::unistd::Group::from_name(g) {
            Ok(Some(grp)) => {
                if gids.contains(&grp.gid) || grp.mem.iter().any(|m| m == &account.name) {
                    return Ok(Some(g.clone()));
                }
            }
            // The defaults name groups not every distribution has (Debian has no wheel,
            // RHEL no sudo); any other listed group must be found, or we cannot tell.
            Ok(None) if DEFAULT_PROTECTED_GROUPS.contains(&g.as_str()) => {}
            Ok(None) => return Err(GroupLookupError(missing_group(g))),
            Err(e) => {
                return Err(GroupLookupError(format!(
                    "cannot look up the protected group {}: {}",
                    crate::text::terminal_safe(g),
                    e.desc()
                )))
            }
        }
    }
    Ok(None)
}

fn missing_group(g: &str) -> String {
    let why = "a typo in protected_groups, or its directory is unavailable";
    format!(
        "the protected group {} cannot be found ({why})",
        crate::text::terminal_safe(g)
    )
}

/// Turns a user name into a file name component: `[A-Za-z0-9_-]` and non-leading `.`/`@`
/// stay, everything else (including `%`) becomes `%XX`, so distinct names never collide and
/// `/`, `..` or control characters can never reach the path.
pub fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for (i, b) in user.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (i > 0 && (b == b'.' || b == b'@'));
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`escape_user`], for listing the state directory (`pam-totp report`):
/// `None` for a name `escape_user` would not have made (so no two file names map to one user).
pub fn unescape_user(escaped: &str) -> Option<String> {
    let b = escaped.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = escaped.get(i + 1..i + 3)?;
            if !hex.bytes().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (escape_user(&name) == escaped).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_safe_and_injective() {
        assert_eq!(escape_user("bob"), "bob");
        assert_eq!(escape_user("bob.smith@corp"), "bob.smith@corp");
        assert_eq!(escape_user("../etc"), "%2E.%2Fetc");
        assert_eq!(escape_user(".hidden"), "%2Ehidden");
        assert_eq!(escape_user("a%2F"), "a%252F");
        assert_eq!(escape_user("a/"), "a%2F");
        assert_eq!(escape_user("x\ny"), "x%0Ay");
        assert_ne!(escape_user("a%2F"), escape_user("a/"));
    }

    #[test]
    fn unescaping_inverts_escaping_and_nothing_else() {
        for name in [
            "bob",
            "bob.smith@corp",
            "../etc",
            ".hidden",
            "a%2F",
            "x\ny",
            "Zürich",
            "a b",
        ] {
            assert_eq!(unescape_user(&escape_user(name)).as_deref(), Some(name), "{name}");
        }
        for bad in ["%2", "%zz", "%2e.", "a%2f", ".x", "a/b", "%C3", "%41"] {
            assert_eq!(unescape_user(bad), None, "{bad}");
        }
    }

    /// A directory that matches names case-insensitively, like SSSD with
    /// `case_sensitive = false`.
    struct Loose;
    impl Accounts for Loose {
        fn lookup(&self, name: &str) -> Result<Option<Account>, Error> {
            Ok((name.eq_ignore_ascii_case("alice")).then(|| Account {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/alice".into(),
            }))
        }
    }

    #[test]
    fn every_spelling_resolves_to_the_account_name() {
        for typed in ["alice", "ALICE", "AliCE"] {
            assert_eq!(resolve(&Loose, typed).unwrap().name, "alice", "{typed}");
        }
        assert!(matches!(resolve(&Loose, "bob"), Err(Unresolved::Unknown)));
        assert!(matches!(resolve(&Loose, "a/b"), Err(Unresolved::Invalid)));
        assert!(matches!(resolve(&Loose, ".."), Err(Unresolved::Invalid)));
    }

    #[test]
    fn the_shadow_hash_of_exactly_that_account() {
        let text = "root:$y$abc:19000::::::\nalice:$6$salt$hash:19001:0:99999:7:::\nalicia:x:1::::::\n";
        assert_eq!(shadow_hash(text, "alice").unwrap().as_str(), "$6$salt$hash");
        assert_eq!(shadow_hash(text, "alic"), None);
        assert_eq!(shadow_hash(text, "bob"), None);
    }

    #[test]
    fn names_we_never_look_up() {
        for bad in ["", ".", "..", "a/b", "x\ny", "x\u{0}", &"a".repeat(257)] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
        assert!(valid_user_name("bob.smith@corp"));
    }
}
