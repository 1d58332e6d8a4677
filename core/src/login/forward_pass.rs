//! `forward_pass`: one answer carrying the password followed by the code, split on the line
//! before the password module, decided on the line after it.
//!
//! Owns: the split, and what the first line may decide (nothing is counted before the
//! password is verified). Never: counts a failure or enrolls on the first line.

use super::*;

/// Splits "password + code" into (password, code) by syntax alone — never by trying which
/// split holds a right code: the code must be decided on the one split whose password the
/// password module then checks, or someone with the password could test codes on a split
/// whose password part is wrong, where no failure is ever counted. The rule:
/// an answer ending in a backup code `xxxxx-xxxxx` (with its hyphen) splits there; else at
/// `digits` (the longest code length the user's authenticators use whose characters at the
/// end are all digits, else the shortest). Not supported here: backup codes typed without the
/// hyphen, and 8-digit imported scratch codes for users with 6-digit codes (ambiguous with a
/// password ending in digits) — they work where the code has its own prompt.
pub(super) fn forward_pass_split(answer: &str, digits: usize) -> (&str, &str) {
    let n = answer.len();
    let tail = |k: usize| (n >= k && answer.is_char_boundary(n - k)).then(|| answer.split_at(n - k));
    if let Some((pw, code)) = tail(11) {
        let b = code.as_bytes();
        let crockford = |c: &u8| c.is_ascii_alphanumeric() && !matches!(c.to_ascii_lowercase(), b'u');
        if b[5] == b'-' && b[..5].iter().all(crockford) && b[6..].iter().all(crockford) {
            return (pw, code);
        }
    }
    tail(digits).unwrap_or((answer, ""))
}

/// The code length to split at for `secret`'s authenticators: the longest one whose
/// characters at the end of `answer` are all digits, else the shortest.
pub(super) fn split_digits(answer: &str, secret: &SecretFile) -> usize {
    let mut sorted = secret.digit_counts();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let all_digits =
        |d: usize| answer.len() >= d && answer.as_bytes()[answer.len() - d..].iter().all(u8::is_ascii_digit);
    sorted
        .iter()
        .copied()
        .find(|&d| all_digits(d))
        .unwrap_or_else(|| sorted.iter().copied().min().unwrap_or(6))
}

/// The forward_pass line: one prompt for password and code, the same for every user
/// (enrolled or not, known or not, so the prompt tells nobody who has enrolled); the
/// password part becomes PAM_AUTHTOK for the password module after us (`use_first_pass`).
/// A right code is spent here. A wrong one is NOT counted — nobody has proven the password
/// yet, and counting here would let anyone who knows a user name lock them out — but kept
/// for the pam_totp line after the password module, which counts it. Nothing is shown to the
/// user here; that line says why a code was refused.
pub(super) fn split_line<H: Host>(
    cx: &mut Ctx<'_, H>,
    cfg: &Config,
    accounts: &dyn Accounts,
    clock: &dyn Clock,
    req: &Request<'_>,
) -> Outcome {
    // Leftovers of an earlier attempt in the same PAM handle must not reach the next line.
    let _ = cx.host.keep_code(None);
    let Ok(answer) = cx.host.prompt_hidden(FORWARD_PASS_PROMPT) else {
        cx.log(Level::Notice, "refused: conversation failed or was cancelled");
        return Outcome::ConversationFailed;
    };
    // Users without a code typed only their password.
    let whole = |cx: &mut Ctx<'_, H>, outcome: Outcome| {
        if cx.host.set_authtok(&answer).is_err() {
            cx.log(Level::Err, "refused: could not set PAM_AUTHTOK for forward_pass");
            return Outcome::ConversationFailed;
        }
        outcome
    };
    let Some(account) = account_for(cx, accounts, req) else {
        return whole(cx, Outcome::UnknownUser);
    };
    let path = key_file(cfg, &account);
    let secret = match load_secret(&path, &account) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = cx.host.keep_code(Some(KeptCode {
                user: account.name.clone(),
                at: clock.now(),
                verdict: Kept::NotEnrolled,
            }));
            let outcome = not_enrolled(cx, cfg, req, &account, &path, clock, Mode::Split);
            return whole(cx, outcome);
        }
        Err(e) => {
            cx.log(Level::Err, &format!("refused: secret file: {e}"));
            return whole(cx, Outcome::BadSecretFile);
        }
    };
    let store = match open_store(cx, cfg) {
        Ok(s) => s,
        Err(e) => {
            cx.log(Level::Err, &format!("refused: state directory: {e}"));
            return whole(cx, Outcome::StateUnavailable);
        }
    };
    mark_if_protected(cfg, accounts, &account, &store);
    let (pw_part, code_part) = forward_pass_split(&answer, split_digits(&answer, &secret));
    let rhost = req.rhost.filter(|h| !h.is_empty());
    let now = clock.now();
    let password = remembered_password(cfg, accounts, &account, req);
    let result = store.update(&account.name, |st| {
        let key = st.remember_key(&account.name, &secret, password.as_deref().map(|p| p.as_str()));
        let local = store.decides_locally();
        let (d, i) = decide(&policy(cfg, local), &secret, st, &[code_part], now, Count::Nothing);
        // A remembered host does not get past a lockout, nor is it honoured from this
        // host's own state while the fleet is down.
        let remembered = !matches!(d, Decision::LockedOut { .. })
            && !local
            && cfg.remember > 0
            && rhost.is_some_and(|h| st.is_remembered(h, req.service, &key, now, cfg.remember));
        if let (Decision::Accepted(_), true, Some(h)) = (&d, cfg.remember > 0, rhost) {
            st.remember(h, req.service, &key, now.saturating_add(cfg.remember), now);
        }
        (d, i, remembered)
    });
    note_degraded(cx, &store);
    let keep = |cx: &mut Ctx<'_, H>, verdict: Kept| {
        cx.host
            .keep_code(Some(KeptCode {
                user: account.name.clone(),
                at: now,
                verdict,
            }))
            .is_ok()
    };
    let (pw, outcome) = match result {
        Err(e) => {
            cx.log(Level::Err, &format!("refused: could not record the attempt: {e}"));
            return whole(cx, Outcome::StateUnavailable);
        }
        Ok((Decision::Accepted(how), _, _)) => {
            let what = describe_accepted(&how);
            let how = match how {
                How::Totp { .. } => Accepted::Totp,
                How::Hotp { .. } => Accepted::Hotp,
                How::Backup { .. } => Accepted::Backup,
            };
            if !keep(cx, Kept::Accepted(how)) {
                cx.log(
                    Level::Err,
                    "refused: could not keep the verdict for the next pam_totp line",
                );
                return Outcome::ConversationFailed;
            }
            cx.log(
                Level::Info,
                &format!("accepted {what} at the forward_pass line; the password is checked next"),
            );
            (pw_part, Outcome::Accepted(how))
        }
        Ok((_, _, true)) => {
            if !keep(cx, Kept::Accepted(Accepted::RememberedHost)) {
                cx.log(
                    Level::Err,
                    "refused: could not keep the verdict for the next pam_totp line",
                );
                return Outcome::ConversationFailed;
            }
            cx.log(Level::Info, "accepted: remembered host, no code needed (forward_pass)");
            return whole(cx, Outcome::Accepted(Accepted::RememberedHost));
        }
        Ok((d, _, false)) => {
            // The most likely split: the last `digits` characters are the code.
            let code = Zeroizing::new(code_part.to_string());
            if !keep(cx, Kept::Pending(code)) {
                cx.log(
                    Level::Err,
                    "refused: could not keep the code for the next pam_totp line",
                );
                return Outcome::ConversationFailed;
            }
            cx.log(
                Level::Info,
                "code not accepted at the forward_pass line; not counted until the password is verified (the next pam_totp line decides)",
            );
            let outcome = match d {
                Decision::Replay { .. } => Outcome::Replay,
                Decision::LockedOut { .. } => Outcome::LockedOut,
                _ => Outcome::WrongCode,
            };
            (pw_part, outcome)
        }
    };
    if cx.host.set_authtok(pw).is_err() {
        cx.log(Level::Err, "refused: could not set PAM_AUTHTOK for forward_pass");
        return Outcome::ConversationFailed;
    }
    outcome
}
