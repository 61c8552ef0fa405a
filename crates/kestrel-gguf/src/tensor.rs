//! The tensor directory entry and the size rule shared by the reader and the writer.

use crate::types::GgmlType;

/// Most dimensions a ggml tensor can have.
pub const MAX_DIMS: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF/ggml order: `dims[0]` is the contiguous row length (ne0).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute offset in the file (data_offset + the relative offset stored in the file).
    pub offset: u64,
    /// Bytes of data.
    pub size: usize,
}

impl TensorInfo {
    /// Product of all dims (1 for a scalar). Saturates rather than panics on a hand-built info;
    /// infos from `GgufFile` were checked for overflow at open.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }

    /// Elements per row (`dims[0]`), 1 for a scalar.
    pub fn row_len(&self) -> usize {
        self.dims.first().map_or(1, |&d| d as usize)
    }

    /// Product of `dims[1..]`.
    pub fn n_rows(&self) -> usize {
        self.dims
            .iter()
            .skip(1)
            .fold(1usize, |a, &d| a.saturating_mul(d as usize))
    }
}

/// Bytes a tensor of `dims` and `ty` occupies, or why it cannot be stored.
pub(crate) fn tensor_size(dims: &[u64], ty: GgmlType) -> Result<usize, String> {
    if dims.len() > MAX_DIMS {
        return Err(format!(
            "{} dimensions, at most {MAX_DIMS} are supported",
            dims.len()
        ));
    }
    let row_len = dims.first().copied().unwrap_or(1);
    let row_len_us =
        usize::try_from(row_len).map_err(|_| format!("row length {row_len} is too large"))?;
    let row_bytes = ty.row_bytes(row_len_us).ok_or_else(|| {
        format!(
            "row length {row_len} is not a multiple of the {ty} block size {}",
            ty.block_size()
        )
    })?;
    let mut size = row_bytes;
    let mut elems = row_len;
    for &d in dims.iter().skip(1) {
        let du = usize::try_from(d).ok();
        size = du
            .and_then(|d| size.checked_mul(d))
            .ok_or_else(|| format!("dims {dims:?}: size overflows"))?;
        // ggml stores element counts as i64.
        elems = elems
            .checked_mul(d)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or_else(|| format!("dims {dims:?}: element count overflows"))?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(
            tensor_size(&[576, 49152], GgmlType::Q8_0),
            Ok(18 * 34 * 49152)
        );
        assert_eq!(tensor_size(&[1024, 640], GgmlType::Q4_K), Ok(4 * 144 * 640));
        assert_eq!(tensor_size(&[], GgmlType::F32), Ok(4));
        assert!(tensor_size(&[100, 2], GgmlType::Q4_K)
            .unwrap_err()
            .contains("not a multiple"));
        assert!(tensor_size(&[1 << 40, 1 << 40], GgmlType::F32)
            .unwrap_err()
            .contains("overflows"));
        assert!(tensor_size(&[1, 1, 1, 1, 1], GgmlType::F32).is_err());
        let t = TensorInfo {
            name: "t".into(),
            dims: vec![4, 3, 2],
            ty: GgmlType::F32,
            offset: 0,
            size: 96,
        };
        assert_eq!((t.n_elements(), t.row_len(), t.n_rows()), (24, 4, 6));
    }
}
