//! Corrupt inputs, built by mutating a valid written file: each must be a clear Err, never a panic.

mod common;

use common::*;
use kestrel_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, Value};

fn open(b: Vec<u8>) -> GgufError {
    match GgufFile::from_bytes(b) {
        Ok(_) => panic!("corrupt file opened successfully"),
        Err(e) => e,
    }
}

#[test]
fn the_base_file_is_valid() {
    let f = GgufFile::from_bytes(small_file()).unwrap();
    assert_eq!(f.tensors().len(), 2);
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 2);
}

#[test]
fn empty_file() {
    let e = open(vec![]);
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn bad_magic() {
    let mut b = small_file();
    b[..4].copy_from_slice(b"GGUG");
    let e = open(b);
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        r#"bad magic: expected "GGUF" (47 47 55 46), found 47 47 55 47 ("GGUG")"#
    );
}

#[test]
fn unsupported_versions() {
    for v in [0, 1, 4, 99, 0x0300_0000] {
        let mut b = small_file();
        put_u32(&mut b, 4, v);
        let e = open(b);
        assert!(
            matches!(e, GgufError::UnsupportedVersion { version } if version == v),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("unsupported GGUF version {v}")),
            "{e}"
        );
    }
}

#[test]
fn truncation_at_every_offset() {
    let b = small_file();
    let f = GgufFile::from_bytes(b.clone()).unwrap();
    // Past the last tensor's data only padding remains, so those prefixes are still valid.
    let data_end = f
        .tensors()
        .iter()
        .map(|t| t.offset as usize + t.size)
        .max()
        .unwrap();
    for n in 0..b.len() {
        let r = GgufFile::from_bytes(b[..n].to_vec());
        if n < data_end {
            let e = r
                .err()
                .unwrap_or_else(|| panic!("prefix of {n} bytes opened"));
            assert!(
                matches!(
                    e,
                    GgufError::BadMagic { .. }
                        | GgufError::Truncated { .. }
                        | GgufError::CountTooLarge { .. }
                        | GgufError::TensorOutOfBounds { .. }
                ),
                "prefix {n}: {e}"
            );
            if let GgufError::Truncated { file_len, .. } = e {
                assert_eq!(file_len, n as u64);
            }
            // A whole header over missing data says how big the file must be.
            if let GgufError::TensorOutOfBounds {
                file_len, needed, ..
            } = e
            {
                assert_eq!((file_len, needed), (n as u64, data_end as u128));
                let want =
                    format!("truncated or incomplete: {n} bytes, at least {data_end} needed");
                assert!(e.to_string().ends_with(&want), "prefix {n}: {e}");
            }
        } else {
            assert!(r.is_ok(), "prefix {n} of {} should be valid", b.len());
        }
    }
}

#[test]
fn truncation_message_names_the_tensor() {
    let b = small_file();
    let (n_dims_at, ..) = tensor_fields(&b, "blk.1.w", 2);
    let e = open(b[..n_dims_at + 2].to_vec());
    assert_eq!(
        e.to_string(),
        format!(
            "truncated file: reading tensor info 1 (blk.1.w) n_dims needs 4 bytes at offset {n_dims_at}, file is {} bytes",
            n_dims_at + 2
        )
    );
}

#[test]
fn huge_counts() {
    for (at, what) in [(8, "tensor count"), (16, "metadata kv count")] {
        for v in [1u64 << 40, u64::MAX] {
            let mut b = small_file();
            put_u64(&mut b, at, v);
            let e = open(b);
            assert!(
                matches!(e, GgufError::CountTooLarge { count, .. } if count == v),
                "{e}"
            );
            assert!(e.to_string().contains(what), "{e}");
        }
    }
}

#[test]
fn huge_string_length() {
    // The first kv's key length sits right after the 24-byte header.
    let mut b = small_file();
    assert_eq!(get_u64(&b, 24), "general.architecture".len() as u64);
    put_u64(&mut b, 24, 1 << 60);
    let e = open(b);
    assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("key length"), "{e}");

    // A string value's length.
    let mut b = small_file();
    let at = after_str(&b, "general.architecture") + 4;
    assert_eq!(get_u64(&b, at), 5);
    put_u64(&mut b, at, u64::MAX);
    let e = open(b);
    assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("general.architecture"), "{e}");
}

#[test]
fn huge_array_count() {
    let mut b = small_file();
    let at = after_str(&b, "x.str_arr") + 8; // value type, element type
    assert_eq!(get_u64(&b, at), 2);
    put_u64(&mut b, at, 1 << 50);
    let e = open(b);
    assert!(
        matches!(e, GgufError::CountTooLarge { count, .. } if count == 1 << 50),
        "{e}"
    );
    assert!(e.to_string().contains("x.str_arr"), "{e}");
}

#[test]
fn too_many_dims() {
    let mut b = small_file();
    let (n_dims_at, ..) = tensor_fields(&b, "blk.0.w", 2);
    put_u32(&mut b, n_dims_at, 5);
    let e = open(b);
    assert!(matches!(e, GgufError::TooManyDims { n_dims: 5, .. }), "{e}");
    assert!(e.to_string().contains("blk.0.w"), "{e}");
}

#[test]
fn unknown_tensor_type() {
    let mut b = small_file();
    let (_, _, ty_at, _) = tensor_fields(&b, "blk.1.w", 2);
    put_u32(&mut b, ty_at, 99);
    let e = open(b);
    assert!(
        matches!(e, GgufError::UnknownTensorType { id: 99, .. }),
        "{e}"
    );
    assert_eq!(e.to_string(), "tensor blk.1.w: unknown tensor type id 99");
}

#[test]
fn tensor_offset_past_end() {
    for off in [1u64 << 20, 1 << 40, u64::MAX - 31] {
        let mut b = small_file();
        let (.., off_at) = tensor_fields(&b, "blk.1.w", 2);
        put_u64(&mut b, off_at, off);
        let e = open(b);
        assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
        assert!(e.to_string().starts_with("tensor blk.1.w: data ["), "{e}");
    }
}

#[test]
fn misaligned_tensor_offset() {
    let mut b = small_file();
    let (.., off_at) = tensor_fields(&b, "blk.0.w", 2);
    assert_eq!(get_u64(&b, off_at), 0);
    put_u64(&mut b, off_at, 1);
    let e = open(b);
    assert!(
        matches!(
            e,
            GgufError::MisalignedTensor {
                offset: 1,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bad_alignment_values() {
    for bad in [0u32, 3, 48] {
        let mut b = small_file();
        let at = after_str(&b, "general.alignment") + 4;
        put_u32(&mut b, at, bad);
        let e = open(b);
        assert!(matches!(e, GgufError::BadAlignment { .. }), "{bad}: {e}");
    }
    // A non-integer alignment.
    let mut w = small_writer();
    w.set("general.alignment", Value::String("32".into()));
    let mut b = Vec::new();
    assert!(w.write_to(&mut b).is_err());
}

#[test]
fn duplicate_tensor_name() {
    let mut b = small_file();
    let p = after_str(&b, "blk.1.w");
    b[p - 3] = b'0'; // "blk.1.w" -> "blk.0.w"
    let e = open(b);
    assert!(
        matches!(&e, GgufError::DuplicateTensor(n) if n == "blk.0.w"),
        "{e}"
    );
}

#[test]
fn duplicate_key() {
    let mut w = GgufWriter::new();
    w.set("k.aa", Value::U32(1));
    w.set("k.bb", Value::U32(2));
    let mut b = to_bytes(&w);
    let r = after_str(&b, "k.bb");
    b[r - 2..r].copy_from_slice(b"aa");
    let e = open(b);
    assert!(
        matches!(&e, GgufError::DuplicateKey(k) if k == "k.aa"),
        "{e}"
    );
}

#[test]
fn row_length_not_a_multiple_of_block_size() {
    let mut b = small_file();
    let (_, dim0_at, ..) = tensor_fields(&b, "blk.1.w", 2);
    assert_eq!(get_u64(&b, dim0_at), 32);
    put_u64(&mut b, dim0_at, 33);
    let e = open(b);
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    assert!(
        e.to_string().contains("blk.1.w") && e.to_string().contains("not a multiple"),
        "{e}"
    );
}

#[test]
fn shape_overflow() {
    let mut b = small_file();
    let (_, dim0_at, ..) = tensor_fields(&b, "blk.0.w", 2);
    put_u64(&mut b, dim0_at, 1 << 62);
    put_u64(&mut b, dim0_at + 8, 1 << 62);
    let e = open(b);
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
}

#[test]
fn bad_value_bytes() {
    // Bool byte 2.
    let mut b = small_file();
    let at = after_str(&b, "x.flag") + 4;
    assert_eq!(b[at], 1);
    b[at] = 2;
    let e = open(b);
    assert!(matches!(e, GgufError::BadBool { byte: 2, .. }), "{e}");

    // Unknown value type id.
    let mut b = small_file();
    let at = after_str(&b, "x.f32");
    put_u32(&mut b, at, 13);
    let e = open(b);
    assert!(
        matches!(e, GgufError::UnknownValueType { id: 13, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("x.f32"), "{e}");

    // Invalid UTF-8 in a key and in a string value.
    let mut b = small_file();
    let at = after_str(&b, "x.f32");
    b[at - 1] = 0xff;
    assert!(matches!(open(b), GgufError::InvalidUtf8 { .. }));
    let mut b = small_file();
    let at = after_str(&b, "general.architecture") + 4 + 8;
    b[at] = 0xc3; // a lead byte followed by ASCII
    let e = open(b);
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e}");
    assert!(e.to_string().contains("general.architecture"), "{e}");
}

#[test]
fn missing_and_wrong_type_keys() {
    let f = GgufFile::from_bytes(small_file()).unwrap();
    assert!(matches!(
        f.get_u32("llama.context_length"),
        Err(GgufError::MissingKey(_))
    ));
    assert!(matches!(
        f.get_u32("general.architecture"),
        Err(GgufError::KeyType { .. })
    ));
    assert!(matches!(
        f.get_str("llama.block_count"),
        Err(GgufError::KeyType { .. })
    ));
}

#[test]
fn written_tensor_types_survive_mutation_of_data_only() {
    // Flipping bytes inside tensor data is not a format error.
    let mut b = small_file();
    let f = GgufFile::from_bytes(b.clone()).unwrap();
    let t = f.tensor("blk.1.w").unwrap().clone();
    b[t.offset as usize] ^= 0xff;
    let g = GgufFile::from_bytes(b).unwrap();
    assert_eq!(g.tensor("blk.1.w").unwrap().ty, GgmlType::Q8_0);
    assert_ne!(g.tensor_data(&t), f.tensor_data(&t));
}

/// Tiny deterministic PRNG so the fuzz loop needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let base = small_file();
    let header_len = GgufFile::from_bytes(base.clone()).unwrap().data_offset();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2000 {
        let mut b = base.clone();
        let flips = 1 + rng.next() % 4;
        for _ in 0..flips {
            // Mostly the header, where the structure is; sometimes anywhere.
            let span = if rng.next() & 3 == 0 {
                b.len()
            } else {
                header_len
            };
            let at = (rng.next() % span as u64) as usize;
            b[at] = match rng.next() % 3 {
                0 => b[at] ^ (1 << (rng.next() % 8)),
                1 => 0xff,
                _ => rng.next() as u8,
            };
        }
        if rng.next() & 7 == 0 {
            let keep = (rng.next() % b.len() as u64) as usize;
            b.truncate(keep);
        }
        match GgufFile::from_bytes(b) {
            Ok(f) => {
                ok += 1;
                // Whatever opened must be fully usable without panics.
                for t in f.tensors() {
                    let _ = f.tensor_data(t).len();
                    let _ = (t.n_elements(), t.row_len(), t.n_rows());
                }
                for (k, v) in f.metadata() {
                    let _ = format!("{k} = {v}");
                    let _ = f.get_u32(k);
                    let _ = f.get_f32_array(k);
                    let _ = f.get_i32_array(k);
                }
            }
            Err(e) => {
                err += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(
        err > 1000,
        "most random corruptions should be caught ({ok} ok, {err} err)"
    );
}
