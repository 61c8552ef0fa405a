//! Token sampling: repetition penalty, top-k, top-p, min-p, temperature, then a seeded draw —
//! the order of llama.cpp's default chain. Temperature <= 0 means greedy.

/// Sampling settings. `Default` matches llama.cpp's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Checks the ranges; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(format!(
                "repeat_penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        Ok(())
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, reproducible across platforms.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    recent: std::collections::VecDeque<u32>,
    // Reused between calls so sampling allocates nothing per token after the first.
    cand: Vec<(u32, f32)>,
    probs: Vec<f64>,
    /// Probabilities of a large candidate set (f32, from the kernels' vector softmax).
    wide: Vec<f32>,
    /// Added to the logits of these tokens after the repetition penalty (OpenAI's
    /// `logit_bias`; -inf bans a token).
    bias: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        Sampler {
            rng: Rng::new(cfg.seed),
            recent: Default::default(),
            cand: Vec::new(),
            probs: Vec::new(),
            wide: Vec::new(),
            bias: Vec::new(),
            cfg,
        }
    }

    /// Add `b` to the logit of token `t` for each `(t, b)` before every draw; ids outside the
    /// vocabulary are ignored.
    pub fn with_bias(mut self, bias: Vec<(u32, f32)>) -> Sampler {
        self.bias = bias;
        self
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Record a token as part of the sequence (prompt or generated) for the repetition penalty.
    pub fn accept(&mut self, tok: u32) {
        if self.cfg.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.cfg.repeat_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(tok);
    }

    /// Choose the next token from a row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        match self.prepare(logits) {
            Some(t) => t,
            None => self.draw(self.cfg.temperature),
        }
    }

    /// The greedy token, or `None` with the surviving candidates left in `self.cand`.
    fn prepare(&mut self, logits: &[f32]) -> Option<u32> {
        let c = &self.cfg;
        self.cand.clear();
        self.cand
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if c.repeat_penalty != 1.0 {
            for &t in &self.recent {
                if let Some(e) = self.cand.get_mut(t as usize) {
                    // Applied once per distinct token, as llama.cpp does.
                    if logits[t as usize] == e.1 {
                        e.1 = if e.1 > 0.0 {
                            e.1 / c.repeat_penalty
                        } else {
                            e.1 * c.repeat_penalty
                        };
                    }
                }
            }
        }
        for &(t, b) in &self.bias {
            if let Some(e) = self.cand.get_mut(t as usize) {
                e.1 += b;
            }
        }
        if c.temperature <= 0.0 {
            let mut best = 0;
            for (i, &(_, l)) in self.cand.iter().enumerate() {
                if l > self.cand[best].1 {
                    best = i;
                }
            }
            return Some(self.cand[best].0);
        }
        let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        let truncates =
            (c.top_k > 0 && c.top_k < self.cand.len()) || c.top_p < 1.0 || c.min_p > 0.0;
        if !truncates {
            // Nothing is cut off, so the order of the candidates does not matter: draw from the
            // whole distribution as it stands (sorting a 50-250K vocabulary costs milliseconds).
            return None;
        }
        if c.top_k > 0 && c.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(c.top_k - 1, by_logit_desc);
            self.cand.truncate(c.top_k);
        }
        self.cand.sort_unstable_by(by_logit_desc);
        // Probabilities before temperature decide top-p and min-p.
        softmax_of(&self.cand, 1.0, &mut self.probs);
        let probs = &self.probs;
        if c.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = self.cand.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            self.cand.truncate(keep.max(1));
        }
        if c.min_p > 0.0 {
            let pmax = probs[0];
            let keep = probs
                .iter()
                .take(self.cand.len())
                .take_while(|&&p| p >= c.min_p as f64 * pmax)
                .count();
            self.cand.truncate(keep.max(1));
        }
        None
    }

    /// A draw from the softmax of the remaining candidates at `temperature`.
    fn draw(&mut self, temperature: f32) -> u32 {
        if self.cand.len() >= WIDE {
            return self.draw_wide(temperature);
        }
        softmax_of(&self.cand, temperature, &mut self.probs);
        let r = self.rng.next_f64();
        let mut cum = 0.0;
        for (i, p) in self.probs.iter().enumerate() {
            cum += p;
            if r < cum {
                return self.cand[i].0;
            }
        }
        // Rounding left `r` past the sum: the last candidate that can be drawn at all.
        let last = self.probs.iter().rposition(|&p| p > 0.0).unwrap_or(0);
        self.cand[last].0
    }
}

/// Candidate sets this large (a whole vocabulary: nothing was cut off) take the kernels'
/// vector softmax: a scalar f64 `exp` per token costs milliseconds on a 150-260K vocabulary,
/// per sampled token and sequence.
const WIDE: usize = 4096;

impl Sampler {
    /// [`Sampler::draw`] over a large candidate set: the softmax of `logit / temperature` by
    /// the attention softmax's exponential (llama.cpp's, ~1.5 ulp in f32), then the same walk
    /// of cumulative probabilities (summed in f64) as the small sets take.
    fn draw_wide(&mut self, temperature: f32) -> u32 {
        self.wide.clear();
        self.wide
            .extend(self.cand.iter().map(|c| c.1 / temperature));
        kestrel_kernels::kernels().softmax_cells(&mut self.wide, 0);
        let r = self.rng.next_f64();
        let mut cum = 0.0;
        for (i, &p) in self.wide.iter().enumerate() {
            cum += p as f64;
            if r < cum {
                return self.cand[i].0;
            }
        }
        let last = self.wide.iter().rposition(|&p| p > 0.0).unwrap_or(0);
        self.cand[last].0
    }
}

fn softmax_of(cand: &[(u32, f32)], temp: f32, out: &mut Vec<f64>) {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    out.clear();
    out.extend(cand.iter().map(|c| (((c.1 - max) / temp) as f64).exp()));
    let s: f64 = out.iter().sum();
    for x in out.iter_mut() {
        *x /= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9]), 1);
    }

    #[test]
    fn bias_moves_and_bans_tokens() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        let mut s = Sampler::new(SamplerConfig::greedy()).with_bias(vec![(1, -0.5), (9, 5.0)]);
        assert_eq!(s.sample(&logits), 3);
        // A banned token is never drawn, whatever the temperature.
        let cfg = SamplerConfig {
            temperature: 2.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg).with_bias(vec![(1, f32::NEG_INFINITY)]);
        assert!((0..200).all(|_| s.sample(&logits) != 1));
    }

    #[test]
    fn seed_reproduces_and_top_k_1_is_greedy() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let cfg = SamplerConfig {
            temperature: 1.0,
            seed: 42,
            ..Default::default()
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone());
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone());
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        let mut s = Sampler::new(SamplerConfig { top_k: 1, ..cfg });
        let best = kestrel_kernels::ops::argmax(&logits) as u32;
        assert!((0..10).all(|_| s.sample(&logits) == best));
    }

    #[test]
    fn sampling_follows_distribution() {
        // Two tokens with probabilities 0.75 / 0.25 at temperature 1, no truncation.
        let logits = [3f32.ln(), 0.0];
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg);
        let n = 20000;
        let zeros = (0..n).filter(|_| s.sample(&logits) == 0).count();
        let frac = zeros as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.015, "{frac}");
    }

    #[test]
    fn a_whole_vocabulary_follows_its_distribution() {
        // 50,000 tokens (the vector path): three of them hold 0.5 / 0.2 / 0.1 of the mass at
        // temperature 2, the rest share 0.2 evenly, and one is banned.
        let n_vocab = 50_000;
        let rest = 0.2 / (n_vocab - 4) as f64;
        let mut logits = vec![(rest.ln() * 2.0) as f32; n_vocab];
        for (t, p) in [(123usize, 0.5f64), (40_000, 0.2), (7, 0.1)] {
            logits[t] = (p.ln() * 2.0) as f32;
        }
        let cfg = SamplerConfig {
            temperature: 2.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 11,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg).with_bias(vec![(9, f32::NEG_INFINITY)]);
        let n = 40_000;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..n {
            *counts.entry(s.sample(&logits)).or_insert(0usize) += 1;
        }
        assert!(!counts.contains_key(&9), "a banned token was drawn");
        // The banned token's share goes to the others in proportion.
        let total = 1.0 - rest;
        for (t, p) in [(123u32, 0.5f64), (40_000, 0.2), (7, 0.1)] {
            let frac = counts.get(&t).copied().unwrap_or(0) as f64 / n as f64;
            assert!((frac - p / total).abs() < 0.01, "token {t}: {frac} vs {p}");
        }
        let others = n - counts[&123] - counts[&40_000] - counts[&7];
        let frac = others as f64 / n as f64;
        assert!(
            (frac - (0.2 - rest) / total).abs() < 0.01,
            "the rest: {frac}"
        );
    }

    #[test]
    fn top_p_cuts_the_tail_and_renormalizes() {
        // 0.6 / 0.3 / 0.1 in shuffled order; top-p 0.85 keeps the first two: 2/3 and 1/3.
        let logits = [0.1f32.ln(), 0.6f32.ln(), 0.3f32.ln()];
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.85,
            min_p: 0.0,
            seed: 11,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg);
        let n = 20000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[s.sample(&logits) as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        let frac = counts[1] as f64 / n as f64;
        assert!((frac - 2.0 / 3.0).abs() < 0.015, "{frac}");
    }

    #[test]
    fn repeat_penalty_demotes_recent() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        });
        s.accept(0);
        assert_eq!(s.sample(&[2.0, 1.5]), 1);
    }

    #[test]
    fn validate_rejects_bad_values() {
        assert!(SamplerConfig {
            top_p: 0.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(SamplerConfig {
            temperature: -1.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(SamplerConfig::default().validate().is_ok());
    }
}
