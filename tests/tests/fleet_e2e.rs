//! End to end: two real OpenSSH sshd on 127.0.0.1 ("hosts" A and B, two ports, two
//! configurations, two pam-totp-stated daemons) sharing one etcd: a code used over ssh to
//! the first is refused by the second.

use pam_totp_tests::fleet::{Etcd, Stated};
use pam_totp_tests::*;

const PASSWORD: &str = "pw-Fleet-42";

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
    let (log, sshd) = sshd_with_pam(
        &f,
        &password_then_code(&f, ""),
        "AuthenticationMethods keyboard-interactive",
    );
    Host {
        f,
        _stated: stated,
        sshd,
        log,
    }
}

fn ssh(h: &Host, user: &TestUser, code: &str) -> Session {
    ssh_login(&h.f, &h.sshd, user, None, PASSWORD, code, false)
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
        s.logged_in_as(&u),
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
