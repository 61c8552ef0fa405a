//! Speculative decoding in the server (`kestrel serve --draft ...`): when exactly one sequence
//! is active, its step drafts tokens and verifies them in one pass instead of decoding one
//! (`kestrel_engine::batch::speculate`, the sequence choosing its tokens from the rows with its
//! own sampling step, so every token is chosen exactly as without a draft). With several
//! sequences active the batched step is used as before (a draft would make every other
//! sequence wait for its verification rows).

use super::{Active, Worker};
use crate::error::ApiError;
use crate::sched::Event;
use kestrel_engine::batch::speculate::Speculate;
use kestrel_engine::speculative::DraftLength;
use std::sync::atomic::Ordering::Relaxed;

pub use kestrel_engine::batch::speculate::DrafterFactory;

/// `kestrel serve`'s drafter options.
#[derive(Clone)]
pub struct ServeSpec {
    pub make: DrafterFactory,
    /// Longest draft.
    pub max: usize,
    /// Adapt the draft length to the acceptance rate.
    pub adaptive: bool,
}

impl std::fmt::Debug for ServeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeSpec")
            .field("max", &self.max)
            .field("adaptive", &self.adaptive)
            .finish()
    }
}

/// Per-worker speculation state: the slots' drafters and the draft length's settings.
pub(crate) struct SpecState {
    cfg: ServeSpec,
    spec: Speculate,
}

impl SpecState {
    pub fn new(cfg: ServeSpec, slots: usize) -> SpecState {
        SpecState {
            spec: Speculate::new(cfg.make.clone(), slots),
            cfg,
        }
    }

    pub fn length(&self) -> DraftLength {
        DraftLength::new(self.cfg.max, self.cfg.adaptive)
    }
}

impl Worker {
    /// One speculative step for the only active sequence.
    pub(super) fn spec_step(&mut self, mut a: Active) {
        let now = std::time::Instant::now();
        let Some(t) = a.advance_in(&self.engine, &self.slots, now) else {
            self.release(a.slot);
            return;
        };
        let Some(state) = self.spec.as_mut() else {
            // Not speculating after all: `t` goes through the next step.
            a.pending = Some(t);
            self.active.push(a);
            return;
        };
        let mut length = a.client.length.clone();
        let r = state
            .spec
            .step(&self.engine, &mut self.slots, &mut a, t, &mut length);
        a.client.length = length;
        match r {
            Ok(s) => {
                self.metrics
                    .spec_drafted
                    .fetch_add(s.drafted as u64, Relaxed);
                self.metrics
                    .spec_accepted
                    .fetch_add(s.accepted as u64, Relaxed);
                if s.alive {
                    self.active.push(a);
                } else {
                    self.release(a.slot);
                }
            }
            Err(e) => {
                let _ = a
                    .client
                    .job
                    .events
                    .send(Event::Error(ApiError::internal(e.to_string())));
                self.release(a.slot);
            }
        }
    }
}
