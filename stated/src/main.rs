//! pam-totp-stated: the fleet daemon. Keeps its gRPC connections (TLS, client certificate;
//! one per etcd member it uses) to the etcd cluster and serves the module and the CLI the
//! shared per-user state over a root-only Unix socket, with the protocol of
//! `pam_totp_core::fleet`.
//!
//! Owns: the etcd side — one key per user, a compare-and-swap as one etcd transaction on
//! the key's mod_revision (create_revision == 0 for a new user), deadlines on every etcd
//! call, moving on to the next member when one fails. Never: answers a client that is not
//! root (SO_PEERCRED); reports a write it has no answer for as anything but unavailable (it
//! may still be applied, so the login is refused); sends a compare-and-swap whose answer was
//! lost again before it has found out whether it was applied ([`find_lost_write`]: by the
//! document's write id, so the login it was for is accepted once, not refused as a replay
//! of its own spend; sent again, it is the same compare on the same revision, never applied
//! twice); logs a document, a code or a user's keyed-hash key (a user's etcd key name, which
//! holds the escaped user name, is logged when a write's answer was lost).
//!
//! `pam-totp-stated [--config ABSOLUTE-PATH] [--socket ABSOLUTE-PATH]`, in the foreground. The socket comes
//! from systemd (LISTEN_FDS, `pam-totp-stated.socket`), else `--socket`, else `fleet_socket`
//! of pam_totp.conf; it is created 0600 in a root-owned directory.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue, TlsOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use pam_totp_core::config::{Config, FleetConfig};
use pam_totp_core::fleet::{self, Doc, Request, Response, Space, MAX_FRAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Connections served at once. When all are taken the daemon stops accepting: new ones wait
/// in the socket's backlog until one is free (within their own deadline), rather than being
/// closed at once — a burst of logins (su started in a loop by a local user) must not turn
/// into quick "unavailable" answers that `store_unavailable = "local"` would fall back on.
const MAX_CONNECTIONS: usize = 512;
/// How long a connection may stay open without a request. The module opens one per
/// operation (a login: one for the lockout check, one for the decision) and holds none
/// across the prompt, so this is only for clients that stall.
const IDLE: Duration = Duration::from_secs(2);

const USAGE: &str = "usage: pam-totp-stated [--config ABSOLUTE-PATH] [--socket ABSOLUTE-PATH]";

struct Args {
    config: Option<PathBuf>,
    socket: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        config: None,
        socket: None,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let mut value = |name: &str| -> Result<PathBuf, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value; {USAGE}"))?;
            let p = PathBuf::from(v);
            if !p.is_absolute() {
                return Err(format!("{name} must be an absolute path"));
            }
            Ok(p)
        };
        match arg.as_str() {
            "--config" => a.config = Some(value("--config")?),
            "--socket" => a.socket = Some(value("--socket")?),
            "-h" | "--help" => {
                println!(
                    "{USAGE}\nServes pam_totp's fleet store (etcd) on a root-only Unix socket. See pam-totp-stated(8) and /usr/share/doc/pam-totp/docs/fleet.md.gz."
                );
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("pam-totp-stated {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => return Err(format!("unknown argument {:?}; {USAGE}", other)),
        }
    }
    Ok(Some(a))
}

/// What the daemon needs from the configuration, checked before anything starts.
struct Setup {
    endpoints: Vec<String>,
    namespace: String,
    timeout: Duration,
    tls: Option<TlsOptions>,
    socket: PathBuf,
}

fn read_pem(path: &Path, secret: bool) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !md.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if md.uid() != 0 {
        return Err(format!("{} must be owned by root", path.display()));
    }
    if secret && md.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is accessible by group or others ({:04o}); run chmod 600 {}",
            path.display(),
            md.mode() & 0o7777,
            path.display()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(format!("{} is writable by group or others", path.display()));
    }
    if md.len() > 1024 * 1024 {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn setup(args: &Args) -> Result<Setup, String> {
    let mut cfg_args = Vec::new();
    if let Some(c) = &args.config {
        cfg_args.push(format!("config={}", c.display()));
    }
    let cfg_args: Vec<&str> = cfg_args.iter().map(String::as_str).collect();
    let cfg = Config::load(&cfg_args, pam_totp_core::files::fs::read_config).map_err(|e| e.to_string())?;
    let FleetConfig {
        endpoints,
        namespace,
        ca_file,
        cert_file,
        key_file,
        timeout_ms,
        // The daemon never reads it: it stores the fleet vault's records sealed, as the
        // module and pam-totp hand them over, and opens none.
        vault_key_file: _,
    } = cfg.fleet;
    if endpoints.is_empty() {
        return Err(format!(
            "{}: [fleet] endpoints is empty: list the etcd members' client URLs",
            cfg.config_path.display()
        ));
    }
    let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
    let tls = if https == 0 {
        if ca_file.is_some() || cert_file.is_some() || key_file.is_some() {
            return Err("[fleet] ca_file, cert_file and key_file need https:// endpoints".into());
        }
        None
    } else {
        if https != endpoints.len() {
            return Err("[fleet] endpoints mixes https:// and http://: use https:// for all".into());
        }
        let (Some(ca), Some(cert), Some(key)) = (ca_file, cert_file, key_file) else {
            return Err(
                "[fleet] https:// endpoints need ca_file, cert_file and key_file (a client certificate per host)"
                    .into(),
            );
        };
        Some(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read_pem(&ca, false)?))
                .identity(Identity::from_pem(read_pem(&cert, false)?, read_pem(&key, true)?)),
        )
    };
    Ok(Setup {
        endpoints,
        namespace,
        timeout: Duration::from_millis(timeout_ms),
        tls,
        socket: args.socket.clone().unwrap_or(cfg.fleet_socket),
    })
}

/// The socket systemd passed (LISTEN_FDS), else a new one at `path`: bound under a
/// temporary name, made 0600, then renamed into place, so it is never reachable with
/// another mode. Its directory is created 0755 if missing and must be root's and not
/// writable by group or others. `true`: we made it (and remove it at exit).
fn listener(path: &Path) -> Result<(std::os::unix::net::UnixListener, bool), String> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    let mut fds = listenfd::ListenFd::from_env();
    if let Ok(Some(l)) = fds.take_unix_listener(0) {
        return Ok((l, false));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or("the socket path has no directory")?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{} is in use: is pam-totp-stated already running?",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale {}: {e}", path.display()))?;
        }
        Ok(_) => return Err(format!("{} exists and is not a socket", path.display())),
        Err(_) => {}
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let l = std::os::unix::net::UnixListener::bind(&tmp).map_err(|e| format!("cannot bind {}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot put the socket at {}: {e}", path.display())
        })?;
    // The client makes the same check; refusing here says it at start.
    fleet::check_socket_path(path).map_err(|e| {
        let _ = std::fs::remove_file(path);
        e.to_string()
    })?;
    Ok((l, true))
}

fn main() {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => fail(&e),
    };
    if !nix::unistd::geteuid().is_root() {
        fail("must run as root (the module and pam-totp only talk to a root-owned daemon)");
    }
    let setup = setup(&args).unwrap_or_else(|e| fail(&e));
    let (std_listener, ours) = listener(&setup.socket).unwrap_or_else(|e| fail(&e));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start: {e}")));
    let socket = setup.socket.clone();
    let code = rt.block_on(serve(setup, std_listener));
    if ours {
        let _ = std::fs::remove_file(&socket);
    }
    std::process::exit(code);
}

fn fail(msg: &str) -> ! {
    eprintln!("pam-totp-stated: {msg}");
    std::process::exit(1);
}

/// One client per member: the daemon picks the member itself, so that a dead or frozen
/// one is left for the next within the deadline (etcd-client's own balancing keeps sending
/// a share of the requests to a member that refuses connections).
struct Etcd {
    members: Vec<(String, Client)>,
    /// The member that answered last; tried first.
    preferred: std::sync::atomic::AtomicUsize,
    namespace: String,
    timeout: Duration,
    /// When etcd last answered a request of this daemon (milliseconds after `epoch`, plus
    /// one; 0: never): a request that ran out of time while etcd answered others is not an
    /// outage (see [`handle`]).
    last_answer: std::sync::atomic::AtomicU64,
    epoch: Instant,
}

impl Etcd {
    fn note_answer(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_answer.fetch_max(ms + 1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether etcd answered any request of this daemon at or after `since`.
    fn answered_since(&self, since: Instant) -> bool {
        answered_since(
            self.last_answer.load(std::sync::atomic::Ordering::Relaxed),
            self.epoch,
            since,
        )
    }
}

/// `last`: the time of the last answer as [`Etcd::last_answer`] keeps it.
fn answered_since(last: u64, epoch: Instant, since: Instant) -> bool {
    let since = u64::try_from(since.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX - 1);
    last > since
}

async fn serve(setup: Setup, std_listener: std::os::unix::net::UnixListener) -> i32 {
    if let Err(e) = std_listener.set_nonblocking(true) {
        eprintln!("pam-totp-stated: {e}");
        return 1;
    }
    let listener = match UnixListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pam-totp-stated: {e}");
            return 1;
        }
    };
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(setup.timeout)
        .with_timeout(setup.timeout)
        .with_keep_alive(Duration::from_secs(5), setup.timeout)
        .with_keep_alive_while_idle(true);
    // No `require_leader`: a request that meets an election waits for the new leader
    // within the deadline instead of failing at once, so logins ride through a failover.
    if let Some(tls) = setup.tls {
        opts = opts.with_tls(tls);
    }
    // Lazy: no connection is made here, so the daemon starts while etcd is down.
    let mut members = Vec::new();
    for ep in &setup.endpoints {
        match Client::connect([ep.as_str()], Some(opts.clone())).await {
            Ok(c) => members.push((ep.clone(), c)),
            Err(e) => {
                eprintln!("pam-totp-stated: cannot set up the etcd client for {ep}: {e}");
                return 1;
            }
        }
    }
    let etcd = Arc::new(Etcd {
        members,
        preferred: std::sync::atomic::AtomicUsize::new(0),
        last_answer: std::sync::atomic::AtomicU64::new(0),
        epoch: Instant::now(),
        namespace: setup.namespace,
        timeout: setup.timeout,
    });
    eprintln!(
        "pam-totp-stated: serving namespace {} from {} etcd endpoint(s)",
        etcd.namespace,
        etcd.members.len()
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pam-totp-stated: {e}");
            return 1;
        }
    };
    loop {
        // A free slot first, then the next connection (see MAX_CONNECTIONS).
        let permit = tokio::select! {
            _ = term.recv() => return 0,
            _ = tokio::signal::ctrl_c() => return 0,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return 1,
            },
        };
        let stream = tokio::select! {
            _ = term.recv() => return 0,
            _ = tokio::signal::ctrl_c() => return 0,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("pam-totp-stated: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match stream.peer_cred() {
            Ok(c) if c.uid() == 0 => {}
            Ok(c) => {
                eprintln!("pam-totp-stated: refused a connection from uid {}", c.uid());
                continue;
            }
            Err(e) => {
                eprintln!("pam-totp-stated: refused a connection: no peer credentials: {e}");
                continue;
            }
        }
        let etcd = etcd.clone();
        tokio::spawn(async move {
            connection(stream, &etcd).await;
            drop(permit);
        });
    }
}

/// Serves one client: frames in, frames out, until it closes, idles, or sends garbage.
async fn connection(mut s: UnixStream, etcd: &Etcd) {
    loop {
        let mut len = [0u8; fleet::proto::FRAME_HEADER];
        match tokio::time::timeout(IDLE, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(n) = fleet::proto::frame_len(len, MAX_FRAME) else {
            let _ = send(&mut s, &Response::Refused("request too large".into())).await;
            return;
        };
        let mut body = vec![0u8; n];
        match tokio::time::timeout(fleet::REQUEST_TIMEOUT, s.read_exact(&mut body)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(req) = Request::decode(&body) else {
            let _ = send(&mut s, &Response::Refused("malformed request".into())).await;
            return;
        };
        let resp = match req {
            Request::Hello => Response::Pong,
            req => handle(etcd, req).await,
        };
        if send(&mut s, &resp).await.is_err() {
            return;
        }
    }
}

async fn send(s: &mut UnixStream, r: &Response) -> Result<(), ()> {
    let frame = fleet::proto::frame(&r.encode());
    match tokio::time::timeout(fleet::REQUEST_TIMEOUT, s.write_all(&frame)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

fn doc_of(kv: Option<&etcd_client::KeyValue>) -> Result<Option<Doc>, String> {
    let Some(kv) = kv else { return Ok(None) };
    let revision = u64::try_from(kv.mod_revision())
        .ok()
        .filter(|&r| r > 0)
        .ok_or("etcd returned a document without a revision")?;
    if kv.value().len() > fleet::MAX_STORED {
        return Err("a stored document is larger than the limit".into());
    }
    Ok(Some(Doc {
        revision,
        value: kv.value().to_vec(),
    }))
}

/// Whether a failed call may be tried again on another member: the member could not be
/// reached, has no leader, or gave up. A compare-and-swap is first looked for
/// ([`find_lost_write`]): if it was applied after all, that is its answer; if not, the same
/// compare on the same revision is sent again, and at most one of the two can apply.
fn retryable(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
            )
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// Whether a failed try shows etcd down — what `store_unavailable = "local"` may fall back
/// on — rather than this host failing. Down: the member refused the connection or could
/// not be reached (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH), or etcd itself said
/// it cannot serve (no leader, a timed-out proposal: gRPC Unavailable/DeadlineExceeded from
/// the server). Not down: this host ran out of ports, descriptors or memory (EADDRNOTAVAIL,
/// EMFILE, ENFILE, ENOBUFS, ENOMEM: a local user can exhaust ephemeral ports), TLS or the
/// certificate was refused (expired, revoked, untrusted: the connection is closed during the
/// handshake), or anything not known to be an outage.
fn outage_signal(e: &etcd_client::Error) -> bool {
    const DOWN: [i32; 4] = [111, 110, 113, 101]; // ECONNREFUSED ETIMEDOUT EHOSTUNREACH ENETUNREACH
    const LOCAL: [i32; 5] = [99, 24, 23, 105, 12]; // EADDRNOTAVAIL EMFILE ENFILE ENOBUFS ENOMEM
    let mut down = false;
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.raw_os_error() {
                Some(c) if LOCAL.contains(&c) => return false,
                Some(c) if DOWN.contains(&c) => down = true,
                _ => {}
            }
        }
        if let Some(st) = s.downcast_ref::<tonic::Status>() {
            let m = st.message();
            if matches!(st.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
                && m.starts_with("etcdserver:")
            {
                down = true;
            }
        }
        let text = s.to_string();
        if LOCAL_TEXT.iter().any(|t| text.contains(t)) {
            return false;
        }
        if DOWN_TEXT.iter().any(|t| text.contains(t)) {
            down = true;
        }
        src = s.source();
    }
    if let etcd_client::Error::GRpcStatus(st) = e {
        if matches!(st.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
            && st.message().starts_with("etcdserver:")
        {
            down = true;
        }
    }
    down
}

/// Errors of this host, as their text reads when no `io::Error` is in the chain.
const LOCAL_TEXT: [&str; 6] = [
    "Cannot assign requested address",
    "Too many open files",
    "No buffer space available",
    "certificate",
    "tls",
    "TLS",
];
/// An unreachable or refusing member, as its text reads.
const DOWN_TEXT: [&str; 4] = [
    "Connection refused",
    "No route to host",
    "Network is unreachable",
    "Connection timed out",
];

/// How long etcd must have answered none of this daemon's requests before one more
/// unanswered request is an outage (`Unavailable`): three deadlines. A request that fails
/// on its own, or the first seconds after the daemon starts, are not an outage.
fn outage_after(timeout: Duration) -> Duration {
    timeout * 3
}

/// One request against etcd, within the configured deadline (`timeout_ms`), trying the
/// members in turn — each try gets at most half the deadline, so a frozen member leaves
/// time for another. A member that cannot be reached or does not answer in time ends as
/// `Unavailable` (the client refuses; a timed-out write may still be applied by etcd);
/// any other error as `Refused`.
async fn handle(etcd: &Etcd, req: Request) -> Response {
    use std::sync::atomic::Ordering;
    let started = Instant::now();
    let deadline = started + etcd.timeout;
    let what = match &req {
        Request::Hello => "hello",
        Request::Ping => "ping",
        Request::Get {
            space: Space::State, ..
        } => "get",
        Request::Cas {
            space: Space::State, ..
        } => "compare-and-swap",
        Request::Delete {
            space: Space::State, ..
        } => "delete",
        Request::List { space: Space::State } => "list",
        Request::Get {
            space: Space::Vault, ..
        } => "vault get",
        Request::Cas {
            space: Space::Vault, ..
        } => "vault compare-and-swap",
        Request::Delete {
            space: Space::Vault, ..
        } => "vault delete",
        Request::List { space: Space::Vault } => "vault list",
    };
    let n = etcd.members.len();
    let first = etcd.preferred.load(Ordering::Relaxed) % n.max(1);
    let slice = (etcd.timeout / 2).max(Duration::from_millis(100));
    let mut last = String::from("no etcd member answered");
    // A compare-and-swap sent to a member that then failed or did not answer in time may
    // have been applied: every later try first looks for it.
    let mut lost = false;
    let is_cas = matches!(req, Request::Cas { .. });
    // Every failure so far showed etcd down (see [`outage_signal`]).
    let mut all_down = true;
    // Members that fail at once are tried again until the deadline: an outage is decided
    // at the deadline, never after a few quick failures.
    for round in 0.. {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let i = (first + round) % n;
        let (ep, client) = &etcd.members[i];
        #[cfg(debug_assertions)]
        if round == 0 && is_cas && test_hook::lose(test_hook::Lose::Unsent).await {
            lost = true;
            continue;
        }
        match tokio::time::timeout(left.min(slice), run(etcd, client, req.clone(), lost)).await {
            Ok(Ok(resp)) => {
                etcd.note_answer();
                #[cfg(debug_assertions)]
                if round == 0 && is_cas && test_hook::lose(test_hook::Lose::Applied).await {
                    lost = true;
                    continue;
                }
                etcd.preferred.store(i, Ordering::Relaxed);
                return resp;
            }
            Ok(Err(Failure::Etcd(e))) if retryable(&e) => {
                lost |= is_cas;
                all_down &= outage_signal(&e);
                last = format!("{ep}: {e}");
                // A member that refuses at once: a short pause before the next.
                let pause = Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
            Ok(Err(e)) => {
                etcd.note_answer();
                // Not an outage that waiting fixes (permission denied: a revoked or
                // misconfigured host; a malformed or oversized document): refused, so
                // `store_unavailable = "local"` never falls back on it.
                let msg = format!("etcd {what} failed at {ep}: {e}");
                eprintln!("pam-totp-stated: {msg}");
                return Response::Refused(msg);
            }
            Err(_) => {
                lost |= is_cas;
                last = format!("{ep} did not answer in time");
            }
        }
    }
    let msg = format!(
        "etcd did not answer the {what} within {} ms ({last})",
        started.elapsed().as_millis()
    );
    // Unavailable is the one answer `store_unavailable = "local"` falls back on, so it must
    // mean that etcd is down, not that this daemon is busy: local users can start logins
    // (su) in a burst to slow it, and must not so move a login onto this host's own state.
    // Etcd answering any other request meanwhile shows it was up.
    if etcd.answered_since(started) {
        let msg = format!("{msg}; etcd answered other requests meanwhile, so this is load, not an outage");
        eprintln!("pam-totp-stated: {msg}");
        return Response::Refused(msg);
    }
    if !all_down {
        let msg = format!("{msg}; a failure of this host or its TLS identity, not an etcd outage");
        eprintln!("pam-totp-stated: {msg}");
        return Response::Refused(msg);
    }
    let quiet_for = outage_after(etcd.timeout);
    let since = Instant::now().checked_sub(quiet_for).unwrap_or(etcd.epoch);
    if etcd.epoch.elapsed() < quiet_for || etcd.answered_since(since) {
        let msg = format!(
            "{msg}; not yet an outage (etcd answered this daemon within the last {} ms, or it started since)",
            quiet_for.as_millis()
        );
        eprintln!("pam-totp-stated: {msg}");
        return Response::Refused(msg);
    }
    eprintln!("pam-totp-stated: {msg}");
    Response::Unavailable(msg)
}

/// Debug builds only (the packages are release builds, without it): lets the tests lose
/// etcd's answer to a compare-and-swap, which otherwise takes a member dying at the right
/// instant. `PAM_TOTP_STATED_TEST_LOSE_CAS` = `applied` (the first try of each
/// compare-and-swap is applied and its answer dropped), `unsent` (the first try is dropped
/// before it is sent) or `held` (the first try is held, as by a frozen member, and applied
/// only when the daemon has found nothing and is about to send it again). With
/// `PAM_TOTP_STATED_TEST_GATE` = a path, `<path>.lost` is created when an answer is lost
/// (`held`: when the held copy is applied) and the daemon waits (at most 5 s) for `<path>`
/// before going on.
#[cfg(debug_assertions)]
mod test_hook {
    use std::time::{Duration, Instant};

    #[derive(PartialEq)]
    pub enum Lose {
        Applied,
        Unsent,
        Held,
    }

    fn mode() -> Option<Lose> {
        match std::env::var("PAM_TOTP_STATED_TEST_LOSE_CAS").as_deref() {
            Ok("applied") => Some(Lose::Applied),
            Ok("unsent") => Some(Lose::Unsent),
            Ok("held") => Some(Lose::Held),
            _ => None,
        }
    }

    async fn gate() {
        if let Ok(gate) = std::env::var("PAM_TOTP_STATED_TEST_GATE") {
            let _ = std::fs::write(format!("{gate}.lost"), "");
            let until = Instant::now() + Duration::from_secs(5);
            while !std::path::Path::new(&gate).exists() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Whether the first try is lost at this point (`Applied`: after it was applied,
    /// `Unsent`: before it is sent, which a held try is too).
    pub async fn lose(at: Lose) -> bool {
        let Some(mode) = mode() else { return false };
        let hit = mode == at || (mode == Lose::Held && at == Lose::Unsent);
        if !hit {
            return false;
        }
        if mode != Lose::Held {
            gate().await;
        }
        eprintln!("pam-totp-stated: test: the answer to a compare-and-swap is dropped");
        true
    }

    /// `held`: the held first copy goes through now, just before the copy sent again.
    pub async fn release_held(kv: &mut etcd_client::KvClient, txn: etcd_client::Txn) {
        if mode() == Some(Lose::Held) {
            let applied = kv.txn(txn).await.map(|r| r.succeeded());
            eprintln!("pam-totp-stated: test: the held copy goes through: {applied:?}");
            gate().await;
        }
    }
}

enum Failure {
    Etcd(etcd_client::Error),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Etcd(e) => write!(f, "{e}"),
            Failure::Other(m) => f.write_str(m),
        }
    }
}

impl From<etcd_client::Error> for Failure {
    fn from(e: etcd_client::Error) -> Self {
        Failure::Etcd(e)
    }
}

impl From<String> for Failure {
    fn from(m: String) -> Self {
        Failure::Other(m)
    }
}

impl From<&str> for Failure {
    fn from(m: &str) -> Self {
        Failure::Other(m.to_string())
    }
}

/// `lost`: a compare-and-swap of this request was sent before and its answer lost.
async fn run(etcd: &Etcd, client: &Client, req: Request, lost: bool) -> Result<Response, Failure> {
    let mut kv = client.kv_client();
    let key = |space: Space, user: &str| fleet::space_key(space, &etcd.namespace, user);
    match req {
        Request::Hello => Ok(Response::Pong),
        Request::Ping => {
            // A linearizable read proves a quorum answers.
            kv.get(
                fleet::users_prefix(&etcd.namespace),
                Some(GetOptions::new().with_count_only()),
            )
            .await?;
            Ok(Response::Pong)
        }
        Request::Get { space, user, fresh } => {
            let opts = (!fresh).then(|| GetOptions::new().with_serializable());
            let r = kv.get(key(space, &user), opts).await?;
            Ok(Response::Value(doc_of(r.kvs().first())?))
        }
        Request::Cas {
            space,
            user,
            expected,
            value,
        } => {
            let k = key(space, &user);
            let expected = i64::try_from(expected).map_err(|_| "revision out of range")?;
            if lost {
                if let Some(r) = find_lost_write(client, &k, expected, &value).await? {
                    return Ok(r);
                }
            }
            let cmp = if expected == 0 {
                Compare::create_revision(k.clone(), CompareOp::Equal, 0)
            } else {
                Compare::mod_revision(k.clone(), CompareOp::Equal, expected)
            };
            let txn = Txn::new()
                .when([cmp])
                .and_then([TxnOp::put(k.clone(), value.clone(), None)])
                .or_else([TxnOp::get(k.clone(), None)]);
            #[cfg(debug_assertions)]
            if lost {
                test_hook::release_held(&mut kv, txn.clone()).await;
            }
            let r = kv.txn(txn).await?;
            if !r.succeeded() && lost {
                // Sent again and beaten: perhaps by the first copy, applied meanwhile (a member
                // that held it went on), with other writes since on top. Look once more.
                if let Some(found) = find_lost_write(client, &k, expected, &value).await? {
                    return Ok(found);
                }
            }
            if r.succeeded() {
                return stored(r.header().map_or(0, |h| h.revision()));
            }
            let current = r.op_responses().into_iter().find_map(|o| match o {
                TxnOpResponse::Get(g) => Some(doc_of(g.kvs().first())),
                _ => None,
            });
            match current {
                Some(d) => Ok(Response::Conflict(d?)),
                None => Err("etcd's answer to a failed compare has no document".into()),
            }
        }
        Request::Delete { space, user } => {
            kv.delete(key(space, &user), None).await?;
            Ok(Response::Deleted)
        }
        Request::List { space } => {
            let prefix = fleet::space_prefix(space, &etcd.namespace);
            let r = kv
                .get(prefix.clone(), Some(GetOptions::new().with_prefix().with_keys_only()))
                .await?;
            let users = r
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let k = std::str::from_utf8(kv.key()).ok()?;
                    pam_totp_core::account::unescape_user(k.strip_prefix(&prefix)?)
                })
                .filter(|u| !u.is_empty() && u.len() <= fleet::MAX_USER)
                .collect();
            Ok(Response::Users(users))
        }
    }
}

/// Whether a compare-and-swap (`expected` → `value`) whose answer was lost was applied,
/// asked of a member that answers a linearizable read — so every entry of an old leader's
/// term is, by then, committed or gone for good. `Stored` if it was; `Conflict` with the
/// document as it is if another write came first (the lost one can then never apply: its
/// compare names a revision that has passed); `None` if the key is still at `expected`
/// (the caller sends it again: its compare lets at most one copy apply).
///
/// A document is recognised by its bytes, which hold a write id made for that one write
/// ([`fleet::write_id`]); a value without one is never claimed.
async fn find_lost_write(client: &Client, k: &str, expected: i64, value: &[u8]) -> Result<Option<Response>, Failure> {
    if fleet::write_id(value).is_none() {
        return Ok(None);
    }
    let found = look_for_write(client, k, expected, value).await?;
    let what = match &found {
        None => "not applied; sent again".to_string(),
        Some(Response::Stored { revision }) => format!("applied at revision {revision}"),
        Some(_) => "not applied: another write came first".to_string(),
    };
    eprintln!("pam-totp-stated: a compare-and-swap of {k} on revision {expected} whose answer was lost: {what}");
    Ok(found)
}

async fn look_for_write(client: &Client, k: &str, expected: i64, value: &[u8]) -> Result<Option<Response>, Failure> {
    let mut kv = client.kv_client();
    let now = kv.get(k, None).await?;
    let Some(cur) = now.kvs().first() else {
        // No key: a create not applied (sent again), or a document deleted since.
        return Ok((expected != 0).then_some(Response::Conflict(None)));
    };
    if expected != 0 && cur.mod_revision() == expected {
        return Ok(None);
    }
    let current = doc_of(Some(cur))?;
    if cur.value() == value {
        return Ok(Some(stored(cur.mod_revision())?));
    }
    // Written since: the first write after `expected` is this one or none of it. For a
    // create, that is the key's creation (the first write after the revision before it).
    let after = if expected == 0 {
        cur.create_revision() - 1
    } else {
        expected
    };
    let first = first_write_after(client, k, after, value).await?;
    match first {
        Some(f) if f.value() == value => Ok(Some(stored(f.mod_revision())?)),
        _ => Ok(Some(Response::Conflict(current))),
    }
}

/// `Stored` at etcd revision `revision` (which must be positive).
fn stored(revision: i64) -> Result<Response, Failure> {
    let revision = u64::try_from(revision)
        .ok()
        .filter(|&r| r > 0)
        .ok_or("etcd's answer has no revision")?;
    Ok(Response::Stored { revision })
}

/// The key as its first change after revision `after` left it (from etcd's history, by a
/// watch from `after + 1`). If etcd has compacted its history past `after` (at C): the key
/// as it was at C tells — still the version of `after`, the first change after `after` is
/// the first after C (watched again from C + 1); already `value` (this very write, by its
/// id), that is the answer. Anything else: an error (whether the lost write was applied is
/// unknown; the login is refused).
async fn first_write_after(client: &Client, k: &str, after: i64, value: &[u8]) -> Result<Option<KeyValue>, Failure> {
    let unknown = |c: i64| -> Failure {
        format!(
            "etcd's history of the document after revision {after} is compacted (to {c}): whether a lost write was applied is unknown"
        )
        .into()
    };
    let mut w = client.watch_client();
    let mut from = after + 1;
    // At most one move past a compaction: the second watch starts at a revision that exists.
    for _ in 0..2 {
        let mut stream = w.watch(k, Some(WatchOptions::new().with_start_revision(from))).await?;
        let compacted = loop {
            let Some(resp) = stream.message().await? else {
                return Err("etcd ended the watch of the document's history".into());
            };
            if resp.compact_revision() != 0 {
                break resp.compact_revision();
            }
            if resp.canceled() {
                return Err(format!(
                    "etcd cancelled the watch of the document's history: {}",
                    resp.cancel_reason()
                )
                .into());
            }
            if let Some(ev) = resp.events().first() {
                return Ok(ev.kv().cloned());
            }
        };
        if compacted <= after {
            return Err(unknown(compacted));
        }
        let at = client
            .kv_client()
            .get(k, Some(GetOptions::new().with_revision(compacted)))
            .await?;
        match at.kvs().first() {
            Some(kv) if kv.mod_revision() == after => from = compacted + 1,
            Some(kv) if kv.value() == value => return Ok(Some(kv.clone())),
            _ => return Err(unknown(compacted)),
        }
    }
    Err(unknown(from - 1))
}

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
