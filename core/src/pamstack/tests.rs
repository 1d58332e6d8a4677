use super::parse::*;
use super::walk::*;
use super::*;

fn files(map: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let owned: Vec<(String, String)> = map.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    move |name: &str| owned.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone())
}

fn gate(map: &[(&str, &str)]) -> Result<(), String> {
    enrollment_gate_for("svc", &files(map)).map_err(String::from)
}

fn one(text: &str) -> Result<(), String> {
    gate(&[("svc", text)])
}

#[test]
fn lines_are_assembled_like_libpam() {
    let (l, complete) =
        logical_lines("  # comment\nauth  required \\\n\tpam_unix.so  # c\n\n\r\nauth x y \\ # no continuation\nz\n");
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
    let e = one("auth requisite pam_sss.so ignore_unknown_user ignore_authinfo_unavail\nauth required pam_totp.so\n")
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
        one("-auth [success=ok module_unknown=ignore default=die] pam_unix.so\nauth required pam_totp.so\n").is_err()
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
