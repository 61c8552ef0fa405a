//! The speculative generation loop: the same prompt handling, stop rules and streaming as
//! [`Engine::generate`], with each decode step replaced by draft, verify, accept.

use super::round::{verify_round, Judge, Round};
use super::{Draft, DraftCtx, DraftLength, Drafter, SpecStats};
use crate::decode::primed_sampler;
use crate::output::Output;
use crate::{Engine, GenParams, Generation, Result, Sequence, StopReason};
use kestrel_model::Sampler;
use std::time::Instant;

/// A drafter with its draft-length policy; lives as long as its sequence (a model drafter's
/// cache follows the sequence from one call to the next).
pub struct Speculator {
    pub drafter: Box<dyn Drafter>,
    pub length: DraftLength,
}

impl Speculator {
    /// Drafts of at most `max_draft` tokens, adapted to the acceptance rate when `adaptive`.
    pub fn new(drafter: Box<dyn Drafter>, max_draft: usize, adaptive: bool) -> Speculator {
        Speculator {
            drafter,
            length: DraftLength::new(max_draft, adaptive),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SpecGeneration {
    pub generation: Generation,
    pub stats: SpecStats,
}

impl Engine {
    /// [`Engine::generate`] with speculative decoding: the same tokens as `generate` with the
    /// same settings and seed, greedy or sampled (each is chosen by the sequence's own sampler
    /// from a row bit-identical to the decode step's).
    pub fn generate_speculative(
        &self,
        seq: &mut Sequence,
        prompt: &[u32],
        params: &GenParams,
        spec: &mut Speculator,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<SpecGeneration> {
        let (t0, mut timings) = self.eval_prompt(seq, prompt, params)?;
        let n_ctx = seq.session.n_ctx();

        let mut judge = Judge::new(primed_sampler(&params.sampler, prompt));
        let mut out = Output::new(params, on_text);
        // Emit a token chosen when the cache held `n_past` positions.
        let emit = |out: &mut Output, sampler: &mut Sampler, tok: u32, n_past: usize| {
            let r = out.token(&self.tokenizer, tok, Some(sampler));
            r.or((n_past >= n_ctx).then_some(StopReason::ContextFull))
        };
        let mut stats = SpecStats::default();
        let mut draft = Draft::default();
        let mut history = Vec::new();
        let mut t_first = None;

        // `next` is the chosen token that is neither emitted nor in the cache yet.
        let mut next = if params.max_tokens == 0 {
            None
        } else {
            Some(judge.sampler.sample(seq.session.last_logits()))
        };
        let reason = 'gen: loop {
            let Some(tok) = next else {
                break StopReason::MaxTokens;
            };
            if t_first.is_none() {
                t_first = Some(Instant::now());
                timings.ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
            }
            let base = seq.session.n_past();
            if let Some(r) = emit(&mut out, &mut judge.sampler, tok, base) {
                break r;
            }
            // Room for the token and its draft, and no draft past the token limit.
            let room = n_ctx - base - 1;
            let left = params.max_tokens - out.tokens().len();
            let k = spec.length.next().min(room).min(left.saturating_sub(1));
            history.clear();
            history.extend_from_slice(&seq.tokens);
            history.push(tok);
            if k > 0 {
                let mut cx = DraftCtx { pool: &self.pool };
                spec.drafter.draft(&history, k, &mut cx, &mut draft)?;
                draft.tokens.truncate(k);
            } else {
                draft.clear();
            }
            stats.target_passes += 1;
            stats.drafted += draft.len();
            let mut stopped = None;
            let round = verify_round(
                self,
                seq,
                tok,
                &draft,
                &mut judge,
                &mut |sampler, x, at, _| match emit(&mut out, sampler, x, at) {
                    None => true,
                    Some(r) => {
                        stopped = Some(r);
                        false
                    }
                },
                &mut |_, _| {},
            )?;
            match round {
                Round::Stopped { accepted } => {
                    stats.accepted += accepted;
                    spec.length.update(draft.len(), accepted);
                    break 'gen stopped.unwrap_or(StopReason::Cancelled);
                }
                Round::Next { accepted, next: t } => {
                    stats.accepted += accepted;
                    spec.length.update(draft.len(), accepted);
                    next = Some(t);
                }
            }
        };
        let (text, tokens) = out.finish(reason);
        timings.n_gen = tokens.len();
        if let Some(t1) = t_first {
            timings.gen_ms = t1.elapsed().as_secs_f64() * 1e3;
        }
        Ok(SpecGeneration {
            generation: Generation {
                text,
                tokens,
                stop_reason: reason,
                timings,
            },
            stats,
        })
    }
}
