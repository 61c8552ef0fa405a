//! How a scheduler step produces tokens: the one loop ([`super::Scheduler`]) admits, evaluates
//! prompts and frees slots; its strategy steps the active sequences. Plain batched decoding is
//! [`Plain`]; speculative decoding ([`super::speculate::Speculative`]) and the split device
//! (kestrel-collab's `split::batch::Split`) are the others.

use super::{step, Client, Failure, Seq};
use crate::slots::Slots;
use crate::Engine;
use std::time::Instant;

pub trait Strategy<C: Client> {
    /// Whether this strategy evaluates each prompt itself ([`Strategy::start`], one at a time
    /// in an emptied slot) instead of the scheduler's shared prompt passes.
    fn starts_prompts(&self) -> bool {
        false
    }
    /// Evaluate `prompt` for `client` in slot `slot` (only when [`Strategy::starts_prompts`]).
    fn start(
        &mut self,
        _engine: &Engine,
        _slots: &mut Slots,
        _slot: usize,
        _prompt: &[u32],
        _client: &mut C,
    ) -> Result<(), String> {
        Ok(())
    }
    /// A sequence begins in slot `slot`, its prompt evaluated.
    fn begin(&mut self, _slot: usize) {}
    /// One step of the `active` sequences; returns those that ended (their clients told:
    /// `Client::done` or `Client::failed`).
    fn step(
        &mut self,
        engine: &Engine,
        slots: &mut Slots,
        active: &mut Vec<Seq<C>>,
        now: Instant,
    ) -> Vec<Seq<C>>;
    /// A sequence ended; called before its slot is freed.
    fn end(&mut self, _slots: &mut Slots, _seq: &mut Seq<C>) {}
}

/// One token for every active sequence per step, all that continue through one batched pass.
pub struct Plain;

impl<C: Client> Strategy<C> for Plain {
    fn step(
        &mut self,
        engine: &Engine,
        slots: &mut Slots,
        active: &mut Vec<Seq<C>>,
        now: Instant,
    ) -> Vec<Seq<C>> {
        plain_step(engine, slots, active, now)
    }
}

/// [`step`], a failed pass ending every sequence it would have fed (cannot happen with checked
/// tokens and room; they end cleanly if it does).
pub(crate) fn plain_step<C: Client>(
    engine: &Engine,
    slots: &mut Slots,
    active: &mut Vec<Seq<C>>,
    now: Instant,
) -> Vec<Seq<C>> {
    let (mut ended, r) = step(engine, slots, active, now);
    if let Err(e) = r {
        for mut a in active.drain(..) {
            a.client.failed(Failure::Error(e.to_string()));
            ended.push(a);
        }
    }
    ended
}
