//! The split route on its own listener and runtime, without the OpenAI routes: for tests and
//! tools that need a split server inside the process. `kill` drops every connection at once,
//! as a crashed server would.

use crate::error::{CollabError, Result};
use crate::split::server::{router, SplitServerConfig};
use kestrel_model::Model;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct StandaloneServer {
    pub addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl StandaloneServer {
    /// Listen on `bind` (`127.0.0.1:0` picks a free port; see `addr`).
    pub fn start(model: Arc<Model>, cfg: SplitServerConfig, bind: &str) -> Result<Self> {
        let app = router(model, cfg)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| CollabError::Io(format!("starting the runtime: {e}")))?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(bind))
            .map_err(|e| CollabError::Io(format!("binding {bind}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CollabError::Io(e.to_string()))?;
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(StandaloneServer { addr, rt: Some(rt) })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop now: the listener and every open connection close; sessions are lost.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for StandaloneServer {
    fn drop(&mut self) {
        self.kill();
    }
}
