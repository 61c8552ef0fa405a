//! A `kestrel serve --split-server` child process for the split tests, optionally inside a
//! network namespace; killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct SplitServe {
    pub child: Child,
    /// `HOST:PORT` it listens on.
    pub addr: String,
}

impl SplitServe {
    /// Start on `host` (port 0: a free one), in namespace `netns` when given.
    pub fn start(model: &Path, host: &str, netns: Option<&str>, threads: &str) -> SplitServe {
        let exe = env!("CARGO_BIN_EXE_kestrel");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, exe]);
                c
            }
            None => Command::new(exe),
        };
        let mut child = cmd
            .args(["serve", "-m"])
            .arg(model)
            .args([
                "-t",
                threads,
                "--host",
                host,
                "--port",
                "0",
                "--parallel",
                "2",
            ])
            .args(["--ctx", "512", "--split-server"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning kestrel serve --split-server");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = String::new();
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("kestrel serve --split-server exited before listening:\n{seen}"),
            };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                assert!(
                    line.contains("/split/v1"),
                    "no split route announced: {line}"
                );
                break rest.split_whitespace().next().expect("address").to_string();
            }
            seen.push_str(&line);
            seen.push('\n');
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        SplitServe { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SplitServe {
    fn drop(&mut self) {
        self.kill();
    }
}
