//! Architecture name (GGUF `general.architecture`) -> loader.

use crate::arch;
use crate::decoder::Decoder;
use crate::error::{ModelError, Result};
use crate::hparams::Hparams;
use crate::weights::Loader;

pub type LoadFn = fn(&Loader, Hparams) -> Result<Decoder>;

const ARCHS: &[(&str, LoadFn)] = &[
    ("llama", arch::llama::load),
    ("gemma3", arch::gemma3::load),
    ("qwen2", arch::qwen2::load),
    ("qwen3", arch::qwen3::load),
    ("phi3", arch::phi3::load),
];

pub fn supported() -> Vec<&'static str> {
    ARCHS.iter().map(|(n, _)| *n).collect()
}

pub fn find(arch: &str) -> Result<LoadFn> {
    ARCHS
        .iter()
        .find(|(n, _)| *n == arch)
        .map(|(_, f)| *f)
        .ok_or_else(|| ModelError::UnsupportedArch(arch.to_string(), supported().join(", ")))
}
