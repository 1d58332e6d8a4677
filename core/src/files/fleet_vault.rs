//! The fleet vault: users' keys in etcd, next to their state, sealed with the fleet's vault
//! key (`fleet.vault_key_file`), through `pam-totp-stated`. With `store = "fleet"` and
//! `key_store = "vault"` one enrollment serves every host of the namespace.
//!
//! Owns: reading the key ring (root's file, checked like a key file), and reading, changing
//! (one compare-and-swap on the record's revision) and removing a user's sealed keys; this
//! host's copy of each record it read or wrote (still sealed: the mark that it saw the user
//! in the fleet vault, and, with `store_unavailable = "local"`, what it reads while the daemon
//! reports an etcd outage); the mark that `migrate --all` retired this host's key files.
//! Never: sends or stores a key unsealed; opens a record with anything but this host's
//! ring; decides on an error (every failure is an `Err`, which refuses the login); logs a
//! key or a record.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::account::escape_user;
use crate::account::Account;
use crate::config::{Config, KeyStore, StoreKind, Unavailable};
use crate::error::{Error, FileProblem};
use crate::files::fs::{read_checked, Dir, Owners};
use crate::files::secret::{ParseError, SecretFile};
use crate::fleet::sealed::{open, seal, Ring};
use crate::fleet::{
    compose_document, document_state, vault_key, Client, Doc, FleetError, Request, Response, Space, MAX_STORED,
};

/// The fleet vault as this host reaches it: the daemon's socket, the namespace its records
/// are bound to, and the key ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetVault {
    pub socket: PathBuf,
    pub namespace: String,
    /// `fleet.vault_key_file`; `None`: not configured (every read and write is refused).
    pub ring: Option<PathBuf>,
    /// `STATE_DIR/fleet-vault`: this host's copy of each record it read or wrote (sealed),
    /// which also marks the users whose keys this host has seen in the fleet vault (a file
    /// of theirs here is then never read again), and the mark that `pam-totp migrate --all`
    /// retired this host's own key files.
    pub copies: PathBuf,
    /// `store_unavailable = "local"`: the copies are read while the daemon reports an etcd
    /// outage.
    pub fallback: bool,
}

/// How old a copy may be (since the fleet last confirmed it) and still be read while etcd is
/// down: a record changed or removed elsewhere is seen here at the next login, and a copy
/// nobody logged in with for a day is not trusted through an outage.
pub const COPY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// In [`FleetVault::copies`]: `pam-totp migrate --all` moved every key file of this host into
/// the fleet vault; from then on the module reads keys from the fleet vault only.
pub const RETIRED_MARK: &str = ".local-keys-retired";

/// What a user's record in the fleet vault holds, opened.
#[derive(Debug)]
pub struct FleetKeys {
    pub secret: SecretFile,
    /// The record's etcd revision (a change compares it; a login's reload checks it).
    pub revision: u64,
    /// Whether the ring's current key sealed it (else `pam-totp rekey` seals it anew).
    pub current: bool,
}

/// Who may own this host's copies and their directory.
fn root_only() -> Owners {
    Owners(vec![0])
}

impl FleetVault {
    /// The fleet vault, when the configuration keeps keys there: `store = "fleet"` and
    /// `key_store = "vault"`.
    pub fn of(cfg: &Config) -> Option<FleetVault> {
        (cfg.store == StoreKind::Fleet && cfg.key_store == KeyStore::Vault).then(|| FleetVault {
            socket: cfg.fleet_socket.clone(),
            namespace: cfg.fleet.namespace.clone(),
            ring: cfg.fleet.vault_key_file.clone(),
            copies: cfg.state_dir.join("fleet-vault"),
            fallback: cfg.store_unavailable == Unavailable::Local,
        })
    }

    /// How messages name `user`'s record: `fleet vault pam-totp/v1/<ns>/vault/<user>`.
    pub fn label(&self, user: &str) -> PathBuf {
        PathBuf::from(format!("fleet vault {}", vault_key(&self.namespace, user)))
    }

    fn err(&self, user: &str, why: impl Into<String>) -> Error {
        Error::file(self.label(user), FileProblem::Io(why.into()))
    }

    /// Reads the ring: root's file, not readable by group or others, no symlink.
    pub fn ring(&self) -> Result<Ring, Error> {
        let Some(path) = &self.ring else {
            return Err(Error::Config(
                "store = \"fleet\" with key_store = \"vault\" needs fleet.vault_key_file (the fleet vault's key) in pam_totp.conf".into(),
            ));
        };
        let Some(text) = read_checked(path, &Owners(vec![0]))? else {
            return Err(Error::file(
                path,
                FileProblem::Io("no such file (fleet.vault_key_file)".into()),
            ));
        };
        Ring::parse(&text).map_err(|why| Error::file(path, FileProblem::Malformed(why)))
    }

    fn call(&self, user: &str, req: &Request) -> Result<Response, Error> {
        self.call_fleet(req).map_err(|e| self.fleet_err(user, e))
    }

    fn call_fleet(&self, req: &Request) -> Result<Response, FleetError> {
        Client::connect(&self.socket)?.call(req)
    }

    fn fleet_err(&self, user: &str, e: FleetError) -> Error {
        self.err(user, e.to_string())
    }

    /// The record as stored, or none (a linearizable read).
    pub fn get(&self, user: &str) -> Result<Option<Doc>, Error> {
        self.get_fleet(user).map_err(|e| self.fleet_err(user, e))
    }

    /// [`FleetVault::get`], with the fleet's own error (an outage is told apart).
    pub fn get_fleet(&self, user: &str) -> Result<Option<Doc>, FleetError> {
        match self.call_fleet(&Request::Get {
            space: Space::Vault,
            user: user.into(),
            fresh: true,
        })? {
            Response::Value(d) => Ok(d),
            _ => Err(FleetError::Refused("unexpected answer from pam-totp-stated".into())),
        }
    }

    fn open_doc(&self, ring: &Ring, user: &str, d: &Doc) -> Result<FleetKeys, Error> {
        let opened =
            open(ring, &self.namespace, user, document_state(&d.value)).map_err(|e| self.err(user, e.to_string()))?;
        let secret = SecretFile::parse(&opened.plain).map_err(|e| {
            Error::file(
                self.label(user),
                match e {
                    ParseError::Malformed(why) => FileProblem::Malformed(why),
                    ParseError::UnsupportedVersion(v) => FileProblem::UnsupportedVersion(v),
                },
            )
        })?;
        Ok(FleetKeys {
            secret,
            revision: d.revision,
            current: opened.current,
        })
    }

    /// `account`'s keys, opened; `Ok(None)`: the fleet vault has none for them. The ring is
    /// read only when there is a record (a host without it still learns that a user has no
    /// keys, but never reads any). A record read is kept on this host (still sealed; see
    /// [`FleetVault::copies`]); a record gone leaves only the mark that this host saw one.
    /// With `store_unavailable = "local"`, while the daemon reports an etcd outage (and only
    /// then: never when it refused or did not answer) the copy is read instead, if the fleet
    /// confirmed it within [`COPY_MAX_AGE`].
    pub fn load(&self, account: &Account) -> Result<Option<FleetKeys>, Error> {
        let user = &account.name;
        match self.get_fleet(user) {
            // The copy is this host's convenience, never a reason to refuse a login the fleet
            // answered; one that could not be brought up to date is emptied (a stale copy
            // must never be read: it may hold an authenticator removed since).
            Ok(None) => {
                if self.marked(user) {
                    let _ = self.write_copy(user, 0, "");
                }
                Ok(None)
            }
            Ok(Some(d)) => self.open_read(account, &d).map(Some),
            Err(FleetError::Unavailable(why)) if self.fallback => {
                let d = self.copy_of(user)?.ok_or_else(|| {
                    self.err(
                        user,
                        format!(
                            "{why}; this host has no copy of the record that the fleet confirmed within {} hours (store_unavailable = \"local\")",
                            COPY_MAX_AGE.as_secs() / 3600
                        ),
                    )
                })?;
                let ring = self.ring()?;
                self.open_doc(&ring, user, &d).map(Some)
            }
            Err(e) => Err(self.fleet_err(user, e)),
        }
    }

    /// Opens a record just read from the fleet (by [`FleetVault::load`], or by the choice of
    /// where a user's keys are, which so reads it once per login), and keeps it as this
    /// host's copy.
    pub fn open_read(&self, account: &Account, d: &Doc) -> Result<FleetKeys, Error> {
        let user = &account.name;
        let ring = self.ring()?;
        let keys = self.open_doc(&ring, user, d)?;
        if self.keep_copy(user, d).is_err() {
            let _ = self.write_copy(user, 0, "");
        }
        Ok(keys)
    }

    fn copies_dir(&self, create: bool) -> Result<Option<Dir>, Error> {
        if create {
            // The state directory too, as the module's local store makes it (0700, root's).
            if let Some(state_dir) = self.copies.parent() {
                Dir::open_or_create(state_dir, &root_only(), 0o700)?;
            }
            return Dir::open_or_create(&self.copies, &root_only(), 0o700).map(Some);
        }
        Dir::open(&self.copies, &root_only())
    }

    /// The copy's revision and record, and how long ago the fleet last confirmed it.
    fn read_copy(&self, user: &str) -> Result<Option<(u64, String, std::time::Duration)>, Error> {
        let Some(dir) = self.copies_dir(false)? else {
            return Ok(None);
        };
        let name = escape_user(user);
        let Some(text) = dir.read_file(&name, &root_only())? else {
            return Ok(None);
        };
        let malformed = || self.err(user, "this host's copy of the record is malformed");
        let (rev, value) = text.split_once('\n').ok_or_else(malformed)?;
        let revision: u64 = rev.parse().map_err(|_| malformed())?;
        let age = std::fs::symlink_metadata(dir.path().join(&name))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or(std::time::Duration::MAX);
        Ok(Some((revision, value.to_string(), age)))
    }

    fn write_copy(&self, user: &str, revision: u64, record: &str) -> Result<(), Error> {
        let Some(dir) = self.copies_dir(true)? else {
            return Ok(());
        };
        dir.write_file(
            &escape_user(user),
            format!("{revision}\n{record}").as_bytes(),
            0o600,
            false,
            true,
        )
    }

    /// Keeps `d` as this host's copy of `user`'s record: written when it is newer than the
    /// copy (never an older record over a newer one: two logins may race), its time renewed
    /// when it is the same. A copy of a higher revision than the fleet's record is emptied,
    /// not kept: it is either a newer record a racing login kept (the next login keeps it
    /// again) or one from before etcd's revisions went back (a restore from a snapshot, a new
    /// cluster), which the fleet no longer confirms — kept, it would never be replaced, not
    /// even by a record this host writes itself (`enroll --force` after a stolen phone).
    fn keep_copy(&self, user: &str, d: &Doc) -> Result<(), Error> {
        let text = std::str::from_utf8(&d.value).map_err(|_| self.err(user, "the record is not UTF-8"))?;
        match self.read_copy(user)? {
            Some((rev, _, _)) if rev > d.revision => self.write_copy(user, 0, ""),
            Some((rev, ref value, _)) if rev == d.revision && value == text => {
                let path = self.copies.join(escape_user(user));
                std::fs::File::options()
                    .write(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()))
                    .map_err(|e| Error::io(&path, &e))
            }
            _ => self.write_copy(user, d.revision, text),
        }
    }

    /// The copy to read while etcd is down: one with a record, confirmed recently enough.
    fn copy_of(&self, user: &str) -> Result<Option<Doc>, Error> {
        Ok(match self.read_copy(user)? {
            Some((revision, value, age)) if revision > 0 && age <= COPY_MAX_AGE => Some(Doc {
                revision,
                value: value.into_bytes(),
            }),
            _ => None,
        })
    }

    fn forget_copy(&self, user: &str) -> Result<(), Error> {
        match self.copies_dir(false)? {
            Some(dir) => dir.remove(&escape_user(user)),
            None => Ok(()),
        }
    }

    /// Whether this host has seen `user`'s keys in the fleet vault (read or written them):
    /// a key file of theirs on this host is then never read again (a record removed from the
    /// fleet must not hand the login to a file the user, or an older enrollment, left here).
    pub fn marked(&self, user: &str) -> bool {
        std::fs::symlink_metadata(self.copies.join(escape_user(user))).is_ok()
    }

    /// Whether `pam-totp migrate --all` retired this host's own key files.
    pub fn retired(&self) -> bool {
        std::fs::symlink_metadata(self.copies.join(RETIRED_MARK)).is_ok()
    }

    /// Marks this host's own key files retired (see [`RETIRED_MARK`]).
    pub fn retire(&self) -> Result<(), Error> {
        let dir = self
            .copies_dir(true)?
            .ok_or_else(|| self.err("*", "no copies directory"))?;
        dir.write_file(RETIRED_MARK, b"", 0o600, true, true)
    }

    /// Whether `account`'s record is still at `revision` (a linearizable read; `false` on
    /// any error, and the caller reads it again).
    pub fn unchanged(&self, account: &Account, revision: u64) -> bool {
        matches!(self.get(&account.name), Ok(Some(d)) if d.revision == revision)
    }

    /// Changes `account`'s keys: reads the record as it is now, runs `f` on it (None: no
    /// record) and, when `f` returns keys, stores them sealed with one compare-and-swap on
    /// the revision read. A change made meanwhile by another host (or process) makes it an
    /// error — nothing is stored and the command is run again — so that no change is ever
    /// written over. `f` runs at most once.
    pub fn update<T, E: From<Error>>(
        &self,
        account: &Account,
        f: impl FnOnce(Option<SecretFile>) -> Result<(Option<SecretFile>, T), E>,
    ) -> Result<T, E> {
        let user = &account.name;
        let ring = self.ring()?;
        let doc = self.get(user)?;
        let current = doc.as_ref().map(|d| self.open_doc(&ring, user, d)).transpose()?;
        let expected = doc.as_ref().map_or(0, |d| d.revision);
        let (new, out) = f(current.map(|k| k.secret))?;
        let Some(new) = new else { return Ok(out) };
        self.store(&ring, user, expected, &new)?;
        Ok(out)
    }

    /// Stores `secret` in place of `account`'s record whatever the record holds — also one
    /// this host cannot open (sealed with a key its ring lacks, changed, malformed): root's
    /// `--force`, which must be able to replace keys nobody can read. One compare-and-swap on
    /// the revision read: a change made meanwhile fails it, as [`FleetVault::update`] does.
    pub fn replace(&self, account: &Account, secret: &SecretFile) -> Result<(), Error> {
        let ring = self.ring()?;
        let expected = self.get(&account.name)?.map_or(0, |d| d.revision);
        self.store(&ring, &account.name, expected, secret).map(|_| ())
    }

    /// Seals `secret` and stores it if the record is still at `expected` (0: none).
    fn store(&self, ring: &Ring, user: &str, expected: u64, secret: &SecretFile) -> Result<u64, Error> {
        let plain = Zeroizing::new(secret.to_toml());
        let record = seal(ring, &self.namespace, user, plain.as_bytes()).map_err(|why| self.err(user, why))?;
        let value = compose_document(&record, false).map_err(|e| self.fleet_err(user, e))?;
        if value.len() > MAX_STORED {
            return Err(self.err(user, "the sealed keys are larger than a fleet document may be"));
        }
        match self.call(
            user,
            &Request::Cas {
                space: Space::Vault,
                user: user.to_string(),
                expected,
                value: value.clone(),
            },
        )? {
            Response::Stored { revision } => {
                self.kept_after_write(user, revision, &value);
                Ok(revision)
            }
            // This very write (its write id), applied before an answer that was lost.
            Response::Conflict(Some(now)) if now.value == value => {
                self.kept_after_write(user, now.revision, &value);
                Ok(now.revision)
            }
            Response::Conflict(_) => Err(self.err(
                user,
                "the keys were changed meanwhile (another host or command); nothing was saved: run the command again",
            )),
            _ => Err(self.err(user, "unexpected answer from pam-totp-stated")),
        }
    }

    /// This host's copy after it wrote `value` at `revision` (a copy that cannot be brought
    /// up to date is emptied: never the keys replaced).
    fn kept_after_write(&self, user: &str, revision: u64, value: &[u8]) {
        let doc = Doc {
            revision,
            value: value.to_vec(),
        };
        if self.keep_copy(user, &doc).is_err() {
            let _ = self.write_copy(user, 0, "");
        }
    }

    /// Removes `account`'s record (and this host's copy and mark). Returns whether there
    /// was one.
    pub fn remove(&self, account: &Account) -> Result<bool, Error> {
        let user = &account.name;
        let had = self.get(user)?.is_some();
        self.forget_copy(user)?;
        match self.call(
            user,
            &Request::Delete {
                space: Space::Vault,
                user: user.clone(),
            },
        )? {
            Response::Deleted => Ok(had),
            _ => Err(self.err(user, "unexpected answer from pam-totp-stated")),
        }
    }

    /// Every user with a record in the namespace.
    pub fn users(&self) -> Result<Vec<String>, Error> {
        match self.call("*", &Request::List { space: Space::Vault })? {
            Response::Users(u) => Ok(u),
            _ => Err(self.err("*", "unexpected answer from pam-totp-stated")),
        }
    }

    /// Seals `user`'s record (the name as the record's key holds it) again with the ring's
    /// current key, if another key sealed it (a rotation). Returns whether it was sealed
    /// again.
    pub fn rekey(&self, ring: &Ring, user: &str) -> Result<bool, Error> {
        let Some(d) = self.get(user)? else {
            return Ok(false);
        };
        let keys = self.open_doc(ring, user, &d)?;
        if keys.current {
            return Ok(false);
        }
        self.store(ring, user, d.revision, &keys.secret)?;
        Ok(true)
    }
}
