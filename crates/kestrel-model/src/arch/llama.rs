//! `llama`: Llama 1-3, SmolLM, TinyLlama, Mistral. Pre-norm, SwiGLU, rope on adjacent pairs
//! (the GGUF converter permutes q/k for it), optional llama3 rope frequency factors.

use super::{attn_qkvo, blk, default_attn_scale, embd_and_head, ffn_gate_up_down};
use crate::decoder::{Activation, Decoder, Layer};
use crate::error::Result;
use crate::hparams::Hparams;
use crate::weights::Loader;
use kestrel_kernels::ops::RopeStyle;

pub fn load(l: &Loader, hp: Hparams) -> Result<Decoder> {
    let (tok_embd, output_norm, output) = embd_and_head(l, &hp)?;
    let mut layers = Vec::with_capacity(hp.n_layer);
    for i in 0..hp.n_layer {
        let (wq, wk, wv, wo) = attn_qkvo(l, &hp, i)?;
        let (gate, up, down) = ffn_gate_up_down(l, &hp, i)?;
        layers.push(Layer {
            attn_norm: l.vector(&blk(i, "attn_norm.weight"), hp.n_embd)?,
            wq,
            wk,
            wv,
            wo,
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            ffn_norm: l.vector(&blk(i, "ffn_norm.weight"), hp.n_embd)?,
            gate,
            up,
            down,
            post_ffn_norm: None,
            rope_base: hp.rope_base,
            window: None,
        });
    }
    Ok(Decoder {
        tok_embd,
        embd_scale: 1.0,
        layers,
        output_norm,
        output,
        rope_style: RopeStyle::Normal,
        rope_factors: l.vector_opt("rope_freqs.weight", hp.n_rot / 2)?,
        attn_scale: default_attn_scale(&hp),
        scale_q: false,
        activation: Activation::SwiGlu,
        final_softcap: None,
        hp,
    })
}
