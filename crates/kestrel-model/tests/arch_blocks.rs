//! The architectures without a real model file here (qwen2, qwen3, phi3) plus llama and gemma3,
//! on tiny synthetic GGUF models, against an independent f64 reference forward pass
//! (tests/common/synth.rs). Every block option is checked from both sides: the engine matches
//! the reference with the option as the architecture defines it, and a reference with that one
//! option changed (rope pairing, a bias, a norm, the window, ...) is far from the engine — so a
//! loader or forward pass that got the option wrong fails here.
//!
//! Also: batching / threading invariance, session bookkeeping, and load / forward errors.

#[path = "common/synth.rs"]
mod synth;

use kestrel_gguf::{Array, GgmlType, GgufError, Value};
use kestrel_model::{Model, ModelError, ThreadPool};
use synth::*;

/// Token ids with repeats, so attention sees identical keys at different positions.
const TOKENS: &[u32] = &[1, 17, 42, 3, 17, 29, 8, 49, 0, 33, 17, 12];

/// F32 weights, reference rounding K/V to f16 like the cache: what is left is f32 vs f64
/// arithmetic (relative to the largest logit).
const TOL: f64 = 2e-4;
/// The same without emulating the f16 cache in the reference.
const TOL_NO_F16: f64 = 3e-3;
/// A reference with one option changed must be at least this far from the engine.
const MUTATION_MIN: f64 = 5e-3;

struct Mutation {
    what: &'static str,
    cfg: RefCfg,
    w: Weights,
}

fn mcfg(what: &'static str, cfg: &RefCfg, w: &Weights, f: impl FnOnce(&mut RefCfg)) -> Mutation {
    let mut cfg = cfg.clone();
    f(&mut cfg);
    Mutation {
        what,
        cfg,
        w: w.clone(),
    }
}

fn mw(what: &'static str, cfg: &RefCfg, w: &Weights, f: impl FnOnce(&mut Weights)) -> Mutation {
    let mut w = w.clone();
    f(&mut w);
    Mutation {
        what,
        cfg: cfg.clone(),
        w,
    }
}

/// Engine logits of every position of TOKENS vs the reference; every mutation must be far off.
fn check_reference(
    name: &str,
    m: &Model,
    w: &Weights,
    cfg: &RefCfg,
    mutations: &[Mutation],
) -> Vec<Vec<f32>> {
    let ours = engine_logits(m, TOKENS, 32, 2);
    let want = reference(cfg, w, TOKENS);
    let err = rel_err(&ours, &want);
    let mut no_f16 = cfg.clone();
    no_f16.kv_f16 = false;
    let err_no_f16 = rel_err(&ours, &reference(&no_f16, w, TOKENS));
    eprintln!("{name}: rel err {err:.2e} (f16 KV emulated), {err_no_f16:.2e} (f64 KV)");
    assert!(
        err <= TOL,
        "{name}: engine vs reference: relative error {err:.3e} > {TOL:.0e}"
    );
    assert!(
        err_no_f16 <= TOL_NO_F16,
        "{name}: engine vs f64-KV reference: {err_no_f16:.3e} > {TOL_NO_F16:.0e}"
    );
    for (p, (a, b)) in ours.iter().zip(&want).enumerate() {
        assert_eq!(
            argmax32(a),
            argmax64(b),
            "{name}: top-1 differs at position {p}"
        );
    }
    for mu in mutations {
        let e = rel_err(&ours, &reference(&mu.cfg, &mu.w, TOKENS));
        eprintln!("{name}: mutation '{}': rel diff {e:.2e}", mu.what);
        assert!(
            e >= MUTATION_MIN,
            "{name}: a reference with '{}' is as close as {e:.3e}: the test cannot tell",
            mu.what
        );
    }
    ours
}

fn load(s: &Synth) -> Model {
    s.load()
        .unwrap_or_else(|e| panic!("synthetic model does not load: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Models.

fn llama() -> (Spec, Weights, RefCfg) {
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

fn qwen2() -> (Spec, Weights, RefCfg) {
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
fn qwen3() -> (Spec, Weights, RefCfg) {
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

fn phi3(biases: bool) -> (Spec, Weights, RefCfg) {
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

const WINDOW: usize = 4;

/// gemma3 with 6 layers: 0..5 sliding-window (window 4, rope base 10000), layer 5 global (base 1e6).
fn gemma3() -> (Spec, Weights, RefCfg) {
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

fn all_f32_models() -> Vec<(&'static str, Spec, Weights, RefCfg)> {
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

// ---------------------------------------------------------------------------------------------
// 1. Each architecture against the reference.

#[test]
fn llama_matches_reference() {
    let (spec, w, cfg) = llama();
    let m = load(&Synth::new(&spec, &w, Qkv::Split));
    let muts = [
        mcfg("rope over halves", &cfg, &w, |c| c.rope = Rope::Halves),
        mcfg("no rope_freqs factors", &cfg, &w, |c| {
            c.use_rope_factors = false
        }),
        mcfg("no linear rope scaling", &cfg, &w, |c| c.freq_scale = 1.0),
        mcfg("kv head h % n_head_kv", &cfg, &w, |c| c.gqa_modulo = true),
        mcfg("attention scale 1", &cfg, &w, |c| c.attn_scale = 1.0),
        mcfg("GeGLU", &cfg, &w, |c| c.act = Act::GeGlu),
        mw("head tied to the embedding", &cfg, &w, |w| w.output = None),
    ];
    check_reference("llama", &m, &w, &cfg, &muts);
}

#[test]
fn qwen2_matches_reference() {
    let (spec, w, cfg) = qwen2();
    let m = load(&Synth::new(&spec, &w, Qkv::Split));
    let muts = [
        mcfg("rope on adjacent pairs", &cfg, &w, |c| {
            c.rope = Rope::Adjacent
        }),
        mw("no q bias", &cfg, &w, |w| {
            w.layers.iter_mut().for_each(|l| l.bq = None)
        }),
        mw("no k bias", &cfg, &w, |w| {
            w.layers.iter_mut().for_each(|l| l.bk = None)
        }),
        mw("no v bias", &cfg, &w, |w| {
            w.layers.iter_mut().for_each(|l| l.bv = None)
        }),
    ];
    check_reference("qwen2", &m, &w, &cfg, &muts);
}

/// rope.dimension_count < head_dim: only the first n_rot dims rotate, pairs (i, i + n_rot/2).
#[test]
fn qwen2_partial_rotary_matches_reference() {
    let (mut spec, _, _) = qwen2();
    spec.n_rot = 8;
    let w = gen_weights(
        &spec,
        &Opts {
            biases: true,
            ..Opts::default()
        },
        23,
    );
    let mut cfg = RefCfg::new(&spec);
    cfg.rope = Rope::Halves;
    let m = load(&Synth::new(&spec, &w, Qkv::Split));
    assert_eq!(m.hparams().n_rot, 8);
    let muts = [
        mcfg("full rotary", &cfg, &w, |c| c.n_rot = 16),
        mcfg("rope on adjacent pairs", &cfg, &w, |c| {
            c.rope = Rope::Adjacent
        }),
    ];
    check_reference("qwen2 n_rot 8", &m, &w, &cfg, &muts);
}

#[test]
fn qwen3_matches_reference() {
    let (spec, w, cfg) = qwen3();
    let m = load(&Synth::new(&spec, &w, Qkv::Split));
    assert_eq!((m.hparams().head_dim, m.hparams().n_embd), (32, 64));
    let muts = [
        mw("no q norm", &cfg, &w, |w| {
            w.layers.iter_mut().for_each(|l| l.q_norm = None)
        }),
        mw("no k norm", &cfg, &w, |w| {
            w.layers.iter_mut().for_each(|l| l.k_norm = None)
        }),
        mw("q and k norms swapped", &cfg, &w, |w| {
            w.layers
                .iter_mut()
                .for_each(|l| std::mem::swap(&mut l.q_norm, &mut l.k_norm))
        }),
        mcfg("rope on adjacent pairs", &cfg, &w, |c| {
            c.rope = Rope::Adjacent
        }),
        mcfg("attention scale from n_embd / n_head", &cfg, &w, |c| {
            c.attn_scale = 1.0 / 4.0
        }),
        mcfg("rope base 10000", &cfg, &w, |c| {
            c.layer_rope_base = vec![10_000.0; 3]
        }),
    ];
    check_reference("qwen3", &m, &w, &cfg, &muts);
}

// ---------------------------------------------------------------------------------------------
// 2. phi3: fused attn_qkv and gate+up in ffn_up.

#[test]
fn phi3_fused_matches_reference() {
    let (spec, w, cfg) = phi3(false);
    let s = Synth::new(&spec, &w, Qkv::Fused);
    assert!(s.tensors.iter().any(|t| t.0 == "blk.0.attn_qkv.weight"));
    assert!(!s.tensors.iter().any(|t| t.0 == "blk.0.ffn_gate.weight"));
    let m = load(&s);
    let muts = [
        // Sanity: the test sees the rope pairing.
        mcfg("rope on adjacent pairs", &cfg, &w, |c| {
            c.rope = Rope::Adjacent
        }),
        mw("gate and up swapped", &cfg, &w, |w| {
            w.layers
                .iter_mut()
                .for_each(|l| std::mem::swap(&mut l.gate, &mut l.up))
        }),
        mw("k and v swapped", &cfg, &w, |w| {
            w.layers
                .iter_mut()
                .for_each(|l| std::mem::swap(&mut l.wk, &mut l.wv))
        }),
        mcfg("no rope_factors_short", &cfg, &w, |c| {
            c.use_rope_factors = false
        }),
    ];
    check_reference("phi3 fused", &m, &w, &cfg, &muts);
}

/// The same phi3 weights with a fused attn_qkv (+ fused bias) and with separate attn_q/k/v
/// (+ biases): the loader's two paths give identical logits, and both match the reference.
#[test]
fn phi3_fused_and_split_qkv_agree() {
    let (spec, w, cfg) = phi3(true);
    let fused = load(&Synth::new(&spec, &w, Qkv::Fused));
    let split = load(&Synth::new(&spec, &w, Qkv::Split));
    let muts = [mw("no q/k/v biases", &cfg, &w, |w| {
        w.layers.iter_mut().for_each(|l| {
            l.bq = None;
            l.bk = None;
            l.bv = None;
        })
    })];
    let a = check_reference("phi3 fused + bias", &fused, &w, &cfg, &muts);
    let b = check_reference("phi3 split + bias", &split, &w, &cfg, &muts);
    assert_eq!(
        rel_diff_f32(&a, &b),
        0.0,
        "fused and split q/k/v give different logits"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Sliding window (gemma3).

#[test]
fn gemma3_sliding_window_matches_reference() {
    let (spec, w, cfg) = gemma3();
    let m = load(&Synth::new(&spec, &w, Qkv::Split));
    assert_eq!(m.hparams().sliding_window, Some(WINDOW));
    let muts = [
        mcfg("window 3", &cfg, &w, |c| {
            c.layer_window.iter_mut().take(5).for_each(|x| *x = Some(3))
        }),
        mcfg("window 5", &cfg, &w, |c| {
            c.layer_window.iter_mut().take(5).for_each(|x| *x = Some(5))
        }),
        mcfg("global layer windowed too", &cfg, &w, |c| {
            c.layer_window[5] = Some(WINDOW)
        }),
        mcfg("local layers with the global rope base", &cfg, &w, |c| {
            c.layer_rope_base = vec![1e6; 6]
        }),
        mcfg("global layer with the local rope base", &cfg, &w, |c| {
            c.layer_rope_base[5] = 1e4
        }),
        mcfg("SwiGLU", &cfg, &w, |c| c.act = Act::SwiGlu),
        mcfg("embeddings not scaled", &cfg, &w, |c| c.embd_scale = 1.0),
        mcfg("rope on adjacent pairs", &cfg, &w, |c| {
            c.rope = Rope::Adjacent
        }),
        mw("no post-attention norm", &cfg, &w, |w| {
            w.layers.iter_mut().for_each(|l| l.post_attn_norm = None)
        }),
        mw("no post-FFN norm", &cfg, &w, |w| {
            w.layers.iter_mut().for_each(|l| l.post_ffn_norm = None)
        }),
        mw("no q/k norms", &cfg, &w, |w| {
            w.layers.iter_mut().for_each(|l| {
                l.q_norm = None;
                l.k_norm = None
            })
        }),
    ];
    let ours = check_reference("gemma3", &m, &w, &cfg, &muts);

    // Without any window: identical while every key is inside the window (positions < 4),
    // different from position 4 on.
    let mut no_win = cfg.clone();
    no_win.layer_window = vec![None; 6];
    let full = reference(&no_win, &w, TOKENS);
    for p in 0..TOKENS.len() {
        let e = rel_err_at(&ours, &full, p);
        eprintln!("gemma3 vs no-window reference at position {p}: {e:.2e}");
        if p < WINDOW {
            assert!(
                e <= TOL,
                "position {p} is inside the window but differs from full attention by {e:.3e}"
            );
        } else {
            assert!(
                e >= MUTATION_MIN,
                "position {p} is past the window but matches full attention ({e:.3e})"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quantized weights (Q8_0 / Q4_0 from kestrel_kernels::quantize_row). The reference multiplies
// with the dequantized weights and, like ggml, rounds each matmul input to Q8_0 first. That
// rounding is discontinuous: an activation within ~1e-5 of a rounding boundary can round the
// other way in f32 (engine) than in f64 (reference), and a flip moves the logits by up to ~1e-2
// of their scale. So: most runs must match to TOL_QUANT_EXACT (the Q8_0 activation semantics
// are exactly ggml's), every run within TOL_QUANT, and every run within TOL_QUANT_LOOSE of a
// reference that skips the activation rounding.

const TOL_QUANT_EXACT: f64 = 1e-5;
const TOL_QUANT: f64 = 3e-2;
const TOL_QUANT_LOOSE: f64 = 6e-2;
const QUANT_SEEDS: [u64; 4] = [99, 98, 97, 96];

#[test]
fn quantized_weights_match_reference() {
    let q = Opts {
        ty_embd: GgmlType::Q8_0,
        ty_out: GgmlType::Q4_0,
        ty_attn: GgmlType::Q8_0,
        ty_ffn: GgmlType::Q4_0,
        ty_down: GgmlType::Q8_0,
        ..Opts::default()
    };
    let (mut runs, mut exact) = (0, 0);
    for (name, spec, w32, cfg) in all_f32_models() {
        // Same block options as the F32 model, quantized storage.
        let l0 = &w32.layers[0];
        let o = Opts {
            biases: l0.bq.is_some(),
            qk_norm: l0.q_norm.is_some(),
            post_norms: l0.post_attn_norm.is_some(),
            tied: w32.output.is_none(),
            rope_factors: w32.rope_factors.is_some(),
            ..q.clone()
        };
        for seed in QUANT_SEEDS {
            let w = gen_weights(&spec, &o, seed);
            assert_eq!(w.layers[0].wq.ty, GgmlType::Q8_0);
            let m = load(&Synth::new(&spec, &w, Qkv::Fused));
            let ours = engine_logits(&m, TOKENS, 32, 2);
            let err = rel_err(&ours, &reference(&cfg, &w, TOKENS));
            let mut plain = cfg.clone();
            plain.quant_act = false;
            let want_plain = reference(&plain, &w, TOKENS);
            let err_plain = rel_err(&ours, &want_plain);
            let top1 = ours
                .iter()
                .zip(&want_plain)
                .filter(|(a, b)| argmax32(a) == argmax64(b))
                .count();
            let mut wrong = cfg.clone();
            wrong.rope = if cfg.rope == Rope::Halves {
                Rope::Adjacent
            } else {
                Rope::Halves
            };
            let e_wrong = rel_err(&ours, &reference(&wrong, &w, TOKENS));
            eprintln!(
                "{name} quantized seed {seed}: rel err {err:.2e} (Q8_0 activations emulated), {err_plain:.2e} (not), \
                 top-1 {top1}/{}, wrong rope {e_wrong:.2e}",
                TOKENS.len()
            );
            runs += 1;
            exact += (err <= TOL_QUANT_EXACT) as usize;
            assert!(
                err <= TOL_QUANT,
                "{name} quantized seed {seed}: relative error {err:.3e} > {TOL_QUANT:.0e}"
            );
            assert!(
                err_plain <= TOL_QUANT_LOOSE,
                "{name} seed {seed}: error {err_plain:.3e} > {TOL_QUANT_LOOSE:.0e} without rounding"
            );
            assert!(
                top1 + 1 >= TOKENS.len(),
                "{name} seed {seed}: top-1 agrees at only {top1}/{} positions",
                TOKENS.len()
            );
            // The wrong rope pairing is well outside the quantization noise.
            assert!(
                e_wrong >= MUTATION_MIN.max(3.0 * err_plain),
                "{name} seed {seed}: the wrong rope pairing is within {e_wrong:.3e} (noise {err_plain:.3e})"
            );
        }
    }
    eprintln!("quantized: {exact}/{runs} runs match the Q8_0-activation reference within {TOL_QUANT_EXACT:.0e}");
    assert!(
        4 * exact >= 3 * runs,
        "only {exact}/{runs} quantized runs match the reference exactly"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Batching / threading invariance and session bookkeeping.

/// Relative difference allowed where the computation is the same (thread count, a reset
/// session): in practice bit-identical.
const TOL_BATCH: f64 = 1e-6;
/// Relative difference allowed between batch shapes: attention sums in 8 lanes for batches of
/// 2+ tokens and 4x8 lanes for one token, as llama.cpp does, so the last bits differ (and an
/// f16-rounded softmax weight may move by one f16 step).
const TOL_SHAPE: f64 = 1e-3;

fn assert_same(name: &str, what: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    let d = rel_diff_f32(a, b);
    assert!(
        d <= TOL_BATCH,
        "{name}: {what}: relative difference {d:.3e}"
    );
}

fn assert_close(name: &str, what: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    let d = rel_diff_f32(a, b);
    assert!(
        d <= TOL_SHAPE,
        "{name}: {what}: relative difference {d:.3e}"
    );
}

#[test]
fn batching_and_threads_do_not_change_logits() {
    let mut models = all_f32_models();
    let (spec, _, cfg) = llama();
    let wq = gen_weights(
        &spec,
        &Opts {
            rope_factors: true,
            ty_embd: GgmlType::Q8_0,
            ty_attn: GgmlType::Q8_0,
            ty_ffn: GgmlType::Q4_0,
            ..Opts::default()
        },
        7,
    );
    models.push(("llama q8_0/q4_0", spec, wq, cfg));
    for (name, spec, w, _) in &models {
        let m = load(&Synth::new(spec, w, Qkv::Fused));
        let n = TOKENS.len();
        let full1 = engine_logits(&m, TOKENS, 32, 1);
        let full2 = engine_logits(&m, TOKENS, 32, 2);
        let b3_1 = engine_logits(&m, TOKENS, 3, 1);
        let b3_2 = engine_logits(&m, TOKENS, 3, 2);
        let one1 = engine_logits_one_by_one(&m, TOKENS, 1);
        let one2 = engine_logits_one_by_one(&m, TOKENS, 2);
        assert_same(name, "1 vs 2 threads", &full1, &full2);
        assert_close(name, "one batch vs micro-batches of 3", &full1, &b3_1);
        assert_close(name, "one batch vs one token per call", &full1, &one1);
        assert_close(name, "micro-batches of 3, 2 threads", &full1, &b3_2);
        assert_close(name, "one token per call, 2 threads", &full1, &one2);
        assert_close(name, "last position", &full1[n - 1..], &one1[n - 1..]);
        eprintln!(
            "{name}: batch diffs {:.1e} {:.1e} {:.1e} {:.1e} {:.1e}",
            rel_diff_f32(&full1, &full2),
            rel_diff_f32(&full1, &b3_1),
            rel_diff_f32(&full1, &one1),
            rel_diff_f32(&full1, &b3_2),
            rel_diff_f32(&full1, &one2)
        );

        let pool = ThreadPool::new(2);
        // logits_from inside the second micro-batch of 3: rows are positions 4.. in order.
        let mut s = m.new_session(32, 3);
        m.forward(&mut s, &pool, TOKENS, 4).unwrap();
        assert_eq!(s.n_logit_rows(), n - 4);
        let rows: Vec<Vec<f32>> = (0..n - 4).map(|i| s.logits(i).to_vec()).collect();
        assert_close(name, "logits_from 4 with n_batch 3", &full1[4..], &rows);
        assert_eq!(s.n_past(), n);

        // Only the last row.
        let mut s = m.new_session(32, 5);
        m.forward(&mut s, &pool, TOKENS, n - 1).unwrap();
        assert_eq!(s.n_logit_rows(), 1);
        assert_close(
            name,
            "logits_from n-1",
            &full1[n - 1..],
            &[s.last_logits().to_vec()],
        );

        // Truncate and recompute the tail; reset and recompute everything.
        m.forward(&mut s, &pool, &[5, 6], 0).unwrap();
        s.truncate(5);
        assert_eq!(s.n_past(), 5);
        m.forward(&mut s, &pool, &TOKENS[5..], 0).unwrap();
        let tail: Vec<Vec<f32>> = (0..n - 5).map(|i| s.logits(i).to_vec()).collect();
        assert_close(name, "after truncate(5)", &full1[5..], &tail);
        s.reset();
        m.forward(&mut s, &pool, TOKENS, 0).unwrap();
        let again: Vec<Vec<f32>> = (0..n).map(|i| s.logits(i).to_vec()).collect();
        assert_same(name, "after reset", &full1, &again);

        // Two sessions of one model, interleaved.
        let (mut a, mut b) = (m.new_session(32, 4), m.new_session(32, 4));
        m.forward(&mut a, &pool, &TOKENS[..6], 0).unwrap();
        m.forward(&mut b, &pool, &[9, 9, 9, 9, 9, 9, 9], 0).unwrap();
        m.forward(&mut a, &pool, &TOKENS[6..], 0).unwrap();
        let a_rows: Vec<Vec<f32>> = (0..n - 6).map(|i| a.logits(i).to_vec()).collect();
        assert_close(name, "interleaved sessions", &full1[6..], &a_rows);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Errors: no panic, the right variant, the offending name in the message.

fn llama_synth() -> Synth {
    let (spec, w, _) = llama();
    Synth::new(&spec, &w, Qkv::Split)
}

fn load_err(s: &Synth) -> ModelError {
    match s.load() {
        Ok(_) => panic!("the model loaded but should not have"),
        Err(e) => e,
    }
}

fn assert_names(e: &ModelError, what: &str) {
    let msg = e.to_string();
    assert!(
        msg.contains(what),
        "error message {msg:?} does not name {what:?}"
    );
}

#[test]
fn unsupported_architecture_is_named() {
    // Complete llama-style metadata under the unknown prefix: the registry rejects it.
    let mut spec = Spec::tiny("mamba9", 2);
    spec.rope_base = 10000.0;
    let w = gen_weights(&spec, &Opts::default(), 1);
    let e = load_err(&Synth::new(&spec, &w, Qkv::Split));
    match &e {
        ModelError::UnsupportedArch(a, supported) => {
            assert_eq!(a, "mamba9");
            for s in ["llama", "gemma3", "qwen2", "qwen3", "phi3"] {
                assert!(
                    supported.contains(s),
                    "supported list {supported:?} lacks {s}"
                );
            }
        }
        other => panic!("expected UnsupportedArch, got {other:?}"),
    }
    assert_names(&e, "mamba9");
}

/// An unsupported architecture should be reported as such whatever its hyperparameters look
/// like. Real Mamba GGUFs (llama.cpp's converter) write `mamba.attention.head_count = 0` and
/// `mamba.feed_forward_length = 0`; a file of another family may lack the keys altogether.
/// (`Model::from_gguf` looks the architecture up before it reads hyperparameters.)
#[test]
fn unsupported_architecture_is_reported_before_its_hyperparameters() {
    // Like a real Mamba file.
    let mut s = llama_synth();
    s.meta.retain(|(k, _)| !k.starts_with("llama."));
    s.set("general.architecture", Value::String("mamba".into()));
    for (k, v) in [
        ("mamba.context_length", 1u32 << 20),
        ("mamba.embedding_length", 64),
        ("mamba.block_count", 3),
        ("mamba.feed_forward_length", 0),
        ("mamba.attention.head_count", 0),
        ("mamba.ssm.conv_kernel", 4),
        ("mamba.ssm.inner_size", 128),
        ("mamba.ssm.state_size", 16),
        ("mamba.ssm.time_step_rank", 4),
    ] {
        s.set(k, Value::U32(v));
    }
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::UnsupportedArch(a, _) if a == "mamba"),
        "got {e:?} ({e})"
    );

    // Only general.architecture.
    let mut s = llama_synth();
    s.meta.retain(|(k, _)| !k.starts_with("llama."));
    s.set("general.architecture", Value::String("mamba9".into()));
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::UnsupportedArch(a, _) if a == "mamba9"),
        "got {e:?} ({e})"
    );
}

#[test]
fn missing_tensors_are_named() {
    let cases: Vec<(Synth, &str)> = vec![
        (llama_synth(), "blk.1.ffn_down.weight"),
        (llama_synth(), "blk.2.attn_v.weight"),
        (llama_synth(), "output_norm.weight"),
        (llama_synth(), "token_embd.weight"),
        (llama_synth(), "blk.0.ffn_norm.weight"),
        {
            let (s, w, _) = qwen3();
            (Synth::new(&s, &w, Qkv::Split), "blk.1.attn_k_norm.weight")
        },
        {
            let (s, w, _) = gemma3();
            (Synth::new(&s, &w, Qkv::Split), "blk.2.post_ffw_norm.weight")
        },
        {
            let (s, w, _) = gemma3();
            (Synth::new(&s, &w, Qkv::Split), "blk.0.attn_q_norm.weight")
        },
        {
            let (s, w, _) = phi3(false);
            (Synth::new(&s, &w, Qkv::Fused), "blk.1.ffn_up.weight")
        },
    ];
    for (mut s, name) in cases {
        s.remove_tensor(name);
        let e = load_err(&s);
        assert!(
            matches!(&e, ModelError::MissingTensor(n) if n == name),
            "removing {name}: got {e:?}"
        );
        assert_names(&e, name);
    }
    // phi3 without attn_qkv falls back to separate tensors and names the first one missing.
    let (spec, w, _) = phi3(false);
    let mut s = Synth::new(&spec, &w, Qkv::Fused);
    s.remove_tensor("blk.1.attn_qkv.weight");
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::MissingTensor(n) if n == "blk.1.attn_q.weight"),
        "got {e:?}"
    );
}

fn f32_data(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (0.01 * i as f32).to_le_bytes())
        .collect()
}

#[test]
fn wrong_tensor_shapes_are_named() {
    // (model, tensor, replacement dims, expected dims)
    let phi = || {
        let (s, w, _) = phi3(false);
        Synth::new(&s, &w, Qkv::Fused)
    };
    let qwen2s = || {
        let (s, w, _) = qwen2();
        Synth::new(&s, &w, Qkv::Split)
    };
    let cases: Vec<(Synth, &str, Vec<u64>, Vec<u64>)> = vec![
        (
            llama_synth(),
            "blk.1.attn_k.weight",
            vec![64, 48],
            vec![64, 32],
        ),
        (
            llama_synth(),
            "blk.0.attn_q.weight",
            vec![64, 32],
            vec![64, 64],
        ),
        // Transposed.
        (
            llama_synth(),
            "blk.2.ffn_down.weight",
            vec![64, 96],
            vec![96, 64],
        ),
        (llama_synth(), "output.weight", vec![64, 49], vec![64, 50]),
        (llama_synth(), "blk.0.ffn_norm.weight", vec![63], vec![64]),
        (llama_synth(), "output_norm.weight", vec![64, 1], vec![64]),
        (llama_synth(), "rope_freqs.weight", vec![16], vec![8]),
        (qwen2s(), "blk.1.attn_q.bias", vec![32], vec![64]),
        // phi3 ffn_up must hold gate and up: 2 * n_ff rows.
        (phi(), "blk.0.ffn_up.weight", vec![64, 96], vec![64, 192]),
        (phi(), "blk.2.attn_qkv.weight", vec![64, 64], vec![64, 128]),
    ];
    for (mut s, name, dims, want) in cases {
        let n: u64 = dims.iter().product();
        s.replace_tensor(name, dims.clone(), GgmlType::F32, f32_data(n as usize));
        let e = load_err(&s);
        match &e {
            ModelError::TensorShape {
                name: n,
                got,
                want: w,
            } => {
                assert_eq!(n, name);
                assert_eq!(got, &dims, "{name}");
                assert_eq!(w, &want, "{name}");
            }
            other => panic!("{name} with dims {dims:?}: expected TensorShape, got {other:?}"),
        }
        assert_names(&e, name);
    }

    // The vocabulary size comes from the tokenizer when there is one; the embedding must match.
    let mut s = llama_synth();
    let tokens: Vec<String> = (0..49).map(|i| format!("t{i}")).collect();
    s.set("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::TensorShape { name, .. } if name == "token_embd.weight"),
        "got {e:?}"
    );
}

#[test]
fn wrong_tensor_types_are_named() {
    // A norm vector stored quantized.
    let mut s = llama_synth();
    let mut q = vec![0u8; GgmlType::Q8_0.row_bytes(64).unwrap()];
    kestrel_kernels::quantize_row(GgmlType::Q8_0, &vec![1.0; 64], &mut q);
    s.replace_tensor("blk.1.attn_norm.weight", vec![64], GgmlType::Q8_0, q);
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::TensorType { name, .. } if name == "blk.1.attn_norm.weight"),
        "got {e:?}"
    );
    assert_names(&e, "blk.1.attn_norm.weight");

    // A matrix in an activation-only format.
    let mut s = llama_synth();
    let mut q = vec![0u8; GgmlType::Q8_1.row_bytes(64).unwrap() * 64];
    for r in 0..64 {
        let rb = GgmlType::Q8_1.row_bytes(64).unwrap();
        kestrel_kernels::quantize_row(GgmlType::Q8_1, &vec![0.5; 64], &mut q[r * rb..(r + 1) * rb]);
    }
    s.replace_tensor("blk.0.attn_output.weight", vec![64, 64], GgmlType::Q8_1, q);
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::TensorType { name, .. } if name == "blk.0.attn_output.weight"),
        "got {e:?}"
    );
}

#[test]
fn missing_or_bad_hyperparameters() {
    let mut s = llama_synth();
    s.remove_key("llama.block_count");
    let e = load_err(&s);
    assert!(
        matches!(&e, ModelError::Gguf(GgufError::MissingKey(k)) if k == "llama.block_count"),
        "got {e:?}"
    );
    assert_names(&e, "llama.block_count");

    let mut s = llama_synth();
    s.remove_key("llama.embedding_length");
    assert!(
        matches!(load_err(&s), ModelError::Gguf(GgufError::MissingKey(k)) if k == "llama.embedding_length")
    );

    let mut s = llama_synth();
    s.set("llama.block_count", Value::String("three".into()));
    assert!(
        matches!(load_err(&s), ModelError::Gguf(GgufError::KeyType { key, .. }) if key == "llama.block_count")
    );

    // head_count_kv must divide head_count (4), be >= 1 and <= head_count.
    for kv in [3u32, 0, 8] {
        let mut s = llama_synth();
        s.set("llama.attention.head_count_kv", Value::U32(kv));
        let e = load_err(&s);
        assert!(
            matches!(&e, ModelError::BadHparam { key, .. } if key == "llama.attention.head_count_kv"),
            "head_count_kv {kv}: got {e:?}"
        );
        assert_names(&e, "llama.attention.head_count_kv");
    }

    for (key, v) in [
        ("llama.block_count", 0u32),
        ("llama.attention.head_count", 0),
        ("llama.feed_forward_length", 0),
    ] {
        let mut s = llama_synth();
        s.set(key, Value::U32(v));
        let e = load_err(&s);
        assert!(
            matches!(&e, ModelError::BadHparam { key: k, .. } if k == key),
            "{key} = {v}: got {e:?}"
        );
    }

    // Rotary dims: odd, or more than the head.
    for n_rot in [7u32, 18] {
        let mut s = llama_synth();
        s.set("llama.rope.dimension_count", Value::U32(n_rot));
        let e = load_err(&s);
        assert!(
            matches!(&e, ModelError::BadHparam { key, .. } if key == "llama.rope.dimension_count"),
            "n_rot {n_rot}: got {e:?}"
        );
    }

    // Linear rope scaling by a non-positive factor.
    let mut s = llama_synth();
    s.set("llama.rope.scaling.factor", Value::F32(0.0));
    assert!(
        matches!(load_err(&s), ModelError::BadHparam { key, .. } if key == "llama.rope.scaling.factor")
    );
}

#[test]
fn forward_errors_leave_the_session_usable() {
    let (spec, w, _) = qwen2();
    let m = load(&Synth::new(&spec, &w, Qkv::Split));
    let pool = ThreadPool::new(1);
    let full = engine_logits(&m, &TOKENS[..8], 32, 8);

    let mut s = m.new_session(8, 4);
    // Token id == vocabulary size.
    let e = m.forward(&mut s, &pool, &[1, 50, 2], 0).unwrap_err();
    assert!(matches!(e, ModelError::BadToken(50, 50)), "got {e:?}");
    assert_names(&e, "50");
    let e = m.forward(&mut s, &pool, &[u32::MAX], 0).unwrap_err();
    assert!(matches!(e, ModelError::BadToken(u32::MAX, 50)), "got {e:?}");
    assert_eq!(
        s.n_past(),
        0,
        "a rejected batch must not advance the session"
    );

    // Empty slice; logits_from past the end.
    let e = m.forward(&mut s, &pool, &[], 0).unwrap_err();
    assert!(matches!(e, ModelError::Invalid(_)), "got {e:?}");
    let e = m.forward(&mut s, &pool, &[1, 2], 3).unwrap_err();
    assert!(matches!(e, ModelError::Invalid(_)), "got {e:?}");
    assert_eq!(s.n_past(), 0);

    // Past the context (8): 6 fit, 3 more do not, 2 more do.
    m.forward(&mut s, &pool, &TOKENS[..6], 0).unwrap();
    let e = m.forward(&mut s, &pool, &TOKENS[6..9], 0).unwrap_err();
    match e {
        ModelError::ContextFull { needed, n_ctx } => assert_eq!((needed, n_ctx), (9, 8)),
        ref other => panic!("expected ContextFull, got {other:?}"),
    }
    assert_names(&e, "9");
    assert_eq!(s.n_past(), 6);
    m.forward(&mut s, &pool, &TOKENS[6..8], 0).unwrap();
    assert_eq!(s.n_past(), 8);
    let rows: Vec<Vec<f32>> = (0..2).map(|i| s.logits(i).to_vec()).collect();
    assert_same("qwen2", "after rejected calls", &full[6..8], &rows);
    let e = m.forward(&mut s, &pool, &[1], 0).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::ContextFull {
                needed: 9,
                n_ctx: 8
            }
        ),
        "got {e:?}"
    );
}
