//! End to end: two real OpenSSH sshd on 127.0.0.1 ("hosts" A and B, two ports, two
//! configurations, two pam-totp-stated daemons) sharing one etcd: a code used over ssh to
//! the first is refused by the second.

use pam_totp_tests::fleet::{Etcd, Stated};
use pam_totp_tests::*;

const PASSWORD: &str = "pw-Fleet-42";

fn ssh_args(port: u16, user: &str) -> Vec<String> {
    let mut a: Vec<String> = vec!["ssh".into(), "-p".into(), port.to_string()];
    for o in [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
        "NumberOfPasswordPrompts=1",
        "PubkeyAuthentication=no",
        "PreferredAuthentications=keyboard-interactive",
    ] {
        a.push("-o".into());
        a.push(o.into());
    }
    a.push(format!("{user}@127.0.0.1"));
    a.push("echo LOGGED-IN-AS-$(id -un)".into());
    a
}

/// Host: its fixture (pam_totp.conf with store = "fleet"), daemon, PAM files and sshd.
struct Host {
    f: Fixture,
    _stated: Stated,
    sshd: Sshd,
    log: LogSink,
}

fn host(table: &str) -> Host {
    let f = Fixture::new();
    let stated = Stated::start(&f, "", table);
    let pam_d = pam_dir_copy(
        &f,
        &[(
            "sshd",
            &format!(
                "auth requisite pam_unix.so\nauth required {}\naccount required pam_unix.so\nsession required pam_permit.so\npassword required pam_deny.so\n",
                f.module("")
            ),
        )],
    );
    let log = LogSink::new(&f);
    let sshd = Sshd::start(
        &f,
        &pam_d,
        "AuthenticationMethods keyboard-interactive",
        Some(&log.path),
    );
    Host {
        f,
        _stated: stated,
        sshd,
        log,
    }
}

fn ssh(h: &Host, user: &TestUser, code: &str) -> Session {
    let args = ssh_args(h.sshd.port, &user.name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    expect_session(
        &h.f,
        &args,
        &[("Password: ?", PASSWORD), ("Verification code: ?", code)],
        &[],
        None,
    )
}

#[test]
fn a_code_used_over_ssh_on_one_host_is_refused_over_ssh_on_the_other() {
    let etcd = Etcd::single();
    let table = Stated::fleet_table(&etcd, &format!("t{}", random_hex(4)), 1000);
    let (a, b) = (host(&table), host(&table));
    let u = TestUser::create();
    u.set_password(PASSWORD);
    let key = random_key_b32();
    u.enroll(&key, "");
    let code = code_now(&key);
    let s = ssh(&a, &u, &code);
    assert!(
        s.transcript.contains(&format!("LOGGED-IN-AS-{}", u.name)) && s.exit == 0,
        "{}\n{}\n{:?}",
        s.transcript,
        a.sshd.log(),
        a.log.lines(&[PASSWORD])
    );
    let s = ssh(&b, &u, &code);
    assert!(
        !s.transcript.contains(&format!("LOGGED-IN-AS-{}", u.name)),
        "{}",
        s.transcript
    );
    assert_ne!(s.exit, 0);
    let lines = b.log.lines(&[PASSWORD, &code]);
    assert!(
        lines.iter().any(|l| l.contains("pam_totp(")
            && l.contains("refused: replayed verification code")
            && l.contains(&format!("user={}", u.name))),
        "{lines:?}"
    );
    assert!(a
        .log
        .lines(&[PASSWORD, &code])
        .iter()
        .any(|l| l.contains("accepted verification code")));
}
