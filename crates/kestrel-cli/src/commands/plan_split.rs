//! `kestrel plan-split`: profile (or load) per-layer decode cost on the device and the server,
//! model the time per token for every split layer and wire format over a given network, print
//! the whole curve and the best choice.

use crate::args::ModelArgs;
use crate::models;
use anyhow::Context;
use clap::Args;
use kestrel_collab::split::plan::{self, Link, Profile};
use kestrel_collab::split::ReplyMode;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlanSplitArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Link bandwidth: 100mbit, 1gbit, 500kbit, 12.5MB/s (a bare number is Mbit/s)
    #[arg(long = "bandwidth")]
    bandwidth: String,
    /// Round-trip time in milliseconds
    #[arg(long = "rtt")]
    rtt: f64,
    /// The device's saved profile [default: profile this machine]
    #[arg(long = "device-profile")]
    device_profile: Option<PathBuf>,
    /// The server's saved profile [default: this machine's profile, i.e. an equal server]
    #[arg(long = "server-profile")]
    server_profile: Option<PathBuf>,
    /// Write this machine's profile here (to pass as --device-profile or --server-profile later)
    #[arg(long = "write-profile")]
    write_profile: Option<PathBuf>,
    /// Tokens in the cache while profiling
    #[arg(long = "profile-context", default_value_t = 128)]
    context: usize,
    /// Timed runs per part (the median is kept)
    #[arg(long = "reps", default_value_t = 7)]
    reps: usize,
    /// Model replies of only the N largest logits (0: the whole row)
    #[arg(long = "split-top-k", default_value_t = 0)]
    top_k: u32,
    /// Print JSON instead of a table
    #[arg(long = "json")]
    json: bool,
}

pub fn run(a: PlanSplitArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.rtt >= 0.0 && a.rtt.is_finite(),
        "--rtt must be a non-negative number of ms"
    );
    let bits_per_s = plan::parse_rate(&a.bandwidth)?;
    let engine = a.model.load()?;
    let model = &engine.model;
    let hp = model.hparams().clone();
    let fp = format!("{:016x}", model.gguf.fingerprint());
    let need_local =
        a.device_profile.is_none() || a.server_profile.is_none() || a.write_profile.is_some();
    let here = if need_local {
        anyhow::ensure!(
            a.context + 2 <= engine.n_ctx(),
            "--profile-context must be below --ctx"
        );
        if !a.json {
            eprintln!(
                "profiling {} layers on this machine ({} threads, context {})...",
                hp.n_layer,
                engine.pool.n_threads(),
                a.context
            );
        }
        Some(plan::profile(model, &engine.pool, a.context, a.reps)?)
    } else {
        None
    };
    if let (Some(p), Some(path)) = (&here, &a.write_profile) {
        p.save(path)?;
        if !a.json {
            eprintln!("wrote {}", path.display());
        }
    }
    let load = |p: &Option<PathBuf>| -> anyhow::Result<Profile> {
        match p {
            Some(path) => {
                let pr = Profile::load(path)?;
                anyhow::ensure!(
                    pr.fingerprint == fp && pr.layer_ms.len() == hp.n_layer,
                    "{} was profiled on another model (fingerprint {}, this model {fp})",
                    path.display(),
                    pr.fingerprint
                );
                Ok(pr)
            }
            None => here.clone().context("no local profile"),
        }
    };
    let dev = load(&a.device_profile)?;
    let srv = load(&a.server_profile)?;
    let reply = if a.top_k == 0 {
        ReplyMode::Full
    } else {
        ReplyMode::TopK(a.top_k)
    };
    let link = Link {
        bits_per_s,
        rtt_ms: a.rtt,
    };
    let pts = plan::curve(&dev, &srv, hp.n_embd, hp.n_vocab, reply, link)?;
    let best = pts
        .iter()
        .min_by(|x, y| x.total_ms.total_cmp(&y.total_ms))
        .context("a model needs two layers to split")?;
    let local = dev.local_ms();
    let path = models::resolve(a.model.model.as_deref())?;
    if a.json {
        let v = serde_json::json!({
            "model": path.display().to_string(),
            "bandwidth_bits_per_s": bits_per_s,
            "rtt_ms": a.rtt,
            "device_profile": dev,
            "server_profile": srv,
            "curve": pts,
            "best": best,
            "local_only_ms": local,
            "split_beats_local": best.total_ms < local,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} layers, n_embd {}, n_vocab {}; link {} with {} ms RTT; logits reply {}",
        hp.n_layer,
        hp.n_embd,
        hp.n_vocab,
        rate(bits_per_s),
        a.rtt,
        if a.top_k == 0 {
            "full row".to_string()
        } else {
            format!("top-{}", a.top_k)
        }
    );
    println!(
        "{:>3} {:>4} {:>9} {:>9} {:>10} {:>9} {:>10} {:>9}",
        "k", "wire", "up B", "down B", "device ms", "wire ms", "server ms", "total ms"
    );
    for p in &pts {
        println!(
            "{:>3} {:>4} {:>9} {:>9} {:>10.2} {:>9.2} {:>10.2} {:>9.2}",
            p.k, p.wire, p.up_bytes, p.down_bytes, p.device_ms, p.wire_ms, p.server_ms, p.total_ms
        );
    }
    println!("device alone: {local:.2} ms per token");
    println!(
        "best split: k={} with {} ({:.2} ms per token: device {:.2}, wire {:.2}, server {:.2}){}",
        best.k,
        best.wire,
        best.total_ms,
        best.device_ms,
        best.wire_ms,
        best.server_ms,
        if best.total_ms < local {
            ""
        } else {
            "; running on the device alone is faster"
        }
    );
    Ok(())
}

fn rate(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.2} Gbit/s", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.1} Mbit/s", bps / 1e6)
    } else {
        format!("{:.0} kbit/s", bps / 1e3)
    }
}
