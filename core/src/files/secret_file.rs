//! The one place a user's keys are found, read, written and removed — shared by the module
//! (reads only) and the `pam-totp` command line.
//!
//! Keys are in one of three places ([`KeyFile`]): the vault, `STATE_DIR/vault/<user>.toml`,
//! root's only (a 0700 directory of root's, files 0600 owned by root); with `store =
//! "fleet"`, the fleet vault in etcd (sealed, `files/fleet_vault.rs`); or the legacy secret
//! file at the `secret=` template (usually in the home, readable by the user). A user with
//! keys in a vault is read from there only; a home file is then ignored.
//!
//! Never: writes a key file that is group/other-readable, follows a symlink at the file, or
//! replaces an enrollment unless asked to; accepts a vault file or directory that is not
//! root's. Files in a user's home are read and written with the user's file-system
//! identity, so they end up owned by the user and root never acts on a path the user could
//! redirect.

use std::fs::TryLockError;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::account::{escape_user, Account};
use crate::config::{expand_template, Config, KeyStore};
use crate::error::{Error, FileProblem};
use crate::files::fleet_vault::FleetVault;
use crate::files::fs::{read_checked_stamped, split_path, stamp_checked, with_fs_identity, Dir, FileStamp, Owners};
use crate::files::secret::{ParseError, SecretFile};

/// Where a user's keys are: a file in the vault, the fleet vault, or the legacy secret file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// The file; for the fleet vault, how messages name the record (`fleet vault <etcd key>`).
    pub path: PathBuf,
    /// In a vault: root's only, never read or written with the user's identity.
    pub in_vault: bool,
    /// In the fleet vault (etcd, sealed), not in a file.
    pub fleet: Option<FleetVault>,
    /// With the fleet vault: this host's own key files of the user (its vault file, the
    /// secret file) found beside it. Harmless when their keys are all in the fleet's record
    /// (left over from a migration); otherwise the login is refused: keys in two places
    /// (an enrollment on another host, perhaps by someone else, while this host kept its own).
    pub leftovers: Vec<KeyFile>,
    /// Why these keys cannot be read at all (the login is refused, never decided as "not
    /// enrolled").
    pub refuse: Option<String>,
    /// With the fleet vault: the record as [`key_file`] read it, which the first read that
    /// follows opens (one read of the fleet, and the keys chosen are the keys read); taken by
    /// it, so that a later read (once the code is typed) asks the fleet again.
    pub fetched: std::cell::RefCell<Option<crate::fleet::Doc>>,
}

/// What a key file was read as, to tell later whether it changed ([`secret_unchanged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStamp {
    File(FileStamp),
    /// The fleet vault record's etcd revision.
    Fleet(u64),
}

impl KeyFile {
    /// A secret file at `path`, outside the vault.
    pub fn legacy(path: impl Into<PathBuf>) -> KeyFile {
        KeyFile {
            path: path.into(),
            in_vault: false,
            fleet: None,
            leftovers: Vec::new(),
            refuse: None,
            fetched: std::cell::RefCell::new(None),
        }
    }

    /// Who may own the file and its directory: root alone in the vault; the user or root
    /// for a secret file.
    fn owners(&self, account: &Account) -> Owners {
        if self.in_vault {
            Owners(vec![0])
        } else {
            Owners(vec![account.uid, 0])
        }
    }

    fn in_home(&self, account: &Account) -> bool {
        !self.in_vault
            && account.home.is_absolute()
            && account.home != Path::new("/")
            && self.path.starts_with(&account.home)
    }

    /// Runs `f` as the user (file-system identity) when the file is in their home.
    fn as_owner<T>(&self, account: &Account, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        if self.in_home(account) {
            with_fs_identity(account.uid, account.gid, &self.path, f)?
        } else {
            f()
        }
    }

    pub fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }
}

impl std::ops::Deref for KeyFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// The vault directory: `STATE_DIR/vault`.
pub fn vault_dir(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("vault")
}

/// Where new keys of `account` go in the vault (whether or not they exist): the fleet
/// vault with `store = "fleet"`, else this host's vault file.
pub fn vault_file(cfg: &Config, account: &Account) -> KeyFile {
    match FleetVault::of(cfg) {
        Some(fv) => KeyFile {
            path: fv.label(&account.name),
            in_vault: true,
            fleet: Some(fv),
            leftovers: Vec::new(),
            refuse: None,
            fetched: std::cell::RefCell::new(None),
        },
        None => local_vault_file(cfg, account),
    }
}

/// `account`'s file in this host's vault (whether or not it exists).
pub fn local_vault_file(cfg: &Config, account: &Account) -> KeyFile {
    KeyFile {
        path: vault_dir(cfg).join(format!("{}.toml", escape_user(&account.name))),
        in_vault: true,
        fleet: None,
        leftovers: Vec::new(),
        refuse: None,
        fetched: std::cell::RefCell::new(None),
    }
}

/// `account`'s legacy secret file at the `secret=` template (whether or not it exists).
pub fn secret_path(cfg: &Config, account: &Account) -> KeyFile {
    KeyFile {
        path: expand_template(&cfg.secret, &account.name, &account.home),
        in_vault: false,
        fleet: None,
        leftovers: Vec::new(),
        refuse: None,
        fetched: std::cell::RefCell::new(None),
    }
}

/// Where `account`'s keys are read from and changed: the vault when it holds them (or when
/// no place does and new enrollments go to the vault), else the legacy secret file.
/// Looking into the vault takes root; for anyone else the answer is the legacy file.
/// With the fleet vault, see [`fleet_key_file`].
pub fn key_file(cfg: &Config, account: &Account) -> KeyFile {
    if let Some(fv) = FleetVault::of(cfg).filter(|_| nix::unistd::geteuid().is_root()) {
        return fleet_key_file(cfg, account, fv);
    }
    let vault = local_vault_file(cfg, account);
    match std::fs::symlink_metadata(&vault.path) {
        // Whatever is there (a file, or something the read then refuses) is the vault's.
        Ok(_) => vault,
        Err(_) if cfg.key_store == KeyStore::Vault && nix::unistd::geteuid().is_root() => {
            let legacy = secret_path(cfg, account);
            let legacy_there = legacy.as_owner(account, || Ok(std::fs::symlink_metadata(&legacy.path).is_ok()));
            match legacy_there {
                Ok(false) => vault,
                _ => legacy,
            }
        }
        Err(_) => secret_path(cfg, account),
    }
}

/// With the fleet vault (as root): the fleet's record when it has one — with this host's own
/// key files of the user as [`KeyFile::leftovers`], checked at the read; when it has none,
/// this host's vault file or the secret file (read until `pam-totp migrate`), unless this host
/// has seen the user's keys in the fleet vault or `migrate --all` retired its key files: then
/// the login is refused (a record removed from etcd — a reset elsewhere, or whoever can write
/// the prefix — must not hand the login to a file the user, or an older enrollment, left
/// here). When the fleet cannot be asked, refused ([`KeyFile::refuse`]), never decided on a
/// file here.
fn fleet_key_file(cfg: &Config, account: &Account, fv: FleetVault) -> KeyFile {
    let mut fleet = vault_file(cfg, account);
    let local = local_vault_file(cfg, account);
    let legacy = secret_path(cfg, account);
    let mut present = Vec::new();
    if std::fs::symlink_metadata(&local.path).is_ok() {
        present.push(local);
    }
    // A home that cannot be looked into counts as holding one: the read then says why.
    if !matches!(
        legacy.as_owner(account, || Ok(std::fs::symlink_metadata(&legacy.path).is_ok())),
        Ok(false)
    ) {
        present.push(legacy);
    }
    match fv.get_fleet(&account.name) {
        // An etcd outage with `store_unavailable = "local"`: the read falls back to this
        // host's copy of the record (this host's files stay beside it, checked as always).
        Err(crate::fleet::FleetError::Unavailable(_)) if fv.fallback => fleet.leftovers = present,
        Err(e) => fleet.refuse = Some(format!("{e}")),
        Ok(Some(d)) => {
            fleet.leftovers = present;
            fleet.fetched = std::cell::RefCell::new(Some(d));
        }
        Ok(None) if present.is_empty() => {}
        Ok(None) => {
            let why = if fv.retired() {
                Some("`pam-totp migrate --all` moved this host's keys into the fleet vault")
            } else if fv.marked(&account.name) {
                Some("this host has read their keys from the fleet vault before")
            } else {
                None
            };
            match why {
                Some(why) => {
                    fleet.refuse = Some(format!(
                        "the fleet vault has no keys for {}, and {} is not read ({why}): `pam-totp reset --user {}` on this host removes it, then they enroll again",
                        crate::text::log_name(&account.name),
                        present.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "),
                        crate::text::log_name(&account.name)
                    ));
                    fleet.leftovers = present;
                }
                None => return present.remove(0),
            }
        }
    }
    fleet
}

/// Whether every key of `part` is one of `whole`'s (a file left over from a migration).
pub fn keys_within(part: &SecretFile, whole: &SecretFile) -> bool {
    part.devices
        .iter()
        .all(|d| whole.devices.iter().any(|w| w.key.as_slice() == d.key.as_slice()))
}

/// Reads and parses a key file (see fs.rs for the checks). `Ok(None)`: no such file.
pub fn load_secret(file: &KeyFile, account: &Account) -> Result<Option<SecretFile>, Error> {
    Ok(load_secret_stamped(file, account)?.map(|(s, _)| s))
}

/// [`load_secret`], with the [`KeyStamp`] of what was read, for [`secret_unchanged`].
pub fn load_secret_stamped(file: &KeyFile, account: &Account) -> Result<Option<(SecretFile, KeyStamp)>, Error> {
    if let Some(fv) = &file.fleet {
        if let Some(why) = &file.refuse {
            return Err(Error::file(&file.path, FileProblem::Io(why.clone())));
        }
        let fetched = file.fetched.borrow_mut().take();
        let read = match &fetched {
            Some(d) => Some(fv.open_read(account, d)?),
            None => fv.load(account)?,
        };
        let Some(k) = read else {
            if !file.leftovers.is_empty() {
                return Err(Error::file(
                    &file.path,
                    FileProblem::Io(
                        "the record was removed while this host holds key files of the user: read again".into(),
                    ),
                ));
            }
            return Ok(None);
        };
        for l in &file.leftovers {
            match load_secret(l, account) {
                Ok(None) => {}
                Ok(Some(s)) if keys_within(&s, &k.secret) => {}
                Ok(Some(_)) => {
                    return Err(Error::file(
                        &file.path,
                        FileProblem::Io(format!(
                            "keys in two places: {} holds other keys than the fleet vault (an enrollment on another host, perhaps not by the user, while this host kept its own): decide which are theirs; `pam-totp reset --user {}` removes both, then they enroll again",
                            l.display(),
                            crate::text::log_name(&account.name)
                        )),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        return Ok(Some((k.secret, KeyStamp::Fleet(k.revision))));
    }
    let owners = file.owners(account);
    let path = &file.path;
    let Some((text, stamp)) = file.as_owner(account, || read_checked_stamped(path, &owners))? else {
        return Ok(None);
    };
    SecretFile::parse(&text)
        .map(|s| Some((s, KeyStamp::File(stamp))))
        .map_err(|e| {
            let problem = match e {
                ParseError::Malformed(why) => FileProblem::Malformed(why),
                ParseError::UnsupportedVersion(v) => FileProblem::UnsupportedVersion(v),
            };
            Error::file(path, problem)
        })
}

/// Whether `path` is still the file that was read with `stamp` (same device and inode, same
/// size and change times): the file is opened again as its owner with every check of a read
/// (directory and file owner and mode, no symlink, one link), and its `fstat` compared —
/// no read and no parse. An open, not an `lstat`: on NFS an open revalidates the name and
/// the attributes (close-to-open), where an `lstat` may answer from a cache for a minute.
/// `false` when it is gone, refused or different (the caller then reads it again).
pub fn secret_unchanged(file: &KeyFile, account: &Account, stamp: &KeyStamp) -> bool {
    let stamp = match (stamp, &file.fleet) {
        (KeyStamp::Fleet(rev), Some(fv)) => return fv.unchanged(account, *rev),
        (KeyStamp::File(s), None) => s,
        _ => return false,
    };
    let owners = file.owners(account);
    let now = file.as_owner(account, || stamp_checked(&file.path, &owners));
    matches!(now, Ok(Some(s)) if s == *stamp)
}

/// Writes the secret file atomically (temp file, fsync, rename, directory fsync), mode
/// 0600, creating its directory 0700 (and `~/.config` when the file is under the home).
/// In the user's home this runs with the user's file-system identity, so the files belong
/// to the user; elsewhere (an administrator's central directory) they belong to root.
/// Without `replace`, an existing file is an [`FileProblem::AlreadyExists`] error.
pub fn save_secret(file: &KeyFile, account: &Account, secret: &SecretFile, replace: bool) -> Result<(), Error> {
    if let Some(fv) = &file.fleet {
        if replace {
            return fv.replace(account, secret);
        }
        return fv.update(account, |cur| match cur {
            Some(_) if !replace => Err(Error::file(&file.path, FileProblem::AlreadyExists)),
            _ => Ok((Some(secret.clone()), ())),
        });
    }
    let (_, name) = split_path(&file.path).ok_or_else(|| not_a_file(&file.path))?;
    let text = secret.to_toml();
    file.as_owner(account, || {
        open_secret_dir(file, account)?.write_file(name, text.as_bytes(), 0o600, true, replace)
    })
}

/// How long [`update_secret`] waits for another process's lock on a secret file. The
/// lock file is in a directory its user owns, so the user can hold it as long as they
/// like: without a bound, root's `import tokens` would wait for them forever, and every
/// user after them in the file with it.
pub const SECRET_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Changes a secret file under a lock: takes an exclusive `flock` on `.<name>.lock` next to
/// it, reads the file as it is now (None: there is none), runs `f` on it and, when `f`
/// returns a file, writes that (atomically, as [`save_secret`] does) before the lock is
/// released. Every command that changes an existing enrollment (`enroll --add`, `devices`,
/// `backup-codes --regenerate`, `import`) goes through here, so two of them never write back
/// a copy read before the other's change — a device removed while another is being added
/// stays removed. (The module only reads; writes replace the file atomically.) A lock held
/// elsewhere for longer than [`SECRET_LOCK_WAIT`] is a [`FileProblem::Locked`] error naming
/// the lock file, and `f` does not run.
pub fn update_secret<T, E: From<Error>>(
    file: &KeyFile,
    account: &Account,
    f: impl FnOnce(Option<SecretFile>) -> Result<(Option<SecretFile>, T), E>,
) -> Result<T, E> {
    if let Some(fv) = &file.fleet {
        return fv.update(account, f);
    }
    update_secret_within(file, account, SECRET_LOCK_WAIT, f)
}

fn update_secret_within<T, E: From<Error>>(
    file: &KeyFile,
    account: &Account,
    wait: Duration,
    f: impl FnOnce(Option<SecretFile>) -> Result<(Option<SecretFile>, T), E>,
) -> Result<T, E> {
    let path = &file.path;
    let (dir_path, name) = split_path(path).ok_or_else(|| not_a_file(path))?;
    let owners = file.owners(account);
    let mut f = Some(f);
    let mut out: Option<Result<T, E>> = None;
    file.as_owner(account, || {
        let dir = open_secret_dir(file, account)?;
        let lock_name = format!(".{name}.lock");
        let lock = dir.open_lock_file(&lock_name, &owners)?;
        lock_within(&lock, &dir_path.join(&lock_name), wait)?;
        let current = match dir.read_file(name, &owners)? {
            None => None,
            Some(text) => Some(SecretFile::parse(&text).map_err(|e| {
                let problem = match e {
                    ParseError::Malformed(why) => FileProblem::Malformed(why),
                    ParseError::UnsupportedVersion(v) => FileProblem::UnsupportedVersion(v),
                };
                Error::file(path, problem)
            })?),
        };
        let Some(f) = f.take() else { return Ok(()) };
        match f(current) {
            Ok((Some(new), t)) => {
                dir.write_file(name, new.to_toml().as_bytes(), 0o600, true, true)?;
                out = Some(Ok(t));
            }
            Ok((None, t)) => out = Some(Ok(t)),
            Err(e) => out = Some(Err(e)),
        }
        drop(lock);
        Ok(())
    })?;
    out.unwrap_or_else(|| Err(E::from(Error::Config("the secret file update did not run".into()))))
}

/// Takes an exclusive `flock` on `lock` (the file at `path`), trying again every 50 ms for
/// `wait` while another process holds it.
fn lock_within(lock: &std::fs::File, path: &Path, wait: Duration) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if start.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::file(
                    path,
                    FileProblem::Locked {
                        waited_secs: wait.as_secs_f64().ceil() as u64,
                    },
                ))
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(path, &e)),
        }
    }
}

/// Checks, before a new secret is shown to anyone, that [`save_secret`] will be able to
/// write it: creates the directory and creates and removes a probe file in it.
pub fn check_writable(file: &KeyFile, account: &Account) -> Result<(), Error> {
    if let Some(fv) = &file.fleet {
        // The ring can be read and the fleet answers.
        fv.ring()?;
        return fv.get(&account.name).map(|_| ());
    }
    file.as_owner(account, || {
        let d = open_secret_dir(file, account)?;
        d.write_file(".pam-totp-probe", b"", 0o600, false, true)?;
        d.remove(".pam-totp-probe")
    })
}

fn not_a_file(path: &Path) -> Error {
    Error::file(path, FileProblem::Io("not an absolute file path".into()))
}

/// Opens (creating it 0700, and in the home any missing directories between, usually
/// ~/.config) the secret file's directory. Runs inside [`as_owner`].
fn open_secret_dir(file: &KeyFile, account: &Account) -> Result<Dir, Error> {
    let path = &file.path;
    let (dir, _) = split_path(path).ok_or_else(|| not_a_file(path))?;
    if file.in_home(account) {
        if let Ok(rest) = dir.strip_prefix(&account.home) {
            let mut p = account.home.clone();
            for c in rest.components() {
                p.push(c);
                match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&p, &e)),
                }
            }
        }
    }
    Dir::open_or_create(dir, &file.owners(account), 0o700)
}

/// Removes a secret file. Returns whether there was one.
pub fn remove_secret(file: &KeyFile, account: &Account) -> Result<bool, Error> {
    if let Some(fv) = &file.fleet {
        // This host's own key files of the user go with the record: none may come back.
        let mut had = false;
        for l in &file.leftovers {
            had |= remove_secret(l, account)?;
        }
        return Ok(fv.remove(account)? || had);
    }
    let (dir, name) = split_path(&file.path).ok_or_else(|| not_a_file(&file.path))?;
    let owners = file.owners(account);
    file.as_owner(account, || {
        let Some(d) = Dir::open(dir, &owners)? else {
            return Ok(false);
        };
        let existed = d.read_file(name, &owners).map(|o| o.is_some()).unwrap_or(true);
        d.remove(name)?;
        Ok(existed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::secret::Kind;
    use crate::otp::enroll::{new_device, new_secret};
    use crate::otp::Params;

    fn account(home: &Path) -> Account {
        Account {
            name: "alice".into(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            home: home.to_path_buf(),
        }
    }

    fn tmp() -> PathBuf {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).unwrap();
        let p = std::env::temp_dir().join(format!("pam-totp-enroll-{}", u64::from_le_bytes(b)));
        std::fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
        p
    }

    #[test]
    fn save_creates_private_files_and_refuses_to_overwrite() {
        use std::os::unix::fs::MetadataExt;
        let home = tmp();
        let a = account(&home);
        let path = home.join(".config/pam-totp/secret.toml");
        let d = new_device("phone", Kind::Totp, Params::DEFAULT, "host", "alice@host", 5).unwrap();
        let (s, codes) = new_secret(d, 10).unwrap();
        assert_eq!(codes.len(), 10);
        save_secret(&KeyFile::legacy(&path), &a, &s, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
        let e = save_secret(&KeyFile::legacy(&path), &a, &s, false).unwrap_err();
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::AlreadyExists,
                    ..
                }
            ),
            "{e}"
        );
        save_secret(&KeyFile::legacy(&path), &a, &s, true).unwrap();
        let back = load_secret(&KeyFile::legacy(&path), &a).unwrap().unwrap();
        assert_eq!(back.devices[0].key.as_slice(), s.devices[0].key.as_slice());
        assert_eq!(back.backup_codes.len(), 10);
        assert!(remove_secret(&KeyFile::legacy(&path), &a).unwrap());
        assert!(load_secret(&KeyFile::legacy(&path), &a).unwrap().is_none());
        assert!(!remove_secret(&KeyFile::legacy(&path), &a).unwrap());
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn concurrent_updates_of_a_secret_file_lose_nothing() {
        let home = tmp();
        let a = account(&home);
        let path = home.join(".config/pam-totp/secret.toml");
        let d = new_device("phone", Kind::Totp, Params::DEFAULT, "h", "l", 0).unwrap();
        save_secret(&KeyFile::legacy(&path), &a, &new_secret(d, 0).unwrap().0, false).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (path, a) = (path.clone(), a.clone());
                std::thread::spawn(move || {
                    update_secret(&KeyFile::legacy(&path), &a, |cur| -> Result<_, Error> {
                        let mut s = cur.unwrap();
                        // Slow the read-modify-write down: without the lock, writes would race.
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        let d = new_device(&format!("d{i}"), Kind::Totp, Params::DEFAULT, "h", "l", 0)?;
                        s.devices.push(d);
                        Ok((Some(s), ()))
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            load_secret(&KeyFile::legacy(&path), &a).unwrap().unwrap().devices.len(),
            9
        );
        std::fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn a_secret_file_lock_held_elsewhere_is_waited_for_a_bounded_time_then_named() {
        let home = tmp();
        let a = account(&home);
        let path = home.join(".config/pam-totp/secret.toml");
        let d = new_device("phone", Kind::Totp, Params::DEFAULT, "h", "l", 0).unwrap();
        save_secret(&KeyFile::legacy(&path), &a, &new_secret(d, 0).unwrap().0, false).unwrap();
        let lock_path = home.join(".config/pam-totp/.secret.toml.lock");
        // Another open file description: flock conflicts as with another process.
        let holder = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .unwrap();
        holder.lock().unwrap();
        let start = std::time::Instant::now();
        let mut ran = false;
        let e = update_secret_within(
            &KeyFile::legacy(&path),
            &a,
            Duration::from_millis(300),
            |_| -> Result<_, Error> {
                ran = true;
                Ok((None, ()))
            },
        )
        .unwrap_err();
        let took = start.elapsed();
        assert!(!ran);
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert!(
            matches!(&e, Error::File { path, problem: FileProblem::Locked { waited_secs: 1 } } if *path == lock_path),
            "{e}"
        );
        assert!(
            e.to_string().starts_with(&format!(
                "another process holds the lock {}; gave up after 1 s",
                lock_path.display()
            )),
            "{e}"
        );
        // Released, the update runs.
        drop(holder);
        update_secret(&KeyFile::legacy(&path), &a, |_| -> Result<_, Error> { Ok((None, ())) }).unwrap();
        std::fs::remove_dir_all(home).unwrap();
    }
}
