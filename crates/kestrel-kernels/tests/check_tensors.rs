//! `kestrel_gguf::check` (`--check-tensors`) flags exactly the values that make a tensor's
//! dequantized weights non-finite: for every type, a NaN planted at each byte offset of a
//! block is flagged if and only if the dequantizer (`kestrel_kernels::dequantize_row`) then
//! yields a NaN or an infinity.

use kestrel_gguf::check::check_tensor;
use kestrel_gguf::{GgmlType, TensorInfo};

#[test]
fn a_flagged_value_is_one_that_dequantizes_to_a_non_finite_weight() {
    for ty in GgmlType::ALL {
        // A NaN as the value width that type stores its floats in.
        let nan: &[u8] = match ty {
            GgmlType::F32 | GgmlType::Q8_K => &[0x00, 0x00, 0xc0, 0x7f],
            GgmlType::BF16 => &[0xc0, 0x7f],
            _ => &[0x00, 0x7e],
        };
        let elems = ty.block_size().max(8);
        let size = ty.row_bytes(elems).unwrap();
        let info = TensorInfo {
            name: format!("t.{}", ty.name()),
            dims: vec![elems as u64],
            ty,
            offset: 0,
            size,
        };
        let mut flagged = 0;
        for at in 0..=size - nan.len() {
            let mut data = vec![0u8; size];
            data[at..at + nan.len()].copy_from_slice(nan);
            let mut w = vec![0f32; elems];
            kestrel_kernels::dequantize_row(ty, &data, &mut w);
            let broken = w.iter().any(|x| !x.is_finite());
            let found = check_tensor(&info, &data);
            assert_eq!(
                found.is_some(),
                broken,
                "{}: NaN at byte {at}: flagged {found:?}, dequantized non-finite {broken}",
                ty.name()
            );
            flagged += found.is_some() as usize;
        }
        assert!(flagged > 0, "{}: nothing was ever flagged", ty.name());
        assert!(
            check_tensor(&info, &vec![0u8; size]).is_none(),
            "{}: zeros flagged",
            ty.name()
        );
    }
}
