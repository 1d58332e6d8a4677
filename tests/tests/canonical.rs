//! One account, many spellings: pam_totp through the real libpam against a REAL
//! case-insensitive user database, as SSSD (`case_sensitive = false`), winbind or a
//! case-insensitive LDAP directory are.
//!
//! tests/nss/nss_pamtotpci.c is an NSS module that matches names in /etc/passwd
//! case-insensitively and returns the entry with its own (lower-case) pw_name. Each test
//! compiles it into its fixture and runs the harness in a private mount namespace whose
//! /etc/nsswitch.conf says `passwd: files pamtotpci`, with LD_LIBRARY_PATH pointing at
//! it; the host's nsswitch.conf and libraries are never touched. There `getpwnam("PTT…")`
//! returns the account `ptt…`, and every spelling must share one replay guard, one
//! lockout, one state file and one `%u` secret path: the account's.

use pam_totp_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const PAM_IGNORE: i32 = 25;

/// The NSS module built into a fixture, and the nsswitch.conf that names it.
struct CaseInsensitiveDb {
    dir: PathBuf,
}

impl CaseInsensitiveDb {
    /// Builds the module into `f` and checks, inside the namespace, that every spelling of
    /// `u` reaches `u` (if it did not, the tests below would prove nothing).
    fn new(f: &Fixture, u: &TestUser) -> CaseInsensitiveDb {
        let dir = f.root.join("nss");
        std::fs::create_dir(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("nss/nss_pamtotpci.c");
        let so = dir.join("libnss_pamtotpci.so.2");
        let mut gcc = Command::new("gcc");
        gcc.args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&so)
            .arg(&src);
        let (rc, out, err) = output(gcc);
        assert_eq!(rc, 0, "gcc {}: {out}{err}", src.display());
        std::fs::write(
            dir.join("nsswitch.conf"),
            "passwd: files pamtotpci\ngroup: files\nshadow: files\ngshadow: files\n",
        )
        .unwrap();
        let db = CaseInsensitiveDb { dir };
        for spelling in spellings(&u.name) {
            db.assert_resolves(&spelling, u);
        }
        db
    }

    /// `program args` in a private mount namespace where this nsswitch.conf is the
    /// system's, with the module on the library search path.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let conf = self.dir.join("nsswitch.conf");
        let mut c = in_namespace(&[(&conf, "/etc/nsswitch.conf")], program, args);
        c.env("LD_LIBRARY_PATH", &self.dir);
        c
    }

    /// `getent passwd SPELLING` in the namespace prints `u`'s own entry.
    fn assert_resolves(&self, spelling: &str, u: &TestUser) {
        let (rc, out, err) = output(self.command("getent", &["passwd", spelling]));
        assert_eq!(rc, 0, "getent passwd {spelling} in the namespace: {out}{err}");
        assert!(
            out.starts_with(&format!("{}:x:{}:{}:", u.name, u.uid, u.gid)),
            "getent passwd {spelling} in the namespace: {out}"
        );
    }

    /// One `pam-harness` run in the namespace.
    fn auth(&self, f: &Fixture, service: &str, user: &str, answers: &[&str]) -> PamRun {
        let confdir = f.confdir();
        let mut args = vec![confdir.to_str().unwrap(), service, user];
        args.extend_from_slice(answers);
        let harness = harness_path();
        let out = self.command(harness.to_str().unwrap(), &args).output().unwrap();
        let r = PamRun::parse(&out);
        assert_no_secrets_in(&r.logs, answers);
        r
    }
}

/// `alice` -> [`Alice`, `ALICE`]: spellings the database maps to the account.
fn spellings(name: &str) -> [String; 2] {
    let mut first = name.to_string();
    first[..1].make_ascii_uppercase();
    [first, name.to_uppercase()]
}

fn enrolled(args: &str) -> (Fixture, TestUser, String, CaseInsensitiveDb) {
    let f = Fixture::new();
    f.simple("svc", args);
    let u = TestUser::create();
    let key = random_key_b32();
    u.enroll(&key, "");
    let db = CaseInsensitiveDb::new(&f, &u);
    (f, u, key, db)
}

/// The premise of every other test: in the namespace the database matches loosely; on the
/// host it does not (so the namespace, not the host, is what makes `PTT…` an account).
#[test]
fn the_test_user_database_maps_every_spelling_to_the_lower_case_account() {
    let f = Fixture::new();
    let u = TestUser::create();
    let db = CaseInsensitiveDb::new(&f, &u);
    let [capitalised, upper] = spellings(&u.name);
    db.assert_resolves(&u.name, &u);
    db.assert_resolves(&capitalised, &u);
    db.assert_resolves(&upper, &u);
    let mut host = Command::new("getent");
    host.args(["passwd", &upper]);
    let (rc, out, _) = output(host);
    assert_eq!(rc, 2, "the host's own database must not know {upper}: {out}");
    let (rc, _, _) = output(db.command("getent", &["passwd", "no-such-user-ptt"]));
    assert_eq!(rc, 2, "unknown names stay unknown");
}

#[test]
fn a_code_spent_as_one_spelling_is_refused_as_another() {
    let (f, u, key, db) = enrolled("");
    let [_, upper] = spellings(&u.name);
    let code = code_now(&key);
    let r = db.auth(&f, "svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    let r = db.auth(&f, "svc", &upper, &[&code]);
    assert_eq!(
        r.rc, PAM_AUTH_ERR,
        "the code spent as {} came back as {upper}: {r:?}",
        u.name
    );
    assert_eq!(
        r.errors,
        vec!["That code has already been used. Wait for the next one."]
    );
    assert!(
        r.logged(&[
            "refused: replayed verification code",
            &format!("(user={} pam_user={upper} service=svc", u.name)
        ]),
        "{:?}",
        r.logs
    );
}

#[test]
fn wrong_codes_under_every_spelling_add_up_to_one_lockout() {
    let (f, u, key, db) = enrolled("max_failures=3 lockout=120");
    let [capitalised, upper] = spellings(&u.name);
    let wrong = wrong_code(&key);
    let mut runs = vec![];
    for (i, typed) in [&capitalised, &upper].into_iter().enumerate() {
        let r = db.auth(&f, "svc", typed, &[&wrong]);
        assert_eq!(r.rc, PAM_AUTH_ERR, "{typed}: {r:?}");
        assert_eq!(r.errors, vec!["Wrong verification code."], "{typed}");
        assert!(
            r.logged(&[&format!("refused: wrong code ({} consecutive failures)", i + 1)]),
            "{typed}: failures must add up across spellings: {:?}",
            r.logs
        );
        runs.push((typed, r));
    }
    for (typed, r) in &runs {
        assert!(
            r.logged(&[&format!("(user={} pam_user={typed} ", u.name)]),
            "{typed}: {:?}",
            r.logs
        );
    }
    let r = db.auth(&f, "svc", &u.name, &[&wrong]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_eq!(
        r.errors,
        vec!["Wrong verification code. Too many wrong verification codes: try again in 2 minutes."],
        "the third wrong code, whatever the spelling, locks"
    );
    assert!(
        r.logged(&["locked out for 120 s after 3 consecutive failures"]),
        "{:?}",
        r.logs
    );
    let r = db.auth(&f, "svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "the right code during the lockout: {r:?}");
    assert!(r.prompts.is_empty(), "{r:?}");
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert!(
        r.errors[0].starts_with("Too many wrong verification codes. Try again in "),
        "{:?}",
        r.errors
    );
    assert!(r.logged(&["refused: locked out for another"]), "{:?}", r.logs);
}

#[test]
fn one_state_file_per_account() {
    let (f, u, key, db) = enrolled("");
    let [capitalised, upper] = spellings(&u.name);
    let t = now();
    let r = db.auth(&f, "svc", &u.name, &[&oathtool(&key, t, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    // The next step is within the default window of one step.
    let r = db.auth(&f, "svc", &upper, &[&oathtool(&key, t + 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    let r = db.auth(&f, "svc", &capitalised, &[&wrong_code(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    let mut names: Vec<String> = std::fs::read_dir(f.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![format!("{}.lock", u.name), format!("{}.state", u.name)],
        "one state file (and its lock) for the account, none per spelling"
    );
}

#[test]
fn percent_u_template_uses_the_account_name_so_nullok_does_not_skip_the_code() {
    let f = Fixture::new();
    let dir = f.secrets_dir();
    // A password module after pam_totp that always agrees: under nullok, a user pam_totp
    // thinks is not enrolled gets in with that alone.
    f.service(
        "svc",
        &format!(
            "auth required {}\nauth required pam_permit.so\n",
            f.module(&format!("secret={}/%u.toml nullok", dir.display()))
        ),
    );
    let u = TestUser::create();
    let key = random_key_b32();
    write_central_secret(&dir, &u.name, &key);
    let db = CaseInsensitiveDb::new(&f, &u);
    let [capitalised, upper] = spellings(&u.name);

    let r = db.auth(&f, "svc", &upper, &[&wrong_code(&key)]);
    assert_ne!(r.rc, PAM_IGNORE, "{upper} was taken for not enrolled: {r:?}");
    assert_ne!(r.rc, PAM_SUCCESS, "{upper} got in without a code: {r:?}");
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_eq!(r.prompts, vec!["Verification code: "], "{r:?}");
    assert_eq!(r.errors, vec!["Wrong verification code."]);
    assert!(!r.logged(&["not enrolled"]), "{:?}", r.logs);
    assert!(
        r.logged(&["refused: wrong code", &format!("(user={} pam_user={upper} ", u.name)]),
        "{:?}",
        r.logs
    );
    // And the secret at the account's path serves every spelling.
    let r = db.auth(&f, "svc", &capitalised, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(r.logged(&["accepted verification code"]), "{:?}", r.logs);
}
