//! Split inference in the server (`kestrel serve --split-remote URL --split-layer K`): every
//! generation runs the embedding and layers `0..k` in its slot's session here and layers
//! `k..n` on a split server, which sends back each step's logits; sampling, stop strings and
//! streaming stay here. When the server fails, the sequence's `SplitLink` rebuilds layers
//! `k..n` in the slot's own session and the sequence goes on locally, with nothing the client
//! already received repeated or lost; the response's `kestrel.split` field and the log say so.
//!
//! The engine's scheduler steps them with kestrel-collab's `split::batch::Split` strategy:
//! layers `0..k` of the remote sequences in one batched pass, then their round trips at the
//! same time (the protocol carries one session per message, so the split server runs them one
//! by one). The slot's cache holds only layers `0..k` while split, so nothing in it is reused
//! by a later request. Here: what a split request cannot ask for, and its client's side.

use crate::error::ApiError;
use crate::sched::decode::Req;
use crate::sched::GenJob;
use kestrel_collab::split::batch::SplitClient;
use kestrel_collab::split::{SplitLink, SplitStats};
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

impl SplitClient for Req {
    fn link(&mut self) -> &mut Option<SplitLink> {
        &mut self.split
    }

    fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    fn report(&mut self, report: serde_json::Value) {
        self.report = Some(report);
    }

    fn closed(&mut self, stats: &SplitStats) {
        let m = &self.metrics;
        m.split_sequences.fetch_add(1, Relaxed);
        if stats.fallback.is_some() {
            m.split_fallbacks.fetch_add(1, Relaxed);
        }
    }
}
