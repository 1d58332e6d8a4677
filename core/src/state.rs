//! State file format v1 (per user, root-only): types, parse, serialize.
//!
//! Owns: what the module remembers between logins. Users cannot write it, which is why
//! the lockout and the replay guard live here and not in the user's secret file.

use serde::{Deserialize, Serialize};

use crate::secret::toml_error_position;

/// Most remembered (remote host, service) pairs kept per user; the oldest go first.
pub const MAX_REMEMBERED: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: i64,
    /// The last TOTP time step accepted; a code for this or an earlier step is a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<u64>,
    /// Unix seconds of the last accepted code (TOTP or backup); 0 = never.
    #[serde(default)]
    pub last_success: u64,
    /// Consecutive wrong answers since the last success or lockout.
    #[serde(default)]
    pub failures: u32,
    /// Unix seconds until which every answer is refused; 0 = not locked.
    #[serde(default)]
    pub locked_until: u64,
    /// Hash strings (as stored in the secret file) of backup codes already used.
    #[serde(default)]
    pub used_backup_codes: Vec<String>,
    #[serde(default)]
    pub remembered: Vec<Remembered>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remembered {
    pub rhost: String,
    pub service: String,
    pub until: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: 1,
            last_step: None,
            last_success: 0,
            failures: 0,
            locked_until: 0,
            used_backup_codes: Vec::new(),
            remembered: Vec::new(),
        }
    }
}

impl State {
    pub fn parse(text: &str) -> Result<State, String> {
        let st: State = toml::from_str(text).map_err(|e| toml_error_position(text, &e))?;
        if st.version != 1 {
            return Err(format!("format version {} is not supported (expected 1)", st.version));
        }
        Ok(st)
    }

    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| format!("cannot serialize state: {e}"))
    }

    /// How many of `issued` (the secret file's backup code hashes) have not been used.
    pub fn backup_codes_left(&self, issued: &[String]) -> usize {
        issued.iter().filter(|h| !self.used_backup_codes.contains(h)).count()
    }

    pub fn is_locked(&self, now: u64) -> bool {
        self.locked_until > now
    }

    /// Whether (rhost, service) was remembered and has not expired.
    pub fn is_remembered(&self, rhost: &str, service: &str, now: u64) -> bool {
        self.remembered
            .iter()
            .any(|r| r.rhost == rhost && r.service == service && r.until > now)
    }

    /// Remembers (rhost, service) until `until`, dropping expired and excess entries.
    pub fn remember(&mut self, rhost: &str, service: &str, until: u64, now: u64) {
        self.remembered
            .retain(|r| r.until > now && !(r.rhost == rhost && r.service == service));
        self.remembered.push(Remembered {
            rhost: rhost.to_string(),
            service: service.to_string(),
            until,
        });
        if self.remembered.len() > MAX_REMEMBERED {
            self.remembered.sort_by_key(|r| std::cmp::Reverse(r.until));
            self.remembered.truncate(MAX_REMEMBERED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults() {
        let mut s = State {
            last_step: Some(5),
            failures: 2,
            ..State::default()
        };
        s.remember("10.0.0.1", "sshd", 100, 0);
        assert_eq!(State::parse(&s.to_toml().unwrap()).unwrap(), s);
        assert_eq!(State::parse("version = 1").unwrap(), State::default());
    }

    #[test]
    fn malformed_state_is_refused() {
        for bad in [
            "",
            "version = 2",
            "version = 1\nfailures = -1",
            "version = 1\nlast_step = 99999999999999999999",
            "version = 1\nx = 1",
            "\u{0}",
        ] {
            assert!(State::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remembered_entries_expire_and_are_capped() {
        let mut s = State::default();
        s.remember("a", "sshd", 50, 0);
        assert!(s.is_remembered("a", "sshd", 49));
        assert!(!s.is_remembered("a", "sshd", 50));
        assert!(!s.is_remembered("a", "sudo", 10));
        assert!(!s.is_remembered("b", "sshd", 10));
        for i in 0..100 {
            s.remember(&format!("h{i}"), "sshd", 1000 + i, 60);
        }
        assert_eq!(s.remembered.len(), MAX_REMEMBERED);
        assert!(s.is_remembered("h99", "sshd", 61));
        assert!(!s.is_remembered("a", "sshd", 10), "expired entry pruned");
    }
}
