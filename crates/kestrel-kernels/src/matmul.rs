//! The matmul driver: `y = W x` for a quantized weight matrix and a batch of f32 activations.

use crate::dispatch::{check_lens, Kernels, GEMV_R, TILE_C, TILE_R};
use crate::pool::ThreadPool;
use crate::{vec_dot_type, GgmlType};

/// A row-major weight matrix in one of the block formats: row `r` is
/// `data[r * row_bytes .. (r + 1) * row_bytes]` with `row_bytes = ty.row_bytes(cols)`.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl QMatrix<'_> {
    /// Bytes per row. Panics if `cols` is not a whole number of blocks.
    pub fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.cols).unwrap_or_else(|| {
            panic!(
                "QMatrix: {} columns is not a whole number of {} blocks",
                self.cols, self.ty
            )
        })
    }
}

/// Rows handled together for batch > 1: a tile of weight rows stays in cache while every batch
/// column is multiplied with it.
const ROW_TILE: usize = 16;
/// Below this many activation elements, quantize on the calling thread (a pool round-trip
/// costs more).
const PAR_QUANT_MIN: usize = 1 << 15;

/// A raw pointer that may be shared between the pool's threads. Every use writes only indices
/// that no other thread writes in the same run (argued at each use).
struct SyncPtr<T>(*mut T);
unsafe impl<T: Send> Sync for SyncPtr<T> {}
unsafe impl<T: Send> Send for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    #[inline(always)]
    fn get(&self) -> *mut T {
        self.0
    }
}

/// Contiguous share `[start, end)` of `total` items for thread `t` of `nt`.
#[inline]
fn share(total: usize, t: usize, nt: usize) -> (usize, usize) {
    (total * t / nt, total * (t + 1) / nt)
}

/// `y[b * rows + r] = sum_c W[r][c] * x[b * cols + c]` for `b in 0..batch`, `r in 0..rows`.
///
/// The activations are quantized once to `vec_dot_type(w.ty)` into `scratch` (grown only when
/// too small), then the rows are split over the pool's threads in contiguous ranges.
/// Panics if `x`, `y` or `w.data` are too short or `cols` is not a whole number of blocks.
pub fn matmul(
    pool: &ThreadPool,
    k: &Kernels,
    w: &QMatrix,
    x: &[f32],
    batch: usize,
    y: &mut [f32],
    scratch: &mut Vec<u8>,
) {
    let (rows, cols) = (w.rows, w.cols);
    let wrb = w.row_bytes();
    let vdt = vec_dot_type(w.ty);
    let arb = vdt
        .row_bytes(cols)
        .expect("activation blocks divide weight blocks");
    assert!(w.data.len() >= wrb * rows, "matmul: weight data too short");
    assert!(x.len() >= batch * cols, "matmul: x too short");
    assert!(y.len() >= batch * rows, "matmul: y too short");
    if batch == 0 || rows == 0 {
        return;
    }
    let dot = k.vec_dot_fn(w.ty);
    // As llama.cpp: with 4+ rows, all but the last batch % 4 go through its GEMM path.
    let dot_gemm = k.vec_dot_gemm_fn(w.ty);
    let gemm_rows = if batch > 3 { batch - batch % 4 } else { 0 };
    // Every row and activation column below is a full slice of these sizes.
    check_lens(w.ty, cols, wrb, arb, 1);

    let need = arb * batch;
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    let act = &mut scratch[..need];
    let nt = pool.n_threads();

    // 1. quantize the activations
    if nt == 1 || batch * cols < PAR_QUANT_MIN {
        for b in 0..batch {
            k.quantize_row(
                vdt,
                &x[b * cols..(b + 1) * cols],
                &mut act[b * arb..(b + 1) * arb],
            );
        }
    } else {
        let (bs, ts) = (vdt.block_size(), vdt.type_size());
        let nblk = cols / bs;
        let ap = SyncPtr(act.as_mut_ptr());
        pool.run(&|t, nt| {
            let (mut i, end) = share(batch * nblk, t, nt);
            while i < end {
                let (b, j) = (i / nblk, i % nblk);
                let m = (end - i).min(nblk - j);
                let src = &x[b * cols + j * bs..b * cols + (j + m) * bs];
                // SAFETY: block units [i, i + m) of `act` (m blocks of `ts` bytes from
                // b * arb + j * ts, inside `act`) belong to this thread's share only.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(ap.get().add(b * arb + j * ts), m * ts)
                };
                k.quantize_row(vdt, src, dst);
                i += m;
            }
        });
    }
    let act: &[u8] = act;

    // 2. the dot products, rows split over the threads
    let yp = SyncPtr(y.as_mut_ptr());
    let data = w.data;
    let tile = if batch >= TILE_C {
        k.tile_fn(w.ty)
    } else {
        None
    };
    // Only for columns that take `vec_dot` (not llama.cpp's GEMM order).
    let gemv = k.gemv_fn(w.ty);
    // Columns that go through the tile kernel; the rest take single dots. A tile computes what
    // `dot_gemm` does, so it must not reach past the GEMM columns.
    let tile_cols = if tile.is_some() {
        batch - batch % TILE_C
    } else {
        0
    };
    const {
        assert!(
            TILE_C == 4,
            "tile columns must coincide with llama.cpp's GEMM columns"
        )
    };
    let work = |t: usize, nt: usize| {
        let (r0, r1) = share(rows, t, nt);
        let mut r = r0;
        while r < r1 {
            let re = (r + ROW_TILE).min(r1);
            let tile_end = r + (re - r) / TILE_R * TILE_R;
            if let Some(tile) = tile {
                let mut out = [0.0f32; TILE_R * TILE_C];
                for b in (0..tile_cols).step_by(TILE_C) {
                    for rr in (r..tile_end).step_by(TILE_R) {
                        // SAFETY: `tile` is from `k`, valid on this CPU; rows rr..rr + TILE_R
                        // and columns b..b + TILE_C are full rows (checked by `check_lens`
                        // and the bounds above).
                        unsafe {
                            tile(cols, &data[rr * wrb..], wrb, &act[b * arb..], arb, &mut out)
                        };
                        for c in 0..TILE_C {
                            for i in 0..TILE_R {
                                // SAFETY: as below, an element of this thread's rows.
                                unsafe {
                                    yp.get()
                                        .add((b + c) * rows + rr + i)
                                        .write(out[c * TILE_R + i])
                                };
                            }
                        }
                    }
                }
            }
            for b in 0..batch {
                let a = &act[b * arb..(b + 1) * arb];
                let dot = if b < gemm_rows { dot_gemm } else { dot };
                // Rows the tiles above already wrote for this column.
                let mut first = if b < tile_cols { tile_end } else { r };
                if let (Some(gemv), false) = (gemv, b < gemm_rows) {
                    let mut out = [0.0f32; GEMV_R];
                    while first + GEMV_R <= re {
                        // SAFETY: `gemv` is from `k`, valid on this CPU; rows first..first +
                        // GEMV_R and column b are full rows (`check_lens` and the bounds).
                        unsafe { gemv(cols, &data[first * wrb..], wrb, a, &mut out) };
                        for (i, &v) in out.iter().enumerate() {
                            // SAFETY: as below, an element of this thread's rows.
                            unsafe { yp.get().add(b * rows + first + i).write(v) };
                        }
                        first += GEMV_R;
                    }
                }
                for rr in first..re {
                    let wr = &data[rr * wrb..(rr + 1) * wrb];
                    // SAFETY: `dot` is from `k`, valid on this CPU; `wr`/`a` are full rows
                    // (checked by `check_lens` above).
                    let v = unsafe { dot(cols, wr, a) };
                    // SAFETY: b * rows + rr < batch * rows <= y.len(); rows [r0, r1) are this
                    // thread's alone, so no other thread writes this element.
                    unsafe { yp.get().add(b * rows + rr).write(v) };
                }
            }
            r = re;
        }
    };
    if nt == 1 {
        work(0, 1);
    } else {
        pool.run(&work);
    }
}
