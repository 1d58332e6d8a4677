//! state-torture STATE_DIR USER START: records time steps START, START+1, ... in USER's state
//! through the store the module uses, printing each step after `update` returned (that is,
//! once it is committed), until killed. The crash test SIGKILLs it at random moments and then
//! checks that the state parses, the lock is free and no printed step was lost.

use std::io::Write;

use pam_totp_core::store::{FileStore, StateStore};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let store = FileStore::open(std::path::Path::new(&args[1]), false).expect("state dir");
    let mut step: u64 = args[3].parse().expect("start");
    let mut out = std::io::stdout().lock();
    loop {
        store
            .update(&args[2], |st| {
                st.last_step = Some(step);
                st.failures = (step % 5) as u32;
                st.used_backup_codes.push(format!("v1${:032x}${:064x}", step, step));
                if st.used_backup_codes.len() > 20 {
                    st.used_backup_codes.remove(0);
                }
            })
            .expect("update");
        writeln!(out, "{step}").unwrap();
        out.flush().unwrap();
        step += 1;
    }
}
