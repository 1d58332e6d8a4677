//! The fleet store on a real three-member etcd cluster on 127.0.0.1: a leader killed during
//! a race, and a quorum lost while a spend is in flight.

use std::process::Stdio;
use std::time::{Duration, Instant};

use pam_totp_tests::fleet::{enrolled_user as user, Etcd, Stated};
use pam_totp_tests::*;

fn host(table: &str, args: &str) -> (Fixture, Stated) {
    let f = Fixture::new();
    f.simple("svc", args);
    let s = Stated::start(&f, "", table);
    (f, s)
}

fn table(endpoints: &[String], ns: &str, timeout_ms: u64) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "endpoints = [{}]\nnamespace = \"{ns}\"\ntimeout_ms = {timeout_ms}\n",
        eps.join(", ")
    )
}

#[test]
fn leader_killed_during_a_64_process_race_over_two_daemons_lets_exactly_one_in_and_loses_no_spend() {
    let mut etcd = Etcd::cluster(3);
    let ns = format!("t{}", random_hex(4));
    // The longest daemon deadline: logins caught by the election wait for the new leader.
    let t = table(&etcd.endpoints(), &ns, 1900);
    let ((a, sa), (b, sb)) = (host(&t, "max_failures=1000"), host(&t, "max_failures=1000"));
    let (u, key) = user();
    // Both daemons have their connections up before the race.
    let wrong = wrong_code(&key);
    assert_eq!(a.auth("svc", &u.name, &[&wrong]).rc, PAM_AUTH_ERR);
    assert_eq!(b.auth("svc", &u.name, &[&wrong]).rc, PAM_AUTH_ERR);
    let code = fresh_code(&key);
    let leader = etcd.leader();
    let race = Race::start(&[&a, &b], &u.name, &vec![code.clone(); 64], Duration::from_millis(1500));
    // The leader dies while the logins are under way.
    let kill_at = race.start + Duration::from_millis(30);
    if let Ok(wait) = kill_at.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(wait);
    }
    etcd.kill(leader);
    let runs = race.results();
    let ok = runs.iter().filter(|r| r.rc == PAM_SUCCESS).count();
    if ok != 1 {
        let mut why: std::collections::BTreeMap<String, usize> = Default::default();
        for r in &runs {
            // The module's message, without the syslog prefix and the user's name.
            let line = match r.logs.last() {
                Some(l) => {
                    let msg = l.split_once("): ").map_or(l.as_str(), |(_, m)| m);
                    msg.split(" (user=").next().unwrap_or(msg).to_string()
                }
                None => format!("rc {} without a log line", r.rc),
            };
            *why.entry(line).or_default() += 1;
        }
        panic!(
            "{ok} of 64 logins accepted (expected exactly 1)\n{why:#?}\ndaemon A:\n{}\ndaemon B:\n{}",
            sa.log_text(),
            sb.log_text()
        );
    }
    // No spent step lost: with a new leader, the code is refused everywhere as a replay,
    // also after the old leader came back.
    etcd.wait_healthy(Duration::from_secs(20));
    for f in [&a, &b] {
        let r = f.auth("svc", &u.name, &[&code]);
        assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
        assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);
    }
    etcd.restart(leader);
    etcd.wait_healthy(Duration::from_secs(20));
    let r = a.auth("svc", &u.name, &[&code]);
    assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);
}

#[test]
fn two_members_frozen_refuse_in_time_and_the_timed_out_spend_is_spent_once_they_resume() {
    let mut etcd = Etcd::cluster(3);
    let ns = format!("t{}", random_hex(4));
    let leader = etcd.leader();
    // Host A talks to the leader only (so its read is answered and its spend is proposed
    // there); host B to every member.
    let (a, sa) = host(&table(&etcd.endpoints()[leader..=leader], &ns, 1000), "");
    let (b, _sb) = host(&table(&etcd.endpoints(), &ns, 1000), "");
    let (u, key) = user();
    let wrong = wrong_code(&key);
    assert_eq!(a.auth("svc", &u.name, &[&wrong]).rc, PAM_AUTH_ERR);
    let code = fresh_code(&key);
    // A login on A waits at its prompt (its lockout check is done) while the two followers
    // stop; then it answers with the right code.
    let gate = a.root.join(format!("gate-{}", random_hex(3)));
    let child = a
        .harness("svc", &u.name, &[&code], &["--answer-after", gate.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let prompted = std::path::PathBuf::from(format!("{}.prompted", gate.display()));
    while !prompted.exists() {
        assert!(Instant::now() < until, "the login never reached its prompt");
        std::thread::sleep(Duration::from_millis(10));
    }
    let followers: Vec<usize> = (0..etcd.len()).filter(|&i| i != leader).collect();
    for &i in &followers {
        etcd.freeze(i);
    }
    let t = Instant::now();
    std::fs::write(&gate, "").unwrap();
    let r = PamRun::parse(&child.wait_with_output().unwrap());
    let took = t.elapsed();
    let ps = std::process::Command::new("ps")
        .args(["-C", "etcd", "-o", "pid,stat,args"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    assert_eq!(
        r.rc,
        PAM_AUTH_ERR,
        "{r:?}\nleader {leader}, frozen {followers:?}\n{}\n{}",
        String::from_utf8_lossy(&ps),
        sa.log_text()
    );
    assert!(
        r.logged(&["refused: could not record the attempt", "did not answer"]),
        "{:?}",
        r.logs
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(sa.log_text().contains("compare-and-swap"), "{}", sa.log_text());
    // A second login while the quorum is gone: refused in time too.
    let t = Instant::now();
    let r = b.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(2500), "took {:?}", t.elapsed());
    for &i in &followers {
        etcd.thaw(i);
    }
    etcd.wait_healthy(Duration::from_secs(20));
    // The spend whose commit timed out was applied once the quorum was back: the code,
    // never accepted anywhere, is now refused everywhere as used.
    for f in [&b, &a] {
        let r = f.auth("svc", &u.name, &[&code]);
        assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
        assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);
    }
}
