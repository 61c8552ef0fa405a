//! `qwen2`: the llama block with biases on q, k and v (picked up from `*.bias` tensors) and
//! rope over the two halves of each head.

use crate::decoder::Decoder;
use crate::error::Result;
use crate::hparams::Hparams;
use crate::weights::Loader;
use kestrel_kernels::ops::RopeStyle;

pub fn load(l: &Loader, hp: Hparams) -> Result<Decoder> {
    let mut d = super::llama::load(l, hp)?;
    d.rope_style = RopeStyle::Neox;
    d.rope_factors = None;
    Ok(d)
}
