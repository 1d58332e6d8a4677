//! pam-harness: runs pam_start_confdir + pam_authenticate + pam_end through the real libpam
//! with a scripted conversation, and prints what the user would have seen.
//!
//! usage: pam-harness CONFDIR SERVICE USER [--rhost H] [--start-at UNIX_NANOS]
//! [--answer-after PATH] [ANSWER ...]
//! Each prompt consumes the next ANSWER (a prompt with none left fails the conversation);
//! the answer `@totp` is the current code (oathtool) of the last `secret=` a message showed.
//! With `--answer-after PATH`, the first prompt creates `PATH.prompted` and waits (up to
//! 60 s) for PATH to exist before answering: a test can act while a login waits at its prompt.
//! Output lines: `PROMPT <text>`, `ERROR <text>`, `INFO <text>`, `LOG <syslog line>`, then
//! `RESULT <code>`.
//!
//! Syslog capture: the harness enters a private mount namespace, mounts a tmpfs over /dev
//! (bind-mounting the usual device nodes back) and listens on its own /dev/log, so it sees
//! exactly what the module sends to syslog and the host's /dev and logs are not touched.
//! Exit status 0 whatever the result; 2 on usage errors.

// Test-only code: one SAFETY comment per FFI step is enough here.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::collections::VecDeque;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}
#[repr(C)]
struct PamConv {
    conv: unsafe extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_set_item(pamh: *mut c_void, item: c_int, value: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
}

const PAM_RHOST: c_int = 4;

struct Script {
    /// `@totp` answers with the current code (from oathtool) of the last `secret=` a message
    /// showed: the code of a key made during the login (enrollment at login).
    last_secret: Option<String>,
    answers: VecDeque<String>,
    out: Vec<String>,
    answer_after: Option<String>,
}

unsafe extern "C" fn conv(
    n: c_int,
    msgs: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the &mut Script passed to pam_start_confdir below, alive for the
    // whole transaction; msgs holds n pointers (Linux-PAM layout).
    let script = unsafe { &mut *data.cast::<Script>() };
    let n = n as usize;
    // SAFETY: calloc returns zeroed memory for n responses, freed by the module.
    let replies = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    for i in 0..n {
        // SAFETY: i < n pointers, each to a valid message with a C string.
        let m = unsafe { &**msgs.add(i) };
        // SAFETY: msg is a NUL-terminated string owned by the module.
        let text = unsafe { CStr::from_ptr(m.msg) }.to_string_lossy().into_owned();
        match m.msg_style {
            1 | 2 => {
                script.out.push(format!("PROMPT {text}"));
                if let Some(gate) = script.answer_after.take() {
                    let _ = std::fs::write(format!("{gate}.prompted"), "");
                    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
                    while !std::path::Path::new(&gate).exists() && std::time::Instant::now() < until {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                }
                let Some(mut a) = script.answers.pop_front() else {
                    // SAFETY: replies came from calloc above.
                    unsafe { libc::free(replies.cast()) };
                    return 19; // PAM_CONV_ERR
                };
                if a == "@totp" {
                    a = script.last_secret.as_deref().map(totp_now).unwrap_or_default();
                }
                let c = CString::new(a).unwrap_or_default();
                // SAFETY: strdup allocates with malloc, as PAM requires; i < n.
                unsafe { (*replies.add(i)).resp = libc::strdup(c.as_ptr()) };
            }
            3 => script.out.push(format!("ERROR {text}")),
            _ => script.out.push(format!("INFO {text}")),
        }
        if let Some(rest) = text.split("secret=").nth(1) {
            let key: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            if key.len() >= 16 {
                script.last_secret = Some(key);
            }
        }
    }
    // SAFETY: resp is the module's out-pointer.
    unsafe { *resp = replies };
    0
}

/// The current TOTP code of `key` (base32), from oathtool: an independent generator.
fn totp_now(key: &str) -> String {
    std::process::Command::new("oathtool")
        .args(["--totp", "--base32", key])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn check(rc: c_int, what: &str) {
    if rc != 0 {
        eprintln!("{what}: {}", std::io::Error::last_os_error());
        std::process::exit(2);
    }
}

/// Private /dev with our own /dev/log socket (see the module doc).
fn capture_syslog() -> std::os::unix::net::UnixDatagram {
    let none: *const c_char = ptr::null();
    let tmp = format!("/tmp/pam-harness-dev-{}", std::process::id());
    std::fs::create_dir(&tmp).unwrap();
    let (root, dev, t, tmpfs) = (cstr("/"), cstr("/dev"), cstr(&tmp), cstr("tmpfs"));
    // SAFETY: plain syscalls with valid NUL-terminated strings; they change only this
    // process's new mount namespace.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS), "unshare");
        check(
            libc::mount(none, root.as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, ptr::null()),
            "make-rprivate",
        );
        check(
            libc::mount(
                dev.as_ptr(),
                t.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                ptr::null(),
            ),
            "bind /dev",
        );
        check(
            libc::mount(
                tmpfs.as_ptr(),
                dev.as_ptr(),
                tmpfs.as_ptr(),
                0,
                cstr("mode=755").as_ptr().cast(),
            ),
            "tmpfs /dev",
        );
    }
    for n in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = format!("/dev/{n}");
        std::fs::write(&target, "").unwrap();
        let (src, dst) = (cstr(&format!("{tmp}/{n}")), cstr(&target));
        // SAFETY: as above.
        unsafe {
            check(
                libc::mount(src.as_ptr(), dst.as_ptr(), none, libc::MS_BIND, ptr::null()),
                "bind node",
            )
        };
    }
    // SAFETY: as above.
    unsafe { check(libc::umount2(t.as_ptr(), libc::MNT_DETACH), "umount tmp") };
    std::fs::remove_dir(&tmp).unwrap();
    std::os::unix::net::UnixDatagram::bind("/dev/log").unwrap()
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: pam-harness CONFDIR SERVICE USER [--rhost H] [--start-at NANOS] [ANSWER ...]");
        std::process::exit(2);
    }
    let confdir = CString::new(args.remove(0)).unwrap();
    let service = CString::new(args.remove(0)).unwrap();
    let user = CString::new(args.remove(0)).unwrap();
    let mut rhost = None;
    let mut start_at = None;
    let mut answer_after = None;
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        let value = args.remove(0);
        match flag.as_str() {
            "--rhost" => rhost = Some(CString::new(value).unwrap()),
            "--start-at" => start_at = Some(value.parse::<u128>().unwrap()),
            "--answer-after" => answer_after = Some(value),
            _ => {
                eprintln!("unknown flag {flag}");
                std::process::exit(2);
            }
        }
    }
    let syslog = capture_syslog();
    let mut script = Script {
        last_secret: None,
        answers: args.into(),
        out: Vec::new(),
        answer_after,
    };
    let c = PamConv {
        conv,
        appdata_ptr: (&mut script as *mut Script).cast(),
    };
    let mut pamh = ptr::null_mut();
    // SAFETY: all strings are NUL-terminated; `c` and `script` outlive the transaction.
    let rc = unsafe { pam_start_confdir(service.as_ptr(), user.as_ptr(), &c, confdir.as_ptr(), &mut pamh) };
    if rc != 0 {
        println!("RESULT start-failed {rc}");
        return;
    }
    if let Some(h) = &rhost {
        // SAFETY: pamh is live; libpam copies the string.
        unsafe { pam_set_item(pamh, PAM_RHOST, h.as_ptr().cast()) };
    }
    if let Some(t) = start_at {
        // Line up concurrent runs: spin until the agreed instant.
        while std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            < t
        {
            std::hint::spin_loop();
        }
    }
    // SAFETY: pamh is live.
    let rc = unsafe { pam_authenticate(pamh, 0) };
    // SAFETY: pamh is live and not used afterwards.
    unsafe { pam_end(pamh, rc) };
    for line in &script.out {
        println!("{line}");
    }
    syslog.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8192];
    while let Ok(n) = syslog.recv(&mut buf) {
        println!("LOG {}", String::from_utf8_lossy(&buf[..n]).replace('\n', "\\n"));
    }
    println!("RESULT {rc}");
}
