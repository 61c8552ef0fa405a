//! Speculative decoding in the server (`kestrel serve --draft ...`): when exactly one sequence
//! is active, its step drafts tokens and verifies them in one pass instead of decoding one.
//! With several sequences active the batched step is used as before (a draft would make every
//! other sequence wait for its verification rows).
//!
//! The verified rows are walked with the sequence's own `Decoding` (its sampler, logit biases,
//! logprobs, stop strings): a draft token holds when the token the sequence itself chooses from
//! that row is the draft token. Every token is thus chosen exactly as without a draft (greedy
//! output is identical; sampled output has the same distribution), and a draft only decides
//! how many rows one pass computes.

use super::{Active, Worker};
use crate::error::ApiError;
use crate::sched::Event;
use kestrel_engine::speculative::{Draft, DraftCtx, DraftLength, Drafter};
use kestrel_engine::EngineError;
use std::sync::Arc;

/// Makes one drafter per slot (a model drafter keeps a KV cache of its own).
pub type DrafterFactory = Arc<dyn Fn() -> Result<Box<dyn Drafter>, EngineError> + Send + Sync>;

/// `kestrel serve`'s drafter options.
#[derive(Clone)]
pub struct ServeSpec {
    pub make: DrafterFactory,
    /// Longest draft.
    pub max: usize,
    /// Adapt the draft length to the acceptance rate.
    pub adaptive: bool,
}

impl std::fmt::Debug for ServeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeSpec")
            .field("max", &self.max)
            .field("adaptive", &self.adaptive)
            .finish()
    }
}

/// Per-worker speculation state.
pub(crate) struct SpecState {
    cfg: ServeSpec,
    drafters: Vec<Option<Box<dyn Drafter>>>,
    draft: Draft,
}

impl SpecState {
    pub fn new(cfg: ServeSpec, slots: usize) -> SpecState {
        SpecState {
            cfg,
            drafters: (0..slots).map(|_| None).collect(),
            draft: Draft::default(),
        }
    }

    pub fn length(&self) -> DraftLength {
        DraftLength::new(self.cfg.max, self.cfg.adaptive)
    }
}

impl Worker {
    /// One speculative step for the only active sequence.
    pub(super) fn spec_step(&mut self, mut a: Active) {
        let Some(t) = self.advance(&mut a, std::time::Instant::now()) else {
            self.release(a.slot);
            return;
        };
        match self.verify_draft(&mut a, t) {
            Ok(true) => self.active.push(a),
            Ok(false) => self.release(a.slot),
            Err(e) => {
                let _ = a
                    .client
                    .job
                    .events
                    .send(Event::Error(ApiError::internal(e.to_string())));
                self.release(a.slot);
            }
        }
    }

    /// Draft after `t`, verify `t` and the draft in one pass, and let the sequence choose its
    /// tokens from the rows. Ok(false) when the sequence ended.
    fn verify_draft(&mut self, a: &mut Active, t: u32) -> Result<bool, EngineError> {
        let Some(spec) = self.spec.as_mut() else {
            return Ok(true);
        };
        let engine = &self.engine;
        let seq = &mut self.slots[a.slot].seq;
        let base = seq.session.n_past();
        let n_ctx = seq.session.n_ctx();
        let k = a
            .client
            .length
            .next()
            .min(n_ctx.saturating_sub(base + 1))
            .min(a.dec.left().saturating_sub(1));
        let draft = &mut spec.draft;
        draft.clear();
        if k > 0 {
            let drafter = match &mut spec.drafters[a.slot] {
                Some(d) => d,
                slot => slot.insert((spec.cfg.make)()?),
            };
            let mut history = seq.tokens.clone();
            history.push(t);
            let mut cx = DraftCtx { pool: &engine.pool };
            drafter.draft(&history, k, &mut cx, draft)?;
            draft.tokens.truncate(k);
        }
        let n0 = seq.tokens.len();
        seq.tokens.push(t);
        seq.tokens.extend_from_slice(&draft.tokens);
        engine
            .model
            .forward_verify(&mut seq.session, &engine.pool, &seq.tokens[n0..])?;
        self.metrics
            .spec_drafted
            .fetch_add(draft.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut accepted = 0;
        let mut alive = true;
        for i in 0..=draft.len() {
            let room = base + 1 + i < n_ctx;
            let tok = &engine.tokenizer;
            match a.sample(tok, seq.session.logits(i), room) {
                Some(s) if i < draft.len() && s == draft.tokens[i] => accepted += 1,
                Some(s) => {
                    a.pending = Some(s);
                    break;
                }
                None => {
                    alive = false;
                    break;
                }
            }
        }
        // The cache keeps `t` and the draft tokens the sequence chose itself.
        let keep = base + 1 + accepted;
        seq.truncate(keep);
        a.client.length.update(draft.len(), accepted);
        self.metrics
            .spec_accepted
            .fetch_add(accepted as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(alive)
    }
}
