//! The command line's contract as data: each case in tests/cmd/pam-totp/ is one command, its
//! stdin, and the stdout, stderr and exit status it must give (tests/cmd/README.md). trycmd
//! runs them; this file only builds what they name: the accounts below with their home
//! directories filled from tests/cmd/accounts/, and the file modes git does not keep.
//!
//! Cases run as root in tests/cmd/fixture (read-only) or, with `fs.sandbox = true`, in a
//! private copy of it; a case for another caller runs `runuser -u USER -- pam-totp ...`
//! (pam-totp is found through PATH, which points at this build first).

use pam_totp_tests::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The accounts the cases name, with their supplementary groups. Their names are fixed (a
/// case is a literal command line), so a lock keeps two runs of this test apart.
const ACCOUNTS: &[(&str, &[&str])] = &[
    // Enrolled: "phone" (TOTP) and "desk token" (HOTP), 10 backup codes; locked out in
    // fixture/state. Read by many cases, changed by none (except in a sandbox's state).
    ("ptc-alice", &[]),
    // Not enrolled; the caller of the cases run by a user; a ~/.google_authenticator with a
    // bad line.
    ("ptc-bob", &[]),
    // Enrolled with one authenticator; a member of the protected group ptc-admins.
    ("ptc-carol", &["ptc-admins"]),
    // A secret file with a misspelt key.
    ("ptc-broken", &[]),
    // One account for each case that changes a home directory (cases run in parallel).
    ("ptc-enroll", &[]),
    ("ptc-reset", &[]),
    ("ptc-rename", &[]),
    ("ptc-remove", &[]),
    ("ptc-regen", &[]),
    ("ptc-ga", &[]),
    ("ptc-tokens", &[]),
    ("ptc-full", &[]),
    ("ptc-closed", &[]),
];

const GROUPS: &[&str] = &["ptc-admins"];

fn cmd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cmd")
}

/// Removed on drop, in field order: the users before the group they are in, then the lock.
struct World {
    _users: Vec<TestUser>,
    _groups: Vec<TestGroup>,
    _lock: std::fs::File,
}

impl World {
    fn build() -> World {
        let lock = std::fs::File::create(std::env::temp_dir().join("pam-totp-cli-contract.lock")).unwrap();
        lock.lock().unwrap();
        let groups = GROUPS.iter().map(|g| TestGroup::create_named(g)).collect();
        let users = ACCOUNTS
            .iter()
            .map(|(name, groups)| {
                let mut extra = Vec::new();
                if !groups.is_empty() {
                    extra = vec!["--groups".to_string(), groups.join(",")];
                }
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                let u = TestUser::create_named(name, &extra);
                let home = cmd_dir().join("accounts").join(name);
                if home.exists() {
                    fill_home(&home, &u.home, &u);
                }
                u
            })
            .collect();
        World {
            _users: users,
            _groups: groups,
            _lock: lock,
        }
    }
}

/// Copies `from` into `to`, owned by the user, directories 0700 and files 0600 (as
/// `pam-totp enroll` leaves them).
fn fill_home(from: &Path, to: &Path, u: &TestUser) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let mode = if entry.file_type().unwrap().is_dir() {
            let _ = std::fs::create_dir(&target);
            fill_home(&entry.path(), &target, u);
            0o700
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            0o600
        };
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&target, Some(u.uid), Some(u.gid)).unwrap();
    }
}

/// Git keeps no modes: what pam-totp wants private (the state directory, its files, a
/// pre-shared key `*.psk`) is made so in the fixture, and so in every sandbox copied from it.
fn private_fixture_files(fixture: &Path) {
    let private = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    private(&fixture.join("state"), 0o700);
    for dir in [fixture.join("state"), fixture.to_path_buf()] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() && p.extension().is_some_and(|e| e == "state" || e == "psk") {
                private(&p, 0o600);
            }
        }
    }
}

/// Every file under `dir` with its length and modification time: the fixture must come out
/// of the run as it went in (a case that writes needs `fs.sandbox = true`).
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let md = entry.metadata().unwrap();
        if md.is_dir() {
            out.extend(listing(&entry.path()));
        }
        out.push((entry.path(), md.len(), md.modified().unwrap()));
    }
    out.sort();
    out
}

fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("runuser (util-linux) is needed")
}

#[test]
fn cli_contract() {
    // The suite may run under sudo; the cases that want a sudo caller say so themselves.
    for var in ["SUDO_UID", "SUDO_USER", "SUDO_GID", "SUDO_COMMAND", "CLICOLOR_FORCE"] {
        std::env::remove_var(var);
    }
    let cli = cli_path();
    let fixture = cmd_dir().join("fixture");
    let _world = World::build();
    private_fixture_files(&fixture);
    let before = listing(&fixture);
    let path = format!(
        "{}:{}",
        cli.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The cases run by a user find pam-totp through PATH and read the fixture's files.
    let mut as_user = std::process::Command::new(runuser());
    as_user
        .env("PATH", &path)
        .args(["-u", "ptc-bob", "--", "pam-totp", "--config"]);
    as_user
        .arg(fixture.join("pam_totp.conf"))
        .arg("--state-dir")
        .arg(fixture.join("state"));
    as_user.arg("status");
    let (rc, _, err) = output(as_user);
    assert_eq!(
        rc,
        0,
        "as ptc-bob: {err}: runuser must keep PATH (no ALWAYS_SET_PATH in /etc/login.defs) and {} be readable by other users",
        fixture.display()
    );
    trycmd::TestCases::new()
        .register_bin("pam-totp", cli.clone())
        .register_bin("runuser", runuser())
        .register_bin("sh", PathBuf::from("/bin/sh"))
        .env("PATH", path)
        .timeout(std::time::Duration::from_secs(30))
        .case(cmd_dir().join("pam-totp/*.toml"))
        .run();

    assert_eq!(
        listing(&fixture),
        before,
        "a case changed tests/cmd/fixture: give it `fs.sandbox = true`"
    );
}
