//! The blocking client of `pam-totp-stated`, as the module and the command line use it: one
//! connection, one request and its answer at a time, every wait bounded.
//!
//! Owns: checking the socket before connecting (root's, not writable by others) and the peer
//! (root, SO_PEERCRED); the deadlines; telling an outage ([`FleetError::Unavailable`]) from
//! this process getting no answer ([`FleetError::NoAnswer`]).
//! Never: talks to a socket or a peer that is not root's; waits past its deadline.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::proto::{read_frame, write_frame, Request, Response, MAX_FRAME, MAX_LIST_FRAME};
use super::FleetError;

/// How long a client waits for the daemon to accept its connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a client waits for one answer (the daemon's etcd deadline is shorter).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

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
            return Err(FleetError::NoAnswer(format!(
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
        Err(e) => Err(FleetError::NoAnswer(format!(
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
        // Nobody listening, no socket, or anything else: this host's trouble, never an
        // etcd outage (a daemon killed by the OOM killer, or out of restarts, must not
        // move logins onto this host's own state).
        let unavailable =
            |what: &str, e: nix::errno::Errno| FleetError::NoAnswer(format!("{what} {}: {}", path.display(), e.desc()));
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
        let max = if matches!(req, Request::List { .. }) {
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
            (Request::List { .. }, Response::Users(_)) => true,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_unsafe_socket_refuses() {
        let missing = Path::new("/nonexistent-pam-totp/stated.sock");
        assert!(matches!(Client::connect(missing), Err(FleetError::NoAnswer(_))));
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
