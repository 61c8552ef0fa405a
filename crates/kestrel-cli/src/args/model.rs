//! Loading a model: the file, threads, context and micro-batch every model verb takes, and
//! the evaluation chunks of the verbs that score or calibrate over a text.

use crate::models;
use clap::Args;
use kestrel_engine::{Engine, EngineConfig};
use std::path::PathBuf;

/// Options shared by every verb that loads a model.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF model file [default: SmolLM2-135M-Instruct Q4_1, fetched into the cache if missing]
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Threads for the forward pass [default: available cores]
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Context length in tokens [default: min(training context, 4096)]
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// Prompt tokens per forward micro-batch
    #[arg(short = 'b', long = "batch", default_value_t = 512)]
    pub batch: usize,
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<Engine> {
        if let Some(t) = self.threads {
            anyhow::ensure!(
                (1..=1024).contains(&t),
                "--threads must be between 1 and 1024, got {t}"
            );
        }
        let path = models::resolve(self.model.as_deref())?;
        let cfg = EngineConfig {
            // 0 asks the engine for its default.
            n_ctx: self.ctx.unwrap_or(0),
            n_batch: self.batch,
            n_threads: self.threads.unwrap_or_else(kestrel_engine::default_threads),
        };
        Engine::load(&path, &cfg).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))
    }
}

/// Context and threads of the verbs that run a model over a text (perplexity, kld, imatrix,
/// quantize, prune): `-c` is the context length, as in `run`; the text is cut into chunks
/// of that many tokens, each evaluated in a fresh context (llama-perplexity's `-c`).
#[derive(Args, Clone, Copy, Debug)]
pub struct EvalArgs {
    /// Context length in tokens: the text is evaluated in chunks of this many, each in a fresh context
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    pub ctx: usize,
    /// Threads [default: available cores]
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
}

impl EvalArgs {
    /// `model` loaded with a context of one chunk, evaluated one chunk per micro-batch.
    pub fn load(&self, model: Option<PathBuf>) -> anyhow::Result<Engine> {
        ModelArgs {
            model,
            threads: self.threads,
            ctx: Some(self.ctx),
            batch: self.ctx,
        }
        .load()
    }
}

/// What the verbs that score a text (`perplexity`, `kld`) share: the text, its chunks and the
/// output format.
#[derive(Args)]
pub struct ScoreArgs {
    /// Text file to score
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    #[command(flatten)]
    pub eval: EvalArgs,
    /// Score at most this many chunks (0 = all)
    #[arg(long = "chunks", default_value_t = 0)]
    pub chunks: usize,
    /// Print a JSON object
    #[arg(long = "json")]
    pub json: bool,
}

impl ScoreArgs {
    /// The text to score.
    pub fn text(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        std::fs::read_to_string(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))
    }
}
