//! The built packages (scripts/test runs packaging/build first): their file lists (amd64 and
//! arm64 .deb, x86_64 and aarch64 .rpm, pam-totp-selinux), lintian, rpmlint, the .rpm's modes
//! and owners, and the amd64 .deb really installed, used and removed. tests/tests/portable.rs
//! checks their glibc versions and runs the arm64 files; selinux.rs and authselect.rs the
//! .rpm's policy module and authselect profile.

use pam_totp_tests::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package whose file name ends with `suffix` ("_amd64.deb", ".aarch64.rpm").
fn package(suffix: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/packages");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run packaging/build first (scripts/test does)", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()))
}

/// The two .deb files: (suffix, Debian architecture, multiarch triplet).
const DEBS: &[(&str, &str, &str)] = &[
    ("_amd64.deb", "amd64", "x86_64-linux-gnu"),
    ("_arm64.deb", "arm64", "aarch64-linux-gnu"),
];
const RPMS: &[&str] = &[".x86_64.rpm", ".aarch64.rpm"];

fn lines(cmd: &str, args: &[&str]) -> Vec<String> {
    String::from_utf8(run(cmd, args).stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

const COMMON: &[(&str, &str)] = &[
    ("usr/bin/pam-totp", "rwxr-xr-x"),
    ("usr/sbin/pam-totp-stated", "rwxr-xr-x"),
    ("usr/lib/systemd/system/pam-totp-stated.socket", "rw-r--r--"),
    ("usr/lib/systemd/system/pam-totp-stated.service", "rw-r--r--"),
    ("usr/share/man/man8/pam-totp-stated.8.gz", "rw-r--r--"),
    ("etc/security/pam_totp.conf", "rw-r--r--"),
    ("var/lib/pam-totp/", "rwx------"),
    ("var/lib/pam-totp/vault/", "rwx------"),
    ("usr/libexec/pam-totp/pam-totp-vault", "rwsr-xr-x"),
    ("usr/share/man/man1/pam-totp.1.gz", "rw-r--r--"),
    ("usr/share/man/man1/pam-totp-enroll.1.gz", "rw-r--r--"),
    ("usr/share/man/man5/pam_totp.conf.5.gz", "rw-r--r--"),
    ("usr/share/man/man8/pam_totp.8.gz", "rw-r--r--"),
    (
        "usr/share/doc/pam-totp/examples/sshd_config.d-pam-totp.conf",
        "rw-r--r--",
    ),
    ("usr/share/doc/pam-totp/copyright", "rw-r--r--"),
    // The admin guide the man pages and the shipped conf point at.
    ("usr/share/doc/pam-totp/docs/fleet.md.gz", "rw-r--r--"),
    ("usr/share/doc/pam-totp/docs/troubleshooting.md.gz", "rw-r--r--"),
];

#[test]
fn deb_contains_the_expected_files_with_root_ownership() {
    for (suffix, arch, triplet) in DEBS {
        let deb = package(suffix);
        let listing = lines("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
        let find = |path: &str| listing.iter().find(|l| l.ends_with(&format!("./{path}"))).cloned();
        let module = format!("usr/lib/{triplet}/security/pam_totp.so");
        let mut want: Vec<(&str, &str)> = COMMON.to_vec();
        want.push((&module, "rw-r--r--"));
        want.push(("usr/share/pam-configs/pam-totp", "rw-r--r--"));
        for (path, mode) in want {
            let l =
                find(path).unwrap_or_else(|| panic!("{path} missing from the {arch} .deb:\n{}", listing.join("\n")));
            assert!(l[1..].starts_with(mode), "{path}: {l}");
            assert!(l.contains(" root/root "), "{path}: {l}");
        }
        assert!(listing.iter().all(|l| l.contains(" root/root ")));
        let control = String::from_utf8(
            run(
                "dpkg-deb",
                &["--field", deb.to_str().unwrap(), "Depends", "Version", "Architecture"],
            )
            .stdout,
        )
        .unwrap();
        assert!(control.contains("libpam0g") && control.contains("libc6"), "{control}");
        let version = env!("CARGO_PKG_VERSION");
        assert!(control.contains(&format!("Version: {version}")), "{control}");
        assert!(control.contains(&format!("Architecture: {arch}")), "{control}");
        // Installable on Debian 11 and Ubuntu 20.04 (glibc 2.31): libc6 (>= 2.28) at most.
        let libc = control
            .split("libc6 (>= ")
            .nth(1)
            .and_then(|v| v.split(')').next())
            .unwrap_or_else(|| panic!("{control}"));
        let v: Vec<u32> = libc.split('.').map(|n| n.parse().unwrap()).collect();
        assert!(v.as_slice() <= &[2, 28][..], "{arch}: Depends libc6 (>= {libc})");
        let conffiles =
            String::from_utf8(run("dpkg-deb", &["--info", deb.to_str().unwrap(), "conffiles"]).stdout).unwrap();
        assert_eq!(conffiles.trim(), "/etc/security/pam_totp.conf");
    }
}

/// The debug-build test hooks (a forced panic in the module, a lost etcd answer in the
/// daemon) are not in what ships: the packages hold release builds.
#[test]
fn the_packaged_binaries_carry_no_test_hooks() {
    let dir = std::env::temp_dir().join(format!("pt-pkg-{}", random_hex(4)));
    for (suffix, _, _) in DEBS {
        let out = run(
            "dpkg-deb",
            &["-x", package(suffix).to_str().unwrap(), dir.to_str().unwrap()],
        );
        assert!(out.status.success(), "{out:?}");
    }
    let files = [
        "usr/sbin/pam-totp-stated",
        "usr/lib/x86_64-linux-gnu/security/pam_totp.so",
        "usr/lib/aarch64-linux-gnu/security/pam_totp.so",
        "usr/bin/pam-totp",
    ];
    for f in files {
        let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        for hook in [&b"PAM_TOTP_STATED_TEST"[..], b"PAM_TOTP_TEST_PANIC"] {
            assert!(
                !bytes.windows(hook.len()).any(|w| w == hook),
                "{f} contains {}",
                String::from_utf8_lossy(hook)
            );
        }
    }
    // The check can fail: the debug builds the tests use do carry them.
    let debug = std::fs::read(pam_totp_tests::fleet::stated_path()).unwrap();
    assert!(debug.windows(20).any(|w| w == b"PAM_TOTP_STATED_TEST"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lintian_finds_no_errors_or_warnings() {
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .args(DEBS.iter().map(|(suffix, _, _)| package(suffix)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(bad.is_empty(), "lintian:\n{}", bad.join("\n"));
}

/// rpmlint as Fedora and EPEL configure it (packaging/rpm/rpmlint.toml), with the findings kept
/// on purpose filtered, each with its reason, in packaging/rpm/rpmlintrc (listed in docs/install.md).
/// A filter that no longer matches is itself an error (unused-rpmlintrc-filter).
#[test]
fn rpm_is_clean_under_rpmlint_except_documented_warnings() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/rpm");
    let out = Command::new("rpmlint")
        .arg("-c")
        .arg(dir.join("rpmlint.toml"))
        .arg("-r")
        .arg(dir.join("rpmlintrc"))
        .args(RPMS.iter().map(|s| package(s)))
        .arg(package(".noarch.rpm"))
        .output()
        .expect("rpmlint (Debian package rpmlint; scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let report = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    // " 1 packages and 0 specfiles checked; 0 errors, 0 warnings, 0 badness; has taken 0.1 s"
    let summary = text
        .lines()
        .find(|l| l.contains(" packages and ") && l.contains(" errors, "))
        .unwrap_or_else(|| panic!("no rpmlint summary line:\n{report}"));
    let count = |what: &str| -> u32 {
        summary
            .split([';', ','])
            .find_map(|part| part.trim().strip_suffix(what)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {what} count in {summary:?}"))
    };
    assert_eq!(count("packages and 0 specfiles checked"), 3, "{report}");
    assert_eq!((count("errors"), count("warnings")), (0, 0), "rpmlint:\n{report}");
    assert!(out.status.success(), "rpmlint: {}\n{report}", out.status);
}

#[test]
fn rpm_files_modes_and_owners() {
    for suffix in RPMS {
        rpm_files_modes_and_owners_of(&package(suffix));
    }
}

fn rpm_files_modes_and_owners_of(rpm: &Path) {
    let listing = lines("rpm", &["-qlpv", rpm.to_str().unwrap()]);
    let mut want: Vec<(&str, &str)> = COMMON.to_vec();
    want.push(("usr/lib64/security/pam_totp.so", "rwxr-xr-x"));
    want.push(("usr/share/authselect/vendor/pam-totp/system-auth", "rw-r--r--"));
    for (path, mode) in &want {
        let path = path.trim_end_matches('/');
        let l = listing
            .iter()
            .find(|l| l.ends_with(&format!(" /{path}")))
            .unwrap_or_else(|| panic!("/{path} missing from the .rpm:\n{}", listing.join("\n")));
        assert!(l[1..].starts_with(mode), "{path}: {l}");
        assert!(l.contains(" root     root "), "{path}: {l}");
    }
    // Extracted, the files really have those modes and owners.
    let dir = std::env::temp_dir().join(format!("pam-totp-rpm-{}", random_hex(4)));
    std::fs::create_dir(&dir).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "rpm2cpio '{}' | cpio -idm --quiet --no-absolute-filenames",
            rpm.display()
        ))
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    for (path, mode) in &want {
        let md = std::fs::symlink_metadata(dir.join(path.trim_end_matches('/'))).unwrap();
        let bits = md.mode() & 0o777;
        let mut text: String = (0..9)
            .map(|i| {
                if bits & (1 << (8 - i)) != 0 {
                    "rwx".as_bytes()[i % 3] as char
                } else {
                    '-'
                }
            })
            .collect();
        if md.mode() & 0o4000 != 0 {
            text.replace_range(2..3, if bits & 0o100 != 0 { "s" } else { "S" });
        }
        assert_eq!(&text, mode, "{path}");
        assert_eq!((md.uid(), md.gid()), (0, 0), "{path}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let requires = lines("rpm", &["-qp", "--requires", rpm.to_str().unwrap()]);
    assert!(requires.iter().any(|r| r == "pam"), "{requires:?}");
    // Where the targeted SELinux policy is installed, the policy module comes along.
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        requires.contains(&format!("(pam-totp-selinux = {version}-1 if selinux-policy-targeted)")),
        "{requires:?}"
    );
}

/// pam-totp-selinux: the compiled module where Fedora's packages put theirs, its interface
/// for other policies, its sources; scriptlets that load it, relabel, and remove it.
#[test]
fn the_selinux_subpackage_ships_the_module_and_its_scriptlets() {
    let rpm = package(".noarch.rpm");
    assert!(rpm
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("pam-totp-selinux-"));
    let listing = lines("rpm", &["-qlpv", rpm.to_str().unwrap()]);
    for path in [
        "/usr/share/selinux/packages/pam_totp.pp.bz2",
        "/usr/share/selinux/devel/include/distributed/pam_totp.if",
        "/usr/share/pam-totp/selinux/pam_totp.te",
        "/usr/share/pam-totp/selinux/pam_totp.fc",
        "/usr/share/doc/pam-totp-selinux/copyright",
    ] {
        let l = listing
            .iter()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} missing:\n{}", listing.join("\n")));
        assert!(l.starts_with("-rw-r--r--") && l.contains(" root     root "), "{l}");
    }
    let scripts = String::from_utf8(run("rpm", &["-qp", "--scripts", rpm.to_str().unwrap()]).stdout).unwrap();
    for want in [
        "postinstall scriptlet",
        "semodule -n -s \"$SELINUXTYPE\" -X 200 -i /usr/share/selinux/packages/pam_totp.pp.bz2",
        "posttrans scriptlet",
        "restorecon -R /var/lib/pam-totp",
        "postuninstall scriptlet",
        "-X 200 -r pam_totp",
        "load_policy",
    ] {
        assert!(scripts.contains(want), "{want:?} not in:\n{scripts}");
    }
    let requires = lines("rpm", &["-qp", "--requires", rpm.to_str().unwrap()]);
    for r in ["selinux-policy", "policycoreutils", "/usr/sbin/selinuxenabled"] {
        assert!(requires.iter().any(|x| x == r), "{r}: {requires:?}");
    }
    let arch = lines("rpm", &["-qp", "--qf", "%{ARCH}", rpm.to_str().unwrap()]);
    assert_eq!(arch, vec!["noarch"]);
}

/// Purges the package on drop, whatever happened in the test.
struct Installed;
impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "pam-totp"]).output();
    }
}

#[test]
fn deb_installs_works_through_the_systems_libpam_and_removes_cleanly() {
    let deb = package("_amd64.deb");
    let _guard = Installed;
    let out = Command::new("dpkg").arg("--install").arg(&deb).output().unwrap();
    assert!(
        out.status.success(),
        "dpkg -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let module = Path::new("/usr/lib/x86_64-linux-gnu/security/pam_totp.so");
    assert!(module.exists());
    assert_eq!(std::fs::metadata("/var/lib/pam-totp").unwrap().mode() & 0o7777, 0o700);
    // Installing enables nothing: the profile is registered but not in common-auth.
    let common_auth = std::fs::read_to_string("/etc/pam.d/common-auth").unwrap();
    assert!(
        !common_auth.contains("pam_totp"),
        "installing must not enable pam_totp:\n{common_auth}"
    );
    assert!(Path::new("/usr/share/pam-configs/pam-totp").exists());

    // The installed CLI with its defaults (/etc/security/pam_totp.conf, /var/lib/pam-totp).
    let u = TestUser::create();
    let (rc, out, err) = output({
        let mut c = Command::new("/usr/bin/pam-totp");
        c.args(["enroll", "--user", &u.name, "--json"]);
        c
    });
    assert_eq!(rc, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    register_enrollment(&j);
    let secret = j["secret"].as_str().unwrap().to_string();
    // New installs keep keys in the vault, root's only.
    let vault = Path::new("/var/lib/pam-totp/vault").join(format!("{}.toml", u.name));
    let md = std::fs::metadata(&vault).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o600));
    assert!(!u.secret_path().exists());
    // Right after dpkg -i, with no service running, a user enrolls themselves (the setuid
    // helper writes the vault).
    let me = TestUser::create();
    let (rc, out, err) = output({
        let mut c = Command::new("runuser");
        c.args(["-u", &me.name, "--", "/usr/bin/pam-totp", "enroll", "--json"]);
        c.env_remove("SUDO_UID");
        c
    });
    assert_eq!(rc, 0, "{out} {err}");
    register_enrollment(&serde_json::from_str(&out).unwrap());
    assert!(Path::new("/var/lib/pam-totp/vault")
        .join(format!("{}.toml", me.name))
        .exists());
    assert!(!me.secret_path().exists());
    // A service naming the module only as pam_totp.so, found by libpam in its own directory,
    // with no arguments: the packaged defaults.
    let f = Fixture::new();
    f.service("installed", "auth required pam_totp.so\n");
    let code = code_now(&secret);
    let r = f.auth("installed", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(
        r.logged(&["pam_totp(installed:auth): accepted verification code"]),
        "{:?}",
        r.logs
    );
    assert_eq!(f.auth("installed", &u.name, &[&code]).rc, PAM_AUTH_ERR, "replay");
    assert!(Path::new("/var/lib/pam-totp")
        .join(format!("{}.state", u.name))
        .exists());
    let man = Command::new("man").args(["-w", "pam_totp"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&man.stdout).contains("pam_totp.8"),
        "man page installed"
    );

    // Remove: binaries gone, the conffile and the state stay.
    run("dpkg", &["--remove", "pam-totp"]);
    assert!(!module.exists());
    assert!(!Path::new("/usr/bin/pam-totp").exists());
    assert!(
        Path::new("/etc/security/pam_totp.conf").exists(),
        "conffile kept until purge"
    );
    assert!(Path::new("/var/lib/pam-totp").exists(), "state kept until purge");
    // Purge: the conffile, the state directory and the vault go, and it says so.
    let purge = run("dpkg", &["--purge", "pam-totp"]);
    assert!(!Path::new("/etc/security/pam_totp.conf").exists());
    assert!(!Path::new("/var/lib/pam-totp").exists());
    assert!(
        String::from_utf8_lossy(&purge.stderr).contains("purge removed the vault"),
        "{}",
        String::from_utf8_lossy(&purge.stderr)
    );
}
