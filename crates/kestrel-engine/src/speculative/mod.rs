//! Speculative decoding: a cheap drafter proposes tokens, the target model checks the whole
//! draft in one verification pass ([`kestrel_model::Model::forward_verify`], bit-identical to
//! decode steps) and walks its rows with the sequence's own sampler: a draft token holds while
//! it is the token the sampler chooses from its row, and the first it does not choose ends
//! the round with the sampler's token. Every token is thus chosen exactly as a plain decode
//! chooses it, so output equals plain decoding with the same seed, greedy or sampled, and a
//! draft only decides how many rows one pass computes. (For the deterministic drafts every
//! drafter here makes, the acceptance rate is p(draft token), the same as rejection sampling's.)
//! `run --draft`, `serve --draft` and remote verification all judge this one way.

mod adaptive;
mod generate;
mod model_drafter;
mod ngram;
pub(crate) mod round;
mod verifier;

pub use adaptive::DraftLength;
pub use generate::{SpecGeneration, Speculator};
pub use model_drafter::ModelDrafter;
pub use ngram::NgramDrafter;
pub use verifier::{VerifySession, VerifyStep};

use crate::Result;
use kestrel_kernels::ThreadPool;

/// A drafter's proposal: the tokens it expects to follow, each its most likely guess.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub tokens: Vec<u32>,
}

impl Draft {
    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// What a drafter may use besides the sequence: the engine's threads.
pub struct DraftCtx<'a> {
    pub pool: &'a ThreadPool,
}

/// Proposes continuations of a sequence.
pub trait Drafter: Send {
    /// Short name for stats and logs ("ngram", "draft-model", "early-exit").
    fn name(&self) -> &'static str;

    /// Propose up to `max` tokens to follow `history` (every token of the sequence so far,
    /// prompt and output) into `out` (cleared first). Fewer, or none, is allowed.
    fn draft(
        &mut self,
        history: &[u32],
        max: usize,
        cx: &mut DraftCtx,
        out: &mut Draft,
    ) -> Result<()>;
}

/// Counts over one generation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecStats {
    /// Draft tokens proposed and accepted by the target.
    pub drafted: usize,
    pub accepted: usize,
    /// Target passes (each verifies one draft, or decodes one token when there was none).
    pub target_passes: usize,
}

impl SpecStats {
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }

    pub fn add(&mut self, o: &SpecStats) {
        self.drafted += o.drafted;
        self.accepted += o.accepted;
        self.target_passes += o.target_passes;
    }
}
