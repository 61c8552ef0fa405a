//! Remote verification: the target side of "the device drafts, the server verifies". A
//! [`VerifySession`] holds one sequence's cache and the target's sampling state between
//! requests; each call judges a draft with the same round as local speculation and returns
//! how many draft tokens hold and the target's next token.

use super::round::{verify_round, Judge, Round, Verdict};
use super::Draft;
use crate::{Engine, EngineError, GenParams, Result, Sequence};
use kestrel_model::SamplerConfig;

/// The outcome of one verification call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyStep {
    /// Draft tokens kept, from the first.
    pub accepted: usize,
    /// The target's token after them: the correction of the first rejected draft token, or the
    /// bonus token when all held. It becomes part of the text.
    pub next: u32,
}

/// One remote-verification session: a prompt evaluated once, then drafts judged in turn.
pub struct VerifySession {
    seq: Sequence,
    judge: Judge,
    /// The target's last chosen token, not yet in the cache (None right after the prompt).
    pending: Option<u32>,
}

impl Engine {
    /// Evaluate `prompt` in `seq` and open a verification session sampling with `sampler`
    /// (greedy when its temperature is 0).
    pub fn open_verify(
        &self,
        mut seq: Sequence,
        prompt: &[u32],
        sampler: SamplerConfig,
    ) -> Result<VerifySession> {
        let params = GenParams {
            sampler: sampler.clone(),
            ..Default::default()
        };
        self.eval_prompt(&mut seq, prompt, &params)?;
        Ok(VerifySession {
            seq,
            judge: Judge::new(crate::decode::primed_sampler(&sampler, prompt)),
            pending: None,
        })
    }
}

impl VerifySession {
    /// Tokens of the text so far: prompt, accepted drafts and the target's own tokens.
    pub fn len(&self) -> usize {
        self.seq.tokens.len() + usize::from(self.pending.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cache positions one call with a draft of `n` tokens needs in all.
    pub fn needs(&self, n: usize) -> usize {
        self.seq.session.n_past() + usize::from(self.pending.is_some()) + n
    }

    pub fn n_ctx(&self) -> usize {
        self.seq.session.n_ctx()
    }

    /// Judge `draft` (tokens proposed to follow the text so far) with the session's sampler,
    /// as `generate_speculative` does (see `speculative`'s docs). `observe`
    /// sees every token that joins the text, with the target's logits row it was judged or
    /// chosen from.
    pub fn verify(
        &mut self,
        engine: &Engine,
        draft: &[u32],
        observe: &mut dyn FnMut(u32, &[f32]),
    ) -> Result<VerifyStep> {
        if self.needs(draft.len()) > self.n_ctx() {
            return Err(EngineError::PromptTooLong {
                prompt: self.needs(draft.len()),
                n_ctx: self.n_ctx(),
            });
        }
        let j = &mut self.judge;
        let (tok, rest, first) = match self.pending {
            Some(t) => (t, draft, 0),
            None => {
                // Right after the prompt: the first draft token is judged against the prompt's
                // own logits, as generation samples its first token from them.
                let row = self.seq.session.last_logits();
                let Some(&x) = draft.first() else {
                    let next = j.own_token(row);
                    observe(next, row);
                    j.sampler.accept(next);
                    self.pending = Some(next);
                    return Ok(VerifyStep { accepted: 0, next });
                };
                match j.judge(row, x) {
                    Verdict::Accept => {
                        observe(x, row);
                        j.sampler.accept(x);
                        (x, &draft[1..], 1)
                    }
                    Verdict::Reject(t) => {
                        observe(t, row);
                        j.sampler.accept(t);
                        self.pending = Some(t);
                        return Ok(VerifyStep {
                            accepted: 0,
                            next: t,
                        });
                    }
                }
            }
        };
        let d = Draft {
            tokens: rest.to_vec(),
        };
        // Both callbacks report to `observe`, never at the same time.
        let observe = std::cell::RefCell::new(observe);
        let round = verify_round(
            engine,
            &mut self.seq,
            tok,
            &d,
            j,
            &mut |sampler, x, _, row| {
                (observe.borrow_mut())(x, row);
                sampler.accept(x);
                true
            },
            &mut |t, row| (observe.borrow_mut())(t, row),
        )?;
        let Round::Next { accepted, next } = round else {
            return Err(EngineError::Invalid(
                "verification stopped without a next token".into(),
            ));
        };
        j.sampler.accept(next);
        self.pending = Some(next);
        Ok(VerifyStep {
            accepted: first + accepted,
            next,
        })
    }
}
