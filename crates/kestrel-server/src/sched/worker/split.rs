//! Split inference in the server (`kestrel serve --split-remote URL --split-layer K`): every
//! generation runs the embedding and layers `0..k` in its slot's session here and layers
//! `k..n` on a split server, which sends back each step's logits; sampling, stop strings and
//! streaming stay here. When the server fails, the sequence's `SplitLink` rebuilds layers
//! `k..n` in the slot's own session and the sequence goes on locally, with nothing the client
//! already received repeated or lost; the response's `kestrel.split` field and the log say so.
//!
//! Each step is kestrel-collab's `split::batch::step`: layers `0..k` of the remote sequences
//! in one batched pass, then their round trips at the same time (the protocol carries one
//! session per message, so the split server runs them one by one). The slot's cache holds only
//! layers `0..k` while split, so nothing in it is reused by a later request.

use super::{Active, Worker};
use crate::error::ApiError;
use crate::sched::decode::Req;
use crate::sched::{Event, GenJob};
use kestrel_collab::split::{self, batch::SplitClient, SplitConfig, SplitLink};
use kestrel_engine::slots::Slot;
use kestrel_engine::Engine;
use std::sync::atomic::Ordering::Relaxed;

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

fn clear(slot: &mut Slot) {
    slot.seq.clear();
    slot.seq.session.reset();
}

impl SplitClient for Req {
    fn link(&mut self) -> &mut Option<SplitLink> {
        &mut self.split
    }

    fn prompt_tokens(&self) -> usize {
        self.job.prompt.len()
    }

    fn report(&mut self, report: serde_json::Value) {
        self.report = Some(report);
    }

    fn failed(&mut self, why: String) {
        let _ = self.job.events.send(Event::Error(ApiError::internal(why)));
    }
}

impl Worker {
    /// One step of every active split sequence (`kestrel_collab::split::batch::step`); the
    /// ended ones close their links and free their slots.
    pub(super) fn step_split(&mut self) {
        let k = self.cfg.split.as_ref().map_or(0, |c| c.k);
        let ended = split::batch::step(&self.engine, &mut self.slots, &mut self.active, k);
        for a in ended {
            self.end_split(a);
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
