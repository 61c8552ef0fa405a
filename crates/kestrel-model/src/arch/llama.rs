//! `llama`: Llama 1-3, SmolLM, TinyLlama, Mistral. Pre-norm, SwiGLU, rope on adjacent pairs
//! (the GGUF converter permutes q/k for it), optional llama3 rope frequency factors.

use super::{attn_qkvo, blk, ffn_gate_up_down, swiglu_decoder};
use crate::decoder::{Decoder, Layer};
use crate::error::Result;
use crate::hparams::Hparams;
use crate::weights::Loader;
use kestrel_kernels::ops::RopeStyle;

pub fn load(l: &Loader, hp: Hparams) -> Result<Decoder> {
    let mut layers = Vec::with_capacity(hp.n_layer);
    for i in 0..hp.n_layer {
        layers.push(Layer::pre_norm(
            l.vector(&blk(i, "attn_norm.weight"), hp.n_embd)?,
            attn_qkvo(l, &hp, i)?,
            l.vector(&blk(i, "ffn_norm.weight"), hp.n_embd)?,
            ffn_gate_up_down(l, &hp, i)?,
            hp.rope_base,
        ));
    }
    let factors = l.vector_opt("rope_freqs.weight", hp.n_rot / 2)?;
    swiglu_decoder(l, hp, layers, RopeStyle::Normal, factors)
}
