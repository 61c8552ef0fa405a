//! Speculative-decoding options shared by `run` and `bench`.

use anyhow::Context;
use clap::Args;
use kestrel_engine::speculative::{Drafter, ModelDrafter, NgramDrafter, Speculator};
use kestrel_engine::Engine;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Clone, Debug, Default)]
pub struct SpecArgs {
    /// Speculate with this draft model (must share the model's vocabulary)
    #[arg(long = "draft-model", value_name = "FILE")]
    pub draft_model: Option<PathBuf>,
    /// Speculate with the model's own first L layers and its output head (early exit)
    #[arg(long = "draft-exit-layer", value_name = "L")]
    pub draft_exit_layer: Option<usize>,
    /// Speculate with a drafter that needs no model: `ngram` (prompt lookup)
    #[arg(long = "draft", value_name = "KIND", value_parser = ["ngram"])]
    pub draft: Option<String>,
    /// Longest draft, in tokens
    #[arg(long = "draft-max", default_value_t = 6)]
    pub draft_max: usize,
    /// Always draft --draft-max tokens instead of adapting to the acceptance rate
    #[arg(long = "draft-fixed")]
    pub draft_fixed: bool,
}

impl SpecArgs {
    pub fn enabled(&self) -> bool {
        self.draft_model.is_some() || self.draft_exit_layer.is_some() || self.draft.is_some()
    }

    /// The drafter the options name, for sequences of `engine`; `None` without one.
    pub fn speculator(&self, engine: &Engine) -> anyhow::Result<Option<Speculator>> {
        let chosen = [
            self.draft_model.is_some(),
            self.draft_exit_layer.is_some(),
            self.draft.is_some(),
        ];
        anyhow::ensure!(
            chosen.iter().filter(|&&c| c).count() <= 1,
            "choose one drafter: --draft-model, --draft-exit-layer or --draft ngram"
        );
        anyhow::ensure!(
            (1..=64).contains(&self.draft_max),
            "--draft-max must be between 1 and 64, got {}",
            self.draft_max
        );
        let n_ctx = engine.n_ctx();
        let drafter: Box<dyn Drafter> = if let Some(p) = &self.draft_model {
            let gguf = Arc::new(
                kestrel_gguf::GgufFile::open(p)
                    .with_context(|| format!("opening draft model {}", p.display()))?,
            );
            let tok = kestrel_engine::Tokenizer::from_gguf(&gguf)
                .with_context(|| format!("draft model {}", p.display()))?;
            let model = kestrel_model::Model::from_gguf(gguf)
                .with_context(|| format!("loading draft model {}", p.display()))?;
            Box::new(ModelDrafter::draft_model(
                Arc::new(model),
                &tok,
                &engine.tokenizer,
                n_ctx,
            )?)
        } else if let Some(l) = self.draft_exit_layer {
            Box::new(ModelDrafter::early_exit(engine.model.clone(), l, n_ctx)?)
        } else if self.draft.is_some() {
            Box::new(NgramDrafter::default())
        } else {
            return Ok(None);
        };
        Ok(Some(Speculator::new(
            drafter,
            self.draft_max,
            !self.draft_fixed,
        )))
    }

    /// For `kestrel serve`: a maker of the drafter the options name (one per slot; a draft
    /// model is loaded once and shared); `None` without one.
    pub fn serve_spec(&self, engine: &Engine) -> anyhow::Result<Option<kestrel_server::ServeSpec>> {
        // Checks the options (and a draft model's vocabulary) once, up front.
        if self.speculator(engine)?.is_none() {
            return Ok(None);
        }
        let n_ctx = engine.n_ctx();
        let make: kestrel_server::DrafterFactory = if let Some(p) = &self.draft_model {
            let gguf = Arc::new(kestrel_gguf::GgufFile::open(p)?);
            let tok = Arc::new(kestrel_engine::Tokenizer::from_gguf(&gguf)?);
            let model = Arc::new(kestrel_model::Model::from_gguf(gguf)?);
            let target = engine.tokenizer.clone();
            Arc::new(move || {
                Ok(Box::new(ModelDrafter::draft_model(
                    model.clone(),
                    &tok,
                    &target,
                    n_ctx,
                )?) as Box<dyn Drafter>)
            })
        } else if let Some(l) = self.draft_exit_layer {
            let model = engine.model.clone();
            Arc::new(move || {
                Ok(Box::new(ModelDrafter::early_exit(model.clone(), l, n_ctx)?)
                    as Box<dyn Drafter>)
            })
        } else {
            Arc::new(|| Ok(Box::new(NgramDrafter::default()) as Box<dyn Drafter>))
        };
        Ok(Some(kestrel_server::ServeSpec {
            make,
            max: self.draft_max,
            adaptive: !self.draft_fixed,
        }))
    }
}
