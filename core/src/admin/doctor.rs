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
mod tests {
    use super::*;
    use crate::pamstack;

    #[test]
    fn fleet_checks_warn_on_fallback_and_say_when_the_daemon_is_down() {
        use crate::config::{StoreKind, Unavailable};
        let mut cfg = Config {
            store: StoreKind::Fleet,
            ..Config::default()
        };
        cfg.fleet.endpoints = vec!["https://etcd1:2379".into()];
        let run = |cfg: &Config, p: FleetProbe| {
            let mut f = Vec::new();
            check_fleet(cfg, &p, &mut f);
            f
        };
        let f = run(&cfg, FleetProbe::Answered);
        assert_eq!(checks(&f, Severity::Ok), ["fleet-socket"]);
        assert!(!has_errors(&f));
        let f = run(&cfg, FleetProbe::Unavailable("no socket".into()));
        assert_eq!(checks(&f, Severity::Error), ["fleet-socket"]);
        cfg.store_unavailable = Unavailable::Local;
        let f = run(&cfg, FleetProbe::Unavailable("no socket".into()));
        assert_eq!(checks(&f, Severity::Warning), ["fleet-fallback", "fleet-socket"]);
        let f = run(&cfg, FleetProbe::Refused("not root".into()));
        assert_eq!(checks(&f, Severity::Error), ["fleet-socket"]);
        cfg.store = StoreKind::Local;
        assert_eq!(
            checks(&run(&cfg, FleetProbe::NotTried), Severity::Info),
            ["fleet-fallback"]
        );
    }

    fn checks(f: &[Finding], sev: Severity) -> Vec<&'static str> {
        f.iter().filter(|x| x.severity == sev).map(|x| x.check).collect()
    }

    const DEBIAN_COMMON_AUTH: &str = "auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\nauth\trequired\tpam_totp.so nullok\n";

    fn stack_of(map: &[(&str, &str)], service: &str) -> Stack {
        let owned: Vec<(String, String)> = map.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        pamstack::load(service, &move |name: &str| {
            owned.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone())
        })
        .unwrap()
    }

    /// The findings for a one-file service `svc`.
    fn check(text: &str) -> Vec<Finding> {
        let mut f = Vec::new();
        check_stack("svc", &stack_of(&[("svc", text)], "svc"), &mut f);
        f
    }

    fn has(f: &[Finding], check: &str, sev: Severity) -> bool {
        f.iter().any(|x| x.check == check && x.severity == sev)
    }

    #[test]
    fn debian_pam_auth_update_layout_is_good() {
        let stack = stack_of(
            &[
                ("sshd", "@include common-auth\naccount required pam_nologin.so\n"),
                ("common-auth", DEBIAN_COMMON_AUTH),
            ],
            "sshd",
        );
        assert_eq!(stack.lines.len(), 4);
        assert_eq!(stack.lines[0].control.text, "[success=1 default=ignore]");
        assert_eq!(stack.lines[3].location, "common-auth:4");
        let mut f = Vec::new();
        assert!(check_stack("sshd", &stack, &mut f));
        assert!(!has_errors(&f), "{f:?}");
        assert_eq!(checks(&f, Severity::Warning), Vec::<&str>::new(), "{f:?}");
        // The same with pam_sss, as pam-auth-update writes it.
        let f = check("auth [success=2 default=ignore] pam_unix.so nullok\nauth [success=1 default=ignore] pam_sss.so use_first_pass\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_totp.so nullok enroll_on_login\n");
        assert!(!has_errors(&f), "{f:?}");
    }

    #[test]
    fn pam_totp_twice_in_one_stack_is_an_error_through_includes_and_substacks() {
        let hand = "auth required pam_totp.so\n";
        for sshd in [
            format!("@include common-auth\n{hand}"),
            format!("auth include common-auth\n{hand}"),
            format!("auth substack common-auth\n{hand}"),
            format!("{hand}@include common-auth\n"),
        ] {
            let stack = stack_of(&[("sshd", &sshd), ("common-auth", DEBIAN_COMMON_AUTH)], "sshd");
            let mut f = Vec::new();
            check_stack("sshd", &stack, &mut f);
            assert!(has(&f, "totp-twice", Severity::Error), "{sshd}: {f:?}");
            let m = &f.iter().find(|x| x.check == "totp-twice").unwrap().message;
            assert!(m.contains("common-auth:4") && m.contains("sshd:"), "{m}");
        }
        // The forward_pass layout is one use; so is pam-auth-update's profile alone.
        let f = check("auth required pam_totp.so forward_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_totp.so\n");
        assert!(!has(&f, "totp-twice", Severity::Error), "{f:?}");
        let f = check(DEBIAN_COMMON_AUTH);
        assert!(!has(&f, "totp-twice", Severity::Error), "{f:?}");
        let f = check("auth required pam_totp.so forward_pass\nauth required pam_totp.so forward_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_totp.so\n");
        assert!(has(&f, "totp-twice", Severity::Error), "{f:?}");
    }

    #[test]
    fn each_broken_stack_is_reported() {
        let cases: &[(&str, &str, Severity)] = &[
            (
                "auth requisite pam_unix.so\nauth optional pam_totp.so\n",
                "control-optional",
                Severity::Error,
            ),
            (
                "auth requisite pam_unix.so\nauth sufficient pam_totp.so\n",
                "control-sufficient",
                Severity::Error,
            ),
            (
                "auth requisite pam_unix.so\nauth [success=ok default=ignore] pam_totp.so\n",
                "control-ignores-failure",
                Severity::Error,
            ),
            (
                "auth [success=done new_authtok_reqd=done default=die] pam_totp.so\nauth requisite pam_unix.so\n",
                "control-jump",
                Severity::Warning,
            ),
            (
                "auth required pam_unix.so\nauth required pam_totp.so\n",
                "password-not-requisite",
                Severity::Warning,
            ),
            (
                "auth required pam_totp.so\nauth requisite pam_unix.so\n",
                "code-before-password",
                Severity::Warning,
            ),
            (
                "auth requisite pam_unix.so\nauth required pam_totp.so windo=3\n",
                "bad-option",
                Severity::Error,
            ),
            (
                "auth requisite pam_unix.so\nauth required pam_totp.so nullok enforce_after=2027-01-01\n",
                "nullok-and-enforce-after",
                Severity::Warning,
            ),
        ];
        for (text, check_name, sev) in cases {
            let f = check(text);
            assert!(has(&f, check_name, *sev), "{text}: {f:?}");
        }
    }

    #[test]
    fn forward_pass_layouts_are_judged() {
        // The documented layout: split line, password module, check line.
        let f = check("auth required pam_totp.so forward_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_totp.so\n");
        assert!(!has_errors(&f), "{f:?}");
        assert_eq!(checks(&f, Severity::Warning), Vec::<&str>::new(), "{f:?}");
        assert!(
            f.iter()
                .any(|x| x.check == "enabled" && x.location.as_deref() == Some("svc:3")),
            "{f:?}"
        );
        // The old two-line layout: wrong codes are never counted.
        let f = check("auth requisite pam_totp.so forward_pass\nauth required pam_unix.so use_first_pass\n");
        assert!(!f.iter().any(|x| x.check == "code-before-password"), "{f:?}");
        let fp: Vec<&Finding> = f.iter().filter(|x| x.check == "forward-pass-layout").collect();
        assert!(fp
            .iter()
            .all(|x| x.severity == Severity::Error && x.location.as_deref() == Some("svc:1")));
        assert!(
            fp.iter()
                .any(|x| x.message.contains("never counted toward the lockout")),
            "{f:?}"
        );
        assert!(fp.iter().any(|x| x.message.contains("is requisite")), "{f:?}");
        let f = check("auth required pam_totp.so forward_pass\nauth required pam_unix.so use_first_pass\n");
        assert!(has(&f, "forward-pass-layout", Severity::Error), "{f:?}");
        // A `requisite` split line: a wrong code dies before the password.
        let f = check("auth requisite pam_totp.so forward_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_totp.so\n");
        assert_eq!(checks(&f, Severity::Error), vec!["forward-pass-layout"], "{f:?}");
        let f = check("auth [success=ok default=die] pam_totp.so forward_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_totp.so\n");
        assert!(has(&f, "forward-pass-layout", Severity::Error), "{f:?}");
        // A `sufficient` split line: a right code ends the stack before the password.
        let f = check("auth sufficient pam_totp.so forward_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_totp.so\n");
        let x = f
            .iter()
            .find(|x| x.check == "sufficient-before-totp")
            .expect("reported");
        assert_eq!((x.severity, x.location.as_deref()), (Severity::Error, Some("svc:1")));
        assert!(
            x.message.contains("the forward_pass line (sufficient)"),
            "{}",
            x.message
        );
        // No message recommends the old layout.
        for text in [
            "auth required pam_totp.so\nauth requisite pam_unix.so\n",
            "auth requisite pam_totp.so forward_pass\nauth required pam_unix.so use_first_pass\n",
        ] {
            for x in check(text) {
                assert!(!x.message.contains("requisite pam_totp"), "{}", x.message);
                if x.message.contains("forward_pass") {
                    assert!(
                        x.message.contains("then pam_totp") || !x.message.contains("use forward_pass"),
                        "{}",
                        x.message
                    );
                }
            }
        }
    }

    #[test]
    fn ways_around_pam_totp_are_errors_naming_the_line() {
        let f = check("auth sufficient pam_unix.so\nauth required pam_totp.so\n");
        let x = f
            .iter()
            .find(|x| x.check == "sufficient-before-totp")
            .expect("reported");
        assert_eq!((x.severity, x.location.as_deref()), (Severity::Error, Some("svc:1")));
        assert!(
            x.message
                .contains("pam_unix.so is `sufficient` before pam_totp (svc:2)"),
            "{}",
            x.message
        );
        let f = check("auth [success=done default=die] pam_unix.so\nauth required pam_totp.so\n");
        assert!(has(&f, "sufficient-before-totp", Severity::Error), "{f:?}");
        let f =
            check("auth [success=2 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_totp.so\nauth required pam_permit.so\n");
        let x = f.iter().find(|x| x.check == "jump-past-totp").expect("reported");
        assert_eq!((x.severity, x.location.as_deref()), (Severity::Error, Some("svc:1")));
        // Good layouts, and root's own su, are not.
        for good in [
            "auth requisite pam_unix.so\nauth required pam_totp.so\n",
            "auth required pam_totp.so\n",
            DEBIAN_COMMON_AUTH,
            "auth sufficient pam_rootok.so\nauth requisite pam_unix.so\nauth required pam_totp.so\n",
        ] {
            let f = check(good);
            assert!(!has_errors(&f), "{good}: {f:?}");
        }
    }

    #[test]
    fn enrollment_is_offered_only_behind_a_password_that_stops_the_stack() {
        let gated = |map: &[(&str, &str)]| stack_of(map, "svc").enrollment_gate();
        let one = |text: &str| gated(&[("svc", text)]);
        const TOTP: &str = "auth required pam_totp.so enroll_on_login\n";
        let with = |first: &str| format!("{first}{TOTP}");
        assert_eq!(one(DEBIAN_COMMON_AUTH), Ok(()));
        assert_eq!(one(&with("auth requisite pam_unix.so\n")), Ok(()));
        // substack: a requisite failure ends only the substack.
        let e = gated(&[
            ("svc", &with("auth substack pw\n")),
            ("pw", "auth requisite pam_unix.so\n"),
        ])
        .unwrap_err();
        assert!(e.starts_with("pw:1:") && e.contains("substack (svc:1)"), "{e}");
        // include: the same lines, at the service's own level.
        assert_eq!(
            gated(&[
                ("svc", &with("auth include pw\n")),
                ("pw", "auth requisite pam_unix.so\n")
            ]),
            Ok(())
        );
        assert_eq!(one(&with("auth [success=ok default=die] pam_unix.so\n")), Ok(()));
        assert_eq!(one(&with("auth [success=ok default=die] pam_sss.so\n")), Ok(()));
        let e = one(&with("auth requisite pam_sss.so ignore_unknown_user\n")).unwrap_err();
        assert!(
            e.starts_with("svc:1: pam_sss.so is requisite but ignore_unknown_user lets it return PAM_IGNORE"),
            "{e}"
        );
        assert_eq!(
            one(&with("auth [success=ok default=die] pam_sss.so ignore_unknown_user\n")),
            Ok(())
        );
        assert_eq!(
            one(&with(
                "auth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\n"
            )),
            Ok(())
        );
        // `-auth`: a missing module returns PAM_MODULE_UNKNOWN (pam_dispatch.c), which
        // requisite maps to die: still a gate. Only a control that ignores module_unknown
        // lets the line be skipped.
        assert_eq!(one(&with("-auth requisite pam_unix.so\n")), Ok(()));
        assert!(one(&with(
            "-auth [success=ok module_unknown=ignore default=die] pam_unix.so\n"
        ))
        .is_err());
        let e = one(&with("auth requisite pam_sss.so minimum_uid=1000\n")).unwrap_err();
        assert!(e.contains("minimum_uid=1000 lets it return PAM_IGNORE"), "{e}");
        let e = gated(&[("svc", &with("auth include nope\nauth requisite pam_unix.so\n"))]).unwrap_err();
        assert!(e.contains("cannot read `nope`"), "{e}");
        assert!(
            one(&with("auth required pam_unix.so\n")).is_err(),
            "required does not stop"
        );
        assert!(
            one("auth required pam_totp.so\nauth requisite pam_unix.so\n").is_err(),
            "password after the code"
        );
        assert!(
            one("auth required pam_totp.so\n").is_err(),
            "key + code: the module cannot tell"
        );
        assert!(one(
            "auth [success=1 default=ignore] pam_unix.so\nauth required pam_totp.so\nauth requisite pam_deny.so\n"
        )
        .is_err());

        // doctor says the same, with the same reason.
        let f = check("auth required pam_unix.so\nauth required pam_totp.so enroll_on_login\n");
        let x = f
            .iter()
            .find(|x| x.check == "enroll-without-password")
            .expect("reported");
        assert_eq!(x.severity, Severity::Error);
        let why = one("auth required pam_unix.so\nauth required pam_totp.so enroll_on_login\n").unwrap_err();
        assert!(x.message.ends_with(&*why), "{} / {why}", x.message);
        let f = check(&with("auth requisite pam_unix.so\n"));
        assert!(!f.iter().any(|x| x.check == "enroll-without-password"), "{f:?}");
    }

    #[test]
    fn missing_module_is_reported_as_not_enabled() {
        let stack = pamstack::load("sudo", &|n: &str| {
            (n == "sudo").then(|| "auth include system-auth\n".into())
        });
        // system-auth is missing too: not enabled, and said why the stack is incomplete.
        let mut f = Vec::new();
        assert!(!check_stack("sudo", &stack.unwrap(), &mut f));
        assert_eq!(f[0].check, "not-enabled");
        assert!(
            f.iter()
                .any(|x| x.check == "stack-incomplete" && x.message.contains("system-auth")),
            "{f:?}"
        );
        assert!(pamstack::load("nope", &|_| None).is_none());
        // The deprecated wrapper still answers for the login path.
        let s = pamstack::load("s", &|_| {
            Some("auth requisite pam_unix.so\nauth required pam_totp.so\n".into())
        })
        .unwrap();
        assert!(s.enrollment_gate().is_ok());
    }

    #[test]
    fn sshd_mistakes_are_found_in_files_and_in_sshd_t_output() {
        let cfg = parse_sshd_files(
            "/etc/ssh/sshd_config",
            &|p: &str| {
                match p {
                "/etc/ssh/sshd_config" => Some("Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\nMatch User bob\n  AuthenticationMethods publickey\n".into()),
                "/etc/ssh/sshd_config.d/a.conf" => Some("PasswordAuthentication=no\n".into()),
                _ => None,
            }
            },
            &|pat: &str| {
                if pat == "/etc/ssh/sshd_config.d/*.conf" {
                    vec!["/etc/ssh/sshd_config.d/a.conf".into()]
                } else {
                    vec![]
                }
            },
        );
        assert_eq!(cfg["passwordauthentication"], "no", "included file, first value wins");
        assert_eq!(cfg["authenticationmethods"], "any", "Match blocks are not applied");
        let mut f = Vec::new();
        check_sshd(&cfg, true, &mut f);
        let errors = checks(&f, Severity::Error);
        assert!(
            errors.contains(&"sshd-kbdinteractive") && errors.contains(&"sshd-publickey-skips-pam"),
            "{f:?}"
        );
        assert!(!errors.contains(&"sshd-usepam"));

        let good = parse_sshd_t("usepam yes\nkbdinteractiveauthentication yes\npasswordauthentication no\npubkeyauthentication yes\nauthenticationmethods publickey,keyboard-interactive\n");
        let mut f = Vec::new();
        check_sshd(&good, true, &mut f);
        assert!(f.is_empty(), "{f:?}");

        let skip = parse_sshd_t("usepam yes\nkbdinteractiveauthentication yes\nauthenticationmethods publickey,keyboard-interactive publickey\n");
        let mut f = Vec::new();
        check_sshd(&skip, true, &mut f);
        assert_eq!(checks(&f, Severity::Error), vec!["sshd-methods-skip-pam"], "{f:?}");

        let nopam =
            parse_sshd_t("usepam no\nkbdinteractiveauthentication yes\nauthenticationmethods keyboard-interactive\n");
        let mut f = Vec::new();
        check_sshd(&nopam, true, &mut f);
        assert_eq!(checks(&f, Severity::Error), vec!["sshd-usepam"]);
        let mut f = Vec::new();
        check_sshd(&nopam, false, &mut f);
        assert!(f.is_empty(), "no sshd findings when pam_totp is not used for sshd");
    }

    #[test]
    fn a_cancelled_prompt_or_an_ignored_password_failure_is_an_error() {
        let cases: &[(&str, &str)] = &[
            (
                "auth requisite pam_unix.so\nauth [success=ok auth_err=die default=ignore] pam_totp.so\n",
                "refused-code-ignored",
            ),
            (
                "auth [success=ok default=ignore] pam_unix.so\nauth required pam_totp.so\n",
                "wrong-password-logs-in",
            ),
            (
                "auth required pam_totp.so forward_pass\nauth [success=ok default=ignore] pam_unix.so use_first_pass\nauth required pam_totp.so\n",
                "wrong-password-logs-in",
            ),
        ];
        for (text, check) in cases {
            let t = text.to_string();
            let stack = pamstack::load("svc", &move |n: &str| (n == "svc").then(|| t.clone())).unwrap();
            let mut f = Vec::new();
            check_stack("svc", &stack, &mut f);
            assert!(
                f.iter().any(|x| x.check == *check && x.severity == Severity::Error),
                "{text}: {f:?}"
            );
        }
        // The good layouts stay clean of both.
        for text in [
            "auth requisite pam_unix.so\nauth required pam_totp.so\n",
            "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_totp.so nullok\n",
            "auth required pam_totp.so forward_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_totp.so\n",
            "auth required pam_totp.so\n",
        ] {
            let t = text.to_string();
            let stack = pamstack::load("svc", &move |n: &str| (n == "svc").then(|| t.clone())).unwrap();
            let mut f = Vec::new();
            check_stack("svc", &stack, &mut f);
            assert!(
                !f.iter().any(|x| x.check == "refused-code-ignored" || x.check == "wrong-password-logs-in"),
                "{text}: {f:?}"
            );
        }
    }
}
