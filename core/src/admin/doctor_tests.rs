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
