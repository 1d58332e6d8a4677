//! Lock + read + modify + atomic write of one user's state: the only writer of state.
//!
//! Owns: the [`StateStore`] interface and its local-file implementation. The decision
//! logic only sees `StateStore`, so a store shared by a fleet (a database, a replicated
//! file) can be added without touching login/verify.rs.
//! Never: reads state for a decision without holding the lock; reports success before the
//! new state is on disk.

use std::path::{Path, PathBuf};

use crate::account::escape_user;
use crate::error::{Error, FileProblem};
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::files::fs::{read_capped_plain, Dir, Owners};
use crate::state::file::{self, Image};
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

    /// Whether this store now decides on this host's own state in place of the fleet's
    /// (`store_unavailable = "local"` while the fleet store is down). Such a store answers
    /// no question that decides whether a code is asked, and takes time-based codes only.
    fn decides_locally(&self) -> bool {
        false
    }
}

/// Lifts RLIMIT_FSIZE for as long as it lives, and puts the caller's limit back on drop.
/// The module and the vault's helper run as root in a process whose limits the user set (su,
/// sudo, a setuid helper inherit them); root may raise them. Outside root it does nothing.
struct FsizeUnlimited(Option<(nix::sys::resource::rlim_t, nix::sys::resource::rlim_t)>);

/// The least file size limit under which an attempt may be decided: a state file is at most
/// this big. Below it, a write could fail halfway through the decision.
const MIN_FSIZE: u64 = 2 * crate::files::fs::MAX_FILE_SIZE;

impl FsizeUnlimited {
    /// Raises the limit (the hard one too where this process may: root with
    /// CAP_SYS_RESOURCE; else the soft one up to the hard one). `Err` when it stays too low
    /// to record an attempt: the caller then decides nothing.
    fn raise() -> Result<FsizeUnlimited, String> {
        use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
        let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_FSIZE) else {
            return Ok(FsizeUnlimited(None));
        };
        if soft == RLIM_INFINITY && hard == RLIM_INFINITY {
            return Ok(FsizeUnlimited(None));
        }
        if setrlimit(Resource::RLIMIT_FSIZE, RLIM_INFINITY, RLIM_INFINITY).is_err() {
            let _ = setrlimit(Resource::RLIMIT_FSIZE, hard, hard);
        }
        let guard = FsizeUnlimited(Some((soft, hard)));
        match getrlimit(Resource::RLIMIT_FSIZE) {
            Ok((now, _)) if now == RLIM_INFINITY || now >= MIN_FSIZE => Ok(guard),
            _ => Err(format!(
                "the file size limit of this process ({} bytes, ulimit -f) is too low to record the attempt",
                hard
            )),
        }
    }
}

impl Drop for FsizeUnlimited {
    fn drop(&mut self) {
        if let Some((soft, hard)) = self.0 {
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, soft, hard);
        }
    }
}

/// State files in one root-owned directory: `<user>.state`, locked via `<user>.lock`.
#[derive(Debug)]
pub struct FileStore {
    dir: Dir,
    owner: u32,
    /// fsync the file and the directory when a write spends a credential (see `update`).
    durable: bool,
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

    /// Reads the user's state file: `(state, Some(image))` for a format-3 file (opened
    /// read-write when `write`), `(state, None)` for a version 1/2 TOML file, which the next
    /// write replaces by a format-3 file, or the default state when there is none.
    fn read(&self, user: &str, write: bool) -> Result<(State, Option<(File, Image)>), Error> {
        let name = format!("{}.state", escape_user(user));
        let path = self.state_path(user);
        let Some((file, md)) = self
            .dir
            .open_checked(&name, &self.owners(), write, file::MAX_FILE as u64)?
        else {
            return Ok((State::default(), None));
        };
        use std::os::unix::fs::MetadataExt;
        // Not wiped as a whole: the state holds no secret of the user's, and its one key
        // (for keyed hashes) is wiped from the buffer below; wiping 12 KiB of mostly zeros
        // twice per login was a tenth of the module's time.
        let mut bytes = read_capped_plain(&file, &path, file::MAX_FILE as u64, md.size())?;
        if file::is_format3(&bytes) {
            let img = file::decode_file(&bytes);
            file::wipe(&mut bytes);
            let img = img.map_err(|why| Error::file(&path, FileProblem::Malformed(why.to_string())))?;
            return Ok((img.state.clone(), Some((file, img))));
        }
        let bytes = zeroize::Zeroizing::new(bytes);
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            Error::file(
                &path,
                FileProblem::Malformed(format!("not UTF-8 text (byte {})", e.valid_up_to())),
            )
        })?;
        let state = State::parse(text).map_err(|why| Error::file(&path, FileProblem::Malformed(why.to_string())))?;
        Ok((state, None))
    }

    /// Stores `state` over `before` (read from `on_disk`): see [`StateStore::update`].
    fn write(&self, user: &str, state: &State, before: &State, on_disk: Option<(File, Image)>) -> Result<(), Error> {
        let path = self.state_path(user);
        let malformed = |why: super::FormatError| Error::file(&path, FileProblem::Malformed(why.0));
        let io = |e: std::io::Error| Error::io(&path, &e);
        let counts = |s: &State| (s.failures, s.locked_until);
        let only_counts = {
            let mut without = state.clone();
            (without.failures, without.locked_until) = counts(before);
            without == *before
        };
        // A wrong code (only the counts) needs no record encoded: the hot path of a storm.
        let payload = if only_counts && on_disk.is_some() {
            zeroize::Zeroizing::new(Vec::new())
        } else {
            zeroize::Zeroizing::new(file::encode_payload(state).map_err(malformed)?)
        };
        match on_disk {
            Some((file, img)) if only_counts || file::fits(img.slot_size, payload.len()) => {
                if !only_counts {
                    // Anything but the counts changed (a spent credential, the enrollment
                    // record, the key, a remembered host): the whole state, counts included,
                    // into the slot that does not hold the newest valid record, then one
                    // fdatasync — one block, and no metadata (the file's size and blocks
                    // never change). The counters record, stamped with an older slot, no
                    // longer applies.
                    let rec = zeroize::Zeroizing::new(file::slot_record(img.seq + 1, &payload));
                    let at = file::slot_offset(img.slot_size, 1 - img.slot);
                    let written =
                        file.write_all_at(&rec, at)
                            .and_then(|()| if self.durable { file.sync_data() } else { Ok(()) });
                    if let Err(e) = written {
                        // The record may be in the page cache but not on the disk (a failed
                        // flush leaves the page clean, and later flushes report nothing):
                        // read as the newest, it would send the next write over the slot
                        // holding the only flushed copy. Its magic goes first; the login is
                        // refused either way.
                        let _ = file.write_all_at(&file::SLOT_KILL, at);
                        let _ = file.sync_data();
                        return Err(io(e));
                    }
                } else if counts(state) != counts(before) {
                    // Only the counts (a wrong code, a lockout): the counters record in place,
                    // stamped with the newest slot, not flushed — a crash may forget a failure,
                    // never a spent code — which keeps a brute-force storm cheap. Counts that
                    // go down (`pam-totp unlock`, a lockout that ended) are flushed, so a
                    // crash does not bring back a lockout an administrator lifted.
                    let rec = file::counters_record(img.seq, state.failures, state.locked_until);
                    file.write_all_at(&rec, file::counters_offset()).map_err(io)?;
                    let lowered = state.failures < before.failures || state.locked_until < before.locked_until;
                    if lowered && self.durable {
                        file.sync_data().map_err(io)?;
                    }
                }
                Ok(())
            }
            old => {
                // A new user, a version 1/2 file, or a state that outgrew its slots: a whole
                // new file, written aside and renamed into place (flushed, with the directory,
                // when durable). The sequence continues so a reader never goes backwards.
                let seq = old.map_or(1, |(_, img)| img.seq + 1);
                let image = file::new_file(state, seq).map_err(malformed)?;
                let name = format!("{}.state", escape_user(user));
                self.dir.write_atomic(&name, &image, 0o600, self.durable)
            }
        }
    }
}

impl StateStore for FileStore {
    fn peek(&self, user: &str) -> Result<State, Error> {
        // Without the lock a writer may be in the middle of a slot or the counters: the
        // checksums make the reader take the previous record then. A damaged record is read
        // again a few times (it may be a write in progress, and the reader would otherwise
        // see an older state or no failures); a record damaged for good stays what it is.
        // A read that overlapped two writes may even find both slots mid-write: that is
        // read again too, and only refused if it stays so.
        let mut last = self.read(user, false);
        for _ in 0..3 {
            match &last {
                Ok((_, Some((_, img)))) if !img.counters_valid || img.other_torn => {}
                Err(Error::File {
                    problem: FileProblem::Malformed(_),
                    ..
                }) => {}
                _ => break,
            }
            last = self.read(user, false);
        }
        last.map(|(state, _)| state)
    }

    fn update<T>(&self, user: &str, mut f: impl FnMut(&mut State) -> T) -> Result<T, Error> {
        let esc = escape_user(user);
        let lock_name = format!("{esc}.lock");
        let lock = self.dir.open_lock_file(&lock_name, &self.owners())?;
        // Blocks until every other login of this user has finished its read-modify-write.
        // The lock is released when `lock` is dropped, or by the kernel if we die.
        lock.lock()
            .map_err(|e| Error::io(self.dir.path().join(&lock_name), &e))?;
        // The caller's file size limit must not decide whether an attempt is recorded:
        // `ulimit -f 0` before su or sudo would make every write fail, so that wrong codes
        // go uncounted and the time a failed write takes tells a right code from a wrong one.
        // Checked before anything is decided: under too low a limit no code is looked at.
        let _fsize = FsizeUnlimited::raise().map_err(|why| Error::file(self.state_path(user), FileProblem::Io(why)))?;
        let (mut state, on_disk) = self.read(user, true)?;
        let before = state.clone();
        state.ensure_key().map_err(|e| {
            Error::file(
                self.state_path(user),
                FileProblem::Io(format!("the OS random source failed: {e}")),
            )
        })?;
        let out = f(&mut state);
        if state != before {
            self.write(user, &state, &before, on_disk)?;
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
    fn inode(p: &Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.len())
    }

    #[test]
    fn version_1_and_2_files_are_read_and_replaced_by_format_3_at_the_next_write() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmp();
        let s = FileStore::open(&d, true).unwrap();
        let p = d.join("bob.state");
        for (text, failures) in [
            ("version = 1\nlast_step = 5\nfailures = 2\n", 2),
            ("version = 2\nfailures = 3\nenrolled = 9\n", 3),
        ] {
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert_eq!(s.peek("bob").unwrap().failures, failures);
            s.update("bob", |st| st.failures += 1).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert!(file::is_format3(&bytes));
            let st = s.peek("bob").unwrap();
            assert_eq!(st.failures, failures + 1);
            assert_eq!(st.key.len(), 64, "the key is made with the first write");
            std::fs::remove_file(&p).unwrap();
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A wrong code changes only the counters record, in place; a spend writes the other
    /// slot, in place: the file keeps its inode and size, and the slot holding the newest
    /// record is never the one written.
    #[test]
    fn writes_go_in_place_to_the_other_slot_and_failures_touch_only_the_counters() {
        let d = tmp();
        let s = FileStore::open(&d, true).unwrap();
        let p = d.join("bob.state");
        s.update("bob", |st| st.failures = 1).unwrap();
        let first = inode(&p);
        let img = |p: &Path| file::decode_file(&std::fs::read(p).unwrap()).unwrap();
        let before = std::fs::read(&p).unwrap();
        s.update("bob", |st| st.failures = 2).unwrap();
        let after = std::fs::read(&p).unwrap();
        let changed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != after[i]).collect();
        assert!(
            changed.iter().all(|&i| i < file::BLOCK),
            "a failure only rewrites the counters"
        );
        assert_eq!(img(&p).state.failures, 2);
        for round in 0..4u64 {
            let old = img(&p);
            let newest = std::fs::read(&p).unwrap();
            let at = file::slot_offset(old.slot_size, old.slot) as usize;
            s.update("bob", |st| st.last_success = 100 + round).unwrap();
            let now = img(&p);
            assert_eq!((now.seq, now.slot), (old.seq + 1, 1 - old.slot));
            assert_eq!(now.state.last_success, 100 + round);
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(
                bytes[at..at + old.slot_size],
                newest[at..at + old.slot_size],
                "the newest record is never overwritten"
            );
            assert_eq!(inode(&p), first, "same file, same size");
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_state_that_outgrows_its_slots_moves_to_a_larger_file() {
        let d = tmp();
        let s = FileStore::open(&d, true).unwrap();
        let p = d.join("bob.state");
        s.update("bob", |st| st.failures = 1).unwrap();
        let small = inode(&p);
        s.update("bob", |st| {
            for i in 0..100u32 {
                st.used_backup.push(crate::state::UsedBackup {
                    tag: format!("{i:032x}"),
                    entry: format!("{i:016x}"),
                });
            }
        })
        .unwrap();
        let big = inode(&p);
        assert!(big.1 > small.1, "{big:?} {small:?}");
        let st = s.peek("bob").unwrap();
        assert_eq!((st.used_backup.len(), st.failures), (100, 1));
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Readers take no lock: while writers rewrite slots and counters in place, every peek
    /// must see a whole state, and the spend count never goes backwards.
    #[test]
    fn lock_free_readers_see_whole_states_during_in_place_writes() {
        let d = tmp();
        let s = FileStore::open(&d, false).unwrap();
        s.update("bob", |st| st.last_success = 0).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let d = d.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let s = FileStore::open(&d, false).unwrap();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    s.update("bob", |st| {
                        st.last_success = n;
                        st.failures = (n % 7) as u32;
                    })
                    .unwrap();
                }
                n
            })
        };
        let mut seen = 0;
        for _ in 0..20_000 {
            let st = s.peek("bob").unwrap();
            assert!(st.last_success >= seen, "went back from {seen} to {}", st.last_success);
            seen = st.last_success;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = writer.join().unwrap();
        assert!(n > 10, "the writer ran ({n} writes)");
        std::fs::remove_dir_all(d).unwrap();
    }
    /// A flush that fails (EIO) leaves a record in the page cache that may never reach the
    /// disk; `write` then overwrites its magic. This checks what that buys (the error itself
    /// cannot be injected here): with the record killed, the reader takes the flushed slot,
    /// and the next spend goes over the killed slot — never over the only flushed copy — so
    /// a power cut tearing that next write still reads as the flushed state.
    #[test]
    fn a_slot_killed_after_a_failed_flush_keeps_the_flushed_copy_safe() {
        use std::os::unix::fs::FileExt;
        let d = tmp();
        let s = FileStore::open(&d, true).unwrap();
        let p = d.join("bob.state");
        let tag = |i: u32| crate::state::UsedBackup {
            tag: format!("{i:032x}"),
            entry: format!("{i:016x}"),
        };
        s.update("bob", |st| st.used_backup.extend((0..15).map(|i| tag(0x100 + i))))
            .unwrap();
        s.update("bob", |st| st.used_backup.push(tag(0xA))).unwrap(); // accepted, flushed
        let flushed = std::fs::read(&p).unwrap();
        let a = file::decode_file(&flushed).unwrap();
        s.update("bob", |st| st.used_backup.push(tag(0xB))).unwrap(); // its flush "fails":
        let at = file::slot_offset(a.slot_size, 1 - a.slot);
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&file::SLOT_KILL, at).unwrap();
        let st = s.peek("bob").unwrap();
        assert!(
            !st.used_backup.iter().any(|u| u.tag == tag(0xB).tag),
            "the killed record is not read"
        );
        s.update("bob", |st| st.used_backup.push(tag(0xC))).unwrap(); // the next spend
        let cache = std::fs::read(&p).unwrap();
        let flushed_slot = file::slot_offset(a.slot_size, a.slot) as usize;
        assert_eq!(
            cache[flushed_slot..flushed_slot + a.slot_size],
            flushed[flushed_slot..flushed_slot + a.slot_size],
            "the only flushed copy was not written over"
        );
        // A power cut after the first sector of that write: still the flushed state.
        let mut disk = flushed.clone();
        disk[at as usize..at as usize + 512].copy_from_slice(&cache[at as usize..at as usize + 512]);
        let after = file::decode_file(&disk).unwrap();
        assert!(after.state.used_backup.iter().any(|u| u.tag == tag(0xA).tag));
        std::fs::remove_dir_all(d).unwrap();
    }
}
