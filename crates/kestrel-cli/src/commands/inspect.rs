use crate::util::{human_bytes, human_count};
use clap::Args;
use kestrel_gguf::{GgufFile, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// GGUF file
    model: PathBuf,
    /// Print a JSON object
    #[arg(long = "json")]
    json: bool,
    /// Show every tensor (default: the first 40 and a summary)
    #[arg(long = "all")]
    all: bool,
    /// Also read every tensor and fail if a value or block scale is NaN or infinite
    #[arg(long = "check-tensors")]
    check_tensors: bool,
}

fn value_json(v: &Value) -> serde_json::Value {
    // Long arrays (vocabularies) are summarized rather than dumped.
    let s = v.to_string();
    match v {
        Value::U8(x) => (*x).into(),
        Value::I8(x) => (*x).into(),
        Value::U16(x) => (*x).into(),
        Value::I16(x) => (*x).into(),
        Value::U32(x) => (*x).into(),
        Value::I32(x) => (*x).into(),
        Value::U64(x) => (*x).into(),
        Value::I64(x) => (*x).into(),
        Value::F32(x) => (*x as f64).into(),
        Value::F64(x) => (*x).into(),
        Value::Bool(x) => (*x).into(),
        Value::String(x) => x.clone().into(),
        Value::Array(_) => s.into(),
    }
}

pub fn run(a: InspectArgs) -> anyhow::Result<()> {
    let g = GgufFile::open(&a.model)?;
    if a.check_tensors {
        crate::args::check_tensors(&a.model, kestrel_engine::default_threads())?;
    }
    let n_params: u64 = g.tensors().iter().map(|t| t.n_elements()).sum();
    let bytes: u64 = g.tensors().iter().map(|t| t.size as u64).sum();
    let mut by_type: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in g.tensors() {
        let e = by_type.entry(t.ty.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.size as u64;
    }
    if a.json {
        let meta: serde_json::Map<String, serde_json::Value> = g
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect();
        let tensors: Vec<_> = g
            .tensors()
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "type": t.ty.name(), "dims": t.dims, "offset": t.offset, "bytes": t.size}))
            .collect();
        let v = serde_json::json!({
            "file": a.model.display().to_string(), "version": g.version(), "file_bytes": g.bytes().len(),
            "n_params": n_params, "tensor_bytes": bytes,
            "bits_per_weight": bytes as f64 * 8.0 / n_params.max(1) as f64,
            "metadata": meta, "tensors": tensors,
        });
        println!("{v}");
        return Ok(());
    }
    println!("file:        {}", a.model.display());
    println!(
        "GGUF:        v{}, {} metadata keys, {} tensors",
        g.version(),
        g.metadata().len(),
        g.tensors().len()
    );
    println!(
        "size:        {} ({} parameters, {:.2} bits/weight)",
        human_bytes(g.bytes().len() as u64),
        human_count(n_params),
        bytes as f64 * 8.0 / n_params.max(1) as f64
    );
    let types: Vec<String> = by_type
        .iter()
        .map(|(k, (n, b))| format!("{k} x{n} ({})", human_bytes(*b)))
        .collect();
    println!("types:       {}", types.join(", "));
    println!("\nmetadata:");
    for (k, v) in g.metadata() {
        let mut s = v.to_string();
        if s.len() > 100 {
            let cut = (0..=100)
                .rev()
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(0);
            s = format!("{}… ({} chars)", &s[..cut], s.len());
        }
        println!("  {k:<44} {}", s.replace('\n', "\\n"));
    }
    println!("\ntensors:");
    println!(
        "  {:<36} {:>6} {:>18} {:>12}",
        "name", "type", "dims", "size"
    );
    let show = if a.all {
        g.tensors().len()
    } else {
        40.min(g.tensors().len())
    };
    for t in &g.tensors()[..show] {
        println!(
            "  {:<36} {:>6} {:>18} {:>12}",
            t.name,
            t.ty.name(),
            format!("{:?}", t.dims),
            human_bytes(t.size as u64)
        );
    }
    if show < g.tensors().len() {
        println!(
            "  ... {} more (--all to list them)",
            g.tensors().len() - show
        );
    }
    Ok(())
}
