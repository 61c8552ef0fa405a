//! The five architectures as tiny synthetic models (spec, weights, reference settings), shared
//! by tests/arch_blocks.rs and tests/model_errors.rs.

#![allow(dead_code)]

use crate::synth::*;
use kestrel_model::Model;

/// Token ids with repeats, so attention sees identical keys at different positions.
pub const TOKENS: &[u32] = &[1, 17, 42, 3, 17, 29, 8, 49, 0, 33, 17, 12];

/// Relative difference allowed where the computation is the same (thread count, a reset
/// session): in practice bit-identical.
pub const TOL_BATCH: f64 = 1e-6;

pub fn assert_same(name: &str, what: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    let d = rel_diff_f32(a, b);
    assert!(
        d <= TOL_BATCH,
        "{name}: {what}: relative difference {d:.3e}"
    );
}

pub fn load(s: &Synth) -> Model {
    s.load()
        .unwrap_or_else(|e| panic!("synthetic model does not load: {e}"))
}

pub fn llama() -> (Spec, Weights, RefCfg) {
    let mut spec = Spec::tiny("llama", 3);
    spec.linear_rope_factor = Some(2.0);
    let w = gen_weights(
        &spec,
        &Opts {
            rope_factors: true,
            ..Opts::default()
        },
        11,
    );
    let mut cfg = RefCfg::new(&spec);
    cfg.use_rope_factors = true;
    (spec, w, cfg)
}

pub fn qwen2() -> (Spec, Weights, RefCfg) {
    let spec = Spec::tiny("qwen2", 3);
    let w = gen_weights(
        &spec,
        &Opts {
            biases: true,
            tied: true,
            ..Opts::default()
        },
        22,
    );
    let mut cfg = RefCfg::new(&spec);
    cfg.rope = Rope::Halves;
    (spec, w, cfg)
}

/// qwen3 with head_dim 32 != n_embd / n_head (as in real Qwen3), set by attention.key_length.
pub fn qwen3() -> (Spec, Weights, RefCfg) {
    let mut spec = Spec::tiny("qwen3", 3);
    spec.head_dim = 32;
    spec.n_rot = 32;
    spec.rope_base = 1_000_000.0;
    let w = gen_weights(
        &spec,
        &Opts {
            qk_norm: true,
            ..Opts::default()
        },
        33,
    );
    let mut cfg = RefCfg::new(&spec);
    cfg.rope = Rope::Halves;
    (spec, w, cfg)
}

pub fn phi3(biases: bool) -> (Spec, Weights, RefCfg) {
    let spec = Spec::tiny("phi3", 3);
    let w = gen_weights(
        &spec,
        &Opts {
            rope_factors: true,
            biases,
            ..Opts::default()
        },
        44,
    );
    let mut cfg = RefCfg::new(&spec);
    cfg.rope = Rope::Halves;
    cfg.use_rope_factors = true;
    (spec, w, cfg)
}

pub const WINDOW: usize = 4;

/// gemma3 with 6 layers: 0..5 sliding-window (window 4, rope base 10000), layer 5 global (base 1e6).
pub fn gemma3() -> (Spec, Weights, RefCfg) {
    let mut spec = Spec::tiny("gemma3", 6);
    spec.sliding_window = Some(WINDOW);
    spec.rope_base = 1_000_000.0;
    spec.eps = 1e-6;
    let w = gen_weights(
        &spec,
        &Opts {
            qk_norm: true,
            post_norms: true,
            tied: true,
            ..Opts::default()
        },
        55,
    );
    let mut cfg = RefCfg::new(&spec);
    cfg.rope = Rope::Halves;
    cfg.act = Act::GeGlu;
    cfg.embd_scale = (spec.n_embd as f64).sqrt();
    cfg.layer_rope_base = vec![
        10_000.0,
        10_000.0,
        10_000.0,
        10_000.0,
        10_000.0,
        1_000_000.0,
    ];
    cfg.layer_window = vec![
        Some(WINDOW),
        Some(WINDOW),
        Some(WINDOW),
        Some(WINDOW),
        Some(WINDOW),
        None,
    ];
    (spec, w, cfg)
}

pub fn all_f32_models() -> Vec<(&'static str, Spec, Weights, RefCfg)> {
    let mut v = Vec::new();
    for (name, (s, w, c)) in [
        ("llama", llama()),
        ("qwen2", qwen2()),
        ("qwen3", qwen3()),
        ("phi3", phi3(false)),
        ("gemma3", gemma3()),
    ] {
        v.push((name, s, w, c));
    }
    v
}
