//! Text from outside (labels, issuers, user and host names, file contents) on its way to a
//! terminal or a log line.
//!
//! Owns: the rule that nothing another user wrote reaches root's terminal as a control
//! sequence. An issuer of `"\x1b[2K\rLocked out: no"` must print as visible escapes, not
//! redraw the line an administrator is reading.

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
}
