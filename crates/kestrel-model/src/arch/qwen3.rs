//! `qwen3`: the qwen2 block without biases, with RMS norms over each head of q and k
//! (`attn_q_norm`, `attn_k_norm`) before rope.

use super::blk;
use crate::decoder::Decoder;
use crate::error::Result;
use crate::hparams::Hparams;
use crate::weights::Loader;

pub fn load(l: &Loader, hp: Hparams) -> Result<Decoder> {
    let hd = hp.head_dim;
    let mut d = super::qwen2::load(l, hp)?;
    for (i, layer) in d.layers.iter_mut().enumerate() {
        layer.q_norm = Some(l.vector(&blk(i, "attn_q_norm.weight"), hd)?);
        layer.k_norm = Some(l.vector(&blk(i, "attn_k_norm.weight"), hd)?);
    }
    Ok(d)
}
