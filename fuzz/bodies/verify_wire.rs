//! The remote-verification messages on arbitrary bytes: a `POST /v1/verify` body and the
//! server's answer, as JSON. What decodes must encode, and its encoding must be stable: decoded
//! and encoded again it is the same JSON. (Not the same as the input: a number too large for
//! an f32, such as a top_p of 1e300, decodes as infinity, which JSON writes as null; found by
//! this target.)
//!
//! One input's run, shared by the fuzz target (fuzz/fuzz_targets) and the replay of the
//! corpus in the workspace's tests.

use kestrel_collab::verify::proto::{VerifyRequest, VerifyResponse};

fn again<T: serde::Serialize + serde::de::DeserializeOwned>(x: &T) -> String {
    let s = serde_json::to_string(x).unwrap();
    let back: T = serde_json::from_str(&s).expect("an encoded message decodes");
    serde_json::to_string(&back).unwrap()
}

pub fn run(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<VerifyRequest>(data) {
        let once: VerifyRequest = serde_json::from_str(&again(&r)).unwrap();
        assert_eq!(again(&once), serde_json::to_string(&once).unwrap());
    }
    if let Ok(r) = serde_json::from_slice::<VerifyResponse>(data) {
        let once: VerifyResponse = serde_json::from_str(&again(&r)).unwrap();
        assert_eq!(again(&once), serde_json::to_string(&once).unwrap());
    }
}
