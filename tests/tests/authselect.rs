//! The authselect vendor profile shipped in the .rpm (packaging/authselect/pam-totp, derived
//! from authselect's "local" profile): its files are in the package; every template operator
//! is one authselect knows (authselect-profiles(5)) and every feature is documented; rendered
//! the way authselect renders it, with and without `with-pam-totp` (and with the other
//! features), every line is a PAM rule and pam_totp comes after the password, where the .deb's
//! pam-auth-update profile puts it; and the rendered system-auth, run by this host's libpam
//! with pam_unix and the module, asks for the code after a right password only.
//! authselect itself is not packaged in Debian: the renderer below follows its manual.

use pam_totp_tests::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/authselect/pam-totp")
}

fn template(name: &str) -> String {
    std::fs::read_to_string(profile_dir().join(name)).unwrap()
}

const FILES: &[&str] = &[
    "README",
    "REQUIREMENTS",
    "system-auth",
    "password-auth",
    "smartcard-auth",
    "fingerprint-auth",
    "postlogin",
    "nsswitch.conf",
    "dconf-db",
    "dconf-locks",
];

// --- authselect's template language (authselect-profiles(5)) ---

#[derive(Debug, PartialEq)]
enum Op {
    If {
        expr: String,
        then: String,
        otherwise: String,
    },
    Include(String),
    Exclude(String),
    Continue(String),
    Stop(String),
    Imply {
        feature: String,
        expr: String,
    },
}

/// The operators of one line: (byte range, operator). Panics on a `{...}` that is not one.
fn operators(line: &str) -> Vec<(std::ops::Range<usize>, Op)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = line[at..].find('{').map(|i| i + at) {
        let end = start
            + line[start..]
                .find('}')
                .unwrap_or_else(|| panic!("unclosed {{ in {line:?}"));
        let body = &line[start + 1..end];
        let op = if let Some(e) = body.strip_prefix("include if ") {
            Op::Include(e.into())
        } else if let Some(e) = body.strip_prefix("exclude if ") {
            Op::Exclude(e.into())
        } else if let Some(e) = body.strip_prefix("continue if ") {
            Op::Continue(e.into())
        } else if let Some(e) = body.strip_prefix("stop if ") {
            Op::Stop(e.into())
        } else if let Some(rest) = body.strip_prefix("imply ") {
            let (feature, expr) = rest.split_once(" if ").unwrap_or_else(|| panic!("{line:?}"));
            Op::Imply {
                feature: feature.trim_matches('"').into(),
                expr: expr.into(),
            }
        } else if let Some(rest) = body.strip_prefix("if ") {
            // The expression ends at the first ':' outside quotes.
            let mut quoted = false;
            let colon = rest
                .char_indices()
                .find(|&(_, c)| {
                    if c == '"' {
                        quoted = !quoted;
                    }
                    c == ':' && !quoted
                })
                .unwrap_or_else(|| panic!("{{if}} without ':' in {line:?}"))
                .0;
            let (then, otherwise) = match rest[colon + 1..].split_once('|') {
                Some((a, b)) => (a.to_string(), b.to_string()),
                None => (rest[colon + 1..].to_string(), String::new()),
            };
            Op::If {
                expr: rest[..colon].into(),
                then,
                otherwise,
            }
        } else {
            panic!("not an authselect operator: {{{body}}} in {line:?}");
        };
        out.push((start..end + 1, op));
        at = end + 1;
    }
    out
}

/// Evaluates a feature expression: "feature", not, and, or, parentheses.
fn eval(expr: &str, features: &BTreeSet<String>) -> bool {
    let mut tokens = Vec::new();
    let mut rest = expr.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or_else(|| panic!("unclosed quote in {expr:?}"));
            tokens.push(format!("\"{}", &r[..end]));
            rest = &r[end + 1..];
        } else if rest.starts_with('(') || rest.starts_with(')') {
            tokens.push(rest[..1].to_string());
            rest = &rest[1..];
        } else {
            let end = rest.find([' ', '(', ')', '"']).unwrap_or(rest.len());
            let word = &rest[..end];
            assert!(
                ["not", "and", "or"].contains(&word),
                "unknown word {word:?} in {expr:?}"
            );
            tokens.push(word.to_string());
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    fn or(t: &[String], i: &mut usize, f: &BTreeSet<String>) -> bool {
        let mut v = and(t, i, f);
        while t.get(*i).is_some_and(|x| x == "or") {
            *i += 1;
            v |= and(t, i, f);
        }
        v
    }
    fn and(t: &[String], i: &mut usize, f: &BTreeSet<String>) -> bool {
        let mut v = unary(t, i, f);
        while t.get(*i).is_some_and(|x| x == "and") {
            *i += 1;
            v &= unary(t, i, f);
        }
        v
    }
    fn unary(t: &[String], i: &mut usize, f: &BTreeSet<String>) -> bool {
        let tok = t[*i].clone();
        *i += 1;
        match tok.as_str() {
            "not" => !unary(t, i, f),
            "(" => {
                let v = or(t, i, f);
                assert_eq!(t[*i], ")");
                *i += 1;
                v
            }
            q => f.contains(q.strip_prefix('"').expect("a quoted feature")),
        }
    }
    let mut i = 0;
    let v = or(&tokens, &mut i, features);
    assert_eq!(i, tokens.len(), "trailing tokens in {expr:?}");
    v
}

/// Every feature an expression names.
fn named(expr: &str) -> Vec<String> {
    expr.split('"').skip(1).step_by(2).map(String::from).collect()
}

/// Renders a template with `features` enabled, as authselect writes the file.
fn render(text: &str, features: &[&str]) -> String {
    let mut f: BTreeSet<String> = features.iter().map(|s| s.to_string()).collect();
    // imply first, over the whole file, until nothing changes.
    loop {
        let before = f.len();
        for line in text.lines() {
            for (_, op) in operators(line) {
                if let Op::Imply { feature, expr } = op {
                    if eval(&expr, &f) {
                        f.insert(feature);
                    }
                }
            }
        }
        if f.len() == before {
            break;
        }
    }
    let mut out = String::new();
    'lines: for line in text.lines() {
        let ops = operators(line);
        let mut keep = true;
        let mut rendered = line.to_string();
        for (range, op) in ops.iter().rev() {
            let replacement = match op {
                Op::Continue(e) => {
                    if !eval(e, &f) {
                        break 'lines;
                    }
                    keep = false;
                    String::new()
                }
                Op::Stop(e) => {
                    if eval(e, &f) {
                        break 'lines;
                    }
                    keep = false;
                    String::new()
                }
                Op::Imply { .. } => {
                    keep = false;
                    String::new()
                }
                Op::Include(e) => {
                    keep &= eval(e, &f);
                    String::new()
                }
                Op::Exclude(e) => {
                    keep &= !eval(e, &f);
                    String::new()
                }
                Op::If { expr, then, otherwise } => {
                    if eval(expr, &f) {
                        then.clone()
                    } else {
                        otherwise.clone()
                    }
                }
            };
            rendered.replace_range(range.clone(), &replacement);
        }
        if keep {
            out.push_str(rendered.trim_end());
            out.push('\n');
        }
    }
    out
}

/// The PAM rules of a rendered stack: (type, control, module, args).
fn rules(text: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (ty, rest) = line
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("{line:?}"));
        assert!(
            [
                "auth",
                "account",
                "password",
                "session",
                "-auth",
                "-account",
                "-password",
                "-session"
            ]
            .contains(&ty),
            "bad type in {line:?}"
        );
        let rest = rest.trim_start();
        let (control, rest) = if rest.starts_with('[') {
            let end = rest.find(']').unwrap_or_else(|| panic!("{line:?}"));
            for kv in rest[1..end].split_whitespace() {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{kv:?} in {line:?}"));
                assert!(!k.is_empty(), "{line:?}");
                assert!(
                    ["ignore", "bad", "die", "ok", "done", "reset"].contains(&v) || v.parse::<u32>().is_ok(),
                    "bad action {v:?} in {line:?}"
                );
            }
            (rest[..=end].to_string(), &rest[end + 1..])
        } else {
            let (c, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            assert!(
                ["required", "requisite", "sufficient", "optional", "include", "substack"].contains(&c),
                "bad control {c:?} in {line:?}"
            );
            (c.to_string(), r)
        };
        let rest = rest.trim_start();
        let (module, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        assert!(module.ends_with(".so") || module.starts_with("system-"), "{line:?}");
        assert!(!line.contains('{') && !line.contains('}'), "operator left in {line:?}");
        out.push((ty.to_string(), control, module.to_string(), args.trim().to_string()));
    }
    out
}

/// Features each stack template names.
fn features_of(text: &str) -> BTreeSet<String> {
    let mut f = BTreeSet::new();
    for line in text.lines() {
        for (_, op) in operators(line) {
            let exprs = match op {
                Op::If { expr, .. } => vec![expr],
                Op::Include(e) | Op::Exclude(e) | Op::Continue(e) | Op::Stop(e) => vec![e],
                Op::Imply { feature, expr } => {
                    f.insert(feature);
                    vec![expr]
                }
            };
            for e in exprs {
                f.extend(named(&e));
            }
        }
    }
    f
}

#[test]
fn the_rpm_ships_the_profile_in_authselects_vendor_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/packages");
    for arch in ["x86_64", "aarch64"] {
        let rpm = std::fs::read_dir(&dir)
            .expect("run packaging/build first")
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(&format!(".{arch}.rpm")))
            .unwrap_or_else(|| panic!("no .{arch}.rpm"));
        let listing = String::from_utf8(run("rpm", &["-qlpv", rpm.to_str().unwrap()]).stdout).unwrap();
        for f in FILES {
            let line = listing
                .lines()
                .find(|l| l.ends_with(&format!(" /usr/share/authselect/vendor/pam-totp/{f}")))
                .unwrap_or_else(|| panic!("{f} missing from {}:\n{listing}", rpm.display()));
            assert!(
                line.starts_with("-rw-r--r--") && line.contains(" root     root "),
                "{line}"
            );
        }
    }
}

#[test]
fn every_operator_is_authselects_and_every_feature_is_documented() {
    let readme = template("README");
    let name = readme.lines().next().unwrap();
    assert!(
        !name.trim().is_empty() && !name.contains('{'),
        "README's first line is the profile's name"
    );
    let mut all = BTreeSet::new();
    for f in FILES {
        // operators() panics on anything authselect does not know.
        all.extend(features_of(&template(f)));
        for features in [
            &[][..],
            &["with-pam-totp"],
            &["with-pam-totp", "with-faillock", "with-fingerprint"],
        ] {
            let r = render(&template(f), features);
            assert!(
                !r.contains("{if ") && !r.contains("{include ") && !r.contains("{exclude "),
                "{f}: {r}"
            );
        }
    }
    assert!(all.contains("with-pam-totp"), "{all:?}");
    for feature in &all {
        assert!(
            readme.contains(&format!("\n{feature}::")),
            "{feature} is not documented in README"
        );
    }
    assert!(template("REQUIREMENTS").contains("{include if \"with-pam-totp\"}"));
}

#[test]
fn pam_totp_comes_after_the_password_with_the_feature_only() {
    for stack in ["system-auth", "password-auth"] {
        let text = template(stack);
        let others: Vec<String> = features_of(&text)
            .into_iter()
            .filter(|f| f != "with-pam-totp")
            .collect();
        // Without the feature, with each other feature alone and with all of them.
        let mut sets: Vec<Vec<&str>> = vec![vec![]];
        sets.extend(others.iter().map(|f| vec![f.as_str()]));
        sets.push(others.iter().map(String::as_str).collect());
        for set in sets {
            let plain = rules(&render(&text, &set));
            assert!(plain.iter().all(|r| r.2 != "pam_totp.so"), "{stack} {set:?}: {plain:?}");
            let mut with = set.clone();
            with.push("with-pam-totp");
            let auth: Vec<_> = rules(&render(&text, &with))
                .into_iter()
                .filter(|r| r.0 == "auth")
                .collect();
            let totp: Vec<usize> = (0..auth.len()).filter(|&i| auth[i].2 == "pam_totp.so").collect();
            assert_eq!(totp.len(), 1, "{stack} {with:?}: {auth:?}");
            let t = totp[0];
            assert_eq!(
                (auth[t].1.as_str(), auth[t].3.as_str()),
                ("required", "nullok"),
                "{stack}"
            );
            // Right after the password, which on failure jumps past pam_totp and the
            // pam_permit that ends the stack on success; pam_unix is not "sufficient" (that
            // would end the stack before the code is asked).
            assert_eq!(auth[t - 1].2, "pam_unix.so", "{stack} {with:?}");
            assert_eq!(auth[t - 1].1, "[success=ok default=2]", "{stack}");
            assert_eq!(
                (auth[t + 1].1.as_str(), auth[t + 1].2.as_str()),
                ("sufficient", "pam_permit.so")
            );
            assert!(
                auth.iter().all(|r| !(r.2 == "pam_unix.so" && r.1 == "sufficient")),
                "{auth:?}"
            );
            assert_eq!(auth.last().unwrap().2, "pam_deny.so", "{stack}");
            // The rest of the file is the same as without the feature.
            let rendered = render(&text, &with);
            let without_totp: Vec<_> = rules(&rendered)
                .into_iter()
                .filter(|r| r.2 != "pam_totp.so" && !(r.2 == "pam_permit.so" && r.0 == "auth"))
                .map(|r| (r.0, r.2, r.3))
                .collect();
            let plain3: Vec<_> = plain.into_iter().map(|r| (r.0, r.2, r.3)).collect();
            assert_eq!(without_totp, plain3, "{stack} {set:?}");
        }
    }
    // The .deb's pam-auth-update profile: the same module and argument, after the password.
    let deb =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/pam-auth-update.profile"))
            .unwrap();
    assert!(
        deb.contains("Auth-Type: Additional") && deb.contains("required\tpam_totp.so nullok"),
        "{deb}"
    );
}

/// The rendered system-auth, as authselect would write it, run through this host's libpam:
/// pam_env, pam_faildelay, pam_unix (a real password in /etc/shadow), pam_totp (the module
/// under test in place of `pam_totp.so`), pam_permit, pam_deny.
#[test]
fn the_rendered_system_auth_asks_for_the_code_after_a_right_password_only() {
    let f = Fixture::new();
    let stack = render(&template("system-auth"), &["with-pam-totp"]);
    let auth: String = stack
        .lines()
        .filter(|l| l.starts_with("auth"))
        .map(|l| {
            let l = l.replace("pam_totp.so nullok", &format!("{} nullok", f.module("")));
            // A two-second delay after each failure is pam_faildelay's work, not ours.
            l.replace("delay=2000000", "delay=0") + "\n"
        })
        .collect();
    f.service("system-auth", &auth);
    let u = TestUser::create();
    u.set_password("pw-Right-1");
    let key = random_key_b32();
    u.enroll(&key, "");
    let plain = TestUser::create();
    plain.set_password("pw-Right-2");

    let code = fresh_code(&key);
    let r = f.auth("system-auth", &u.name, &["pw-Wrong", &code]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_eq!(r.prompts.len(), 1, "no code asked after a wrong password: {r:?}");
    let r = f.auth("system-auth", &u.name, &["pw-Right-1", &wrong_code(&key)]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_eq!(r.prompts.len(), 2, "{r:?}");
    let r = f.auth("system-auth", &u.name, &["pw-Right-1", &code]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(r.logged(&["accepted verification code"]), "{:?}", r.logs);
    // Not enrolled (nullok): the password alone, no code asked.
    let r = f.auth("system-auth", &plain.name, &["pw-Right-2"]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(r.prompts.len(), 1, "{r:?}");
    let r = f.auth("system-auth", &plain.name, &["pw-Wrong"]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");

    // Without the feature: the password alone, for everyone.
    let stack = render(&template("system-auth"), &[]);
    let auth: String = stack
        .lines()
        .filter(|l| l.starts_with("auth"))
        .map(|l| l.replace("delay=2000000", "delay=0") + "\n")
        .collect();
    f.service("system-auth", &auth);
    let r = f.auth("system-auth", &u.name, &["pw-Right-1"]);
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(r.prompts.len(), 1, "{r:?}");
}
