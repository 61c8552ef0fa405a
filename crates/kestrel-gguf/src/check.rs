//! `--check-tensors`: every tensor's data is read once and its floats checked, as llama.cpp's
//! `--check-tensors` does: each value of an f32, f16 or bf16 tensor, and each block scale (and
//! minimum) of a quantized one, must be finite. A NaN or an infinity there poisons every
//! activation that touches the block; the file is refused with the tensors named.

use crate::{GgmlType, GgufFile, TensorInfo};

/// What was wrong with one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorProblem {
    pub tensor: String,
    pub ty: GgmlType,
    /// Values (floats, or block scales of a quantized type) that are NaN or infinite.
    pub bad: u64,
    /// Of all values (or scales) checked.
    pub checked: u64,
    /// Where the first bad one is: its block (quantized types) or element (floats), as
    /// llama.cpp reports it.
    pub first: u64,
}

impl std::fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, at) = if self.ty.block_size() == 1 {
            ("values", "at element")
        } else {
            ("block scales", "in block")
        };
        write!(
            f,
            "tensor {} ({}): {} of {} {what} are NaN or infinite (the first {at} {})",
            self.tensor,
            self.ty.name(),
            self.bad,
            self.checked,
            self.first
        )
    }
}

/// Where a type's block holds its f16 scales (byte offsets) or, for f32/f16/bf16, the value
/// width; Q8_K's scale is an f32.
enum Floats {
    Each(Width),
    Scales(&'static [usize], Width),
}

#[derive(Clone, Copy)]
enum Width {
    F32,
    F16,
    BF16,
}

fn floats(ty: GgmlType) -> Floats {
    use GgmlType::*;
    match ty {
        F32 => Floats::Each(Width::F32),
        F16 => Floats::Each(Width::F16),
        BF16 => Floats::Each(Width::BF16),
        // Q8_1's second field (d times the block's sum) is derived; weights never use it.
        Q4_0 | Q5_0 | Q8_0 | Q8_1 => Floats::Scales(&[0], Width::F16),
        Q4_1 | Q5_1 | Q4_K | Q5_K => Floats::Scales(&[0, 2], Width::F16),
        Q2_K => Floats::Scales(&[80, 82], Width::F16),
        Q3_K => Floats::Scales(&[108], Width::F16),
        Q6_K => Floats::Scales(&[208], Width::F16),
        Q8_K => Floats::Scales(&[0], Width::F32),
    }
}

fn finite(b: &[u8], at: usize, w: Width) -> bool {
    match w {
        Width::F32 => {
            let v = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            v & 0x7f80_0000 != 0x7f80_0000
        }
        Width::F16 => u16::from_le_bytes([b[at], b[at + 1]]) & 0x7c00 != 0x7c00,
        Width::BF16 => u16::from_le_bytes([b[at], b[at + 1]]) & 0x7f80 != 0x7f80,
    }
}

/// Check one tensor's data; None when every value is finite.
pub fn check_tensor(t: &TensorInfo, data: &[u8]) -> Option<TensorProblem> {
    let (step, at, w): (usize, &[usize], Width) = match floats(t.ty) {
        Floats::Each(Width::F32) => (4, &[0], Width::F32),
        Floats::Each(w) => (2, &[0], w),
        Floats::Scales(at, w) => (t.ty.type_size(), at, w),
    };
    let (mut bad, mut checked, mut first) = (0u64, 0u64, None);
    for (i, block) in data.chunks_exact(step).enumerate() {
        for &o in at {
            if !finite(block, o, w) {
                bad += 1;
                first.get_or_insert(i as u64);
            }
            checked += 1;
        }
    }
    first.map(|first| TensorProblem {
        tensor: t.name.clone(),
        ty: t.ty,
        bad,
        checked,
        first,
    })
}

/// Check every tensor of `file` on up to `threads` threads; the problems in file order.
pub fn check_tensors(file: &GgufFile, threads: usize) -> Vec<TensorProblem> {
    let tensors = file.tensors();
    let threads = threads.clamp(1, tensors.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut found: Vec<(usize, TensorProblem)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(t) = tensors.get(i) else {
                            return out;
                        };
                        if let Some(p) = file.try_tensor_data(t).and_then(|d| check_tensor(t, d)) {
                            out.push((i, p));
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, p)| p).collect()
}
