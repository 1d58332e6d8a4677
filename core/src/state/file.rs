//! State file format 3: the on-disk container of one user's [`State`], built so that an
//! accepted login costs one `pwrite` and one `fdatasync`, and a wrong code one `pwrite`.
//!
//! Owns: the byte layout (FILEFORMAT.md, "State file, format 3"), encoding and decoding of
//! the state record, and the choice of the record a reader trusts.
//! Never: reads a damaged record as valid; overwrites the newest valid record in place.
//!
//! ```text
//! offset 0          "PTSTATE3"                        file magic, written once
//! offset 512        counters: seq u64, failures u32, locked_until u64, check[16]
//! offset 4096       slot 0: "PTSLOT03", seq u64, len u32, check[32], payload[len], zeros
//! offset 4096 + S   slot 1: the same
//! ```
//!
//! The whole state is in the payload of a slot. A write that changes anything but the
//! failure count and lockout goes to the slot that does *not* hold the newest valid record,
//! with the next sequence number, and is flushed (`fdatasync`, one block) before the login
//! is accepted. A power cut during that write leaves a slot whose checksum fails, and the
//! reader takes the other, untouched one: the state before this login, which this login was
//! not yet accepted on. A wrong code changes only the failure count (and maybe a lockout):
//! that goes to the small counters record, rewritten in place without a flush (as before: a
//! crash may forget failures, never a spent code), stamped with the sequence number of the
//! slot it applies to. The reader takes the counters record when it is whole and stamped
//! with the newest slot's number (or a later one), else the slot's own counts — so a torn
//! counters record reads as the last flushed counts, never as a lockout nobody earned.
//!
//! Little-endian integers; strings are u16 length + UTF-8 bytes. All lengths are checked.

use super::FormatError;
use sha2::{Digest, Sha256};

use crate::state::{DeviceState, Remembered, Seen, State, UsedBackup, VERSION};

pub const FILE_MAGIC: &[u8; 8] = b"PTSTATE3";
const SLOT_MAGIC: &[u8; 8] = b"PTSLOT03";
/// The unit of the layout: slots start on a 4 KiB boundary, so a torn write of one slot
/// (a disk writes whole sectors or pages) can never reach into the other.
pub const BLOCK: usize = 4096;
/// In its own sector: rewritten often and not flushed, it must not share a sector with the
/// file magic, which a torn or unreadable sector would take with it.
const COUNTERS_AT: usize = 512;
const COUNTERS_LEN: usize = 8 + 4 + 8 + 16;
const SLOT_HEADER: usize = 8 + 8 + 4 + 32;
/// Largest payload written (the state's own limits keep it far below this).
pub const MAX_PAYLOAD: usize = 96 * 1024;
/// Largest file read: the header block and two slots of the largest payload.
pub const MAX_FILE: usize = BLOCK + 2 * (MAX_PAYLOAD + SLOT_HEADER).next_multiple_of(BLOCK);
/// Payload format inside a slot: 1 until the clock offsets, 2 with them (after each
/// device's `last_used`: `offset` as i64, then `seen` as a count and (`time`, `at`) pairs).
/// Version 1 is still read, and written while no authenticator has an offset or a code seen
/// out of the window, so that such a file still reads on a version that knows only 1.
const PAYLOAD_VERSION: u8 = 2;
const PAYLOAD_VERSION_1: u8 = 1;

/// What a reader found in a format-3 file.
#[derive(Debug, Clone)]
pub struct Image {
    pub state: State,
    /// Sequence number and index of the slot the state came from (the newest valid one).
    pub seq: u64,
    pub slot: usize,
    /// Bytes per slot.
    pub slot_size: usize,
    /// The payload of that slot, to tell whether a write needs a new one.
    pub payload: zeroize::Zeroizing<Vec<u8>>,
    /// `false`: the counters record was damaged (the slot's own counts were taken).
    pub counters_valid: bool,
    /// The other slot has a record that is not whole: a write in progress (or cut by a
    /// crash). A reader without the lock reads again to get the newer state.
    pub other_torn: bool,
}

pub fn is_format3(bytes: &[u8]) -> bool {
    bytes.starts_with(FILE_MAGIC)
}

/// Byte offset of slot `index` in a file with slots of `slot_size` bytes.
pub fn slot_offset(slot_size: usize, index: usize) -> u64 {
    (BLOCK + index * slot_size) as u64
}

/// Whether a payload of `len` bytes fits in a slot of `slot_size` bytes.
pub fn fits(slot_size: usize, len: usize) -> bool {
    SLOT_HEADER + len <= slot_size
}

/// Slot size for a new file holding `len` bytes of payload, with room to grow (a state
/// rarely grows past it; when it does, the store writes a new, larger file).
fn slot_size_for(len: usize) -> usize {
    (SLOT_HEADER + len + 1024).next_multiple_of(BLOCK)
}

fn counters_check(seq: u64, failures: u32, locked_until: u64) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"pam_totp counters\0");
    h.update(seq.to_le_bytes());
    h.update(failures.to_le_bytes());
    h.update(locked_until.to_le_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// The counters record (written at [`counters_offset`]) for the slot numbered `seq`.
pub fn counters_record(seq: u64, failures: u32, locked_until: u64) -> [u8; COUNTERS_LEN] {
    let mut out = [0u8; COUNTERS_LEN];
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..12].copy_from_slice(&failures.to_le_bytes());
    out[12..20].copy_from_slice(&locked_until.to_le_bytes());
    out[20..].copy_from_slice(&counters_check(seq, failures, locked_until));
    out
}

pub fn counters_offset() -> u64 {
    COUNTERS_AT as u64
}

fn slot_check(seq: u64, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"pam_totp slot\0");
    h.update(seq.to_le_bytes());
    h.update((payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

/// What to write over a slot's magic to make the slot invalid (see `FileStore::write`: a
/// record whose flush failed must not stay readable as the newest).
pub const SLOT_KILL: [u8; 8] = [0; 8];

/// A slot's bytes (header + payload; the rest of the slot is left as it is: the length
/// says where the record ends).
pub fn slot_record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SLOT_HEADER + payload.len());
    out.extend_from_slice(SLOT_MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&slot_check(seq, payload));
    out.extend_from_slice(payload);
    out
}

/// A whole new file: `st` in slot 0 with sequence number `seq`, slot 1 empty.
pub fn new_file(st: &State, seq: u64) -> Result<Vec<u8>, FormatError> {
    let payload = encode_payload(st)?;
    let slot_size = slot_size_for(payload.len());
    let mut out = vec![0u8; BLOCK + 2 * slot_size];
    out[..8].copy_from_slice(FILE_MAGIC);
    out[COUNTERS_AT..COUNTERS_AT + COUNTERS_LEN].copy_from_slice(&counters_record(seq, st.failures, st.locked_until));
    let rec = slot_record(seq, &payload);
    out[BLOCK..BLOCK + rec.len()].copy_from_slice(&rec);
    Ok(out)
}

/// A slot's (seq, payload) if its record is whole and its checksum right.
fn read_slot(slot: &[u8]) -> Option<(u64, &[u8])> {
    if slot.len() < SLOT_HEADER || &slot[..8] != SLOT_MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(slot[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(slot[16..20].try_into().ok()?) as usize;
    let payload = slot.get(SLOT_HEADER..SLOT_HEADER.checked_add(len)?)?;
    (slot[20..52] == slot_check(seq, payload)).then_some((seq, payload))
}

/// Reads a format-3 file: the newest slot whose record is valid, and the counters.
pub fn decode_file(bytes: &[u8]) -> Result<Image, FormatError> {
    if !is_format3(bytes) {
        return Err("not a format 3 state file".into());
    }
    let n = bytes.len();
    if !(3 * BLOCK..=MAX_FILE).contains(&n) || !(n - BLOCK).is_multiple_of(2 * BLOCK) {
        return Err(format!("a format 3 state file of {n} bytes (the layout is damaged)").into());
    }
    let slot_size = (n - BLOCK) / 2;
    let slot_bytes = |i: usize| &bytes[BLOCK + i * slot_size..BLOCK + (i + 1) * slot_size];
    // The slot whose header claims the higher sequence number is checked first; only if its
    // record is not whole is the other one checked (one checksum per read, not two). A
    // claimed number is only trusted once its checksum holds, so the result is the newest
    // valid record either way.
    let claimed = |i: usize| {
        slot_bytes(i)
            .get(8..16)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let first = if claimed(0) > claimed(1) { 0 } else { 1 };
    let (slot, seq, payload, other_torn) = match read_slot(slot_bytes(first)) {
        Some((seq, payload)) => (first, seq, payload, false),
        None => match read_slot(slot_bytes(1 - first)) {
            Some((seq, payload)) => (1 - first, seq, payload, slot_bytes(first).starts_with(SLOT_MAGIC)),
            None => return Err("neither copy of the state is intact".into()),
        },
    };
    let mut state = decode_payload(payload)?;
    let c = &bytes[COUNTERS_AT..COUNTERS_AT + COUNTERS_LEN];
    let c_seq = u64::from_le_bytes(c[..8].try_into().map_err(|_| "counters")?);
    let failures = u32::from_le_bytes(c[8..12].try_into().map_err(|_| "counters")?);
    let locked_until = u64::from_le_bytes(c[12..20].try_into().map_err(|_| "counters")?);
    let counters_valid = c[20..] == counters_check(c_seq, failures, locked_until);
    // Counts written since the newest slot (a wrong code) apply; older ones were replaced by
    // the slot's own (a spend clears the failures in the slot, not in this record).
    if counters_valid && c_seq >= seq {
        state.failures = failures;
        state.locked_until = locked_until;
    }
    Ok(Image {
        state,
        seq,
        slot,
        slot_size,
        payload: zeroize::Zeroizing::new(payload.to_vec()),
        counters_valid,
        other_torn,
    })
}

/// Wipes the records of both slots in a file image read into memory (their payloads hold
/// the per-user key); the rest of the file is padding and the counters.
pub fn wipe(bytes: &mut [u8]) {
    use zeroize::Zeroize;
    let n = bytes.len();
    if n < 3 * BLOCK {
        bytes.zeroize();
        return;
    }
    let slot_size = (n - BLOCK) / 2;
    for i in 0..2 {
        let at = BLOCK + i * slot_size;
        let len = bytes
            .get(at + 16..at + 20)
            .and_then(|b| b.try_into().ok())
            .map_or(slot_size, |b| u32::from_le_bytes(b) as usize);
        let end = (at + SLOT_HEADER).saturating_add(len).min(at + slot_size).min(n);
        bytes[at..end].zeroize();
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn count(&mut self, n: usize) -> Result<(), String> {
        let n = u16::try_from(n).map_err(|_| "too many entries to store")?;
        self.0.extend_from_slice(&n.to_le_bytes());
        Ok(())
    }
    fn str(&mut self, s: &str) -> Result<(), String> {
        self.count(s.len())?;
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A state's record, as a slot holds it.
pub fn encode_payload(st: &State) -> Result<Vec<u8>, FormatError> {
    let mut w = Writer(Vec::with_capacity(256));
    let clocks = st.devices.iter().any(|d| d.offset != 0 || !d.seen.is_empty());
    w.u8(if clocks { PAYLOAD_VERSION } else { PAYLOAD_VERSION_1 });
    w.str(&st.key)?;
    w.u64(st.enrolled);
    w.u64(st.last_success);
    w.u64(u64::from(st.failures));
    w.u64(st.locked_until);
    w.count(st.devices.len())?;
    for d in &st.devices {
        w.str(&d.id)?;
        w.u64(d.not_before);
        w.u64(d.counter);
        w.u64(d.last_used);
        if clocks {
            w.u64(d.offset as u64);
            w.count(d.seen.len())?;
            for s in &d.seen {
                w.u64(s.time);
                w.u64(s.at);
            }
        }
    }
    w.count(st.used_backup.len())?;
    for u in &st.used_backup {
        w.str(&u.tag)?;
        w.str(&u.entry)?;
    }
    w.count(st.remembered.len())?;
    for r in &st.remembered {
        w.str(&r.rhost)?;
        w.str(&r.service)?;
        w.u64(r.until);
        w.str(&r.enrollment)?;
    }
    match st.v1_last_step {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.u64(s);
        }
    }
    w.count(st.v1_used_backup_codes.len())?;
    for c in &st.v1_used_backup_codes {
        w.str(c)?;
    }
    if w.0.len() > MAX_PAYLOAD {
        return Err(format!("the state is too large to store ({} bytes)", w.0.len()).into());
    }
    Ok(w.0)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the state record ends early".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "u64")?))
    }
    fn count(&mut self) -> Result<usize, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes(b.try_into().map_err(|_| "u16")?) as usize)
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.count()?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "a string in the state record is not UTF-8".into())
    }
}

/// The inverse of [`encode_payload`]; the result is checked like a version-2 file.
pub fn decode_payload(p: &[u8]) -> Result<State, FormatError> {
    let mut r = Reader(p);
    let v = r.u8()?;
    if v != PAYLOAD_VERSION && v != PAYLOAD_VERSION_1 {
        return Err(format!("state record version {v} is not supported").into());
    }
    let mut st = State {
        version: VERSION,
        key: r.str()?,
        enrolled: r.u64()?,
        last_success: r.u64()?,
        failures: u32::try_from(r.u64()?).map_err(|_| "the failure count is out of range")?,
        locked_until: r.u64()?,
        ..State::default()
    };
    for _ in 0..r.count()? {
        let mut d = DeviceState {
            id: r.str()?,
            not_before: r.u64()?,
            counter: r.u64()?,
            last_used: r.u64()?,
            offset: 0,
            seen: Vec::new(),
        };
        if v == PAYLOAD_VERSION {
            d.offset = r.u64()? as i64;
            for _ in 0..r.count()? {
                d.seen.push(Seen {
                    time: r.u64()?,
                    at: r.u64()?,
                });
            }
        }
        st.devices.push(d);
    }
    for _ in 0..r.count()? {
        st.used_backup.push(UsedBackup {
            tag: r.str()?,
            entry: r.str()?,
        });
    }
    for _ in 0..r.count()? {
        st.remembered.push(Remembered {
            rhost: r.str()?,
            service: r.str()?,
            until: r.u64()?,
            enrollment: r.str()?,
        });
    }
    st.v1_last_step = match r.u8()? {
        0 => None,
        1 => Some(r.u64()?),
        _ => return Err("the state record is damaged".into()),
    };
    for _ in 0..r.count()? {
        st.v1_used_backup_codes.push(r.str()?);
    }
    if !r.0.is_empty() {
        return Err("the state record has trailing bytes".into());
    }
    st.validate()?;
    // Version 2 is written only for a state with a clock offset or a code seen out of the
    // window; one without is not a record this release wrote (and would not write back).
    if v == PAYLOAD_VERSION && !st.devices.iter().any(|d| d.offset != 0 || !d.seen.is_empty()) {
        return Err("a version 2 state record without clock records".into());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> State {
        let mut st = State {
            enrolled: 1_700_000_000,
            last_success: 1_700_000_000 + i,
            failures: 2,
            locked_until: 0,
            ..State::default()
        };
        st.ensure_key().unwrap();
        st.devices.push(DeviceState {
            id: "0123456789abcdef0123456789abcdef".into(),
            not_before: 1_700_000_030 + 30 * i,
            counter: i,
            last_used: 1_700_000_000 + i,
            offset: 0,
            seen: Vec::new(),
        });
        st.used_backup.push(UsedBackup {
            tag: "fedcba9876543210fedcba9876543210".into(),
            entry: "0011223344556677".into(),
        });
        st.remembered.push(Remembered {
            rhost: "192.0.2.7".into(),
            service: "sshd".into(),
            until: 1_800_000_000,
            enrollment: "abc".into(),
        });
        st.v1_last_step = Some(7);
        st.v1_used_backup_codes.push("$5$x".into());
        st
    }

    #[test]
    fn payload_round_trips() {
        let st = sample(3);
        let p = encode_payload(&st).unwrap();
        let mut back = decode_payload(&p).unwrap();
        back.failures = st.failures;
        assert_eq!(back, st);
        assert_eq!(
            decode_payload(&encode_payload(&State::default()).unwrap()).unwrap(),
            State::default()
        );
    }

    #[test]
    fn every_truncation_or_extension_of_a_payload_is_refused() {
        for st in [sample(1), with_clock(sample(1))] {
            let p = encode_payload(&st).unwrap();
            for n in 0..p.len() {
                assert!(decode_payload(&p[..n]).is_err(), "truncated at {n}");
            }
            let mut longer = p.clone();
            longer.push(0);
            assert!(decode_payload(&longer).is_err());
        }
    }

    fn with_clock(mut st: State) -> State {
        st.devices[0].offset = -90;
        st.devices[0].seen.push(Seen {
            time: 1_700_000_300,
            at: 1_700_000_100,
        });
        st
    }

    #[test]
    fn clock_offsets_need_payload_version_2_and_version_1_still_reads() {
        // Without an offset or a seen code the record is the version-1 payload, byte for byte
        // as before (what an older module reads).
        let plain = sample(2);
        let p = encode_payload(&plain).unwrap();
        assert_eq!(p[0], 1);
        let mut back = decode_payload(&p).unwrap();
        back.failures = plain.failures;
        assert_eq!(back, plain);
        // With them: version 2, read back whole.
        let clocked = with_clock(sample(2));
        let p = encode_payload(&clocked).unwrap();
        assert_eq!(p[0], 2);
        let mut back = decode_payload(&p).unwrap();
        back.failures = clocked.failures;
        assert_eq!(back, clocked);
        assert_eq!(back.devices[0].offset, -90);
        // An unknown version is refused.
        let mut v3 = p.clone();
        v3[0] = 3;
        assert!(decode_payload(&v3).is_err());
    }

    #[test]
    fn new_file_reads_back_with_counters() {
        let st = sample(1);
        let f = new_file(&st, 1).unwrap();
        assert_eq!(f.len() % BLOCK, 0);
        let img = decode_file(&f).unwrap();
        assert_eq!(img.state, st);
        assert_eq!((img.seq, img.slot, img.counters_valid), (1, 0, true));
    }

    /// Writes `next` into the file the way the store does: the slot not holding the newest
    /// valid record, then the counters.
    fn write_next(file: &[u8], next: &State) -> (u64, Vec<u8>) {
        let img = decode_file(file).unwrap();
        let payload = encode_payload(next).unwrap();
        let rec = slot_record(img.seq + 1, &payload);
        let at = slot_offset(img.slot_size, 1 - img.slot) as usize;
        (at as u64, rec)
    }

    /// A power cut in the middle of writing a slot: every prefix of the new record over the
    /// old bytes, and (a disk reorders sector writes) every "new bytes up to here, old bytes
    /// after" and "old up to here, new after" split. The reader must see either the state
    /// before or after the write, never anything else, and never an error.
    #[test]
    fn a_slot_write_torn_at_every_byte_reads_as_before_or_after() {
        let mut file = new_file(&sample(1), 1).unwrap();
        // Fill both slots so the torn write lands over a valid older record.
        for i in 2..4 {
            let (at, rec) = write_next(&file, &sample(i));
            file[at as usize..at as usize + rec.len()].copy_from_slice(&rec);
        }
        let before = decode_file(&file).unwrap().state;
        let after = sample(4);
        let (at, rec) = write_next(&file, &after);
        let at = at as usize;
        let old = file[at..at + rec.len()].to_vec();
        for cut in 0..=rec.len() {
            for (name, torn) in [
                ("prefix new", [&rec[..cut], &old[cut..]].concat()),
                ("prefix old", [&old[..cut], &rec[cut..]].concat()),
            ] {
                let mut f = file.clone();
                f[at..at + rec.len()].copy_from_slice(&torn);
                let got = decode_file(&f).unwrap_or_else(|e| panic!("{name} at {cut}: {e}")).state;
                let mut want_after = after.clone();
                want_after.failures = before.failures;
                want_after.locked_until = before.locked_until;
                assert!(got == before || got == want_after, "{name} at {cut}: a third state");
                // Unless the old bytes past the cut happen to equal the new ones already.
                if torn != rec {
                    assert_eq!(got, before, "{name} at {cut}: an incomplete record was taken");
                }
            }
        }
    }

    /// A counters record torn at any byte reads as the old counts or the new ones, or — when
    /// it is not whole — as the newest slot's own: never as a lockout nobody earned.
    #[test]
    fn a_torn_counters_record_reads_as_old_new_or_the_slots_own_counts() {
        let mut st = sample(1);
        st.failures = 4;
        st.locked_until = 0;
        let file = new_file(&st, 1).unwrap();
        let old = file[COUNTERS_AT..COUNTERS_AT + COUNTERS_LEN].to_vec();
        let new = counters_record(1, 5, 1_900_000_000);
        for cut in 0..=new.len() {
            for torn in [[&new[..cut], &old[cut..]].concat(), [&old[..cut], &new[cut..]].concat()] {
                let mut f = file.clone();
                f[COUNTERS_AT..COUNTERS_AT + COUNTERS_LEN].copy_from_slice(&torn);
                let img = decode_file(&f).unwrap();
                let c = (img.state.failures, img.state.locked_until);
                assert!(c == (4, 0) || c == (5, 1_900_000_000), "cut {cut}: {c:?}");
                if !img.counters_valid {
                    assert_eq!(c, (4, 0), "cut {cut}: the slot's own counts");
                }
            }
        }
    }

    /// A spend writes the counts into its slot and leaves the counters record alone: that
    /// record, stamped with an older slot, no longer applies.
    #[test]
    fn counts_stamped_with_an_older_slot_give_way_to_the_newer_slots_own() {
        let mut st = sample(1);
        st.failures = 4;
        let mut file = new_file(&st, 1).unwrap();
        file[COUNTERS_AT..COUNTERS_AT + COUNTERS_LEN].copy_from_slice(&counters_record(1, 6, 0));
        assert_eq!(
            decode_file(&file).unwrap().state.failures,
            6,
            "a wrong code after slot 1"
        );
        let mut next = sample(2);
        next.failures = 0;
        let (at, rec) = write_next(&file, &next);
        file[at as usize..at as usize + rec.len()].copy_from_slice(&rec);
        let img = decode_file(&file).unwrap();
        assert_eq!((img.seq, img.state.failures), (2, 0), "the spend cleared them");
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_newest_slot_falls_back_to_the_older_one() {
        let mut file = new_file(&sample(1), 1).unwrap();
        let older = decode_file(&file).unwrap().state;
        let (at, rec) = write_next(&file, &sample(2));
        file[at as usize..at as usize + rec.len()].copy_from_slice(&rec);
        assert_eq!(decode_file(&file).unwrap().seq, 2);
        for i in 0..rec.len() {
            let mut f = file.clone();
            f[at as usize + i] ^= 0x10;
            let img = decode_file(&f).unwrap();
            // A flip in the sequence number may still leave a valid-looking header only if
            // the checksum matched, which it cannot; so the older slot is taken.
            assert_eq!((img.seq, &img.state), (1, &older), "byte {i}");
        }
    }

    #[test]
    fn both_slots_damaged_is_an_error_not_a_fresh_state() {
        let mut file = new_file(&sample(1), 1).unwrap();
        file[BLOCK + 20] ^= 1;
        assert!(decode_file(&file).is_err());
        for bad_len in [0, BLOCK, 2 * BLOCK, 3 * BLOCK + 1, 4 * BLOCK] {
            let mut f = file.clone();
            f.resize(bad_len.max(8), 0);
            f[..8].copy_from_slice(FILE_MAGIC);
            assert!(decode_file(&f).is_err(), "{bad_len}");
        }
    }

    #[test]
    fn the_higher_sequence_number_wins_whichever_slot_holds_it() {
        let mut file = new_file(&sample(1), 1).unwrap();
        for i in 2..6 {
            let (at, rec) = write_next(&file, &sample(i));
            file[at as usize..at as usize + rec.len()].copy_from_slice(&rec);
            let img = decode_file(&file).unwrap();
            assert_eq!(img.seq, i);
            assert_eq!(img.slot, ((i - 1) % 2) as usize);
            assert_eq!(img.state.last_success, sample(i).last_success);
        }
    }
}
