use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn a_request_that_ran_out_of_time_while_etcd_answered_others_is_load_not_an_outage() {
    let epoch = Instant::now() - Duration::from_secs(100);
    let started = epoch + Duration::from_secs(50);
    // Never answered, or last answered before this request started: an outage.
    assert!(!answered_since(0, epoch, started));
    assert!(!answered_since(40_000 + 1, epoch, started));
    // Answered another request after this one started: etcd was up.
    assert!(answered_since(50_500 + 1, epoch, started));
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("pam-totp-stated-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[test]
fn the_socket_is_made_0600_replaces_a_stale_one_and_refuses_a_live_one_or_a_file() {
    if !nix::unistd::geteuid().is_root() {
        return; // the client's checks want root's socket and directory
    }
    let d = dir();
    let p = d.join("run/stated.sock");
    let (l, ours) = listener(&p).unwrap();
    assert!(ours);
    assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(d.join("run")).unwrap().mode() & 0o777, 0o755);
    let e = listener(&p).err().unwrap();
    assert!(e.contains("in use"), "{e}");
    drop(l);
    let (_l, _) = listener(&p).expect("a stale socket is replaced");
    let f = d.join("file");
    std::fs::write(&f, "").unwrap();
    assert!(listener(&f).err().unwrap().contains("not a socket"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn only_unreachable_or_leaderless_answers_are_tried_on_another_member() {
    let status = |code| etcd_client::Error::GRpcStatus(tonic::Status::new(code, "x"));
    assert!(retryable(&status(tonic::Code::Unavailable)));
    assert!(retryable(&status(tonic::Code::DeadlineExceeded)));
    assert!(!retryable(&status(tonic::Code::PermissionDenied)));
    assert!(!retryable(&status(tonic::Code::InvalidArgument)));
    assert!(!retryable(&etcd_client::Error::InvalidArgs("x".into())));
}
