//! File types: what `--type` names, as llama.cpp's `llama_ftype` (the number stored in
//! `general.file_type`) and the base tensor type each implies.

use crate::{CompressError, Result};
use kestrel_gguf::GgmlType;

/// A whole-file quantization recipe. `*_S/M/L` are llama.cpp's mixes of k-quant types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Ftype {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

impl Ftype {
    pub const ALL: [Ftype; 17] = [
        Ftype::F32,
        Ftype::F16,
        Ftype::BF16,
        Ftype::Q8_0,
        Ftype::Q4_0,
        Ftype::Q4_1,
        Ftype::Q5_0,
        Ftype::Q5_1,
        Ftype::Q2_K,
        Ftype::Q3_K_S,
        Ftype::Q3_K_M,
        Ftype::Q3_K_L,
        Ftype::Q4_K_S,
        Ftype::Q4_K_M,
        Ftype::Q5_K_S,
        Ftype::Q5_K_M,
        Ftype::Q6_K,
    ];

    pub fn name(self) -> &'static str {
        use Ftype::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            Q8_0 => "Q8_0",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q2_K => "Q2_K",
            Q3_K_S => "Q3_K_S",
            Q3_K_M => "Q3_K_M",
            Q3_K_L => "Q3_K_L",
            Q4_K_S => "Q4_K_S",
            Q4_K_M => "Q4_K_M",
            Q5_K_S => "Q5_K_S",
            Q5_K_M => "Q5_K_M",
            Q6_K => "Q6_K",
        }
    }

    /// Parses a name, case-insensitively. `Q3_K`, `Q4_K`, `Q5_K` mean the `_M` mixes, as in
    /// llama-quantize.
    pub fn parse(s: &str) -> Result<Ftype> {
        let alias = match s.to_ascii_uppercase().as_str() {
            "Q3_K" => Some(Ftype::Q3_K_M),
            "Q4_K" => Some(Ftype::Q4_K_M),
            "Q5_K" => Some(Ftype::Q5_K_M),
            _ => None,
        };
        alias
            .or_else(|| {
                Ftype::ALL
                    .iter()
                    .copied()
                    .find(|f| f.name().eq_ignore_ascii_case(s))
            })
            .ok_or_else(|| CompressError::UnknownType {
                name: s.to_string(),
                known: Ftype::ALL
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
                    + " (Q3_K, Q4_K, Q5_K = the _M mixes)",
            })
    }

    /// The `llama_ftype` number stored in `general.file_type`.
    pub fn id(self) -> u32 {
        use Ftype::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q8_0 => 7,
            Q5_0 => 8,
            Q5_1 => 9,
            Q2_K => 10,
            Q3_K_S => 11,
            Q3_K_M => 12,
            Q3_K_L => 13,
            Q4_K_S => 14,
            Q4_K_M => 15,
            Q5_K_S => 16,
            Q5_K_M => 17,
            Q6_K => 18,
            BF16 => 32,
        }
    }

    /// The tensor type most weights get.
    pub fn base_type(self) -> GgmlType {
        use Ftype::*;
        match self {
            F32 => GgmlType::F32,
            F16 => GgmlType::F16,
            BF16 => GgmlType::BF16,
            Q8_0 => GgmlType::Q8_0,
            Q4_0 => GgmlType::Q4_0,
            Q4_1 => GgmlType::Q4_1,
            Q5_0 => GgmlType::Q5_0,
            Q5_1 => GgmlType::Q5_1,
            Q2_K => GgmlType::Q2_K,
            Q3_K_S | Q3_K_M | Q3_K_L => GgmlType::Q3_K,
            Q4_K_S | Q4_K_M => GgmlType::Q4_K,
            Q5_K_S | Q5_K_M => GgmlType::Q5_K,
            Q6_K => GgmlType::Q6_K,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Ftype::F32 | Ftype::F16 | Ftype::BF16)
    }
}

impl std::fmt::Display for Ftype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases() {
        for f in Ftype::ALL {
            assert_eq!(Ftype::parse(f.name()).unwrap(), f);
        }
        assert_eq!(Ftype::parse("q4_k").unwrap(), Ftype::Q4_K_M);
        let e = Ftype::parse("Q7_0").unwrap_err().to_string();
        assert!(
            e.contains("unknown type 'Q7_0'") && e.contains("Q4_K_M"),
            "{e}"
        );
    }
}
