//! The fleet vault (`store = "fleet"`, `key_store = "vault"`): users' keys in etcd, sealed
//! with the fleet's vault key, so one enrollment serves every host of a namespace. Real etcd
//! on 127.0.0.1, a real `pam-totp-stated` per "host", the real module through the real
//! libpam, the real command line (and the real setuid helper for self-service).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pam_totp_tests::fleet::{Etcd, Stated};
use pam_totp_tests::*;

const K1: &str = "6b9d2a4f0c7e13a85d21f0e9c4b7a3168e5d2c1b0a99887766554433221100ff";
const K2: &str = "f00d1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeef";
const K3: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// One host of the fleet: its fixture (service `svc`), its daemon, its key ring file.
struct Host {
    f: Fixture,
    stated: Stated,
    ring: PathBuf,
}

impl Host {
    /// A host of namespace `ns` whose fleet.vault_key_file holds `ring` (None: not set).
    fn start(etcd: &Etcd, ns: &str, ring: Option<&str>) -> Host {
        Host::start_with(etcd, ns, ring, "", 1500)
    }

    /// [`Host::start`] with `extra` settings and the daemon's etcd deadline `timeout_ms`.
    fn start_with(etcd: &Etcd, ns: &str, ring: Option<&str>, extra: &str, timeout_ms: u64) -> Host {
        let f = Fixture::new();
        f.simple("svc", "");
        let path = f.root.join("vault.keys");
        let mut table = Stated::fleet_table(etcd, ns, timeout_ms);
        if let Some(text) = ring {
            write_ring(&path, text);
            table.push_str(&format!("vault_key_file = \"{}\"\n", path.display()));
        }
        let stated = Stated::start(&f, &format!("key_store = \"vault\"\n{extra}"), &table);
        Host { f, stated, ring: path }
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let (rc, out, err) = output(self.f.cli(args));
        assert_eq!(rc, 0, "{args:?}: {out} {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// No file of this host holds keys: no vault file, no state directory entries.
    fn holds_no_key_file(&self) -> bool {
        let vault = self.f.state_dir().join("vault");
        std::fs::read_dir(&vault).map(|d| d.count() == 0).unwrap_or(true)
    }
}

fn write_ring(path: &Path, text: &str) {
    std::fs::write(path, format!("# the fleet vault's keys, newest first\n{text}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn ns() -> String {
    format!("v{}", random_hex(4))
}

/// Everything etcd holds under the namespace, keys and values, as `etcdctl get` shows it.
fn etcd_dump(etcd: &Etcd, ns: &str) -> String {
    let out = etcd.etcdctl(&["get", &format!("pam-totp/v1/{ns}/"), "--prefix"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `hay` holds the key in any of its forms: base32 (either case), the raw bytes,
/// lower- or upper-case hex, base64 of the raw bytes.
fn holds_key(hay: &[u8], key_b32: &str) -> bool {
    let raw = pam_totp_core::otp::decode_base32(key_b32).unwrap();
    let forms: Vec<Vec<u8>> = vec![
        key_b32.as_bytes().to_vec(),
        key_b32.to_lowercase().into_bytes(),
        raw.to_vec(),
        data_encoding::HEXLOWER.encode(&raw).into_bytes(),
        data_encoding::HEXUPPER.encode(&raw).into_bytes(),
        data_encoding::BASE64
            .encode(&raw)
            .trim_end_matches('=')
            .as_bytes()
            .to_vec(),
    ];
    forms.iter().any(|f| hay.windows(f.len()).any(|w| w == f.as_slice()))
}

#[test]
fn one_enrollment_on_host_a_serves_host_b_sealed_in_etcd_and_no_other_key_opens_it() {
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let j = a.json(&["enroll", "--user", &u.name, "--json"]);
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    let backup: Vec<String> = j["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert!(backup.len() >= 2, "{j}");

    // No host holds a file with the keys; none is in the home.
    assert!(a.holds_no_key_file() && b.holds_no_key_file());
    assert!(!u.secret_path().exists());

    // B, which never saw the user, lets their code in; A then refuses it as a replay.
    let code = fresh_code(&key);
    let r = b.f.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?} {}", r.logs, b.stated.log_text());
    let r = a.f.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(r.logged(&["replayed verification code"]), "{:?}", r.logs);
    // A backup code made at A's enrollment works once, anywhere.
    assert_eq!(a.f.auth("svc", &u.name, &[&backup[0]]).rc, PAM_SUCCESS);
    assert_eq!(b.f.auth("svc", &u.name, &[&backup[0]]).rc, PAM_AUTH_ERR);

    // etcd holds the keys sealed only: `etcdctl get` of the prefix, and a snapshot of the
    // whole database, have no form of the key.
    let dump = etcd_dump(&etcd, &ns);
    assert!(dump.contains(&format!("pam-totp/v1/{ns}/vault/{}", u.name)), "{dump}");
    assert!(dump.contains("key_id = ") && dump.contains("sealed = "), "{dump}");
    assert!(
        !holds_key(dump.as_bytes(), &key),
        "the key is in etcd in the clear: {dump}"
    );
    assert!(!dump.contains("[[device]]") && !dump.contains("otpauth"), "{dump}");
    let snap = a.f.root.join("etcd.snapshot");
    let out = etcd.etcdctl(&["snapshot", "save", snap.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&snap).unwrap();
    assert!(bytes.len() > 1000);
    assert!(!holds_key(&bytes, &key), "the etcd snapshot holds the key");

    // No daemon logged the record.
    let sealed_line = dump.lines().find(|l| l.starts_with("sealed = ")).unwrap().to_string();
    let sealed = sealed_line.trim_start_matches("sealed = ").trim_matches('"');
    for s in [&a.stated, &b.stated] {
        assert!(!s.log_text().contains(&sealed[..40]));
    }

    // A host of the namespace with another key cannot read the keys: refused, and says why.
    let c = Host::start(&etcd, &ns, Some(K2));
    let r = c.f.auth("svc", &u.name, &[&fresh_code(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(
        r.logged(&[
            "refused: secret file",
            "which this host's fleet.vault_key_file does not hold"
        ]),
        "{:?}",
        r.logs
    );
    // A host with no fleet.vault_key_file at all: refused, and says what is missing.
    let d = Host::start(&etcd, &ns, None);
    let r = d.f.auth("svc", &u.name, &[&fresh_code(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(r.logged(&["fleet.vault_key_file"]), "{:?}", r.logs);
    // A ring file others can read is refused like a key file.
    std::fs::set_permissions(&b.ring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = b.f.auth("svc", &u.name, &[&fresh_code(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(r.logged(&["vault.keys"]), "{:?}", r.logs);
    std::fs::set_permissions(&b.ring, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Whoever can write etcd cannot give another user these keys: the record is bound to
    // its user (copied to another user's key, it does not open).
    let v = TestUser::create();
    let rec = etcd.etcdctl(&[
        "get",
        &format!("pam-totp/v1/{ns}/vault/{}", u.name),
        "--print-value-only",
    ]);
    let rec = String::from_utf8(rec.stdout).unwrap();
    let out = etcd.etcdctl(&[
        "put",
        &format!("pam-totp/v1/{ns}/vault/{}", v.name),
        rec.trim_end_matches('\n'),
    ]);
    assert!(out.status.success());
    let r = b.f.auth("svc", &v.name, &[&fresh_code(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(r.logged(&["does not verify"]), "{:?}", r.logs);
}

#[test]
fn a_rotation_keeps_every_login_working() {
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let j = a.json(&["enroll", "--user", &u.name, "--json"]);
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    let backup: Vec<String> = j["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let key_id_of = |hex: &str| {
        let mut k = [0u8; 32];
        data_encoding::HEXLOWER.decode_mut(hex.as_bytes(), &mut k).unwrap();
        pam_totp_core::fleet::sealed::key_id(&k)
    };
    let record_key_id = || {
        let out = etcd.etcdctl(&[
            "get",
            &format!("pam-totp/v1/{ns}/vault/{}", u.name),
            "--print-value-only",
        ]);
        let v = String::from_utf8(out.stdout).unwrap();
        let state = pam_totp_core::fleet::document_state(v.trim_end().as_bytes()).to_vec();
        pam_totp_core::fleet::sealed::record_key_id(&state).unwrap()
    };
    assert_eq!(record_key_id(), key_id_of(K1));

    // 1. A new first line on every host; the old key stays as the second.
    for h in [&a, &b] {
        write_ring(&h.ring, &format!("{K2}\n{K1}"));
    }
    assert_eq!(
        b.f.auth("svc", &u.name, &[&backup[0]]).rc,
        PAM_SUCCESS,
        "old record, new ring"
    );
    // 2. Sealed again with the new key, on one host.
    let r = a.json(&["rekey", "--json"]);
    assert_eq!(r["key_id"], key_id_of(K2).as_str(), "{r}");
    assert_eq!(r["sealed_again"], serde_json::json!([u.name]), "{r}");
    assert!(r["failed"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(record_key_id(), key_id_of(K2));
    assert_eq!(b.f.auth("svc", &u.name, &[&backup[1]]).rc, PAM_SUCCESS);
    // Run again: nothing left to do.
    let r = a.json(&["rekey", "--json"]);
    assert_eq!(r["sealed_again"], serde_json::json!([]), "{r}");
    assert_eq!(r["current"], 1, "{r}");
    // 3. The old line removed everywhere: every login still works.
    for h in [&a, &b] {
        write_ring(&h.ring, K2);
    }
    let code = fresh_code(&key);
    let r = b.f.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    // A host still on the old key alone no longer reads it.
    let old = Host::start(&etcd, &ns, Some(K1));
    let r = old.f.auth("svc", &u.name, &[&backup[2]]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    // A changed enrollment on B (another authenticator, through root's CLI) is sealed with
    // the current key and read on A.
    let j = b.json(&["enroll", "--user", &u.name, "--add", "--name", "tablet", "--json"]);
    register_enrollment(&j);
    let tablet = j["secret"].as_str().unwrap().to_string();
    let r = a.f.auth("svc", &u.name, &[&fresh_code(&tablet)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert_eq!(record_key_id(), key_id_of(K2));
    // rekey refuses a record it cannot open, and says which.
    write_ring(&a.ring, K3);
    let (rc, out, err) = output(a.f.cli(&["rekey"]));
    assert_eq!(rc, 1, "{out} {err}");
    assert!(out.contains(&u.name) && out.contains("does not hold"), "{out}");
}

#[test]
fn a_hosts_own_vault_file_keeps_working_until_migrate_moves_it_into_the_fleet_vault() {
    let etcd = Etcd::single();
    let ns = ns();
    // Host A kept keys in its own vault before it joined the fleet.
    let a = Fixture::new();
    a.simple("svc", "");
    std::fs::write(a.root.join("pam_totp.conf"), "key_store = \"vault\"\n").unwrap();
    std::fs::create_dir(a.state_dir()).unwrap();
    std::fs::set_permissions(a.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let u = TestUser::create();
    let (rc, out, err) = output(a.cli(&["enroll", "--user", &u.name, "--json"]));
    assert_eq!(rc, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    let local = a.state_dir().join("vault").join(format!("{}.toml", u.name));
    assert!(local.exists());
    // It joins the fleet.
    let ring = a.root.join("vault.keys");
    write_ring(&ring, K1);
    let mut table = Stated::fleet_table(&etcd, &ns, 1500);
    table.push_str(&format!("vault_key_file = \"{}\"\n", ring.display()));
    let _sa = Stated::start(&a, "key_store = \"vault\"", &table);
    let b = Host::start(&etcd, &ns, Some(K1));
    // A reads its own file, and says the fleet vault does not have it yet; B cannot.
    clear_of_a_step_boundary();
    let r = a.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert!(r.logged(&["pam-totp migrate"]), "{:?}", r.logs);
    // migrate moves it: the file is gone, both hosts read the fleet's copy.
    let (rc, out, err) = output(a.cli(&["migrate", "--user", &u.name, "--json"]));
    assert_eq!(rc, 0, "{out} {err}");
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["migrated"][0]["user"], u.name.as_str(), "{m}");
    assert!(!local.exists(), "the host's file is removed");
    assert!(etcd_dump(&etcd, &ns).contains(&format!("/vault/{}", u.name)));
    // The next step's code (within the window, after the one A accepted).
    let code = oathtool(&key, now() + 30, "sha1", 6);
    let r = b.f.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert!(!r.logged(&["pam-totp migrate"]), "{:?}", r.logs);
    assert_eq!(a.auth("svc", &u.name, &[&code]).rc, PAM_AUTH_ERR, "one replay guard");
}

/// `pam-totp ARGS` run by `user` (not root) through the setuid helper installed in `host`,
/// whose /etc/security/pam_totp.conf (a private copy, bound in a mount namespace: the
/// helper reads the system's only) is the host's own.
fn as_user(helper: &Path, security: &Path, user: &TestUser, args: &[&str], stdin: &str) -> (i32, String, String) {
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

/// Seed 000 on a fleet: a normal user enrolls themselves once, on host A (the setuid helper
/// seals their keys into the fleet vault), and logs in on host B; a change needs a code, as
/// on one host, and is seen by every host.
#[test]
fn a_user_enrolls_themselves_on_host_a_and_logs_in_on_host_b() {
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let helper = a.f.root.join("pam-totp-vault");
    std::fs::copy(cli_path().with_file_name("pam-totp-vault"), &helper).unwrap();
    std::os::unix::fs::chown(&helper, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let security = a.f.root.join("etc-security");
    run("cp", &["-a", "/etc/security", security.to_str().unwrap()]);
    let conf = std::fs::read_to_string(&a.stated.config).unwrap();
    std::fs::write(
        security.join("pam_totp.conf"),
        format!("state_dir = \"{}\"\n{conf}", a.f.state_dir().display()),
    )
    .unwrap();
    std::fs::set_permissions(security.join("pam_totp.conf"), std::fs::Permissions::from_mode(0o644)).unwrap();

    let u = TestUser::create();
    let (rc, out, err) = as_user(&helper, &security, &u, &["enroll", "--json"], "");
    assert_eq!(rc, 0, "{out} {err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    assert!(a.holds_no_key_file() && b.holds_no_key_file() && !u.secret_path().exists());
    assert!(!holds_key(etcd_dump(&etcd, &ns).as_bytes(), &key));

    let code = fresh_code(&key);
    let r = b.f.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);

    // status through the helper names the fleet vault and shows no key.
    let (rc, out, _) = as_user(&helper, &security, &u, &["status", "--json"], "");
    assert_eq!(rc, 0, "{out}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["place"], "vault", "{st}");
    assert!(!out.contains(&key));

    // Malware running as the user cannot add its phone: no code, a wrong one.
    let before = etcd_dump(&etcd, &ns);
    let (rc, _, err) = as_user(
        &helper,
        &security,
        &u,
        &["enroll", "--add", "--json", "--name", "malware"],
        "",
    );
    assert_eq!(rc, 1, "{err}");
    let (rc, _, err) = as_user(
        &helper,
        &security,
        &u,
        &["enroll", "--add", "--json", "--name", "malware"],
        &format!("{}\n", wrong_code(&key)),
    );
    assert_eq!(rc, 1);
    assert!(err.contains("wrong code"), "{err}");
    let sealed = |d: &str| d.lines().find(|l| l.starts_with("sealed = ")).map(str::to_string);
    assert_eq!(
        sealed(&etcd_dump(&etcd, &ns)),
        sealed(&before),
        "the keys did not change"
    );
    // With a current code (the next step's): the tablet is added, and B takes its codes.
    let next = oathtool(&key, now() + 30, "sha1", 6);
    let (rc, out, err) = as_user(
        &helper,
        &security,
        &u,
        &["enroll", "--add", "--json", "--name", "tablet"],
        &format!("{next}\n"),
    );
    assert_eq!(rc, 0, "{out} {err}");
    let j2: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&j2);
    let tablet = j2["secret"].as_str().unwrap();
    let r = b.f.auth("svc", &u.name, &[&fresh_code(tablet)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
}

fn doctor_findings(f: &Fixture, check: &str) -> Vec<(String, String)> {
    let pam = f.root.join("doctor-pam.d");
    let _ = std::fs::create_dir_all(&pam);
    let sshd = f.root.join("sshd_config");
    std::fs::write(&sshd, "UsePAM yes\n").unwrap();
    let (_, json, err) = output(f.cli(&[
        "doctor",
        "--pam-dir",
        pam.to_str().unwrap(),
        "--sshd-config",
        sshd.to_str().unwrap(),
        "--json",
    ]));
    let j: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json} {err}"));
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["check"] == check)
        .map(|x| {
            (
                x["severity"].as_str().unwrap().to_string(),
                x["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn doctor_checks_the_vault_key_and_report_says_whose_keys_are_in_the_fleet_vault() {
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let d = doctor_findings(&a.f, "fleet-vault");
    assert_eq!(d[0].0, "ok", "{d:?}");
    assert!(
        d.iter().any(|(s, m)| s == "warning" && m.contains("migrate --all")),
        "not retired yet: {d:?}"
    );
    // `migrate --all` (nobody to move) retires this host's own key files.
    let (rc, out, err) = output(a.f.cli(&["migrate", "--all"]));
    assert_eq!(rc, 0, "{out} {err}");
    let d = doctor_findings(&a.f, "fleet-vault");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "ok", "{d:?}");
    // Not set, unreadable by rule (group/other bits), or not a key: an error naming it.
    let none = Host::start(&etcd, &ns, None);
    let d = doctor_findings(&none.f, "fleet-vault");
    assert!(d[0].0 == "error" && d[0].1.contains("fleet.vault_key_file"), "{d:?}");
    std::fs::set_permissions(&a.ring, std::fs::Permissions::from_mode(0o640)).unwrap();
    let d = doctor_findings(&a.f, "fleet-vault");
    assert!(d[0].0 == "error" && d[0].1.contains("vault.keys"), "{d:?}");
    write_ring(&a.ring, "deadbeef-secret-material");
    let d = doctor_findings(&a.f, "fleet-vault");
    assert!(d[0].0 == "error" && d[0].1.contains("line 2"), "{d:?}");
    assert!(!d[0].1.contains("deadbeef"), "the file's text is never shown: {d:?}");
    write_ring(&a.ring, K1);

    let u = TestUser::create();
    let j = a.json(&["enroll", "--user", &u.name, "--json"]);
    register_enrollment(&j);
    let r = a.json(&["report", "--json", "--all-users"]);
    let row = r["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["user"] == u.name.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["keys"], "fleet", "{row}");
    assert_eq!(row["enrolled"], true, "{row}");
    // A user left in this host's own vault is a warning (other hosts cannot read them).
    std::fs::create_dir_all(a.f.state_dir().join("vault")).unwrap();
    std::fs::write(a.f.state_dir().join("vault").join("someone.toml"), "version = 2\n").unwrap();
    let d = doctor_findings(&a.f, "fleet-vault");
    assert!(
        d.iter()
            .any(|(s, m)| s == "warning" && m.contains("pam-totp migrate --all")),
        "{d:?}"
    );
}

/// `store_unavailable = "local"`: a host keeps its copy of each record it read (sealed), and
/// reads it only while etcd is down; a host that never read the user's record has nothing to
/// fall back on and refuses.
#[test]
fn while_etcd_is_down_a_host_with_the_fallback_reads_its_sealed_copy_of_the_record() {
    let mut etcd = Etcd::single();
    let ns = ns();
    let local = "store_unavailable = \"local\"";
    let a = Host::start_with(&etcd, &ns, Some(K1), local, 800);
    let b = Host::start_with(&etcd, &ns, Some(K1), local, 800);
    let u = TestUser::create();
    let j = a.json(&["enroll", "--user", &u.name, "--json"]);
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    clear_of_a_step_boundary();
    let r = a.f.auth("svc", &u.name, &[&oathtool(&key, now() - 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    // A's copy: root's, private, sealed (no key in it).
    let copy = a.f.state_dir().join("fleet-vault").join(&u.name);
    let md = std::fs::metadata(&copy).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o600));
    assert!(!holds_key(&std::fs::read(&copy).unwrap(), &key));
    assert!(!b.f.state_dir().join("fleet-vault").join(&u.name).exists());

    etcd.kill(0);
    // An outage once etcd has answered nothing for three deadlines (800 ms here).
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let r = a.f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert!(r.logged(&["degraded"]), "{:?}", r.logs);
    let r = b.f.auth("svc", &u.name, &[&oathtool(&key, now() + 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
    assert!(r.logged(&["this host has no copy of the record"]), "{:?}", r.logs);
}

/// A host's own file beside the fleet's record: harmless when it holds the same keys (left
/// over from a migration, and `migrate` removes it), refused when it holds others (two
/// enrollments: one may not be the user's).
#[test]
fn a_file_left_beside_the_fleet_record_is_harmless_with_the_same_keys_and_refused_with_others() {
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let j = a.json(&["enroll", "--user", &u.name, "--json"]);
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    let vault = b.f.state_dir().join("vault");
    std::fs::create_dir_all(&vault).unwrap();
    std::fs::set_permissions(b.f.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = vault.join(format!("{}.toml", u.name));
    let write = |k: &str| {
        std::fs::write(
            &file,
            format!("version = 2\n[[device]]\nname = \"phone\"\nsecret = \"{k}\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(&key);
    clear_of_a_step_boundary();
    let r = b.f.auth("svc", &u.name, &[&oathtool(&key, now() - 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "the same keys: {:?}", r.logs);
    let other = random_key_b32();
    register_secret(&other);
    write(&other);
    for k in [&key, &other] {
        let r = b.f.auth("svc", &u.name, &[&code_now(k)]);
        assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}", r.logs);
        assert!(r.logged(&["keys in two places"]), "{:?}", r.logs);
    }
    write(&key);
    let m = b.json(&["migrate", "--user", &u.name, "--json"]);
    assert_eq!(m["already"][0]["removed"][0], file.to_str().unwrap(), "{m}");
    assert!(!file.exists());
    let r = b.f.auth("svc", &u.name, &[&oathtool(&key, now() + 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
}
