//! One decode step for several sessions at once: one new token per session, each at its own
//! position and with its own KV cache, sharing every weight matrix multiplication (continuous
//! batching). Norms, projections and the FFN run on the stacked rows; only attention is per
//! session, and it uses the same kernels and lane width as a one-token [`Model::forward`], so
//! with weight formats whose batched dot product equals the single-row one (all but Q4_K and
//! Q6_K, which follow llama.cpp's batch arithmetic at 4+ / 8+ rows) each session's logits are
//! bit-identical to an unbatched step.

use crate::error::{ModelError, Result};
use crate::forward::{attention_block, embed_rows, ffn_block, output_head, rope_tables, Ctx, Rows};
use crate::model::Model;
use crate::session::{Scratch, Session};
use kestrel_kernels::{Arith, ThreadPool};

/// Activation buffers for a batched step over up to `capacity` sessions; reused across steps so
/// a step allocates only a few pointers.
pub struct MultiScratch {
    s: Scratch,
    logits: Vec<f32>,
    capacity: usize,
}

impl MultiScratch {
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Model {
    /// Scratch for [`Model::forward_multi`] over at most `capacity` sessions.
    pub fn new_multi_scratch(&self, capacity: usize) -> MultiScratch {
        let capacity = capacity.max(1);
        // A session's scratch sized for `capacity` tokens is exactly what a step needs.
        let s = self.new_session(capacity, capacity).s;
        MultiScratch {
            s,
            logits: vec![0.0; capacity * self.dec.hp.n_vocab],
            capacity,
        }
    }

    /// Append `tokens[i]` to `sessions[i]` for every i in one pass. Afterwards each session's
    /// `last_logits()` holds its next-token logits, as after `forward(s, pool, &[t], 0)`.
    pub fn forward_multi(
        &self,
        sessions: &mut [&mut Session],
        tokens: &[u32],
        pool: &ThreadPool,
        ms: &mut MultiScratch,
    ) -> Result<()> {
        let c = self.multi_ctx(sessions, tokens, pool, ms)?;
        step(&c, sessions, tokens, ms, 0..self.dec.hp.n_layer, None);
        Ok(())
    }

    /// [`forward_multi`](Self::forward_multi) through `layers` only (the device half of a
    /// split, `0..k`): row i of `hidden` (cleared first) gets the residual stream leaving the
    /// range for `tokens[i]`, as `forward_stage` with `StageOutput::Hidden` gives it.
    pub fn forward_multi_stage(
        &self,
        sessions: &mut [&mut Session],
        tokens: &[u32],
        pool: &ThreadPool,
        ms: &mut MultiScratch,
        layers: std::ops::Range<usize>,
        hidden: &mut Vec<f32>,
    ) -> Result<()> {
        if layers.start > layers.end || layers.end > self.dec.hp.n_layer {
            return Err(ModelError::Invalid(format!(
                "layers {}..{} of a {}-layer model",
                layers.start, layers.end, self.dec.hp.n_layer
            )));
        }
        let c = self.multi_ctx(sessions, tokens, pool, ms)?;
        step(&c, sessions, tokens, ms, layers, Some(hidden));
        Ok(())
    }

    /// Check a batched step's arguments.
    fn multi_ctx<'a>(
        &'a self,
        sessions: &[&mut Session],
        tokens: &[u32],
        pool: &'a ThreadPool,
        ms: &MultiScratch,
    ) -> Result<Ctx<'a>> {
        let hp = &self.dec.hp;
        let n = tokens.len();
        if n == 0 || n != sessions.len() {
            return Err(ModelError::Invalid(format!(
                "forward_multi: {n} tokens for {} sessions",
                sessions.len()
            )));
        }
        if n > ms.capacity {
            return Err(ModelError::Invalid(format!(
                "forward_multi: {n} sessions, scratch holds {}",
                ms.capacity
            )));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
            return Err(ModelError::BadToken(t, hp.n_vocab));
        }
        for s in sessions.iter() {
            if s.n_past + 1 > s.n_ctx() {
                return Err(ModelError::ContextFull {
                    needed: s.n_past + 1,
                    n_ctx: s.n_ctx(),
                });
            }
        }
        Ok(Ctx::new(self, pool, Arith::Decode))
    }
}

/// One batched step through `layers`; then the output head into each session's logits, or,
/// with `hidden`, the residual stream rows into it.
fn step(
    c: &Ctx,
    sessions: &mut [&mut Session],
    tokens: &[u32],
    ms: &mut MultiScratch,
    layers: std::ops::Range<usize>,
    hidden: Option<&mut Vec<f32>>,
) {
    let n = tokens.len();
    let v = c.d.hp.n_vocab;
    let sc = &mut ms.s;
    let pos: Vec<usize> = sessions.iter().map(|s| s.n_past).collect();
    let mut rows = Rows::PerSeq {
        seqs: sessions,
        pos: &pos,
    };
    embed_rows(c, sc, tokens);
    rope_tables(c, sc, &rows, n);
    for il in layers {
        let layer = &c.d.layers[il];
        attention_block(c, sc, &mut rows, il, layer, n);
        ffn_block(c, sc, layer, n);
    }
    if let Some(h) = hidden {
        h.clear();
        h.extend_from_slice(&sc.x[..n * c.d.hp.n_embd]);
        for s in sessions.iter_mut() {
            s.n_past += 1;
        }
        return;
    }
    let out = &mut ms.logits[..n * v];
    output_head(c, sc, 0, n, out);
    for (i, s) in sessions.iter_mut().enumerate() {
        if s.logits.len() < v {
            s.logits.resize(v, 0.0);
        }
        s.logits[..v].copy_from_slice(&out[i * v..(i + 1) * v]);
        s.n_logit_rows = 1;
        s.n_past += 1;
    }
}
