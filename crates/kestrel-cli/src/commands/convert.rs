//! `kestrel convert`: write a copy of a model with its weights in F32, F16 or BF16.

use super::quantize::summary;
use crate::util::Progress;
use anyhow::Context;
use clap::Args;
use kestrel_compress::convert::convert_file;
use kestrel_compress::Ftype;
use std::path::PathBuf;

#[derive(Args)]
pub struct ConvertArgs {
    /// Input GGUF (any supported tensor types; never modified)
    input: PathBuf,
    /// Output GGUF (must not exist)
    output: PathBuf,
    /// f32, f16 or bf16
    #[arg(long = "type", default_value = "f32")]
    ty: String,
    /// Print a JSON summary
    #[arg(long = "json")]
    json: bool,
}

pub fn run(a: ConvertArgs) -> anyhow::Result<()> {
    let ftype = Ftype::parse(&a.ty)?;
    let mut bar = Progress::new("convert", 1);
    let r = convert_file(&a.input, &a.output, ftype, &mut |d, t, _| {
        bar.set_total(t);
        bar.update(d, "")
    })
    .with_context(|| format!("converting {}", a.input.display()))?;
    summary(&r, ftype, &a.output, a.json, false);
    Ok(())
}
