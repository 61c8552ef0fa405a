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
        let common = self.keep_for(prompt)?;
        let todo = &prompt[common..];
        model.forward(&mut self.session, pool, todo, todo.len() - 1)?;
        self.evaluated(prompt, common);
        Ok(common)
    }

    /// Start evaluating `prompt` a micro-batch at a time ([`ChunkedPrefill`]), reusing what
    /// [`Sequence::reusable`] allows, as [`Sequence::prefill`] does in one call.
    pub fn start_prefill(&mut self, prompt: &[u32]) -> Result<ChunkedPrefill> {
        let common = self.keep_for(prompt)?;
        Ok(ChunkedPrefill { common, at: common })
    }

    /// The first half of a prefill: keep the reusable prefix of `prompt`, drop the rest of the
    /// cache; returns the prefix length.
    fn keep_for(&mut self, prompt: &[u32]) -> Result<usize> {
        if prompt.is_empty() {
            return Err(crate::EngineError::EmptyPrompt);
        }
        let common = self.reusable(prompt);
        self.truncate(common);
        Ok(common)
    }

    /// The second half: `prompt[common..]` went through the model.
    fn evaluated(&mut self, prompt: &[u32], common: usize) {
        let todo = &prompt[common..];
        self.tokens.extend_from_slice(todo);
        self.exact = if todo.len() >= 2 {
            prompt.len()
        } else {
            common
        };
    }
}

/// A prompt evaluated one micro-batch per call (a server interleaves a long prompt with the
/// other sequences' decode steps instead of stalling them): the same micro-batches as
/// [`Sequence::prefill`], so the same cache and last-token logits bit for bit.
#[derive(Clone, Copy, Debug)]
pub struct ChunkedPrefill {
    common: usize,
    /// Prompt tokens in the cache so far.
    at: usize,
}

impl ChunkedPrefill {
    /// Tokens reused from the cache.
    pub fn reused(&self) -> usize {
        self.common
    }

    /// Evaluate the next micro-batch of `prompt` (the one given to `start_prefill`) into
    /// `seq`; true when the whole prompt is in and its last token's logits are current.
    pub fn next(
        &mut self,
        seq: &mut Sequence,
        model: &Model,
        pool: &ThreadPool,
        prompt: &[u32],
    ) -> Result<bool> {
        if self.at >= prompt.len() {
            return Ok(true);
        }
        let end = (self.at + seq.session.n_batch()).min(prompt.len());
        let chunk = &prompt[self.at..end];
        // Logits only for the prompt's last token.
        let from = if end == prompt.len() {
            chunk.len() - 1
        } else {
            chunk.len()
        };
        model.forward(&mut seq.session, pool, chunk, from)?;
        self.at = end;
        if end < prompt.len() {
            // The tokens are part of the cache now, not yet exact (the prompt is unfinished).
            seq.tokens.extend_from_slice(chunk);
            return Ok(false);
        }
        seq.tokens.truncate(self.common);
        seq.evaluated(prompt, self.common);
        Ok(true)
    }
}

/// [`Sequence::prefill`] for several sequences at once (requests admitted together): the same
/// reuse and, bit for bit, the same logits as each alone, with the prompts that fit one
/// micro-batch together sharing passes (`Model::forward_prompts`), as many as fit the first
/// one's micro-batch per pass.
pub fn prefill_together(
    model: &Model,
    pool: &ThreadPool,
    seqs: &mut [&mut Sequence],
    prompts: &[&[u32]],
) -> Prefilled {
    let mut done = Prefilled {
        reused: Vec::new(),
        shared_passes: 0,
        shared_prompts: 0,
    };
    let mut out: Vec<Result<usize>> = Vec::with_capacity(seqs.len());
    // Sequences whose remaining prompt can share a pass.
    let mut shared = Vec::new();
    for (i, (seq, prompt)) in seqs.iter_mut().zip(prompts).enumerate() {
        let r = seq.keep_for(prompt);
        if let Ok(common) = r {
            let todo = prompt.len() - common;
            let s = &seq.session;
            if todo <= s.n_batch() && s.n_past() + todo <= s.n_ctx() {
                shared.push(i);
            }
        }
        out.push(r);
    }
    // Consecutive runs of them that fit a micro-batch (the pass borrows its first session's
    // scratch).
    let cap = seqs.first().map_or(0, |s| s.session.n_batch());
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut rows = 0;
    for &j in &shared {
        let n = prompts[j].len() - seqs[j].tokens.len();
        if groups.is_empty() || rows + n > cap {
            groups.push(Vec::new());
            rows = 0;
        }
        groups.last_mut().expect("pushed above").push(j);
        rows += n;
    }
    for group in &groups {
        if group.len() > 1 && run_group(model, pool, seqs, prompts, group) {
            done.shared_passes += 1;
            done.shared_prompts += group.len();
            for &j in group {
                let common = seqs[j].tokens.len();
                seqs[j].evaluated(prompts[j], common);
            }
        } else {
            for &j in group {
                out[j] = seqs[j].prefill(model, pool, prompts[j]);
            }
        }
    }
    // The rest alone (a prompt longer than a micro-batch, one without room: their errors).
    for (j, r) in out.iter_mut().enumerate() {
        if r.is_ok() && !shared.contains(&j) {
            *r = seqs[j].prefill(model, pool, prompts[j]);
        }
    }
    done.reused = out;
    done
}

/// What [`prefill_together`] did.
#[derive(Debug)]
pub struct Prefilled {
    /// Each sequence's reused prefix length, or its own error.
    pub reused: Vec<Result<usize>>,
    /// Passes that evaluated two or more prompts, and the prompts they held.
    pub shared_passes: usize,
    pub shared_prompts: usize,
}

/// One several-prompt pass over `group`'s remaining prompts (`group` ascending, as the
/// sessions are collected); false if the model refused it (its checks run before anything
/// changes), so each can go alone and get its own error.
fn run_group(
    model: &Model,
    pool: &ThreadPool,
    seqs: &mut [&mut Sequence],
    prompts: &[&[u32]],
    group: &[usize],
) -> bool {
    let todo: Vec<&[u32]> = group
        .iter()
        .map(|&j| &prompts[j][seqs[j].tokens.len()..])
        .collect();
    let mut sessions: Vec<&mut Session> = seqs
        .iter_mut()
        .enumerate()
        .filter(|(j, _)| group.contains(j))
        .map(|(_, s)| &mut s.session)
        .collect();
    model.forward_prompts(&mut sessions, &todo, pool).is_ok()
}
