//! pam_totp.so loaded by the real libpam (pam_start_confdir with a temporary service
//! directory), driven by a scripted conversation, with codes from oathtool.

use pam_totp_tests::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// No run may ever log the secret, a code or a password.
fn assert_clean_logs(r: &PamRun, secrets: &[&str]) {
    for l in &r.logs {
        for s in secrets.iter().filter(|s| s.len() >= 6) {
            assert!(!l.contains(s), "secret material in syslog: {l}");
        }
    }
}

#[test]
fn right_code_from_oathtool_is_accepted_and_logged() {
    let (f, u, key) = Fixture::with_enrolled_user("");
    let code = code_now(&key);
    let r = f.auth_with("svc", &u.name, &[&code], &["--rhost", "192.0.2.10"]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(r.prompts, vec!["Verification code: "]);
    assert!(
        r.logged(&[
            "pam_totp(svc:auth)",
            "accepted verification code",
            &format!("user={}", u.name),
            "service=svc",
            "rhost=192.0.2.10"
        ]),
        "{:?}",
        r.logs
    );
    assert_clean_logs(&r, &[&key, &code]);
}

#[test]
fn same_code_twice_is_refused_as_replay() {
    let (f, u, key) = Fixture::with_enrolled_user("");
    let code = code_now(&key);
    assert_eq!(f.auth("svc", &u.name, &[&code]).rc, PAM_SUCCESS);
    let r = f.auth("svc", &u.name, &[&code]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert_eq!(
        r.errors,
        vec!["That code has already been used. Wait for the next one."]
    );
    assert!(r.logged(&["refused: replayed verification code"]), "{:?}", r.logs);
    assert_clean_logs(&r, &[&key, &code]);
}

#[test]
fn earlier_step_after_a_later_one_is_refused() {
    let (f, u, key) = Fixture::with_enrolled_user("");
    let t = now();
    let next = oathtool(&key, t + 30, "sha1", 6);
    let current = oathtool(&key, t, "sha1", 6);
    assert_eq!(
        f.auth("svc", &u.name, &[&next]).rc,
        PAM_SUCCESS,
        "next step is within the skew window"
    );
    assert_eq!(
        f.auth("svc", &u.name, &[&current]).rc,
        PAM_AUTH_ERR,
        "older step after a newer one"
    );
}

#[test]
fn wrong_far_future_and_empty_answers_are_refused() {
    let (f, u, key) = Fixture::with_enrolled_user("");
    let wrong = wrong_code(&key);
    let r = f.auth("svc", &u.name, &[&wrong]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert_eq!(r.errors, vec!["Wrong verification code."]);
    assert!(
        r.logged(&["refused: wrong code (1 consecutive failures)"]),
        "{:?}",
        r.logs
    );
    let future = oathtool(&key, now() + 3600, "sha1", 6);
    assert_eq!(f.auth("svc", &u.name, &[&future]).rc, PAM_AUTH_ERR);
    assert_eq!(f.auth("svc", &u.name, &[""]).rc, PAM_AUTH_ERR);
    // And the right code still works afterwards: failures below the limit do not lock.
    assert_eq!(f.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
}

#[test]
fn sha256_and_sha512_with_eight_digits_agree_with_oathtool() {
    for (alg, name) in [("sha256", "SHA256"), ("sha512", "SHA512")] {
        let f = Fixture::new();
        f.simple("svc", "");
        let u = TestUser::create();
        let key = random_key_b32();
        u.enroll(&key, &format!("algorithm = \"{name}\"\ndigits = 8\n"));
        let code = oathtool(&key, now(), alg, 8);
        assert_eq!(f.auth("svc", &u.name, &[&code]).rc, PAM_SUCCESS, "{alg}");
    }
}

#[test]
fn backup_code_is_accepted_once() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let key = random_key_b32();
    let codes = pam_totp_core::otp::backup::generate(2).unwrap();
    codes.iter().for_each(|c| register_secret(c));
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| {
            format!(
                "\"{}\"",
                pam_totp_core::otp::backup::hash(&pam_totp_core::otp::backup::normalize(c).unwrap()).unwrap()
            )
        })
        .collect();
    u.enroll(&key, &format!("backup_codes = [{}]\n", hashes.join(", ")));
    let r = f.auth("svc", &u.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(
        r.infos[0].starts_with("Backup code accepted. 1 backup code left"),
        "{:?}",
        r.infos
    );
    assert!(r.logged(&["accepted backup code, 1 left"]));
    assert_clean_logs(&r, &[&codes[0], &codes[0].replace('-', "")]);
    let r = f.auth("svc", &u.name, &[&codes[0]]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert_eq!(r.errors, vec!["That backup code has already been used."]);
}

#[test]
fn not_enrolled_is_refused_without_nullok_and_ignored_with_it() {
    let f = Fixture::new();
    let u = TestUser::create();
    f.simple("strict", "");
    let r = f.auth("strict", &u.name, &["123456"]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.prompts.is_empty(), "no prompt for a user who cannot answer");
    assert!(r.logged(&["refused: not enrolled"]), "{:?}", r.logs);
    // nullok returns PAM_IGNORE: the rest of the stack decides.
    f.service(
        "lenient",
        &format!("auth required {}\nauth required pam_permit.so\n", f.module("nullok")),
    );
    let r = f.auth("lenient", &u.name, &[]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(r.logged(&["not enrolled; allowed by nullok"]));
    // ... and PAM_IGNORE alone is not a success.
    f.simple("alone", "nullok");
    assert_ne!(f.auth("alone", &u.name, &[]).rc, PAM_SUCCESS);
}

#[test]
fn lockout_refuses_the_right_code_and_says_how_long() {
    let (f, u, key) = Fixture::with_enrolled_user("max_failures=3 lockout=120");
    let wrong = wrong_code(&key);
    for _ in 0..2 {
        assert_eq!(f.auth("svc", &u.name, &[&wrong]).rc, PAM_AUTH_ERR);
    }
    let r = f.auth("svc", &u.name, &[&wrong]);
    assert_eq!(
        r.errors,
        vec!["Wrong verification code. Too many wrong verification codes: try again in 2 minutes."]
    );
    assert!(
        r.logged(&["locked out for 120 s after 3 consecutive failures"]),
        "{:?}",
        r.logs
    );
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.prompts.is_empty());
    assert_eq!(r.errors.len(), 1);
    assert!(
        r.errors[0].starts_with("Too many wrong verification codes. Try again in "),
        "{:?}",
        r.errors
    );
    assert!(
        r.errors[0].ends_with(" minutes.") || r.errors[0].contains("1 minute"),
        "{:?}",
        r.errors
    );
    assert!(r.logged(&["refused: locked out for another"]));
}

fn bad_file_case(name: &str, prepare: impl FnOnce(&TestUser, &str), want_log: &str) {
    let (f, u, key) = Fixture::with_enrolled_user("nullok");
    prepare(&u, &key);
    let start = std::time::Instant::now();
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert!(start.elapsed().as_secs() < 10, "{name}: took {:?}", start.elapsed());
    assert_eq!(r.rc, PAM_AUTH_ERR, "{name}: {r:?}");
    assert!(r.logged(&["refused: secret file", want_log]), "{name}: {:?}", r.logs);
    assert_clean_logs(&r, &[&key]);
}

#[test]
fn each_bad_secret_file_is_refused_and_logged_even_with_nullok() {
    let chmod = |p: &std::path::Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    bad_file_case("group-readable", |u, _| chmod(&u.secret_path(), 0o640), "chmod 600");
    bad_file_case(
        "world-readable",
        |u, _| chmod(&u.secret_path(), 0o604),
        "accessible by group or others",
    );
    bad_file_case(
        "symlink",
        |u, _| {
            let real = u.secret_dir().join("real.toml");
            std::fs::rename(u.secret_path(), &real).unwrap();
            std::os::unix::fs::symlink(&real, u.secret_path()).unwrap();
        },
        "symbolic link",
    );
    bad_file_case(
        "owned by another user",
        |u, _| std::os::unix::fs::chown(u.secret_path(), Some(65534), None).unwrap(),
        "owned by uid 65534",
    );
    bad_file_case(
        "fifo",
        |u, _| {
            std::fs::remove_file(u.secret_path()).unwrap();
            run("mkfifo", &["-m", "600", u.secret_path().to_str().unwrap()]);
            std::os::unix::fs::chown(u.secret_path(), Some(u.uid), Some(u.gid)).unwrap();
        },
        "FIFO",
    );
    bad_file_case(
        "directory",
        |u, _| {
            std::fs::remove_file(u.secret_path()).unwrap();
            std::fs::create_dir(u.secret_path()).unwrap();
            std::os::unix::fs::chown(u.secret_path(), Some(u.uid), Some(u.gid)).unwrap();
        },
        "directory, not a regular file",
    );
    bad_file_case("empty", |u, _| u.write_secret(""), "malformed");
    bad_file_case(
        "truncated",
        |u, key| u.write_secret(&format!("version = 1\nsecret = \"{}", &key[..10])),
        "malformed",
    );
    bad_file_case(
        "noise",
        |u, _| u.write_secret(&"\u{7f}garbage\u{1}".repeat(1000)),
        "malformed",
    );
    bad_file_case(
        "wrong alphabet",
        |u, _| u.write_secret("version = 1\nsecret = \"GEZDGNBVGY3TQOJ1\"\n"),
        "base32",
    );
    bad_file_case(
        "too short",
        |u, _| u.write_secret("version = 1\nsecret = \"GEZDGNBV\"\n"),
        "bits",
    );
    bad_file_case(
        "future version",
        |u, key| u.write_secret(&format!("version = 9\nsecret = \"{key}\"\n")),
        "format version 9",
    );
    bad_file_case(
        "hard link",
        |u, _| std::fs::hard_link(u.secret_path(), u.secret_dir().join("second-link")).unwrap(),
        "hard links",
    );
    bad_file_case(
        "group-writable directory",
        |u, _| chmod(&u.secret_dir(), 0o770),
        "writable by group or others",
    );
}

#[test]
fn unknown_or_malformed_option_refuses_and_logs() {
    for (arg, want) in [
        ("frobnicate", "unknown option `frobnicate`"),
        ("window=eleven", "option `window`"),
        ("window=50", "between 0 and 10"),
        ("state_dir=relative", "absolute"),
    ] {
        let (f, u, key) = Fixture::with_enrolled_user(arg);
        let r = f.auth("svc", &u.name, &[&code_now(&key)]);
        assert_eq!(r.rc, PAM_SERVICE_ERR, "{arg}: {r:?}");
        assert!(r.prompts.is_empty());
        assert!(r.logged(&["configuration error", want]), "{arg}: {:?}", r.logs);
    }
}

#[test]
fn options_come_from_the_config_file_and_arguments_override_it() {
    let (f, u, key) = Fixture::with_enrolled_user("");
    std::fs::write(f.root.join("pam_totp.conf"), "prompt = \"OTP from the file: \"\n").unwrap();
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.prompts, vec!["OTP from the file: "]);
    f.simple("svc2", "[prompt=Argument prompt: ]");
    let r = f.auth("svc2", &u.name, &[&wrong_code(&key)]);
    assert_eq!(r.prompts, vec!["Argument prompt: "]);
    std::fs::write(f.root.join("pam_totp.conf"), "window = \"wide\"\n").unwrap();
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_SERVICE_ERR, "a bad config file refuses");
}

#[test]
fn unusable_state_dir_refuses_the_right_code() {
    let (f, u, key) = Fixture::with_enrolled_user("");
    // A state directory others can write is refused (they could swap our state file).
    std::fs::create_dir(f.state_dir()).unwrap();
    std::fs::set_permissions(f.state_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(
        r.logged(&["refused: state directory", "writable by group or others"]),
        "{:?}",
        r.logs
    );
}

#[test]
fn forward_pass_hands_the_password_to_pam_unix() {
    let f = Fixture::new();
    f.service(
        "fp",
        &format!(
            "auth requisite {}\nauth required pam_unix.so use_first_pass\n",
            f.module("forward_pass")
        ),
    );
    let u = TestUser::create();
    u.set_password("correct horse 42");
    let key = random_key_b32();
    u.enroll(&key, "");
    let r = f.auth("fp", &u.name, &[&format!("correct horse 42{}", code_now(&key))]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(r.prompts, vec!["Password & verification code: "]);
    assert_clean_logs(&r, &["correct horse 42"]);
    std::thread::sleep(std::time::Duration::from_secs(0));
    let next = oathtool(&key, now() + 30, "sha1", 6);
    assert_eq!(
        f.auth("fp", &u.name, &[&format!("wrong horse 42{next}")]).rc,
        PAM_AUTH_ERR,
        "wrong password"
    );
    let r = f.auth("fp", &u.name, &[&format!("correct horse 42{}", wrong_code(&key))]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "wrong code");
}

#[test]
fn sixteen_concurrent_logins_with_one_code_let_exactly_one_in() {
    let (f, u, key) = Fixture::with_enrolled_user("");
    let code = code_now(&key);
    let runs = race_logins(&[&f], &u.name, &vec![code; 16], Duration::from_millis(400));
    let results: Vec<i32> = runs.iter().map(|r| r.rc).collect();
    assert_one_let_in_the_rest_refused(&results);
}

#[test]
fn conversation_that_gives_no_answer_is_refused() {
    let (f, u, _key) = Fixture::with_enrolled_user("");
    assert_eq!(f.auth("svc", &u.name, &[]).rc, PAM_CONV_ERR);
}

#[test]
fn unknown_user_is_refused() {
    let f = Fixture::new();
    f.simple("svc", "nullok");
    let r = f.auth("svc", "no-such-user-ptt", &["123456"]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["refused: unknown user"]));
}

#[test]
fn secret_in_a_root_only_directory_via_template() {
    let f = Fixture::new();
    let dir = f.secrets_dir();
    f.simple("svc", &format!("secret={}/%u.toml", dir.display()));
    let u = TestUser::create();
    let key = random_key_b32();
    write_central_secret(&dir, &u.name, &key);
    assert_eq!(f.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
}

#[test]
fn secret_in_home_is_read_with_the_users_identity() {
    // A home the user made unreadable to themselves stays unreadable to the module, though
    // the module runs as root: proof that it reads with the user's file-system identity.
    let (f, u, key) = Fixture::with_enrolled_user("");
    std::fs::set_permissions(u.secret_dir(), std::fs::Permissions::from_mode(0o000)).unwrap();
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["refused: secret file", "Permission denied"]), "{:?}", r.logs);
}

#[test]
fn only_pam_sm_functions_are_exported() {
    let out = run("nm", &["--dynamic", "--defined-only", module_path().to_str().unwrap()]);
    let mut syms: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(String::from))
        .collect();
    syms.sort();
    assert_eq!(syms, vec!["pam_sm_authenticate", "pam_sm_setcred"]);
}

#[test]
fn a_panic_inside_the_module_becomes_an_error_with_nothing_on_the_terminal() {
    if !module_path().to_string_lossy().contains("/debug/") {
        return; // the forced panic exists only in debug builds
    }
    let (f, u, key) = Fixture::with_enrolled_user("");
    let out = f
        .harness("svc", &u.name, &[&code_now(&key)], &[])
        .env("PAM_TOTP_TEST_PANIC", "1")
        .output()
        .unwrap();
    let r = PamRun::parse(&out);
    assert_eq!(r.rc, PAM_SERVICE_ERR);
    assert!(r.stderr.is_empty(), "panic text reached the terminal: {}", r.stderr);
    assert!(r.prompts.is_empty() && r.errors.is_empty());
    assert!(r.logged(&["internal error (panic); login refused"]), "{:?}", r.logs);
}

#[test]
fn module_loads_like_a_c_module_without_libgcc_s_and_stays_mapped() {
    let out = run("readelf", &["--dynamic", module_path().to_str().unwrap()]);
    let dynamic = String::from_utf8(out.stdout).unwrap();
    assert!(
        !dynamic.contains("libgcc_s"),
        "libgcc_s.so.1 would be loaded on every pam_start:\n{dynamic}"
    );
    assert!(dynamic.contains("NODELETE"), "{dynamic}");
}

#[test]
fn symlinked_state_dir_is_refused() {
    // A state_dir someone replaced with a link to a root-owned directory (say /etc) must not
    // make the module write its files there.
    let (f, u, key) = Fixture::with_enrolled_user("");
    let target = f.root.join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&target, f.state_dir()).unwrap();
    let r = f.auth("svc", &u.name, &[&code_now(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR);
    assert!(r.logged(&["refused: state directory", "symbolic link"]), "{:?}", r.logs);
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "nothing written through the link"
    );
}
