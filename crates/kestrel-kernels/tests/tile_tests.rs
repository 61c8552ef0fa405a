//! The multi-row kernels (tiles for prompt batches) must give exactly the
//! bits of the single-row dot products they replace (which match llama.cpp's), and matmul must
//! cover every row and column once whatever the shape.

use kestrel_kernels::dispatch::{TILE_C, TILE_R};
use kestrel_kernels::{
    kernels, matmul, quantize_row, scalar_kernels, vec_dot_type, GgmlType, QMatrix, ThreadPool,
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
                    let want = k.vec_dot_batch(ty, n, &w[r * rb..], &a[c * ab..]);
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

/// Every shape: rows and batch not multiples of the tile sizes, one and two threads.
#[test]
fn matmul_equals_single_dots_for_every_shape() {
    let k = kernels();
    for ty in [Q4_1, Q5_0, Q8_0, Q4_K, Q6_K] {
        let n = 256;
        let (rb, ab) = (
            ty.row_bytes(n).unwrap(),
            vec_dot_type(ty).row_bytes(n).unwrap(),
        );
        for (rows, batch) in [
            (1, 1),
            (5, 1),
            (37, 1),
            (3, 4),
            (17, 5),
            (33, 9),
            (40, 12),
            (7, 3),
        ] {
            let (w, a, x) = data(ty, rows, batch, n, (rows * 100 + batch) as u64);
            let m = QMatrix {
                ty,
                rows,
                cols: n,
                data: &w,
            };
            for threads in [1, 2] {
                let mut y = vec![f32::NAN; rows * batch];
                matmul(
                    &ThreadPool::new(threads),
                    k,
                    &m,
                    &x,
                    batch,
                    &mut y,
                    &mut Vec::new(),
                );
                let gemm_cols = kestrel_kernels::gemm_cols(ty, batch);
                for b in 0..batch {
                    for r in 0..rows {
                        let (wr, ac) = (&w[r * rb..(r + 1) * rb], &a[b * ab..(b + 1) * ab]);
                        let want = if b < gemm_cols {
                            k.vec_dot_batch(ty, n, wr, ac)
                        } else {
                            k.vec_dot(ty, n, wr, ac)
                        };
                        assert_eq!(
                            y[b * rows + r].to_bits(),
                            want.to_bits(),
                            "{ty} rows {rows} batch {batch} threads {threads}: row {r} col {b}"
                        );
                    }
                }
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
                .map(|i| QMatrix {
                    ty: types[i],
                    rows: rows[i],
                    cols: n,
                    data: &ws[i],
                })
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
                kestrel_kernels::matmul_many(&pool, k, &mut pairs, &x, batch, &mut Vec::new());
            }
            for i in 0..3 {
                let mut want = vec![f32::NAN; rows[i] * batch];
                matmul(&pool, k, &mats[i], &x, batch, &mut want, &mut Vec::new());
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
