//! Speculative decoding: a cheap drafter proposes tokens, the target model checks the whole
//! draft in one verification pass ([`kestrel_model::Model::forward_verify`], bit-identical to
//! decode steps) and keeps the longest prefix that rejection sampling accepts, plus one token
//! of its own. Greedy output equals the target's greedy output token for token; sampled output
//! follows the target's distribution exactly (Leviathan et al. 2023, Chen et al. 2023).

mod accept;
mod adaptive;
mod generate;
mod model_drafter;
mod ngram;

pub use accept::{judge, Verdict};
pub use adaptive::DraftLength;
pub use generate::{SpecGeneration, Speculator};
pub use model_drafter::ModelDrafter;
pub use ngram::NgramDrafter;

use crate::Result;
use kestrel_kernels::ThreadPool;
use kestrel_model::sampler::Rng;
use kestrel_model::Sampler;

/// A drafter's proposal: tokens, and for each the distribution it was drawn from (an empty
/// distribution means the drafter chose it deterministically: probability 1).
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub tokens: Vec<u32>,
    pub dists: Vec<Vec<(u32, f64)>>,
}

impl Draft {
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.dists.clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// How a model drafter picks tokens: greedy (argmax, deterministic), or drawn from `sampler`'s
/// distribution with `rng` (the distribution is recorded for rejection sampling).
pub struct DraftSampling {
    pub greedy: bool,
    pub sampler: Sampler,
    pub rng: Rng,
}

/// What a drafter may use besides the sequence: the engine's threads and its sampling mode.
pub struct DraftCtx<'a> {
    pub pool: &'a ThreadPool,
    pub sampling: &'a mut DraftSampling,
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
