//! The engine thread's loop: the side queue's jobs, then queued jobs while a slot is free,
//! then one step of the engine's scheduler (`kestrel_engine::batch::Scheduler`: the prompts
//! admitted together, a micro-batch of each long prompt, a step of every active sequence);
//! repeat. Blocks on the queue only when nothing is running. Jobs that are not generations
//! (embeddings, saved sessions, remote verification, split devices) run between steps.

use super::decode::{request, Req};
use super::{Event, GenJob, Job, SchedConfig, SessionInfo};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes::verify::verify_error;
use crate::store;
use kestrel_collab::split::server::SplitSessions;
use kestrel_collab::verify::server::VerifySessions;
use kestrel_engine::batch::speculate::Speculative;
use kestrel_engine::batch::{Plain, Scheduler, Strategy};
use kestrel_engine::Engine;
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
    /// The slots and the generations in them (the engine's loop).
    sched: Scheduler<Req>,
    fingerprint: u64,
    verify: VerifySessions,
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
        // How tokens are produced: on a split server, with drafts, or plainly.
        let strategy: Box<dyn Strategy<Req>> = match (&cfg.split, &cfg.spec) {
            (Some(c), _) => Box::new(kestrel_collab::split::batch::Split::new(c.clone())),
            (None, Some(s)) => Box::new(Speculative::new(s.make.clone(), n, s.max, s.adaptive)),
            (None, None) => Box::new(Plain),
        };
        let mut sched = Scheduler::new(&engine, n, strategy);
        if !cfg.batch_prompts {
            sched = sched.one_prompt_at_a_time();
        }
        let fingerprint = engine.model.gguf.fingerprint();
        Worker {
            verify: VerifySessions::new(cfg.verify.clone()),
            engine,
            cfg,
            metrics,
            rx,
            side,
            sched,
            fingerprint,
            split_sessions,
        }
    }

    pub fn run(mut self) {
        loop {
            while let Ok(j) = self.side.try_recv() {
                self.handle(j);
            }
            self.expire_idle();
            while self.sched.has_free() {
                let job = if self.sched.is_idle() {
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
            self.sched.step(&self.engine, Instant::now());
            let (m, s) = (&self.metrics, self.sched.stats());
            m.prompt_batches.store(s.shared_passes, Relaxed);
            m.prompts_batched.store(s.shared_prompts, Relaxed);
            m.active.store(self.sched.active() as u64, Relaxed);
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
                let r = self.verify.handle(&self.engine, job).map_err(verify_error);
                self.session_gauges();
                let _ = reply.send(r);
            }
            Job::CloseVerify { id, reply } => {
                let r = self.verify.close(&id).map_err(verify_error);
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
    /// at the next step. A free slot was checked for before the job was taken from the queue.
    fn admit(&mut self, job: GenJob) {
        if self.cfg.split.is_some() {
            if let Err(e) = split::check(&job) {
                let _ = job.events.send(Event::Error(e));
                return;
            }
        }
        let req = request(job, self.engine.clone(), self.metrics.clone());
        if let Err(req) = self.sched.admit(req, Instant::now()) {
            let _ = req.client.job.events.send(Event::Error(ApiError::busy(1)));
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
        let Some(slot) = self
            .sched
            .slots()
            .owned_by(id)
            .map(|i| &self.sched.slots()[i])
        else {
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
        let slots = self.sched.slots_mut();
        let Some(si) = slots.for_restore(id) else {
            return Err(ApiError::busy(1));
        };
        let fp = self.fingerprint;
        let slot = &mut slots[si];
        match store::load(&path, fp, &mut slot.seq) {
            Ok(bytes) => {
                slot.seq.set_exact(slot.seq.tokens.len());
                let tokens = slot.seq.tokens.len();
                slots.give(si, Some(id));
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
