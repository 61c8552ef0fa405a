//! The server's side of scheduling: one engine thread runs the engine's generation loop
//! (`kestrel_engine::batch::Scheduler`: slots, shared prompt passes, continuous batching).
//! Requests wait in a bounded queue; between steps the thread hands the loop as many as there
//! are free slots, and runs the jobs that are not generations. Each request streams its tokens
//! back over its own channel; a closed channel (the client went away) cancels the sequence.

mod decode;
mod worker;

pub use decode::TokenLogprob;
pub use kestrel_collab::verify::server::{VerifyConfig, VerifyJob};
pub use worker::{DrafterFactory, ServeSpec};

use crate::error::ApiError;
use crate::metrics::Metrics;
use kestrel_engine::Engine;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a generation request streams back.
#[derive(Debug)]
pub enum Event {
    /// The prompt is evaluated. `prompt_logprobs` (when asked for) has one entry per prompt
    /// token; the first has no logprob.
    Started {
        prompt_tokens: usize,
        reused: usize,
        prompt_logprobs: Option<Vec<TokenLogprob>>,
    },
    /// One generated token: the text that became final with it (possibly empty: a stop string
    /// or a UTF-8 character may be pending) and, when asked for, its logprob.
    Token {
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// Text held back until the end (no token of its own).
    Text(String),
    /// The model's confidence in the next token, sent just before it (only for the first
    /// `GenJob::confidence` tokens; routing reads these).
    Confidence(kestrel_collab::route::TokenConfidence),
    Done {
        reason: FinishReason,
        completion_tokens: usize,
        /// With `--split-remote`: where the layers ran, and any fall-back to this device
        /// (`SplitLink::report`).
        split: Option<serde_json::Value>,
    },
    Error(ApiError),
}

#[derive(Debug)]
pub struct GenJob {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampler: kestrel_engine::SamplerConfig,
    /// Logit biases, end-of-generation bans included.
    pub bias: Vec<(u32, f32)>,
    pub stop: Vec<String>,
    /// Top alternatives per generated token; None: no logprobs.
    pub logprobs: Option<usize>,
    /// Logprobs of the prompt tokens too (completions with echo).
    pub prompt_logprobs: bool,
    pub session_id: Option<String>,
    /// Report the confidence of this many first tokens (`Event::Confidence`); 0: none.
    pub confidence: usize,
    /// Structured output: what every token is drawn under.
    pub constraint: Option<kestrel_engine::decoding::ConstraintSpec>,
    pub arrived: Instant,
    pub deadline: Instant,
    pub events: mpsc::UnboundedSender<Event>,
}

pub enum Job {
    Generate(GenJob),
    Embed {
        tokens: Vec<u32>,
        reply: oneshot::Sender<Result<Vec<f32>, ApiError>>,
    },
    SaveSession {
        id: String,
        reply: oneshot::Sender<Result<SessionInfo, ApiError>>,
    },
    RestoreSession {
        id: String,
        reply: oneshot::Sender<Result<SessionInfo, ApiError>>,
    },
    /// One `POST /v1/verify` call.
    Verify {
        job: VerifyJob,
        reply: oneshot::Sender<Result<kestrel_collab::verify::proto::VerifyResponse, ApiError>>,
    },
    /// `DELETE /v1/verify/{id}`.
    CloseVerify {
        id: String,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// One message of a split device (`--split-server`).
    Split {
        body: axum::body::Bytes,
        reply: oneshot::Sender<kestrel_collab::split::server::Answer>,
    },
    /// Wakes an idle engine thread to look at the side queue.
    Wake,
}

#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub tokens: usize,
    pub path: PathBuf,
    pub bytes: u64,
}

#[derive(Clone, Debug)]
pub struct SchedConfig {
    /// Sequences decoded together.
    pub parallel: usize,
    /// Requests that may wait for a slot before new ones get 429.
    pub queue: usize,
    /// Longest a request may take from arrival to its last token.
    pub time_limit: Duration,
    pub session_dir: Option<PathBuf>,
    pub verify: VerifyConfig,
    /// Speculative decoding while one sequence is active.
    pub spec: Option<ServeSpec>,
    /// Split inference: layers `k..n` of every generation run on a split server.
    pub split: Option<kestrel_collab::split::SplitConfig>,
    /// Evaluate the prompts of requests admitted together in shared passes.
    pub batch_prompts: bool,
    /// `--split-server`: split devices' sessions, served between decode steps.
    pub split_server: Option<kestrel_collab::split::SplitServerConfig>,
}

/// How often an idle engine thread is woken to drop idle sessions: half the shortest idle
/// limit, between 1 and 30 seconds.
fn expiry_interval(cfg: &SchedConfig) -> Duration {
    let mut idle = cfg.verify.idle;
    if let Some(s) = &cfg.split_server {
        idle = idle.min(s.idle);
    }
    (idle / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// The front end's handle: submit jobs without blocking.
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::Sender<Job>,
    /// Verify calls: served between decode steps even while every slot is busy (they have
    /// caches of their own), so they do not wait behind prompts queued for a slot.
    side: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    pub time_limit: Duration,
}

impl Scheduler {
    /// Start the engine thread.
    pub fn start(
        engine: Arc<Engine>,
        cfg: SchedConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Scheduler> {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (side, side_rx) = mpsc::channel(cfg.queue.max(1));
        let time_limit = cfg.time_limit;
        let m = metrics.clone();
        let split = match &cfg.split_server {
            Some(c) => Some(
                kestrel_collab::split::server::SplitSessions::new(&engine.model, c.clone())
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            ),
            None => None,
        };
        let every = expiry_interval(&cfg);
        std::thread::Builder::new()
            .name("kestrel-engine".into())
            .spawn(move || worker::Worker::new(engine, cfg, m, rx, side_rx, split).run())?;
        // An idle engine thread blocks on its queue: wake it now and then so that idle verify
        // and split sessions (a KV cache each) are dropped on time, not at the next call.
        let wake = tx.clone();
        let wm = metrics.clone();
        std::thread::Builder::new()
            .name("kestrel-expiry".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                match wake.try_send(Job::Wake) {
                    Ok(()) => {
                        wm.queued.fetch_add(1, Relaxed);
                    }
                    // A full queue: the thread is busy and expires as it goes.
                    Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            })?;
        Ok(Scheduler {
            tx,
            side,
            metrics,
            time_limit,
        })
    }

    /// Queue a job; a full queue is a 429 with a retry hint.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.queued(self.tx.try_send(job))?;
        self.metrics.queued.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Queue a verify job on the side queue and wake the engine thread if it is idle.
    pub fn submit_side(&self, job: Job) -> Result<(), ApiError> {
        self.queued(self.side.try_send(job))?;
        // A full main queue means the thread is busy and will look anyway.
        if self.tx.try_send(Job::Wake).is_ok() {
            self.metrics.queued.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// What a queue's answer means for the client: a full queue is a 429, a closed one a 503.
    fn queued(&self, r: Result<(), mpsc::error::TrySendError<Job>>) -> Result<(), ApiError> {
        match r {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.rejected_busy.fetch_add(1, Relaxed);
                Err(ApiError::busy(1))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(ApiError::unavailable("the engine thread has stopped"))
            }
        }
    }
}
