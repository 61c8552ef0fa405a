//! Speculative decoding as a way of stepping a batched sequence (`kestrel serve --draft`
//! while one sequence is active): draft after its next token, verify the token and the draft
//! in one pass, and walk the rows with the sequence's own sampling step ([`Seq::sample`]): a
//! draft token holds when the token the sequence chooses from its row is the draft token, the
//! first it does not choose is fed next. Every token is thus chosen exactly as a plain step
//! chooses it (see `crate::speculative`), and a draft only decides how many rows a pass
//! computes.

use super::strategy::{plain_step, Strategy};
use super::{Client, Failure, Seq};
use crate::slots::Slots;
use crate::speculative::round::{walk, Walk};
use crate::speculative::{Draft, DraftCtx, DraftLength, Drafter};
use crate::{Engine, Result};
use std::sync::Arc;
use std::time::Instant;

/// Makes one drafter per slot (a model drafter keeps a KV cache of its own).
pub type DrafterFactory = Arc<dyn Fn() -> Result<Box<dyn Drafter>> + Send + Sync>;

/// The drafters of a batch's slots, made when first needed.
pub struct Speculate {
    make: DrafterFactory,
    drafters: Vec<Option<Box<dyn Drafter>>>,
    draft: Draft,
}

/// What a speculative step did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecStep {
    /// The sequence goes on.
    pub alive: bool,
    pub drafted: usize,
    pub accepted: usize,
}

impl Speculate {
    pub fn new(make: DrafterFactory, slots: usize) -> Speculate {
        Speculate {
            make,
            drafters: (0..slots).map(|_| None).collect(),
            draft: Draft::default(),
        }
    }

    /// Feed `t` (the sequence's chosen next token) and a draft after it, at most `length`
    /// long (and within the context and the token limit), through one verification pass,
    /// then let `a` choose its tokens from the rows. The cache keeps `t` and the draft tokens
    /// the sequence chose; the first token it chose otherwise is pending (fed next step).
    pub fn step<C: Client>(
        &mut self,
        engine: &Engine,
        slots: &mut Slots,
        a: &mut Seq<C>,
        t: u32,
        length: &mut DraftLength,
    ) -> Result<SpecStep> {
        let seq = &mut slots[a.slot].seq;
        let base = seq.session.n_past();
        let n_ctx = seq.session.n_ctx();
        let k = length
            .next()
            .min(n_ctx.saturating_sub(base + 1))
            .min(a.dec.left().saturating_sub(1));
        let draft = &mut self.draft;
        draft.clear();
        if k > 0 {
            let drafter = match &mut self.drafters[a.slot] {
                Some(d) => d,
                slot => slot.insert((self.make)()?),
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
        // The sequence's own sampling step on every row (it streams what it chooses).
        let tok = &engine.tokenizer;
        let walked = walk(
            &draft.tokens,
            |i| {
                let room = base + 1 + i < n_ctx;
                a.sample(tok, seq.session.logits(i), room)
            },
            |_, _| true,
        );
        let (accepted, alive) = match walked {
            Walk::Ended { accepted } => (accepted, false),
            Walk::Next { accepted, next } => {
                a.pending = Some(next);
                (accepted, true)
            }
        };
        seq.truncate(base + 1 + accepted);
        length.update(draft.len(), accepted);
        Ok(SpecStep {
            alive,
            drafted: draft.len(),
            accepted,
        })
    }
}

/// Speculative decoding as a scheduler strategy (`kestrel serve --draft`): while exactly one
/// sequence is active its step drafts and verifies ([`Speculate::step`]); with several, the
/// plain batched step (a draft would make every other sequence wait for its verification
/// rows). Each sequence's draft length adapts on its own.
pub struct Speculative {
    spec: Speculate,
    max: usize,
    adaptive: bool,
    lengths: Vec<DraftLength>,
}

impl Speculative {
    /// Drafts of at most `max` tokens from `make`'s drafters, for `slots` slots; their length
    /// follows each sequence's acceptance rate when `adaptive`.
    pub fn new(make: DrafterFactory, slots: usize, max: usize, adaptive: bool) -> Speculative {
        Speculative {
            spec: Speculate::new(make, slots),
            max,
            adaptive,
            lengths: vec![DraftLength::new(max, adaptive); slots],
        }
    }
}

impl<C: Client> Strategy<C> for Speculative {
    fn begin(&mut self, slot: usize) {
        self.lengths[slot] = DraftLength::new(self.max, self.adaptive);
    }

    fn step(
        &mut self,
        engine: &Engine,
        slots: &mut Slots,
        active: &mut Vec<Seq<C>>,
        now: Instant,
    ) -> Vec<Seq<C>> {
        if active.len() != 1 {
            return plain_step(engine, slots, active, now);
        }
        let Some(mut a) = active.pop() else {
            return Vec::new();
        };
        let Some(t) = a.advance_in(engine, slots, now) else {
            return vec![a];
        };
        let length = &mut self.lengths[a.slot];
        match self.spec.step(engine, slots, &mut a, t, length) {
            Ok(s) => {
                a.client.drafted(s.drafted, s.accepted);
                if !s.alive {
                    return vec![a];
                }
                active.push(a);
                Vec::new()
            }
            Err(e) => {
                a.client.failed(Failure::Error(e.to_string()));
                vec![a]
            }
        }
    }
}
