//! What a login needs from the program around it and gives back: the [`Host`] (conversation,
//! PAM items, syslog), the [`Request`], and the [`Outcome`] the module maps to a PAM code.
//!
//! Owns: the types the FFI layer sees. Never: decides anything.

use std::path::Path;

use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Err,
    Notice,
    Info,
    Debug,
}

/// The conversation with the user failed or was cancelled, or PAM refused an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvError;

/// What the module (or a test) provides around the core.
pub trait Host {
    /// Asks a question without echo; `Err` when the conversation fails or is cancelled.
    fn prompt_hidden(&mut self, text: &str) -> Result<Zeroizing<String>, ConvError>;
    fn error_msg(&mut self, text: &str);
    fn info_msg(&mut self, text: &str);
    /// Sets PAM_AUTHTOK for the modules after us (forward_pass).
    fn set_authtok(&mut self, password: &str) -> Result<(), ConvError>;
    /// Keeps (or with None, clears) what the forward_pass line leaves for the pam_totp line
    /// after the password module (PAM data of this handle).
    fn keep_code(&mut self, kept: Option<KeptCode>) -> Result<(), ConvError>;
    /// Takes (and clears) what a forward_pass line earlier in the stack kept.
    fn take_kept_code(&mut self) -> Option<KeptCode>;
    fn log(&mut self, level: Level, msg: &str);
    /// A variable of the PAM environment (`pam_getenv`), set by the application or modules
    /// before us (sshd: `SSH_AUTH_INFO_0`). None by default.
    fn pam_env(&self, _name: &str) -> Option<String> {
        None
    }
}

/// What the `forward_pass` line leaves for the pam_totp line after the password module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCode {
    /// The account (canonical name) it was kept for.
    pub user: String,
    /// Unix seconds it was kept.
    pub at: u64,
    pub verdict: Kept,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Kept {
    /// The user had no secret file: the next line applies nullok/enforce_after (and says
    /// so), but does not enroll — enrollment through a forward_pass stack is not offered.
    NotEnrolled,
    /// The code was right and is spent; the next line only has to see that the password
    /// module let the user through.
    Accepted(Accepted),
    /// The code was not accepted and nothing was counted: the next line, reached only by
    /// someone who knows the password, decides it again and counts the failure.
    Pending(Zeroizing<String>),
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kept::Accepted(a) => f.debug_tuple("Accepted").field(a).finish(),
            Kept::NotEnrolled => f.write_str("NotEnrolled"),
            Kept::Pending(_) => f.write_str("Pending(<redacted>)"),
        }
    }
}

/// How long a kept code stays usable by the next pam_totp line (one pam_authenticate call
/// takes far less; this only stops a leftover from an earlier attempt in the same handle).
pub const KEPT_CODE_MAX_AGE: u64 = 300;

/// Where the module is called from.
#[derive(Debug)]
pub struct Request<'a> {
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: Option<&'a str>,
    pub args: &'a [&'a str],
    /// Where the service's PAM files are (`/etc/pam.d`), read to decide whether
    /// `enroll_on_login` is safe; None: never offer it.
    pub pam_dir: Option<&'a Path>,
}

/// How a login ended. The module maps each variant to a PAM return code in one `match`;
/// only `Accepted` may become PAM_SUCCESS and only `NotEnrolledAllowed` PAM_IGNORE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Accepted),
    /// No secret file, and `nullok` or a future `enforce_after` date lets the user through.
    NotEnrolledAllowed,
    NotEnrolled,
    WrongCode,
    Replay,
    LockedOut,
    UnknownUser,
    /// The secret file exists but failed a check or did not parse.
    BadSecretFile,
    /// No secret file, but the state records that this user enrolled: the file was removed
    /// or is not reachable (home not mounted). Refused even under nullok.
    SecretMissing,
    /// The state could not be read, locked or written.
    StateUnavailable,
    ConversationFailed,
    /// A module argument or config file setting is unknown or malformed.
    BadConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Totp,
    Hotp,
    Backup,
    RememberedHost,
    /// The user enrolled at this login (`enroll_on_login`) and confirmed a code.
    EnrolledAtLogin,
}
