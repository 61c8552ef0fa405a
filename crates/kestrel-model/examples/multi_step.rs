//! Time of one batched decode step (`Model::forward_multi`) against the same number of
//! one-token forwards: how much continuous batching saves per token on this machine.
//!   cargo run --release -p kestrel-model --example multi_step -- MODEL.gguf [THREADS]

use kestrel_kernels::ThreadPool;
use kestrel_model::{Model, Session};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: multi_step MODEL.gguf [THREADS]"))?;
    let threads = args.get(2).map(|t| t.parse()).transpose()?.unwrap_or(2);
    let model = Model::load(path)?;
    let pool = ThreadPool::new(threads);
    let steps = 16;
    for b in [1usize, 2, 4, 8] {
        let mut ss: Vec<Session> = (0..b).map(|_| model.new_session(512, 64)).collect();
        for s in ss.iter_mut() {
            model.forward(s, &pool, &[1, 2, 3, 4, 5, 6, 7, 8], 7)?;
        }
        let mut ms = model.new_multi_scratch(b);
        let toks = vec![42u32; b];
        let t0 = Instant::now();
        for _ in 0..steps {
            let mut refs: Vec<&mut Session> = ss.iter_mut().collect();
            model.forward_multi(&mut refs, &toks, &pool, &mut ms)?;
        }
        let batched = t0.elapsed().as_secs_f64() / steps as f64;
        let t0 = Instant::now();
        for _ in 0..steps {
            for s in ss.iter_mut() {
                model.forward(s, &pool, &[42], 0)?;
            }
        }
        let single = t0.elapsed().as_secs_f64() / steps as f64;
        println!(
            "batch {b}: batched step {:.1} ms ({:.1} tok/s), {b} single steps {:.1} ms ({:.1} tok/s)",
            batched * 1e3,
            b as f64 / batched,
            single * 1e3,
            b as f64 / single
        );
    }
    Ok(())
}
