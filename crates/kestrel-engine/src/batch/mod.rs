//! Continuous batching without HTTP. A [`Scheduler`] takes requests as they come, gives each
//! a slot of [`Slots`] (reusing a cached prefix), evaluates new prompts together, long ones a
//! micro-batch per step, and steps every active sequence, each a [`Seq`] with the engine's
//! sampling step ([`Decoding`]) and a [`Client`] its output goes to. How a step produces
//! tokens is its [`Strategy`]: [`Plain`] ([`step`]: one token for every sequence, all that
//! continue through one batched pass), [`speculate::Speculative`] (a draft verified in one
//! pass while one sequence is active), or the split device's (kestrel-collab). The server's
//! scheduler and an embedding application run the same loop; each sequence gets exactly what
//! it would alone (`Slots`).

mod scheduler;
pub mod speculate;
mod strategy;

pub use scheduler::{Request, Scheduler, Stats};
pub use strategy::{Plain, Strategy};

use crate::decoding::{Decoding, Next, Sink};
use crate::logprobs::TokenLogprob;
use crate::slots::Slots;
use crate::{Engine, Result, StopReason, Tokenizer};
use std::time::Instant;

/// A request's side of a batched sequence: where its output goes ([`Sink`]), and whether it
/// still wants it.
pub trait Client: Sink {
    /// The receiver is gone: the sequence ends with no more output.
    fn gone(&self) -> bool;
    /// Its time ran out at `now`: the sequence ends at the token limit's reason.
    fn expired(&self, _now: Instant) -> bool {
        false
    }
    /// The sequence ended for `reason` with `generated` tokens (its last text already sent;
    /// not called when the client is gone).
    fn done(&mut self, reason: StopReason, generated: usize);
    /// Its prompt is evaluated ([`Scheduler`]): `reused` of its tokens came from the slot's
    /// cache; `prompt_logprobs` when the request asked for them. False: the client is gone
    /// (the sequence ends).
    fn started(&mut self, _reused: usize, _prompt_logprobs: Option<Vec<TokenLogprob>>) -> bool {
        true
    }
    /// The request ended without finishing ([`Scheduler`]; not called when the client is gone).
    fn failed(&mut self, _why: Failure) {}
    /// A speculative step drafted `drafted` tokens and kept `accepted` of them.
    fn drafted(&mut self, _drafted: usize, _accepted: usize) {}
}

/// Why the scheduler ended a request early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Its time ran out before its first token (while it waited for a slot, or while its
    /// prompt was evaluated).
    Expired(&'static str),
    /// Its prompt or a step failed.
    Error(String),
}

/// One active sequence.
pub struct Seq<C> {
    /// Its slot in the front end's [`Slots`].
    pub slot: usize,
    pub dec: Decoding,
    /// A token already chosen (from a verification pass), fed at the next step.
    pub pending: Option<u32>,
    pub client: C,
}

impl<C: Client> Seq<C> {
    pub fn new(slot: usize, dec: Decoding, client: C) -> Seq<C> {
        Seq {
            slot,
            dec,
            pending: None,
            client,
        }
    }

    /// The token to feed next, after the checks every kind of step makes first: none when
    /// the client is gone or its time ran out (the sequence ends), else the pending token,
    /// else the sampling step on `logits` (`room`: the context has a position for it). None:
    /// the sequence ended.
    pub fn advance(
        &mut self,
        tok: &Tokenizer,
        logits: &[f32],
        room: bool,
        now: Instant,
    ) -> Option<u32> {
        if self.client.gone() {
            return None;
        }
        if self.client.expired(now) {
            let next = self.dec.finish(StopReason::MaxTokens, &mut self.client);
            return self.outcome(next);
        }
        if let Some(t) = self.pending.take() {
            return Some(t);
        }
        self.sample(tok, logits, room)
    }

    /// [`Seq::advance`] on the last logits of its own slot (every step but the split one, whose
    /// logits come from its server).
    pub fn advance_in(&mut self, engine: &Engine, slots: &Slots, now: Instant) -> Option<u32> {
        let logits = slots[self.slot].seq.session.last_logits();
        self.advance(&engine.tokenizer, logits, slots.room(self.slot), now)
    }

    /// The sampling step on `logits`, its output to the client. None: the sequence ended.
    pub fn sample(&mut self, tok: &Tokenizer, logits: &[f32], room: bool) -> Option<u32> {
        let next = self.dec.step(tok, logits, room, &mut self.client);
        self.outcome(next)
    }

    fn outcome(&mut self, next: Next) -> Option<u32> {
        match next {
            Next::Feed(t) => Some(t),
            Next::End(StopReason::Cancelled) => None,
            Next::End(reason) => {
                let n = self.dec.tokens().len();
                self.client.done(reason, n);
                None
            }
        }
    }
}

/// One continuous-batching step over `active`: each sequence advances ([`Seq::advance`] on its
/// slot's last logits); those that continue are fed their token in one batched pass
/// (`Slots::step`). Returns the sequences that ended (the caller frees their slots) and the
/// pass's result (an error leaves the continuing sequences in `active`, unfed).
pub fn step<C: Client>(
    engine: &Engine,
    slots: &mut Slots,
    active: &mut Vec<Seq<C>>,
    now: Instant,
) -> (Vec<Seq<C>>, Result<()>) {
    let mut feed = Vec::with_capacity(active.len());
    let mut ended = Vec::new();
    for mut a in std::mem::take(active) {
        match a.advance_in(engine, slots, now) {
            Some(t) => {
                feed.push((a.slot, t));
                active.push(a);
            }
            None => ended.push(a),
        }
    }
    if feed.is_empty() {
        return (ended, Ok(()));
    }
    (ended, slots.step(engine, &feed))
}
