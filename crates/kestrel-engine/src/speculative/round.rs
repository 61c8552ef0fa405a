//! One verification round: the target checks a pending token and the draft that follows it in
//! one pass, keeps the draft tokens its own sampler chooses and ends with its own next token
//! (see the module docs of `speculative`). Shared by local speculation
//! ([`crate::Engine::generate_speculative`]) and remote verification
//! ([`super::VerifySession`]); its row walk ([`walk`]) is also the speculative step of a
//! batched sequence (`crate::batch::speculate`), so every verifier judges drafts one way.

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

/// How a walk over a verification pass's rows ended.
pub(crate) enum Walk {
    /// The sequence ended at row `at` (after `accepted` draft tokens held).
    Ended { accepted: usize },
    /// `accepted` draft tokens held and `next` is the first token chosen that is not one.
    Next { accepted: usize, next: u32 },
}

/// The one acceptance rule, for every verifier (local speculation, a batched sequence's
/// speculative step, remote verification): `choose(i)` is the token the sequence itself
/// chooses from row `i` (None: the sequence ended there), and draft token `i` holds when it is
/// that token; `keep(i, token)` is told of each one that holds and may end the sequence there
/// (false: it ended with that token). The walk stops at the first chosen token that is not
/// the draft's, or after the row that follows the last draft token.
pub(crate) fn walk(
    draft: &[u32],
    mut choose: impl FnMut(usize) -> Option<u32>,
    mut keep: impl FnMut(usize, u32) -> bool,
) -> Walk {
    for i in 0..=draft.len() {
        let Some(t) = choose(i) else {
            return Walk::Ended { accepted: i };
        };
        if i == draft.len() || t != draft[i] {
            return Walk::Next {
                accepted: i,
                next: t,
            };
        }
        if !keep(i, t) {
            return Walk::Ended { accepted: i + 1 };
        }
    }
    unreachable!("the last row ends the walk")
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
    // The sampler draws from every row, as a decode step would.
    let logits = |i: usize| seq.session.logits(i);
    let sampler = std::cell::RefCell::new(&mut j.sampler);
    let walked = walk(
        &draft.tokens,
        |i| Some(sampler.borrow_mut().sample(logits(i))),
        |i, x| on_accept(&mut sampler.borrow_mut(), x, base + 1 + i, logits(i)),
    );
    match walked {
        Walk::Ended { accepted } => {
            seq.truncate(base + accepted);
            Ok(Round::Stopped { accepted })
        }
        Walk::Next { accepted, next } => {
            on_next(next, seq.session.logits(accepted));
            seq.truncate(base + 1 + accepted);
            Ok(Round::Next { accepted, next })
        }
    }
}
