//! The fleet vault: users' keys in etcd, next to their state, sealed with the fleet's vault
//! key (`fleet.vault_key_file`), through `pam-totp-stated`. With `store = "fleet"` and
//! `key_store = "vault"` one enrollment serves every host of the namespace.
//!
//! Owns: reading the key ring (root's file, checked like a key file), and reading, changing
//! (one compare-and-swap on the record's revision) and removing a user's sealed keys; with
//! `store_unavailable = "local"`, this host's copy of each record it read (still sealed), read
//! only while the daemon reports an etcd outage.
//! Never: sends or stores a key unsealed; opens a record with anything but this host's
//! ring; decides on an error (every failure is an `Err`, which refuses the login); logs a
//! key or a record.

use std::path::{Path, PathBuf};

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
    /// With `store_unavailable = "local"`: `STATE_DIR/fleet-vault`, this host's copies of the
    /// records it read, for logins while etcd is down.
    pub copies: Option<PathBuf>,
}

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
            copies: (cfg.store_unavailable == Unavailable::Local).then(|| cfg.state_dir.join("fleet-vault")),
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

    fn get_fleet(&self, user: &str) -> Result<Option<Doc>, FleetError> {
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
    /// keys, but never reads any).
    /// With `store_unavailable = "local"`, a record read is kept on this host (still sealed),
    /// a record gone is forgotten here too, and while the daemon reports an etcd outage (and
    /// only then: never when it refused or did not answer) the copy is read instead.
    pub fn load(&self, account: &Account) -> Result<Option<FleetKeys>, Error> {
        let user = &account.name;
        match self.get_fleet(user) {
            // The copy is this host's convenience, never a reason to refuse a login the fleet
            // answered; one that could not be brought up to date is removed (a stale copy
            // must never be read: it may hold an authenticator removed since).
            Ok(None) => {
                let _ = self.forget_copy(user);
                Ok(None)
            }
            Ok(Some(d)) => {
                let ring = self.ring()?;
                let keys = self.open_doc(&ring, user, &d)?;
                if self.keep_copy(user, &d).is_err() {
                    let _ = self.forget_copy(user);
                }
                Ok(Some(keys))
            }
            Err(FleetError::Unavailable(why)) if self.copies.is_some() => {
                let Some(d) = self.copy_of(user)? else {
                    return Err(self.err(
                        user,
                        format!("{why}; this host has no copy of the record (store_unavailable = \"local\")"),
                    ));
                };
                let ring = self.ring()?;
                self.open_doc(&ring, user, &d).map(Some)
            }
            Err(e) => Err(self.fleet_err(user, e)),
        }
    }

    fn copies_dir(&self, create: bool) -> Result<Option<Dir>, Error> {
        match &self.copies {
            None => Ok(None),
            Some(p) if create => {
                // The state directory too, as the module's local store makes it (0700, root's).
                if let Some(state_dir) = p.parent() {
                    Dir::open_or_create(state_dir, &root_only(), 0o700)?;
                }
                Dir::open_or_create(p, &root_only(), 0o700).map(Some)
            }
            Some(p) => Dir::open(p, &root_only()),
        }
    }

    /// Keeps `d` as this host's copy of `user`'s record, unless the copy is already it.
    fn keep_copy(&self, user: &str, d: &Doc) -> Result<(), Error> {
        let Some(dir) = self.copies_dir(true)? else {
            return Ok(());
        };
        let name = escape_user(user);
        let text = std::str::from_utf8(&d.value).map_err(|_| self.err(user, "the record is not UTF-8"))?;
        let copy = format!("{}\n{text}", d.revision);
        if dir.read_file(&name, &root_only())?.as_deref().map(String::as_str) == Some(copy.as_str()) {
            return Ok(());
        }
        dir.write_file(&name, copy.as_bytes(), 0o600, false, true)
    }

    fn copy_of(&self, user: &str) -> Result<Option<Doc>, Error> {
        let Some(dir) = self.copies_dir(false)? else {
            return Ok(None);
        };
        let Some(text) = dir.read_file(&escape_user(user), &root_only())? else {
            return Ok(None);
        };
        let (rev, value) = text
            .split_once('\n')
            .ok_or_else(|| self.err(user, "this host's copy of the record is malformed"))?;
        let revision = rev
            .parse()
            .map_err(|_| self.err(user, "this host's copy of the record is malformed"))?;
        Ok(Some(Doc {
            revision,
            value: value.as_bytes().to_vec(),
        }))
    }

    fn forget_copy(&self, user: &str) -> Result<(), Error> {
        match self.copies_dir(false)? {
            Some(dir) => dir.remove(&escape_user(user)),
            None => Ok(()),
        }
    }

    /// This host's copies (for messages).
    pub fn copies_path(&self) -> Option<&Path> {
        self.copies.as_deref()
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
            Response::Stored { revision } => Ok(revision),
            // This very write (its write id), applied before an answer that was lost.
            Response::Conflict(Some(now)) if now.value == value => Ok(now.revision),
            Response::Conflict(_) => Err(self.err(
                user,
                "the keys were changed meanwhile (another host or command); nothing was saved: run the command again",
            )),
            _ => Err(self.err(user, "unexpected answer from pam-totp-stated")),
        }
    }

    /// Removes `account`'s record. Returns whether there was one.
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
