//! Confidence routing in the server (`--route-remote`): every chat or plain completion starts
//! here. A policy rule or a prompt longer than the context sends it to the remote at once;
//! otherwise it starts locally, and its first tokens are held back (nothing reaches the client)
//! until their mean confidence is known. Unsure: the local sequence is cancelled and the remote
//! answers. If the remote fails in any way, the request is answered locally after all. Every
//! decision is logged on stderr, counted in /metrics and reported in the response (`tag`).

mod respond;

pub(crate) use respond::{headers, tag, tag_split, Tagged};

use crate::error::ApiError;
use crate::routes::gen::{self, GenRequest, Started};
use crate::routes::AppState;
use crate::sched::Event;
use kestrel_collab::route::{
    Confidence, Counts, Decision, Policy, Reason, Remote, RemoteKind, Target,
};
use tokio::sync::mpsc::{self, UnboundedReceiver};

/// `--route-remote` and `--route-policy`.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    pub remote: Remote,
    pub policy: Policy,
}

pub(crate) struct Router {
    pub cfg: RouteConfig,
    pub counts: Counts,
}

/// What a routed request needs besides its generation settings.
pub(crate) struct Routable<'a> {
    pub kind: RemoteKind,
    /// The client's request body, forwarded to the remote.
    pub body: &'a [u8],
    /// The prompt's text, for keyword rules.
    pub text: &'a str,
    pub stream: bool,
    pub include_usage: bool,
    /// A rule already decided by the requested model (`model_rule`).
    pub forced: Option<Reason>,
}

impl<'a> Routable<'a> {
    /// A chat or text completion (`kind`) with its body, prompt text and sampling fields.
    pub fn new(
        st: &AppState,
        kind: RemoteKind,
        body: &'a [u8],
        text: &'a str,
        sampling: &crate::api::Sampling,
    ) -> Routable<'a> {
        Routable {
            kind,
            body,
            text,
            stream: sampling.stream,
            include_usage: sampling.include_usage(),
            forced: model_rule(st, sampling.model.as_deref()),
        }
    }
}

pub(crate) enum Start {
    /// Answer from this local generation. `None`: routing is off.
    Local(Started, Option<Decision>),
    /// The remote's answer, ready to send.
    Remote(axum::response::Response),
}

/// With routing on, whether the requested model sends the request to the remote (then the
/// local model-name check is skipped).
pub(crate) fn model_rule(st: &AppState, model: Option<&str>) -> Option<Reason> {
    st.router
        .as_ref()
        .and_then(|r| r.cfg.policy.model_rule(model, &st.model_id))
}

pub(crate) async fn start(
    st: &AppState,
    r: Routable<'_>,
    g: GenRequest,
) -> Result<Start, ApiError> {
    let Some(router) = &st.router else {
        return Ok(Start::Local(gen::start(st, g).await?, None));
    };
    let policy = &router.cfg.policy;
    let n_ctx = st.engine.n_ctx();
    let Some(d) = policy.before_probe(r.forced, r.text, g.prompt.len(), n_ctx) else {
        // Probe: the first tokens' confidence, held back from the client until it decides.
        let n = policy.confidence.tokens;
        let probe = gen::start(
            st,
            GenRequest {
                confidence: n,
                ..g.clone()
            },
        )
        .await?;
        let (started, conf) = hold(probe, n).await;
        let d = policy.after_probe(conf);
        if d.target == Target::Remote {
            // Dropping the local sequence's receiver cancels it in the engine.
            drop(started);
            return remote_or_local(st, router, &r, g, d).await;
        }
        record(router, &r, &d);
        return Ok(Start::Local(started, Some(d)));
    };
    if d.target == Target::Remote {
        return remote_or_local(st, router, &r, g, d).await;
    }
    let started = gen::start(st, g).await?;
    record(router, &r, &d);
    Ok(Start::Local(started, Some(d)))
}

/// Ask the remote; if it fails, start the request locally (from scratch: the slot's cached
/// prompt makes that cheap) and say why.
async fn remote_or_local(
    st: &AppState,
    router: &Router,
    r: &Routable<'_>,
    g: GenRequest,
    wanted: Decision,
) -> Result<Start, ApiError> {
    let body: serde_json::Value = serde_json::from_slice(r.body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    match router.cfg.remote.call(r.kind, &body).await {
        Ok(a) => {
            record(router, r, &wanted);
            Ok(Start::Remote(respond::remote(r, a, &wanted)))
        }
        Err(e) => {
            let d = Decision::fallback(&wanted, e.to_string());
            record(router, r, &d);
            let started = gen::start(st, g).await.map_err(|mut le| {
                le.message = format!("{} (and the remote failed: {e})", le.message);
                le
            })?;
            Ok(Start::Local(started, Some(d)))
        }
    }
}

fn record(router: &Router, r: &Routable<'_>, d: &Decision) {
    router.counts.add(d);
    let what = match r.kind {
        RemoteKind::Chat => "chat completion",
        RemoteKind::Completion => "completion",
    };
    eprintln!("{}", d.log_line(what));
}

/// Read the probe's events until the confidence of `n` tokens is known (or it ended), holding
/// back everything else; return a stream that replays the held events, then the rest.
async fn hold(mut probe: Started, n: usize) -> (Started, Confidence) {
    let mut conf = Confidence::default();
    let mut held = Vec::new();
    let mut ended = false;
    while conf.tokens < n {
        match probe.rx.recv().await {
            Some(Event::Confidence(c)) => conf.push(c),
            Some(ev) => {
                ended = matches!(ev, Event::Done { .. } | Event::Error(_));
                held.push(ev);
                if ended {
                    break;
                }
            }
            None => {
                ended = true;
                break;
            }
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    for ev in held {
        let _ = tx.send(ev);
    }
    let upstream = std::mem::replace(&mut probe.rx, rx);
    if !ended {
        tokio::spawn(forward(upstream, tx));
    }
    (probe, conf)
}

/// Pass events on (dropping later confidence reports) until either side goes away; a client
/// that leaves drops `tx`'s receiver, and returning drops `rx`, which cancels the sequence.
async fn forward(mut rx: UnboundedReceiver<Event>, tx: mpsc::UnboundedSender<Event>) {
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::Confidence(_)) => {}
                Some(ev) => {
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                None => return,
            },
            _ = tx.closed() => return,
        }
    }
}
