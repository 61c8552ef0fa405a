//! The model fingerprint both sides compare when a session opens: 64-bit FNV-1a over the GGUF
//! header, metadata and tensor directory (every byte before the tensor data), the file size,
//! and the first and middle 4 KiB of every tensor's data. The directory alone would not tell
//! apart two fine-tunes of one base; the sampled data does, while hashing ~1 MiB instead of the
//! whole file keeps it instant. It guards against mistakes, not against an adversary.

use kestrel_gguf::GgufFile;

const SAMPLE: usize = 4096;

pub fn fingerprint(g: &GgufFile) -> u64 {
    let mut h = Fnv::new();
    let bytes = g.bytes();
    h.write(&bytes[..g.data_offset().min(bytes.len())]);
    h.write(&(bytes.len() as u64).to_le_bytes());
    for t in g.tensors() {
        if let Some(d) = g.try_tensor_data(t) {
            h.write(&d[..d.len().min(SAMPLE)]);
            let mid = d.len() / 2;
            h.write(&d[mid..d.len().min(mid + SAMPLE)]);
        }
    }
    h.0
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Fnv;

    #[test]
    fn fnv1a_64_matches_the_published_test_vectors() {
        // From the FNV reference page (isthe.com/chongo/tech/comp/fnv).
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63dc4c8601ec8c);
        let mut h = Fnv::new();
        h.write(b"foobar");
        assert_eq!(h.0, 0x85944171f73967e8);
    }
}
