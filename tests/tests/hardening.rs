//! The classes of bugs other TOTP modules have had, each tried against ours: racing logins,
//! crashes mid-write, a full or read-only disk, hostile files and hostile input.

use pam_totp_tests::*;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use pam_totp_core::state::store::{FileStore, StateStore};
use pam_totp_core::state::State;

/// Runs `answers.len()` logins at the same instant, one process each.
fn race(f: &Fixture, user: &str, answers: &[String]) -> Vec<i32> {
    race_runs(f, user, answers).into_iter().map(|r| r.rc).collect()
}

fn race_runs(f: &Fixture, user: &str, answers: &[String]) -> Vec<PamRun> {
    race_logins(&[f], user, answers, std::time::Duration::from_millis(800))
}

fn state_of(f: &Fixture, user: &str) -> State {
    FileStore::open(&f.state_dir(), false).unwrap().peek(user).unwrap()
}

#[test]
fn one_code_raced_by_16_and_by_64_processes_lets_exactly_one_in() {
    for n in [16, 64] {
        let (f, u, key) = Fixture::with_enrolled_user("");
        let code = code_now(&key);
        let results = race(&f, &u.name, &vec![code; n]);
        assert_one_let_in_the_rest_refused(&results);
    }
}

#[test]
fn one_backup_code_raced_by_16_and_by_64_processes_lets_exactly_one_in() {
    for n in [16, 64] {
        let f = Fixture::new();
        f.simple("svc", "max_failures=1000");
        let u = TestUser::create();
        let j = f.enroll_json(&u.name, &[]);
        let code = j["backup_codes"][0].as_str().unwrap().to_string();
        let results = race(&f, &u.name, &vec![code; n]);
        assert_eq!(
            results.iter().filter(|&&r| r == PAM_SUCCESS).count(),
            1,
            "{n}: {results:?}"
        );
        assert_eq!(state_of(&f, &u.name).used_backup.len(), 1);
    }
}

fn distinct_wrong_codes(key: &str, n: usize) -> Vec<String> {
    let t = now();
    let near: Vec<String> = (0..7).map(|i| oathtool(key, t + i * 30 - 90, "sha1", 6)).collect();
    (0..)
        .map(|i: u32| format!("{:06}", (i * 7919 + 104_729) % 1_000_000))
        .filter(|c| !near.contains(c))
        .take(n)
        .collect()
}

#[test]
fn sixty_four_racing_wrong_codes_are_all_counted_and_lock_the_user() {
    let (f, u, key) = Fixture::with_enrolled_user("max_failures=1000");
    let runs = race_runs(&f, &u.name, &distinct_wrong_codes(&key, 64));
    for r in &runs {
        assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
        assert!(
            r.logged(&["refused: wrong code"]),
            "every attempt is decided and counted: {:?}",
            r.logs
        );
    }
    assert_eq!(state_of(&f, &u.name).failures, 64, "no lost update");

    let (f, u, key) = Fixture::with_enrolled_user("");
    race(&f, &u.name, &distinct_wrong_codes(&key, 64));
    let st = state_of(&f, &u.name);
    assert!(st.locked_until > now(), "default max_failures=6 locks: {st:?}");
    assert_eq!(f.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_AUTH_ERR, "locked");
}

#[test]
fn killed_mid_update_the_state_always_parses_and_keeps_every_committed_step() {
    let f = Fixture::new();
    let torture = harness_path().with_file_name("state-torture");
    let mut committed: u64 = 0;
    let mut mid_write_kills = 0;
    for i in 0..300u64 {
        let mut child = Command::new(&torture)
            .args([f.state_dir().to_str().unwrap(), "victim", &(committed + 1).to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).last());
        // Kill after a pseudo-random delay, usually in the middle of some write; every tenth
        // run lives longer, so the writer makes progress even on a slow machine.
        let delay = if i % 10 == 9 { 30_000 } else { (i * 7919) % 3000 };
        std::thread::sleep(std::time::Duration::from_micros(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        if let Some(last) = reader.join().unwrap() {
            committed = last.parse().unwrap();
        }
        let store = FileStore::open(&f.state_dir(), false).unwrap();
        let st = store
            .peek("victim")
            .unwrap_or_else(|e| panic!("iteration {i}: state does not parse: {e}"));
        // The replay guard of state-torture's authenticator: the step after the last spent.
        let on_disk = st
            .device(&st.device_id(b"state-torture-device-key"))
            .map_or(0, |d| d.not_before / 30 - 1);
        assert!(
            on_disk >= committed,
            "iteration {i}: step {committed} was committed but the state has {on_disk}"
        );
        if on_disk > committed {
            mid_write_kills += 1; // written, killed before it could print: fine
        }
        committed = committed.max(on_disk);
        // The lock is never left held by the dead process.
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = f.state_dir();
        std::thread::spawn(move || {
            let s = FileStore::open(&dir, false).unwrap();
            tx.send(s.update("victim", |_| ()).is_ok()).unwrap();
        });
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(5)),
            Ok(true),
            "iteration {i}: lock stuck"
        );
    }
    assert!(committed > 50, "the writer made progress: {committed}");
    eprintln!("{committed} steps committed, {mid_write_kills} kills between write and report");
}

#[test]
fn killed_enrollment_leaves_the_old_or_the_new_secret_never_a_broken_one() {
    let f = Fixture::new();
    let u = TestUser::create();
    // How long one enrollment takes here: kills are spread over 1.5 times that, so some land
    // mid-write and some runs complete, on a fast machine or a slow one.
    let t = std::time::Instant::now();
    let (rc, _, err) = output(f.cli(&["enroll", "--user", &u.name, "--no-confirm", "--force", "--qr", "none"]));
    assert_eq!(rc, 0, "{err}");
    let span = (t.elapsed().as_micros() as u64 * 3 / 2).max(1000);
    let mut saw = (0, 0); // (complete runs, killed runs)
    for i in 0..200u64 {
        let mut child = f
            .cli(&["enroll", "--user", &u.name, "--no-confirm", "--force", "--qr", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros((i * 104_729) % span));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            saw.0 += 1;
        } else {
            saw.1 += 1;
        }
        if let Ok(text) = std::fs::read_to_string(u.secret_path()) {
            pam_totp_core::files::secret::SecretFile::parse(&text)
                .unwrap_or_else(|e| panic!("iteration {i}: a killed enrollment left a broken file: {e:?}"));
            let md = std::fs::metadata(u.secret_path()).unwrap();
            assert_eq!(md.permissions().mode() & 0o777, 0o600);
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(u.secret_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "secret.toml")
        .collect();
    assert!(leftovers.len() <= 2, "temp files pile up: {leftovers:?}");
    assert!(saw.0 > 0 && saw.1 > 0, "both outcomes happened: {saw:?}");
}

/// Runs the harness with the state directory on a full 16 KiB tmpfs, or read-only.
fn harness_with_state(f: &Fixture, user: &str, answer: &str, how: &str) -> PamRun {
    let state = f.state_dir();
    let prep = match how {
        "full" => "mount -t tmpfs -o size=16k,mode=0700 tmpfs \"$STATE\"; dd if=/dev/zero of=\"$STATE/fill\" bs=4096 count=64 2>/dev/null || true",
        _ => "mount --bind \"$STATE\" \"$STATE\"; mount -o remount,ro,bind \"$STATE\"",
    };
    let script = format!("set -e; mount --make-rprivate /; {prep}; exec \"$@\"");
    let out = Command::new("unshare")
        .args(["--mount", "--", "sh", "-c", &script, "sh"])
        .arg(harness_path())
        .arg(f.confdir())
        .args(["svc", user, answer])
        .env("STATE", &state)
        .output()
        .unwrap();
    PamRun::parse(&out)
}

#[test]
fn full_disk_or_read_only_state_refuses_a_right_code_and_keeps_the_old_state() {
    for how in ["full", "read-only"] {
        let (f, u, key) = Fixture::with_enrolled_user("");
        // An earlier login recorded a step.
        clear_of_a_step_boundary();
        assert_eq!(
            f.auth("svc", &u.name, &[&oathtool(&key, now() - 30, "sha1", 6)]).rc,
            PAM_SUCCESS
        );
        let before = state_of(&f, &u.name);
        let r = harness_with_state(&f, &u.name, &code_now(&key), how);
        assert_eq!(r.rc, PAM_AUTH_ERR, "{how}: {r:?}");
        assert!(
            r.logged(&["refused: could not record the attempt"]),
            "{how}: {:?}",
            r.logs
        );
        assert_eq!(state_of(&f, &u.name), before, "{how}: the state on disk is untouched");
    }
}

/// Format 3 writes an existing state file in place, over blocks it already owns: a full
/// disk no longer stands between a user and a login, and the spend still holds. The state
/// file is copied onto a 16 KiB tmpfs that is then filled to the last byte; two logins run
/// there: the right code is accepted, the same code again is refused (its spend was kept).
#[test]
fn on_a_full_disk_an_existing_state_still_records_a_spend() {
    let (f, u, key) = Fixture::with_enrolled_user("");
    clear_of_a_step_boundary();
    assert_eq!(
        f.auth("svc", &u.name, &[&oathtool(&key, now() - 30, "sha1", 6)]).rc,
        PAM_SUCCESS
    );
    let copy = f.root.join("state-copy");
    run("cp", &["-a", f.state_dir().to_str().unwrap(), copy.to_str().unwrap()]);
    let code = code_now(&key);
    let first = f.root.join("first-run");
    let script = concat!(
        "set -e; mount --make-rprivate /; mount -t tmpfs -o size=64k,mode=0700 tmpfs \"$STATE\"; ",
        "cp -a \"$COPY\"/. \"$STATE\"/; ",
        "dd if=/dev/zero of=\"$STATE/fill\" bs=4096 count=64 2>/dev/null || true; ",
        "\"$@\" > \"$FIRST\"; exec \"$@\""
    );
    let out = Command::new("unshare")
        .args(["--mount", "--", "sh", "-c", script, "sh"])
        .arg(harness_path())
        .arg(f.confdir())
        .args(["svc", &u.name, &code])
        .env("STATE", f.state_dir())
        .env("COPY", &copy)
        .env("FIRST", &first)
        .output()
        .unwrap();
    let again = PamRun::parse(&out);
    let first = PamRun::parse(&std::process::Output {
        stdout: std::fs::read(&first).unwrap(),
        ..out
    });
    assert_eq!(first.rc, PAM_SUCCESS, "full disk, existing state: {first:?}");
    assert_eq!(
        again.rc, PAM_AUTH_ERR,
        "the spend was recorded on the full disk: {again:?}"
    );
}

/// (what, how to break it, what the log must say)
type Case<T> = (&'static str, Box<dyn Fn(&T)>, &'static str);

fn refused_quickly(f: &Fixture, u: &TestUser, key: &str, what: &str, want_log: &str) {
    let start = std::time::Instant::now();
    let r = f.auth("svc", &u.name, &[&code_now(key)]);
    assert!(start.elapsed().as_secs() < 10, "{what}: hung for {:?}", start.elapsed());
    assert_eq!(r.rc, PAM_AUTH_ERR, "{what}: {r:?}");
    assert!(r.logged(&[want_log]), "{what}: {:?}", r.logs);
}

#[test]
fn more_hostile_secret_files() {
    let cases: Vec<Case<TestUser>> = vec![
        (
            "device",
            Box::new(|u: &TestUser| {
                std::fs::remove_file(u.secret_path()).unwrap();
                run(
                    "mknod",
                    &["-m", "600", u.secret_path().to_str().unwrap(), "c", "1", "3"],
                );
                std::os::unix::fs::chown(u.secret_path(), Some(u.uid), None).unwrap();
            }),
            "character device",
        ),
        (
            "5 MB of noise",
            Box::new(|u: &TestUser| {
                let noise: Vec<u8> = (0..5_000_000u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                    .collect();
                std::fs::write(u.secret_path(), noise).unwrap();
            }),
            "larger than the 65536-byte limit",
        ),
        (
            "NUL bytes",
            Box::new(|u: &TestUser| u.write_secret("version = 1\0\nsecret = \"GEZDGNBVGY3TQOJQ\"\n")),
            "malformed",
        ),
        (
            "huge numbers",
            Box::new(|u: &TestUser| {
                u.write_secret("version = 1\nsecret = \"GEZDGNBVGY3TQOJQ\"\ndigits = 99999999999999999999999\n")
            }),
            "malformed",
        ),
        (
            "version overflow",
            Box::new(|u: &TestUser| u.write_secret("version = -9223372036854775808\nsecret = \"GEZDGNBVGY3TQOJQ\"\n")),
            "format version",
        ),
        (
            "directory owned by someone else",
            Box::new(|u: &TestUser| std::os::unix::fs::chown(u.secret_dir(), Some(65534), None).unwrap()),
            "owned by uid 65534",
        ),
    ];
    for (what, prepare, want) in cases {
        let (f, u, key) = Fixture::with_enrolled_user("nullok");
        prepare(&u);
        refused_quickly(&f, &u, &key, what, want);
    }
}

#[test]
fn hostile_state_files_are_refused_without_hanging() {
    let cases: Vec<Case<std::path::Path>> = vec![
        (
            "symlink",
            Box::new(|p: &std::path::Path| std::os::unix::fs::symlink("/etc/shadow", p).unwrap()),
            "symbolic link",
        ),
        (
            "fifo",
            Box::new(|p: &std::path::Path| {
                run("mkfifo", &["-m", "600", p.to_str().unwrap()])
                    .status
                    .success()
                    .then_some(())
                    .unwrap()
            }),
            "FIFO",
        ),
        (
            "directory",
            Box::new(|p: &std::path::Path| std::fs::create_dir(p).unwrap()),
            "directory",
        ),
        (
            "hard link",
            Box::new(|p: &std::path::Path| {
                let other = p.with_file_name("other");
                std::fs::write(&other, "version = 1\n").unwrap();
                std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::fs::hard_link(&other, p).unwrap();
            }),
            "hard links",
        ),
        (
            "readable by others",
            Box::new(|p: &std::path::Path| {
                std::fs::write(p, "version = 1\n").unwrap();
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
            }),
            "accessible by group or others",
        ),
        (
            "owned by a user",
            Box::new(|p: &std::path::Path| {
                std::fs::write(p, "version = 1\n").unwrap();
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::os::unix::fs::chown(p, Some(65534), None).unwrap();
            }),
            "owned by uid 65534",
        ),
        (
            "garbage",
            Box::new(|p: &std::path::Path| {
                std::fs::write(p, "\u{1}\u{2}garbage").unwrap();
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }),
            "malformed",
        ),
    ];
    for (what, prepare, want) in cases {
        let (f, u, key) = Fixture::with_enrolled_user("");
        std::fs::create_dir(f.state_dir()).unwrap();
        std::fs::set_permissions(f.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        prepare(&f.state_dir().join(format!("{}.state", u.name)));
        refused_quickly(&f, &u, &key, what, want);
    }
}

#[test]
fn hostile_answers_are_refused_and_spaces_around_a_code_are_allowed() {
    let (f, u, key) = Fixture::with_enrolled_user("max_failures=1000");
    let long = "1".repeat(10_000);
    for answer in [
        "",
        "abcdef",
        long.as_str(),
        "123\n456",
        "-12345",
        "12345",
        "1234567",
        "１２３４５６",
    ] {
        let r = f.auth("svc", &u.name, &[answer]);
        assert_eq!(r.rc, PAM_AUTH_ERR, "{answer:?}: {r:?}");
    }
    // Documented: surrounding and inner spaces are ignored (apps show "123 456").
    let code = code_now(&key);
    assert_eq!(
        f.auth("svc", &u.name, &[&format!("  {} {}  ", &code[..3], &code[3..])])
            .rc,
        PAM_SUCCESS
    );
}

#[test]
fn hostile_user_names_are_refused() {
    let f = Fixture::new();
    f.simple("svc", "nullok");
    for user in [
        "a/b",
        "..",
        "../../etc/passwd",
        "%u",
        "bad\nname",
        "x y",
        &"a".repeat(300),
    ] {
        let r = f.auth("svc", user, &["123456"]);
        assert_eq!(r.rc, PAM_AUTH_ERR, "{user:?}: {r:?}");
        assert!(r.logs.iter().all(|l| !l.contains('\n')), "{user:?}");
    }
    assert!(
        !f.state_dir().exists() || std::fs::read_dir(f.state_dir()).unwrap().count() == 0,
        "no state for bogus users"
    );
}
