//! The attacker's pass over issue 23 (clocks): each test is one of its attacks or a property
//! the design promises (each attack failed before its fix); two run random sequences.

use super::*;
use crate::files::secret::{Device, Kind, SecretFile};
use crate::otp::{totp_at_step, Params};
use crate::state::file::{decode_payload, encode_payload};
use crate::state::State;

const KEY: &[u8] = b"12345678901234567890";
const KEY2: &[u8] = b"abcdefghijabcdefghij";
const NOW: u64 = 1_700_000_000;
const POLICY: Policy = Policy {
    window: 1,
    skew_range: 900,
    hotp_window: 10,
    max_failures: 6,
    lockout: 300,
    totp_only: false,
};

fn device(name: &str, key: &[u8], params: Params) -> Device {
    Device {
        name: name.into(),
        kind: Kind::Totp,
        key: zeroize::Zeroizing::new(key.to_vec()),
        params,
        counter: 0,
        issuer: String::new(),
        label: String::new(),
        created: 0,
    }
}

fn phone() -> SecretFile {
    SecretFile {
        devices: vec![device("phone", KEY, Params::DEFAULT)],
        backup_codes: vec![],
    }
}

fn code_at(t: u64) -> String {
    totp_at_step(KEY, Params::DEFAULT.step_at(t), &Params::DEFAULT).to_string()
}

fn keyed() -> State {
    let mut st = State::default();
    st.ensure_key().unwrap();
    st
}

fn run_with(p: &Policy, s: &SecretFile, st: &mut State, answer: &str, now: u64) -> Decision {
    decide(p, s, st, &[answer], now, Count::Failures).0
}

// ---------------------------------------------------------------------------------------
// Hostile state: an offset of i64::MIN.

/// `validate` checks `d.offset.abs() > MAX_OFFSET`: `i64::MIN.abs()` overflows — a panic in
/// a debug build (the fuzz targets', cargo fuzz builds with debug assertions), and in the
/// release build (no overflow checks) it wraps to i64::MIN, which is not > 3600, so the
/// record is *accepted* with an offset outside ±3600 (the threat model's bound for an
/// etcd writer). Either way the property "out of range is refused" does not hold.
#[test]
fn red_an_offset_of_i64_min_in_a_state_is_refused_without_a_panic() {
    let mut st = keyed();
    st.set_offset(b"k", 120);
    let text = st.to_toml().unwrap();
    let hostile = text.replace("offset = 120", &format!("offset = {}", i64::MIN));
    assert_ne!(hostile, text);
    let toml = std::panic::catch_unwind(|| State::parse(&hostile).is_err());
    assert!(
        matches!(toml, Ok(true)),
        "TOML state with offset i64::MIN: {toml:?} (Err(_) = panicked)"
    );

    let mut bin = st.clone();
    bin.devices[0].offset = i64::MIN;
    let payload = encode_payload(&bin).unwrap();
    let rec = std::panic::catch_unwind(|| decode_payload(&payload).is_err());
    assert!(matches!(rec, Ok(true)), "format-3 record with offset i64::MIN: {rec:?}");
}

/// The fuzz target `state_file` asserts that every record `decode_payload` accepts is
/// canonical (re-encodes to the same bytes). A version-2 record in which no device has an
/// offset or a seen code was accepted, but re-encodes as version 1: the target failed on a
/// 40-odd-byte input. Such a record is now refused (no release writes it).
#[test]
fn red_fuzz_state_file_a_version_2_record_without_clocks() {
    let st = keyed();
    let mut p = encode_payload(&st).unwrap();
    assert_eq!(p[0], 1);
    p[0] = 2; // no devices: the version-2 record is the same bytes after its version
    assert!(
        decode_payload(&p).is_err(),
        "a version-2 record without clock records is refused"
    );
    let r = std::panic::catch_unwind(|| crate::fuzzing::state_file(&p));
    assert!(
        r.is_ok(),
        "fuzzing::state_file panics on a non-canonical version-2 record"
    );
}

// ---------------------------------------------------------------------------------------
// Mixed-version fleets: FILEFORMAT.md says a user with a seen code is refused on old hosts
// "until ... the offset is cleared (`devices resync`, `unlock`) and the seen codes are gone
// (spent by the next accepted code, or out of reach after `skew_range`)".

/// A phone 5 minutes fast: its code is refused (seen). The user then sets the phone right
/// and the admin runs `pam-totp unlock`; the user logs in on an upgraded host with a right
/// code. The seen code (a future step) is neither spent nor out of reach, and nothing ever
/// drops it without another login on an upgraded host after its time: the state stays in
/// the form old hosts refuse. No admin command (unlock, resync, reset) empties `seen`.
#[test]
fn red_after_unlock_and_a_login_the_state_is_again_what_old_hosts_read() {
    let s = phone();
    let mut st = keyed();
    assert!(matches!(
        run_with(&POLICY, &s, &mut st, &code_at(NOW + 300), NOW),
        Decision::Skewed { .. }
    ));
    st.clear_offsets(); // pam-totp unlock
    let t = NOW + 60;
    assert!(matches!(
        run_with(&POLICY, &s, &mut st, &code_at(t), t),
        Decision::Accepted(_)
    ));
    // Even long after skew_range, with only refused answers in between (old hosts refuse
    // before deciding anything; upgraded hosts only see wrong codes):
    let later = NOW + 7200;
    let _ = run_with(&POLICY, &s, &mut st, "000000", later);
    let p = encode_payload(&st).unwrap();
    let toml = st.to_toml().unwrap();
    assert!(
        p[0] == 1 && !toml.contains("seen"),
        "still unreadable for an older host: payload v{}, toml:\n{toml}",
        p[0]
    );
}

// ---------------------------------------------------------------------------------------
// The seen list is pruned with *this line's* policy, but the state is shared by every line
// (sshd, sudo, login) and every fleet host, each with its own skew_range.

/// Service A (skew_range 3600) has followed a phone 40 minutes slow (offset -2400). On
/// service B (skew_range 900, the default) a guesser's code is found out of the window:
/// a future code of that phone, refused and kept so it is never accepted. A later note on B
/// prunes with B's `oldest_reachable` (now - 960 s), dropping the kept code although A's
/// window (centred 80 steps back) has not reached it yet; on A it is then accepted.
#[test]
fn red_a_code_kept_on_one_line_is_pruned_by_another_lines_policy_and_accepted() {
    let a = Policy {
        skew_range: 3600,
        ..POLICY
    };
    let b = POLICY;
    let s = phone();
    let mut st = keyed();
    let key = s.devices[0].guard_key();
    let t0 = NOW - NOW % 30 + 5;
    // The phone's state on A: offset -2400, its last code accepted 80 steps back.
    st.spend_step(&key, t0 / 30 - 80, 30, t0);
    st.set_offset(&key, -2400);
    // B: a guess that is the phone's code 10 steps ahead of this host (in its future).
    let x_step = t0 / 30 + 10;
    let x = totp_at_step(KEY, x_step, &Params::DEFAULT).to_string();
    assert!(matches!(run_with(&b, &s, &mut st, &x, t0), Decision::Skewed { .. }));
    assert!(matches!(
        run_with(&a, &s, &mut st, &x, t0 + 1),
        Decision::Skewed { repeated: true, .. }
    ));
    st.failures = 0;
    // 22 minutes later on B, another out-of-window code (a second guess) prunes with B's range.
    let t1 = t0 + 1320;
    let y = code_at(t1 + 600);
    assert!(matches!(run_with(&b, &s, &mut st, &y, t1), Decision::Skewed { .. }));
    st.failures = 0;
    // When A's window (80 steps back) reaches x_step, x is accepted on A.
    let t2 = (x_step + 80) * 30 + 5;
    let d = run_with(&a, &s, &mut st, &x, t2);
    assert!(
        !matches!(d, Decision::Accepted(_)),
        "a code refused as out of the window (and told to the guesser) was accepted: {d:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A randomised check of the promises, many sequences of answers.

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Promises checked on every decision: a (device, step) is accepted at most once and never
/// before one already accepted for that device; an accepted code is in the window centred
/// on the offset the state held (never wider) unless it resynchronised; a code refused as
/// out of the window (and kept) is never accepted unless MAX_SEEN newer ones were kept for
/// its device since (documented); an offset never leaves ±skew_range + window steps.
#[test]
fn red_random_sequences_keep_every_promise() {
    random_sequences(0x9E37_79B9_7F4A_7C15, false);
}

/// The same with lines of different `window` (one skew_range) sharing the state, and the
/// forward_pass line's uncounted decisions mixed in.
#[test]
fn red_random_sequences_with_mixed_lines_keep_every_promise() {
    random_sequences(0x1234_5678_9ABC_DEF1, true);
}

fn random_sequences(seed: u64, mixed: bool) {
    use std::collections::HashMap;
    let mut rng = Rng(seed);
    for round in 0..300 {
        let period = [30u64, 60, 15][rng.below(3) as usize];
        let window = rng.below(3);
        let skew_range = [0u64, 120, 900, 3600][rng.below(4) as usize];
        let policy = Policy {
            window,
            skew_range,
            ..POLICY
        };
        let mut s = SecretFile {
            devices: vec![device(
                "a",
                KEY,
                Params::new(crate::otp::Algorithm::Sha1, 6, period).unwrap(),
            )],
            backup_codes: vec![],
        };
        if rng.below(2) == 0 {
            s.devices.push(device(
                "b",
                KEY2,
                Params::new(crate::otp::Algorithm::Sha256, 8, 30).unwrap(),
            ));
        }
        let mut st = keyed();
        let mut now = NOW + rng.below(1000);
        // Per device: accepted steps, last accepted time; kept codes: time -> number of
        // kept codes noted after it.
        let mut accepted: HashMap<usize, Vec<u64>> = HashMap::new();
        let mut kept: HashMap<usize, Vec<(u64, u32)>> = HashMap::new();
        for ev in 0..150 {
            now += [0u64, 1, 15, 30, 45, 90, 301, 900][rng.below(8) as usize];
            let d = rng.below(s.devices.len() as u64) as usize;
            let p = s.devices[d].params;
            // The device's clock: mostly around the host's, sometimes far.
            let skew: i64 = [0i64, 30, -30, 90, -90, 180, -600, 900, -1200, 3000][rng.below(10) as usize];
            let t = (now as i64 + skew) as u64;
            let step = p.step_at(t);
            let answer = if rng.below(8) == 0 {
                format!("{:06}", rng.below(1_000_000))
            } else {
                totp_at_step(&s.devices[d].key, step, &p).to_string()
            };
            let key = s.devices[d].guard_key();
            let id = st.device_id(&key);
            let was = st.device(&id).map_or(0, |g| g.offset);
            let seen_before: Vec<u64> = st
                .device(&id)
                .map(|g| g.seen.iter().map(|s| s.time).collect())
                .unwrap_or_default();
            let policy = if mixed {
                Policy {
                    window: rng.below(3),
                    ..policy
                }
            } else {
                policy
            };
            let window = policy.window;
            let count = if mixed && rng.below(3) == 0 {
                Count::Nothing
            } else {
                Count::Failures
            };
            let dec = decide(&policy, &s, &mut st, &[&answer], now, count).0;
            let ctx = format!("round {round} ev {ev} period {period} window {window} skew {skew_range} dev {d} clock {skew:+} now {now} step {step} was {was}: {dec:?}");
            match &dec {
                Decision::Accepted(How::Totp {
                    step: got,
                    device,
                    clock,
                }) => {
                    let dd = s.devices.iter().position(|x| &x.name == device).unwrap();
                    let pp = s.devices[dd].params;
                    let acc = accepted.entry(dd).or_default();
                    assert!(!acc.contains(got), "accepted twice: {ctx}");
                    if let Some(last) = acc.iter().max() {
                        assert!(
                            got * pp.period() > last * pp.period(),
                            "accepted before an accepted one: {ctx}"
                        );
                    }
                    acc.push(*got);
                    if dd == d {
                        let k = offset_steps(was, pp.period(), skew_range);
                        let center = shift(pp.step_at(now), k);
                        let in_window = *got + window >= center && *got <= center + window;
                        assert!(
                            in_window || clock.resynced,
                            "accepted out of the window without a resync: {ctx}"
                        );
                        if clock.resynced {
                            assert!(skew_range > 0, "resynchronised with skew_range 0: {ctx}");
                        }
                    }
                    let time = got * pp.period();
                    if let Some(ks) = kept.get(&dd) {
                        if let Some((_, newer)) = ks.iter().find(|(kt, _)| *kt == time) {
                            assert!(
                                *newer >= crate::state::MAX_SEEN as u32,
                                "a code kept as seen out of the window was accepted ({newer} newer kept): {ctx}"
                            );
                        }
                    }
                }
                Decision::Skewed {
                    before_guard: false,
                    repeated: false,
                    ..
                } if count == Count::Failures => {
                    let g = st.device(&id).unwrap();
                    for sn in &g.seen {
                        if !seen_before.contains(&sn.time) {
                            let ks = kept.entry(d).or_default();
                            for e in ks.iter_mut() {
                                e.1 += 1;
                            }
                            ks.push((sn.time, 0));
                        }
                    }
                }
                _ => {}
            }
            for g in &st.devices {
                assert!(
                    g.offset.abs() <= crate::state::MAX_OFFSET,
                    "offset out of bounds: {ctx}"
                );
            }
            if st.locked_until > now && rng.below(2) == 0 {
                now = st.locked_until; // wait the lockout out
            }
        }
    }
}

/// The state keeps replay guards of at most 32 authenticators, dropping the least recently
/// *accepted*; an entry made only to keep a code seen out of the window has `last_used` 0,
/// so it is the first to go. A user whose state holds 32 entries (old keys of re-enrollments
/// and removed authenticators are never dropped otherwise) loses the kept code as soon as
/// another authenticator is used for the first time, and the guessed code is then accepted.
#[test]
fn red_a_kept_code_is_dropped_with_its_entry_when_the_state_holds_32_authenticators() {
    let mut s = phone();
    s.devices.push(device("new tablet", KEY2, Params::DEFAULT));
    let mut st = keyed();
    for i in 0..32u64 {
        let old = format!("old key {i:02}");
        st.spend_step(old.as_bytes(), 1, 30, NOW - 86_400 + i);
    }
    let t0 = NOW - NOW % 30 + 5;
    let x = code_at(t0 + 300); // a guess that is the phone's code 10 steps ahead
    assert!(matches!(
        run_with(&POLICY, &s, &mut st, &x, t0),
        Decision::Skewed { .. }
    ));
    // The user's new tablet, first code: accepted, its entry made.
    let tab = totp_at_step(KEY2, t0 / 30, &Params::DEFAULT).to_string();
    assert!(matches!(
        run_with(&POLICY, &s, &mut st, &tab, t0 + 1),
        Decision::Accepted(_)
    ));
    let t = t0 + 300;
    let d = run_with(&POLICY, &s, &mut st, &x, t);
    assert!(
        !matches!(d, Decision::Accepted(_)),
        "a code refused as out of the window was accepted once its entry was dropped: {d:?}"
    );
}
