use crate::args::ModelArgs;
use clap::Args;
use kestrel_kernels::ops;

#[derive(Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt
    #[arg(short = 'p', long = "prompt")]
    prompt: String,
    /// Add BOS/EOS as the model's metadata asks
    #[arg(long = "add-special")]
    add_special: bool,
    /// Turn special-token text into special tokens
    #[arg(long = "parse-special")]
    parse_special: bool,
    /// How many top logits to print per position
    #[arg(long = "top-k", default_value_t = 40)]
    top_k: usize,
    /// Print JSON (the only output format; accepted for symmetry with the other verbs)
    #[arg(long = "json")]
    json: bool,
}

pub fn run(a: LogitsArgs) -> anyhow::Result<()> {
    let engine = a.model.load()?;
    let ids = engine
        .tokenizer
        .encode(&a.prompt, a.add_special, a.parse_special)?;
    if ids.is_empty() {
        anyhow::bail!("the prompt tokenizes to nothing");
    }
    let mut seq = engine.new_sequence();
    if ids.len() > seq.session.n_ctx() {
        anyhow::bail!(
            "prompt is {} tokens; the context holds {}",
            ids.len(),
            seq.session.n_ctx()
        );
    }
    engine
        .model
        .forward(&mut seq.session, &engine.pool, &ids, 0)?;
    let mut positions = Vec::with_capacity(ids.len());
    let mut order: Vec<u32> = Vec::new();
    for pos in 0..ids.len() {
        let row = seq.session.logits(pos);
        let k = a.top_k.min(row.len());
        order.clear();
        order.extend(0..row.len() as u32);
        if k > 0 && k < order.len() {
            order.select_nth_unstable_by(k - 1, |&x, &y| {
                row[y as usize].total_cmp(&row[x as usize])
            });
        }
        order.truncate(k);
        order.sort_by(|&x, &y| row[y as usize].total_cmp(&row[x as usize]));
        let top: Vec<serde_json::Value> = order
            .iter()
            .map(|&i| serde_json::json!([i, row[i as usize]]))
            .collect();
        positions
            .push(serde_json::json!({ "pos": pos, "logsumexp": ops::logsumexp(row), "top": top }));
    }
    println!(
        "{}",
        serde_json::json!({ "ids": ids, "positions": positions })
    );
    Ok(())
}
