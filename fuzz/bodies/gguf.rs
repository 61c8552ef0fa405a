//! The GGUF reader on arbitrary bytes: header, metadata and tensor directory. Whatever it
//! accepts must be safe to walk: every metadata value printed, every tensor's data slice and
//! the `--check-tensors` scan.
//!
//! One input's run, shared by the fuzz target (fuzz/fuzz_targets) and the replay of the
//! corpus in the workspace's tests.

pub fn run(data: &[u8]) {
    let Ok(g) = kestrel_gguf::GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for (k, v) in g.metadata() {
        let _ = (k.len(), v.to_string().len());
    }
    for t in g.tensors() {
        let _ = (t.n_elements(), t.row_len(), t.n_rows());
        if let Some(d) = g.try_tensor_data(t) {
            assert_eq!(d.len(), t.size);
        }
    }
    let _ = kestrel_gguf::check::check_tensors(&g, 1);
    let _ = g.fingerprint();
}
