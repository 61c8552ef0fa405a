//! Speculative decoding in the server (`kestrel serve --draft ...`): the engine's
//! `Speculative` strategy, which drafts and verifies when exactly one sequence is active (the
//! sequence choosing its tokens from the rows with its own sampling step, so every token is
//! chosen exactly as without a draft) and steps all of them in one batched pass otherwise (a
//! draft would make every other sequence wait for its verification rows).

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
