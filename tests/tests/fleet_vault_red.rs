//! Red-team reproducers for the fleet vault (branch `red`). Each test asserts the SAFE
//! behaviour; a failing test is a finding.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pam_totp_tests::fleet::{Etcd, Stated};
use pam_totp_tests::*;

const K1: &str = "6b9d2a4f0c7e13a85d21f0e9c4b7a3168e5d2c1b0a99887766554433221100ff";

struct Host {
    f: Fixture,
    stated: Stated,
    #[allow(dead_code)]
    ring: PathBuf,
}

impl Host {
    fn start(etcd: &Etcd, ns: &str, ring: Option<&str>) -> Host {
        Host::start_with(etcd, ns, ring, "", 1500)
    }
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
    /// The setuid helper installed for this host, and a private /etc/security whose
    /// pam_totp.conf is this host's.
    fn helper(&self) -> (PathBuf, PathBuf) {
        let helper = self.f.root.join("pam-totp-vault");
        if !helper.exists() {
            std::fs::copy(cli_path().with_file_name("pam-totp-vault"), &helper).unwrap();
            std::os::unix::fs::chown(&helper, Some(0), Some(0)).unwrap();
            std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o4755)).unwrap();
        }
        let security = self.f.root.join("etc-security");
        if !security.exists() {
            run("cp", &["-a", "/etc/security", security.to_str().unwrap()]);
        }
        let conf = std::fs::read_to_string(&self.stated.config).unwrap();
        std::fs::write(
            security.join("pam_totp.conf"),
            format!("state_dir = \"{}\"\n{conf}", self.f.state_dir().display()),
        )
        .unwrap();
        std::fs::set_permissions(security.join("pam_totp.conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
        (helper, security)
    }
}

fn write_ring(path: &Path, text: &str) {
    std::fs::write(path, format!("# the fleet vault's keys, newest first\n{text}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn ns() -> String {
    format!("r{}", random_hex(4))
}

/// `pam-totp ARGS` run by `user` (not root) through `host`'s setuid helper.
fn as_user(host: &Host, user: &TestUser, args: &[&str], stdin: &str) -> (i32, String, String) {
    let (helper, security) = host.helper();
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
    let mut c = in_namespace(&[(&security, "/etc/security")], "runuser", &all);
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

/// Finding: an absent fleet record falls back to the user-writable home secret file even
/// though the fleet state records that the user enrolled. Someone who can write etcd's prefix
/// (docs: "cannot give anyone keys") deletes the record; a process running as the user
/// (which the vault's proof exists to stop) writes its own key into ~/.config/pam-totp;
/// that key then logs in on every host.
#[test]
fn red_deleting_the_record_must_not_hand_the_login_to_a_home_file_the_user_wrote() {
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let b = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let j = a.json(&["enroll", "--user", &u.name, "--json"]);
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    let r = b.f.auth("svc", &u.name, &[&fresh_code(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);

    // etcd writer: delete the sealed record (state left alone: it says "enrolled").
    let out = etcd.etcdctl(&["del", &format!("pam-totp/v1/{ns}/vault/{}", u.name)]);
    assert!(out.status.success());
    // Malware as the user: its own key in the user's home.
    let evil = random_key_b32();
    register_secret(&evil);
    u.enroll(&evil, "");

    clear_of_a_step_boundary();
    let r = b.f.auth("svc", &u.name, &[&code_now(&evil)]);
    assert_ne!(
        r.rc, PAM_SUCCESS,
        "a key the user wrote in their home let them in after the fleet record was deleted: {:?}",
        r.logs
    );
}

/// Finding: with the fleet vault, key_file() prefers a fleet record over this host's own
/// vault file (and over a home file). A user whose keys are still in host A's own vault
/// (not migrated yet; A's enrollment never reached the fleet state) can be TOFU-enrolled
/// through the setuid helper on host B by a process running as that user — no code asked —
/// and that enrollment then replaces their keys on host A too.
#[test]
fn red_a_tofu_enrollment_on_host_b_must_not_replace_keys_host_a_keeps_in_its_own_vault() {
    let etcd = Etcd::single();
    let ns = ns();
    // Host A: keys in its own vault before it joined the fleet.
    let a_fix = Fixture::new();
    a_fix.simple("svc", "");
    std::fs::write(a_fix.root.join("pam_totp.conf"), "key_store = \"vault\"\n").unwrap();
    std::fs::create_dir(a_fix.state_dir()).unwrap();
    std::fs::set_permissions(a_fix.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let u = TestUser::create();
    let (rc, out, err) = output(a_fix.cli(&["enroll", "--user", &u.name, "--json"]));
    assert_eq!(rc, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    clear_of_a_step_boundary();
    assert_eq!(a_fix.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
    // A joins the fleet (the documented set-up).
    let ring = a_fix.root.join("vault.keys");
    write_ring(&ring, K1);
    let mut table = Stated::fleet_table(&etcd, &ns, 1500);
    table.push_str(&format!("vault_key_file = \"{}\"\n", ring.display()));
    let sa = Stated::start(&a_fix, "key_store = \"vault\"", &table);
    let a = Host {
        f: a_fix,
        stated: sa,
        ring,
    };
    let b = Host::start(&etcd, &ns, Some(K1));

    // Malware running as the user on host B: trust on first use there (no code asked).
    let (rc, out, err) = as_user(&b, &u, &["enroll", "--json", "--name", "malware"], "");
    if rc != 0 {
        // Refused: held up.
        eprintln!("TOFU on B refused: {out} {err}");
        return;
    }
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&m);
    let evil = m["secret"].as_str().unwrap().to_string();

    // On host A, the user's keys must still be their own.
    let r = a.f.auth("svc", &u.name, &[&oathtool(&evil, now() + 30, "sha1", 6)]);
    assert_ne!(
        r.rc, PAM_SUCCESS,
        "the malware's enrollment on host B replaced the user's keys on host A: {:?}",
        r.logs
    );
}

/// Finding: with `store_unavailable = "local"`, a change made ON THIS HOST (`enroll --force`
/// after a stolen phone, `devices remove`, `reset`) does not touch this host's sealed copy —
/// only a later login refreshes it — and copies never expire. During an etcd outage the
/// replaced key opens the user's account from the stale copy.
#[test]
fn red_a_replaced_key_must_not_come_back_from_this_hosts_copy_during_an_outage() {
    let mut etcd = Etcd::single();
    let ns = ns();
    let local = "store_unavailable = \"local\"";
    let a = Host::start_with(&etcd, &ns, Some(K1), local, 800);
    let u = TestUser::create();
    let j = a.json(&["enroll", "--user", &u.name, "--json"]);
    register_enrollment(&j);
    let old = j["secret"].as_str().unwrap().to_string();
    clear_of_a_step_boundary();
    let r = a.f.auth("svc", &u.name, &[&oathtool(&old, now() - 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    let copy = a.f.state_dir().join("fleet-vault").join(&u.name);
    let before = std::fs::read_to_string(&copy).unwrap();

    // The phone was stolen: root replaces the user's keys, on this very host.
    let j = a.json(&["enroll", "--user", &u.name, "--force", "--json"]);
    register_enrollment(&j);
    let new = j["secret"].as_str().unwrap().to_string();
    let after = std::fs::read_to_string(&copy).unwrap_or_default();
    eprintln!("copy unchanged by the replacement: {}", before == after);

    etcd.kill(0);
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let r = a.f.auth("svc", &u.name, &[&code_now(&old)]);
    assert_ne!(
        r.rc, PAM_SUCCESS,
        "the replaced (stolen) key logged in from this host's stale copy: {:?}",
        r.logs
    );
    let _ = new;
}

/// An etcd writer's record of deep nesting (within the 64 KiB document limit) must be
/// refused, not overflow the stack of the process the module runs in (8 MiB, sshd's main
/// thread).
#[test]
fn red_a_deeply_nested_record_is_refused_without_overflowing_the_stack() {
    let depth = 32 * 1024 - 8;
    let text = format!("a = {}{}\n", "[".repeat(depth), "]".repeat(depth));
    assert!(text.len() <= pam_totp_core::fleet::MAX_DOCUMENT);
    let ring = pam_totp_core::fleet::sealed::Ring::parse(K1).unwrap();
    let h = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || pam_totp_core::fleet::sealed::open(&ring, "ns", "u", text.as_bytes()).is_err())
        .unwrap();
    assert!(h.join().unwrap());
    // The same as a table nesting.
    let text = format!("{}\n", "a = {".repeat(12000) + &"}".repeat(12000));
    let h = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let ring = pam_totp_core::fleet::sealed::Ring::parse(K1).unwrap();
            pam_totp_core::fleet::sealed::open(&ring, "ns", "u", text.as_bytes()).is_err()
        })
        .unwrap();
    assert!(h.join().unwrap());
}

/// Finding (same cause as the first): a key left in a host's own vault ("left over and
/// ignored", says migrate) comes back to life when the fleet record goes — here through the
/// documented remedy for a lost phone, `pam-totp reset --user` on another host.
#[test]
fn red_a_reset_on_host_b_must_not_bring_back_a_key_left_in_host_as_own_vault() {
    let etcd = Etcd::single();
    let ns = ns();
    let a_fix = Fixture::new();
    a_fix.simple("svc", "");
    std::fs::write(a_fix.root.join("pam_totp.conf"), "key_store = \"vault\"\n").unwrap();
    std::fs::create_dir(a_fix.state_dir()).unwrap();
    std::fs::set_permissions(a_fix.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let u = TestUser::create();
    let (rc, out, err) = output(a_fix.cli(&["enroll", "--user", &u.name, "--json"]));
    assert_eq!(rc, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&j);
    let old = j["secret"].as_str().unwrap().to_string();
    let ring = a_fix.root.join("vault.keys");
    write_ring(&ring, K1);
    let mut table = Stated::fleet_table(&etcd, &ns, 1500);
    table.push_str(&format!("vault_key_file = \"{}\"\n", ring.display()));
    let sa = Stated::start(&a_fix, "key_store = \"vault\"", &table);
    let a = Host {
        f: a_fix,
        stated: sa,
        ring,
    };
    let b = Host::start(&etcd, &ns, Some(K1));
    // The user's fleet enrollment (root, on B); A's own file is now "left over and ignored".
    let j = b.json(&["enroll", "--user", &u.name, "--json"]);
    register_enrollment(&j);
    // Keys in two places (A's own file holds other keys than the fleet's record): migrate
    // touches neither and says so; A refuses the user until an administrator decides.
    let (rc, out, err) = output(a.f.cli(&["migrate", "--user", &u.name, "--json"]));
    assert_eq!(rc, 1, "{out} {err}");
    assert!(out.contains("keys in two places"), "{out}");
    clear_of_a_step_boundary();
    let r = a.f.auth("svc", &u.name, &[&code_now(&old)]);
    assert_ne!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    assert!(r.logged(&["keys in two places"]), "{:?}", r.logs);

    // The phone (holding both keys) is lost: the admin resets the user, on B.
    let (rc, out, err) = output(b.f.cli(&["reset", "--user", &u.name]));
    assert_eq!(rc, 0, "{out} {err}");
    let r = a.f.auth("svc", &u.name, &[&oathtool(&old, now() + 30, "sha1", 6)]);
    assert_ne!(
        r.rc, PAM_SUCCESS,
        "after a reset, the key left in host A's own vault logs in again: {:?}",
        r.logs
    );
}
