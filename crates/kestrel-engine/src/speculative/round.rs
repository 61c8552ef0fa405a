//! One verification round: the target checks a pending token and the draft that follows it in
//! one pass, keeps the draft tokens its own sampler chooses and ends with its own next token
//! (see the module docs of `speculative`). Shared by local speculation
//! ([`crate::Engine::generate_speculative`]) and remote verification
//! ([`super::VerifySession`]), so both judge drafts the same way.

use super::Draft;
use crate::{Engine, Result, Sequence};
use kestrel_model::Sampler;

/// What the target's sampler made of one draft token.
pub(crate) enum Verdict {
    /// It chose the draft token.
    Accept,
    /// It chose this other token.
    Reject(u32),
}

/// The target's sampling state during a generation.
pub(crate) struct Judge {
    /// The target's sampler; it has accepted every token emitted so far.
    pub sampler: Sampler,
}

impl Judge {
    pub fn new(sampler: Sampler) -> Judge {
        Judge { sampler }
    }

    /// The target's token from logits `row` when no draft token was judged against it.
    pub fn own_token(&mut self, row: &[f32]) -> u32 {
        self.sampler.sample(row)
    }

    /// Judge draft token `x` against `row`: the token the sampler draws from it, exactly as
    /// a decode step would.
    pub fn judge(&mut self, row: &[f32], x: u32) -> Verdict {
        match self.sampler.sample(row) {
            t if t == x => Verdict::Accept,
            t => Verdict::Reject(t),
        }
    }
}

/// Told of each accepted draft token: the sampler, the token, the cache length at it and its
/// logits row; returns false to stop there.
pub(crate) type OnAccept<'a> = dyn FnMut(&mut Sampler, u32, usize, &[f32]) -> bool + 'a;

/// How a round ended.
pub(crate) enum Round {
    /// `on_accept` asked to stop after the `accepted`-th draft token (that token included).
    Stopped { accepted: usize },
    /// `accepted` draft tokens kept and the target's `next` token chosen (not yet cached).
    Next { accepted: usize, next: u32 },
}

/// Verify `draft` after the pending token `tok` (chosen and accepted by the sampler, not yet
/// in `seq`'s cache). Each accepted draft token goes to `on_accept(sampler, token, n_past at
/// it, its logits row)`, which returns false to stop there (the cache then keeps what came
/// before that token). `on_next` sees the next token with its logits row before it is
/// returned; the sampler has not accepted it yet.
pub(crate) fn verify_round(
    engine: &Engine,
    seq: &mut Sequence,
    tok: u32,
    draft: &Draft,
    j: &mut Judge,
    on_accept: &mut OnAccept,
    on_next: &mut dyn FnMut(u32, &[f32]),
) -> Result<Round> {
    let base = seq.session.n_past();
    let n0 = seq.tokens.len();
    seq.tokens.push(tok);
    seq.tokens.extend_from_slice(&draft.tokens);
    engine
        .model
        .forward_verify(&mut seq.session, &engine.pool, &seq.tokens[n0..])?;
    let mut accepted = 0;
    let mut replacement = None;
    for (i, &x) in draft.tokens.iter().enumerate() {
        match j.judge(seq.session.logits(i), x) {
            Verdict::Accept => {
                accepted += 1;
                let at = base + 1 + i;
                if !on_accept(&mut j.sampler, x, at, seq.session.logits(i)) {
                    seq.truncate(at);
                    return Ok(Round::Stopped { accepted });
                }
            }
            Verdict::Reject(t) => {
                replacement = Some(t);
                break;
            }
        }
    }
    let next = match replacement {
        Some(t) => t,
        // Every draft token held: the target's own token after them.
        None => j.own_token(seq.session.logits(draft.len())),
    };
    on_next(next, seq.session.logits(accepted));
    let keep = base + 1 + accepted;
    seq.truncate(keep);
    Ok(Round::Next { accepted, next })
}
