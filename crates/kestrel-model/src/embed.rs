//! Sentence embeddings from a decoder: the final-normed hidden state of every token, averaged
//! over the tokens and scaled to unit length (mean pooling, L2-normalized).

use crate::error::{ModelError, Result};
use crate::forward::{forward_ubatch, Ctx};
use crate::model::Model;
use crate::session::Session;
use kestrel_kernels::{ops, ThreadPool};

impl Model {
    /// Embed `tokens` using `s` as working space (it is reset first and holds the tokens after).
    pub fn embed(&self, s: &mut Session, pool: &ThreadPool, tokens: &[u32]) -> Result<Vec<f32>> {
        let hp = &self.dec.hp;
        if tokens.is_empty() {
            return Err(ModelError::Invalid("embed called with no tokens".into()));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
            return Err(ModelError::BadToken(t, hp.n_vocab));
        }
        if tokens.len() > s.n_ctx() {
            return Err(ModelError::ContextFull {
                needed: tokens.len(),
                n_ctx: s.n_ctx(),
            });
        }
        s.reset();
        let c = Ctx {
            g: &self.gguf,
            d: &self.dec,
            pool,
            k: kestrel_kernels::kernels(),
            obs: None,
        };
        let e = hp.n_embd;
        let mut sum = vec![0f64; e];
        let mut row = vec![0f32; e];
        for chunk in tokens.chunks(s.n_batch) {
            // No logit rows: only the hidden states are wanted.
            forward_ubatch(&c, s, chunk, chunk.len(), 0);
            for i in 0..chunk.len() {
                ops::rms_norm(
                    &s.s.x[i * e..(i + 1) * e],
                    &self.dec.output_norm,
                    hp.norm_eps,
                    &mut row,
                );
                for (a, &x) in sum.iter_mut().zip(&row) {
                    *a += x as f64;
                }
            }
        }
        let n = tokens.len() as f64;
        let norm = sum.iter().map(|a| (a / n) * (a / n)).sum::<f64>().sqrt();
        let scale = if norm > 0.0 { 1.0 / (n * norm) } else { 0.0 };
        Ok(sum.iter().map(|a| (a * scale) as f32).collect())
    }
}
