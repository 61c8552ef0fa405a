//! Hyperparameters read from GGUF metadata under the architecture's key prefix.

use crate::error::{ModelError, Result};
use kestrel_gguf::GgufFile;

#[derive(Clone, Debug)]
pub struct Hparams {
    pub arch: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    pub n_rot: usize,
    pub n_ctx_train: usize,
    pub norm_eps: f32,
    pub rope_base: f32,
    /// Multiplies positions (linear rope scaling: 1 / factor).
    pub rope_freq_scale: f32,
    pub sliding_window: Option<usize>,
}

/// Reads a key under the architecture prefix: `{arch}.{key}`.
pub struct Keys<'a> {
    pub g: &'a GgufFile,
    pub arch: &'a str,
}

impl Keys<'_> {
    pub fn key(&self, k: &str) -> String {
        format!("{}.{}", self.arch, k)
    }
    pub fn u32(&self, k: &str) -> Result<usize> {
        Ok(self.g.get_u32(&self.key(k))? as usize)
    }
    pub fn u32_opt(&self, k: &str) -> Result<Option<usize>> {
        Ok(self.g.get_u32_opt(&self.key(k))?.map(|v| v as usize))
    }
    pub fn f32_opt(&self, k: &str) -> Result<Option<f32>> {
        Ok(self.g.get_f32_opt(&self.key(k))?)
    }
}

fn positive(key: String, v: usize, max: usize) -> Result<usize> {
    if v == 0 || v > max {
        return Err(ModelError::BadHparam {
            key,
            why: format!("{v} is outside 1..={max}"),
        });
    }
    Ok(v)
}

impl Hparams {
    pub fn from_gguf(g: &GgufFile) -> Result<Hparams> {
        let arch = g.architecture()?.to_string();
        let k = Keys { g, arch: &arch };
        let n_embd = positive(
            k.key("embedding_length"),
            k.u32("embedding_length")?,
            1 << 16,
        )?;
        let n_layer = positive(k.key("block_count"), k.u32("block_count")?, 1024)?;
        let n_ff = positive(
            k.key("feed_forward_length"),
            k.u32("feed_forward_length")?,
            1 << 18,
        )?;
        let n_head = positive(
            k.key("attention.head_count"),
            k.u32("attention.head_count")?,
            1024,
        )?;
        let n_head_kv = positive(
            k.key("attention.head_count_kv"),
            k.u32_opt("attention.head_count_kv")?.unwrap_or(n_head),
            n_head,
        )?;
        if n_head % n_head_kv != 0 {
            return Err(ModelError::BadHparam {
                key: k.key("attention.head_count_kv"),
                why: format!("{n_head} query heads are not a multiple of {n_head_kv} kv heads"),
            });
        }
        let head_dim = positive(
            k.key("attention.key_length"),
            k.u32_opt("attention.key_length")?
                .unwrap_or(n_embd / n_head),
            4096,
        )?;
        let head_dim_v = positive(
            k.key("attention.value_length"),
            k.u32_opt("attention.value_length")?.unwrap_or(head_dim),
            4096,
        )?;
        let n_rot = k.u32_opt("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::BadHparam {
                key: k.key("rope.dimension_count"),
                why: format!("{n_rot} must be even and at most the head size {head_dim}"),
            });
        }
        let norm_eps = match k.f32_opt("attention.layer_norm_rms_epsilon")? {
            Some(e) => e,
            None => k.f32_opt("attention.layer_norm_epsilon")?.unwrap_or(1e-5),
        };
        let rope_base = k.f32_opt("rope.freq_base")?.unwrap_or(10000.0);
        let scaling = g
            .get_str_opt(&k.key("rope.scaling.type"))?
            .unwrap_or("none");
        let rope_freq_scale = match scaling {
            "linear" => {
                let f = k.f32_opt("rope.scaling.factor")?.unwrap_or(1.0);
                if !(f > 0.0) {
                    return Err(ModelError::BadHparam {
                        key: k.key("rope.scaling.factor"),
                        why: format!("{f}"),
                    });
                }
                1.0 / f
            }
            _ => 1.0,
        };
        let n_vocab = match g.get("tokenizer.ggml.tokens") {
            Some(_) => g.get_str_array("tokenizer.ggml.tokens")?.len(),
            None => match g.tensor("token_embd.weight") {
                Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
                _ => return Err(ModelError::MissingTensor("token_embd.weight".into())),
            },
        };
        Ok(Hparams {
            n_vocab,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_rot,
            n_ctx_train: k.u32_opt("context_length")?.unwrap_or(2048),
            norm_eps,
            rope_base,
            rope_freq_scale,
            sliding_window: k.u32_opt("attention.sliding_window")?,
            arch,
        })
    }

    pub fn n_embd_q(&self) -> usize {
        self.n_head * self.head_dim
    }
    pub fn n_embd_k(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
    pub fn n_embd_v(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
}
