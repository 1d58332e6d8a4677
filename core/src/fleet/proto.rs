//! The wire protocol between the module (and the command line) and `pam-totp-stated`:
//! requests and answers as enums, one codec, used by both sides.
//!
//! Owns: the frame (a 4-byte big-endian length and that many bytes), the body (starting
//! with [`PROTOCOL_VERSION`] and a tag; text and documents a 4-byte length and their bytes;
//! numbers 8-byte big endian), and every bound on what either side reads.
//! Never: reads more than the caller's limit; panics on any input (every malformed frame
//! decodes to `None`).

use std::io::{Read, Write};

use super::document::{Doc, MAX_STORED};

pub const PROTOCOL_VERSION: u8 = 1;
/// The largest frame either side accepts, except a user list ([`MAX_LIST_FRAME`]).
pub const MAX_FRAME: usize = 256 * 1024;
/// The largest user list (`pam-totp report`) a client accepts: ~16 bytes per user.
pub const MAX_LIST_FRAME: usize = 32 * 1024 * 1024;
/// The longest user name carried.
pub const MAX_USER: usize = 256;

/// Which of a user's two documents a request is about: the state
/// (`pam-totp/v1/<namespace>/users/<user>`) or the fleet vault's sealed keys
/// (`pam-totp/v1/<namespace>/vault/<user>`, see [`super::sealed`]). The daemon stores both the
/// same way and never looks inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    State,
    Vault,
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
        space: Space,
        user: String,
        fresh: bool,
    },
    /// Stores `value` if the document's mod_revision is still `expected` (0: if it does not
    /// exist), in one etcd transaction.
    Cas {
        space: Space,
        user: String,
        expected: u64,
        value: Vec<u8>,
    },
    Delete {
        space: Space,
        user: String,
    },
    /// Every user with a document (of this space) in the namespace.
    List {
        space: Space,
    },
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
    // The same requests on the fleet vault's documents (new tags, so that a daemon that
    // knows no vault refuses them instead of answering with the state).
    pub const VAULT_GET: u8 = 12;
    pub const VAULT_CAS: u8 = 13;
    pub const VAULT_DELETE: u8 = 14;
    pub const VAULT_LIST: u8 = 15;
    pub const VAULT_GET_LOCAL: u8 = 16;
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
            Request::Get { space, user, fresh } => {
                e = Enc::new(match (space, fresh) {
                    (Space::State, true) => tag::GET,
                    (Space::State, false) => tag::GET_LOCAL,
                    (Space::Vault, true) => tag::VAULT_GET,
                    (Space::Vault, false) => tag::VAULT_GET_LOCAL,
                });
                e.bytes(user.as_bytes());
            }
            Request::Cas {
                space,
                user,
                expected,
                value,
            } => {
                e = Enc::new(match space {
                    Space::State => tag::CAS,
                    Space::Vault => tag::VAULT_CAS,
                });
                e.bytes(user.as_bytes());
                e.u64(*expected);
                e.bytes(value);
            }
            Request::Delete { space, user } => {
                e = Enc::new(match space {
                    Space::State => tag::DELETE,
                    Space::Vault => tag::VAULT_DELETE,
                });
                e.bytes(user.as_bytes());
            }
            Request::List { space } => {
                e = Enc::new(match space {
                    Space::State => tag::LIST,
                    Space::Vault => tag::VAULT_LIST,
                })
            }
        }
        e.0
    }

    /// `None` for anything malformed, of another version, or with trailing bytes.
    pub fn decode(body: &[u8]) -> Option<Request> {
        let (mut d, t) = Dec::start(body)?;
        let r = match t {
            tag::HELLO => Request::Hello,
            tag::PING => Request::Ping,
            tag::GET | tag::GET_LOCAL | tag::VAULT_GET | tag::VAULT_GET_LOCAL => Request::Get {
                space: space_of(t),
                user: d.user()?,
                fresh: t == tag::GET || t == tag::VAULT_GET,
            },
            tag::CAS | tag::VAULT_CAS => Request::Cas {
                space: space_of(t),
                user: d.user()?,
                expected: d.u64()?,
                value: d.bytes(MAX_STORED)?.to_vec(),
            },
            tag::DELETE | tag::VAULT_DELETE => Request::Delete {
                space: space_of(t),
                user: d.user()?,
            },
            tag::LIST | tag::VAULT_LIST => Request::List { space: space_of(t) },
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

fn space_of(t: u8) -> Space {
    if (tag::VAULT_GET..=tag::VAULT_GET_LOCAL).contains(&t) {
        Space::Vault
    } else {
        Space::State
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
    w.write_all(&frame(body))?;
    w.flush()
}

/// The length header of a frame.
pub const FRAME_HEADER: usize = 4;

/// `body` as a frame: its length header and its bytes (both sides, sync and async, send
/// this).
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(FRAME_HEADER + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    buf
}

/// The body length a frame header announces, `None` when it is over `max` (nothing more
/// may then be read from the stream).
pub fn frame_len(header: [u8; FRAME_HEADER], max: usize) -> Option<usize> {
    let n = u32::from_be_bytes(header) as usize;
    (n <= max).then_some(n)
}

/// Reads one frame of at most `max` bytes (a longer one is an error, and nothing more is
/// read from the stream).
pub fn read_frame(r: &mut impl Read, max: usize) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; FRAME_HEADER];
    r.read_exact(&mut len)?;
    let Some(n) = frame_len(len, max) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame larger than the limit",
        ));
    };
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    Ok(body)
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
        for space in [Space::State, Space::Vault] {
            roundtrip_req(Request::Get {
                space,
                user: "bob".into(),
                fresh: true,
            });
            roundtrip_req(Request::Get {
                space,
                user: "bob".into(),
                fresh: false,
            });
            roundtrip_req(Request::Cas {
                space,
                user: "bob".into(),
                expected: 7,
                value: b"version = 1\n".to_vec(),
            });
            roundtrip_req(Request::Delete {
                space,
                user: "ü".into(),
            });
            roundtrip_req(Request::List { space });
        }
        // The state's requests keep their tags (a daemon of the release before the vault
        // reads them); the vault's are new ones.
        assert_eq!(
            Request::List { space: Space::State }.encode(),
            vec![PROTOCOL_VERSION, tag::LIST]
        );
        assert_eq!(
            Request::List { space: Space::Vault }.encode(),
            vec![PROTOCOL_VERSION, tag::VAULT_LIST]
        );
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
            space: Space::Vault,
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
}
