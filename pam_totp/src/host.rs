//! The PAM handle as the core's [`Host`]: conversation, PAM items, syslog.

use std::ffi::{CStr, CString};
use std::os::raw::c_void;
use std::ptr;

use pam_totp_core::login::{ConvError, Host, KeptCode, Level};
use zeroize::{Zeroize, Zeroizing};

use crate::ffi::*;

/// Borrowed PAM handle for the duration of one `pam_sm_*` call.
#[derive(Debug)]
pub struct PamHost {
    pamh: *mut PamHandle,
    silent: bool,
}

impl PamHost {
    /// # Safety
    /// `pamh` must be the handle libpam passed to the current `pam_sm_*` call; it stays
    /// valid until that call returns, and `PamHost` must not outlive it.
    pub unsafe fn new(pamh: *mut PamHandle, flags: i32) -> PamHost {
        PamHost {
            pamh,
            silent: flags & PAM_SILENT != 0,
        }
    }

    /// A string item (PAM_SERVICE, PAM_RHOST ...), or None if unset or not UTF-8.
    pub fn string_item(&self, item: i32) -> Option<String> {
        let mut p: *const c_void = ptr::null();
        // SAFETY: pamh is valid (see `new`); libpam writes a pointer it owns into `p`.
        let rc = unsafe { pam_get_item(self.pamh, item, &mut p) };
        if rc != PAM_SUCCESS || p.is_null() {
            return None;
        }
        // SAFETY: string items are NUL-terminated C strings owned by libpam, valid while
        // the item is not changed; we copy it out immediately.
        let s = unsafe { CStr::from_ptr(p.cast()) };
        s.to_str().ok().map(str::to_owned)
    }

    /// The user name (asking for it through the conversation if the application did not
    /// set it). `Err` holds the PAM error; Ok(None) means it is not valid UTF-8.
    pub fn user(&self) -> Result<Option<String>, i32> {
        let mut p: *const std::os::raw::c_char = ptr::null();
        // SAFETY: pamh is valid; a null prompt selects libpam's default prompt; libpam
        // writes a pointer to a string it owns into `p`.
        let rc = unsafe { pam_get_user(self.pamh, &mut p, ptr::null()) };
        if rc != PAM_SUCCESS {
            return Err(rc);
        }
        if p.is_null() {
            return Err(PAM_AUTH_ERR);
        }
        // SAFETY: on success `p` points to libpam's NUL-terminated copy of the user name.
        let s = unsafe { CStr::from_ptr(p) };
        Ok(s.to_str().ok().map(str::to_owned))
    }

    /// Sends one message through the application's conversation function and returns the
    /// reply for prompts. The reply buffer, allocated by the application, is wiped before
    /// it is freed.
    fn converse(&mut self, style: i32, text: &str) -> Result<Option<Zeroizing<String>>, ()> {
        // NUL-terminated copy, wiped on drop: the enrollment message carries the secret.
        let mut text: Zeroizing<Vec<u8>> = Zeroizing::new(text.bytes().filter(|&b| b != 0).collect());
        text.push(0);
        let mut conv: *const c_void = ptr::null();
        // SAFETY: pamh is valid; libpam writes a pointer to the application's pam_conv.
        let rc = unsafe { pam_get_item(self.pamh, PAM_CONV, &mut conv) };
        if rc != PAM_SUCCESS || conv.is_null() {
            return Err(());
        }
        // SAFETY: the PAM_CONV item is a `struct pam_conv` set by the application and valid
        // for the whole transaction.
        let conv: &PamConv = unsafe { &*conv.cast::<PamConv>() };
        let Some(func) = conv.conv else {
            return Err(());
        };
        let msg = PamMessage {
            msg_style: style,
            msg: text.as_ptr().cast(),
        };
        let mut msg_ptr: *const PamMessage = &msg;
        let mut resp: *mut PamResponse = ptr::null_mut();
        // SAFETY: one valid message (Linux-PAM reads `msg` as an array of pointers; with one
        // message the Solaris layout is the same); `resp` receives a malloc'd array or null.
        let rc = unsafe { func(1, &mut msg_ptr, &mut resp, conv.appdata_ptr) };
        if resp.is_null() {
            return if rc == PAM_SUCCESS && style != PAM_PROMPT_ECHO_OFF {
                Ok(None)
            } else {
                Err(())
            };
        }
        // SAFETY: a non-null `resp` is a malloc'd array of one pam_response (we sent one
        // message) whose `resp` is null or a malloc'd NUL-terminated string.
        let answer = unsafe { take_response(resp) };
        if rc != PAM_SUCCESS {
            return Err(());
        }
        Ok(answer)
    }
}

/// Copies the reply out, wipes and frees the application's buffers.
///
/// # Safety
/// `resp` must point to a malloc'd `pam_response` whose `resp` field is null or a malloc'd
/// NUL-terminated string; both are freed here.
unsafe fn take_response(resp: *mut PamResponse) -> Option<Zeroizing<String>> {
    // SAFETY: caller guarantees `resp` points to a valid pam_response.
    let r = unsafe { &mut *resp };
    let mut out = None;
    if !r.resp.is_null() {
        // SAFETY: r.resp is a NUL-terminated string (caller's contract).
        let bytes = unsafe { CStr::from_ptr(r.resp) }.to_bytes();
        let len = bytes.len();
        // Non-UTF-8 answers become an answer that matches nothing.
        out = Some(Zeroizing::new(String::from_utf8_lossy(bytes).into_owned()));
        // SAFETY: r.resp points to `len` writable bytes (plus the NUL) that we own now.
        unsafe { ptr::write_bytes(r.resp, 0, len) };
        // SAFETY: the string was allocated with malloc by the application, per PAM's API.
        unsafe { free(r.resp.cast()) };
        r.resp = ptr::null_mut();
    }
    // SAFETY: the array was allocated with malloc by the application, per PAM's API.
    unsafe { free(resp.cast()) };
    out
}

impl Host for PamHost {
    fn prompt_hidden(&mut self, text: &str) -> Result<Zeroizing<String>, ConvError> {
        self.converse(PAM_PROMPT_ECHO_OFF, text)
            .map_err(|()| ConvError)?
            .ok_or(ConvError)
    }

    /// Sent even under PAM_SILENT: these say why an answer was refused (wrong, already
    /// used, locked out and for how long), part of the exchange the user started, and sudo
    /// passes PAM_SILENT on every call, which would otherwise leave its users unable to tell
    /// a lockout from a typo. Informational messages do honour PAM_SILENT.
    fn error_msg(&mut self, text: &str) {
        let _ = self.converse(PAM_ERROR_MSG, text);
    }

    fn info_msg(&mut self, text: &str) {
        if !self.silent {
            let _ = self.converse(PAM_TEXT_INFO, text);
        }
    }

    fn set_authtok(&mut self, password: &str) -> Result<(), ConvError> {
        let mut bytes = Zeroizing::new(password.as_bytes().to_vec());
        if bytes.contains(&0) {
            return Err(ConvError);
        }
        bytes.push(0);
        // SAFETY: `bytes` is NUL-terminated without interior NULs; libpam copies the string
        // (pam_set_item strdup's PAM_AUTHTOK) before we wipe ours.
        let rc = unsafe { pam_set_item(self.pamh, PAM_AUTHTOK, bytes.as_ptr().cast()) };
        bytes.zeroize();
        if rc == PAM_SUCCESS {
            Ok(())
        } else {
            Err(ConvError)
        }
    }

    /// PAM data of this handle under a name that carries the module's version, so a line
    /// of another pam_totp build in the same stack can never read our layout.
    fn keep_code(&mut self, kept: Option<KeptCode>) -> Result<(), ConvError> {
        let (data, cleanup): (*mut c_void, Option<CleanupFn>) = match kept {
            Some(k) => (Box::into_raw(Box::new(k)).cast(), Some(drop_kept)),
            None => (ptr::null_mut(), None),
        };
        // SAFETY: pamh is valid; the name is a NUL-terminated literal; `data` is null or a
        // leaked Box<KeptCode> that libpam hands back to `drop_kept` exactly once (when the
        // data is replaced or at pam_end). libpam runs the cleanup of what it replaces.
        let rc = unsafe { pam_set_data(self.pamh, KEPT_NAME.as_ptr(), data, cleanup) };
        if rc == PAM_SUCCESS {
            return Ok(());
        }
        if !data.is_null() {
            // SAFETY: libpam did not take `data`: it is still our leaked box.
            drop(unsafe { Box::from_raw(data.cast::<KeptCode>()) });
        }
        Err(ConvError)
    }

    fn take_kept_code(&mut self) -> Option<KeptCode> {
        let mut p: *const c_void = ptr::null();
        // SAFETY: pamh is valid; libpam writes the stored pointer (or leaves it) into `p`.
        let rc = unsafe { pam_get_data(self.pamh, KEPT_NAME.as_ptr(), &mut p) };
        if rc != PAM_SUCCESS || p.is_null() {
            return None;
        }
        // SAFETY: under KEPT_NAME this build only ever stores a Box<KeptCode> (keep_code),
        // which stays alive until it is replaced below.
        let kept = unsafe { &*p.cast::<KeptCode>() }.clone();
        // Replacing it frees (and wipes) the stored copy: it can serve only once.
        let _ = self.keep_code(None);
        Some(kept)
    }

    fn log(&mut self, level: Level, msg: &str) {
        log(self.pamh, level, msg);
    }

    fn pam_env(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        // SAFETY: pamh is valid (see `new`); `name` is NUL-terminated; libpam returns null or
        // a pointer to its own NUL-terminated copy of the value, valid until the environment
        // changes — copied out at once.
        let p = unsafe { pam_getenv(self.pamh, name.as_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null: a NUL-terminated string owned by libpam (above).
        let s = unsafe { CStr::from_ptr(p) };
        s.to_str().ok().map(str::to_owned)
    }
}

/// The PAM data name of a kept code. A `const`: the match below runs at compile time, so its
/// `panic!` can only fail the build, never a login.
const KEPT_NAME: &CStr =
    match CStr::from_bytes_with_nul(concat!("pam_totp/", env!("CARGO_PKG_VERSION"), "/kept_code\0").as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("KEPT_NAME is NUL-terminated"),
    };

/// pam_set_data's cleanup for a kept code: frees the box (the code inside is wiped on
/// drop). Called by libpam exactly once per stored pointer.
unsafe extern "C" fn drop_kept(_pamh: *mut PamHandle, data: *mut c_void, _error_status: i32) {
    if data.is_null() {
        return;
    }
    // No panic may unwind into libpam.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `data` is the Box<KeptCode> leaked by keep_code; libpam calls this once.
        drop(unsafe { Box::from_raw(data.cast::<KeptCode>()) });
    }));
}

/// Logs through pam_syslog (facility authpriv, prefixed "pam_totp(service:auth):").
pub fn log(pamh: *mut PamHandle, level: Level, msg: &str) {
    let prio = match level {
        Level::Err => LOG_ERR,
        Level::Notice => LOG_NOTICE,
        Level::Info => LOG_INFO,
        Level::Debug => LOG_DEBUG,
    };
    let Ok(msg) = CString::new(msg.replace('\0', "")) else {
        return;
    };
    // SAFETY: pamh is the live handle; the format is a literal "%s" taking exactly one
    // NUL-terminated string argument, so no user text is interpreted as a format.
    unsafe { pam_syslog(pamh, prio, c"%s".as_ptr(), msg.as_ptr()) };
}
