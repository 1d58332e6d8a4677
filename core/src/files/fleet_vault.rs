//! The fleet vault: users' keys in etcd, next to their state, sealed with the fleet's vault
//! key (`fleet.vault_key_file`), through `pam-totp-stated`. With `store = "fleet"` and
//! `key_store = "vault"` one enrollment serves every host of the namespace.
//!
//! Owns: reading the key ring (root's file, checked like a key file), and reading, changing
//! (one compare-and-swap on the record's revision) and removing a user's sealed keys.
//! Never: sends or stores a key unsealed; opens a record with anything but this host's
//! ring; decides on an error (every failure is an `Err`, which refuses the login); logs a
//! key or a record.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::account::Account;
use crate::config::{Config, KeyStore, StoreKind};
use crate::error::{Error, FileProblem};
use crate::files::fs::{read_checked, Owners};
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
}

/// What a user's record in the fleet vault holds, opened.
#[derive(Debug)]
pub struct FleetKeys {
    pub secret: SecretFile,
    /// The record's etcd revision (a change compares it; a login's reload checks it).
    pub revision: u64,
    /// Whether the ring's current key sealed it (else `pam-totp vault rekey` seals it anew).
    pub current: bool,
}

impl FleetVault {
    /// The fleet vault, when the configuration keeps keys there: `store = "fleet"` and
    /// `key_store = "vault"`.
    pub fn of(cfg: &Config) -> Option<FleetVault> {
        (cfg.store == StoreKind::Fleet && cfg.key_store == KeyStore::Vault).then(|| FleetVault {
            socket: cfg.fleet_socket.clone(),
            namespace: cfg.fleet.namespace.clone(),
            ring: cfg.fleet.vault_key_file.clone(),
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
        let mut c = Client::connect(&self.socket).map_err(|e| self.fleet_err(user, e))?;
        c.call(req).map_err(|e| self.fleet_err(user, e))
    }

    fn fleet_err(&self, user: &str, e: FleetError) -> Error {
        self.err(user, e.to_string())
    }

    /// The record as stored, or none (a linearizable read).
    pub fn get(&self, user: &str) -> Result<Option<Doc>, Error> {
        match self.call(
            user,
            &Request::Get {
                space: Space::Vault,
                user: user.into(),
                fresh: true,
            },
        )? {
            Response::Value(d) => Ok(d),
            _ => Err(self.err(user, "unexpected answer from pam-totp-stated")),
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
    pub fn load(&self, account: &Account) -> Result<Option<FleetKeys>, Error> {
        let Some(d) = self.get(&account.name)? else {
            return Ok(None);
        };
        let ring = self.ring()?;
        self.open_doc(&ring, &account.name, &d).map(Some)
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
