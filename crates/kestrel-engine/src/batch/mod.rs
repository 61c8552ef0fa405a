//! Continuous batching without HTTP: the sequences a front end generates together, each a
//! [`Seq`] in a slot of [`Slots`] with the engine's sampling step ([`Decoding`]) and a
//! [`Client`] its output goes to. [`step`] advances every active sequence by one token and
//! feeds all that continue through one batched pass; [`speculate`] steps one sequence with a
//! draft instead. The server's scheduler runs its plain and speculative steps through them and
//! its split step through [`Seq::advance`]. Each sequence gets exactly what it would alone
//! (`Slots`).

pub mod speculate;

use crate::decoding::{Decoding, Next, Sink};
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
