//! The decision: (policy, secret, state, answer, now) -> Outcome, with the state change.
//!
//! Owns: what counts as a right answer, a replay, a failure and a lockout. Pure: no I/O,
//! no clock; the caller runs it under the state lock and stores the state it leaves.

use crate::config::{MAX_SKEW_RANGE, MAX_WINDOW};
use crate::files::secret::{Kind, SecretFile};
use crate::otp;
use crate::otp::backup;
use crate::state::State;

/// The parts of the configuration the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// TOTP: time steps accepted either side of the current one (of the authenticator's
    /// clock offset, when it has one).
    pub window: u64,
    /// TOTP: seconds either side of this host's time searched for a wrong code, to say that
    /// a clock is off and to resynchronise an authenticator (0 = off).
    pub skew_range: u64,
    /// HOTP: counters accepted from the next expected one on (presses not sent to us).
    pub hotp_window: u64,
    pub max_failures: u32,
    pub lockout: u64,
    /// Only time-based codes may be accepted: the decision is made on this host's own state
    /// because the fleet store is down (`store_unavailable = "local"`). A backup code is
    /// good once in the whole fleet, and an HOTP code until a later one is used: spent here
    /// alone, either would work again on every other host, so they wait for the fleet. A
    /// TOTP code spent here alone expires with its window.
    pub totp_only: bool,
}

/// How an accepted answer got in; `device` names the authenticator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    Totp { step: u64, device: String, clock: Offset },
    Hotp { counter: u64, device: String },
    Backup { left: usize },
}

/// A TOTP authenticator's clock offset (seconds it is ahead of this host; negative: behind)
/// before and after an accepted code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offset {
    pub was: i64,
    pub now: i64,
    /// Set by this code and the one seen before it, both out of the window.
    pub resynced: bool,
}

/// Seconds within which two codes out of the window must come to resynchronise.
pub const RESYNC_WITHIN: u64 = 300;
/// Codes are looked for out of the window only while fewer consecutive failures than this
/// came before: a user whose clock is off is told at once, while a run of guesses (failures
/// piling up where `max_failures` is high) neither pays for the search nor learns from it.
pub const SEARCHED_FAILURES: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accepted(How),
    /// A wrong or malformed answer; `locked_until` is set when this failure locked the user.
    Wrong {
        failures: u32,
        locked_until: Option<u64>,
    },
    /// A right code for a time step at or before the last accepted one, or a used backup
    /// code. Counts as a failure.
    Replay {
        backup: bool,
        locked_until: Option<u64>,
    },
    /// A wrong code that is authenticator `device`'s code for a time `offset` seconds from
    /// this host's (a whole number of its steps; negative: its clock is behind), outside the
    /// window. Counts as a failure. `before_guard`: a time before its last accepted code (a
    /// replayed code, or its clock was set back). `repeated`: that same code was seen out of
    /// the window before.
    Skewed {
        device: String,
        offset: i64,
        before_guard: bool,
        repeated: bool,
        failures: u32,
        locked_until: Option<u64>,
    },
    /// Locked out; the answer was not even looked at.
    LockedOut {
        until: u64,
    },
    /// A right backup code (`backup`) or HOTP code under [`Policy::totp_only`]: refused,
    /// nothing spent, no failure counted.
    NeedsFleet {
        backup: bool,
    },
}

/// Longest answer we look at; longer ones are wrong without further work.
pub const MAX_ANSWER_LEN: usize = 64;

/// Strips the spaces an app shows inside a code ("123 456") and surrounding whitespace.
/// Returns the digits if the answer is a TOTP code of the right length.
fn as_totp(answer: &str, digits: u32) -> Option<zeroize::Zeroizing<String>> {
    let mut s = zeroize::Zeroizing::new(String::with_capacity(8));
    for c in answer.chars() {
        match c {
            ' ' | '\t' => {}
            '0'..='9' => s.push(c),
            _ => return None,
        }
    }
    (s.len() == digits as usize).then_some(s)
}

/// Whether a wrong answer counts toward the lockout. The `forward_pass` line checks a code
/// before any password has been verified, so it never counts; the pam_totp line after the
/// password module does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Failures,
    Nothing,
}

/// Decides one answer (or, with `forward_pass`, a few candidate splittings of one answer;
/// the first that is accepted wins) and updates `state`. Returns the decision and the index
/// of the candidate it concerns. With [`Count::Nothing`] a refused answer leaves `state`
/// exactly as it was.
pub fn decide(
    policy: &Policy,
    secret: &SecretFile,
    state: &mut State,
    candidates: &[&str],
    now: u64,
    count: Count,
) -> (Decision, usize) {
    if state.is_locked(now) {
        return (
            Decision::LockedOut {
                until: state.locked_until,
            },
            0,
        );
    }
    let before = (count == Count::Nothing).then(|| state.clone());
    // Codes seen out of the window that no line can reach any more go, at every counted
    // decision (a wrong code too): a state so returns to the form older releases read.
    if count != Count::Nothing && state.devices.iter().any(|d| !d.seen.is_empty()) {
        let keys: Vec<(Vec<u8>, u64)> = secret
            .devices
            .iter()
            .map(|d| (d.guard_key().to_vec(), d.params.period()))
            .collect();
        state.prune_all_seen(&keys, |period| oldest_reachable(period, now));
    }
    // A version-1 state knew one (TOTP) authenticator: the first of the file.
    if let Some(first) = secret.devices.iter().find(|d| d.kind == Kind::Totp) {
        state.migrate_v1(&first.guard_key(), first.params.period(), &secret.backup_codes);
    }
    let mut replay = None;
    let mut skewed = None;
    for (i, answer) in candidates.iter().enumerate() {
        if answer.len() > MAX_ANSWER_LEN {
            continue;
        }
        match check_devices(policy, secret, state, answer, now) {
            Match::Fresh(_, How::Hotp { .. }) if policy.totp_only => {
                return (Decision::NeedsFleet { backup: false }, i);
            }
            Match::Fresh(d, how) => {
                let dev = &secret.devices[d];
                match &how {
                    How::Totp { step, clock, .. } => {
                        let key = dev.guard_key();
                        state.spend_step(&key, *step, dev.params.period(), now);
                        state.set_offset(&key, clock.now);
                        state.prune_seen(&key, oldest_reachable(dev.params.period(), now));
                    }
                    How::Hotp { counter, .. } => state.spend_counter(&dev.guard_key(), *counter, now),
                    How::Backup { .. } => {}
                }
                state.record_success(now);
                return (Decision::Accepted(how), i);
            }
            Match::Replay => {
                replay.get_or_insert((i, false));
                continue;
            }
            Match::Skewed(found) => {
                skewed.get_or_insert((i, found));
            }
            Match::None => {}
        }
        if let Some(canonical) = backup::normalize(answer) {
            if let Some(idx) = backup::find(&secret.backup_codes, &canonical) {
                let stored = &secret.backup_codes[idx];
                if state.backup_used(&canonical, stored) {
                    replay.get_or_insert((i, true));
                    continue;
                }
                if policy.totp_only {
                    return (Decision::NeedsFleet { backup: true }, i);
                }
                state.spend_backup(&canonical, stored);
                state.record_success(now);
                let left = state.backup_codes_left(&secret.backup_codes);
                return (Decision::Accepted(How::Backup { left }), i);
            }
        }
    }
    // A code out of the window is remembered (the first of two that resynchronise; and
    // never accepted later), unless it is already known or spent.
    if let (Some((_, f)), None) = (&skewed, &replay) {
        if !f.before_guard && !f.repeated {
            let dev = &secret.devices[f.device];
            let key = dev.guard_key();
            state.prune_seen(&key, oldest_reachable(dev.params.period(), now));
            state.note_seen(&key, f.time, now);
        }
    }
    let locked_until = match before {
        Some(b) => {
            *state = b;
            None
        }
        None => fail(policy, state, now),
    };
    match (replay, skewed) {
        (Some((i, backup)), _) => (Decision::Replay { backup, locked_until }, i),
        (None, Some((i, f))) => (
            Decision::Skewed {
                device: secret.devices[f.device].name.clone(),
                offset: f.offset,
                before_guard: f.before_guard,
                repeated: f.repeated,
                failures: state.failures,
                locked_until,
            },
            i,
        ),
        (None, None) => (
            Decision::Wrong {
                failures: state.failures,
                locked_until,
            },
            0,
        ),
    }
}

/// The start of the earliest time step any window of any line can still reach: a window is
/// centred at most the largest `skew_range` ([`MAX_SKEW_RANGE`]) before this host's time and
/// is at most [`MAX_WINDOW`] steps wide either side. Not this line's own `skew_range` and
/// `window`: the state is shared by every service and (with the fleet store) every host, each
/// with its own settings, and a code kept because a refusal told someone it is a code must
/// not be forgotten while any of them could still accept it. A code seen out of the window
/// for an earlier step can never be accepted, and is forgotten.
fn oldest_reachable(period: u64, now: u64) -> u64 {
    now.saturating_sub(MAX_SKEW_RANGE)
        .saturating_sub(MAX_WINDOW.saturating_add(1).saturating_mul(period))
}

enum Match {
    /// Device index and how: not spent yet.
    Fresh(usize, How),
    /// A right code for a step or counter already spent.
    Replay,
    /// No code in any window, but a TOTP authenticator's code for a time outside it.
    Skewed(OutOfWindow),
    None,
}

/// A right code found outside the window ([`Decision::Skewed`]).
struct OutOfWindow {
    device: usize,
    /// Start of its time step.
    time: u64,
    /// Seconds from this host's time (a whole number of steps).
    offset: i64,
    before_guard: bool,
    repeated: bool,
}

/// A TOTP authenticator's offset in whole time steps, within `skew_range`.
fn offset_steps(offset: i64, period: u64, skew_range: u64) -> i64 {
    let p = period as i64;
    let steps = offset.div_euclid(p) + i64::from(offset.rem_euclid(p) * 2 >= p);
    let max = (skew_range / period) as i64;
    steps.clamp(-max, max)
}

fn shift(step: u64, by: i64) -> u64 {
    if by >= 0 {
        step.saturating_add(by as u64)
    } else {
        step.saturating_sub(by.unsigned_abs())
    }
}

/// Checks `answer` against every authenticator — all of them, so the time taken does not
/// tell which one (if any) matched. The first fresh match (in file order) wins.
fn check_devices(policy: &Policy, secret: &SecretFile, state: &State, answer: &str, now: u64) -> Match {
    let mut fresh = None;
    let mut replay = false;
    for (d, dev) in secret.devices.iter().enumerate() {
        let Some(code) = as_totp(answer, dev.params.digits()) else {
            continue;
        };
        let guard = state.device(&state.device_id(&dev.guard_key()));
        match dev.kind {
            Kind::Totp => {
                let Some(value) = otp::code_value(&code, dev.params.digits()) else {
                    continue;
                };
                let keyed = otp::Keyed::new(&dev.key, dev.params.algorithm(), dev.params.digits());
                let period = dev.params.period();
                let now_step = dev.params.step_at(now);
                // The window is centred on the authenticator's clock offset, if it has one.
                let was = guard.map_or(0, |g| g.offset);
                let k = offset_steps(was, period, policy.skew_range);
                let center = shift(now_step, k);
                let (lo, hi) = (
                    center.saturating_sub(policy.window),
                    center.saturating_add(policy.window),
                );
                if let Some(step) = keyed.find(value, lo, hi, None) {
                    let time = step.saturating_mul(period);
                    // The replay guard: each time step is accepted once, and never one older
                    // than the newest accepted (an eavesdropped earlier code stays dead). Kept
                    // as a time, so a changed period cannot bring back a code already seen.
                    // A code seen before out of the window is never accepted: whoever was
                    // told by its refusal that it is a code must not be able to spend it.
                    let seen = guard.is_some_and(|g| g.seen.iter().any(|s| s.time == time));
                    if guard.is_some_and(|g| time < g.not_before) || seen {
                        replay = true;
                    } else if fresh.is_none() {
                        // An authenticator with an offset is followed as it drifts: the
                        // window moves to where its code was found (never wider).
                        let now_offset = if was == 0 {
                            0
                        } else {
                            (step as i64 - now_step as i64).saturating_mul(period as i64)
                        };
                        fresh = Some((
                            d,
                            How::Totp {
                                step,
                                device: dev.name.clone(),
                                clock: Offset {
                                    was,
                                    now: now_offset,
                                    resynced: false,
                                },
                            },
                        ));
                    }
                }
            }
            Kind::Hotp => {
                // The next counter that may be accepted: the file's start or the state's,
                // whichever is later (a user can move their file forward, never back).
                let next = dev.counter.max(guard.map_or(0, |g| g.counter));
                let (alg, digits) = (dev.params.algorithm(), dev.params.digits());
                // Counters stay below MAX_COUNTER + window, so the state always fits TOML.
                let last = next
                    .saturating_add(policy.hotp_window.saturating_sub(1))
                    .min(crate::files::secret::MAX_COUNTER + crate::config::MAX_HOTP_WINDOW);
                if let Some(c) = otp::find_counter(&dev.key, &code, next, last, alg, digits) {
                    if fresh.is_none() {
                        fresh = Some((
                            d,
                            How::Hotp {
                                counter: c,
                                device: dev.name.clone(),
                            },
                        ));
                    }
                } else if next > 0 {
                    // Only to tell a replay from a typo: the counters just spent.
                    let lo = next.saturating_sub(policy.hotp_window.max(1));
                    if otp::find_counter(&dev.key, &code, lo, next - 1, alg, digits).is_some() {
                        replay = true;
                    }
                }
            }
        }
    }
    match (fresh, replay) {
        (Some((d, how)), _) => Match::Fresh(d, how),
        (None, true) => Match::Replay,
        (None, false) if state.failures < SEARCHED_FAILURES => out_of_window(policy, secret, state, answer, now),
        (None, false) => Match::None,
    }
}

/// No authenticator has the code in its window: is it one's code for a time within
/// `skew_range` of this host's, outside the window? Every TOTP authenticator's candidates
/// are computed and compared (in constant time), so the time taken tells nothing of which.
/// A fresh one that agrees, within a step, on the offset of a code seen out of the window
/// in the last [`RESYNC_WITHIN`] seconds (for an earlier step) resynchronises it: accepted,
/// and its offset is set.
fn out_of_window(policy: &Policy, secret: &SecretFile, state: &State, answer: &str, now: u64) -> Match {
    let mut found: Option<OutOfWindow> = None;
    for (d, dev) in secret.devices.iter().enumerate() {
        let period = dev.params.period();
        let range = policy.skew_range / period;
        if dev.kind != Kind::Totp || range == 0 {
            continue;
        }
        let Some(value) = as_totp(answer, dev.params.digits()).and_then(|c| otp::code_value(&c, dev.params.digits()))
        else {
            continue;
        };
        let guard = state.device(&state.device_id(&dev.guard_key()));
        let keyed = otp::Keyed::new(&dev.key, dev.params.algorithm(), dev.params.digits());
        let now_step = dev.params.step_at(now);
        let center = shift(
            now_step,
            offset_steps(guard.map_or(0, |g| g.offset), period, policy.skew_range),
        );
        let window = (
            center.saturating_sub(policy.window),
            center.saturating_add(policy.window),
        );
        let (lo, hi) = (now_step.saturating_sub(range), now_step.saturating_add(range));
        let Some(step) = keyed.find(value, lo, hi, Some(window)) else {
            continue;
        };
        if found.is_some() {
            continue;
        }
        let time = step.saturating_mul(period);
        let offset = (step as i64 - now_step as i64).saturating_mul(period as i64);
        found = Some(OutOfWindow {
            device: d,
            time,
            offset,
            before_guard: guard.is_some_and(|g| time < g.not_before),
            repeated: guard.is_some_and(|g| g.seen.iter().any(|s| s.time == time)),
        });
    }
    let Some(f) = found else {
        return Match::None;
    };
    if f.before_guard || f.repeated {
        return Match::Skewed(f);
    }
    let dev = &secret.devices[f.device];
    let period = dev.params.period();
    let guard = state.device(&state.device_id(&dev.guard_key()));
    let agrees = guard.is_some_and(|g| {
        g.seen.iter().any(|s| {
            let then = (s.time / period) as i64 - dev.params.step_at(s.at) as i64;
            s.time < f.time
                && s.at <= now
                && now - s.at <= RESYNC_WITHIN
                && (then - f.offset / period as i64).abs() <= 1
        })
    });
    if !agrees {
        return Match::Skewed(f);
    }
    Match::Fresh(
        f.device,
        How::Totp {
            step: f.time / period,
            device: dev.name.clone(),
            clock: Offset {
                was: guard.map_or(0, |g| g.offset),
                now: f.offset,
                resynced: true,
            },
        },
    )
}

/// Counts a failure; at `max_failures` locks until `now + lockout` and starts counting
/// afresh for after the lockout.
pub(crate) fn fail(policy: &Policy, state: &mut State, now: u64) -> Option<u64> {
    state.failures = state.failures.saturating_add(1);
    if state.failures >= policy.max_failures {
        state.failures = 0;
        state.locked_until = now.saturating_add(policy.lockout);
        Some(state.locked_until)
    } else {
        None
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "verify_red.rs"]
mod red;
