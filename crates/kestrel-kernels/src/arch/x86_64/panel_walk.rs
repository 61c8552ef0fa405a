//! The walk of a panel (weight rows times activation columns) in register tiles, shared by the
//! panel kernels (`kq_panel`, `legacy_vnni`): each kernel supplies its R x C tile, this module
//! the order in which the tiles cover the panel.
//!
//! Decode (one column) goes one row at a time: a tile of several rows interleaves their memory
//! streams, which defeats the hardware prefetcher (8-row tiles ran decode 1.5x slower), unless
//! the tile's rows are short enough to be one stream (`matmul::SHORT_ROWS`).
//! Batches go by column blocks that stay in L2, then row blocks that stay in L1/L2, then
//! `TC`-column and `TR`-row tiles, the remainders in narrower tiles.

/// Weight rows kept hot in cache while a column block passes over them.
const ROW_BLOCK: usize = 16;
/// Activation columns kept in L2 while every row block passes over them (a multiple of every
/// prompt tile's width; 512 columns of a 2048-wide Q8_K row are 1.2 MB, past a 1 MB L2).
const COL_BLOCK: usize = 64;

/// One panel call's operands: `nb` blocks per row, weight rows `wrb` and activation columns
/// `arb` bytes apart, outputs `y[c * ys + r]`.
#[derive(Clone, Copy)]
pub(super) struct Panel {
    pub nb: usize,
    pub w: *const u8,
    pub wrb: usize,
    pub a: *const u8,
    pub arb: usize,
    pub y: *mut f32,
    pub ys: usize,
}

impl Panel {
    /// The operands of one panel call (the arguments every `panel_*` takes).
    #[inline(always)]
    pub fn new(
        nb: usize,
        w: &[u8],
        wrb: usize,
        a: &[u8],
        arb: usize,
        y: *mut f32,
        ys: usize,
    ) -> Self {
        Panel {
            nb,
            w: w.as_ptr(),
            wrb,
            a: a.as_ptr(),
            arb,
            y,
            ys,
        }
    }

    /// Weight row `r`, activation column `c` and output `(r, c)`.
    ///
    /// # Safety
    /// `r` and `c` are inside the panel.
    #[inline(always)]
    pub unsafe fn at(&self, r: usize, c: usize) -> (*const u8, *const u8, *mut f32) {
        (
            self.w.add(r * self.wrb),
            self.a.add(c * self.arb),
            self.y.add(c * self.ys + r),
        )
    }
}

/// A kernel's tiles.
pub(super) trait Tiles {
    /// The R x C outputs from row `r`, column `c`.
    ///
    /// # Safety
    /// The CPU has the kernel's features; the tile lies inside the panel.
    unsafe fn tile<const R: usize, const C: usize>(&self, r: usize, c: usize);
    /// Bytes from one weight row to the next where decode may take several short rows at
    /// once (their tiles are the same bits as single rows'); `None`: always one at a time.
    fn decode_row_bytes(&self) -> Option<usize> {
        None
    }
}

/// Every output of a `rows` x `cols` panel, in `TR` x `TC` tiles for batches (see the module
/// docs). Inlined into each kernel's feature-enabled entry point, so its tiles inline too.
///
/// # Safety
/// As [`Tiles::tile`], for the whole panel.
#[inline(always)]
pub(super) unsafe fn walk<T: Tiles, const TR: usize, const TC: usize>(
    t: &T,
    rows: usize,
    cols: usize,
) {
    if cols == 1 {
        if t.decode_row_bytes()
            .is_some_and(|b| b * TR <= crate::matmul::SHORT_ROWS)
        {
            tiles_down::<T, TR, 1>(t, 0, rows, 0);
        } else {
            for r in 0..rows {
                t.tile::<1, 1>(r, 0);
            }
        }
        return;
    }
    for cb in (0..cols).step_by(COL_BLOCK) {
        let ce = (cb + COL_BLOCK).min(cols);
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + ROW_BLOCK).min(rows);
            let mut c = cb;
            while c + TC <= ce {
                tiles_down::<T, TR, TC>(t, r0, r1, c);
                c += TC;
            }
            while c < ce {
                tiles_down::<T, TR, 1>(t, r0, r1, c);
                c += 1;
            }
            r0 = r1;
        }
    }
}

/// Rows `r0..r1` against columns `c..c + C`.
#[inline(always)]
unsafe fn tiles_down<T: Tiles, const TR: usize, const C: usize>(
    t: &T,
    r0: usize,
    r1: usize,
    c: usize,
) {
    let mut r = r0;
    while r + TR <= r1 {
        t.tile::<TR, C>(r, c);
        r += TR;
    }
    while r < r1 {
        t.tile::<1, C>(r, c);
        r += 1;
    }
}
