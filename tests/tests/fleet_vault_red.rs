//! The attacker's pass over the fleet vault: each test is one of its attacks and asserts the
//! safe behaviour (each failed before its fix).

use pam_totp_tests::fleet::Etcd;
use pam_totp_tests::fleet_vault::{ns, Host, K1};
use pam_totp_tests::*;

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
    let (key, _) = a.enroll(&u, &[]);
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
    // Host A: keys in its own vault before it joined the fleet (the documented set-up).
    let u = TestUser::create();
    let (a, key) = Host::joined_with_own_vault(&etcd, &ns, K1, &u);
    clear_of_a_step_boundary();
    assert_eq!(a.f.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
    let b = Host::start(&etcd, &ns, Some(K1));

    // Malware running as the user on host B: trust on first use there (no code asked).
    let (rc, out, err) = b.as_user(&u, &["enroll", "--json", "--name", "malware"], "");
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
    let (old, _) = a.enroll(&u, &[]);
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
    let u = TestUser::create();
    let (a, old) = Host::joined_with_own_vault(&etcd, &ns, K1, &u);
    let b = Host::start(&etcd, &ns, Some(K1));
    // The user's fleet enrollment (root, on B); A's own file is now "left over and ignored".
    b.enroll(&u, &[]);
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
