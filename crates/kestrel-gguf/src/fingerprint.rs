//! Identities for files and the things in them: FNV-1a (64 bit), and the model fingerprint
//! every collaboration check and saved session compares: FNV-1a over the GGUF header, metadata
//! and tensor directory (every byte before the tensor data), the file size, and the first and
//! middle 4 KiB of every tensor's data. The directory alone would not tell apart two fine-tunes
//! of one base; the sampled data does, while hashing ~1 MiB instead of the whole file keeps it
//! instant. It guards against mistakes, not against an adversary.

use crate::GgufFile;

/// FNV-1a, 64 bit (the published offset basis and prime).
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    pub fn new() -> Fnv1a {
        Fnv1a::default()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    /// The hash of `bytes` alone.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Fnv1a::new();
        h.write(bytes);
        h.finish()
    }
}

/// Bytes of each tensor's data sampled at its start and its middle.
const SAMPLE: usize = 4096;

impl GgufFile {
    /// The model fingerprint (see the module docs).
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv1a::new();
        let bytes = self.bytes();
        h.write(&bytes[..self.data_offset().min(bytes.len())]);
        h.write(&(bytes.len() as u64).to_le_bytes());
        for t in self.tensors() {
            if let Some(d) = self.try_tensor_data(t) {
                h.write(&d[..d.len().min(SAMPLE)]);
                let mid = d.len() / 2;
                h.write(&d[mid..d.len().min(mid + SAMPLE)]);
            }
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Fnv1a;

    #[test]
    fn fnv1a_64_matches_the_published_test_vectors() {
        // From the FNV reference page (isthe.com/chongo/tech/comp/fnv).
        assert_eq!(Fnv1a::of(b""), 0xcbf29ce484222325);
        assert_eq!(Fnv1a::of(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(Fnv1a::of(b"foobar"), 0x85944171f73967e8);
    }
}
