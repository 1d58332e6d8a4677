//! A model of how Linux-PAM runs a service's `auth` stack, and the questions pam_totp and
//! `pam-totp doctor` ask of it: does a wrong password provably stop the stack before
//! pam_totp (the `enroll_on_login` gate)? Can the stack succeed without pam_totp? Is there a
//! pam_totp line after the password module to count the codes a `forward_pass` line kept?
//!
//! Owns: parsing PAM files the way libpam does, and an exhaustive walk over every way the
//! stack can run. Never: reads a file itself (it is handed `read(name)`), changes anything.
//!
//! # What libpam does (Linux-PAM 1.5.2 as in Debian 12, and the current main branch)
//!
//! Checked in the source, not guessed:
//!
//! * Lines (`libpam_internal/pam_line.c`, `_pam_line_assemble`): a physical line ending in
//!   `\` (trailing blanks allowed) continues on the next one, the backslash becoming a space,
//!   unless the line holds a `#`; leading spaces and tabs are skipped; everything from the
//!   first `#` is a comment. A file ending in a continuation is a read error. Only `\n` ends
//!   a line (a `\r` is part of a token).
//! * Tokens (`libpam/pam_misc.c`, `_pam_tokenize`): separated by space, tab or newline; a
//!   token starting with `[` runs to the first `]` (`\]` stands for `]`) and the brackets are
//!   dropped. So `[required]` is the keyword `required`.
//! * Each line (`libpam/pam_handlers.c`, `_pam_parse_conf_file`): the type, with a leading
//!   `-` only silencing the log when the module cannot be loaded, compared case-insensitively;
//!   an unknown type becomes a *failing auth line* (PAM_HT_MUST_FAIL, "most sensitive"). The
//!   control keywords (case-insensitive) expand as pam.conf(5) says; any other control is
//!   parsed by `_pam_parse_control` (`value=action` pairs, case-sensitive, a value or action
//!   may be any prefix match of the token list in `pam_tokens.h`; on any error *every*
//!   value becomes `bad`); values not named get `bad`. A missing control or module name
//!   gives a failing line too.
//! * `include` reads the file's lines of the same type in place, at the same level.
//!   `substack` adds a marker handler and reads the file one level deeper. A file that
//!   cannot be opened (or a depth of 16) leaves a failing line (`default=bad`) where the
//!   include was. `@include NAME` is Debian's patch: tested with the real libpam here, it
//!   behaves as `include` for the lines of the type being read (inside a substack it stays
//!   at the substack's level). Names starting with `/` are opened as absolute paths, others
//!   in the PAM directory.
//! * A module that cannot be loaded (with or without `-`) is called as a handler without a
//!   function and returns PAM_MODULE_UNKNOWN (`pam_dispatch.c`): a `-auth requisite` line
//!   whose module is missing still dies. Verified with the real libpam: `-auth requisite
//!   pam_missing.so` followed by `pam_echo` ends with 28 and the echo never runs.
//! * Dispatch (`libpam/pam_dispatch.c`, `_pam_dispatch_aux`): one impression (undefined,
//!   positive, negative) and one status. `ok`/`done` set positive+retval when the impression
//!   is undefined or positive with PAM_SUCCESS; `done` then ends the current level only if
//!   the impression is positive. `bad`/`die` make it negative (first failure's code kept);
//!   `die` ends the current level. `reset` restores the impression and status saved when
//!   the current (sub)stack was entered. A jump `N` skips N handlers of the current level,
//!   a whole nested substack counting as one; a jump past the end of the level is "bad jump
//!   in stack" (negative) and continues after it. Ending a level (`done`, `die`) inside a
//!   substack skips only the rest of that substack: the parent goes on with the next line —
//!   so `requisite pam_unix.so` in a substack does NOT keep a later pam_totp from running
//!   (also verified with the real libpam). Success overall needs a positive impression and
//!   PAM_SUCCESS.
//! * The service file is read from the PAM directory; when it has no `auth` line at all,
//!   libpam uses the `auth` lines of `other`.
//!
//! # How modules are modelled
//!
//! A module's call is any of the return values it may give. Under the hypothesis "the
//! password is wrong" the password modules return only failures (never PAM_SUCCESS nor
//! PAM_NEW_AUTHTOK_REQD), plus PAM_IGNORE where they can ignore a user:
//!
//! * `pam_unix.so`: never PAM_IGNORE in auth (`modules/pam_unix/pam_unix_auth.c` returns
//!   what `pam_get_user`, `pam_get_authtok` and `_unix_verify_password` return; no file of
//!   the module's C code mentions PAM_IGNORE). Accounts with an empty password and `nullok`
//!   pass without one: there is no secret to prove, which this model does not cover.
//! * `pam_userdb.so`: never PAM_IGNORE (its only `return PAM_IGNORE` follows a switch that
//!   returns in every case).
//! * `pam_sss.so`: PAM_IGNORE only with `ignore_unknown_user` or `ignore_authinfo_unavail`
//!   (SSSD `src/sss_client/pam_sss.c`).
//! * `pam_ldap.so`, `pam_krb5.so`, `pam_winbind.so`: always treated as able to return
//!   PAM_IGNORE: besides their arguments (`minimum_uid=`, `ignore_root`, `ignore_*`,
//!   `unknown_ok`) they read options from files this model does not see (pam-krb5 from
//!   krb5.conf `[appdefaults]`, PADL pam_ldap from ldap.conf, pam_winbind.conf).
//! * For any password module, an argument starting with `ignore`, `minimum_uid`, `min_uid`,
//!   `uid_min`, `minimum_gid` or equal to `unknown_ok` adds PAM_IGNORE.
//!
//! Password checkers are only these; pam_pwquality, pam_faillock, pam_succeed_if and the
//! like check no password. Known others: `pam_deny.so` returns PAM_AUTH_ERR only;
//! `pam_permit.so` PAM_SUCCESS (or what `pam_get_user` fails with); every other module,
//! unknown or not, may return anything; a failing line returns PAM_PERM_DENIED.
//!
//! The walk is exhaustive: a state is (line, impression, status, saved impressions of the
//! enclosing substacks); every step only moves forward, so it ends.
//!
//! # What is never followed
//!
//! Only plain names in the PAM directory are read: an include of an absolute path, of a
//! name with `/` or starting with `.`, an include that cannot be read, a line libpam cannot
//! use (it would install a failing line), nesting deeper than [`MAX_DEPTH`] or more than
//! [`MAX_LINES`] lines: the stack is then [`Stack::unknown`] and the gate answers "cannot
//! prove", never a silent skip.
//!
//! # The questions
//!
//! * [`enrollment_gate_for`]: under "every password module fails", does any way reach a
//!   pam_totp line without `forward_pass`? (The reason names the line to change.)
//! * [`Stack::success_without_totp`]: with every module free to return anything, can the
//!   stack succeed without running such a line? pam_rootok's success is left out: it
//!   means the caller is root already (Debian's `su` starts with `sufficient pam_rootok.so`).
//! * [`Stack::forward_pass_problems`]: after a `forward_pass` line, is there a pam_totp line
//!   that is reached only after a password module, and does a wrong code not die first?

use std::collections::HashSet;

mod parse;
mod walk;

pub use parse::load;

/// Why a stack does not provably stop a wrong password before pam_totp: the line to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unproven(pub String);

impl std::fmt::Display for Unproven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unproven {}

impl std::ops::Deref for Unproven {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Unproven> for String {
    fn from(e: Unproven) -> String {
        e.0
    }
}

/// Includes nested deeper than this make the analysis give up ("cannot prove").
pub const MAX_DEPTH: usize = 8;
/// So do more auth lines than this (after includes).
pub const MAX_LINES: usize = 4096;
/// Physical lines this long (with the newline: 1024 bytes, libpam's fgets buffer) or longer
/// make a file unprovable.
pub const MAX_PHYSICAL_LINE: usize = 1023;

/// libpam's return values, in `pam_tokens.h` order (index = value).
const RETURNS: [&str; 32] = [
    "success",
    "open_err",
    "symbol_err",
    "service_err",
    "system_err",
    "buf_err",
    "perm_denied",
    "auth_err",
    "cred_insufficient",
    "authinfo_unavail",
    "user_unknown",
    "maxtries",
    "new_authtok_reqd",
    "acct_expired",
    "session_err",
    "cred_unavail",
    "cred_expired",
    "cred_err",
    "no_module_data",
    "conv_err",
    "authtok_err",
    "authtok_recover_err",
    "authtok_lock_busy",
    "authtok_disable_aging",
    "try_again",
    "ignore",
    "abort",
    "authtok_expired",
    "module_unknown",
    "bad_item",
    "conv_again",
    "incomplete",
];
const SUCCESS: usize = 0;
const PERM_DENIED: usize = 6;
const AUTH_ERR: usize = 7;
const NEW_AUTHTOK_REQD: usize = 12;
const IGNORE: usize = 25;
const SERVICE_ERR: usize = 3;
const CONV_ERR: usize = 19;
const INCOMPLETE: usize = 31;

/// A set of return values (bit i = value i).
type Codes = u32;
const fn bit(c: usize) -> Codes {
    1 << c
}
/// Everything a module can return. PAM_INCOMPLETE suspends the stack and resumes it at the
/// same module later, so it is never the value that moves the stack on.
const ANY: Codes = !bit(INCOMPLETE);
/// Every failure: what a password module returns for a wrong password.
const FAILURES: Codes = ANY & !bit(SUCCESS) & !bit(NEW_AUTHTOK_REQD) & !bit(IGNORE);

/// What libpam does with one return value of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Ignore,
    Ok,
    Done,
    Bad,
    Die,
    Reset,
    /// Skip this many handlers of the current level.
    Jump(u32),
}

/// The control keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Required,
    Requisite,
    Sufficient,
    Optional,
}

/// A line's control: as written, and the action for every return value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// As written (`required`, `[success=1 default=ignore]`).
    pub text: String,
    pub keyword: Option<Keyword>,
    actions: [Action; 32],
}

impl Control {
    fn keyword(k: Keyword, text: &str) -> Control {
        use Action::*;
        let (success, ignore, default) = match k {
            // pam.conf(5) and _pam_parse_conf_file agree on these four.
            Keyword::Required => (Ok, Some(Ignore), Bad),
            Keyword::Requisite => (Ok, Some(Ignore), Die),
            Keyword::Sufficient => (Done, None, Ignore),
            Keyword::Optional => (Ok, None, Ignore),
        };
        let mut actions = [default; 32];
        actions[SUCCESS] = success;
        actions[NEW_AUTHTOK_REQD] = success;
        if let Some(i) = ignore {
            actions[IGNORE] = i;
        }
        Control {
            text: text.to_string(),
            keyword: Some(k),
            actions,
        }
    }

    /// Every value `bad`: what libpam installs for a line it cannot use.
    fn broken(text: &str) -> Control {
        Control {
            text: text.to_string(),
            keyword: None,
            actions: [Action::Bad; 32],
        }
    }

    /// The action for return value `code` (a libpam value, 0..32).
    pub fn action(&self, code: usize) -> Action {
        self.actions.get(code).copied().unwrap_or(Action::Bad)
    }

    /// The action for PAM_SUCCESS.
    pub fn on_success(&self) -> Action {
        self.actions[SUCCESS]
    }

    /// The action for PAM_AUTH_ERR (a wrong password, a wrong code).
    pub fn on_auth_err(&self) -> Action {
        self.actions[AUTH_ERR]
    }
}

/// What a handler is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Module {
        /// As written (a name in the module directory or an absolute path).
        path: String,
        args: Vec<String>,
        /// The line's type had a leading `-`.
        dash: bool,
    },
    /// The marker libpam puts before a substack's lines (skipped when run; counts as one
    /// handler, with its lines, in a jump).
    Substack { name: String },
    /// A line libpam installs as "must fail": it returns PAM_PERM_DENIED.
    Broken,
}

/// One handler of the auth stack, in the order libpam runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 0 for the service's own stack, +1 inside each substack.
    pub level: usize,
    pub kind: Kind,
    pub control: Control,
    /// `file:line`.
    pub location: String,
}

const PASSWORD_MODULES: [&str; 6] = [
    "pam_unix.so",
    "pam_userdb.so",
    "pam_sss.so",
    "pam_ldap.so",
    "pam_krb5.so",
    "pam_winbind.so",
];
/// Password modules that read options from their own configuration files too.
const CONFIGURED_ELSEWHERE: [&str; 3] = ["pam_ldap.so", "pam_krb5.so", "pam_winbind.so"];

impl Line {
    /// The module's file name (`pam_unix.so`), for module lines.
    pub fn module(&self) -> Option<&str> {
        match &self.kind {
            Kind::Module { path, .. } => Some(path.rsplit('/').next().unwrap_or(path)),
            _ => None,
        }
    }

    pub fn args(&self) -> &[String] {
        match &self.kind {
            Kind::Module { args, .. } => args,
            _ => &[],
        }
    }

    pub fn is_totp(&self) -> bool {
        self.module() == Some("pam_totp.so")
    }

    /// A pam_totp line with `forward_pass`: it splits the answer and keeps the code.
    pub fn is_forward_pass(&self) -> bool {
        self.is_totp() && self.args().iter().any(|a| a == "forward_pass")
    }

    /// A pam_totp line that decides a code (and may offer enrollment).
    pub fn is_checking_totp(&self) -> bool {
        self.is_totp() && !self.is_forward_pass()
    }

    pub fn is_password_module(&self) -> bool {
        self.module().is_some_and(|m| PASSWORD_MODULES.contains(&m))
    }

    /// Why this password module may return PAM_IGNORE: the argument that lets it, or (None
    /// inside) its own configuration files. None for a module that never does.
    pub fn ignore_reason(&self) -> Option<Option<&str>> {
        if !self.is_password_module() {
            return None;
        }
        let ignoring = |a: &&String| {
            ["ignore", "minimum_uid", "min_uid", "uid_min", "minimum_gid"]
                .iter()
                .any(|p| a.starts_with(p))
                || a.as_str() == "unknown_ok"
        };
        if let Some(a) = self.args().iter().find(ignoring) {
            return Some(Some(a));
        }
        let m = self.module()?;
        CONFIGURED_ELSEWHERE.contains(&m).then_some(None)
    }

    fn is(&self, module: &str) -> bool {
        self.module() == Some(module)
    }
}

/// A service's auth stack as libpam would build it.
#[derive(Debug, Clone)]
pub struct Stack {
    pub service: String,
    /// The file the stack comes from (`other` when the service has no auth line).
    pub file: String,
    pub lines: Vec<Line>,
    /// Why the stack cannot be known exactly (the first problem met), if it cannot: an
    /// include that cannot be read or is not followed, a line libpam cannot use, too deep.
    pub unknown: Option<String>,
}

/// The `enroll_on_login` gate: Ok only when, whatever the password modules do with a wrong
/// password, no way through the stack of `service` reaches a pam_totp line without
/// `forward_pass`. Err is one line saying why not, naming the `file:line` to change.
pub fn enrollment_gate_for(service: &str, read: &dyn Fn(&str) -> Option<String>) -> Result<(), Unproven> {
    match load(service, read) {
        Some(stack) => stack.enrollment_gate(),
        None => Err(Unproven(
            crate::text::terminal_safe(&format!("cannot read the PAM configuration of {service}")).into_owned(),
        )),
    }
}

/// The line whose action lets a refused code or a wrong password through, and on which
/// return value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Through {
    pub location: String,
    pub module: String,
    pub control: String,
    pub on: &'static str,
}

/// What is wrong around a `forward_pass` pam_totp line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardProblem {
    /// No pam_totp line after the password module: the kept code is never checked with a
    /// count, so wrong codes never lead to a lockout.
    NoCheckLine,
    /// The pam_totp line after it (at this location) can run without a password module in
    /// between: it would count codes for callers who never proved the password.
    CheckWithoutPassword(String),
    /// Its control dies on PAM_AUTH_ERR: a wrong code ends the stack before the password
    /// and is never counted.
    DiesOnWrongCode,
}

/// A way to success without the code: the line whose `done` or jump makes it possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bypass {
    /// `file:line` of that line.
    pub location: String,
    /// Its module (empty when no single line is to blame).
    pub module: String,
    /// Its control as written.
    pub control: String,
    /// A jump (`[success=N]`) rather than an end (`sufficient`, `done`).
    pub jump: bool,
    /// The return value that takes that way.
    pub on: &'static str,
    /// The first pam_totp line (without forward_pass) it goes around.
    pub totp: String,
}

#[cfg(test)]
mod tests;
