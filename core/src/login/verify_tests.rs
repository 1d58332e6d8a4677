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
    assert!(matches!(run(&s, &mut st, &c8, NOW), Decision::Accepted(How::Totp { ref device, .. }) if device == "fob"));
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
