//! One file per architecture: each reads its tensors and hyperparameters into a
//! [`Decoder`](crate::decoder::Decoder) description. Shared tensor-naming helpers live here.

pub mod gemma3;
pub mod llama;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use crate::decoder::{Activation, Decoder, Layer};
use crate::error::Result;
use crate::hparams::Hparams;
use crate::weights::{Linear, Loader, Matrix};
use kestrel_kernels::ops::RopeStyle;

pub(crate) fn blk(i: usize, name: &str) -> String {
    format!("blk.{i}.{name}")
}

/// Separate q, k, v and output projections (`attn_q`, `attn_k`, `attn_v`, `attn_output`).
pub(crate) fn attn_qkvo(
    l: &Loader,
    hp: &Hparams,
    i: usize,
) -> Result<(Linear, Linear, Linear, Linear)> {
    let e = hp.n_embd;
    Ok((
        l.linear(&blk(i, "attn_q"), e, hp.n_embd_q())?,
        l.linear(&blk(i, "attn_k"), e, hp.n_embd_k())?,
        l.linear(&blk(i, "attn_v"), e, hp.n_embd_v())?,
        l.linear(&blk(i, "attn_output"), hp.n_head * hp.head_dim_v, e)?,
    ))
}

/// Gated FFN with separate `ffn_gate`, `ffn_up`, `ffn_down`.
pub(crate) fn ffn_gate_up_down(
    l: &Loader,
    hp: &Hparams,
    i: usize,
) -> Result<(Linear, Linear, Linear)> {
    let (e, f) = (hp.n_embd, hp.n_ff);
    Ok((
        l.linear(&blk(i, "ffn_gate"), e, f)?,
        l.linear(&blk(i, "ffn_up"), e, f)?,
        l.linear(&blk(i, "ffn_down"), f, e)?,
    ))
}

/// Token embedding, final norm, and the output head (tied to the embedding when the file has
/// no `output.weight`).
pub(crate) fn embd_and_head(l: &Loader, hp: &Hparams) -> Result<(Matrix, Vec<f32>, Matrix)> {
    let tok = l.matrix("token_embd.weight", hp.n_embd, hp.n_vocab)?;
    let norm = l.vector("output_norm.weight", hp.n_embd)?;
    let out = match l.matrix_opt("output.weight", hp.n_embd, hp.n_vocab)? {
        Some(m) => m,
        None => tok.clone(),
    };
    Ok((tok, norm, out))
}

pub(crate) fn default_attn_scale(hp: &Hparams) -> f32 {
    1.0 / (hp.head_dim as f32).sqrt()
}

/// A llama-family decoder around `layers`: plain embeddings, SwiGLU, the scale applied to the
/// scores, no soft-capping.
pub(crate) fn swiglu_decoder(
    l: &Loader,
    hp: Hparams,
    layers: Vec<Layer>,
    rope_style: RopeStyle,
    rope_factors: Option<Vec<f32>>,
) -> Result<Decoder> {
    let (tok_embd, output_norm, output) = embd_and_head(l, &hp)?;
    Ok(Decoder {
        tok_embd,
        embd_scale: 1.0,
        layers,
        output_norm,
        output,
        rope_style,
        rope_factors,
        attn_scale: default_attn_scale(&hp),
        scale_q: false,
        activation: Activation::SwiGlu,
        final_softcap: None,
        hp,
    })
}
