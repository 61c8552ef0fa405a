//! The server side of remote verification (`POST /v1/verify`): sessions, each with its own KV
//! cache and the target's sampling state, verifying one device's drafts call by call with the
//! engine's `VerifySession` (the row walk every verifier takes). `kestrel serve` keeps them on
//! its engine thread and runs each call between the scheduler's steps. Sessions expire after
//! an idle time and their number is bounded; an id that expired recently is told apart from an
//! unknown one.

use super::proto::{TokenLogprob, TopLogprob, VerifyResponse};
use crate::{CollabError, Result};
use kestrel_engine::speculative::VerifySession;
use kestrel_engine::{Engine, SamplerConfig};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// Sessions open at once (each holds a KV cache of the server's context).
    pub max_sessions: usize,
    /// A session unused this long is dropped.
    pub idle: Duration,
    /// Longest draft accepted in one call.
    pub max_draft: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            max_sessions: 4,
            idle: Duration::from_secs(60),
            max_draft: 64,
        }
    }
}

/// One call, checked for shape by the route (ids in the vocabulary, draft length).
#[derive(Debug)]
pub struct VerifyJob {
    /// None: open a session with `open`.
    pub session: Option<String>,
    pub open: Option<(Vec<u32>, SamplerConfig)>,
    pub draft: Vec<u32>,
    /// Alternatives per token when logprobs are asked for.
    pub logprobs: Option<usize>,
}

struct Entry {
    session: VerifySession,
    last_used: Instant,
}

/// Ids of recently expired sessions remembered, so their callers hear "expired".
const EXPIRED_KEPT: usize = 1024;

pub struct VerifySessions {
    cfg: VerifyConfig,
    open: HashMap<String, Entry>,
    expired: HashMap<String, Instant>,
    counter: u64,
}

impl VerifySessions {
    pub fn new(cfg: VerifyConfig) -> VerifySessions {
        VerifySessions {
            cfg,
            open: HashMap::new(),
            expired: HashMap::new(),
            counter: 0,
        }
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Drop the sessions unused for the idle time (their ids are remembered a while, so a
    /// late call hears that it expired).
    pub fn expire(&mut self, now: Instant) {
        let idle = self.cfg.idle;
        let gone: Vec<String> = self
            .open
            .iter()
            .filter(|(_, e)| now.duration_since(e.last_used) >= idle)
            .map(|(id, _)| id.clone())
            .collect();
        if self.expired.len() + gone.len() > EXPIRED_KEPT {
            self.expired.clear();
        }
        for id in gone {
            self.open.remove(&id);
            self.expired.insert(id, now);
        }
    }

    fn missing(&self, id: &str) -> CollabError {
        if self.expired.contains_key(id) {
            let idle = self.cfg.idle.as_secs();
            let message = format!(
                "verify session '{id}' expired after {idle} s without a request; open a new one"
            );
            refused(Refusal::Expired, message)
        } else {
            refused(Refusal::NotFound, format!("no verify session '{id}'"))
        }
    }

    pub fn close(&mut self, id: &str) -> Result<()> {
        self.expire(Instant::now());
        match self.open.remove(id) {
            Some(_) => Ok(()),
            None => Err(self.missing(id)),
        }
    }

    pub fn handle(&mut self, engine: &Engine, job: VerifyJob) -> Result<VerifyResponse> {
        let now = Instant::now();
        self.expire(now);
        let mut prompt_tokens = None;
        let id = match (&job.session, job.open) {
            (Some(id), _) => {
                if !self.open.contains_key(id) {
                    return Err(self.missing(id));
                }
                id.clone()
            }
            (None, Some((prompt, sampler))) => {
                if self.open.len() >= self.cfg.max_sessions {
                    let max = self.cfg.max_sessions;
                    let message = format!(
                        "all {max} verify sessions are in use; retry later or close one (DELETE /v1/verify/ID)"
                    );
                    let retry_after = self.cfg.idle.as_secs().max(1);
                    return Err(refused(Refusal::TooManySessions { retry_after }, message));
                }
                let session = engine.open_verify(engine.new_sequence(), &prompt, sampler)?;
                self.counter += 1;
                let id = format!("vs-{:x}-{}", self.counter, nonce());
                prompt_tokens = Some(prompt.len());
                self.open.insert(
                    id.clone(),
                    Entry {
                        session,
                        last_used: now,
                    },
                );
                id
            }
            (None, None) => {
                let message = "a new session needs a prompt".to_string();
                return Err(refused(Refusal::BadRequest, message));
            }
        };
        let Some(entry) = self.open.get_mut(&id) else {
            return Err(self.missing(&id));
        };
        entry.last_used = now;
        let s = &mut entry.session;
        if s.needs(job.draft.len()) > s.n_ctx() {
            // An open that cannot even take its draft is not kept.
            let msg = format!(
                "the session holds {} tokens; with this draft and the server's next token it would need {} positions, but the context holds {}",
                s.len(),
                s.needs(job.draft.len()) + 1,
                s.n_ctx()
            );
            if prompt_tokens.is_some() {
                self.open.remove(&id);
            }
            return Err(refused(Refusal::ContextExceeded, msg));
        }
        let mut lps = Vec::new();
        let top = job.logprobs;
        let step = s
            .verify(engine, &job.draft, &mut |t, row| {
                if let Some(n) = top {
                    lps.push(logprob(row, t, n));
                }
            })
            .map_err(CollabError::from);
        let step = match step {
            Ok(s) => s,
            Err(e) => {
                // A failed pass leaves the cache in an unknown state: end the session.
                self.open.remove(&id);
                return Err(e);
            }
        };
        Ok(VerifyResponse {
            object: "verify".into(),
            n_tokens: self.open.get(&id).map_or(0, |e| e.session.len()),
            session: id,
            accepted: step.accepted,
            next: step.next,
            prompt_tokens,
            logprobs: top.map(|_| lps),
        })
    }
}

/// Why a verify call is refused (the HTTP side chooses the status from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The session was dropped after its idle time.
    Expired,
    /// No such session.
    NotFound,
    /// Every session is in use; one frees within `retry_after` seconds at most.
    TooManySessions { retry_after: u64 },
    /// The draft and the server's next token do not fit the session's context.
    ContextExceeded,
    /// A call that is not well formed.
    BadRequest,
}

fn refused(refusal: Refusal, message: String) -> CollabError {
    CollabError::VerifyRefused { refusal, message }
}

/// A little per-process variety in ids, so ids from before a restart do not name new sessions.
fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    format!("{t:08x}")
}

fn logprob(row: &[f32], id: u32, top: usize) -> TokenLogprob {
    let (logprob, best) = kestrel_engine::logprobs::logprobs(row, id, top);
    TokenLogprob {
        id,
        logprob,
        top: best
            .into_iter()
            .map(|(id, logprob)| TopLogprob { id, logprob })
            .collect(),
    }
}
