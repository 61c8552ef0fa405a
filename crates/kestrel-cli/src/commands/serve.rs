use crate::args::ModelArgs;
use crate::models;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on (127.0.0.1: this machine only)
    #[arg(long = "host", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the chosen one is printed)
    #[arg(long = "port", default_value_t = 8080)]
    port: u16,
    /// The model's name in /v1/models and in answers [default: the file name without .gguf];
    /// requests may name any model, since one is served
    #[arg(long = "alias")]
    alias: Option<String>,
    /// Require 'Authorization: Bearer KEY' on every route but /health
    #[arg(long = "api-key")]
    api_key: Option<String>,
    /// Sequences generated together, each with its own KV cache of --ctx positions
    #[arg(long = "parallel", default_value_t = 4)]
    parallel: usize,
    /// Requests that may wait for a free sequence; more are refused with 429
    #[arg(long = "queue", default_value_t = 64)]
    queue: usize,
    /// Longest a request may take, in seconds, from arrival to its last token
    #[arg(long = "time-limit", default_value_t = 600)]
    time_limit: u64,
    /// Directory for POST /v1/sessions/{id}/save and /restore
    #[arg(long = "session-dir")]
    session_dir: Option<PathBuf>,
    /// Largest request body in bytes (413 above)
    #[arg(long = "max-body", default_value_t = 4 << 20)]
    max_body: usize,
    /// Connections open at once; more are closed as they arrive
    #[arg(long = "max-connections", default_value_t = 256)]
    max_connections: usize,
    /// Seconds a client may take to send its request headers (the connection is closed after),
    /// and may leave its request body without new data (408 after)
    #[arg(long = "read-timeout", default_value_t = 10)]
    read_timeout: u64,
    /// Also serve split inference at /split/v1: layers K.. for `kestrel run --split-remote`
    /// (at most --parallel split sessions of --ctx positions)
    #[arg(long = "split-server")]
    split_server: bool,
    /// Drop a split session after this many idle seconds
    #[arg(long = "split-idle", default_value_t = 120)]
    split_idle: u64,
    #[command(flatten)]
    route: crate::args::RouteArgs,
    /// POST /v1/verify sessions open at once (each holds a KV cache of --ctx positions)
    #[arg(long = "verify-sessions", default_value_t = 4)]
    verify_sessions: usize,
    /// Seconds a verify session may stay unused before it is dropped
    #[arg(long = "verify-idle-s", default_value_t = 60)]
    verify_idle_s: u64,
    #[command(flatten)]
    spec: crate::args::SpecArgs,
    /// Device-side split: layers 0..K of every generation here, K.. on a split server
    #[command(flatten)]
    split: crate::args::SplitArgs,
    /// Longest draft one POST /v1/verify call may carry, in tokens
    #[arg(long = "verify-max-draft", default_value_t = 64)]
    verify_max_draft: usize,
    /// Evaluate each new prompt alone, not in one pass with the others that arrived with it
    /// (the answers are the same either way; for measurements)
    #[arg(long = "no-batch-prompts")]
    no_batch_prompts: bool,
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=256).contains(&a.parallel),
        "--parallel must be between 1 and 256, got {}",
        a.parallel
    );
    anyhow::ensure!(a.time_limit > 0, "--time-limit must be at least 1 second");
    let routing = a
        .route
        .load()?
        .map(|(remote, policy)| kestrel_server::RouteConfig { remote, policy });
    let path = models::resolve(a.model.model.as_deref())?;
    let model_id = match a.alias.clone().filter(|s| !s.is_empty()) {
        Some(alias) => alias,
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("model path has no file name")?,
    };
    let engine = a.model.load()?;
    let n_ctx = engine.n_ctx();
    let spec = a.spec.serve_spec(&engine)?;
    let split_remote = a.split.config(|m| eprintln!("kestrel serve: split: {m}"))?;
    if let Some(s) = &split_remote {
        let n_layer = engine.model.hparams().n_layer;
        anyhow::ensure!(
            (1..n_layer).contains(&s.k),
            "--split-layer {} outside 1..{n_layer} for this {n_layer}-layer model",
            s.k
        );
        anyhow::ensure!(
            spec.is_none(),
            "--split-remote and --draft cannot be used together"
        );
    }
    let threads = engine.pool.n_threads();
    // Split devices authenticate as every client does (the server's key).
    let split_server = a
        .split_server
        .then(|| kestrel_collab::split::SplitServerConfig {
            max_sessions: a.parallel,
            idle: Duration::from_secs(a.split_idle.max(1)),
            max_ctx: n_ctx,
            max_batch: a.model.batch.max(1),
            threads,
            api_key: a.api_key.clone(),
        });
    let cfg = kestrel_server::ServerConfig {
        host: a.host,
        port: a.port,
        api_key: a.api_key,
        parallel: a.parallel,
        queue: a.queue,
        time_limit: Duration::from_secs(a.time_limit),
        session_dir: a.session_dir,
        max_body: a.max_body,
        conn: kestrel_server::listen::ConnLimits {
            max_connections: a.max_connections.max(1),
            header_timeout: Duration::from_secs(a.read_timeout.max(1)),
            body_timeout: Duration::from_secs(a.read_timeout.max(1)),
            ..Default::default()
        },
        model_id: model_id.clone(),
        routing: routing.clone(),
        verify: kestrel_server::VerifyConfig {
            max_sessions: a.verify_sessions,
            idle: Duration::from_secs(a.verify_idle_s.max(1)),
            max_draft: a.verify_max_draft.max(1),
        },
        spec,
        split: split_remote.clone(),
        batch_prompts: !a.no_batch_prompts,
        // Served on the engine thread with its pool, between decode steps.
        split_server,
    };
    let parallel = cfg.parallel;
    let with_split = if cfg.split_server.is_some() {
        ", split inference at /split/v1"
    } else {
        ""
    };
    kestrel_server::run(engine, cfg, |addr| {
        eprintln!(
            "kestrel serve: listening on http://{addr} (model {model_id}, {parallel} parallel sequences of {n_ctx} tokens, {threads} threads{with_split})"
        );
        if let Some(s) = &split_remote {
            eprintln!(
                "kestrel serve: splitting at layer {} with {} ({} wire, timeout {} ms; the device finishes alone if it fails)",
                s.k,
                s.remote,
                s.wire.as_str(),
                s.timeout.as_millis()
            );
        }
        if let Some(r) = &routing {
            eprintln!(
                "kestrel serve: routing to {} (time limit {} ms; policy {})",
                r.remote.base(),
                r.remote.timeout().as_millis(),
                serde_json::to_string(&r.policy).unwrap_or_default()
            );
        }
    })?;
    Ok(())
}
