//! state-torture STATE_DIR USER START: spends time steps START, START+1, ... in USER's state
//! through the store the module uses, printing each step after `update` returned (that is,
//! once it is committed), until killed. The crash test SIGKILLs it at random moments and then
//! checks that the state parses, the lock is free and no printed step was lost.

use std::io::Write;

use pam_totp_core::state::store::{FileStore, StateStore};

/// The authenticator key whose replay guard the test reads back (hardening.rs).
const TORTURE_KEY: &[u8] = b"state-torture-device-key";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let store = FileStore::open(std::path::Path::new(&args[1]), false).expect("state dir");
    let mut step: u64 = args[3].parse().expect("start");
    let mut out = std::io::stdout().lock();
    loop {
        store
            .update(&args[2], |st| {
                // Step `step` of a 30-second authenticator, and a backup code, spent.
                st.spend_step(TORTURE_KEY, step, 30, step);
                st.failures = (step % 5) as u32;
                st.spend_backup(&format!("{step:08}"), &format!("v1${:032x}${:064x}", step, step));
            })
            .expect("update");
        writeln!(out, "{step}").unwrap();
        out.flush().unwrap();
        step += 1;
    }
}
