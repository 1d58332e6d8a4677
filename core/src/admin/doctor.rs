//! `pam-totp doctor`: finds the classic configuration mistakes in PAM stacks and sshd's
//! configuration. Pure: it reads text handed to it, so every check is unit-tested.
//!
//! Owns: the list of checks and their wording. Never: changes a file.

use std::collections::HashMap;

use crate::config::Config;
use crate::pamstack::{Action, ForwardProblem, Keyword, Line, Stack};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    /// Would lock users out or let them in without a code: `doctor` exits non-zero.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Short stable name of the check, e.g. `sshd-kbdinteractive`.
    pub check: &'static str,
    pub message: String,
    /// Where (file:line) when it is about one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

fn finding(severity: Severity, check: &'static str, message: String, location: Option<String>) -> Finding {
    Finding {
        severity,
        check,
        message,
        location,
    }
}

/// Effective sshd settings, keyed by lower-case keyword (as `sshd -T` prints them).
pub type SshdConfig = HashMap<String, String>;

/// Parses `sshd -T` output.
pub fn parse_sshd_t(text: &str) -> SshdConfig {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// Reads sshd_config files the way sshd does where it matters here: the first value of a
/// keyword wins, `Include` is followed, `Match` blocks are ignored (conditional), and
/// OpenSSH's defaults fill the rest. `read(path)` returns a file's text; `glob(pattern)`
/// the files an Include names.
pub fn parse_sshd_files(
    main: &str,
    read: &dyn Fn(&str) -> Option<String>,
    glob: &dyn Fn(&str) -> Vec<String>,
) -> SshdConfig {
    fn walk(
        path: &str,
        read: &dyn Fn(&str) -> Option<String>,
        glob: &dyn Fn(&str) -> Vec<String>,
        cfg: &mut SshdConfig,
        depth: usize,
    ) {
        let Some(text) = read(path) else { return };
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
                Some((k, v)) => (
                    k.to_ascii_lowercase(),
                    v.trim_start_matches(|c: char| c.is_whitespace() || c == '=').trim(),
                ),
                None => continue,
            };
            if k == "match" {
                return; // everything after a Match line is conditional
            }
            if k == "include" && depth < 8 {
                for pattern in v.split_whitespace() {
                    let pattern = if pattern.starts_with('/') {
                        pattern.to_string()
                    } else {
                        format!("/etc/ssh/{pattern}")
                    };
                    for file in glob(&pattern) {
                        walk(&file, read, glob, cfg, depth + 1);
                    }
                }
                continue;
            }
            let k = if k == "challengeresponseauthentication" {
                "kbdinteractiveauthentication".to_string()
            } else {
                k
            };
            cfg.entry(k).or_insert_with(|| v.to_ascii_lowercase());
        }
    }
    let mut cfg = SshdConfig::new();
    walk(main, read, glob, &mut cfg, 0);
    for (k, v) in [
        ("usepam", "no"),
        ("kbdinteractiveauthentication", "yes"),
        ("passwordauthentication", "yes"),
        ("pubkeyauthentication", "yes"),
        ("authenticationmethods", "any"),
    ] {
        cfg.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    cfg
}

/// Checks one service's auth stack; true when pam_totp is in it.
pub fn check_stack(service: &str, stack: &Stack, findings: &mut Vec<Finding>) -> bool {
    let lines = &stack.lines;
    let totp: Vec<&Line> = lines.iter().filter(|l| l.is_totp()).collect();
    let checking: Vec<&Line> = totp.iter().copied().filter(|l| l.is_checking_totp()).collect();
    let Some(first) = checking.first().or(totp.first()).copied() else {
        findings.push(finding(
            Severity::Info,
            "not-enabled",
            format!("pam_totp is not in the auth stack of {service}"),
            None,
        ));
        if let Some(why) = &stack.unknown {
            findings.push(finding(
                Severity::Warning,
                "stack-incomplete",
                format!("{service}: the auth stack cannot be read whole ({why}); pam_totp may be in the part that is missing"),
                None,
            ));
        }
        return false;
    };
    let loc = |l: &Line| Some(l.location.clone());
    if let Some(why) = &stack.unknown {
        findings.push(finding(
            Severity::Warning,
            "stack-incomplete",
            format!(
                "{service}: the auth stack cannot be read whole ({why}); the checks below see only what could be read"
            ),
            None,
        ));
    }

    // The control of each line that decides a code.
    for t in &checking {
        let control = t.control.text.as_str();
        match t.control.keyword {
            Some(Keyword::Optional) => findings.push(finding(Severity::Error, "control-optional", format!("{service}: pam_totp is `optional`, so a wrong code is ignored whenever another module succeeds; use `required`"), loc(t))),
            Some(Keyword::Sufficient) => findings.push(finding(Severity::Error, "control-sufficient", format!("{service}: pam_totp is `sufficient`: a right code ends the stack, skipping every module after it; use `required`"), loc(t))),
            Some(_) => {}
            None if matches!(t.control.on_auth_err(), Action::Ignore | Action::Jump(_) | Action::Reset) => {
                findings.push(finding(
                    Severity::Error,
                    "control-ignores-failure",
                    format!("{service}: pam_totp's control {control} ignores a wrong code; use `required`"),
                    loc(t),
                ));
            }
            None if matches!(t.control.on_success(), Action::Done | Action::Jump(_)) => {
                findings.push(finding(Severity::Warning, "control-jump", format!("{service}: pam_totp's control {control} jumps on success; check that it cannot skip the password module"), loc(t)));
            }
            None => {}
        }
    }

    check_twice(service, &totp, findings);

    // Where the password module is, relative to the line that decides the code.
    let forward_first = totp.first().is_some_and(|l| l.is_forward_pass());
    let ti = lines.iter().position(Line::is_checking_totp);
    match (lines.iter().position(Line::is_password_module), ti) {
        (Some(pi), Some(ti)) if pi < ti => {
            let p = &lines[pi];
            if matches!(p.control.keyword, Some(Keyword::Required | Keyword::Optional)) {
                findings.push(finding(Severity::Warning, "password-not-requisite", format!("{service}: {} is `{}` before pam_totp: someone without the password still reaches the code prompt and can lock the user out; make it `requisite`", p.module().unwrap_or("?"), p.control.text), loc(p)));
            }
        }
        (Some(_), Some(_)) if !forward_first => {
            findings.push(finding(Severity::Warning, "code-before-password", format!("{service}: the code is asked before the password, so anyone can lock a user out by guessing codes; put pam_totp after the password module, or use the forward_pass layout (pam_totp forward_pass, then the password module with use_first_pass, then pam_totp)"), loc(first)));
        }
        _ => {}
    }

    // A way to success that never runs pam_totp (finding 4).
    if let Some(b) = stack.success_without_totp() {
        let fix = "without a code: the password alone logs in (and a wrong password with a right code too); make it `requisite` or [success=ok default=die], or put pam_totp before it";
        let (check, message) = if b.module == "pam_totp.so" {
            (
                "sufficient-before-totp",
                format!(
                    "the forward_pass line ({}) ends the stack on {} before the password module and pam_totp ({}) run: a right code alone logs in; make it `required`",
                    b.control, b.on, b.totp
                ),
            )
        } else if b.module.is_empty() {
            ("sufficient-before-totp", format!("the stack can succeed {fix}"))
        } else if b.jump {
            (
                "jump-past-totp",
                format!(
                    "{} ({}) jumps past pam_totp ({}) on {} without a code: the password alone logs in; make the jump end before pam_totp (pam-auth-update's layout jumps only over `requisite pam_deny.so`)",
                    b.module, b.control, b.totp, b.on
                ),
            )
        } else if b.control.eq_ignore_ascii_case("sufficient") {
            (
                "sufficient-before-totp",
                format!(
                    "{} is `sufficient` before pam_totp ({}): its {} ends the stack {fix}",
                    b.module, b.totp, b.on
                ),
            )
        } else {
            (
                "sufficient-before-totp",
                format!(
                    "{} ({}) ends the stack before pam_totp ({}) on {} {fix}",
                    b.module, b.control, b.totp, b.on
                ),
            )
        };
        findings.push(finding(
            Severity::Error,
            check,
            format!("{service}: {message}"),
            Some(b.location),
        ));
    }

    // A refused code (a wrong one, or a cancelled prompt: Ctrl-D at `login`) that does not
    // stop the stack, and a wrong password that does not: both found by following every way
    // through the stack, so controls like [success=ok auth_err=die default=ignore] (which let
    // PAM_CONV_ERR through) are caught, not only the keywords. Reported once per line.
    let already = |findings: &[Finding], at: &str| {
        findings
            .iter()
            .any(|f| f.severity == Severity::Error && f.location.as_deref() == Some(at))
    };
    if let Some(t) = stack.success_despite_refused_code() {
        if !already(findings, &t.location) {
            findings.push(finding(
                Severity::Error,
                "refused-code-ignored",
                format!(
                    "{service}: the stack can succeed although pam_totp refused the login: {} ({}) lets a {} through; give pam_totp `required` (or [success=ok default=die]) and no jump past it",
                    t.module, t.control, t.on
                ),
                Some(t.location),
            ));
        }
    }
    if let Some(t) = stack.success_with_wrong_password() {
        if !already(findings, &t.location) {
            findings.push(finding(
                Severity::Error,
                "wrong-password-logs-in",
                format!(
                    "{service}: a wrong password with a right code logs in: {} ({}) lets its failure ({}) through; make it `requisite` or [success=ok default=die] (pam-auth-update's layout: [success=1 default=ignore] followed by `requisite pam_deny.so`)",
                    t.module, t.control, t.on
                ),
                Some(t.location),
            ));
        }
    }

    // The forward_pass layout (finding 3).
    for (i, p) in stack.forward_pass_problems() {
        let f = &lines[i];
        let message = match p {
            ForwardProblem::NoCheckLine => format!("{service}: the forward_pass line has no pam_totp line after the password module: wrong codes are never counted toward the lockout, so someone with the password can guess codes forever; add `auth required pam_totp.so` after the password module (pam_totp forward_pass, then the password module with use_first_pass, then pam_totp)"),
            ForwardProblem::CheckWithoutPassword(at) => format!("{service}: the pam_totp line after forward_pass ({at}) can run without a password module before it, so it counts codes for callers who never proved the password; put the password module (use_first_pass) between the two pam_totp lines"),
            ForwardProblem::DiesOnWrongCode => format!("{service}: the forward_pass line is {}: a wrong code ends the stack before the password is checked and is never counted; make it `required`", f.control.text),
        };
        findings.push(finding(Severity::Error, "forward-pass-layout", message, loc(f)));
    }

    // Options: the same parser as the module (the config file is checked separately).
    for t in &totp {
        let args: Vec<&str> = t
            .args()
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with("config="))
            .collect();
        if let Err(e) = Config::load(&args, |_| Ok(None)) {
            findings.push(finding(
                Severity::Error,
                "bad-option",
                format!("{service}: {e}; every login through this line is refused"),
                loc(t),
            ));
        }
    }
    if let Some(t) = checking
        .iter()
        .find(|t| t.args().iter().any(|a| a == "enroll_on_login"))
    {
        if let Err(why) = stack.enrollment_gate() {
            findings.push(finding(
                Severity::Error,
                "enroll-without-password",
                format!("{service}: enroll_on_login is not offered here (users without a secret are refused): {why}"),
                loc(t),
            ));
        }
    }
    let has = |a: &str| first.args().iter().any(|x| x == a);
    if let Some(t) = totp
        .iter()
        .find(|t| t.args().iter().any(|a| a == "store_unavailable=local"))
    {
        findings.push(finding(
            Severity::Warning,
            "fleet-fallback",
            format!("{service}: store_unavailable=local: {FLEET_FALLBACK_RISK}"),
            loc(t),
        ));
    }
    if has("nullok") && first.args().iter().any(|a| a.starts_with("enforce_after=")) {
        findings.push(finding(
            Severity::Warning,
            "nullok-and-enforce-after",
            format!("{service}: nullok and enforce_after together: nullok stops applying on the enforce_after date"),
            loc(first),
        ));
    }
    findings.push(finding(
        Severity::Ok,
        "enabled",
        format!("{service}: pam_totp is `{}` in the auth stack", first.control.text),
        loc(first),
    ));
    true
}

/// With the vault, users change their own keys through the setuid helper `pam-totp-vault`,
/// which reads pam_totp.conf only (it takes nothing from its caller): a pam_totp line whose
/// options make the module read keys or state elsewhere, or decide codes by other rules, than
/// the file says disagrees with it — users would enroll into a vault the module does not read
/// (and be refused), or prove a change by rules the logins do not use. `line_config` is the
/// configuration a line's options give (the module's way: `config=` and the arguments over
/// the file); `file` the file's own.
pub fn check_line_options(
    service: &str,
    stack: &Stack,
    file: &Config,
    line_config: &dyn Fn(&[&str]) -> Option<Config>,
    findings: &mut Vec<Finding>,
) {
    for t in stack.lines.iter().filter(|l| l.is_totp()) {
        let args: Vec<&str> = t.args().iter().map(String::as_str).collect();
        // A line that does not parse is reported as a bad option.
        let Some(line) = line_config(&args) else { continue };
        if file.key_store != crate::config::KeyStore::Vault && line.key_store != crate::config::KeyStore::Vault {
            continue;
        }
        let mut places = Vec::new();
        if line.config_path != file.config_path {
            places.push(format!("config={}", line.config_path.display()));
        }
        if line.state_dir != file.state_dir {
            places.push(format!("state_dir={}", line.state_dir.display()));
        }
        if line.key_store != file.key_store {
            places.push("key_store".into());
        }
        if line.secret != file.secret {
            places.push("secret".into());
        }
        if line.store != file.store {
            places.push("store".into());
        }
        if line.fleet_socket != file.fleet_socket {
            places.push("fleet_socket".into());
        }
        let mut rules = Vec::new();
        for (name, differs) in [
            ("window", line.window != file.window),
            ("hotp_window", line.hotp_window != file.hotp_window),
            ("max_failures", line.max_failures != file.max_failures),
            ("lockout", line.lockout != file.lockout),
            ("store_unavailable", line.store_unavailable != file.store_unavailable),
        ] {
            if differs {
                rules.push(name);
            }
        }
        if !places.is_empty() {
            findings.push(finding(
                Severity::Error,
                "line-options-vs-helper",
                format!(
                    "{service}: this pam_totp line sets {} unlike {}, which pam-totp-vault (users' own enroll, devices, backup-codes) reads: users would keep keys or state where this line does not look, and be refused; move the settings into {}",
                    places.join(", "),
                    file.config_path.display(),
                    file.config_path.display()
                ),
                Some(t.location.clone()),
            ));
        }
        if !rules.is_empty() {
            findings.push(finding(
                Severity::Warning,
                "line-options-vs-helper",
                format!(
                    "{service}: this pam_totp line sets {} unlike {}: pam-totp-vault decides a user's proof code for a change by the file's rules, not this line's; move the settings into the file",
                    rules.join(", "),
                    file.config_path.display()
                ),
                Some(t.location.clone()),
            ));
        }
    }
}

/// pam_totp on more than one line of one stack (pam-auth-update's profile in common-auth and
/// a line added by hand, through `@include`, `include` or `substack` alike): each line asks for
/// a code, and the second refuses the code the first accepted as a replay, counting a failure.
/// The forward_pass layout's two lines (one `forward_pass`, one after the password module)
/// are one use.
fn check_twice(service: &str, totp: &[&Line], findings: &mut Vec<Finding>) {
    for (what, lines) in [
        (
            "decides codes",
            totp.iter()
                .copied()
                .filter(|l| l.is_checking_totp())
                .collect::<Vec<_>>(),
        ),
        (
            "has forward_pass",
            totp.iter().copied().filter(|l| l.is_forward_pass()).collect(),
        ),
    ] {
        if let [first, rest @ ..] = lines.as_slice() {
            for again in rest {
                findings.push(finding(
                    Severity::Error,
                    "totp-twice",
                    format!(
                        "{service}: pam_totp {what} on two lines ({} and {}): the user is asked for a code twice and the second line refuses the code the first accepted as a replay (counted as a failure); keep one of them (pam-auth-update's profile in common-auth, or the line added by hand)",
                        first.location, again.location
                    ),
                    Some(again.location.clone()),
                ));
            }
        }
    }
}

/// What `store_unavailable = "local"` gives up, for the warning.
const FLEET_FALLBACK_RISK: &str = "while the fleet store is down, logins are decided on this host's own state: time-based codes only, and one already used on another host within its window may work here once; wrong codes counted here are not seen by the others; backup codes, HOTP codes and users this host cannot tell are enrolled are refused (each such login is logged as degraded). Use deny unless logins must go on through an etcd outage";

/// How a round trip to pam-totp-stated went, for [`check_fleet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetProbe {
    /// Not tried (not root: the socket is root's).
    NotTried,
    /// The daemon answered, and etcd with it (a linearizable read).
    Answered,
    Unavailable(String),
    Refused(String),
}

/// The fleet settings of pam_totp.conf (`store`, `store_unavailable`, `[fleet]`) and what
/// the daemon answered.
pub fn check_fleet(cfg: &Config, probe: &FleetProbe, findings: &mut Vec<Finding>) {
    use crate::config::{StoreKind, Unavailable};
    if cfg.store != StoreKind::Fleet {
        if cfg.store_unavailable == Unavailable::Local {
            findings.push(finding(
                Severity::Info,
                "fleet-fallback",
                "store_unavailable = \"local\" has no effect: store is local".into(),
                None,
            ));
        }
        return;
    }
    let fallback = cfg.store_unavailable == Unavailable::Local;
    if fallback {
        findings.push(finding(
            Severity::Warning,
            "fleet-fallback",
            format!("store_unavailable = \"local\": {FLEET_FALLBACK_RISK}"),
            None,
        ));
    }
    let socket = cfg.fleet_socket.display();
    let down = if fallback {
        "logins are decided on this host's own state (degraded)"
    } else {
        "every login through pam_totp is refused"
    };
    match probe {
        FleetProbe::NotTried => findings.push(finding(
            Severity::Info,
            "fleet-socket",
            format!("cannot check {socket} as a user (it is root's); run doctor as root"),
            None,
        )),
        FleetProbe::Answered => findings.push(finding(
            Severity::Ok,
            "fleet-socket",
            format!("pam-totp-stated answers at {socket}, and etcd with it"),
            None,
        )),
        FleetProbe::Unavailable(why) => findings.push(finding(
            if fallback { Severity::Warning } else { Severity::Error },
            "fleet-socket",
            format!("{why}; {down} (systemctl enable --now pam-totp-stated.socket; journalctl -u pam-totp-stated)"),
            None,
        )),
        FleetProbe::Refused(why) => findings.push(finding(
            Severity::Error,
            "fleet-socket",
            format!("{why}; every login through pam_totp is refused"),
            None,
        )),
    }
    if cfg.fleet.endpoints.is_empty() {
        findings.push(finding(
            Severity::Warning,
            "fleet-endpoints",
            format!(
                "store = \"fleet\" but [fleet] endpoints is empty in {}: pam-totp-stated on this host will not start",
                cfg.config_path.display()
            ),
            None,
        ));
    } else if cfg.fleet.endpoints.iter().any(|e| e.starts_with("http://")) {
        findings.push(finding(
            Severity::Info,
            "fleet-endpoints",
            "[fleet] endpoints uses http:// (loopback only): fine for a test, not for a fleet".into(),
            None,
        ));
    }
}

/// Checks sshd's effective configuration, given that pam_totp is (or is not) in its stack.
pub fn check_sshd(cfg: &SshdConfig, totp_in_stack: bool, findings: &mut Vec<Finding>) {
    let get = |k: &str| cfg.get(k).map(String::as_str).unwrap_or("");
    if !totp_in_stack {
        return;
    }
    if get("usepam") != "yes" {
        findings.push(finding(Severity::Error, "sshd-usepam", "sshd: UsePAM is not yes, so sshd never runs the PAM stack and nobody is asked for a code; set `UsePAM yes`".into(), None));
    }
    if get("kbdinteractiveauthentication") != "yes" {
        findings.push(finding(Severity::Error, "sshd-kbdinteractive", "sshd: KbdInteractiveAuthentication is not yes, so the code prompt cannot be shown; set `KbdInteractiveAuthentication yes` (Debian's sshd_config sets it to no)".into(), None));
    }
    let methods = get("authenticationmethods");
    if methods.is_empty() || methods == "any" {
        if get("pubkeyauthentication") != "no" {
            findings.push(finding(Severity::Error, "sshd-publickey-skips-pam", "sshd: AuthenticationMethods is `any` and public keys are allowed: a user with a key logs in without a code. Set `AuthenticationMethods publickey,keyboard-interactive` (key + code) or `keyboard-interactive` (password + code)".into(), None));
        }
        if get("passwordauthentication") != "no" {
            findings.push(finding(Severity::Warning, "sshd-password-method", "sshd: PasswordAuthentication is on: clients using the password method can only send a password, which pam_totp refuses as a code. Set `PasswordAuthentication no` and use keyboard-interactive".into(), None));
        }
    } else {
        for list in methods.split_whitespace() {
            let steps: Vec<&str> = list.split(',').collect();
            let kbd = steps.iter().any(|s| s.starts_with("keyboard-interactive"));
            let only_password = steps.iter().all(|s| *s == "password");
            if !kbd && !only_password {
                findings.push(finding(Severity::Error, "sshd-methods-skip-pam", format!("sshd: AuthenticationMethods list `{list}` never reaches keyboard-interactive, so users logging in that way are never asked for a code"), None));
            }
        }
    }
}

pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

#[cfg(test)]
#[path = "doctor_tests.rs"]
mod tests;
