//! pam-totp-docs OUTDIR: writes the man pages and the default pam_totp.conf from the one
//! source of each: `pam-totp(1)` and its subcommand pages from the clap definitions,
//! `pam_totp(8)` and `pam_totp.conf(5)` from the core's option table. Used by
//! packaging/build; not installed.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::path::Path;

use pam_totp_cli::clap::CommandFactory;
use pam_totp_cli::Cli;
use pam_totp_core::config::{commented_config_file, Kind, OPTIONS};

/// Escapes text for roff: backslashes, hyphens, and a leading dot or quote.
fn esc(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn value_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Flag => "",
        Kind::Number => "N",
        Kind::Path => "PATH",
        Kind::Text => "TEXT",
        Kind::Date => "YYYY\\-MM\\-DD",
        Kind::List => "[NAMES]",
    }
}

fn header(name: &str, section: u8, title: &str) -> String {
    format!(
        ".TH {} {section} \"\" \"pam_totp {}\" \"{title}\"\n",
        name.to_uppercase().replace('-', "\\-"),
        env!("CARGO_PKG_VERSION")
    )
}

fn module_page() -> String {
    let mut m = header("pam_totp", 8, "Linux-PAM Manual");
    m.push_str(".SH NAME\npam_totp \\- time\\-based one\\-time codes (TOTP) as a second factor\n");
    m.push_str(".SH SYNOPSIS\n.B pam_totp.so\n[\\fIoptions\\fR]\n");
    m.push_str(
        ".SH DESCRIPTION\n\
         After the password (or the SSH key), pam_totp asks for the 6\\-digit code from the user's \
         authenticator app (RFC 6238) and accepts each time step at most once, also when logins race. \
         Consecutive wrong answers lock the user out for a while. Users enroll with \\fBpam\\-totp\\fR(1). \
         The module reads the user's keys (from the root\\-only vault in the state directory, or with \\fBkey_store\\fR=home from the user's secret file); it writes only its own root\\-only state directory, and with \\fBenroll_on_login\\fR the keys of a user it enrolls (where \\fBpam\\-totp enroll\\fR would).\n\
         .PP\n\
         It fails closed: a secret file that is a symbolic link, not a regular file, owned by someone other than \
         the user or root, readable or writable by group or others, hard\\-linked, larger than 64 KiB or malformed; \
         an unusable state directory; an unknown or malformed option; an internal error \\(em each refuses the login \
         and is logged to syslog (authpriv), never with a code or a secret.\n",
    );
    m.push_str(".SH OPTIONS\nEach option can also be set in \\fBpam_totp.conf\\fR(5); arguments override it.\n");
    // Settings for the command line, or valid only in the file, are in pam_totp.conf(5).
    for o in OPTIONS
        .iter()
        .filter(|o| !o.doc.contains("(pam-totp enroll)") && o.kind != Kind::List && !o.name.starts_with("fleet."))
    {
        let v = value_name(o.kind);
        if v.is_empty() {
            let _ = writeln!(m, ".TP\n.B {}", esc(o.name));
        } else {
            let _ = writeln!(m, ".TP\n\\fB{}\\fR=\\fI{v}\\fR", esc(o.name));
        }
        let _ = writeln!(m, "{} Default: {}.", esc(o.doc), esc(o.default));
    }
    m.push_str(
        ".SH MODULE TYPES PROVIDED\nOnly \\fBauth\\fR. \\fBpam_sm_setcred\\fR always succeeds.\n\
         .SH RETURN VALUES\n\
         .TP\n.B PAM_SUCCESS\nA right code, an unused backup code, or a remembered host.\n\
         .TP\n.B PAM_IGNORE\nThe user has no secret file and \\fBnullok\\fR or a future \\fBenforce_after\\fR date lets them through.\n\
         .TP\n.B PAM_AUTH_ERR\nA wrong or replayed code, a lockout, an unknown user, a bad secret file, an unusable state.\n\
         .TP\n.B PAM_CONV_ERR\nThe conversation failed or was cancelled.\n\
         .TP\n.B PAM_SERVICE_ERR\nAn unknown or malformed option, or an internal error.\n\
         .SH FILES\n\
         .TP\n.I ~/.config/pam\\-totp/secret.toml\nThe user's secret (option \\fBsecret\\fR).\n\
         .TP\n.I /var/lib/pam\\-totp/\nPer\\-user state, root only (option \\fBstate_dir\\fR).\n\
         .TP\n.I /var/lib/pam\\-totp/vault/\nUsers' keys with \\fBkey_store\\fR=vault (the default of new installs), root only.\n\
         .TP\n.I /etc/security/pam_totp.conf\nShared defaults.\n\
         .SH ENABLING\n\
         On Debian and Ubuntu, \\fBpam\\-auth\\-update \\-\\-enable pam\\-totp\\fR adds pam_totp to \\fIcommon\\-auth\\fR \
         (sudo, su, the console and SSH with passwords) after the password block, whose failure ends the stack \
         through \\fBrequisite pam_deny.so\\fR:\n\
         .PP\n.nf\n.\\\" pam-example\n\
         auth [success=1 default=ignore] pam_unix.so nullok\n\
         auth requisite                  pam_deny.so\n\
         auth required                   pam_permit.so\n\
         auth required                   pam_totp.so nullok\n\
         .fi\n\
         .PP\n\
         Do not also add a pam_totp line by hand to a service that includes \\fIcommon\\-auth\\fR: the code would be \
         asked twice and the second line would refuse it as already used. \\fBpam\\-auth\\-update \\-\\-disable pam\\-totp\\fR \
         takes it out again. On RHEL and Fedora, \\fBauthselect select pam\\-totp\\fR then \
         \\fBauthselect enable\\-feature with\\-pam\\-totp\\fR does the same. \\fBpam\\-totp doctor\\fR checks the stacks of sshd, sudo, login and su.\n\
         .SH SSHD SETTINGS\n\
         The code prompt is a keyboard\\-interactive exchange, so sshd needs (in \\fI/etc/ssh/sshd_config.d/pam\\-totp.conf\\fR; \
         an example ships in \\fI/usr/share/doc/pam\\-totp/examples/\\fR):\n\
         .PP\n.nf\n\
         UsePAM yes\n\
         KbdInteractiveAuthentication yes\n\
         PasswordAuthentication no\n\
         AuthenticationMethods keyboard\\-interactive\n\
         .fi\n\
         .PP\n\
         For a key, then the code: \\fBAuthenticationMethods publickey,keyboard\\-interactive\\fR, and in \\fI/etc/pam.d/sshd\\fR \
         \\fBauth required pam_totp.so nullok\\fR in place of \\fB@include common\\-auth\\fR (\\fBnullok\\fR, or \\fBenforce_after\\fR, while users are still enrolling: without it a user not enrolled is refused even with a valid key). With \\fBAuthenticationMethods any\\fR (the default) \
         a user with a key is never asked for a code. Then \\fBsshd \\-t && systemctl reload ssh\\fR, with a root session kept open.\n\
         .SH EXAMPLES\n\
         Password, then code (the password module must be \\fBrequisite\\fR):\n\
         .PP\n.nf\n.\\\" pam-example\nauth requisite pam_unix.so\nauth required  pam_totp.so\n.fi\n\
         .PP\nSSH with a key, then the code (\\fI/etc/pam.d/sshd\\fR; see SSHD SETTINGS):\n\
         .PP\n.nf\n.\\\" pam-example\nauth required pam_totp.so\n.fi\n\
         .PP\nOne prompt for clients that send a single password (password immediately followed by the code): the first \
         line splits the answer and spends a right code, the password module checks the password, the last line counts a \
         wrong code. The first line must be \\fBrequired\\fR:\n\
         .PP\n.nf\n.\\\" pam-example\n\
         auth required  pam_totp.so forward_pass\n\
         auth requisite pam_unix.so use_first_pass\n\
         auth required  pam_totp.so\n\
         .fi\n\
         .PP\nNot this (\\fBpam\\-totp doctor\\fR rejects it): with \\fBrequisite\\fR on the forward_pass line and no pam_totp line \
         after the password module, a wrong code is never counted, so there is no lockout:\n\
         .PP\n.nf\n.\\\" pam-example: doctor rejects\n\
         auth requisite pam_totp.so forward_pass\n\
         auth required  pam_unix.so use_first_pass\n\
         .fi\n\
         .SH SEE ALSO\n\\fBpam\\-totp\\fR(1), \\fBpam_totp.conf\\fR(5), \\fBpam.conf\\fR(5), \\fBpam.d\\fR(5), \\fBpam\\fR(7)\n",
    );
    m
}

fn config_page() -> String {
    let mut m = header("pam_totp.conf", 5, "File Formats Manual");
    m.push_str(".SH NAME\npam_totp.conf \\- defaults for pam_totp and pam\\-totp\n");
    m.push_str(
        ".SH DESCRIPTION\n\
         \\fI/etc/security/pam_totp.conf\\fR is a TOML file read by \\fBpam_totp\\fR(8) and \\fBpam\\-totp\\fR(1). \
         Keys are named like the module arguments; flags are \\fBtrue\\fR or \\fBfalse\\fR, numbers are integers, \
         \\fBprotected_groups\\fR is a list of quoted strings, everything else is a quoted string. Arguments on a module line override the file; \\fBconfig=\\fR on a module \
         line names another file. The file must be owned by root and not writable by group or others. An unknown or \
         malformed key makes the module refuse every login and log why.\n.SH SETTINGS\n",
    );
    for o in OPTIONS.iter().filter(|o| !o.example.is_empty()) {
        let _ = writeln!(m, ".TP\n\\fB{}\\fR = \\fI{}\\fR", esc(o.name), esc(o.example));
        let _ = writeln!(m, "{} Default: {}.", esc(o.doc), esc(o.default));
    }
    m.push_str(".SH EXAMPLE\n.nf\nwindow = 1\nlockout = 600\nenforce_after = \"2027\\-01\\-01\"\nissuer = \"ACME web servers\"\n.fi\n");
    m.push_str(".SH SEE ALSO\n\\fBpam_totp\\fR(8), \\fBpam\\-totp\\fR(1)\n");
    m
}

/// pam-totp-stated(8): the fleet daemon (its options are few; the `[fleet]` settings are
/// in pam_totp.conf(5)).
fn stated_page() -> String {
    let mut m = header("pam-totp-stated", 8, "System Manager's Manual");
    m.push_str(".SH NAME\npam\\-totp\\-stated \\- the fleet store of pam_totp: shared per\\-user state in etcd\n");
    m.push_str(".SH SYNOPSIS\n.B pam\\-totp\\-stated\n[\\fB\\-\\-config\\fR \\fIABSOLUTE\\-PATH\\fR] [\\fB\\-\\-socket\\fR \\fIABSOLUTE\\-PATH\\fR]\n");
    m.push_str(
        ".SH DESCRIPTION\n\
         With \\fBstore = \"fleet\"\\fR in \\fBpam_totp.conf\\fR(5), \\fBpam_totp\\fR(8) and \\fBpam\\-totp\\fR(1) keep each user's \
         replay guard, failure count, lockout and used backup codes in etcd, so that a code or a backup code is accepted once \
         in the whole fleet and wrong codes on any host count toward one lockout. They reach etcd through this daemon, over a \
         Unix socket that only root can use: the daemon answers only root peers, and the clients talk only to a root\\-owned \
         socket whose peer is root. Every change is one etcd compare\\-and\\-swap on the user's document. When a member \
         fails or does not answer, the daemon first looks on another member for the write it sent (by the random write id \
         at the head of every document, and etcd's history since the revision it was decided on): found, that is its answer; \
         not found, the same compare on the same revision is sent again, so it is never applied twice. The module refuses \
         the login on every timeout or error.\n\
         .PP\n\
         It runs in the foreground and logs to standard error. The socket comes from systemd \
         (\\fIpam\\-totp\\-stated.socket\\fR), else from \\fB\\-\\-socket\\fR, else from \\fBfleet_socket\\fR; it is created 0600 \
         in a root\\-owned directory. A bad configuration is one line on standard error and exit status 1.\n\
         .SH OPTIONS\n\
         .TP\n\\fB\\-\\-config\\fR \\fIPATH\\fR\nThe configuration file, an absolute path (default /etc/security/pam_totp.conf); its \\fB[fleet]\\fR table names the etcd endpoints, namespace, CA, client certificate and key, and the deadline.\n\
         .TP\n\\fB\\-\\-socket\\fR \\fIPATH\\fR\nAn absolute path: listen here instead of \\fBfleet_socket\\fR (ignored when systemd passes a socket).\n\
         .SH FILES\n\
         .TP\n.I /run/pam\\-totp/stated.sock\nThe socket (option \\fBfleet_socket\\fR).\n\
         .TP\n.I /etc/security/pam_totp.conf\nThe \\fB[fleet]\\fR settings.\n\
         .SH SEE ALSO\n\\fBpam_totp\\fR(8), \\fBpam_totp.conf\\fR(5), \\fBpam\\-totp\\fR(1), \\fBetcd\\fR(1), and \\fI/usr/share/doc/pam\\-totp/docs/fleet.md.gz\\fR\n",
    );
    m
}

fn write(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<()> {
    std::fs::write(dir.join(name), body)
}

/// A command's SYNOPSIS as it is typed: `pam-totp [--config PATH] [--state-dir DIR] doctor
/// [--pam-dir DIR] ...` (clap_mangen's names the page, `pam-totp-doctor`, and leaves the
/// values out).
fn synopsis(words: &[&str], cmd: &clap::Command, globals: &clap::Command) -> String {
    let arg = |a: &clap::Arg| -> Option<String> {
        if a.is_hide_set() || a.get_id() == "help" || a.get_id() == "version" {
            return None;
        }
        let value = a
            .get_value_names()
            .map(|v| v.join(" "))
            .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
        let text = match (a.get_long(), a.get_action().takes_values()) {
            (Some(l), true) => format!("\\fB\\-\\-{}\\fR \\fI{}\\fR", esc(l), esc(&value)),
            (Some(l), false) => format!("\\fB\\-\\-{}\\fR", esc(l)),
            (None, _) => format!("\\fI{}\\fR", esc(&value)),
        };
        Some(if a.is_required_set() { text } else { format!("[{text}]") })
    };
    let mut parts: Vec<String> = vec![format!("\\fB{}\\fR", esc(words[0]))];
    parts.extend(globals.get_arguments().filter(|a| a.is_global_set()).filter_map(arg));
    parts.extend(words[1..].iter().map(|w| format!("\\fB{}\\fR", esc(w))));
    if words.len() > 1 {
        parts.extend(cmd.get_arguments().filter(|a| !a.is_global_set()).filter_map(arg));
    }
    if cmd.has_subcommands() {
        parts.push("\\fICOMMAND\\fR".into());
    }
    format!(".SH SYNOPSIS\n{}\n", parts.join(" "))
}

/// One man page of `pam-totp` or one of its (sub)commands, named `pam-totp-WORD-WORD`.
fn command_page(words: &[&str], cmd: clap::Command, globals: &clap::Command) -> std::io::Result<Vec<u8>> {
    let page = words.join("-");
    // The subcommand list names each page after this one (`pam-totp-devices-list(1)`).
    let cmd = cmd
        .display_name(&*Box::leak(page.clone().into_boxed_str()))
        .disable_help_subcommand(true);
    let man = clap_mangen::Man::new(cmd.clone()).title(page.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    buf.extend_from_slice(synopsis(words, &cmd, globals).as_bytes());
    man.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut buf)?;
    }
    if cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some() {
        man.render_extra_section(&mut buf)?;
    }
    Ok(buf)
}

fn main() -> std::io::Result<()> {
    let out = std::env::args().nth(1).expect("usage: pam-totp-docs OUTDIR");
    let out = Path::new(&out);
    std::fs::create_dir_all(out)?;
    let cmd = Cli::command().disable_help_subcommand(true);
    let globals = cmd.clone();
    write(out, "pam-totp.1", &command_page(&["pam-totp"], cmd.clone(), &globals)?)?;
    // One page per command, and per subcommand of those (`pam-totp-devices-list.1`,
    // `pam-totp-import-tokens.1`), so every page a SEE ALSO or a SUBCOMMANDS list names
    // exists (there is no `help` command to list).
    let mut queue: Vec<(Vec<String>, clap::Command)> = cmd
        .get_subcommands()
        .map(|s| (vec!["pam-totp".to_string(), s.get_name().to_string()], s.clone()))
        .collect();
    while let Some((words, sub)) = queue.pop() {
        let sub = sub.disable_help_subcommand(true);
        for child in sub.get_subcommands() {
            let mut w = words.clone();
            w.push(child.get_name().to_string());
            queue.push((w, child.clone()));
        }
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        write(out, &format!("{}.1", w.join("-")), &command_page(&w, sub, &globals)?)?;
    }
    write(out, "pam_totp.8", module_page().as_bytes())?;
    write(out, "pam_totp.conf.5", config_page().as_bytes())?;
    write(out, "pam-totp-stated.8", stated_page().as_bytes())?;
    write(out, "pam_totp.conf", commented_config_file().as_bytes())?;
    Ok(())
}
