//! The one generation loop of a batching front end (the server's engine thread, or an
//! application serving several conversations): requests are admitted into free slots as they
//! come; each [`Scheduler::step`] evaluates the prompts admitted since the last step (together,
//! in shared passes, each getting what it would alone), takes the next micro-batch of every
//! long prompt, then steps the active sequences with the [`Strategy`].

use super::strategy::Strategy;
use super::{Client, Failure, Seq};
use crate::decoding::Decoding;
use crate::logprobs::prompt_logprobs;
use crate::slots::Slots;
use crate::{ChunkedPrefill, Engine, Prefilled};
use std::time::Instant;

/// A generation request.
pub struct Request<C> {
    pub prompt: Vec<u32>,
    /// The conversation it continues: its slot's cache is kept for it (`Slots::claim`).
    pub session: Option<String>,
    /// Report every prompt token's logprob with this many alternatives (nothing is reused:
    /// every position's logits are needed).
    pub prompt_logprobs: Option<usize>,
    /// Its sampling step, sampler primed with the prompt.
    pub dec: Decoding,
    pub client: C,
}

/// What the scheduler's prompt passes did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Prompt passes shared by several prompts.
    pub shared_passes: u64,
    /// Prompts evaluated in a shared pass.
    pub shared_prompts: u64,
}

pub struct Scheduler<C: Client> {
    slots: Slots,
    strategy: Box<dyn Strategy<C>>,
    /// Evaluate the prompts admitted together in shared passes (else one at a time, for
    /// measurements).
    batch_prompts: bool,
    /// Admitted since the last step, their prompts not yet evaluated.
    claimed: Vec<(usize, Request<C>)>,
    /// Prompts longer than a micro-batch, a micro-batch per step so they do not stall the
    /// running streams.
    prefilling: Vec<(usize, Request<C>, ChunkedPrefill)>,
    active: Vec<Seq<C>>,
    stats: Stats,
}

impl<C: Client> Scheduler<C> {
    /// `n` slots (at least one) stepped by `strategy`.
    pub fn new(engine: &Engine, n: usize, strategy: Box<dyn Strategy<C>>) -> Scheduler<C> {
        Scheduler {
            slots: Slots::new(engine, n),
            strategy,
            batch_prompts: true,
            claimed: Vec::new(),
            prefilling: Vec::new(),
            active: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Evaluate admitted prompts one at a time instead of in shared passes.
    pub fn one_prompt_at_a_time(mut self) -> Self {
        self.batch_prompts = false;
        self
    }

    /// The slots (their caches, owners and use), for saving and restoring conversations.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    pub fn slots_mut(&mut self) -> &mut Slots {
        &mut self.slots
    }

    /// Whether a request admitted now gets a slot.
    pub fn has_free(&self) -> bool {
        self.slots.has_free()
    }

    /// Nothing admitted, evaluating or generating: a step would do nothing.
    pub fn is_idle(&self) -> bool {
        self.claimed.is_empty() && self.prefilling.is_empty() && self.active.is_empty()
    }

    /// Sequences generating.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Give `req` a slot; its prompt is evaluated at the next step with the others admitted
    /// before it. A request whose client is gone is dropped, one whose time ran out fails.
    /// Err: every slot is busy (the request comes back).
    pub fn admit(&mut self, mut req: Request<C>, now: Instant) -> Result<(), Box<Request<C>>> {
        if req.client.gone() {
            return Ok(());
        }
        if req.client.expired(now) {
            let why = "the request's time limit passed while it waited for a slot";
            req.client.failed(Failure::Expired(why));
            return Ok(());
        }
        match self.slots.claim(&req.prompt, req.session.as_deref()) {
            Some(si) => {
                self.claimed.push((si, req));
                Ok(())
            }
            None => Err(Box::new(req)),
        }
    }

    /// One iteration: the admitted prompts, the next micro-batch of each long one, then a step
    /// of every active sequence.
    pub fn step(&mut self, engine: &Engine, now: Instant) {
        self.start_claimed(engine);
        self.prefill_chunks(engine, now);
        if self.active.is_empty() {
            return;
        }
        let ended = self
            .strategy
            .step(engine, &mut self.slots, &mut self.active, now);
        for a in ended {
            self.end(a);
        }
    }

    /// Run every admitted request to its end.
    pub fn run_all(&mut self, engine: &Engine) {
        while !self.is_idle() {
            self.step(engine, Instant::now());
        }
    }

    /// Evaluate the prompts admitted since the last step: those that only need their last
    /// token's logits in shared passes (`Slots::prefill`: each gets what it would alone),
    /// prompt logprobs and the strategy's own prompts one at a time, long ones started in
    /// micro-batches.
    fn start_claimed(&mut self, engine: &Engine) {
        if self.claimed.is_empty() {
            return;
        }
        let own = self.strategy.starts_prompts();
        let apart = |r: &Request<C>| own || r.prompt_logprobs.is_some();
        let mut short = Vec::with_capacity(self.claimed.len());
        for (si, req) in std::mem::take(&mut self.claimed) {
            let seq = &mut self.slots[si].seq;
            let todo = req.prompt.len() - seq.reusable(&req.prompt);
            if apart(&req) || todo <= seq.session.n_batch() {
                short.push((si, req));
                continue;
            }
            match seq.start_prefill(&req.prompt) {
                Ok(c) => self.prefilling.push((si, req, c)),
                Err(e) => self.begin(si, req, Err(e.to_string())),
            }
        }
        let prompts: Vec<(usize, &[u32])> = short
            .iter()
            .filter(|(_, r)| !apart(r))
            .map(|(si, r)| (*si, r.prompt.as_slice()))
            .collect();
        let done = if self.batch_prompts {
            self.slots.prefill(engine, &prompts)
        } else {
            let (m, pool) = (&engine.model, &engine.pool);
            let slots = &mut self.slots;
            Prefilled {
                reused: prompts
                    .iter()
                    .map(|&(si, p)| slots[si].seq.prefill(m, pool, p))
                    .collect(),
                shared_passes: 0,
                shared_prompts: 0,
            }
        };
        self.stats.shared_passes += done.shared_passes as u64;
        self.stats.shared_prompts += done.shared_prompts as u64;
        let mut reused = done.reused.into_iter();
        for (si, mut req) in short {
            let started = if !apart(&req) {
                match reused.next() {
                    Some(r) => r.map(|n| (n, None)).map_err(|e| e.to_string()),
                    None => Err("no result for a prompt".to_string()),
                }
            } else if own {
                let s = &mut self.slots;
                let r = self
                    .strategy
                    .start(engine, s, si, &req.prompt, &mut req.client);
                r.map(|()| (0, None))
            } else {
                let top = req.prompt_logprobs.unwrap_or(0);
                let seq = &mut self.slots[si].seq;
                prompt_logprobs(engine, seq, &req.prompt, top)
                    .map(|lps| (0, Some(lps)))
                    .map_err(|e| e.to_string())
            };
            self.begin(si, req, started);
        }
    }

    /// The next micro-batch of every long prompt being evaluated; a finished one becomes an
    /// active sequence, one whose client left or whose time ran out frees its slot.
    fn prefill_chunks(&mut self, engine: &Engine, now: Instant) {
        for (si, mut req, mut c) in std::mem::take(&mut self.prefilling) {
            if req.client.gone() {
                self.slots.release(si);
                continue;
            }
            if req.client.expired(now) {
                let why = "the request's time limit passed while its prompt was evaluated";
                req.client.failed(Failure::Expired(why));
                self.slots.release(si);
                continue;
            }
            let seq = &mut self.slots[si].seq;
            match c.next(seq, &engine.model, &engine.pool, &req.prompt) {
                Ok(false) => self.prefilling.push((si, req, c)),
                Ok(true) => self.begin(si, req, Ok((c.reused(), None))),
                Err(e) => self.begin(si, req, Err(e.to_string())),
            }
        }
    }

    /// A request whose prompt is evaluated (or failed) becomes an active sequence.
    fn begin(
        &mut self,
        si: usize,
        mut req: Request<C>,
        started: Result<(usize, Option<Vec<crate::logprobs::TokenLogprob>>), String>,
    ) {
        let (reused, lps) = match started {
            Ok(r) => r,
            Err(e) => {
                let seq = &mut self.slots[si].seq;
                seq.clear();
                seq.session.reset();
                self.slots.release(si);
                req.client.failed(Failure::Error(e));
                return;
            }
        };
        let mut a = Seq::new(si, req.dec, req.client);
        if !a.client.started(reused, lps) {
            self.end(a);
            return;
        }
        self.strategy.begin(si);
        self.active.push(a);
    }

    fn end(&mut self, mut a: Seq<C>) {
        self.strategy.end(&mut self.slots, &mut a);
        self.slots.release(a.slot);
    }
}
