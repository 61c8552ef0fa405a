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
    /// Before loading, read every tensor and refuse the file if a value or block scale is NaN or infinite
    #[arg(long = "check-tensors")]
    pub check_tensors: bool,
    /// Jinja chat template to use instead of the model file's (llama.cpp's --chat-template-file)
    #[arg(long = "chat-template-file", value_name = "FILE")]
    pub chat_template_file: Option<PathBuf>,
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
        let threads = self.threads.unwrap_or_else(kestrel_engine::default_threads);
        if self.check_tensors {
            check_tensors(&path, threads)?;
        }
        let cfg = EngineConfig {
            // 0 asks the engine for its default.
            n_ctx: self.ctx.unwrap_or(0),
            n_batch: self.batch,
            n_threads: threads,
        };
        let mut e = Engine::load(&path, &cfg)
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
        if let Some(f) = &self.chat_template_file {
            let src = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?;
            e.template = e
                .template
                .with_source(&src)
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        }
        Ok(e)
    }
}

/// `--check-tensors`: every tensor of the file at `path` read and checked on `threads` threads
/// (`kestrel_gguf::check`); an error naming each tensor with a NaN or an infinity.
pub fn check_tensors(path: &std::path::Path, threads: usize) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let g = kestrel_gguf::GgufFile::open(path)
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
    let problems = kestrel_gguf::check::check_tensors(&g, threads);
    let bytes: u64 = g.tensors().iter().map(|t| t.size as u64).sum();
    if problems.is_empty() {
        eprintln!(
            "check-tensors: {} tensors ({}) finite, {:.1} s",
            g.tensors().len(),
            crate::util::human_bytes(bytes),
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::bail!(
        "{}: {} of {} tensors hold NaN or infinite values:\n{}",
        path.display(),
        problems.len(),
        g.tensors().len(),
        list.join("\n")
    )
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
    /// Before loading, read every tensor and refuse the file if a value or block scale is NaN or infinite
    #[arg(long = "check-tensors")]
    pub check_tensors: bool,
}

impl EvalArgs {
    /// `model` loaded with a context of one chunk, evaluated one chunk per micro-batch.
    pub fn load(&self, model: Option<PathBuf>) -> anyhow::Result<Engine> {
        ModelArgs {
            model,
            threads: self.threads,
            ctx: Some(self.ctx),
            batch: self.ctx,
            check_tensors: self.check_tensors,
            chat_template_file: None,
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
