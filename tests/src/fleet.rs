//! Fleet test helpers: a real etcd (one member or a cluster) on 127.0.0.1 with random
//! ports and its own data directory, and real `pam-totp-stated` daemons ("hosts"). Every
//! process is stopped on drop (also a frozen one).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{built_next_to_the_harness, free_port, random_hex, register_secret, Fixture, TestUser};

/// Certificates for a TLS etcd: a CA, the members' server certificate (127.0.0.1), and
/// client certificates whose CN is the etcd user.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let p = Pki { dir: dir.to_path_buf() };
        p.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=pam-totp test CA",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ]);
        p.issue("server", "127.0.0.1", true);
        p
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `<name>.pem` and `<name>-key.pem` (0600), signed by the CA, with CN `cn`.
    pub fn issue(&self, name: &str, cn: &str, server: bool) {
        let ext = self.dir.join(format!("{name}.ext"));
        let usage = if server { "serverAuth,clientAuth" } else { "clientAuth" };
        std::fs::write(
            &ext,
            format!("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        let key = format!("{name}-key.pem");
        let csr = format!("{name}.csr");
        let cert = format!("{name}.pem");
        let subj = format!("/CN={cn}");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &subj,
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            &cert,
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.dir.join(&key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    frozen: bool,
}

/// A real etcd on 127.0.0.1: one member, or a cluster of several.
#[derive(Debug)]
pub struct Etcd {
    members: Vec<Member>,
    root: PathBuf,
    token: String,
    tls: Option<Pki>,
}

impl Etcd {
    /// One member, plain HTTP on loopback.
    pub fn single() -> Etcd {
        Etcd::start(1, None)
    }

    pub fn cluster(n: usize) -> Etcd {
        Etcd::start(n, None)
    }

    /// One member serving clients over TLS, requiring a client certificate signed by
    /// `pki`'s CA (its CN is the etcd user).
    pub fn single_tls(pki: &Pki) -> Etcd {
        Etcd::start(1, Some(pki.clone()))
    }

    fn start(n: usize, tls: Option<Pki>) -> Etcd {
        // On tmpfs when there is one: etcd fsyncs every write.
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("pam-totp-etcd-{}", random_hex(6)));
        std::fs::create_dir_all(&root).unwrap();
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
                frozen: false,
            })
            .collect();
        let mut e = Etcd {
            members,
            root,
            token: format!("ptt-{}", random_hex(4)),
            tls,
        };
        for i in 0..n {
            e.spawn(i);
        }
        e.wait_healthy(Duration::from_secs(20));
        e
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let scheme = self.scheme();
        let m = &self.members[i];
        let client_url = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let data = self.root.join(&m.name);
        let log = std::fs::File::create(self.root.join(format!("{}.log", m.name))).unwrap();
        let mut c = Command::new("etcd");
        c.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new", "--initial-cluster-token", &self.token])
            // Quick elections, so a killed leader is replaced within the tests' deadlines.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(p) = &self.tls {
            c.arg("--cert-file")
                .arg(p.path("server.pem"))
                .arg("--key-file")
                .arg(p.path("server-key.pem"))
                .arg("--trusted-ca-file")
                .arg(p.path("ca.pem"))
                .arg("--client-cert-auth");
        }
        let child = c.spawn().expect("etcd (apt-get install etcd-server)");
        self.members[i].child = Some(child);
        self.members[i].frozen = false;
    }

    /// Client URLs of every member, for `[fleet] endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = self.scheme();
        self.members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// `etcdctl` against every member (as the root etcd user over TLS: `root` cert).
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_on(&self.endpoints(), args)
    }

    pub fn etcdctl_on(&self, endpoints: &[String], args: &[&str]) -> Output {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["--dial-timeout=2s", "--command-timeout=3s"]);
        if let Some(p) = &self.tls {
            c.arg(format!("--cacert={}", p.path("ca.pem").display()))
                .arg(format!("--cert={}", p.path("root.pem").display()))
                .arg(format!("--key={}", p.path("root-key.pem").display()));
        }
        c.args(args).output().unwrap()
    }

    pub fn wait_healthy(&self, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let live: Vec<String> = self
                .members
                .iter()
                .zip(self.endpoints())
                .filter(|(m, _)| m.child.is_some() && !m.frozen)
                .map(|(_, e)| e)
                .collect();
            // A linearizable read needs a leader and a quorum.
            let out = self.etcdctl_on(&live, &["get", "pam-totp-health-probe"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > until {
                let logs: String = self
                    .members
                    .iter()
                    .map(|m| std::fs::read_to_string(self.root.join(format!("{}.log", m.name))).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
                    .chars()
                    .rev()
                    .take(4000)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect();
                panic!(
                    "etcd did not become healthy: {} {}",
                    String::from_utf8_lossy(&out.stderr),
                    logs
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the current leader.
    pub fn leader(&self) -> usize {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("etcdctl endpoint status: {}", String::from_utf8_lossy(&out.stderr)));
        for s in v.as_array().into_iter().flatten() {
            let id = &s["Status"]["header"]["member_id"];
            if id == &s["Status"]["leader"] {
                let ep = s["Endpoint"].as_str().unwrap_or_default().to_string();
                return self.endpoints().iter().position(|e| *e == ep).unwrap();
            }
        }
        panic!("no leader in {v}");
    }

    fn pid(&self, i: usize) -> Option<i32> {
        self.members[i].child.as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(pid) = self.pid(i) {
            let st = Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status();
            if !matches!(st, Ok(s) if s.success()) {
                eprintln!("kill -{sig} {pid}: {st:?}");
            }
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self, i: usize) {
        if self.members[i].frozen {
            self.thaw(i);
        }
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a stopped member again on its data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none());
        self.spawn(i);
    }

    /// SIGSTOP: the process keeps its sockets open but answers nothing. Returns once every
    /// thread of it is stopped (a busy machine may take a while to stop them all, and a
    /// thread still running could still answer its peers).
    pub fn freeze(&mut self, i: usize) {
        self.members[i].frozen = true;
        let Some(pid) = self.pid(i) else { return };
        // The state of every thread, as /proc shows it ("T" = stopped).
        let states = || -> Vec<String> {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|tasks| {
                    tasks
                        .flatten()
                        .filter_map(|t| {
                            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
                            // The state follows the ")" that ends the command name.
                            let (_, rest) = stat.rsplit_once(") ")?;
                            Some(rest.chars().next()?.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            // Sent again every half second: one `kill` that could not be started on a busy
            // machine must not leave the member running.
            self.signal(i, "STOP");
            let again = Instant::now() + Duration::from_millis(500);
            while Instant::now() < again {
                let s = states();
                // A thread that has exited (zombie, dead) answers nothing either.
                if !s.is_empty() && s.iter().all(|c| matches!(c.as_str(), "T" | "t" | "Z" | "X")) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(
                Instant::now() < until,
                "etcd member {i} (pid {pid}) did not stop: thread states {:?}",
                states()
            );
        }
    }

    pub fn thaw(&mut self, i: usize) {
        self.signal(i, "CONT");
        self.members[i].frozen = false;
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The pam-totp-stated binary built next to the tests.
pub fn stated_path() -> PathBuf {
    built_next_to_the_harness("pam-totp-stated")
}

/// Writes `f`'s pam_totp.conf for the fleet: the daemon's socket `socket`, the `extra`
/// settings, then the `[fleet]` table from `fleet`. Its path.
pub fn write_fleet_conf(f: &Fixture, socket: &Path, extra: &str, fleet: &str) -> PathBuf {
    let config = f.root.join("pam_totp.conf");
    std::fs::write(
        &config,
        format!(
            "store = \"fleet\"\nfleet_socket = \"{}\"\n{extra}\n[fleet]\n{fleet}\n",
            socket.display()
        ),
    )
    .unwrap();
    config
}

/// One "host": a fixture whose pam_totp.conf says `store = "fleet"`, and its daemon.
#[derive(Debug)]
pub struct Stated {
    child: Option<Child>,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Set in the daemon's environment (its debug-build test hooks).
    env: Vec<(String, String)>,
}

impl Stated {
    /// Writes `f`'s pam_totp.conf for the fleet (`extra` settings first, then the `[fleet]`
    /// table from `fleet`) and starts its daemon.
    pub fn start(f: &Fixture, extra: &str, fleet: &str) -> Stated {
        Stated::start_with_env(f, extra, fleet, &[])
    }

    /// [`Stated::start`] with `env` set for the daemon.
    pub fn start_with_env(f: &Fixture, extra: &str, fleet: &str, env: &[(&str, &str)]) -> Stated {
        let socket = f.root.join("stated.sock");
        let config = write_fleet_conf(f, &socket, extra, fleet);
        let mut s = Stated {
            child: None,
            socket,
            config,
            log: f.root.join("stated.log"),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        s.restart();
        s
    }

    /// The `[fleet]` table for `etcd`, in namespace `ns`.
    pub fn fleet_table(etcd: &Etcd, ns: &str, timeout_ms: u64) -> String {
        let eps: Vec<String> = etcd.endpoints().iter().map(|e| format!("\"{e}\"")).collect();
        format!(
            "endpoints = [{}]\nnamespace = \"{ns}\"\ntimeout_ms = {timeout_ms}\n",
            eps.join(", ")
        )
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(stated_path())
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("pam-totp-stated exited ({st}): {}", self.log_text());
            }
            assert!(
                Instant::now() < until,
                "pam-totp-stated did not listen: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` (`STOP`, `CONT`, ...) to the daemon.
    pub fn signal(&self, sig: &str) {
        let c = self.child.as_ref().expect("the daemon runs");
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(c.id().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig}");
    }
}

impl Drop for Stated {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Host A and host B of one fleet: two fixtures (each its own pam_totp.conf and state
/// directory, service `svc`), two daemons, one namespace.
#[derive(Debug)]
pub struct Fleet {
    pub a: Fixture,
    pub b: Fixture,
    pub sa: Stated,
    pub sb: Stated,
    pub ns: String,
}

/// A fleet of two hosts on `etcd`: `module_args` on both `svc` lines, `extra_conf` in both
/// pam_totp.conf files, the daemons' etcd deadline `timeout_ms`.
pub fn fleet(etcd: &Etcd, module_args: &str, extra_conf: &str, timeout_ms: u64) -> Fleet {
    let ns = format!("t{}", random_hex(4));
    let (a, b) = (Fixture::new(), Fixture::new());
    a.simple("svc", module_args);
    b.simple("svc", module_args);
    let table = Stated::fleet_table(etcd, &ns, timeout_ms);
    let sa = Stated::start(&a, extra_conf, &table);
    let sb = Stated::start(&b, extra_conf, &table);
    Fleet { a, b, sa, sb, ns }
}

/// A test user with a fresh key, enrolled (both hosts read the same home).
pub use crate::enrolled_user;

/// Gives `u` (key `key`) `n` new backup codes; returns them in clear.
pub fn with_backup_codes(u: &TestUser, key: &str, n: usize) -> Vec<String> {
    let codes = pam_totp_core::otp::backup::generate(n).unwrap();
    codes.iter().for_each(|c| register_secret(c));
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| {
            let h = pam_totp_core::otp::backup::hash(&pam_totp_core::otp::backup::normalize(c).unwrap()).unwrap();
            format!("\"{h}\"")
        })
        .collect();
    u.enroll(key, &format!("backup_codes = [{}]\n", hashes.join(", ")));
    codes.iter().map(|c| c.to_string()).collect()
}
