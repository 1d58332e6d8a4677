//! Hosts of a fleet with the fleet vault (`store = "fleet"`, `key_store = "vault"`) for the
//! tests: a fixture, its daemon and its key ring; the helper installed for self-service.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::fleet::{Etcd, Stated};
use crate::{cli_path, output, random_hex, run, Fixture, TestUser};

/// Vault keys for the tests' rings (64 hex digits each).
pub const K1: &str = "6b9d2a4f0c7e13a85d21f0e9c4b7a3168e5d2c1b0a99887766554433221100ff";
pub const K2: &str = "f00d1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeef";
pub const K3: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// One host of the fleet: its fixture (service `svc`), its daemon, its key ring file.
#[derive(Debug)]
pub struct Host {
    pub f: Fixture,
    pub stated: Stated,
    pub ring: PathBuf,
}

impl Host {
    /// A host of namespace `ns` whose fleet.vault_key_file holds `ring` (None: not set).
    pub fn start(etcd: &Etcd, ns: &str, ring: Option<&str>) -> Host {
        Host::start_with(etcd, ns, ring, "", 1500)
    }

    /// [`Host::start`] with `extra` settings and the daemon's etcd deadline `timeout_ms`.
    pub fn start_with(etcd: &Etcd, ns: &str, ring: Option<&str>, extra: &str, timeout_ms: u64) -> Host {
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

    /// `pam-totp ARGS` as root on this host, which must succeed: its JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let (rc, out, err) = output(self.f.cli(args));
        assert_eq!(rc, 0, "{args:?}: {out} {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// `pam-totp enroll --user U --json EXTRA` as root on this host: the key and the backup
    /// codes (registered: no log line may show them).
    pub fn enroll(&self, u: &TestUser, extra: &[&str]) -> (String, Vec<String>) {
        let mut args = vec!["enroll", "--user", u.name.as_str(), "--json"];
        args.extend_from_slice(extra);
        let j = self.json(&args);
        crate::register_enrollment(&j);
        let backup = j["backup_codes"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        (j["secret"].as_str().unwrap().to_string(), backup)
    }

    /// A host that kept keys in its own vault before it joined the fleet: `user` enrolled
    /// there by root (the key is returned), then the host joins namespace `ns` with `ring`.
    pub fn joined_with_own_vault(etcd: &Etcd, ns: &str, ring: &str, user: &TestUser) -> (Host, String) {
        let f = Fixture::new();
        f.simple("svc", "");
        std::fs::write(f.root.join("pam_totp.conf"), "key_store = \"vault\"\n").unwrap();
        std::fs::create_dir(f.state_dir()).unwrap();
        std::fs::set_permissions(f.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let (rc, out, err) = output(f.cli(&["enroll", "--user", &user.name, "--json"]));
        assert_eq!(rc, 0, "{err}");
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        crate::register_enrollment(&j);
        let key = j["secret"].as_str().unwrap().to_string();
        assert!(f.state_dir().join("vault").join(format!("{}.toml", user.name)).exists());
        let path = f.root.join("vault.keys");
        write_ring(&path, ring);
        let mut table = Stated::fleet_table(etcd, ns, 1500);
        table.push_str(&format!("vault_key_file = \"{}\"\n", path.display()));
        let stated = Stated::start(&f, "key_store = \"vault\"", &table);
        (Host { f, stated, ring: path }, key)
    }

    /// No file of this host holds keys (its own vault is empty).
    pub fn holds_no_key_file(&self) -> bool {
        let vault = self.f.state_dir().join("vault");
        std::fs::read_dir(&vault).map(|d| d.count() == 0).unwrap_or(true)
    }

    /// The setuid helper installed for this host, and a private /etc/security whose
    /// pam_totp.conf is this host's (the helper reads the system's only).
    pub fn helper(&self) -> (PathBuf, PathBuf) {
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

    /// `pam-totp ARGS` run by `user` (not root) through this host's setuid helper.
    pub fn as_user(&self, user: &TestUser, args: &[&str], stdin: &str) -> (i32, String, String) {
        let (helper, security) = self.helper();
        crate::through_helper(&helper, &security, user, args, stdin)
    }
}

/// Writes a key ring file (root's, 0600) holding `text`.
pub fn write_ring(path: &Path, text: &str) {
    std::fs::write(path, format!("# the fleet vault's keys, newest first\n{text}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A fresh namespace.
pub fn ns() -> String {
    format!("v{}", random_hex(4))
}

/// Everything etcd holds under the namespace, keys and values, as `etcdctl get` shows it.
pub fn etcd_dump(etcd: &Etcd, ns: &str) -> String {
    let out = etcd.etcdctl(&["get", &format!("pam-totp/v1/{ns}/"), "--prefix"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `hay` holds the key in any of its forms: base32 (either case), the raw bytes,
/// lower- or upper-case hex, base64 of the raw bytes.
pub fn holds_key(hay: &[u8], key_b32: &str) -> bool {
    let raw = pam_totp_core::otp::decode_base32(key_b32).unwrap();
    let forms: Vec<Vec<u8>> = vec![
        key_b32.as_bytes().to_vec(),
        key_b32.to_lowercase().into_bytes(),
        raw.to_vec(),
        data_encoding::HEXLOWER.encode(&raw).into_bytes(),
        data_encoding::HEXUPPER.encode(&raw).into_bytes(),
        data_encoding::BASE64
            .encode(&raw)
            .trim_end_matches('=')
            .as_bytes()
            .to_vec(),
    ];
    forms.iter().any(|f| hay.windows(f.len()).any(|w| w == f.as_slice()))
}
