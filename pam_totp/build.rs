//! Link choices that make pam_totp.so load like a C PAM module (see docs/benchmarks.md).
//!
//! 1. The unwinder is linked statically (libgcc_eh.a) instead of depending on libgcc_s.so.1.
//!    Rust's std needs an unwinder for `catch_unwind`, our panic containment; with the
//!    shared libgcc_s every pam_start in a C host (sshd, sudo, login) also had to load and
//!    relocate that library, which cost more than the whole pam_permit floor. Our own native
//!    libraries come before std's `-lgcc_s` on the link line and LTO makes all of the
//!    crate one object, so every `_Unwind_*` reference is resolved from the archive and
//!    `--as-needed` drops libgcc_s. The version script of a cdylib keeps those symbols
//!    local: the module still exports only `pam_sm_*`.
//!    The static unwinder of GCC 12 calls `_dl_find_object` (glibc 2.35). For older glibc
//!    (RHEL 9 has 2.34) a host build can use PAM_TOTP_SHARED_UNWINDER=1 to keep libgcc_s.
//!    Linked by zig (`cargo zigbuild`, as packaging/build does for the packages: glibc 2.28,
//!    x86_64 and aarch64), the unwinder is zig's own static LLVM libunwind instead: zig's
//!    linker wrapper turns std's `-lgcc_s` into it, it finds unwind tables with
//!    `dl_iterate_phdr` (any glibc), and GCC's libgcc_eh.a, built for this host's glibc and
//!    perhaps not even for the target's architecture, is left out.
//! 2. `-z nodelete`: the module stays mapped after pam_end's dlclose, so a process that
//!    authenticates repeatedly pays the load once, and code a thread-local destructor may
//!    still point to is never unmapped.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PAM_TOTP_SHARED_UNWINDER");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let zig = std::env::var("RUSTC_LINKER").is_ok_and(|l| {
        std::path::Path::new(&l)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("zigcc-"))
    });
    if zig {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
        return;
    }
    if std::env::var_os("PAM_TOTP_SHARED_UNWINDER").is_some_and(|v| v == "1") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = std::process::Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute() && p.exists());
    match found.as_ref().and_then(|p| p.parent()) {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static:-bundle,+verbatim=libgcc_eh.a");
        }
        None => println!("cargo:warning=libgcc_eh.a not found with {cc}; pam_totp.so will depend on libgcc_s.so.1"),
    }
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
