//! Checks the sensitivity proxy of `mixed::sensitivity`: for the named tensors of a float
//! model, the KLD measured directly with the tensor alone rounded to each candidate type, next
//! to the value carried from the Q4_0 measurement by the input-weighted rounding error.
//!
//! cargo run --release -p kestrel-compress --example sensitivity_check -- \
//!     MODEL_F32.gguf CALIB.txt TENSOR [TENSOR...]
//! (1 chunk of 128 tokens, as `quantize --target-bpw` uses by default.)

use kestrel_compress::calib;
use kestrel_compress::imatrix::{Collector, Imatrix};
use kestrel_compress::mixed::sensitivity::validate;
use kestrel_engine::{Engine, EngineConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: MODEL_F32.gguf CALIB.txt TENSOR [TENSOR...]"
    );
    let n_ctx = 128;
    let cfg = EngineConfig {
        n_ctx,
        n_batch: n_ctx,
        ..Default::default()
    };
    let engine = Engine::load(&args[0], &cfg)?;
    let text = std::fs::read_to_string(&args[1])?;
    let c = calib::chunks(&engine, &text, n_ctx, 1, "the check")?;
    let col = Collector::default();
    calib::run_observed(&engine, &c, n_ctx - 1, &col, &mut |_, _| {})?;
    let acts = Imatrix::new(col.into_entries(), Vec::new(), 1, n_ctx as u32);
    let names: Vec<&str> = args[2..].iter().map(|s| s.as_str()).collect();
    println!("| tensor | type | measured KLD | predicted from Q4_0 |");
    println!("|---|---|---:|---:|");
    for (name, ty, measured, predicted) in validate(&engine, &c, &acts, None, &names, 0)? {
        println!(
            "| {name} | {} | {measured:.5} | {predicted:.5} |",
            ty.name()
        );
    }
    Ok(())
}
