//! A session plus the tokens it holds, and the one prefix-reuse rule every front end applies
//! (`run`, `chat`, speculative decoding and the server's slots): a later prompt keeps the
//! cached tokens it starts with only where a fresh prefill would have computed them bit for
//! bit, so reusing a cache never changes an answer.

use crate::Result;
use kestrel_model::{Model, Session, ThreadPool};

pub struct Sequence {
    pub session: Session,
    pub tokens: Vec<u32>,
    /// Leading tokens whose cache a fresh prefill computes identically: those evaluated in a
    /// prompt pass of two or more tokens after an exact prefix. Generated tokens are fed one
    /// at a time, and one-token attention sums in another order (llama.cpp's), so their cache
    /// differs in the last bits and is not reused.
    exact: usize,
}

/// Tokens shared by the front of `a` and `b`.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Sequence {
    pub fn new(session: Session) -> Sequence {
        Sequence {
            session,
            tokens: Vec::new(),
            exact: 0,
        }
    }

    /// The leading cached tokens a later prompt may reuse (see the field's docs).
    pub fn exact(&self) -> usize {
        self.exact.min(self.tokens.len()).min(self.session.n_past())
    }

    /// Declares the first `n` cached tokens exact (a cache restored from a file that holds
    /// only such tokens).
    pub fn set_exact(&mut self, n: usize) {
        self.exact = n;
    }

    /// How many of `prompt`'s tokens this cache can keep: its exact tokens that `prompt`
    /// starts with, leaving at least two to evaluate (so the last prompt token takes the
    /// batched path, as in a fresh prefill) when the prompt has two.
    pub fn reusable(&self, prompt: &[u32]) -> usize {
        common_prefix(&self.tokens[..self.exact()], prompt).min(prompt.len().saturating_sub(2))
    }

    /// Keep the first `n` tokens and their cache, drop the rest.
    pub fn truncate(&mut self, n: usize) {
        self.session.truncate(n);
        self.tokens.truncate(n);
        self.exact = self.exact.min(n);
    }

    /// Drop everything.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Evaluate `prompt` into the cache (an empty one is an error), reusing what [`Sequence::reusable`]
    /// allows; the logits of its last token are then current. Returns how many tokens were
    /// reused.
    pub fn prefill(&mut self, model: &Model, pool: &ThreadPool, prompt: &[u32]) -> Result<usize> {
        if prompt.is_empty() {
            return Err(crate::EngineError::EmptyPrompt);
        }
        let common = self.reusable(prompt);
        self.truncate(common);
        let todo = &prompt[common..];
        model.forward(&mut self.session, pool, todo, todo.len() - 1)?;
        self.tokens.extend_from_slice(todo);
        self.exact = if todo.len() >= 2 {
            prompt.len()
        } else {
            common
        };
        Ok(common)
    }
}
