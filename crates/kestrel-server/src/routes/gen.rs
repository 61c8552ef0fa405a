//! What chat and plain completions share: queueing a generation, waiting for its prompt to be
//! evaluated, collecting a whole answer, and streaming one as server-sent events.

use super::AppState;
use crate::api::GenSettings;
use crate::error::ApiError;
use crate::sched::{Event, FinishReason, GenJob, Job, TokenLogprob};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use kestrel_engine::SamplerConfig;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;
use tokio::sync::mpsc::{self, UnboundedReceiver};

#[derive(Clone)]
pub(crate) struct GenRequest {
    pub prompt: Vec<u32>,
    pub settings: GenSettings,
    pub logprobs: Option<usize>,
    pub prompt_logprobs: bool,
    pub session_id: Option<String>,
    /// Tokens whose confidence the engine reports (routing); 0: none.
    pub confidence: usize,
}

impl GenRequest {
    /// A generation of `prompt` by the request's `sampling` fields (checked into `settings`),
    /// with `logprobs` alternatives per token when asked for.
    pub fn new(
        prompt: Vec<u32>,
        settings: GenSettings,
        sampling: &crate::api::Sampling,
        logprobs: Option<usize>,
        prompt_logprobs: bool,
    ) -> GenRequest {
        GenRequest {
            prompt,
            settings,
            logprobs,
            prompt_logprobs,
            session_id: sampling.session_id.clone(),
            confidence: 0,
        }
    }
}

/// A generation whose prompt has been evaluated.
pub(crate) struct Started {
    pub rx: UnboundedReceiver<Event>,
    pub prompt_tokens: usize,
    /// Prompt tokens found in the slot's KV cache.
    pub reused: usize,
    pub prompt_logprobs: Option<Vec<TokenLogprob>>,
}

/// Run CPU work (tokenizing a long prompt) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal("a tokenizer task failed"))
}

/// A unique id for a response.
pub(crate) fn new_id(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    format!("{prefix}-{t:x}{:04x}", N.fetch_add(1, Relaxed) & 0xffff)
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Check the prompt against the context, queue it, and wait until it is evaluated (so a
/// failure before the first token still gets its own status code).
pub(crate) async fn start(st: &AppState, r: GenRequest) -> Result<Started, ApiError> {
    let n_ctx = st.engine.n_ctx();
    if r.prompt.is_empty() {
        return Err(ApiError::bad_request("the prompt is empty").param("prompt"));
    }
    if r.prompt.len() >= n_ctx {
        return Err(ApiError::context_exceeded(r.prompt.len(), n_ctx));
    }
    let room = n_ctx - r.prompt.len();
    let s = &r.settings;
    let n_vocab = st.engine.model.hparams().n_vocab;
    if let Some(&(id, _)) = s.logit_bias.iter().find(|&&(id, _)| id as usize >= n_vocab) {
        return Err(ApiError::bad_request(format!(
            "logit_bias names token {id}, outside the vocabulary of {n_vocab}"
        ))
        .param("logit_bias"));
    }
    let mut bias = s.logit_bias.clone();
    if s.ignore_eos {
        let eog = st.engine.tokenizer.eog_ids();
        bias.extend(eog.iter().map(|&t| (t, f32::NEG_INFINITY)));
    }
    // Building the parser (and the vocabulary's trie, once) takes a moment: the runtime moves
    // its other tasks off this thread meanwhile.
    let constraint = match s.constraint.clone() {
        Some(spec) => Some(tokio::task::block_in_place(|| st.constraint(spec))?),
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let arrived = Instant::now();
    let job = GenJob {
        constraint,
        max_tokens: s.max_tokens.unwrap_or(room).min(room),
        sampler: SamplerConfig {
            temperature: s.temperature,
            top_k: 0,
            top_p: s.top_p,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            seed: s.seed,
        },
        bias,
        stop: s.stop.clone(),
        logprobs: r.logprobs,
        prompt_logprobs: r.prompt_logprobs,
        session_id: r.session_id,
        confidence: r.confidence,
        arrived,
        deadline: arrived + st.sched.time_limit,
        events: tx,
        prompt: r.prompt,
    };
    st.sched.submit(Job::Generate(job))?;
    match rx.recv().await {
        Some(Event::Started {
            prompt_tokens,
            reused,
            prompt_logprobs,
        }) => Ok(Started {
            rx,
            prompt_tokens,
            reused,
            prompt_logprobs,
        }),
        Some(Event::Error(e)) => Err(e),
        _ => Err(ApiError::internal("the engine dropped the request")),
    }
}

/// A whole answer.
pub(crate) struct Collected {
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub reason: FinishReason,
    pub completion_tokens: usize,
    /// The split report (`--split-remote`).
    pub split: Option<serde_json::Value>,
}

pub(crate) async fn collect(rx: &mut UnboundedReceiver<Event>) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Token { text: t, logprob } => {
                text.push_str(&t);
                logprobs.extend(logprob);
            }
            Event::Text(t) => text.push_str(&t),
            Event::Done {
                reason,
                completion_tokens,
                split,
            } => {
                return Ok(Collected {
                    text,
                    logprobs,
                    reason,
                    completion_tokens,
                    split,
                })
            }
            Event::Error(e) => return Err(e),
            Event::Started { .. } | Event::Confidence(_) => {}
        }
    }
    Err(ApiError::internal("the engine dropped the request"))
}

/// OpenAI's usage object; `cached_tokens` counts the prompt tokens reused from a KV cache.
pub(crate) fn usage(prompt: usize, cached: usize, completion: usize) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// Turns engine events into the JSON payloads of `data:` lines; returns what to send for one
/// event (possibly nothing). After `Done` or `Error` the stream sends `[DONE]` and ends.
pub(crate) trait ChunkWriter: Send + 'static {
    fn event(&mut self, ev: Event) -> Vec<serde_json::Value>;
}

/// Stream `first` (already-known chunks), then the writer's chunks for each event, then
/// `data: [DONE]`. Dropping the response (client gone) drops `rx`, which cancels the sequence.
pub(crate) fn sse(
    first: Vec<serde_json::Value>,
    rx: UnboundedReceiver<Event>,
    writer: impl ChunkWriter,
) -> Response {
    struct St<W> {
        rx: UnboundedReceiver<Event>,
        w: W,
        queue: VecDeque<String>,
        ended: bool,
    }
    let queue = first.iter().map(|v| v.to_string()).collect();
    let init = St {
        rx,
        w: writer,
        queue,
        ended: false,
    };
    let s = stream::unfold(init, |mut st| async move {
        loop {
            if let Some(d) = st.queue.pop_front() {
                return Some((Ok::<_, Infallible>(SseEvent::default().data(d)), st));
            }
            if st.ended {
                return None;
            }
            match st.rx.recv().await {
                Some(ev) => {
                    let last = matches!(ev, Event::Done { .. } | Event::Error(_));
                    let out = match ev {
                        Event::Error(e) => vec![e.body()],
                        ev => st.w.event(ev),
                    };
                    st.queue.extend(out.iter().map(|v| v.to_string()));
                    if last {
                        st.queue.push_back("[DONE]".into());
                        st.ended = true;
                    }
                }
                None => {
                    st.queue.push_back("[DONE]".into());
                    st.ended = true;
                }
            }
        }
    });
    sse_response(s)
}

fn sse_response<S>(s: S) -> Response
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    Sse::new(s).into_response()
}
