//! `POST /split/v1` (`--split-server`): a split device's message, answered on the engine
//! thread (`SplitSessions::serve`) between decode steps, as a verify call is.

use super::Shared;
use crate::error::ApiError;
use crate::metrics::OTHER;
use crate::sched::Job;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::oneshot;

pub(crate) async fn handle(State(st): State<Shared>, body: Bytes) -> Response {
    st.metrics.requests[OTHER].fetch_add(1, Relaxed);
    let (tx, rx) = oneshot::channel();
    if let Err(e) = st.sched.submit_side(Job::Split { body, reply: tx }) {
        return e.into_response();
    }
    match rx.await {
        Ok(answer) => kestrel_collab::split::server::response(answer),
        Err(_) => ApiError::internal("the engine dropped the request").into_response(),
    }
}
