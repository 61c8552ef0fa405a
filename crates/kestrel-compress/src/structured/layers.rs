//! Which blocks to drop: a block whose output hidden state is nearly its input (cosine close to
//! 1 over calibration tokens) changes the residual stream least, so it is removed first (the
//! "block influence" criterion of ShortGPT, Men et al., 2024).
//!
//! Architectures whose blocks differ by index (Gemma 3: every 6th block attends globally, the
//! others over a sliding window, and llama.cpp derives that from the index, reading no
//! per-layer array) only allow drops after which every kept block still sits at an index of its
//! own kind; among those the best set is found by dynamic programming.

use crate::calib::Chunks;
use crate::{CompressError, Result};
use kestrel_engine::Engine;
use kestrel_model::{Hparams, StageInput, StageOutput};

/// Mean cosine similarity between each block's input and output hidden state, one value per
/// block, over every position of every chunk. `progress(done, total)` after each chunk.
pub fn block_similarity(
    engine: &Engine,
    c: &Chunks,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let hp = engine.model.hparams();
    let (e, nl) = (hp.n_embd, hp.n_layer);
    let mut sums = vec![0.0f64; nl];
    let mut count = vec![0usize; nl];
    let mut s = engine.model.new_session(c.n_ctx, c.n_ctx);
    let (mut h_in, mut h_out) = (Vec::new(), Vec::new());
    for (ci, chunk) in c.chunks.iter().enumerate() {
        s.reset();
        h_in.clear();
        let (m, pool) = (&engine.model, &engine.pool);
        m.forward_stage(
            &mut s,
            pool,
            StageInput::Tokens(chunk),
            0..0,
            StageOutput::Hidden(&mut h_in),
        )?;
        for il in 0..nl {
            // Each block runs alone from position 0: only its own KV cache is written.
            s.reset();
            h_out.clear();
            m.forward_stage(
                &mut s,
                pool,
                StageInput::Hidden(&h_in),
                il..il + 1,
                StageOutput::Hidden(&mut h_out),
            )?;
            for (a, b) in h_in.chunks_exact(e).zip(h_out.chunks_exact(e)) {
                if let Some(cos) = cosine(a, b) {
                    sums[il] += cos;
                    count[il] += 1;
                }
            }
            std::mem::swap(&mut h_in, &mut h_out);
        }
        progress(ci + 1, c.chunks.len());
    }
    Ok(sums
        .iter()
        .zip(&count)
        .map(|(s, &n)| if n == 0 { 0.0 } else { s / n as f64 })
        .collect())
}

fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let d = (aa * bb).sqrt();
    (d > 0.0 && d.is_finite()).then(|| ab / d)
}

/// The kind of block `i` of a model where kinds depend on the index (Gemma 3's local/global
/// pattern), or `None` where all blocks are alike.
pub fn kind_rule(hp: &Hparams) -> Option<fn(usize) -> bool> {
    match hp.arch.as_str() {
        "gemma3" if hp.sliding_window.is_some() => {
            Some(kestrel_model::arch::gemma3::is_local_layer as fn(usize) -> bool)
        }
        _ => None,
    }
}

/// The `n_drop` blocks to remove (ascending): the set with the largest summed similarity such
/// that, after renumbering, every kept block has the kind its new index gives (`kind`).
pub fn choose_drops(
    sim: &[f64],
    n_drop: usize,
    kind: Option<fn(usize) -> bool>,
) -> Result<Vec<usize>> {
    let nl = sim.len();
    if n_drop == 0 || n_drop >= nl {
        return Err(CompressError::Invalid(format!(
            "--drop-layers {n_drop}: the model has {nl} blocks; drop at least 1 and keep at least 1"
        )));
    }
    let keep = nl - n_drop;
    let same = |old: usize, new: usize| kind.is_none_or(|k| k(old) == k(new));
    // best[i][j]: largest summed similarity of the dropped blocks among the first i, having
    // kept j of them (each kept block matching its new index's kind).
    let neg = f64::NEG_INFINITY;
    let mut best = vec![vec![neg; keep + 1]; nl + 1];
    best[0][0] = 0.0;
    for i in 0..nl {
        for j in 0..=keep.min(i) {
            let v = best[i][j];
            if v == neg {
                continue;
            }
            if i - j < n_drop && v + sim[i] > best[i + 1][j] {
                best[i + 1][j] = v + sim[i];
            }
            if j < keep && same(i, j) && v > best[i + 1][j + 1] {
                best[i + 1][j + 1] = v;
            }
        }
    }
    if best[nl][keep] == neg {
        return Err(CompressError::Invalid(format!(
            "no {n_drop} of the {nl} blocks can be dropped while keeping the architecture's per-index layer pattern"
        )));
    }
    // Walk back: block i was kept where that reproduces the optimum.
    let mut drops = Vec::new();
    let mut j = keep;
    for i in (0..nl).rev() {
        let v = best[i + 1][j];
        if j > 0 && same(i, j - 1) && best[i][j - 1] == v {
            j -= 1;
        } else {
            drops.push(i);
        }
    }
    drops.reverse();
    Ok(drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_pattern_the_most_similar_blocks_go() {
        let sim = [0.5, 0.9, 0.7, 0.95, 0.2];
        assert_eq!(choose_drops(&sim, 2, None).unwrap(), vec![1, 3]);
        assert_eq!(choose_drops(&sim, 1, None).unwrap(), vec![3]);
        assert!(choose_drops(&sim, 5, None).is_err());
        assert!(choose_drops(&sim, 0, None).is_err());
    }

    #[test]
    fn gemma_pattern_is_kept_after_renumbering() {
        let k = kestrel_model::arch::gemma3::is_local_layer;
        // Block 2 is the most similar, but dropping it alone would shift global block 5 to a
        // local index: only the tail block (or a run of six) can go.
        let mut sim = vec![0.1; 18];
        sim[2] = 0.99;
        sim[17] = 0.3;
        let d = choose_drops(&sim, 1, Some(k)).unwrap();
        assert_eq!(d, vec![17]);
        for n in [1, 2, 4, 6] {
            let d = choose_drops(&sim, n, Some(k)).unwrap();
            assert_eq!(d.len(), n);
            let kept: Vec<usize> = (0..18).filter(|i| !d.contains(i)).collect();
            for (new, &old) in kept.iter().enumerate() {
                assert_eq!(k(new), k(old), "drops {d:?}");
            }
        }
        // Six in a row, one of them global, keep the pattern: the run holding block 2 wins.
        let d = choose_drops(&sim, 6, Some(k)).unwrap();
        assert!(d.contains(&2), "{d:?}");
    }
}
