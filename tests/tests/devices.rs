//! Several named authenticators per user through the command line: `enroll --name/--add/
//! --hotp`, `devices list|remove|rename`, `import tokens` (CSV, PSKC plain and encrypted),
//! `import google-authenticator` of a counter-based file, `status` — each checked against the
//! real module through libpam, with codes from oathtool.

use pam_totp_tests::*;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs a command that must succeed; its stdout.
fn ok(cmd: Command) -> String {
    let desc = format!("{cmd:?}");
    let (rc, out, err) = output(cmd);
    assert_eq!(rc, 0, "{desc}: {err}");
    out
}

/// Runs a command that must fail with one line on stderr containing `want`; that line.
fn refused(cmd: Command, want: &str) -> String {
    let desc = format!("{cmd:?}");
    let (rc, out, err) = output(cmd);
    assert_eq!(rc, 1, "{desc}: {out}{err}");
    assert_eq!(err.lines().count(), 1, "{desc}: {err}");
    assert!(err.contains(want), "{desc}: {err}");
    err
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not one JSON object ({e}): {out}"))
}

fn devices(f: &Fixture, u: &TestUser) -> Vec<serde_json::Value> {
    let j = json(&ok(f.cli(&["devices", "list", "--user", &u.name, "--json"])));
    assert_eq!(j["user"], u.name.as_str());
    j["devices"].as_array().unwrap().clone()
}

fn names(devices: &[serde_json::Value]) -> Vec<String> {
    devices
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// A fixture with `(placeholder, value)` substitutions, written into the test's directory.
fn fixture_copy(f: &Fixture, name: &str, subs: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(fixture(name)).unwrap();
    for (from, to) in subs {
        text = text.replace(from, to);
    }
    let p = f.root.join(format!(
        "{}-{}",
        random_hex(3),
        Path::new(name).file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A CSV fixture of two users' tokens, its `@USER1@` and `@USER2@` made `first` and `second`.
fn csv_for(f: &Fixture, name: &str, first: &str, second: &str) -> PathBuf {
    fixture_copy(f, name, &[("@USER1@", first), ("@USER2@", second)])
}

/// The PSKC fixture of a TOTP and an HOTP key, its users alice and bob made `alice` and `bob`.
fn totp_and_hotp_pskc(f: &Fixture, alice: &str, bob: &str) -> PathBuf {
    fixture_copy(
        f,
        "tokens/totp-and-hotp.pskcxml",
        &[(">alice<", &format!(">{alice}<")), (">bob<", &format!(">{bob}<"))],
    )
}

/// RFC 6030 figure 6 (an 8-digit HOTP key, AES-128-CBC under a pre-shared key, with a MAC),
/// its user alice made `user`.
fn figure6_pskc(f: &Fixture, user: &str) -> PathBuf {
    fixture_copy(
        f,
        "tokens/rfc6030-figure6-userid.pskcxml",
        &[(">alice<", &format!(">{user}<"))],
    )
}

/// The pre-shared key of RFC 6030 figure 6, in hex.
const FIGURE6_PSK: &str = "12345678901234567890123456789012";

/// The fixture's pre-shared key file, `psk.hex`: `hex` and a newline, with `mode`.
fn psk_file(f: &Fixture, hex: &str, mode: u32) -> PathBuf {
    let psk = f.root.join("psk.hex");
    std::fs::write(&psk, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(mode)).unwrap();
    psk
}

/// `import tokens --file FILE --psk-file PSK`.
fn import_with_psk<'a>(file: &'a Path, psk: &'a Path) -> [&'a str; 6] {
    [
        "import",
        "tokens",
        "--file",
        file.to_str().unwrap(),
        "--psk-file",
        psk.to_str().unwrap(),
    ]
}

/// The keys of the CSV fixtures (test keys; registered so no log line may show them).
const FOB1: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const TOKEN2: &str = "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU";
const DESK: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U";
const FOB2_NEW: &str = "ONSWG4TFORZWK3DPONSWG4TFORZWK3DP";
const FOB1_NEW: &str = "GJUHIZLMNRXSA53POJWGIIDUN5XGKIDB";
const SPARE: &str = "MZXW6YTBOIQHI2DFOJSSA3LPOJSSAYLO";

fn register_fixture_keys() {
    for k in [
        FOB1,
        TOKEN2,
        DESK,
        FOB2_NEW,
        FOB1_NEW,
        SPARE,
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
    ] {
        register_secret(k);
    }
}

fn assert_private_and_owned(u: &TestUser) {
    let md = std::fs::metadata(u.secret_path()).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o777), (u.uid, u.gid, 0o600));
}

#[test]
fn enroll_json_names_the_device_and_add_makes_a_second_one_the_module_accepts() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let first = f.enroll_json(&u.name, &["--name", "work phone"]);
    assert_eq!(
        (first["name"].as_str(), first["type"].as_str()),
        (Some("work phone"), Some("totp"))
    );
    assert_eq!(first["backup_codes"].as_array().unwrap().len(), 10);

    let err = refused(
        f.cli(&["enroll", "--user", &u.name, "--json", "--name", "spare"]),
        "is already enrolled",
    );
    assert!(err.contains("--add") && err.contains("--force"), "{err}");

    let spare = f.enroll_json(&u.name, &["--add", "--name", "spare"]);
    assert_eq!(
        (spare["name"].as_str(), spare["type"].as_str()),
        (Some("spare"), Some("totp"))
    );
    assert_eq!(spare["backup_codes"], serde_json::json!([]), "kept, not shown again");
    assert_eq!(spare["period"], 30);
    assert_ne!(spare["secret"], first["secret"]);
    assert_private_and_owned(&u);

    refused(
        f.cli(&["enroll", "--user", &u.name, "--json", "--add", "--name", "SPARE"]),
        "already has an authenticator named \"spare\"",
    );
    refused(
        f.cli(&["enroll", "--user", &u.name, "--json", "--add", "--name", " spare2"]),
        "cannot name an authenticator",
    );
    // Without --name: "phone", then "phone 2".
    let third = f.enroll_json(&u.name, &["--add"]);
    let fourth = f.enroll_json(&u.name, &["--add"]);
    assert_eq!(
        (third["name"].as_str(), fourth["name"].as_str()),
        (Some("phone"), Some("phone 2"))
    );
    assert_eq!(names(&devices(&f, &u)), ["work phone", "spare", "phone", "phone 2"]);

    // Codes from both keys, in the same time step: one replay guard each.
    let a = code_now(first["secret"].as_str().unwrap());
    let b = code_now(spare["secret"].as_str().unwrap());
    let r = f.auth("svc", &u.name, &[&a]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    let r = f.auth("svc", &u.name, &[&b]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(r.logged(&["authenticator \"spare\""]), "{:?}", r.logs);
    assert_eq!(
        f.auth("svc", &u.name, &[&b]).rc,
        PAM_AUTH_ERR,
        "replay of the spare's code"
    );
    // The first enrollment's backup codes were kept.
    let code = first["backup_codes"][0].as_str().unwrap();
    assert_eq!(f.auth("svc", &u.name, &[code]).rc, PAM_SUCCESS);
}

#[test]
fn enroll_add_is_refused_without_an_enrollment_and_past_sixteen_devices() {
    let f = Fixture::new();
    let u = TestUser::create();
    refused(
        f.cli(&["enroll", "--user", &u.name, "--json", "--add"]),
        "is not enrolled yet",
    );
    assert!(!u.secret_path().exists());
    f.enroll_json(&u.name, &[]);
    for _ in 1..16 {
        f.enroll_json(&u.name, &["--add"]);
    }
    assert_eq!(devices(&f, &u).len(), 16);
    refused(
        f.cli(&["enroll", "--user", &u.name, "--json", "--add"]),
        "16 authenticators, the most one user can have",
    );
    let (rc, _, err) = output(f.cli(&["enroll", "--user", &u.name, "--add", "--force"]));
    assert_eq!(rc, 2, "--add and --force conflict: {err}");
    // --force still replaces everything: one device, new backup codes.
    let j = f.enroll_json(&u.name, &["--force", "--name", "new phone"]);
    assert_eq!(j["backup_codes"].as_array().unwrap().len(), 10);
    assert_eq!(names(&devices(&f, &u)), ["new phone"]);
}

#[test]
fn enroll_add_hotp_gives_a_counter_uri_and_its_first_code_works_once() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    f.enroll_json(&u.name, &[]);
    let j = f.enroll_json(&u.name, &["--add", "--hotp"]);
    assert_eq!((j["name"].as_str(), j["type"].as_str()), (Some("token"), Some("hotp")));
    let uri = j["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://hotp/"), "{uri}");
    assert!(uri.ends_with("&counter=0"), "{uri}");
    assert_eq!(j["counter"], 0);
    let key = j["secret"].as_str().unwrap();
    // --json confirms nothing, so counter 0 is still fresh.
    let c0 = hotp(key, 0, 6);
    let r = f.auth("svc", &u.name, &[&c0]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(r.logged(&["authenticator \"token\""]), "{:?}", r.logs);
    assert_eq!(f.auth("svc", &u.name, &[&c0]).rc, PAM_AUTH_ERR, "counter 0 is spent");
    assert_eq!(f.auth("svc", &u.name, &[&hotp(key, 1, 6)]).rc, PAM_SUCCESS);
    let d = devices(&f, &u);
    assert_eq!(
        (d[1]["counter"].as_u64(), d[1]["next_counter"].as_u64()),
        (Some(0), Some(2))
    );
}

/// Reads `child`'s stdout until it ends with `prompt`; everything read.
fn read_until(out: &mut impl Read, prompt: &str) -> String {
    let mut seen = Vec::new();
    let mut b = [0u8; 1];
    while !seen.ends_with(prompt.as_bytes()) {
        assert_eq!(
            out.read(&mut b).unwrap(),
            1,
            "ended before {prompt:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.push(b[0]);
    }
    String::from_utf8(seen).unwrap()
}

/// Starts `cmd` (an enrollment) with its stdin, stdout and stderr pipes and reads its stdout
/// up to its prompt for the code: the child, its stdout, what it showed.
fn up_to_the_confirmation_prompt(mut cmd: Command) -> (std::process::Child, std::process::ChildStdout, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let shown = read_until(&mut out, "to confirm: ");
    (child, out, shown)
}

#[test]
fn hotp_enrollment_confirmed_with_a_later_counter_spends_it_and_every_one_before() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    // Not a terminal: no name prompt, only the code; the "app" was pressed 4 times.
    let (mut child, mut out, shown) =
        up_to_the_confirmation_prompt(f.cli(&["enroll", "--user", &u.name, "--hotp", "--qr", "none", "--digits", "8"]));
    assert!(shown.contains("counter-based, SHA1, 8 digits"), "{shown}");
    let key = secret_in_uri(&shown);
    register_secret(&key);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", hotp(&key, 12, 8)).unwrap();
    let shown = read_until(&mut out, "to confirm: ");
    assert!(
        shown.contains("does not match"),
        "counter 12 is past the 10-code window: {shown}"
    );
    writeln!(stdin, "{}", hotp(&key, 3, 8)).unwrap();
    drop(stdin);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert!(
        rest.contains("Code confirmed.") && rest.contains("authenticator \"token\""),
        "{rest}"
    );
    let d = devices(&f, &u);
    assert_eq!(d[0]["counter"], 4, "saved past the confirming counter");
    for c in [3, 0] {
        assert_eq!(
            f.auth("svc", &u.name, &[&hotp(&key, c, 8)]).rc,
            PAM_AUTH_ERR,
            "counter {c}"
        );
    }
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, 4, 8)]).rc, PAM_SUCCESS);
}

#[test]
fn interactive_enrollment_asks_for_a_name_and_an_empty_answer_takes_the_default() {
    let f = Fixture::new();
    let u = TestUser::create();
    f.enroll_json(&u.name, &["--name", "phone"]);
    let cli = cli_path();
    let conf = f.root.join("pam_totp.conf");
    let state = f.state_dir();
    let spawn = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            cli.to_str().unwrap().into(),
            "--config".into(),
            conf.to_str().unwrap().into(),
            "--state-dir".into(),
            state.to_str().unwrap().into(),
            "enroll".into(),
            "--user".into(),
            u.name.clone(),
            "--add".into(),
            "--qr".into(),
            "none".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = spawn(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = expect_session(
        &f,
        &args,
        &[
            ("to confirm: ", TOTP_FROM_SCREEN),
            // The more specific pattern first: expect tries them in order.
            (
                r#"named "phone"; choose another name\.\r?\nName for this authenticator \[phone 2\]: "#,
                "Tablet, kitchen",
            ),
            (r"Name for this authenticator \[phone 2\]: ", "Phone"),
        ],
        &[],
        None,
    );
    assert_eq!(s.exit, 0, "{}", s.transcript);
    assert!(s.transcript.contains("\"Tablet, kitchen\" added"), "{}", s.transcript);
    let s = expect_session(
        &f,
        &args,
        &[
            ("to confirm: ", TOTP_FROM_SCREEN),
            (r"Name for this authenticator \[phone 2\]: ", ""),
        ],
        &[],
        None,
    );
    assert_eq!(s.exit, 0, "{}", s.transcript);
    assert_eq!(names(&devices(&f, &u)), ["phone", "Tablet, kitchen", "phone 2"]);
    for d in devices(&f, &u) {
        // The secrets were on the screen only; nothing to register but the file's.
        assert_eq!(d["type"], "totp");
    }
    // --name skips the question.
    let args = spawn(&["--name", "laptop"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = expect_session(&f, &args, &[("to confirm: ", TOTP_FROM_SCREEN)], &[], None);
    assert_eq!(s.exit, 0, "{}", s.transcript);
    assert!(
        !s.transcript.contains("Name for this authenticator"),
        "{}",
        s.transcript
    );
}

/// A key whose last byte is zero (1 in 256 random keys) gives the same codes as the key
/// without it (HMAC pads keys with zeros), so the module keys its replay guard by the key
/// without trailing zeros; `devices list` must find the guard the same way, or it shows such
/// an authenticator as never used and an HOTP token's next counter as the file's.
#[test]
fn devices_list_finds_the_guard_of_a_key_that_ends_in_a_zero_byte() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let key = |last: u8| {
        let mut b = [0u8; 20];
        getrandom::getrandom(&mut b[..19]).unwrap();
        b[18] |= 1;
        b[19] = last;
        let k = pam_totp_core::otp::encode_base32(&b).to_string();
        register_secret(&k);
        k
    };
    let (t, h) = (key(0), key(0));
    u.write_secret(&format!(
        "version = 2\n[[device]]\nname = \"phone\"\ntype = \"totp\"\nsecret = \"{t}\"\n\
         [[device]]\nname = \"token\"\ntype = \"hotp\"\nsecret = \"{h}\"\ncounter = 0\ndigits = 6\n"
    ));
    assert_eq!(f.auth("svc", &u.name, &[&code_now(&t)]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&h, 1, 6)]).rc, PAM_SUCCESS);
    let d = devices(&f, &u);
    for dev in &d {
        assert!(dev["last_used"].as_u64().is_some_and(|t| t > 0), "{dev:?}");
    }
    assert_eq!(d[1]["next_counter"].as_u64(), Some(2), "{:?}", d[1]);
}

#[test]
fn devices_list_shows_each_device_to_root_with_last_use_and_to_the_user_without() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let a = f.enroll_json(&u.name, &["--name", "phone"]);
    let h = f.enroll_json(&u.name, &["--add", "--hotp", "--digits", "8"]);
    let d = devices(&f, &u);
    assert_eq!(d.len(), 2);
    assert_eq!(d[0]["type"], "totp");
    assert_eq!(
        (
            d[0]["algorithm"].as_str(),
            d[0]["digits"].as_u64(),
            d[0]["period"].as_u64()
        ),
        (Some("SHA1"), Some(6), Some(30))
    );
    assert!(d[0]["last_used"].is_null(), "{:?}", d[0]);
    assert!(d[0].get("counter").is_none());
    assert_eq!(
        (
            d[1]["type"].as_str(),
            d[1]["algorithm"].as_str(),
            d[1]["digits"].as_u64()
        ),
        (Some("hotp"), Some("SHA1"), Some(8))
    );
    assert_eq!(
        (d[1]["counter"].as_u64(), d[1]["next_counter"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(d[1].get("period").is_none());
    assert!(d[0]["created"].as_u64().unwrap() > 0);
    assert_eq!(d[0]["label"], format!("{}@{}", u.name, a["issuer"].as_str().unwrap()));

    assert_eq!(
        f.auth("svc", &u.name, &[&code_now(a["secret"].as_str().unwrap())]).rc,
        PAM_SUCCESS
    );
    let hk = h["secret"].as_str().unwrap();
    assert_eq!(f.auth("svc", &u.name, &[&hotp(hk, 2, 8)]).rc, PAM_SUCCESS);
    let d = devices(&f, &u);
    let t = now();
    for dev in &d {
        let used = dev["last_used"]
            .as_u64()
            .unwrap_or_else(|| panic!("{dev:?} never used, in {d:#?}"));
        assert!(used <= t && used + 60 > t, "{dev:?}");
    }
    assert_eq!(
        (d[1]["counter"].as_u64(), d[1]["next_counter"].as_u64()),
        (Some(0), Some(3))
    );

    // The user sees their devices, not the root-only state.
    let j = json(&ok(f.cli_as(&u.name, &["devices", "list", "--json"])));
    assert_eq!(names(j["devices"].as_array().unwrap()), ["phone", "token"]);
    for dev in j["devices"].as_array().unwrap() {
        assert!(
            dev.get("last_used").is_none() && dev.get("next_counter").is_none(),
            "{dev:?}"
        );
    }
    let text = ok(f.cli(&["devices", "list", "--user", &u.name]));
    assert!(text.contains("NAME") && text.contains("LAST USED"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("token") && l.contains("hotp") && l.contains("next 3")),
        "{text}"
    );
    let text = ok(f.cli_as(&u.name, &["devices", "list"]));
    assert!(!text.contains("LAST USED") && text.contains("phone"), "{text}");
}

#[test]
fn rename_and_remove_take_effect_on_the_module_and_the_last_device_stays() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let a = f.enroll_json(&u.name, &["--name", "phone"]);
    let b = f.enroll_json(&u.name, &["--add", "--name", "spare"]);
    let out = ok(f.cli_as(&u.name, &["devices", "rename", "PHONE", "old phone"]));
    assert!(out.contains("Renamed \"phone\" to \"old phone\""), "{out}");
    refused(
        f.cli_as(&u.name, &["devices", "rename", "old phone", "Spare"]),
        "already has an authenticator named \"spare\"",
    );
    refused(
        f.cli_as(&u.name, &["devices", "rename", "old phone", "a\u{1b}[2J"]),
        "cannot name an authenticator",
    );
    refused(
        f.cli_as(&u.name, &["devices", "rename", "nothing", "x"]),
        "has no authenticator named \"nothing\"",
    );
    // A change of case only is a rename.
    ok(f.cli(&["devices", "rename", "--user", &u.name, "spare", "Spare"]));
    assert_eq!(names(&devices(&f, &u)), ["old phone", "Spare"]);
    assert_private_and_owned(&u);

    let r = f.auth("svc", &u.name, &[&code_now(a["secret"].as_str().unwrap())]);
    assert!(r.logged(&["authenticator \"old phone\""]), "{:?}", r.logs);

    let out = ok(f.cli(&["devices", "remove", "--user", &u.name, "OLD PHONE"]));
    assert!(out.contains("Removed \"old phone\""), "{out}");
    let t = now() + 30;
    assert_eq!(
        f.auth(
            "svc",
            &u.name,
            &[&oathtool(a["secret"].as_str().unwrap(), t, "sha1", 6)]
        )
        .rc,
        PAM_AUTH_ERR,
        "the removed device's code"
    );
    assert_eq!(
        f.auth("svc", &u.name, &[&code_now(b["secret"].as_str().unwrap())]).rc,
        PAM_SUCCESS,
        "the other's"
    );
    let err = refused(
        f.cli_as(&u.name, &["devices", "remove", "spare"]),
        "that would leave no authenticator",
    );
    assert!(err.contains(&format!("`pam-totp reset --user {}`", u.name)), "{err}");
    assert_eq!(names(&devices(&f, &u)), ["Spare"]);
}

#[test]
fn another_users_devices_are_root_only() {
    let f = Fixture::new();
    let u = TestUser::create();
    let other = TestUser::create();
    f.enroll_json(&other.name, &["--name", "phone"]);
    f.enroll_json(&other.name, &["--add", "--name", "spare"]);
    let before = std::fs::read(other.secret_path()).unwrap();
    for args in [
        vec!["devices", "list", "--user", &other.name],
        vec!["devices", "remove", "spare", "--user", &other.name],
        vec!["devices", "rename", "spare", "mine", "--user", &other.name],
        vec!["enroll", "--add", "--json", "--user", &other.name],
    ] {
        refused(f.cli_as(&u.name, &args), "only root can");
    }
    assert_eq!(std::fs::read(other.secret_path()).unwrap(), before);
    refused(f.cli_as(&u.name, &["devices", "list"]), "is not enrolled");
}

#[test]
fn status_shows_the_devices_in_text_and_json() {
    let f = Fixture::new();
    let u = TestUser::create();
    f.enroll_json(&u.name, &["--name", "phone"]);
    f.enroll_json(&u.name, &["--add", "--hotp", "--name", "key fob"]);
    let j = json(&ok(f.cli(&["status", "--user", &u.name, "--json"])));
    assert_eq!(j["enrolled"], true);
    assert_eq!(
        (j["algorithm"].as_str(), j["digits"].as_u64()),
        (Some("SHA1"), Some(6)),
        "the first device's"
    );
    let d = j["devices"].as_array().unwrap();
    assert_eq!(names(d), ["phone", "key fob"]);
    assert_eq!(
        (d[0]["type"].as_str(), d[1]["type"].as_str()),
        (Some("totp"), Some("hotp"))
    );
    assert!(d[1]["last_used"].is_null() && d[1]["next_counter"] == 0, "{d:?}");
    let text = ok(f.cli(&["status", "--user", &u.name]));
    assert!(text.contains("Authenticators:   2"), "{text}");
    assert!(
        text.contains("\"phone\": totp, SHA1, 6 digits, every 30 s; added "),
        "{text}"
    );
    assert!(
        text.contains("\"key fob\": hotp, SHA1, 6 digits, counter 0; added "),
        "{text}"
    );
    let text = ok(f.cli_as(&u.name, &["status"]));
    assert!(
        text.contains("\"key fob\": hotp") && !text.contains("last used"),
        "{text}"
    );
    let j = json(&ok(f.cli_as(&u.name, &["status", "--json"])));
    assert_eq!(j["devices"].as_array().unwrap().len(), 2);
}

/// A token file another user could have changed is refused before anything is written:
/// its writer could have put their own token in it under any account's name.
#[test]
fn a_token_file_others_could_change_is_refused_and_nothing_is_imported() {
    register_fixture_keys();
    let f = Fixture::new();
    let (u1, u2) = (TestUser::create(), TestUser::create());
    let csv = csv_for(&f, "devices/two-users.csv", &u1.name, &u2.name);
    let import = || output(f.cli(&["import", "tokens", "--file", csv.to_str().unwrap()]));
    std::fs::set_permissions(&csv, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (rc, out, err) = import();
    assert_eq!(rc, 1, "{out}");
    assert!(err.contains("can be changed by group or others (mode 0666)"), "{err}");
    std::fs::set_permissions(&csv, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&csv, Some(u1.uid), None).unwrap();
    let (rc, _, err) = import();
    assert_eq!(rc, 1);
    assert!(err.contains(&format!("belongs to uid {}, not root", u1.uid)), "{err}");
    for u in [&u1, &u2] {
        let j = json(&ok(f.cli(&["status", "--user", &u.name, "--json"])));
        assert_eq!(j["enrolled"], false, "{j}");
    }
    // Root's again, and 0600: imported.
    std::os::unix::fs::chown(&csv, Some(0), None).unwrap();
    let (rc, _, err) = import();
    assert_eq!(rc, 0, "{err}");
}

#[test]
fn import_tokens_from_csv_writes_each_users_file_and_the_module_accepts_their_codes() {
    register_fixture_keys();
    let f = Fixture::new();
    f.simple("svc", "");
    let (u1, u2) = (TestUser::create(), TestUser::create());
    let csv = csv_for(&f, "devices/two-users.csv", &u1.name, &u2.name);
    let (rc, out, err) = output(f.cli(&["import", "tokens", "--file", csv.to_str().unwrap()]));
    assert_eq!(rc, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{}: added \"fob 1\" (totp, SHA1, 6 digits)", u1.name),
            format!(
                "{}: added \"token 12345678\" (hotp, SHA1, 6 digits, from counter 5)",
                u2.name
            ),
            format!("{}: added \"desk fob\" (totp, SHA256, 8 digits)", u2.name),
            "3 tokens imported for 2 users; 0 refused.".to_string(),
        ]
    );
    assert_no_secrets_in(&[out, err], &[]);
    for u in [&u1, &u2] {
        assert_private_and_owned(u);
    }
    let d = devices(&f, &u2);
    assert_eq!(
        (d[0]["type"].as_str(), d[0]["counter"].as_u64()),
        (Some("hotp"), Some(5))
    );
    assert_eq!(f.auth("svc", &u1.name, &[&code_now(FOB1)]).rc, PAM_SUCCESS);
    assert_eq!(
        f.auth("svc", &u2.name, &[&hotp(TOKEN2, 4, 6)]).rc,
        PAM_AUTH_ERR,
        "before the file's counter"
    );
    assert_eq!(f.auth("svc", &u2.name, &[&hotp(TOKEN2, 5, 6)]).rc, PAM_SUCCESS);
    assert_eq!(
        f.auth("svc", &u2.name, &[&oathtool(DESK, now(), "sha256", 8)]).rc,
        PAM_SUCCESS
    );
    // An import with no backup codes: the user has none until they make some.
    let j = json(&ok(f.cli(&["status", "--user", &u1.name, "--json"])));
    assert_eq!(j["backup_codes_total"], 0);
}

#[test]
fn import_tokens_refuses_a_taken_name_without_force_and_writes_nothing_for_that_user() {
    register_fixture_keys();
    let f = Fixture::new();
    f.simple("svc", "");
    let (u1, u2) = (TestUser::create(), TestUser::create());
    let first = csv_for(&f, "devices/two-users.csv", &u1.name, &u2.name);
    ok(f.cli(&["import", "tokens", "--file", first.to_str().unwrap()]));
    let before = std::fs::read(u1.secret_path()).unwrap();
    let csv = csv_for(&f, "devices/replace.csv", &u1.name, &u2.name);
    let (rc, out, err) = output(f.cli(&["import", "tokens", "--file", csv.to_str().unwrap()]));
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{}: line 5: refused: {} already has an authenticator named \"fob 1\" (--force replaces it)",
            u1.name, u1.name
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}: line 4: not imported (\"fob 2\")", u1.name)),
        "{out}"
    );
    assert!(out.contains(&format!("{}: added \"spare fob\"", u2.name)), "{out}");
    assert!(
        err.contains("1 token imported for 1 user; 1 refused, 1 more not imported with them"),
        "{err}"
    );
    assert_no_secrets_in(&[out, err], &[]);
    assert_eq!(std::fs::read(u1.secret_path()).unwrap(), before, "nothing half-written");
    assert_eq!(names(&devices(&f, &u2)), ["token 12345678", "desk fob", "spare fob"]);

    // With --force: "fob 1" replaced (the old key stops working), "fob 2" added. u2's
    // "spare fob" is now taken, so --force replaces it with the same key.
    let out = ok(f.cli(&["import", "tokens", "--force", "--file", csv.to_str().unwrap()]));
    assert!(out.ends_with("3 tokens imported for 2 users; 0 refused.\n"), "{out}");
    let d = devices(&f, &u1);
    assert_eq!(names(&d), ["FOB 1", "fob 2"]);
    assert_private_and_owned(&u1);
    assert_eq!(f.auth("svc", &u1.name, &[&code_now(FOB1)]).rc, PAM_AUTH_ERR, "replaced");
    assert_eq!(f.auth("svc", &u1.name, &[&code_now(FOB1_NEW)]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u1.name, &[&hotp(FOB2_NEW, 0, 6)]).rc, PAM_SUCCESS);
}

#[test]
fn import_tokens_from_a_malformed_file_names_the_entry_and_writes_nothing() {
    register_fixture_keys();
    register_secret("NOTBASE32SECRET0189");
    let f = Fixture::new();
    let u = TestUser::create();
    let csv = fixture_copy(&f, "devices/malformed.csv", &[("@USER1@", &u.name)]);
    let err = refused(
        f.cli(&["import", "tokens", "--file", csv.to_str().unwrap()]),
        "line 3: the secret is not base32",
    );
    assert!(err.contains("nothing was imported"), "{err}");
    assert_no_secrets_in(&[err], &[]);
    assert!(!u.secret_path().exists());
    // A truncated PSKC file, and one with a DOCTYPE.
    for (name, want) in [
        ("tokens/truncated.pskcxml", "not well-formed XML"),
        ("tokens/doctype-entity.pskcxml", "DOCTYPE"),
    ] {
        let p = fixture_copy(&f, name, &[]);
        let err = refused(f.cli(&["import", "tokens", "--file", p.to_str().unwrap()]), want);
        assert_no_secrets_in(&[err], &[]);
    }
    // The format forced: a CSV file read as PSKC is not XML.
    refused(
        f.cli(&["import", "tokens", "--format", "pskc", "--file", csv.to_str().unwrap()]),
        "not well-formed XML",
    );
    // An unknown user: that token refused, by line.
    let bad = f.root.join("unknown-user.csv");
    std::fs::write(
        &bad,
        format!(
            "{}\nnosuchuser-ptt,fob,totp,{FOB1},,,,\n",
            "user,name,type,secret,algorithm,digits,period,counter"
        ),
    )
    .unwrap();
    let (rc, out, err) = output(f.cli(&["import", "tokens", "--file", bad.to_str().unwrap()]));
    assert_eq!(rc, 1);
    assert!(
        out.contains("nosuchuser-ptt: line 2: refused: no such user: nosuchuser-ptt"),
        "{out}"
    );
    assert!(err.contains("0 tokens imported for 0 users; 1 refused"), "{err}");
    // Not a regular file, and too large.
    refused(
        f.cli(&["import", "tokens", "--file", "/dev/zero"]),
        "is not a regular file",
    );
    let big = f.root.join("big.csv");
    std::fs::write(&big, vec![b'#'; 1024 * 1024 + 1]).unwrap();
    refused(
        f.cli(&["import", "tokens", "--file", big.to_str().unwrap()]),
        "at most 1048576 are read",
    );
}

#[test]
fn import_tokens_from_pskc_plain_and_encrypted_with_a_pre_shared_key() {
    register_fixture_keys();
    let f = Fixture::new();
    f.simple("svc", "");
    let (u1, u2) = (TestUser::create(), TestUser::create());
    // RFC 6030-layout fixtures of the token parser's tests, their UserIds made real users.
    let plain = totp_and_hotp_pskc(&f, &u1.name, &u2.name);
    let out = ok(f.cli(&["import", "tokens", "--file", plain.to_str().unwrap()]));
    assert!(out.ends_with("2 tokens imported for 2 users; 0 refused.\n"), "{out}");
    let d1 = devices(&f, &u1);
    assert_eq!(
        (
            d1[0]["type"].as_str(),
            d1[0]["algorithm"].as_str(),
            d1[0]["digits"].as_u64()
        ),
        (Some("totp"), Some("SHA256"), Some(8))
    );
    let k1 = pam_totp_core::otp::encode_base32(b"12345678901234567890123456789012").to_string();
    register_secret(&k1);
    assert_eq!(
        f.auth("svc", &u1.name, &[&oathtool(&k1, now(), "sha256", 8)]).rc,
        PAM_SUCCESS
    );
    let d2 = devices(&f, &u2);
    assert_eq!(
        (d2[0]["type"].as_str(), d2[0]["counter"].as_u64()),
        (Some("hotp"), Some(42))
    );
    let k2 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(f.auth("svc", &u2.name, &[&hotp(k2, 42, 6)]).rc, PAM_SUCCESS);

    // RFC 6030 figure 6: an 8-digit HOTP key, AES-128-CBC under a pre-shared key, with a MAC.
    let u3 = TestUser::create();
    let enc = figure6_pskc(&f, &u3.name);
    let psk = psk_file(&f, FIGURE6_PSK, 0o644);
    let args = import_with_psk(&enc, &psk);
    refused(f.cli(&args), "can be read by group or others (mode 0644)");
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused(f.cli(&args[..4]), "pre-shared key");
    let out = ok(f.cli(&args));
    assert!(
        out.contains(&format!(
            "{}: added \"token 987654321\" (hotp, SHA1, 8 digits)",
            u3.name
        )),
        "{out}"
    );
    assert_private_and_owned(&u3);
    assert_eq!(f.auth("svc", &u3.name, &[&hotp(k2, 0, 8)]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u3.name, &[&hotp(k2, 0, 8)]).rc, PAM_AUTH_ERR);
    // A wrong key: the MAC does not match, nothing written.
    let u4 = TestUser::create();
    let enc4 = figure6_pskc(&f, &u4.name);
    psk_file(&f, "00000000000000000000000000000000", 0o600);
    refused(f.cli(&import_with_psk(&enc4, &psk)), "nothing was imported");
    assert!(!u4.secret_path().exists());
}

#[test]
fn import_tokens_goes_on_past_a_user_who_holds_their_own_secret_file_lock() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    register_fixture_keys();
    let f = Fixture::new();
    let (held, other) = (TestUser::create(), TestUser::create());
    // The held user takes the lock every command changing their enrollment takes, in a
    // process of their own (flock, then exec: the sleep holds it), and keeps it.
    let lock = held.secret_dir().join(".secret.toml.lock");
    let mut holder = Command::new("sh")
        .args([
            "-c",
            "mkdir -p -m 700 \"$1\" && exec flock --no-fork --exclusive \"$2\" sh -c 'echo locked; exec sleep 300'",
            "sh",
        ])
        .arg(held.secret_dir())
        .arg(&lock)
        .uid(held.uid)
        .gid(held.gid)
        .current_dir("/")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "locked\n");

    let csv = csv_for(&f, "devices/two-users.csv", &held.name, &other.name);
    let mut import = f.cli(&["import", "tokens", "--file", csv.to_str().unwrap()]);
    let start = std::time::Instant::now();
    let mut child = import.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let limit = std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            holder.kill().unwrap();
            holder.wait().unwrap();
            panic!("import tokens still running after {limit:?}: it waits for the user's lock");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let took = start.elapsed();
    let o = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(took < std::time::Duration::from_secs(15), "{took:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&format!("{}: line 4: refused: ", held.name))
            && lines[0].contains(&format!("another process holds the lock {}", lock.display())),
        "{out}"
    );
    assert_eq!(
        lines[1..],
        [
            format!(
                "{}: added \"token 12345678\" (hotp, SHA1, 6 digits, from counter 5)",
                other.name
            ),
            format!("{}: added \"desk fob\" (totp, SHA256, 8 digits)", other.name),
        ]
    );
    assert!(err.contains("2 tokens imported for 1 user; 1 refused."), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_no_secrets_in(&[out, err], &[]);
    assert!(!held.secret_path().exists());
    assert_eq!(names(&devices(&f, &other)), ["token 12345678", "desk fob"]);
    // Released, the held user's token imports.
    let out = ok(f.cli(&["import", "tokens", "--force", "--file", csv.to_str().unwrap()]));
    assert!(out.ends_with("3 tokens imported for 2 users; 0 refused.\n"), "{out}");
    assert_private_and_owned(&held);
}

/// What `import tokens` says of a PSKC file whose MACs it checked.
const MAC_NOTE: &str = "MAC checked: it covers the encrypted keys only, not the user names, device names or \
                        other settings in the file; a token for root or a member of protected_groups is imported \
                        only with --allow-protected.";

#[test]
fn import_tokens_for_root_or_a_protected_group_member_needs_allow_protected_and_says_what_the_mac_covers() {
    register_fixture_keys();
    let f = Fixture::new();
    // Secret files in the fixture's own directory: root's real one is never touched.
    let secrets = f.root.join("secrets");
    let protected = TestGroup::create();
    let admin = TestUser::create();
    protected.add(&admin.name);
    let user = TestUser::create();
    std::fs::write(
        f.root.join("pam_totp.conf"),
        format!(
            "secret = \"{}/%u.toml\"\nprotected_groups = [\"root\", \"sudo\", \"wheel\", \"{}\"]\n",
            secrets.display(),
            protected.name
        ),
    )
    .unwrap();

    // RFC 6030 figure 6 with its UserId changed to root: the MAC still checks (it covers
    // the encrypted key only), so the file alone cannot tell that root was put there.
    let enc = figure6_pskc(&f, "root");
    let psk = psk_file(&f, FIGURE6_PSK, 0o600);
    let args = import_with_psk(&enc, &psk);
    let (rc, out, err) = output(f.cli(&args));
    assert_eq!(rc, 1, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "root: KeyPackage 1 (Id 12345678): refused: it is the root account (uid 0); tokens for root and members \
             of protected_groups are imported only with --allow-protected",
            MAC_NOTE,
        ],
        "{out}"
    );
    assert!(err.contains("0 tokens imported for 0 users; 1 refused."), "{err}");
    assert!(!secrets.join("root.toml").exists());

    let mut with_flag = args.to_vec();
    with_flag.push("--allow-protected");
    let out = ok(f.cli(&with_flag));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "root: added \"token 987654321\" (hotp, SHA1, 8 digits)",
            MAC_NOTE,
            "1 token imported for 1 user; 0 refused.",
        ],
        "{out}"
    );
    assert!(secrets.join("root.toml").exists());

    // A member of a protected group is refused the same way, the other user imported.
    let csv = csv_for(&f, "devices/two-users.csv", &admin.name, &user.name);
    let (rc, out, err) = output(f.cli(&["import", "tokens", "--file", csv.to_str().unwrap()]));
    assert_eq!(rc, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{a}: line 4: refused: {a} is a member of the protected group {g}; tokens for root and members of \
             protected_groups are imported only with --allow-protected",
            a = admin.name,
            g = protected.name
        ),
        "{out}"
    );
    assert!(lines[1].starts_with(&format!("{}: added", user.name)), "{out}");
    assert_eq!(lines.len(), 3, "no MAC note for a CSV file: {out}");
    assert!(err.contains("2 tokens imported for 1 user; 1 refused."), "{err}");
    assert!(!secrets.join(format!("{}.toml", admin.name)).exists());
    assert!(secrets.join(format!("{}.toml", user.name)).exists());
}

#[test]
fn import_tokens_is_root_only() {
    register_fixture_keys();
    let f = Fixture::new();
    let u = TestUser::create();
    let csv = csv_for(&f, "devices/two-users.csv", &u.name, &u.name);
    std::fs::set_permissions(&csv, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(
        f.cli_as(&u.name, &["import", "tokens", "--file", csv.to_str().unwrap()]),
        "only root can import tokens",
    );
    assert!(!u.secret_path().exists());
}

#[test]
fn a_counter_based_google_authenticator_file_imports_with_its_counter() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    // The real command, as the user, counter-based.
    let ga = google_authenticator(&u, GA_COUNTER_BASED);
    let (text, key) = (ga.text, ga.secret);
    let counter: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("\" HOTP_COUNTER "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // google-authenticator starts at 1 and its module accepts HOTP_COUNTER .. +WINDOW_SIZE-1.
    assert_eq!(counter, 1);
    let scratch = ga.scratch;
    let out = ok(f.cli_as(&u.name, &["import", "google-authenticator"]));
    assert!(out.contains("counter-based (HOTP), next counter 1"), "{out}");
    assert!(out.contains("2 scratch codes became backup codes"), "{out}");
    let d = devices(&f, &u);
    assert_eq!(
        (d[0]["name"].as_str(), d[0]["type"].as_str(), d[0]["counter"].as_u64()),
        (Some("phone"), Some("hotp"), Some(1))
    );
    assert_eq!(
        f.auth("svc", &u.name, &[&hotp(&key, counter - 1, 6)]).rc,
        PAM_AUTH_ERR,
        "before HOTP_COUNTER"
    );
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, counter, 6)]).rc, PAM_SUCCESS);
    assert_eq!(
        f.auth("svc", &u.name, &[&hotp(&key, counter, 6)]).rc,
        PAM_AUTH_ERR,
        "once"
    );
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, counter + 1, 6)]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u.name, &[&scratch[0]]).rc, PAM_SUCCESS);
    // Importing the same file again (another name) cannot rewind the counter: the state
    // remembers it per key.
    let out = ok(f.cli_as(
        &u.name,
        &["import", "google-authenticator", "--force", "--name", "old phone"],
    ));
    assert!(out.contains("next counter 1"), "{out}");
    assert_eq!(names(&devices(&f, &u)), ["old phone"]);
    assert_eq!(
        f.auth("svc", &u.name, &[&hotp(&key, counter + 1, 6)]).rc,
        PAM_AUTH_ERR,
        "spent before the re-import"
    );
    assert_eq!(f.auth("svc", &u.name, &[&hotp(&key, counter + 2, 6)]).rc, PAM_SUCCESS);
    refused(
        f.cli_as(
            &u.name,
            &["import", "google-authenticator", "--force", "--name", "bad\u{7}name"],
        ),
        "cannot name an authenticator",
    );
}

/// `pam-totp enroll --user U ARGS --qr none`, stopped at its confirmation prompt with its
/// stdin a pipe held open: it has read the secret file and waits for the code.
struct WaitingEnroll {
    child: std::process::Child,
    out: std::process::ChildStdout,
    /// The new authenticator's key, from the printed `URI: otpauth://...secret=...`.
    key: String,
}

fn enroll_waiting_at_its_prompt(f: &Fixture, u: &TestUser, args: &[&str]) -> WaitingEnroll {
    let mut all = vec!["enroll", "--user", &u.name, "--qr", "none"];
    all.extend_from_slice(args);
    let (child, out, shown) = up_to_the_confirmation_prompt(f.cli(&all));
    assert!(shown.contains("Enter the 6-digit code"), "{shown}");
    let uri = shown.lines().find_map(|l| l.strip_prefix("URI: ")).unwrap();
    let key = secret_in_uri(uri);
    register_secret(&key);
    WaitingEnroll { child, out, key }
}

impl WaitingEnroll {
    /// Types the current code and lets it finish: (exit code, stdout after the prompt, stderr).
    fn confirm(mut self) -> (i32, String, String) {
        let mut stdin = self.child.stdin.take().unwrap();
        writeln!(stdin, "{}", code_now(&self.key)).unwrap();
        drop(stdin);
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        let mut err = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), rest, err)
    }
}

#[test]
fn an_add_waiting_at_its_prompt_does_not_bring_back_a_device_removed_meanwhile() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let phone = f.enroll_json(&u.name, &["--name", "phone"]);
    let tablet = f.enroll_json(&u.name, &["--add", "--name", "tablet"]);
    let waiting = enroll_waiting_at_its_prompt(&f, &u, &["--add", "--name", "laptop"]);
    // Meanwhile, root removes the phone (lost, say).
    let out = ok(f.cli(&["devices", "remove", "phone", "--user", &u.name]));
    assert!(out.contains("Left: \"tablet\""), "{out}");
    let key = waiting.key.clone();
    let (rc, rest, err) = waiting.confirm();
    assert_eq!(rc, 0, "{rest}{err}");
    assert!(
        rest.contains("\"laptop\" added; 2 authenticators: \"tablet\", \"laptop\""),
        "{rest}"
    );
    assert_eq!(names(&devices(&f, &u)), ["tablet", "laptop"], "the phone stays removed");
    // ... and so it is for the module: the phone's codes no longer work, the others' do.
    let r = f.auth("svc", &u.name, &[&code_now(phone["secret"].as_str().unwrap())]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_eq!(f.auth("svc", &u.name, &[&code_now(&key)]).rc, PAM_SUCCESS);
    assert_eq!(
        f.auth("svc", &u.name, &[&code_now(tablet["secret"].as_str().unwrap())])
            .rc,
        PAM_SUCCESS
    );
}

#[test]
fn an_add_waiting_at_its_prompt_keeps_backup_codes_regenerated_meanwhile() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let first = f.enroll_json(&u.name, &["--name", "phone"]);
    let waiting = enroll_waiting_at_its_prompt(&f, &u, &["--add", "--name", "laptop"]);
    let regenerated = json(&ok(f.cli(&[
        "backup-codes",
        "--user",
        &u.name,
        "--regenerate",
        "--json",
    ])));
    register_enrollment(&regenerated);
    let (rc, rest, err) = waiting.confirm();
    assert_eq!(rc, 0, "{rest}{err}");
    assert_eq!(names(&devices(&f, &u)), ["phone", "laptop"]);
    let old = first["backup_codes"][0].as_str().unwrap();
    assert_eq!(
        f.auth("svc", &u.name, &[old]).rc,
        PAM_AUTH_ERR,
        "the old set stays replaced"
    );
    let new = regenerated["backup_codes"][0].as_str().unwrap();
    assert_eq!(f.auth("svc", &u.name, &[new]).rc, PAM_SUCCESS, "the new set survives");
}

#[test]
fn an_enrollment_waiting_at_its_prompt_rechecks_what_changed_meanwhile_and_saves_nothing_if_refused() {
    let f = Fixture::new();
    let u = TestUser::create();
    f.enroll_json(&u.name, &["--name", "phone"]);

    // The name it was given was taken meanwhile (by a rename): refused, nothing saved.
    let waiting = enroll_waiting_at_its_prompt(&f, &u, &["--add", "--name", "laptop"]);
    ok(f.cli(&["devices", "rename", "phone", "Laptop", "--user", &u.name]));
    let (rc, _, err) = waiting.confirm();
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("already has an authenticator named \"Laptop\"") && err.contains("nothing was saved"),
        "{err}"
    );
    assert_eq!(names(&devices(&f, &u)), ["Laptop"]);

    // A name it chose itself moves on to the next free one.
    let waiting = enroll_waiting_at_its_prompt(&f, &u, &["--add"]);
    f.enroll_json(&u.name, &["--add", "--name", "phone"]);
    let (rc, rest, err) = waiting.confirm();
    assert_eq!(rc, 0, "{rest}{err}");
    assert!(rest.contains("\"phone 2\" added"), "{rest}");
    assert_eq!(names(&devices(&f, &u)), ["Laptop", "phone", "phone 2"]);

    // The enrollment was reset meanwhile: nothing to add to.
    let waiting = enroll_waiting_at_its_prompt(&f, &u, &["--add", "--name", "tablet"]);
    ok(f.cli(&["reset", "--user", &u.name]));
    let (rc, _, err) = waiting.confirm();
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("is no longer enrolled") && err.contains("nothing was saved"),
        "{err}"
    );
    assert!(!u.secret_path().exists());

    // A first enrollment while another one is made: the other one stays.
    let waiting = enroll_waiting_at_its_prompt(&f, &u, &["--name", "slow"]);
    f.enroll_json(&u.name, &["--name", "fast"]);
    let (rc, _, err) = waiting.confirm();
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("is already enrolled") && err.contains("nothing was saved"),
        "{err}"
    );
    assert_eq!(names(&devices(&f, &u)), ["fast"]);
    assert_private_and_owned(&u);
}

#[test]
fn json_output_escapes_bidi_overrides_and_line_separators_in_names_and_labels() {
    let f = Fixture::new();
    let u = TestUser::create();
    let name = "evil\u{202E}txt.exe";
    let label = "bob\u{2028}Locked out: no";
    f.enroll_json(&u.name, &["--name", name, "--label", label]);
    for args in [
        vec!["devices", "list", "--user", &u.name, "--json"],
        vec!["status", "--user", &u.name, "--json"],
    ] {
        let out = ok(f.cli(&args));
        assert!(
            !out.contains('\u{202E}') && !out.contains('\u{2028}'),
            "{args:?}: raw in {out:?}"
        );
        assert!(
            out.contains("evil\\u202etxt.exe") && out.contains("bob\\u2028Locked out: no"),
            "{args:?}: {out}"
        );
        let j = json(&out);
        assert_eq!(j["devices"][0]["name"], name, "{args:?}");
        assert_eq!(j["devices"][0]["label"], label, "{args:?}");
    }
    let j = json(&ok(f.cli(&["status", "--user", &u.name, "--json"])));
    assert_eq!(j["label"], label);
}

#[test]
fn import_tokens_with_a_pre_shared_key_refuses_a_plain_file() {
    register_fixture_keys();
    let f = Fixture::new();
    let (u1, u2) = (TestUser::create(), TestUser::create());
    let plain = totp_and_hotp_pskc(&f, &u1.name, &u2.name);
    let psk = psk_file(&f, FIGURE6_PSK, 0o600);
    refused(
        f.cli(&import_with_psk(&plain, &psk)),
        "the file mixes encrypted and plain keys",
    );
    assert!(!u1.secret_path().exists() && !u2.secret_path().exists());
}
