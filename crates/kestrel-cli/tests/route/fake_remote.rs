//! A tiny stand-in for a remote OpenAI-compatible server, misbehaving on request: it answers
//! well, slowly, with malformed JSON, with an error status, or dies in the middle of its answer.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ANSWER: &str = "An answer from the fake remote.";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Ok,
    Slow(Duration),
    Malformed,
    Status500,
    /// Send the head and part of the body, then close the connection.
    Die,
}

pub struct FakeRemote {
    pub url: String,
    mode: Arc<Mutex<Mode>>,
    last: Arc<Mutex<Option<(String, Value)>>>,
    auth: Arc<Mutex<Option<String>>>,
}

impl FakeRemote {
    pub fn start() -> FakeRemote {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding the fake remote");
        let url = format!("http://{}", l.local_addr().expect("address"));
        let mode = Arc::new(Mutex::new(Mode::Ok));
        let last = Arc::new(Mutex::new(None));
        let auth = Arc::new(Mutex::new(None));
        let (m, r, a) = (mode.clone(), last.clone(), auth.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (m, r, a) = (m.clone(), r.clone(), a.clone());
                std::thread::spawn(move || serve(s, &m, &r, &a));
            }
        });
        FakeRemote {
            url,
            mode,
            last,
            auth,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The path and body of the last request it received.
    pub fn last(&self) -> Option<(String, Value)> {
        self.last.lock().unwrap().clone()
    }

    /// The `Authorization` header of the last request.
    pub fn last_auth(&self) -> Option<String> {
        self.auth.lock().unwrap().clone()
    }
}

fn serve(
    s: TcpStream,
    mode: &Mutex<Mode>,
    last: &Mutex<Option<(String, Value)>>,
    auth: &Mutex<Option<String>>,
) {
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut len = 0;
    let mut authorization = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *last.lock().unwrap() = Some((path.clone(), req));
    *auth.lock().unwrap() = authorization;
    let answer = if path.ends_with("/chat/completions") {
        json!({"id": "fake-1", "object": "chat.completion", "created": 1, "model": "fake-big",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    } else {
        json!({"id": "fake-2", "object": "text_completion", "created": 1, "model": "fake-big",
               "choices": [{"index": 0, "text": ANSWER, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
    }
    .to_string();
    let mode = *mode.lock().unwrap();
    let mut w = s;
    let head = |status: &str, n: usize| {
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n")
    };
    let out = match mode {
        Mode::Ok => head("200 OK", answer.len()) + &answer,
        Mode::Slow(d) => {
            std::thread::sleep(d);
            head("200 OK", answer.len()) + &answer
        }
        Mode::Malformed => {
            let bad = "{\"choices\": [{\"message\": oops";
            head("200 OK", bad.len()) + bad
        }
        Mode::Status500 => {
            let e =
                r#"{"error": {"message": "the fake remote is broken", "type": "server_error"}}"#;
            head("500 Internal Server Error", e.len()) + e
        }
        Mode::Die => head("200 OK", answer.len()) + &answer[..answer.len() / 3],
    };
    let _ = w.write_all(out.as_bytes());
    let _ = w.flush();
    let _ = w.shutdown(std::net::Shutdown::Both);
}
