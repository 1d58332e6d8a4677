//! The fleet store through the real module and the real libpam: one real etcd member on
//! 127.0.0.1, two real `pam-totp-stated` daemons ("hosts" A and B, each with its own
//! fixture, pam_totp.conf and state directory) and one user whose secret both hosts read.

use std::process::Stdio;
use std::time::{Duration, Instant};

use pam_totp_tests::fleet::{
    enrolled_user as user, fleet, with_backup_codes as backup_codes, write_fleet_conf, Etcd, Stated,
};
use pam_totp_tests::*;

/// Logins started at the same instant, one process each, spread over the hosts in turn.
fn race(hosts: &[&Fixture], user: &str, answers: &[String]) -> Vec<PamRun> {
    race_logins(hosts, user, answers, Duration::from_secs(1))
}

fn accepted(runs: &[PamRun]) -> usize {
    runs.iter().filter(|r| r.rc == PAM_SUCCESS).count()
}

#[test]
fn a_code_spent_on_one_host_is_refused_on_the_other_and_the_state_is_one_toml_document_in_etcd() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "", "", 1000);
    let (u, key) = user();
    let code = code_now(&key);
    let r = fl.a.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?} {}", fl.sa.log_text());
    let r = fl.b.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);
    // Neither host wrote a local state file: the state is in etcd only.
    for f in [&fl.a, &fl.b] {
        let local = std::fs::read_dir(f.state_dir()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(local, 0, "a local state file was written");
    }
    let k = format!("pam-totp/v1/{}/users/{}", fl.ns, u.name);
    let out = etcd.etcdctl(&["get", &k, "--print-value-only"]);
    let doc = String::from_utf8_lossy(&out.stdout).to_string();
    // Its first line is the id of the write that stored it, the rest the state document.
    let raw = doc.trim_end().as_bytes();
    assert!(pam_totp_core::fleet::write_id(raw).is_some(), "no write id: {doc}");
    let state = std::str::from_utf8(pam_totp_core::fleet::document_state(raw)).unwrap();
    pam_totp_core::state::State::parse(state).unwrap_or_else(|e| panic!("{e}: {doc}"));
    // No daemon logged anything of the document: its keyed hashes and per-user key (every
    // long hex string in it) appear in no daemon log.
    let hex: Vec<&str> = doc
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|t| t.len() >= 32)
        .collect();
    assert!(!hex.is_empty(), "{doc}");
    for h in hex {
        assert!(!fl.sa.log_text().contains(h) && !fl.sb.log_text().contains(h));
    }
}

#[test]
fn wrong_codes_on_both_hosts_add_up_to_one_lockout_and_unlock_on_b_frees_a() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "max_failures=4 lockout=600", "", 1000);
    let (u, key) = user();
    let wrong = wrong_code(&key);
    for f in [&fl.a, &fl.b, &fl.a] {
        assert_eq!(f.auth("svc", &u.name, &[&wrong]).rc, PAM_AUTH_ERR);
    }
    let r = fl.b.auth("svc", &u.name, &[&wrong]);
    assert!(
        r.logged(&["locked out for 600 s after 4 consecutive failures"]),
        "{:?}",
        r.logs
    );
    // Locked on A by failures counted on both: the right code does not help.
    let r = fl.a.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["refused: locked out"]), "{:?}", r.logs);
    let (rc, out, err) = output(fl.b.cli(&["status", "--user", &u.name, "--json"]));
    assert_eq!(rc, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["locked"], true, "{j}");
    // `pam-totp unlock` on host B frees the user on host A.
    let (rc, out, err) = output(fl.b.cli(&["unlock", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("is unlocked"), "{out}");
    let r = fl.a.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
}

#[test]
fn a_backup_code_works_once_across_hosts() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "", "", 1000);
    let (u, key) = user();
    let codes = backup_codes(&u, &key, 2);
    let r = fl.b.auth("svc", &u.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    let r = fl.a.auth("svc", &u.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert_eq!(r.errors, vec!["That backup code has already been used."]);
    // `pam-totp backup-codes` on the other host counts from the fleet's record.
    let (rc, out, err) = output(fl.a.cli(&["backup-codes", "--user", &u.name, "--json"]));
    assert_eq!(rc, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["backup_codes_left"], 1, "{j}");
    assert_eq!(fl.a.auth("svc", &u.name, &[&codes[1]]).rc, PAM_SUCCESS);
}

#[test]
fn sixteen_logins_racing_one_code_across_two_hosts_let_exactly_one_in() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "max_failures=1000", "", 1500);
    let (u, key) = user();
    let code = code_now(&key);
    let runs = race(&[&fl.a, &fl.b], &u.name, &vec![code.clone(); 16]);
    let rcs: Vec<i32> = runs.iter().map(|r| r.rc).collect();
    assert_eq!(accepted(&runs), 1, "{rcs:?}");
    // Every other one was refused: as a replay, or (nothing recorded, nothing told) after
    // losing every compare-and-swap round to the others; never for want of an answer.
    let refused = runs
        .iter()
        .filter(|r| {
            r.rc == PAM_AUTH_ERR
                && (r.logged(&["refused: replayed verification code"]) || r.logged(&["compare-and-swap rounds"]))
        })
        .count();
    assert_eq!(
        refused,
        15,
        "{rcs:?} {:?}",
        runs.iter().map(|r| &r.logs).collect::<Vec<_>>()
    );
    assert_eq!(fl.b.auth("svc", &u.name, &[&code]).rc, PAM_AUTH_ERR);
}

/// A login that must be refused because the store cannot answer, and how long it took.
fn refused_for_want_of_a_store(f: &Fixture, user: &str, code: &str) -> (PamRun, Duration) {
    let t = Instant::now();
    let r = f.auth("svc", user, &[code]);
    let took = t.elapsed();
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    (r, took)
}

#[test]
fn etcd_frozen_or_stopped_refuses_within_the_deadline() {
    let mut etcd = Etcd::single();
    let fl = fleet(&etcd, "", "", 800);
    let (u, key) = user();
    let wrong = wrong_code(&key);
    // Warm: both daemons have connected once.
    assert_eq!(fl.a.auth("svc", &u.name, &[&wrong]).rc, PAM_AUTH_ERR);
    assert_eq!(fl.b.auth("svc", &u.name, &[&wrong]).rc, PAM_AUTH_ERR);
    etcd.freeze(0);
    let code = code_now(&key);
    let (r, took) = refused_for_want_of_a_store(&fl.a, &u.name, &code);
    assert!(r.logged(&["refused: state:", "etcd did not answer"]), "{:?}", r.logs);
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    etcd.kill(0);
    let (r, took) = refused_for_want_of_a_store(&fl.b, &u.name, &code);
    assert!(r.logged(&["refused: state:", "etcd did not answer"]), "{:?}", r.logs);
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // The member comes back on its data: the code (never accepted) works, once.
    etcd.restart(0);
    etcd.wait_healthy(Duration::from_secs(20));
    let until = Instant::now() + Duration::from_secs(10);
    let mut r = fl.a.auth("svc", &u.name, &[&code]);
    while r.rc != PAM_SUCCESS && Instant::now() < until && !r.logged(&["replayed"]) {
        std::thread::sleep(Duration::from_millis(200));
        r = fl.a.auth("svc", &u.name, &[&code]);
    }
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(fl.b.auth("svc", &u.name, &[&code]).rc, PAM_AUTH_ERR);
}

#[test]
fn store_unavailable_local_decides_on_local_state_and_logs_degraded_every_time() {
    let mut etcd = Etcd::single();
    let fl = fleet(&etcd, "", "store_unavailable = \"local\"", 800);
    let (u, key) = user();
    etcd.kill(0);
    // Right after, it is not an outage yet: refused, not decided here.
    let r = fl.a.auth("svc", &u.name, &[&wrong_code(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(
        r.logged(&["not yet an outage"]) && !r.logged(&["degraded"]),
        "{:?}",
        r.logs
    );
    // Once etcd has answered nothing for three deadlines, it is.
    std::thread::sleep(OUTAGE);
    let code = fresh_code(&key);
    let r = fl.a.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(
        r.logged(&["degraded: decided on this host's own state"]),
        "{:?}",
        r.logs
    );
    // The local state guards the code on this host, and says so again.
    let r = fl.a.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);
    assert!(r.logged(&["degraded:"]), "{:?}", r.logs);
    assert!(fl.a.state_dir().join(format!("{}.state", u.name)).exists());
    // A wrong code is still refused: the fallback never lets anyone in without a code.
    let r = fl.b.auth("svc", &u.name, &[&wrong_code(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["degraded:"]), "{:?}", r.logs);
    // The daemon stopped is this host's trouble, not an outage: refused, never decided here
    // (a daemon killed by the OOM killer must not move logins onto the local state).
    let mut sb = fl.sb;
    sb.stop();
    let r = fl.b.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(!r.logged(&["degraded:"]), "{:?}", r.logs);
}

/// How long after etcd stops a daemon with an 800 ms deadline reports an outage (three
/// deadlines without an answer), and a margin.
const OUTAGE: Duration = Duration::from_millis(2400 + 600);

#[test]
fn daemon_stopped_refuses_and_a_restarted_daemon_serves_again() {
    let etcd = Etcd::single();
    let mut fl = fleet(&etcd, "", "", 1000);
    let (u, key) = user();
    fl.sa.stop();
    let code = code_now(&key);
    let (r, took) = refused_for_want_of_a_store(&fl.a, &u.name, &code);
    assert!(
        r.logged(&["refused: state:", "is pam-totp-stated running?"]),
        "{:?}",
        r.logs
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(!fl.a.state_dir().join(format!("{}.state", u.name)).exists());
    fl.sa.restart();
    assert_eq!(fl.a.auth("svc", &u.name, &[&code]).rc, PAM_SUCCESS);
    assert_eq!(fl.b.auth("svc", &u.name, &[&code]).rc, PAM_AUTH_ERR);
}

#[test]
fn the_daemon_refuses_a_bad_config_in_one_line() {
    let f = Fixture::new();
    for (conf, says) in [
        ("[fleet]\nendpoints = []\n", "endpoints is empty"),
        (
            "[fleet]\nendpoints = [\"http://192.0.2.1:2379\"]\n",
            "http:// is refused except to a loopback",
        ),
        (
            "[fleet]\nendpoints = [\"https://127.0.0.1:2379\"]\n",
            "need ca_file, cert_file and key_file",
        ),
        ("[fleet]\nbogus = 1\n", "unknown option `fleet.bogus`"),
        ("[fleet]\ntimeout_ms = 5000\n", "between 10 and 1900"),
    ] {
        let p = f.root.join("stated.conf");
        std::fs::write(&p, conf).unwrap();
        let mut c = std::process::Command::new(pam_totp_tests::fleet::stated_path());
        c.arg("--config").arg(&p).arg("--socket").arg(f.root.join("x.sock"));
        let (rc, out, err) = output(c);
        assert_ne!(rc, 0, "{conf}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("pam-totp-stated: ") && err.contains(says),
            "{conf}: {err}"
        );
    }
}

#[test]
fn only_root_reaches_the_daemon_and_a_socket_others_can_write_is_refused() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "", "", 1000);
    let (u, key) = user();
    // A user connecting to the socket (made 0666 here for the test) is cut off at once.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fl.sa.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let pl = format!(
        "$SIG{{PIPE}} = 'IGNORE'; use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => '{}') or die 'connect'; syswrite($s, pack('N', 2) . chr(1) . chr(1)); my $b = ''; my $n = sysread($s, $b, 64); print defined($n) ? \"read $n\" : 'reset';",
        fl.sa.socket.display()
    );
    let (_, out, err) = output({
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", &u.name, "--", "perl", "-e", &pl]);
        c
    });
    assert!(out == "read 0" || out == "reset", "{out} {err}");
    assert!(fl
        .sa
        .log_text()
        .contains(&format!("refused a connection from uid {}", u.uid)));
    // The module refuses a socket others can write to, and does not fall back for it.
    let r = fl.a.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["writable by group or others"]), "{:?}", r.logs);
    std::fs::set_permissions(&fl.sa.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fl.a.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
}

fn doctor_json(f: &Fixture) -> serde_json::Value {
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
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json} {err}"))
}

fn finding(j: &serde_json::Value, check: &str) -> Option<String> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["check"] == check)
        .map(|x| x["severity"].as_str().unwrap().to_string())
}

#[test]
fn doctor_checks_the_daemon_and_warns_on_the_local_fallback() {
    let etcd = Etcd::single();
    let mut fl = fleet(&etcd, "", "", 1000);
    let j = doctor_json(&fl.a);
    assert_eq!(finding(&j, "fleet-socket").as_deref(), Some("ok"), "{j}");
    assert_eq!(finding(&j, "fleet-fallback"), None, "{j}");
    fl.sa.stop();
    let j = doctor_json(&fl.a);
    assert_eq!(finding(&j, "fleet-socket").as_deref(), Some("error"), "{j}");
    // The same host with the fallback: warned twice over, never an error for the socket.
    let conf = std::fs::read_to_string(&fl.sa.config).unwrap();
    std::fs::write(&fl.sa.config, format!("store_unavailable = \"local\"\n{conf}")).unwrap();
    let j = doctor_json(&fl.a);
    assert_eq!(finding(&j, "fleet-fallback").as_deref(), Some("warning"), "{j}");
    assert_eq!(finding(&j, "fleet-socket").as_deref(), Some("warning"), "{j}");
}

#[test]
fn report_lists_the_fleet_state_and_reset_on_one_host_clears_it_for_all() {
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "max_failures=10", "", 1000);
    let (u, key) = user();
    let wrong = wrong_code(&key);
    assert_eq!(fl.a.auth("svc", &u.name, &[&wrong]).rc, PAM_AUTH_ERR);
    assert_eq!(fl.b.auth("svc", &u.name, &[&wrong]).rc, PAM_AUTH_ERR);
    let (rc, out, err) = output(fl.a.cli(&["report", "--json", "--all-users"]));
    assert_eq!(rc, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = j["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user"] == u.name.as_str())
        .unwrap_or_else(|| panic!("{j}"))
        .clone();
    assert_eq!(row["failures"], 2, "{row}");
    let k = format!("pam-totp/v1/{}/users/{}", fl.ns, u.name);
    assert!(!etcd.etcdctl(&["get", &k]).stdout.is_empty());
    let (rc, _, err) = output(fl.b.cli(&["reset", "--user", &u.name]));
    assert_eq!(rc, 0, "{err}");
    // What keeps spent codes spent stays (other hosts may still hold the old secret); the
    // failures, the lockout and the enrollment record go.
    let doc = String::from_utf8_lossy(&etcd.etcdctl(&["get", &k]).stdout).into_owned();
    assert!(doc.contains("key = "), "{doc}");
    assert!(!doc.contains("failures = 2") && !doc.contains("enrolled = 1"), "{doc}");
    // A user's own status (which never reads the root-only state) still works.
    let (rc, _, err) = output(fl.a.cli_as(&u.name, &["status"]));
    assert_eq!(rc, 0, "{err}");
}

#[test]
fn the_daemon_takes_the_socket_systemd_passes_and_a_login_waiting_for_its_start_is_served() {
    let etcd = Etcd::single();
    let f = Fixture::new();
    f.simple("svc", "");
    let socket = f.root.join("activated.sock");
    let conf = write_fleet_conf(
        &f,
        &socket,
        "",
        &Stated::fleet_table(&etcd, &format!("t{}", random_hex(4)), 1000),
    );
    // systemd-socket-activate listens, and starts the daemon (with LISTEN_FDS) only when the
    // first login connects: that login waits in the backlog and is served.
    let mut act = std::process::Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .arg(pam_totp_tests::fleet::stated_path())
        .arg("--config")
        .arg(&conf)
        .arg("--socket")
        .arg(f.root.join("not-this-one.sock"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while !socket.exists() {
        assert!(Instant::now() < until, "systemd-socket-activate did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (u, key) = user();
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    let _ = act.kill();
    let _ = act.wait();
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(!f.root.join("not-this-one.sock").exists(), "the passed socket was used");
}

#[test]
fn the_daemon_survives_garbage_and_oversized_frames_from_root() {
    use std::io::{Read, Write};
    let etcd = Etcd::single();
    let fl = fleet(&etcd, "", "", 1000);
    let answer = |bytes: &[u8]| -> Vec<u8> {
        let mut s = std::os::unix::net::UnixStream::connect(&fl.sa.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    let refused = |out: &[u8]| {
        let n = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        matches!(
            pam_totp_core::fleet::Response::decode(&out[4..4 + n]),
            Some(pam_totp_core::fleet::Response::Refused(_))
        )
    };
    // A length over the limit: refused at once, nothing more read.
    assert!(refused(&answer(&u32::MAX.to_be_bytes())));
    // Malformed bodies: another version, an unknown tag, a truncated field, trailing bytes.
    for body in [&[9u8, 2][..], &[1, 200], &[1, 2, 0, 0, 0, 9, b'x'], &[1, 1, 0]] {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        assert!(refused(&answer(&frame)), "{body:?}");
    }
    // Random frames: whatever they are, the daemon answers or closes, and stays up.
    for i in 0..200u32 {
        let len = (i * 7919) % 300;
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend((0..len).map(|j| (j.wrapping_mul(31).wrapping_add(i * 17) % 256) as u8));
        let _ = answer(&frame);
    }
    // A client that sends half a frame and waits is cut off, not waited for forever.
    let t = Instant::now();
    let out = answer(&[0, 0, 0, 50, 1]);
    assert!(
        out.is_empty() && t.elapsed() < Duration::from_secs(4),
        "{:?}",
        t.elapsed()
    );
    let (u, key) = user();
    assert_eq!(fl.a.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
}

#[test]
fn reset_with_the_daemon_down_changes_nothing() {
    let etcd = Etcd::single();
    let mut fl = fleet(&etcd, "", "", 1000);
    let (u, key) = user();
    assert_eq!(fl.a.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
    fl.sb.stop();
    let (rc, _, err) = output(fl.b.cli(&["reset", "--user", &u.name]));
    assert_ne!(rc, 0);
    assert!(err.contains("is pam-totp-stated running?"), "{err}");
    assert!(u.secret_path().exists(), "the secret is kept when the state cannot go");
    let (rc, _, err) = output(fl.b.cli(&["unlock", "--user", &u.name]));
    assert_ne!(rc, 0, "{err}");
}
