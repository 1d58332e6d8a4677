//! Safe file access for code running as root in places other users can write.
//!
//! Owns: opening the secret file (never following a symlink in the last component, never
//! blocking on a FIFO, never trusting a file with the wrong owner, mode, link count or size),
//! switching the file-system identity to the user while reading in their home, and the
//! directory-relative primitives the state store uses (lock file, atomic replace).
//! Never: writes outside a directory it has opened and checked; follows a symlink at a leaf.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use zeroize::Zeroizing;

use crate::error::{describe_io, Error, FileProblem};

/// Largest secret or state file we read (64 KiB): a file this big is not ours.
pub const MAX_FILE_SIZE: u64 = 64 * 1024;

/// Who may own a file or directory we trust.
#[derive(Debug, Clone)]
pub struct Owners(pub Vec<u32>);

impl Owners {
    fn check(&self, path: &Path, uid: u32) -> Result<(), Error> {
        if self.0.contains(&uid) {
            Ok(())
        } else {
            Err(Error::file(
                path,
                FileProblem::Owner {
                    found: uid,
                    allowed: self.0.clone(),
                },
            ))
        }
    }
}

fn kind_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// One version of a file: its inode and its size and change times. A file replaced (renamed
/// over, as every writer of secret files does) or rewritten in place gets another stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    pub fn of(md: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

/// An open, checked directory. Every file operation is relative to its descriptor, so a
/// rename of the path after the check cannot redirect us.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens `path` as a directory (following symlinks in the path: an administrator may
    /// point it anywhere; what matters is who owns what we end up in) and checks that it is
    /// owned by one of `owners` and not writable by group or others (the attack: another
    /// user swaps our file for theirs). Returns `Ok(None)` if it does not exist.
    pub fn open(path: &Path, owners: &Owners) -> Result<Option<Dir>, Error> {
        Dir::open_with(path, owners, true)
    }

    /// [`Dir::open`]; with `follow_last == false` the last component must not be a symlink
    /// (for directories root writes to: a symlink planted there could send root's files
    /// anywhere).
    pub fn open_with(path: &Path, owners: &Owners, follow_last: bool) -> Result<Option<Dir>, Error> {
        let mut flags = OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        if !follow_last {
            flags |= OFlag::O_NOFOLLOW;
        }
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags(flags))
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => {
                return Err(Error::file(path, FileProblem::Symlink))
            }
            Err(e) if e.raw_os_error() == Some(Errno::ENOTDIR as i32) => {
                let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
                return Err(Error::file(
                    path,
                    if symlink {
                        FileProblem::Symlink
                    } else {
                        FileProblem::NotDirectory
                    },
                ));
            }
            Err(e) if e.raw_os_error() == Some(Errno::EACCES as i32) => {
                // Say why if we can: a directory someone else owns is the usual cause.
                if let Ok(md) = std::fs::metadata(path) {
                    owners.check(path, md.uid())?;
                }
                return Err(Error::io(path, &e));
            }
            Err(e) => return Err(Error::io(path, &e)),
        };
        let md = file.metadata().map_err(|e| Error::io(path, &e))?;
        if !md.is_dir() {
            return Err(Error::file(path, FileProblem::NotDirectory));
        }
        owners.check(path, md.uid())?;
        if md.mode() & 0o022 != 0 {
            return Err(Error::file(path, FileProblem::GroupOrOtherWritable { mode: md.mode() }));
        }
        Ok(Some(Dir {
            fd: file.into(),
            path: path.to_path_buf(),
        }))
    }

    /// Like [`Dir::open`], creating the directory with `mode` (its parents must exist) if
    /// it is missing.
    /// The directory itself must not be a symlink.
    pub fn open_or_create(path: &Path, owners: &Owners, mode: u32) -> Result<Dir, Error> {
        if let Some(d) = Dir::open_with(path, owners, false)? {
            return Ok(d);
        }
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(path, &e)),
        }
        Dir::open_with(path, owners, false)?
            .ok_or_else(|| Error::file(path, FileProblem::Io("vanished after creation".into())))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn child(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` for reading without following a symlink or blocking on a FIFO, checks
    /// it with fstat (regular file, owner, no group/other access, one link, size cap) and
    /// reads it. `Ok(None)`: it does not exist.
    pub fn read_file(&self, name: &str, owners: &Owners) -> Result<Option<Zeroizing<String>>, Error> {
        Ok(self.read_file_stamped(name, owners)?.map(|(text, _)| text))
    }

    /// [`Dir::read_file`], with the [`FileStamp`] of what was read.
    pub fn read_file_stamped(
        &self,
        name: &str,
        owners: &Owners,
    ) -> Result<Option<(Zeroizing<String>, FileStamp)>, Error> {
        let path = self.child(name);
        let Some((file, md)) = self.open_checked(name, owners, false, MAX_FILE_SIZE)? else {
            return Ok(None);
        };
        let buf = read_capped(&file, &path, MAX_FILE_SIZE, md.size())?;
        match std::str::from_utf8(&buf) {
            Ok(s) => Ok(Some((Zeroizing::new(s.to_owned()), FileStamp::of(&md)))),
            Err(e) => Err(Error::file(
                path,
                FileProblem::Malformed(format!("not UTF-8 text (byte {})", e.valid_up_to())),
            )),
        }
    }

    /// Opens `name` (read-only, or read-write when `write`) with the checks of
    /// [`Dir::read_file`]: no symlink, no FIFO, a regular file owned by one of `owners`
    /// with no group/other access, one link, at most `max` bytes. `Ok(None)`: it does not exist.
    pub fn open_checked(
        &self,
        name: &str,
        owners: &Owners,
        write: bool,
        max: u64,
    ) -> Result<Option<(File, std::fs::Metadata)>, Error> {
        let path = self.child(name);
        let access = if write { OFlag::O_RDWR } else { OFlag::O_RDONLY };
        let flags = access | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = match openat(self.fd.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            // O_NOFOLLOW on a symlink gives ELOOP: the classic root-follows-user-link attack.
            Err(Errno::ELOOP) => return Err(Error::file(path, FileProblem::Symlink)),
            Err(Errno::EACCES) => {
                // Say why if we can: a file someone else owns is the usual cause.
                let st = nix::sys::stat::fstatat(self.fd.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
                if let Ok(st) = st {
                    owners.check(&path, st.st_uid)?;
                }
                return Err(Error::file(path, FileProblem::Io(Errno::EACCES.desc().to_string())));
            }
            Err(e) => return Err(Error::file(path, FileProblem::Io(e.desc().to_string()))),
        };
        let file = File::from(fd);
        let md = file.metadata().map_err(|e| Error::io(&path, &e))?;
        if !md.file_type().is_file() {
            return Err(Error::file(path, FileProblem::NotRegular(kind_name(md.file_type()))));
        }
        owners.check(&path, md.uid())?;
        if md.mode() & 0o077 != 0 {
            return Err(Error::file(path, FileProblem::GroupOrOtherAccess { mode: md.mode() }));
        }
        // A second link means someone else's file may be standing in for ours. Zero links is
        // fine: the file was replaced (renamed over) after we opened it, and what we read is
        // the complete old version — a concurrent login's atomic update, not an attack.
        if md.nlink() > 1 {
            return Err(Error::file(path, FileProblem::HardLinked { links: md.nlink() }));
        }
        if md.size() > max {
            return Err(Error::file(path, FileProblem::TooLarge { size: md.size(), max }));
        }
        Ok(Some((file, md)))
    }

    /// Opens (creating if needed, mode 0600) a lock file that is never unlinked, so every
    /// process locks the same inode.
    pub fn open_lock_file(&self, name: &str, owners: &Owners) -> Result<File, Error> {
        let path = self.child(name);
        let flags =
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = openat(self.fd.as_fd(), name, flags, Mode::from_bits_truncate(0o600)).map_err(|e| match e {
            Errno::ELOOP => Error::file(&path, FileProblem::Symlink),
            e => Error::file(&path, FileProblem::Io(e.desc().to_string())),
        })?;
        let file = File::from(fd);
        let md = file.metadata().map_err(|e| Error::io(&path, &e))?;
        if !md.file_type().is_file() {
            return Err(Error::file(path, FileProblem::NotRegular(kind_name(md.file_type()))));
        }
        owners.check(&path, md.uid())?;
        Ok(file)
    }

    /// Replaces `name` atomically: writes a temporary file in this directory, fsyncs it when
    /// `durable`, renames it over `name`, then fsyncs the directory when `durable`. Readers
    /// see the old or the new content, never a mix; a crash leaves at most a stray temp file.
    pub fn write_atomic(&self, name: &str, contents: &[u8], mode: u32, durable: bool) -> Result<(), Error> {
        self.write_file(name, contents, mode, durable, true)
    }

    /// [`Dir::write_atomic`] with a choice: `replace == false` fails with
    /// [`FileProblem::AlreadyExists`] if `name` exists (RENAME_NOREPLACE, so no race).
    pub fn write_file(
        &self,
        name: &str,
        contents: &[u8],
        mode: u32,
        durable: bool,
        replace: bool,
    ) -> Result<(), Error> {
        let tmp = format!(".{name}.tmp");
        let path = self.child(name);
        // A stale temp file (a crash) is removed and ours created with O_EXCL: never open
        // something already there, which in a directory its owner can write could be a hard
        // link to another file that we would then overwrite.
        match nix::unistd::unlinkat(self.fd.as_fd(), tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(Error::file(self.child(&tmp), FileProblem::Io(e.desc().to_string()))),
        }
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = openat(self.fd.as_fd(), tmp.as_str(), flags, Mode::from_bits_truncate(mode))
            .map_err(|e| Error::file(self.child(&tmp), FileProblem::Io(e.desc().to_string())))?;
        let mut file = File::from(fd);
        let result = (|| -> std::io::Result<()> {
            // The umask may have narrowed the mode; set exactly ours.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.write_all(contents)?;
            if durable {
                file.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = nix::unistd::unlinkat(self.fd.as_fd(), tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
            return Err(Error::io(path, &e));
        }
        drop(file);
        let renamed = if replace {
            renameat(self.fd.as_fd(), tmp.as_str(), self.fd.as_fd(), name)
        } else {
            nix::fcntl::renameat2(
                self.fd.as_fd(),
                tmp.as_str(),
                self.fd.as_fd(),
                name,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            )
        };
        if let Err(e) = renamed {
            let _ = nix::unistd::unlinkat(self.fd.as_fd(), tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
            return Err(Error::file(
                &path,
                if e == Errno::EEXIST {
                    FileProblem::AlreadyExists
                } else {
                    FileProblem::Io(e.desc().to_string())
                },
            ));
        }
        if durable {
            nix::unistd::fsync(self.fd.as_fd())
                .map_err(|e| Error::file(&self.path, FileProblem::Io(e.desc().to_string())))?;
        }
        Ok(())
    }

    /// Removes `name` if present.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        match nix::unistd::unlinkat(self.fd.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::file(self.child(name), FileProblem::Io(e.desc().to_string()))),
        }
    }
}

/// Reads an open file to its end, refusing more than `max` bytes (the file may have grown
/// since it was checked: at most one byte past the cap is read to notice).
/// `size`: the size fstat gave (the buffer's first capacity).
pub fn read_capped(file: &File, path: &Path, max: u64, size: u64) -> Result<Zeroizing<Vec<u8>>, Error> {
    let size = size.min(max);
    let mut buf = Zeroizing::new(Vec::with_capacity(size as usize + 1));
    read_into(file, path, max, &mut buf)?;
    Ok(buf)
}

/// [`read_capped`] into a buffer that is not wiped when dropped: for files that hold no
/// secret, or whose caller wipes the parts that do (a wipe of every byte read is a
/// measurable part of a login).
pub fn read_capped_plain(file: &File, path: &Path, max: u64, size: u64) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::with_capacity(size.min(max) as usize + 1);
    read_into(file, path, max, &mut buf)?;
    Ok(buf)
}

fn read_into(file: &File, path: &Path, max: u64, buf: &mut Vec<u8>) -> Result<(), Error> {
    let mut file = file;
    // Into the capacity fstat asked for first: one read for the file and one that sees its
    // end (read_to_end's growth steps took three for a state file); then the capped rest.
    let want = buf.capacity().min(max as usize + 1);
    buf.resize(want, 0);
    let mut filled = 0;
    while filled < want {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(filled);
                return Err(Error::io(path, &e));
            }
        }
    }
    buf.truncate(filled);
    if filled == want {
        (&mut file)
            .take(max + 1 - filled as u64)
            .read_to_end(buf)
            .map_err(|e| Error::io(path, &e))?;
    }
    if buf.len() as u64 > max {
        return Err(Error::file(
            path,
            FileProblem::TooLarge {
                size: buf.len() as u64,
                max,
            },
        ));
    }
    Ok(())
}

fn libc_flags(f: OFlag) -> i32 {
    f.bits()
}

/// Runs `f` with the file-system uid/gid of a user, restoring root's afterwards.
///
/// Used while reading in a user's home: the kernel then checks every path component with
/// the user's rights, so a symlinked or bind-mounted directory in their home can only lead
/// to files the user could read anyway, and root-squashed NFS homes work. Only effective
/// when we run as root; otherwise `f` simply runs with our own identity.
/// setfsuid/setfsgid affect only the calling thread, which is the one running PAM.
pub fn with_fs_identity<T>(uid: u32, gid: u32, path: &Path, f: impl FnOnce() -> T) -> Result<T, Error> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() || uid == 0 {
        return Ok(f());
    }
    let egid = nix::unistd::getegid();
    let fail = |what: &str| Error::file(path, FileProblem::FsIdentity(what.to_string()));
    // setfsuid reports the *previous* id and never an error; asking with an invalid id (-1)
    // returns the current one, which is how a failed switch is detected.
    nix::unistd::setfsgid(Gid::from_raw(gid));
    if nix::unistd::setfsgid(Gid::from_raw(u32::MAX)) != Gid::from_raw(gid) {
        nix::unistd::setfsgid(egid);
        return Err(fail("setfsgid failed"));
    }
    nix::unistd::setfsuid(Uid::from_raw(uid));
    if nix::unistd::setfsuid(Uid::from_raw(u32::MAX)) != Uid::from_raw(uid) {
        nix::unistd::setfsgid(egid);
        return Err(fail("setfsuid failed"));
    }
    let guard = RestoreFsIdentity { uid: euid, gid: egid };
    let out = f();
    drop(guard);
    Ok(out)
}

struct RestoreFsIdentity {
    uid: Uid,
    gid: Gid,
}

impl Drop for RestoreFsIdentity {
    // Runs on unwind too, so a panic inside `f` never leaves sshd with the user's fsuid.
    fn drop(&mut self) {
        nix::unistd::setfsuid(self.uid);
        nix::unistd::setfsgid(self.gid);
    }
}

/// Splits an absolute file path into its directory and final component.
pub fn split_path(path: &Path) -> Option<(&Path, &str)> {
    if !path.is_absolute() {
        return None;
    }
    let name = path.file_name()?.to_str()?;
    let dir = path.parent()?;
    Some((dir, name))
}

/// Reads a secret file: the directory must be owned by one of `owners` and not writable
/// by group/others; the file must pass [`Dir::read_file`]. `Ok(None)` when the file or its
/// directory does not exist (the user has not enrolled).
pub fn read_checked(path: &Path, owners: &Owners) -> Result<Option<Zeroizing<String>>, Error> {
    Ok(read_checked_stamped(path, owners)?.map(|(text, _)| text))
}

/// [`read_checked`], with the [`FileStamp`] of what was read.
pub fn read_checked_stamped(path: &Path, owners: &Owners) -> Result<Option<(Zeroizing<String>, FileStamp)>, Error> {
    let (dir, name) =
        split_path(path).ok_or_else(|| Error::file(path, FileProblem::Io("not an absolute file path".into())))?;
    match Dir::open(dir, owners)? {
        None => Ok(None),
        Some(d) => d.read_file_stamped(name, owners),
    }
}

/// The [`FileStamp`] `path` has now, opened with every check of [`read_checked`] but not
/// read: to tell whether a file read earlier is still the same. `Ok(None)`: it is gone.
pub fn stamp_checked(path: &Path, owners: &Owners) -> Result<Option<FileStamp>, Error> {
    let (dir, name) =
        split_path(path).ok_or_else(|| Error::file(path, FileProblem::Io("not an absolute file path".into())))?;
    match Dir::open(dir, owners)? {
        None => Ok(None),
        Some(d) => Ok(d
            .open_checked(name, owners, false, MAX_FILE_SIZE)?
            .map(|(_, md)| FileStamp::of(&md))),
    }
}

/// Reads an administrator's configuration file: it may be a symlink (configuration
/// management tools make them) but must be a regular file owned by root (or by us), not
/// writable by group or others, and within the size cap. `Ok(None)` if it does not exist.
pub fn read_config(path: &Path) -> Result<Option<String>, Error> {
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY))
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, &e)),
    };
    let md = file.metadata().map_err(|e| Error::io(path, &e))?;
    if !md.file_type().is_file() {
        return Err(Error::file(path, FileProblem::NotRegular(kind_name(md.file_type()))));
    }
    let euid = nix::unistd::geteuid().as_raw();
    Owners(if euid == 0 { vec![0] } else { vec![0, euid] }).check(path, md.uid())?;
    if md.mode() & 0o022 != 0 {
        return Err(Error::file(path, FileProblem::GroupOrOtherWritable { mode: md.mode() }));
    }
    if md.size() > MAX_FILE_SIZE {
        return Err(Error::file(
            path,
            FileProblem::TooLarge {
                size: md.size(),
                max: MAX_FILE_SIZE,
            },
        ));
    }
    let mut text = String::new();
    (&mut file)
        .take(MAX_FILE_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(path, &e))?;
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(Error::file(
            path,
            FileProblem::TooLarge {
                size: text.len() as u64,
                max: MAX_FILE_SIZE,
            },
        ));
    }
    Ok(Some(text))
}

/// Reads an administrator's input file as root (a token file, a pre-shared key): a regular
/// file — no FIFO or device to block on — of at most `max` bytes, checked again on the open
/// file. Not for a user's file (those go through [`read_checked`] as their owner).
pub fn read_regular(path: &Path, max: u64) -> Result<(File, Vec<u8>), Error> {
    use std::io::Read;
    let fail = |p: FileProblem| Error::file(path, p);
    let io = |e: std::io::Error| fail(FileProblem::Io(describe_io(&e)));
    let md = std::fs::metadata(path).map_err(io)?;
    if !md.is_file() {
        return Err(fail(FileProblem::NotRegular("not a regular file")));
    }
    if md.len() > max {
        return Err(fail(FileProblem::TooLarge { size: md.len(), max }));
    }
    let f = File::open(path).map_err(io)?;
    if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(fail(FileProblem::NotRegular("not a regular file")));
    }
    let mut buf = Vec::new();
    (&f).take(max + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > max {
        // It grew after the check: its size now.
        let size = f.metadata().map(|m| m.len()).unwrap_or(buf.len() as u64);
        return Err(fail(FileProblem::TooLarge { size, max }));
    }
    Ok((f, buf))
}

/// Creates a new file of mode exactly 0600 for something secret its owner keeps (backup codes
/// to print): never over a file that exists, never through a symbolic link (`O_CREAT|O_EXCL|
/// O_NOFOLLOW`), never a controlling terminal. `AlreadyExists` or `Symlink` when the name is
/// taken.
pub fn create_private(path: &Path) -> Result<File, Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |p: FileProblem| Error::file(path, p);
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NOCTTY;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(flags.bits())
        .open(path)
    {
        Ok(f) => {
            let md = f.metadata().map_err(|e| fail(FileProblem::Io(describe_io(&e))))?;
            if !md.is_file() {
                return Err(fail(FileProblem::NotRegular("not a regular file")));
            }
            // The umask may have narrowed the mode; set exactly ours.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| fail(FileProblem::Io(describe_io(&e))))?;
            Ok(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            Err(fail(if link {
                FileProblem::Symlink
            } else {
                FileProblem::AlreadyExists
            }))
        }
        Err(e) => Err(fail(FileProblem::Io(describe_io(&e)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> Owners {
        Owners(vec![nix::unistd::geteuid().as_raw()])
    }

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("pam-totp-fs-{}-{}", std::process::id(), rand_suffix()));
        std::fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
        d
    }

    fn rand_suffix() -> u64 {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).unwrap();
        u64::from_le_bytes(b)
    }

    fn write(p: &Path, body: &str, mode: u32) {
        std::fs::write(p, body).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn reads_a_private_regular_file() {
        let d = tmpdir();
        write(&d.join("s"), "hello", 0o600);
        assert_eq!(read_checked(&d.join("s"), &me()).unwrap().unwrap().as_str(), "hello");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn missing_file_or_directory_is_not_enrolled() {
        let d = tmpdir();
        assert!(read_checked(&d.join("nope"), &me()).unwrap().is_none());
        assert!(read_checked(&d.join("nodir/nope"), &me()).unwrap().is_none());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn symlinked_file_is_refused() {
        let d = tmpdir();
        write(&d.join("real"), "x", 0o600);
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        let e = read_checked(&d.join("link"), &me()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::Symlink,
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn group_or_world_readable_file_is_refused() {
        let d = tmpdir();
        for mode in [0o640, 0o604, 0o620, 0o660] {
            write(&d.join("s"), "x", mode);
            let e = read_checked(&d.join("s"), &me()).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::File {
                        problem: FileProblem::GroupOrOtherAccess { .. },
                        ..
                    }
                ),
                "{mode:o}: {e}"
            );
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn wrong_owner_is_refused() {
        let d = tmpdir();
        write(&d.join("s"), "x", 0o600);
        let e = read_checked(&d.join("s"), &Owners(vec![4242])).unwrap_err();
        // The directory is checked first and is ours, not 4242's.
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::Owner { .. },
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn hard_linked_file_is_refused() {
        let d = tmpdir();
        write(&d.join("s"), "x", 0o600);
        std::fs::hard_link(d.join("s"), d.join("t")).unwrap();
        let e = read_checked(&d.join("s"), &me()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::HardLinked { links: 2 },
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let d = tmpdir();
        nix::unistd::mkfifo(&d.join("f"), Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_checked(&d.join("f"), &me()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::NotRegular("FIFO"),
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn directory_in_place_of_file_is_refused() {
        let d = tmpdir();
        std::fs::DirBuilder::new().mode(0o700).create(d.join("s")).unwrap();
        let e = read_checked(&d.join("s"), &me()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::NotRegular("directory"),
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn oversized_file_is_refused() {
        let d = tmpdir();
        write(&d.join("s"), &"a".repeat(MAX_FILE_SIZE as usize + 1), 0o600);
        let e = read_checked(&d.join("s"), &me()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::TooLarge { .. },
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn binary_file_is_refused_as_malformed() {
        let d = tmpdir();
        std::fs::write(d.join("s"), [0xff, 0xfe, 0, 1]).unwrap();
        std::fs::set_permissions(d.join("s"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read_checked(&d.join("s"), &me()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::Malformed(_),
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn group_writable_directory_is_refused() {
        let d = tmpdir();
        write(&d.join("s"), "x", 0o600);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = read_checked(&d.join("s"), &me()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::GroupOrOtherWritable { .. },
                    ..
                }
            ),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tmpdir();
        let dir = Dir::open(&d, &me()).unwrap().unwrap();
        dir.write_atomic("st", b"one", 0o600, true).unwrap();
        dir.write_atomic("st", b"two", 0o600, false).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("st")).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("st")]);
        assert_eq!(std::fs::metadata(d.join("st")).unwrap().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_planted_temp_file_is_replaced_not_written_through() {
        let d = tmpdir();
        write(&d.join("victim"), "precious", 0o600);
        std::fs::hard_link(d.join("victim"), d.join(".st.tmp")).unwrap();
        let dir = Dir::open(&d, &me()).unwrap().unwrap();
        dir.write_atomic("st", b"new", 0o600, false).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("victim")).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(d.join("st")).unwrap(), "new");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn symlinked_directory_is_refused_where_root_writes() {
        let d = tmpdir();
        std::fs::DirBuilder::new().mode(0o700).create(d.join("real")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        let e = Dir::open_or_create(&d.join("link"), &me(), 0o700).unwrap_err();
        assert!(
            matches!(
                e,
                Error::File {
                    problem: FileProblem::Symlink,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            Dir::open(&d.join("link"), &me()).unwrap().is_some(),
            "readers may follow it"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn lock_file_symlink_is_refused() {
        let d = tmpdir();
        std::os::unix::fs::symlink("/etc/passwd", d.join("l")).unwrap();
        let dir = Dir::open(&d, &me()).unwrap().unwrap();
        assert!(matches!(
            dir.open_lock_file("l", &me()),
            Err(Error::File {
                problem: FileProblem::Symlink,
                ..
            })
        ));
        std::fs::remove_dir_all(d).unwrap();
    }
}
