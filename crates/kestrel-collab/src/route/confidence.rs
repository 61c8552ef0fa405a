//! The local model's confidence in a token: the entropy of its next-token distribution and the
//! probability of its most likely token, both from the raw logits (temperature 1, no biases),
//! and their means over the first tokens of an answer.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TokenConfidence {
    /// Entropy in nats.
    pub entropy: f32,
    /// Probability of the most likely token.
    pub top1: f32,
}

impl TokenConfidence {
    /// From one position's logits. Banned (-inf) logits count as probability 0; logits with no
    /// finite value at all give the least confident answer rather than NaN.
    pub fn of_logits(logits: &[f32]) -> TokenConfidence {
        let max = logits
            .iter()
            .copied()
            .filter(|l| l.is_finite())
            .fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return TokenConfidence {
                entropy: (logits.len().max(1) as f32).ln(),
                top1: 0.0,
            };
        }
        // With e_i = exp(l_i - max) and z = sum e_i: H = ln z - sum e_i (l_i - max) / z, and
        // the top token's probability is 1 / z. f64 sums: the vocabulary is 50k-260k entries.
        let (mut z, mut s) = (0.0f64, 0.0f64);
        for &l in logits {
            if l.is_finite() {
                let d = (l - max) as f64;
                let e = d.exp();
                z += e;
                s += e * d;
            }
        }
        TokenConfidence {
            entropy: (z.ln() - s / z).max(0.0) as f32,
            top1: (1.0 / z) as f32,
        }
    }
}

/// Running means over the tokens seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Confidence {
    pub tokens: usize,
    pub mean_entropy: f32,
    pub mean_top1: f32,
}

impl Confidence {
    pub fn push(&mut self, t: TokenConfidence) {
        let n = self.tokens as f32;
        self.mean_entropy = (self.mean_entropy * n + t.entropy) / (n + 1.0);
        self.mean_top1 = (self.mean_top1 * n + t.top1) / (n + 1.0);
        self.tokens += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_and_peaked() {
        let u = TokenConfidence::of_logits(&[0.0; 4]);
        assert!((u.entropy - 4f32.ln()).abs() < 1e-5);
        assert!((u.top1 - 0.25).abs() < 1e-6);
        let p = TokenConfidence::of_logits(&[100.0, 0.0, 0.0, f32::NEG_INFINITY]);
        assert!(p.entropy < 1e-3 && p.top1 > 0.999);
        // Two equal tokens and two banned: entropy ln 2.
        let h = TokenConfidence::of_logits(&[1.0, 1.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert!((h.entropy - 2f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn means() {
        let mut c = Confidence::default();
        c.push(TokenConfidence {
            entropy: 1.0,
            top1: 0.2,
        });
        c.push(TokenConfidence {
            entropy: 3.0,
            top1: 0.6,
        });
        assert_eq!(c.tokens, 2);
        assert!((c.mean_entropy - 2.0).abs() < 1e-6 && (c.mean_top1 - 0.4).abs() < 1e-6);
    }
}
