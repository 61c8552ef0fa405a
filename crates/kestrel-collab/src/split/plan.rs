//! The split planner. A profile holds what one machine spends per decode step on the
//! embedding, on each layer and on the final norm + output head; with a device profile, a
//! server profile, the bandwidth and the round-trip time, the time per generated token at
//! split layer `k` with wire format `w` is modelled as
//!
//! ```text
//! device(k) = embed_dev + sum(layer_dev[0..k])
//! server(k) = sum(layer_srv[k..n]) + head_srv
//! wire(w)   = rtt + 8 * (up(w) + down) / bandwidth
//! total     = device(k) + wire(w) + server(k)
//! ```
//!
//! where `up(w)` is one row of hidden states in `w` plus the step header and HTTP headers and
//! `down` the logits reply. The steps are sequential (the device waits for the logits before it
//! samples the next token), so the times add.

use crate::error::{CollabError, Result};
use crate::split::proto::{ReplyMode, STEP_HEADER_BYTES};
use crate::split::wire::WireFormat;
use kestrel_kernels::ThreadPool;
use kestrel_model::{Model, StageInput, StageOutput};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// HTTP/1.1 request or response headers, about (measured on reqwest + axum: ~150-200 bytes).
pub const HTTP_OVERHEAD_BYTES: usize = 200;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// The model's fingerprint (hex): a profile only applies to the model it was taken on.
    pub fingerprint: String,
    pub threads: usize,
    /// Tokens in the cache while profiling (attention cost grows with it).
    pub context: usize,
    pub embed_ms: f64,
    pub layer_ms: Vec<f64>,
    pub head_ms: f64,
}

impl Profile {
    pub fn load(path: &std::path::Path) -> Result<Profile> {
        let s = std::fs::read_to_string(path)
            .map_err(|e| CollabError::Io(format!("reading {}: {e}", path.display())))?;
        serde_json::from_str(&s)
            .map_err(|e| CollabError::SplitInvalid(format!("profile {}: {e}", path.display())))
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let s = serde_json::to_string_pretty(self).map_err(|e| CollabError::Io(e.to_string()))?;
        std::fs::write(path, s + "\n")
            .map_err(|e| CollabError::Io(format!("writing {}: {e}", path.display())))
    }

    /// Every decode step of the whole model on this machine.
    pub fn local_ms(&self) -> f64 {
        self.embed_ms + self.layer_ms.iter().sum::<f64>() + self.head_ms
    }
}

/// Time one decode step's parts on this machine: the median of `reps` runs at a context of
/// `context` tokens.
pub fn profile(model: &Model, pool: &ThreadPool, context: usize, reps: usize) -> Result<Profile> {
    let hp = model.hparams();
    let (n, nv) = (hp.n_layer, hp.n_vocab as u32);
    let mut s = model.new_session(context + 2, 64);
    let fill: Vec<u32> = (0..context as u32).map(|i| (i * 7919 + 13) % nv).collect();
    if !fill.is_empty() {
        model.forward(&mut s, pool, &fill, fill.len() - 1)?;
    }
    let reps = reps.max(1);
    let mut timed = |input: StageInput, layers: std::ops::Range<usize>, logits: bool| {
        let mut times = Vec::with_capacity(reps);
        let mut out_h = Vec::new();
        for _ in 0..reps {
            out_h.clear();
            s.truncate(context);
            let out = if logits {
                StageOutput::Logits { from: 0 }
            } else {
                StageOutput::Hidden(&mut out_h)
            };
            let t0 = Instant::now();
            model.forward_stage(&mut s, pool, input, layers.clone(), out)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Ok::<_, CollabError>((times[times.len() / 2], out_h))
    };
    let (embed_ms, h) = timed(StageInput::Tokens(&[42 % nv]), 0..0, false)?;
    let mut layer_ms = Vec::with_capacity(n);
    for l in 0..n {
        layer_ms.push(timed(StageInput::Hidden(&h), l..l + 1, false)?.0);
    }
    let head_ms = timed(StageInput::Hidden(&h), n..n, true)?.0;
    Ok(Profile {
        fingerprint: format!("{:016x}", model.gguf.fingerprint()),
        threads: pool.n_threads(),
        context,
        embed_ms,
        layer_ms,
        head_ms,
    })
}

/// A network: bits per second and round-trip time.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub bits_per_s: f64,
    pub rtt_ms: f64,
}

/// Parse a rate such as `100mbit`, `1gbit`, `500kbit`, `12.5MB/s` or `20mbps`; a bare number
/// is Mbit/s.
pub fn parse_rate(s: &str) -> Result<f64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| {
        CollabError::SplitInvalid(format!("bad rate {s:?}: try 100mbit or 12.5MB/s"))
    })?;
    let mult = match unit.trim() {
        "" | "mbit" | "mbps" | "mbit/s" | "m" => 1e6,
        "kbit" | "kbps" | "kbit/s" | "k" => 1e3,
        "gbit" | "gbps" | "gbit/s" | "g" => 1e9,
        "bit" | "bps" | "bit/s" => 1.0,
        "kb/s" => 8e3,
        "mb/s" => 8e6,
        "gb/s" => 8e9,
        u => {
            return Err(CollabError::SplitInvalid(format!(
                "unknown rate unit {u:?} in {s:?} (kbit, mbit, gbit, KB/s, MB/s, GB/s)"
            )))
        }
    };
    if !(v > 0.0) || !v.is_finite() {
        return Err(CollabError::SplitInvalid(format!(
            "rate {s:?} must be positive"
        )));
    }
    Ok(v * mult)
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub k: usize,
    pub wire: &'static str,
    pub up_bytes: usize,
    pub down_bytes: usize,
    pub device_ms: f64,
    pub wire_ms: f64,
    pub server_ms: f64,
    pub total_ms: f64,
}

/// Bytes of one decode step each way.
pub fn step_bytes(
    n_embd: usize,
    n_vocab: usize,
    wire: WireFormat,
    reply: ReplyMode,
) -> (usize, usize) {
    let up = HTTP_OVERHEAD_BYTES + STEP_HEADER_BYTES + wire.row_bytes(n_embd);
    let body = match reply {
        ReplyMode::Full => 4 * n_vocab,
        ReplyMode::TopK(k) => 8 * (k as usize).min(n_vocab),
    };
    (up, HTTP_OVERHEAD_BYTES + 11 + body)
}

/// The modelled time per token for every `k` in `1..n` and every wire format.
pub fn curve(
    dev: &Profile,
    srv: &Profile,
    n_embd: usize,
    n_vocab: usize,
    reply: ReplyMode,
    link: Link,
) -> Result<Vec<Point>> {
    let n = dev.layer_ms.len();
    if srv.layer_ms.len() != n {
        return Err(CollabError::SplitInvalid(format!(
            "device profile has {n} layers, server profile {}",
            srv.layer_ms.len()
        )));
    }
    let mut pts = Vec::new();
    for k in 1..n {
        let device_ms = dev.embed_ms + dev.layer_ms[..k].iter().sum::<f64>();
        let server_ms = srv.layer_ms[k..].iter().sum::<f64>() + srv.head_ms;
        for w in WireFormat::ALL {
            let (up, down) = step_bytes(n_embd, n_vocab, w, reply);
            let wire_ms = link.rtt_ms + 8.0 * (up + down) as f64 / link.bits_per_s * 1e3;
            pts.push(Point {
                k,
                wire: w.as_str(),
                up_bytes: up,
                down_bytes: down,
                device_ms,
                wire_ms,
                server_ms,
                total_ms: device_ms + wire_ms + server_ms,
            });
        }
    }
    Ok(pts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("100mbit").unwrap(), 1e8);
        assert_eq!(parse_rate("12.5MB/s").unwrap(), 1e8);
        assert_eq!(parse_rate("1gbit").unwrap(), 1e9);
        assert_eq!(parse_rate("50").unwrap(), 5e7);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0mbit").is_err());
    }

    #[test]
    fn curve_adds_the_parts() {
        let p = Profile {
            fingerprint: "0".into(),
            threads: 1,
            context: 0,
            embed_ms: 0.5,
            layer_ms: vec![1.0, 2.0, 3.0],
            head_ms: 4.0,
        };
        let link = Link {
            bits_per_s: 8e6, // 1 MB/s: 1 byte per microsecond
            rtt_ms: 10.0,
        };
        let c = curve(&p, &p, 64, 100, ReplyMode::Full, link).unwrap();
        assert_eq!(c.len(), 2 * 3);
        let q = c.iter().find(|p| p.k == 2 && p.wire == "f16").unwrap();
        assert_eq!(q.device_ms, 3.5);
        assert_eq!(q.server_ms, 7.0);
        // f16: a 4-byte row scale and 64 halves.
        let bytes = (200 + 24 + 4 + 128) + (200 + 11 + 400);
        assert!((q.wire_ms - (10.0 + bytes as f64 / 1000.0)).abs() < 1e-9);
        assert!((q.total_ms - (3.5 + 7.0 + q.wire_ms)).abs() < 1e-9);
    }
}
