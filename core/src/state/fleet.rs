//! The [`StateStore`] on the fleet: one etcd document per user through `pam-totp-stated`,
//! every change one compare-and-swap.
//!
//! Owns: the read-decide-write against the daemon ([`FleetStore::update`]), where a user's
//! first document starts from ([`FleetStore`]'s seed), reset on the fleet, the protection mark
//! on writes.
//! Never: lets anyone in on an error (every failure is an `Err`, which refuses the login);
//! logs a document.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::store::{FileStore, StateStore};
use super::State;
use crate::account::escape_user;
use crate::error::{Error, FileProblem};
use crate::fleet::{
    compose_document, document_protected, document_state, Client, Doc, FleetError, Request, Response, Space,
    MAX_DOCUMENT, REQUEST_TIMEOUT,
};

/// How long one decision (`update`: its reads and compare-and-swap rounds) may take in all;
/// each request within it still has at most [`REQUEST_TIMEOUT`].
pub const UPDATE_BUDGET: Duration = Duration::from_secs(3);
/// Compare-and-swap rounds lost to other logins of the same user before a decision is
/// refused. Each lost round waits a random 0-4 ms times its number, so that a burst of
/// logins (every refused one writes its failure count) spreads out instead of colliding
/// again; at most ~70 ms in all.
pub const MAX_CAS_ATTEMPTS: usize = 8;

/// The [`StateStore`] on the daemon: one document per user, every change one
/// compare-and-swap on its etcd mod_revision, retried on a fresh read when another host
/// came first (at most [`MAX_CAS_ATTEMPTS`] times), refused on any error.
#[derive(Debug)]
pub struct FleetStore {
    socket: PathBuf,
    conn: RefCell<Option<Client>>,
    /// While an `update` runs: when it must be done ([`UPDATE_BUDGET`]).
    deadline: Cell<Option<Instant>>,
    /// The document this store last read or wrote, and for which user: an `update` after a
    /// `peek` of the same user (a login: lockout check, prompt, decision) starts from it
    /// instead of reading again. If it is stale by then, the compare-and-swap fails and
    /// its answer carries the current document.
    last: RefCell<Option<(String, Option<Doc>)>>,
    /// This host's state directory: a user the fleet has no document for yet starts from
    /// their state there (see [`FleetStore::seed`]).
    seed_dir: Option<PathBuf>,
    /// The account written is protected on this host: every write marks its document
    /// ([`document_protected`]).
    mark: Cell<bool>,
    /// Set at the first answer of the fleet (see [`FleetStore::answered`]).
    answered: Cell<bool>,
}

impl FleetStore {
    /// Connects lazily, at the first operation; every operation (a peek, an update, ...)
    /// closes its connection when it is done. A login holds none while it waits at the
    /// prompt — which may take longer than the daemon keeps an idle connection — and so
    /// never decides on a connection that died meanwhile.
    pub fn new(socket: &Path) -> FleetStore {
        FleetStore {
            socket: socket.to_path_buf(),
            conn: RefCell::new(None),
            deadline: Cell::new(None),
            last: RefCell::new(None),
            seed_dir: None,
            mark: Cell::new(false),
            answered: Cell::new(false),
        }
    }

    /// Users without a fleet document start from their state in `dir` (the host's state
    /// directory before it joined the fleet): spent backup codes, replay guards, the
    /// enrollment record and a lockout carry over into the fleet's first document.
    pub fn with_seed_dir(mut self, dir: &Path) -> FleetStore {
        self.seed_dir = Some(dir.to_path_buf());
        self
    }

    /// The state a user without a fleet document starts from: their state in this host's
    /// state directory, if it has one (read-only, with every check of the local store); a
    /// state file that cannot be read refuses rather than starting from nothing.
    fn seed(&self, user: &str) -> Result<State, FleetError> {
        let Some(dir) = &self.seed_dir else {
            return Ok(State::default());
        };
        let refused = |e: Error| FleetError::Refused(format!("this host's state of {}: {e}", escape_user(user)));
        match FileStore::open_existing(dir, false).map_err(refused)? {
            None => Ok(State::default()),
            Some(local) => local.peek(user).map_err(refused),
        }
    }

    fn done(&self) {
        *self.conn.borrow_mut() = None;
    }

    /// The account this store writes is protected on this host: mark its document at every
    /// write (see [`document_protected`]).
    pub fn mark_protected(&self) {
        self.mark.set(true);
    }

    /// Whether some host of the fleet marked `user` protected (a linearizable read).
    pub fn protected_in_fleet(&self, user: &str) -> Result<bool, FleetError> {
        let doc = self.get(user, true);
        self.done();
        Ok(doc?.is_some_and(|d| document_protected(&d.value)))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn call(&self, req: &Request) -> Result<Response, FleetError> {
        let mut conn = self.conn.borrow_mut();
        if conn.is_none() {
            *conn = Some(Client::connect(&self.socket)?);
        }
        let Some(c) = conn.as_mut() else {
            return Err(FleetError::NoAnswer("no connection".into()));
        };
        let deadline = self.deadline.get().unwrap_or_else(|| Instant::now() + REQUEST_TIMEOUT);
        let r = c.call_until(req, deadline);
        // After an error the stream may hold a late answer: never reuse it.
        if r.is_err() {
            *conn = None;
        }
        // The fleet answered (any answer but its report of an outage): from then on the
        // fleet decides, whatever fails later ([`crate::state::any::AnyStore`]).
        if !matches!(r, Err(FleetError::Unavailable(_))) && !matches!(r, Err(FleetError::NoAnswer(_))) {
            self.answered.set(true);
        }
        r
    }

    /// Whether the fleet has answered anything through this store.
    pub(super) fn answered(&self) -> bool {
        self.answered.get()
    }

    pub(super) fn err(&self, e: FleetError) -> Error {
        Error::file(self.socket.clone(), FileProblem::Io(e.to_string()))
    }

    fn parse(&self, user: &str, d: &Doc) -> Result<State, FleetError> {
        let text = std::str::from_utf8(document_state(&d.value))
            .map_err(|_| FleetError::Refused(format!("the stored state of {} is not UTF-8", escape_user(user))))?;
        State::parse(text).map_err(|why| {
            FleetError::Refused(format!("the stored state of {} is malformed: {why}", escape_user(user)))
        })
    }

    pub fn get(&self, user: &str, fresh: bool) -> Result<Option<Doc>, FleetError> {
        match self.call(&Request::Get {
            space: Space::State,
            user: user.into(),
            fresh,
        })? {
            Response::Value(d) => Ok(d),
            _ => Err(FleetError::Refused("unexpected answer".into())),
        }
    }

    pub(super) fn peek_fleet(&self, user: &str) -> Result<State, FleetError> {
        let doc = self.get(user, true);
        self.done();
        let doc = doc?;
        let state = match &doc {
            None => self.seed(user)?,
            Some(d) => self.parse(user, d)?,
        };
        *self.last.borrow_mut() = Some((user.to_string(), doc));
        Ok(state)
    }

    /// The read-decide-write: read (the document this login's lockout check read, else the
    /// member's own copy; either may be stale by now), decide, then
    /// either compare-and-swap the new document on the revision read — a stale read only
    /// costs a conflict, whose answer carries the current document to decide on again — or,
    /// when the decision changed nothing, confirm with a linearizable read that the revision
    /// is still the current one. Every outcome is so decided on the state as it is.
    pub(super) fn update_fleet<T>(&self, user: &str, f: &mut impl FnMut(&mut State) -> T) -> Result<T, FleetError> {
        self.deadline.set(Some(Instant::now() + UPDATE_BUDGET));
        let r = self.decide(user, f);
        self.deadline.set(None);
        self.done();
        r
    }

    fn decide<T>(&self, user: &str, f: &mut impl FnMut(&mut State) -> T) -> Result<T, FleetError> {
        let cached = self.last.borrow_mut().take().filter(|(u, _)| u == user);
        let mut current = match cached {
            Some((_, doc)) => doc,
            None => self.get(user, false)?,
        };
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let (mut state, expected) = match &current {
                None => (self.seed(user)?, 0),
                Some(d) => (self.parse(user, d)?, d.revision),
            };
            let marked = current.as_ref().is_some_and(|d| document_protected(&d.value));
            let protected = marked || self.mark.get();
            let before = state.clone();
            state
                .ensure_key()
                .map_err(|e| FleetError::Refused(format!("the OS random source failed: {e}")))?;
            let out = f(&mut state);
            // A document to mark is written even when the decision changed nothing.
            if state == before && protected == marked {
                let now = self.get(user, true)?;
                if now.as_ref().map(|d| d.revision) == current.as_ref().map(|d| d.revision) {
                    return Ok(out);
                }
                current = now;
                continue;
            }
            let text = state.to_toml().map_err(|e| FleetError::Refused(e.to_string()))?;
            // The limit is the state's, as for a state file; the id line rides on top.
            if text.len() > MAX_DOCUMENT {
                return Err(FleetError::Refused(format!(
                    "the state of {} would exceed {MAX_DOCUMENT} bytes",
                    escape_user(user)
                )));
            }
            let value = compose_document(&text, protected)?;
            match self.call(&Request::Cas {
                space: Space::State,
                user: user.into(),
                expected,
                value: value.clone(),
            })? {
                Response::Stored { revision } => {
                    *self.last.borrow_mut() = Some((user.to_string(), Some(Doc { revision, value })));
                    return Ok(out);
                }
                // This very write (the same bytes: the same write id) is the document: a
                // copy sent earlier, whose answer the daemon lost (a member that was frozen
                // and then went on), applied before the copy sent again. It was committed
                // on `expected`, as decided.
                Response::Conflict(Some(now)) if now.value == value => {
                    *self.last.borrow_mut() = Some((user.to_string(), Some(now)));
                    return Ok(out);
                }
                Response::Conflict(now) => {
                    current = now;
                    let mut r = [0u8; 1];
                    if getrandom::getrandom(&mut r).is_ok() {
                        let ms = u64::from(r[0] % 5) * (attempt as u64 + 1);
                        std::thread::sleep(Duration::from_millis(ms));
                    }
                }
                _ => return Err(FleetError::Refused("unexpected answer".into())),
            }
        }
        // Contention, not an outage: never a reason to fall back to the local state (a burst
        // of logins must not be a way to get there).
        Err(FleetError::Refused(format!(
            "{MAX_CAS_ATTEMPTS} compare-and-swap rounds in a row lost to other logins of this user"
        )))
    }

    /// `pam-totp reset` on the fleet: the document is not deleted but cut down to what keeps
    /// spent credentials spent — the per-user key, the replay guards and the spent backup
    /// codes ([`State::forget_for_reset`]). Other hosts may still hold the old secret file
    /// (configuration management, a second copy): deleting the document would make every
    /// code and backup code already used there work again.
    pub(super) fn remove_fleet(&self, user: &str) -> Result<(), FleetError> {
        *self.last.borrow_mut() = None;
        self.update_fleet(user, &mut |st: &mut State| st.forget_for_reset())
    }

    /// Every user with a document (for `pam-totp report`).
    pub fn list_users(&self) -> Result<Vec<String>, Error> {
        let r = self.call(&Request::List { space: Space::State });
        self.done();
        match r.map_err(|e| self.err(e))? {
            Response::Users(u) => Ok(u),
            _ => Err(self.err(FleetError::Refused("unexpected answer".into()))),
        }
    }

    /// A round trip to the daemon (for `pam-totp doctor`).
    pub fn ping(&self) -> Result<(), FleetError> {
        let r = self.call(&Request::Ping).map(|_| ());
        self.done();
        r
    }
}

impl StateStore for FleetStore {
    fn peek(&self, user: &str) -> Result<State, Error> {
        self.peek_fleet(user).map_err(|e| self.err(e))
    }

    fn update<T>(&self, user: &str, mut f: impl FnMut(&mut State) -> T) -> Result<T, Error> {
        self.update_fleet(user, &mut f).map_err(|e| self.err(e))
    }

    fn remove(&self, user: &str) -> Result<(), Error> {
        self.remove_fleet(user).map_err(|e| self.err(e))
    }
}
