//! pam-totp: the command line of pam_totp. Thin: parses arguments, calls the library, prints.
//! Every failure is one line on stderr and a non-zero exit; never a panic message.

use std::process::ExitCode;

use clap::Parser;
use pam_totp_cli::{run, Cli};

fn main() -> ExitCode {
    // A bug must not print a backtrace into someone's enrollment: one line, exit 70.
    std::panic::set_hook(Box::new(|_| {
        eprintln!("pam-totp: internal error; nothing was changed that is not reported above")
    }));
    let cli = Cli::parse();
    match std::panic::catch_unwind(move || run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(msg)) => {
            eprintln!("pam-totp: {msg}");
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(70),
    }
}
