//! Lock + read + modify + atomic write of one user's state: the only writer of state.
//!
//! Owns: the [`StateStore`] interface and its local-file implementation. The decision
//! logic only sees `StateStore`, so a store shared by a fleet (a database, a replicated
//! file) can be added without touching verify.rs.
//! Never: reads state for a decision without holding the lock; reports success before the
//! new state is on disk.

use std::path::{Path, PathBuf};

use crate::error::{Error, FileProblem};
use crate::fs::{Dir, Owners};
use crate::state::State;

pub trait StateStore {
    /// A consistent snapshot without taking the lock (writers replace the file
    /// atomically). For checks before prompting only; decisions go through `update`.
    fn peek(&self, user: &str) -> Result<State, Error>;

    /// Takes the user's exclusive lock, reads the state, gives it its per-user key if it
    /// has none ([`State::ensure_key`]: every keyed record depends on it, so no decision may
    /// run without it), runs `f`, writes the state back if it changed, releases the lock.
    /// When this returns `Ok`, the change is stored.
    ///
    /// `f` must be a pure decision over the state it is given (no side effects outside its
    /// return value): a store shared between hosts runs it again on the fresh state when
    /// another host changed the state between its read and its write (compare-and-swap).
    fn update<T>(&self, user: &str, f: impl FnMut(&mut State) -> T) -> Result<T, Error>;

    /// Deletes the user's state (used by `reset`).
    fn remove(&self, user: &str) -> Result<(), Error>;
}

/// State files in one root-owned directory: `<user>.state`, locked via `<user>.lock`.
#[derive(Debug)]
pub struct FileStore {
    dir: Dir,
    owner: u32,
    /// fsync the file and the directory when a write spends a credential (see `update`).
    durable: bool,
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

impl FileStore {
    /// Opens (creating it 0700 if missing) the state directory. It must be owned by the
    /// user we run as (root) and not writable by group or others.
    pub fn open(path: &Path, durable: bool) -> Result<FileStore, Error> {
        let owner = nix::unistd::geteuid().as_raw();
        let dir = Dir::open_or_create(path, &Owners(vec![owner]), 0o700)?;
        Ok(FileStore { dir, owner, durable })
    }

    /// Opens an existing state directory (same checks as [`FileStore::open`]) without ever
    /// creating it: for the command line, which must not create root-owned directories
    /// wherever a caller points `--state-dir` (the package and the module create it).
    /// `Ok(None)`: it does not exist.
    pub fn open_existing(path: &Path, durable: bool) -> Result<Option<FileStore>, Error> {
        let owner = nix::unistd::geteuid().as_raw();
        Ok(Dir::open_with(path, &Owners(vec![owner]), false)?.map(|dir| FileStore { dir, owner, durable }))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_path(&self, user: &str) -> PathBuf {
        self.dir.path().join(format!("{}.state", escape_user(user)))
    }

    fn owners(&self) -> Owners {
        Owners(vec![self.owner])
    }

    fn read(&self, user: &str) -> Result<State, Error> {
        let name = format!("{}.state", escape_user(user));
        match self.dir.read_file(&name, &self.owners())? {
            None => Ok(State::default()),
            Some(text) => {
                State::parse(&text).map_err(|why| Error::file(self.state_path(user), FileProblem::Malformed(why)))
            }
        }
    }
}

impl StateStore for FileStore {
    fn peek(&self, user: &str) -> Result<State, Error> {
        self.read(user)
    }

    fn update<T>(&self, user: &str, mut f: impl FnMut(&mut State) -> T) -> Result<T, Error> {
        let esc = escape_user(user);
        let lock_name = format!("{esc}.lock");
        let lock = self.dir.open_lock_file(&lock_name, &self.owners())?;
        // Blocks until every other login of this user has finished its read-modify-write.
        // The lock is released when `lock` is dropped, or by the kernel if we die.
        lock.lock()
            .map_err(|e| Error::io(self.dir.path().join(&lock_name), &e))?;
        let mut state = self.read(user)?;
        let before = state.clone();
        state.ensure_key().map_err(|e| {
            Error::file(
                self.state_path(user),
                FileProblem::Io(format!("the OS random source failed: {e}")),
            )
        })?;
        let out = f(&mut state);
        if state != before {
            let text = state
                .to_toml()
                .map_err(|why| Error::file(self.state_path(user), FileProblem::Malformed(why)))?;
            // Every write is atomic (rename); only a spent credential — a newly accepted time
            // step, HOTP counter or backup code — or the record of an enrollment is also
            // fsync'd, so that a power cut cannot bring back a code that was already used. A
            // lost failure count or lockout only resets a counter, and skipping its fsync keeps
            // the wrong-code path (a brute-force storm) cheap. The per-user key is written with
            // the first spend at the latest, so every durable record is durable with its key.
            let spends = state.devices != before.devices
                || state.used_backup != before.used_backup
                || state.enrolled != before.enrolled
                || state.v1_last_step != before.v1_last_step;
            self.dir
                .write_atomic(&format!("{esc}.state"), text.as_bytes(), 0o600, self.durable && spends)?;
        }
        drop(lock);
        Ok(out)
    }

    fn remove(&self, user: &str) -> Result<(), Error> {
        let esc = escape_user(user);
        let lock = self.dir.open_lock_file(&format!("{esc}.lock"), &self.owners())?;
        lock.lock().map_err(|e| Error::io(self.dir.path(), &e))?;
        self.dir.remove(&format!("{esc}.state"))
    }
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

    fn tmp() -> PathBuf {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).unwrap();
        std::env::temp_dir().join(format!("pam-totp-store-{}", u64::from_le_bytes(b)))
    }

    #[test]
    fn creates_directory_0700_and_persists_updates() {
        use std::os::unix::fs::MetadataExt;
        let d = tmp();
        let s = FileStore::open(&d, false).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        assert_eq!(s.peek("bob").unwrap(), State::default());
        s.update("bob", |st| st.failures = 3).unwrap();
        assert_eq!(s.peek("bob").unwrap().failures, 3);
        assert!(d.join("bob.lock").exists(), "lock file is kept");
        s.remove("bob").unwrap();
        assert_eq!(s.peek("bob").unwrap(), State::default());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_fresh_start() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmp();
        let s = FileStore::open(&d, false).unwrap();
        std::fs::write(d.join("bob.state"), "version = 2\nfailures = \"x\"").unwrap();
        std::fs::set_permissions(d.join("bob.state"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(s.peek("bob").is_err());
        assert!(s.update("bob", |_| ()).is_err());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let d = tmp();
        let _ = FileStore::open(&d, false).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let s = FileStore::open(&d, false).unwrap();
                    for _ in 0..25 {
                        s.update("bob", |st| st.failures += 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(FileStore::open(&d, false).unwrap().peek("bob").unwrap().failures, 200);
        std::fs::remove_dir_all(d).unwrap();
    }
}
