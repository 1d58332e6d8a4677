//! The exhaustive walk over every way an `auth` stack can run, and the questions asked of it
//! (does a wrong password stop it before pam_totp, can it succeed without pam_totp, does a
//! kept code reach a pam_totp line that counts it).

use super::*;

/// Impression (`_PAM_UNDEF`, `_PAM_POSITIVE`, `_PAM_NEGATIVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Imp {
    Undef,
    Pos,
    Neg,
}

/// Impression and whether the status is PAM_SUCCESS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Frame {
    imp: Imp,
    ok: bool,
}

pub(super) const START: Frame = Frame {
    imp: Imp::Undef,
    ok: false,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct State {
    h: usize,
    prev_level: usize,
    cur: Frame,
    saved: [Frame; MAX_DEPTH + 2],
    /// The question's own bookkeeping.
    flags: u8,
}

/// One module call on a way through the stack.
#[derive(Debug, Clone)]
pub(super) struct Step {
    line: usize,
    /// The return value taken (a representative of those with the same effect).
    code: usize,
    action: Action,
    /// Handlers skipped by this step's jump or end of level.
    skipped: Option<(usize, usize)>,
}

/// What a question does when a module is about to be called: go on (with new flags) or
/// stop following this way.
pub(super) enum Visit {
    Go(u8),
    Stop,
}

/// The steps that led here, computed only when asked for.
pub(super) type Trace<'a> = &'a dyn Fn() -> Vec<Step>;

pub(super) trait Question {
    fn returns(&self, stack: &Stack, line: usize) -> Codes;
    fn visit(&mut self, stack: &Stack, line: usize, flags: u8, trace: Trace<'_>) -> Visit;
    fn end(&mut self, success: bool, flags: u8, trace: Trace<'_>);
    fn done(&self) -> bool {
        false
    }
}

/// What an arbitrary module (or one whose password may be right) can return.
pub(super) fn any_returns(l: &Line) -> Codes {
    match &l.kind {
        Kind::Broken => bit(PERM_DENIED),
        Kind::Substack { .. } => 0,
        Kind::Module { .. } if l.is("pam_deny.so") => bit(AUTH_ERR),
        Kind::Module { .. } if l.is("pam_permit.so") => bit(SUCCESS) | FAILURES,
        Kind::Module { .. } => ANY,
    }
}

impl Stack {
    /// Follows every way through the stack (depth first, in the order of the return values,
    /// iteratively: a long file cannot exhaust the caller's stack).
    pub(super) fn walk(&self, q: &mut dyn Question) {
        let lines = &self.lines;
        let mut seen = HashSet::new();
        // The steps taken so far, as a tree: (step, the step before it).
        let mut arena: Vec<(Step, Option<usize>)> = Vec::new();
        let trace_of = |arena: &[(Step, Option<usize>)], mut at: Option<usize>| {
            let mut t = Vec::new();
            while let Some(i) = at {
                t.push(arena[i].0.clone());
                at = arena[i].1;
            }
            t.reverse();
            t
        };
        let start = State {
            h: 0,
            prev_level: 0,
            cur: START,
            saved: [START; MAX_DEPTH + 2],
            flags: 0,
        };
        let mut work = vec![(start, None)];
        'ways: while let Some((mut st, tail)) = work.pop() {
            if q.done() {
                return;
            }
            loop {
                let Some(line) = lines.get(st.h) else {
                    // The sanity check at the end of _pam_dispatch_aux.
                    let success = st.cur.ok && st.cur.imp == Imp::Pos;
                    q.end(success, st.flags, &|| trace_of(&arena, tail));
                    continue 'ways;
                };
                let level = line.level.min(MAX_DEPTH + 1);
                if st.prev_level < level {
                    st.saved[level] = st.cur;
                }
                if matches!(line.kind, Kind::Substack { .. }) {
                    st.prev_level = level;
                    st.h += 1;
                    continue;
                }
                break;
            }
            if !seen.insert(st.clone()) {
                continue;
            }
            let h = st.h;
            let line = &lines[h];
            let level = line.level.min(MAX_DEPTH + 1);
            let flags = match q.visit(self, h, st.flags, &|| trace_of(&arena, tail)) {
                Visit::Go(f) => f,
                Visit::Stop => continue,
            };
            // One branch per distinct effect: (action, success?, ignore?).
            let codes = q.returns(self, h);
            let class = |c: usize| match c {
                SUCCESS => 0,
                IGNORE => 1,
                _ => 2,
            };
            let mut branches: Vec<(Action, usize)> = Vec::new();
            for code in (0..32).filter(|c| codes & bit(*c) != 0) {
                let a = line.control.action(code);
                if !branches.iter().any(|(b, c)| *b == a && class(*c) == class(code)) {
                    branches.push((a, code));
                }
            }
            // Pushed in reverse: the first return value is followed first.
            for (action, code) in branches.into_iter().rev() {
                let mut s = st.clone();
                s.flags = flags;
                let mut end_level = false;
                let mut skipped = None;
                match action {
                    Action::Reset => s.cur = s.saved[level],
                    Action::Ok | Action::Done => {
                        if s.cur.imp == Imp::Undef || (s.cur.imp == Imp::Pos && s.cur.ok) {
                            s.cur = Frame {
                                imp: Imp::Pos,
                                ok: code == SUCCESS,
                            };
                        }
                        end_level = action == Action::Done && s.cur.imp == Imp::Pos;
                    }
                    Action::Bad | Action::Die => {
                        if s.cur.imp != Imp::Neg {
                            s.cur = Frame {
                                imp: Imp::Neg,
                                ok: false,
                            };
                        }
                        end_level = action == Action::Die;
                    }
                    Action::Ignore => {}
                    Action::Jump(n) => {
                        let mut n = n;
                        let mut j = h;
                        while n > 0 && lines.get(j + 1).is_some_and(|x| x.level >= line.level) {
                            j += 1;
                            while lines.get(j + 1).is_some_and(|x| x.level > line.level) {
                                j += 1;
                            }
                            n -= 1;
                        }
                        if n != 0 {
                            // "bad jump in stack"
                            s.cur = Frame {
                                imp: Imp::Neg,
                                ok: false,
                            };
                        }
                        if j > h {
                            skipped = Some((h + 1, j));
                        }
                        s.h = j;
                    }
                }
                if end_level {
                    let mut j = h;
                    while lines.get(j + 1).is_some_and(|x| x.level >= line.level) {
                        j += 1;
                    }
                    if j > h {
                        skipped = Some((h + 1, j));
                    }
                    s.h = j;
                }
                s.prev_level = level;
                s.h += 1;
                arena.push((
                    Step {
                        line: h,
                        code,
                        action,
                        skipped,
                    },
                    tail,
                ));
                work.push((s, Some(arena.len() - 1)));
            }
        }
    }

    fn loc(&self, i: usize) -> &str {
        &self.lines[i].location
    }

    fn what(&self, i: usize) -> String {
        let l = &self.lines[i];
        match (&l.kind, l.module()) {
            (_, Some(m)) => format!("{m} ({})", l.control.text),
            (Kind::Substack { name }, _) => format!("substack {name}"),
            _ => "a failing line".into(),
        }
    }

    /// The `enroll_on_login` gate (see [`enrollment_gate_for`]).
    pub fn enrollment_gate(&self) -> Result<(), Unproven> {
        self.gate()
            .map_err(|e| Unproven(crate::text::terminal_safe(&e).into_owned()))
    }

    fn gate(&self) -> Result<(), String> {
        let service = &self.service;
        if let Some(why) = &self.unknown {
            return Err(format!(
                "cannot prove that a wrong password stops the {service} stack before pam_totp: {why}"
            ));
        }
        if !self.lines.iter().any(Line::is_checking_totp) {
            return Err(format!(
                "no pam_totp line without forward_pass in the {service} stack (file {}): cannot tell what runs before this one",
                self.file
            ));
        }
        struct Gate {
            reached: Option<(usize, Vec<Step>)>,
        }
        impl Question for Gate {
            fn returns(&self, stack: &Stack, i: usize) -> Codes {
                let l = &stack.lines[i];
                if l.is_password_module() {
                    let ignore = if l.ignore_reason().is_some() { bit(IGNORE) } else { 0 };
                    FAILURES | ignore
                } else {
                    any_returns(l)
                }
            }
            fn visit(&mut self, stack: &Stack, i: usize, flags: u8, trace: Trace<'_>) -> Visit {
                if stack.lines[i].is_checking_totp() {
                    self.reached = Some((i, trace()));
                    return Visit::Stop;
                }
                Visit::Go(flags)
            }
            fn end(&mut self, _: bool, _: u8, _: Trace<'_>) {}
            fn done(&self) -> bool {
                self.reached.is_some()
            }
        }
        let mut q = Gate { reached: None };
        self.walk(&mut q);
        match q.reached {
            None => Ok(()),
            Some((t, trace)) => Err(self.why_reached(t, &trace)),
        }
    }

    /// Why a wrong password reaches the pam_totp line `t` along `trace`: one line naming the
    /// line to change.
    fn why_reached(&self, t: usize, trace: &[Step]) -> String {
        let tloc = self.loc(t);
        let pw = |s: &&Step| self.lines[s.line].is_password_module();
        // 1. A password module that ignored the user.
        if let Some(s) = trace.iter().filter(pw).find(|s| s.code == IGNORE) {
            let l = &self.lines[s.line];
            let (why, fix) = match l.ignore_reason().flatten() {
                Some(arg) => (format!("{arg} lets it return PAM_IGNORE"), " or drop the option"),
                None => (
                    "it can return PAM_IGNORE (minimum_uid, ignore_root and the like can be set in its own configuration file)".to_string(),
                    "",
                ),
            };
            return format!(
                "{}: {} is {} but {why}, which that control lets through to pam_totp ({tloc}); use [success=ok default=die]{fix}",
                l.location,
                l.module().unwrap_or("?"),
                l.control.text
            );
        }
        // 2. A password module that stopped only its substack.
        if let Some(s) = trace
            .iter()
            .filter(pw)
            .rev()
            .find(|s| self.lines[s.line].level > 0 && matches!(s.action, Action::Die | Action::Done))
        {
            let l = &self.lines[s.line];
            let marker = (0..s.line)
                .rev()
                .find(|i| matches!(self.lines[*i].kind, Kind::Substack { .. }) && self.lines[*i].level < l.level)
                .map(|i| self.loc(i).to_string())
                .unwrap_or_else(|| "?".into());
            return format!(
                "{}: {} is {} inside a substack ({marker}): a failure there ends only the substack and pam_totp ({tloc}) still runs; use `include` instead of `substack`",
                l.location,
                l.module().unwrap_or("?"),
                l.control.text
            );
        }
        // 3. Another module's jump (or end of a substack) that went around the password
        //    check or the line that stops the stack.
        if let Some(s) = trace.iter().rev().find(|s| !pw(s) && s.skipped.is_some()) {
            let (a, b) = s.skipped.unwrap_or((0, 0));
            let around = (a..=b)
                .find(|i| self.lines[*i].is_password_module())
                .or_else(|| (a..=b).find(|i| self.lines[*i].control.on_auth_err() == Action::Die))
                .unwrap_or(a);
            return format!(
                "{}: when {} returns {} its control skips {} ({}), so pam_totp ({tloc}) runs without a password check",
                self.loc(s.line),
                self.what(s.line),
                RETURNS[s.code],
                self.what(around),
                self.loc(around)
            );
        }
        // 4. A password module whose failure does not stop the stack.
        if let Some(s) = trace.iter().rev().find(pw) {
            let l = &self.lines[s.line];
            return format!(
                "{}: a wrong password does not stop the stack at {} (control {}): pam_totp ({tloc}) still runs; make it `requisite` or [success=ok default=die]",
                l.location,
                l.module().unwrap_or("?"),
                l.control.text
            );
        }
        format!(
            "{tloc}: no password module runs before pam_totp in the {} stack (ssh key + code?), so nothing proves the password before enrollment",
            self.service
        )
    }

    /// A way to overall success that runs no pam_totp line without forward_pass (pam_rootok's
    /// success, i.e. a caller who is root already, excepted). The line whose `done` or jump
    /// makes it possible, and what it does. None when there is none, or no such pam_totp line.
    pub fn success_without_totp(&self) -> Option<Bypass> {
        if !self.lines.iter().any(Line::is_checking_totp) {
            return None;
        }
        let trace = self.succeeds(
            |stack, i| {
                let l = &stack.lines[i];
                if l.is("pam_rootok.so") {
                    // Its success means the caller is root: no second factor is owed.
                    ANY & !bit(SUCCESS)
                } else {
                    any_returns(l)
                }
            },
            true,
        )?;
        let skips_totp = |s: &&Step| {
            s.skipped
                .is_some_and(|(a, b)| (a..=b).any(|i| self.lines[i].is_checking_totp()))
        };
        let s = trace
            .iter()
            .find(skips_totp)
            .or_else(|| trace.iter().rev().find(|s| s.skipped.is_some()));
        let totp = self
            .lines
            .iter()
            .find(|l| l.is_checking_totp())
            .map(|l| l.location.clone())
            .unwrap_or_default();
        Some(match s {
            Some(s) => {
                let l = &self.lines[s.line];
                Bypass {
                    location: l.location.clone(),
                    module: l.module().unwrap_or("?").to_string(),
                    control: l.control.text.clone(),
                    jump: matches!(s.action, Action::Jump(_)),
                    on: RETURNS[s.code],
                    totp,
                }
            }
            None => Bypass {
                location: self.file.clone(),
                module: String::new(),
                control: String::new(),
                jump: false,
                on: "success",
                totp,
            },
        })
    }

    /// A way to overall success although every pam_totp line that checks codes refused —
    /// a wrong code, a failed or cancelled conversation (Ctrl-D at the prompt), an internal
    /// error: a control that ignores one of those, or a `done`/jump past pam_totp. Returns
    /// the line whose action lets it through. (pam_rootok's success, a caller who is root
    /// already, excepted.)
    pub fn success_despite_refused_code(&self) -> Option<Through> {
        if !self.lines.iter().any(Line::is_checking_totp) {
            return None;
        }
        let trace = self.succeeds(
            |stack, i| {
                let l = &stack.lines[i];
                if l.is_checking_totp() {
                    bit(AUTH_ERR) | bit(CONV_ERR) | bit(SERVICE_ERR)
                } else if l.is("pam_rootok.so") {
                    ANY & !bit(SUCCESS)
                } else {
                    any_returns(l)
                }
            },
            false,
        )?;
        // The pam_totp step whose failure was not final, else the jump that skipped it.
        let step = trace
            .iter()
            .find(|s| self.lines[s.line].is_checking_totp() && !matches!(s.action, Action::Bad | Action::Die))
            .or_else(|| {
                trace.iter().find(|s| {
                    s.skipped
                        .is_some_and(|(a, b)| (a..=b).any(|i| self.lines[i].is_checking_totp()))
                })
            })
            .or_else(|| trace.iter().rev().find(|s| s.skipped.is_some()))?;
        Some(self.through(step))
    }

    /// A way to overall success when every password module fails (a wrong password; a right
    /// code, if pam_totp runs, succeeds): a password module whose failure is ignored, or a
    /// jump around it. None when the stack has no password module (ssh key + code).
    pub fn success_with_wrong_password(&self) -> Option<Through> {
        if !self.lines.iter().any(Line::is_password_module) {
            return None;
        }
        let trace = self.succeeds(
            |stack, i| {
                let l = &stack.lines[i];
                if l.is_password_module() {
                    let ignore = if l.ignore_reason().is_some() { bit(IGNORE) } else { 0 };
                    FAILURES | ignore
                } else if l.is("pam_rootok.so") {
                    ANY & !bit(SUCCESS)
                } else {
                    any_returns(l)
                }
            },
            false,
        )?;
        let step = trace
            .iter()
            .find(|s| self.lines[s.line].is_password_module() && !matches!(s.action, Action::Bad | Action::Die))
            .or_else(|| trace.iter().find(|s| s.skipped.is_some()))
            .or_else(|| trace.iter().find(|s| self.lines[s.line].is_password_module()))?;
        Some(self.through(step))
    }

    /// The steps of a way through the stack that ends in overall success, with each line
    /// returning what `returns` allows; with `stop_at_totp`, ways that reach a pam_totp line
    /// checking codes are not followed (success must come without it).
    fn succeeds(&self, returns: impl Fn(&Stack, usize) -> Codes, stop_at_totp: bool) -> Option<Vec<Step>> {
        struct Q<F> {
            returns: F,
            stop_at_totp: bool,
            found: Option<Vec<Step>>,
        }
        impl<F: Fn(&Stack, usize) -> Codes> Question for Q<F> {
            fn returns(&self, stack: &Stack, i: usize) -> Codes {
                (self.returns)(stack, i)
            }
            fn visit(&mut self, stack: &Stack, i: usize, flags: u8, _: Trace<'_>) -> Visit {
                if self.stop_at_totp && stack.lines[i].is_checking_totp() {
                    return Visit::Stop;
                }
                Visit::Go(flags)
            }
            fn end(&mut self, success: bool, _: u8, trace: Trace<'_>) {
                if success && self.found.is_none() {
                    self.found = Some(trace());
                }
            }
            fn done(&self) -> bool {
                self.found.is_some()
            }
        }
        let mut q = Q {
            returns,
            stop_at_totp,
            found: None,
        };
        self.walk(&mut q);
        q.found
    }

    fn through(&self, s: &Step) -> Through {
        let l = &self.lines[s.line];
        Through {
            location: l.location.clone(),
            module: l.module().unwrap_or("?").to_string(),
            control: l.control.text.clone(),
            on: RETURNS[s.code],
        }
    }

    /// For each `forward_pass` pam_totp line, what is wrong with the layout around it:
    /// (line index, problem). See [`ForwardProblem`].
    pub fn forward_pass_problems(&self) -> Vec<(usize, ForwardProblem)> {
        let mut out = Vec::new();
        for f in (0..self.lines.len()).filter(|i| self.lines[*i].is_forward_pass()) {
            if self.lines[f].control.on_auth_err() == Action::Die {
                out.push((f, ForwardProblem::DiesOnWrongCode));
            }
            struct Later {
                f: usize,
                good: HashSet<usize>,
                bad: HashSet<usize>,
            }
            const SEEN_F: u8 = 1;
            const PASSWORD_AFTER: u8 = 2;
            impl Question for Later {
                fn returns(&self, stack: &Stack, i: usize) -> Codes {
                    any_returns(&stack.lines[i])
                }
                fn visit(&mut self, stack: &Stack, i: usize, mut flags: u8, _: Trace<'_>) -> Visit {
                    let l = &stack.lines[i];
                    if i == self.f {
                        flags = SEEN_F;
                    } else if flags & SEEN_F != 0 && l.is_password_module() {
                        flags |= PASSWORD_AFTER;
                    } else if flags & SEEN_F != 0 && l.is_checking_totp() {
                        if flags & PASSWORD_AFTER != 0 {
                            self.good.insert(i);
                        } else {
                            self.bad.insert(i);
                        }
                    }
                    Visit::Go(flags)
                }
                fn end(&mut self, _: bool, _: u8, _: Trace<'_>) {}
            }
            let mut q = Later {
                f,
                good: HashSet::new(),
                bad: HashSet::new(),
            };
            self.walk(&mut q);
            if q.good.iter().any(|t| !q.bad.contains(t)) {
                continue;
            }
            let mut bad: Vec<usize> = q.bad.into_iter().collect();
            bad.sort_unstable();
            out.push((
                f,
                match bad.first() {
                    Some(t) => ForwardProblem::CheckWithoutPassword(self.lines[*t].location.clone()),
                    None => ForwardProblem::NoCheckLine,
                },
            ));
        }
        out
    }
}
