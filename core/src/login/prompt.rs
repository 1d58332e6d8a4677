//! The code prompt and the decision: a lockout or a remembered host checked first, the answer
//! asked for, the secret file checked again, the decision made and stored under the lock.
//!
//! Owns: the order prompt → re-check → decide → store. Never: accepts what it could not
//! record (the same code could be used again).

use super::*;

/// What [`check_and_prompt`] decides against.
/// The secret file after the prompt.
pub(super) enum Reload {
    /// The file read before the prompt is still in place.
    Unchanged,
    /// It changed: read again (`None`: it is gone).
    Changed(Option<SecretFile>),
}

pub(super) struct Prompting<'a> {
    pub(super) secret: &'a SecretFile,
    /// Checks the secret file again (after the prompt).
    pub(super) reload: &'a dyn Fn() -> Result<Reload, crate::error::Error>,
    pub(super) user: &'a str,
    /// See [`remembered_password`].
    pub(super) password: Option<&'a str>,
}

/// Asks for a code (or takes the one a forward_pass line kept) and decides it.
pub(super) fn check_and_prompt<H: Host, S: StateStore>(
    cx: &mut Ctx<'_, H>,
    cfg: &Config,
    p: &Prompting<'_>,
    store: &S,
    req: &Request<'_>,
    clock: &dyn Clock,
    pending: Option<Zeroizing<String>>,
) -> Outcome {
    let (secret, reload, user) = (p.secret, p.reload, p.user);
    // A lockout or remembered host is checked before prompting, from a snapshot; the
    // decision itself re-reads under the lock.
    let snapshot = match store.peek(user) {
        Ok(s) => s,
        Err(e) => {
            cx.log(Level::Err, &format!("refused: state: {e}"));
            explain_refusal(cx, req, false, STATE_UNAVAILABLE);
            return Outcome::StateUnavailable;
        }
    };
    let now = clock.now();
    if snapshot.is_locked(now) {
        let left = snapshot.locked_until - now;
        cx.host.error_msg(&format!(
            "Too many wrong verification codes. Try again in {}.",
            human_duration(left)
        ));
        cx.log(Level::Notice, &format!("refused: locked out for another {left} s"));
        return Outcome::LockedOut;
    }
    let rhost = req.rhost.filter(|h| !h.is_empty());
    // Whether a code is asked is never answered from this host's own state while the fleet
    // is down: a remembered host there may be one the fleet has since ended.
    if cfg.remember > 0 && pending.is_none() && !store.decides_locally() {
        if let Some(h) = rhost {
            let key = snapshot.remember_key(user, secret, p.password);
            if snapshot.is_remembered(h, req.service, &key, now, cfg.remember) {
                cx.log(Level::Info, "accepted: remembered host, no code asked");
                return Outcome::Accepted(Accepted::RememberedHost);
            }
        }
    }

    let was_kept = pending.is_some();
    let answer = match pending {
        Some(code) => code,
        None => match cx.host.prompt_hidden(&cfg.prompt) {
            Ok(a) => a,
            Err(_) => {
                cx.log(Level::Notice, "refused: conversation failed or was cancelled");
                return Outcome::ConversationFailed;
            }
        },
    };
    let fresh;
    // A code kept by the forward_pass line waited at no prompt: the file was just read.
    let secret = if was_kept {
        secret
    } else {
        match reload() {
            Ok(Reload::Unchanged) => secret,
            Ok(Reload::Changed(Some(s))) => {
                fresh = s;
                &fresh
            }
            Ok(Reload::Changed(None)) => {
                cx.log(
                    Level::Err,
                    "refused: the secret file disappeared while the code was asked for",
                );
                super::explain::explain_refusal(cx, req, false, KEYS_MISSING);
                return Outcome::SecretMissing;
            }
            Err(e) => {
                cx.log(Level::Err, &format!("refused: secret file: {e}"));
                super::explain::explain_refusal(cx, req, false, KEYS_UNUSABLE);
                return Outcome::BadSecretFile;
            }
        }
    };
    // The time is read again: the user may have taken a while to answer.
    let now = clock.now();
    let result = store.update(user, |st| {
        let (d, i) = decide(
            &policy(cfg, store.decides_locally()),
            secret,
            st,
            &[answer.as_str()],
            now,
            Count::Failures,
        );
        if let (Decision::Accepted(_), true, Some(h)) = (&d, cfg.remember > 0, rhost) {
            let key = st.remember_key(user, secret, p.password);
            st.remember(h, req.service, &key, now.saturating_add(cfg.remember), now);
        }
        (d, i)
    });
    let decision = match result {
        Ok((d, _)) => d,
        Err(e) => {
            // Nothing was recorded, so nothing may be accepted: the same code could
            // otherwise be used again.
            cx.log(Level::Err, &format!("refused: could not record the attempt: {e}"));
            super::explain::explain_refusal(cx, req, false, STATE_UNAVAILABLE);
            return Outcome::StateUnavailable;
        }
    };
    match decision {
        Decision::Accepted(how @ How::Totp { .. }) => {
            cx.log(Level::Info, &format!("accepted {}", describe_accepted(&how)));
            Outcome::Accepted(Accepted::Totp)
        }
        Decision::Accepted(how @ How::Hotp { .. }) => {
            cx.log(Level::Info, &format!("accepted {}", describe_accepted(&how)));
            Outcome::Accepted(Accepted::Hotp)
        }
        Decision::Accepted(How::Backup { left }) => {
            cx.host.info_msg(&format!(
                "Backup code accepted. {left} backup code{} left{}",
                if left == 1 { "" } else { "s" },
                if left <= 3 {
                    "; run `pam-totp backup-codes --regenerate` for a new set."
                } else {
                    "."
                }
            ));
            cx.log(Level::Notice, &format!("accepted backup code, {left} left"));
            Outcome::Accepted(Accepted::Backup)
        }
        Decision::Wrong { failures, locked_until } => {
            locked_message(cx, locked_until, now, "Wrong verification code.");
            match locked_until {
                Some(_) => cx.log(
                    Level::Notice,
                    &format!(
                        "refused: wrong code; locked out for {} s after {} consecutive failures",
                        cfg.lockout, cfg.max_failures
                    ),
                ),
                None => cx.log(
                    Level::Notice,
                    &format!("refused: wrong code ({failures} consecutive failures)"),
                ),
            }
            Outcome::WrongCode
        }
        Decision::Replay { backup, locked_until } => {
            let (msg, what) = if backup {
                ("That backup code has already been used.", "used backup code")
            } else {
                (
                    "That code has already been used. Wait for the next one.",
                    "replayed verification code",
                )
            };
            locked_message(cx, locked_until, now, msg);
            cx.log(
                Level::Notice,
                &format!(
                    "refused: {what}{}",
                    if locked_until.is_some() { "; locked out" } else { "" }
                ),
            );
            Outcome::Replay
        }
        Decision::Skewed {
            device,
            offset,
            before_guard,
            repeated,
            failures,
            locked_until,
        } => {
            locked_message(cx, locked_until, now, &clock_message(offset, before_guard));
            let what = match (before_guard, repeated) {
                (true, _) => "for a time before its last accepted code (a replayed code, or its clock was set back)",
                (false, true) => "seen out of the window before",
                (false, false) => "out of the window",
            };
            let counted = match locked_until {
                Some(_) => format!(
                    "locked out for {} s after {} consecutive failures",
                    cfg.lockout, cfg.max_failures
                ),
                None => format!("{failures} consecutive failures"),
            };
            cx.log(
                Level::Notice,
                &format!(
                    "refused: wrong code: the code of authenticator \"{}\" {what}; its clock, or this host's, is off: clock offset {} ({counted})",
                    log_name(&device),
                    signed_secs(offset)
                ),
            );
            Outcome::WrongCode
        }
        Decision::LockedOut { until } => {
            let left = until.saturating_sub(now);
            cx.host.error_msg(&format!(
                "Too many wrong verification codes. Try again in {}.",
                human_duration(left)
            ));
            cx.log(Level::Notice, &format!("refused: locked out for another {left} s"));
            Outcome::LockedOut
        }
        Decision::NeedsFleet { backup } => {
            let what = if backup {
                "backup code"
            } else {
                "counter-based (HOTP) code"
            };
            cx.host.error_msg(&format!(
                "The shared sign-in service is unreachable, so a {what} cannot be checked now. Use your authenticator app's code, or try again later."
            ));
            cx.log(
                Level::Notice,
                &format!("refused: a {what} while the fleet store is unavailable (decided on this host's own state, which takes time-based codes only); not spent"),
            );
            Outcome::StateUnavailable
        }
    }
}

/// What a user is told about a code of theirs for a time `offset` seconds from this host's.
pub(super) fn clock_message(offset: i64, before_guard: bool) -> String {
    let how_far = human_duration(offset.unsigned_abs());
    let way = if offset > 0 { "fast" } else { "slow" };
    if before_guard {
        format!(
            "Wrong verification code: it is for a time before the last code accepted. Your authenticator's clock (or this host's) looks about {how_far} {way}. Set it to the right time and use its next code."
        )
    } else {
        format!(
            "Wrong verification code: your authenticator's clock (or this host's) looks about {how_far} {way}. Set it to the right time, or enter its next code to have this host allow for it."
        )
    }
}

pub(super) fn locked_message<H: Host>(cx: &mut Ctx<'_, H>, locked_until: Option<u64>, now: u64, msg: &str) {
    match locked_until {
        Some(until) => cx.host.error_msg(&format!(
            "{msg} Too many wrong verification codes: try again in {}.",
            human_duration(until.saturating_sub(now))
        )),
        None => cx.host.error_msg(msg),
    }
}
