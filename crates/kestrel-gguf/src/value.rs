//! Metadata values: the GGUF value types, their on-disk ids, and display/conversion helpers.

use std::fmt;

use crate::error::GgufError;

/// On-disk metadata value type ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    /// Encoded size of one value, or `None` for variable-size types (string, array).
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The fewest bytes one value of this type can take on disk; bounds counts before allocating.
    pub fn min_size(self) -> usize {
        match self {
            ValueType::String => 8,    // u64 length
            ValueType::Array => 4 + 8, // elem type + count
            t => t.fixed_size().unwrap_or(1),
        }
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
    Array(Vec<Array>),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Type name for error messages: "u32", "string", "array[f32]", ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Array(a) => a.type_name(),
            v => v.value_type().name(),
        }
    }

    /// The value as a wide integer, if it is of an integer type (bool is not an integer).
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Integer conversion that accepts any integer type whose value fits in `T`.
    pub(crate) fn to_int<T: TryFrom<i128>>(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<T, GgufError> {
        let i = self.as_i128().ok_or_else(|| self.type_err(key, expected))?;
        T::try_from(i).map_err(|_| GgufError::KeyRange {
            key: key.to_string(),
            value: i.to_string(),
            expected,
        })
    }

    pub(crate) fn to_f32(&self, key: &str) -> Result<f32, GgufError> {
        match *self {
            Value::F32(v) => Ok(v),
            Value::F64(v) => Ok(v as f32),
            _ => self
                .as_i128()
                .map(|i| i as f32)
                .ok_or_else(|| self.type_err(key, "f32")),
        }
    }

    pub(crate) fn type_err(&self, key: &str, expected: &'static str) -> GgufError {
        GgufError::KeyType {
            key: key.to_string(),
            found: self.type_name(),
            expected,
        }
    }
}

impl Array {
    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
            Array::Array(_) => ValueType::Array,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn type_name(&self) -> &'static str {
        match self.elem_type() {
            ValueType::U8 => "array[u8]",
            ValueType::I8 => "array[i8]",
            ValueType::U16 => "array[u16]",
            ValueType::I16 => "array[i16]",
            ValueType::U32 => "array[u32]",
            ValueType::I32 => "array[i32]",
            ValueType::F32 => "array[f32]",
            ValueType::Bool => "array[bool]",
            ValueType::String => "array[string]",
            ValueType::U64 => "array[u64]",
            ValueType::I64 => "array[i64]",
            ValueType::F64 => "array[f64]",
            ValueType::Array => "array[array]",
        }
    }

    /// Elements as wide integers, if this is an integer array.
    pub fn to_i128_vec(&self) -> Option<Vec<i128>> {
        fn w<T: Copy + Into<i128>>(v: &[T]) -> Vec<i128> {
            v.iter().map(|&x| x.into()).collect()
        }
        Some(match self {
            Array::U8(v) => w(v),
            Array::I8(v) => w(v),
            Array::U16(v) => w(v),
            Array::I16(v) => w(v),
            Array::U32(v) => w(v),
            Array::I32(v) => w(v),
            Array::U64(v) => w(v),
            Array::I64(v) => w(v),
            _ => return None,
        })
    }
}

/// Arrays longer than this are shown as their first elements plus a count.
const SHOW_ELEMS: usize = 8;

fn fmt_list<T>(
    f: &mut fmt::Formatter<'_>,
    v: &[T],
    one: impl Fn(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    f.write_str("[")?;
    for (i, x) in v.iter().take(SHOW_ELEMS).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        one(f, x)?;
    }
    if v.len() > SHOW_ELEMS {
        write!(f, ", ... ({} total)", v.len())?;
    }
    f.write_str("]")
}

fn fmt_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    // Long strings (chat templates) are cut so `inspect` output stays readable.
    const MAX: usize = 120;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        write!(f, "\"{}\"... ({} bytes)", cut.escape_debug(), s.len())
    } else {
        write!(f, "\"{}\"", s.escape_debug())
    }
}

impl fmt::Display for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn d<T: fmt::Display>(f: &mut fmt::Formatter<'_>, x: &T) -> fmt::Result {
            write!(f, "{x}")
        }
        match self {
            Array::U8(v) => fmt_list(f, v, d),
            Array::I8(v) => fmt_list(f, v, d),
            Array::U16(v) => fmt_list(f, v, d),
            Array::I16(v) => fmt_list(f, v, d),
            Array::U32(v) => fmt_list(f, v, d),
            Array::I32(v) => fmt_list(f, v, d),
            Array::F32(v) => fmt_list(f, v, d),
            Array::Bool(v) => fmt_list(f, v, d),
            Array::String(v) => fmt_list(f, v, |f, s| fmt_str(f, s)),
            Array::U64(v) => fmt_list(f, v, d),
            Array::I64(v) => fmt_list(f, v, d),
            Array::F64(v) => fmt_list(f, v, d),
            Array::Array(v) => fmt_list(f, v, d),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => fmt_str(f, s),
            Value::Array(a) => write!(f, "{a}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_abbreviates() {
        let a = Value::Array(Array::U32((0..100).collect()));
        assert_eq!(a.to_string(), "[0, 1, 2, 3, 4, 5, 6, 7, ... (100 total)]");
        let s = Value::Array(Array::String(vec!["a\"b".into(), "".into()]));
        assert_eq!(s.to_string(), r#"["a\"b", ""]"#);
        assert_eq!(
            Value::Array(Array::Array(vec![Array::I8(vec![-1])])).to_string(),
            "[[-1]]"
        );
    }

    #[test]
    fn int_conversions() {
        assert_eq!(Value::I32(5).to_int::<u32>("k", "u32").unwrap(), 5);
        assert!(matches!(
            Value::I32(-1).to_int::<u32>("k", "u32"),
            Err(GgufError::KeyRange { .. })
        ));
        assert!(matches!(
            Value::Bool(true).to_int::<u32>("k", "u32"),
            Err(GgufError::KeyType { .. })
        ));
        for id in 0..13 {
            assert_eq!(ValueType::from_id(id).unwrap().id(), id);
        }
        assert_eq!(ValueType::from_id(13), None);
    }
}
