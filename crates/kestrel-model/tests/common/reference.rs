//! The independent reference forward pass in f64 (see synth.rs): embedding, RMS norm, per-head
//! attention with rope, causal (optionally sliding-window) softmax, SwiGLU / GeGLU, the final
//! norm and the output head, from their definitions.

#![allow(dead_code)]

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rope {
    /// Pairs (x[2i], x[2i+1]) — llama.
    Adjacent,
    /// Pairs (x[i], x[i + n_rot/2]) — NeoX, qwen, phi3, gemma.
    Halves,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    SwiGlu,
    /// gelu (tanh approximation) of the gate times up.
    GeGlu,
}

/// What the reference computes. Biases, q/k norms and post norms are used when the weights have
/// them; everything else is spelled out here.
#[derive(Clone, Debug)]
pub struct RefCfg {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub eps: f64,
    pub rope: Rope,
    /// Positions are multiplied by this (linear rope scaling).
    pub freq_scale: f64,
    pub layer_rope_base: Vec<f64>,
    pub layer_window: Vec<Option<usize>>,
    /// Divide each pair's angle by `Weights::rope_factors`.
    pub use_rope_factors: bool,
    pub attn_scale: f64,
    pub act: Act,
    pub embd_scale: f64,
    /// Round what llama.cpp's attention rounds to f16: keys (after rope) and values as the KV
    /// cache stores them, the query, and the softmax weights.
    pub kv_f16: bool,
    /// Round the input of every quantized matmul to the weight type's activation format, as
    /// ggml (and the engine) do.
    pub quant_act: bool,
    /// Wrong on purpose (a mutation): query head h reads kv head h % n_head_kv instead of
    /// h / (n_head / n_head_kv).
    pub gqa_modulo: bool,
}

impl RefCfg {
    /// The llama block for `spec`: adjacent-pair rope, SwiGLU, 1/sqrt(head_dim), no windows.
    pub fn new(spec: &Spec) -> RefCfg {
        RefCfg {
            n_head: spec.n_head,
            n_head_kv: spec.n_head_kv,
            head_dim: spec.head_dim,
            n_rot: spec.n_rot,
            eps: spec.eps as f64,
            rope: Rope::Adjacent,
            freq_scale: spec.linear_rope_factor.map_or(1.0, |f| 1.0 / f as f64),
            layer_rope_base: vec![spec.rope_base as f64; spec.n_layer],
            layer_window: vec![None; spec.n_layer],
            use_rope_factors: false,
            attn_scale: 1.0 / (spec.head_dim as f64).sqrt(),
            act: Act::SwiGlu,
            embd_scale: 1.0,
            kv_f16: true,
            quant_act: true,
            gqa_modulo: false,
        }
    }
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn rms_norm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(&v, &g)| v * s * g as f64).collect()
}

/// `m x + bias`. With `quant_act`, `x` is first rounded to the activation format the weight
/// type's dot product consumes in ggml (Q8_0 / Q8_1 / Q8_K; unchanged for float weights).
fn matvec(m: &Mat, x: &[f64], bias: Option<&Vec<f32>>, quant_act: bool) -> Vec<f64> {
    assert_eq!(m.cols, x.len());
    let vdt = vec_dot_type(m.ty);
    let rounded: Vec<f64>;
    let x = if quant_act && vdt != GgmlType::F32 {
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut q = vec![0u8; vdt.row_bytes(xf.len()).unwrap()];
        quantize_row(vdt, &xf, &mut q);
        let mut back = vec![0f32; xf.len()];
        dequantize_row(vdt, &q, &mut back);
        rounded = to64(&back);
        &rounded[..]
    } else {
        x
    };
    (0..m.rows)
        .map(|r| {
            let d: f64 = m.row(r).iter().zip(x).map(|(&w, &v)| w as f64 * v).sum();
            d + bias.map_or(0.0, |b| b[r] as f64)
        })
        .collect()
}

fn rope(x: &mut [f64], pos: usize, base: f64, cfg: &RefCfg, factors: Option<&[f32]>) {
    let half = cfg.n_rot / 2;
    for i in 0..half {
        let mut theta = cfg.freq_scale * pos as f64 * base.powf(-2.0 * i as f64 / cfg.n_rot as f64);
        if let Some(f) = factors {
            theta /= f[i] as f64;
        }
        let (c, s) = (theta.cos(), theta.sin());
        let (ia, ib) = match cfg.rope {
            Rope::Adjacent => (2 * i, 2 * i + 1),
            Rope::Halves => (i, i + half),
        };
        let (a, b) = (x[ia], x[ib]);
        x[ia] = a * c - b * s;
        x[ib] = a * s + b * c;
    }
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// GELU as llama.cpp evaluates it: input and output at f16 precision, exact beyond |x| >= 10.
fn gelu_f16(x: f64) -> f64 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let xh = f16::from_f32(x as f32).to_f64();
        f16::from_f32(gelu_tanh(xh) as f32).to_f64()
    }
}

fn round_f16(v: &mut [f64]) {
    for x in v {
        *x = f16::from_f32(*x as f32).to_f64();
    }
}

/// Logits of every position of `tokens` (starting at position 0).
pub fn reference(cfg: &RefCfg, w: &Weights, tokens: &[u32]) -> Vec<Vec<f64>> {
    let (hd, nh, nkv) = (cfg.head_dim, cfg.n_head, cfg.n_head_kv);
    let group = nh / nkv;
    let qa = cfg.quant_act;
    let factors = if cfg.use_rope_factors {
        Some(w.rope_factors.as_deref().expect("rope factors"))
    } else {
        None
    };
    let n = tokens.len();
    let mut xs: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| {
            w.tok_embd
                .row(t as usize)
                .iter()
                .map(|&v| v as f64 * cfg.embd_scale)
                .collect()
        })
        .collect();
    for (il, l) in w.layers.iter().enumerate() {
        let base = cfg.layer_rope_base[il];
        let window = cfg.layer_window[il];
        // Projections, per-head norms and rope for every position.
        let mut qs = Vec::with_capacity(n);
        let mut ks = Vec::with_capacity(n);
        let mut vs = Vec::with_capacity(n);
        for (p, x) in xs.iter().enumerate() {
            let h = rms_norm(x, &l.attn_norm, cfg.eps);
            let mut q = matvec(&l.wq, &h, l.bq.as_ref(), qa);
            let mut k = matvec(&l.wk, &h, l.bk.as_ref(), qa);
            let mut v = matvec(&l.wv, &h, l.bv.as_ref(), qa);
            for (vecs, norm, heads) in [(&mut q, &l.q_norm, nh), (&mut k, &l.k_norm, nkv)] {
                for hh in 0..heads {
                    let head = &mut vecs[hh * hd..(hh + 1) * hd];
                    if let Some(nw) = norm {
                        let normed = rms_norm(head, nw, cfg.eps);
                        head.copy_from_slice(&normed);
                    }
                    rope(head, p, base, cfg, factors);
                }
            }
            if cfg.kv_f16 {
                round_f16(&mut q);
                round_f16(&mut k);
                round_f16(&mut v);
            }
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        // Attention, output projection, residual; then the FFN.
        for p in 0..n {
            let mut att = vec![0.0f64; nh * hd];
            for hh in 0..nh {
                let g = if cfg.gqa_modulo { hh % nkv } else { hh / group };
                let qh = &qs[p][hh * hd..(hh + 1) * hd];
                let start = window.map_or(0, |win| (p + 1).saturating_sub(win));
                let scores: Vec<f64> = (start..=p)
                    .map(|j| {
                        qh.iter()
                            .zip(&ks[j][g * hd..(g + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            * cfg.attn_scale
                    })
                    .collect();
                let mx = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let ex: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                let z: f64 = ex.iter().sum();
                for (jj, j) in (start..=p).enumerate() {
                    let mut a = ex[jj] / z;
                    if cfg.kv_f16 {
                        a = f16::from_f32(a as f32).to_f64();
                    }
                    for d in 0..hd {
                        att[hh * hd + d] += a * vs[j][g * hd + d];
                    }
                }
            }
            let mut o = matvec(&l.wo, &att, None, qa);
            if let Some(nw) = &l.post_attn_norm {
                o = rms_norm(&o, nw, cfg.eps);
            }
            for (xi, oi) in xs[p].iter_mut().zip(&o) {
                *xi += oi;
            }
        }
        for x in xs.iter_mut() {
            let h = rms_norm(x, &l.ffn_norm, cfg.eps);
            let g = matvec(&l.gate, &h, None, qa);
            let u = matvec(&l.up, &h, None, qa);
            let a: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| match cfg.act {
                    Act::SwiGlu => g / (1.0 + (-g).exp()) * u,
                    Act::GeGlu => gelu_f16(g) * u,
                })
                .collect();
            let mut o = matvec(&l.down, &a, None, qa);
            if let Some(nw) = &l.post_ffn_norm {
                o = rms_norm(&o, nw, cfg.eps);
            }
            for (xi, oi) in x.iter_mut().zip(&o) {
                *xi += oi;
            }
        }
    }
    xs.iter()
        .map(|x| matvec(w.head(), &rms_norm(x, &w.output_norm, cfg.eps), None, qa))
        .collect()
}

pub fn to_f64_rows(v: &[Vec<f32>]) -> Vec<Vec<f64>> {
    v.iter().map(|r| to64(r)).collect()
}
