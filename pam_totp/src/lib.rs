//! pam_totp.so: the FFI boundary, and nothing else. All logic lives in pam-totp-core.
//!
//! Owns: the exported `pam_sm_*` entry points, panic containment, and the one mapping from
//! the core's [`Outcome`] to a PAM return code. Every `unsafe` block in the project is in
//! this crate and carries a `// SAFETY:` comment.

mod ffi;
mod host;

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ffi::*;
use host::PamHost;
use pam_totp_core::account::SystemAccounts;
use pam_totp_core::clock::SystemClock;
use pam_totp_core::login::{authenticate, Level, Outcome, Request};

/// The only place a PAM return code is chosen. Reading this match answers "what can ever
/// return PAM_SUCCESS or PAM_IGNORE": `Accepted` and, by `nullok`/`enforce_after`,
/// `NotEnrolledAllowed`. Everything else refuses.
fn pam_code(outcome: &Outcome) -> c_int {
    match outcome {
        Outcome::Accepted(_) => PAM_SUCCESS,
        // PAM_IGNORE (not SUCCESS) so this module cannot be the one that lets a user in.
        Outcome::NotEnrolledAllowed => PAM_IGNORE,
        Outcome::NotEnrolled
        | Outcome::WrongCode
        | Outcome::Replay
        | Outcome::LockedOut
        | Outcome::UnknownUser
        | Outcome::BadSecretFile
        | Outcome::SecretMissing
        | Outcome::StateUnavailable => PAM_AUTH_ERR,
        Outcome::ConversationFailed => PAM_CONV_ERR,
        Outcome::BadConfig => PAM_SERVICE_ERR,
    }
}

/// Keeps the default panic hook from writing to stderr (the user's terminal under sudo).
/// This hook belongs to the module's own copy of std, so the host program is unaffected.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// Runs `f`, turning a panic into PAM_SERVICE_ERR and a log line. No panic crosses into
/// the host program.
fn guard(pamh: *mut PamHandle, f: impl FnOnce() -> c_int) -> c_int {
    if pamh.is_null() {
        return PAM_SERVICE_ERR;
    }
    quiet_panics();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(_) => {
            // Logging itself must not unwind out of here.
            let _ = catch_unwind(|| host::log(pamh, Level::Err, "internal error (panic); login refused"));
            PAM_SERVICE_ERR
        }
    }
}

/// Collects argv into UTF-8 strings; None if any argument is not UTF-8.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings (libpam's contract).
unsafe fn args<'a>(argc: c_int, argv: *const *const c_char) -> Option<Vec<&'a str>> {
    let n = usize::try_from(argc).ok()?;
    if n == 0 {
        return Some(Vec::new());
    }
    if argv.is_null() {
        return None;
    }
    // SAFETY: argv is non-null and has argc entries (caller's contract).
    let ptrs = unsafe { std::slice::from_raw_parts(argv, n) };
    let mut out = Vec::with_capacity(n);
    for &p in ptrs {
        if p.is_null() {
            return None;
        }
        // SAFETY: each entry is a NUL-terminated string owned by libpam for the call.
        out.push(unsafe { CStr::from_ptr(p) }.to_str().ok()?);
    }
    Some(out)
}

fn run_authenticate(pamh: *mut PamHandle, flags: c_int, argc: c_int, argv: *const *const c_char) -> c_int {
    // SAFETY: pamh is the non-null handle of this call (checked in `guard`), and `host`
    // lives only until this function returns.
    let mut host = unsafe { PamHost::new(pamh, flags) };
    #[cfg(debug_assertions)]
    if std::env::var_os("PAM_TOTP_TEST_PANIC").is_some() {
        panic!("forced test panic"); // ok: debug builds only; proves the containment above
    }
    // SAFETY: argc/argv come straight from libpam for this call.
    let Some(args) = (unsafe { args(argc, argv) }) else {
        host::log(pamh, Level::Err, "refused: a module argument is not valid UTF-8");
        return PAM_SERVICE_ERR;
    };
    let user = match host.user() {
        Ok(Some(u)) => u,
        Ok(None) => {
            host::log(pamh, Level::Notice, "refused: user name is not valid UTF-8");
            return PAM_AUTH_ERR;
        }
        Err(rc) => {
            return if rc == PAM_SUCCESS || rc == PAM_IGNORE {
                PAM_AUTH_ERR
            } else {
                rc
            }
        }
    };
    let service = host.string_item(PAM_SERVICE).unwrap_or_default();
    let rhost = host.string_item(PAM_RHOST);
    let req = Request {
        user: &user,
        service: &service,
        rhost: rhost.as_deref(),
        args: &args,
        pam_dir: Some(std::path::Path::new("/etc/pam.d")),
    };
    let outcome = authenticate(&mut host, &SystemAccounts, &SystemClock, &req);
    pam_code(&outcome)
}

/// # Safety
/// Called by libpam with a valid handle and `argc` argument strings.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    guard(pamh, || run_authenticate(pamh, flags, argc, argv))
}

/// Credentials are not this module's business: succeed, as PRODUCT.md specifies.
///
/// # Safety
/// Called by libpam with a valid handle.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_setcred(
    pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    guard(pamh, || PAM_SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_totp_core::login::Accepted;

    #[test]
    fn only_accepted_succeeds_and_only_allowed_not_enrolled_is_ignored() {
        let all = [
            Outcome::Accepted(Accepted::Totp),
            Outcome::Accepted(Accepted::Hotp),
            Outcome::Accepted(Accepted::Backup),
            Outcome::Accepted(Accepted::RememberedHost),
            Outcome::Accepted(Accepted::EnrolledAtLogin),
            Outcome::NotEnrolledAllowed,
            Outcome::NotEnrolled,
            Outcome::WrongCode,
            Outcome::Replay,
            Outcome::LockedOut,
            Outcome::UnknownUser,
            Outcome::BadSecretFile,
            Outcome::SecretMissing,
            Outcome::StateUnavailable,
            Outcome::ConversationFailed,
            Outcome::BadConfig,
        ];
        for o in &all {
            let rc = pam_code(o);
            assert_eq!(rc == PAM_SUCCESS, matches!(o, Outcome::Accepted(_)), "{o:?}");
            assert_eq!(rc == PAM_IGNORE, matches!(o, Outcome::NotEnrolledAllowed), "{o:?}");
        }
    }
}
