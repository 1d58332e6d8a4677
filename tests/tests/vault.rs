//! The vault (`key_store = "vault"`): keys in `STATE_DIR/vault/`, root's only, read by the
//! module through the real libpam; `pam-totp migrate` moving secret files (v1, v2) and
//! google-authenticator files into it with the phone and the spent backup codes kept.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use pam_totp_tests::fleet::with_backup_codes;
use pam_totp_tests::*;

fn vault_fixture() -> Fixture {
    let f = Fixture::new();
    std::fs::write(f.root.join("pam_totp.conf"), "key_store = \"vault\"\n").unwrap();
    std::fs::DirBuilder::new().mode(0o700).create(f.state_dir()).unwrap();
    f.simple("svc", "");
    f
}

use std::os::unix::fs::DirBuilderExt;

fn vault_file(f: &Fixture, u: &TestUser) -> PathBuf {
    f.state_dir().join("vault").join(format!("{}.toml", u.name))
}

fn json(c: std::process::Command) -> serde_json::Value {
    let (rc, out, err) = output(c);
    assert_eq!(rc, 0, "{out} {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn keys_enrolled_into_the_vault_are_roots_only_and_a_login_reads_them() {
    let _homes = home_files();
    let f = vault_fixture();
    let u = TestUser::create();
    let j = json(f.cli(&["enroll", "--user", &u.name, "--json"]));
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    let v = vault_file(&f, &u);
    let md = std::fs::metadata(&v).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o600), "root's, private");
    let dir = std::fs::metadata(v.parent().unwrap()).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o777), (0, 0o700));
    assert!(!u.secret_path().exists(), "nothing in the home");
    // A process of the user cannot read it.
    let out = std::process::Command::new("runuser")
        .args(["-u", &u.name, "--", "cat", v.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "the user read the vault"
    );
    let code = code_now(&key);
    let r = f.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert!(!r.logged(&["keys read from the secret file"]), "{:?}", r.logs);
    assert_eq!(f.auth("svc", &u.name, &[&code]).rc, PAM_AUTH_ERR, "replay");
    // status as root finds the keys in the vault.
    let (rc, out, err) = output(f.cli(&["status", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains(v.to_str().unwrap()), "{out}");
}

#[test]
fn migrate_moves_v1_v2_and_google_authenticator_files_and_the_phone_keeps_working() {
    let _homes = all_homes();
    let f = vault_fixture();
    // v1 file.
    let v1 = TestUser::create();
    let k1 = random_key_b32();
    v1.enroll(&k1, "");
    // v2 file with two authenticators and backup codes, one spent before the migration.
    let v2 = TestUser::create();
    let k2 = random_key_b32();
    let spare = random_key_b32();
    let codes = pam_totp_core::otp::backup::generate(2).unwrap();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| {
            register_secret(c);
            let h = pam_totp_core::otp::backup::hash(&pam_totp_core::otp::backup::normalize(c).unwrap()).unwrap();
            format!("\"{h}\"")
        })
        .collect();
    v2.write_secret(&format!(
        "version = 2\nbackup_codes = [{}]\n[[device]]\nname = \"phone\"\nsecret = \"{k2}\"\n[[device]]\nname = \"spare\"\nsecret = \"{spare}\"\n",
        hashes.join(", ")
    ));
    // A google-authenticator file with two scratch codes.
    let ga = TestUser::create();
    let kg = random_key_b32();
    let ga_file = ga.home.join(".google_authenticator");
    std::fs::write(
        &ga_file,
        format!("{kg}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n12345678\n87654321\n"),
    )
    .unwrap();
    std::fs::set_permissions(&ga_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&ga_file, Some(ga.uid), Some(ga.gid)).unwrap();

    // Before: the home files are read, and each such login says so.
    let r = f.auth("svc", &v2.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert!(
        r.logged(&["keys read from the secret file", "pam-totp migrate"]),
        "{:?}",
        r.logs
    );

    let keys_of = |u: &TestUser| {
        let r = json(f.cli(&["report", "--json", "--all-users"]));
        r["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["user"] == u.name.as_str())
            .unwrap()["keys"]
            .clone()
    };
    assert_eq!(keys_of(&v1), "home", "report says who is still on a secret file");
    let (_, text, _) = output(f.cli(&["report", "--all-users"]));
    assert!(
        text.contains("Keys in a secret file their user can read") && text.contains(&v1.name),
        "{text}"
    );
    let j = json(f.cli(&["migrate", "--all", "--json"]));
    assert_eq!(keys_of(&v1), "vault");
    let migrated: Vec<&str> = j["migrated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    for u in [&v1, &v2, &ga] {
        assert!(migrated.contains(&u.name.as_str()), "{u:?} not in {j}");
        let md = std::fs::metadata(vault_file(&f, u)).unwrap();
        assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o600));
    }
    assert!(j["failed"].as_array().unwrap().is_empty(), "{j}");
    assert!(
        !v1.secret_path().exists() && !v2.secret_path().exists() && !ga_file.exists(),
        "home files removed"
    );

    // The same phones keep working, from the vault (no legacy log line).
    for (u, k) in [(&v1, &k1), (&v2, &spare), (&ga, &kg)] {
        let r = f.auth("svc", &u.name, &[&code_now(k)]);
        assert_eq!(r.rc, PAM_SUCCESS, "{}: {:?}", u.name, r.logs);
        assert!(!r.logged(&["keys read from the secret file"]), "{:?}", r.logs);
    }
    // Spent backup codes stay spent; the unused one works once; scratch codes are backup codes.
    let r = f.auth("svc", &v2.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(r.logged(&["used backup code"]), "{:?}", r.logs);
    assert_eq!(f.auth("svc", &v2.name, &[&codes[1]]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &ga.name, &["12345678"]).rc, PAM_SUCCESS);

    // Once in the vault a home file is ignored: one planted with another key does nothing.
    let planted = random_key_b32();
    v1.enroll(&planted, "");
    let r = f.auth("svc", &v1.name, &[&code_now(&planted)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "a home file beside the vault: {:?}", r.logs);
    // And migrate says it is left over, touching nothing.
    let j = json(f.cli(&["migrate", "--user", &v1.name, "--json"]));
    assert_eq!(j["already"][0]["user"], v1.name.as_str(), "{j}");
    assert!(v1.secret_path().exists());
}

#[test]
fn a_user_whose_home_file_cannot_be_removed_stays_unmigrated_and_keeps_logging_in() {
    let _homes = home_files();
    let f = vault_fixture();
    let u = TestUser::create();
    let key = random_key_b32();
    let _codes = with_backup_codes(&u, &key, 1);
    // The directory holding the file is not writable by its owner: unlink fails.
    std::fs::set_permissions(u.secret_dir(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let (rc, out, err) = output(f.cli(&["migrate", "--user", &u.name]));
    std::fs::set_permissions(u.secret_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(rc, 1, "{out} {err}");
    assert!(
        out.contains("not migrated") && out.contains("could not be removed"),
        "{out}"
    );
    assert!(!vault_file(&f, &u).exists(), "no second copy left in the vault");
    assert!(u.secret_path().exists());
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert!(r.logged(&["keys read from the secret file"]), "{:?}", r.logs);
}

#[test]
fn migrate_is_for_root_only() {
    let _homes = home_files();
    let f = vault_fixture();
    let u = TestUser::create();
    u.enroll(&random_key_b32(), "");
    let (rc, _, err) = output(f.cli_as(&u.name, &["migrate", "--user", &u.name]));
    assert_eq!(rc, 1);
    assert!(err.contains("only root can migrate"), "{err}");
    assert!(u.secret_path().exists());
}

/// Host set-up for self-service: the built helper installed setuid root in the fixture, and a
/// private /etc/security whose pam_totp.conf is the fixture's (the helper reads the system
/// configuration only).
struct SelfService {
    helper: PathBuf,
    security: PathBuf,
}

fn self_service(f: &Fixture) -> SelfService {
    let helper = f.root.join("pam-totp-vault");
    std::fs::copy(cli_path().with_file_name("pam-totp-vault"), &helper).unwrap();
    std::os::unix::fs::chown(&helper, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let security = f.root.join("etc-security");
    run("cp", &["-a", "/etc/security", security.to_str().unwrap()]);
    std::fs::write(
        security.join("pam_totp.conf"),
        format!("key_store = \"vault\"\nstate_dir = \"{}\"\n", f.state_dir().display()),
    )
    .unwrap();
    std::fs::set_permissions(security.join("pam_totp.conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // The module line reads the same file.
    std::fs::copy(security.join("pam_totp.conf"), f.root.join("pam_totp.conf")).unwrap();
    SelfService { helper, security }
}

impl SelfService {
    /// `u` enrolls themselves (`pam-totp enroll --json`, not root): the answer and the key.
    fn enroll(&self, u: &TestUser) -> (serde_json::Value, String) {
        let (rc, out, err) = self.cli(u, &["enroll", "--json"], "");
        assert_eq!(rc, 0, "{out} {err}");
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        register_enrollment(&j);
        let key = j["secret"].as_str().unwrap().to_string();
        (j, key)
    }

    /// `pam-totp ARGS` run by `user` (not root), with `stdin`.
    fn cli(&self, user: &TestUser, args: &[&str], stdin: &str) -> (i32, String, String) {
        through_helper(&self.helper, &self.security, user, args, stdin)
    }
}

fn devices_in_vault(f: &Fixture, u: &TestUser) -> usize {
    let text = std::fs::read_to_string(vault_file(f, u)).unwrap();
    text.matches("[[device]]").count()
}

/// The key in any form, in any file the user can read under /home, /tmp, /var, /etc, /run.
fn files_with_the_key(u: &TestUser, key_b32: &str) -> Vec<String> {
    let raw = pam_totp_core::otp::decode_base32(key_b32).unwrap();
    let out = std::process::Command::new("runuser")
        .args([
            "-u",
            &u.name,
            "--",
            "find",
            "/home",
            "/tmp",
            "/var",
            "/etc",
            "/run",
            "-xdev",
            "-type",
            "f",
            "-readable",
            "-size",
            "-8M",
        ])
        .output()
        .unwrap();
    let mut hits = Vec::new();
    for f in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(bytes) = std::fs::read(f) else { continue };
        let text = String::from_utf8_lossy(&bytes).to_uppercase();
        if text.contains(key_b32) || bytes.windows(raw.len()).any(|w| w == raw.as_slice()) {
            hits.push(f.to_string());
        }
    }
    hits
}

#[test]
fn a_user_enrolls_into_the_vault_without_root_and_every_change_then_needs_a_code() {
    let _homes = home_files();
    let f = vault_fixture();
    let ss = self_service(&f);
    f.simple("svc", "");
    let u = TestUser::create();
    let (j, key) = ss.enroll(&u);
    let md = std::fs::metadata(vault_file(&f, &u)).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o600));
    assert!(!u.secret_path().exists());
    assert_eq!(j["backup_codes"].as_array().unwrap().len(), 10);

    // Its codes let the user in through the real libpam.
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);

    // No file the user can read holds the key, in base32 or raw.
    let hits = files_with_the_key(&u, &key);
    assert!(hits.is_empty(), "the key is readable by its user in {hits:?}");

    // A second enrollment is refused; changes need a code: none, a wrong one, then a right one.
    let (rc, _, err) = ss.cli(&u, &["enroll", "--json"], "");
    assert_eq!(rc, 1);
    assert!(err.contains("already enrolled"), "{err}");
    let (rc, _, err) = ss.cli(&u, &["enroll", "--add", "--json", "--name", "malware"], "");
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("no code given"), "{err}");
    assert!(
        !err.contains("nothing was changed; nothing was saved"),
        "said once: {err}"
    );
    assert_eq!(devices_in_vault(&f, &u), 1);
    let (rc, _, err) = ss.cli(
        &u,
        &["enroll", "--add", "--json", "--name", "malware"],
        &format!("{}\n", wrong_code(&key)),
    );
    assert_eq!(rc, 1);
    assert!(err.contains("wrong code") && err.contains("nothing was saved"), "{err}");
    assert!(!err.contains("nothing was changed"), "said once: {err}");
    assert_eq!(devices_in_vault(&f, &u), 1);
    let (rc, _, err) = ss.cli(&u, &["backup-codes", "--regenerate"], "");
    assert_eq!(rc, 1);
    assert!(err.contains("no code given"), "{err}");
    // The failure counted like a login's.
    let (rc, out, _) = ss.cli(&u, &["status", "--json"], "");
    assert_eq!(rc, 0);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["failures"], 1, "{st}");
    assert_eq!(st["place"], "vault");
    assert!(!out.contains(&key));

    // With a current code (the next step's: the login spent this one): added.
    let next = oathtool(&key, now() + 30, "sha1", 6);
    let (rc, out, err) = ss.cli(
        &u,
        &["enroll", "--add", "--json", "--name", "tablet"],
        &format!("{next}\n"),
    );
    assert_eq!(rc, 0, "{out} {err}");
    let j2: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&j2);
    assert_eq!(devices_in_vault(&f, &u), 2);
    let (rc, out, _) = ss.cli(&u, &["devices", "list", "--json"], "");
    assert_eq!(rc, 0);
    assert!(out.contains("\"tablet\"") && !out.contains(&key), "{out}");
    // New backup codes with an unused backup code as the proof.
    let backup = j["backup_codes"][0].as_str().unwrap();
    let (rc, out, err) = ss.cli(&u, &["backup-codes", "--regenerate"], &format!("{backup}\n"));
    assert_eq!(rc, 0, "{out} {err}");
    assert!(out.contains("New backup codes"), "{out}");
    // The proof was spent: the same backup code does not log in.
    let r = f.auth("svc", &u.name, &[backup]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
}

/// Seed 000 as a normal user on a vault host, in a real terminal: the QR code scans (zbar),
/// a wrong code is refused, the right one confirms, the name is asked, the backup codes are
/// shown, the keys land in the vault (root's), and the module accepts the codes.
#[test]
fn a_user_enrolls_into_the_vault_in_a_real_terminal() {
    let _homes = home_files();
    let f = vault_fixture();
    let ss = self_service(&f);
    f.simple("svc", "");
    let u = TestUser::create();
    let cmd = format!(
        "unshare --mount -- sh -c 'mount --make-rprivate / && mount --bind {} /etc/security && \
         exec runuser -u {} -- env -u SUDO_UID PAM_TOTP_VAULT_HELPER={} {} enroll'; echo EXIT=$?; sleep 60",
        ss.security.display(),
        u.name,
        ss.helper.display(),
        cli_path().display()
    );
    let t = Tmux::start(&cmd);
    let screen = t.wait_for("Enter the 6-digit code shown in the app to confirm:");
    let secret = secret_in_uri(&screen);
    let uri = screen
        .lines()
        .find_map(|l| l.strip_prefix("URI: "))
        .unwrap()
        .to_string();
    assert_eq!(decode_terminal_qr(&screen, false), uri, "the QR code scans");
    t.type_line(&wrong_code(&secret));
    t.wait_for("That code does not match.");
    assert!(!vault_file(&f, &u).exists(), "nothing saved before a code matches");
    t.type_line(&code_now(&secret));
    t.wait_for("Name for this authenticator [phone]:");
    t.type_line("work phone");
    let screen = t.wait_for("EXIT=");
    assert!(screen.contains("EXIT=0"), "{screen}");
    let codes: Vec<&str> = backup_codes_shown(&screen);
    assert_eq!(codes.len(), 10, "{screen}");
    let md = std::fs::metadata(vault_file(&f, &u)).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o600));
    assert!(std::fs::read_to_string(vault_file(&f, &u))
        .unwrap()
        .contains("work phone"));
    assert!(!u.secret_path().exists());
    let next = oathtool(&secret, now() + 30, "sha1", 6);
    assert_eq!(f.auth("svc", &u.name, &[&next]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u.name, &[codes[0]]).rc, PAM_SUCCESS);
}

/// The caller's file size limit (`ulimit -f 0`, SIGXFSZ ignored) made every write of the
/// state fail: wrong codes went uncounted and the time a failed write took told a right code
/// from a wrong one (the attacker's pass over the helper). Now the limit is lifted where root
/// may (CAP_SYS_RESOURCE) and the wrong code counts; where it may not (this sandbox's
/// bounding set lacks it), nothing is decided: a right and a wrong code are refused alike,
/// before either is looked at, and neither is spent nor counted.
#[test]
fn a_file_size_limit_set_by_the_caller_never_lets_codes_be_tried_uncounted() {
    let _homes = home_files();
    let f = vault_fixture();
    let ss = self_service(&f);
    f.simple("svc", "");
    let u = TestUser::create();
    let (_, key) = ss.enroll(&u);
    let failures = || {
        let (_, out, _) = output(f.cli(&["status", "--user", &u.name, "--json"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["failures"]
            .as_u64()
            .unwrap()
    };
    const LIMIT: &str = "too low to record the attempt";
    // Through the helper.
    let helper = format!("PAM_TOTP_VAULT_HELPER={}", ss.helper.display());
    let cli = cli_path();
    let through_helper = |code: &str| {
        let script = format!(
            "ulimit -f 0; trap '' XFSZ; echo {code} | exec env -u SUDO_UID {helper} {} enroll --add --json --name x",
            cli.display()
        );
        let out = in_namespace(
            &[(&ss.security, "/etc/security")],
            "runuser",
            &["-u", &u.name, "--", "sh", "-c", &script],
        )
        .output()
        .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = through_helper(&wrong_code(&key));
    assert!(!ok);
    let limited = err.contains(LIMIT);
    assert!(
        limited || failures() == 1,
        "neither counted nor refused up front: {err}"
    );
    if limited {
        assert_eq!(failures(), 0);
        let (ok, err_right) = through_helper(&code_now(&key));
        assert!(
            !ok && err_right.contains(LIMIT),
            "a right code under the limit: {err_right}"
        );
    }
    // Through the module (su or sudo run with the user's limits).
    let login = |code: &str| {
        let h = f.harness("svc", &u.name, &[code], &[]);
        let mut c = std::process::Command::new("sh");
        c.args(["-c", "ulimit -f 0; trap '' XFSZ; exec \"$@\"", "sh"])
            .arg(h.get_program())
            .args(h.get_args());
        for (k, v) in h.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        PamRun::parse(&c.output().unwrap())
    };
    let before = failures();
    let r = login(&wrong_code(&key));
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    if limited {
        assert!(r.logged(&[LIMIT]) && failures() == before, "{:?}", r.logs);
        let right = oathtool(&key, now() + 30, "sha1", 6);
        let r = login(&right);
        assert!(r.rc == PAM_AUTH_ERR && r.logged(&[LIMIT]), "{:?}", r.logs);
        // Not spent: without the limit it lets the user in.
        assert_eq!(f.auth("svc", &u.name, &[&right]).rc, PAM_SUCCESS);
    } else {
        assert_eq!(failures(), before + 1, "{:?}", r.logs);
    }
}

/// `enroll --force` by root under `key_store = "vault"` for a user still on a secret file: the
/// new keys go into the vault, and the secret file (which the user can read) is removed.
#[test]
fn a_forced_enrollment_of_a_user_on_a_secret_file_goes_into_the_vault() {
    let _homes = home_files();
    let f = vault_fixture();
    let u = TestUser::create();
    u.enroll(&random_key_b32(), "");
    let j = json(f.cli(&["enroll", "--user", &u.name, "--force", "--json"]));
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    assert!(!u.secret_path().exists(), "the readable file is gone");
    let md = std::fs::metadata(vault_file(&f, &u)).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o600));
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert!(!r.logged(&["keys read from the secret file"]), "{:?}", r.logs);
}
