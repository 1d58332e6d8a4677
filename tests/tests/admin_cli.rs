//! The administrator's command line for a rollout (issue 13): `pam-totp report`, a help desk
//! that unlocks and resets through a real sudo rule (and cannot touch root or members of
//! protected_groups), and backup codes written to a file — checked against the real module,
//! the real user and group database, and a real sudo in a private mount namespace.

use pam_totp_tests::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn report_json(f: &Fixture, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["report", "--json"];
    args.extend(extra);
    let (rc, out, err) = output(f.cli(&args));
    assert_eq!(rc, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "one line of JSON: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn user_in<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the report: {report}"))
}

/// Puts the home's mode back before the user is removed.
struct Chmod(PathBuf, u32);
impl Drop for Chmod {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(self.1));
    }
}

#[test]
fn report_shows_enrolled_not_enrolled_locked_several_devices_and_an_unreadable_home() {
    let f = Fixture::new();
    f.simple("svc", "max_failures=2 lockout=600 remember=3600");
    let enrolled = TestUser::create();
    let plain = TestUser::create();
    let locked = TestUser::create();
    let two = TestUser::create();
    let hidden = TestUser::create();

    let j = f.enroll_json(&enrolled.name, &[]);
    let key = j["secret"].as_str().unwrap().to_string();
    let codes: Vec<String> = j["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let rhost = ["--rhost", "192.0.2.7"];
    assert_eq!(
        f.auth_with("svc", &enrolled.name, &[&code_now(&key)], &rhost).rc,
        PAM_SUCCESS
    );
    assert_eq!(f.auth("svc", &enrolled.name, &[&codes[0]]).rc, PAM_SUCCESS);

    let lk = f.enroll_json(&locked.name, &[]);
    let lkey = lk["secret"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(f.auth("svc", &locked.name, &[&wrong_code(lkey)]).rc, PAM_AUTH_ERR);
    }
    f.enroll_json(&two.name, &[]);
    f.enroll_json(&two.name, &["--add", "--name", "spare phone"]);
    f.enroll_json(&hidden.name, &[]);
    let _restore = Chmod(hidden.home.clone(), 0o700);
    std::fs::set_permissions(&hidden.home, std::fs::Permissions::from_mode(0o000)).unwrap();
    let t0 = now();

    let r = report_json(&f, &[]);
    let users = r["users"].as_array().unwrap();
    assert_eq!(r["total"].as_u64().unwrap() as usize, users.len());
    assert_eq!(
        r["enrolled"].as_u64().unwrap() as usize,
        users.iter().filter(|u| u["enrolled"] == true).count()
    );
    let e = user_in(&r, &enrolled.name);
    assert_eq!(e["enrolled"], true);
    assert_eq!(e["devices"], 1);
    assert_eq!(e["backup_codes_left"], 9);
    assert_eq!(e["failures"], 0);
    assert!(e["locked_until"].is_null());
    let last = e["last_login"].as_u64().unwrap();
    assert!(last <= t0 && last + 120 > t0, "{e}");
    assert_eq!(e["remembered_hosts"], 1);
    assert_eq!(e["uid"], enrolled.uid);
    assert!(e.get("error").is_none(), "{e}");

    let p = user_in(&r, &plain.name);
    assert_eq!(p["enrolled"], false);
    assert_eq!(
        (p["devices"].as_u64(), p["backup_codes_left"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(p["last_login"].is_null() && p["locked_until"].is_null());
    assert!(p.get("error").is_none(), "{p}");

    let l = user_in(&r, &locked.name);
    assert_eq!(l["enrolled"], true);
    let until = l["locked_until"].as_u64().unwrap();
    assert!(until > t0 && until <= t0 + 600, "{l}");
    assert!(l["last_login"].is_null());

    let t = user_in(&r, &two.name);
    assert_eq!((t["enrolled"].as_bool(), t["devices"].as_u64()), (Some(true), Some(2)));
    assert_eq!(t["backup_codes_left"], 10);

    // One home that cannot be read: that user says so, the others are all there.
    let h = user_in(&r, &hidden.name);
    assert_eq!(h["enrolled"], false);
    let why = h["error"].as_str().unwrap();
    assert!(
        why.contains(hidden.home.to_str().unwrap()) && why.contains("Permission denied"),
        "{why}"
    );

    // Text: a table, the unreadable home named, a summary.
    let (rc, out, err) = output(f.cli(&["report"]));
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.lines().next().unwrap().contains("USER") && out.contains("LOCKED UNTIL"),
        "{out}"
    );
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}: {out}"))
            .to_string()
    };
    let words = |name: &str| line(name).split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        &words(&two.name)[1..5],
        [two.uid.to_string().as_str(), "yes", "2", "10"]
    );
    assert_eq!(&words(&plain.name)[2..5], ["no", "0", "-"]);
    assert!(
        line(&locked.name).contains(" UTC"),
        "locked until: {}",
        line(&locked.name)
    );
    assert!(line(&hidden.name).contains("no (!)"));
    assert!(
        out.contains(&format!("  {}: {}", hidden.name, hidden.home.display())),
        "{out}"
    );
    let summary = format!(
        "{} of {} accounts enrolled",
        r["enrolled"].as_u64().unwrap(),
        r["total"].as_u64().unwrap()
    );
    // Other tests create and remove users meanwhile: compare the shape, not the numbers.
    assert!(out.contains(" accounts enrolled (uid "), "{out} / {summary}");
    assert!(!out.contains("Codes are required"), "no enforce_after: {out}");

    // With enforce_after: the date, the days left, and who will be refused from it.
    std::fs::write(f.root.join("pam_totp.conf"), "enforce_after = \"2099-01-01\"\n").unwrap();
    let (rc, out, err) = output(f.cli(&["report"]));
    assert_eq!(rc, 0, "{err}");
    let days = (pam_totp_core::config::Date::parse("2099-01-01").unwrap().start_unix() - now()).div_ceil(86400);
    let tail = out.lines().last().unwrap();
    assert!(
        tail.starts_with(&format!(
            "Codes are required from 2099-01-01 (enforce_after; {days} days left). Not enrolled, so refused from then: "
        )),
        "{tail}"
    );
    assert!(tail.contains(&plain.name) && tail.contains(&hidden.name), "{tail}");
    assert!(!tail.contains(&two.name) && !tail.contains(&enrolled.name), "{tail}");
    let r = report_json(&f, &[]);
    assert_eq!(
        (r["enforce_after"].as_str(), r["days_left"].as_u64()),
        (Some("2099-01-01"), Some(days))
    );
}

#[test]
fn report_reads_only_and_is_for_root() {
    let f = Fixture::new();
    let u = TestUser::create();
    let missing = f.root.join("no-state");
    let mut c = std::process::Command::new(cli_path());
    c.env_remove("SUDO_UID")
        .arg("--config")
        .arg(f.root.join("pam_totp.conf"))
        .arg("--state-dir")
        .arg(&missing)
        .args(["report", "--json"]);
    let (rc, out, err) = output(c);
    assert_eq!(rc, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(user_in(&r, &u.name)["enrolled"], false);
    assert!(!missing.exists(), "the report created the state directory");
    assert!(!u.secret_dir().exists(), "nothing made in homes");

    let (rc, _, err) = output(f.cli_as(&u.name, &["report"]));
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("only root can run the report"), "{err}");
}

#[test]
fn report_lists_accounts_with_state_or_central_secrets_outside_the_uid_range_and_stale_state() {
    let f = Fixture::new();
    let secrets = f.secrets_dir();
    std::fs::write(
        f.root.join("pam_totp.conf"),
        format!("secret = \"{}/%u.toml\"\n", secrets.display()),
    )
    .unwrap();
    std::fs::create_dir(f.state_dir()).unwrap();
    std::fs::set_permissions(f.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let state = |name: &str, text: &str| {
        let p = f.state_dir().join(format!("{name}.state"));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    // `daemon` (uid 1) has state; `bin` (uid 2) a secret in the central directory.
    state("daemon", "version = 2\nfailures = 2\n");
    f.enroll_json("bin", &[]);
    assert!(secrets.join("bin.toml").exists());
    let gone = format!("pttgone{}", random_hex(3));
    state(&gone, "version = 2\n");

    let r = report_json(&f, &[]);
    let d = user_in(&r, "daemon");
    assert_eq!(
        (d["failures"].as_u64(), d["enrolled"].as_bool()),
        (Some(2), Some(false))
    );
    let b = user_in(&r, "bin");
    assert_eq!((b["enrolled"].as_bool(), b["devices"].as_u64()), (Some(true), Some(1)));
    assert_eq!(b["backup_codes_left"], 10);
    assert_eq!(r["stale_state"], serde_json::json!([gone]));
    assert!(r["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["user"] != gone.as_str()));
    assert!(
        r["users"].as_array().unwrap().iter().all(|u| u["user"] != "sys"),
        "uid 3 has neither: not listed without --all-users"
    );
    let (_, out, _) = output(f.cli(&["report"]));
    assert!(
        out.contains(&format!(
            "no longer exist (in {}; remove them by hand): {gone}",
            f.state_dir().display()
        )),
        "{out}"
    );

    let all = report_json(&f, &["--all-users"]);
    assert!(all["uid_range"].is_null());
    user_in(&all, "sys");
    user_in(&all, "root");
}

/// A copy of /etc/security whose pam_totp.conf is `conf`: under sudo pam-totp refuses
/// --config, so the test's settings reach it as the system file, in a mount namespace.
fn private_etc_security(f: &Fixture, conf: &str) -> PathBuf {
    let d = f.root.join("etc-security");
    run("cp", &["-a", "/etc/security", d.to_str().unwrap()]);
    std::fs::write(d.join("pam_totp.conf"), conf).unwrap();
    std::fs::set_permissions(d.join("pam_totp.conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
    d
}

#[test]
fn a_helpdesk_sudo_rule_unlocks_and_resets_users_but_not_root_or_protected_groups() {
    let f = Fixture::new();
    f.simple("svc", "max_failures=2 lockout=600");
    // Groups first: removed after their members.
    let protected = TestGroup::create();
    let helpdesk_group = TestGroup::create();
    let helpdesk = TestUser::create();
    helpdesk_group.add(&helpdesk.name);
    let victim = TestUser::create();
    let admin = TestUser::create();
    protected.add(&admin.name);
    let primary = TestUser::create_with(&["--gid", &protected.name]);

    let vj = f.enroll_json(&victim.name, &[]);
    let vkey = vj["secret"].as_str().unwrap();
    for _ in 0..2 {
        f.auth("svc", &victim.name, &[&wrong_code(vkey)]);
    }
    for u in [&admin, &primary] {
        f.enroll_json(&u.name, &[]);
    }
    let status = |u: &str| {
        let (_, out, _) = output(f.cli(&["status", "--user", u, "--json"]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    assert_eq!(status(&victim.name)["locked"], true);

    let cli = cli_path();
    let cli = cli.to_str().unwrap();
    // The documented rule, for the built binary, plus enroll and backup-codes to show that
    // every command acting on another account applies the same limits.
    let (sudoers, sudoers_dst) = private_sudoers(
        &f,
        &format!(
            "Defaults:%{g} !lecture, !fqdn\n\
             %{g} ALL=(root) NOPASSWD: {cli} unlock --user *, {cli} reset --user *, {cli} enroll *, {cli} backup-codes *\n",
            g = helpdesk_group.name
        ),
    );
    let security = private_etc_security(
        &f,
        &format!(
            "state_dir = \"{}\"\nprotected_groups = [\"root\", \"sudo\", \"wheel\", \"{}\"]\n",
            f.state_dir().display(),
            protected.name
        ),
    );
    let log = LogSink::new(&f);
    let sudo = |args: &[&str]| {
        let mut all = vec!["-u", helpdesk.name.as_str(), "--", "sudo", "-n", cli];
        all.extend(args);
        output(in_namespace_logged(
            &[(&sudoers, sudoers_dst), (&security, "/etc/security")],
            Some(&log.path),
            "runuser",
            &all,
        ))
    };
    let by = format!("by uid={} (sudo user={})", helpdesk.uid, helpdesk.name);

    // Allowed: unlock a normal user.
    let (rc, out, err) = sudo(&["unlock", "--user", &victim.name]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains(&format!("{} is unlocked", victim.name)), "{out}");
    assert_eq!(status(&victim.name)["locked"], false);
    let lines = log.lines(&[]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("unlock user={} {by}", victim.name))),
        "logged who did it: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("pam-totp["))
            .all(|l| l.starts_with("<85>")),
        "authpriv.notice: {lines:?}"
    );

    // Refused: root, a supplementary and a primary member of a protected group.
    let refused = |args: &[&str], want: &str| {
        let (rc, out, err) = sudo(args);
        assert_eq!(rc, 1, "{args:?}: {out} {err}");
        assert!(
            err.starts_with("pam-totp: refusing to ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    };
    refused(
        &["unlock", "--user", "root"],
        "refusing to unlock root: it is the root account (uid 0)",
    );
    refused(
        &["unlock", "--user", &admin.name],
        &format!("{} is a member of the protected group {}", admin.name, protected.name),
    );
    refused(
        &["reset", "--user", &primary.name],
        &format!(
            "refusing to reset {}: {} is a member of the protected group {}",
            primary.name, primary.name, protected.name
        ),
    );
    assert!(primary.secret_path().exists(), "not reset");
    refused(
        &["enroll", "--json", "--force", "--user", &admin.name],
        "refusing to enroll",
    );
    refused(&["enroll", "--json"], "refusing to enroll root: it is the root account");
    refused(
        &["backup-codes", "--regenerate", "--user", &primary.name],
        "refusing to change the backup codes of",
    );
    let lines = log.lines(&[]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("refused to unlock user=root {by}: it is the root account"))),
        "refusals are logged: {lines:?}"
    );

    // --state-dir and --config stay refused.
    let elsewhere = f.root.join("elsewhere");
    let (rc, _, err) = sudo(&[
        "unlock",
        "--user",
        &victim.name,
        "--state-dir",
        elsewhere.to_str().unwrap(),
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("pam-totp: --state-dir is refused under sudo"), "{err}");
    assert!(!elsewhere.exists());

    // Allowed: reset a normal user; logged with who did it.
    let (rc, out, err) = sudo(&["reset", "--user", &victim.name]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("must run `pam-totp enroll` again"), "{out}");
    assert!(!victim.secret_path().exists());
    let lines = log.lines(&[]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("reset user={}: secret and state removed {by}", victim.name))),
        "{lines:?}"
    );

    // Root itself (no sudo) may still do all of it.
    let (rc, _, err) = output(f.cli(&["unlock", "--user", &admin.name]));
    assert_eq!(rc, 0, "{err}");
}

/// The codes on a page written by `--backup-codes-file` / `--output`.
fn codes_in(page: &str) -> Vec<String> {
    let mut codes: Vec<(u32, String)> = Vec::new();
    for line in page.lines() {
        for cell in line.split("[ ]").skip(1) {
            let mut w = cell.split_whitespace();
            let n: u32 = w.next().unwrap().trim_end_matches('.').parse().unwrap();
            codes.push((n, w.next().unwrap().to_string()));
        }
    }
    codes.sort();
    codes.into_iter().map(|(_, c)| c).collect()
}

fn assert_private_and_owned(path: &Path, u: &TestUser) {
    let md = std::fs::symlink_metadata(path).unwrap();
    assert!(md.is_file());
    assert_eq!(md.mode() & 0o7777, 0o600, "{}", path.display());
    assert_eq!((md.uid(), md.gid()), (u.uid, u.gid), "owned by the user");
}

#[test]
fn enroll_writes_backup_codes_to_a_new_private_file_of_the_user_and_they_work() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let path = u.home.join("backup-codes.txt");
    let (rc, out, err) = output(f.cli(&[
        "enroll",
        "--user",
        &u.name,
        "--no-confirm",
        "--qr",
        "none",
        "--backup-codes-file",
        path.to_str().unwrap(),
    ]));
    assert_eq!(rc, 0, "{err}");
    assert_private_and_owned(&path, &u);
    let page = std::fs::read_to_string(&path).unwrap();
    let codes = codes_in(&page);
    for c in &codes {
        register_secret(c);
    }
    assert_eq!(codes.len(), 10, "{page}");
    let host = pam_totp_core::otp::enroll::host_name();
    assert!(page.contains(&format!("Host:     {host}\n")), "{page}");
    assert!(page.contains(&format!("User:     {}\n", u.name)), "{page}");
    assert!(page.contains("Created:  ") && page.contains(" UTC\n"), "{page}");
    assert!(
        page.contains("Each code works once") && page.contains("xxxxx-xxxxx"),
        "{page}"
    );
    assert!(page.contains("pam-totp backup-codes --regenerate"), "{page}");
    assert!(
        codes.iter().all(|c| !out.contains(c.as_str())),
        "not on the terminal: {out}"
    );
    assert!(
        out.contains(&format!("10 backup codes written to {}", path.display())),
        "{out}"
    );

    // A code from the file is accepted by the module, once.
    assert_eq!(f.auth("svc", &u.name, &[&codes[7]]).rc, PAM_SUCCESS);
    assert_eq!(f.auth("svc", &u.name, &[&codes[7]]).rc, PAM_AUTH_ERR);

    // --json: the codes are in the JSON too, and name the file.
    let v = TestUser::create();
    let vpath = v.home.join("codes.txt");
    let j = f.enroll_json(&v.name, &["--backup-codes-file", vpath.to_str().unwrap()]);
    assert_eq!(j["backup_codes_file"], vpath.to_str().unwrap());
    let from_file = codes_in(&std::fs::read_to_string(&vpath).unwrap());
    let in_json: Vec<String> = j["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(from_file, in_json);
    assert_private_and_owned(&vpath, &v);
    assert_eq!(f.auth("svc", &v.name, &[&from_file[0]]).rc, PAM_SUCCESS);
}

#[test]
fn a_backup_codes_file_is_never_written_over_a_file_or_through_a_symlink_and_then_nothing_is_saved() {
    let f = Fixture::new();
    let u = TestUser::create();
    let enroll_to = |path: &Path| {
        output(f.cli(&[
            "enroll",
            "--user",
            &u.name,
            "--json",
            "--backup-codes-file",
            path.to_str().unwrap(),
        ]))
    };
    let existing = u.home.join("precious.txt");
    std::fs::write(&existing, "precious\n").unwrap();
    let (rc, out, err) = enroll_to(&existing);
    assert_eq!(rc, 1, "{out}");
    assert!(
        err.contains("already exists") && err.contains("nothing was saved"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "precious\n", "untouched");
    assert!(!u.secret_path().exists(), "not enrolled");

    let target = f.root.join("target.txt");
    std::fs::write(&target, "root's\n").unwrap();
    let link = u.home.join("link.txt");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (rc, _, err) = enroll_to(&link);
    assert_eq!(rc, 1);
    assert!(err.contains("is a symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's\n");
    let dangling = u.home.join("dangling.txt");
    let nowhere = f.root.join("created-through-a-link");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    let (rc, _, err) = enroll_to(&dangling);
    assert_eq!(rc, 1);
    assert!(err.contains("is a symbolic link"), "{err}");
    assert!(!nowhere.exists(), "nothing created through the link");

    // Root acting for the user writes as the user: not where only root could.
    let (rc, _, err) = enroll_to(&f.root.join("codes.txt"));
    assert_eq!(rc, 1);
    assert!(
        err.contains(&format!("as {} (the file is created with their identity", u.name)),
        "{err}"
    );
    assert!(!f.root.join("codes.txt").exists());
    assert!(!u.secret_path().exists(), "still not enrolled");
    let leftovers: Vec<_> = std::fs::read_dir(&u.home)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.') && !["precious.txt", "link.txt", "dangling.txt"].contains(&n.as_str()))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // --add keeps the backup codes: it writes none.
    let (rc, _, err) = output(f.cli(&["enroll", "--user", &u.name, "--add", "--backup-codes-file", "/tmp/x"]));
    assert_eq!(rc, 2, "usage error: {err}");
}

#[test]
fn backup_codes_regenerate_output_writes_a_new_file_and_the_old_codes_stop_working() {
    let f = Fixture::new();
    f.simple("svc", "");
    let u = TestUser::create();
    let j = f.enroll_json(&u.name, &[]);
    let old: Vec<String> = j["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();

    // An existing file: refused, and nothing changed (the old codes still work).
    let existing = u.home.join("codes.txt");
    std::fs::write(&existing, "keep\n").unwrap();
    let before = std::fs::read(u.secret_path()).unwrap();
    let (rc, _, err) = output(f.cli(&[
        "backup-codes",
        "--regenerate",
        "--user",
        &u.name,
        "--output",
        existing.to_str().unwrap(),
    ]));
    assert_eq!(rc, 1);
    assert!(
        err.contains("already exists") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(std::fs::read(u.secret_path()).unwrap(), before, "secret file untouched");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep\n");

    let path = u.home.join("new-codes.txt");
    let (rc, out, err) = output(f.cli(&[
        "backup-codes",
        "--regenerate",
        "--user",
        &u.name,
        "--output",
        path.to_str().unwrap(),
    ]));
    assert_eq!(rc, 0, "{err}");
    assert_private_and_owned(&path, &u);
    let new = codes_in(&std::fs::read_to_string(&path).unwrap());
    for c in &new {
        register_secret(c);
    }
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !out.contains(c.as_str())), "{out}");
    assert!(out.contains(&format!("written to {}", path.display())), "{out}");
    assert_eq!(
        f.auth("svc", &u.name, &[&old[0]]).rc,
        PAM_AUTH_ERR,
        "old codes stop working"
    );
    assert_eq!(f.auth("svc", &u.name, &[&new[9]]).rc, PAM_SUCCESS);

    // The user for themselves (no root involved): their own file.
    let mine = u.home.join("mine.txt");
    let (rc, _, err) = output(f.cli_as(
        &u.name,
        &[
            "backup-codes",
            "--regenerate",
            "--output",
            mine.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(rc, 0, "{err}");
    assert_private_and_owned(&mine, &u);

    let (rc, _, err) = output(f.cli(&["backup-codes", "--user", &u.name, "--output", "/tmp/x"]));
    assert_eq!(rc, 2, "--output needs --regenerate: {err}");
}

/// A fleet of two hosts whose `protected_groups` differ: host A protects its admins' group,
/// host B (its help desk) does not. `unlock` and `reset` act on every host, so the
/// protection must be the fleet's: once host A has written the admin's document (a login,
/// here two wrong codes that lock them out), host B's help desk refuses to unlock or reset
/// them. Before the fix B's help desk lifted the lockout on A too. An ordinary user is still
/// unlocked.
#[test]
fn a_helpdesk_on_one_host_cannot_unlock_or_reset_an_account_another_host_protects() {
    use pam_totp_tests::fleet::{Etcd, Stated};
    let etcd = Etcd::single();
    let (a, b) = (Fixture::new(), Fixture::new());
    a.simple("svc", "max_failures=2 lockout=600");
    b.simple("svc", "max_failures=2 lockout=600");
    let admins = TestGroup::create();
    let helpdesk_group = TestGroup::create();
    let helpdesk = TestUser::create();
    helpdesk_group.add(&helpdesk.name);
    let admin = TestUser::create();
    admins.add(&admin.name);
    let victim = TestUser::create();
    let ns = format!("t{}", random_hex(4));
    let table = Stated::fleet_table(&etcd, &ns, 1000);
    let sa = Stated::start(
        &a,
        &format!(
            "protected_groups = [\"root\", \"sudo\", \"wheel\", \"{}\"]",
            admins.name
        ),
        &table,
    );
    let sb = Stated::start(&b, "", &table);
    let mut keys = vec![];
    for u in [&admin, &victim] {
        let key = random_key_b32();
        u.enroll(&key, "");
        for _ in 0..2 {
            assert_eq!(a.auth("svc", &u.name, &[&wrong_code(&key)]).rc, PAM_AUTH_ERR);
        }
        keys.push(key);
    }
    let cli = cli_path();
    let cli = cli.to_str().unwrap();
    let (sudoers, sudoers_dst) = private_sudoers(
        &b,
        &format!(
            "Defaults:%{g} !lecture, !fqdn\n%{g} ALL=(root) NOPASSWD: {cli} unlock --user *, {cli} reset --user *\n",
            g = helpdesk_group.name
        ),
    );
    // Host B's pam_totp.conf as its system file (sudo refuses --config).
    let security = private_etc_security(&b, &std::fs::read_to_string(&sb.config).unwrap());
    let sudo = |args: &[&str]| {
        let mut all = vec!["-u", helpdesk.name.as_str(), "--", "sudo", "-n", cli];
        all.extend(args);
        output(in_namespace(
            &[(&sudoers, sudoers_dst), (&security, "/etc/security")],
            "runuser",
            &all,
        ))
    };
    for cmd in ["unlock", "reset"] {
        let (rc, out, err) = sudo(&[cmd, "--user", &admin.name]);
        assert_eq!(rc, 1, "{cmd}: {out} {err}");
        assert!(
            err.contains(&format!(
                "refusing to {cmd} {}: {} is protected on another host of the fleet",
                admin.name, admin.name
            )),
            "{cmd}: {err}"
        );
    }
    assert!(admin.secret_path().exists(), "not reset");
    let k = format!("pam-totp/v1/{ns}/users/{}", admin.name);
    let doc = String::from_utf8_lossy(&etcd.etcdctl(&["get", &k]).stdout).into_owned();
    assert!(doc.contains("\n# protected\n"), "host A marked its admin: {doc}");
    let r = a.auth("svc", &admin.name, &[&code_now(&keys[0])]);
    assert_eq!(r.rc, PAM_AUTH_ERR, "still locked out on A: {:?}", r.logs);
    assert!(r.logged(&["locked out"]), "{:?}", r.logs);
    // The ordinary user: unlocked by B's help desk, on A too.
    let (rc, _, err) = sudo(&["unlock", "--user", &victim.name]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(a.auth("svc", &victim.name, &[&code_now(&keys[1])]).rc, PAM_SUCCESS);
    // Root itself (not the help desk) still acts on the admin, and the mark stays.
    let (rc, _, err) = output(b.cli(&["unlock", "--user", &admin.name]));
    assert_eq!(rc, 0, "{err}");
    let doc = String::from_utf8_lossy(&etcd.etcdctl(&["get", &k]).stdout).into_owned();
    assert!(doc.contains("\n# protected\n"), "the mark is sticky: {doc}");
    drop((sa, sb));
}
