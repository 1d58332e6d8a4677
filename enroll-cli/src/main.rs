//! pam-totp: the command line of pam_totp. Thin: parses arguments, calls the library, prints.
//! Every failure is one line on stderr and a non-zero exit; never a panic message.
//!
//! SIGPIPE: the Rust runtime sets it to "ignore" before `main`, so a write to a closed pipe
//! returns EPIPE instead of killing the process half-way; every command turns that error
//! into a message that says what was already done (e.g. "saved ..., but could not print
//! the result: Broken pipe"). Nothing here writes with `print!`/`eprint!`, which panic.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pam_totp_cli::{run, Cli};
use pam_totp_core::text::terminal_safe;

/// Best effort: if stderr itself is gone there is nobody left to tell.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "pam-totp: {}", terminal_safe(msg));
}

fn main() -> ExitCode {
    // A bug must not print a backtrace into someone's enrollment: one line, exit 70. The
    // hook cannot know how far the command got, so it does not claim that nothing changed.
    std::panic::set_hook(Box::new(|_| {
        say("internal error; the command may have stopped part-way: check `pam-totp status`")
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help, --version and usage errors; clap's own exit() panics on a closed pipe.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match std::panic::catch_unwind(move || run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(msg)) => {
            say(&msg);
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(70),
    }
}
