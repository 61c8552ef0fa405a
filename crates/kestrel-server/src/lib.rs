//! `kestrel serve`: an OpenAI-compatible HTTP server over the engine. The HTTP side runs on
//! tokio; inference runs on one engine thread that batches every active sequence's decode step
//! (see `sched`). Routes and error shapes follow OpenAI's API; see docs/server.md.

pub mod api;
mod error;
pub mod listen;
pub mod metrics;
mod routes;
mod routing;
pub mod sched;
mod store;
mod tools;

pub use error::{ApiError, ServerError};
pub use routing::RouteConfig;
pub use sched::{DrafterFactory, ServeSpec, VerifyConfig};

use kestrel_engine::Engine;
use metrics::Metrics;
use sched::{SchedConfig, Scheduler};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    /// Sequences decoded together (slots, each with its own KV cache).
    pub parallel: usize,
    /// Requests that may wait for a slot; more get 429.
    pub queue: usize,
    /// Longest a request may run, from arrival to its last token.
    pub time_limit: Duration,
    pub session_dir: Option<PathBuf>,
    /// Largest request body accepted (413 above).
    pub max_body: usize,
    /// Connections, header and body read bounds.
    pub conn: listen::ConnLimits,
    /// The id clients use for the model.
    pub model_id: String,
    /// `--route-remote`: send unsure or rule-matched requests to a remote server.
    pub routing: Option<RouteConfig>,
    /// Remote-verification sessions (`POST /v1/verify`).
    pub verify: sched::VerifyConfig,
    /// `--draft...`: speculative decoding while one sequence is active.
    pub spec: Option<ServeSpec>,
    /// `--split-remote`: run layers `k..n` of every generation on a split server.
    pub split: Option<kestrel_collab::split::SplitConfig>,
    /// Evaluate the prompts of requests that arrive together in shared passes (off:
    /// `--no-batch-prompts`).
    pub batch_prompts: bool,
    /// `--split-server`: serve layers `k..` to split devices at `/split/v1`, on the engine
    /// thread.
    pub split_server: Option<kestrel_collab::split::SplitServerConfig>,
}

/// Serve until ctrl-c. `on_listen` is told the bound address (port 0 picks a free one).
pub fn run(
    engine: Engine,
    cfg: ServerConfig,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    if cfg.parallel == 0 {
        return Err(ServerError::Config("--parallel must be at least 1".into()));
    }
    if cfg.split.is_some() && cfg.spec.is_some() {
        return Err(ServerError::Config(
            "--split-remote and --draft cannot be used together".into(),
        ));
    }
    if let Some(d) = &cfg.session_dir {
        std::fs::create_dir_all(d)
            .map_err(|e| ServerError::Io(format!("creating session dir {}: {e}", d.display())))?;
    }
    let engine = Arc::new(engine);
    let metrics = Arc::new(Metrics::default());
    let sched = Scheduler::start(
        engine.clone(),
        SchedConfig {
            parallel: cfg.parallel,
            queue: cfg.queue,
            time_limit: cfg.time_limit,
            session_dir: cfg.session_dir.clone(),
            verify: cfg.verify.clone(),
            spec: cfg.spec.clone(),
            split: cfg.split.clone(),
            batch_prompts: cfg.batch_prompts,
            split_server: cfg.split_server.clone(),
        },
        metrics.clone(),
    )
    .map_err(|e| ServerError::Io(format!("starting the engine thread: {e}")))?;
    let split_body = cfg
        .split_server
        .as_ref()
        .map(|c| kestrel_collab::split::server::max_body(&engine.model, c));
    let state = Arc::new(routes::AppState {
        engine,
        sched,
        metrics,
        model_id: cfg.model_id.clone(),
        api_key: cfg.api_key.clone(),
        router: cfg.routing.clone().map(|cfg| routing::Router {
            cfg,
            counts: Default::default(),
        }),
        verify_max_draft: cfg.verify.max_draft,
        max_body: cfg.max_body,
        grammars: Default::default(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    let app = routes::router(state, cfg.max_body, split_body, cfg.conn.body_timeout);
    // HTTP work is light next to inference: two runtime threads are plenty.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ServerError::Io(format!("starting the async runtime: {e}")))?;
    rt.block_on(async move {
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| ServerError::Io(format!("binding {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| ServerError::Io(e.to_string()))?;
        on_listen(local);
        listen::serve(listener, app, cfg.conn)
            .await
            .map_err(|e| ServerError::Io(format!("serving: {e}")))
    })
}
