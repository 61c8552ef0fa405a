//! `kestrel serve` against slow and hostile clients: a client that never finishes its headers
//! is disconnected after --read-timeout, one whose body stalls gets 408, oversized headers get
//! 431, connections past --max-connections are closed at once, and all the while (and after)
//! the server answers others.

mod common;

use common::server::Server;
use common::SMOLLM2;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Send `req` on a fresh connection and read until the server closes it (or `wait` passes).
fn exchange(addr: &str, req: &[u8], wait: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(req).unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), t0.elapsed())
}

fn health(addr: &str) -> String {
    let req = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    exchange(addr, req, Duration::from_secs(10)).0
}

#[test]
fn slow_and_hostile_clients_cost_nothing() {
    let m = require_model!(SMOLLM2);
    let mut s = Server::start(&m, &["--read-timeout", "1", "--max-connections", "8"]);
    let addr = s.addr().to_string();
    // Headers that never end: closed after the read timeout, with nothing answered.
    let (got, took) = exchange(
        &addr,
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(10),
    );
    assert!(
        took < Duration::from_secs(5),
        "a slowloris client was kept {took:?}"
    );
    assert!(!got.contains("200 OK"), "{got}");
    // A body that stalls after 10 of its 100 bytes: 408, naming the stall.
    let stalled = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":";
    let (got, took) = exchange(&addr, stalled, Duration::from_secs(10));
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("the request body stalled"), "{got}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // 64 KiB of headers: 431.
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let (got, _) = exchange(&addr, big.as_bytes(), Duration::from_secs(10));
    assert!(
        got.starts_with("HTTP/1.1 431"),
        "{}",
        &got[..got.len().min(200)]
    );
    // Eight idle connections fill the server; a ninth is closed at once, unanswered.
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (got, took) = exchange(
        &addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(
        got.is_empty() && took < Duration::from_secs(2),
        "{got:?} after {took:?}"
    );
    // The idle ones are dropped after the read timeout too; then the server answers again.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(health(&addr).starts_with("HTTP/1.1 200"));
    let metrics = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (m, _) = exchange(&addr, metrics, Duration::from_secs(10));
    assert!(m.contains("kestrel_connections_refused_total 1"), "{m}");
    drop(idle);
    // A client that vanishes mid-generation.
    let gen = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"prompt\":\"Once upon a time\",\"max_tokens\":200,\"stream\":true}";
    let mut c = TcpStream::connect(&addr).unwrap();
    c.write_all(gen).unwrap();
    let mut first = [0u8; 64];
    let _ = c.read(&mut first);
    drop(c);
    assert!(health(&addr).starts_with("HTTP/1.1 200"));
    assert!(s.alive());
}
