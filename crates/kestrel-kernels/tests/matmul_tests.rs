use kestrel_compress::rtn::quantize_row;
use kestrel_kernels::{
    dequantize_row, kernels, matmul, scalar_kernels, Arith, GgmlType, QMatrix, ThreadPool,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// A weight matrix of `ty` from random floats (k-quant weights and Q8_0 via their quantizers).
fn weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = ty.row_bytes(cols).unwrap();
    let mut data = vec![0u8; rb * rows];
    let mut src = vec![0f32; cols];
    for r in 0..rows {
        for v in src.iter_mut() {
            *v = rng.f();
        }
        quantize_row(ty, &src, &mut data[r * rb..(r + 1) * rb]);
    }
    data
}

fn check(ty: GgmlType, rows: usize, cols: usize, batch: usize, threads: usize, simd: bool) {
    let mut rng = Rng(0x9E3779B97F4A7C15 ^ (rows * 31 + cols * 7 + batch) as u64);
    let data = weights(ty, rows, cols, &mut rng);
    let x: Vec<f32> = (0..batch * cols).map(|_| rng.f()).collect();
    let w = QMatrix {
        ty,
        rows,
        cols,
        data: &data,
        layout: kestrel_kernels::Layout::RowMajor,
    };
    let pool = ThreadPool::new(threads);
    let k = if simd { kernels() } else { scalar_kernels() };
    let mut y = vec![f32::NAN; batch * rows];
    let mut scratch = Vec::new();
    matmul(&pool, k, Arith::Prompt, &w, &x, batch, &mut y, &mut scratch);
    // a second call reuses the scratch
    let cap = scratch.capacity();
    matmul(&pool, k, Arith::Prompt, &w, &x, batch, &mut y, &mut scratch);
    assert_eq!(scratch.capacity(), cap);

    // naive reference: dequantized weights and dequantized activations in f64
    let vdt = kestrel_kernels::vec_dot_type(ty);
    let rb = ty.row_bytes(cols).unwrap();
    let mut wr = vec![0f32; cols];
    let mut xa = vec![0f32; cols];
    let mut aq = vec![0u8; vdt.row_bytes(cols).unwrap()];
    for b in 0..batch {
        quantize_row(vdt, &x[b * cols..(b + 1) * cols], &mut aq);
        dequantize_row(vdt, &aq, &mut xa);
        for r in 0..rows {
            dequantize_row(ty, &data[r * rb..(r + 1) * rb], &mut wr);
            let (mut s, mut sa) = (0f64, 0f64);
            for c in 0..cols {
                let p = wr[c] as f64 * xa[c] as f64;
                s += p;
                sa += p.abs();
            }
            // Q8_1's s = d * sum(q) is stored as f16: allow its rounding (2^-11 relative)
            // times the weight block's min.
            let mut extra = 0f64;
            if vdt == GgmlType::Q8_1 {
                let bs = ty.type_size();
                for (blk, xs) in xa.chunks(32).enumerate() {
                    let o = r * rb + blk * bs + 2;
                    let m = half::f16::from_le_bytes([data[o], data[o + 1]]).to_f32() as f64;
                    extra +=
                        m.abs() * xs.iter().map(|v| v.abs() as f64).sum::<f64>() * (1.0 / 1024.0);
                }
            }
            let got = y[b * rows + r] as f64;
            assert!(
                (got - s).abs() <= 1e-4 * sa + extra + 1e-6,
                "{ty} rows {rows} cols {cols} batch {batch} threads {threads} simd {simd}: y[{b},{r}] = {got}, want {s}"
            );
        }
    }
}

#[test]
fn matmul_matches_naive() {
    use GgmlType::*;
    for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F32, F16, BF16] {
        for &(rows, cols) in &[(37, 64), (50, 256)] {
            for batch in [1, 7] {
                for threads in [1, 2, 3] {
                    for simd in [false, true] {
                        check(ty, rows, cols, batch, threads, simd);
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_kquants() {
    use GgmlType::*;
    for ty in [Q4_K, Q5_K, Q6_K] {
        for batch in [1, 7] {
            for threads in [1, 3] {
                check(ty, 19, 512, batch, threads, true);
            }
        }
    }
}

#[test]
fn matmul_large_parallel_quantization() {
    // batch * cols above the threshold where activations are quantized on the pool
    use GgmlType::*;
    for ty in [Q4_0, Q4_1, F32] {
        check(ty, 13, 4096, 9, 3, true);
    }
}
