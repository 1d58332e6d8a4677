//! State file format v2 (per user, root-only): types, parse (v1 and v2), serialize.
//!
//! Owns: what the module remembers between logins. Users cannot write it, which is why
//! the lockout, the replay guards, the record of spent backup codes and the record that a
//! user has enrolled live here and not in the user's secret file.
//!
//! Designed once for what the state must hold (FILEFORMAT.md): a per-user random `key` for
//! keyed hashes, so nothing here depends on how the secret file happens to be salted;
//! replay guards per authenticator (`devices`, keyed by a keyed hash of the authenticator's
//! key, so renaming or re-importing one keeps its guard), as a time for TOTP and a counter
//! for HOTP; spent backup codes as keyed hashes of the codes themselves, newest 100; and
//! remembered hosts tied to the enrollment they were earned with, each tagged under a key
//! derived from the authenticators' keys ([`RememberKey`]) — never from `key`, which
//! whoever can write the state (the fleet's etcd prefix) can read.
//! Never: keeps a code, a secret or a backup code in clear.

pub mod any;
pub mod file;
pub mod fleet;
pub mod store;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::files::secret::SecretFile;
use crate::text::toml_error_position;

pub const VERSION: i64 = 2;
/// Most remembered (remote host, service) pairs kept per user; the oldest go first.
pub const MAX_REMEMBERED: usize = 32;
/// Spent backup codes remembered. A secret file holds at most 100 codes, so every spent
/// code of the current set stays recorded for as long as that set is in use.
pub const MAX_USED_BACKUP: usize = 100;
/// Authenticators whose replay guard is kept (most recently used first to stay).
pub const MAX_DEVICES: usize = 32;
/// Bytes of the per-user key.
pub const KEY_BYTES: usize = 32;
/// Codes seen out of the window kept per authenticator ([`DeviceState::seen`]).
pub const MAX_SEEN: usize = 4;
/// Largest clock offset a state may hold, in seconds (the largest `skew_range`).
pub const MAX_OFFSET: i64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: i64,
    /// Per-user random key (hex) for the keyed hashes below; made at the first write.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Unix seconds when pam_totp first saw this user enrolled (a code accepted, or an
    /// enrollment by root); 0 = never. A missing secret file then refuses, even under nullok.
    #[serde(default)]
    pub enrolled: u64,
    /// Unix seconds of the last accepted code (TOTP or backup); 0 = never.
    #[serde(default)]
    pub last_success: u64,
    /// Consecutive wrong answers since the last success or lockout.
    #[serde(default)]
    pub failures: u32,
    /// Unix seconds until which every answer is refused; 0 = not locked.
    #[serde(default)]
    pub locked_until: u64,
    /// Replay guards, one per authenticator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceState>,
    /// Backup codes already used, oldest first, at most [`MAX_USED_BACKUP`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_backup: Vec<UsedBackup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remembered: Vec<Remembered>,
    /// Carried over from a version-1 state file until the next login moves it into
    /// `devices`: the last TOTP step accepted for the (single) authenticator of that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1_last_step: Option<u64>,
    /// Carried over from a version-1 state file: used backup codes as the secret file's
    /// salted hash strings; entries no longer in the secret file are dropped at each login.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub v1_used_backup_codes: Vec<String>,
}

/// The replay guard of one authenticator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceState {
    /// Keyed hash (hex) of the authenticator's key: see [`State::device_id`].
    pub id: String,
    /// TOTP: codes for time steps that start before this Unix time are refused (the step
    /// after the last one accepted). A time, not a step, so a change of period keeps it.
    #[serde(default)]
    pub not_before: u64,
    /// HOTP: the lowest counter that may still be accepted.
    #[serde(default)]
    pub counter: u64,
    /// Unix seconds this authenticator was last accepted.
    #[serde(default)]
    pub last_used: u64,
    /// TOTP: how far this authenticator's clock is ahead of the host's (negative: behind),
    /// in seconds, a whole number of its time steps; 0 = in step. Set when two consecutive
    /// codes out of the window agree on it (RFC 6238 section 6), then followed by each
    /// accepted code; the window is centred on it. Written only when not 0, so that a state
    /// without one reads on versions that do not know the field (FILEFORMAT.md).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: i64,
    /// TOTP: right codes seen out of the window and not accepted, newest last, at most
    /// [`MAX_SEEN`]: the first of two codes that resynchronise, and a code that may never be
    /// accepted later (whoever learnt by a refusal that it is a code cannot spend it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<Seen>,
}

/// A right code seen out of the window ([`DeviceState::seen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    /// Unix time at which the code's time step starts (the authenticator's time).
    pub time: u64,
    /// Unix seconds (this host's clock) when it was seen.
    pub at: u64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// One spent backup code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsedBackup {
    /// Keyed hash of the code itself ([`State::backup_tag`]): refuses it again however the
    /// secret file salts it.
    pub tag: String,
    /// SHA-256 (first 8 bytes, hex) of the secret file's hash string it matched, to count
    /// the codes left of the current set.
    pub entry: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remembered {
    pub rhost: String,
    pub service: String,
    pub until: u64,
    /// The entry's tag, [`RememberKey::tag`] of (`rhost`, `service`, `until`) under the key
    /// of the secret file and password this host was remembered with: a new enrollment,
    /// new backup codes, an import or a new password ends it, and nobody without the
    /// secret file can make one or move one to another address, service or expiry. (The
    /// name is that of the field's first use, the enrollment's id: kept so that every
    /// version reads every other's state.)
    #[serde(default)]
    pub enrollment: String,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: VERSION,
            key: String::new(),
            enrolled: 0,
            last_success: 0,
            failures: 0,
            locked_until: 0,
            devices: Vec::new(),
            used_backup: Vec::new(),
            remembered: Vec::new(),
            v1_last_step: None,
            v1_used_backup_codes: Vec::new(),
        }
    }
}

/// Version 1, as written before: read and converted, never written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateV1 {
    #[allow(dead_code)]
    version: i64,
    #[serde(default)]
    last_step: Option<u64>,
    #[serde(default)]
    last_success: u64,
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    locked_until: u64,
    #[serde(default)]
    used_backup_codes: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    remembered: Vec<RememberedV1>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RememberedV1 {
    rhost: String,
    service: String,
    until: u64,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: i64,
}

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 of a secret-file backup hash string, first 8 bytes hex.
fn entry_fingerprint(stored: &str) -> String {
    use sha2::Digest;
    data_encoding::HEXLOWER.encode(&Sha256::digest(stored.as_bytes())[..8])
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a state record could not be read or written: a position and a reason, never the
/// text (it holds the per-user key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

impl From<String> for FormatError {
    fn from(s: String) -> Self {
        FormatError(s)
    }
}

impl From<&str> for FormatError {
    fn from(s: &str) -> Self {
        FormatError(s.to_string())
    }
}

impl State {
    /// Parses a version-2 file, or a version-1 file converted to version 2 (its remembered
    /// hosts are dropped: they were not tied to an enrollment).
    pub fn parse(text: &str) -> Result<State, FormatError> {
        let v: VersionOnly = toml::from_str::<toml::Table>(text)
            .map_err(|e| toml_error_position(text, &e))
            .and_then(|t| {
                t.get("version")
                    .and_then(toml::Value::as_integer)
                    .map(|version| VersionOnly { version })
                    .ok_or_else(|| "missing or invalid version".to_string())
            })?;
        match v.version {
            1 => {
                let old: StateV1 = toml::from_str(text).map_err(|e| toml_error_position(text, &e))?;
                Ok(State {
                    // Someone who logged in with a code was enrolled.
                    enrolled: if old.last_step.is_some() || old.last_success > 0 {
                        old.last_success.max(1)
                    } else {
                        0
                    },
                    last_success: old.last_success,
                    failures: old.failures,
                    locked_until: old.locked_until,
                    v1_last_step: old.last_step,
                    v1_used_backup_codes: old.used_backup_codes,
                    ..State::default()
                })
            }
            VERSION => {
                let st: State = toml::from_str(text).map_err(|e| toml_error_position(text, &e))?;
                st.validate()?;
                Ok(st)
            }
            other => Err(format!("format version {other} is not supported (expected 1 or {VERSION})").into()),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.key.is_empty() || is_hex(&self.key, KEY_BYTES * 2)) {
            return Err("key is not 64 hex digits".into());
        }
        if self.devices.len() > MAX_DEVICES * 2
            || self.used_backup.len() > MAX_USED_BACKUP * 2
            || self.remembered.len() > MAX_REMEMBERED * 2
        {
            return Err("too many entries".into());
        }
        if self
            .devices
            .iter()
            .any(|d| d.offset.unsigned_abs() > MAX_OFFSET.unsigned_abs() || d.seen.len() > MAX_SEEN * 2)
        {
            return Err("a clock offset or its record is out of range".into());
        }
        if !self.devices.iter().all(|d| is_hex(&d.id, 32))
            || !self
                .used_backup
                .iter()
                .all(|u| is_hex(&u.tag, 32) && is_hex(&u.entry, 16))
        {
            return Err("a device id or used backup code is not 32 hex digits".into());
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String, FormatError> {
        toml::to_string(self).map_err(|e| FormatError(format!("cannot serialize state: {e}")))
    }

    /// What `pam-totp reset` leaves of a state that other hosts may still share (the fleet
    /// store): the key and every record that keeps a spent credential spent — replay guards
    /// and spent backup codes, also in their version-1 form. The enrollment record, the
    /// failure count, a lockout, remembered hosts and the last login go.
    pub fn forget_for_reset(&mut self) {
        self.enrolled = 0;
        self.last_success = 0;
        self.failures = 0;
        self.locked_until = 0;
        self.remembered.clear();
        self.clear_offsets();
    }

    /// Every authenticator back in step (`pam-totp unlock`, `reset`): their clock offsets
    /// go; the codes seen out of the window stay, like the replay guards (one of them may be
    /// a code someone learnt by a refusal). Returns how many offsets were cleared.
    pub fn clear_offsets(&mut self) -> usize {
        let mut n = 0;
        for d in &mut self.devices {
            if d.offset != 0 {
                d.offset = 0;
                n += 1;
            }
        }
        n
    }

    /// Makes the per-user key if there is none yet (the store calls this before a write).
    pub fn ensure_key(&mut self) -> Result<(), getrandom::Error> {
        if self.key.is_empty() {
            let mut k = zeroize::Zeroizing::new([0u8; KEY_BYTES]);
            getrandom::getrandom(k.as_mut())?;
            self.key = data_encoding::HEXLOWER.encode(k.as_ref());
        }
        Ok(())
    }

    /// HMAC-SHA256 under the per-user key of `parts` (length-prefixed), first 16 bytes hex.
    fn tag(&self, domain: &str, parts: &[&[u8]]) -> String {
        let key = data_encoding::HEXLOWER
            .decode(self.key.as_bytes())
            .map(zeroize::Zeroizing::new)
            .unwrap_or_default();
        let mut mac = match HmacSha256::new_from_slice(&key) {
            Ok(m) => m,
            Err(_) => return String::new(), // HMAC takes keys of any length
        };
        mac.update(domain.as_bytes());
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        let out = mac.finalize().into_bytes();
        data_encoding::HEXLOWER.encode(&out[..16])
    }

    /// The id of an authenticator's replay guard: a keyed hash of its key, so the guard
    /// follows the key (through renames and re-imports) and the state says nothing about it.
    pub fn device_id(&self, key: &[u8]) -> String {
        self.tag("pam_totp device\0", &[key])
    }

    /// Identifies the enrollment a secret file holds: its authenticators (keys, types,
    /// parameters) and backup code hashes. A new enrollment, an added or removed
    /// authenticator, new backup codes or an import changes it.
    pub fn enrollment_id(&self, secret: &SecretFile) -> String {
        let params: Vec<String> = secret
            .devices
            .iter()
            .map(|d| {
                format!(
                    "{}/{}/{}/{}",
                    d.kind.name(),
                    d.params.algorithm().name(),
                    d.params.digits(),
                    d.params.period()
                )
            })
            .collect();
        let mut parts: Vec<&[u8]> = Vec::new();
        for (d, p) in secret.devices.iter().zip(&params) {
            parts.push(d.key.as_slice());
            parts.push(p.as_bytes());
        }
        parts.extend(secret.backup_codes.iter().map(|h| h.as_bytes()));
        self.tag("pam_totp enrollment\0", &parts)
    }

    /// The key a remembered host's tag is made with ([`RememberKey`]), for `user` with
    /// `secret` and the account's password hash (if it has a local one) — so a new
    /// enrollment, new backup codes, or a changed password (seed 002: "unless you ...
    /// change your password") ends it.
    ///
    /// HMAC-SHA256 keyed with the authenticators' keys (each length-prefixed, in file
    /// order) over a label, the account name, the [`State::enrollment_id`] (types,
    /// parameters, backup code hashes) and the password hash. The keys are what the state
    /// does not hold: whoever can read and write the state or the fleet's etcd document,
    /// and so has `key`, cannot compute it.
    pub fn remember_key(&self, user: &str, secret: &SecretFile, password_hash: Option<&str>) -> RememberKey {
        // Sized once, so no reallocation leaves a copy of the keys behind.
        let size = secret.devices.iter().map(|d| 8 + d.key.len()).sum();
        let mut material = zeroize::Zeroizing::new(Vec::with_capacity(size));
        for d in &secret.devices {
            material.extend_from_slice(&(d.key.len() as u64).to_be_bytes());
            material.extend_from_slice(&d.key);
        }
        // A parsed secret file has at least one key (of 10 bytes or more); without one there
        // is nothing a writer of the state lacks, so nothing is remembered.
        if secret.devices.iter().all(|d| d.key.is_empty()) {
            return RememberKey(None);
        }
        let Ok(mut mac) = HmacSha256::new_from_slice(&material) else {
            return RememberKey(None); // HMAC takes keys of any length
        };
        let enrollment = self.enrollment_id(secret);
        mac.update(b"pam_totp remembered host key\0");
        for p in [
            user.as_bytes(),
            enrollment.as_bytes(),
            password_hash.unwrap_or("").as_bytes(),
        ] {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        RememberKey(Some(out))
    }

    /// The record of a spent backup code: a keyed hash of its canonical form, the same
    /// however the secret file salts it (a re-import re-salts).
    pub fn backup_tag(&self, canonical: &str) -> String {
        self.tag("pam_totp backup\0", &[canonical.as_bytes()])
    }

    pub fn device(&self, id: &str) -> Option<&DeviceState> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// The replay guard for `id`, created if missing; keeps at most [`MAX_DEVICES`], dropping
    /// the least recently used.
    pub fn device_mut(&mut self, id: &str) -> &mut DeviceState {
        if let Some(i) = self.devices.iter().position(|d| d.id == id) {
            return &mut self.devices[i];
        }
        if self.devices.len() >= MAX_DEVICES {
            // The least recently used go first; an entry that keeps a clock offset or a code
            // seen out of the window (which must never be accepted) goes last.
            self.devices
                .sort_by_key(|d| std::cmp::Reverse((d.offset != 0 || !d.seen.is_empty(), d.last_used)));
            self.devices.truncate(MAX_DEVICES - 1);
        }
        self.devices.push(DeviceState {
            id: id.to_string(),
            not_before: 0,
            counter: 0,
            last_used: 0,
            offset: 0,
            seen: Vec::new(),
        });
        let last = self.devices.len() - 1;
        &mut self.devices[last]
    }

    /// Spends HOTP counter `counter` of the authenticator with key `device_key`: only later
    /// counters are accepted from now on.
    pub fn spend_counter(&mut self, device_key: &[u8], counter: u64, now: u64) {
        let id = self.device_id(device_key);
        let d = self.device_mut(&id);
        d.counter = d.counter.max(counter.saturating_add(1));
        d.last_used = now;
    }

    /// Spends TOTP time step `step` (of `period` seconds) of the authenticator with key
    /// `device_key`: codes for steps starting before the next one are refused from now on.
    pub fn spend_step(&mut self, device_key: &[u8], step: u64, period: u64, now: u64) {
        let id = self.device_id(device_key);
        let d = self.device_mut(&id);
        d.not_before = d.not_before.max(step.saturating_add(1).saturating_mul(period));
        d.last_used = now;
    }

    /// Sets the clock offset of the authenticator with key `device_key` (seconds, see
    /// [`DeviceState::offset`]).
    pub fn set_offset(&mut self, device_key: &[u8], offset: i64) {
        let id = self.device_id(device_key);
        if offset == 0 && self.device(&id).is_none() {
            return;
        }
        self.device_mut(&id).offset = offset.clamp(-MAX_OFFSET, MAX_OFFSET);
    }

    /// Records a right code of the authenticator with key `device_key` seen out of the window
    /// and not accepted: its step starts at `time`, seen at `now`. Keeps the newest
    /// [`MAX_SEEN`].
    pub fn note_seen(&mut self, device_key: &[u8], time: u64, now: u64) {
        let id = self.device_id(device_key);
        let d = self.device_mut(&id);
        if d.seen.iter().any(|s| s.time == time) {
            return;
        }
        d.seen.push(Seen { time, at: now });
        if d.seen.len() > MAX_SEEN {
            d.seen.sort_by_key(|s| s.at);
            let extra = d.seen.len() - MAX_SEEN;
            d.seen.drain(..extra);
        }
    }

    /// Drops, for every authenticator, the codes seen out of the window whose step started
    /// before `oldest` (no window of any line can reach back to them: see
    /// `login::verify::oldest_reachable`), and those of entries no authenticator in `keys`
    /// has any more (no key, no code). Run at every counted decision, so that a state goes
    /// back to the form older releases read once its seen codes are out of reach.
    pub fn prune_all_seen(&mut self, keys: &[(Vec<u8>, u64)], oldest: impl Fn(u64) -> u64) {
        let ids: Vec<(String, u64)> = keys.iter().map(|(k, p)| (self.device_id(k), *p)).collect();
        for d in &mut self.devices {
            match ids.iter().find(|(id, _)| *id == d.id) {
                Some((_, period)) => {
                    let (nb, old) = (d.not_before, oldest(*period));
                    d.seen.retain(|s| s.time >= nb && s.time >= old);
                }
                None => d.seen.clear(),
            }
        }
    }

    /// Drops the codes seen out of the window that can never be accepted any more: before the
    /// replay guard, or starting before `oldest` (no window can reach back to them).
    pub fn prune_seen(&mut self, device_key: &[u8], oldest: u64) {
        let id = self.device_id(device_key);
        if let Some(i) = self.devices.iter().position(|d| d.id == id) {
            let d = &mut self.devices[i];
            let nb = d.not_before;
            d.seen.retain(|s| s.time >= nb && s.time >= oldest);
        }
    }

    /// An accepted code: the failure count and lockout end, and the user is on record as
    /// enrolled from now on.
    pub fn record_success(&mut self, now: u64) {
        self.failures = 0;
        self.locked_until = 0;
        self.last_success = now;
        if self.enrolled == 0 {
            self.enrolled = now.max(1);
        }
    }

    /// Records the backup code `canonical`, stored in the secret file as `stored`, as
    /// spent, keeping the newest [`MAX_USED_BACKUP`].
    pub fn spend_backup(&mut self, canonical: &str, stored: &str) {
        let tag = self.backup_tag(canonical);
        self.used_backup.push(UsedBackup {
            tag,
            entry: entry_fingerprint(stored),
        });
        if self.used_backup.len() > MAX_USED_BACKUP {
            let extra = self.used_backup.len() - MAX_USED_BACKUP;
            self.used_backup.drain(..extra);
        }
    }

    /// Whether the backup code `canonical`, stored in the secret file as `stored`, was used.
    pub fn backup_used(&self, canonical: &str, stored: &str) -> bool {
        let tag = self.backup_tag(canonical);
        self.used_backup.iter().any(|u| u.tag == tag) || self.v1_used_backup_codes.iter().any(|h| h == stored)
    }

    /// Moves what a version-1 state file knew into version-2 form, for the authenticator
    /// of a version-1 secret file (`key`, `period`), and keeps only the v1 backup records
    /// that still name a code in the secret file.
    pub fn migrate_v1(&mut self, key: &[u8], period: u64, issued: &[String]) {
        if let Some(step) = self.v1_last_step.take() {
            let id = self.device_id(key);
            let d = self.device_mut(&id);
            d.not_before = d.not_before.max(step.saturating_add(1).saturating_mul(period));
        }
        self.v1_used_backup_codes.retain(|h| issued.contains(h));
    }

    /// How many of `issued` (the secret file's backup code hashes) have not been used.
    /// Exact for the set in use; after a re-import re-salts the codes, the ones spent before
    /// still count as left here although the module refuses them.
    pub fn backup_codes_left(&self, issued: &[String]) -> usize {
        issued
            .iter()
            .filter(|h| {
                let fp = entry_fingerprint(h);
                !self.used_backup.iter().any(|u| u.entry == fp) && !self.v1_used_backup_codes.contains(h)
            })
            .count()
    }

    pub fn is_locked(&self, now: u64) -> bool {
        self.locked_until > now
    }

    /// Whether (rhost, service) was remembered with `key` and has not expired. `max_age` is
    /// the configured `remember=`: an entry whose expiry is further away than that is not
    /// honoured, whatever its tag (a larger `remember=` before, a clock that ran ahead).
    pub fn is_remembered(&self, rhost: &str, service: &str, key: &RememberKey, now: u64, max_age: u64) -> bool {
        self.remembered.iter().any(|r| {
            r.rhost == rhost
                && r.service == service
                && r.until > now
                && r.until <= now.saturating_add(max_age)
                && key.verifies(r)
        })
    }

    /// Remembers (rhost, service) with `key` until `until`, dropping expired entries,
    /// entries whose tag `key` does not verify (other enrollments or passwords, older tag
    /// formats, forgeries) and the excess.
    pub fn remember(&mut self, rhost: &str, service: &str, key: &RememberKey, until: u64, now: u64) {
        // A host name is at most 253 bytes; anything longer (a PAM application passing a
        // client's text as PAM_RHOST) is not remembered, so the state stays small enough to
        // store and the login that earned it is not refused for its size.
        if rhost.len() > 255 || service.len() > 255 || key.0.is_none() {
            return;
        }
        self.remembered
            .retain(|r| r.until > now && !(r.rhost == rhost && r.service == service) && key.verifies(r));
        self.remembered.push(Remembered {
            rhost: rhost.to_string(),
            service: service.to_string(),
            until,
            enrollment: key.tag(rhost, service, until),
        });
        if self.remembered.len() > MAX_REMEMBERED {
            self.remembered.sort_by_key(|r| std::cmp::Reverse(r.until));
            self.remembered.truncate(MAX_REMEMBERED);
        }
    }
}

/// The key of a user's remembered hosts for one secret file and password hash
/// ([`State::remember_key`]); `None` (a secret without keys) verifies no tag. Never stored.
pub struct RememberKey(Option<zeroize::Zeroizing<[u8; 32]>>);

impl std::fmt::Debug for RememberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RememberKey(<redacted>)")
    }
}

impl RememberKey {
    /// The tag of an entry for (rhost, service) until `until`: HMAC-SHA256 under this key
    /// of a label and the three (length-prefixed; `until` as 8 bytes big-endian), first 16
    /// bytes hex. Another address, service or expiry needs another tag. Empty (never
    /// verified) without a key.
    pub fn tag(&self, rhost: &str, service: &str, until: u64) -> String {
        let Some(Ok(mut mac)) = self.0.as_ref().map(|k| HmacSha256::new_from_slice(k.as_ref())) else {
            return String::new();
        };
        mac.update(b"pam_totp remembered host\0");
        for p in [rhost.as_bytes(), service.as_bytes(), &until.to_be_bytes()] {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes()[..16])
    }

    /// Whether `r`'s tag is this key's for its own address, service and expiry (compared
    /// in constant time).
    fn verifies(&self, r: &Remembered) -> bool {
        let want = self.tag(&r.rhost, &r.service, r.until);
        !want.is_empty() && bool::from(want.as_bytes().ct_eq(r.enrollment.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed() -> State {
        let mut s = State::default();
        s.ensure_key().unwrap();
        s
    }

    #[test]
    fn round_trips_and_defaults() {
        let mut s = keyed();
        s.failures = 2;
        s.enrolled = 7;
        s.device_mut("00112233445566778899aabbccddeeff").not_before = 90;
        s.spend_backup("12345678", "v1$x$y");
        let key = s.remember_key("alice", &secret_file(KEY_1), None);
        s.remember("10.0.0.1", "sshd", &key, 100, 0);
        assert_eq!(State::parse(&s.to_toml().unwrap()).unwrap(), s);
        assert_eq!(State::parse("version = 2").unwrap(), State::default());
        assert_eq!(State::parse("version = 1").unwrap(), State::default());
    }

    #[test]
    fn clock_offsets_are_written_only_when_there_are_some() {
        // A state with no offset and no code seen out of the window is the TOML an older
        // version writes and reads (its parser refuses unknown fields).
        let mut s = keyed();
        s.device_mut("00112233445566778899aabbccddeeff").not_before = 90;
        let text = s.to_toml().unwrap();
        assert!(!text.contains("offset") && !text.contains("seen"), "{text}");
        // With them: read back whole; out of range refused.
        s.set_offset(b"k", 120);
        s.note_seen(b"k", 3000, 2900);
        let text = s.to_toml().unwrap();
        assert!(text.contains("offset = 120"), "{text}");
        assert_eq!(State::parse(&text).unwrap(), s);
        let far = text.replace("offset = 120", &format!("offset = {}", MAX_OFFSET + 1));
        assert!(State::parse(&far).is_err());
        // Reset and unlock clear offsets and keep the codes seen.
        s.forget_for_reset();
        let d = s.device(&s.device_id(b"k")).unwrap();
        assert_eq!((d.offset, d.seen.len()), (0, 1));
    }

    #[test]
    fn codes_seen_out_of_the_window_are_capped_and_pruned() {
        let mut s = keyed();
        for i in 0..10u64 {
            s.note_seen(b"k", 1000 + 30 * i, 500 + i);
        }
        let d = s.device(&s.device_id(b"k")).unwrap();
        assert_eq!(d.seen.len(), MAX_SEEN);
        assert_eq!(d.seen[0].time, 1000 + 30 * 6, "the newest kept");
        s.spend_step(b"k", 1000 / 30 + 7, 30, 600);
        s.prune_seen(b"k", 0);
        assert_eq!(
            s.device(&s.device_id(b"k")).unwrap().seen.len(),
            2,
            "before the guard: gone"
        );
        s.prune_seen(b"k", 1000 + 30 * 9);
        assert_eq!(s.device(&s.device_id(b"k")).unwrap().seen.len(), 1, "unreachable: gone");
    }

    #[test]
    fn malformed_state_is_refused() {
        for bad in [
            "",
            "version = 3",
            "version = \"2\"",
            "version = 2\nfailures = -1",
            "version = 2\nx = 1",
            "version = 1\nkey = \"00\"",
            "version = 2\nlast_step = 5",
            "version = 2\nkey = \"zz\"",
            "version = 2\n[[devices]]\nid = \"short\"",
            "version = 2\n[[used_backup]]\ntag = \"00\"\nentry = \"00\"",
            "version = 1\nlast_step = 99999999999999999999",
            "\u{0}",
        ] {
            assert!(State::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keyed_hashes_depend_on_the_per_user_key() {
        let (a, b) = (keyed(), keyed());
        assert_ne!(a.backup_tag("12345678"), b.backup_tag("12345678"));
        assert_ne!(a.device_id(b"k"), b.device_id(b"k"));
        assert_eq!(a.device_id(b"k"), a.device_id(b"k"));
        assert_ne!(a.device_id(b"k"), a.device_id(b"l"));
        assert_eq!(a.backup_tag("x").len(), 32);
    }

    #[test]
    fn remembered_entries_expire_belong_to_one_enrollment_and_are_capped() {
        let mut s = keyed();
        let e1 = s.remember_key("alice", &secret_file(KEY_1), None);
        let e2 = s.remember_key("alice", &secret_file(KEY_2), None);
        s.remember("a", "sshd", &e1, 50, 0);
        assert!(s.is_remembered("a", "sshd", &e1, 49, 3600));
        assert!(!s.is_remembered("a", "sshd", &e2, 10, 3600), "another enrollment");
        assert!(!s.is_remembered("a", "sshd", &e1, 50, 3600));
        assert!(!s.is_remembered("a", "sudo", &e1, 10, 3600));
        assert!(!s.is_remembered("b", "sshd", &e1, 10, 3600));
        s.remember("b", "sshd", &e2, 60, 0);
        assert!(
            !s.is_remembered("a", "sshd", &e1, 10, 3600),
            "entries of the old enrollment go"
        );
        for i in 0..100 {
            s.remember(&format!("h{i}"), "sshd", &e2, 1000 + i, 60);
        }
        assert_eq!(s.remembered.len(), MAX_REMEMBERED);
        assert!(s.is_remembered("h99", "sshd", &e2, 61, 3600));
    }

    const KEY_1: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    const KEY_2: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const NOW: u64 = 1_800_000_000;
    /// `remember=` as configured.
    const REMEMBER: u64 = 3600;
    const PASSWORD_HASH: &str = "$y$j9T$salt$hash";

    fn secret_file(b32: &str) -> SecretFile {
        SecretFile::parse(&format!(
            "version = 2\n[[device]]\nname = \"phone\"\nsecret = \"{b32}\"\n"
        ))
        .unwrap()
    }

    /// What a login leaves: alice remembered from 192.0.2.1 over sshd at NOW, and the key
    /// a host holding her secret file and password hash computes.
    fn remembered_state() -> (State, RememberKey) {
        let mut s = keyed();
        let key = s.remember_key("alice", &secret_file(KEY_1), Some(PASSWORD_HASH));
        s.remember("192.0.2.1", "sshd", &key, NOW + REMEMBER, NOW);
        (s, key)
    }

    /// `s` with its remembered hosts replaced by `entries`, as a writer of the fleet's etcd
    /// prefix (or of the state file) can store it.
    fn planted(s: &State, entries: Vec<Remembered>) -> State {
        let mut out = s.clone();
        out.remembered = entries;
        State::parse(&out.to_toml().unwrap()).unwrap()
    }

    #[test]
    fn a_genuine_remembered_host_is_honoured_on_every_host_with_the_same_secret_until_it_expires() {
        let (s, key) = remembered_state();
        assert!(s.is_remembered("192.0.2.1", "sshd", &key, NOW, REMEMBER));
        assert!(s.is_remembered("192.0.2.1", "sshd", &key, NOW + REMEMBER - 1, REMEMBER));
        assert!(!s.is_remembered("192.0.2.1", "sshd", &key, NOW + REMEMBER, REMEMBER));
        // Another host reads the document and computes the key from its own copy of the
        // secret file and password hash.
        let other = State::parse(&s.to_toml().unwrap()).unwrap();
        let key = other.remember_key("alice", &secret_file(KEY_1), Some(PASSWORD_HASH));
        assert!(other.is_remembered("192.0.2.1", "sshd", &key, NOW + 10, REMEMBER));
        let changed = other.remember_key("alice", &secret_file(KEY_1), Some("$y$j9T$salt$other"));
        assert!(
            !other.is_remembered("192.0.2.1", "sshd", &changed, NOW + 10, REMEMBER),
            "a changed password ends it"
        );
        let bob = other.remember_key("bob", &secret_file(KEY_1), Some(PASSWORD_HASH));
        assert!(
            !other.is_remembered("192.0.2.1", "sshd", &bob, NOW + 10, REMEMBER),
            "another account with the same secret"
        );
    }

    #[test]
    fn a_remembered_host_copied_with_another_address_service_or_expiry_is_not_honoured() {
        let (s, key) = remembered_state();
        let genuine = s.remembered[0].clone();
        let copy = |rhost: &str, service: &str, until: u64| Remembered {
            rhost: rhost.into(),
            service: service.into(),
            until,
            ..genuine.clone()
        };
        let st = planted(&s, vec![genuine.clone(), copy("203.0.113.9", "sshd", genuine.until)]);
        assert!(st.is_remembered("192.0.2.1", "sshd", &key, NOW + 10, REMEMBER));
        assert!(
            !st.is_remembered("203.0.113.9", "sshd", &key, NOW + 10, REMEMBER),
            "another address"
        );
        let st = planted(&s, vec![genuine.clone(), copy("192.0.2.1", "sudo", genuine.until)]);
        assert!(
            !st.is_remembered("192.0.2.1", "sudo", &key, NOW + 10, REMEMBER),
            "another service"
        );
        // A later expiry, looked at once the genuine entry has expired (and within
        // `remember=` of the forged one, so only the tag can refuse it).
        let later = genuine.until + REMEMBER / 2;
        let st = planted(&s, vec![copy("192.0.2.1", "sshd", later)]);
        assert!(
            !st.is_remembered("192.0.2.1", "sshd", &key, genuine.until + 1, REMEMBER),
            "a later expiry"
        );
    }

    #[test]
    fn a_remembered_host_expiring_after_now_plus_remember_is_not_honoured() {
        // Stored with a longer life than `remember=` allows now (a larger remember= before,
        // or a host whose clock ran ahead), with a right tag.
        let mut s = keyed();
        let key = s.remember_key("alice", &secret_file(KEY_1), Some(PASSWORD_HASH));
        s.remember("192.0.2.1", "sshd", &key, NOW + 90 * 86400, NOW);
        assert!(s.is_remembered("192.0.2.1", "sshd", &key, NOW, 90 * 86400));
        assert!(
            !s.is_remembered("192.0.2.1", "sshd", &key, NOW, REMEMBER),
            "until > now + remember"
        );
        assert!(s.is_remembered("192.0.2.1", "sshd", &key, NOW + 90 * 86400 - REMEMBER, REMEMBER));
    }

    #[test]
    fn a_remembered_tag_made_with_the_states_own_key_is_not_honoured() {
        // A writer of the etcd prefix has the whole document: the state's key and every
        // genuine entry; also (say) the password hash and this code — but not the secret
        // file. Each tag it can make for a new address is refused.
        let (s, key) = remembered_state();
        let (rhost, service, until) = ("203.0.113.9", "sshd", NOW + REMEMBER);
        let entry = |tag: String| Remembered {
            rhost: rhost.into(),
            service: service.into(),
            until,
            enrollment: tag,
        };
        let until_text = until.to_string();
        let until_be = until.to_be_bytes();
        let own_secret = s.remember_key("alice", &secret_file(KEY_2), Some(PASSWORD_HASH));
        let forged = [
            s.remembered[0].enrollment.clone(),
            own_secret.tag(rhost, service, until),
            s.tag("pam_totp remembered\0", &[]),
            s.tag("pam_totp remembered\0", &[b"", PASSWORD_HASH.as_bytes()]),
            s.tag(
                "pam_totp remembered\0",
                &[rhost.as_bytes(), service.as_bytes(), until_text.as_bytes()],
            ),
            s.tag(
                "pam_totp remembered\0",
                &[
                    s.remembered[0].enrollment.as_bytes(),
                    rhost.as_bytes(),
                    service.as_bytes(),
                    &until_be,
                ],
            ),
        ];
        for (i, tag) in forged.into_iter().enumerate() {
            let st = planted(&s, vec![s.remembered[0].clone(), entry(tag)]);
            assert!(
                !st.is_remembered(rhost, service, &key, NOW + 10, REMEMBER),
                "forgery {i} honoured"
            );
            assert!(st.is_remembered("192.0.2.1", "sshd", &key, NOW + 10, REMEMBER));
        }
    }

    #[test]
    fn a_secret_without_keys_remembers_no_host() {
        let mut s = keyed();
        let empty = SecretFile {
            devices: Vec::new(),
            backup_codes: Vec::new(),
        };
        let key = s.remember_key("alice", &empty, None);
        s.remember("192.0.2.1", "sshd", &key, NOW + REMEMBER, NOW);
        assert!(s.remembered.is_empty());
        let entry = Remembered {
            rhost: "192.0.2.1".into(),
            service: "sshd".into(),
            until: NOW + REMEMBER,
            enrollment: key.tag("192.0.2.1", "sshd", NOW + REMEMBER),
        };
        let st = planted(&s, vec![entry]);
        assert!(!st.is_remembered("192.0.2.1", "sshd", &key, NOW, REMEMBER));
    }

    #[test]
    fn version_1_remembered_hosts_are_not_carried_over() {
        let st = State::parse("version = 1\n[[remembered]]\nrhost = \"a\"\nservice = \"sshd\"\nuntil = 99\n").unwrap();
        assert!(st.remembered.is_empty());
    }

    #[test]
    fn device_guards_are_capped_least_recently_used_first() {
        let mut s = keyed();
        for i in 0..(MAX_DEVICES as u64 + 5) {
            let id = format!("{i:032x}");
            s.device_mut(&id).last_used = 100 + i;
        }
        assert_eq!(s.devices.len(), MAX_DEVICES);
        assert!(s.device(&format!("{:032x}", MAX_DEVICES as u64 + 4)).is_some());
        assert!(s.device(&format!("{:032x}", 0)).is_none());
    }
}
