//! The decision: (policy, secret, state, answer, now) -> Outcome, with the state change.
//!
//! Owns: what counts as a right answer, a replay, a failure and a lockout. Pure: no I/O,
//! no clock; the caller runs it under the state lock and stores the state it leaves.

use crate::backup;
use crate::otp;
use crate::secret::SecretFile;
use crate::state::State;

/// The parts of the configuration the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub window: u64,
    pub max_failures: u32,
    pub lockout: u64,
}

/// How an accepted answer got in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    Totp { step: u64 },
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
    state.migrate_v1(&secret.key, secret.params.period(), &secret.backup_codes);
    let device = state.device_id(&secret.key);
    let period = secret.params.period();
    let mut replay = None;
    for (i, answer) in candidates.iter().enumerate() {
        if answer.len() > MAX_ANSWER_LEN {
            continue;
        }
        if let Some(code) = as_totp(answer, secret.params.digits()) {
            let now_step = secret.params.step_at(now);
            if let Some(step) = otp::find_step(&secret.key, &code, now_step, policy.window, &secret.params) {
                // The replay guard: each time step is accepted once, and never one older than
                // the newest accepted (an eavesdropped earlier code stays dead). Kept as a
                // time, so a changed period cannot bring back a code already seen.
                let start = step.saturating_mul(period);
                if state.device(&device).is_some_and(|d| start < d.not_before) {
                    replay.get_or_insert((i, false));
                    continue;
                }
                state.spend_step(&secret.key, step, period, now);
                state.record_success(now);
                return (Decision::Accepted(How::Totp { step }), i);
            }
        }
        if let Some(canonical) = backup::normalize(answer) {
            if let Some(idx) = backup::find(&secret.backup_codes, &canonical) {
                let stored = &secret.backup_codes[idx];
                if state.backup_used(&canonical, stored) {
                    replay.get_or_insert((i, true));
                    continue;
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
fn fail(policy: &Policy, state: &mut State, now: u64) -> Option<u64> {
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
        max_failures: 6,
        lockout: 300,
    };

    fn secret(backup_codes: Vec<String>) -> SecretFile {
        SecretFile {
            key: zeroize::Zeroizing::new(KEY.to_vec()),
            params: Params::DEFAULT,
            issuer: String::new(),
            label: String::new(),
            created: 0,
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
        assert_eq!(d, Decision::Accepted(How::Totp { step: NOW / 30 }));
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
        s.params = Params::new(crate::otp::Algorithm::Sha512, 8, 30).unwrap();
        let c = totp_at_step(KEY, NOW / 30, &s.params);
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
        s.params = Params::new(crate::otp::Algorithm::Sha1, 6, 60).unwrap();
        let mut st = keyed();
        let c60 = totp_at_step(KEY, NOW / 60, &s.params).to_string();
        assert!(matches!(run(&s, &mut st, &c60, NOW), Decision::Accepted(_)));
        s.params = Params::DEFAULT;
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
}
