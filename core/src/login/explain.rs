//! What a user refused before (or without) a code prompt is told, and when.
//!
//! A refusal decided before the code prompt (keys that fail a check, keys missing for an
//! enrolled user, a state that cannot be read, not enrolled, a bad option) says why in one
//! PAM_ERROR_MSG, as a lockout does. OpenSSH's keyboard-interactive shows it: sshd collects
//! the messages of a failed `pam_authenticate` and sends them as the instruction of a last
//! info request without prompts, which `ssh` prints (at its default `LogLevel INFO`; not
//! under `-q`). sudo, su and login print it at once.
//!
//! Owns: the texts and the rule. Never: tells anything to a caller who may not have proven
//! the password (or, over SSH, a key): what such a caller can learn stays what it was — under
//! `requisite` stacking nothing, since pam_totp is never reached. The texts say what to ask an
//! administrator, never a path, a file mode, an error or anything else of the host.

use super::*;

/// The user's keys exist but failed a check (owner, mode, symlink) or could not be read or
/// parsed (secret file or vault file).
pub(super) const KEYS_UNUSABLE: &str = "Sign-in refused: your two-factor keys on this host failed a safety check or cannot be read. Ask an administrator to check them (the system log says what is wrong).";
/// The state could not be opened, read or written.
pub(super) const STATE_UNAVAILABLE: &str = "Sign-in refused: two-factor sign-in cannot record logins on this host right now. Ask an administrator (the system log says why).";
/// No keys, but the state records that the user enrolled.
pub(super) const KEYS_MISSING: &str =
    "Your two-factor secret is missing on this host. Ask an administrator to reset your enrollment.";
/// Not enrolled, and nothing lets the user through.
pub(super) const NOT_ENROLLED: &str = "Sign-in refused: this account requires two-factor sign-in, which is not set up for it. Ask an administrator to enroll you.";
/// A module argument or pam_totp.conf setting is wrong.
pub(super) const BAD_CONFIG: &str = "Sign-in refused: two-factor sign-in is misconfigured on this host. Ask an administrator (the system log says why).";

/// Says `text` to the user when the caller is known to have proven who they are before this
/// line (see [`proven_before`]); never on the `forward_pass` line (`split_line`), which runs
/// before the password module. Otherwise only the log (with `debug`) says the user was not
/// told.
pub(super) fn explain_refusal<H: Host>(cx: &mut Ctx<'_, H>, req: &Request<'_>, split_line: bool, text: &str) {
    if split_line {
        return;
    }
    match proven_before(cx.host, req) {
        Ok(()) => cx.host.error_msg(text),
        Err(why) => cx.debug(&format!(
            "the user is not told why: nothing proves they passed the password before this line ({})",
            log_quote_long(&why)
        )),
    }
}

/// Whether the caller has proven who they are before this pam_totp line: the service's PAM
/// stack provably stops on a wrong password before every pam_totp line that checks codes
/// (the `enroll_on_login` gate), or sshd says an earlier method of this connection (a key,
/// a password) succeeded for this user (`SSH_AUTH_INFO_0`, which sshd puts in the PAM
/// environment before keyboard-interactive; `AuthenticationMethods
/// publickey,keyboard-interactive`) — read for the `sshd` service only.
pub(super) fn proven_before<H: Host>(host: &H, req: &Request<'_>) -> Result<(), String> {
    // Only sshd's own word (the service sshd runs under): no other application puts it there,
    // and none may be taken to.
    if req.service == "sshd"
        && host
            .pam_env("SSH_AUTH_INFO_0")
            .is_some_and(|info| ssh_method_succeeded(&info))
    {
        return Ok(());
    }
    password_gate(req)
}

/// `SSH_AUTH_INFO_0` lists one method that succeeded per line (`publickey ssh-ed25519 AAAA...`,
/// `password`).
pub(super) fn ssh_method_succeeded(info: &str) -> bool {
    info.lines().any(|l| {
        let method = l.split(' ').next().unwrap_or("");
        matches!(method, "publickey" | "password" | "hostbased" | "gssapi-with-mic")
    })
}
