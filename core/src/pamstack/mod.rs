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

/// `_pam_parse_control`: `value=action ...` (the brackets already dropped by the tokenizer).
fn parse_control(tok: &str) -> Result<[Action; 32], String> {
    const ACTIONS: [(&str, Action); 6] = [
        ("ignore", Action::Ignore),
        ("ok", Action::Ok),
        ("done", Action::Done),
        ("bad", Action::Bad),
        ("die", Action::Die),
        ("reset", Action::Reset),
    ];
    let mut set: [Option<Action>; 32] = [None; 32];
    let s = tok.as_bytes();
    let space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut i = 0;
    loop {
        while i < s.len() && space(s[i]) {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        // The first name in libpam's order that the rest starts with ("default" last).
        let rest = &s[i..];
        let value = RETURNS
            .iter()
            .chain(std::iter::once(&"default"))
            .position(|name| rest.starts_with(name.as_bytes()))
            .ok_or_else(|| format!("expecting a return value at `{}`", &tok[i..]))?;
        i += if value == 32 { 7 } else { RETURNS[value].len() };
        if i >= s.len() {
            return Err("expecting `=`".into());
        }
        while i < s.len() && space(s[i]) {
            i += 1;
        }
        if i >= s.len() || s[i] != b'=' {
            return Err("expecting `=`".into());
        }
        i += 1;
        while i < s.len() && space(s[i]) {
            i += 1;
        }
        if i >= s.len() {
            return Err("expecting an action".into());
        }
        let rest = &s[i..];
        let action = if let Some((name, a)) = ACTIONS.iter().find(|(n, _)| rest.starts_with(n.as_bytes())) {
            i += name.len();
            *a
        } else {
            let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err("expecting an action or a jump".into());
            }
            let n: u32 = tok[i..i + digits]
                .parse()
                .ok()
                .filter(|n| *n > 0 && *n <= i32::MAX as u32)
                .ok_or_else(|| format!("bad jump `{}`", &tok[i..i + digits]))?;
            i += digits;
            Action::Jump(n)
        };
        if value == 32 {
            for a in set.iter_mut().filter(|a| a.is_none()) {
                *a = Some(action);
            }
        } else {
            set[value] = Some(action);
        }
    }
    Ok(set.map(|a| a.unwrap_or(Action::Bad)))
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

/// A plain file name in the PAM directory: what this model follows.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.starts_with('.')
}

/// Splits a file into logical lines (`_pam_line_assemble`): (first physical line number,
/// text); `false` when the file ends inside a continuation.
fn logical_lines(text: &str) -> (Vec<(usize, String)>, bool) {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut first = 0;
    let mut continuing = false;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        if !continuing {
            first = i + 1;
        }
        let body = raw.trim_end_matches([' ', '\t', '\n']);
        let cont = body.ends_with('\\');
        let line = if cont {
            format!("{} ", &body[..body.len() - 1])
        } else {
            raw.to_string()
        };
        let eol = !cont || line.contains('#');
        let start = line.trim_start_matches([' ', '\t']);
        let start = start.split('#').next().unwrap_or("");
        if eol {
            if !buf.is_empty() || (!start.is_empty() && !start.starts_with('\n')) {
                buf.push_str(start);
            }
            if !buf.is_empty() {
                out.push((first, std::mem::take(&mut buf)));
            }
            continuing = false;
        } else {
            buf.push_str(start);
            continuing = true;
        }
    }
    (out, !continuing)
}

/// `_pam_tokenize`: blanks are space, tab and newline; `[...]` is one token, brackets
/// dropped, `\]` inside standing for `]`. Returns (token, was bracketed).
fn tokens(line: &str) -> Vec<(String, bool)> {
    let delim = |c: char| matches!(c, ' ' | '\t' | '\n');
    let mut out = Vec::new();
    let mut it = line.chars().peekable();
    loop {
        while it.next_if(|c| delim(*c)).is_some() {}
        let Some(c) = it.next() else { break };
        let mut tok = String::new();
        if c == '[' {
            while let Some(c) = it.next() {
                if c == ']' {
                    break;
                }
                if c == '\\' && it.peek() == Some(&']') {
                    tok.push(it.next().unwrap_or(']'));
                } else {
                    tok.push(c);
                }
            }
            out.push((tok, true));
        } else {
            tok.push(c);
            while let Some(c) = it.next_if(|c| !delim(*c)) {
                tok.push(c);
            }
            out.push((tok, false));
        }
    }
    out
}

struct Loader<'a> {
    read: &'a dyn Fn(&str) -> Option<String>,
    lines: Vec<Line>,
    unknown: Option<String>,
}

impl Loader<'_> {
    fn note(&mut self, why: String) {
        if self.unknown.is_none() {
            self.unknown = Some(why);
        }
    }

    fn push(&mut self, level: usize, kind: Kind, control: Control, location: &str) {
        if self.lines.len() >= MAX_LINES {
            self.note(format!("{location}: more than {MAX_LINES} auth lines"));
            return;
        }
        self.lines.push(Line {
            level,
            kind,
            control,
            location: location.to_string(),
        });
    }

    /// Reads one file's auth lines at `level`; false if it cannot be used (libpam then
    /// puts a failing line where it was included).
    fn file(&mut self, name: &str, level: usize, depth: usize) -> bool {
        let Some(text) = (self.read)(name) else {
            return false;
        };
        if text.contains('\0') {
            self.note(format!("{name}: holds a NUL byte"));
            return false;
        }
        // libpam 1.5.2 (Debian 12) reads a file in 1024-byte fgets chunks: the rest of a
        // longer physical line, even inside a comment, is read as a line of its own. Which
        // libpam reads the file is not known here, so such a file proves nothing.
        if let Some(n) = text.split('\n').position(|l| l.len() >= MAX_PHYSICAL_LINE) {
            self.note(format!(
                "{name}:{}: the line is {} bytes or longer; libpam may read its end as a line of its own",
                n + 1,
                MAX_PHYSICAL_LINE
            ));
        }
        let (lines, complete) = logical_lines(&text);
        for (n, line) in lines {
            self.line(name, n, &line, level, depth);
        }
        if !complete {
            self.note(format!(
                "{name}: the last line ends with `\\` (libpam reports a read error)"
            ));
        }
        complete
    }

    fn line(&mut self, file: &str, n: usize, text: &str, level: usize, depth: usize) {
        let loc = format!("{file}:{n}");
        let toks = tokens(text);
        let Some((first, _)) = toks.first() else { return };
        if first == "@include" {
            let name = toks.get(1).map(|t| t.0.as_str());
            self.include(&loc, name, level, depth, false);
            return;
        }
        let (dash, ty) = match first.strip_prefix('-') {
            Some(t) => (true, t),
            None => (false, first.as_str()),
        };
        let known = ["auth", "account", "password", "session"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(ty));
        if !known {
            self.note(format!(
                "{loc}: unknown line type `{first}` (libpam makes it a failing auth line)"
            ));
            self.push(level, Kind::Broken, Control::broken(first), &loc);
            return;
        }
        if !ty.eq_ignore_ascii_case("auth") {
            return;
        }
        let Some((ctl, bracketed)) = toks.get(1) else {
            self.note(format!("{loc}: no control (libpam makes it a failing line)"));
            self.push(level, Kind::Broken, Control::broken(""), &loc);
            return;
        };
        let shown = if *bracketed { format!("[{ctl}]") } else { ctl.clone() };
        let keyword = [
            ("required", Keyword::Required),
            ("requisite", Keyword::Requisite),
            ("sufficient", Keyword::Sufficient),
            ("optional", Keyword::Optional),
        ]
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(ctl))
        .map(|(_, k)| *k);
        if ctl.eq_ignore_ascii_case("include") || ctl.eq_ignore_ascii_case("substack") {
            let name = toks.get(2).map(|t| t.0.as_str());
            self.include(&loc, name, level, depth, ctl.eq_ignore_ascii_case("substack"));
            return;
        }
        let control = match keyword {
            Some(k) => Control::keyword(k, &shown),
            None => match parse_control(ctl) {
                Ok(actions) => Control {
                    text: shown,
                    keyword: None,
                    actions,
                },
                Err(e) => {
                    self.note(format!(
                        "{loc}: cannot parse the control {shown} ({e}; libpam makes every value `bad`)"
                    ));
                    Control::broken(&shown)
                }
            },
        };
        let Some((path, _)) = toks.get(2) else {
            self.note(format!("{loc}: no module (libpam makes it a failing line)"));
            self.push(level, Kind::Broken, control, &loc);
            return;
        };
        let kind = Kind::Module {
            path: path.clone(),
            args: toks[3..].iter().map(|t| t.0.clone()).collect(),
            dash,
        };
        self.push(level, kind, control, &loc);
    }

    fn include(&mut self, loc: &str, name: Option<&str>, level: usize, depth: usize, substack: bool) {
        let word = if substack { "substack" } else { "include" };
        if substack {
            let kind = Kind::Substack {
                name: name.unwrap_or("").to_string(),
            };
            self.push(level, kind, Control::broken("substack"), loc);
        }
        let read = match name {
            None => {
                self.note(format!("{loc}: {word} without a file name"));
                false
            }
            Some(n) if !plain_name(n) => {
                self.note(format!(
                    "{loc}: {word} `{n}` is not followed (only plain file names in the PAM directory are)"
                ));
                false
            }
            Some(_) if depth >= MAX_DEPTH => {
                self.note(format!("{loc}: includes nested deeper than {MAX_DEPTH}"));
                false
            }
            Some(n) => {
                let ok = self.file(n, level + usize::from(substack), depth + 1);
                if !ok {
                    self.note(format!("{loc}: cannot read `{n}` ({word} named here)"));
                }
                ok
            }
        };
        if !read {
            self.push(level, Kind::Broken, Control::broken(word), loc);
        }
    }
}

/// Reads `service`'s auth stack through `read(name)` (a PAM file's text by name, None if it
/// cannot be read). None when the service file itself cannot be read.
pub fn load(service: &str, read: &dyn Fn(&str) -> Option<String>) -> Option<Stack> {
    if !plain_name(service) {
        return None;
    }
    let mut l = Loader {
        read,
        lines: Vec::new(),
        unknown: None,
    };
    if !l.file(service, 0, 0) && l.unknown.is_none() {
        return None;
    }
    let mut file = service.to_string();
    if l.lines.is_empty() && l.unknown.is_none() && service != "other" {
        // libpam falls back to `other` for a service without auth lines.
        file = "other".into();
        l.file("other", 0, 0);
    }
    Some(Stack {
        service: service.to_string(),
        file,
        lines: l.lines,
        unknown: l.unknown,
    })
}

/// The `enroll_on_login` gate: Ok only when, whatever the password modules do with a wrong
/// password, no way through the stack of `service` reaches a pam_totp line without
/// `forward_pass`. Err is one line saying why not, naming the `file:line` to change.
pub fn enrollment_gate_for(service: &str, read: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    match load(service, read) {
        Some(stack) => stack.enrollment_gate(),
        None => {
            Err(crate::text::terminal_safe(&format!("cannot read the PAM configuration of {service}")).into_owned())
        }
    }
}

/// Impression (`_PAM_UNDEF`, `_PAM_POSITIVE`, `_PAM_NEGATIVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Imp {
    Undef,
    Pos,
    Neg,
}

/// Impression and whether the status is PAM_SUCCESS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Frame {
    imp: Imp,
    ok: bool,
}

const START: Frame = Frame {
    imp: Imp::Undef,
    ok: false,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    h: usize,
    prev_level: usize,
    cur: Frame,
    saved: [Frame; MAX_DEPTH + 2],
    /// The question's own bookkeeping.
    flags: u8,
}

/// One module call on a way through the stack.
#[derive(Debug, Clone)]
struct Step {
    line: usize,
    /// The return value taken (a representative of those with the same effect).
    code: usize,
    action: Action,
    /// Handlers skipped by this step's jump or end of level.
    skipped: Option<(usize, usize)>,
}

/// What a question does when a module is about to be called: go on (with new flags) or
/// stop following this way.
enum Visit {
    Go(u8),
    Stop,
}

/// The steps that led here, computed only when asked for.
type Trace<'a> = &'a dyn Fn() -> Vec<Step>;

trait Question {
    fn returns(&self, stack: &Stack, line: usize) -> Codes;
    fn visit(&mut self, stack: &Stack, line: usize, flags: u8, trace: Trace<'_>) -> Visit;
    fn end(&mut self, success: bool, flags: u8, trace: Trace<'_>);
    fn done(&self) -> bool {
        false
    }
}

/// What an arbitrary module (or one whose password may be right) can return.
fn any_returns(l: &Line) -> Codes {
    match &l.kind {
        Kind::Broken => bit(PERM_DENIED),
        Kind::Substack { .. } => 0,
        Kind::Module { .. } if l.is("pam_deny.so") => bit(AUTH_ERR),
        Kind::Module { .. } if l.is("pam_permit.so") => bit(SUCCESS) | FAILURES,
        Kind::Module { .. } => ANY,
    }
}

impl Stack {
    /// Follows every way through the stack (depth first, in the order of the return values,
    /// iteratively: a long file cannot exhaust the caller's stack).
    fn walk(&self, q: &mut dyn Question) {
        let lines = &self.lines;
        let mut seen = HashSet::new();
        // The steps taken so far, as a tree: (step, the step before it).
        let mut arena: Vec<(Step, Option<usize>)> = Vec::new();
        let trace_of = |arena: &[(Step, Option<usize>)], mut at: Option<usize>| {
            let mut t = Vec::new();
            while let Some(i) = at {
                t.push(arena[i].0.clone());
                at = arena[i].1;
            }
            t.reverse();
            t
        };
        let start = State {
            h: 0,
            prev_level: 0,
            cur: START,
            saved: [START; MAX_DEPTH + 2],
            flags: 0,
        };
        let mut work = vec![(start, None)];
        'ways: while let Some((mut st, tail)) = work.pop() {
            if q.done() {
                return;
            }
            loop {
                let Some(line) = lines.get(st.h) else {
                    // The sanity check at the end of _pam_dispatch_aux.
                    let success = st.cur.ok && st.cur.imp == Imp::Pos;
                    q.end(success, st.flags, &|| trace_of(&arena, tail));
                    continue 'ways;
                };
                let level = line.level.min(MAX_DEPTH + 1);
                if st.prev_level < level {
                    st.saved[level] = st.cur;
                }
                if matches!(line.kind, Kind::Substack { .. }) {
                    st.prev_level = level;
                    st.h += 1;
                    continue;
                }
                break;
            }
            if !seen.insert(st.clone()) {
                continue;
            }
            let h = st.h;
            let line = &lines[h];
            let level = line.level.min(MAX_DEPTH + 1);
            let flags = match q.visit(self, h, st.flags, &|| trace_of(&arena, tail)) {
                Visit::Go(f) => f,
                Visit::Stop => continue,
            };
            // One branch per distinct effect: (action, success?, ignore?).
            let codes = q.returns(self, h);
            let class = |c: usize| match c {
                SUCCESS => 0,
                IGNORE => 1,
                _ => 2,
            };
            let mut branches: Vec<(Action, usize)> = Vec::new();
            for code in (0..32).filter(|c| codes & bit(*c) != 0) {
                let a = line.control.action(code);
                if !branches.iter().any(|(b, c)| *b == a && class(*c) == class(code)) {
                    branches.push((a, code));
                }
            }
            // Pushed in reverse: the first return value is followed first.
            for (action, code) in branches.into_iter().rev() {
                let mut s = st.clone();
                s.flags = flags;
                let mut end_level = false;
                let mut skipped = None;
                match action {
                    Action::Reset => s.cur = s.saved[level],
                    Action::Ok | Action::Done => {
                        if s.cur.imp == Imp::Undef || (s.cur.imp == Imp::Pos && s.cur.ok) {
                            s.cur = Frame {
                                imp: Imp::Pos,
                                ok: code == SUCCESS,
                            };
                        }
                        end_level = action == Action::Done && s.cur.imp == Imp::Pos;
                    }
                    Action::Bad | Action::Die => {
                        if s.cur.imp != Imp::Neg {
                            s.cur = Frame {
                                imp: Imp::Neg,
                                ok: false,
                            };
                        }
                        end_level = action == Action::Die;
                    }
                    Action::Ignore => {}
                    Action::Jump(n) => {
                        let mut n = n;
                        let mut j = h;
                        while n > 0 && lines.get(j + 1).is_some_and(|x| x.level >= line.level) {
                            j += 1;
                            while lines.get(j + 1).is_some_and(|x| x.level > line.level) {
                                j += 1;
                            }
                            n -= 1;
                        }
                        if n != 0 {
                            // "bad jump in stack"
                            s.cur = Frame {
                                imp: Imp::Neg,
                                ok: false,
                            };
                        }
                        if j > h {
                            skipped = Some((h + 1, j));
                        }
                        s.h = j;
                    }
                }
                if end_level {
                    let mut j = h;
                    while lines.get(j + 1).is_some_and(|x| x.level >= line.level) {
                        j += 1;
                    }
                    if j > h {
                        skipped = Some((h + 1, j));
                    }
                    s.h = j;
                }
                s.prev_level = level;
                s.h += 1;
                arena.push((
                    Step {
                        line: h,
                        code,
                        action,
                        skipped,
                    },
                    tail,
                ));
                work.push((s, Some(arena.len() - 1)));
            }
        }
    }

    fn loc(&self, i: usize) -> &str {
        &self.lines[i].location
    }

    fn what(&self, i: usize) -> String {
        let l = &self.lines[i];
        match (&l.kind, l.module()) {
            (_, Some(m)) => format!("{m} ({})", l.control.text),
            (Kind::Substack { name }, _) => format!("substack {name}"),
            _ => "a failing line".into(),
        }
    }

    /// The `enroll_on_login` gate (see [`enrollment_gate_for`]).
    pub fn enrollment_gate(&self) -> Result<(), String> {
        self.gate().map_err(|e| crate::text::terminal_safe(&e).into_owned())
    }

    fn gate(&self) -> Result<(), String> {
        let service = &self.service;
        if let Some(why) = &self.unknown {
            return Err(format!(
                "cannot prove that a wrong password stops the {service} stack before pam_totp: {why}"
            ));
        }
        if !self.lines.iter().any(Line::is_checking_totp) {
            return Err(format!(
                "no pam_totp line without forward_pass in the {service} stack (file {}): cannot tell what runs before this one",
                self.file
            ));
        }
        struct Gate {
            reached: Option<(usize, Vec<Step>)>,
        }
        impl Question for Gate {
            fn returns(&self, stack: &Stack, i: usize) -> Codes {
                let l = &stack.lines[i];
                if l.is_password_module() {
                    let ignore = if l.ignore_reason().is_some() { bit(IGNORE) } else { 0 };
                    FAILURES | ignore
                } else {
                    any_returns(l)
                }
            }
            fn visit(&mut self, stack: &Stack, i: usize, flags: u8, trace: Trace<'_>) -> Visit {
                if stack.lines[i].is_checking_totp() {
                    self.reached = Some((i, trace()));
                    return Visit::Stop;
                }
                Visit::Go(flags)
            }
            fn end(&mut self, _: bool, _: u8, _: Trace<'_>) {}
            fn done(&self) -> bool {
                self.reached.is_some()
            }
        }
        let mut q = Gate { reached: None };
        self.walk(&mut q);
        match q.reached {
            None => Ok(()),
            Some((t, trace)) => Err(self.why_reached(t, &trace)),
        }
    }

    /// Why a wrong password reaches the pam_totp line `t` along `trace`: one line naming the
    /// line to change.
    fn why_reached(&self, t: usize, trace: &[Step]) -> String {
        let tloc = self.loc(t);
        let pw = |s: &&Step| self.lines[s.line].is_password_module();
        // 1. A password module that ignored the user.
        if let Some(s) = trace.iter().filter(pw).find(|s| s.code == IGNORE) {
            let l = &self.lines[s.line];
            let (why, fix) = match l.ignore_reason().flatten() {
                Some(arg) => (format!("{arg} lets it return PAM_IGNORE"), " or drop the option"),
                None => (
                    "it can return PAM_IGNORE (minimum_uid, ignore_root and the like can be set in its own configuration file)".to_string(),
                    "",
                ),
            };
            return format!(
                "{}: {} is {} but {why}, which that control lets through to pam_totp ({tloc}); use [success=ok default=die]{fix}",
                l.location,
                l.module().unwrap_or("?"),
                l.control.text
            );
        }
        // 2. A password module that stopped only its substack.
        if let Some(s) = trace
            .iter()
            .filter(pw)
            .rev()
            .find(|s| self.lines[s.line].level > 0 && matches!(s.action, Action::Die | Action::Done))
        {
            let l = &self.lines[s.line];
            let marker = (0..s.line)
                .rev()
                .find(|i| matches!(self.lines[*i].kind, Kind::Substack { .. }) && self.lines[*i].level < l.level)
                .map(|i| self.loc(i).to_string())
                .unwrap_or_else(|| "?".into());
            return format!(
                "{}: {} is {} inside a substack ({marker}): a failure there ends only the substack and pam_totp ({tloc}) still runs; use `include` instead of `substack`",
                l.location,
                l.module().unwrap_or("?"),
                l.control.text
            );
        }
        // 3. Another module's jump (or end of a substack) that went around the password
        //    check or the line that stops the stack.
        if let Some(s) = trace.iter().rev().find(|s| !pw(s) && s.skipped.is_some()) {
            let (a, b) = s.skipped.unwrap_or((0, 0));
            let around = (a..=b)
                .find(|i| self.lines[*i].is_password_module())
                .or_else(|| (a..=b).find(|i| self.lines[*i].control.on_auth_err() == Action::Die))
                .unwrap_or(a);
            return format!(
                "{}: when {} returns {} its control skips {} ({}), so pam_totp ({tloc}) runs without a password check",
                self.loc(s.line),
                self.what(s.line),
                RETURNS[s.code],
                self.what(around),
                self.loc(around)
            );
        }
        // 4. A password module whose failure does not stop the stack.
        if let Some(s) = trace.iter().rev().find(pw) {
            let l = &self.lines[s.line];
            return format!(
                "{}: a wrong password does not stop the stack at {} (control {}): pam_totp ({tloc}) still runs; make it `requisite` or [success=ok default=die]",
                l.location,
                l.module().unwrap_or("?"),
                l.control.text
            );
        }
        format!(
            "{tloc}: no password module runs before pam_totp in the {} stack (ssh key + code?), so nothing proves the password before enrollment",
            self.service
        )
    }

    /// A way to overall success that runs no pam_totp line without forward_pass (pam_rootok's
    /// success, i.e. a caller who is root already, excepted). The line whose `done` or jump
    /// makes it possible, and what it does. None when there is none, or no such pam_totp line.
    pub fn success_without_totp(&self) -> Option<Bypass> {
        if !self.lines.iter().any(Line::is_checking_totp) {
            return None;
        }
        let trace = self.succeeds(
            |stack, i| {
                let l = &stack.lines[i];
                if l.is("pam_rootok.so") {
                    // Its success means the caller is root: no second factor is owed.
                    ANY & !bit(SUCCESS)
                } else {
                    any_returns(l)
                }
            },
            true,
        )?;
        let skips_totp = |s: &&Step| {
            s.skipped
                .is_some_and(|(a, b)| (a..=b).any(|i| self.lines[i].is_checking_totp()))
        };
        let s = trace
            .iter()
            .find(skips_totp)
            .or_else(|| trace.iter().rev().find(|s| s.skipped.is_some()));
        let totp = self
            .lines
            .iter()
            .find(|l| l.is_checking_totp())
            .map(|l| l.location.clone())
            .unwrap_or_default();
        Some(match s {
            Some(s) => {
                let l = &self.lines[s.line];
                Bypass {
                    location: l.location.clone(),
                    module: l.module().unwrap_or("?").to_string(),
                    control: l.control.text.clone(),
                    jump: matches!(s.action, Action::Jump(_)),
                    on: RETURNS[s.code],
                    totp,
                }
            }
            None => Bypass {
                location: self.file.clone(),
                module: String::new(),
                control: String::new(),
                jump: false,
                on: "success",
                totp,
            },
        })
    }

    /// A way to overall success although every pam_totp line that checks codes refused —
    /// a wrong code, a failed or cancelled conversation (Ctrl-D at the prompt), an internal
    /// error: a control that ignores one of those, or a `done`/jump past pam_totp. Returns
    /// the line whose action lets it through. (pam_rootok's success, a caller who is root
    /// already, excepted.)
    pub fn success_despite_refused_code(&self) -> Option<Through> {
        if !self.lines.iter().any(Line::is_checking_totp) {
            return None;
        }
        let trace = self.succeeds(
            |stack, i| {
                let l = &stack.lines[i];
                if l.is_checking_totp() {
                    bit(AUTH_ERR) | bit(CONV_ERR) | bit(SERVICE_ERR)
                } else if l.is("pam_rootok.so") {
                    ANY & !bit(SUCCESS)
                } else {
                    any_returns(l)
                }
            },
            false,
        )?;
        // The pam_totp step whose failure was not final, else the jump that skipped it.
        let step = trace
            .iter()
            .find(|s| self.lines[s.line].is_checking_totp() && !matches!(s.action, Action::Bad | Action::Die))
            .or_else(|| {
                trace.iter().find(|s| {
                    s.skipped
                        .is_some_and(|(a, b)| (a..=b).any(|i| self.lines[i].is_checking_totp()))
                })
            })
            .or_else(|| trace.iter().rev().find(|s| s.skipped.is_some()))?;
        Some(self.through(step))
    }

    /// A way to overall success when every password module fails (a wrong password; a right
    /// code, if pam_totp runs, succeeds): a password module whose failure is ignored, or a
    /// jump around it. None when the stack has no password module (ssh key + code).
    pub fn success_with_wrong_password(&self) -> Option<Through> {
        if !self.lines.iter().any(Line::is_password_module) {
            return None;
        }
        let trace = self.succeeds(
            |stack, i| {
                let l = &stack.lines[i];
                if l.is_password_module() {
                    let ignore = if l.ignore_reason().is_some() { bit(IGNORE) } else { 0 };
                    FAILURES | ignore
                } else if l.is("pam_rootok.so") {
                    ANY & !bit(SUCCESS)
                } else {
                    any_returns(l)
                }
            },
            false,
        )?;
        let step = trace
            .iter()
            .find(|s| self.lines[s.line].is_password_module() && !matches!(s.action, Action::Bad | Action::Die))
            .or_else(|| trace.iter().find(|s| s.skipped.is_some()))
            .or_else(|| trace.iter().find(|s| self.lines[s.line].is_password_module()))?;
        Some(self.through(step))
    }

    /// The steps of a way through the stack that ends in overall success, with each line
    /// returning what `returns` allows; with `stop_at_totp`, ways that reach a pam_totp line
    /// checking codes are not followed (success must come without it).
    fn succeeds(&self, returns: impl Fn(&Stack, usize) -> Codes, stop_at_totp: bool) -> Option<Vec<Step>> {
        struct Q<F> {
            returns: F,
            stop_at_totp: bool,
            found: Option<Vec<Step>>,
        }
        impl<F: Fn(&Stack, usize) -> Codes> Question for Q<F> {
            fn returns(&self, stack: &Stack, i: usize) -> Codes {
                (self.returns)(stack, i)
            }
            fn visit(&mut self, stack: &Stack, i: usize, flags: u8, _: Trace<'_>) -> Visit {
                if self.stop_at_totp && stack.lines[i].is_checking_totp() {
                    return Visit::Stop;
                }
                Visit::Go(flags)
            }
            fn end(&mut self, success: bool, _: u8, trace: Trace<'_>) {
                if success && self.found.is_none() {
                    self.found = Some(trace());
                }
            }
            fn done(&self) -> bool {
                self.found.is_some()
            }
        }
        let mut q = Q {
            returns,
            stop_at_totp,
            found: None,
        };
        self.walk(&mut q);
        q.found
    }

    fn through(&self, s: &Step) -> Through {
        let l = &self.lines[s.line];
        Through {
            location: l.location.clone(),
            module: l.module().unwrap_or("?").to_string(),
            control: l.control.text.clone(),
            on: RETURNS[s.code],
        }
    }

    /// For each `forward_pass` pam_totp line, what is wrong with the layout around it:
    /// (line index, problem). See [`ForwardProblem`].
    pub fn forward_pass_problems(&self) -> Vec<(usize, ForwardProblem)> {
        let mut out = Vec::new();
        for f in (0..self.lines.len()).filter(|i| self.lines[*i].is_forward_pass()) {
            if self.lines[f].control.on_auth_err() == Action::Die {
                out.push((f, ForwardProblem::DiesOnWrongCode));
            }
            struct Later {
                f: usize,
                good: HashSet<usize>,
                bad: HashSet<usize>,
            }
            const SEEN_F: u8 = 1;
            const PASSWORD_AFTER: u8 = 2;
            impl Question for Later {
                fn returns(&self, stack: &Stack, i: usize) -> Codes {
                    any_returns(&stack.lines[i])
                }
                fn visit(&mut self, stack: &Stack, i: usize, mut flags: u8, _: Trace<'_>) -> Visit {
                    let l = &stack.lines[i];
                    if i == self.f {
                        flags = SEEN_F;
                    } else if flags & SEEN_F != 0 && l.is_password_module() {
                        flags |= PASSWORD_AFTER;
                    } else if flags & SEEN_F != 0 && l.is_checking_totp() {
                        if flags & PASSWORD_AFTER != 0 {
                            self.good.insert(i);
                        } else {
                            self.bad.insert(i);
                        }
                    }
                    Visit::Go(flags)
                }
                fn end(&mut self, _: bool, _: u8, _: Trace<'_>) {}
            }
            let mut q = Later {
                f,
                good: HashSet::new(),
                bad: HashSet::new(),
            };
            self.walk(&mut q);
            if q.good.iter().any(|t| !q.bad.contains(t)) {
                continue;
            }
            let mut bad: Vec<usize> = q.bad.into_iter().collect();
            bad.sort_unstable();
            out.push((
                f,
                match bad.first() {
                    Some(t) => ForwardProblem::CheckWithoutPassword(self.lines[*t].location.clone()),
                    None => ForwardProblem::NoCheckLine,
                },
            ));
        }
        out
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
mod tests {
    use super::*;

    fn files(map: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = map.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        move |name: &str| owned.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone())
    }

    fn gate(map: &[(&str, &str)]) -> Result<(), String> {
        enrollment_gate_for("svc", &files(map))
    }

    fn one(text: &str) -> Result<(), String> {
        gate(&[("svc", text)])
    }

    #[test]
    fn lines_are_assembled_like_libpam() {
        let (l, complete) = logical_lines(
            "  # comment\nauth  required \\\n\tpam_unix.so  # c\n\n\r\nauth x y \\ # no continuation\nz\n",
        );
        assert!(complete);
        assert_eq!(l[0], (2, "auth  required  pam_unix.so  ".to_string()));
        assert_eq!(l[1], (5, "\r\n".to_string()), "a CR line is a line for libpam");
        assert_eq!(l[2].0, 6);
        assert_eq!(l[3], (7, "z\n".to_string()));
        let (_, complete) = logical_lines("auth required pam_unix.so \\\n");
        assert!(!complete);
        let t = tokens("auth [success=1 default=ignore] pam_x.so [a b\\]c]d e\n");
        let t: Vec<&str> = t.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(t, ["auth", "success=1 default=ignore", "pam_x.so", "a b]c", "d", "e"]);
    }

    #[test]
    fn controls_are_parsed_like_libpam() {
        let c = parse_control("success=1 default=ignore").unwrap();
        assert_eq!(c[SUCCESS], Action::Jump(1));
        assert_eq!(c[AUTH_ERR], Action::Ignore);
        let c = parse_control(" default = die success=ok  ").unwrap();
        assert_eq!((c[SUCCESS], c[IGNORE]), (Action::Ok, Action::Die));
        let c = parse_control("success=ok").unwrap();
        assert_eq!(c[AUTH_ERR], Action::Bad, "unnamed values are bad");
        for bad in ["success=OK", "sucess=ok", "success=0", "success", "success=okay"] {
            assert!(parse_control(bad).is_err(), "{bad}");
        }
        let s = load("s", &|_| {
            Some("AUTH Requisite pam_unix.so\nauth [required] pam_deny.so\n".into())
        })
        .unwrap();
        assert_eq!(s.lines[0].control.keyword, Some(Keyword::Requisite));
        assert_eq!(
            s.lines[1].control.keyword,
            Some(Keyword::Required),
            "brackets are dropped"
        );
        assert!(s.unknown.is_none());
    }

    #[test]
    fn requisite_password_module_before_totp_is_a_gate() {
        assert_eq!(one("auth requisite pam_unix.so\nauth required pam_totp.so\n"), Ok(()));
        assert_eq!(
            one("auth [success=ok default=die] pam_unix.so\nauth required pam_totp.so\n"),
            Ok(())
        );
        let e = one("auth required pam_unix.so\nauth required pam_totp.so\n").unwrap_err();
        assert!(e.starts_with("svc:1: a wrong password does not stop"), "{e}");
    }

    #[test]
    fn a_requisite_failure_inside_a_substack_ends_only_the_substack() {
        let e = gate(&[
            ("svc", "auth substack pw\nauth required pam_totp.so\n"),
            ("pw", "auth requisite pam_unix.so\n"),
        ])
        .unwrap_err();
        assert!(
            e.starts_with("pw:1: pam_unix.so is requisite inside a substack (svc:1)"),
            "{e}"
        );
        assert_eq!(
            gate(&[
                ("svc", "auth include pw\nauth required pam_totp.so\n"),
                ("pw", "auth requisite pam_unix.so\n"),
            ]),
            Ok(())
        );
        // Debian's @include inside a substack stays at the substack's level.
        assert!(gate(&[
            ("svc", "auth substack a\nauth required pam_totp.so\n"),
            ("a", "@include b\n"),
            ("b", "auth requisite pam_unix.so\n"),
        ])
        .is_err());
        // pam_totp inside the same substack, after the password: gated.
        assert_eq!(
            gate(&[
                ("svc", "auth substack a\n"),
                ("a", "auth requisite pam_unix.so\nauth required pam_totp.so\n"),
            ]),
            Ok(())
        );
    }

    #[test]
    fn a_password_module_that_can_ignore_the_user_does_not_stop_anything() {
        let e =
            one("auth requisite pam_sss.so ignore_unknown_user ignore_authinfo_unavail\nauth required pam_totp.so\n")
                .unwrap_err();
        assert_eq!(
            e,
            "svc:1: pam_sss.so is requisite but ignore_unknown_user lets it return PAM_IGNORE, which that control lets through to pam_totp (svc:2); use [success=ok default=die] or drop the option"
        );
        assert_eq!(
            one("auth [success=ok default=die] pam_sss.so ignore_unknown_user\nauth required pam_totp.so\n"),
            Ok(())
        );
        assert!(one("auth requisite pam_sss.so minimum_uid=1000\nauth required pam_totp.so\n").is_err());
        assert_eq!(one("auth requisite pam_sss.so\nauth required pam_totp.so\n"), Ok(()));
        // Configured elsewhere: never proven by `requisite` alone.
        assert!(one("auth requisite pam_krb5.so\nauth required pam_totp.so\n").is_err());
        assert_eq!(
            one("auth [success=ok default=die] pam_krb5.so\nauth required pam_totp.so\n"),
            Ok(())
        );
    }

    #[test]
    fn debian_layouts_are_gates_and_their_variants_without_pam_deny_are_not() {
        let unix = "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_totp.so nullok\n";
        assert_eq!(one(unix), Ok(()));
        let sss = "auth [success=2 default=ignore] pam_unix.so nullok\nauth [success=1 default=ignore] pam_sss.so use_first_pass ignore_unknown_user\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_totp.so\n";
        assert_eq!(one(sss), Ok(()));
        let e = one("auth [success=ok default=ignore] pam_unix.so\nauth required pam_totp.so\n").unwrap_err();
        assert!(e.contains("svc:1: a wrong password does not stop"), "{e}");
        // pam_totp inside the jumped-over block: the failure path falls into it.
        assert!(one(
            "auth [success=1 default=ignore] pam_unix.so\nauth required pam_totp.so\nauth requisite pam_deny.so\n"
        )
        .is_err());
    }

    #[test]
    fn a_jump_around_the_password_is_named() {
        let e = one("auth [success=1 default=ignore] pam_succeed_if.so uid < 1000\nauth requisite pam_unix.so\nauth required pam_totp.so\n")
            .unwrap_err();
        assert!(e.starts_with("svc:1: when pam_succeed_if.so ([success=1 default=ignore]) returns success its control skips pam_unix.so (requisite) (svc:2)"), "{e}");
    }

    #[test]
    fn dash_lines_fail_when_the_module_is_missing() {
        // PAM_MODULE_UNKNOWN, which requisite maps to die (pam_dispatch.c).
        assert_eq!(one("-auth requisite pam_unix.so\nauth required pam_totp.so\n"), Ok(()));
        assert!(
            one("-auth [success=ok module_unknown=ignore default=die] pam_unix.so\nauth required pam_totp.so\n")
                .is_err()
        );
    }

    #[test]
    fn what_cannot_be_read_or_parsed_is_never_proven() {
        let e = gate(&[(
            "svc",
            "auth include nope\nauth requisite pam_unix.so\nauth required pam_totp.so\n",
        )])
        .unwrap_err();
        assert!(e.contains("svc:1: cannot read `nope`"), "{e}");
        for (text, want) in [
            ("auth include /etc/pam.d/x\n", "not followed"),
            ("auth include ../x\n", "not followed"),
            ("auth include .hidden\n", "not followed"),
            ("auth requisit pam_unix.so\n", "cannot parse the control"),
            (
                "auth [success=ok defualt=die] pam_unix.so\n",
                "cannot parse the control",
            ),
            ("atuh requisite pam_unix.so\n", "unknown line type"),
            ("auth requisite\n", "no module"),
        ] {
            let e = one(&format!(
                "{text}auth requisite pam_unix.so\nauth required pam_totp.so\n"
            ))
            .unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = one("auth requisite pam_unix.so\nauth required pam_totp.so \\\n").unwrap_err();
        assert!(e.contains("svc: the last line ends with"), "{e}");
        let long = "auth optional pam_env.so\n".repeat(MAX_LINES) + "auth required pam_totp.so\n";
        assert!(one(&long).unwrap_err().contains("more than 4096 auth lines"));
        let long = "auth [success=ok default=ignore] pam_env.so\n".repeat(MAX_LINES - 2)
            + "auth requisite pam_unix.so\nauth required pam_totp.so\n";
        assert_eq!(one(&long), Ok(()), "a long stack is walked without recursion");
        let e = gate(&[("svc", "auth include svc\nauth required pam_totp.so\n")]).unwrap_err();
        assert!(e.contains("deeper than 8"), "{e}");
        assert!(enrollment_gate_for("svc", &|_| None).is_err());
        assert!(one("auth required pam_totp.so\n")
            .unwrap_err()
            .contains("no password module"));
        assert!(
            one("auth requisite pam_unix.so\n").is_err(),
            "no pam_totp here: the module runs elsewhere"
        );
    }

    #[test]
    fn service_without_auth_lines_uses_other() {
        let m = [
            ("svc", "account required pam_unix.so\n"),
            ("other", "auth required pam_totp.so\n"),
        ];
        let s = load("svc", &files(&m)).unwrap();
        assert_eq!(s.file, "other");
        assert!(gate(&m).unwrap_err().contains("other:1"));
    }

    /// Runs a stack of pam_permit (success), pam_deny (auth_err) and pam_echo (success: it
    /// returns PAM_SUCCESS once it has printed its text) lines: (overall success, whether pam_echo ran) for its one way through.
    fn run_fixed(map: &[(&str, &str)]) -> (bool, bool) {
        struct Fixed(Vec<(bool, bool)>);
        const ECHO: u8 = 1;
        impl Question for Fixed {
            fn returns(&self, stack: &Stack, i: usize) -> Codes {
                let l = &stack.lines[i];
                match l.module() {
                    Some("pam_permit.so") => bit(SUCCESS),
                    Some("pam_echo.so") => bit(SUCCESS),
                    _ => any_returns(l),
                }
            }
            fn visit(&mut self, stack: &Stack, i: usize, f: u8, _: Trace<'_>) -> Visit {
                Visit::Go(if stack.lines[i].is("pam_echo.so") { f | ECHO } else { f })
            }
            fn end(&mut self, ok: bool, f: u8, _: Trace<'_>) {
                self.0.push((ok, f & ECHO != 0));
            }
        }
        let s = load("svc", &files(map)).unwrap();
        let mut q = Fixed(vec![]);
        s.walk(&mut q);
        assert_eq!(q.0.len(), 1, "{map:?}");
        q.0[0]
    }

    /// Each case was run through the real libpam (1.5.2, pam-harness with these files bound
    /// over /etc/pam.d, pam_echo as the marker) with the result noted here.
    #[test]
    fn dispatch_matches_the_real_libpam() {
        let one = |t: &str| run_fixed(&[("svc", t)]);
        // requisite in a substack: REACHED, RESULT 7.
        let sub = [
            ("svc", "auth substack s\nauth optional pam_echo.so\n"),
            ("s", "auth requisite pam_deny.so\nauth optional pam_echo.so\n"),
        ];
        assert_eq!(run_fixed(&sub), (false, true));
        let s = load("svc", &files(&sub)).unwrap();
        assert_eq!(s.lines.len(), 4, "marker, two substack lines, echo");
        // The same through include: RESULT 7, nothing after it ran.
        assert_eq!(
            run_fixed(&[
                ("svc", "auth include s\nauth optional pam_echo.so\n"),
                ("s", "auth requisite pam_deny.so\n")
            ]),
            (false, false)
        );
        // A jump to the end sets no impression: RESULT 6.
        assert_eq!(
            one("auth [success=1 default=die] pam_permit.so\nauth required pam_deny.so\n"),
            (false, false)
        );
        // `sufficient` after a failure does not end the stack: REACHED, RESULT 7.
        assert_eq!(
            one("auth required pam_deny.so\nauth sufficient pam_permit.so\nauth optional pam_echo.so\n"),
            (false, true)
        );
        // `ok` on a failure fails the stack: RESULT 7.
        assert_eq!(
            one("auth [default=ok] pam_deny.so\nauth required pam_permit.so\n"),
            (false, false)
        );
        // `sufficient` inside a substack ends only the substack: REACHED, RESULT 7.
        assert_eq!(
            run_fixed(&[
                (
                    "svc",
                    "auth substack s\nauth optional pam_echo.so\nauth requisite pam_deny.so\n"
                ),
                (
                    "s",
                    "auth required pam_permit.so\nauth sufficient pam_permit.so\nauth optional pam_echo.so\n"
                )
            ]),
            (false, true)
        );
        // A jump past the end of a substack: "bad jump", the parent goes on: REACHED, 6.
        assert_eq!(
            run_fixed(&[
                (
                    "svc",
                    "auth substack s\nauth optional pam_echo.so\nauth required pam_permit.so\n"
                ),
                ("s", "auth [success=5 default=bad] pam_permit.so\n")
            ]),
            (false, true)
        );
        // A jump over a whole substack counts it as one line: REACHED, RESULT 0.
        assert_eq!(
            run_fixed(&[
                (
                    "svc",
                    "auth [success=1 default=bad] pam_permit.so\nauth substack s\nauth optional pam_echo.so\n"
                ),
                ("s", "auth requisite pam_deny.so\n")
            ]),
            (true, true)
        );
        // reset restores the state saved when the substack was entered: RESULT 0.
        assert_eq!(
            run_fixed(&[
                (
                    "svc",
                    "auth requisite pam_permit.so\nauth substack s\nauth optional pam_echo.so\n"
                ),
                ("s", "auth required pam_deny.so\nauth [default=reset] pam_deny.so\n")
            ]),
            (true, true)
        );
        // Case-insensitive type and keywords, a bare `value=action` control: RESULT 0.
        assert_eq!(
            one("AUTH Requisite pam_permit.so\nauth success=ok pam_permit.so\n"),
            (true, false)
        );
        // A line of only CR is a failing auth line: RESULT 6.
        assert_eq!(one("auth required pam_permit.so\n\r\n"), (false, false));
        // Debian's @include of a file with no auth line adds nothing to auth: RESULT 0.
        assert_eq!(
            run_fixed(&[
                (
                    "svc",
                    "@include s\nauth optional pam_echo.so\nauth required pam_permit.so\n"
                ),
                ("s", "account requisite pam_deny.so\n")
            ]),
            (true, true)
        );
    }

    #[test]
    fn success_without_the_code_names_the_line() {
        let b = |text: &str| load("svc", &|_| Some(text.to_string())).unwrap().success_without_totp();
        let x = b("auth sufficient pam_unix.so\nauth required pam_totp.so\n").unwrap();
        assert_eq!(
            (x.location.as_str(), x.jump, x.totp.as_str()),
            ("svc:1", false, "svc:2")
        );
        let x = b("auth [success=done default=die] pam_unix.so\nauth required pam_totp.so\n").unwrap();
        assert_eq!(x.location, "svc:1");
        let x = b("auth [success=2 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_totp.so\nauth required pam_permit.so\n")
            .unwrap();
        assert!(x.jump && x.location == "svc:1", "{x:?}");
        assert_eq!(
            b("auth [success=2 default=die] pam_unix.so\nauth required pam_permit.so\nauth required pam_totp.so\n"),
            None,
            "a jump to the end sets no impression: that way fails"
        );
        assert_eq!(b("auth requisite pam_unix.so\nauth required pam_totp.so\n"), None);
        assert_eq!(b("auth required pam_totp.so\n"), None);
        assert_eq!(
            b("auth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_totp.so\n"),
            None
        );
        assert_eq!(
            b("auth sufficient pam_rootok.so\nauth requisite pam_unix.so\nauth required pam_totp.so\n"),
            None,
            "root needs no code"
        );
        // `sufficient` inside a substack ends only the substack.
        let m = files(&[
            ("svc", "auth substack s\nauth required pam_totp.so\n"),
            ("s", "auth sufficient pam_unix.so\n"),
        ]);
        assert_eq!(load("svc", &m).unwrap().success_without_totp(), None);
    }

    #[test]
    fn forward_pass_layouts() {
        let p = |text: &str| {
            load("svc", &|_| Some(text.to_string()))
                .unwrap()
                .forward_pass_problems()
        };
        assert_eq!(
            p("auth required pam_totp.so forward_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_totp.so\n"),
            vec![]
        );
        assert_eq!(
            p("auth required pam_totp.so forward_pass\nauth required pam_unix.so use_first_pass\n"),
            vec![(0, ForwardProblem::NoCheckLine)]
        );
        assert_eq!(
            p("auth requisite pam_totp.so forward_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_totp.so\n"),
            vec![(0, ForwardProblem::DiesOnWrongCode)]
        );
        assert_eq!(
            p("auth required pam_totp.so forward_pass\nauth required pam_totp.so\nauth requisite pam_unix.so\n"),
            vec![(0, ForwardProblem::CheckWithoutPassword("svc:2".into()))]
        );
    }

    #[test]
    fn a_line_longer_than_libpams_read_buffer_proves_nothing() {
        // Debian 12's libpam reads the tail of a 1024-byte line as a line of its own: here a
        // comment whose tail would jump over the password.
        let long = format!(
            "# {}auth [success=1 default=ignore] pam_permit.so\nauth requisite pam_unix.so\nauth required pam_totp.so enroll_on_login\n",
            "x".repeat(1021)
        );
        let e = one(&long).unwrap_err();
        assert!(e.contains("1023 bytes or longer"), "{e}");
        let short = "# short comment\nauth requisite pam_unix.so\nauth required pam_totp.so enroll_on_login\n";
        assert!(one(short).is_ok());
    }
}
