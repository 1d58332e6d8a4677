//! The fleet vault (`store = "fleet"`, `key_store = "vault"`): users' keys in etcd, sealed
//! with the fleet's vault key, so one enrollment serves every host of a namespace. Real etcd
//! on 127.0.0.1, a real `pam-totp-stated` per "host", the real module through the real
//! libpam, the real command line (and the real setuid helper for self-service).

use std::os::unix::fs::PermissionsExt;

use pam_totp_tests::fleet::Etcd;
use pam_totp_tests::fleet_vault::{etcd_dump, holds_key, ns, write_ring, Host, K1, K2, K3};
use pam_totp_tests::*;

#[test]
fn one_enrollment_on_host_a_serves_host_b_sealed_in_etcd_and_no_other_key_opens_it() {
    let _homes = home_files();
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let (key, backup) = a.enroll(&u, &[]);
    assert!(backup.len() >= 2, "{backup:?}");

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
    let _homes = home_files();
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let (key, backup) = a.enroll(&u, &[]);
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
    let _homes = home_files();
    let etcd = Etcd::single();
    let ns = ns();
    // Host A kept keys in its own vault before it joined the fleet.
    let u = TestUser::create();
    let (host_a, key) = Host::joined_with_own_vault(&etcd, &ns, K1, &u);
    let a = &host_a.f;
    let local = a.state_dir().join("vault").join(format!("{}.toml", u.name));
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

/// Seed 000 on a fleet: a normal user enrolls themselves once, on host A (the setuid helper
/// seals their keys into the fleet vault), and logs in on host B; a change needs a code, as
/// on one host, and is seen by every host.
#[test]
fn a_user_enrolls_themselves_on_host_a_and_logs_in_on_host_b() {
    let _homes = home_files();
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let (rc, out, err) = a.as_user(&u, &["enroll", "--json"], "");
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
    let (rc, out, _) = a.as_user(&u, &["status", "--json"], "");
    assert_eq!(rc, 0, "{out}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["place"], "vault", "{st}");
    assert!(!out.contains(&key));

    // Malware running as the user cannot add its phone: no code, a wrong one.
    let before = etcd_dump(&etcd, &ns);
    let (rc, _, err) = a.as_user(&u, &["enroll", "--add", "--json", "--name", "malware"], "");
    assert_eq!(rc, 1, "{err}");
    let (rc, _, err) = a.as_user(
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
    let (rc, out, err) = a.as_user(
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
    let _homes = all_homes();
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
    a.enroll(&u, &[]);
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
    let _homes = home_files();
    let mut etcd = Etcd::single();
    let ns = ns();
    let local = "store_unavailable = \"local\"";
    let a = Host::start_with(&etcd, &ns, Some(K1), local, 800);
    let b = Host::start_with(&etcd, &ns, Some(K1), local, 800);
    let u = TestUser::create();
    let (key, _) = a.enroll(&u, &[]);
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
    let _homes = home_files();
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let (key, _) = a.enroll(&u, &[]);
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
    // A new enrollment by root on B (the user's phone was lost): the fleet's record is
    // replaced and B's own file goes with it — one place again.
    let (newkey, _) = b.enroll(&u, &["--force"]);
    assert!(!file.exists(), "the file beside the record is removed by --force");
    let r = a.f.auth("svc", &u.name, &[&code_now(&newkey)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    // A file with the same keys as the record is left over: migrate removes it.
    write(&newkey);
    let key = newkey;
    let m = b.json(&["migrate", "--user", &u.name, "--json"]);
    assert_eq!(m["already"][0]["removed"][0], file.to_str().unwrap(), "{m}");
    assert!(!file.exists());
    let r = b.f.auth("svc", &u.name, &[&oathtool(&key, now() + 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
}

/// The keys are read once before the prompt and again once the code is typed: replaced on
/// another host while a login on B waits at its prompt (the phone was stolen), the old
/// phone's code is refused.
#[test]
fn keys_replaced_elsewhere_while_a_login_waits_at_its_prompt_refuse_the_old_code() {
    let _homes = home_files();
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let (old, _) = a.enroll(&u, &[]);
    let code = fresh_code(&old);
    let gate = b.f.root.join("gate");
    let child =
        b.f.harness("svc", &u.name, &[&code], &["--answer-after", gate.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let prompted = b.f.root.join("gate.prompted");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !prompted.exists() {
        assert!(std::time::Instant::now() < until, "the login never reached its prompt");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    a.enroll(&u, &["--force"]);
    std::fs::write(&gate, "").unwrap();
    let r = PamRun::parse(&child.wait_with_output().unwrap());
    assert_eq!(r.rc, PAM_AUTH_ERR, "the replaced phone's code: {:?}", r.logs);
}

/// A host that joins the fleet vault with nobody to migrate is not retired until `pam-totp
/// migrate --all` runs on it (doctor warns until then): before, a user the fleet vault has no
/// record for is read from their home file, so an etcd writer deleting a record and malware
/// writing the user's home together pass the second factor there. `migrate --all` (nobody to
/// move) retires the host, and the same attack is refused.
#[test]
fn a_deleted_record_reaches_no_home_file_on_a_new_host_once_migrate_all_retired_it() {
    let _homes = all_homes();
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let c = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let (key, _) = a.enroll(&u, &[]);
    let r = a.f.auth("svc", &u.name, &[&fresh_code(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);

    // The new host says it is not retired yet, and `migrate --all` retires it.
    let d = doctor_findings(&c.f, "fleet-vault");
    assert!(
        d.iter().any(|(s, m)| s == "warning" && m.contains("migrate --all")),
        "{d:?}"
    );
    let (rc, out, err) = output(c.f.cli(&["migrate", "--all"]));
    assert_eq!(rc, 0, "{out} {err}");
    assert!(err.contains("fleet vault only"), "{err}");

    // etcd writer: the sealed record goes (the state, which says "enrolled", stays).
    let out = etcd.etcdctl(&["del", &format!("pam-totp/v1/{ns}/vault/{}", u.name)]);
    assert!(out.status.success());
    // Malware as the user: its own key in the user's home.
    let evil = random_key_b32();
    register_secret(&evil);
    u.enroll(&evil, "");
    clear_of_a_step_boundary();
    let r = c.f.auth("svc", &u.name, &[&code_now(&evil)]);
    assert_ne!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
}

/// Root's `enroll --user NAME --force` replaces a record this host cannot open (sealed with a
/// key its ring lacks, as by a host of another fleet that shares the namespace by mistake,
/// or forged): `--force` promises to replace keys nobody can read, without a `reset` first.
#[test]
fn roots_enroll_force_replaces_a_record_this_host_cannot_open() {
    let _homes = home_files();
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let other = Host::start(&etcd, &ns, Some(K2));
    let u = TestUser::create();
    let (theirs, _) = other.enroll(&u, &[]);
    let r = a.f.auth("svc", &u.name, &[&fresh_code(&theirs)]);
    assert_ne!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert!(r.logged(&["does not hold"]), "{:?}", r.logs);

    let j = a.json(&["enroll", "--user", &u.name, "--force", "--json"]);
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    let r = a.f.auth("svc", &u.name, &[&fresh_code(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    // Sealed with this host's key now: the other ring no longer opens it.
    let r = other.f.auth("svc", &u.name, &[&oathtool(&key, now() + 30, "sha1", 6)]);
    assert_ne!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
}
