//! The calibration loop every data-driven pass shares (importance matrices, GPTQ Hessians,
//! layer similarity, FFN channel importance): the text is tokenized and cut into chunks as
//! llama-perplexity does (`kestrel_engine::eval`), each chunk's first token replaced by BOS
//! where the model uses one.

use crate::{CompressError, Result};
use kestrel_engine::{eval, Engine};
use kestrel_model::MatmulObserver;

/// Calibration chunks of `n_ctx` tokens each.
pub struct Chunks {
    pub n_ctx: usize,
    pub chunks: Vec<Vec<u32>>,
}

/// Up to `max_chunks` chunks (0 = all) of `n_ctx` tokens of `text`. `what` names the pass in
/// the error for a text too short to give one chunk.
pub fn chunks(
    engine: &Engine,
    text: &str,
    n_ctx: usize,
    max_chunks: usize,
    what: &str,
) -> Result<Chunks> {
    let tokens = eval::tokenize_for_perplexity(engine, text)?;
    let available = tokens.len() / n_ctx.max(1);
    if n_ctx < 16 || available == 0 {
        return Err(CompressError::Invalid(format!(
            "calibration text has {} tokens; {what} needs at least one chunk of {n_ctx} (and chunks of at least 16)",
            tokens.len()
        )));
    }
    let n = if max_chunks == 0 {
        available
    } else {
        available.min(max_chunks)
    };
    let bos = engine
        .tokenizer
        .add_bos()
        .then(|| engine.tokenizer.bos())
        .flatten();
    let chunks = (0..n)
        .map(|c| {
            let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
            if let Some(b) = bos {
                chunk[0] = b;
            }
            chunk
        })
        .collect();
    Ok(Chunks { n_ctx, chunks })
}

/// Runs every chunk through the whole model, showing each matmul input to `obs`; logits are
/// computed for the positions `logits_from..` of each chunk (the output head's input is only
/// observed for those). `progress(done, total)` after each chunk.
pub fn run_observed(
    engine: &Engine,
    c: &Chunks,
    logits_from: usize,
    obs: &dyn MatmulObserver,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let mut session = engine.model.new_session(c.n_ctx, c.n_ctx);
    for (i, chunk) in c.chunks.iter().enumerate() {
        session.reset();
        engine
            .model
            .forward_observed(&mut session, &engine.pool, chunk, logits_from, obs)?;
        progress(i + 1, c.chunks.len());
    }
    Ok(())
}
