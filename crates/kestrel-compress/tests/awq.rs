//! AWQ on a small synthetic block: the scaled model computes the same function as the
//! original (the inverse scales folded into the norms and ffn_up are exact), and with skewed
//! activation statistics the search picks a non-zero alpha that lowers the importance-weighted
//! quantization error.

use kestrel_compress::awq;
use kestrel_compress::imatrix::{Entry, Imatrix};
use kestrel_gguf::{GgmlType, GgufFile, GgufWriter, Value};
use std::collections::{BTreeMap, HashMap};

const E: usize = 256; // embedding width
const F: usize = 512; // FFN width

fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn model() -> GgufFile {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    let mut add = |name: &str, dims: Vec<u64>, seed: u64| {
        let n = dims.iter().product::<u64>() as usize;
        let x: Vec<f32> = if dims.len() == 1 {
            noise(seed, n).iter().map(|v| 1.0 + v).collect()
        } else {
            noise(seed, n).iter().map(|v| 0.05 * v).collect()
        };
        w.add_tensor(name, dims, GgmlType::F32, f32_bytes(&x))
            .unwrap();
    };
    add("blk.0.attn_norm.weight", vec![E as u64], 1);
    add("blk.0.attn_q.weight", vec![E as u64, E as u64], 2);
    add("blk.0.attn_k.weight", vec![E as u64, 64], 3);
    add("blk.0.attn_v.weight", vec![E as u64, 64], 4);
    add("blk.0.ffn_norm.weight", vec![E as u64], 5);
    add("blk.0.ffn_gate.weight", vec![E as u64, F as u64], 6);
    add("blk.0.ffn_up.weight", vec![E as u64, F as u64], 7);
    add("blk.0.ffn_down.weight", vec![F as u64, E as u64], 8);
    let mut buf = Vec::new();
    w.write_to(&mut buf).unwrap();
    GgufFile::from_bytes(buf).unwrap()
}

fn tensor(g: &GgufFile, plan: &awq::AwqPlan, name: &str) -> Vec<f32> {
    plan.data.get(name).cloned().unwrap_or_else(|| {
        let t = g.tensor(name).unwrap();
        kestrel_compress::io::tensor_f32(g, t).unwrap()
    })
}

/// y = W (x * norm), W rows of `cols`.
fn project(w: &[f32], norm: &[f32], x: &[f32]) -> Vec<f32> {
    let cols = x.len();
    w.chunks_exact(cols)
        .map(|r| r.iter().zip(x).zip(norm).map(|((w, x), n)| w * x * n).sum())
        .collect()
}

#[test]
fn scaling_preserves_the_function_and_lowers_the_error() {
    let g = model();
    // Skewed statistics: a few channels with 100x the activation energy (as LLMs have).
    let skew = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|j| {
                if j % 37 == 0 {
                    100.0
                } else {
                    1.0 + (j % 5) as f32
                }
            })
            .collect()
    };
    let mut entries = BTreeMap::new();
    for (name, n) in [
        ("attn_q", E),
        ("attn_k", E),
        ("attn_v", E),
        ("ffn_gate", E),
        ("ffn_up", E),
        ("ffn_down", F),
    ] {
        entries.insert(
            format!("blk.0.{name}.weight"),
            Entry {
                sum2: skew(n),
                count: 1.0,
            },
        );
    }
    let im = Imatrix::new(entries, vec![], 1, 1);
    let types: HashMap<String, GgmlType> = [
        "attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up", "ffn_down",
    ]
    .iter()
    .map(|n| (format!("blk.0.{n}.weight"), GgmlType::Q4_0))
    .collect();
    let plan = awq::plan(&g, &types, &im, 1, &mut |_, _, _| {}).unwrap();
    assert_eq!(plan.choices.len(), 3);
    for (group, alpha, gain) in &plan.choices {
        eprintln!(
            "{group}: alpha {alpha}, weighted error -{:.1}%",
            100.0 * gain
        );
        assert!(
            *alpha > 0.0 && *gain > 0.02,
            "{group}: alpha {alpha}, gain {gain}"
        );
    }
    // Same function: attention projections and the whole FFN, on a random input.
    let x = noise(99, E);
    let orig = |n: &str| kestrel_compress::io::tensor_f32(&g, g.tensor(n).unwrap()).unwrap();
    for (m, norm) in [
        ("attn_q", "attn_norm"),
        ("attn_v", "attn_norm"),
        ("ffn_gate", "ffn_norm"),
    ] {
        let (wn, nn) = (format!("blk.0.{m}.weight"), format!("blk.0.{norm}.weight"));
        let a = project(&orig(&wn), &orig(&nn), &x);
        let b = project(&tensor(&g, &plan, &wn), &tensor(&g, &plan, &nn), &x);
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{m}: {a} vs {b}");
        }
    }
    let ffn = |get: &dyn Fn(&str) -> Vec<f32>| {
        let norm = get("blk.0.ffn_norm.weight");
        let gate = project(&get("blk.0.ffn_gate.weight"), &norm, &x);
        let up = project(&get("blk.0.ffn_up.weight"), &norm, &x);
        let h: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        project(&get("blk.0.ffn_down.weight"), &vec![1.0; F], &h)
    };
    let a = ffn(&|n| orig(n));
    let b = ffn(&|n| tensor(&g, &plan, n));
    for (a, b) in a.iter().zip(&b) {
        assert!((a - b).abs() < 1e-5 + 1e-3 * a.abs(), "ffn: {a} vs {b}");
    }
}
