//! A hook for calibration tools into the forward pass.

/// Sees the input of every matrix multiplication of a forward pass: `x` holds `n` rows of
/// `cols` inputs to the weight named `weight` (a fused weight's slices carry a `[a..b]`
/// suffix). Importance matrices and pruning statistics are collected through it.
pub trait MatmulObserver: Sync {
    fn observe(&self, weight: &str, x: &[f32], n: usize, cols: usize);
}
