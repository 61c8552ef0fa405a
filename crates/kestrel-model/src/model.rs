//! A loaded model: the mapped GGUF file and its decoder description. Immutable, shared
//! between sessions (`Arc<Model>`), `Send + Sync`.

use crate::decoder::Decoder;
use crate::error::{ModelError, Result};
use crate::forward::{forward_ubatch, Ctx, StageInput, StageOutput};
use crate::hparams::Hparams;
use crate::observer::MatmulObserver;
use crate::registry;
use crate::repack::{LoadOptions, RepackStats};
use crate::session::Session;
use crate::weights::Loader;
use kestrel_gguf::GgufFile;
use kestrel_kernels::{Arith, Kernels, ThreadPool};
use std::path::Path;
use std::sync::Arc;

pub struct Model {
    pub gguf: Arc<GgufFile>,
    pub dec: Decoder,
    /// What load-time repacking did (all zero when it was off).
    pub repack: RepackStats,
}

impl Model {
    /// Maps and loads a GGUF file with the default [`LoadOptions`].
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::from_gguf(Arc::new(GgufFile::open(path)?))
    }

    pub fn from_gguf(gguf: Arc<GgufFile>) -> Result<Model> {
        Model::from_gguf_with(gguf, LoadOptions::default())
    }

    /// [`Model::from_gguf`] with explicit options. Tools that change tensors in the file's
    /// bytes after loading must not repack (the copies would not see the change).
    pub fn from_gguf_with(gguf: Arc<GgufFile>, opts: LoadOptions) -> Result<Model> {
        // An unknown architecture is named before its hyperparameters are read: they may not
        // follow the keys this crate knows.
        let load = registry::find(gguf.architecture()?)?;
        let hp = Hparams::from_gguf(&gguf)?;
        let mut dec = load(&Loader { g: &gguf }, hp)?;
        let repack = if opts.repack {
            crate::repack::repack_decoder(&gguf, &mut dec)
        } else {
            RepackStats::default()
        };
        Ok(Model { gguf, dec, repack })
    }

    pub fn hparams(&self) -> &Hparams {
        &self.dec.hp
    }

    /// A new sequence with room for `n_ctx` positions, processing prompts in micro-batches of
    /// at most `n_batch` tokens.
    pub fn new_session(&self, n_ctx: usize, n_batch: usize) -> Session {
        let mut bases: Vec<f32> = Vec::new();
        for l in &self.dec.layers {
            if !bases.contains(&l.rope_base) {
                bases.push(l.rope_base);
            }
        }
        Session::new(&self.dec.hp, n_ctx.max(1), n_batch, &bases)
    }

    /// Append `tokens` to the session's sequence. Logits are kept for the tokens at indices
    /// `logits_from..tokens.len()` (read them with `Session::logits`); pass `tokens.len() - 1`
    /// when only the next token matters.
    pub fn forward(
        &self,
        s: &mut Session,
        pool: &ThreadPool,
        tokens: &[u32],
        logits_from: usize,
    ) -> Result<()> {
        self.forward_with(s, pool, kestrel_kernels::kernels(), tokens, logits_from)
    }

    /// [`Model::forward`] with an explicit kernel set (tests run the scalar twins through it).
    pub fn forward_with(
        &self,
        s: &mut Session,
        pool: &ThreadPool,
        k: &Kernels,
        tokens: &[u32],
        logits_from: usize,
    ) -> Result<()> {
        self.forward_impl(s, pool, k, tokens, logits_from, None)
    }

    /// [`Model::forward`] showing every matmul input to `obs` (importance matrices, pruning
    /// statistics).
    pub fn forward_observed(
        &self,
        s: &mut Session,
        pool: &ThreadPool,
        tokens: &[u32],
        logits_from: usize,
        obs: &dyn MatmulObserver,
    ) -> Result<()> {
        let k = kestrel_kernels::kernels();
        self.forward_impl(s, pool, k, tokens, logits_from, Some(obs))
    }

    fn forward_impl(
        &self,
        s: &mut Session,
        pool: &ThreadPool,
        k: &Kernels,
        tokens: &[u32],
        logits_from: usize,
        obs: Option<&dyn MatmulObserver>,
    ) -> Result<()> {
        let layers = 0..self.dec.hp.n_layer;
        let out = StageOutput::Logits { from: logits_from };
        self.stage_impl(s, pool, k, StageInput::Tokens(tokens), layers, out, obs)
    }

    /// Run part of the model: `input` (tokens, or the hidden states a stage before produced)
    /// through the blocks `layers`, ending with hidden states or logits. Only those layers'
    /// KV caches are written; the session advances by the input's length. A split between
    /// two machines runs `0..k` on one and `k..n_layer` on the other; self-speculation runs
    /// the first layers and the output head. Each layer computes exactly what it computes in
    /// [`Model::forward`] for the same micro-batches.
    pub fn forward_stage(
        &self,
        s: &mut Session,
        pool: &ThreadPool,
        input: StageInput,
        layers: std::ops::Range<usize>,
        out: StageOutput,
    ) -> Result<()> {
        let k = kestrel_kernels::kernels();
        self.stage_impl(s, pool, k, input, layers, out, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn stage_impl(
        &self,
        s: &mut Session,
        pool: &ThreadPool,
        k: &Kernels,
        input: StageInput,
        layers: std::ops::Range<usize>,
        mut out: StageOutput,
        obs: Option<&dyn MatmulObserver>,
    ) -> Result<()> {
        let hp = &self.dec.hp;
        let e = hp.n_embd;
        if input.is_empty() {
            return Err(ModelError::Invalid("forward called with no tokens".into()));
        }
        if layers.start > layers.end || layers.end > hp.n_layer {
            return Err(ModelError::Invalid(format!(
                "layers {}..{} of a {}-layer model",
                layers.start, layers.end, hp.n_layer
            )));
        }
        match input {
            StageInput::Tokens(tokens) => {
                if let Some(&t) = tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
                    return Err(ModelError::BadToken(t, hp.n_vocab));
                }
            }
            StageInput::Hidden(h) => {
                if h.len() % e != 0 {
                    return Err(ModelError::Invalid(format!(
                        "{} hidden values are not whole rows of {e}",
                        h.len()
                    )));
                }
            }
        }
        let n = input.len(e);
        let needed = s.n_past + n;
        if needed > s.n_ctx() {
            return Err(ModelError::ContextFull {
                needed,
                n_ctx: s.n_ctx(),
            });
        }
        let logits_from = match out {
            StageOutput::Logits { from } => {
                if from > n {
                    return Err(ModelError::Invalid(format!(
                        "logits_from {from} > {n} tokens"
                    )));
                }
                let rows = n - from;
                if s.logits.len() < rows * hp.n_vocab {
                    s.logits.resize(rows * hp.n_vocab, 0.0);
                }
                s.n_logit_rows = rows;
                from
            }
            StageOutput::Hidden(_) => n,
        };
        let c = Ctx {
            g: &self.gguf,
            d: &self.dec,
            pool,
            k,
            obs,
            decode_lanes: false,
            // One token is a decode step; more are a prompt batch (as llama.cpp's GEMV / GEMM).
            arith: if n == 1 { Arith::Decode } else { Arith::Prompt },
        };
        let mut row = 0;
        let mut start = 0;
        while start < n {
            let end = (start + s.n_batch).min(n);
            let from = logits_from.saturating_sub(start).min(end - start);
            let chunk = input.rows(start, end, e);
            forward_ubatch(&c, s, chunk, layers.clone(), &mut out, row, from);
            row += end - start - from;
            start = end;
        }
        Ok(())
    }
}
