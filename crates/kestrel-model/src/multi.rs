//! One decode step for several sessions at once: one new token per session, each at its own
//! position and with its own KV cache, sharing every weight matrix multiplication (continuous
//! batching). Norms, projections and the FFN run on the stacked rows; only attention is per
//! session, and it uses the same kernels and lane width as a one-token [`Model::forward`], so
//! with weight formats whose batched dot product equals the single-row one (all but Q4_K and
//! Q6_K, which follow llama.cpp's batch arithmetic at 4+ / 8+ rows) each session's logits are
//! bit-identical to an unbatched step.

use crate::error::{ModelError, Result};
use crate::forward::{
    f16_scratch, ffn_block, linear, linear_many, norm_rows, norm_rows_inplace, Ctx, SharedMut,
};
use crate::kv::KvCache;
use crate::model::Model;
use crate::session::{Scratch, Session};
use half::f16;
use kestrel_kernels::ops;
use kestrel_kernels::{matmul, Lanes, ThreadPool};

/// Activation buffers for a batched step over up to `capacity` sessions; reused across steps so
/// a step allocates only a few pointers.
pub struct MultiScratch {
    s: Scratch,
    logits: Vec<f32>,
    capacity: usize,
}

impl MultiScratch {
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Model {
    /// Scratch for [`Model::forward_multi`] over at most `capacity` sessions.
    pub fn new_multi_scratch(&self, capacity: usize) -> MultiScratch {
        let capacity = capacity.max(1);
        // A session's scratch sized for `capacity` tokens is exactly what a step needs.
        let s = self.new_session(capacity, capacity).s;
        MultiScratch {
            s,
            logits: vec![0.0; capacity * self.dec.hp.n_vocab],
            capacity,
        }
    }

    /// Append `tokens[i]` to `sessions[i]` for every i in one pass. Afterwards each session's
    /// `last_logits()` holds its next-token logits, as after `forward(s, pool, &[t], 0)`.
    pub fn forward_multi(
        &self,
        sessions: &mut [&mut Session],
        tokens: &[u32],
        pool: &ThreadPool,
        ms: &mut MultiScratch,
    ) -> Result<()> {
        let hp = &self.dec.hp;
        let n = tokens.len();
        if n == 0 || n != sessions.len() {
            return Err(ModelError::Invalid(format!(
                "forward_multi: {n} tokens for {} sessions",
                sessions.len()
            )));
        }
        if n > ms.capacity {
            return Err(ModelError::Invalid(format!(
                "forward_multi: {n} sessions, scratch holds {}",
                ms.capacity
            )));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
            return Err(ModelError::BadToken(t, hp.n_vocab));
        }
        for s in sessions.iter() {
            if s.n_past + 1 > s.n_ctx() {
                return Err(ModelError::ContextFull {
                    needed: s.n_past + 1,
                    n_ctx: s.n_ctx(),
                });
            }
        }
        let c = Ctx {
            g: &self.gguf,
            d: &self.dec,
            pool,
            k: kestrel_kernels::kernels(),
            obs: None,
        };
        step(&c, sessions, tokens, ms);
        Ok(())
    }
}

fn step(c: &Ctx, sessions: &mut [&mut Session], tokens: &[u32], ms: &mut MultiScratch) {
    let d = c.d;
    let hp = &d.hp;
    let n = tokens.len();
    let e = hp.n_embd;
    let sc = &mut ms.s;
    let pos: Vec<usize> = sessions.iter().map(|s| s.n_past).collect();

    let emb = d.tok_embd.view(c.g);
    let rb = d.tok_embd.row_bytes();
    for (i, &t) in tokens.iter().enumerate() {
        let row = &emb.data[t as usize * rb..(t as usize + 1) * rb];
        kestrel_kernels::dequantize_row(emb.ty, row, &mut sc.x[i * e..(i + 1) * e]);
        if d.embd_scale != 1.0 {
            ops::scale_inplace(&mut sc.x[i * e..(i + 1) * e], d.embd_scale);
        }
    }
    for (base, table) in sc.rope.iter_mut() {
        for (i, &p) in pos.iter().enumerate() {
            ops::rope_cache(
                p as f32,
                hp.n_rot,
                *base,
                hp.rope_freq_scale,
                d.rope_factors.as_deref(),
                &mut table[i * hp.n_rot..(i + 1) * hp.n_rot],
            );
        }
    }

    for (il, layer) in d.layers.iter().enumerate() {
        attention_multi(c, sc, sessions, &pos, il, layer);
        ffn_block(c, sc, layer, n);
    }

    norm_rows(c.pool, &sc.x, &d.output_norm, hp.norm_eps, n, &mut sc.h);
    let w = d.output.view(c.g);
    let v = hp.n_vocab;
    let out = &mut ms.logits[..n * v];
    matmul(c.pool, c.k, &w, &sc.h[..n * e], n, out, &mut sc.q8);
    if let Some(cap) = d.final_softcap {
        for z in out.iter_mut() {
            *z = cap * (*z / cap).tanh();
        }
    }
    for (i, s) in sessions.iter_mut().enumerate() {
        if s.logits.len() < v {
            s.logits.resize(v, 0.0);
        }
        s.logits[..v].copy_from_slice(&out[i * v..(i + 1) * v]);
        s.n_logit_rows = 1;
        s.n_past += 1;
    }
}

/// The attention block for one token per session: shared q/k/v/o projections, per-session KV
/// store and scaled dot-product attention.
fn attention_multi(
    c: &Ctx,
    sc: &mut Scratch,
    sessions: &mut [&mut Session],
    pos: &[usize],
    il: usize,
    layer: &crate::decoder::Layer,
) {
    let d = c.d;
    let hp = &d.hp;
    let n = pos.len();
    let e = hp.n_embd;
    let (hd, hdv) = (hp.head_dim, hp.head_dim_v);

    norm_rows(c.pool, &sc.x, &layer.attn_norm, hp.norm_eps, n, &mut sc.h);
    linear_many(
        c,
        [
            (&layer.wq, &mut sc.q),
            (&layer.wk, &mut sc.k),
            (&layer.wv, &mut sc.v),
        ],
        &sc.h,
        n,
        &mut sc.q8,
    );
    if let Some(w) = &layer.q_norm {
        norm_rows_inplace(c.pool, &mut sc.q, w, hp.norm_eps, n * hp.n_head);
    }
    if let Some(w) = &layer.k_norm {
        norm_rows_inplace(c.pool, &mut sc.k, w, hp.norm_eps, n * hp.n_head_kv);
    }
    let table = &sc
        .rope
        .iter()
        .find(|(b, _)| *b == layer.rope_base)
        .expect("rope table for every layer base")
        .1;
    for (i, s) in sessions.iter_mut().enumerate() {
        let cs = &table[i * hp.n_rot..(i + 1) * hp.n_rot];
        for h in 0..hp.n_head {
            let o = (i * hp.n_head + h) * hd;
            ops::rope_apply(&mut sc.q[o..o + hd], cs, hp.n_rot, d.rope_style);
        }
        for h in 0..hp.n_head_kv {
            let o = (i * hp.n_head_kv + h) * hd;
            ops::rope_apply(&mut sc.k[o..o + hd], cs, hp.n_rot, d.rope_style);
        }
        s.kv.store(
            il,
            pos[i],
            &sc.k[i * hp.n_embd_k()..(i + 1) * hp.n_embd_k()],
            &sc.v[i * hp.n_embd_v()..(i + 1) * hp.n_embd_v()],
        );
    }

    // (session, head) pairs over the pool, with a one-token pass's lane width so the
    // arithmetic matches it.
    let kvs: Vec<&KvCache> = sessions.iter().map(|s| &s.kv).collect();
    let max_ctx = kvs.iter().map(|kv| kv.n_ctx).max().unwrap_or(0);
    let nt = c.pool.n_threads();
    let lanes = Lanes::L32;
    let per_thread = max_ctx + hd + lanes.count() * hdv;
    if sc.attn.len() < nt * per_thread {
        sc.attn.resize(nt * per_thread, 0.0);
    }
    let group = hp.n_head / hp.n_head_kv;
    let items = n * hp.n_head;
    let scratch = SharedMut(sc.attn.as_mut_ptr());
    let out = SharedMut(sc.att.as_mut_ptr());
    let q = &sc.q;
    let (q_scale, s_scale) = if d.scale_q {
        (d.attn_scale, 1.0)
    } else {
        (1.0, d.attn_scale)
    };
    let window = layer.window;
    let kern = c.k;
    let kvs = &kvs;
    c.pool.run(&|tid, nth| {
        // SAFETY: thread `tid` owns scratch block `tid` and the output rows of its items.
        let mine = unsafe { scratch.slice(tid * per_thread, per_thread) };
        let (sc_row, rest) = mine.split_at_mut(max_ctx);
        let (q16f, acc) = rest.split_at_mut(hd);
        let q16: &mut [f16] = f16_scratch(q16f, hd);
        let mut item = tid;
        while item < items {
            let (i, h) = (item / hp.n_head, item % hp.n_head);
            let kv = kvs[i];
            let p = pos[i];
            let start = window.map_or(0, |w| (p + 1).saturating_sub(w));
            let g = h / group;
            let qh = &q[(i * hp.n_head + h) * hd..(i * hp.n_head + h + 1) * hd];
            for (dst, &x) in q16.iter_mut().zip(qh) {
                *dst = f16::from_f32(x * q_scale);
            }
            let len = p + 1 - start;
            kern.dot_f16_rows(
                lanes,
                q16,
                kv.k_range(il, g, start, p + 1),
                &mut sc_row[..len],
            );
            if s_scale != 1.0 {
                for v in sc_row[..len].iter_mut() {
                    *v *= s_scale;
                }
            }
            kern.softmax_cells(&mut sc_row[..len], start);
            for w in sc_row[..len].iter_mut() {
                *w = f16::from_f32(*w).to_f32();
            }
            // SAFETY: item (i, h) is this thread's alone, so is its output row.
            let oh = unsafe { out.slice((i * hp.n_head + h) * hdv, hdv) };
            kern.mix_f16(
                lanes,
                oh,
                &sc_row[..len],
                kv.v_range(il, g, start, p + 1),
                start,
                acc,
            );
            item += nth;
        }
    });

    linear(c, &layer.wo, &sc.att, n, &mut sc.o, &mut sc.q8);
    if let Some(w) = &layer.post_attn_norm {
        norm_rows_inplace(c.pool, &mut sc.o, w, hp.norm_eps, n);
    }
    ops::add_inplace(&mut sc.x[..n * e], &sc.o[..n * e]);
}
