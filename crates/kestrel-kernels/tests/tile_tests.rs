//! The multi-row kernels (tiles and panels) must give exactly the bits of the single-row dot
//! products they replace, whatever the batch, and matmul must cover every row and column once
//! whatever the shape. The Q4_K and Q6_K kernels of every instruction set give the scalar
//! twin's bits.

use kestrel_compress::rtn::quantize_row;
use kestrel_kernels::dispatch::{TILE_C, TILE_R};
use kestrel_kernels::{
    kernels, kernels_for, matmul, repack, scalar_kernels, vec_dot_type, Arith, GgmlType, Kernels,
    Layout, QMatrix, ThreadPool, ISAS,
};
use GgmlType::*;

// Types with a weight quantizer here (Q2_K and Q3_K only have dequantizers).
const TYPES: [GgmlType; 8] = [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K];

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// `rows` weight rows and `cols`-element activations (quantized as inference does) of `ty`,
/// with a few outsized values so block scales vary.
fn data(
    ty: GgmlType,
    rows: usize,
    batch: usize,
    n: usize,
    seed: u64,
) -> (Vec<u8>, Vec<u8>, Vec<f32>) {
    let mut rng = Rng(seed);
    let rb = ty.row_bytes(n).unwrap();
    let mut w = vec![0u8; rows * rb];
    let mut src = vec![0f32; n];
    for r in 0..rows {
        for (i, v) in src.iter_mut().enumerate() {
            *v = rng.f() * if i % 37 == 0 { 8.0 } else { 1.0 };
        }
        quantize_row(ty, &src, &mut w[r * rb..(r + 1) * rb]);
    }
    let x: Vec<f32> = (0..batch * n)
        .map(|i| rng.f() * (1.0 + (i % 5) as f32))
        .collect();
    let vdt = vec_dot_type(ty);
    let ab = vdt.row_bytes(n).unwrap();
    let mut a = vec![0u8; batch * ab];
    for b in 0..batch {
        kernels().quantize_row(vdt, &x[b * n..(b + 1) * n], &mut a[b * ab..(b + 1) * ab]);
    }
    (w, a, x)
}

#[test]
fn tiles_equal_single_dots_bitwise() {
    for k in [kernels(), scalar_kernels()] {
        for ty in TYPES {
            let n = 512;
            let (rb, ab) = (
                ty.row_bytes(n).unwrap(),
                vec_dot_type(ty).row_bytes(n).unwrap(),
            );
            let (w, a, _) = data(ty, TILE_R, TILE_C, n, 7 + ty as u64);
            let mut out = [0f32; TILE_R * TILE_C];
            k.vec_dot_tile(ty, n, &w, rb, &a, ab, &mut out);
            for c in 0..TILE_C {
                for r in 0..TILE_R {
                    let want = k.vec_dot(ty, n, &w[r * rb..], &a[c * ab..]);
                    assert_eq!(
                        out[c * TILE_R + r].to_bits(),
                        want.to_bits(),
                        "{} {ty} r{r} c{c}",
                        k.isa()
                    );
                }
            }
        }
    }
}

/// `k`'s matmul of a `rows` x `n` matrix of `ty` (made from `seed`) with `batch` activation
/// columns, on `threads` threads in order `arith`, the matrix in `layout` (repacked from the
/// row-major one): every output must have the bits of
/// `want(weight row, activation column, column index)`. Returns the rows and columns.
#[allow(clippy::too_many_arguments)]
fn assert_matmul_bits(
    k: &Kernels,
    ty: GgmlType,
    n: usize,
    (rows, batch): (usize, usize),
    threads: usize,
    (arith, layout): (Arith, Layout),
    seed: u64,
    want: impl Fn(&[u8], &[u8], usize) -> f32,
    what: &str,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (rb, ab) = (
        ty.row_bytes(n).unwrap(),
        vec_dot_type(ty).row_bytes(n).unwrap(),
    );
    let (w, a, x) = data(ty, rows, batch, n, seed);
    let packed = match layout {
        Layout::RowMajor => None,
        Layout::X8 => Some(repack(ty, rows, n, &w).expect("a type with an interleaved layout")),
    };
    let m = QMatrix {
        data: packed.as_deref().unwrap_or(&w),
        layout,
        ..QMatrix::new(ty, rows, n, &w)
    };
    let mut y = vec![f32::NAN; rows * batch];
    let pool = ThreadPool::new(threads);
    matmul(&pool, k, arith, &m, &x, batch, &mut y, &mut Vec::new());
    let wr: Vec<Vec<u8>> = w.chunks_exact(rb).map(<[u8]>::to_vec).collect();
    let ac: Vec<Vec<u8>> = a.chunks_exact(ab).map(<[u8]>::to_vec).collect();
    for b in 0..batch {
        for r in 0..rows {
            assert_eq!(
                y[b * rows + r].to_bits(),
                want(&wr[r], &ac[b], b).to_bits(),
                "{what} {ty} {arith:?} rows {rows} batch {batch} threads {threads}: row {r} col {b}"
            );
        }
    }
    (wr, ac)
}

/// What the scalar twin gives for weight row `wr` and activation column `ac` (column `b`) of a
/// `ty` matmul of `batch` columns in order `arith`: most of a Q4_K prompt batch takes
/// llama.cpp's GEMM order, the rest the single dot.
fn scalar_twin(
    ty: GgmlType,
    n: usize,
    arith: Arith,
    batch: usize,
) -> impl Fn(&[u8], &[u8], usize) -> f32 {
    let slice = kestrel_kernels::prompt_cols(ty, batch);
    move |wr, ac, b| {
        if arith == Arith::Prompt && b < slice {
            kestrel_kernels::generic::kquants::vec_dot_q4_k_prompt(n, wr, ac)
        } else {
            scalar_kernels().vec_dot(ty, n, wr, ac)
        }
    }
}

/// Every shape on every table this CPU has: rows and batch not multiples of the tile sizes,
/// one and two threads.
#[test]
fn matmul_equals_single_dots_for_every_shape() {
    for isa in ISAS {
        let Some(k) = kernels_for(isa) else {
            eprintln!("note: this CPU has no {isa}; its matmul paths are not tested here");
            continue;
        };
        for ty in [Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K] {
            let n = 256;
            for (rows, batch) in [
                (1, 1),
                (5, 1),
                (37, 1),
                (3, 4),
                (17, 5),
                (33, 9),
                (40, 12),
                (7, 3),
                // A prompt batch: Q5_0 takes the Q8_0 panel over expanded rows.
                (43, 70),
            ] {
                for threads in [1, 2] {
                    let seed = (rows * 100 + batch) as u64;
                    let want = |wr: &[u8], ac: &[u8], _| k.vec_dot(ty, n, wr, ac);
                    let shape = (rows, batch);
                    let mode = (Arith::Decode, Layout::RowMajor);
                    assert_matmul_bits(k, ty, n, shape, threads, mode, seed, want, isa);
                }
            }
        }
    }
}

/// The Q4_K and Q6_K matmuls of every instruction set this CPU has (decode and prompt
/// shapes, remainders of every tile size) equal the scalar twin's single dots bit for bit.
#[test]
fn kquant_panels_equal_scalar_twin_bitwise_on_every_isa() {
    let scalar = scalar_kernels();
    for isa in ISAS {
        let Some(k) = kernels_for(isa) else {
            eprintln!("note: this CPU has no {isa}; its k-quant panels are not tested here");
            continue;
        };
        for ty in [Q4_K, Q6_K] {
            let n = 768;
            for (rows, batch) in [
                (1, 1),
                (13, 1),
                (24, 1),
                (19, 3),
                (37, 7),
                (16, 16),
                (9, 33),
                (6, 70),
            ] {
                for arith in [Arith::Decode, Arith::Prompt] {
                    let want = scalar_twin(ty, n, arith, batch);
                    let seed = (rows * 31 + batch) as u64;
                    let mode = (arith, Layout::RowMajor);
                    let (wr, ac) =
                        assert_matmul_bits(k, ty, n, (rows, batch), 1, mode, seed, want, isa);
                    for a in &ac {
                        for w in &wr {
                            let single = k.vec_dot(ty, n, w, a);
                            let decode = scalar.vec_dot(ty, n, w, a);
                            assert_eq!(single.to_bits(), decode.to_bits(), "{isa} {ty} vec_dot");
                        }
                    }
                }
            }
        }
    }
}

/// The repacked layouts (8 rows interleaved: Q4_K, Q6_K, Q4_0, Q8_0) give, on every table this CPU
/// has and on one or two threads, the bits of the scalar twin's single dots over the file's
/// layout, in both orders; rows past the last whole group and column counts past every tile
/// width too. (Q4_K and Q6_K so keep the row-major SIMD bits as well; the row-major AVX2 dots
/// of Q4_0 and Q8_0 have another float order.)
#[test]
fn repacked_layouts_give_the_scalar_twins_bits_on_every_isa() {
    let n = 768;
    for isa in ISAS {
        let Some(k) = kernels_for(isa) else {
            eprintln!("note: this CPU has no {isa}; its repacked panels are not tested here");
            continue;
        };
        for ty in [Q4_K, Q6_K, Q4_0, Q8_0] {
            for (rows, batch) in [
                (8, 1),
                (16, 1),
                (27, 1),
                (8, 2),
                (24, 3),
                (19, 4),
                (40, 9),
                (16, 70),
            ] {
                for arith in [Arith::Decode, Arith::Prompt] {
                    let want = x8_twin(ty, n, arith, batch);
                    for threads in [1, 2] {
                        let seed = (rows * 13 + batch) as u64;
                        let mode = (arith, Layout::X8);
                        let shape = (rows, batch);
                        assert_matmul_bits(k, ty, n, shape, threads, mode, seed, &want, isa);
                    }
                }
            }
        }
    }
}

/// The scalar twin of a repacked matrix: Q8_0 keeps the AVX2 dot's eight-lane order, the
/// rest the scalar table's dots.
fn x8_twin(
    ty: GgmlType,
    n: usize,
    arith: Arith,
    batch: usize,
) -> Box<dyn Fn(&[u8], &[u8], usize) -> f32> {
    if ty == Q8_0 {
        Box::new(move |w: &[u8], a: &[u8], _| {
            kestrel_kernels::generic::legacy::vec_dot_q8_0_lanes(n, w, a)
        })
    } else {
        Box::new(scalar_twin(ty, n, arith, batch))
    }
}

/// Repacking Q8_0 changes no bit on the SIMD tables: their row-major dot is the eight-lane
/// order the repacked kernels keep.
#[test]
fn row_major_q8_0_dots_are_the_lane_order() {
    let n = 1024;
    for isa in ISAS.iter().filter(|&&i| i != "scalar") {
        let Some(k) = kernels_for(isa) else { continue };
        let (w, a, _) = data(Q8_0, 5, 3, n, 77);
        let (rb, ab) = (Q8_0.row_bytes(n).unwrap(), Q8_0.row_bytes(n).unwrap());
        for r in 0..5 {
            for c in 0..3 {
                let (wr, ac) = (&w[r * rb..(r + 1) * rb], &a[c * ab..(c + 1) * ab]);
                let want = kestrel_kernels::generic::legacy::vec_dot_q8_0_lanes(n, wr, ac);
                assert_eq!(
                    k.vec_dot(Q8_0, n, wr, ac).to_bits(),
                    want.to_bits(),
                    "{isa}"
                );
            }
        }
    }
}

/// Repacking is lossless: every row comes back as the file's bytes (the rows past the last
/// whole group stay as they were), and so does every block one at a time.
#[test]
fn repack_round_trips() {
    use kestrel_kernels::generic::repack::{unpack_x8_block, x8_row, x8_size, X8_ROWS};
    let n = 512;
    for ty in [Q4_K, Q6_K, Q4_0, Q8_0] {
        let rb = ty.row_bytes(n).unwrap();
        let nb = n / ty.block_size();
        let (bb, xb) = (rb / nb, x8_size(ty, 8, n) / nb);
        for rows in [8, 13, 32] {
            let (w, _, _) = data(ty, rows, 1, n, rows as u64);
            let p = repack(ty, rows, n, &w).unwrap();
            assert_eq!(p.len(), x8_size(ty, rows, n));
            let groups = rows / X8_ROWS;
            let mut row = vec![0u8; rb];
            for r in 0..rows {
                x8_row(ty, &p, rows, n, r, &mut row);
                assert_eq!(&row[..], &w[r * rb..(r + 1) * rb], "{ty} row {r}");
            }
            let mut blk = vec![0u8; bb];
            for r in 0..groups * X8_ROWS {
                for i in 0..nb {
                    unpack_x8_block(ty, &p[(r / X8_ROWS * nb + i) * xb..], r % X8_ROWS, &mut blk);
                    assert_eq!(&blk[..], &w[r * rb + i * bb..r * rb + (i + 1) * bb]);
                }
            }
            assert_eq!(&p[groups * nb * xb..], &w[groups * X8_ROWS * rb..]);
        }
    }
    assert!(
        repack(Q5_0, 8, 256, &[0u8; 8 * 8 * 22]).is_none(),
        "no interleaved Q5_0 layout"
    );
}

/// The AVX-512 VNNI panels of the signed legacy formats give the bits of the AVX2 dot products
/// (llama.cpp's arithmetic), in decode and prompt shapes.
#[test]
fn legacy_vnni_panels_equal_avx2_dots_bitwise() {
    let (Some(avx2), Some(k)) = (kernels_for("avx2"), kernels_for("avx512-vnni")) else {
        eprintln!("note: this CPU has no AVX-512 VNNI; its legacy panels are not tested here");
        return;
    };
    for ty in [Q4_0, Q5_0, Q8_0] {
        let n = 512;
        for (rows, batch) in [(1, 1), (21, 1), (8, 2), (19, 5), (33, 9), (16, 16), (5, 70)] {
            for threads in [1, 2] {
                let seed = (rows * 7 + batch) as u64;
                let want = |wr: &[u8], ac: &[u8], _| avx2.vec_dot(ty, n, wr, ac);
                let shape = (rows, batch);
                let mode = (Arith::Prompt, Layout::RowMajor);
                assert_matmul_bits(k, ty, n, shape, threads, mode, seed, want, "vnni");
            }
        }
    }
}

/// Several matrices of one input in one call give what separate calls give, including a mix
/// that cannot share the quantized input (Q4_1 wants Q8_1, Q5_0 wants Q8_0).
#[test]
fn matmul_many_equals_separate_calls() {
    let k = kernels();
    let n = 256;
    for (types, batch) in [
        ([Q5_0, Q5_0, Q8_0], 1),
        ([Q4_1, Q4_1, Q4_1], 6),
        ([Q4_1, Q5_0, Q4_K], 5),
    ] {
        let rows = [64, 16, 24];
        let ws: Vec<Vec<u8>> = types
            .iter()
            .zip(rows)
            .map(|(&t, r)| data(t, r, 1, n, r as u64).0)
            .collect();
        let x: Vec<f32> = data(Q8_0, 1, batch, n, 99).2;
        for threads in [1, 2] {
            let pool = ThreadPool::new(threads);
            let mats: Vec<QMatrix> = (0..3)
                .map(|i| QMatrix::new(types[i], rows[i], n, &ws[i]))
                .collect();
            let mut ys: Vec<Vec<f32>> = rows.iter().map(|&r| vec![f32::NAN; r * batch]).collect();
            {
                let [a, b, c] = &mut ys[..] else {
                    unreachable!()
                };
                let mut pairs = [
                    (mats[0], &mut a[..]),
                    (mats[1], &mut b[..]),
                    (mats[2], &mut c[..]),
                ];
                let ar = Arith::Prompt;
                kestrel_kernels::matmul_many(&pool, k, ar, &mut pairs, &x, batch, &mut Vec::new());
            }
            for i in 0..3 {
                let mut want = vec![f32::NAN; rows[i] * batch];
                matmul(
                    &pool,
                    k,
                    Arith::Prompt,
                    &mats[i],
                    &x,
                    batch,
                    &mut want,
                    &mut Vec::new(),
                );
                let same = ys[i]
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{types:?} batch {batch} threads {threads}: matrix {i}"
                );
            }
        }
    }
}

/// The extremes of the integer paths: repacked Q4_0 weights all 0 or all 15 (-8 or +7) and
/// Q8_0 weights all -128, -127 or +127, against activations all +127 or -127, where an i16 sum
/// of `maddubs` products is closest to overflowing, give the scalar dot's bits on every table.
#[test]
fn repacked_legacy_extremes_do_not_overflow() {
    let (n, rows) = (256, 8);
    let one = 0x3C00u16.to_le_bytes(); // f16 1.0
    let cases = [
        (Q4_0, 0x00u8, 127i8),
        (Q4_0, 0xFF, 127),
        (Q4_0, 0x00, -127),
        (Q4_0, 0xFF, -127),
        (Q4_0, 0xF0, 127),
        (Q8_0, 0x80, 127),
        (Q8_0, 0x80, -127),
        (Q8_0, 0x81, 127),
        (Q8_0, 0x7F, 127),
        (Q8_0, 0x7F, -127),
    ];
    for (ty, wq, aq) in cases {
        let (rb, ab) = (ty.row_bytes(n).unwrap(), Q8_0.row_bytes(n).unwrap());
        let bb = rb / (n / 32);
        let mut w = vec![wq; rows * rb];
        for b in 0..rows * n / 32 {
            w[b * bb..b * bb + 2].copy_from_slice(&one);
        }
        // The activations go in as floats: all +-127 quantize to blocks of +-127 with d = 1.
        let x: Vec<f32> = vec![aq as f32; n];
        let mut a = vec![0u8; ab];
        scalar_kernels().quantize_row(Q8_0, &x, &mut a);
        let packed = repack(ty, rows, n, &w).unwrap();
        let want = x8_twin(ty, n, Arith::Decode, 1)(&w[..rb], &a, 0);
        for isa in ISAS {
            let Some(k) = kernels_for(isa) else { continue };
            let mut y = vec![f32::NAN; rows];
            let m = QMatrix {
                layout: Layout::X8,
                ..QMatrix::new(ty, rows, n, &packed)
            };
            let pool = ThreadPool::new(1);
            matmul(&pool, k, Arith::Decode, &m, &x, 1, &mut y, &mut Vec::new());
            for v in &y {
                assert_eq!(v.to_bits(), want.to_bits(), "{isa} {ty} w {wq:#x} a {aq}");
            }
        }
    }
}
