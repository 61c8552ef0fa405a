//! Speculative verification in decode arithmetic: a draft's tokens go through the model in
//! one pass per micro-batch, yet every row computes bit for bit what a one-token decode step
//! computes. Every matmul kernel computes each output with the single-row arithmetic whatever
//! the batch, but a plain multi-token pass attends in the 8-lane batch order (llama.cpp's),
//! whose last bits can flip a near-tie; verified output must equal unspeculated output token
//! for token, so the verifier attends in the one-token lane order.

use crate::error::{ModelError, Result};
use crate::forward::{forward_ubatch, Ctx, StageInput, StageOutput};
use crate::model::Model;
use crate::session::Session;
use kestrel_kernels::{Arith, ThreadPool};

impl Model {
    /// Append `tokens` and keep the logits of every one of them (rows `0..tokens.len()` of
    /// `Session::logits`), each equal to what `forward(s, pool, &[t], 0)` would give after the
    /// tokens before it.
    pub fn forward_verify(&self, s: &mut Session, pool: &ThreadPool, tokens: &[u32]) -> Result<()> {
        let hp = &self.dec.hp;
        if tokens.is_empty() {
            return Err(ModelError::Invalid("forward called with no tokens".into()));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
            return Err(ModelError::BadToken(t, hp.n_vocab));
        }
        let n = tokens.len();
        let needed = s.n_past + n;
        if needed > s.n_ctx() {
            return Err(ModelError::ContextFull {
                needed,
                n_ctx: s.n_ctx(),
            });
        }
        if s.logits.len() < n * hp.n_vocab {
            s.logits.resize(n * hp.n_vocab, 0.0);
        }
        s.n_logit_rows = n;
        let c = Ctx {
            decode_lanes: true,
            ..Ctx::new(self, pool, Arith::Decode)
        };
        let step = s.n_batch.max(1);
        let mut out = StageOutput::Logits { from: 0 };
        let mut start = 0;
        while start < n {
            let end = (start + step).min(n);
            let input = StageInput::Tokens(&tokens[start..end]);
            forward_ubatch(&c, s, input, 0..hp.n_layer, &mut out, start, 0);
            start = end;
        }
        Ok(())
    }
}
