//! Typed metadata getters. Integer getters accept any integer type whose value fits,
//! because GGUF writers disagree on u32 vs i32 vs u64 for the same key.

use crate::error::GgufError;
use crate::file::GgufFile;
use crate::value::{Array, Value};

impl GgufFile {
    fn req(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.req(key)?.to_int(key, "u32")
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.req(key)?.to_int(key, "u64")
    }

    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.req(key)?.to_int(key, "i64")
    }

    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        self.req(key)?.to_int(key, "usize")
    }

    /// Accepts F32, F64 and integers.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.req(key)?.to_f32(key)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.req(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(v.type_err(key, "bool")),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.req(key)? {
            Value::String(s) => Ok(s),
            v => Err(v.type_err(key, "string")),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        match self.req(key)? {
            Value::Array(a) => Ok(a),
            v => Err(v.type_err(key, "array")),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.req(key)? {
            Value::Array(Array::String(v)) => Ok(v),
            v => Err(v.type_err(key, "array[string]")),
        }
    }

    /// Accepts f32, f64 and integer arrays.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        match self.req(key)? {
            Value::Array(Array::F32(v)) => Ok(v.clone()),
            Value::Array(Array::F64(v)) => Ok(v.iter().map(|&x| x as f32).collect()),
            v @ Value::Array(a) => match a.to_i128_vec() {
                Some(ints) => Ok(ints.into_iter().map(|i| i as f32).collect()),
                None => Err(v.type_err(key, "array[f32]")),
            },
            v => Err(v.type_err(key, "array[f32]")),
        }
    }

    /// From any integer array whose elements all fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let v = self.req(key)?;
        let ints = match v {
            Value::Array(Array::I32(v)) => return Ok(v.clone()),
            Value::Array(a) => a.to_i128_vec(),
            _ => None,
        };
        let ints = ints.ok_or_else(|| v.type_err(key, "array[i32]"))?;
        ints.into_iter()
            .enumerate()
            .map(|(i, x)| {
                i32::try_from(x).map_err(|_| GgufError::KeyRange {
                    key: key.to_string(),
                    value: format!("{x} (element {i})"),
                    expected: "i32",
                })
            })
            .collect()
    }

    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }
}

/// `*_opt` getters: `Ok(None)` when the key is absent, `Err` when present with a wrong type.
macro_rules! opt_getters {
    ($($opt:ident => $get:ident -> $t:ty;)*) => {
        impl GgufFile {
            $(
                pub fn $opt(&self, key: &str) -> Result<Option<$t>, GgufError> {
                    match self.get(key) {
                        None => Ok(None),
                        Some(_) => self.$get(key).map(Some),
                    }
                }
            )*
        }
    };
}

opt_getters! {
    get_u32_opt => get_u32 -> u32;
    get_u64_opt => get_u64 -> u64;
    get_usize_opt => get_usize -> usize;
    get_f32_opt => get_f32 -> f32;
    get_bool_opt => get_bool -> bool;
    get_str_opt => get_str -> &str;
    get_str_array_opt => get_str_array -> &[String];
    get_f32_array_opt => get_f32_array -> Vec<f32>;
    get_i32_array_opt => get_i32_array -> Vec<i32>;
}
