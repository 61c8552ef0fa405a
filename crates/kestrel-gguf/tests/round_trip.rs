//! Write a file with every value type and several tensor types, read it back, compare.

mod common;

use kestrel_gguf::{Array, GgmlType, GgufError, GgufFile, GgufWriter, Value};

fn all_values() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(3.25)),
        ("t.bool", Value::Bool(true)),
        ("t.bool_false", Value::Bool(false)),
        ("t.str", Value::String("héllo ✓".into())),
        ("t.empty_str", Value::String(String::new())),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(-1e300)),
        ("t.arr_u8", Value::Array(Array::U8(vec![1, 2, 255]))),
        ("t.arr_i8", Value::Array(Array::I8(vec![-1, 2]))),
        ("t.arr_u16", Value::Array(Array::U16(vec![1, 65535]))),
        ("t.arr_i16", Value::Array(Array::I16(vec![-5]))),
        ("t.arr_u32", Value::Array(Array::U32(vec![1, 2, 3]))),
        ("t.arr_i32", Value::Array(Array::I32(vec![-1, 0, 1]))),
        ("t.arr_f32", Value::Array(Array::F32(vec![0.5, -2.0]))),
        (
            "t.arr_bool",
            Value::Array(Array::Bool(vec![true, false, true])),
        ),
        (
            "t.arr_str",
            Value::Array(Array::String(vec!["a".into(), "".into(), "ü".into()])),
        ),
        ("t.arr_u64", Value::Array(Array::U64(vec![u64::MAX]))),
        ("t.arr_i64", Value::Array(Array::I64(vec![i64::MIN, 7]))),
        ("t.arr_f64", Value::Array(Array::F64(vec![1.0e-300]))),
        ("t.arr_empty", Value::Array(Array::U32(vec![]))),
        ("t.arr_empty_str", Value::Array(Array::String(vec![]))),
        (
            "t.arr_nested",
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, 2]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![Array::F32(vec![]), Array::Bool(vec![false])]),
            ])),
        ),
        ("general.architecture", Value::String("llama".into())),
    ]
}

struct T {
    name: &'static str,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

fn tensors() -> Vec<T> {
    let pattern = |n: usize, seed: u8| {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>()
    };
    vec![
        T {
            name: "f32.vec",
            dims: vec![5],
            ty: GgmlType::F32,
            data: pattern(20, 1),
        },
        T {
            name: "q8_0.mat",
            dims: vec![64, 3],
            ty: GgmlType::Q8_0,
            data: pattern(2 * 34 * 3, 2),
        },
        T {
            name: "q4_k.mat",
            dims: vec![256, 2, 1],
            ty: GgmlType::Q4_K,
            data: pattern(144 * 2, 3),
        },
        T {
            name: "f16.4d",
            dims: vec![3, 1, 2, 2],
            ty: GgmlType::F16,
            data: pattern(2 * 12, 4),
        },
        T {
            name: "f32.scalar",
            dims: vec![],
            ty: GgmlType::F32,
            data: pattern(4, 5),
        },
    ]
}

fn build(alignment: Option<u32>, version: u32) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set_version(version);
    for (k, v) in all_values() {
        w.set(k, v);
    }
    if let Some(a) = alignment {
        w.set("general.alignment", Value::U32(a));
    }
    for t in tensors() {
        w.add_tensor(t.name, t.dims, t.ty, t.data).unwrap();
    }
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
}

fn check(f: &GgufFile, alignment: usize, version: u32) {
    assert_eq!(f.version(), version);
    assert_eq!(f.alignment(), alignment);
    let mut expected = all_values();
    if alignment != 32 {
        expected.push(("general.alignment", Value::U32(alignment as u32)));
    }
    assert_eq!(f.metadata().len(), expected.len());
    for ((k, v), (ek, ev)) in f.metadata().iter().zip(&expected) {
        assert_eq!(k, ek);
        assert_eq!(v, ev, "{k}");
        assert_eq!(f.get(k), Some(ev));
    }
    assert_eq!(f.data_offset() % alignment, 0);
    assert_eq!(f.tensors().len(), tensors().len());
    for (info, t) in f.tensors().iter().zip(tensors()) {
        assert_eq!(info.name, t.name);
        assert_eq!(info.dims, t.dims);
        assert_eq!(info.ty, t.ty);
        assert_eq!(info.size, t.data.len());
        assert_eq!(info.offset as usize % alignment, 0, "{} unaligned", t.name);
        assert!(info.offset as usize >= f.data_offset());
        assert_eq!(f.tensor_data(info), &t.data[..]);
        assert_eq!(f.tensor(t.name), Some(info));
        assert_eq!(f.tensor_bytes(t.name), Some(&t.data[..]));
    }
    let q4 = f.tensor("q4_k.mat").unwrap();
    assert_eq!((q4.n_elements(), q4.row_len(), q4.n_rows()), (512, 256, 2));
    let s = f.tensor("f32.scalar").unwrap();
    assert_eq!((s.n_elements(), s.row_len(), s.n_rows()), (1, 1, 1));
    assert!(f.tensor("nope").is_none());
}

#[test]
fn round_trip_every_value_and_tensor_type() {
    let b = build(None, 3);
    let f = GgufFile::from_bytes(b.clone()).unwrap();
    check(&f, 32, 3);
    assert_eq!(f.bytes(), &b[..]);
    // Writing is deterministic.
    assert_eq!(build(None, 3), b);
}

#[test]
fn round_trip_v2_and_custom_alignment() {
    for (align, version) in [(64, 2), (1, 3), (4096, 3)] {
        let f = GgufFile::from_bytes(build(Some(align), version)).unwrap();
        check(&f, align as usize, version);
    }
}

#[test]
fn typed_getters() {
    let f = GgufFile::from_bytes(build(None, 3)).unwrap();
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("t.u8").unwrap(), 200);
    assert_eq!(f.get_u32("t.u16").unwrap(), 60000);
    assert_eq!(f.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(f.get_u64("t.u32").unwrap(), 4_000_000_000);
    assert!(matches!(
        f.get_u32("t.u64"),
        Err(GgufError::KeyRange { .. })
    ));
    assert!(matches!(f.get_u32("t.i8"), Err(GgufError::KeyRange { .. })));
    assert_eq!(f.get_f32("t.f32").unwrap(), 3.25);
    assert_eq!(f.get_f32("t.f64").unwrap(), -1e300f64 as f32);
    assert_eq!(f.get_f32("t.u8").unwrap(), 200.0);
    assert!(f.get_bool("t.bool").unwrap());
    assert!(!f.get_bool("t.bool_false").unwrap());
    assert_eq!(f.get_str("t.str").unwrap(), "héllo ✓");
    assert_eq!(f.get_str("t.empty_str").unwrap(), "");
    assert_eq!(f.get_str_array("t.arr_str").unwrap(), &["a", "", "ü"]);
    assert_eq!(f.get_f32_array("t.arr_f32").unwrap(), vec![0.5, -2.0]);
    assert_eq!(f.get_f32_array("t.arr_i8").unwrap(), vec![-1.0, 2.0]);
    assert_eq!(f.get_i32_array("t.arr_u8").unwrap(), vec![1, 2, 255]);
    assert_eq!(f.get_i32_array("t.arr_i32").unwrap(), vec![-1, 0, 1]);
    assert_eq!(f.get_i32_array("t.arr_empty").unwrap(), Vec::<i32>::new());
    assert!(matches!(
        f.get_i32_array("t.arr_u64"),
        Err(GgufError::KeyRange { .. })
    ));
    assert!(matches!(
        f.get_i32_array("t.arr_str"),
        Err(GgufError::KeyType { .. })
    ));

    assert_eq!(f.get_u32_opt("absent").unwrap(), None);
    assert_eq!(f.get_u32_opt("t.u16").unwrap(), Some(60000));
    assert_eq!(f.get_f32_opt("absent").unwrap(), None);
    assert_eq!(f.get_bool_opt("t.bool").unwrap(), Some(true));
    assert_eq!(f.get_str_opt("t.str").unwrap(), Some("héllo ✓"));
    assert!(matches!(
        f.get_str_opt("t.u8"),
        Err(GgufError::KeyType { .. })
    ));

    let e = f.get_u32("llama.block_count").unwrap_err();
    assert!(matches!(e, GgufError::MissingKey(_)));
    assert_eq!(
        e.to_string(),
        "missing required metadata key llama.block_count"
    );
    let e = f.get_u32("t.str").unwrap_err();
    assert!(matches!(
        e,
        GgufError::KeyType {
            found: "string",
            expected: "u32",
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "metadata key t.str has type string, expected u32"
    );
    assert!(matches!(f.get_str("t.u32"), Err(GgufError::KeyType { .. })));
    assert!(matches!(f.get_bool("t.u8"), Err(GgufError::KeyType { .. })));
    assert!(matches!(
        f.get_u32("t.bool"),
        Err(GgufError::KeyType { .. })
    ));
    assert!(matches!(f.get_f32("t.str"), Err(GgufError::KeyType { .. })));
    let e = f.get_str_array("t.arr_u32").unwrap_err();
    assert_eq!(
        e.to_string(),
        "metadata key t.arr_u32 has type array[u32], expected array[string]"
    );
}

#[test]
fn writer_set_replaces_in_place_and_checks_tensors() {
    let mut w = GgufWriter::new();
    w.set("a", Value::U32(1));
    w.set("b", Value::U32(2));
    w.set("a", Value::String("x".into()));
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    let f = GgufFile::from_bytes(b).unwrap();
    let keys: Vec<_> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(f.get_str("a").unwrap(), "x");

    let e = w
        .add_tensor("t", vec![4], GgmlType::F32, vec![0; 15])
        .unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::TensorDataSize {
                expected: 16,
                got: 15,
                ..
            }
        ),
        "{e}"
    );
    let e = w
        .add_tensor("t", vec![100], GgmlType::Q4_K, vec![])
        .unwrap_err();
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    let e = w
        .add_tensor("t", vec![1; 5], GgmlType::F32, vec![0; 4])
        .unwrap_err();
    assert!(matches!(e, GgufError::TooManyDims { .. }), "{e}");
    w.add_tensor("t", vec![4], GgmlType::F32, vec![0; 16])
        .unwrap();
    let e = w
        .add_tensor("t", vec![4], GgmlType::F32, vec![0; 16])
        .unwrap_err();
    assert!(matches!(e, GgufError::DuplicateTensor(_)), "{e}");

    w.set("general.alignment", Value::U32(3));
    assert!(matches!(
        w.write_to(&mut Vec::new()),
        Err(GgufError::BadAlignment { .. })
    ));
}

#[test]
fn write_file_then_open_with_mmap() {
    let dir = std::env::temp_dir().join(format!("kestrel-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rt.gguf");
    let mut w = GgufWriter::new();
    for (k, v) in all_values() {
        w.set(k, v);
    }
    for t in tensors() {
        w.add_tensor(t.name, t.dims, t.ty, t.data).unwrap();
    }
    w.write_file(&path).unwrap();
    assert!(!dir.join("rt.gguf.tmp").exists());
    let f = GgufFile::open(&path).unwrap();
    check(&f, 32, 3);

    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        GgufFile::open(&empty),
        Err(GgufError::BadMagic { .. })
    ));
    let e = GgufFile::open(dir.join("missing.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Open { .. }));
    assert!(e.to_string().contains("missing.gguf"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn display_for_inspect() {
    let f = GgufFile::from_bytes(build(None, 3)).unwrap();
    let shown: Vec<String> = f
        .metadata()
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    assert!(
        shown.contains(&"t.arr_str = [\"a\", \"\", \"ü\"]".to_string()),
        "{shown:?}"
    );
    assert!(
        shown.contains(&"t.arr_nested = [[1, 2], [\"x\"], [[], [false]]]".to_string()),
        "{shown:?}"
    );
    assert_eq!(f.get("t.arr_nested").unwrap().type_name(), "array[array]");
}

#[test]
fn empty_file_no_tensors() {
    let w = GgufWriter::new();
    let f = GgufFile::from_bytes(common::to_bytes(&w)).unwrap();
    assert_eq!((f.metadata().len(), f.tensors().len()), (0, 0));
}
