//! Drafting with a model: a separate small model that shares the target's vocabulary, or the
//! target's own first layers with its output head (self-speculation by early exit). The
//! drafter keeps its own KV cache and, each round, rolls it back to what it shares with the
//! sequence, so rejected draft tokens cost nothing more.

use super::{Draft, DraftCtx, Drafter};
use crate::{EngineError, Result};
use kestrel_model::{Model, Session, StageInput, StageOutput};
use std::sync::Arc;

pub struct ModelDrafter {
    model: Arc<Model>,
    /// Blocks `0..exit` run before the output head (all of them for a draft model).
    exit: usize,
    session: Session,
    /// The tokens in `session`'s cache.
    cached: Vec<u32>,
    name: &'static str,
}

impl ModelDrafter {
    /// A separate draft model. `target_vocab` is the target's tokenizer: the two must give
    /// every id the same text, or the draft would propose tokens the target reads differently.
    pub fn draft_model(
        model: Arc<Model>,
        draft_tokenizer: &kestrel_tokenizer::Tokenizer,
        target_tokenizer: &kestrel_tokenizer::Tokenizer,
        n_ctx: usize,
    ) -> Result<ModelDrafter> {
        check_vocab(draft_tokenizer, target_tokenizer)?;
        let exit = model.hparams().n_layer;
        Ok(ModelDrafter::new(model, exit, n_ctx, "draft-model"))
    }

    /// The target's first `exit` layers and its output head.
    pub fn early_exit(target: Arc<Model>, exit: usize, n_ctx: usize) -> Result<ModelDrafter> {
        let n_layer = target.hparams().n_layer;
        if exit == 0 || exit >= n_layer {
            return Err(EngineError::Invalid(format!(
                "--draft-exit-layer must be between 1 and {} (the model has {n_layer} layers), got {exit}",
                n_layer - 1
            )));
        }
        Ok(ModelDrafter::new(target, exit, n_ctx, "early-exit"))
    }

    fn new(model: Arc<Model>, exit: usize, n_ctx: usize, name: &'static str) -> ModelDrafter {
        // A draft is fed one token at a time after the catch-up batch.
        let session = model.new_session(n_ctx, 64);
        ModelDrafter {
            model,
            exit,
            session,
            cached: Vec::new(),
            name,
        }
    }

    fn feed(&mut self, cx: &DraftCtx, tokens: &[u32]) -> Result<()> {
        let out = StageOutput::Logits {
            from: tokens.len() - 1,
        };
        self.model.forward_stage(
            &mut self.session,
            cx.pool,
            StageInput::Tokens(tokens),
            0..self.exit,
            out,
        )?;
        self.cached.extend_from_slice(tokens);
        Ok(())
    }
}

/// Same size and the same text for every id (special tokens included).
fn check_vocab(
    draft: &kestrel_tokenizer::Tokenizer,
    target: &kestrel_tokenizer::Tokenizer,
) -> Result<()> {
    let (nd, nt) = (draft.vocab_size(), target.vocab_size());
    if nd != nt {
        return Err(EngineError::Invalid(format!(
            "the draft model's vocabulary has {nd} tokens, the target's {nt}: a draft model must share the target's tokenizer"
        )));
    }
    if let Some(id) = (0..nd as u32).find(|&i| draft.token_text(i) != target.token_text(i)) {
        return Err(EngineError::Invalid(format!(
            "the draft model's token {id} is {:?}, the target's {:?}: a draft model must share the target's tokenizer",
            draft.token_text(id).unwrap_or(""),
            target.token_text(id).unwrap_or("")
        )));
    }
    Ok(())
}

impl Drafter for ModelDrafter {
    fn name(&self) -> &'static str {
        self.name
    }

    fn draft(
        &mut self,
        history: &[u32],
        max: usize,
        cx: &mut DraftCtx,
        out: &mut Draft,
    ) -> Result<()> {
        out.clear();
        if history.is_empty() || max == 0 {
            return Ok(());
        }
        // Keep what the cache shares with the sequence; always feed at least one token so
        // there are fresh logits.
        let common = crate::common_prefix(&self.cached, history)
            .min(history.len() - 1)
            .min(self.session.n_past());
        self.session.truncate(common);
        self.cached.truncate(common);
        let n_ctx = self.session.n_ctx();
        if history.len() > n_ctx {
            return Ok(());
        }
        self.feed(cx, &history[common..])?;
        for i in 0..max {
            // The likeliest token: what the target's sampler most often chooses too.
            let tok = kestrel_kernels::ops::argmax(self.session.last_logits()) as u32;
            out.tokens.push(tok);
            if i + 1 == max || self.session.n_past() >= n_ctx {
                break;
            }
            self.feed(cx, &[tok])?;
        }
        Ok(())
    }
}
