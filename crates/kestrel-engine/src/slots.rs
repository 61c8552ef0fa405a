//! The slots of a batching front end (the server's scheduler, or an application serving
//! several conversations): one KV cache each, with the tokens it holds so a later prompt that
//! starts the same way (a shared system prompt, an earlier turn) reuses them, the conversation
//! that owns it, if any, and the passes that run them together: new prompts in shared prompt
//! passes ([`crate::prefill_together`]), then one token per active slot per decode step
//! (`Model::forward_multi`). Either way each slot gets what it would alone, bit for bit.

use crate::sequence::{common_prefix, prefill_together, Prefilled, Sequence};
use crate::{Engine, Result};
use kestrel_model::{MultiScratch, Session};

pub struct Slot {
    /// The cache; only its exact tokens are reused (`Sequence::reusable`), so a cached prefix
    /// never changes an answer.
    pub seq: Sequence,
    /// The conversation this cache belongs to.
    pub owner: Option<String>,
    /// Step counter at last use, for least-recently-used eviction.
    pub last_used: u64,
    pub busy: bool,
}

pub struct Slots {
    slots: Vec<Slot>,
    clock: u64,
    multi: MultiScratch,
    /// Hidden states of a batched pass through some layers (`step_stage`).
    hidden: Vec<f32>,
}

impl Slots {
    /// `n` (at least one) empty slots of the engine's context and micro-batch.
    pub fn new(engine: &Engine, n: usize) -> Slots {
        let n = n.max(1);
        Slots {
            slots: (0..n)
                .map(|_| Slot {
                    seq: engine.new_sequence(),
                    owner: None,
                    last_used: 0,
                    busy: false,
                })
                .collect(),
            clock: 0,
            multi: engine.model.new_multi_scratch(n),
            hidden: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether slot `i`'s context has a position for one more token.
    pub fn room(&self, i: usize) -> bool {
        let s = &self.slots[i].seq.session;
        s.n_past() < s.n_ctx()
    }

    pub fn has_free(&self) -> bool {
        self.slots.iter().any(|s| !s.busy)
    }

    /// The slot the conversation `id` owns.
    pub fn owned_by(&self, id: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.owner.as_deref() == Some(id))
    }

    /// Take a free slot for `prompt` (None: all are busy): the one `session` owns if free;
    /// else one no conversation owns (a conversation's cache is evicted only when there is no
    /// other choice) with the longest reusable prefix, then the least recently used. The slot
    /// becomes busy and `session`'s, which no other slot then is.
    pub fn claim(&mut self, prompt: &[u32], session: Option<&str>) -> Option<usize> {
        let own = session.and_then(|id| self.free_owned_by(id));
        let i = own.or_else(|| {
            self.free()
                .max_by_key(|(_, s)| {
                    (
                        s.owner.is_none(),
                        common_prefix(&s.seq.tokens[..s.seq.exact()], prompt),
                        std::cmp::Reverse(s.last_used),
                    )
                })
                .map(|(i, _)| i)
        })?;
        self.give(i, session);
        self.slots[i].busy = true;
        Some(i)
    }

    /// A free slot to restore the saved conversation `id` into (None: all are busy): the one
    /// it owns, else the least valuable. The caller loads the cache and then calls
    /// [`Slots::give`] on success.
    pub fn for_restore(&mut self, id: &str) -> Option<usize> {
        let own = self.free_owned_by(id);
        let i = own.or_else(|| {
            self.free()
                .min_by_key(|(_, s)| (s.owner.is_some(), s.last_used))
                .map(|(i, _)| i)
        })?;
        self.clock += 1;
        for s in self.slots.iter_mut() {
            if s.owner.as_deref() == Some(id) {
                s.owner = None;
            }
        }
        Some(i)
    }

    /// Make slot `i` the cache of conversation `owner` (no other slot's) and mark it used.
    pub fn give(&mut self, i: usize, owner: Option<&str>) {
        self.clock += 1;
        if let Some(id) = owner {
            for s in self.slots.iter_mut() {
                if s.owner.as_deref() == Some(id) {
                    s.owner = None;
                }
            }
        }
        let s = &mut self.slots[i];
        s.owner = owner.map(str::to_string);
        s.last_used = self.clock;
    }

    /// Free slot `i` (its cache stays for later prompts); true if it was busy.
    pub fn release(&mut self, i: usize) -> bool {
        self.clock += 1;
        let s = &mut self.slots[i];
        s.last_used = self.clock;
        std::mem::replace(&mut s.busy, false)
    }

    /// Evaluate `prompts` (slot, prompt) of newly claimed slots, together where they fit
    /// ([`prefill_together`]); `reused` comes back in the order given.
    pub fn prefill(&mut self, engine: &Engine, prompts: &[(usize, &[u32])]) -> Prefilled {
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&j| prompts[j].0);
        let sorted: Vec<&[u32]> = order.iter().map(|&j| prompts[j].1).collect();
        let mut seqs = self.seqs(order.iter().map(|&j| prompts[j].0));
        let mut done = prefill_together(&engine.model, &engine.pool, &mut seqs, &sorted);
        // Back to the caller's order.
        let mut reused: Vec<Option<Result<usize>>> = (0..prompts.len()).map(|_| None).collect();
        for (r, &j) in done.reused.drain(..).zip(&order) {
            reused[j] = Some(r);
        }
        done.reused = reused.into_iter().flatten().collect();
        done
    }

    /// One decode step: `feed` (slot, token) appended to those slots in one batched pass;
    /// each slot's sequence then has the logits after its token.
    pub fn step(&mut self, engine: &Engine, feed: &[(usize, u32)]) -> Result<()> {
        let (mut sessions, tokens) = fed(&mut self.slots, feed);
        engine
            .model
            .forward_multi(&mut sessions, &tokens, &engine.pool, &mut self.multi)?;
        Ok(())
    }

    /// [`Slots::step`] through `layers` only (the device half of a split): returns the
    /// residual stream leaving them, one row per fed slot in slot order, and the fed slots'
    /// positions before the step.
    pub fn step_stage(
        &mut self,
        engine: &Engine,
        feed: &[(usize, u32)],
        layers: std::ops::Range<usize>,
    ) -> Result<(&[f32], Vec<usize>)> {
        let (mut sessions, tokens) = fed(&mut self.slots, feed);
        let pos: Vec<usize> = sessions.iter().map(|s| s.n_past()).collect();
        let (m, pool) = (&engine.model, &engine.pool);
        let h = &mut self.hidden;
        m.forward_multi_stage(&mut sessions, &tokens, pool, &mut self.multi, layers, h)?;
        Ok((&self.hidden, pos))
    }

    /// The sequences of `slots` (ascending), in that order.
    fn seqs(&mut self, slots: impl Iterator<Item = usize>) -> Vec<&mut Sequence> {
        let want: Vec<usize> = slots.collect();
        self.slots
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| want.contains(i))
            .map(|(_, s)| &mut s.seq)
            .collect()
    }

    fn free(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.slots.iter().enumerate().filter(|(_, s)| !s.busy)
    }

    fn free_owned_by(&self, id: &str) -> Option<usize> {
        self.free()
            .find(|(_, s)| s.owner.as_deref() == Some(id))
            .map(|(i, _)| i)
    }
}

impl std::ops::Index<usize> for Slots {
    type Output = Slot;
    fn index(&self, i: usize) -> &Slot {
        &self.slots[i]
    }
}

impl std::ops::IndexMut<usize> for Slots {
    fn index_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.slots[i]
    }
}

/// The fed slots' sessions and tokens, in slot order (a token fed to a sequence is one of
/// its tokens from then on).
fn fed<'a>(slots: &'a mut [Slot], feed: &[(usize, u32)]) -> (Vec<&'a mut Session>, Vec<u32>) {
    let mut sessions = Vec::with_capacity(feed.len());
    let mut tokens = Vec::with_capacity(feed.len());
    for (i, slot) in slots.iter_mut().enumerate() {
        if let Some(&(_, t)) = feed.iter().find(|(s, _)| *s == i) {
            slot.seq.tokens.push(t);
            sessions.push(&mut slot.seq.session);
            tokens.push(t);
        }
    }
    (sessions, tokens)
}
