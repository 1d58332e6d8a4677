//! `pam-totp doctor`: finds the classic configuration mistakes in PAM stacks and sshd's
//! configuration. Pure: it reads text handed to it, so every check is unit-tested.
//!
//! Owns: the list of checks and their wording. Never: changes a file.

use std::collections::HashMap;

use crate::config::Config;

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

/// One `auth` line of a PAM stack, after following includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLine {
    pub control: String,
    pub module: String,
    pub args: Vec<String>,
    pub location: String,
}

impl AuthLine {
    fn is_totp(&self) -> bool {
        self.module.rsplit('/').next().is_some_and(|m| m == "pam_totp.so")
    }
    fn is_password_module(&self) -> bool {
        let m = self.module.rsplit('/').next().unwrap_or("");
        matches!(
            m,
            "pam_unix.so" | "pam_sss.so" | "pam_ldap.so" | "pam_krb5.so" | "pam_winbind.so"
        )
    }
}

/// Splits a PAM line into fields; `[...]` controls may contain spaces, and `[...]` arguments
/// are kept whole.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in line.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' if depth > 0 => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The auth lines of `service`, following `@include`, `include` and `substack`.
/// `read(name)` returns a PAM file's text (None if missing).
pub fn auth_stack(service: &str, read: &dyn Fn(&str) -> Option<String>) -> Option<Vec<AuthLine>> {
    fn walk(name: &str, read: &dyn Fn(&str) -> Option<String>, depth: usize, out: &mut Vec<AuthLine>) -> bool {
        if depth > 8 {
            return true;
        }
        let Some(text) = read(name) else { return false };
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let f = fields(line);
            if f[0] == "@include" {
                if let Some(inc) = f.get(1) {
                    walk(inc, read, depth + 1, out);
                }
                continue;
            }
            if f.len() < 3 || f[0].trim_start_matches('-') != "auth" {
                continue;
            }
            if f[1] == "include" || f[1] == "substack" {
                walk(&f[2], read, depth + 1, out);
                continue;
            }
            out.push(AuthLine {
                control: f[1].clone(),
                module: f[2].clone(),
                args: f[3..].to_vec(),
                location: format!("{name}:{}", n + 1),
            });
        }
        true
    }
    let mut out = Vec::new();
    walk(service, read, 0, &mut out).then_some(out)
}

/// Whether a failed password stops the stack before pam_totp runs: a password module before
/// it that is `requisite` (or `[... default=die ...]`), or — Debian's pam-auth-update layout —
/// one whose success jumps over a `requisite pam_deny.so` that comes before pam_totp.
/// `enroll_on_login` is offered only then: otherwise anyone who knows a user name could
/// enroll their own phone for an account without a secret.
pub fn password_gates_totp(stack: &[AuthLine]) -> bool {
    let Some(ti) = stack.iter().position(AuthLine::is_totp) else {
        return false;
    };
    let before = &stack[..ti];
    let stops = |c: &str| c == "requisite" || (c.starts_with('[') && c.contains("default=die"));
    let password_stops = before.iter().any(|l| l.is_password_module() && stops(&l.control));
    let debian = before
        .iter()
        .any(|l| l.is_password_module() && l.control.contains("success="))
        && before
            .iter()
            .any(|l| l.control == "requisite" && l.module.rsplit('/').next() == Some("pam_deny.so"));
    password_stops || debian
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

/// Checks one service's auth stack. `sshd` is given for the sshd service only.
pub fn check_stack(service: &str, stack: &[AuthLine], findings: &mut Vec<Finding>) -> bool {
    let Some(ti) = stack.iter().position(AuthLine::is_totp) else {
        findings.push(finding(
            Severity::Info,
            "not-enabled",
            format!("pam_totp is not in the auth stack of {service}"),
            None,
        ));
        return false;
    };
    let t = &stack[ti];
    let loc = Some(t.location.clone());
    let control = t.control.as_str();
    if control == "optional" {
        findings.push(finding(Severity::Error, "control-optional", format!("{service}: pam_totp is `optional`, so a wrong code is ignored whenever another module succeeds; use `required`"), loc.clone()));
    } else if control == "sufficient" {
        findings.push(finding(Severity::Error, "control-sufficient", format!("{service}: pam_totp is `sufficient`: a right code ends the stack, skipping every module after it; use `required`"), loc.clone()));
    } else if control.starts_with('[') {
        let c = control.to_ascii_lowercase();
        if c.contains("default=ignore") || c.contains("auth_err=ignore") || c.contains("default=ok") {
            findings.push(finding(
                Severity::Error,
                "control-ignores-failure",
                format!("{service}: pam_totp's control {control} ignores a wrong code; use `required`"),
                loc.clone(),
            ));
        } else if c.contains("success=done")
            || c.split(|ch: char| !ch.is_alphanumeric() && ch != '=').any(|w| {
                w.strip_prefix("success=")
                    .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
            })
        {
            findings.push(finding(Severity::Warning, "control-jump", format!("{service}: pam_totp's control {control} jumps on success; check that it cannot skip the password module"), loc.clone()));
        }
    }
    let forward = t.args.iter().any(|a| a == "forward_pass");
    match stack.iter().position(AuthLine::is_password_module) {
        Some(pi) if pi < ti => {
            let p = &stack[pi];
            if p.control == "required" || p.control == "optional" {
                findings.push(finding(Severity::Warning, "password-not-requisite", format!("{service}: {} is `{}` before pam_totp: someone without the password still reaches the code prompt and can lock the user out; make it `requisite`", p.module, p.control), Some(p.location.clone())));
            }
        }
        Some(_) if !forward => {
            findings.push(finding(Severity::Warning, "code-before-password", format!("{service}: the code is asked before the password, so anyone can lock a user out by guessing codes; put pam_totp after the password module (or use forward_pass)"), loc.clone()));
        }
        _ => {}
    }
    // Options: the same parser as the module (the config file is checked separately).
    let args: Vec<&str> = t
        .args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("config="))
        .collect();
    if let Err(e) = Config::load(&args, |_| Ok(None)) {
        findings.push(finding(
            Severity::Error,
            "bad-option",
            format!("{service}: {e}; every login through this line is refused"),
            loc.clone(),
        ));
    }
    if args.contains(&"enroll_on_login") && !password_gates_totp(stack) {
        findings.push(finding(Severity::Error, "enroll-without-password", format!("{service}: enroll_on_login needs a `requisite` password module before pam_totp (pam_totp will not offer enrollment here; users without a secret are refused)"), loc.clone()));
    }
    if args.contains(&"nullok") && args.iter().any(|a| a.starts_with("enforce_after=")) {
        findings.push(finding(
            Severity::Warning,
            "nullok-and-enforce-after",
            format!("{service}: nullok and enforce_after together: nullok stops applying on the enforce_after date"),
            loc.clone(),
        ));
    }
    findings.push(finding(
        Severity::Ok,
        "enabled",
        format!("{service}: pam_totp is `{control}` in the auth stack"),
        loc,
    ));
    true
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

    fn files(map: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| map.iter().find(|(n, _)| *n == name).map(|(_, t)| t.to_string())
    }

    fn checks(f: &[Finding], sev: Severity) -> Vec<&'static str> {
        f.iter().filter(|x| x.severity == sev).map(|x| x.check).collect()
    }

    const DEBIAN_COMMON_AUTH: &str = "auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\nauth\trequired\tpam_totp.so nullok\n";

    #[test]
    fn debian_pam_auth_update_layout_is_good() {
        static F: &[(&str, &str)] = &[
            ("sshd", "@include common-auth\naccount required pam_nologin.so\n"),
            ("common-auth", DEBIAN_COMMON_AUTH),
        ];
        let stack = auth_stack("sshd", &files(F)).unwrap();
        assert_eq!(stack.len(), 4);
        assert_eq!(stack[0].control, "[success=1 default=ignore]");
        assert_eq!(stack[3].location, "common-auth:4");
        let mut f = Vec::new();
        assert!(check_stack("sshd", &stack, &mut f));
        assert!(!has_errors(&f), "{f:?}");
        assert_eq!(checks(&f, Severity::Warning), Vec::<&str>::new(), "{f:?}");
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
        for (text, check, sev) in cases {
            let t = text.to_string();
            let stack = auth_stack("svc", &move |n: &str| (n == "svc").then(|| t.clone())).unwrap();
            let mut f = Vec::new();
            check_stack("svc", &stack, &mut f);
            assert!(
                f.iter().any(|x| x.check == *check && x.severity == *sev),
                "{text}: {f:?}"
            );
        }
        // forward_pass before the password module is the intended layout.
        let stack = auth_stack("svc", &|_| {
            Some("auth requisite pam_totp.so forward_pass\nauth required pam_unix.so use_first_pass\n".into())
        })
        .unwrap();
        let mut f = Vec::new();
        check_stack("svc", &stack, &mut f);
        assert!(!f.iter().any(|x| x.check == "code-before-password"), "{f:?}");
    }

    #[test]
    fn enrollment_is_offered_only_behind_a_password_that_stops_the_stack() {
        let gated = |text: &'static str| password_gates_totp(&auth_stack("s", &move |_| Some(text.into())).unwrap());
        assert!(gated(DEBIAN_COMMON_AUTH));
        assert!(gated(
            "auth requisite pam_unix.so\nauth required pam_totp.so enroll_on_login\n"
        ));
        assert!(gated(
            "auth [success=ok default=die] pam_sss.so\nauth required pam_totp.so\n"
        ));
        assert!(
            !gated("auth required pam_unix.so\nauth required pam_totp.so\n"),
            "required does not stop"
        );
        assert!(
            !gated("auth required pam_totp.so\nauth requisite pam_unix.so\n"),
            "password after the code"
        );
        assert!(
            !gated("auth required pam_totp.so\n"),
            "key + code: the module cannot tell"
        );
        assert!(!gated(
            "auth [success=1 default=ignore] pam_unix.so\nauth required pam_totp.so\nauth requisite pam_deny.so\n"
        ));
        let stack = auth_stack("s", &|_| {
            Some("auth required pam_unix.so\nauth required pam_totp.so enroll_on_login\n".into())
        })
        .unwrap();
        let mut f = Vec::new();
        check_stack("s", &stack, &mut f);
        assert!(
            f.iter()
                .any(|x| x.check == "enroll-without-password" && x.severity == Severity::Error),
            "{f:?}"
        );
    }

    #[test]
    fn missing_module_is_reported_as_not_enabled() {
        let stack = auth_stack("sudo", &|_| Some("auth include system-auth\n".into()));
        // system-auth is missing too: the walk returns what it found.
        let mut f = Vec::new();
        assert!(!check_stack("sudo", &stack.unwrap(), &mut f));
        assert_eq!(f[0].check, "not-enabled");
        assert!(auth_stack("nope", &|_| None).is_none());
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
}
