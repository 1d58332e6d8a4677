//! The store a login or a command opens from the configuration: this host's state directory,
//! or the fleet's, falling back to the state directory under `store_unavailable = "local"`.
//!
//! Owns: when a fallback is taken (only on [`FleetError::Unavailable`], before the fleet
//! answered anything) and what a store deciding locally may not answer.
//! Never: falls back on a refusal or on a client's own missing answer.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;

use super::fleet::FleetStore;
use super::store::{FileStore, StateStore};
use super::State;
use crate::config::{Config, StoreKind, Unavailable};
use crate::error::{Error, FileProblem};
use crate::fleet::FleetError;

/// The store the configuration names: this host's state directory, or the fleet's through
/// the daemon — with `store_unavailable = "local"`, falling back to the state directory
/// while the fleet store is unavailable (never when it refused: an unsafe socket or a
/// malformed document is not a reason to decide elsewhere). After a fallback every further
/// operation of this store stays local, and [`AnyStore::degraded`] says why.
#[derive(Debug)]
pub struct AnyStore {
    local: RefCell<Option<FileStore>>,
    fleet: Option<FleetStore>,
    state_dir: PathBuf,
    fallback: bool,
    /// Whether the CLI opens the state directory (never created by the CLI).
    existing_only: bool,
    degraded: RefCell<Option<String>>,
    used_local: Cell<bool>,
}

impl AnyStore {
    /// For the module: the state directory is created if missing (as before).
    pub fn open(cfg: &Config) -> Result<AnyStore, Error> {
        AnyStore::new(cfg, false)
    }

    /// For the command line: `Ok(None)` when the store is local and its directory does not
    /// exist. The fleet store is used without fallback (an administrator's change must
    /// reach the fleet or fail), and must answer a round trip through etcd first.
    pub fn open_existing(cfg: &Config) -> Result<Option<AnyStore>, Error> {
        let s = AnyStore::new(cfg, true)?;
        if s.fleet.is_none() && s.local.borrow().is_none() {
            return Ok(None);
        }
        Ok(Some(s))
    }

    fn new(cfg: &Config, cli: bool) -> Result<AnyStore, Error> {
        let mut s = AnyStore {
            local: RefCell::new(None),
            fleet: None,
            state_dir: cfg.state_dir.clone(),
            fallback: !cli && cfg.store_unavailable == Unavailable::Local,
            existing_only: cli,
            degraded: RefCell::new(None),
            used_local: Cell::new(false),
        };
        match cfg.store {
            StoreKind::Fleet => {
                let fleet = FleetStore::new(&cfg.fleet_socket).with_seed_dir(&cfg.state_dir);
                // The command line learns first that the store answers (daemon and quorum),
                // so that a command stops before it changes anything else (reset removes
                // the secret file only once it knows the state can go too).
                if cli {
                    fleet.ping().map_err(|e| fleet.err(e))?;
                }
                s.fleet = Some(fleet);
            }
            StoreKind::Local if cli => *s.local.borrow_mut() = FileStore::open_existing(&cfg.state_dir, true)?,
            StoreKind::Local => *s.local.borrow_mut() = Some(FileStore::open(&cfg.state_dir, true)?),
        }
        Ok(s)
    }

    /// Why this store decided on the host's own state instead of the fleet's, if it did.
    pub fn degraded(&self) -> Option<String> {
        self.degraded.borrow().clone()
    }

    pub fn fleet(&self) -> Option<&FleetStore> {
        self.fleet.as_ref()
    }

    /// With the fleet store: the account is protected on this host, mark its document at
    /// every write ([`FleetStore::mark_protected`]). Nothing on the local store (a host's
    /// own `protected_groups` already protects it there).
    pub fn mark_protected(&self) {
        if let Some(f) = &self.fleet {
            f.mark_protected();
        }
    }

    /// The local state directory, when this store is (only) local.
    pub fn local_path(&self) -> Option<PathBuf> {
        if self.fleet.is_some() {
            return None;
        }
        self.local.borrow().as_ref().map(|l| l.path().to_path_buf())
    }

    fn with_local<T>(&self, op: impl FnOnce(&FileStore) -> Result<T, Error>) -> Result<T, Error> {
        let mut local = self.local.borrow_mut();
        if local.is_none() {
            *local = if self.existing_only {
                FileStore::open_existing(&self.state_dir, true)?
            } else {
                Some(FileStore::open(&self.state_dir, true)?)
            };
        }
        match local.as_ref() {
            Some(l) => op(l),
            None => Err(Error::file(
                self.state_dir.clone(),
                FileProblem::Io("the state directory does not exist".into()),
            )),
        }
    }

    /// Runs `op` on the fleet store, or on the local one (see the type's comment).
    fn run<T>(
        &self,
        fleet_op: impl FnOnce(&FleetStore) -> Result<T, FleetError>,
        local_op: impl FnOnce(&FileStore) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let Some(fleet) = self.fleet.as_ref() else {
            return self.with_local(local_op);
        };
        if self.used_local.get() {
            return self.with_local(local_op);
        }
        match fleet_op(fleet) {
            Ok(v) => Ok(v),
            // Only before the fleet answered anything, in this operation or an earlier one of
            // this store: the fleet decides a login from start to end, or the host does, never
            // half and half (a get answered, then a compare-and-swap unavailable).
            Err(FleetError::Unavailable(why)) if self.fallback && !fleet.answered() => {
                self.used_local.set(true);
                *self.degraded.borrow_mut() = Some(why);
                self.with_local(local_op)
            }
            Err(e) => Err(fleet.err(e)),
        }
    }
}

impl StateStore for AnyStore {
    fn peek(&self, user: &str) -> Result<State, Error> {
        self.run(|f| f.peek_fleet(user), |l| l.peek(user))
    }

    fn update<T>(&self, user: &str, mut f: impl FnMut(&mut State) -> T) -> Result<T, Error> {
        // `f` is a pure decision: running it again on the local state after the fleet store
        // failed is allowed.
        let cell = RefCell::new(&mut f);
        self.run(
            |fl| fl.update_fleet(user, &mut |s: &mut State| (cell.borrow_mut())(s)),
            |l| l.update(user, |s| (cell.borrow_mut())(s)),
        )
    }

    fn remove(&self, user: &str) -> Result<(), Error> {
        self.run(|f| f.remove_fleet(user), |l| l.remove(user))
    }

    fn decides_locally(&self) -> bool {
        self.used_local.get()
    }
}
