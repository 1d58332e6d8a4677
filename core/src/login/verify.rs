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
mod tests {
    use super::*;
    use crate::otp::{totp_at_step, Params};

    const KEY: &[u8] = b"12345678901234567890";
    const NOW: u64 = 1_700_000_000;
    const POLICY: Policy = Policy {
        window: 1,
        skew_range: 900,
        hotp_window: 10,
        max_failures: 6,
        lockout: 300,
        totp_only: false,
    };

    fn device(name: &str, kind: Kind, key: &[u8]) -> crate::files::secret::Device {
        crate::files::secret::Device {
            name: name.into(),
            kind,
            key: zeroize::Zeroizing::new(key.to_vec()),
            params: Params::DEFAULT,
            counter: 0,
            issuer: String::new(),
            label: String::new(),
            created: 0,
        }
    }

    fn secret(backup_codes: Vec<String>) -> SecretFile {
        SecretFile {
            devices: vec![device("phone", Kind::Totp, KEY)],
            backup_codes,
        }
    }

    fn code_at(t: u64) -> String {
        totp_at_step(KEY, Params::DEFAULT.step_at(t), &Params::DEFAULT).to_string()
    }

    fn run(s: &SecretFile, st: &mut State, answer: &str, now: u64) -> Decision {
        decide(&POLICY, s, st, &[answer], now, Count::Failures).0
    }

    #[test]
    fn right_code_is_accepted_and_recorded() {
        let s = secret(vec![]);
        let mut st = State::default();
        let d = run(&s, &mut st, &code_at(NOW), NOW);
        assert_eq!(
            d,
            Decision::Accepted(How::Totp {
                step: NOW / 30,
                device: "phone".into(),
                clock: Offset::default(),
            })
        );
        let dev = st.device_id(KEY);
        assert_eq!(st.device(&dev).unwrap().not_before, (NOW / 30 + 1) * 30);
        assert_eq!(st.last_success, NOW);
        assert_eq!(st.enrolled, NOW, "the first accepted code records the enrollment");
    }

    #[test]
    fn replayed_code_is_refused() {
        let s = secret(vec![]);
        let mut st = State::default();
        let c = code_at(NOW);
        assert!(matches!(run(&s, &mut st, &c, NOW), Decision::Accepted(_)));
        assert_eq!(
            run(&s, &mut st, &c, NOW + 1),
            Decision::Replay {
                backup: false,
                locked_until: None
            }
        );
        assert_eq!(st.failures, 1, "a replay counts as a failure");
    }

    #[test]
    fn earlier_step_after_a_later_one_is_refused() {
        let s = secret(vec![]);
        let mut st = State::default();
        assert!(
            matches!(run(&s, &mut st, &code_at(NOW + 30), NOW), Decision::Accepted(_)),
            "next step within skew window"
        );
        assert!(matches!(run(&s, &mut st, &code_at(NOW), NOW), Decision::Replay { .. }));
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW - 30), NOW),
            Decision::Replay { .. }
        ));
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW + 60), NOW + 30),
            Decision::Accepted(_)
        ));
    }

    #[test]
    fn codes_outside_the_window_are_refused() {
        let s = secret(vec![]);
        let mut st = keyed();
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW + 60), NOW),
            Decision::Skewed {
                offset: 60,
                failures: 1,
                ..
            }
        ));
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW - 60), NOW),
            Decision::Skewed {
                offset: -60,
                failures: 2,
                ..
            }
        ));
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW + 86400), NOW),
            Decision::Wrong { failures: 3, .. }
        ));
        let off = Policy {
            skew_range: 0,
            ..POLICY
        };
        let d = decide(&off, &s, &mut keyed(), &[&code_at(NOW + 90)], NOW, Count::Failures).0;
        assert!(matches!(d, Decision::Wrong { .. }), "skew_range = 0: {d:?}");
    }

    // Clocks (issue 23): a code out of the window says why; two resynchronise.

    fn totp_of(d: &Decision) -> Offset {
        match d {
            Decision::Accepted(How::Totp { clock, .. }) => *clock,
            other => panic!("not accepted: {other:?}"),
        }
    }

    #[test]
    fn a_code_from_an_authenticator_three_minutes_slow_is_refused_and_says_so() {
        let s = secret(vec![]);
        let mut st = keyed();
        let d = run(&s, &mut st, &code_at(NOW - 180), NOW);
        assert_eq!(
            d,
            Decision::Skewed {
                device: "phone".into(),
                offset: -180,
                before_guard: false,
                repeated: false,
                failures: 1,
                locked_until: None
            }
        );
        // The same code again: still refused and counted, and not a second code.
        let d = run(&s, &mut st, &code_at(NOW - 180), NOW + 5);
        assert!(
            matches!(
                d,
                Decision::Skewed {
                    repeated: true,
                    failures: 2,
                    ..
                }
            ),
            "{d:?}"
        );
        // Beyond the range: a wrong code.
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW - 930), NOW),
            Decision::Wrong { .. }
        ));
    }

    #[test]
    fn codes_out_of_the_window_are_looked_for_in_the_first_failures_and_lock_like_any() {
        let s = secret(vec![]);
        let mut st = keyed();
        for i in 0..u64::from(SEARCHED_FAILURES) {
            let d = run(&s, &mut st, &code_at(NOW + 300 + 30 * 5 * i), NOW);
            assert!(matches!(d, Decision::Skewed { locked_until: None, .. }), "{d:?}");
        }
        // After SEARCHED_FAILURES consecutive failures: not looked for any more.
        let d = run(&s, &mut st, &code_at(NOW - 300), NOW);
        assert!(matches!(d, Decision::Wrong { locked_until: None, .. }), "{d:?}");
        let d = run(&s, &mut st, &code_at(NOW - 330), NOW);
        assert!(
            matches!(
                d,
                Decision::Wrong {
                    locked_until: Some(_),
                    ..
                }
            ),
            "{d:?}"
        );
        // The lockout starts the count afresh: looked for again once it is over.
        let d = run(&s, &mut st, &code_at(NOW + 300 - 150), NOW + 300);
        assert!(matches!(d, Decision::Skewed { .. }), "{d:?}");
    }

    /// Two consecutive codes at a steady +90 s: the second is accepted and sets the offset;
    /// from then on the window (1 step) is centred on it.
    #[test]
    fn two_codes_agreeing_on_an_offset_resynchronise_and_the_window_follows_it() {
        let s = secret(vec![]);
        let mut st = keyed();
        let t0 = NOW - NOW % 30 + 5; // 5 s into a step
        assert!(matches!(
            run(&s, &mut st, &code_at(t0 + 90), t0),
            Decision::Skewed { offset: 90, .. }
        ));
        let t1 = t0 + 30;
        let d = run(&s, &mut st, &code_at(t1 + 90), t1);
        assert_eq!(
            totp_of(&d),
            Offset {
                was: 0,
                now: 90,
                resynced: true
            }
        );
        assert_eq!(st.failures, 0, "the accepted code ends the failures");
        let dev = st.device(&st.device_id(KEY)).unwrap().clone();
        assert_eq!(dev.offset, 90);
        assert!(dev.seen.is_empty(), "the first code is spent with the second");
        // Replays stay refused with an offset: the same code, and the one before.
        assert!(matches!(
            run(&s, &mut st, &code_at(t1 + 90), t1 + 1),
            Decision::Replay { .. }
        ));
        assert!(matches!(
            run(&s, &mut st, &code_at(t0 + 90), t1 + 1),
            Decision::Replay { .. }
        ));
        // +90 + 2 steps is outside the centred window: refused, never widened.
        let t2 = t1 + 30;
        let d = run(&s, &mut st, &code_at(t2 + 90 + 60), t2);
        assert!(matches!(d, Decision::Skewed { offset: 150, .. }), "{d:?}");
        // +90 - 1 step and +90 + 1 step are inside it (fresh ones).
        let t3 = t2 + 60;
        let d = run(&s, &mut st, &code_at(t3 + 90 - 30), t3);
        assert_eq!(
            totp_of(&d),
            Offset {
                was: 90,
                now: 60,
                resynced: false
            },
            "followed to where the code was"
        );
        let t4 = t3 + 60;
        let d = run(&s, &mut st, &code_at(t4 + 90), t4);
        assert_eq!(totp_of(&d).now, 90, "and back");
        // And a code in step with this host (0) is now 3 steps from the centre: refused.
        let t5 = t4 + 60;
        let d = run(&s, &mut st, &code_at(t5), t5);
        assert!(matches!(d, Decision::Skewed { offset: 0, .. }), "{d:?}");
        // Without the offset the same +90 code is out of the window.
        let mut fresh = keyed();
        assert!(matches!(
            run(&s, &mut fresh, &code_at(t5 + 90), t5),
            Decision::Skewed { .. }
        ));
    }

    #[test]
    fn codes_that_do_not_agree_or_come_too_late_do_not_resynchronise() {
        let s = secret(vec![]);
        let t0 = NOW - NOW % 30 + 5;
        // Offsets 3 and 6 steps apart.
        let mut st = keyed();
        run(&s, &mut st, &code_at(t0 + 90), t0);
        let d = run(&s, &mut st, &code_at(t0 + 30 + 180), t0 + 30);
        assert!(matches!(d, Decision::Skewed { .. }), "{d:?}");
        // Agreeing, but more than RESYNC_WITHIN apart.
        let mut st = keyed();
        run(&s, &mut st, &code_at(t0 - 300), t0);
        let late = t0 + RESYNC_WITHIN + 30;
        let d = run(&s, &mut st, &code_at(late - 300), late);
        assert!(matches!(d, Decision::Skewed { .. }), "{d:?}");
        // The same step twice is not two codes.
        let mut st = keyed();
        run(&s, &mut st, &code_at(t0 + 90), t0);
        let d = run(&s, &mut st, &code_at(t0 + 90), t0 + 20);
        assert!(matches!(d, Decision::Skewed { repeated: true, .. }), "{d:?}");
        // An earlier step after a later one is not either.
        let mut st = keyed();
        run(&s, &mut st, &code_at(t0 + 120), t0);
        let d = run(&s, &mut st, &code_at(t0 + 90), t0 + 10);
        assert!(matches!(d, Decision::Skewed { .. }), "{d:?}");
        // Nor codes before the replay guard (spent, or a clock set back).
        let mut st = keyed();
        assert!(matches!(run(&s, &mut st, &code_at(t0 + 30), t0), Decision::Accepted(_)));
        let d = run(&s, &mut st, &code_at(t0 - 120), t0 + 1);
        assert!(matches!(d, Decision::Skewed { before_guard: true, .. }), "{d:?}");
        let d = run(&s, &mut st, &code_at(t0 - 90), t0 + 31);
        assert!(matches!(d, Decision::Skewed { before_guard: true, .. }), "{d:?}");
        assert_eq!(st.device(&st.device_id(KEY)).unwrap().offset, 0);
    }

    #[test]
    fn a_code_told_to_be_out_of_the_window_is_never_accepted_later() {
        // Someone guessing codes learns from the refusal that a guess is the code of a
        // step ahead; when that step comes into the window it is refused.
        let s = secret(vec![]);
        let mut st = keyed();
        let t0 = NOW - NOW % 30 + 5;
        let ahead = code_at(t0 + 300);
        assert!(matches!(run(&s, &mut st, &ahead, t0), Decision::Skewed { .. }));
        assert!(matches!(run(&s, &mut st, &ahead, t0 + 300), Decision::Replay { .. }));
        // The codes around it are fine.
        assert!(matches!(
            run(&s, &mut st, &code_at(t0 + 270), t0 + 300),
            Decision::Accepted(_)
        ));
        assert!(matches!(
            run(&s, &mut st, &code_at(t0 + 330), t0 + 330),
            Decision::Accepted(_)
        ));
    }

    #[test]
    fn a_host_clock_set_back_does_not_make_the_phones_next_code_a_replay() {
        // Accepted at the right time; then this host's clock goes back 2 minutes (a restored
        // snapshot): the phone's next code is out of the window, and is not a replay.
        let s = secret(vec![]);
        let mut st = keyed();
        let t0 = NOW - NOW % 30 + 5;
        assert!(matches!(run(&s, &mut st, &code_at(t0), t0), Decision::Accepted(_)));
        let d = run(&s, &mut st, &code_at(t0 + 30), t0 + 30 - 120);
        assert_eq!(
            d,
            Decision::Skewed {
                device: "phone".into(),
                offset: 120,
                before_guard: false,
                repeated: false,
                failures: 1,
                locked_until: None
            }
        );
    }

    #[test]
    fn the_offset_stays_within_the_range_and_the_window_never_widens() {
        let s = secret(vec![]);
        let mut st = keyed();
        let id = st.device_id(KEY);
        st.device_mut(&id).offset = 3000; // a range of 3600 before, 900 now
                                          // Centred at +900 at most: a code at +900 is accepted, +3000 is not.
        let d = run(&s, &mut st, &code_at(NOW + 3000), NOW);
        assert!(matches!(d, Decision::Wrong { .. }), "{d:?}");
        let d = run(&s, &mut st, &code_at(NOW + 900), NOW);
        assert_eq!(totp_of(&d).now, 900);
        for w in 0..=3u64 {
            let p = Policy { window: w, ..POLICY };
            let mut st = keyed();
            let id = st.device_id(KEY);
            st.device_mut(&id).offset = 300;
            let t = NOW - NOW % 30;
            for k in -(w as i64) - 1..=(w as i64) + 1 {
                let mut st = st.clone();
                let at = (t as i64 + 300 + 30 * k) as u64;
                let d = decide(&p, &s, &mut st, &[&code_at(at)], t, Count::Failures).0;
                assert_eq!(
                    matches!(d, Decision::Accepted(_)),
                    k.unsigned_abs() <= w,
                    "window {w}, {k} steps from the offset: {d:?}"
                );
            }
        }
    }

    #[test]
    fn an_unchanged_offset_and_a_refusal_that_does_not_count_leave_no_trace() {
        let s = secret(vec![]);
        let mut st = keyed();
        let before = st.clone();
        let d = decide(&POLICY, &s, &mut st, &[&code_at(NOW + 120)], NOW, Count::Nothing).0;
        assert!(matches!(d, Decision::Skewed { .. }), "{d:?}");
        assert_eq!(st, before, "forward_pass's first line records nothing");
        assert!(matches!(run(&s, &mut st, &code_at(NOW), NOW), Decision::Accepted(_)));
        assert!(
            st.devices.iter().all(|d| d.offset == 0 && d.seen.is_empty()),
            "{:?}",
            st.devices
        );
    }

    #[test]
    fn spaces_inside_and_around_a_code_are_allowed() {
        let s = secret(vec![]);
        let c = code_at(NOW);
        let spaced = format!(" {} {} ", &c[..3], &c[3..]);
        assert!(matches!(
            run(&s, &mut State::default(), &spaced, NOW),
            Decision::Accepted(_)
        ));
    }

    #[test]
    fn malformed_answers_are_wrong_and_counted() {
        let s = secret(vec![]);
        let mut st = State::default();
        let long = "1".repeat(10_000);
        for (i, a) in ["", "abcdef", "-12345", "12345\n6", "123\u{0}456", long.as_str()]
            .iter()
            .enumerate()
        {
            assert!(matches!(run(&s, &mut st, a, NOW), Decision::Wrong { .. }), "{a:?}");
            assert_eq!(
                st.failures as usize,
                (i + 1) % 6,
                "the sixth locks and restarts the count"
            );
        }
    }

    #[test]
    fn lockout_after_max_failures_refuses_even_the_right_code() {
        let s = secret(vec![]);
        let mut st = State::default();
        for i in 1..=5 {
            assert_eq!(
                run(&s, &mut st, "000000", NOW),
                Decision::Wrong {
                    failures: i,
                    locked_until: None
                }
            );
        }
        assert_eq!(
            run(&s, &mut st, "000000", NOW),
            Decision::Wrong {
                failures: 0,
                locked_until: Some(NOW + 300)
            }
        );
        assert_eq!(
            run(&s, &mut st, &code_at(NOW + 10), NOW + 10),
            Decision::LockedOut { until: NOW + 300 }
        );
        assert_eq!(
            run(&s, &mut st, &code_at(NOW + 299), NOW + 299),
            Decision::LockedOut { until: NOW + 300 }
        );
        assert!(
            matches!(run(&s, &mut st, &code_at(NOW + 300), NOW + 300), Decision::Accepted(_)),
            "lock ends on time"
        );
        assert_eq!((st.failures, st.locked_until), (0, 0));
    }

    #[test]
    fn success_resets_the_failure_count() {
        let s = secret(vec![]);
        let mut st = State::default();
        for _ in 0..5 {
            run(&s, &mut st, "000000", NOW);
        }
        assert!(matches!(run(&s, &mut st, &code_at(NOW), NOW), Decision::Accepted(_)));
        assert!(matches!(
            run(&s, &mut st, "000000", NOW + 30),
            Decision::Wrong { failures: 1, .. }
        ));
    }

    #[test]
    fn backup_code_works_once_ever() {
        let codes = ["7kq2m-x9d10", "abcde-fghjk"];
        let s = secret(
            codes
                .iter()
                .map(|c| backup::hash(&backup::normalize(c).unwrap()).unwrap())
                .collect(),
        );
        let mut st = State::default();
        assert_eq!(
            run(&s, &mut st, "7KQ2M X9D10", NOW),
            Decision::Accepted(How::Backup { left: 1 })
        );
        assert_eq!(
            run(&s, &mut st, "7kq2m-x9d10", NOW + 9999),
            Decision::Replay {
                backup: true,
                locked_until: None
            }
        );
        assert_eq!(
            run(&s, &mut st, "abcde-fghjk", NOW),
            Decision::Accepted(How::Backup { left: 0 })
        );
        assert!(st.devices.is_empty(), "backup codes do not move the TOTP replay guard");
    }

    #[test]
    fn forward_pass_candidates_pick_the_one_that_is_right() {
        let s = secret(vec![backup::hash("12345678").unwrap()]);
        let mut st = State::default();
        let (d, i) = decide(&POLICY, &s, &mut st, &["345678", "12345678"], NOW, Count::Failures);
        assert_eq!((d, i), (Decision::Accepted(How::Backup { left: 0 }), 1));
    }

    #[test]
    fn eight_digit_codes() {
        let mut s = secret(vec![]);
        s.devices[0].params = Params::new(crate::otp::Algorithm::Sha512, 8, 30).unwrap();
        let c = totp_at_step(KEY, NOW / 30, &s.devices[0].params);
        assert!(matches!(
            run(&s, &mut State::default(), &c[2..], NOW),
            Decision::Wrong { .. }
        ));
        assert!(matches!(run(&s, &mut State::default(), &c, NOW), Decision::Accepted(_)));
    }

    fn keyed() -> State {
        let mut st = State::default();
        st.ensure_key().unwrap();
        st
    }

    #[test]
    fn a_changed_period_does_not_make_every_new_code_a_replay() {
        // Accepted under 60-second steps, then the same key imported with 30-second steps.
        let mut s = secret(vec![]);
        s.devices[0].params = Params::new(crate::otp::Algorithm::Sha1, 6, 60).unwrap();
        let mut st = keyed();
        let c60 = totp_at_step(KEY, NOW / 60, &s.devices[0].params).to_string();
        assert!(matches!(run(&s, &mut st, &c60, NOW), Decision::Accepted(_)));
        s.devices[0].params = Params::DEFAULT;
        let next_minute = (NOW / 60 + 1) * 60;
        assert!(
            matches!(
                run(&s, &mut st, &code_at(next_minute), next_minute),
                Decision::Accepted(_)
            ),
            "a 30-second code after the accepted minute is fresh"
        );
        assert!(matches!(
            run(&s, &mut st, &code_at(next_minute - 30), next_minute),
            Decision::Replay { .. }
        ));
    }

    #[test]
    fn a_spent_backup_code_stays_spent_when_the_codes_are_re_salted() {
        let stored = |c: &str| backup::hash(&backup::normalize(c).unwrap()).unwrap();
        let mut st = keyed();
        let s = secret(vec![stored("12345678"), stored("87654321")]);
        assert!(matches!(run(&s, &mut st, "12345678", NOW), Decision::Accepted(_)));
        // The same scratch codes imported again: new salts, new hash strings.
        let again = secret(vec![stored("12345678"), stored("87654321")]);
        assert_ne!(again.backup_codes, s.backup_codes);
        assert!(matches!(
            run(&again, &mut st, "12345678", NOW + 60),
            Decision::Replay { backup: true, .. }
        ));
        assert!(matches!(
            run(&again, &mut st, "87654321", NOW + 60),
            Decision::Accepted(How::Backup { .. })
        ));
    }

    #[test]
    fn spent_backup_records_stay_bounded_however_often_codes_are_regenerated() {
        let mut st = keyed();
        for round in 0..70 {
            let codes: Vec<String> = (0..10).map(|i| format!("{:08}", round * 10 + i)).collect();
            let s = secret(codes.iter().map(|c| backup::hash(c).unwrap()).collect());
            for c in &codes {
                assert!(matches!(run(&s, &mut st, c, NOW), Decision::Accepted(_)), "{c}");
            }
        }
        assert_eq!(st.used_backup.len(), crate::state::MAX_USED_BACKUP);
        assert!(st.to_toml().unwrap().len() < 16 * 1024, "far under the 64 KiB limit");
    }

    #[test]
    fn a_refusal_that_does_not_count_changes_nothing() {
        let s = secret(vec![]);
        let mut st = keyed();
        let before = st.clone();
        let (d, _) = decide(&POLICY, &s, &mut st, &["000000"], NOW, Count::Nothing);
        assert!(matches!(d, Decision::Wrong { failures: 0, .. }), "{d:?}");
        assert_eq!(st, before);
        let (d, _) = decide(&POLICY, &s, &mut st, &[&code_at(NOW)], NOW, Count::Nothing);
        assert!(matches!(d, Decision::Accepted(_)), "a right code is spent all the same");
        let (d, _) = decide(&POLICY, &s, &mut st, &[&code_at(NOW)], NOW, Count::Nothing);
        assert!(matches!(d, Decision::Replay { .. }));
        assert_eq!(st.failures, 0);
    }

    #[test]
    fn a_version_1_state_keeps_its_replay_guard_and_used_codes() {
        let hashed = backup::hash("12345678").unwrap();
        let v1 = format!(
            "version = 1\nlast_step = {}\nlast_success = 5\nused_backup_codes = [\"{hashed}\"]\n",
            NOW / 30
        );
        let mut st = State::parse(&v1).unwrap();
        assert_eq!(st.enrolled, 5);
        st.ensure_key().unwrap();
        let s = secret(vec![hashed]);
        assert!(matches!(run(&s, &mut st, &code_at(NOW), NOW), Decision::Replay { .. }));
        assert!(matches!(
            run(&s, &mut st, "12345678", NOW),
            Decision::Replay { backup: true, .. }
        ));
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW + 30), NOW + 30),
            Decision::Accepted(_)
        ));
        assert!(st.v1_last_step.is_none(), "moved into the device record");
        let back = State::parse(&st.to_toml().unwrap()).unwrap();
        assert_eq!(back, st);
        assert!(st.to_toml().unwrap().starts_with("version = 2"));
    }

    const KEY2: &[u8] = b"abcdefghijabcdefghij";

    fn hotp_at(key: &[u8], c: u64) -> String {
        crate::otp::hotp(key, c, crate::otp::Algorithm::Sha1, 6).to_string()
    }

    #[test]
    fn a_code_from_any_authenticator_is_accepted_and_each_has_its_own_replay_guard() {
        let mut s = secret(vec![]);
        s.devices.push(device("spare phone", Kind::Totp, KEY2));
        let mut st = keyed();
        let second = totp_at_step(KEY2, NOW / 30, &Params::DEFAULT).to_string();
        assert_eq!(
            run(&s, &mut st, &second, NOW),
            Decision::Accepted(How::Totp {
                step: NOW / 30,
                device: "spare phone".into(),
                clock: Offset::default(),
            })
        );
        assert!(
            matches!(run(&s, &mut st, &code_at(NOW), NOW), Decision::Accepted(How::Totp { ref device, .. }) if device == "phone"),
            "the first phone's code for the same step is still fresh"
        );
        assert!(matches!(run(&s, &mut st, &second, NOW + 1), Decision::Replay { .. }));
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW), NOW + 1),
            Decision::Replay { .. }
        ));
    }

    #[test]
    fn on_this_hosts_own_state_only_time_based_codes_are_accepted_and_nothing_else_is_spent() {
        let code = "7kq2m-x9d10";
        let mut s = secret(vec![backup::hash(&backup::normalize(code).unwrap()).unwrap()]);
        s.devices.push(device("token", Kind::Hotp, KEY2));
        let local = Policy {
            totp_only: true,
            ..POLICY
        };
        let mut st = keyed();
        let before = st.clone();
        let d = decide(&local, &s, &mut st, &[code], NOW, Count::Failures).0;
        assert_eq!(d, Decision::NeedsFleet { backup: true });
        let d = decide(&local, &s, &mut st, &[&hotp_at(KEY2, 0)], NOW, Count::Failures).0;
        assert_eq!(d, Decision::NeedsFleet { backup: false });
        assert_eq!(st, before, "neither spent nor counted as a failure");
        // A wrong code still counts; a time-based code is accepted.
        let d = decide(&local, &s, &mut st, &["000000"], NOW, Count::Failures).0;
        assert!(matches!(d, Decision::Wrong { failures: 1, .. }), "{d:?}");
        let d = decide(&local, &s, &mut st, &[&code_at(NOW)], NOW, Count::Failures).0;
        assert!(matches!(d, Decision::Accepted(How::Totp { .. })), "{d:?}");
        // Once the fleet decides again, both are good.
        assert!(matches!(
            run(&s, &mut st, code, NOW),
            Decision::Accepted(How::Backup { .. })
        ));
        assert!(matches!(
            run(&s, &mut st, &hotp_at(KEY2, 0), NOW),
            Decision::Accepted(How::Hotp { .. })
        ));
    }

    #[test]
    fn hotp_accepts_the_next_window_of_counters_and_never_an_earlier_one() {
        let mut s = secret(vec![]);
        s.devices = vec![device("token", Kind::Hotp, KEY2)];
        let mut st = keyed();
        assert!(
            matches!(run(&s, &mut st, &hotp_at(KEY2, 10), NOW), Decision::Wrong { .. }),
            "counter 10 is past a 10-code window from 0"
        );
        assert_eq!(
            run(&s, &mut st, &hotp_at(KEY2, 9), NOW),
            Decision::Accepted(How::Hotp {
                counter: 9,
                device: "token".into()
            }),
            "the last counter of the window"
        );
        for c in [9, 8, 0] {
            assert!(
                matches!(run(&s, &mut st, &hotp_at(KEY2, c), NOW), Decision::Replay { .. }),
                "counter {c} is spent"
            );
        }
        assert!(matches!(
            run(&s, &mut st, &hotp_at(KEY2, 19), NOW),
            Decision::Accepted(_)
        ));
        let dev = st.device(&st.device_id(KEY2)).unwrap().counter;
        assert_eq!(dev, 20, "the state moves past the accepted counter");
    }

    #[test]
    fn hotp_counter_in_the_file_can_move_forward_but_never_rewinds_the_state() {
        let mut s = secret(vec![]);
        s.devices = vec![device("token", Kind::Hotp, KEY2)];
        s.devices[0].counter = 5;
        let mut st = keyed();
        assert!(!matches!(
            run(&s, &mut st, &hotp_at(KEY2, 4), NOW),
            Decision::Accepted(_)
        ));
        assert!(matches!(
            run(&s, &mut st, &hotp_at(KEY2, 5), NOW),
            Decision::Accepted(_)
        ));
        s.devices[0].counter = 0; // the user edits their file back
        assert!(matches!(
            run(&s, &mut st, &hotp_at(KEY2, 5), NOW),
            Decision::Replay { .. }
        ));
        assert!(matches!(
            run(&s, &mut st, &hotp_at(KEY2, 2), NOW),
            Decision::Replay { .. }
        ));
    }

    #[test]
    fn six_and_eight_digit_authenticators_mix() {
        let mut s = secret(vec![]);
        let mut d8 = device("fob", Kind::Totp, KEY2);
        d8.params = Params::new(crate::otp::Algorithm::Sha256, 8, 60).unwrap();
        s.devices.push(d8.clone());
        let mut st = keyed();
        let c8 = totp_at_step(KEY2, NOW / 60, &d8.params).to_string();
        assert!(
            matches!(run(&s, &mut st, &c8, NOW), Decision::Accepted(How::Totp { ref device, .. }) if device == "fob")
        );
        assert!(matches!(run(&s, &mut st, &code_at(NOW), NOW), Decision::Accepted(_)));
    }

    #[test]
    fn two_entries_whose_keys_give_the_same_codes_share_one_replay_guard() {
        let mut s = secret(vec![]);
        let mut padded = KEY.to_vec();
        padded.extend_from_slice(&[0, 0]);
        s.devices.push(device("same key, padded", Kind::Totp, &padded));
        let mut st = keyed();
        assert!(matches!(run(&s, &mut st, &code_at(NOW), NOW), Decision::Accepted(_)));
        assert!(matches!(run(&s, &mut st, &code_at(NOW), NOW), Decision::Replay { .. }));
    }

    #[test]
    fn hotp_counters_stop_below_what_the_state_can_hold() {
        let mut s = secret(vec![]);
        s.devices = vec![device("token", Kind::Hotp, KEY2)];
        s.devices[0].counter = crate::files::secret::MAX_COUNTER;
        let mut st = keyed();
        let c = crate::files::secret::MAX_COUNTER;
        assert!(matches!(
            run(&s, &mut st, &hotp_at(KEY2, c), NOW),
            Decision::Accepted(_)
        ));
        let text = st.to_toml().unwrap();
        assert_eq!(State::parse(&text).unwrap(), st, "the state still reads back");
    }
}

#[cfg(test)]
#[path = "verify_red.rs"]
mod red;
