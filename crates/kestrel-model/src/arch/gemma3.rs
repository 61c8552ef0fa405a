//! `gemma3`: embeddings scaled by sqrt(n_embd); per-head RMS norm of q and k; norms after the
//! attention and FFN outputs as well as before; GeGLU; rope over halves; five sliding-window
//! layers (local rope base 10000) for every global one. Norm weights in GGUF already include
//! gemma's "+1".

use super::{attn_qkvo, blk, embd_and_head, ffn_gate_up_down};
use crate::decoder::{Activation, Decoder, Layer};
use crate::error::Result;
use crate::hparams::Hparams;
use crate::weights::Loader;
use kestrel_kernels::ops::RopeStyle;

/// Every 6th layer attends globally; the others use the sliding window.
const SWA_PATTERN: usize = 6;
/// Rope base of the sliding-window layers (fixed by the architecture, not in the metadata).
const LOCAL_ROPE_BASE: f32 = 10_000.0;

pub fn is_local_layer(i: usize) -> bool {
    i % SWA_PATTERN < SWA_PATTERN - 1
}

pub fn load(l: &Loader, hp: Hparams) -> Result<Decoder> {
    let (tok_embd, output_norm, output) = embd_and_head(l, &hp)?;
    let (e, hd) = (hp.n_embd, hp.head_dim);
    let mut layers = Vec::with_capacity(hp.n_layer);
    for i in 0..hp.n_layer {
        let (wq, wk, wv, wo) = attn_qkvo(l, &hp, i)?;
        let (gate, up, down) = ffn_gate_up_down(l, &hp, i)?;
        let local = is_local_layer(i) && hp.sliding_window.is_some();
        layers.push(Layer {
            attn_norm: l.vector(&blk(i, "attn_norm.weight"), e)?,
            wq,
            wk,
            wv,
            wo,
            q_norm: Some(l.vector(&blk(i, "attn_q_norm.weight"), hd)?),
            k_norm: Some(l.vector(&blk(i, "attn_k_norm.weight"), hd)?),
            post_attn_norm: Some(l.vector(&blk(i, "post_attention_norm.weight"), e)?),
            ffn_norm: l.vector(&blk(i, "ffn_norm.weight"), e)?,
            gate,
            up,
            down,
            post_ffn_norm: Some(l.vector(&blk(i, "post_ffw_norm.weight"), e)?),
            rope_base: if local { LOCAL_ROPE_BASE } else { hp.rope_base },
            window: if local { hp.sliding_window } else { None },
        });
    }
    Ok(Decoder {
        tok_embd,
        embd_scale: (e as f32).sqrt(),
        layers,
        output_norm,
        output,
        rope_style: RopeStyle::Neox,
        rope_factors: None,
        attn_scale: 1.0 / (hd as f32).sqrt(),
        scale_q: true,
        activation: Activation::GeGlu,
        final_softcap: None,
        hp,
    })
}
