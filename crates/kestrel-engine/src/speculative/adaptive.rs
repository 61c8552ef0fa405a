//! Draft length from the running acceptance rate. With a per-token acceptance probability a,
//! the chance that a draft's i-th token survives is a^i; drafting goes on while that chance is
//! at least `KEEP` (each extra token costs a verification row even when it is thrown away).

/// Survival probability below which another draft token is not worth its verification row.
const KEEP: f64 = 0.3;
/// Per-round decay of the acceptance counts, so the rate follows the text as it changes.
const DECAY: f64 = 0.8;

#[derive(Clone, Debug)]
pub struct DraftLength {
    max: usize,
    adaptive: bool,
    accepted: f64,
    rejected: f64,
}

impl DraftLength {
    /// Drafts of at most `max` tokens; fixed at `max` unless `adaptive`.
    pub fn new(max: usize, adaptive: bool) -> DraftLength {
        DraftLength {
            max: max.max(1),
            adaptive,
            // A mild prior (rate 0.75) so the first drafts are a few tokens long.
            accepted: 3.0,
            rejected: 1.0,
        }
    }

    /// Estimated probability that a draft token is accepted.
    pub fn rate(&self) -> f64 {
        self.accepted / (self.accepted + self.rejected)
    }

    /// Length of the next draft.
    pub fn next(&self) -> usize {
        if !self.adaptive {
            return self.max;
        }
        let a = self.rate();
        if a >= 1.0 {
            return self.max;
        }
        if a <= 0.0 {
            return 1;
        }
        let k = (KEEP.ln() / a.ln()).floor();
        (k as usize).clamp(1, self.max)
    }

    /// Record a round: `drafted` tokens proposed, the first `accepted` kept. A round that ends
    /// in a rejection counts one rejected token (the ones after it were never judged).
    pub fn update(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        self.accepted = self.accepted * DECAY + accepted as f64;
        self.rejected = self.rejected * DECAY + if accepted < drafted { 1.0 } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_follows_acceptance() {
        let mut d = DraftLength::new(8, true);
        for _ in 0..20 {
            d.update(4, 4);
        }
        assert_eq!(d.next(), 8);
        for _ in 0..20 {
            d.update(4, 0);
        }
        assert_eq!(d.next(), 1);
        assert_eq!(DraftLength::new(5, false).next(), 5);
    }
}
