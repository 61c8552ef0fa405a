//! Per-sequence state: the KV cache, preallocated scratch buffers and the last logits.
//! The model is shared and immutable; everything a forward pass writes lives here.

use crate::hparams::Hparams;
use crate::kv::KvCache;

#[derive(Default)]
pub(crate) struct Scratch {
    pub x: Vec<f32>,
    pub h: Vec<f32>,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub att: Vec<f32>,
    pub o: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub q8: Vec<u8>,
    /// Attention scratch per pool thread: scores (n_ctx), the f16 query, lane accumulators.
    pub attn: Vec<f32>,
    /// (rope base, cos/sin table [token][n_rot]) for each distinct base in the model.
    pub rope: Vec<(f32, Vec<f32>)>,
    /// One prompt's queries and attention output, gathered from a several-prompt pass (empty
    /// until one runs).
    pub seg_q: Vec<f32>,
    pub seg_out: Vec<f32>,
}

pub struct Session {
    pub kv: KvCache,
    pub(crate) n_past: usize,
    pub(crate) n_batch: usize,
    pub(crate) s: Scratch,
    pub(crate) logits: Vec<f32>,
    pub(crate) n_logit_rows: usize,
    pub(crate) n_vocab: usize,
}

impl Session {
    pub(crate) fn new(hp: &Hparams, n_ctx: usize, n_batch: usize, bases: &[f32]) -> Session {
        let n_batch = n_batch.clamp(1, n_ctx.max(1));
        let e = hp.n_embd;
        let nb = n_batch;
        Session {
            kv: KvCache::new(hp.n_layer, n_ctx, hp.n_head_kv, hp.head_dim, hp.head_dim_v),
            n_past: 0,
            n_batch,
            s: Scratch {
                x: vec![0.0; nb * e],
                h: vec![0.0; nb * e],
                q: vec![0.0; nb * hp.n_embd_q()],
                k: vec![0.0; nb * hp.n_embd_k()],
                v: vec![0.0; nb * hp.n_embd_v()],
                att: vec![0.0; nb * hp.n_head * hp.head_dim_v],
                o: vec![0.0; nb * e],
                gate: vec![0.0; nb * hp.n_ff],
                up: vec![0.0; nb * hp.n_ff],
                q8: Vec::new(),
                attn: Vec::new(),
                rope: bases
                    .iter()
                    .map(|&b| (b, vec![0.0; nb * hp.n_rot]))
                    .collect(),
                seg_q: Vec::new(),
                seg_out: Vec::new(),
            },
            logits: Vec::new(),
            n_logit_rows: 0,
            n_vocab: hp.n_vocab,
        }
    }

    /// Positions already in the KV cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx
    }

    /// Most tokens one micro-batch of a prompt pass takes.
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Forget everything after `n` positions (the cache keeps the first `n`).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// Forget the whole sequence.
    pub fn reset(&mut self) {
        self.n_past = 0;
        self.n_logit_rows = 0;
    }

    /// Logits rows written by the last forward call.
    pub fn n_logit_rows(&self) -> usize {
        self.n_logit_rows
    }

    /// Row `i` of the logits written by the last forward call.
    pub fn logits(&self, i: usize) -> &[f32] {
        assert!(
            i < self.n_logit_rows,
            "logits row {i} of {}",
            self.n_logit_rows
        );
        &self.logits[i * self.n_vocab..(i + 1) * self.n_vocab]
    }

    /// The last row of logits.
    pub fn last_logits(&self) -> &[f32] {
        self.logits(self.n_logit_rows - 1)
    }
}
