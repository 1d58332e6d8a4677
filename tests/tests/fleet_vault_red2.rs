//! A second attacker's pass over the fleet vault (`store = "fleet"`, `key_store = "vault"`):
//! each test is one attack that succeeded before its fix and asserts the safe behaviour (the
//! fourth finding of the pass, a deleted record on a host never retired, is in fleet_vault.rs:
//! `a_deleted_record_reaches_no_home_file_on_a_new_host_once_migrate_all_retired_it`).

use pam_totp_tests::fleet::Etcd;
use pam_totp_tests::fleet_vault::{ns, Host, K1};
use pam_totp_tests::*;

/// Finding: after `pam-totp reset --user NAME` on the fleet, whose message says "They must
/// run `pam-totp enroll` again", the user can never enroll themselves: the fleet's reset keeps
/// the replay guards (so that spent codes stay spent), and the helper counts any replay guard
/// as "a trace of an enrollment" and refuses trust on first use, telling the user to have an
/// administrator run `reset` — which keeps the guards again. An ordinary sequence (lost
/// phone → reset → enroll) locks the user out until root enrolls them.
#[test]
fn red_after_a_fleet_reset_the_user_can_enroll_themselves_again() {
    let _homes = home_files();
    let etcd = Etcd::single();
    let ns = ns();
    let a = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let (rc, out, err) = a.as_user(&u, &["enroll", "--json"], "");
    assert_eq!(rc, 0, "{out} {err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&j);
    let key = j["secret"].as_str().unwrap().to_string();
    let r = a.f.auth("svc", &u.name, &[&fresh_code(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);

    // Lost phone: the administrator resets the user, who is told to enroll again.
    let (rc, out, err) = output(a.f.cli(&["reset", "--user", &u.name]));
    assert_eq!(rc, 0, "{out} {err}");
    assert!(out.contains("pam-totp enroll"), "{out}");

    let (rc, out, err) = a.as_user(&u, &["enroll", "--json"], "");
    if rc == 0 {
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        register_enrollment(&j);
    }
    assert_eq!(
        rc, 0,
        "after a reset the user cannot enroll themselves again: {out} {err}"
    );
}

/// Finding: this host's copy is replaced only by a record of a higher etcd revision ("never an
/// older one over it"), and the record this host itself writes goes through the same rule.
/// etcd revisions are not monotonic across a restore from a snapshot or a move to a new
/// cluster: afterwards every record has a lower revision than this host's copies, so no login
/// and no write of this host replaces them (nor empties them) for as long as the new
/// cluster's revisions stay below the old ones. Here: the fleet moves to a new etcd cluster
/// (its data copied), the user's phone is stolen, root runs `enroll --user --force` on this
/// very host (docs: "updates its copy at once"), then etcd goes down: the stolen phone's key
/// logs in from the copy.
#[test]
fn red_a_replaced_key_must_not_come_back_from_the_copy_after_etcd_was_restored() {
    let _homes = home_files();
    let old_etcd = Etcd::single();
    let ns = ns();
    // An etcd that has seen some history (any real one has).
    for i in 0..40 {
        assert!(old_etcd.etcdctl(&["put", &format!("other/{i}"), "x"]).status.success());
    }
    let local = "store_unavailable = \"local\"";
    let mut a = Host::start_with(&old_etcd, &ns, Some(K1), local, 800);
    let u = TestUser::create();
    let (stolen, _) = a.enroll(&u, &[]);
    clear_of_a_step_boundary();
    let r = a.f.auth("svc", &u.name, &[&oathtool(&stolen, now() - 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);
    let copy = a.f.state_dir().join("fleet-vault").join(&u.name);
    assert!(std::fs::read_to_string(&copy).unwrap().len() > 10);

    // The fleet moves to a new cluster (or etcd is restored from a snapshot): the user's
    // record is carried over, with etcd's new revision.
    let mut new_etcd = Etcd::single();
    let key = format!("pam-totp/v1/{ns}/vault/{}", u.name);
    let out = old_etcd.etcdctl(&["get", &key, "--print-value-only"]);
    let value = String::from_utf8(out.stdout).unwrap();
    let value = value.strip_suffix('\n').unwrap_or(&value);
    assert!(new_etcd.etcdctl(&["put", &key, value]).status.success());
    let conf = std::fs::read_to_string(&a.stated.config).unwrap();
    let conf = conf.replace(&old_etcd.endpoints()[0], &new_etcd.endpoints()[0]);
    std::fs::write(&a.stated.config, conf).unwrap();
    a.stated.stop();
    a.stated.restart();
    drop(old_etcd);
    // The record still opens on the new cluster.
    let r = a.f.auth("svc", &u.name, &[&oathtool(&stolen, now() + 30, "sha1", 6)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);

    // The phone is stolen: root replaces the user's keys, on this very host.
    let j = a.json(&["enroll", "--user", &u.name, "--force", "--json"]);
    register_enrollment(&j);

    new_etcd.kill(0);
    std::thread::sleep(std::time::Duration::from_millis(3000));
    clear_of_a_step_boundary();
    let r = a.f.auth("svc", &u.name, &[&code_now(&stolen)]);
    assert_ne!(
        r.rc, PAM_SUCCESS,
        "the replaced (stolen) key logged in from this host's copy, which the replacement did not touch: {:?}",
        r.logs
    );
}

/// Finding: `enroll --force` through the setuid helper replaces the fleet's record, then
/// reads the user's keys again for its answer — and this host's own file of the user that
/// held the same keys as the old record ("harmless, left over": a home file on a host whose
/// homes are not shared, not migrated yet; root's `enroll --user --force` removes it) is now
/// "keys in two places". The helper answers with that error, and `pam-totp` tells the user
/// "nothing was saved (delete the new entry from the app if it was added there)" — while the
/// record holds only the new key. A user who does as told is left with the old key, which
/// no host takes any more: locked out of the whole fleet.
#[test]
fn red_a_users_own_enroll_force_must_not_say_nothing_was_saved_when_it_was() {
    let _homes = home_files();
    let etcd = Etcd::single();
    let ns = ns();
    let b = Host::start(&etcd, &ns, Some(K1));
    let c = Host::start(&etcd, &ns, Some(K1));
    let u = TestUser::create();
    let (key, _) = b.enroll(&u, &[]);
    // The same keys left in the user's home (harmless: the login works).
    u.enroll(&key, "");
    let r = b.f.auth("svc", &u.name, &[&fresh_code(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}", r.logs);

    // The user replaces their enrollment themselves (a new phone), with a current code.
    let proof = oathtool(&key, now() + 30, "sha1", 6);
    let (rc, out, err) = b.as_user(&u, &["enroll", "--force", "--json"], &format!("{proof}\n"));
    if rc == 0 {
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        register_enrollment(&j);
        return;
    }
    // Refused, "nothing was saved": then the old key must still be the user's (the home
    // file, which every test host shares, taken away so that it is not in the way).
    std::fs::remove_file(u.secret_path()).unwrap();
    let r = c.f.auth("svc", &u.name, &[&oathtool(&key, now() + 60, "sha1", 6)]);
    assert_eq!(
        r.rc,
        PAM_SUCCESS,
        "enroll --force said \"{}\" but replaced the keys: the old key no longer logs in on another host: {:?}",
        err.trim(),
        r.logs
    );
}
