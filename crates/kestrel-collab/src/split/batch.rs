//! Split inference as a scheduler strategy (the device side of `kestrel serve
//! --split-remote`): each prompt opens a link in an emptied slot and runs through it; every
//! sequence samples its token here from the logits its split server sent; layers `0..k` of all
//! the remote ones run in one batched pass (`Slots::step_stage`, bit-identical to one at a
//! time); all their round trips are made at once (one thread each), so a step waits for about
//! one round trip however many are active. A sequence whose server failed has gone local
//! inside its link and runs its whole step on the device. The slot's cache holds only layers
//! `0..k` while split, so it is emptied when the sequence ends.

use crate::split::{SplitConfig, SplitLink, SplitStats};
use kestrel_engine::batch::{Client, Failure, Seq, Strategy};
use kestrel_engine::slots::{Slot, Slots};
use kestrel_engine::Engine;
use std::time::Instant;

/// What a split sequence's client keeps besides its output.
pub trait SplitClient: Client {
    /// The sequence's link to its split server.
    fn link(&mut self) -> &mut Option<SplitLink>;
    /// Its prompt's length (for the report).
    fn prompt_tokens(&self) -> usize;
    /// Where the layers ran so far (current before any step that may end the sequence, so
    /// its end can carry it).
    fn report(&mut self, report: serde_json::Value);
    /// The link is closed (the sequence ended); what it did.
    fn closed(&mut self, _stats: &SplitStats) {}
}

/// The split device's strategy: layers `k..n` of every sequence on the server of `cfg`.
pub struct Split {
    cfg: SplitConfig,
}

impl Split {
    pub fn new(cfg: SplitConfig) -> Split {
        Split { cfg }
    }
}

impl<C: SplitClient> Strategy<C> for Split {
    fn starts_prompts(&self) -> bool {
        true
    }

    /// Open a link in the emptied slot and run the prompt through it.
    fn start(
        &mut self,
        engine: &Engine,
        slots: &mut Slots,
        slot: usize,
        prompt: &[u32],
        client: &mut C,
    ) -> Result<(), String> {
        let slot = &mut slots[slot];
        clear(slot);
        let (m, pool) = (&engine.model, &engine.pool);
        let session = &mut slot.seq.session;
        let cfg = self.cfg.clone();
        let mut link =
            SplitLink::open(m, pool, session, engine.n_batch(), cfg).map_err(|e| e.to_string())?;
        if let Err(e) = link.feed(m, pool, session, prompt) {
            link.close();
            clear(slot);
            return Err(e.to_string());
        }
        *client.link() = Some(link);
        Ok(())
    }

    fn step(
        &mut self,
        engine: &Engine,
        slots: &mut Slots,
        active: &mut Vec<Seq<C>>,
        now: Instant,
    ) -> Vec<Seq<C>> {
        step(engine, slots, active, self.cfg.k, now)
    }

    /// Close the server's session and empty the slot.
    fn end(&mut self, slots: &mut Slots, a: &mut Seq<C>) {
        if let Some(mut link) = a.client.link().take() {
            link.close();
            a.client.closed(&link.stats);
        }
        clear(&mut slots[a.slot]);
    }
}

fn clear(slot: &mut Slot) {
    slot.seq.clear();
    slot.seq.session.reset();
}

/// One step of every active split sequence in `active`, whose layers `0..k` live in their
/// slots. Returns the sequences that ended (their links still open: [`Split`]'s `end` closes
/// them).
fn step<C: SplitClient>(
    engine: &Engine,
    slots: &mut Slots,
    active: &mut Vec<Seq<C>>,
    k: usize,
    now: Instant,
) -> Vec<Seq<C>> {
    let (mut fed, mut ended) = sample(engine, slots, active, now);
    begin(engine, slots, &mut fed, &mut ended, k);
    let remote: Vec<&mut SplitLink> = fed
        .iter_mut()
        .filter_map(|(a, _)| a.client.link().as_mut().filter(|l| l.is_remote()))
        .collect();
    if remote.len() > 1 {
        std::thread::scope(|sc| {
            for l in remote {
                sc.spawn(move || l.exchange());
            }
        });
    }
    let (model, pool) = (&engine.model, &engine.pool);
    for (mut a, _) in fed {
        let session = &mut slots[a.slot].seq.session;
        match a
            .client
            .link()
            .as_mut()
            .map(|l| l.complete(model, pool, session))
        {
            Some(Err(e)) => {
                a.client.failed(Failure::Error(e.to_string()));
                ended.push(a);
            }
            _ => active.push(a),
        }
    }
    ended
}

type Fed<C> = Vec<(Seq<C>, u32)>;

/// Choose and stream each sequence's next token; returns those to feed, with their tokens,
/// and those that ended.
fn sample<C: SplitClient>(
    engine: &Engine,
    slots: &Slots,
    active: &mut Vec<Seq<C>>,
    now: Instant,
) -> (Fed<C>, Vec<Seq<C>>) {
    let n_layer = engine.model.hparams().n_layer;
    let mut fed = Vec::with_capacity(active.len());
    let mut ended = Vec::new();
    for mut a in std::mem::take(active) {
        // Out of the sequence while its step reads the link's logits (put back below).
        let Some(link) = a.client.link().take() else {
            // Every split sequence has a link.
            ended.push(a);
            continue;
        };
        let report = link.report(n_layer, a.client.prompt_tokens());
        a.client.report(report);
        let room = slots.room(a.slot);
        let next = a.advance(&engine.tokenizer, link.last_logits(), room, now);
        *a.client.link() = Some(link);
        match next {
            Some(t) => fed.push((a, t)),
            None => ended.push(a),
        }
    }
    (fed, ended)
}

/// Begin every fed sequence's step: layers `0..k` of the remote ones through one batched
/// stage pass; a sequence that went local runs its whole step here. Failures move to `ended`.
fn begin<C: SplitClient>(
    engine: &Engine,
    slots: &mut Slots,
    fed: &mut Fed<C>,
    ended: &mut Vec<Seq<C>>,
    k: usize,
) {
    let (model, pool) = (&engine.model, &engine.pool);
    let e = model.hparams().n_embd;
    let mut failed: Vec<(usize, String)> = Vec::new();
    // (slot, index in `fed`) of the remote sequences, in slot order.
    let mut remote: Vec<(usize, usize)> = Vec::with_capacity(fed.len());
    for (j, (a, t)) in fed.iter_mut().enumerate() {
        let slot = a.slot;
        let Some(link) = a.client.link().as_mut() else {
            continue;
        };
        if link.is_remote() {
            remote.push((slot, j));
        } else if let Err(err) = link.begin(model, pool, &mut slots[slot].seq.session, *t) {
            failed.push((j, err.to_string()));
        }
    }
    remote.sort_unstable();
    if !remote.is_empty() {
        let feed: Vec<(usize, u32)> = remote.iter().map(|&(si, j)| (si, fed[j].1)).collect();
        match slots.step_stage(engine, &feed, 0..k) {
            Ok((h, pos)) => {
                for (row, &(_, j)) in remote.iter().enumerate() {
                    let h = &h[row * e..(row + 1) * e];
                    if let Some(Err(err)) = fed[j]
                        .0
                        .client
                        .link()
                        .as_mut()
                        .map(|l| l.begin_hidden(pos[row], h))
                    {
                        failed.push((j, err.to_string()));
                    }
                }
            }
            Err(err) => failed.extend(remote.iter().map(|&(_, j)| (j, err.to_string()))),
        }
    }
    // Highest index first, so each removal leaves the others in place.
    failed.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    for (j, why) in failed {
        let (mut a, _) = fed.remove(j);
        a.client.failed(Failure::Error(why));
        ended.push(a);
    }
}
