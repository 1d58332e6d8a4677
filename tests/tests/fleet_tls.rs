//! The fleet store over TLS with a client certificate per host, as a production fleet runs
//! it: etcd requires client certificates, takes each one's CN as the etcd user, and every
//! host's user has one role, limited to the fleet's key prefix.

use pam_totp_tests::fleet::{Etcd, Pki, Stated};
use pam_totp_tests::*;

fn ok(out: std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_table(etcd: &Etcd, pki: &Pki, ns: &str, host: &str) -> String {
    let eps: Vec<String> = etcd.endpoints().iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "endpoints = [{}]\nnamespace = \"{ns}\"\ntimeout_ms = 1000\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        eps.join(", "),
        pki.path("ca.pem").display(),
        pki.path(&format!("{host}.pem")).display(),
        pki.path(&format!("{host}-key.pem")).display()
    )
}

#[test]
fn hosts_with_their_own_client_certificates_and_a_role_limited_to_the_prefix_share_one_state() {
    let certs = Fixture::new();
    let pki = Pki::new(&certs.root.join("pki"));
    pki.issue("root", "root", false);
    pki.issue("host-a", "pam-totp-host-a", false);
    pki.issue("host-b", "pam-totp-host-b", false);
    let etcd = Etcd::single_tls(&pki);
    let ns = format!("t{}", random_hex(4));
    let prefix = format!("pam-totp/v1/{ns}/users/");
    // The setup docs/fleet.md describes.
    ok(
        etcd.etcdctl(&["user", "add", "root", "--new-user-password=unused-root"]),
        "user add root",
    );
    ok(etcd.etcdctl(&["user", "grant-role", "root", "root"]), "grant root");
    ok(etcd.etcdctl(&["role", "add", "pam-totp"]), "role add");
    ok(
        etcd.etcdctl(&[
            "role",
            "grant-permission",
            "pam-totp",
            "--prefix=true",
            "readwrite",
            &prefix,
        ]),
        "grant-permission",
    );
    for h in ["pam-totp-host-a", "pam-totp-host-b"] {
        ok(
            etcd.etcdctl(&["user", "add", h, "--new-user-password=unused-cn-auth"]),
            "user add",
        );
        ok(etcd.etcdctl(&["user", "grant-role", h, "pam-totp"]), "grant-role");
    }
    ok(etcd.etcdctl(&["auth", "enable"]), "auth enable");

    let (a, b) = (Fixture::new(), Fixture::new());
    a.simple("svc", "");
    b.simple("svc", "");
    let sa = Stated::start(&a, "", &tls_table(&etcd, &pki, &ns, "host-a"));
    let _sb = Stated::start(&b, "", &tls_table(&etcd, &pki, &ns, "host-b"));
    let u = TestUser::create();
    let key = random_key_b32();
    u.enroll(&key, "");
    let code = code_now(&key);
    let r = a.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?} {}", sa.log_text());
    let r = b.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);

    // A host's certificate reaches its prefix and nothing else.
    let as_host_a = |args: &[&str]| {
        let mut c = std::process::Command::new("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
            .arg(format!("--cacert={}", pki.path("ca.pem").display()))
            .arg(format!("--cert={}", pki.path("host-a.pem").display()))
            .arg(format!("--key={}", pki.path("host-a-key.pem").display()))
            .args(args);
        c.output().unwrap()
    };
    ok(as_host_a(&["get", &format!("{prefix}{}", u.name)]), "own prefix");
    let out = as_host_a(&["put", &format!("pam-totp/v1/other{ns}/users/x"), "y"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    // A daemon whose namespace is outside its role is refused, and so is the login.
    let c = Fixture::new();
    c.simple("svc", "");
    let _sc = Stated::start(&c, "", &tls_table(&etcd, &pki, &format!("other{ns}"), "host-a"));
    let r = c.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["permission denied"]), "{:?}", r.logs);

    // Revoking host B: its etcd user is deleted; its certificate no longer reaches anything.
    ok(etcd.etcdctl(&["user", "delete", "pam-totp-host-b"]), "user delete");
    let r = b.auth("svc", &u.name, &[&wrong_code(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["refused: state:"]), "{:?}", r.logs);
    // Host A goes on.
    let r = a.auth("svc", &u.name, &[&wrong_code(&key)]);
    assert!(r.logged(&["refused: wrong code"]), "{:?}", r.logs);

    // Without a client certificate, etcd does not talk at all.
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .arg(format!("--cacert={}", pki.path("ca.pem").display()))
        .args(["--dial-timeout=1s", "get", &prefix, "--prefix"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
