//! The shared decoder-only transformer. Each architecture file describes its model as a
//! [`Decoder`] (which norms, biases, activation, rope style and attention window each layer
//! has); this file runs that description. Nothing here asks which architecture it is.

use crate::hparams::Hparams;
use crate::weights::{Linear, Matrix};
use kestrel_kernels::ops::RopeStyle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// silu(gate) * up
    SwiGlu,
    /// gelu_tanh(gate) * up
    GeGlu,
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    /// RMS norm over each head of q / k before rope (gemma3, qwen3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// RMS norm of the attention output before the residual add (gemma2/3).
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    pub post_ffn_norm: Option<Vec<f32>>,
    pub rope_base: f32,
    /// Sliding-window attention: a query at position p sees keys at p - window + 1 ..= p.
    pub window: Option<usize>,
}

impl Layer {
    /// The layer's linear maps (q, k, v, o, gate, up, down).
    pub fn linears(&self) -> [&Linear; 7] {
        [
            &self.wq, &self.wk, &self.wv, &self.wo, &self.gate, &self.up, &self.down,
        ]
    }

    /// [`Layer::linears`], mutably (load-time repacking).
    pub fn linears_mut(&mut self) -> [&mut Linear; 7] {
        [
            &mut self.wq,
            &mut self.wk,
            &mut self.wv,
            &mut self.wo,
            &mut self.gate,
            &mut self.up,
            &mut self.down,
        ]
    }

    /// A pre-norm layer (llama family): no per-head or post norms, full attention.
    #[allow(clippy::too_many_arguments)]
    pub fn pre_norm(
        attn_norm: Vec<f32>,
        (wq, wk, wv, wo): (Linear, Linear, Linear, Linear),
        ffn_norm: Vec<f32>,
        (gate, up, down): (Linear, Linear, Linear),
        rope_base: f32,
    ) -> Layer {
        Layer {
            attn_norm,
            wq,
            wk,
            wv,
            wo,
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            ffn_norm,
            gate,
            up,
            down,
            post_ffn_norm: None,
            rope_base,
            window: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Decoder {
    pub hp: Hparams,
    pub tok_embd: Matrix,
    /// Multiplies the embeddings (gemma: sqrt(n_embd)).
    pub embd_scale: f32,
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>,
    /// The output head: its own tensor, or the token embedding when tied.
    pub output: Matrix,
    pub rope_style: RopeStyle,
    /// Per-pair frequency divisors (llama3 `rope_freqs.weight`).
    pub rope_factors: Option<Vec<f32>>,
    /// Multiplies q·k before the softmax.
    pub attn_scale: f32,
    /// Apply `attn_scale` to q before the dot products rather than to the scores (gemma's
    /// graph in llama.cpp does; it changes the last bits, which matter for agreement).
    pub scale_q: bool,
    pub activation: Activation,
    /// tanh soft-capping of the final logits (gemma2 style), if any.
    pub final_softcap: Option<f32>,
}
