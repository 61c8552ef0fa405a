//! Tiny synthetic GGUF models (deterministic pseudo-random weights, no tokenizer) and an
//! independent reference forward pass in f64 that shares no code with the engine: it reads the
//! dequantized weights and implements embedding, RMS norm, per-head attention with rope (adjacent
//! pairs or halves), causal (optionally sliding-window) softmax, SwiGLU / GeGLU, the final norm
//! and the output head from their definitions.
#![allow(dead_code)]

use half::f16;
use kestrel_compress::rtn::quantize_row;
use kestrel_gguf::{GgmlType, GgufFile, GgufWriter, Value};
use kestrel_kernels::{dequantize_row, vec_dot_type};
use kestrel_model::{Model, ModelError, ThreadPool};
use std::sync::Arc;

// The reference forward pass, in its own file.
#[path = "reference.rs"]
mod reference;
#[allow(unused_imports)] // not every test binary uses the reference
pub use reference::*;

// ---------------------------------------------------------------------------------------------
// Deterministic pseudo-random numbers (splitmix64).

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// `n` values uniform in `center ± spread`.
    pub fn vec(&mut self, n: usize, center: f32, spread: f32) -> Vec<f32> {
        (0..n).map(|_| center + spread * self.sym()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Weights.

/// A row-major matrix (`rows` output features of `cols` inputs) as stored in the file (`bytes`,
/// type `ty`) and dequantized (`w`), which is what the reference multiplies with.
#[derive(Clone, Debug)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub ty: GgmlType,
    pub bytes: Vec<u8>,
    pub w: Vec<f32>,
}

impl Mat {
    pub fn from_f32(rows: usize, cols: usize, src: &[f32], ty: GgmlType) -> Mat {
        assert_eq!(src.len(), rows * cols);
        let rb = ty.row_bytes(cols).expect("whole blocks");
        let mut bytes = vec![0u8; rb * rows];
        let mut w = vec![0f32; rows * cols];
        for r in 0..rows {
            quantize_row(
                ty,
                &src[r * cols..(r + 1) * cols],
                &mut bytes[r * rb..(r + 1) * rb],
            );
            dequantize_row(
                ty,
                &bytes[r * rb..(r + 1) * rb],
                &mut w[r * cols..(r + 1) * cols],
            );
        }
        Mat {
            rows,
            cols,
            ty,
            bytes,
            w,
        }
    }

    /// Uniform entries in ±`scale`.
    pub fn random(rng: &mut Rng, rows: usize, cols: usize, scale: f32, ty: GgmlType) -> Mat {
        let src: Vec<f32> = (0..rows * cols).map(|_| scale * rng.sym()).collect();
        Mat::from_f32(rows, cols, &src, ty)
    }

    /// Stack matrices by rows (how GGUF fuses q/k/v or gate/up).
    pub fn concat_rows(parts: &[&Mat]) -> Mat {
        let (cols, ty) = (parts[0].cols, parts[0].ty);
        assert!(parts.iter().all(|m| m.cols == cols && m.ty == ty));
        Mat {
            rows: parts.iter().map(|m| m.rows).sum(),
            cols,
            ty,
            bytes: parts.iter().flat_map(|m| m.bytes.iter().copied()).collect(),
            w: parts.iter().flat_map(|m| m.w.iter().copied()).collect(),
        }
    }

    pub fn dims(&self) -> Vec<u64> {
        vec![self.cols as u64, self.rows as u64]
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.w[r * self.cols..(r + 1) * self.cols]
    }
}

#[derive(Clone, Debug)]
pub struct LayerW {
    pub attn_norm: Vec<f32>,
    pub wq: Mat,
    pub bq: Option<Vec<f32>>,
    pub wk: Mat,
    pub bk: Option<Vec<f32>>,
    pub wv: Mat,
    pub bv: Option<Vec<f32>>,
    pub wo: Mat,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub gate: Mat,
    pub up: Mat,
    pub down: Mat,
    pub post_ffn_norm: Option<Vec<f32>>,
}

#[derive(Clone, Debug)]
pub struct Weights {
    pub tok_embd: Mat,
    /// `None`: the head is tied to the token embedding (no `output.weight` in the file).
    pub output: Option<Mat>,
    pub output_norm: Vec<f32>,
    pub layers: Vec<LayerW>,
    /// Per-pair rope frequency divisors (`rope_freqs.weight` / `rope_factors_short.weight`).
    pub rope_factors: Option<Vec<f32>>,
}

impl Weights {
    pub fn head(&self) -> &Mat {
        self.output.as_ref().unwrap_or(&self.tok_embd)
    }
}

/// Hyperparameters written to the metadata.
#[derive(Clone, Debug)]
pub struct Spec {
    pub arch: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub eps: f32,
    pub rope_base: f32,
    /// `rope.scaling.type = linear` with this factor.
    pub linear_rope_factor: Option<f32>,
    pub sliding_window: Option<usize>,
}

impl Spec {
    /// n_embd 64, 4 heads, 2 kv heads, head_dim 16, n_ff 96, vocab 50.
    pub fn tiny(arch: &str, n_layer: usize) -> Spec {
        Spec {
            arch: arch.to_string(),
            n_vocab: 50,
            n_embd: 64,
            n_layer,
            n_ff: 96,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_rot: 16,
            eps: 1e-5,
            rope_base: 10000.0,
            linear_rope_factor: None,
            sliding_window: None,
        }
    }
    pub fn n_q(&self) -> usize {
        self.n_head * self.head_dim
    }
    pub fn n_kv(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// Which optional tensors the generated weights have, and the storage types.
#[derive(Clone, Debug)]
pub struct Opts {
    pub biases: bool,
    pub qk_norm: bool,
    pub post_norms: bool,
    pub tied: bool,
    pub rope_factors: bool,
    pub ty_embd: GgmlType,
    pub ty_out: GgmlType,
    pub ty_attn: GgmlType,
    pub ty_ffn: GgmlType,
    pub ty_down: GgmlType,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            biases: false,
            qk_norm: false,
            post_norms: false,
            tied: false,
            rope_factors: false,
            ty_embd: GgmlType::F32,
            ty_out: GgmlType::F32,
            ty_attn: GgmlType::F32,
            ty_ffn: GgmlType::F32,
            ty_down: GgmlType::F32,
        }
    }
}

pub fn gen_weights(spec: &Spec, o: &Opts, seed: u64) -> Weights {
    let mut rng = Rng::new(seed);
    let (e, f, v) = (spec.n_embd, spec.n_ff, spec.n_vocab);
    // Uniform(±s) has variance s²/3: s = k * sqrt(3 / fan_in) gives outputs of std ~k.
    let s = |k: f32, fan_in: usize| k * (3.0 / fan_in as f32).sqrt();
    let tok_embd = Mat::random(&mut rng, v, e, 1.0, o.ty_embd);
    let output = if o.tied {
        None
    } else {
        Some(Mat::random(&mut rng, v, e, s(1.5, e), o.ty_out))
    };
    let output_norm = rng.vec(e, 1.0, 0.3);
    let mut layers = Vec::new();
    for _ in 0..spec.n_layer {
        let opt_vec = |on: bool, n: usize, c: f32, sp: f32, rng: &mut Rng| {
            if on {
                Some(rng.vec(n, c, sp))
            } else {
                None
            }
        };
        let attn_norm = rng.vec(e, 1.0, 0.3);
        let wq = Mat::random(&mut rng, spec.n_q(), e, s(1.5, e), o.ty_attn);
        let bq = opt_vec(o.biases, spec.n_q(), 0.0, 0.8, &mut rng);
        let wk = Mat::random(&mut rng, spec.n_kv(), e, s(1.5, e), o.ty_attn);
        let bk = opt_vec(o.biases, spec.n_kv(), 0.0, 0.8, &mut rng);
        let wv = Mat::random(&mut rng, spec.n_kv(), e, s(1.0, e), o.ty_attn);
        let bv = opt_vec(o.biases, spec.n_kv(), 0.0, 0.8, &mut rng);
        let wo = Mat::random(&mut rng, e, spec.n_q(), s(0.7, spec.n_q()), o.ty_attn);
        let q_norm = opt_vec(o.qk_norm, spec.head_dim, 1.0, 0.6, &mut rng);
        let k_norm = opt_vec(o.qk_norm, spec.head_dim, 1.0, 0.6, &mut rng);
        let post_attn_norm = opt_vec(o.post_norms, e, 0.8, 0.4, &mut rng);
        let ffn_norm = rng.vec(e, 1.0, 0.3);
        let gate = Mat::random(&mut rng, f, e, s(1.2, e), o.ty_ffn);
        let up = Mat::random(&mut rng, f, e, s(1.0, e), o.ty_ffn);
        let down = Mat::random(&mut rng, e, f, s(0.7, f), o.ty_down);
        let post_ffn_norm = opt_vec(o.post_norms, e, 0.8, 0.4, &mut rng);
        layers.push(LayerW {
            attn_norm,
            wq,
            bq,
            wk,
            bk,
            wv,
            bv,
            wo,
            q_norm,
            k_norm,
            post_attn_norm,
            ffn_norm,
            gate,
            up,
            down,
            post_ffn_norm,
        });
    }
    let rope_factors = if o.rope_factors {
        Some(
            (0..spec.n_rot / 2)
                .map(|_| 1.0 + 2.0 * rng.sym().abs())
                .collect(),
        )
    } else {
        None
    };
    Weights {
        tok_embd,
        output,
        output_norm,
        layers,
        rope_factors,
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF files.

pub type TensorEntry = (String, Vec<u64>, GgmlType, Vec<u8>);

/// Metadata and tensors of a synthetic file, editable before writing.
#[derive(Clone)]
pub struct Synth {
    pub meta: Vec<(String, Value)>,
    pub tensors: Vec<TensorEntry>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// How phi3 stores q/k/v: one fused `attn_qkv` (the converter's output) or separate tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qkv {
    Fused,
    Split,
}

impl Synth {
    /// The file for `spec` with weights `w`. For phi3, `ffn_up` is always gate||up stacked by
    /// rows and q/k/v are fused or split per `qkv`; other architectures use separate tensors.
    pub fn new(spec: &Spec, w: &Weights, qkv: Qkv) -> Synth {
        let a = spec.arch.as_str();
        let mut s = Synth {
            meta: Vec::new(),
            tensors: Vec::new(),
        };
        s.set("general.architecture", Value::String(a.into()));
        s.set(
            &format!("{a}.embedding_length"),
            Value::U32(spec.n_embd as u32),
        );
        s.set(&format!("{a}.block_count"), Value::U32(spec.n_layer as u32));
        s.set(
            &format!("{a}.feed_forward_length"),
            Value::U32(spec.n_ff as u32),
        );
        s.set(
            &format!("{a}.attention.head_count"),
            Value::U32(spec.n_head as u32),
        );
        s.set(
            &format!("{a}.attention.head_count_kv"),
            Value::U32(spec.n_head_kv as u32),
        );
        s.set(&format!("{a}.context_length"), Value::U32(256));
        s.set(
            &format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(spec.eps),
        );
        s.set(&format!("{a}.rope.freq_base"), Value::F32(spec.rope_base));
        if spec.head_dim != spec.n_embd / spec.n_head {
            s.set(
                &format!("{a}.attention.key_length"),
                Value::U32(spec.head_dim as u32),
            );
            s.set(
                &format!("{a}.attention.value_length"),
                Value::U32(spec.head_dim as u32),
            );
        }
        if spec.n_rot != spec.head_dim {
            s.set(
                &format!("{a}.rope.dimension_count"),
                Value::U32(spec.n_rot as u32),
            );
        }
        if let Some(f) = spec.linear_rope_factor {
            s.set(
                &format!("{a}.rope.scaling.type"),
                Value::String("linear".into()),
            );
            s.set(&format!("{a}.rope.scaling.factor"), Value::F32(f));
        }
        if let Some(win) = spec.sliding_window {
            s.set(
                &format!("{a}.attention.sliding_window"),
                Value::U32(win as u32),
            );
        }

        s.add_mat("token_embd.weight", &w.tok_embd);
        s.add_vec("output_norm.weight", &w.output_norm);
        if let Some(o) = &w.output {
            s.add_mat("output.weight", o);
        }
        if let Some(rf) = &w.rope_factors {
            let name = if a == "phi3" {
                "rope_factors_short.weight"
            } else {
                "rope_freqs.weight"
            };
            s.add_vec(name, rf);
        }
        for (i, l) in w.layers.iter().enumerate() {
            let b = |n: &str| format!("blk.{i}.{n}");
            s.add_vec(&b("attn_norm.weight"), &l.attn_norm);
            if a == "phi3" && qkv == Qkv::Fused {
                s.add_mat(
                    &b("attn_qkv.weight"),
                    &Mat::concat_rows(&[&l.wq, &l.wk, &l.wv]),
                );
                if let (Some(bq), Some(bk), Some(bv)) = (&l.bq, &l.bk, &l.bv) {
                    let fused: Vec<f32> = bq.iter().chain(bk).chain(bv).copied().collect();
                    s.add_vec(&b("attn_qkv.bias"), &fused);
                }
            } else {
                for (n, m, bias) in [
                    ("attn_q", &l.wq, &l.bq),
                    ("attn_k", &l.wk, &l.bk),
                    ("attn_v", &l.wv, &l.bv),
                ] {
                    s.add_mat(&b(&format!("{n}.weight")), m);
                    if let Some(bias) = bias {
                        s.add_vec(&b(&format!("{n}.bias")), bias);
                    }
                }
            }
            s.add_mat(&b("attn_output.weight"), &l.wo);
            if let Some(v) = &l.q_norm {
                s.add_vec(&b("attn_q_norm.weight"), v);
            }
            if let Some(v) = &l.k_norm {
                s.add_vec(&b("attn_k_norm.weight"), v);
            }
            if let Some(v) = &l.post_attn_norm {
                s.add_vec(&b("post_attention_norm.weight"), v);
            }
            s.add_vec(&b("ffn_norm.weight"), &l.ffn_norm);
            if a == "phi3" {
                s.add_mat(&b("ffn_up.weight"), &Mat::concat_rows(&[&l.gate, &l.up]));
            } else {
                s.add_mat(&b("ffn_gate.weight"), &l.gate);
                s.add_mat(&b("ffn_up.weight"), &l.up);
            }
            s.add_mat(&b("ffn_down.weight"), &l.down);
            if let Some(v) = &l.post_ffn_norm {
                s.add_vec(&b("post_ffw_norm.weight"), v);
            }
        }
        s
    }

    pub fn set(&mut self, key: &str, v: Value) {
        match self.meta.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.meta.push((key.to_string(), v)),
        }
    }

    pub fn remove_key(&mut self, key: &str) {
        let before = self.meta.len();
        self.meta.retain(|(k, _)| k != key);
        assert_ne!(before, self.meta.len(), "no key {key} to remove");
    }

    pub fn add_mat(&mut self, name: &str, m: &Mat) {
        self.tensors
            .push((name.to_string(), m.dims(), m.ty, m.bytes.clone()));
    }

    pub fn add_vec(&mut self, name: &str, v: &[f32]) {
        self.tensors.push((
            name.to_string(),
            vec![v.len() as u64],
            GgmlType::F32,
            f32_bytes(v),
        ));
    }

    pub fn remove_tensor(&mut self, name: &str) {
        let before = self.tensors.len();
        self.tensors.retain(|t| t.0 != name);
        assert_ne!(before, self.tensors.len(), "no tensor {name} to remove");
    }

    /// Replace a tensor's dims, type and data (keeping its place).
    pub fn replace_tensor(&mut self, name: &str, dims: Vec<u64>, ty: GgmlType, data: Vec<u8>) {
        let t = self
            .tensors
            .iter_mut()
            .find(|t| t.0 == name)
            .unwrap_or_else(|| panic!("no tensor {name}"));
        *t = (name.to_string(), dims, ty, data);
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut w = GgufWriter::new();
        for (k, v) in &self.meta {
            w.set(k.clone(), v.clone());
        }
        for (n, d, ty, data) in &self.tensors {
            w.add_tensor(n.clone(), d.clone(), *ty, data.clone())
                .expect("valid synthetic tensor");
        }
        let mut out = Vec::new();
        w.write_to(&mut out).expect("write to memory");
        out
    }

    pub fn load(&self) -> Result<Model, ModelError> {
        Model::from_gguf(Arc::new(GgufFile::from_bytes(self.bytes())?))
    }
}

// ---------------------------------------------------------------------------------------------
// Running the engine.

/// Logits of every position for `tokens` fed in one `forward` call (split by the session into
/// micro-batches of `n_batch`).
pub fn engine_logits(m: &Model, tokens: &[u32], n_batch: usize, threads: usize) -> Vec<Vec<f32>> {
    let pool = ThreadPool::new(threads);
    let mut s = m.new_session(32, n_batch);
    m.forward(&mut s, &pool, tokens, 0).expect("forward");
    assert_eq!(s.n_logit_rows(), tokens.len());
    (0..tokens.len()).map(|i| s.logits(i).to_vec()).collect()
}

/// Logits of every position with one `forward` call per token.
pub fn engine_logits_one_by_one(m: &Model, tokens: &[u32], threads: usize) -> Vec<Vec<f32>> {
    let pool = ThreadPool::new(threads);
    let mut s = m.new_session(32, 8);
    tokens
        .iter()
        .map(|&t| {
            m.forward(&mut s, &pool, &[t], 0).expect("forward");
            assert_eq!(s.n_logit_rows(), 1);
            s.last_logits().to_vec()
        })
        .collect()
}

/// max |a - b| over all positions and tokens divided by max |b| (the logit scale).
pub fn rel_err(a: &[Vec<f32>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    (0..a.len())
        .map(|p| rel_err_at(a, b, p))
        .fold(0.0, f64::max)
}

/// max |b| over all positions and tokens.
fn logit_scale(b: &[Vec<f64>]) -> f64 {
    b.iter()
        .flat_map(|r| r.iter())
        .fold(0.0f64, |m, &x| m.max(x.abs()))
        .max(1e-12)
}

/// max |a - b| at position `p`, relative to the logit scale of the whole of `b`.
pub fn rel_err_at(a: &[Vec<f32>], b: &[Vec<f64>], p: usize) -> f64 {
    let d = a[p]
        .iter()
        .zip(&b[p])
        .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()));
    d / logit_scale(b)
}

/// Same for two engine runs.
pub fn rel_diff_f32(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let scale = b
        .iter()
        .flat_map(|r| r.iter())
        .fold(0.0f64, |m, &x| m.max((x as f64).abs()))
        .max(1e-12);
    let d = a
        .iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y))
        .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    d / scale
}

pub fn argmax64(x: &[f64]) -> usize {
    (0..x.len()).fold(0, |b, i| if x[i] > x[b] { i } else { b })
}

pub fn argmax32(x: &[f32]) -> usize {
    (0..x.len()).fold(0, |b, i| if x[i] > x[b] { i } else { b })
}
