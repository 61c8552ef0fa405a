//! Plain HTTP/1.1 over std's TCP for the remote-verification tests: one-shot requests, and a
//! forwarding proxy that passes the first requests on to the real server and then misbehaves
//! (malformed JSON, a hang past the client's time limit, a dropped connection).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One HTTP message read off a stream: its head and body.
pub struct Message {
    pub head: String,
    pub body: Vec<u8>,
}

/// Read one message (head, then a Content-Length body); None at end of stream.
pub fn read_message(r: &mut BufReader<TcpStream>) -> Option<Message> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Message { head, body })
}

/// Send one request and return (status, JSON body).
pub fn request(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let addr = base.trim_start_matches("http://");
    let s = TcpStream::connect(addr).expect("connecting to the server");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut w = s.try_clone().unwrap();
    write!(
        w,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let m = read_message(&mut BufReader::new(s)).expect("an answer");
    let status: u16 = m
        .head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let v = serde_json::from_slice(&m.body).unwrap_or(Value::Null);
    (status, v)
}

pub fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    request(base, "POST", path, Some(body))
}

/// What the proxy does once its good requests are used up.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Say nothing for this long.
    Hang(Duration),
    /// Close the connection without an answer.
    Drop,
}

/// A proxy on a free loopback port; returns its base URL. It forwards the first `good`
/// requests to `upstream` (one fresh upstream connection each) and then applies `fault`.
pub fn faulty_proxy(upstream: &str, good: usize, fault: Fault) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let upstream = upstream.clone();
            let seen = seen.clone();
            std::thread::spawn(move || serve(c, &upstream, good, fault, &seen));
        }
    });
    base
}

fn serve(c: TcpStream, upstream: &str, good: usize, fault: Fault, seen: &AtomicUsize) {
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    while let Some(m) = read_message(&mut r) {
        if seen.fetch_add(1, Ordering::SeqCst) >= good {
            match fault {
                Fault::Malformed => {
                    let body = "{\"object\": \"verify\", \"accepted\": ";
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
                Fault::Hang(d) => std::thread::sleep(d),
                Fault::Drop => {}
            }
            return;
        }
        let Ok(mut up) = TcpStream::connect(upstream) else {
            return;
        };
        // Ask the server to close after its answer, so one read of it is the whole answer.
        let head = m.head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
        if up.write_all(head.as_bytes()).is_err() || up.write_all(&m.body).is_err() {
            return;
        }
        let Some(a) = read_message(&mut BufReader::new(up)) else {
            return;
        };
        if w.write_all(a.head.as_bytes()).is_err() || w.write_all(&a.body).is_err() {
            return;
        }
    }
}
