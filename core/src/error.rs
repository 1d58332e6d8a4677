//! The one error type. Each variant's message tells the administrator what to check or
//! run; none ever carries a code, a secret, a password or file contents.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// A module argument or a setting in pam_totp.conf is unknown or malformed.
    Config(String),
    /// The PAM user name cannot be a local account name (contains `/`, NUL, newline ...).
    BadUserName,
    /// getpwnam_r found no such user.
    UnknownUser,
    /// The user database could not be read.
    UserLookup(String),
    /// A secret, state or lock file (or its directory) failed a check or an operation.
    File { path: PathBuf, problem: FileProblem },
}

#[derive(Debug, PartialEq, Eq)]
pub enum FileProblem {
    Symlink,
    NotRegular(&'static str),
    NotDirectory,
    Owner {
        found: u32,
        allowed: Vec<u32>,
    },
    GroupOrOtherAccess {
        mode: u32,
    },
    GroupOrOtherWritable {
        mode: u32,
    },
    HardLinked {
        links: u64,
    },
    TooLarge {
        size: u64,
        max: u64,
    },
    /// A syntax or schema error; carries only a position and a reason, never the text.
    Malformed(String),
    UnsupportedVersion(i64),
    Io(String),
    FsIdentity(String),
    AlreadyExists,
    /// A lock file another process held for as long as we waited.
    Locked {
        waited_secs: u64,
    },
}

impl Error {
    pub fn file(path: impl Into<PathBuf>, problem: FileProblem) -> Self {
        Error::File {
            path: path.into(),
            problem,
        }
    }
    pub fn io(path: impl Into<PathBuf>, e: &std::io::Error) -> Self {
        Error::file(path, FileProblem::Io(describe_io(e)))
    }
}

/// An io::Error in words, without any embedded path or data.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.kind().to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "configuration error: {m}"),
            Error::BadUserName => f.write_str("user name is not a valid account name"),
            Error::UnknownUser => f.write_str("no such user in the user database"),
            Error::UserLookup(m) => write!(f, "user database lookup failed: {m}"),
            Error::File { path, problem } => {
                let p = path.display();
                match problem {
                    FileProblem::Symlink => {
                        write!(f, "{p} is a symbolic link; replace it with the real file")
                    }
                    FileProblem::NotRegular(kind) => {
                        write!(f, "{p} is a {kind}, not a regular file")
                    }
                    FileProblem::NotDirectory => write!(f, "{p} is not a directory"),
                    FileProblem::Owner { found, allowed } => {
                        let allowed: Vec<String> = allowed.iter().map(u32::to_string).collect();
                        write!(
                            f,
                            "{p} is owned by uid {found}; it must be owned by uid {}",
                            allowed.join(" or ")
                        )
                    }
                    FileProblem::GroupOrOtherAccess { mode } => write!(
                        f,
                        "{p} is accessible by group or others ({:04o}); run chmod 600 {p}",
                        mode & 0o7777
                    ),
                    FileProblem::GroupOrOtherWritable { mode } => write!(
                        f,
                        "{p} is writable by group or others ({:04o}); run chmod go-w {p}",
                        mode & 0o7777
                    ),
                    FileProblem::HardLinked { links } => {
                        write!(f, "{p} has {links} hard links; it must have only one")
                    }
                    FileProblem::TooLarge { size, max } => {
                        write!(f, "{p} is {size} bytes, larger than the {max}-byte limit")
                    }
                    FileProblem::Malformed(why) => write!(f, "{p} is malformed: {why}"),
                    FileProblem::UnsupportedVersion(v) => {
                        write!(f, "{p} has format version {v}; this pam_totp reads version 1")
                    }
                    FileProblem::Io(why) => write!(f, "{p}: {why}"),
                    FileProblem::AlreadyExists => write!(f, "{p} already exists"),
                    FileProblem::Locked { waited_secs } => write!(
                        f,
                        "another process holds the lock {p}; gave up after {waited_secs} s (a pam-totp command \
                         still changing this enrollment, or a process of the user's own holding it): try again \
                         later"
                    ),
                    FileProblem::FsIdentity(why) => {
                        write!(f, "{p}: could not switch file-system identity: {why}")
                    }
                }
            }
        }
    }
}

impl std::error::Error for Error {}
