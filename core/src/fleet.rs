//! The fleet store: the per-user state shared by every host, kept in etcd by the local
//! daemon `pam-totp-stated` and reached over a root-only Unix socket.
//!
//! Owns: the wire protocol between the module (and the CLI) and the daemon — both sides
//! use this file — the client side ([`Client`], [`FleetStore`]), the etcd key layout
//! ([`user_key`]), and [`AnyStore`], the store a login or a command opens from the
//! configuration (local, fleet, or fleet falling back to local).
//! Never: lets anyone in on an error (every failure is an `Err`, which refuses the login);
//! reads more than [`MAX_FRAME`] bytes from the socket; talks to a socket or a peer that is
//! not root's; logs a document (it holds the per-user key).
//!
//! The protocol is std only (no async runtime, no TLS inside sshd). A frame is a 4-byte
//! big-endian length and that many bytes; a frame's body starts with [`PROTOCOL_VERSION`]
//! and a tag. Text and documents are a 4-byte length and their bytes; numbers 8-byte big
//! endian. One connection carries any number of request/response pairs, one at a time.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{Config, StoreKind, Unavailable};
use crate::error::{Error, FileProblem};
use crate::state::State;
use crate::store::{escape_user, FileStore, StateStore};

pub const PROTOCOL_VERSION: u8 = 1;
/// The largest frame either side accepts, except a user list ([`MAX_LIST_FRAME`]).
pub const MAX_FRAME: usize = 256 * 1024;
/// The largest user list (`pam-totp report`) a client accepts: ~16 bytes per user.
pub const MAX_LIST_FRAME: usize = 32 * 1024 * 1024;
/// The largest state text stored (a state file is at most 64 KiB on disk, too); a document
/// is that and its write id line ([`MAX_STORED`]).
pub const MAX_DOCUMENT: usize = crate::fs::MAX_FILE_SIZE as usize;
/// The largest value a document may have in etcd or on the wire: [`MAX_DOCUMENT`] and the
/// write id line.
pub const MAX_STORED: usize = MAX_DOCUMENT + WRITE_ID_LINE;
/// The longest user name carried.
pub const MAX_USER: usize = 256;
/// How long a client waits for the daemon to accept its connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a client waits for one answer (the daemon's etcd deadline is shorter).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one decision (`update`: its reads and compare-and-swap rounds) may take in all;
/// each request within it still has at most [`REQUEST_TIMEOUT`].
pub const UPDATE_BUDGET: Duration = Duration::from_secs(3);
/// Compare-and-swap rounds lost to other logins of the same user before a decision is
/// refused. Each lost round waits a random 0-4 ms times its number, so that a burst of
/// logins (every refused one writes its failure count) spreads out instead of colliding
/// again; at most ~70 ms in all.
pub const MAX_CAS_ATTEMPTS: usize = 8;

/// The etcd key of a user's document: `pam-totp/v1/<namespace>/users/<escaped user>`.
pub fn user_key(namespace: &str, user: &str) -> String {
    format!("{}{}", users_prefix(namespace), escape_user(user))
}

/// The prefix of every user's key in a namespace (what an etcd role is limited to).
pub fn users_prefix(namespace: &str) -> String {
    format!("pam-totp/v1/{namespace}/users/")
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Answered by the daemon itself, without etcd (a liveness check; the socket's round
    /// trip in `scripts/bench-fleet`).
    Hello,
    /// Answered after a linearizable etcd read: the daemon and a quorum answer.
    Ping,
    /// The user's document, or none. `fresh`: a linearizable read (through the quorum);
    /// otherwise the member's own copy, which may lag — good enough to start a
    /// compare-and-swap, which fails on a stale revision.
    Get {
        user: String,
        fresh: bool,
    },
    /// Stores `value` if the document's mod_revision is still `expected` (0: if it does not
    /// exist), in one etcd transaction.
    Cas {
        user: String,
        expected: u64,
        value: Vec<u8>,
    },
    Delete {
        user: String,
    },
    /// Every user with a document in the namespace.
    List,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Pong,
    Value(Option<Doc>),
    /// The compare-and-swap was committed; the document's new mod_revision.
    Stored {
        revision: u64,
    },
    /// Another writer came first: the document as it is now.
    Conflict(Option<Doc>),
    Deleted,
    Users(Vec<String>),
    /// etcd did not answer in time or failed: nothing is known (a write may still be
    /// applied later). The client refuses.
    Unavailable(String),
    /// The daemon refused the request (malformed, too large).
    Refused(String),
}

mod tag {
    pub const PING: u8 = 1;
    pub const GET: u8 = 2;
    pub const CAS: u8 = 3;
    pub const DELETE: u8 = 4;
    pub const LIST: u8 = 5;
    pub const GET_LOCAL: u8 = 6;
    pub const HELLO: u8 = 7;
    pub const PONG: u8 = 101;
    pub const VALUE: u8 = 102;
    pub const STORED: u8 = 103;
    pub const CONFLICT: u8 = 104;
    pub const DELETED: u8 = 105;
    pub const USERS: u8 = 106;
    pub const UNAVAILABLE: u8 = 107;
    pub const REFUSED: u8 = 108;
}

struct Enc(Vec<u8>);

impl Enc {
    fn new(t: u8) -> Enc {
        Enc(vec![PROTOCOL_VERSION, t])
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
    }
    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }
    fn doc(&mut self, d: &Option<Doc>) {
        match d {
            None => self.0.push(0),
            Some(d) => {
                self.0.push(1);
                self.u64(d.revision);
                self.bytes(&d.value);
            }
        }
    }
}

/// Reads a frame body; every method returns `None` past its end, never panics.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_be_bytes)
    }
    fn bytes(&mut self, max: usize) -> Option<&'a [u8]> {
        let n = u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize;
        if n > max {
            return None;
        }
        self.take(n)
    }
    fn text(&mut self, max: usize) -> Option<String> {
        String::from_utf8(self.bytes(max)?.to_vec()).ok()
    }
    fn user(&mut self) -> Option<String> {
        self.text(MAX_USER).filter(|u| !u.is_empty())
    }
    fn doc(&mut self) -> Option<Option<Doc>> {
        match self.u8()? {
            0 => Some(None),
            1 => {
                let revision = self.u64()?;
                let value = self.bytes(MAX_STORED)?.to_vec();
                // A stored document always has a revision (etcd's start at 1).
                (revision > 0).then_some(Some(Doc { revision, value }))
            }
            _ => None,
        }
    }
    fn start(body: &'a [u8]) -> Option<(Dec<'a>, u8)> {
        let mut d = Dec(body);
        if d.u8()? != PROTOCOL_VERSION {
            return None;
        }
        let t = d.u8()?;
        Some((d, t))
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut e;
        match self {
            Request::Hello => e = Enc::new(tag::HELLO),
            Request::Ping => e = Enc::new(tag::PING),
            Request::Get { user, fresh } => {
                e = Enc::new(if *fresh { tag::GET } else { tag::GET_LOCAL });
                e.bytes(user.as_bytes());
            }
            Request::Cas { user, expected, value } => {
                e = Enc::new(tag::CAS);
                e.bytes(user.as_bytes());
                e.u64(*expected);
                e.bytes(value);
            }
            Request::Delete { user } => {
                e = Enc::new(tag::DELETE);
                e.bytes(user.as_bytes());
            }
            Request::List => e = Enc::new(tag::LIST),
        }
        e.0
    }

    /// `None` for anything malformed, of another version, or with trailing bytes.
    pub fn decode(body: &[u8]) -> Option<Request> {
        let (mut d, t) = Dec::start(body)?;
        let r = match t {
            tag::HELLO => Request::Hello,
            tag::PING => Request::Ping,
            tag::GET => Request::Get {
                user: d.user()?,
                fresh: true,
            },
            tag::GET_LOCAL => Request::Get {
                user: d.user()?,
                fresh: false,
            },
            tag::CAS => Request::Cas {
                user: d.user()?,
                expected: d.u64()?,
                value: d.bytes(MAX_STORED)?.to_vec(),
            },
            tag::DELETE => Request::Delete { user: d.user()? },
            tag::LIST => Request::List,
            _ => return None,
        };
        d.end()?;
        Some(r)
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut e;
        match self {
            Response::Pong => e = Enc::new(tag::PONG),
            Response::Value(d) => {
                e = Enc::new(tag::VALUE);
                e.doc(d);
            }
            Response::Stored { revision } => {
                e = Enc::new(tag::STORED);
                e.u64(*revision);
            }
            Response::Conflict(d) => {
                e = Enc::new(tag::CONFLICT);
                e.doc(d);
            }
            Response::Deleted => e = Enc::new(tag::DELETED),
            Response::Users(users) => {
                e = Enc::new(tag::USERS);
                e.u64(users.len() as u64);
                for u in users {
                    e.bytes(u.as_bytes());
                }
            }
            Response::Unavailable(why) => {
                e = Enc::new(tag::UNAVAILABLE);
                e.bytes(truncate(why, 512).as_bytes());
            }
            Response::Refused(why) => {
                e = Enc::new(tag::REFUSED);
                e.bytes(truncate(why, 512).as_bytes());
            }
        }
        e.0
    }

    pub fn decode(body: &[u8]) -> Option<Response> {
        let (mut d, t) = Dec::start(body)?;
        let r = match t {
            tag::PONG => Response::Pong,
            tag::VALUE => Response::Value(d.doc()?),
            tag::STORED => Response::Stored {
                revision: d.u64().filter(|&r| r > 0)?,
            },
            tag::CONFLICT => Response::Conflict(d.doc()?),
            tag::DELETED => Response::Deleted,
            tag::USERS => {
                let n = d.u64()?;
                // Each entry takes at least 5 bytes: a count larger than that is a lie.
                if n > (d.0.len() / 5) as u64 {
                    return None;
                }
                let mut users = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    users.push(d.user()?);
                }
                Response::Users(users)
            }
            tag::UNAVAILABLE => Response::Unavailable(d.text(512)?),
            tag::REFUSED => Response::Refused(d.text(512)?),
            _ => return None,
        };
        d.end()?;
        Some(r)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame of at most `max` bytes (a longer one is an error, and nothing more is
/// read from the stream).
pub fn read_frame(r: &mut impl Read, max: usize) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let n = u32::from_be_bytes(len) as usize;
    if n > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame larger than the limit",
        ));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Why a fleet operation failed.
///
/// Only an outage that nobody but root can cause is [`FleetError::Unavailable`]: the daemon
/// is not running (no socket, nobody listening), or it answered that etcd answered none of
/// its requests within its deadline. A client that got no answer in time is
/// [`FleetError::NoAnswer`], never an outage: the client may have been stopped by the very
/// user it authenticates (`su` and `sudo` keep the caller's real uid, so the caller may
/// SIGSTOP them while they wait), or the daemon's backlog filled by that user's own logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// The fleet store is down, as the daemon itself reports or by its absence: the store
    /// may work again later; `store_unavailable = "local"` may fall back.
    Unavailable(String),
    /// This client got no answer in time, or lost its connection: refused, never a reason
    /// to fall back (see the type's comment).
    NoAnswer(String),
    /// Something is wrong that waiting will not fix (an unsafe socket, a peer that is not
    /// root, a malformed answer or document): never a reason to fall back.
    Refused(String),
}

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetError::Unavailable(m) => write!(f, "the fleet store is unavailable: {m}"),
            FleetError::NoAnswer(m) => write!(f, "the fleet store gave this process no answer: {m}"),
            FleetError::Refused(m) => write!(f, "the fleet store was refused: {m}"),
        }
    }
}

/// Checks that `path` is a socket owned by root, not writable by group or others, in a
/// directory owned by root and not writable by group or others.
pub fn check_socket_path(path: &Path) -> Result<(), FleetError> {
    let refused = |m: String| Err(FleetError::Refused(m));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/"));
    if !path.is_absolute() {
        return refused(format!("{} is not an absolute path", path.display()));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(md) if !md.is_dir() => return refused(format!("{} is not a directory", dir.display())),
        Ok(md) if md.uid() != 0 => return refused(format!("{} is owned by uid {}, not root", dir.display(), md.uid())),
        Ok(md) if md.mode() & 0o022 != 0 => {
            return refused(format!(
                "{} is writable by group or others ({:04o})",
                dir.display(),
                md.mode() & 0o7777
            ))
        }
        Ok(_) => {}
        Err(e) => {
            return Err(FleetError::Unavailable(format!(
                "{}: {}",
                dir.display(),
                crate::error::describe_io(&e)
            )))
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if !md.file_type().is_socket() => refused(format!("{} is not a socket", path.display())),
        Ok(md) if md.uid() != 0 => refused(format!("{} is owned by uid {}, not root", path.display(), md.uid())),
        Ok(md) if md.mode() & 0o022 != 0 => refused(format!(
            "{} is writable by group or others ({:04o})",
            path.display(),
            md.mode() & 0o7777
        )),
        Ok(_) => Ok(()),
        // No socket: the daemon is not running (or not yet): may come back.
        Err(e) => Err(FleetError::Unavailable(format!(
            "{}: {} (is pam-totp-stated running?)",
            path.display(),
            crate::error::describe_io(&e)
        ))),
    }
}

/// One connection to the daemon.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects within [`CONNECT_TIMEOUT`] after checking the socket's owner and mode, and
    /// checks that the process at the other end runs as root (SO_PEERCRED).
    pub fn connect(path: &Path) -> Result<Client, FleetError> {
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        use std::os::fd::AsRawFd;
        check_socket_path(path)?;
        // Nobody listening (ECONNREFUSED) or no socket (ENOENT): the daemon is not running,
        // which only root can bring about. Anything else is this client's trouble.
        let unavailable = |what: &str, e: nix::errno::Errno| {
            let m = format!("{what} {}: {}", path.display(), e.desc());
            match e {
                nix::errno::Errno::ECONNREFUSED | nix::errno::Errno::ENOENT => FleetError::Unavailable(m),
                _ => FleetError::NoAnswer(m),
            }
        };
        let addr = UnixAddr::new(path).map_err(|e| unavailable("bad socket path", e))?;
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| unavailable("cannot make a socket for", e))?;
        // A non-blocking connect to a Unix socket whose backlog is full fails with EAGAIN
        // instead of waiting: try again until the deadline.
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match connect(fd.as_raw_fd(), &addr) {
                Ok(()) => break,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                // A full backlog: a burst of logins, which a local user can start; not an
                // outage.
                Err(nix::errno::Errno::EAGAIN) => {
                    return Err(FleetError::NoAnswer(format!(
                        "pam-totp-stated did not accept a connection within {} ms",
                        CONNECT_TIMEOUT.as_millis()
                    )))
                }
                Err(e) => return Err(unavailable("cannot connect to", e)),
            }
        }
        let stream = UnixStream::from(fd);
        let peer = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(|e| unavailable("cannot read the peer credentials of", e))?;
        if peer.uid() != 0 {
            return Err(FleetError::Refused(format!(
                "the process at {} runs as uid {}, not root",
                path.display(),
                peer.uid()
            )));
        }
        let io = |e: std::io::Error| FleetError::NoAnswer(crate::error::describe_io(&e));
        stream.set_nonblocking(false).map_err(io)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
        Ok(Client { stream })
    }

    /// One request and its answer, within [`REQUEST_TIMEOUT`] in all. A daemon's
    /// `Unavailable` or `Refused` answer is returned as the error.
    pub fn call(&mut self, req: &Request) -> Result<Response, FleetError> {
        self.call_until(req, Instant::now() + REQUEST_TIMEOUT)
    }

    /// [`Client::call`], answered before `deadline` (and within [`REQUEST_TIMEOUT`]).
    pub fn call_until(&mut self, req: &Request, deadline: Instant) -> Result<Response, FleetError> {
        let deadline = deadline.min(Instant::now() + REQUEST_TIMEOUT);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FleetError::NoAnswer("no time left for the fleet store".into()));
        }
        let _ = self.stream.set_write_timeout(Some(left));
        let timeout = |e: std::io::Error| match e.kind() {
            // Also what a client stopped by its caller (SIGSTOP) sees when it goes on.
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                FleetError::NoAnswer("pam-totp-stated did not answer in time".into())
            }
            // An answer over the size limit: not an outage, never a reason to fall back.
            std::io::ErrorKind::InvalidData => FleetError::Refused(format!(
                "pam-totp-stated sent an answer that is not allowed: {}",
                crate::error::describe_io(&e)
            )),
            // The daemon closes a connection left idle (a client that was stopped).
            _ => FleetError::NoAnswer(format!(
                "lost the connection to pam-totp-stated: {}",
                crate::error::describe_io(&e)
            )),
        };
        write_frame(&mut self.stream, &req.encode()).map_err(timeout)?;
        let max = if matches!(req, Request::List) {
            MAX_LIST_FRAME
        } else {
            MAX_FRAME
        };
        let mut reader = DeadlineReader {
            stream: &self.stream,
            deadline,
        };
        let body = read_frame(&mut reader, max).map_err(timeout)?;
        let resp = Response::decode(&body)
            .ok_or_else(|| FleetError::Refused("pam-totp-stated sent a malformed answer".into()))?;
        let fits = match (req, &resp) {
            (_, Response::Unavailable(why)) => return Err(FleetError::Unavailable(why.clone())),
            (_, Response::Refused(why)) => return Err(FleetError::Refused(format!("pam-totp-stated: {why}"))),
            (Request::Ping | Request::Hello, Response::Pong) => true,
            (Request::Get { .. }, Response::Value(_)) => true,
            (Request::Cas { .. }, Response::Stored { .. } | Response::Conflict(_)) => true,
            (Request::Delete { .. }, Response::Deleted) => true,
            (Request::List, Response::Users(_)) => true,
            _ => false,
        };
        if !fits {
            return Err(FleetError::Refused("pam-totp-stated answered another question".into()));
        }
        Ok(resp)
    }
}

/// Reads with the socket's timeout shortened to what is left before `deadline`, so that a
/// daemon trickling bytes cannot hold a login past it.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buf)
    }
}

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
        r
    }

    fn err(&self, e: FleetError) -> Error {
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
            user: user.into(),
            fresh,
        })? {
            Response::Value(d) => Ok(d),
            _ => Err(FleetError::Refused("unexpected answer".into())),
        }
    }

    fn peek_fleet(&self, user: &str) -> Result<State, FleetError> {
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
    fn update_fleet<T>(&self, user: &str, f: &mut impl FnMut(&mut State) -> T) -> Result<T, FleetError> {
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
            let text = state.to_toml().map_err(FleetError::Refused)?;
            // The limit is the state's, as for a state file; the id line rides on top.
            if text.len() > MAX_DOCUMENT {
                return Err(FleetError::Refused(format!(
                    "the state of {} would exceed {MAX_DOCUMENT} bytes",
                    escape_user(user)
                )));
            }
            let value = compose_document(&text, protected)?;
            match self.call(&Request::Cas {
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
    fn remove_fleet(&self, user: &str) -> Result<(), FleetError> {
        *self.last.borrow_mut() = None;
        self.update_fleet(user, &mut |st: &mut State| st.forget_for_reset())
    }

    /// Every user with a document (for `pam-totp report`).
    pub fn list_users(&self) -> Result<Vec<String>, Error> {
        let r = self.call(&Request::List);
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
    /// The fleet store answered an operation of this store (a login's lockout check): from
    /// then on a failure refuses, never falls back — the fleet decides a login from start to
    /// end, or the host does, never half and half (someone who could make the decision fail
    /// after the check must not get this host's state instead).
    fleet_answered: Cell<bool>,
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
            fleet_answered: Cell::new(false),
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
            Ok(v) => {
                self.fleet_answered.set(true);
                Ok(v)
            }
            Err(FleetError::Unavailable(why)) if self.fallback && !self.fleet_answered.get() => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_req(r: Request) {
        assert_eq!(Request::decode(&r.encode()), Some(r));
    }

    fn roundtrip_resp(r: Response) {
        assert_eq!(Response::decode(&r.encode()), Some(r));
    }

    #[test]
    fn messages_round_trip() {
        roundtrip_req(Request::Ping);
        roundtrip_req(Request::Hello);
        roundtrip_req(Request::Get {
            user: "bob".into(),
            fresh: true,
        });
        roundtrip_req(Request::Get {
            user: "bob".into(),
            fresh: false,
        });
        roundtrip_req(Request::Cas {
            user: "bob".into(),
            expected: 7,
            value: b"version = 1\n".to_vec(),
        });
        roundtrip_req(Request::Delete { user: "ü".into() });
        roundtrip_req(Request::List);
        roundtrip_resp(Response::Pong);
        roundtrip_resp(Response::Value(None));
        roundtrip_resp(Response::Value(Some(Doc {
            revision: 3,
            value: b"x".to_vec(),
        })));
        roundtrip_resp(Response::Stored { revision: 9 });
        roundtrip_resp(Response::Conflict(None));
        roundtrip_resp(Response::Deleted);
        roundtrip_resp(Response::Users(vec!["a".into(), "b.c".into()]));
        roundtrip_resp(Response::Unavailable("etcd timed out".into()));
        roundtrip_resp(Response::Refused("too large".into()));
    }

    #[test]
    fn malformed_messages_are_none_never_a_panic() {
        let good = Request::Cas {
            user: "bob".into(),
            expected: 7,
            value: vec![b'x'; 100],
        }
        .encode();
        // Every truncation, every trailing byte, every single-byte change.
        for n in 0..good.len() {
            assert_eq!(Request::decode(&good[..n]), None, "{n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(Request::decode(&long), None);
        for i in 0..good.len() {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut m = good.clone();
                m[i] = b;
                let _ = Request::decode(&m);
                let _ = Response::decode(&m);
            }
        }
        // Lengths larger than the limits.
        let mut huge = vec![PROTOCOL_VERSION, tag::GET];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Request::decode(&huge), None);
        let mut users = vec![PROTOCOL_VERSION, tag::USERS];
        users.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(Response::decode(&users), None);
        assert_eq!(Request::decode(&[2, tag::PING]), None, "another version");
        assert_eq!(
            Request::decode(&[PROTOCOL_VERSION, tag::GET, 0, 0, 0, 0]),
            None,
            "empty user"
        );
        // A stored document has a revision.
        let mut zero = vec![PROTOCOL_VERSION, tag::VALUE, 1];
        zero.extend_from_slice(&0u64.to_be_bytes());
        zero.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(Response::decode(&zero), None);
    }

    #[test]
    fn frames_are_bounded() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello").unwrap();
        assert_eq!(read_frame(&mut &buf[..], 16).unwrap(), b"hello");
        assert!(read_frame(&mut &buf[..], 4).is_err());
        assert!(read_frame(&mut &buf[..6], 16).is_err(), "truncated");
        let big = (u32::MAX).to_be_bytes();
        assert!(read_frame(&mut &big[..], MAX_FRAME).is_err());
    }

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
    fn keys_escape_the_user() {
        assert_eq!(user_key("default", "bob"), "pam-totp/v1/default/users/bob");
        assert_eq!(user_key("prod", "../x"), "pam-totp/v1/prod/users/%2E.%2Fx");
        assert!(user_key("prod", "a/b").starts_with(&users_prefix("prod")));
    }

    #[test]
    fn a_missing_or_unsafe_socket_refuses() {
        let missing = Path::new("/nonexistent-pam-totp/stated.sock");
        assert!(matches!(Client::connect(missing), Err(FleetError::Unavailable(_))));
        assert!(matches!(
            check_socket_path(Path::new("relative.sock")),
            Err(FleetError::Refused(_))
        ));
        // /tmp is writable by others.
        let d = std::env::temp_dir().join(format!("pam-totp-fleet-{}", std::process::id()));
        let _ = std::fs::create_dir(&d);
        let p = d.join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let r = check_socket_path(&p);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let r2 = check_socket_path(&p);
        std::fs::remove_dir_all(&d).unwrap();
        if nix::unistd::geteuid().is_root() {
            assert!(matches!(r, Err(FleetError::Refused(m)) if m.contains("writable")));
        }
        assert!(matches!(r2, Err(FleetError::Refused(_))));
    }
}
