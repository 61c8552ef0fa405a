//! Several sequences' prompts in one pass (a server admitting requests that arrived
//! together): every weight matrix is read once for all of them, attention stays per sequence,
//! and each sequence ends with what its own prompt pass would have given, bit for bit.
//!
//! Where a weight type has two float orders (Q4_K: llama.cpp's GEMM for a prompt's first
//! `prompt_head(len)` tokens, its GEMV for the last `len % 4`), each prompt's batch-order rows
//! are gathered at the front of the pass and its decode-order rows behind them, so one
//! matmul call (`Arith::PromptHead`) gives every row its own prompt's order.

use crate::error::{ModelError, Result};
use crate::forward::{attention_block, embed_rows, ffn_block, output_head, rope_tables};
use crate::forward::{Ctx, Rows, Segment};
use crate::model::Model;
use crate::session::Session;
use kestrel_kernels::{prompt_head, Arith, ThreadPool};

impl Model {
    /// Append `prompts[i]` to `sessions[i]` for every i in one pass. Afterwards each session's
    /// `last_logits()` are its last prompt token's, as after `forward(s, pool, prompts[i],
    /// prompts[i].len() - 1)` alone. Each prompt must fit one micro-batch of its session, and
    /// all of them together the first session's (whose scratch the pass borrows).
    pub fn forward_prompts(
        &self,
        sessions: &mut [&mut Session],
        prompts: &[&[u32]],
        pool: &ThreadPool,
    ) -> Result<()> {
        self.check_prompts(sessions, prompts)?;
        let total: usize = prompts.iter().map(|p| p.len()).sum();
        let heads: usize = prompts.iter().map(|p| prompt_head(p.len())).sum();
        // Rows: every prompt's head in front, then every prompt's tail.
        let mut at = vec![(0, 0); total];
        let mut tokens = vec![0u32; total];
        let mut segs = Vec::with_capacity(prompts.len());
        let (mut h0, mut t0) = (0, heads);
        for (j, p) in prompts.iter().enumerate() {
            let h = prompt_head(p.len());
            let seg = Segment {
                seq: j,
                pos0: sessions[j].n_past,
                head: h0..h0 + h,
                tail: t0..t0 + p.len() - h,
            };
            for (k, r) in seg.rows().enumerate() {
                at[r] = (j, seg.pos0 + k);
                tokens[r] = p[k];
            }
            (h0, t0) = (seg.head.end, seg.tail.end);
            segs.push(seg);
        }
        let c = Ctx::new(self, pool, Arith::PromptHead(heads));
        let mut sc = std::mem::take(&mut sessions[0].s);
        let mut rows = Rows::Prompts {
            seqs: sessions,
            at: &at,
            segs: &segs,
        };
        embed_rows(&c, &mut sc, &tokens);
        rope_tables(&c, &mut sc, &rows, total);
        for (il, layer) in self.dec.layers.iter().enumerate() {
            attention_block(&c, &mut sc, &mut rows, il, layer, total);
            ffn_block(&c, &mut sc, layer, total);
        }
        // Each prompt's last row, gathered in prompt order, through the head; every column as
        // a lone last token takes it (the decode order).
        let e = self.dec.hp.n_embd;
        for (j, seg) in segs.iter().enumerate() {
            let last = seg.rows().last().expect("prompts are not empty");
            sc.o[j * e..(j + 1) * e].copy_from_slice(&sc.x[last * e..(last + 1) * e]);
        }
        let n = segs.len();
        sc.x[..n * e].copy_from_slice(&sc.o[..n * e]);
        let v = self.dec.hp.n_vocab;
        let mut logits = vec![0.0f32; n * v];
        let head = Ctx::new(self, pool, Arith::Decode);
        output_head(&head, &mut sc, 0, n, &mut logits);
        sessions[0].s = sc;
        for ((s, p), l) in sessions.iter_mut().zip(prompts).zip(logits.chunks_exact(v)) {
            if s.logits.len() < v {
                s.logits.resize(v, 0.0);
            }
            s.logits[..v].copy_from_slice(l);
            s.n_logit_rows = 1;
            s.n_past += p.len();
        }
        Ok(())
    }

    /// A several-prompt pass's arguments: one non-empty prompt per session, valid tokens,
    /// room in each cache, each prompt within its session's micro-batch and all of them
    /// within the first session's.
    fn check_prompts(&self, sessions: &[&mut Session], prompts: &[&[u32]]) -> Result<()> {
        let hp = &self.dec.hp;
        if sessions.is_empty() || sessions.len() != prompts.len() {
            return Err(ModelError::Invalid(format!(
                "forward_prompts: {} prompts for {} sessions",
                prompts.len(),
                sessions.len()
            )));
        }
        let total: usize = prompts.iter().map(|p| p.len()).sum();
        if total > sessions[0].n_batch {
            return Err(ModelError::Invalid(format!(
                "forward_prompts: {total} tokens, the first session's micro-batch holds {}",
                sessions[0].n_batch
            )));
        }
        for (s, p) in sessions.iter().zip(prompts) {
            if p.is_empty() || p.len() > s.n_batch {
                return Err(ModelError::Invalid(format!(
                    "forward_prompts: a prompt of {} tokens (1 to {} fit a micro-batch)",
                    p.len(),
                    s.n_batch
                )));
            }
            if let Some(&t) = p.iter().find(|&&t| t as usize >= hp.n_vocab) {
                return Err(ModelError::BadToken(t, hp.n_vocab));
            }
            if s.n_past + p.len() > s.n_ctx() {
                return Err(ModelError::ContextFull {
                    needed: s.n_past + p.len(),
                    n_ctx: s.n_ctx(),
                });
            }
        }
        Ok(())
    }
}
