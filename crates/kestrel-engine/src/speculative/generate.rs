//! The speculative generation loop: the same prompt handling, stop rules and streaming as
//! [`Engine::generate`], with each decode step replaced by draft, verify, accept.

use super::accept::{draw, judge, Verdict};
use super::{Draft, DraftCtx, DraftLength, DraftSampling, Drafter, SpecStats};
use crate::stop::{StopMatcher, StopStep};
use crate::{Engine, GenParams, Generation, Result, Sequence, StopReason};
use kestrel_model::sampler::Rng;
use kestrel_model::{Sampler, SamplerConfig};
use kestrel_tokenizer::StreamDecoder;
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

/// What happened to one emitted token.
enum Emit {
    Go,
    Stop(StopReason),
}

/// The output side of generation: end-of-generation, stop strings, limits and streaming, as in
/// [`Engine::generate`].
struct Output<'a> {
    decoder: StreamDecoder,
    stops: StopMatcher,
    text: String,
    tokens: Vec<u32>,
    on_text: &'a mut dyn FnMut(&str) -> bool,
}

impl Output<'_> {
    /// Emit `tok`, chosen when the cache held `n_past` positions.
    fn emit(
        &mut self,
        e: &Engine,
        sampler: &mut Sampler,
        p: &GenParams,
        tok: u32,
        n_past: usize,
        n_ctx: usize,
    ) -> Emit {
        if e.tokenizer.is_eog(tok) && !p.ignore_eos {
            return Emit::Stop(StopReason::Eos);
        }
        sampler.accept(tok);
        self.tokens.push(tok);
        let piece = self.decoder.push(&e.tokenizer, tok);
        let (emit, stopped) = match self.stops.push(&piece) {
            StopStep::Emit(t) => (t, false),
            StopStep::Stop(t) => (t, true),
        };
        self.text.push_str(&emit);
        if !emit.is_empty() && !(self.on_text)(&emit) {
            return Emit::Stop(StopReason::Cancelled);
        }
        if stopped {
            return Emit::Stop(StopReason::StopString);
        }
        if self.tokens.len() >= p.max_tokens {
            return Emit::Stop(StopReason::MaxTokens);
        }
        if n_past >= n_ctx {
            return Emit::Stop(StopReason::ContextFull);
        }
        Emit::Go
    }
}

impl Engine {
    /// [`Engine::generate`] with speculative decoding. Greedy output is token for token what
    /// `generate` gives; sampled output follows the same distribution (not the same draws).
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

        let greedy = params.sampler.temperature <= 0.0;
        let mut sampler = Sampler::new(params.sampler.clone());
        let window = params.sampler.repeat_last_n.min(prompt.len());
        for &t in &prompt[prompt.len() - window..] {
            sampler.accept(t);
        }
        // The drafter samples from the same settings without the history-dependent penalty
        // (any draft distribution is exact as long as it is the one the token was drawn from).
        let mut sampling = DraftSampling {
            greedy,
            sampler: Sampler::new(SamplerConfig {
                repeat_penalty: 1.0,
                ..params.sampler.clone()
            }),
            rng: Rng::new(params.sampler.seed ^ 0x5eed_d4af),
        };
        let mut rng = Rng::new(params.sampler.seed.wrapping_add(0x9e37_79b9));
        let mut out = Output {
            decoder: StreamDecoder::new(),
            stops: StopMatcher::new(&params.stop),
            text: String::new(),
            tokens: Vec::new(),
            on_text,
        };
        let mut stats = SpecStats::default();
        let mut draft = Draft::default();
        let mut p = Vec::new();
        let mut q_dense = Vec::new();
        let mut history = Vec::new();
        let mut t_first = None;

        // `next` is the chosen token that is neither emitted nor in the cache yet.
        let mut next = if params.max_tokens == 0 {
            None
        } else {
            Some(sampler.sample(seq.session.last_logits()))
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
            if let Emit::Stop(r) = out.emit(self, &mut sampler, params, tok, base, n_ctx) {
                break r;
            }
            // Room for the token and its draft, and no draft past the token limit.
            let room = n_ctx - base - 1;
            let left = params.max_tokens - out.tokens.len();
            let k = spec.length.next().min(room).min(left.saturating_sub(1));
            history.clear();
            history.extend_from_slice(&seq.tokens);
            history.push(tok);
            if k > 0 {
                let mut cx = DraftCtx {
                    pool: &self.pool,
                    sampling: &mut sampling,
                };
                spec.drafter.draft(&history, k, &mut cx, &mut draft)?;
                draft.tokens.truncate(k);
            } else {
                draft.clear();
            }
            history.extend_from_slice(&draft.tokens);
            self.model.forward_verify(
                &mut seq.session,
                &self.pool,
                &history[seq.tokens.len()..],
            )?;
            seq.tokens.extend_from_slice(&history[seq.tokens.len()..]);
            stats.target_passes += 1;
            stats.drafted += draft.len();

            // Judge the draft token by token; each accepted one is emitted at once.
            let mut accepted = 0;
            let mut replacement = None;
            for (i, &x) in draft.tokens.iter().enumerate() {
                sampler.distribution(seq.session.logits(i), &mut p);
                match judge(x, &p, &draft.dists[i], &mut rng, &mut q_dense) {
                    Verdict::Accept => {
                        accepted += 1;
                        stats.accepted += 1;
                        let at = base + 1 + i;
                        if let Emit::Stop(r) = out.emit(self, &mut sampler, params, x, at, n_ctx) {
                            // The cache keeps what was emitted before the stopping token.
                            seq.session.truncate(at);
                            seq.tokens.truncate(at);
                            spec.length.update(draft.len(), accepted);
                            break 'gen r;
                        }
                    }
                    Verdict::Reject(t) => {
                        replacement = Some(t);
                        break;
                    }
                }
            }
            spec.length.update(draft.len(), accepted);
            let keep = base + 1 + accepted;
            seq.session.truncate(keep);
            seq.tokens.truncate(keep);
            next = Some(match replacement {
                Some(t) => t,
                None => {
                    // Every draft token held: the target's own token after them.
                    let row = seq.session.logits(draft.len());
                    if greedy {
                        sampler.sample(row)
                    } else {
                        sampler.distribution(row, &mut p);
                        draw(&p, &mut rng)
                    }
                }
            });
        };
        let mut text = std::mem::take(&mut out.text);
        if !matches!(reason, StopReason::StopString | StopReason::Cancelled) {
            let mut rest = out.decoder.finish();
            rest.push_str(&out.stops.finish());
            if !rest.is_empty() {
                text.push_str(&rest);
                (out.on_text)(&rest);
            }
        }
        timings.n_gen = out.tokens.len();
        if let Some(t1) = t_first {
            timings.gen_ms = t1.elapsed().as_secs_f64() * 1e3;
        }
        Ok(SpecGeneration {
            generation: Generation {
                text,
                tokens: out.tokens,
                stop_reason: reason,
                timings,
            },
            stats,
        })
    }
}
