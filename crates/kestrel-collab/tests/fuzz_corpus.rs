//! The split and verify wire fuzz targets' corpora (fuzz/corpus/split_wire, verify_wire)
//! replayed through the targets' own runs (fuzz/bodies): every message decodes cleanly or is
//! refused, and what decodes round-trips.

#[path = "../../../fuzz/bodies/replay.rs"]
mod replay;
#[path = "../../../fuzz/bodies/split_wire.rs"]
mod split_wire;
#[path = "../../../fuzz/bodies/verify_wire.rs"]
mod verify_wire;

#[test]
fn split_wire_corpus() {
    replay::replay("split_wire", split_wire::run);
}

#[test]
fn verify_wire_corpus() {
    replay::replay("verify_wire", verify_wire::run);
}
