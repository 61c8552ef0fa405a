//! `phi3`: fused projections — `attn_qkv` holds q, k and v stacked by rows, `ffn_up` holds gate
//! then up — SwiGLU, rope over halves, optional `rope_factors_short` (the long factors are for
//! contexts beyond the original training length, which sessions here do not extend to).

use super::{blk, swiglu_decoder};
use crate::decoder::{Decoder, Layer};
use crate::error::Result;
use crate::hparams::Hparams;
use crate::weights::{Linear, Loader};
use kestrel_kernels::ops::RopeStyle;

/// Split a fused linear layer into consecutive row blocks of the given sizes.
fn split_rows(fused: &Linear, sizes: &[usize]) -> Vec<Linear> {
    let mut r0 = 0;
    sizes
        .iter()
        .map(|&n| {
            // A low-rank pair shares its right factor; only A's rows split.
            let (w, a) = match &fused.a {
                Some(a) => (fused.w.clone(), Some(a.rows_slice(r0, n))),
                None => (fused.w.rows_slice(r0, n), None),
            };
            let b = fused.b.as_ref().map(|b| b[r0..r0 + n].to_vec());
            r0 += n;
            Linear { w, b, a }
        })
        .collect()
}

pub fn load(l: &Loader, hp: Hparams) -> Result<Decoder> {
    let (e, f) = (hp.n_embd, hp.n_ff);
    let mut layers = Vec::with_capacity(hp.n_layer);
    for i in 0..hp.n_layer {
        let (q, k, v) = if l.has(&blk(i, "attn_qkv.weight")) {
            let fused = l.linear(
                &blk(i, "attn_qkv"),
                e,
                hp.n_embd_q() + hp.n_embd_k() + hp.n_embd_v(),
            )?;
            let mut parts =
                split_rows(&fused, &[hp.n_embd_q(), hp.n_embd_k(), hp.n_embd_v()]).into_iter();
            (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            )
        } else {
            let (q, k, v, _) = super::attn_qkvo(l, &hp, i)?;
            (q, k, v)
        };
        let wo = l.linear(&blk(i, "attn_output"), hp.n_head * hp.head_dim_v, e)?;
        let fused_up = l.linear(&blk(i, "ffn_up"), e, 2 * f)?;
        let mut gu = split_rows(&fused_up, &[f, f]).into_iter();
        let (gate, up) = (gu.next().unwrap(), gu.next().unwrap());
        layers.push(Layer::pre_norm(
            l.vector(&blk(i, "attn_norm.weight"), e)?,
            (q, k, v, wo),
            l.vector(&blk(i, "ffn_norm.weight"), e)?,
            (gate, up, l.linear(&blk(i, "ffn_down"), f, e)?),
            hp.rope_base,
        ));
    }
    let factors = l.vector_opt("rope_factors_short.weight", hp.n_rot / 2)?;
    swiglu_decoder(l, hp, layers, RopeStyle::Neox, factors)
}
