//! The packages for every distribution in README's table (issue 22): every shipped ELF file
//! needs glibc 2.28 at most, in both architectures; the zig-linked module still contains a
//! panic (its own static unwinder); and the arm64 packages work under qemu-user through
//! Debian's arm64 libpam (multiarch libpam0g:arm64): a right code is accepted once.
//! packaging/build makes the packages and, under target/cross-check/, the arm64 pam-harness
//! and the module with its forced-panic hook.

use pam_totp_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn packages() -> Vec<PathBuf> {
    let dir = workspace().join("target/packages");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run packaging/build first (scripts/test does)", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all
}

fn package(suffix: &str) -> PathBuf {
    let all = packages();
    all.iter()
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .cloned()
        .unwrap_or_else(|| panic!("no *{suffix} in target/packages: {all:?}"))
}

/// A package's files, unpacked into a temporary directory (removed on drop).
struct Unpacked(PathBuf);

impl Unpacked {
    fn new(pkg: &Path) -> Unpacked {
        let dir = std::env::temp_dir().join(format!("pam-totp-unpack-{}", random_hex(4)));
        std::fs::create_dir(&dir).unwrap();
        let script = if pkg.extension().is_some_and(|e| e == "deb") {
            format!("dpkg-deb -x '{}' .", pkg.display())
        } else {
            format!(
                "rpm2cpio '{}' | cpio -idm --quiet --no-absolute-filenames",
                pkg.display()
            )
        };
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Unpacked(dir)
    }

    fn elf_files(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                let md = std::fs::symlink_metadata(&p).unwrap();
                if md.is_dir() {
                    walk(&p, out);
                } else if md.is_file() && std::fs::read(&p).unwrap().starts_with(b"\x7fELF") {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out.sort();
        out
    }
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every GLIBC_x.y version an ELF file needs (readelf --version-info: its .gnu.version_r).
fn glibc_versions(elf: &Path) -> Vec<(u32, u32)> {
    let out = run("readelf", &["--version-info", "--wide", elf.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut v: Vec<(u32, u32)> = text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut it = v.split('.').map(|n| n.parse::<u32>());
            Some((it.next()?.ok()?, it.next().unwrap_or(Ok(0)).ok()?))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn machine(elf: &Path) -> String {
    let out = run("readelf", &["--file-header", "--wide", elf.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Machine:"))
        .unwrap()
        .trim()
        .to_string()
}

fn dynamic(elf: &Path) -> String {
    String::from_utf8(run("readelf", &["--dynamic", "--wide", elf.to_str().unwrap()]).stdout).unwrap()
}

/// The dynamic symbols an ELF file defines (readelf reads any architecture's files).
fn exported(elf: &Path) -> Vec<String> {
    let out = run("readelf", &["--dyn-syms", "--wide", elf.to_str().unwrap()]);
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num: Value Size Type Bind Vis Ndx Name
            (f.len() >= 8 && f[6] != "UND" && f[6] != "Ndx" && matches!(f[4], "GLOBAL" | "WEAK"))
                .then(|| f[7].split('@').next().unwrap().to_string())
        })
        .collect();
    v.sort();
    v
}

const GLIBC_MAX: (u32, u32) = (2, 28);

#[test]
fn every_shipped_elf_file_needs_glibc_2_28_at_most_in_both_architectures() {
    let cases = [
        (
            "_amd64.deb",
            "Advanced Micro Devices X86-64",
            "usr/lib/x86_64-linux-gnu/security/pam_totp.so",
        ),
        (
            "_arm64.deb",
            "AArch64",
            "usr/lib/aarch64-linux-gnu/security/pam_totp.so",
        ),
        (
            ".x86_64.rpm",
            "Advanced Micro Devices X86-64",
            "usr/lib64/security/pam_totp.so",
        ),
        (".aarch64.rpm", "AArch64", "usr/lib64/security/pam_totp.so"),
    ];
    for (suffix, arch, module) in cases {
        let pkg = package(suffix);
        let u = Unpacked::new(&pkg);
        let elves = u.elf_files();
        let names: Vec<String> = elves
            .iter()
            .map(|p| p.strip_prefix(&u.0).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                "usr/bin/pam-totp".to_string(),
                module.to_string(),
                "usr/libexec/pam-totp/pam-totp-vault".to_string(),
                "usr/sbin/pam-totp-stated".to_string()
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
            "{}",
            pkg.display()
        );
        for elf in &elves {
            let name = elf.strip_prefix(&u.0).unwrap().display().to_string();
            assert_eq!(machine(elf), arch, "{name} in {}", pkg.display());
            let versions = glibc_versions(elf);
            assert!(!versions.is_empty(), "{name}: no GLIBC version read");
            let newest = *versions.last().unwrap();
            assert!(
                newest <= GLIBC_MAX,
                "{name} in {} needs GLIBC_{}.{} (all: {versions:?}); RHEL 8 has 2.28",
                pkg.display(),
                newest.0,
                newest.1
            );
        }
        // The module loads like a C module there too: no libgcc_s, exports only pam_sm_*.
        let m = u.0.join(module);
        let d = dynamic(&m);
        assert!(!d.contains("libgcc_s"), "{module}: {d}");
        assert!(d.contains("NODELETE"), "{module}: {d}");
        assert_eq!(
            exported(&m),
            vec!["pam_sm_authenticate", "pam_sm_setcred"],
            "{}",
            pkg.display()
        );
    }
    // The check can fail: the host's own debug build needs this Debian's newer glibc.
    let host = glibc_versions(&cli_path());
    assert!(host.last().unwrap() > &GLIBC_MAX, "{host:?}");
}

#[test]
fn rpm_requires_no_glibc_above_2_28() {
    for suffix in [".x86_64.rpm", ".aarch64.rpm"] {
        let pkg = package(suffix);
        let requires = String::from_utf8(run("rpm", &["-qp", "--requires", pkg.to_str().unwrap()]).stdout).unwrap();
        let mut seen = 0;
        for r in requires.lines() {
            if let Some(v) = r.split("(GLIBC_").nth(1) {
                seen += 1;
                let v = v.trim_end_matches(")(64bit)").trim_end_matches(')');
                let mut it = v.split('.').map(|n| n.parse::<u32>().unwrap());
                let v = (it.next().unwrap(), it.next().unwrap_or(0));
                assert!(v <= GLIBC_MAX, "{}: {r}", pkg.display());
            }
        }
        assert!(seen > 0, "{}: no GLIBC requirement read:\n{requires}", pkg.display());
    }
}

fn qemu() -> &'static str {
    for q in ["qemu-aarch64", "qemu-aarch64-static"] {
        if Command::new(q)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return q;
        }
    }
    panic!("qemu-aarch64 missing: apt-get install qemu-user (scripts/test does)");
}

fn cross_check(path: &str) -> PathBuf {
    let p = workspace().join("target/cross-check").join(path);
    assert!(p.exists(), "{} missing: run packaging/build first", p.display());
    p
}

/// A fixture whose pam_totp.so is `module` (libpam names a module after its file).
fn fixture_with(module: &Path) -> Fixture {
    let f = Fixture::new();
    std::fs::remove_file(f.root.join("pam_totp.so")).unwrap();
    std::os::unix::fs::symlink(module, f.root.join("pam_totp.so")).unwrap();
    f
}

/// The forced panic of the module built as shipped (LTO, zig's static libunwind) plus debug
/// assertions: caught at the FFI boundary, refused, logged, nothing on the terminal. Through
/// this host's libpam (x86_64) and through the arm64 libpam under qemu.
#[test]
fn a_panic_inside_the_zig_linked_module_is_contained_in_both_architectures() {
    let u = TestUser::create();
    let key = random_key_b32();
    u.enroll(&key, "");
    for arch in ["x86_64", "aarch64"] {
        let module = cross_check(&format!("{arch}/pam_totp-panic-hook.so"));
        assert!(glibc_versions(&module).last().unwrap() <= &GLIBC_MAX);
        let f = fixture_with(&module);
        f.simple("svc", "");
        let mut c = if arch == "x86_64" {
            Command::new(harness_path())
        } else {
            let mut c = Command::new(qemu());
            c.arg(cross_check("aarch64/pam-harness"));
            c
        };
        c.arg(f.confdir()).arg("svc").arg(&u.name).arg(code_now(&key));
        c.env("PAM_TOTP_TEST_PANIC", "1");
        let r = PamRun::parse(&c.output().unwrap());
        assert_eq!(r.rc, PAM_SERVICE_ERR, "{arch}: {r:?}");
        assert!(
            r.stderr.is_empty(),
            "{arch}: panic text reached the terminal: {}",
            r.stderr
        );
        assert!(r.prompts.is_empty() && r.errors.is_empty(), "{arch}: {r:?}");
        assert!(
            r.logged(&["internal error (panic); login refused"]),
            "{arch}: {:?}",
            r.logs
        );
        // Without the hook the same module and stack let the user in: the panic made the refusal.
        let mut ok = if arch == "x86_64" {
            Command::new(harness_path())
        } else {
            let mut c = Command::new(qemu());
            c.arg(cross_check("aarch64/pam-harness"));
            c
        };
        ok.arg(f.confdir()).arg("svc").arg(&u.name).arg(fresh_code(&key));
        let r = PamRun::parse(&ok.output().unwrap());
        assert_eq!(r.rc, PAM_SUCCESS, "{arch}: {r:?}");
    }
}

/// The arm64 .deb's own files under qemu-user: its pam-totp enrolls a user, its module in
/// a service read by Debian's arm64 libpam (through an arm64 pam-harness, pam_start_confdir)
/// accepts the right code once and refuses it replayed; its pam-totp-stated starts.
#[test]
fn arm64_login_through_the_arm64_libpam_accepts_a_right_code_once() {
    let q = qemu();
    assert!(
        Path::new("/usr/lib/aarch64-linux-gnu/libpam.so.0").exists(),
        "libpam0g:arm64 missing (dpkg --add-architecture arm64; scripts/test installs it)"
    );
    let deb = Unpacked::new(&package("_arm64.deb"));
    let module = deb.0.join("usr/lib/aarch64-linux-gnu/security/pam_totp.so");
    let cli = deb.0.join("usr/bin/pam-totp");
    let harness = cross_check("aarch64/pam-harness");
    for elf in [&module, &cli, &harness] {
        assert_eq!(machine(elf), "AArch64", "{}", elf.display());
    }
    let f = fixture_with(&module);
    let u = TestUser::create();
    // Enrolled by the arm64 CLI, with the fixture's configuration and state directory.
    let out = Command::new(q)
        .arg(&cli)
        .args(["--config"])
        .arg(f.root.join("pam_totp.conf"))
        .arg("--state-dir")
        .arg(f.state_dir())
        .args(["enroll", "--user", &u.name, "--json"])
        .env_remove("SUDO_UID")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "arm64 pam-totp enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    register_enrollment(&j);
    let secret = j["secret"].as_str().unwrap().to_string();
    assert!(u.secret_path().exists());

    f.simple("arm64", "");
    let login = |code: &str| {
        let out = Command::new(q)
            .arg(&harness)
            .arg(f.confdir())
            .arg("arm64")
            .arg(&u.name)
            .arg(code)
            .output()
            .unwrap();
        let r = PamRun::parse(&out);
        assert_no_secrets_in(&r.logs, &[code]);
        r
    };
    // A code computed on the host by oathtool, not by the code under test.
    let code = fresh_code(&secret);
    let wrong = wrong_code(&secret);
    let r = login(&wrong);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    let r = login(&code);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(
        r.logged(&["pam_totp(arm64:auth): accepted verification code"]),
        "{:?}",
        r.logs
    );
    let r = login(&code);
    assert_eq!(r.rc, PAM_AUTH_ERR, "replay: {r:?}");
    assert!(f.state_dir().join(format!("{}.state", u.name)).exists());

    // The daemon starts and answers its usage.
    let out = Command::new(q)
        .arg(deb.0.join("usr/sbin/pam-totp-stated"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("usage: pam-totp-stated")
            || String::from_utf8_lossy(&out.stderr).contains("usage: pam-totp-stated"),
        "{out:?}"
    );
}
