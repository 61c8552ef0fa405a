//! Scaled dot-product attention of a micro-batch's queries over the KV cache, computed the way
//! llama.cpp's CPU backend does (non-flash path; see `kestrel_kernels::generic::attn`): that is
//! what keeps the logits on llama.cpp's, since 8-bit activations amplify last-bit differences.
//!
//! Two loop orders give the same bits. [`per_row`] takes one (row, query-head group) at a time
//! over its whole history: right for decode, where each row has its own cache. [`blocked`]
//! takes a block of consecutive rows of one sequence (a prompt) with all query heads of one KV
//! head, and walks their shared history in chunks of keys small enough for L1, so each chunk
//! is read once for the whole block instead of once per row: at depth, where a head's history
//! no longer fits in cache, that is the difference between streaming it once per block and
//! once per token. Each score and each lane sum still takes exactly the per-row operations in
//! the per-row order (the dot products are independent; the lane sums of the value mix are
//! taken over consecutive runs of cells in order), and the softmax sees the same full row of
//! scores, so the two orders are bit-identical.

use crate::forward::{f16_scratch, Rows, SharedMut};
use half::f16;
use kestrel_kernels::{Kernels, Lanes, ThreadPool};

/// What every attention item needs, fixed for one layer and micro-batch.
pub(crate) struct Attend<'a> {
    pub k: &'a Kernels,
    pub il: usize,
    pub n_head: usize,
    pub group: usize,
    pub hd: usize,
    pub hdv: usize,
    pub lanes: Lanes,
    /// Queries `[row][head][hd]`, roped.
    pub q: &'a [f32],
    pub q_scale: f32,
    pub s_scale: f32,
    pub window: Option<usize>,
}

impl Attend<'_> {
    /// First KV cell a query at position `p` sees.
    fn start(&self, p: usize) -> usize {
        self.window.map_or(0, |w| (p + 1).saturating_sub(w))
    }

    /// Queries `h0..h0 + count` of row `i`, scaled and rounded to f16, into `q16`.
    fn load_queries(&self, i: usize, h0: usize, count: usize, q16: &mut [f16]) {
        let qo = (i * self.n_head + h0) * self.hd;
        let src = &self.q[qo..qo + count * self.hd];
        for (d, &x) in q16.iter_mut().zip(src) {
            *d = f16::from_f32(x * self.q_scale);
        }
    }

    /// Scale, softmax and round one query's scores over cells `cell0..`.
    fn weights(&self, s: &mut [f32], cell0: usize) {
        if self.s_scale != 1.0 {
            for v in s.iter_mut() {
                *v *= self.s_scale;
            }
        }
        self.k.softmax_cells(s, cell0);
        kestrel_kernels::ops::round_to_f16(s);
    }
}

/// Attention of `n` rows, one (row, query-head group) item at a time, into `out`
/// (`[row][head][hdv]`); `scratch` grows to what the threads need.
pub(crate) fn per_row(
    pool: &ThreadPool,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
    rows: &Rows,
    a: &Attend,
    n: usize,
) {
    let (hd, hdv) = (a.hd, a.hdv);
    let n_ctx = rows.max_ctx();
    let nt = pool.n_threads();
    // Query heads that share a KV head go together (`sg` of them per item), so each key and
    // value vector is converted once for all of them; fewer items than two per thread would
    // idle a thread, so decode on few KV heads splits the groups.
    let sg = (1..=a.group)
        .rev()
        .find(|&s| a.group % s == 0 && n * a.n_head / s >= 2 * nt)
        .unwrap_or(1);
    let w = a.lanes.count();
    let per_thread = sg * (n_ctx + hd + w * hdv + MIX_RUN);
    let items_per_row = a.n_head / sg;
    let out = SharedMut(out.as_mut_ptr());
    for_items(
        pool,
        scratch,
        per_thread,
        n * items_per_row,
        &|mine, item| {
            let (sc_rows, rest) = mine.split_at_mut(sg * n_ctx);
            let (q16f, rest) = rest.split_at_mut(sg * hd);
            let (acc, tmp) = rest.split_at_mut(sg * w * hdv);
            // The f16 queries live in the first half of their f32 scratch.
            let q16: &mut [f16] = f16_scratch(q16f, sg * hd);
            // Row i, query heads h0..h0 + sg (contiguous in q and in the output), KV head g.
            let (i, h0) = (item / items_per_row, item % items_per_row * sg);
            let (kv, p) = (rows.kv(i), rows.pos(i));
            let start = a.start(p);
            let g = h0 / a.group;
            a.load_queries(i, h0, sg, q16);
            let len = p + 1 - start;
            let scores = &mut sc_rows[..sg * len];
            a.k.dot_f16_rows(a.lanes, hd, q16, kv.k_range(a.il, g, start, p + 1), scores);
            for s in scores.chunks_exact_mut(len) {
                a.weights(s, start);
            }
            // SAFETY: item (i, h0) is this thread's alone, so are its heads' output rows.
            let oh = unsafe { out.slice((i * a.n_head + h0) * hdv, sg * hdv) };
            if len <= MIX_RUN {
                let v = kv.v_range(a.il, g, start, p + 1);
                a.k.mix_f16(a.lanes, hdv, oh, scores, v, start, acc);
            } else {
                // A long history in runs of cells, each run's values read once from memory
                // for all its lanes (one pass over all of it per lane would stride through
                // memory once per lane).
                acc.fill(0.0);
                let mut c0 = start;
                while c0 <= p {
                    let c1 = (c0 + MIX_RUN).min(p + 1);
                    let m = c1 - c0;
                    let t = &mut tmp[..sg * m];
                    for (t, s) in t.chunks_exact_mut(m).zip(scores.chunks_exact(len)) {
                        t.copy_from_slice(&s[c0 - start..c1 - start]);
                    }
                    a.k.mix_f16_add(a.lanes, hdv, t, kv.v_range(a.il, g, c0, c1), c0, acc);
                    c0 = c1;
                }
                a.k.fold_lanes(a.lanes, hdv, acc, oh);
            }
        },
    );
}

/// Runs `f(mine, item)` for every item of `0..items` on the pool, thread `t` taking items `t,
/// t + nth, ...` in order, `mine` its own `per_thread` floats of `scratch` (grown to fit).
fn for_items(
    pool: &ThreadPool,
    scratch: &mut Vec<f32>,
    per_thread: usize,
    items: usize,
    f: &(dyn Fn(&mut [f32], usize) + Sync),
) {
    let nt = pool.n_threads();
    if scratch.len() < nt * per_thread {
        scratch.resize(nt * per_thread, 0.0);
    }
    let scratch = SharedMut(scratch.as_mut_ptr());
    pool.run(&|tid, nth| {
        // SAFETY: thread `tid` alone uses scratch block `tid`.
        let mine = unsafe { scratch.slice(tid * per_thread, per_thread) };
        let mut item = tid;
        while item < items {
            f(mine, item);
            item += nth;
        }
    });
}

/// Cells per run of [`per_row`]'s value mix over a long history: 128-256 KiB of f16 values
/// at common head sizes, in L2 while every lane goes over it.
const MIX_RUN: usize = 1024;

/// Keys (and values) per chunk of [`blocked`]: about 16 KiB of f16 keys, so a chunk stays in
/// L1 while every query of the block goes over it.
fn key_chunk(hd: usize) -> usize {
    (8192 / hd.max(1)).clamp(16, 128)
}

/// Queries per block that [`blocked`] aims at: four passes of the four-query dot tile.
const BLOCK_QUERIES: usize = 16;

/// Attention of the `n` rows of one sequence (positions `pos0..pos0 + n` of `rows`, a
/// `Rows::One`), in blocks of consecutive rows with all query heads of one KV head per item,
/// into `out`. The same bits as [`per_row`].
pub(crate) fn blocked(
    pool: &ThreadPool,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
    rows: &Rows,
    a: &Attend,
    n: usize,
) {
    let (hd, hdv, group) = (a.hd, a.hdv, a.group);
    let n_kv = a.n_head / group;
    let nt = pool.n_threads();
    let w = a.lanes.count();
    // Rows per block: BLOCK_QUERIES queries, fewer where that would leave a thread idle.
    let mut qb = (BLOCK_QUERIES / group).max(1).min(n);
    while qb > 1 && n.div_ceil(qb) * n_kv < 2 * nt {
        qb /= 2;
    }
    let gq = qb * group;
    let kc = key_chunk(hd);
    let kv = rows.kv(0);
    // Scores of a query: its cells start..=p, at most the context (or the window) long.
    let ld = match a.window {
        Some(win) => win.min(kv.n_ctx),
        None => kv.n_ctx,
    };
    let per_thread = gq * (ld + hd.div_ceil(2) + kc + w * hdv);
    let out = SharedMut(out.as_mut_ptr());
    for_items(
        pool,
        scratch,
        per_thread,
        n.div_ceil(qb) * n_kv,
        &|mine, item| {
            let (scores, rest) = mine.split_at_mut(gq * ld);
            let (q16f, rest) = rest.split_at_mut(gq * hd.div_ceil(2));
            let (tmp, acc) = rest.split_at_mut(gq * kc);
            let q16: &mut [f16] = f16_scratch(q16f, gq * hd);
            // Rows i0..i1, KV head g and its query heads g * group.. (the block's queries are
            // row-major: query (r, s) is head g * group + s of row i0 + r).
            let (b, g) = (item / n_kv, item % n_kv);
            let (i0, i1) = (b * qb, ((b + 1) * qb).min(n));
            let nr = i1 - i0;
            let span = |r: usize| {
                let p = rows.pos(i0 + r);
                (a.start(p), p + 1)
            };
            for r in 0..nr {
                a.load_queries(i0 + r, g * group, group, &mut q16[r * group * hd..]);
            }
            // Where query `qi` of rows r0.. keeps its score for cell c0.
            let at = |qi: usize, r0: usize, c0: usize| {
                let r = r0 + qi / group;
                (r * group + qi % group) * ld + c0 - span(r).0
            };
            let (lo, hi) = (span(0).0, span(nr - 1).1);
            // Pass 1: scores, chunk by chunk; rows whose span covers the whole chunk share one
            // call, the rest (the block's first and last few cells) go row by row.
            for_chunks(lo, hi, kc, nr, &span, &mut |c0, c1, r0, r1| {
                let m = c1 - c0;
                let nq = (r1 - r0) * group;
                let t = &mut tmp[..nq * m];
                let keys = kv.k_range(a.il, g, c0, c1);
                a.k.dot_f16_rows(a.lanes, hd, &q16[r0 * group * hd..r1 * group * hd], keys, t);
                for (qi, t) in t.chunks_exact(m).enumerate() {
                    let o = at(qi, r0, c0);
                    scores[o..o + m].copy_from_slice(t);
                }
            });
            for r in 0..nr {
                let (s0, s1) = span(r);
                for s in 0..group {
                    let o = (r * group + s) * ld;
                    a.weights(&mut scores[o..o + s1 - s0], s0);
                }
            }
            // Pass 2: the value mix into lane sums, the same chunks, then one fold per query.
            let acc = &mut acc[..nr * group * w * hdv];
            acc.fill(0.0);
            for_chunks(lo, hi, kc, nr, &span, &mut |c0, c1, r0, r1| {
                let m = c1 - c0;
                let nq = (r1 - r0) * group;
                let t = &mut tmp[..nq * m];
                for (qi, t) in t.chunks_exact_mut(m).enumerate() {
                    let o = at(qi, r0, c0);
                    t.copy_from_slice(&scores[o..o + m]);
                }
                let v = kv.v_range(a.il, g, c0, c1);
                let lanes = &mut acc[r0 * group * w * hdv..r1 * group * w * hdv];
                a.k.mix_f16_add(a.lanes, hdv, t, v, c0, lanes);
            });
            for r in 0..nr {
                // SAFETY: item (block, g) is this thread's alone, so are these output rows.
                let oh = unsafe { out.slice(((i0 + r) * a.n_head + g * group) * hdv, group * hdv) };
                let lanes = &acc[r * group * w * hdv..(r + 1) * group * w * hdv];
                a.k.fold_lanes(a.lanes, hdv, lanes, oh);
            }
        },
    );
}

/// Walk cells `lo..hi` in chunks of `kc`; for each chunk call `f(c0, c1, r0, r1)` once for the
/// rows `r0..r1` (of `0..nr`) whose span covers all of `c0..c1`, and once per other row whose
/// span overlaps it, with the overlap as `c0..c1`. Spans start and end no earlier than the
/// previous row's, so the covering rows are consecutive.
fn for_chunks(
    lo: usize,
    hi: usize,
    kc: usize,
    nr: usize,
    span: &dyn Fn(usize) -> (usize, usize),
    f: &mut dyn FnMut(usize, usize, usize, usize),
) {
    let mut c0 = lo;
    while c0 < hi {
        let c1 = (c0 + kc).min(hi);
        let covers = |r: usize| {
            let (s0, s1) = span(r);
            s0 <= c0 && s1 >= c1
        };
        let r0 = (0..nr).find(|&r| covers(r)).unwrap_or(nr);
        let r1 = (r0..nr).find(|&r| !covers(r)).unwrap_or(nr);
        if r0 < r1 {
            f(c0, c1, r0, r1);
        }
        for r in (0..r0).chain(r1..nr) {
            let (s0, s1) = span(r);
            let (a, b) = (s0.max(c0), s1.min(c1));
            if a < b {
                f(a, b, r, r + 1);
            }
        }
        c0 = c1;
    }
}

/// Which loop order `attention_block` takes for this micro-batch.
pub(crate) fn use_blocked(rows: &Rows, n: usize) -> bool {
    matches!(rows, Rows::One { .. }) && n >= 2
}

/// Attention of a several-prompt pass: each prompt's rows gathered (into `bufs`), attended
/// as that prompt's own pass would (its loop order and lane width: `Rows::One`), and the
/// output scattered back to the pass's rows of `out`.
pub(crate) fn prompts(
    pool: &ThreadPool,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
    bufs: (&mut Vec<f32>, &mut Vec<f32>),
    seqs: &mut [&mut crate::session::Session],
    segs: &[crate::forward::Segment],
    a: &Attend,
) {
    let (qw, ow) = (a.n_head * a.hd, a.n_head * a.hdv);
    let (q, o) = bufs;
    for seg in segs {
        let n = seg.len();
        q.clear();
        for r in seg.rows() {
            q.extend_from_slice(&a.q[r * qw..(r + 1) * qw]);
        }
        o.resize(n * ow, 0.0);
        let one = Rows::One {
            kv: &mut seqs[seg.seq].kv,
            pos0: seg.pos0,
        };
        let sa = Attend {
            q: q.as_slice(),
            lanes: one.lanes(n),
            ..*a
        };
        let how = if use_blocked(&one, n) {
            blocked
        } else {
            per_row
        };
        how(pool, scratch, o, &one, &sa, n);
        for (j, r) in seg.rows().enumerate() {
            out[r * ow..(r + 1) * ow].copy_from_slice(&o[j * ow..(j + 1) * ow]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvCache;
    use kestrel_kernels::{kernels_for, ISAS};

    type Order = fn(&ThreadPool, &mut Vec<f32>, &mut [f32], &Rows, &Attend, usize);

    /// Deterministic values in [-2, 2).
    fn noise(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
    }

    /// One (row, head) at a time, each step one kernel call over the row's whole history:
    /// the order both loop orders must reproduce.
    fn reference(a: &Attend, rows: &Rows, n: usize) -> Vec<f32> {
        let (hd, hdv) = (a.hd, a.hdv);
        let mut out = vec![0.0f32; n * a.n_head * hdv];
        let mut acc = vec![0.0f32; 32 * hdv];
        for i in 0..n {
            let (kv, p) = (rows.kv(i), rows.pos(i));
            let start = a.start(p);
            for h in 0..a.n_head {
                let g = h / a.group;
                let mut q16 = vec![f16::ZERO; hd];
                a.load_queries(i, h, 1, &mut q16);
                let mut s = vec![0.0f32; p + 1 - start];
                a.k.dot_f16_rows(a.lanes, hd, &q16, kv.k_range(a.il, g, start, p + 1), &mut s);
                a.weights(&mut s, start);
                let o = &mut out[(i * a.n_head + h) * hdv..(i * a.n_head + h + 1) * hdv];
                a.k.mix_f16(
                    a.lanes,
                    hdv,
                    o,
                    &s,
                    kv.v_range(a.il, g, start, p + 1),
                    start,
                    &mut acc,
                );
            }
        }
        out
    }

    /// Prompt rows of one sequence through both loop orders on every kernel table this CPU
    /// has, 1 and 2 threads: the outputs must be the reference's bits, across windows, GQA
    /// groups, head sizes off the SIMD widths, chunk-straddling depths, histories longer
    /// than a mix run, and both lane orders.
    #[test]
    fn both_loop_orders_equal_the_reference_bitwise() {
        // (n_head, n_head_kv, head dim, window, cells already in the cache, rows)
        let cases = [
            (4, 1, 64, None, 0, 37),
            (8, 2, 128, None, 150, 20),
            (6, 2, 40, Some(50), 90, 33),
            (3, 3, 256, None, 17, 5),
            (16, 8, 64, Some(7), 0, 64),
            (2, 1, 20, None, 300, 2),
            (4, 2, 64, None, MIX_RUN + 100, 3),
        ];
        let mut seed = 7u64;
        for &(n_head, n_kv, hd, window, pos0, n) in &cases {
            let n_ctx = pos0 + n + 3;
            let mut kv = KvCache::new(1, n_ctx, n_kv, hd, hd);
            for x in kv.k[0].iter_mut().chain(kv.v[0].iter_mut()) {
                *x = f16::from_f32(noise(&mut seed));
            }
            let q: Vec<f32> = (0..n * n_head * hd).map(|_| noise(&mut seed)).collect();
            let rows = Rows::One { kv: &mut kv, pos0 };
            for isa in ISAS {
                let Some(k) = kernels_for(isa) else { continue };
                for lanes in [Lanes::L8, Lanes::L32] {
                    let a = Attend {
                        k,
                        il: 0,
                        n_head,
                        group: n_head / n_kv,
                        hd,
                        hdv: hd,
                        lanes,
                        q: &q,
                        q_scale: 0.125,
                        s_scale: 1.0,
                        window,
                    };
                    let want = reference(&a, &rows, n);
                    for t in [1, 2] {
                        let pool = ThreadPool::new(t);
                        let mut scratch = Vec::new();
                        for (name, how) in [("per_row", per_row as Order), ("blocked", blocked)] {
                            let mut got = vec![f32::NAN; n * n_head * hd];
                            how(&pool, &mut scratch, &mut got, &rows, &a, n);
                            for (i, (x, y)) in want.iter().zip(&got).enumerate() {
                                assert!(
                                    x.to_bits() == y.to_bits(),
                                    "{name} {isa} {lanes:?} t={t} heads {n_head}/{n_kv} d {hd} \
                                     window {window:?} pos0 {pos0} n {n}: output {i}: {x} vs {y}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
