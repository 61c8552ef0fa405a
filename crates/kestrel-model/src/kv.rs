//! The KV cache: f16 keys and values per layer, laid out [kv_head][position][dim] so attention
//! streams each head's history contiguously.

use half::f16;

#[derive(Clone)]
pub struct KvCache {
    pub n_ctx: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    pub k: Vec<Vec<f16>>,
    pub v: Vec<Vec<f16>>,
}

impl KvCache {
    pub fn new(
        n_layer: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
        head_dim_v: usize,
    ) -> KvCache {
        KvCache {
            n_ctx,
            n_head_kv,
            head_dim,
            head_dim_v,
            k: (0..n_layer)
                .map(|_| vec![f16::ZERO; n_head_kv * n_ctx * head_dim])
                .collect(),
            v: (0..n_layer)
                .map(|_| vec![f16::ZERO; n_head_kv * n_ctx * head_dim_v])
                .collect(),
        }
    }

    /// Bytes held by the cache.
    pub fn size_bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|b| b.len() * 2).sum()
    }

    #[inline]
    pub fn k_at(&self, layer: usize, head: usize, pos: usize) -> &[f16] {
        let o = (head * self.n_ctx + pos) * self.head_dim;
        &self.k[layer][o..o + self.head_dim]
    }

    #[inline]
    pub fn v_at(&self, layer: usize, head: usize, pos: usize) -> &[f16] {
        let o = (head * self.n_ctx + pos) * self.head_dim_v;
        &self.v[layer][o..o + self.head_dim_v]
    }

    /// Keys of one head for positions `p0..p1`, contiguous.
    #[inline]
    pub fn k_range(&self, layer: usize, head: usize, p0: usize, p1: usize) -> &[f16] {
        let o = head * self.n_ctx * self.head_dim;
        &self.k[layer][o + p0 * self.head_dim..o + p1 * self.head_dim]
    }

    /// Values of one head for positions `p0..p1`, contiguous.
    #[inline]
    pub fn v_range(&self, layer: usize, head: usize, p0: usize, p1: usize) -> &[f16] {
        let o = head * self.n_ctx * self.head_dim_v;
        &self.v[layer][o + p0 * self.head_dim_v..o + p1 * self.head_dim_v]
    }

    /// Write one token's k and v (all kv heads, concatenated) at `pos`.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        for h in 0..self.n_head_kv {
            let o = (h * self.n_ctx + pos) * self.head_dim;
            let src = &k[h * self.head_dim..(h + 1) * self.head_dim];
            kestrel_kernels::ops::f32_to_f16_slice(src, &mut self.k[layer][o..o + self.head_dim]);
            let o = (h * self.n_ctx + pos) * self.head_dim_v;
            let src = &v[h * self.head_dim_v..(h + 1) * self.head_dim_v];
            kestrel_kernels::ops::f32_to_f16_slice(src, &mut self.v[layer][o..o + self.head_dim_v]);
        }
    }
}
