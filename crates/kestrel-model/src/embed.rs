//! Sentence embeddings from a decoder: the final-normed hidden state of every token, averaged
//! over the tokens and scaled to unit length (mean pooling, L2-normalized).

use crate::error::{ModelError, Result};
use crate::forward::{StageInput, StageOutput};
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
        let e = hp.n_embd;
        let mut hidden = Vec::with_capacity(tokens.len() * e);
        let layers = 0..hp.n_layer;
        let out = StageOutput::Hidden(&mut hidden);
        self.forward_stage(s, pool, StageInput::Tokens(tokens), layers, out)?;
        let mut sum = vec![0f64; e];
        let mut row = vec![0f32; e];
        for x in hidden.chunks_exact(e) {
            ops::rms_norm(x, &self.dec.output_norm, hp.norm_eps, &mut row);
            for (a, &x) in sum.iter_mut().zip(&row) {
                *a += x as f64;
            }
        }
        let n = tokens.len() as f64;
        let norm = sum.iter().map(|a| (a / n) * (a / n)).sum::<f64>().sqrt();
        let scale = if norm > 0.0 { 1.0 / (n * norm) } else { 0.0 };
        Ok(sum.iter().map(|a| (a * scale) as f32).collect())
    }
}
