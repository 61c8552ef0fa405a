//! Bad input to a split server gets a clear refusal with the right code and HTTP status: an
//! unknown session, a session that expired while idle, another model, another protocol
//! version, garbage, a step out of order, and too many sessions.

mod common;

use common::{engine, model_path, GEMMA3, SMOLLM2};
use kestrel_collab::split::client::Client;
use kestrel_collab::split::proto::{ErrorCode, Reply, Request, ROUTE, VERSION};
use kestrel_collab::split::{ReplyMode, SplitServerConfig, StandaloneServer, WireFormat};
use kestrel_collab::CollabError;
use std::time::Duration;

fn open_req(fp: u64, k: u16) -> Request {
    Request::Open {
        fingerprint: fp,
        k,
        wire: WireFormat::F32,
        reply: ReplyMode::Full,
        n_ctx: 64,
        n_batch: 16,
    }
}

#[track_caller]
fn refused(r: kestrel_collab::Result<Reply>, want: ErrorCode) -> String {
    match r {
        Err(CollabError::Refused { code, message }) if code == want => message,
        other => panic!("wanted a {want:?} refusal, got {other:?}"),
    }
}

/// POST raw bytes; the HTTP status and the decoded reply.
fn post_raw(url: &str, body: Vec<u8>) -> (u16, kestrel_collab::Result<Reply>) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{url}{ROUTE}"))
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, Reply::decode(&r.bytes().unwrap()))
}

#[test]
fn bad_requests_get_clear_refusals() {
    let Some(e) = engine(SMOLLM2, 1) else { return };
    let cfg = SplitServerConfig {
        max_sessions: 1,
        idle: Duration::from_secs(1),
        max_ctx: 64,
        max_batch: 16,
        threads: 1,
        api_key: None,
    };
    let srv = StandaloneServer::start(e.model.clone(), cfg, "127.0.0.1:0").unwrap();
    let url = srv.url();
    let fp = e.model.gguf.fingerprint();
    let mut c = Client::new(&url, Duration::from_secs(10), None).unwrap();

    // Unknown session: never opened.
    let step = |session: u64, pos: u32| Request::Step {
        session,
        pos,
        rows: 1,
        want_logits: true,
        payload: vec![0u8; 576 * 4],
    };
    let m = refused(c.call(&step(12345, 0)), ErrorCode::UnknownSession);
    assert!(m.contains("unknown or expired session"), "{m}");
    let (status, _) = post_raw(&url, step(12345, 0).encode());
    assert_eq!(status, 404);

    // Another model's fingerprint.
    let m = refused(c.call(&open_req(fp ^ 1, 5)), ErrorCode::ModelMismatch);
    assert!(m.contains(&format!("{fp:016x}")), "{m}");

    // A split layer outside 1..n.
    refused(c.call(&open_req(fp, 0)), ErrorCode::Compute);
    refused(c.call(&open_req(fp, 30)), ErrorCode::Compute);

    // Another protocol version: the server answers in its own version, naming both.
    let mut b = open_req(fp, 5).encode();
    b[4..6].copy_from_slice(&(VERSION + 1).to_le_bytes());
    let (status, r) = post_raw(&url, b);
    assert_eq!(status, 400);
    match r {
        Ok(Reply::Error {
            code: ErrorCode::VersionMismatch,
            message,
        }) => assert!(
            message.contains(&format!("version {}", VERSION + 1)),
            "{message}"
        ),
        other => panic!("wanted a version refusal, got {other:?}"),
    }
    // And a device reading a reply of another version says so.
    let mut reply = Reply::Closed.encode();
    reply[4..6].copy_from_slice(&(VERSION + 1).to_le_bytes());
    assert!(matches!(
        Reply::decode(&reply),
        Err(CollabError::Version { .. })
    ));

    // Garbage.
    let (status, r) = post_raw(&url, b"GET / HTTP/1.1".to_vec());
    assert_eq!(status, 400);
    assert!(
        matches!(
            r,
            Ok(Reply::Error {
                code: ErrorCode::Malformed,
                ..
            })
        ),
        "{r:?}"
    );

    // A real session: a step at the wrong position, a payload of the wrong size, then a
    // second session beyond max_sessions.
    let Reply::Opened {
        session,
        n_layer,
        n_embd,
        ..
    } = c.call(&open_req(fp, 5)).unwrap()
    else {
        panic!("open failed")
    };
    assert_eq!((n_layer, n_embd), (30, 576));
    let m = refused(c.call(&step(session, 3)), ErrorCode::OutOfOrder);
    assert!(m.contains("position 3"), "{m}");
    let mut short = step(session, 0);
    if let Request::Step { payload, .. } = &mut short {
        payload.truncate(100);
    }
    refused(c.call(&short), ErrorCode::Malformed);
    refused(c.call(&open_req(fp, 5)), ErrorCode::Busy);
    assert!(
        matches!(c.call(&step(session, 0)), Ok(Reply::Logits(l)) if l.len() == e.model.hparams().n_vocab)
    );

    // Idle past the limit: the session expires and is then unknown.
    std::thread::sleep(Duration::from_millis(2200));
    refused(c.call(&step(session, 1)), ErrorCode::UnknownSession);
    // Its slot is free again.
    assert!(matches!(c.call(&open_req(fp, 5)), Ok(Reply::Opened { .. })));
}

#[test]
fn a_device_with_another_model_falls_back_with_the_reason() {
    let Some(dev) = engine(SMOLLM2, 1) else {
        return;
    };
    let Some(_) = model_path(GEMMA3) else { return };
    let Some(other) = engine(GEMMA3, 1) else {
        return;
    };
    let srv = common::server(&other, 1);
    let cfg = kestrel_collab::split::SplitConfig {
        remote: srv.url(),
        k: 5,
        wire: WireFormat::F16,
        reply: ReplyMode::Full,
        timeout: Duration::from_secs(10),
        api_key: None,
        on_event: None,
    };
    let d = kestrel_collab::split::SplitDevice::open(&dev.model, &dev.pool, 64, 16, cfg).unwrap();
    assert!(!d.is_remote());
    let (at, why) = d.stats().fallback.clone().expect("fell back");
    assert_eq!(at, 0);
    assert!(why.contains("ModelMismatch"), "{why}");
}
