//! The acceptance rule of speculative sampling. A draft token `x` drawn from the drafter's
//! distribution q is kept with probability min(1, p(x)/q(x)); otherwise the target's token is
//! drawn from norm(max(0, p - q)). The token that results is distributed exactly as p. With a
//! greedy target (p a point mass) this keeps `x` exactly when it is the target's argmax.

use kestrel_model::sampler::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Rejected; the target's replacement token.
    Reject(u32),
}

fn prob_of(d: &[(u32, f64)], t: u32) -> f64 {
    d.iter().find(|e| e.0 == t).map_or(0.0, |e| e.1)
}

/// Judge draft token `x` against the target's distribution `p`, the drafter having drawn it
/// from `q` (empty: chosen with certainty). `q_dense` is scratch (grown to the vocabulary as
/// needed, left all zero) so a wide q costs linear time.
pub fn judge(
    x: u32,
    p: &[(u32, f64)],
    q: &[(u32, f64)],
    rng: &mut Rng,
    q_dense: &mut Vec<f64>,
) -> Verdict {
    let px = prob_of(p, x);
    let qx = if q.is_empty() { 1.0 } else { prob_of(q, x) };
    if qx > 0.0 && px >= qx {
        return Verdict::Accept;
    }
    // A draw is spent only when the outcome is uncertain, so greedy runs use none here.
    if qx > 0.0 && px > 0.0 && rng.next_f64() < px / qx {
        return Verdict::Accept;
    }
    Verdict::Reject(residual_draw(x, p, q, rng, q_dense))
}

/// A draw from norm(max(0, p - q)).
fn residual_draw(
    x: u32,
    p: &[(u32, f64)],
    q: &[(u32, f64)],
    rng: &mut Rng,
    q_dense: &mut Vec<f64>,
) -> u32 {
    let max_id = p
        .iter()
        .chain(q.iter())
        .map(|e| e.0 as usize)
        .max()
        .unwrap_or(0)
        .max(x as usize);
    if q_dense.len() <= max_id {
        q_dense.resize(max_id + 1, 0.0);
    }
    if q.is_empty() {
        q_dense[x as usize] = 1.0;
    } else {
        for &(t, w) in q {
            q_dense[t as usize] += w;
        }
    }
    let resid = |t: u32, pt: f64, qd: &[f64]| (pt - qd[t as usize]).max(0.0);
    let total: f64 = p.iter().map(|&(t, pt)| resid(t, pt, q_dense)).sum();
    let mut pick = None;
    if total > 0.0 {
        let r = rng.next_f64() * total;
        let mut cum = 0.0;
        for &(t, pt) in p {
            let w = resid(t, pt, q_dense);
            cum += w;
            if w > 0.0 && r < cum {
                pick = Some(t);
                break;
            }
        }
        // Rounding left `r` past the sum: the last token with residual mass.
        if pick.is_none() {
            pick = p
                .iter()
                .rev()
                .find(|&&(t, pt)| resid(t, pt, q_dense) > 0.0)
                .map(|e| e.0);
        }
    }
    // Clean the scratch for the next call.
    if q.is_empty() {
        q_dense[x as usize] = 0.0;
    } else {
        for &(t, _) in q {
            q_dense[t as usize] = 0.0;
        }
    }
    // p <= q everywhere means p == q up to rounding (x would then have been accepted): fall back
    // to a draw from p itself.
    pick.unwrap_or_else(|| draw(p, rng))
}

/// A draw from the distribution `p` (probabilities summing to 1).
pub fn draw(p: &[(u32, f64)], rng: &mut Rng) -> u32 {
    let r = rng.next_f64();
    let mut cum = 0.0;
    for &(t, pt) in p {
        cum += pt;
        if r < cum {
            return t;
        }
    }
    p.iter().rev().find(|e| e.1 > 0.0).map_or(0, |e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_target_accepts_exactly_its_argmax() {
        let mut rng = Rng::new(1);
        let mut scratch = Vec::new();
        let p = [(7u32, 1.0)];
        assert_eq!(judge(7, &p, &[], &mut rng, &mut scratch), Verdict::Accept);
        assert_eq!(
            judge(3, &p, &[], &mut rng, &mut scratch),
            Verdict::Reject(7)
        );
        let q = [(3u32, 0.6), (7, 0.4)];
        assert_eq!(judge(3, &p, &q, &mut rng, &mut scratch), Verdict::Reject(7));
        assert!(scratch.iter().all(|&w| w == 0.0));
    }
}
