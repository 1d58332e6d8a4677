//! Helpers for the integration tests: temporary PAM service directories, real test users
//! (created with useradd, removed on drop), secret files, codes from oathtool, and a runner
//! for the `pam-harness` binary. Tests must run as root (they create users and read
//! /etc/shadow through pam_unix); `.ci/run` does.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The module under test: $PAM_TOTP_MODULE, else the workspace's debug build.
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PAM_TOTP_MODULE") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/libpam_totp.so");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first (.ci/run does)",
        p.display()
    );
    p.canonicalize().unwrap()
}

/// The pam-harness binary built next to the running test executable.
pub fn harness_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/pam-harness
    let p = exe.parent().and_then(Path::parent).unwrap().join("pam-harness");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// The pam-totp binary built next to the running test executable.
pub fn cli_path() -> PathBuf {
    built_next_to_the_harness("pam-totp")
}

/// The workspace's binary `name`, built next to the pam-harness binary.
pub fn built_next_to_the_harness(name: &str) -> PathBuf {
    let p = harness_path().with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Runs a command and returns (exit code, stdout, stderr).
pub fn output(mut c: Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn random_key_b32() -> String {
    let mut b = [0u8; 20];
    getrandom::getrandom(&mut b).unwrap();
    let key = pam_totp_core::otp::encode_base32(&b).to_string();
    register_secret(&key);
    key
}

/// Every secret and backup code the tests create; no captured syslog line may contain one.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn register_secret(s: &str) {
    let mut all = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    all.push(s.to_string());
    all.push(s.to_lowercase());
    if s.contains('-') {
        all.push(s.replace('-', ""));
    }
}

/// Registers the secret and backup codes of a `pam-totp enroll --json` result.
pub fn register_enrollment(j: &serde_json::Value) {
    if let Some(s) = j["secret"].as_str() {
        register_secret(s);
    }
    for c in j["backup_codes"].as_array().into_iter().flatten() {
        if let Some(c) = c.as_str() {
            register_secret(c);
        }
    }
}

/// Panics if a log line contains a registered secret or one of `answers` (6+ characters).
pub fn assert_no_secrets_in(logs: &[String], answers: &[&str]) {
    let all = SECRETS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for line in logs {
        for s in all
            .iter()
            .map(String::as_str)
            .chain(answers.iter().copied())
            .filter(|s| s.len() >= 6)
        {
            assert!(!line.contains(s), "secret material reached syslog: {line}");
        }
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An independent TOTP generator: `oathtool --totp` at unix time `t`.
pub fn oathtool(key_b32: &str, t: u64, algorithm: &str, digits: u32) -> String {
    let totp = format!("--totp={algorithm}");
    let digits = format!("--digits={digits}");
    let when = format!("--now=@{t}");
    let out = run("oathtool", &[&totp, "--base32", &digits, &when, key_b32]);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An independent HOTP generator: `oathtool --hotp` at `counter`, with `digits` digits.
pub fn hotp(key_b32: &str, counter: u64, digits: u32) -> String {
    let digits = format!("--digits={digits}");
    let counter = format!("--counter={counter}");
    let out = run("oathtool", &["--hotp", "--base32", &digits, &counter, key_b32]);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Waits, if needed, until the current 30-second step has at least 4 s left: a test that
/// uses the previous step's code and then the current one must not have the step turn in
/// between (the previous step's code would then be two steps back, out of the window).
pub fn clear_of_a_step_boundary() {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = since.as_secs_f64() % 30.0;
    if into > 26.0 {
        std::thread::sleep(std::time::Duration::from_secs_f64(30.2 - into));
    }
}

pub fn code_now(key_b32: &str) -> String {
    oathtool(key_b32, now(), "sha1", 6)
}

/// The current code, taken clear of a step boundary: with the default window of one step
/// it stays valid for at least the next 30 s (for tests that hold it across a slow action).
pub fn fresh_code(key_b32: &str) -> String {
    clear_of_a_step_boundary();
    code_now(key_b32)
}

/// A 6-digit answer that is not the code of any step near now.
pub fn wrong_code(key_b32: &str) -> String {
    let t = now();
    let near: Vec<String> = (0..7).map(|i| oathtool(key_b32, t + i * 30 - 90, "sha1", 6)).collect();
    (0..)
        .map(|i: u32| format!("{:06}", (i * 7919 + 13) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// A test user with a fresh key, enrolled: the user and the key.
pub fn enrolled_user() -> (TestUser, String) {
    let u = TestUser::create();
    let key = random_key_b32();
    u.enroll(&key, "");
    (u, key)
}

/// Writes `user`'s version-1 secret file holding `key` into a central directory (see
/// [`Fixture::secrets_dir`]): `DIR/USER.toml`, root's, 0600.
pub fn write_central_secret(dir: &Path, user: &str, key: &str) {
    let p = dir.join(format!("{user}.toml"));
    std::fs::write(&p, format!("version = 1\nsecret = \"{key}\"\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

static USERDB: Mutex<()> = Mutex::new(());

/// `pam-totp migrate --all` looks at every account of the machine and moves (then removes)
/// the key files in their homes: run by one test, it would take the home files of the tests
/// running beside it in the same binary. Tests of a binary that runs it hold [`home_files`]
/// (together); the test that runs it holds [`all_homes`] (alone).
static HOMES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// See [`HOMES`]: held by a test whose users may keep key files in their homes.
pub fn home_files() -> std::sync::RwLockReadGuard<'static, ()> {
    HOMES.read().unwrap_or_else(|e| e.into_inner())
}

/// See [`HOMES`]: held by a test that runs `pam-totp migrate --all`.
pub fn all_homes() -> std::sync::RwLockWriteGuard<'static, ()> {
    HOMES.write().unwrap_or_else(|e| e.into_inner())
}

/// A real local user with a home directory, removed (with the home) on drop.
#[derive(Debug)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl TestUser {
    pub fn create() -> TestUser {
        TestUser::create_with(&[])
    }

    /// [`TestUser::create`] with more `useradd` arguments (`--gid GROUP`, `--groups GROUP`).
    pub fn create_with(extra: &[&str]) -> TestUser {
        TestUser::useradd(format!("ptt{}", random_hex(4)), extra, false)
    }

    /// A user with a fixed name (the CLI contract cases name theirs): one left behind by a
    /// run that was killed is removed first.
    pub fn create_named(name: &str, extra: &[&str]) -> TestUser {
        TestUser::useradd(name.to_string(), extra, true)
    }

    fn useradd(name: String, extra: &[&str], replace: bool) -> TestUser {
        {
            let _g = USERDB.lock().unwrap_or_else(|e| e.into_inner());
            if replace {
                let _ = Command::new("userdel").args(["--remove", &name]).output();
            }
            let mut args = vec!["--create-home", "--shell", "/bin/sh"];
            args.extend(extra);
            args.push(&name);
            run("useradd", &args);
        }
        let u = pam_totp_core::account::SystemAccounts;
        use pam_totp_core::account::Accounts;
        let a = u.lookup(&name).unwrap().unwrap();
        TestUser {
            name,
            uid: a.uid,
            gid: a.gid,
            home: a.home,
        }
    }

    pub fn set_password(&self, password: &str) {
        use std::io::Write;
        let _g = USERDB.lock().unwrap_or_else(|e| e.into_inner());
        let mut child = Command::new("chpasswd")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}:{password}\n", self.name).as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    pub fn secret_dir(&self) -> PathBuf {
        self.home.join(".config/pam-totp")
    }

    pub fn secret_path(&self) -> PathBuf {
        self.secret_dir().join("secret.toml")
    }

    /// Writes a secret file the way `pam-totp enroll` does: owned by the user, 0600, in
    /// 0700 directories.
    pub fn enroll(&self, key_b32: &str, extra: &str) {
        self.write_secret(&format!("version = 1\nsecret = \"{key_b32}\"\n{extra}"));
    }

    pub fn write_secret(&self, text: &str) {
        for d in [self.home.join(".config"), self.secret_dir()] {
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&d);
            std::os::unix::fs::chown(&d, Some(self.uid), Some(self.gid)).unwrap();
        }
        let p = self.secret_path();
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&p, Some(self.uid), Some(self.gid)).unwrap();
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _g = USERDB.lock().unwrap_or_else(|e| e.into_inner());
        // userdel refuses while a process of the user runs (a session still closing, a
        // sudo child): those are ended, and it is tried again.
        for attempt in 0..10 {
            let out = Command::new("userdel").args(["--remove", &self.name]).output();
            match out {
                Ok(o) if o.status.success() => return,
                Ok(o) if attempt == 9 => {
                    eprintln!("userdel {}: {}", self.name, String::from_utf8_lossy(&o.stderr).trim());
                }
                _ => {}
            }
            let _ = Command::new("pkill").args(["-KILL", "-u", &self.name]).output();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// A real local group, removed on drop. Declare it before the users put in it, so that
/// they are removed first (a primary group cannot be removed while its user exists).
#[derive(Debug)]
pub struct TestGroup {
    pub name: String,
}

impl TestGroup {
    pub fn create() -> TestGroup {
        let name = format!("pttg{}", random_hex(4));
        let _g = USERDB.lock().unwrap_or_else(|e| e.into_inner());
        run("groupadd", &[&name]);
        TestGroup { name }
    }

    /// A group with a fixed name; one left behind by a killed run is removed first.
    pub fn create_named(name: &str) -> TestGroup {
        let _g = USERDB.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("groupdel").arg(name).output();
        run("groupadd", &[name]);
        TestGroup { name: name.to_string() }
    }

    /// Adds `user` to the group as a supplementary member.
    pub fn add(&self, user: &str) {
        let _g = USERDB.lock().unwrap_or_else(|e| e.into_inner());
        run("usermod", &["--append", "--groups", &self.name, user]);
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _g = USERDB.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

/// A temporary PAM configuration directory (for pam_start_confdir), a state directory and
/// an empty pam_totp.conf, so the host's own files are never read or touched.
#[derive(Debug)]
pub struct Fixture {
    pub root: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let root = std::env::temp_dir().join(format!("pam-totp-it-{}", random_hex(6)));
        // 0755 and a 0644 config so the CLI can also run as the test user; the state
        // directory inside is created 0700 by the module.
        std::fs::DirBuilder::new().mode(0o755).create(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(root.join("pam.d"))
            .unwrap();
        std::fs::write(root.join("pam_totp.conf"), "").unwrap();
        std::fs::set_permissions(root.join("pam_totp.conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(root.join("pam.d/other"), "auth required pam_deny.so\n").unwrap();
        // libpam names a module after its file: link it as pam_totp.so, as installed.
        std::os::unix::fs::symlink(module_path(), root.join("pam_totp.so")).unwrap();
        Fixture { root }
    }

    /// A fixture whose `svc` is `auth required pam_totp.so ARGS` (see [`Fixture::simple`]), and
    /// an [`enrolled_user`]: (fixture, user, key).
    pub fn with_enrolled_user(args: &str) -> (Fixture, TestUser, String) {
        let f = Fixture::new();
        f.simple("svc", args);
        let (u, key) = enrolled_user();
        (f, u, key)
    }

    pub fn confdir(&self) -> PathBuf {
        self.root.join("pam.d")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// A new root-only (0700) directory `secrets` in the fixture: the central directory of a
    /// `secret=DIR/%u.toml` template.
    pub fn secrets_dir(&self) -> PathBuf {
        let dir = self.root.join("secrets");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    /// The module line's path and the arguments that isolate it in this fixture.
    pub fn module(&self, args: &str) -> String {
        format!(
            "{} config={} state_dir={} {args}",
            self.root.join("pam_totp.so").display(),
            self.root.join("pam_totp.conf").display(),
            self.state_dir().display()
        )
    }

    /// Writes a service whose auth stack is `lines` (`{module}` expands to `module(args)`).
    pub fn service(&self, name: &str, lines: &str) {
        std::fs::write(self.confdir().join(name), lines).unwrap();
    }

    /// The usual service: `auth required pam_totp.so ARGS`.
    pub fn simple(&self, name: &str, args: &str) {
        self.service(name, &format!("auth required {}\n", self.module(args)));
    }

    pub fn auth(&self, service: &str, user: &str, answers: &[&str]) -> PamRun {
        self.auth_with(service, user, answers, &[])
    }

    pub fn auth_with(&self, service: &str, user: &str, answers: &[&str], flags: &[&str]) -> PamRun {
        let out = self.harness(service, user, answers, flags).output().unwrap();
        let r = PamRun::parse(&out);
        assert_no_secrets_in(&r.logs, answers);
        r
    }

    /// `pam-totp --config <fixture conf> --state-dir <fixture state> ARGS`, run as root.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new(cli_path());
        // The suite may itself run under sudo; the CLI then refuses --config/--state-dir.
        c.env_remove("SUDO_UID");
        c.arg("--config")
            .arg(self.root.join("pam_totp.conf"))
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(args);
        c
    }

    /// `pam-totp enroll --user USER --json EXTRA` (as root), which must succeed: its JSON, whose
    /// secret and backup codes are registered.
    pub fn enroll_json(&self, user: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["enroll", "--user", user, "--json"];
        args.extend_from_slice(extra);
        let (rc, out, err) = output(self.cli(&args));
        assert_eq!(rc, 0, "{args:?}: {err}");
        let j = serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out}"));
        register_enrollment(&j);
        j
    }

    /// The same, run as `user` (through runuser).
    pub fn cli_as(&self, user: &str, args: &[&str]) -> Command {
        let mut c = Command::new("runuser");
        c.env_remove("SUDO_UID");
        c.args(["-u", user, "--"]).arg(cli_path());
        c.arg("--config")
            .arg(self.root.join("pam_totp.conf"))
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(args);
        c
    }

    pub fn harness(&self, service: &str, user: &str, answers: &[&str], flags: &[&str]) -> Command {
        let mut c = Command::new(harness_path());
        c.arg(self.confdir()).arg(service).arg(user).args(flags).args(answers);
        c
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub const PAM_SUCCESS: i32 = 0;
pub const PAM_SERVICE_ERR: i32 = 3;
pub const PAM_AUTH_ERR: i32 = 7;
pub const PAM_CONV_ERR: i32 = 19;

/// What one harness run showed.
#[derive(Debug)]
pub struct PamRun {
    pub rc: i32,
    pub prompts: Vec<String>,
    pub errors: Vec<String>,
    pub infos: Vec<String>,
    /// Lines the module sent to syslog during this run.
    pub logs: Vec<String>,
    pub stderr: String,
}

impl PamRun {
    pub fn parse(out: &Output) -> PamRun {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut r = PamRun {
            rc: -1,
            prompts: vec![],
            errors: vec![],
            infos: vec![],
            logs: vec![],
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        };
        for line in stdout.lines() {
            if let Some(t) = line.strip_prefix("PROMPT ") {
                r.prompts.push(t.into());
            } else if let Some(t) = line.strip_prefix("ERROR ") {
                r.errors.push(t.into());
            } else if let Some(t) = line.strip_prefix("INFO ") {
                r.infos.push(t.into());
            } else if let Some(t) = line.strip_prefix("LOG ") {
                r.logs.push(t.into());
            } else if let Some(t) = line.strip_prefix("RESULT ") {
                r.rc = t.trim().parse().unwrap_or(-2);
            }
        }
        assert_ne!(r.rc, -1, "harness printed no result: {stdout} {}", r.stderr);
        assert_no_secrets_in(&r.logs, &[]);
        r
    }

    /// Whether some log line contains all of `parts`.
    pub fn logged(&self, parts: &[&str]) -> bool {
        self.logs.iter().any(|l| parts.iter().all(|p| l.contains(p)))
    }
}

/// Logins that all begin at one instant, one process each (the harness's `--start-at`).
#[derive(Debug)]
pub struct Race {
    /// The instant they begin at.
    pub start: std::time::SystemTime,
    children: Vec<std::process::Child>,
}

impl Race {
    /// Starts one login to `svc` as `user` for each of `answers`, the i-th on
    /// `hosts[i % hosts.len()]`, all to begin `delay` from now.
    pub fn start(hosts: &[&Fixture], user: &str, answers: &[String], delay: std::time::Duration) -> Race {
        let start = std::time::SystemTime::now() + delay;
        let at = start
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            .to_string();
        let children = answers
            .iter()
            .enumerate()
            .map(|(i, a)| {
                hosts[i % hosts.len()]
                    .harness("svc", user, &[a], &["--start-at", &at])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        Race { start, children }
    }

    /// Waits for every login: their results, in the order they were started.
    pub fn results(self) -> Vec<PamRun> {
        self.children
            .into_iter()
            .map(|c| PamRun::parse(&c.wait_with_output().unwrap()))
            .collect()
    }
}

/// [`Race::start`] and its [`Race::results`].
pub fn race_logins(hosts: &[&Fixture], user: &str, answers: &[String], delay: std::time::Duration) -> Vec<PamRun> {
    Race::start(hosts, user, answers, delay).results()
}

/// Asserts that of racing logins (their return codes) exactly one was let in and every other
/// one refused.
#[track_caller]
pub fn assert_one_let_in_the_rest_refused(rcs: &[i32]) {
    assert_eq!(rcs.iter().filter(|&&rc| rc == PAM_SUCCESS).count(), 1, "{rcs:?}");
    assert!(rcs.iter().all(|&rc| rc == PAM_SUCCESS || rc == PAM_AUTH_ERR), "{rcs:?}");
}

/// A command run in a private mount namespace where each `(source, target)` is bind-mounted
/// first (e.g. a test copy of /etc/pam.d over /etc/pam.d): the host never sees the change.
pub fn in_namespace(binds: &[(&Path, &str)], program: &str, args: &[&str]) -> Command {
    in_namespace_logged(binds, None, program, args)
}

/// [`in_namespace`], and with `log` the programs' syslog goes to that socket: /dev is a
/// private tmpfs holding the usual device nodes (bind-mounted from the real /dev), the
/// ptys, and `log` bind-mounted at /dev/log.
pub fn in_namespace_logged(binds: &[(&Path, &str)], log: Option<&Path>, program: &str, args: &[&str]) -> Command {
    let mut script = String::from("set -e; mount --make-rprivate /; ");
    if log.is_some() {
        script.push_str(
            "D=$(mktemp -d); mount --rbind /dev \"$D\"; mount -t tmpfs -o mode=755 tmpfs /dev; \
             for n in null zero full random urandom tty; do touch /dev/$n; mount --bind \"$D/$n\" /dev/$n; done; \
             mkdir /dev/pts; mount --rbind \"$D/pts\" /dev/pts; ln -s pts/ptmx /dev/ptmx; \
             ln -s /proc/self/fd /dev/fd; ln -s fd/0 /dev/stdin; ln -s fd/1 /dev/stdout; ln -s fd/2 /dev/stderr; \
             touch /dev/log; mount --bind \"$LOG_SOCKET\" /dev/log; umount -l \"$D\"; rmdir \"$D\"; ",
        );
    }
    for (i, _) in binds.iter().enumerate() {
        script.push_str(&format!("mount --bind \"$BIND_SRC_{i}\" \"$BIND_DST_{i}\"; "));
    }
    script.push_str("exec \"$@\"");
    let mut c = Command::new("unshare");
    c.args(["--mount", "--", "sh", "-c", &script, "sh", program]).args(args);
    for (i, (src, dst)) in binds.iter().enumerate() {
        c.env(format!("BIND_SRC_{i}"), src).env(format!("BIND_DST_{i}"), dst);
    }
    if let Some(l) = log {
        c.env("LOG_SOCKET", l);
    }
    c
}

/// A private /etc/sudoers.d (or, if the host's /etc/sudoers does not read that directory,
/// a private /etc/sudoers) holding `rule`, to bind-mount (see [`in_namespace`]) at the place
/// returned with it; the host's files are never touched.
pub fn private_sudoers(f: &Fixture, rule: &str) -> (PathBuf, &'static str) {
    let host = std::fs::read_to_string("/etc/sudoers").unwrap_or_default();
    let reads_dir = host
        .lines()
        .any(|l| matches!(l.trim(), "@includedir /etc/sudoers.d" | "#includedir /etc/sudoers.d"));
    if reads_dir {
        let d = f.root.join("sudoers.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = d.join("pam-totp-test");
        std::fs::write(&file, rule).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o440)).unwrap();
        (d, "/etc/sudoers.d")
    } else {
        let file = f.root.join("sudoers");
        std::fs::write(&file, format!("root ALL=(ALL:ALL) ALL\n{rule}")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o440)).unwrap();
        (file, "/etc/sudoers")
    }
}

/// A syslog socket the tests listen on; lines are collected by a thread.
#[derive(Debug)]
pub struct LogSink {
    pub path: PathBuf,
    lines: std::sync::Arc<Mutex<Vec<String>>>,
}

impl LogSink {
    pub fn new(f: &Fixture) -> LogSink {
        let path = f.root.join(format!("log-{}.sock", random_hex(3)));
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // Programs in the namespace log as root or as the test users.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        if std::sync::Arc::strong_count(&sink) == 1 {
                            return; // the LogSink is gone
                        }
                    }
                    // An interrupted wait (EINTR, seen under load) is not an end.
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("LogSink: recv: {e} ({:?})", e.kind());
                        return;
                    }
                }
            }
        });
        LogSink { path, lines }
    }

    /// The lines so far, after checking that none holds a registered secret or `answers`.
    pub fn lines(&self, answers: &[&str]) -> Vec<String> {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let lines = self.lines.lock().unwrap().clone();
        assert_no_secrets_in(&lines, answers);
        lines
    }
}

/// A copy of the host's /etc/pam.d in the fixture, with `files` replaced.
pub fn pam_dir_copy(f: &Fixture, files: &[(&str, &str)]) -> PathBuf {
    let d = f.root.join("etc-pam.d");
    run("cp", &["-a", "/etc/pam.d/.", &format!("{}/", d.display())]);
    for (name, body) in files {
        std::fs::write(d.join(name), body).unwrap();
    }
    d
}

pub mod fleet;
pub mod fleet_vault;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real OpenSSH sshd on 127.0.0.1, inside a private mount namespace whose /etc/pam.d is
/// the fixture's copy. Stopped on drop.
#[derive(Debug)]
pub struct Sshd {
    pub port: u16,
    child: std::process::Child,
    pub log: PathBuf,
}

impl Sshd {
    /// With `log`, sshd and the PAM modules it runs log to that socket (see [`LogSink`]).
    pub fn start(f: &Fixture, pam_d: &Path, extra_config: &str, syslog: Option<&Path>) -> Sshd {
        let dir = f.root.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("host_ed25519");
        if !key.exists() {
            run(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
            );
        }
        // The privilege-separation directory the openssh-server package creates at start.
        let _ = std::fs::create_dir("/run/sshd");
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            // sshd takes the first value of a keyword: the test's settings come first so
            // they override the defaults below.
            format!(
                "{extra_config}\nPort {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM yes\n\
                 KbdInteractiveAuthentication yes\nPasswordAuthentication no\nPermitRootLogin no\n\
                 LogLevel VERBOSE\n",
                key.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let log = dir.join(format!("sshd-{port}.log"));
        let mut child = in_namespace_logged(
            &[(pam_d, "/etc/pam.d")],
            syslog,
            "/usr/sbin/sshd",
            &["-D", "-e", "-f", config.to_str().unwrap()],
        )
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Sshd {
                    port,
                    child,
                    log: log.with_extension("err"),
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Never leave it behind, even when failing.
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "sshd did not start: {}",
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // unshare exec'd sh, which exec'd sshd: the child is sshd itself.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// A copy of the host's /etc/pam.d whose `sshd` file has the `auth` lines, then pam_unix for
/// the account, a session that is allowed and no password change.
pub fn pam_sshd(f: &Fixture, auth: &str) -> PathBuf {
    pam_dir_copy(
        f,
        &[(
            "sshd",
            &format!(
                "{auth}\naccount required pam_unix.so\nsession required pam_permit.so\npassword required pam_deny.so\n"
            ),
        )],
    )
}

/// The auth lines of a password, then a code: `auth requisite pam_unix.so` and `auth required
/// pam_totp.so ARGS`.
pub fn password_then_code(f: &Fixture, args: &str) -> String {
    format!("auth requisite pam_unix.so\nauth required {}", f.module(args))
}

/// A real sshd (see [`Sshd::start`]) whose PAM file is [`pam_sshd`] with `auth`, with
/// `sshd_config` before its defaults; it and the PAM modules it runs log to the returned sink.
pub fn sshd_with_pam(f: &Fixture, auth: &str, sshd_config: &str) -> (LogSink, Sshd) {
    let pam_d = pam_sshd(f, auth);
    let log = LogSink::new(f);
    let sshd = Sshd::start(f, &pam_d, sshd_config, Some(&log.path));
    (log, sshd)
}

/// The arguments of an `ssh` to `user` on 127.0.0.1:`port` that runs `echo
/// LOGGED-IN-AS-$(id -un)` (see [`Session::logged_in_as`]): no host key kept, one password
/// prompt; with `key`, the key and then keyboard-interactive, without, keyboard-interactive
/// alone.
pub fn ssh_args(port: u16, user: &str, key: Option<&Path>) -> Vec<String> {
    let mut a: Vec<String> = vec!["ssh".into(), "-p".into(), port.to_string()];
    for o in [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "NumberOfPasswordPrompts=1",
    ] {
        a.push("-o".into());
        a.push(o.into());
    }
    match key {
        Some(k) => {
            a.extend([
                "-i".into(),
                k.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
            a.extend([
                "-o".into(),
                "PreferredAuthentications=publickey,keyboard-interactive".into(),
            ]);
        }
        None => a.extend([
            "-o".into(),
            "PubkeyAuthentication=no".into(),
            "-o".into(),
            "PreferredAuthentications=keyboard-interactive".into(),
        ]),
    }
    a.push(format!("{user}@127.0.0.1"));
    a.push("echo LOGGED-IN-AS-$(id -un)".into());
    a
}

/// An ssh login of `user` to `sshd` through a pty, answering `password` and then `code`. With
/// `tty`, the session gets a terminal (`ssh -tt`), as an interactive login does: only then
/// does sshd print the messages PAM left at success (like the motd).
pub fn ssh_login(
    f: &Fixture,
    sshd: &Sshd,
    user: &TestUser,
    key: Option<&Path>,
    password: &str,
    code: &str,
    tty: bool,
) -> Session {
    let mut args = ssh_args(sshd.port, &user.name, key);
    let mut answers = vec![("Password: ?", password), ("Verification code: ?", code)];
    if tty {
        // An interactive login: no command; type it at the shell prompt.
        args.insert(1, "-tt".into());
        args.pop();
        answers.push(("[$#] ?", "echo LOGGED-IN-AS-$(id -un); exit"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    expect_session(f, &args, &answers, &[], None)
}

/// As an answer to [`expect_session`]: the current code for the `secret=` shown on screen
/// (the phone scanning the QR code).
pub const TOTP_FROM_SCREEN: &str = "@totp-from-screen";

/// What an interactive client showed and how it ended.
#[derive(Debug)]
pub struct Session {
    pub transcript: String,
    pub exit: i32,
}

impl Session {
    /// Whether the [`ssh_args`] command ran as `user` and the session ended well.
    pub fn logged_in_as(&self, user: &TestUser) -> bool {
        self.transcript.contains(&format!("LOGGED-IN-AS-{}", user.name)) && self.exit == 0
    }
}

/// Drives an interactive program through a pty with expect: each time the output ends with
/// a prompt matching one of `answers`' patterns (Tcl regexps), that answer is typed.
/// With `binds`, expect (and so the spawned program) runs in a private mount namespace.
pub fn expect_session(
    f: &Fixture,
    spawn: &[&str],
    answers: &[(&str, &str)],
    binds: &[(&Path, &str)],
    log: Option<&Path>,
) -> Session {
    let script = f.root.join(format!("session-{}.exp", random_hex(3)));
    let mut body = String::from("set timeout 20\nlog_user 1\n");
    if std::env::var_os("PTT_EXPECT_DEBUG").is_some() {
        body.push_str("exp_internal 1\n");
    }
    body.push_str(&format!(
        "spawn {}\n",
        spawn.iter().map(|a| format!("{{{a}}}")).collect::<Vec<_>>().join(" ")
    ));
    body.push_str("expect {\n");
    for (pattern, answer) in answers {
        if *answer == TOTP_FROM_SCREEN {
            body.push_str(&format!(
                "  -re {{{pattern}$}} {{ regexp {{secret=([A-Z2-7]+)}} $expect_out(buffer) -> sec; \
                 send -- [exec oathtool --totp --base32 $sec]; send \"\\r\"; exp_continue }}\n"
            ));
            continue;
        }
        body.push_str(&format!(
            "  -re {{{pattern}$}} {{ send -- {{{answer}}}; send \"\\r\"; exp_continue }}\n"
        ));
    }
    body.push_str("  timeout { puts \"\\nEXPECT-TIMEOUT\"; exit 99 }\n  eof\n}\n");
    body.push_str("catch wait result\nputs \"\\nEXIT=[lindex $result 3]\"\n");
    std::fs::write(&script, body).unwrap();
    let mut cmd = in_namespace_logged(binds, log, "expect", &[script.to_str().unwrap()]);
    let out = cmd.output().unwrap();
    let mut transcript = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    transcript.push_str(&String::from_utf8_lossy(&out.stderr));
    let exit = transcript
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("EXIT="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1);
    Session { transcript, exit }
}

/// The `secret=` parameter of the first otpauth URI in `text` (a screen, a transcript).
pub fn secret_in_uri(text: &str) -> String {
    text.split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string()
}

/// The backup codes shown in `text`: its words of the form `xxxxx-xxxxx`.
pub fn backup_codes_shown(text: &str) -> Vec<&str> {
    text.split_whitespace()
        .filter(|w| {
            w.len() == 11 && w.as_bytes()[5] == b'-' && w.chars().all(|c| c == '-' || c.is_ascii_alphanumeric())
        })
        .collect()
}

/// `google-authenticator` options for a time-based file: no reuse, at most 3 logins in 30 s,
/// a window of 3, 5 scratch codes; no QR code, no questions.
pub const GA_TIME_BASED: &[&str] = &[
    "-t", "-d", "-f", "-r", "3", "-R", "30", "-w", "3", "-e", "5", "-Q", "NONE", "-q", "-C",
];

/// `google-authenticator` options for a counter-based file: a window of 3, no rate limit,
/// 2 scratch codes; no QR code, no questions.
pub const GA_COUNTER_BASED: &[&str] = &["-c", "-f", "-w", "3", "-u", "-e", "2", "-Q", "NONE", "-q", "-C"];

/// A `~/.google_authenticator` written by the real command.
#[derive(Debug)]
pub struct GoogleAuthenticatorFile {
    pub text: String,
    /// Its first line (registered).
    pub secret: String,
    /// Its 8-digit lines (registered).
    pub scratch: Vec<String>,
}

/// Runs the real `google-authenticator` as `u` with `args`: it writes the user's
/// `~/.google_authenticator` as it does in production. That file.
pub fn google_authenticator(u: &TestUser, args: &[&str]) -> GoogleAuthenticatorFile {
    let status = Command::new("runuser")
        .args(["-u", &u.name, "--", "google-authenticator"])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(u.home.join(".google_authenticator")).unwrap();
    let secret = text.lines().next().unwrap().to_string();
    register_secret(&secret);
    let scratch: Vec<String> = text
        .lines()
        .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .map(String::from)
        .collect();
    for s in &scratch {
        register_secret(s);
    }
    GoogleAuthenticatorFile { text, secret, scratch }
}

/// Turns a half-block (or ascii) QR code shown on a terminal back into pixels (a PGM image, 8 px per
/// module) the way a screen shows it, and decodes it with zbarimg.
pub fn decode_terminal_qr(stdout: &str, ascii: bool) -> String {
    let lines: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("Scan this QR code"))
        .skip(1)
        .take_while(|l| !l.starts_with("Or add"))
        .filter(|l| !l.trim().is_empty() || ascii)
        .collect();
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for l in &lines {
        if ascii {
            let cells: Vec<char> = l.chars().collect();
            rows.push(cells.chunks(2).map(|c| c[0] == '#').collect());
        } else {
            rows.push(l.chars().map(|c| c == '█' || c == '▀').collect());
            rows.push(l.chars().map(|c| c == '█' || c == '▄').collect());
        }
    }
    let width = rows.iter().map(Vec::len).max().unwrap_or(0) + 8;
    let height = rows.len() + 8;
    let scale = 8;
    let mut img = format!("P5\n{} {}\n255\n", width * scale, height * scale).into_bytes();
    for y in 0..height * scale {
        for x in 0..width * scale {
            let (my, mx) = ((y / scale) as isize - 4, (x / scale) as isize - 4);
            let dark = my >= 0
                && mx >= 0
                && rows
                    .get(my as usize)
                    .and_then(|r| r.get(mx as usize))
                    .copied()
                    .unwrap_or(false);
            img.push(if dark { 0 } else { 255 });
        }
    }
    let path = std::env::temp_dir().join(format!("pam-totp-qr-{}.pgm", random_hex(4)));
    std::fs::write(&path, img).unwrap();
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A real terminal: a detached tmux session on its own server socket, killed on drop.
#[derive(Debug)]
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(cmd: &str) -> Tmux {
        let t = Tmux {
            socket: format!("ptt-{}", random_hex(4)),
        };
        run(
            "tmux",
            &[
                "-L",
                &t.socket,
                "new-session",
                "-d",
                "-s",
                "e",
                "-x",
                "150",
                "-y",
                "80",
                cmd,
            ],
        );
        t
    }
    pub fn screen(&self) -> String {
        String::from_utf8(run("tmux", &["-L", &self.socket, "capture-pane", "-p", "-t", "e"]).stdout).unwrap()
    }
    pub fn wait_for(&self, text: &str) -> String {
        for _ in 0..100 {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("never showed {text:?}:\n{}", self.screen());
    }
    pub fn type_line(&self, s: &str) {
        run("tmux", &["-L", &self.socket, "send-keys", "-t", "e", s, "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

/// `pam-totp ARGS` run by `user` (not root) with `stdin`, through the setuid helper `helper`
/// (PAM_TOTP_VAULT_HELPER), with `security` bound over /etc/security in a private mount
/// namespace (the helper reads the system's pam_totp.conf only): (exit code, stdout, stderr).
pub fn through_helper(
    helper: &Path,
    security: &Path,
    user: &TestUser,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let helper = format!("PAM_TOTP_VAULT_HELPER={}", helper.display());
    let cli = cli_path();
    let mut all = vec![
        "-u",
        user.name.as_str(),
        "--",
        "env",
        "-u",
        "SUDO_UID",
        helper.as_str(),
        cli.to_str().unwrap(),
    ];
    all.extend(args);
    let mut c = in_namespace(&[(security, "/etc/security")], "runuser", &all);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
