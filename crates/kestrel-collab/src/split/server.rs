//! The server role: layers `k..n`, the final norm and the output head for device sessions.
//! [`SplitSessions`] owns every session (its KV cache and scratch) and answers one message at
//! a time on a thread that owns a thread pool: `kestrel serve --split-server` runs it on the
//! engine thread between decode steps (a job like remote verification), and [`router`] on a
//! thread of its own (the standalone server of tests and tools). Handlers hand the request
//! body over and await the reply over a oneshot channel, so inference stays off the tokio
//! workers.

use crate::error::CollabError;
use crate::split::proto::{ErrorCode, Reply, ReplyMode, Request, ROUTE};
use crate::split::wire::WireFormat;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kestrel_kernels::ThreadPool;
use kestrel_model::{Model, Session, StageInput, StageOutput};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Clone, Debug)]
pub struct SplitServerConfig {
    /// Sessions held at once (each has a KV cache of up to `max_ctx` positions); more are
    /// refused with `Busy` until one closes or expires.
    pub max_sessions: usize,
    /// A session unused this long is dropped.
    pub idle: Duration,
    pub max_ctx: usize,
    /// Largest micro-batch a device may ask for.
    pub max_batch: usize,
    pub threads: usize,
    /// Required as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
}

/// A message's answer: the error code it carries, if any (for the HTTP status), and its bytes.
pub type Answer = (Option<ErrorCode>, Vec<u8>);
type Job = (Bytes, oneshot::Sender<Answer>);

#[derive(Clone)]
struct Handle {
    tx: mpsc::SyncSender<Job>,
    api_key: Option<Arc<str>>,
}

/// The largest message a split server of `model` takes: `max_batch` rows of f32 plus the
/// header.
pub fn max_body(model: &Model, cfg: &SplitServerConfig) -> usize {
    cfg.max_batch * WireFormat::F32.row_bytes(model.hparams().n_embd) + 64
}

/// The split route on a worker thread of its own with its own pool of `cfg.threads` (the
/// standalone server); `kestrel serve --split-server` instead runs [`SplitSessions`] on its
/// engine thread.
pub fn router(model: Arc<Model>, cfg: SplitServerConfig) -> Result<Router, CollabError> {
    let limit = max_body(&model, &cfg);
    let api_key = cfg.api_key.as_deref().map(Arc::from);
    let (tx, rx) = mpsc::sync_channel::<Job>(64);
    let pool = ThreadPool::new(cfg.threads.max(1));
    let mut sessions = SplitSessions::new(&model, cfg)?;
    std::thread::Builder::new()
        .name("kestrel-split".into())
        .spawn(move || loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok((body, reply_to)) => {
                    let _ = reply_to.send(sessions.serve(&model, &pool, &body));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => sessions.expire(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        })
        .map_err(|e| CollabError::Io(format!("starting the split worker: {e}")))?;
    Ok(Router::new()
        .route(ROUTE, post(handle))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Handle { tx, api_key }))
}

/// The HTTP response for a message's answer: its bytes, with the status its error code (if
/// any) maps to.
pub fn response((code, bytes): Answer) -> Response {
    let status = code.map_or(200, |c| c.http_status());
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response()
}

async fn handle(State(h): State<Handle>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(key) = &h.api_key {
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| k.trim() == &**key);
        if !ok {
            return (StatusCode::UNAUTHORIZED, "missing or wrong API key").into_response();
        }
    }
    let (otx, orx) = oneshot::channel();
    // A full queue waits here, off the worker thread; a dead worker is a 500.
    let tx = h.tx.clone();
    let sent = tokio::task::spawn_blocking(move || tx.send((body, otx)).is_ok()).await;
    if !matches!(sent, Ok(true)) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "split worker stopped").into_response();
    }
    match orx.await {
        Ok(answer) => response(answer),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "split worker stopped").into_response(),
    }
}

struct Slot {
    session: Session,
    k: usize,
    wire: WireFormat,
    reply: ReplyMode,
    last_used: Instant,
}

/// The split server's sessions and the rules for them; each message is answered with the
/// model and pool of the thread that calls [`SplitSessions::serve`].
pub struct SplitSessions {
    fingerprint: u64,
    hp: kestrel_model::Hparams,
    cfg: SplitServerConfig,
    sessions: HashMap<u64, Slot>,
    next_id: u64,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Error {
        code,
        message: message.into(),
    }
}

impl SplitSessions {
    /// Sessions for `model` (whose fingerprint devices must match) under `cfg`'s limits.
    pub fn new(model: &Model, cfg: SplitServerConfig) -> Result<SplitSessions, CollabError> {
        if cfg.max_sessions == 0 || cfg.max_ctx == 0 || cfg.max_batch == 0 {
            return Err(CollabError::SplitInvalid(
                "split server needs at least one session, context position and batch row".into(),
            ));
        }
        let fingerprint = model.gguf.fingerprint();
        // Ids start at a clock-derived value so a restarted server does not reuse the ids of
        // the sessions it lost.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Ok(SplitSessions {
            hp: model.hparams().clone(),
            fingerprint,
            cfg,
            sessions: HashMap::new(),
            next_id: seed | 1,
        })
    }

    /// Answer one message (sessions idle past the limit are dropped first). `model` must be
    /// the one the sessions were made for.
    pub fn serve(&mut self, model: &Model, pool: &ThreadPool, body: &[u8]) -> Answer {
        self.expire();
        let reply = self.reply(model, pool, body);
        let code = match &reply {
            Reply::Error { code, .. } => Some(*code),
            _ => None,
        };
        (code, reply.encode())
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Drop the sessions unused for longer than the idle limit.
    pub fn expire(&mut self) {
        let idle = self.cfg.idle;
        self.sessions.retain(|_, s| s.last_used.elapsed() < idle);
    }

    fn reply(&mut self, model: &Model, pool: &ThreadPool, body: &[u8]) -> Reply {
        let req = match Request::decode(body) {
            Ok(r) => r,
            Err(CollabError::Version { got, want }) => {
                return refuse(
                    ErrorCode::VersionMismatch,
                    format!("protocol version {got}; this server speaks {want}"),
                )
            }
            Err(e) => return refuse(ErrorCode::Malformed, e.to_string()),
        };
        match req {
            Request::Open {
                fingerprint,
                k,
                wire,
                reply,
                n_ctx,
                n_batch,
            } => self.open(model, fingerprint, k as usize, wire, reply, n_ctx, n_batch),
            Request::Step {
                session,
                pos,
                rows,
                want_logits,
                payload,
            } => self.step(model, pool, session, pos, rows, want_logits, &payload),
            Request::Close { session } => match self.sessions.remove(&session) {
                Some(_) => Reply::Closed,
                None => refuse(ErrorCode::UnknownSession, "unknown or expired session"),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        model: &Model,
        fp: u64,
        k: usize,
        wire: WireFormat,
        reply: ReplyMode,
        n_ctx: u32,
        n_batch: u32,
    ) -> Reply {
        let hp = &self.hp;
        if fp != self.fingerprint {
            return refuse(
                ErrorCode::ModelMismatch,
                format!(
                    "the server's model has fingerprint {:016x}, the device's {fp:016x}",
                    self.fingerprint
                ),
            );
        }
        // k = 0 would send token embeddings, which give the prompt away; k = n_layer leaves
        // nothing to do but the head.
        if k == 0 || k >= hp.n_layer {
            return refuse(
                ErrorCode::Compute,
                format!("split layer {k} outside 1..{}", hp.n_layer),
            );
        }
        // A device with a longer context gets the server's; a step past it is refused and the
        // device finishes alone.
        let (n_ctx, n_batch) = ((n_ctx as usize).min(self.cfg.max_ctx), n_batch as usize);
        if n_ctx == 0 {
            return refuse(ErrorCode::Compute, "context of 0 positions");
        }
        if n_batch == 0 || n_batch > self.cfg.max_batch {
            return refuse(
                ErrorCode::Compute,
                format!("micro-batch {n_batch} outside 1..={}", self.cfg.max_batch),
            );
        }
        if self.sessions.len() >= self.cfg.max_sessions {
            return refuse(
                ErrorCode::Busy,
                format!("all {} split sessions are in use", self.cfg.max_sessions),
            );
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(2);
        let session = model.new_session(n_ctx, n_batch);
        self.sessions.insert(
            id,
            Slot {
                session,
                k,
                wire,
                reply,
                last_used: Instant::now(),
            },
        );
        Reply::Opened {
            session: id,
            n_layer: hp.n_layer as u16,
            n_embd: hp.n_embd as u32,
            n_vocab: hp.n_vocab as u32,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        model: &Model,
        pool: &ThreadPool,
        id: u64,
        pos: u32,
        rows: u32,
        want: bool,
        payload: &[u8],
    ) -> Reply {
        let hp = &self.hp;
        let Some(slot) = self.sessions.get_mut(&id) else {
            return refuse(ErrorCode::UnknownSession, "unknown or expired session");
        };
        slot.last_used = Instant::now();
        if pos as usize != slot.session.n_past() {
            return refuse(
                ErrorCode::OutOfOrder,
                format!(
                    "step at position {pos}, but the session holds {} positions",
                    slot.session.n_past()
                ),
            );
        }
        let rows = rows as usize;
        if rows == 0 || rows > self.cfg.max_batch {
            return refuse(ErrorCode::Malformed, format!("{rows} rows in one step"));
        }
        let h = match slot.wire.decode(payload, rows, hp.n_embd) {
            Ok(h) => h,
            Err(e) => return refuse(ErrorCode::Malformed, e.to_string()),
        };
        let out = StageOutput::Logits {
            from: if want { rows - 1 } else { rows },
        };
        let layers = slot.k..hp.n_layer;
        let r = model.forward_stage(&mut slot.session, pool, StageInput::Hidden(&h), layers, out);
        if let Err(e) = r {
            return refuse(ErrorCode::Compute, e.to_string());
        }
        if !want {
            return Reply::Ack;
        }
        let logits = slot.session.last_logits();
        match slot.reply {
            ReplyMode::Full => Reply::Logits(logits.to_vec()),
            ReplyMode::TopK(n) => Reply::TopK(top_k(logits, n as usize)),
        }
    }
}

/// The `n` largest logits, largest first (ties: lower id first).
pub(crate) fn top_k(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &x)| (i as u32, x))
        .collect();
    let n = n.min(v.len());
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if n > 0 && n < v.len() {
        v.select_nth_unstable_by(n - 1, order);
    }
    v.truncate(n);
    v.sort_by(order);
    v
}
