//! The architectures without a real model file here (qwen2, qwen3, phi3) plus llama and gemma3,
//! on tiny synthetic GGUF models, against an independent f64 reference forward pass
//! (tests/common/synth.rs). Every block option is checked from both sides: the engine matches
//! the reference with the option as the architecture defines it, and a reference with that one
//! option changed (rope pairing, a bias, a norm, the window, ...) is far from the engine — so a
//! loader or forward pass that got the option wrong fails here.
//!
//! Also: batching / threading invariance and session bookkeeping (load and forward errors are
//! in tests/model_errors.rs).

#[path = "common/arch_models.rs"]
mod arch_models;
#[path = "common/synth.rs"]
mod synth;

use arch_models::*;
use kestrel_gguf::GgmlType;
use kestrel_model::{Model, ThreadPool};
use synth::*;

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
// Quantized weights (Q8_0 / Q4_0 from kestrel_compress::rtn::quantize_row). The reference multiplies
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

/// Relative difference allowed between batch shapes: attention sums in 8 lanes for batches of
/// 2+ tokens and 4x8 lanes for one token, as llama.cpp does, so the last bits differ (and an
/// f16-rounded softmax weight may move by one f16 step).
const TOL_SHAPE: f64 = 1e-3;

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
