//! A bounds-checked little-endian reader over the file bytes. Every read checks the bytes
//! that remain and, on a short read, reports which part of the file was being read.

use std::fmt;

use crate::error::GgufError;

/// Which part of the header is being read; only formatted when an error occurs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ctx<'a> {
    Header,
    Kv { index: u64, key: Option<&'a str> },
    TensorInfo { index: u64, name: Option<&'a str> },
}

impl fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Ctx::Header => f.write_str("header"),
            Ctx::Kv {
                index,
                key: Some(k),
            } => write!(f, "metadata kv {index} ({k})"),
            Ctx::Kv { index, key: None } => write!(f, "metadata kv {index}"),
            Ctx::TensorInfo {
                index,
                name: Some(n),
            } => write!(f, "tensor info {index} ({n})"),
            Ctx::TensorInfo { index, name: None } => write!(f, "tensor info {index}"),
        }
    }
}

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    pub ctx: Ctx<'a>,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            ctx: Ctx::Header,
        }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// "<ctx> <field>", for error messages.
    pub fn what(&self, field: &str) -> String {
        format!("{} {}", self.ctx, field)
    }

    pub fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: self.what(field),
                needed: n as u64,
                offset: self.pos as u64,
                file_len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], GgufError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self, field: &str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u32(&mut self, field: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub fn u64(&mut self, field: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Fails before any allocation if `count` items of at least `min_size` bytes each
    /// cannot fit in what remains of the file.
    pub fn check_count(
        &self,
        count: u64,
        min_size: usize,
        field: &str,
    ) -> Result<usize, GgufError> {
        let need = count as u128 * min_size as u128;
        if need > self.remaining() as u128 {
            return Err(GgufError::CountTooLarge {
                what: self.what(field),
                count,
                min_bytes: need,
                offset: self.pos as u64,
                remaining: self.remaining() as u64,
            });
        }
        // Fits in the file, so it fits in usize.
        Ok(count as usize)
    }

    /// A GGUF string: u64 length + UTF-8 bytes, borrowed from the file.
    pub fn str(&mut self, field: &str) -> Result<&'a str, GgufError> {
        // Labels are only formatted on the error path: token lists hold ~10^5 strings.
        let len = match self.remaining() >= 8 {
            true => self.u64(field)?,
            false => self.u64(&format!("{field} length"))?,
        };
        let len = match len <= self.remaining() as u64 {
            true => len as usize,
            false => self.check_count(len, 1, &format!("{field} length"))?,
        };
        let start = self.pos;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|e| GgufError::InvalidUtf8 {
            what: self.what(field),
            offset: (start + e.valid_up_to()) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_errors() {
        let mut c = Cursor::new(&[1, 0, 0]);
        assert!(matches!(
            c.u32("x"),
            Err(GgufError::Truncated {
                needed: 4,
                offset: 0,
                file_len: 3,
                ..
            })
        ));
        let mut c = Cursor::new(&[0xff; 8]);
        let e = c.str("key").unwrap_err();
        assert!(matches!(e, GgufError::CountTooLarge { .. }), "{e}");
    }
}
