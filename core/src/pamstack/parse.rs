//! Reading PAM files the way libpam does: physical and logical lines, tokens, controls, and
//! `include`/`substack` (see the parent module for what libpam does, with its sources).
//!
//! Never: reads a file itself (the loader is handed `read(name)`).

use super::*;

/// `_pam_parse_control`: `value=action ...` (the brackets already dropped by the tokenizer).
pub(super) fn parse_control(tok: &str) -> Result<[Action; 32], String> {
    const ACTIONS: [(&str, Action); 6] = [
        ("ignore", Action::Ignore),
        ("ok", Action::Ok),
        ("done", Action::Done),
        ("bad", Action::Bad),
        ("die", Action::Die),
        ("reset", Action::Reset),
    ];
    let mut set: [Option<Action>; 32] = [None; 32];
    let s = tok.as_bytes();
    let space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut i = 0;
    loop {
        while i < s.len() && space(s[i]) {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        // The first name in libpam's order that the rest starts with ("default" last).
        let rest = &s[i..];
        let value = RETURNS
            .iter()
            .chain(std::iter::once(&"default"))
            .position(|name| rest.starts_with(name.as_bytes()))
            .ok_or_else(|| format!("expecting a return value at `{}`", &tok[i..]))?;
        i += if value == 32 { 7 } else { RETURNS[value].len() };
        if i >= s.len() {
            return Err("expecting `=`".into());
        }
        while i < s.len() && space(s[i]) {
            i += 1;
        }
        if i >= s.len() || s[i] != b'=' {
            return Err("expecting `=`".into());
        }
        i += 1;
        while i < s.len() && space(s[i]) {
            i += 1;
        }
        if i >= s.len() {
            return Err("expecting an action".into());
        }
        let rest = &s[i..];
        let action = if let Some((name, a)) = ACTIONS.iter().find(|(n, _)| rest.starts_with(n.as_bytes())) {
            i += name.len();
            *a
        } else {
            let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err("expecting an action or a jump".into());
            }
            let n: u32 = tok[i..i + digits]
                .parse()
                .ok()
                .filter(|n| *n > 0 && *n <= i32::MAX as u32)
                .ok_or_else(|| format!("bad jump `{}`", &tok[i..i + digits]))?;
            i += digits;
            Action::Jump(n)
        };
        if value == 32 {
            for a in set.iter_mut().filter(|a| a.is_none()) {
                *a = Some(action);
            }
        } else {
            set[value] = Some(action);
        }
    }
    Ok(set.map(|a| a.unwrap_or(Action::Bad)))
}

/// A plain file name in the PAM directory: what this model follows.
pub(super) fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.starts_with('.')
}

/// Splits a file into logical lines (`_pam_line_assemble`): (first physical line number,
/// text); `false` when the file ends inside a continuation.
pub(super) fn logical_lines(text: &str) -> (Vec<(usize, String)>, bool) {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut first = 0;
    let mut continuing = false;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        if !continuing {
            first = i + 1;
        }
        let body = raw.trim_end_matches([' ', '\t', '\n']);
        let cont = body.ends_with('\\');
        let line = if cont {
            format!("{} ", &body[..body.len() - 1])
        } else {
            raw.to_string()
        };
        let eol = !cont || line.contains('#');
        let start = line.trim_start_matches([' ', '\t']);
        let start = start.split('#').next().unwrap_or("");
        if eol {
            if !buf.is_empty() || (!start.is_empty() && !start.starts_with('\n')) {
                buf.push_str(start);
            }
            if !buf.is_empty() {
                out.push((first, std::mem::take(&mut buf)));
            }
            continuing = false;
        } else {
            buf.push_str(start);
            continuing = true;
        }
    }
    (out, !continuing)
}

/// `_pam_tokenize`: blanks are space, tab and newline; `[...]` is one token, brackets
/// dropped, `\]` inside standing for `]`. Returns (token, was bracketed).
pub(super) fn tokens(line: &str) -> Vec<(String, bool)> {
    let delim = |c: char| matches!(c, ' ' | '\t' | '\n');
    let mut out = Vec::new();
    let mut it = line.chars().peekable();
    loop {
        while it.next_if(|c| delim(*c)).is_some() {}
        let Some(c) = it.next() else { break };
        let mut tok = String::new();
        if c == '[' {
            while let Some(c) = it.next() {
                if c == ']' {
                    break;
                }
                if c == '\\' && it.peek() == Some(&']') {
                    tok.push(it.next().unwrap_or(']'));
                } else {
                    tok.push(c);
                }
            }
            out.push((tok, true));
        } else {
            tok.push(c);
            while let Some(c) = it.next_if(|c| !delim(*c)) {
                tok.push(c);
            }
            out.push((tok, false));
        }
    }
    out
}

pub(super) struct Loader<'a> {
    read: &'a dyn Fn(&str) -> Option<String>,
    lines: Vec<Line>,
    unknown: Option<String>,
}

impl Loader<'_> {
    fn note(&mut self, why: String) {
        if self.unknown.is_none() {
            self.unknown = Some(why);
        }
    }

    fn push(&mut self, level: usize, kind: Kind, control: Control, location: &str) {
        if self.lines.len() >= MAX_LINES {
            self.note(format!("{location}: more than {MAX_LINES} auth lines"));
            return;
        }
        self.lines.push(Line {
            level,
            kind,
            control,
            location: location.to_string(),
        });
    }

    /// Reads one file's auth lines at `level`; false if it cannot be used (libpam then
    /// puts a failing line where it was included).
    fn file(&mut self, name: &str, level: usize, depth: usize) -> bool {
        let Some(text) = (self.read)(name) else {
            return false;
        };
        if text.contains('\0') {
            self.note(format!("{name}: holds a NUL byte"));
            return false;
        }
        // libpam 1.5.2 (Debian 12) reads a file in 1024-byte fgets chunks: the rest of a
        // longer physical line, even inside a comment, is read as a line of its own. Which
        // libpam reads the file is not known here, so such a file proves nothing.
        if let Some(n) = text.split('\n').position(|l| l.len() >= MAX_PHYSICAL_LINE) {
            self.note(format!(
                "{name}:{}: the line is {} bytes or longer; libpam may read its end as a line of its own",
                n + 1,
                MAX_PHYSICAL_LINE
            ));
        }
        let (lines, complete) = logical_lines(&text);
        for (n, line) in lines {
            self.line(name, n, &line, level, depth);
        }
        if !complete {
            self.note(format!(
                "{name}: the last line ends with `\\` (libpam reports a read error)"
            ));
        }
        complete
    }

    fn line(&mut self, file: &str, n: usize, text: &str, level: usize, depth: usize) {
        let loc = format!("{file}:{n}");
        let toks = tokens(text);
        let Some((first, _)) = toks.first() else { return };
        if first == "@include" {
            let name = toks.get(1).map(|t| t.0.as_str());
            self.include(&loc, name, level, depth, false);
            return;
        }
        let (dash, ty) = match first.strip_prefix('-') {
            Some(t) => (true, t),
            None => (false, first.as_str()),
        };
        let known = ["auth", "account", "password", "session"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(ty));
        if !known {
            self.note(format!(
                "{loc}: unknown line type `{first}` (libpam makes it a failing auth line)"
            ));
            self.push(level, Kind::Broken, Control::broken(first), &loc);
            return;
        }
        if !ty.eq_ignore_ascii_case("auth") {
            return;
        }
        let Some((ctl, bracketed)) = toks.get(1) else {
            self.note(format!("{loc}: no control (libpam makes it a failing line)"));
            self.push(level, Kind::Broken, Control::broken(""), &loc);
            return;
        };
        let shown = if *bracketed { format!("[{ctl}]") } else { ctl.clone() };
        let keyword = [
            ("required", Keyword::Required),
            ("requisite", Keyword::Requisite),
            ("sufficient", Keyword::Sufficient),
            ("optional", Keyword::Optional),
        ]
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(ctl))
        .map(|(_, k)| *k);
        if ctl.eq_ignore_ascii_case("include") || ctl.eq_ignore_ascii_case("substack") {
            let name = toks.get(2).map(|t| t.0.as_str());
            self.include(&loc, name, level, depth, ctl.eq_ignore_ascii_case("substack"));
            return;
        }
        let control = match keyword {
            Some(k) => Control::keyword(k, &shown),
            None => match parse_control(ctl) {
                Ok(actions) => Control {
                    text: shown,
                    keyword: None,
                    actions,
                },
                Err(e) => {
                    self.note(format!(
                        "{loc}: cannot parse the control {shown} ({e}; libpam makes every value `bad`)"
                    ));
                    Control::broken(&shown)
                }
            },
        };
        let Some((path, _)) = toks.get(2) else {
            self.note(format!("{loc}: no module (libpam makes it a failing line)"));
            self.push(level, Kind::Broken, control, &loc);
            return;
        };
        let kind = Kind::Module {
            path: path.clone(),
            args: toks[3..].iter().map(|t| t.0.clone()).collect(),
            dash,
        };
        self.push(level, kind, control, &loc);
    }

    fn include(&mut self, loc: &str, name: Option<&str>, level: usize, depth: usize, substack: bool) {
        let word = if substack { "substack" } else { "include" };
        if substack {
            let kind = Kind::Substack {
                name: name.unwrap_or("").to_string(),
            };
            self.push(level, kind, Control::broken("substack"), loc);
        }
        let read = match name {
            None => {
                self.note(format!("{loc}: {word} without a file name"));
                false
            }
            Some(n) if !plain_name(n) => {
                self.note(format!(
                    "{loc}: {word} `{n}` is not followed (only plain file names in the PAM directory are)"
                ));
                false
            }
            Some(_) if depth >= MAX_DEPTH => {
                self.note(format!("{loc}: includes nested deeper than {MAX_DEPTH}"));
                false
            }
            Some(n) => {
                let ok = self.file(n, level + usize::from(substack), depth + 1);
                if !ok {
                    self.note(format!("{loc}: cannot read `{n}` ({word} named here)"));
                }
                ok
            }
        };
        if !read {
            self.push(level, Kind::Broken, Control::broken(word), loc);
        }
    }
}

/// Reads `service`'s auth stack through `read(name)` (a PAM file's text by name, None if it
/// cannot be read). None when the service file itself cannot be read.
pub fn load(service: &str, read: &dyn Fn(&str) -> Option<String>) -> Option<Stack> {
    if !plain_name(service) {
        return None;
    }
    let mut l = Loader {
        read,
        lines: Vec::new(),
        unknown: None,
    };
    if !l.file(service, 0, 0) && l.unknown.is_none() {
        return None;
    }
    let mut file = service.to_string();
    if l.lines.is_empty() && l.unknown.is_none() && service != "other" {
        // libpam falls back to `other` for a service without auth lines.
        file = "other".into();
        l.file("other", 0, 0);
    }
    Some(Stack {
        service: service.to_string(),
        file,
        lines: l.lines,
        unknown: l.unknown,
    })
}
