//! A `kestrel serve` child for the end-to-end tests: started on a free port with `--ctx 512`,
//! the address read from its log, killed when dropped.

use super::{kestrel_cmd, path_str, THREADS};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    pub fn start(model: &Path, extra: &[&str]) -> Server {
        let mut cmd = kestrel_cmd();
        cmd.args(["serve", "-m", &path_str(model), "-t", THREADS])
            .args(["--ctx", "512", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning kestrel serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = String::new();
        let base = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("kestrel serve exited before listening:\n{seen}"),
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().expect("address").to_string();
            }
            assert!(Instant::now() < deadline, "kestrel serve did not start");
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
