//! Split inference in the server (`kestrel serve --split-remote URL --split-layer K`): every
//! generation runs the embedding and layers `0..k` in its slot's session here and layers
//! `k..n` on a split server, which sends back each step's logits; sampling, stop strings and
//! streaming stay here. When the server fails, the sequence's `SplitLink` rebuilds layers
//! `k..n` in the slot's own session and the sequence goes on locally, with nothing the client
//! already received repeated or lost; the response's `kestrel.split` field and the log say so.
//!
//! Each step runs layers `0..k` of the remote sequences in one batched pass
//! (`Model::forward_multi_stage`), then makes their round trips at the same time (the
//! protocol carries one session per message, so the split server runs them one by one). The
//! slot's cache holds only layers `0..k` while split, so nothing in it is reused by a later
//! request.

use super::{Active, Worker};
use crate::error::ApiError;
use crate::sched::{Event, GenJob};
use kestrel_collab::split::{SplitConfig, SplitLink};
use kestrel_engine::slots::Slot;
use kestrel_engine::Engine;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// What a split server cannot do for a request.
pub(super) fn check(job: &GenJob) -> Result<(), ApiError> {
    if job.prompt_logprobs {
        return Err(ApiError::bad_request(
            "prompt logprobs (echo with logprobs) are not available with --split-remote: \
             the split server sends only the last position's logits",
        )
        .param("echo"));
    }
    if job.session_id.is_some() {
        return Err(no_sessions().param("session_id"));
    }
    Ok(())
}

pub(super) fn no_sessions() -> ApiError {
    ApiError::bad_request(
        "sessions are not kept with --split-remote: layers k.. of the KV cache live on the \
         split server and end with each request",
    )
}

/// Open a link for `job` in an emptied slot and run its prompt through it.
pub(super) fn start(
    engine: &Engine,
    slot: &mut Slot,
    job: &GenJob,
    cfg: SplitConfig,
) -> Result<SplitLink, String> {
    clear(slot);
    let (m, pool) = (&engine.model, &engine.pool);
    let session = &mut slot.seq.session;
    let mut link =
        SplitLink::open(m, pool, session, engine.n_batch(), cfg).map_err(|e| e.to_string())?;
    if let Err(e) = link.feed(m, pool, session, &job.prompt) {
        link.close();
        clear(slot);
        return Err(e.to_string());
    }
    Ok(link)
}

/// A local model error (the server's failures are handled in the link).
fn fail(a: &Active, why: String) {
    let _ = a
        .client
        .job
        .events
        .send(Event::Error(ApiError::internal(why)));
}

fn clear(slot: &mut Slot) {
    slot.seq.clear();
    slot.seq.session.reset();
}

impl Worker {
    /// One step of every active split sequence: sample its token here; run layers `0..k`
    /// of all the remote ones in one batched pass; make all their round trips at once (one
    /// thread each), so a step waits for about one round trip however many are active.
    pub(super) fn step_split(&mut self) {
        let (mut fed, mut ended) = self.sample_split();
        self.begin_split(&mut fed, &mut ended);
        let remote: Vec<&mut SplitLink> = fed
            .iter_mut()
            .filter_map(|(a, _)| a.client.split.as_mut().filter(|l| l.is_remote()))
            .collect();
        if remote.len() > 1 {
            std::thread::scope(|sc| {
                for l in remote {
                    sc.spawn(move || l.exchange());
                }
            });
        }
        let (model, pool) = (&self.engine.model, &self.engine.pool);
        for (mut a, _) in fed {
            let session = &mut self.slots[a.slot].seq.session;
            match a
                .client
                .split
                .as_mut()
                .map(|l| l.complete(model, pool, session))
            {
                Some(Err(e)) => {
                    fail(&a, e.to_string());
                    ended.push(a);
                }
                _ => self.active.push(a),
            }
        }
        for a in ended {
            self.end_split(a);
        }
    }

    /// Choose and stream each sequence's next token; returns those to feed, with their
    /// tokens, and those that ended.
    fn sample_split(&mut self) -> (Vec<(Active, u32)>, Vec<Active>) {
        let now = Instant::now();
        let n_layer = self.engine.model.hparams().n_layer;
        let mut fed = Vec::with_capacity(self.active.len());
        let mut ended = Vec::new();
        for mut a in std::mem::take(&mut self.active) {
            // Out of the sequence while its step reads the link's logits (put back below).
            let Some(link) = a.client.split.take() else {
                // Admission gives every sequence a link in split mode.
                ended.push(a);
                continue;
            };
            // Current before any step that may end the sequence (its `Done` carries it).
            a.client.report = Some(link.report(n_layer, a.client.job.prompt.len()));
            let s = &self.slots[a.slot].seq.session;
            let room = s.n_past() < s.n_ctx();
            let next = a.advance(&self.engine.tokenizer, link.last_logits(), room, now);
            a.client.split = Some(link);
            match next {
                Some(t) => fed.push((a, t)),
                None => ended.push(a),
            }
        }
        (fed, ended)
    }

    /// Begin every fed sequence's step: layers `0..k` of the remote ones through one
    /// `forward_multi_stage` (bit-identical to one at a time, so the batch never changes an
    /// answer); a sequence that went local runs its whole step here. Failures move to `ended`.
    fn begin_split(&mut self, fed: &mut Vec<(Active, u32)>, ended: &mut Vec<Active>) {
        let (model, pool) = (&self.engine.model, &self.engine.pool);
        let e = model.hparams().n_embd;
        let k = self.cfg.split.as_ref().map_or(0, |c| c.k);
        let mut failed: Vec<(usize, String)> = Vec::new();
        // (slot, index in `fed`) of the remote sequences, in slot order.
        let mut remote: Vec<(usize, usize)> = Vec::with_capacity(fed.len());
        for (j, (a, t)) in fed.iter_mut().enumerate() {
            let Some(link) = a.client.split.as_mut() else {
                continue;
            };
            if link.is_remote() {
                remote.push((a.slot, j));
            } else if let Err(err) =
                link.begin(model, pool, &mut self.slots[a.slot].seq.session, *t)
            {
                failed.push((j, err.to_string()));
            }
        }
        remote.sort_unstable();
        if !remote.is_empty() {
            let feed: Vec<(usize, u32)> = remote.iter().map(|&(si, j)| (si, fed[j].1)).collect();
            match self.slots.step_stage(&self.engine, &feed, 0..k) {
                Ok((h, pos)) => {
                    for (row, &(_, j)) in remote.iter().enumerate() {
                        let h = &h[row * e..(row + 1) * e];
                        if let Some(Err(err)) = fed[j]
                            .0
                            .client
                            .split
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
            let (a, _) = fed.remove(j);
            fail(&a, why);
            ended.push(a);
        }
    }

    /// Close the server's session, count the sequence and free its slot.
    fn end_split(&mut self, mut a: Active) {
        if let Some(mut link) = a.client.split.take() {
            link.close();
            self.metrics.split_sequences.fetch_add(1, Relaxed);
            if link.stats.fallback.is_some() {
                self.metrics.split_fallbacks.fetch_add(1, Relaxed);
            }
        }
        clear(&mut self.slots[a.slot]);
        self.release(a.slot);
    }
}
