//! The engine thread's loop: admit queued jobs into free slots, then one batched decode step
//! for all active sequences; repeat. Blocks on the queue only when nothing is running.

use super::decode::{active, logprob_of, piece, Active, TokenLogprob};
use super::verify::VerifySessions;
use super::{Event, GenJob, Job, SchedConfig, SessionInfo};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store;
use kestrel_collab::split::server::SplitSessions;
use kestrel_engine::batch;
use kestrel_engine::slots::{Slot, Slots};
use kestrel_engine::{ChunkedPrefill, Engine};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

mod spec;
mod split;
pub use spec::{DrafterFactory, ServeSpec};

pub(crate) struct Worker {
    engine: Arc<Engine>,
    cfg: SchedConfig,
    metrics: Arc<Metrics>,
    rx: mpsc::Receiver<Job>,
    side: mpsc::Receiver<Job>,
    /// The KV caches, their owners and the batched passes over them (the engine's).
    slots: Slots,
    active: Vec<Active>,
    fingerprint: u64,
    verify: VerifySessions,
    /// `kestrel serve --draft...`: drafters per slot.
    spec: Option<spec::SpecState>,
    /// Requests given a slot since the last step, their prompts not yet evaluated (they are
    /// evaluated together: `start_claimed`).
    claimed: Vec<(usize, GenJob)>,
    /// Requests whose prompt is longer than a micro-batch, evaluated one micro-batch per
    /// iteration between decode steps (`prefill_chunks`).
    prefilling: Vec<(usize, GenJob, ChunkedPrefill)>,
    /// `--split-server`: the split devices' sessions, served with the engine's pool.
    split_sessions: Option<SplitSessions>,
}

impl Worker {
    pub fn new(
        engine: Arc<Engine>,
        cfg: SchedConfig,
        metrics: Arc<Metrics>,
        rx: mpsc::Receiver<Job>,
        side: mpsc::Receiver<Job>,
        split_sessions: Option<SplitSessions>,
    ) -> Worker {
        let n = cfg.parallel.max(1);
        let slots = Slots::new(&engine, n);
        let fingerprint = engine.model.gguf.fingerprint();
        Worker {
            verify: VerifySessions::new(cfg.verify.clone()),
            spec: cfg.spec.clone().map(|s| spec::SpecState::new(s, n)),
            engine,
            cfg,
            metrics,
            rx,
            side,
            slots,
            active: Vec::new(),
            fingerprint,
            claimed: Vec::new(),
            prefilling: Vec::new(),
            split_sessions,
        }
    }

    pub fn run(mut self) {
        loop {
            while let Ok(j) = self.side.try_recv() {
                self.handle(j);
            }
            self.expire_idle();
            while self.slots.has_free() {
                let idle = self.claimed.is_empty() && self.prefilling.is_empty();
                let job = if self.active.is_empty() && idle {
                    match self.rx.blocking_recv() {
                        Some(j) => j,
                        None => return,
                    }
                } else {
                    match self.rx.try_recv() {
                        Ok(j) => j,
                        Err(_) => break,
                    }
                };
                self.metrics.queued.fetch_sub(1, Relaxed);
                if matches!(job, Job::Wake) {
                    // Back to the top, where the side queue is read.
                    break;
                }
                self.handle(job);
            }
            self.start_claimed();
            self.prefill_chunks();
            if self.cfg.split.is_some() {
                if !self.active.is_empty() {
                    self.step_split();
                }
            } else if self.spec.is_some() && self.active.len() == 1 {
                if let Some(a) = self.active.pop() {
                    self.spec_step(a);
                }
            } else if !self.active.is_empty() {
                self.step();
            }
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Generate(j) => self.admit(j),
            Job::Embed { tokens, reply } => {
                let _ = reply.send(self.embed(&tokens));
            }
            Job::SaveSession { id, reply } => {
                let _ = reply.send(self.save(&id));
            }
            Job::RestoreSession { id, reply } => {
                let _ = reply.send(self.restore(&id));
            }
            Job::Verify { job, reply } => {
                let r = self.verify.handle(&self.engine, job);
                self.session_gauges();
                let _ = reply.send(r);
            }
            Job::CloseVerify { id, reply } => {
                let r = self.verify.close(&id);
                self.session_gauges();
                let _ = reply.send(r);
            }
            Job::Split { body, reply } => {
                if let Some(s) = &mut self.split_sessions {
                    let r = s.serve(&self.engine.model, &self.engine.pool, &body);
                    self.session_gauges();
                    let _ = reply.send(r);
                }
            }
            Job::Wake => {}
        }
    }

    /// Give a request a slot; its prompt is evaluated with the others that arrived with it
    /// (`start_claimed`).
    fn admit(&mut self, job: GenJob) {
        if job.events.is_closed() {
            return;
        }
        if Instant::now() >= job.deadline {
            let _ = job.events.send(Event::Error(ApiError::timeout(
                "the request's time limit passed while it waited for a slot",
            )));
            return;
        }
        if self.cfg.split.is_some() {
            if let Err(e) = split::check(&job) {
                let _ = job.events.send(Event::Error(e));
                return;
            }
        }
        if let Some(si) = self.slots.claim(&job.prompt, job.session_id.as_deref()) {
            self.claimed.push((si, job));
        }
    }

    /// Evaluate the prompts of the requests given slots since the last step: those that only
    /// need their last token's logits in shared passes (`prefill_together`: each gets what
    /// it would alone), prompt logprobs and split requests one at a time.
    fn start_claimed(&mut self) {
        if self.claimed.is_empty() {
            return;
        }
        let mut claimed = std::mem::take(&mut self.claimed);
        let split = self.cfg.split.is_some();
        let apart = |j: &GenJob| j.prompt_logprobs || split;
        // Prompts longer than a micro-batch go a micro-batch per iteration instead, so they
        // do not stall the running streams.
        let mut short = Vec::with_capacity(claimed.len());
        for (si, job) in claimed.drain(..) {
            let seq = &mut self.slots[si].seq;
            let todo = job.prompt.len() - seq.reusable(&job.prompt);
            if apart(&job) || todo <= seq.session.n_batch() {
                short.push((si, job));
                continue;
            }
            match seq.start_prefill(&job.prompt) {
                Ok(c) => self.prefilling.push((si, job, c)),
                Err(e) => self.begin(si, job, Err(e.to_string()), None),
            }
        }
        let claimed = short;
        let prompts: Vec<(usize, &[u32])> = claimed
            .iter()
            .filter(|(_, j)| !apart(j))
            .map(|(si, j)| (*si, j.prompt.as_slice()))
            .collect();
        let done = if self.cfg.batch_prompts {
            self.slots.prefill(&self.engine, &prompts)
        } else {
            // One at a time (`--no-batch-prompts`, for measurements).
            let (m, pool) = (&self.engine.model, &self.engine.pool);
            let one = |&(si, p): &(usize, &[u32])| self.slots[si].seq.prefill(m, pool, p);
            kestrel_engine::Prefilled {
                reused: prompts.iter().map(one).collect(),
                shared_passes: 0,
                shared_prompts: 0,
            }
        };
        self.metrics
            .prompt_batches
            .fetch_add(done.shared_passes as u64, Relaxed);
        self.metrics
            .prompts_batched
            .fetch_add(done.shared_prompts as u64, Relaxed);
        let mut reused = done.reused.into_iter();
        for (si, job) in claimed {
            let mut link = None;
            let started = if !apart(&job) {
                let r = reused.next().expect("one result per prompt");
                r.map(|n| (n, None)).map_err(|e| e.to_string())
            } else if let Some(cfg) = &self.cfg.split {
                split::start(&self.engine, &mut self.slots[si], &job, cfg.clone()).map(|l| {
                    link = Some(l);
                    (0, None)
                })
            } else {
                prefill_logprobs(&self.engine, &mut self.slots[si], &job).map_err(|e| e.to_string())
            };
            self.begin(si, job, started, link);
        }
    }

    /// The next micro-batch of every long prompt being evaluated; a finished one becomes an
    /// active sequence, one whose client left or whose time ran out frees its slot.
    fn prefill_chunks(&mut self) {
        if self.prefilling.is_empty() {
            return;
        }
        // A handle of its own: `begin` below needs all of `self`.
        let engine = self.engine.clone();
        for (si, job, mut c) in std::mem::take(&mut self.prefilling) {
            if job.events.is_closed() {
                self.slots.release(si);
                continue;
            }
            if Instant::now() >= job.deadline {
                let _ = job.events.send(Event::Error(ApiError::timeout(
                    "the request's time limit passed while its prompt was evaluated",
                )));
                self.slots.release(si);
                continue;
            }
            let seq = &mut self.slots[si].seq;
            match c.next(seq, &engine.model, &engine.pool, &job.prompt) {
                Ok(false) => self.prefilling.push((si, job, c)),
                Ok(true) => self.begin(si, job, Ok((c.reused(), None)), None),
                Err(e) => self.begin(si, job, Err(e.to_string()), None),
            }
        }
    }

    /// A request whose prompt is evaluated (or failed) becomes an active sequence.
    fn begin(
        &mut self,
        si: usize,
        job: GenJob,
        started: Result<(usize, Option<Vec<TokenLogprob>>), String>,
        link: Option<kestrel_collab::split::SplitLink>,
    ) {
        let slot = &mut self.slots[si];
        let (reused, prompt_logprobs) = match started {
            Ok(r) => r,
            Err(e) => {
                slot.seq.clear();
                slot.seq.session.reset();
                slot.busy = false;
                let _ = job.events.send(Event::Error(ApiError::internal(e)));
                return;
            }
        };
        self.metrics
            .prompt_tokens
            .fetch_add(job.prompt.len() as u64, Relaxed);
        self.metrics
            .prompt_tokens_reused
            .fetch_add(reused as u64, Relaxed);
        let sent = job.events.send(Event::Started {
            prompt_tokens: job.prompt.len(),
            reused,
            prompt_logprobs,
        });
        if sent.is_err() {
            if let Some(mut l) = link {
                l.close();
            }
            slot.busy = false;
            return;
        }
        self.metrics.active.fetch_add(1, Relaxed);
        let length = match &self.spec {
            Some(s) => s.length(),
            None => kestrel_engine::speculative::DraftLength::new(1, false),
        };
        let (e, m) = (self.engine.clone(), self.metrics.clone());
        self.active.push(active(si, job, e, m, length, link));
    }

    /// One continuous-batching step (`kestrel_engine::batch::step`): a token for every active
    /// sequence, then all that continue through one batched forward pass.
    fn step(&mut self) {
        let now = Instant::now();
        let (ended, r) = batch::step(&self.engine, &mut self.slots, &mut self.active, now);
        for a in ended {
            self.release(a.slot);
        }
        if let Err(e) = r {
            // Cannot happen with checked tokens and room; end every sequence cleanly if it does.
            for a in std::mem::take(&mut self.active) {
                let _ = a
                    .client
                    .job
                    .events
                    .send(Event::Error(ApiError::internal(e.to_string())));
                self.release(a.slot);
            }
        }
    }

    /// Drop the verify and split sessions that have been idle past their limits.
    fn expire_idle(&mut self) {
        self.verify.expire(Instant::now());
        if let Some(s) = &mut self.split_sessions {
            s.expire();
        }
        self.session_gauges();
    }

    /// `/metrics`' counts of open verify and split sessions, current before any reply.
    fn session_gauges(&self) {
        let m = &self.metrics;
        m.verify_sessions.store(self.verify.len() as u64, Relaxed);
        if let Some(s) = &self.split_sessions {
            m.split_sessions_open.store(s.len() as u64, Relaxed);
        }
    }

    fn release(&mut self, si: usize) {
        if self.slots.release(si) {
            self.metrics.active.fetch_sub(1, Relaxed);
        }
    }

    fn embed(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ApiError> {
        let mut s = self.engine.model.new_session(tokens.len().max(1), 512);
        self.engine
            .model
            .embed(&mut s, &self.engine.pool, tokens)
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    fn session_dir(&self) -> Result<&std::path::Path, ApiError> {
        if self.cfg.split.is_some() {
            return Err(split::no_sessions());
        }
        self.cfg.session_dir.as_deref().ok_or_else(|| {
            ApiError::bad_request(
                "sessions cannot be saved: the server was started without --session-dir",
            )
        })
    }

    fn save(&mut self, id: &str) -> Result<SessionInfo, ApiError> {
        let dir = self.session_dir()?.to_path_buf();
        let Some(slot) = self.slots.owned_by(id).map(|i| &self.slots[i]) else {
            return Err(ApiError::not_found(format!(
                "no cached conversation for session '{id}' (it may have been evicted)"
            )));
        };
        if slot.busy {
            return Err(ApiError::with_status(
                axum::http::StatusCode::CONFLICT,
                format!("session '{id}' is generating; save it when the request ends"),
            ));
        }
        let path = store::path_for(&dir, id);
        let exact = slot.seq.exact();
        let bytes = store::save(&path, self.fingerprint, &slot.seq, exact)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(SessionInfo {
            id: id.to_string(),
            tokens: exact,
            path,
            bytes,
        })
    }

    fn restore(&mut self, id: &str) -> Result<SessionInfo, ApiError> {
        let dir = self.session_dir()?.to_path_buf();
        let path = store::path_for(&dir, id);
        if !path.exists() {
            return Err(ApiError::not_found(format!("no saved session '{id}'")));
        }
        let Some(si) = self.slots.for_restore(id) else {
            return Err(ApiError::busy(1));
        };
        let fp = self.fingerprint;
        let slot = &mut self.slots[si];
        match store::load(&path, fp, &mut slot.seq) {
            Ok(bytes) => {
                slot.seq.set_exact(slot.seq.tokens.len());
                let tokens = slot.seq.tokens.len();
                self.slots.give(si, Some(id));
                Ok(SessionInfo {
                    id: id.to_string(),
                    tokens,
                    path,
                    bytes,
                })
            }
            Err(e) => {
                slot.seq.clear();
                slot.seq.session.reset();
                Err(ApiError::bad_request(e.to_string()).code("invalid_session_file"))
            }
        }
    }
}

/// Evaluate a prompt whose every token's logprob is asked for: every position's logits are
/// needed, so nothing is reused. Returns 0 reused and the prompt tokens' logprobs.
fn prefill_logprobs(
    engine: &Engine,
    slot: &mut Slot,
    job: &GenJob,
) -> Result<(usize, Option<Vec<TokenLogprob>>), kestrel_engine::EngineError> {
    let seq = &mut slot.seq;
    seq.clear();
    let lps = prompt_logprobs(engine, seq, &job.prompt, job.logprobs.unwrap_or(0))?;
    seq.set_exact(job.prompt.len());
    Ok((0, Some(lps)))
}

/// Prompt tokens evaluated per forward pass when every position's logits are kept (each row
/// is a vocabulary of floats).
const LOGPROB_CHUNK: usize = 64;

/// Evaluate the whole prompt in chunks, keeping each position's logits just long enough to
/// score the next token. No chunk has a single token (a lone token takes the one-token
/// attention path), so the cache matches a one-pass prefill.
fn prompt_logprobs(
    engine: &Engine,
    seq: &mut kestrel_engine::Sequence,
    prompt: &[u32],
    top: usize,
) -> Result<Vec<TokenLogprob>, kestrel_model::ModelError> {
    let (token, bytes) = piece(&engine.tokenizer, prompt[0]);
    let mut out = vec![TokenLogprob {
        token,
        bytes,
        logprob: None,
        top: Vec::new(),
    }];
    let mut start = 0;
    while start < prompt.len() {
        let mut end = (start + LOGPROB_CHUNK).min(prompt.len());
        if prompt.len() - end == 1 {
            end += 1;
        }
        let chunk = &prompt[start..end];
        engine
            .model
            .forward(&mut seq.session, &engine.pool, chunk, 0)?;
        seq.tokens.extend_from_slice(chunk);
        for (r, j) in (start + 1..=end).enumerate() {
            if j < prompt.len() {
                out.push(logprob_of(
                    &engine.tokenizer,
                    seq.session.logits(r),
                    prompt[j],
                    top,
                ));
            }
        }
        start = end;
    }
    Ok(out)
}
