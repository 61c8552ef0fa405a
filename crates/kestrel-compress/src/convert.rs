//! `convert`: every weight matrix to F32, F16 or BF16 (dequantized from whatever it was);
//! norms and other 1-D tensors stay as they are (F32), as llama.cpp's converter keeps them.

use crate::ftype::Ftype;
use crate::quantize::{quantize_file, QuantizeOptions, Report};
use crate::{CompressError, Result};
use std::path::Path;

pub fn convert_file(
    input: &Path,
    output: &Path,
    ftype: Ftype,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Report> {
    if !ftype.is_float() {
        return Err(CompressError::Invalid(format!(
            "convert writes F32, F16 or BF16, not {ftype} (use quantize)"
        )));
    }
    quantize_file(input, output, ftype, &QuantizeOptions::default(), progress)
}
