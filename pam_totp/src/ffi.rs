//! Declarations of the few libpam functions and constants the module uses, checked against
//! Linux-PAM's <security/_pam_types.h>, <pam_modules.h> and <pam_ext.h>.

use std::os::raw::{c_char, c_int, c_void};

pub const PAM_SUCCESS: c_int = 0;
pub const PAM_SERVICE_ERR: c_int = 3;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_IGNORE: c_int = 25;

pub const PAM_SERVICE: c_int = 1;
pub const PAM_RHOST: c_int = 4;
pub const PAM_CONV: c_int = 5;
pub const PAM_AUTHTOK: c_int = 6;

pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;

pub const PAM_SILENT: c_int = 0x8000;

pub const LOG_ERR: c_int = 3;
pub const LOG_NOTICE: c_int = 5;
pub const LOG_INFO: c_int = 6;
pub const LOG_DEBUG: c_int = 7;

/// Opaque `pam_handle_t`.
#[repr(C)]
#[derive(Debug)]
pub struct PamHandle {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Debug)]
pub struct PamMessage {
    pub msg_style: c_int,
    pub msg: *const c_char,
}

#[repr(C)]
#[derive(Debug)]
pub struct PamResponse {
    pub resp: *mut c_char,
    pub resp_retcode: c_int,
}

pub type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
#[derive(Debug)]
pub struct PamConv {
    pub conv: Option<ConvFn>,
    pub appdata_ptr: *mut c_void,
}

/// `void (*cleanup)(pam_handle_t *pamh, void *data, int error_status)` of pam_set_data.
pub type CleanupFn = unsafe extern "C" fn(pamh: *mut PamHandle, data: *mut c_void, error_status: c_int);

#[link(name = "pam")]
extern "C" {
    pub fn pam_set_data(
        pamh: *mut PamHandle,
        module_data_name: *const c_char,
        data: *mut c_void,
        cleanup: Option<CleanupFn>,
    ) -> c_int;
    pub fn pam_get_data(pamh: *const PamHandle, module_data_name: *const c_char, data: *mut *const c_void) -> c_int;
    pub fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char) -> c_int;
    pub fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    pub fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    pub fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
    pub fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

extern "C" {
    pub fn free(p: *mut c_void);
}
