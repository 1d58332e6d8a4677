//! A compare-and-swap whose answer etcd lost (a member killed after it committed, or one that
//! did not answer in time): the daemon looks for it by its write id before it sends it again,
//! so the login it was for is accepted — once — instead of being refused as a replay of its
//! own spend. Real etcd, real daemons, the real module through libpam; the answer is lost
//! by the daemon's debug-build test hook (`PAM_TOTP_STATED_TEST_LOSE_CAS`), and a gate holds
//! the daemon between the lost answer and its next try while the test writes on top.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use pam_totp_tests::fleet::{enrolled_user as user, Etcd, Stated};
use pam_totp_tests::*;

struct Hosts {
    /// Host A: its daemon loses the answer to the first try of every compare-and-swap.
    a: Fixture,
    sa: Stated,
    gate: PathBuf,
    /// Host B: a daemon without the hook, on the same namespace.
    b: Fixture,
    _sb: Stated,
    ns: String,
}

fn hosts(etcd: &Etcd, mode: &str) -> Hosts {
    let ns = format!("t{}", random_hex(4));
    let table = Stated::fleet_table(etcd, &ns, 1900);
    let (a, b) = (Fixture::new(), Fixture::new());
    a.simple("svc", "max_failures=100");
    b.simple("svc", "max_failures=100");
    let gate = a.root.join("gate");
    let sa = Stated::start_with_env(
        &a,
        "",
        &table,
        &[
            ("PAM_TOTP_STATED_TEST_LOSE_CAS", mode),
            ("PAM_TOTP_STATED_TEST_GATE", gate.to_str().unwrap()),
        ],
    );
    let sb = Stated::start(&b, "", &table);
    Hosts {
        a,
        sa,
        gate,
        b,
        _sb: sb,
        ns,
    }
}

fn lost_marker(gate: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lost", gate.display()))
}

impl Hosts {
    /// Starts a login on A; returns once A's daemon has lost the answer to its
    /// compare-and-swap and waits at the gate.
    fn start_on_a(&self, user: &str, code: &str) -> Child {
        let _ = std::fs::remove_file(&self.gate);
        let _ = std::fs::remove_file(lost_marker(&self.gate));
        let child = self
            .a
            .harness("svc", user, &[code], &[])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while !lost_marker(&self.gate).exists() {
            assert!(
                Instant::now() < until,
                "A's daemon lost no answer: {}",
                self.sa.log_text()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        child
    }

    fn finish_on_a(&self, child: Child) -> PamRun {
        std::fs::write(&self.gate, "").unwrap();
        PamRun::parse(&child.wait_with_output().unwrap())
    }

    /// A login on A whose daemon loses its answer and goes on at once.
    fn login_on_a(&self, user: &str, code: &str) -> PamRun {
        let child = self.start_on_a(user, code);
        self.finish_on_a(child)
    }

    /// An enrolled user who has a document in etcd: a wrong code, refused on B, wrote it.
    fn user_with_a_document(&self) -> (TestUser, String) {
        let (u, key) = user();
        assert_eq!(self.b.auth("svc", &u.name, &[&wrong_code(&key)]).rc, PAM_AUTH_ERR);
        (u, key)
    }

    fn dropped(&self) -> usize {
        self.sa
            .log_text()
            .matches("the answer to a compare-and-swap is dropped")
            .count()
    }
}

#[test]
fn a_spend_applied_but_unanswered_is_found_and_accepted_once_also_under_later_writes() {
    let etcd = Etcd::single();
    let h = hosts(&etcd, "applied");

    // The user has a document; nothing is written after the lost spend: it is the document.
    let (u, key) = h.user_with_a_document();
    let code = fresh_code(&key);
    let r = h.login_on_a(&u.name, &code);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}\n{}", r.logs, h.sa.log_text());
    assert_eq!(h.dropped(), 1);
    let again = h.b.auth("svc", &u.name, &[&code]);
    assert!(
        again.logged(&["refused: replayed verification code"]),
        "{:?}",
        again.logs
    );

    // Logins on B write on top before A's daemon asks again — the same code (refused: A's
    // spend is there) and a wrong one: the first write after the revision A decided on
    // (etcd's history) is A's.
    let (u, key) = h.user_with_a_document();
    let code = fresh_code(&key);
    let child = h.start_on_a(&u.name, &code);
    let on_b = h.b.auth("svc", &u.name, &[&code]);
    assert_eq!(on_b.rc, PAM_AUTH_ERR, "{:?}", on_b.logs);
    assert!(on_b.logged(&["refused: replayed verification code"]), "{:?}", on_b.logs);
    assert_eq!(h.b.auth("svc", &u.name, &[&wrong_code(&key)]).rc, PAM_AUTH_ERR);
    let r = h.finish_on_a(child);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}\n{}", r.logs, h.sa.log_text());
    assert_eq!(h.dropped(), 2);
    assert_eq!(
        h.sa.log_text()
            .matches("whose answer was lost: applied at revision")
            .count(),
        2
    );
    // The two failures written on top of A's spend stay counted.
    let k = format!("pam-totp/v1/{}/users/{}", h.ns, u.name);
    let doc = String::from_utf8_lossy(&etcd.etcdctl(&["get", &k, "--print-value-only"]).stdout).into_owned();
    assert!(doc.contains("failures = 2"), "{doc}");

    // A user's first document (a create), written on top the same way: its creation is A's.
    let (u, key) = user();
    let code = fresh_code(&key);
    let child = h.start_on_a(&u.name, &code);
    let on_b = h.b.auth("svc", &u.name, &[&code]);
    assert!(on_b.logged(&["refused: replayed verification code"]), "{:?}", on_b.logs);
    let r = h.finish_on_a(child);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}\n{}", r.logs, h.sa.log_text());
    assert_eq!(h.dropped(), 3);
}

#[test]
fn a_lost_spend_that_another_write_beat_is_decided_again_and_refused() {
    let etcd = Etcd::single();
    let h = hosts(&etcd, "unsent");
    // Not sent at all: the key is still at the revision decided on, so it is sent again.
    let (u, key) = h.user_with_a_document();
    let code = fresh_code(&key);
    let r = h.login_on_a(&u.name, &code);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}\n{}", r.logs, h.sa.log_text());
    assert_eq!(h.dropped(), 1);

    // Not sent, and B spends the same code meanwhile: the first write after the revision A
    // decided on is B's, so A's is not claimed — A decides again and refuses the replay.
    let (u, key) = h.user_with_a_document();
    let code = fresh_code(&key);
    let child = h.start_on_a(&u.name, &code);
    assert_eq!(h.b.auth("svc", &u.name, &[&code]).rc, PAM_SUCCESS);
    let r = h.finish_on_a(child);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{:?}\n{}", r.logs, h.sa.log_text());
    assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);
    // The refusal's own write (its failure count) lost its first try too, and was sent again.
    assert_eq!(h.dropped(), 3);
}

/// etcd's compaction (auto-compaction, hourly or by revisions) past the revision a login
/// decided on — the user's last write, maybe yesterday's: the look-up reads the key at the
/// compaction revision and watches on from there, so a lost write is still found (applied)
/// or known not to be (not sent), with another host's write on top in both cases.
#[test]
fn a_lost_write_is_found_past_a_compaction_of_the_history() {
    let etcd = Etcd::single();
    let compact_now = || {
        for _ in 0..3 {
            assert!(etcd.etcdctl(&["put", "pam-totp-test-probe", "x"]).status.success());
        }
        let out = etcd.etcdctl(&["get", "pam-totp-test-probe", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rev = v["header"]["revision"].as_i64().unwrap().to_string();
        let out = etcd.etcdctl(&["compact", &rev]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    for mode in ["applied", "unsent"] {
        let h = hosts(&etcd, mode);
        let (u, key) = h.user_with_a_document();
        compact_now();
        let code = fresh_code(&key);
        let child = h.start_on_a(&u.name, &code);
        assert_eq!(h.b.auth("svc", &u.name, &[&wrong_code(&key)]).rc, PAM_AUTH_ERR);
        let r = h.finish_on_a(child);
        assert_eq!(r.rc, PAM_SUCCESS, "{mode}: {:?}\n{}", r.logs, h.sa.log_text());
        assert!(h.dropped() >= 1, "{mode}");
        let again = h.b.auth("svc", &u.name, &[&code]);
        assert!(
            again.logged(&["refused: replayed verification code"]),
            "{mode}: {:?}",
            again.logs
        );
    }
}

/// The first copy held (as by a frozen member) while the daemon finds nothing and sends the
/// write again; the held copy then goes through, and another host writes on top before the
/// copy sent again is evaluated: that copy is beaten, and the daemon looks once more — the
/// first write after the revision decided on is this login's own, so it is accepted.
#[test]
fn a_held_copy_that_goes_through_before_the_copy_sent_again_is_found() {
    let etcd = Etcd::single();
    let h = hosts(&etcd, "held");
    let (u, key) = h.user_with_a_document();
    let code = fresh_code(&key);
    let child = h.start_on_a(&u.name, &code);
    let on_b = h.b.auth("svc", &u.name, &[&wrong_code(&key)]);
    assert_eq!(on_b.rc, PAM_AUTH_ERR, "{:?}", on_b.logs);
    let r = h.finish_on_a(child);
    assert_eq!(r.rc, PAM_SUCCESS, "{:?}\n{}", r.logs, h.sa.log_text());
    let log = h.sa.log_text();
    assert!(log.contains("the held copy goes through: Ok(true)"), "{log}");
    assert!(log.contains("whose answer was lost: not applied; sent again"), "{log}");
    assert!(log.contains("whose answer was lost: applied at revision"), "{log}");
    let again = h.b.auth("svc", &u.name, &[&code]);
    assert!(
        again.logged(&["refused: replayed verification code"]),
        "{:?}",
        again.logs
    );
}
