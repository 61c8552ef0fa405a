//! Restoring a session whose KV cache was written from outside (a saved conversation).

use crate::error::{ModelError, Result};
use crate::session::Session;

impl Session {
    /// Declare positions `0..n` of the KV cache valid, after the caller wrote them into `kv`
    /// directly (restoring a saved state). Logits are not restored: evaluate at least one token
    /// before sampling.
    pub fn assume_filled(&mut self, n: usize) -> Result<()> {
        if n > self.n_ctx() {
            return Err(ModelError::ContextFull {
                needed: n,
                n_ctx: self.n_ctx(),
            });
        }
        self.n_past = n;
        self.n_logit_rows = 0;
        Ok(())
    }
}
