//! Small output helpers: human-readable sizes and a progress line on stderr.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

pub fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1}K", n as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.2}B", n as f64 / 1e9),
    }
}

/// A one-line progress bar on stderr, redrawn in place when stderr is a terminal, and printed
/// every 10% otherwise (so logs stay short).
pub struct Progress {
    label: String,
    total: usize,
    start: Instant,
    tty: bool,
    last_decile: usize,
}

impl Progress {
    pub fn new(label: &str, total: usize) -> Progress {
        Progress {
            label: label.into(),
            total: total.max(1),
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last_decile: 0,
        }
    }

    /// Changes the total (when it is only known once work starts).
    pub fn set_total(&mut self, total: usize) {
        self.total = total.max(1);
    }

    pub fn update(&mut self, done: usize, note: &str) {
        let frac = done as f64 / self.total as f64;
        let el = self.start.elapsed().as_secs_f64();
        let eta = if done > 0 {
            el / done as f64 * (self.total - done) as f64
        } else {
            0.0
        };
        let width = 30;
        let filled = (frac * width as f64).round() as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let line = format!(
            "{} [{bar}] {done}/{} {note} ({el:.0}s, eta {eta:.0}s)",
            self.label, self.total
        );
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
            if done == self.total {
                let _ = writeln!(err);
            }
        } else {
            let decile = (frac * 10.0) as usize;
            if decile > self.last_decile || done == self.total {
                self.last_decile = decile;
                let _ = writeln!(err, "{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(98_362_432), "93.81 MiB");
        assert_eq!(human_count(134_515_008), "134.5M");
    }
}

/// The process's peak resident memory so far (VmHWM), as JSON (null where the OS does not
/// say), for the reports of the verbs that run a model.
pub fn peak_rss_json() -> serde_json::Value {
    kestrel_engine::bench::peak_rss_bytes().into()
}

/// The same, readable: "peak RSS 312.4 MiB".
pub fn peak_rss_text() -> String {
    match kestrel_engine::bench::peak_rss_bytes() {
        Some(b) => format!("peak RSS {}", human_bytes(b)),
        None => "peak RSS unknown".into(),
    }
}
