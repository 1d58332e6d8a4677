//! The decision: (policy, secret, state, answer, now) -> Outcome, with the state change.
//!
//! Owns: what counts as a right answer, a replay, a failure and a lockout. Pure: no I/O,
//! no clock; the caller runs it under the state lock and stores the state it leaves.

use crate::files::secret::{Kind, SecretFile};
use crate::otp;
use crate::otp::backup;
use crate::state::State;

/// The parts of the configuration the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// TOTP: time steps accepted either side of the current one.
    pub window: u64,
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
    Totp { step: u64, device: String },
    Hotp { counter: u64, device: String },
    Backup { left: usize },
}

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
    // A version-1 state knew one (TOTP) authenticator: the first of the file.
    if let Some(first) = secret.devices.iter().find(|d| d.kind == Kind::Totp) {
        state.migrate_v1(&first.guard_key(), first.params.period(), &secret.backup_codes);
    }
    let mut replay = None;
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
                match how {
                    How::Totp { step, .. } => state.spend_step(&dev.guard_key(), step, dev.params.period(), now),
                    How::Hotp { counter, .. } => state.spend_counter(&dev.guard_key(), counter, now),
                    How::Backup { .. } => {}
                }
                state.record_success(now);
                return (Decision::Accepted(how), i);
            }
            Match::Replay => {
                replay.get_or_insert((i, false));
                continue;
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
    let locked_until = match before {
        Some(b) => {
            *state = b;
            None
        }
        None => fail(policy, state, now),
    };
    match replay {
        Some((i, backup)) => (Decision::Replay { backup, locked_until }, i),
        None => (
            Decision::Wrong {
                failures: state.failures,
                locked_until,
            },
            0,
        ),
    }
}

/// Counts a failure; at `max_failures` locks until `now + lockout` and starts counting
/// afresh for after the lockout.
enum Match {
    /// Device index and how: not spent yet.
    Fresh(usize, How),
    /// A right code for a step or counter already spent.
    Replay,
    None,
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
                let period = dev.params.period();
                let now_step = dev.params.step_at(now);
                if let Some(step) = otp::find_step(&dev.key, &code, now_step, policy.window, &dev.params) {
                    // The replay guard: each time step is accepted once, and never one older
                    // than the newest accepted (an eavesdropped earlier code stays dead). Kept
                    // as a time, so a changed period cannot bring back a code already seen.
                    if guard.is_some_and(|g| step.saturating_mul(period) < g.not_before) {
                        replay = true;
                    } else if fresh.is_none() {
                        fresh = Some((
                            d,
                            How::Totp {
                                step,
                                device: dev.name.clone(),
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
        (None, false) => Match::None,
    }
}

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
                device: "phone".into()
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
    fn codes_outside_the_window_are_wrong() {
        let s = secret(vec![]);
        let mut st = State::default();
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW + 60), NOW),
            Decision::Wrong { .. }
        ));
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW - 60), NOW),
            Decision::Wrong { .. }
        ));
        assert!(matches!(
            run(&s, &mut st, &code_at(NOW + 86400), NOW),
            Decision::Wrong { .. }
        ));
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
                device: "spare phone".into()
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
