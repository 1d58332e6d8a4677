//! fleet-rtt: round trips to pam-totp-stated (and, for the choice of the etcd client, to
//! etcd's JSON gateway) for `scripts/bench-fleet`.
//!
//! usage: fleet-rtt SOCKET ROUNDS [GATEWAY_URL]
//! Prints one line per measurement: `<name> <mean µs> <median µs>`.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Instant;

use pam_totp_core::fleet::{Client, Request, Response, Space};
use pam_totp_core::state::fleet::FleetStore;

fn report(name: &str, mut us: Vec<f64>) {
    us.sort_by(|a, b| a.total_cmp(b));
    let mean = us.iter().sum::<f64>() / us.len() as f64;
    println!("{name} {mean:.0} {:.0}", us[us.len() / 2]);
}

fn time(rounds: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..rounds / 10 + 3 {
        f();
    }
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn b64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One HTTP/1.1 keep-alive POST to etcd's JSON gateway; returns the body.
fn post(conn: &mut BufReader<std::net::TcpStream>, host: &str, path: &str, body: &str) -> String {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(req.as_bytes()).unwrap();
    let mut len = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut buf = vec![0u8; len];
    conn.read_exact(&mut buf).unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: fleet-rtt SOCKET ROUNDS [GATEWAY_URL]");
        std::process::exit(2);
    }
    let socket = Path::new(&args[0]);
    let rounds: usize = args[1].parse().unwrap();
    report(
        "connect",
        time(rounds, || {
            Client::connect(socket).unwrap();
        }),
    );
    let mut c = Client::connect(socket).unwrap();
    report(
        "hello",
        time(rounds, || {
            c.call(&Request::Hello).unwrap();
        }),
    );
    let user = "ptbench-rtt".to_string();
    for (name, fresh) in [("get-serializable", false), ("get-linearizable", true)] {
        report(
            name,
            time(rounds, || {
                c.call(&Request::Get {
                    space: Space::State,
                    user: user.clone(),
                    fresh,
                })
                .unwrap();
            }),
        );
    }
    let store = FleetStore::new(socket);
    let mut rev = store.get(&user, true).unwrap().map_or(0, |d| d.revision);
    report(
        "compare-and-swap",
        time(rounds, || {
            match c
                .call(&Request::Cas {
                    space: Space::State,
                    user: user.clone(),
                    expected: rev,
                    value: b"version = 2\n".to_vec(),
                })
                .unwrap()
            {
                Response::Stored { revision } => rev = revision,
                other => panic!("{other:?}"),
            }
        }),
    );
    let _ = c.call(&Request::Delete {
        space: Space::State,
        user: user.clone(),
    });
    if let Some(url) = args.get(2) {
        let host = url.trim_start_matches("http://").trim_end_matches('/').to_string();
        let mut conn = BufReader::new(std::net::TcpStream::connect(&host).unwrap());
        conn.get_ref().set_nodelay(true).unwrap();
        let key = b64(b"pam-totp/v1/bench/users/ptbench-rtt");
        for (name, extra) in [
            ("gateway-get-serializable", ", \"serializable\": true"),
            ("gateway-get-linearizable", ""),
        ] {
            let body = format!("{{\"key\": \"{key}\"{extra}}}");
            report(
                name,
                time(rounds, || {
                    let r = post(&mut conn, &host, "/v3/kv/range", &body);
                    assert!(r.contains("header"), "{r}");
                }),
            );
        }
    }
}
