//! The split protocol's decoders on arbitrary bytes: requests and replies (a message that
//! decodes must encode back to a message that decodes to the same value), and the hidden-state
//! wire formats for row counts and widths taken from the input.
//!
//! One input's run, shared by the fuzz target (fuzz/fuzz_targets) and the replay of the
//! corpus in the workspace's tests.

use kestrel_collab::split::proto::{Reply, Request};
use kestrel_collab::split::WireFormat;

pub fn run(data: &[u8]) {
    if let Ok(r) = Request::decode(data) {
        assert_eq!(Request::decode(&r.encode()).ok(), Some(r));
    }
    if let Ok(r) = Reply::decode(data) {
        let again = Reply::decode(&r.encode()).ok();
        // NaN logits do not compare equal; compare the bytes instead.
        assert_eq!(again.map(|a| a.encode()), Some(r.encode()));
    }
    if data.len() >= 3 {
        let rows = data[0] as usize % 9;
        let n_embd = 1 + data[1] as usize % 64;
        let body = &data[3..];
        for w in ["f32", "f16", "q8"] {
            if let Ok(f) = WireFormat::parse(w) {
                if let Ok(x) = f.decode(body, rows, n_embd) {
                    assert_eq!(x.len(), rows * n_embd);
                }
            }
        }
    }
}
