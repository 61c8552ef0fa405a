//! Replays a fuzz target's corpus (fuzz/corpus/TARGET) through its run, for the workspace's
//! tests: every input kept so far must still end cleanly.

/// Run `run` on every input of `fuzz/corpus/TARGET`; panics name the inputs that failed.
pub fn replay(target: &str, run: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut failed = Vec::new();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        // A fuzzer running beside the tests may have just replaced the file.
        let Ok(data) = std::fs::read(&p) else {
            continue;
        };
        n += 1;
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(p.display().to_string());
        }
    }
    assert!(n > 0, "{}: no inputs", dir.display());
    assert!(
        failed.is_empty(),
        "{target}: {} of {n} inputs failed: {failed:?}",
        failed.len()
    );
}
