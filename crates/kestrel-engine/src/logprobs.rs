//! Log-probabilities under the model's distribution (log-softmax of the raw logits, before
//! temperature, top-k or top-p), as OpenAI's `logprobs` reports them.

use kestrel_kernels::ops;

/// The log-probability of `id` in `logits`, and the `top` most likely tokens with theirs,
/// most likely first (ties: lower id first).
pub fn logprobs(logits: &[f32], id: u32, top: usize) -> (f32, Vec<(u32, f32)>) {
    let lse = ops::logsumexp(logits);
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top || l > best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, b)| b >= l);
                best.insert(at, (i as u32, l));
                best.truncate(top);
            }
        }
    }
    for b in best.iter_mut() {
        b.1 -= lse;
    }
    (logits[id as usize] - lse, best)
}
