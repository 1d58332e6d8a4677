use super::*;

fn no_file(_: &Path) -> Result<Option<String>, Error> {
    Ok(None)
}

#[test]
fn defaults_without_file_or_arguments() {
    assert_eq!(Config::load(&[], no_file).unwrap(), Config::default());
}

#[test]
fn every_option_parses_from_arguments() {
    let c = Config::load(
        &[
            "secret=/etc/pam-totp/%u.toml",
            "state_dir=/tmp/st",
            "window=3",
            "hotp_window=20",
            "max_failures=4",
            "lockout=60",
            "nullok",
            "enforce_after=2027-01-31",
            "enroll_on_login",
            "remember=3600",
            "prompt=Code please: ",
            "forward_pass",
            "debug",
        ],
        no_file,
    )
    .unwrap();
    assert_eq!(c.secret, "/etc/pam-totp/%u.toml");
    assert_eq!(c.state_dir, PathBuf::from("/tmp/st"));
    assert_eq!((c.window, c.max_failures, c.lockout, c.remember), (3, 4, 60, 3600));
    assert_eq!(c.hotp_window, 20);
    assert!(c.nullok && c.enroll_on_login && c.forward_pass && c.debug);
    assert_eq!(c.enforce_after.unwrap().to_string(), "2027-01-31");
    assert_eq!(c.prompt, "Code please: ");
}

#[test]
fn bad_arguments_are_errors() {
    for bad in [
        "bogus",
        "window",
        "window=",
        "window=-1",
        "window=11",
        "window=1x",
        "window= 1",
        "max_failures=0",
        "hotp_window=0",
        "hotp_window=101",
        "lockout=0",
        "lockout=99999999999999999999999",
        "nullok=1",
        "secret=relative/path",
        "secret=/x/%z",
        "secret=/x/",
        "state_dir=rel",
        "enforce_after=2027-02-30",
        "enforce_after=27-01-01",
        "enforce_after=2027-1-01",
        "prompt=",
        "remember=999999999",
        "config=relative",
        "secret",
        "protected_groups=root",
        "protected_groups",
    ] {
        let e = Config::load(&[bad], no_file)
            .err()
            .unwrap_or_else(|| panic!("accepted {bad}"));
        assert!(matches!(e, Error::Config(_)), "{bad}");
    }
}

#[test]
fn file_settings_apply_and_arguments_override_them() {
    let file = |_: &Path| {
        Ok(Some(
            "window = 2\nnullok = true\nlockout = 120\nprompt = \"OTP: \"\n".to_string(),
        ))
    };
    let c = Config::load(&["window=0"], file).unwrap();
    assert_eq!(c.window, 0);
    assert!(c.nullok);
    assert_eq!(c.lockout, 120);
    assert_eq!(c.prompt, "OTP: ");
}

#[test]
fn bad_file_settings_are_errors() {
    for text in [
        "window = \"2\"",
        "window = -2",
        "bogus = 1",
        "nullok = \"yes\"",
        "config = \"/x\"",
        "window = ",
        "secret = 5",
        "protected_groups = \"root\"",
        "protected_groups = [\"ro ot\"]",
        "protected_groups = [\"-x\"]",
        "protected_groups = [\"a:b\"]",
        "protected_groups = [\"\"]",
        "protected_groups = [1]",
    ] {
        let t = text.to_string();
        assert!(
            Config::load(&[], move |_: &Path| Ok(Some(t.clone()))).is_err(),
            "{text}"
        );
    }
}

#[test]
fn a_typo_names_the_option_and_what_it_expects_and_the_module_still_refuses() {
    let text = "# pam_totp.conf\nwindow = 2\nlockout = 5m\n\n[fleet]\ntimeout_ms = 2s\n".to_string();
    let t = text.clone();
    let e = Config::load(&[], move |_: &Path| Ok(Some(t.clone())))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 3: option `lockout`: `5m` is not a value it can read; it takes a whole number")
            && e.contains("e.g. `lockout = 300`"),
        "{e}"
    );
    // doctor: every problem, and the rest of the file applies.
    let t =
        "window = 2\nlockout = 5m\nmax_failures = 0\nbogus = 1\nnullok = true\n[fleet]\ntimeout_ms = 2s\n".to_string();
    let (cfg, problems) = Config::load_checked(&[], move |_: &Path| Ok(Some(t.clone()))).unwrap();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    let has = |what: &[&str]| problems.iter().any(|p| what.iter().all(|w| p.contains(w)));
    assert!(has(&["line 2: option `lockout`"]), "{problems:#?}");
    assert!(
        has(&["line 7: option `fleet.timeout_ms`", "e.g. `timeout_ms = 1500`"]),
        "{problems:#?}"
    );
    assert!(has(&["`max_failures`: must be between 1 and"]), "{problems:#?}");
    assert!(has(&["unknown option `bogus`"]), "{problems:#?}");
    assert_eq!(
        (cfg.window, cfg.lockout, cfg.max_failures, cfg.nullok),
        (2, 300, 6, true)
    );
    // A clean file: no problems, the same configuration as load.
    let t = "window = 3\n".to_string();
    let (cfg, problems) = Config::load_checked(&[], move |_: &Path| Ok(Some(t.clone()))).unwrap();
    assert!(problems.is_empty() && cfg.window == 3);
}

#[test]
fn protected_groups_are_a_list_in_the_file_only() {
    assert_eq!(Config::default().protected_groups, ["root", "sudo", "wheel"]);
    let file = |_: &Path| Ok(Some("protected_groups = [\"admins\", \"ops team\"]".to_string()));
    assert!(Config::load(&[], file).is_err(), "a space is not in a group name");
    let file = |_: &Path| Ok(Some("protected_groups = [\"admins\", \"wheel\"]".to_string()));
    assert_eq!(Config::load(&[], file).unwrap().protected_groups, ["admins", "wheel"]);
    let file = |_: &Path| Ok(Some("protected_groups = []".to_string()));
    assert!(Config::load(&[], file).unwrap().protected_groups.is_empty());
    let e = Config::load(&["protected_groups=admins"], no_file).unwrap_err();
    assert!(e.to_string().contains("only valid in pam_totp.conf"), "{e}");
}

#[test]
fn explicit_config_file_must_exist() {
    assert!(Config::load(&["config=/nonexistent/pam_totp.conf"], no_file).is_err());
    let seen = std::cell::RefCell::new(None);
    let c = Config::load(&["config=/x/y.conf"], |p: &Path| {
        *seen.borrow_mut() = Some(p.to_path_buf());
        Ok(Some("window = 4".into()))
    })
    .unwrap();
    assert_eq!(c.window, 4);
    assert_eq!(seen.into_inner().unwrap(), PathBuf::from("/x/y.conf"));
}

#[test]
fn templates_expand() {
    let h = Path::new("/home/bob");
    assert_eq!(
        expand_template("%h/.config/pam-totp/secret.toml", "bob", h),
        PathBuf::from("/home/bob/.config/pam-totp/secret.toml")
    );
    assert_eq!(
        expand_template("/etc/totp/%u-100%%.toml", "bob", h),
        PathBuf::from("/etc/totp/bob-100%.toml")
    );
}

#[test]
fn shipped_config_file_parses_as_is_and_with_every_example_uncommented() {
    let text = commented_config_file();
    // The defaults, but for what new installs set (keys in the vault).
    assert_eq!(
        Config::load(&[], |_: &Path| Ok(Some(text.clone()))).unwrap(),
        Config {
            key_store: KeyStore::Vault,
            ..Config::default()
        }
    );
    let uncommented: String = text
        .lines()
        .map(|l| {
            if (l.starts_with("#") && l.contains(" = ") && !l.starts_with("# ")) || l == "#[fleet]" {
                &l[1..]
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::load(&[], |_: &Path| Ok(Some(uncommented.clone()))).unwrap();
    assert_eq!(c.enforce_after.unwrap().to_string(), "2027-01-01");
    assert_eq!(c.issuer.as_deref(), Some("example.org"));
    let settings = uncommented
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
        .count();
    assert_eq!(settings, OPTIONS.len() - 1, "every option but config= is in the file");
}

#[test]
fn fleet_options_parse_and_the_fleet_table_is_for_the_file_only() {
    let c = Config::load(
        &["store=fleet", "fleet_socket=/run/x.sock", "store_unavailable=local"],
        no_file,
    )
    .unwrap();
    assert_eq!(c.store, StoreKind::Fleet);
    assert_eq!(c.fleet_socket, PathBuf::from("/run/x.sock"));
    assert_eq!(c.store_unavailable, Unavailable::Local);
    assert_eq!(Config::default().store, StoreKind::Local);
    assert_eq!(Config::default().store_unavailable, Unavailable::Deny);
    let file = |_: &Path| {
        Ok(Some(
            "store = \"fleet\"\n[fleet]\nendpoints = [\"https://etcd1:2379\", \"http://127.0.0.1:2379\", \"http://[::1]:2379\"]\nnamespace = \"prod-eu\"\nca_file = \"/etc/pam-totp/ca.pem\"\ncert_file = \"/etc/pam-totp/h.pem\"\nkey_file = \"/etc/pam-totp/h-key.pem\"\nvault_key_file = \"/etc/pam-totp/vault.keys\"\ntimeout_ms = 800\n"
                .to_string(),
        ))
    };
    let c = Config::load(&[], file).unwrap();
    assert_eq!(c.fleet.endpoints.len(), 3);
    assert_eq!(c.fleet.namespace, "prod-eu");
    assert_eq!(c.fleet.timeout_ms, 800);
    assert_eq!(c.fleet.key_file, Some(PathBuf::from("/etc/pam-totp/h-key.pem")));
    assert_eq!(c.fleet.vault_key_file, Some(PathBuf::from("/etc/pam-totp/vault.keys")));
    // Dotted keys are the same table.
    let dotted = |_: &Path| Ok(Some("fleet.namespace = \"x\"\n".to_string()));
    assert_eq!(Config::load(&[], dotted).unwrap().fleet.namespace, "x");
    for bad in [
        "store=remote",
        "store_unavailable=allow",
        "store_unavailable",
        "fleet_socket=relative.sock",
        "fleet.namespace=x",
        "fleet.endpoints=https://a:1",
        "fleet=1",
    ] {
        assert!(Config::load(&[bad], no_file).is_err(), "{bad}");
    }
    for text in [
        "fleet = 1",
        "[fleet]\nbogus = 1",
        "[fleet]\nendpoints = \"https://a:1\"",
        "[fleet]\nendpoints = [\"http://10.0.0.1:2379\"]",
        "[fleet]\nendpoints = [\"http://etcd.example.org:2379\"]",
        "[fleet]\nendpoints = [\"https://a\"]",
        "[fleet]\nendpoints = [\"https://a:0\"]",
        "[fleet]\nendpoints = [\"https://user@a:1\"]",
        "[fleet]\nendpoints = [\"https://a:1/path\"]",
        "[fleet]\nendpoints = [\"ftp://a:1\"]",
        "[fleet]\nendpoints = [1]",
        "[fleet]\nnamespace = \"a/b\"",
        "[fleet]\nnamespace = \"..\"",
        "[fleet]\ntimeout_ms = 5",
        "[fleet]\ntimeout_ms = 2000",
        "[fleet]\nca_file = \"relative.pem\"",
        "store = \"fleet \"",
    ] {
        let t = text.to_string();
        assert!(
            Config::load(&[], move |_: &Path| Ok(Some(t.clone()))).is_err(),
            "{text}"
        );
    }
    let many: Vec<String> = (0..17).map(|i| format!("\"https://e{i}:2379\"")).collect();
    let t = format!("[fleet]\nendpoints = [{}]", many.join(", "));
    assert!(Config::load(&[], move |_: &Path| Ok(Some(t.clone()))).is_err());
}

#[test]
fn dates_are_real_calendar_days() {
    assert_eq!(Date::parse("1970-01-01"), Some(Date(0)));
    assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
    assert!(Date::parse("2023-02-29").is_none());
    assert_eq!(Date::parse("2026-11-23").unwrap(), Date::from_unix(1795392000));
    assert_eq!(Date::parse("2026-11-23").unwrap().start_unix(), 1795392000);
}
