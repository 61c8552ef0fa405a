//! The device side of a split: the embedding and layers `0..k` here, layers `k..n` on the
//! server. Every step's layer-`k` hidden states are kept, so when the server fails the device
//! replays them through its own copy of layers `k..n` in the same micro-batches (rebuilding
//! exactly the KV cache the server had) and carries on alone.

use crate::error::{CollabError, Result};
use crate::split::client::Client;
use crate::split::proto::{Reply, ReplyMode, Request};
use crate::split::wire::WireFormat;
use kestrel_kernels::ThreadPool;
use kestrel_model::{Model, Session, StageInput, StageOutput};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SplitConfig {
    /// `http://HOST:PORT` of a `kestrel serve --split-server`.
    pub remote: String,
    /// Layers `0..k` run here.
    pub k: usize,
    pub wire: WireFormat,
    pub reply: ReplyMode,
    /// Longest wait for connecting and for each reply before going local.
    pub timeout: Duration,
    pub api_key: Option<String>,
    /// Told, as it happens, when the device goes local and why (the CLI logs it to stderr).
    pub on_event: Option<fn(&str)>,
}

/// What happened on the wire, for `--json` metadata and logs.
#[derive(Clone, Debug, Default)]
pub struct SplitStats {
    pub steps_remote: usize,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Time spent waiting for the server (network plus its compute).
    pub remote_ms: f64,
    /// Set when the device went local: the position (tokens in the sequence) at which, and why.
    pub fallback: Option<(usize, String)>,
    /// Time spent rebuilding layers `k..n` locally.
    pub rebuild_ms: f64,
}

struct Remote {
    client: Client,
    session: u64,
}

/// A begun step's message, waiting for its round trip.
struct Pending {
    pos: usize,
    rows: usize,
    want: bool,
    payload: Vec<u8>,
}

/// One split sequence's state, apart from the model, the thread pool and the session it
/// steps (the caller owns those: `kestrel serve --split-remote` keeps them in its slots).
pub struct SplitLink {
    cfg: SplitConfig,
    n_batch: usize,
    remote: Option<Remote>,
    /// Layer-`k` hidden states of every position so far, and the row count of each step.
    history: Vec<f32>,
    steps: Vec<usize>,
    logits: Vec<f32>,
    h: Vec<f32>,
    n_vocab: usize,
    n_embd: usize,
    pending: Option<Pending>,
    /// A failed round trip, until `complete` goes local.
    failed: Option<CollabError>,
    pub stats: SplitStats,
}

impl SplitLink {
    /// Open a session on the server for `session` (which must be empty). A server that cannot
    /// be reached or refuses is not an error: the link then runs every layer locally from the
    /// start (see `stats.fallback`).
    pub fn open(
        model: &Model,
        pool: &ThreadPool,
        session: &mut Session,
        n_batch: usize,
        cfg: SplitConfig,
    ) -> Result<SplitLink> {
        let n_layer = model.hparams().n_layer;
        if cfg.k == 0 || cfg.k >= n_layer {
            return Err(CollabError::SplitInvalid(format!(
                "--split-layer {} outside 1..{n_layer} for this {n_layer}-layer model",
                cfg.k
            )));
        }
        if session.n_past() != 0 {
            return Err(CollabError::SplitInvalid(
                "a split starts from an empty session".into(),
            ));
        }
        let n_ctx = session.n_ctx();
        let mut d = SplitLink {
            n_batch: n_batch.clamp(1, n_ctx.max(1)),
            remote: None,
            history: Vec::new(),
            steps: Vec::new(),
            logits: Vec::new(),
            h: Vec::new(),
            n_vocab: model.hparams().n_vocab,
            n_embd: model.hparams().n_embd,
            pending: None,
            failed: None,
            stats: SplitStats::default(),
            cfg,
        };
        match d.connect(model, n_ctx) {
            Ok(r) => d.remote = Some(r),
            // A bad URL is the user's mistake, not a server failure.
            Err(e @ CollabError::SplitInvalid(_)) => return Err(e),
            Err(e) => d.go_local(model, pool, session, e)?,
        }
        Ok(d)
    }

    fn connect(&mut self, model: &Model, n_ctx: usize) -> Result<Remote> {
        let mut client = Client::new(&self.cfg.remote, self.cfg.timeout, self.cfg.api_key.clone())?;
        let open = Request::Open {
            fingerprint: model.gguf.fingerprint(),
            k: self.cfg.k as u16,
            wire: self.cfg.wire,
            reply: self.cfg.reply,
            n_ctx: n_ctx as u32,
            n_batch: self.n_batch as u32,
        };
        match client.call(&open)? {
            Reply::Opened { session, .. } => Ok(Remote { client, session }),
            r => Err(CollabError::Malformed(format!("open answered with {r:?}"))),
        }
    }

    /// True while layers `k..n` still run on the server.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The logits after the last token fed.
    pub fn last_logits(&self) -> &[f32] {
        &self.logits
    }

    /// Append `tokens` to `session` and return the logits after the last one. Steps carry at
    /// most `n_batch` rows, the micro-batches an unsplit `Model::forward` would use.
    pub fn feed(
        &mut self,
        model: &Model,
        pool: &ThreadPool,
        session: &mut Session,
        tokens: &[u32],
    ) -> Result<&[f32]> {
        if tokens.is_empty() {
            return Err(CollabError::SplitInvalid("no tokens to feed".into()));
        }
        let n = tokens.len();
        let mut start = 0;
        while start < n {
            let end = (start + self.n_batch).min(n);
            self.begin_rows(model, pool, session, &tokens[start..end], end == n)?;
            self.exchange();
            self.complete(model, pool, session)?;
            start = end;
        }
        Ok(&self.logits)
    }

    /// First half of a one-token step, for callers that overlap many links' round trips
    /// ([`exchange`](Self::exchange) needs neither model nor session, so it can run on
    /// another thread): run layers `0..k` for `token` and encode the hidden state; a local
    /// link runs the whole model here.
    pub fn begin(
        &mut self,
        m: &Model,
        pool: &ThreadPool,
        session: &mut Session,
        token: u32,
    ) -> Result<()> {
        self.begin_rows(m, pool, session, &[token], true)
    }

    fn begin_rows(
        &mut self,
        m: &Model,
        pool: &ThreadPool,
        session: &mut Session,
        chunk: &[u32],
        want: bool,
    ) -> Result<()> {
        if self.pending.is_some() || self.failed.is_some() {
            return Err(CollabError::SplitInvalid("a step is still open".into()));
        }
        if self.remote.is_none() {
            let from = if want { chunk.len() - 1 } else { chunk.len() };
            m.forward(session, pool, chunk, from)?;
            if want {
                self.logits.clear();
                self.logits.extend_from_slice(session.last_logits());
            }
            return Ok(());
        }
        let pos = session.n_past();
        self.h.clear();
        let out = StageOutput::Hidden(&mut self.h);
        let input = StageInput::Tokens(chunk);
        m.forward_stage(session, pool, input, 0..self.cfg.k, out)?;
        self.queue(pos, chunk.len(), want);
        Ok(())
    }

    /// [`begin`](Self::begin) for a remote link whose layers `0..k` the caller already ran
    /// for one token at position `pos` (several links batched through
    /// `Model::forward_multi_stage`): `h` is that token's hidden state.
    pub fn begin_hidden(&mut self, pos: usize, h: &[f32]) -> Result<()> {
        if self.pending.is_some() || self.failed.is_some() || self.remote.is_none() {
            return Err(CollabError::SplitInvalid(
                "begin_hidden needs a remote link with no open step".into(),
            ));
        }
        if h.len() != self.n_embd {
            return Err(CollabError::SplitInvalid(format!(
                "{} hidden values for one row of {}",
                h.len(),
                self.n_embd
            )));
        }
        self.h.clear();
        self.h.extend_from_slice(h);
        self.queue(pos, 1, true);
        Ok(())
    }

    /// Keep the rows in `self.h` for a rebuild and encode them for the wire.
    fn queue(&mut self, pos: usize, rows: usize, want: bool) {
        self.history.extend_from_slice(&self.h);
        self.steps.push(rows);
        let e = self.n_embd;
        let mut payload = Vec::with_capacity(self.cfg.wire.row_bytes(e) * rows);
        self.cfg.wire.encode(&self.h, e, &mut payload);
        self.pending = Some(Pending {
            pos,
            rows,
            want,
            payload,
        });
    }

    /// The round trip of a begun step (nothing to do for a local link). A failure is kept
    /// for [`complete`](Self::complete), which goes local.
    pub fn exchange(&mut self) {
        if let Some(p) = self.pending.take() {
            if let Err(e) = self.send(p) {
                self.failed = Some(e);
            }
        }
    }

    /// End a step: after a failed round trip, rebuild layers `k..n` here and go on locally.
    pub fn complete(&mut self, m: &Model, pool: &ThreadPool, session: &mut Session) -> Result<()> {
        if let Some(p) = self.pending.take() {
            // `exchange` was skipped: do it now.
            if let Err(e) = self.send(p) {
                self.failed = Some(e);
            }
        }
        match self.failed.take() {
            Some(e) => self.go_local(m, pool, session, e),
            None => Ok(()),
        }
    }

    fn send(&mut self, p: Pending) -> Result<()> {
        let n_vocab = self.n_vocab;
        let Some(r) = self.remote.as_mut() else {
            return Err(CollabError::SplitInvalid("no remote".into()));
        };
        let req = Request::Step {
            session: r.session,
            pos: p.pos as u32,
            rows: p.rows as u32,
            want_logits: p.want,
            payload: p.payload,
        };
        let t0 = Instant::now();
        let (s0, r0) = (r.client.sent, r.client.received);
        let reply = r.client.call(&req);
        self.stats.remote_ms += t0.elapsed().as_secs_f64() * 1e3;
        self.stats.bytes_sent += r.client.sent - s0;
        self.stats.bytes_received += r.client.received - r0;
        match (reply?, p.want) {
            (Reply::Ack, false) => {}
            (Reply::Logits(l), true) if l.len() == n_vocab => {
                self.logits = l;
            }
            (Reply::TopK(t), true) => {
                // Tokens outside the server's top-k get no probability.
                self.logits.clear();
                self.logits.resize(n_vocab, f32::NEG_INFINITY);
                for (id, v) in t {
                    let slot = self.logits.get_mut(id as usize).ok_or_else(|| {
                        CollabError::Malformed(format!("top-k token {id} out of range"))
                    })?;
                    *slot = v;
                }
            }
            (r, _) => {
                return Err(CollabError::Malformed(format!(
                    "unexpected reply to a step: {}",
                    describe(&r)
                )))
            }
        }
        self.stats.steps_remote += 1;
        Ok(())
    }

    /// Drop the server and rebuild layers `k..n` of every position so far from the kept
    /// hidden states, step by step as they were first run; the last step's logits become
    /// the current ones.
    fn go_local(
        &mut self,
        model: &Model,
        pool: &ThreadPool,
        session: &mut Session,
        why: CollabError,
    ) -> Result<()> {
        let t0 = Instant::now();
        let at = session.n_past();
        self.remote = None;
        self.stats.fallback = Some((at, why.to_string()));
        let (k, n_layer, e) = (self.cfg.k, model.hparams().n_layer, model.hparams().n_embd);
        if !self.steps.is_empty() {
            // Layers 0..k of this session are complete; run k..n over the same positions.
            session.truncate(0);
            let mut row = 0;
            let last = self.steps.len() - 1;
            for (i, &n) in self.steps.iter().enumerate() {
                let h = &self.history[row * e..(row + n) * e];
                let from = if i == last { n - 1 } else { n };
                let out = StageOutput::Logits { from };
                model.forward_stage(session, pool, StageInput::Hidden(h), k..n_layer, out)?;
                row += n;
            }
            self.logits.clear();
            self.logits.extend_from_slice(session.last_logits());
        }
        self.history = Vec::new();
        self.steps = Vec::new();
        self.stats.rebuild_ms = t0.elapsed().as_secs_f64() * 1e3;
        if let Some(f) = self.cfg.on_event {
            f(&if at == 0 {
                format!("no split server ({why}); running every layer on this device")
            } else {
                format!(
                    "server lost at position {at} ({why}); continuing on this device \
                     (rebuilt layers {k}..{n_layer} for {at} positions in {:.0} ms)",
                    self.stats.rebuild_ms
                )
            });
        }
        Ok(())
    }

    /// Close the server's session (best effort: it expires anyway).
    pub fn close(&mut self) {
        if let Some(mut r) = self.remote.take() {
            let _ = r.client.call(&Request::Close { session: r.session });
        }
    }

    /// Where the layers ran and what crossed the wire, as the metadata `kestrel run --json`
    /// and `kestrel serve`'s responses carry. `prompt_len`: the prompt's tokens, to count the
    /// generated tokens the server's logits chose before a fall-back.
    pub fn report(&self, n_layer: usize, prompt_len: usize) -> serde_json::Value {
        let s = &self.stats;
        let top_k = match self.cfg.reply {
            ReplyMode::Full => 0,
            ReplyMode::TopK(n) => n,
        };
        serde_json::json!({
            "remote": self.cfg.remote,
            "layer": self.cfg.k,
            "n_layer": n_layer,
            "wire": self.cfg.wire.as_str(),
            "top_k": top_k,
            "remote_steps": s.steps_remote,
            "bytes_sent": s.bytes_sent,
            "bytes_received": s.bytes_received,
            "remote_ms": s.remote_ms,
            "fell_back": s.fallback.is_some(),
            "fallback_at_position": s.fallback.as_ref().map(|f| f.0),
            "tokens_before_fallback": s.fallback.as_ref().map(|f| f.0.saturating_sub(prompt_len)),
            "fallback_reason": s.fallback.as_ref().map(|f| f.1.clone()),
            "rebuild_ms": s.rebuild_ms,
        })
    }
}

/// A [`SplitLink`] with its model, pool and a session of its own (`kestrel run`).
pub struct SplitDevice<'a> {
    model: &'a Model,
    pool: &'a ThreadPool,
    pub session: Session,
    link: SplitLink,
}

impl<'a> SplitDevice<'a> {
    /// Open a session on the server. A server that cannot be reached or refuses is not an
    /// error: the device then runs alone from the start (see `stats.fallback`).
    pub fn open(
        model: &'a Model,
        pool: &'a ThreadPool,
        n_ctx: usize,
        n_batch: usize,
        cfg: SplitConfig,
    ) -> Result<SplitDevice<'a>> {
        let mut session = model.new_session(n_ctx, n_batch);
        let link = SplitLink::open(model, pool, &mut session, n_batch, cfg)?;
        Ok(SplitDevice {
            model,
            pool,
            session,
            link,
        })
    }

    /// True while layers `k..n` still run on the server.
    pub fn is_remote(&self) -> bool {
        self.link.is_remote()
    }

    pub fn n_past(&self) -> usize {
        self.session.n_past()
    }

    /// The logits after the last token fed.
    pub fn last_logits(&self) -> &[f32] {
        self.link.last_logits()
    }

    pub fn stats(&self) -> &SplitStats {
        &self.link.stats
    }

    /// See [`SplitLink::report`].
    pub fn report(&self, prompt_len: usize) -> serde_json::Value {
        self.link.report(self.model.hparams().n_layer, prompt_len)
    }

    /// Append `tokens` and return the logits after the last one.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        self.link
            .feed(self.model, self.pool, &mut self.session, tokens)
    }

    /// Close the server's session (best effort: it expires anyway).
    pub fn close(&mut self) {
        self.link.close()
    }
}

fn describe(r: &Reply) -> String {
    match r {
        Reply::Logits(l) => format!("{} logits", l.len()),
        Reply::TopK(t) => format!("top-{}", t.len()),
        other => format!("{other:?}"),
    }
}
