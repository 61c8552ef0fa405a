//! The remote-verification messages on arbitrary bytes: a `POST /v1/verify` body and the
//! server's answer, as JSON (what decodes must encode back to the same value).
//!
//! One input's run, shared by the fuzz target (fuzz/fuzz_targets) and the replay of the
//! corpus in the workspace's tests.

use kestrel_collab::verify::proto::{VerifyRequest, VerifyResponse};

pub fn run(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<VerifyRequest>(data) {
        let again: VerifyRequest =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&r).unwrap()
        );
    }
    if let Ok(r) = serde_json::from_slice::<VerifyResponse>(data) {
        let _ = serde_json::to_string(&r).unwrap();
    }
}
