//! The SELinux policy module (packaging/selinux; shipped in pam-totp-selinux, README: SELinux).
//!
//! It compiles against the reference policy headers (Debian's selinux-policy-dev); the module
//! shipped in the .rpm is loaded with semodule into a private copy of the reference policy's
//! store (Debian's selinux-policy-default: what this host has in /var/lib/selinux/default,
//! never changed); then each path gets its label from the store's file contexts
//! (selabel_lookup) and the policy is asked (setools, as sesearch) what the login domains may
//! do to it. The same questions asked of the store without the module must get "no", so these
//! tests fail if the module stops mattering. What needs an enforcing kernel is not checked
//! here (README: SELinux).

use pam_totp_tests::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The login domains of the reference policy the tests speak for: sshd, a sudo domain (the
/// administrator's role), the console login, su.
const LOGIN_DOMAINS: &[&str] = &["sshd_t", "sysadm_sudo_t", "local_login_t", "sysadm_su_t"];
/// A confined user's domain: must not touch anyone's state.
const USER_DOMAIN: &str = "user_t";

/// What a login does to its state file: create one aside, write it, rename it into place,
/// lock the lock file, set its mode, read it, unlink a stale temporary file.
const STATE_FILE: &[&str] = &[
    "create", "open", "read", "write", "getattr", "setattr", "rename", "unlink", "lock",
];
const STATE_DIR: &[&str] = &["search", "open", "read", "getattr", "add_name", "remove_name", "write"];
const VAULT_DIR: &[&str] = &["search", "open", "read", "getattr"];
const SECRET_FILE: &[&str] = &["open", "read", "getattr", "lock"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One policy store: its kernel policy and file contexts.
struct Store {
    policy: PathBuf,
    file_contexts: PathBuf,
}

impl Store {
    fn at(root: &Path) -> Store {
        let dir = root.join("etc/selinux/default");
        let policy = std::fs::read_dir(dir.join("policy"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("policy."))
            .expect("a kernel policy file");
        Store {
            policy,
            file_contexts: dir.join("contexts/files/file_contexts"),
        }
    }

    /// The type a file at `path` is given (`mode`: 0 for any, else the file type bits);
    /// "<<none>>" for a path the policy leaves unlabelled (/run/* in the reference policy:
    /// a tmpfs, labelled as its files are made).
    fn label(&self, path: &str, mode: u32) -> String {
        let fc = if path.starts_with("/home/") {
            self.file_contexts.with_extension("homedirs")
        } else {
            self.file_contexts.clone()
        };
        let out = Command::new("selabel_lookup")
            .args(["-b", "file", "-k", path, "-t", &mode.to_string(), "-f"])
            .arg(&fc)
            .output()
            .expect("selabel_lookup (selinux-utils)");
        let text = String::from_utf8_lossy(&out.stdout);
        if String::from_utf8_lossy(&out.stderr).contains("failed to find a valid context") {
            return "<<none>>".into();
        }
        let ctx = text
            .trim()
            .strip_prefix("Default context: ")
            .unwrap_or_else(|| panic!("selabel_lookup {path}: {text} {}", String::from_utf8_lossy(&out.stderr)));
        ctx.split(':').nth(2).unwrap().to_string()
    }

    /// Runs the queries through setools (the library of sesearch) in one process, the policy
    /// loaded once. Each answer: the permissions of every allow rule that matches (rules on
    /// attributes of the source or target included), conditional rules counted too.
    fn ask(&self, queries: &[Query]) -> Vec<BTreeSet<String>> {
        const SCRIPT: &str = r#"
import json, sys, setools
p = setools.SELinuxPolicy(sys.argv[1])
for line in sys.stdin:
    q = json.loads(line)
    if q["kind"] == "allow":
        rules = setools.TERuleQuery(p, ruletype=["allow"], source=q["source"],
                                    target=q["target"], tclass=[q["class"]]).results()
        print(json.dumps(sorted({str(x) for r in rules for x in r.perms})))
    else:
        rules = setools.TERuleQuery(p, ruletype=["type_transition"], source=q["source"],
                                    target=q["target"], tclass=[q["class"]]).results()
        print(json.dumps(sorted({str(r.default) for r in rules})))
"#;
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", SCRIPT])
            .arg(&self.policy)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 with setools (Debian package setools)");
        let input: String = queries
            .iter()
            .map(|q| {
                serde_json::json!({"kind": q.kind, "source": q.source, "target": q.target, "class": q.class})
                    .to_string()
                    + "\n"
            })
            .collect();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "setools: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answers: Vec<BTreeSet<String>> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Vec<String>>(l).unwrap().into_iter().collect())
            .collect();
        assert_eq!(answers.len(), queries.len());
        answers
    }

    fn allowed(&self, source: &str, target: &str, class: &str) -> BTreeSet<String> {
        self.ask(&[Query::allow(source, target, class)]).remove(0)
    }
}

struct Query {
    kind: &'static str,
    source: String,
    target: String,
    class: String,
}

impl Query {
    fn allow(source: &str, target: &str, class: &str) -> Query {
        Query {
            kind: "allow",
            source: source.into(),
            target: target.into(),
            class: class.into(),
        }
    }
    fn transition(source: &str, target: &str, class: &str) -> Query {
        Query {
            kind: "type_transition",
            ..Query::allow(source, target, class)
        }
    }
}

struct Setup {
    /// The reference policy as installed (no pam_totp module).
    base: Store,
    /// The same with the module from pam-totp-selinux loaded.
    with_module: Store,
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The private stores, made once for all the tests of this file (under target/, replaced on
/// each run).
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        assert!(
            Path::new("/var/lib/selinux/default").is_dir() && Path::new("/etc/selinux/default").is_dir(),
            "the reference policy store is missing: apt-get install selinux-policy-default (scripts/test does)"
        );
        let dir = workspace().join("target/selinux-check");
        let _ = std::fs::remove_dir_all(&dir);
        let mut stores = Vec::new();
        for name in ["base", "module"] {
            let root = dir.join(name);
            std::fs::create_dir_all(root.join("var/lib/selinux")).unwrap();
            std::fs::create_dir_all(root.join("etc/selinux")).unwrap();
            run_ok(
                Command::new("cp")
                    .args(["-a", "/var/lib/selinux/default"])
                    .arg(root.join("var/lib/selinux/")),
            );
            run_ok(
                Command::new("cp")
                    .args(["-a", "/etc/selinux/default"])
                    .arg(root.join("etc/selinux/")),
            );
            run_ok(
                Command::new("cp")
                    .arg("/etc/selinux/semanage.conf")
                    .arg(root.join("etc/selinux/")),
            );
            let modules = run_ok(
                Command::new("semodule")
                    .arg("-p")
                    .arg(&root)
                    .args(["-s", "default", "-l"]),
            );
            assert!(
                !modules.lines().any(|l| l.trim() == "pam_totp"),
                "this host's store already has pam_totp: the comparison needs the reference policy without it"
            );
            stores.push(root);
        }
        // The module as shipped in the .rpm.
        let rpm = std::fs::read_dir(workspace().join("target/packages"))
            .expect("run packaging/build first (scripts/test does)")
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("pam-totp-selinux-")
            })
            .expect("pam-totp-selinux-*.noarch.rpm in target/packages");
        let unpacked = dir.join("rpm");
        std::fs::create_dir_all(&unpacked).unwrap();
        run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "rpm2cpio '{}' | cpio -idm --quiet --no-absolute-filenames",
                    rpm.display()
                ))
                .current_dir(&unpacked),
        );
        let pp = unpacked.join("usr/share/selinux/packages/pam_totp.pp.bz2");
        assert!(pp.exists(), "{} not in {}", pp.display(), rpm.display());
        // semodule -p: the store and the kernel policy under a private root; -n: no reload.
        run_ok(
            Command::new("semodule")
                .arg("-p")
                .arg(&stores[1])
                .args(["-s", "default", "-n", "-i"])
                .arg(&pp),
        );
        let modules = run_ok(
            Command::new("semodule")
                .arg("-p")
                .arg(&stores[1])
                .args(["-s", "default", "-l"]),
        );
        assert!(modules.lines().any(|l| l.trim() == "pam_totp"), "{modules}");
        Setup {
            base: Store::at(&stores[0]),
            with_module: Store::at(&stores[1]),
        }
    })
}

fn missing(have: &BTreeSet<String>, want: &[&str]) -> Vec<String> {
    want.iter()
        .filter(|p| !have.contains(**p))
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn the_policy_module_compiles_against_the_reference_policy_headers() {
    let dir = std::env::temp_dir().join(format!("pam-totp-selinux-{}", random_hex(4)));
    std::fs::create_dir(&dir).unwrap();
    for f in ["pam_totp.te", "pam_totp.fc", "pam_totp.if"] {
        std::fs::copy(workspace().join("packaging/selinux").join(f), dir.join(f)).unwrap();
    }
    let out = Command::new("make")
        .args(["-f", "/usr/share/selinux/devel/Makefile", "pam_totp.pp"])
        .current_dir(&dir)
        .output()
        .expect("make");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the module does not compile (selinux-policy-dev):\n{text}"
    );
    // m4 warnings are how an unknown interface or a stray quote shows; none is expected.
    assert!(
        !text.contains("m4:") && !text.to_lowercase().contains("warning"),
        "{text}"
    );
    assert!(dir.join("pam_totp.pp").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_files_get_the_modules_types_and_had_generic_ones_before() {
    let s = setup();
    let m = &s.with_module;
    let want = [
        ("/var/lib/pam-totp", 0o040000, "pam_totp_var_lib_t"),
        ("/var/lib/pam-totp/alice.state", 0o100000, "pam_totp_var_lib_t"),
        ("/var/lib/pam-totp/.alice.state.tmp", 0o100000, "pam_totp_var_lib_t"),
        ("/var/lib/pam-totp/alice.lock", 0o100000, "pam_totp_var_lib_t"),
        ("/var/lib/pam-totp/vault", 0o040000, "pam_totp_var_lib_t"),
        ("/home/alice/.config/pam-totp/secret.toml", 0o100000, "pam_totp_home_t"),
        ("/root/.config/pam-totp/secret.toml", 0o100000, "pam_totp_home_t"),
        ("/run/pam-totp", 0o040000, "pam_totp_runtime_t"),
        ("/run/pam-totp/stated.sock", 0o140000, "pam_totp_runtime_t"),
        ("/usr/sbin/pam-totp-stated", 0o100000, "pam_totp_stated_exec_t"),
    ];
    for (path, mode, ty) in want {
        assert_eq!(m.label(path, mode), ty, "{path} with the module");
        assert!(!s.base.label(path, mode).starts_with("pam_totp"), "{path} without it");
    }
    assert_eq!(s.base.label("/var/lib/pam-totp/alice.state", 0o100000), "var_lib_t");
}

#[test]
fn login_domains_may_create_write_rename_and_lock_the_state_and_read_the_vault() {
    let s = setup();
    let m = &s.with_module;
    let state = m.label("/var/lib/pam-totp/alice.state", 0o100000);
    let dir = m.label("/var/lib/pam-totp", 0o040000);
    let vault = m.label("/var/lib/pam-totp/vault", 0o040000);
    let var_lib = m.label("/var/lib", 0o040000);
    let mut queries = Vec::new();
    for d in LOGIN_DOMAINS {
        queries.push(Query::allow(d, &state, "file"));
        queries.push(Query::allow(d, &dir, "dir"));
        queries.push(Query::allow(d, &vault, "dir"));
        queries.push(Query::allow(d, &var_lib, "dir"));
        queries.push(Query::transition(d, &var_lib, "dir"));
    }
    let answers = m.ask(&queries);
    for (d, a) in LOGIN_DOMAINS.iter().zip(answers.chunks(5)) {
        let [file, sdir, vdir, vlib, trans] = a else {
            unreachable!()
        };
        assert!(
            missing(file, STATE_FILE).is_empty(),
            "{d} on {state} files lacks {:?}",
            missing(file, STATE_FILE)
        );
        assert!(
            missing(sdir, STATE_DIR).is_empty(),
            "{d} on the state dir lacks {:?}",
            missing(sdir, STATE_DIR)
        );
        assert!(
            missing(vdir, VAULT_DIR).is_empty(),
            "{d} on the vault lacks {:?}",
            missing(vdir, VAULT_DIR)
        );
        assert!(vlib.contains("search"), "{d} may not search /var/lib");
        // A state directory a login has to make itself is labelled right.
        assert!(trans.contains("pam_totp_var_lib_t"), "{d}: {trans:?}");
    }
}

#[test]
fn without_the_module_the_login_domains_may_not_write_the_state() {
    let s = setup();
    let b = &s.base;
    let state = b.label("/var/lib/pam-totp/alice.state", 0o100000);
    let queries: Vec<Query> = LOGIN_DOMAINS.iter().map(|d| Query::allow(d, &state, "file")).collect();
    for (d, have) in LOGIN_DOMAINS.iter().zip(b.ask(&queries)) {
        let lacking = missing(&have, STATE_FILE);
        assert!(
            ["create", "write", "rename"]
                .iter()
                .all(|p| lacking.iter().any(|l| l == p)),
            "{d} may already {have:?} on {state} files without the module: the test proves nothing"
        );
    }
}

#[test]
fn a_confined_user_may_not_read_or_write_the_state() {
    let s = setup();
    // (Without the module the state is var_lib_t, which user_t may read: only the directory
    // mode 0700 kept users out.)
    for store in [&s.with_module] {
        let state = store.label("/var/lib/pam-totp/alice.state", 0o100000);
        let dir = store.label("/var/lib/pam-totp", 0o040000);
        let a = store.ask(&[
            Query::allow(USER_DOMAIN, &state, "file"),
            Query::allow(USER_DOMAIN, &dir, "dir"),
        ]);
        for p in ["read", "write", "create", "rename", "unlink", "lock", "open"] {
            assert!(!a[0].contains(p), "{USER_DOMAIN} may {p} {state} files: {:?}", a[0]);
        }
        for p in ["read", "search", "add_name", "remove_name", "write"] {
            assert!(
                !a[1].contains(p),
                "{USER_DOMAIN} may {p} the state dir ({dir}): {:?}",
                a[1]
            );
        }
    }
}

#[test]
fn logins_read_the_secret_in_the_home_and_the_user_keeps_writing_it() {
    let s = setup();
    let m = &s.with_module;
    let secret = m.label("/home/alice/.config/pam-totp/secret.toml", 0o100000);
    let config = m.label("/home/alice/.config", 0o040000);
    let home = m.label("/home/alice", 0o040000);
    let mut queries = Vec::new();
    for d in LOGIN_DOMAINS {
        queries.push(Query::allow(d, &secret, "file"));
        queries.push(Query::allow(d, &config, "dir"));
        queries.push(Query::allow(d, &home, "dir"));
    }
    // The user: their own secret (pam-totp enroll), labelled when the directory is made.
    queries.push(Query::allow(USER_DOMAIN, &secret, "file"));
    queries.push(Query::transition(USER_DOMAIN, &config, "dir"));
    let answers = m.ask(&queries);
    for (d, a) in LOGIN_DOMAINS.iter().zip(answers.chunks(3)) {
        assert!(missing(&a[0], SECRET_FILE).is_empty(), "{d} on {secret}: {:?}", a[0]);
        assert!(a[1].contains("search") && a[2].contains("search"), "{d}: {a:?}");
    }
    let (own, t) = (&answers[answers.len() - 2], &answers[answers.len() - 1]);
    assert!(
        missing(own, &["create", "write", "read", "rename", "unlink"]).is_empty(),
        "{own:?}"
    );
    assert!(t.contains("pam_totp_home_t"), "{t:?}");
    // Before the module, the secret was plain xdg_config_t, which sshd_t may not read.
    let before = s.base.label("/home/alice/.config/pam-totp/secret.toml", 0o100000);
    assert!(!s.base.allowed("sshd_t", &before, "file").contains("read"), "{before}");
}

#[test]
fn the_daemon_has_its_domain_and_logins_reach_its_socket() {
    let s = setup();
    let m = &s.with_module;
    let exec = m.label("/usr/sbin/pam-totp-stated", 0o100000);
    let sock = m.label("/run/pam-totp/stated.sock", 0o140000);
    let state = m.label("/var/lib/pam-totp/alice.state", 0o100000);
    let clients: Vec<&str> = LOGIN_DOMAINS.iter().copied().chain(["sysadm_t"]).collect();
    let mut queries = vec![
        Query::transition("init_t", &exec, "process"),
        Query::allow("pam_totp_stated_t", "pam_totp_stated_t", "unix_stream_socket"),
        Query::allow("pam_totp_stated_t", "unreserved_port_t", "tcp_socket"),
        Query::allow("pam_totp_stated_t", "etc_t", "file"),
        Query::allow("pam_totp_stated_t", &state, "file"),
        Query::allow("sysadm_t", &state, "file"),
    ];
    for d in &clients {
        queries.push(Query::allow(d, &sock, "sock_file"));
        queries.push(Query::allow(d, "pam_totp_stated_t", "unix_stream_socket"));
    }
    let a = m.ask(&queries);
    assert!(
        a[0].contains("pam_totp_stated_t"),
        "systemd starts pam-totp-stated in {:?}",
        a[0]
    );
    assert!(
        missing(&a[1], &["accept", "listen", "read", "write"]).is_empty(),
        "{:?}",
        a[1]
    );
    assert!(a[2].contains("name_connect"), "etcd on 2379: {:?}", a[2]);
    assert!(a[3].contains("read"), "pam_totp.conf: {:?}", a[3]);
    // The daemon is no login: it does not get the state.
    assert!(a[4].is_empty(), "{:?}", a[4]);
    // root's administration (sysadm_t; unconfined_t may do everything anyway).
    assert!(missing(&a[5], STATE_FILE).is_empty(), "{:?}", a[5]);
    for (d, c) in clients.iter().zip(a[6..].chunks(2)) {
        assert!(c[0].contains("write") && c[1].contains("connectto"), "{d}: {c:?}");
    }
}

/// The vault's setuid helper: a user who runs it enters its own domain, which may write the
/// vault (create, write, rename, lock) and the state (a proof is recorded like a login),
/// where the user's own domain may not; without the module it is just bin_t run in user_t.
#[test]
fn users_enter_the_vault_helpers_domain_which_alone_writes_the_vault_for_them() {
    let s = setup();
    let m = &s.with_module;
    let exec = m.label("/usr/libexec/pam-totp/pam-totp-vault", 0o100000);
    assert_eq!(exec, "pam_totp_vault_exec_t");
    let vault_file = m.label("/var/lib/pam-totp/vault/alice.toml", 0o100000);
    let vault_dir = m.label("/var/lib/pam-totp/vault", 0o040000);
    let a = m.ask(&[
        Query::transition(USER_DOMAIN, &exec, "process"),
        Query::allow(USER_DOMAIN, &exec, "file"),
        Query::allow("pam_totp_vault_t", &vault_file, "file"),
        Query::allow("pam_totp_vault_t", &vault_dir, "dir"),
        Query::allow(USER_DOMAIN, &vault_file, "file"),
    ]);
    assert!(a[0].contains("pam_totp_vault_t"), "user_t runs it as {:?}", a[0]);
    assert!(a[1].contains("execute"), "{:?}", a[1]);
    for p in ["create", "write", "rename", "lock", "read", "unlink"] {
        assert!(a[2].contains(p), "the helper may not {p} vault files: {:?}", a[2]);
    }
    for p in ["add_name", "remove_name", "write", "search"] {
        assert!(a[3].contains(p), "the helper may not {p} in the vault: {:?}", a[3]);
    }
    for p in ["read", "write", "create"] {
        assert!(!a[4].contains(p), "user_t may {p} vault files: {:?}", a[4]);
    }
    assert_ne!(
        s.base.label("/usr/libexec/pam-totp/pam-totp-vault", 0o100000),
        exec,
        "no type without the module"
    );
}
