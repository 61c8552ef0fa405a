//! The engine: a model with its tokenizer and chat template, a thread pool, and the generation
//! loop (prefix reuse, sampling, stop strings, streaming, timings).

pub mod batch;
pub mod bench;
pub mod decode;
pub mod decoding;
mod error;
pub mod eval;
pub mod logprobs;
pub mod output;
mod sequence;
pub mod slots;
pub mod speculative;
pub mod stop;

pub use error::{EngineError, Result};
pub use kestrel_model::{Model, SamplerConfig, Session};
pub use kestrel_tokenizer::{ChatMessage, ChatTemplate, StreamDecoder, Tokenizer};
pub use sequence::{common_prefix, prefill_together, ChunkedPrefill, Prefilled, Sequence};

use kestrel_gguf::GgufFile;
use kestrel_kernels::ThreadPool;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Context length of new sessions; 0 means the smaller of the model's training context and 4096.
    pub n_ctx: usize,
    /// Largest micro-batch of prompt tokens per forward pass.
    pub n_batch: usize,
    pub n_threads: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            n_ctx: 0,
            n_batch: 512,
            n_threads: default_threads(),
        }
    }
}

/// The machine's available parallelism (physical cores are not visible portably).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub struct Engine {
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub pool: ThreadPool,
    n_ctx: usize,
    n_batch: usize,
}

#[derive(Clone, Debug)]
pub struct GenParams {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
    /// Constrained output: every token is drawn from those the grammar allows.
    pub constraint: Option<decoding::ConstraintSpec>,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            ignore_eos: false,
            constraint: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eos,
    MaxTokens,
    StopString,
    ContextFull,
    /// The caller's callback asked to stop.
    Cancelled,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::MaxTokens => "length",
            StopReason::StopString => "stop",
            StopReason::ContextFull => "context_full",
            StopReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Timings {
    /// Prompt tokens evaluated (after prefix reuse) and the time it took.
    pub n_prompt_eval: usize,
    pub n_prompt_reused: usize,
    pub prompt_ms: f64,
    /// Tokens generated and the time spent producing them after the first.
    pub n_gen: usize,
    pub gen_ms: f64,
    /// From the call to the first generated token.
    pub ttft_ms: f64,
}

impl Timings {
    pub fn prompt_tps(&self) -> f64 {
        rate(self.n_prompt_eval, self.prompt_ms)
    }
    pub fn gen_tps(&self) -> f64 {
        rate(self.n_gen.saturating_sub(1), self.gen_ms)
    }
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stop_reason: StopReason,
    pub timings: Timings,
}

impl Engine {
    pub fn load(path: impl AsRef<Path>, cfg: &EngineConfig) -> Result<Engine> {
        let gguf = Arc::new(GgufFile::open(path)?);
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let template = ChatTemplate::from_gguf(&gguf)?;
        let model = Model::from_gguf(gguf)?;
        let train = model.hparams().n_ctx_train;
        let n_ctx = if cfg.n_ctx == 0 {
            train.min(4096)
        } else {
            cfg.n_ctx
        };
        // Beyond its training length a model needs rope scaling, which is not implemented; the
        // check also keeps a mistyped -c from asking for an impossible KV cache.
        if n_ctx > train {
            return Err(EngineError::Invalid(format!(
                "context {n_ctx} exceeds the model's training context {train}"
            )));
        }
        Ok(Engine {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            template,
            pool: ThreadPool::new(cfg.n_threads.max(1)),
            n_ctx,
            n_batch: cfg.n_batch.max(1),
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Largest micro-batch of prompt tokens per forward pass (of the sessions it makes).
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    pub fn new_sequence(&self) -> Sequence {
        Sequence::new(self.model.new_session(self.n_ctx, self.n_batch))
    }

    /// Tokenize a plain prompt the way `run` does: special tokens as the metadata asks, and
    /// special-token text in the prompt parsed.
    pub fn tokenize_prompt(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, true, true)?)
    }

    /// Render a conversation with the chat template and tokenize it. The template writes any
    /// BOS itself, so none is added unless the model asks for it and the text lacks it.
    pub fn tokenize_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        self.tokenize_chat_tools(messages, None)
    }

    /// [`Engine::tokenize_chat`] with OpenAI's `tools` list given to the template.
    pub fn tokenize_chat_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
    ) -> Result<Vec<u32>> {
        let text = self.template.render_tools(messages, tools, true)?;
        let mut ids = self.tokenizer.encode(&text, false, true)?;
        if self.tokenizer.add_bos() {
            if let Some(bos) = self.tokenizer.bos() {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
        }
        Ok(ids)
    }

    /// Check `params` and `prompt` against the context and evaluate the prompt, reusing the
    /// longest prefix already in the cache (always evaluating at least one token so there are
    /// fresh logits). Returns when it started and the prompt's timings.
    pub(crate) fn eval_prompt(
        &self,
        seq: &mut Sequence,
        prompt: &[u32],
        params: &GenParams,
    ) -> Result<(Instant, Timings)> {
        decode::check_request(params, prompt, seq.session.n_ctx())?;
        let t0 = Instant::now();
        let common = seq.prefill(&self.model, &self.pool, prompt)?;
        let timings = Timings {
            n_prompt_eval: prompt.len() - common,
            n_prompt_reused: common,
            prompt_ms: t0.elapsed().as_secs_f64() * 1e3,
            ..Default::default()
        };
        Ok((t0, timings))
    }

    /// Generate a continuation of `prompt` in `seq`, calling `on_text` with each piece of text as
    /// it becomes final; `on_text` returns false to stop early.
    pub fn generate(
        &self,
        seq: &mut Sequence,
        prompt: &[u32],
        params: &GenParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let (t0, timings) = self.eval_prompt(seq, prompt, params)?;
        let mut st = SeqStepper { engine: self, seq };
        decode::decode(
            &self.tokenizer,
            &mut st,
            prompt,
            params,
            t0,
            timings,
            on_text,
        )
    }
}

/// `Engine::generate`'s [`decode::Stepper`]: one local forward pass per token.
struct SeqStepper<'a> {
    engine: &'a Engine,
    seq: &'a mut Sequence,
}

impl decode::Stepper for SeqStepper<'_> {
    type Error = EngineError;

    fn logits(&self) -> &[f32] {
        self.seq.session.last_logits()
    }

    fn is_full(&self) -> bool {
        self.seq.session.n_past() >= self.seq.session.n_ctx()
    }

    fn feed(&mut self, tok: u32) -> Result<()> {
        let e = self.engine;
        e.model.forward(&mut self.seq.session, &e.pool, &[tok], 0)?;
        self.seq.tokens.push(tok);
        Ok(())
    }
}
