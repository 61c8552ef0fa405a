//! The matmul driver: `y = W x` for a quantized weight matrix and a batch of f32 activations.

use crate::dispatch::{check_lens, Kernels, TILE_C, TILE_R};
use crate::generic::repack::X8_ROWS;
use crate::pool::ThreadPool;
use crate::{vec_dot_type, GgmlType};

/// A weight matrix in one of the block formats. Row-major ([`Layout::RowMajor`]): row `r` is
/// `data[r * row_bytes .. (r + 1) * row_bytes]` with `row_bytes = ty.row_bytes(cols)`.
/// Interleaved ([`Layout::X8`]): as [`crate::repack`] wrote it.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    pub layout: Layout,
}

/// How a matrix's blocks are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// The file's layout: one row after another.
    #[default]
    RowMajor,
    /// Groups of 8 rows interleaved block by block (`generic::repack`), then the rows past the
    /// last whole group row-major.
    X8,
}

impl<'a> QMatrix<'a> {
    /// A row-major matrix.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Self {
        QMatrix {
            ty,
            rows,
            cols,
            data,
            layout: Layout::RowMajor,
        }
    }

    /// Bytes the matrix takes in its layout.
    pub fn size(&self) -> usize {
        match self.layout {
            Layout::RowMajor => self.row_bytes() * self.rows,
            Layout::X8 => crate::generic::repack::x8_size(self.ty, self.rows, self.cols),
        }
    }

    /// Row `r` as f32 into `out` (`cols` floats), from either layout (embedding lookups).
    /// Panics if `r` or `out` is out of range.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert!(
            r < self.rows && out.len() >= self.cols,
            "dequantize_row: out of range"
        );
        let rb = self.row_bytes();
        let out = &mut out[..self.cols];
        let x8 = crate::generic::repack::X8_ROWS;
        let groups = self.rows / x8;
        if self.layout == Layout::RowMajor || r >= groups * x8 {
            // Row-major, or one of the rows past an interleaved matrix's last group.
            let start = match self.layout {
                Layout::RowMajor => r * rb,
                Layout::X8 => self.size() - (self.rows - r) * rb,
            };
            crate::dequantize_row(self.ty, &self.data[start..start + rb], out);
            return;
        }
        // Block by block through a stack buffer: this runs once per token.
        let (xb, bb, qk) = crate::generic::repack::x8_block_bytes(self.ty)
            .expect("an interleaved matrix has an interleaved type");
        let nb = self.cols / qk;
        let mut blk = [0u8; 256];
        for (i, o) in out.chunks_exact_mut(qk).enumerate() {
            let x = &self.data[(r / x8 * nb + i) * xb..];
            crate::generic::repack::unpack_x8_block(self.ty, x, r % x8, &mut blk[..bb]);
            crate::dequantize_row(self.ty, &blk[..bb], o);
        }
    }

    /// Rows one thread's share of the matrix starts and ends on: whole groups when
    /// interleaved.
    fn align(&self) -> usize {
        match self.layout {
            Layout::RowMajor => 1,
            Layout::X8 => crate::generic::repack::X8_ROWS,
        }
    }

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

/// Which float order a matmul follows where llama.cpp has two for one weight type (Q4_K: its
/// GEMV's for a single column, its GEMM's for prompt batches). Every other type has one order,
/// and a single column always takes the decode order. Either way each output depends only on
/// its own row and column, never on the rest of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    /// Every column as a one-token decode step computes it: decode, several sessions' decode
    /// steps batched together, speculative verification.
    Decode,
    /// Prompt batches: llama.cpp's batch order for every column when there are 2+.
    Prompt,
    /// Several prompts in one call, the first `n` columns being the prompts' batch-order
    /// columns gathered in front ([`crate::prompt_head`] of each prompt's length) and the rest
    /// their decode-order tails: each column computes what it would in its own prompt's call.
    PromptHead(usize),
}

/// Rows handled together for batch > 1: a tile of weight rows stays in cache while every batch
/// column is multiplied with it.
const ROW_TILE: usize = 16;
/// Decode takes four rows at a time where a kernel can and four rows span at most this many
/// bytes: one stream to the prefetcher still, and four independent sums instead of one short
/// FMA chain per row (640-wide Q5_0 rows, 440 bytes: one at a time ran at 4 GB/s from
/// memory). The four-row dots here and the panel walk's decode tiles share it.
pub(crate) const SHORT_ROWS: usize = 4096;
/// Below this many activation elements, quantize on the calling thread (a pool round-trip
/// costs more).
const PAR_QUANT_MIN: usize = 1 << 15;

/// Most matrices [`matmul_many`] runs in one pool run (q, k, v).
const MAX_MANY: usize = 4;

/// A raw pointer that may be shared between the pool's threads. Every use writes only indices
/// that no other thread writes in the same run (argued at each use).
struct SyncPtr<T>(*mut T);
unsafe impl<T: Send> Sync for SyncPtr<T> {}
unsafe impl<T: Send> Send for SyncPtr<T> {}
impl<T> Clone for SyncPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SyncPtr<T> {}
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
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    pool: &ThreadPool,
    k: &Kernels,
    arith: Arith,
    w: &QMatrix,
    x: &[f32],
    batch: usize,
    y: &mut [f32],
    scratch: &mut Vec<u8>,
) {
    matmul_many(pool, k, arith, &mut [(*w, y)], x, batch, scratch);
}

/// Several products of the same input, `y_i = W_i x` (q, k and v of one layer; gate and up):
/// where the matrices share an activation format and width, the input is quantized once and
/// all their rows are split over the threads in one pool run instead of one run each. Each
/// output is computed exactly as [`matmul`] computes it. Panics as [`matmul`] does.
pub fn matmul_many(
    pool: &ThreadPool,
    k: &Kernels,
    arith: Arith,
    mats: &mut [(QMatrix, &mut [f32])],
    x: &[f32],
    batch: usize,
    scratch: &mut Vec<u8>,
) {
    let Some((w0, _)) = mats.first() else { return };
    let (cols, vdt) = (w0.cols, vec_dot_type(w0.ty));
    if mats.len() > MAX_MANY
        || mats
            .iter()
            .any(|(w, _)| w.cols != cols || vec_dot_type(w.ty) != vdt)
    {
        for (w, y) in mats.iter_mut() {
            matmul_many(pool, k, arith, &mut [(*w, &mut **y)], x, batch, scratch);
        }
        return;
    }
    let arb = vdt
        .row_bytes(cols)
        .expect("activation blocks divide weight blocks");
    assert!(x.len() >= batch * cols, "matmul: x too short");
    for (w, y) in mats.iter() {
        let wrb = w.row_bytes();
        assert!(w.data.len() >= w.size(), "matmul: weight data too short");
        assert!(
            w.layout == Layout::RowMajor || k.panel_x8_fn(w.ty).is_some(),
            "matmul: no kernel for interleaved {}",
            w.ty
        );
        assert!(y.len() >= batch * w.rows, "matmul: y too short");
        // Every row and activation column below is a full slice of these sizes.
        check_lens(w.ty, cols, wrb, arb, 1);
    }
    let total: usize = mats.iter().map(|(w, _)| w.rows).sum();
    if batch == 0 || total == 0 {
        return;
    }
    let need = arb * batch;
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    quantize_acts(pool, k, vdt, x, cols, batch, &mut scratch[..need]);
    let act: &[u8] = &scratch[..need];

    // The row space is the matrices one after another; each thread takes a contiguous share.
    // A fixed array, not a Vec: this runs several times per token.
    let mut outs = [None; MAX_MANY];
    for (o, (w, y)) in outs.iter_mut().zip(mats.iter_mut()) {
        *o = Some((*w, SyncPtr(y.as_mut_ptr())));
    }
    let work = |t: usize, nt: usize| {
        let (s0, s1) = share(total, t, nt);
        let mut base = 0;
        for (w, y) in outs.iter().flatten() {
            // Share boundaries inside a matrix fall on whole groups of an interleaved one
            // (each boundary rounds the same way for both threads it separates).
            let end = base + w.rows;
            let al = w.align();
            // A boundary before this matrix (the share lies in earlier ones) is its start.
            let round = |b: usize| {
                if b >= end {
                    end
                } else {
                    base + b.saturating_sub(base) / al * al
                }
            };
            let (lo, hi) = (round(s0.max(base)), round(s1.min(end)));
            if lo < hi {
                // SAFETY: rows [lo, hi) of this matrix are in this thread's share alone, and
                // `y` holds batch * w.rows elements (asserted above).
                unsafe { rows_range(k, arith, w, act, arb, batch, lo - base, hi - base, y.get()) };
            }
            base += w.rows;
        }
    };
    if pool.n_threads() == 1 {
        work(0, 1);
    } else {
        pool.run(&work);
    }
}

/// Quantize the `batch` activation rows of `x` into `act`, in parallel when there is enough.
fn quantize_acts(
    pool: &ThreadPool,
    k: &Kernels,
    vdt: GgmlType,
    x: &[f32],
    cols: usize,
    batch: usize,
    act: &mut [u8],
) {
    let arb = act.len() / batch;
    if pool.n_threads() == 1 || batch * cols < PAR_QUANT_MIN {
        for b in 0..batch {
            k.quantize_row(
                vdt,
                &x[b * cols..(b + 1) * cols],
                &mut act[b * arb..(b + 1) * arb],
            );
        }
        return;
    }
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
            let dst =
                unsafe { std::slice::from_raw_parts_mut(ap.get().add(b * arb + j * ts), m * ts) };
            k.quantize_row(vdt, src, dst);
            i += m;
        }
    });
}

/// Prompt batches from this many columns take Q5_0 through the Q8_0 panel (2048 x 640, one
/// thread, AVX2 Zen 3: 16-20 -> 25-27 GMAC/s at 512 columns, but 16-19 -> 14-18 at 16, where
/// the row-major tile stays).
const Q5_0_X8_MIN_BATCH: usize = 64;
/// Q5_0 rows expanded per panel call: ~170 KiB of Q8_0 at 640 columns, in L2 while every
/// column goes over it (64 rows a call measured slower: the panel's per-call column set-up).
const Q5_0_X8_ROWS: usize = 256;

thread_local! {
    /// Each pool thread's Q5_0 rows expanded to Q8_0 (grown once, reused).
    static EXPANDED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows `[r0, r1)` of `w` times every activation column, into `y[b * w.rows + r]`.
///
/// # Safety
/// `y` points to `batch * w.rows` writable floats whose rows `[r0, r1)` no other thread
/// touches meanwhile; `w` and `act` passed `check_lens` for `arb`-byte activation rows.
#[allow(clippy::too_many_arguments)]
unsafe fn rows_range(
    k: &Kernels,
    arith: Arith,
    w: &QMatrix,
    act: &[u8],
    arb: usize,
    batch: usize,
    r0: usize,
    r1: usize,
    y: *mut f32,
) {
    let (rows, cols, data) = (w.rows, w.cols, w.data);
    let wrb = w.row_bytes();
    let slice_cols = match arith {
        Arith::Prompt => crate::dispatch::prompt_cols(w.ty, batch),
        Arith::PromptHead(n) => crate::dispatch::prompt_cols(w.ty, n.min(batch)),
        Arith::Decode => 0,
    };
    if w.layout == Layout::X8 {
        let panel = k.panel_x8_fn(w.ty).expect("checked by matmul_many");
        // SAFETY: `panel` is from `k`, valid on this CPU; the matrix is whole (size checked),
        // r0 starts a group and r1 ends one or the matrix (`align`), and y's rows [r0, r1)
        // of each column are this call's alone.
        unsafe {
            panel(
                cols, data, rows, r0, r1, act, arb, batch, y, rows, slice_cols,
            )
        };
        return;
    }
    if let Some(panel) = k.panel_fn(w.ty) {
        // SAFETY: `panel` is from `k`, valid on this CPU; rows [r0, r1) and every column are
        // full (`check_lens`), and y's rows [r0, r1) of each column are this call's alone.
        unsafe {
            panel(
                cols,
                &data[r0 * wrb..],
                wrb,
                r1 - r0,
                act,
                arb,
                batch,
                y.add(r0),
                rows,
                slice_cols,
            )
        };
        return;
    }
    // Prompt batches of Q5_0 (no panel of its own on this table: AVX2, AVX-VNNI; the
    // AVX-512 table has `legacy_vnni`'s): 8-row groups expanded to
    // Q8_0 on the fly, a few at a time, for the Q8_0 panel, which gives the Q5_0 dot's bits at
    // 8 rows per vector lane set; the rows past the last group go on below.
    let mut r0 = r0;
    if w.ty == GgmlType::Q5_0 && k.q5_0_as_q8_0() && batch >= Q5_0_X8_MIN_BATCH && slice_cols == 0 {
        let panel = k
            .panel_x8_fn(GgmlType::Q8_0)
            .expect("every table has a Q8_0 panel");
        let g_end = r0 + (r1 - r0) / X8_ROWS * X8_ROWS;
        EXPANDED.with(|buf| {
            let mut buf = buf.borrow_mut();
            let mut r = r0;
            while r < g_end {
                let m = (g_end - r).min(Q5_0_X8_ROWS);
                let size = crate::repacked_size(GgmlType::Q8_0, m, cols);
                if buf.len() < size {
                    buf.resize(size, 0);
                }
                let x8 = &mut buf[..size];
                crate::generic::repack::q5_0_as_q8_0_x8(cols, &data[r * wrb..], wrb, m, x8);
                // SAFETY: `panel` is from `k`, valid on this CPU; `x8` is a whole repacked
                // Q8_0 matrix of m rows (a multiple of 8), the activations are Q8_0 columns
                // as Q5_0's dot takes them, and y's rows r..r + m are this call's alone.
                unsafe { panel(cols, x8, m, 0, m, act, arb, batch, y.add(r), rows, 0) };
                r += m;
            }
        });
        r0 = g_end;
        if r0 == r1 {
            return;
        }
    }
    let dot = k.vec_dot_fn(w.ty);
    let dot_prompt = k.vec_dot_prompt_fn(w.ty);
    // Decode of short rows four at a time (one prefetch stream still, four FMA chains).
    let dot4 = k
        .vec_dot4_fn(w.ty)
        .filter(|_| batch == 1 && slice_cols == 0 && 4 * wrb <= SHORT_ROWS);
    // Tiles compute `vec_dot`'s bits: only for batches without prompt-arithmetic columns.
    let tile = if batch >= TILE_C && slice_cols == 0 {
        k.tile_fn(w.ty)
    } else {
        None
    };
    // Columns that go through the tile kernel; the rest take single dots (the same bits).
    let tile_cols = if tile.is_some() {
        batch - batch % TILE_C
    } else {
        0
    };
    let put = |b: usize, r: usize, v: f32| {
        // SAFETY: b * rows + r < batch * rows, a row of this call's range (caller's contract).
        unsafe { y.add(b * rows + r).write(v) }
    };
    let mut r = r0;
    while r < r1 {
        let re = (r + ROW_TILE).min(r1);
        let tile_end = r + (re - r) / TILE_R * TILE_R;
        if let Some(tile) = tile {
            let mut out = [0.0f32; TILE_R * TILE_C];
            for b in (0..tile_cols).step_by(TILE_C) {
                for rr in (r..tile_end).step_by(TILE_R) {
                    // SAFETY: `tile` is from `k`, valid on this CPU; rows rr..rr + TILE_R and
                    // columns b..b + TILE_C are full rows (`check_lens` and the bounds above).
                    unsafe { tile(cols, &data[rr * wrb..], wrb, &act[b * arb..], arb, &mut out) };
                    for c in 0..TILE_C {
                        for i in 0..TILE_R {
                            put(b + c, rr + i, out[c * TILE_R + i]);
                        }
                    }
                }
            }
        }
        for b in 0..batch {
            let a = &act[b * arb..(b + 1) * arb];
            let dot = if b < slice_cols { dot_prompt } else { dot };
            // Rows the tiles above already wrote for this column.
            let mut first = if b < tile_cols { tile_end } else { r };
            if let Some(dot4) = dot4 {
                while first + 4 <= re {
                    // SAFETY: `dot4` is from `k`, valid on this CPU; rows first..first + 4 and
                    // the column are full (`check_lens` above).
                    let v = unsafe { dot4(cols, &data[first * wrb..], wrb, a) };
                    for (i, v) in v.into_iter().enumerate() {
                        put(b, first + i, v);
                    }
                    first += 4;
                }
            }
            for rr in first..re {
                // SAFETY: `dot` is from `k`, valid on this CPU; the row and column are full
                // (`check_lens` above).
                let v = unsafe { dot(cols, &data[rr * wrb..(rr + 1) * wrb], a) };
                put(b, rr, v);
            }
        }
        r = re;
    }
}
