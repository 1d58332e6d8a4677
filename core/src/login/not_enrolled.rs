//! A user with no secret file: whether they were enrolled after all (the state's record),
//! `enforce_after`, `nullok`, and enrollment at login (`enroll_on_login`).
//!
//! Owns: every way past pam_totp without a code, each refused unless configured. Never:
//! answers "not enrolled" from this host's own state while the fleet is down; enrolls at a
//! login whose stack does not provably check the password first.

use super::*;
use crate::files::secret_file::KeyFile;

pub(super) fn not_enrolled<H: Host>(
    cx: &mut Ctx<'_, H>,
    cfg: &Config,
    req: &Request<'_>,
    account: &Account,
    path: &KeyFile,
    clock: &dyn Clock,
    mode: Mode,
) -> Outcome {
    // On the forward_pass line nobody has proven the password yet: say nothing to the user
    // (the line after the password module repeats the decision and says it); neither line of
    // a forward_pass stack enrolls.
    let split_line = mode == Mode::Split;
    // A user pam_totp has seen enrolled is never "not enrolled" again because the file is
    // gone: renaming it would otherwise undo a lockout under nullok, and a home that is not
    // mounted yet (pam_mount, ecryptfs) would skip the code. Only `pam-totp reset` clears it.
    let opened = open_store(cx, cfg);
    let recorded = opened.as_ref().map_err(|e| e.to_string()).and_then(|st| {
        let r = st.peek(&account.name).map_err(|e| e.to_string());
        note_degraded(cx, st);
        // Whether this user enrolled decides whether a code is asked at all (nullok,
        // enforce_after, enroll_on_login): never answered from this host's own state while
        // the fleet is down. This host may never have seen an enrollment made elsewhere;
        // unknown refuses.
        match (r, st.degraded()) {
            (Ok(_), Some(why)) => Err(format!(
                "whether this user enrolled is the fleet's to say, and the fleet store is unavailable ({why})"
            )),
            (r, _) => r,
        }
    });
    match recorded {
        Err(e) => {
            cx.log(
                Level::Err,
                &format!("refused: no secret file, and the state cannot be read: {e}"),
            );
            explain_refusal(cx, req, split_line, STATE_UNAVAILABLE);
            return Outcome::StateUnavailable;
        }
        Ok(st) if st.enrolled > 0 => {
            explain_refusal(cx, req, split_line, KEYS_MISSING);
            cx.log(
                Level::Err,
                &format!(
                    "refused: {} is missing but this user enrolled on {}; if the secret is really gone, `pam-totp reset --user {}` lets them enroll again",
                    path.display(),
                    Date::from_unix(st.enrolled),
                    log_quote(&account.name)
                ),
            );
            return Outcome::SecretMissing;
        }
        Ok(_) => {}
    }
    let now = clock.now();
    if let Some(date) = cfg.enforce_after {
        if Date::from_unix(now) < date {
            if !split_line {
                cx.host.info_msg(&format!(
                    "Two-factor sign-in becomes mandatory on {date}. Run `pam-totp enroll` to set it up now."
                ));
            }
            cx.log(
                Level::Notice,
                &format!("not enrolled; allowed until enforce_after={date}"),
            );
            note_no_vault(cx, cfg);
            return Outcome::NotEnrolledAllowed;
        }
    }
    if cfg.enroll_on_login && mode != Mode::Prompting {
        cx.log(
            Level::Notice,
            "enroll_on_login is not offered through a forward_pass stack (one answer carries the password and the code)",
        );
    } else if cfg.enroll_on_login {
        match password_gate(req) {
            Ok(()) => return enroll_at_login(cx, cfg, account, path, clock),
            // Anyone who knows the user name could otherwise enroll their own phone.
            Err(why) => cx.log(
                Level::Err,
                &format!("enroll_on_login not offered: {}", log_quote_long(&why)),
            ),
        }
    }
    if let Some(date) = cfg.enforce_after {
        cx.log(
            Level::Notice,
            &format!(
                "refused: not enrolled (no {}) and enforce_after={date} has passed",
                path.display()
            ),
        );
        explain_refusal(cx, req, split_line, NOT_ENROLLED);
        return Outcome::NotEnrolled;
    }
    if cfg.nullok {
        cx.log(Level::Info, "not enrolled; allowed by nullok");
        note_no_vault(cx, cfg);
        return Outcome::NotEnrolledAllowed;
    }
    cx.log(Level::Notice, &format!("refused: not enrolled (no {})", path.display()));
    explain_refusal(cx, req, split_line, NOT_ENROLLED);
    Outcome::NotEnrolled
}

/// Whether the service's auth stack (read from the root-owned PAM directory) provably stops
/// on a wrong password before every pam_totp line that checks codes: see
/// [`crate::pamstack::enrollment_gate_for`]. `Err` says why not, naming the line to change.
pub(super) fn password_gate(req: &Request<'_>) -> Result<(), String> {
    let Some(dir) = req.pam_dir else {
        return Err("no PAM directory to read the stack from".into());
    };
    let read = |name: &str| -> Option<String> {
        if name.contains('/') || name.starts_with('.') {
            return None;
        }
        crate::files::fs::read_config(&dir.join(name)).ok().flatten()
    };
    crate::pamstack::enrollment_gate_for(req.service, &read).map_err(String::from)
}

/// `enroll_on_login`: show a new secret (QR code, key, URI), ask for a code from the app
/// (three tries), save the secret with the same writer as `pam-totp enroll`, record the
/// accepted step, and show the backup codes once, behind a last prompt so that every client
/// displays them (OpenSSH only forwards messages together with a prompt).
pub(super) fn enroll_at_login<H: Host>(
    cx: &mut Ctx<'_, H>,
    cfg: &Config,
    account: &Account,
    path: &KeyFile,
    clock: &dyn Clock,
) -> Outcome {
    let refuse = |cx: &mut Ctx<'_, H>, why: String| {
        cx.log(Level::Err, &format!("refused: enrollment at login failed: {why}"));
        Outcome::NotEnrolled
    };
    let store = match open_store(cx, cfg) {
        Ok(s) => s,
        Err(e) => return refuse(cx, format!("state directory: {e}")),
    };
    // The state must be usable before anything is shown or written: the confirming code is
    // recorded there, and a secret saved without that record would be a half enrollment.
    match store.peek(&account.name) {
        Err(e) => return refuse(cx, format!("state: {e}")),
        // An enrollment kept on this host alone would be unknown to the fleet.
        Ok(_) if store.degraded().is_some() => {
            note_degraded(cx, &store);
            return refuse(cx, "the fleet store is unavailable".into());
        }
        Ok(st) if st.is_locked(clock.now()) => {
            cx.host.error_msg("Too many wrong verification codes. Try again later.");
            cx.log(Level::Notice, "refused: locked out (enrollment at login)");
            return Outcome::LockedOut;
        }
        Ok(_) => {}
    }
    // Nothing secret is shown before we know it can be saved.
    if let Err(e) = crate::files::secret_file::check_writable(path, account) {
        return refuse(cx, format!("cannot write the secret file: {e}"));
    }
    let Some(params) = crate::otp::Params::new(cfg.algorithm, cfg.digits, 30) else {
        return refuse(cx, "unsupported digits".into());
    };
    let issuer = crate::otp::enroll::default_issuer(cfg.issuer.as_deref());
    let label = crate::otp::enroll::default_label(&account.name);
    // The first authenticator is named as `pam-totp enroll` names one by default.
    let device = match crate::otp::enroll::new_device(
        crate::otp::enroll::DEFAULT_DEVICE_NAME,
        crate::files::secret::Kind::Totp,
        params,
        &issuer,
        &label,
        clock.now(),
    ) {
        Ok(d) => d,
        Err(e) => return refuse(cx, e.to_string()),
    };
    let (secret, codes) = match crate::otp::enroll::new_secret(device, crate::otp::enroll::DEFAULT_BACKUP_CODES) {
        Ok(s) => s,
        Err(e) => return refuse(cx, e.to_string()),
    };
    let device = &secret.devices[0];
    let uri = crate::otp::enroll::otpauth_uri(device);
    let b32 = crate::otp::encode_base32(&device.key);
    let qr = crate::otp::qr::render(&uri, crate::otp::qr::QrMode::Utf8, false).unwrap_or_default();
    let intro = zeroize::Zeroizing::new(format!(
        "Two-factor sign-in is required for this account and you have not set it up yet.\n\
         Scan this QR code with your authenticator app (Google Authenticator, Microsoft Authenticator, FreeOTP, ...):\n\n\
         {qr}\nOr add the key by hand: {}  (time-based, {}, {} digits, every 30 seconds)\nURI: {}\n",
        crate::otp::enroll::grouped(&b32).as_str(),
        params.algorithm().name(),
        params.digits(),
        uri.as_str()
    ));
    cx.host.info_msg(&intro);
    cx.log(Level::Notice, "not enrolled; enrollment at login offered");

    let mut matched = None;
    for tries_left in (0..3).rev() {
        let Ok(answer) = cx.host.prompt_hidden("Verification code from the app: ") else {
            cx.log(Level::Notice, "refused: enrollment at login cancelled");
            return Outcome::ConversationFailed;
        };
        let digits: zeroize::Zeroizing<String> =
            zeroize::Zeroizing::new(answer.chars().filter(|c| !c.is_whitespace()).collect());
        let now = clock.now();
        if digits.len() == params.digits() as usize {
            matched = crate::otp::find_step(&device.key, &digits, params.step_at(now), cfg.window, &params);
        }
        if matched.is_some() {
            break;
        }
        if tries_left > 0 {
            cx.host
                .error_msg("That code does not match. Codes change every 30 seconds: type the one shown now.");
        }
    }
    let Some(step) = matched else {
        cx.host.error_msg(
            "The code did not match three times; nothing was saved. Check that the phone sets its time automatically.",
        );
        cx.log(
            Level::Notice,
            "refused: enrollment at login not confirmed (3 wrong codes)",
        );
        return Outcome::WrongCode;
    };
    if let Err(e) = crate::files::secret_file::save_secret(path, account, &secret, false) {
        return refuse(cx, format!("could not save the secret: {e}"));
    }
    // The confirming code is spent like any accepted code.
    let now = clock.now();
    if let Err(e) = store.update(&account.name, |st| {
        st.spend_step(&device.guard_key(), step, params.period(), now);
        st.record_success(now);
    }) {
        return refuse(cx, format!("could not record the attempt: {e}"));
    }
    note_degraded(cx, &store);
    let list = zeroize::Zeroizing::new(format!(
        "Two-factor sign-in is set up. Backup codes (each works once, if you lose your phone; they are not shown again):\n\n{}",
        crate::otp::enroll::backup_code_lines(&codes).as_str()
    ));
    cx.host.info_msg(&list);
    // The answer does not matter; the prompt makes every client show the codes.
    let _ = cx
        .host
        .prompt_hidden("Press Enter once you have saved the backup codes: ");
    cx.log(
        Level::Notice,
        &format!(
            "enrolled at login: secret file {} written, {} backup codes issued",
            path.display(),
            codes.len()
        ),
    );
    Outcome::Accepted(Accepted::EnrolledAtLogin)
}
