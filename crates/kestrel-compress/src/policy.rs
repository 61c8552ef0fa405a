//! Which tensors get quantized, and to which type: the rules of llama.cpp's
//! `llama_model_quantize_impl` / `llama_tensor_get_type`, re-implemented for the
//! types this project supports (dense models; no MoE or i-quant recipes).
//!
//! The mixes give more bits where errors cost most: the output head (Q6_K), and `attn_v` /
//! `ffn_down` in the first and last eighth of the layers plus every third layer between
//! (`use_more_bits`). A row length that is not a multiple of a k-quant's 256-element
//! super-block falls back to a 32-element format of similar size, as llama.cpp does.

use crate::ftype::Ftype;
use kestrel_gguf::{GgmlType, GgufFile, TensorInfo};

/// Facts about the model the rules depend on.
#[derive(Clone, Debug)]
pub struct PolicyContext {
    /// Number of query heads per key/value head.
    pub n_gqa: usize,
    /// The model has its own `output.weight` (not tied to the embeddings).
    pub has_output: bool,
    pub n_attn_v: usize,
    pub n_ffn_down: usize,
    /// Whether an importance matrix is in use (llama.cpp changes a few choices then).
    pub has_imatrix: bool,
}

impl PolicyContext {
    pub fn from_gguf(g: &GgufFile, has_imatrix: bool) -> PolicyContext {
        let arch = g.architecture().unwrap_or("llama").to_string();
        let n_head = g
            .get_u32(&format!("{arch}.attention.head_count"))
            .unwrap_or(1)
            .max(1) as usize;
        let n_head_kv = g
            .get_u32(&format!("{arch}.attention.head_count_kv"))
            .unwrap_or(n_head as u32)
            .max(1) as usize;
        let count = |pat: &str| g.tensors().iter().filter(|t| t.name.contains(pat)).count();
        PolicyContext {
            n_gqa: n_head / n_head_kv,
            has_output: g.tensor("output.weight").is_some(),
            n_attn_v: count("attn_v.weight"),
            n_ffn_down: count("ffn_down"),
            has_imatrix,
        }
    }
}

/// Whether llama.cpp would quantize this tensor at all: weights of two or more dimensions,
/// but never norms, MoE routers or a few tiny special tensors. Everything else is copied.
pub fn should_quantize(t: &TensorInfo) -> bool {
    let n = &t.name;
    n.ends_with("weight")
        && ggml_n_dims(&t.dims) >= 2
        && !n.contains("_norm.weight")
        && !n.contains("ffn_gate_inp.weight")
        && !n.contains("altup")
        && !n.contains("laurel")
        && !n.contains("per_layer_model_proj")
        && n != "position_embd.weight"
        && n != "token_types.weight"
        && !n.contains("ssm_conv1d.weight")
        && !n.contains("attn_rel_b.weight")
}

/// ggml's `ggml_n_dims`: trailing dimensions of size 1 do not count.
fn ggml_n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// llama.cpp's `use_more_bits`: first and last eighth, and every third layer between.
fn use_more_bits(i: usize, n: usize) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// Chooses types tensor by tensor, in file order (the counters follow llama.cpp's, which
/// count `attn_v` and `ffn_down` tensors as they come).
pub struct TypeChooser {
    ctx: PolicyContext,
    ftype: Ftype,
    /// `--pure`: the base type everywhere (still subject to the row-length fallback).
    pure: bool,
    i_attn_v: usize,
    i_ffn_down: usize,
}

impl TypeChooser {
    pub fn new(ctx: PolicyContext, ftype: Ftype, pure: bool) -> TypeChooser {
        TypeChooser {
            ctx,
            ftype,
            pure,
            i_attn_v: 0,
            i_ffn_down: 0,
        }
    }

    /// The type for tensor `t` (call once per quantizable tensor, in file order).
    pub fn choose(&mut self, t: &TensorInfo) -> GgmlType {
        use Ftype as F;
        use GgmlType as G;
        let base = self.ftype.base_type();
        if self.ftype.is_float() {
            return base;
        }
        let name = t.name.as_str();
        let f = self.ftype;
        let mut ty = base;
        let is_output =
            name == "output.weight" || (!self.ctx.has_output && name == "token_embd.weight");
        if self.pure {
            // Nothing but the shape fallback below.
        } else if is_output {
            // llama.cpp: Q8_0 when the row does not fit the base type's blocks or the base is
            // Q8_0 already, else Q6_K (which the shape fallback may turn into Q8_0).
            let nx = t.row_len();
            ty = if nx % base.block_size() != 0 || base == G::Q8_0 {
                G::Q8_0
            } else {
                G::Q6_K
            };
        } else if name.contains("attn_v.weight") {
            let (i, n) = (self.i_attn_v, self.ctx.n_attn_v);
            match f {
                F::Q2_K => {
                    ty = if self.ctx.n_gqa >= 4 {
                        G::Q4_K
                    } else {
                        G::Q3_K
                    }
                }
                F::Q3_K_M => ty = if i < 2 { G::Q5_K } else { G::Q4_K },
                F::Q3_K_L => ty = G::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => ty = G::Q6_K,
                F::Q4_K_S if i < 4 => ty = G::Q5_K,
                _ => {}
            }
            self.i_attn_v += 1;
        } else if name.contains("ffn_down") {
            let (i, n) = (self.i_ffn_down, self.ctx.n_ffn_down);
            match f {
                F::Q2_K => ty = G::Q3_K,
                F::Q3_K_M => {
                    ty = if i < n / 16 { G::Q5_K } else { G::Q4_K };
                }
                F::Q3_K_L => ty = G::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => ty = G::Q6_K,
                F::Q4_K_S if i < n / 8 => ty = G::Q5_K,
                F::Q4_0 | F::Q5_0 if self.ctx.has_imatrix && i < n / 8 => {
                    // llama.cpp guards the first ffn_down layers of Q4_0/Q5_0 with imatrix.
                    ty = if f == F::Q4_0 { G::Q4_1 } else { G::Q5_1 };
                }
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if name.contains("attn_output.weight") {
            match f {
                F::Q2_K => ty = G::Q3_K,
                F::Q3_K_M => ty = G::Q4_K,
                F::Q3_K_L => ty = G::Q5_K,
                _ => {}
            }
        }
        shape_fallback(ty, t.row_len())
    }
}

/// A row that is not a whole number of `ty` blocks gets a 32-element format of about the
/// same size (llama.cpp's fallback list), or F16 if even that does not fit. llama.cpp maps
/// Q2_K/Q3_K to IQ4_NL, which this project does not implement: Q4_0 (same 4.5 bits per
/// weight) stands in.
pub fn shape_fallback(ty: GgmlType, row_len: usize) -> GgmlType {
    use GgmlType as G;
    if row_len % ty.block_size() == 0 {
        return ty;
    }
    let alt = match ty {
        G::Q2_K | G::Q3_K => G::Q4_0,
        G::Q4_K => G::Q5_0,
        G::Q5_K => G::Q5_1,
        G::Q6_K => G::Q8_0,
        other => other,
    };
    if row_len % alt.block_size() == 0 {
        alt
    } else {
        G::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, dims: &[u64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: dims.to_vec(),
            ty: GgmlType::F32,
            offset: 0,
            size: 0,
        }
    }

    #[test]
    fn more_bits_layers_match_llama_cpp() {
        // 30 layers (SmolLM2-135M): n/8 = 3, 7n/8 = 26.
        let picked: Vec<usize> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        assert_eq!(
            picked,
            vec![0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]
        );
    }

    #[test]
    fn norms_and_vectors_stay() {
        assert!(!should_quantize(&t("blk.0.attn_norm.weight", &[576])));
        assert!(!should_quantize(&t("blk.0.ffn_norm.weight", &[576, 1])));
        assert!(!should_quantize(&t("blk.0.attn_q.bias", &[576, 4])));
        assert!(should_quantize(&t("blk.0.attn_q.weight", &[576, 576])));
    }

    #[test]
    fn q4_k_m_mix() {
        let ctx = PolicyContext {
            n_gqa: 3,
            has_output: false,
            n_attn_v: 30,
            n_ffn_down: 30,
            has_imatrix: false,
        };
        let mut c = TypeChooser::new(ctx, Ftype::Q4_K_M, false);
        // Tied embeddings are the output: 576 is not a multiple of 256 -> Q8_0.
        assert_eq!(
            c.choose(&t("token_embd.weight", &[576, 49152])),
            GgmlType::Q8_0
        );
        // Row 576: Q4_K falls back to Q5_0; ffn_down (row 1536) of layer 0 gets Q6_K.
        assert_eq!(
            c.choose(&t("blk.0.attn_q.weight", &[576, 576])),
            GgmlType::Q5_0
        );
        assert_eq!(
            c.choose(&t("blk.0.attn_v.weight", &[576, 192])),
            GgmlType::Q8_0
        );
        assert_eq!(
            c.choose(&t("blk.0.ffn_down.weight", &[1536, 576])),
            GgmlType::Q6_K
        );
        for _ in 1..3 {
            c.choose(&t("blk.x.ffn_down.weight", &[1536, 576]));
        }
        // Layer 3 is not a more-bits layer.
        assert_eq!(
            c.choose(&t("blk.3.ffn_down.weight", &[1536, 576])),
            GgmlType::Q4_K
        );
    }
}
