//! Text from outside (labels, issuers, user and host names, file contents) on its way to a
//! terminal or a log line.
//!
//! Owns: the rule that nothing another user wrote reaches root's terminal as a control
//! sequence (an issuer of `"\x1b[2K\rLocked out: no"` must print as visible escapes, not
//! redraw the line an administrator is reading), and the rules for such text in a log line
//! ([`log_quote`], [`log_quote_long`], [`log_name`]): nobody can forge a second line or a
//! field of the line.

use std::borrow::Cow;

/// `s` with every control character (C0, DEL, C1 — which includes ESC and CSI) written as a
/// visible escape (`\u{1b}`, `\n`, ...). Printable text, including non-ASCII letters, is
/// kept as is.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Control characters, and the format characters that reorder or break what a terminal
/// shows: bidirectional overrides and isolates (a label could display reversed), and the
/// Unicode line and paragraph separators.
pub fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
        )
}

/// Quotes text from outside (user names, host names) for a log line: control characters
/// and non-ASCII are escaped so nobody can forge a second log line.
pub fn log_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().take(256) {
        if c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}
/// [`log_quote`] for our own longer messages (a reason naming a file and line): the same
/// escaping, up to 1024 characters.
pub fn log_quote_long(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().take(1024) {
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}
/// An authenticator name inside `"..."` in a log line: only letters, digits, space and
/// `-_.,:@+#/` pass; anything else (quotes, parentheses, `=`, control and non-ASCII
/// characters) is escaped, so a name such as `p") (user=root` can neither end the quotes nor
/// put a `(user=...` field into the line.
pub fn log_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().take(64) {
        if c == ' ' || c.is_ascii_alphanumeric() || "-_.,:@+#/".contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    out
}

/// Describes a TOML error by position only: a file's text never reaches a message (it may
/// hold a key).
pub(crate) fn toml_error_position(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("invalid TOML or unexpected field near line {line}")
        }
        None => "invalid TOML or missing field".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_become_visible() {
        assert_eq!(terminal_safe("ACME Corp"), "ACME Corp");
        assert_eq!(terminal_safe("Zürich"), "Zürich");
        let evil = "x\u{1b}[2K\rLocked out:       no\u{7}\u{9b}31m\n";
        let safe = terminal_safe(evil);
        assert!(!safe.chars().any(char::is_control), "{safe}");
        assert_eq!(safe, "x\\u{1b}[2K\\rLocked out:       no\\u{7}\\u{9b}31m\\n");
        let bidi = terminal_safe("evil\u{202E}on :tuo dekcoL\u{2028}x");
        assert_eq!(bidi, "evil\\u{202e}on :tuo dekcoL\\u{2028}x");
    }

    #[test]
    fn a_device_name_cannot_close_its_quotes_in_a_log_line() {
        let forged = log_name("p\") (user=root service=sudo rhost=-");
        assert!(
            !forged.contains('"') && !forged.contains("(user=") && !forged.contains('='),
            "{forged}"
        );
        assert_eq!(log_name("spare phone"), "spare phone");
    }
}
