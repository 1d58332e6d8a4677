//! Backup codes written to a file (`enroll --backup-codes-file PATH`,
//! `backup-codes --regenerate --output PATH`): a page fit to print — host, user, date, the
//! codes in two columns, how to use them.
//!
//! The file is always new: created with O_CREAT|O_EXCL|O_NOFOLLOW, so nothing already at
//! PATH — a file, or a symbolic link pointing anywhere — is ever written or followed. Mode
//! 0600. It is written and fsync'd *before* the secret file changes, and removed again if
//! that change fails: the codes in a file are the ones that work, or there is no file.
//!
//! Whose file: root acting for another user creates it with that user's file-system
//! identity (setfsuid/setfsgid, as the secret file in their home is written), so it is owned
//! by them and can only be created where they could create it themselves; root never
//! creates a file through a directory the user controls. A user for themselves, and root
//! for root, write as themselves.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pam_totp_core::account::Account;
use pam_totp_core::files::fs::with_fs_identity;
use zeroize::Zeroizing;

use crate::context::{describe, format_time, safe, safe_path, Ctx};

/// A backup-code file that has been written; [`Written::undo`] removes it.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    file: File,
    as_user: Option<(u32, u32)>,
}

/// With whose file-system identity the file of `account` is created: the account's, when
/// root acts for someone else.
fn identity(ctx: &Ctx, account: &Account) -> Option<(u32, u32)> {
    (ctx.root && account.uid != 0).then_some((account.uid, account.gid))
}

fn as_identity<T>(id: Option<(u32, u32)>, path: &Path, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match id {
        Some((uid, gid)) => with_fs_identity(uid, gid, path, f).map_err(|e| e.to_string())?,
        None => f(),
    }
}

/// The absolute form of a path given on the command line.
pub fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {}", safe_path(path), describe(&e)))
}

fn create(path: &Path, whose: &str) -> Result<File, String> {
    use pam_totp_core::error::{Error, FileProblem};
    pam_totp_core::files::fs::create_private(path).map_err(|e| match e {
        Error::File {
            problem: FileProblem::Symlink,
            ..
        } => format!(
            "{} is a symbolic link; backup codes are never written through one: give the name of a new file",
            safe_path(path)
        ),
        Error::File {
            problem: FileProblem::AlreadyExists,
            ..
        } => format!(
            "{} already exists; backup codes are only written to a new file, never over one: give another name",
            safe_path(path)
        ),
        Error::File {
            problem: FileProblem::NotRegular(_),
            ..
        } => format!("{} is not a regular file", safe_path(path)),
        Error::File {
            problem: FileProblem::Io(why),
            ..
        } => format!("cannot create {}{whose}: {why}", safe_path(path)),
        e => format!("cannot create {}{whose}: {e}", safe_path(path)),
    })
}

fn whose(id: Option<(u32, u32)>, account: &Account) -> String {
    match id {
        Some(_) => format!(
            " as {} (the file is created with their identity, so it is theirs: choose a place they can write, such as their home)",
            safe(&account.name)
        ),
        None => String::new(),
    }
}

/// Before anything is shown or saved: can the file be created? Creates it and removes it
/// again at once; the real file is created by [`write`].
pub fn check(ctx: &Ctx, account: &Account, path: &Path) -> Result<(), String> {
    let id = identity(ctx, account);
    as_identity(id, path, || {
        let f = create(path, &whose(id, account))?;
        drop(f);
        std::fs::remove_file(path).map_err(|e| format!("{}: {}", safe_path(path), describe(&e)))
    })
}

/// Creates `path` (a new file, 0600, the user's) holding the printable page of `codes`,
/// and fsyncs it and its directory. Nothing else has changed yet: on a later failure the
/// caller removes it with [`Written::undo`].
pub fn write(
    ctx: &Ctx,
    account: &Account,
    path: &Path,
    codes: &[Zeroizing<String>],
    now: u64,
) -> Result<Written, String> {
    let id = identity(ctx, account);
    let text = page(&pam_totp_core::otp::enroll::host_name(), &account.name, now, codes);
    as_identity(id, path, || {
        let mut file = create(path, &whose(id, account))?;
        let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let w = Written {
                path: path.to_path_buf(),
                file,
                as_user: None,
            };
            w.remove_same_file();
            return Err(format!("cannot write {}: {}", safe_path(path), describe(&e)));
        }
        if let Some(dir) = path.parent() {
            // Best effort: the file's name is durable too.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(Written {
            path: path.to_path_buf(),
            file,
            as_user: id,
        })
    })
}

impl Written {
    /// The codes in the file did not become valid: empties the file and removes it, if the
    /// name still refers to it.
    pub fn undo(self) {
        let id = self.as_user;
        let path = self.path.clone();
        let _ = as_identity(id, &path, || {
            self.remove_same_file();
            Ok(())
        });
    }

    fn remove_same_file(&self) {
        let _ = self.file.set_len(0);
        let (Ok(mine), Ok(there)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path)) else {
            return;
        };
        if mine.dev() == there.dev() && mine.ino() == there.ino() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The page: who and when, the codes in two numbered columns with a box to tick, and how
/// to use them. Names are escaped as on a terminal (the file will be shown on one).
pub fn page(host: &str, user: &str, now: u64, codes: &[Zeroizing<String>]) -> Zeroizing<String> {
    // Sized up front, and the codes pushed as they are: no reallocation or temporary string
    // leaves a copy of a code behind.
    let mut out = Zeroizing::new(String::with_capacity(
        2048 + 16 * (host.len() + user.len()) + codes.iter().map(|c| c.len() + 32).sum::<usize>(),
    ));
    out.push_str("Backup codes for two-factor sign-in (pam_totp)\n");
    out.push_str("===============================================\n\n");
    out.push_str(&format!("Host:     {}\n", safe(host)));
    out.push_str(&format!("User:     {}\n", safe(user)));
    out.push_str(&format!("Created:  {}\n\n", format_time(now)));
    let half = codes.len().div_ceil(2);
    for i in 0..half {
        out.push_str(&format!("    [ ] {:>2}. ", i + 1));
        out.push_str(codes[i].as_str());
        if let Some(c) = codes.get(i + half) {
            out.push_str(&format!("        [ ] {:>2}. ", i + half + 1));
            out.push_str(c.as_str());
        }
        out.push('\n');
    }
    out.push_str(
        "\nHow to use them\n\
         - Use a code when you cannot use your authenticator app (a lost, broken or flat phone).\n\
         - At the \"Verification code:\" prompt, type one of these codes instead of the code from\n  \
           the app, as printed: xxxxx-xxxxx (upper or lower case).\n\
         - Each code works once. Tick it off when you have used it.\n\
         - When few are left, or if someone else may have seen this page, make a new set:\n  \
           pam-totp backup-codes --regenerate   (all the codes on this page then stop working)\n\
         - Keep this page somewhere safe, away from your phone. Once it is printed or stored\n  \
           safely, delete the file.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_host_user_date_codes_in_two_columns_and_instructions() {
        let codes: Vec<Zeroizing<String>> = (0..10).map(|i| Zeroizing::new(format!("code{i}-abcde"))).collect();
        let p = page("web1", "bob", 1_795_392_000, &codes);
        assert!(p.contains("Host:     web1\n"), "{}", p.as_str());
        assert!(p.contains("User:     bob\n"));
        assert!(p.contains("Created:  2026-11-23 00:00 UTC\n"));
        assert!(
            p.contains("[ ]  1. code0-abcde        [ ]  6. code5-abcde\n"),
            "{}",
            p.as_str()
        );
        assert!(p.contains("[ ]  5. code4-abcde        [ ] 10. code9-abcde\n"));
        for c in &codes {
            assert_eq!(p.matches(c.as_str()).count(), 1);
        }
        assert!(p.contains("Each code works once"));
        assert!(p.contains("pam-totp backup-codes --regenerate"));
        let odd = page("h", "u\u{1b}[2J", 0, &codes[..3]);
        assert!(odd.contains("[ ]  2. code1-abcde\n"), "{}", odd.as_str());
        assert!(!odd.contains('\u{1b}'), "escaped");
    }
}
