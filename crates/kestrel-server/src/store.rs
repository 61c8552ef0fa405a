//! Saved conversations: a slot's tokens and KV cache in one file under `--session-dir`.
//!
//! Layout (little-endian): magic `KSTRLKV1`, format version u32, model fingerprint u64 (`GgufFile::fingerprint`),
//! n_layer, n_head_kv, head_dim, head_dim_v, n_tokens (u32 each), the tokens (u32 each), then
//! per layer the keys and the values of positions `0..n_tokens` for each KV head (f16 bits),
//! and last an FNV-1a 64 checksum of everything before it (against damage, not an
//! authenticator). A file from another model (other
//! fingerprint) or a damaged one (bad checksum, wrong sizes) is refused, never half-loaded.
//! Files stay inside `--session-dir`: ids are a safe alphabet, a session file that is a
//! symbolic link is refused, one larger than this model's cache could ever need is refused
//! before it is read, and saving writes a new temporary file (never through a link) and
//! renames it.

use crate::error::ServerError;
use half::f16;
use kestrel_engine::Sequence;
use kestrel_gguf::fingerprint::Fnv1a;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"KSTRLKV1";
/// 2: the model fingerprint became `GgufFile::fingerprint` (every tensor sampled).
const VERSION: u32 = 2;

/// The file for a session id (ids are checked to a safe alphabet before they get here).
pub fn path_for(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.kvsession"))
}

fn err(path: &Path, reason: impl Into<String>) -> ServerError {
    ServerError::SessionFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Write the first `n` tokens of the slot's sequence; returns the file size. Written to a temporary name and renamed,
/// so a crash never leaves a truncated file under the real name.
pub fn save(path: &Path, fingerprint: u64, seq: &Sequence, n: usize) -> Result<u64, ServerError> {
    let kv = &seq.session.kv;
    let n = n.min(seq.tokens.len()).min(seq.session.n_past());
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    for d in [kv.k.len(), kv.n_head_kv, kv.head_dim, kv.head_dim_v, n] {
        out.extend_from_slice(&(d as u32).to_le_bytes());
    }
    for t in &seq.tokens[..n] {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for layer in 0..kv.k.len() {
        for h in 0..kv.n_head_kv {
            for x in kv.k_range(layer, h, 0, n) {
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
        }
        for h in 0..kv.n_head_kv {
            for x in kv.v_range(layer, h, 0, n) {
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
        }
    }
    let sum = Fnv1a::of(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    let tmp = path.with_extension("kvsession.tmp");
    // A stale temporary file (or a link planted under its name) goes first; `create_new`
    // then makes a fresh file and never writes through a link.
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(&out)
    };
    write().map_err(|e| err(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, e.to_string()))?;
    Ok(out.len() as u64)
}

/// The largest file a session of this cache's shape can be: the header, `n_ctx - 1` tokens
/// with their keys and values, the checksum.
fn max_size(kv: &kestrel_model::kv::KvCache) -> u64 {
    let per_token = 4 + kv.k.len() * kv.n_head_kv * (kv.head_dim + kv.head_dim_v) * 2;
    (MAGIC.len() + 4 + 8 + 20 + 8) as u64 + (kv.n_ctx.saturating_sub(1) * per_token) as u64
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Read a saved sequence into `seq` (whose cache must have the model's shape); returns the
/// file size. On error `seq` may hold part of the data: the caller resets it.
pub fn load(path: &Path, fingerprint: u64, seq: &mut Sequence) -> Result<u64, ServerError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| err(path, e.to_string()))?;
    if meta.file_type().is_symlink() {
        return Err(err(path, "a symbolic link, not a session file (refused)"));
    }
    let limit = max_size(&seq.session.kv);
    if meta.len() > limit {
        return Err(err(
            path,
            format!(
                "{} bytes, more than a session of this model and context can hold ({limit})",
                meta.len()
            ),
        ));
    }
    let b = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
    if b.len() < MAGIC.len() + 4 + 8 + 20 + 8 || &b[..8] != MAGIC {
        return Err(err(path, "not a kestrel session file"));
    }
    let (body, tail) = b.split_at(b.len() - 8);
    let want = u64::from_le_bytes(tail.try_into().expect("8 bytes"));
    if Fnv1a::of(body) != want {
        return Err(err(path, "checksum mismatch: the file is damaged"));
    }
    let mut r = Reader { b: body, at: 8 };
    let bad = || err(path, "truncated or malformed file");
    let version = r.u32().ok_or_else(bad)?;
    if version != VERSION {
        return Err(err(
            path,
            format!("format version {version}, this build reads {VERSION}"),
        ));
    }
    if r.u64().ok_or_else(bad)? != fingerprint {
        return Err(err(
            path,
            "saved from a different model than the one this server runs",
        ));
    }
    let kv = &mut seq.session.kv;
    let dims: Vec<usize> = (0..5)
        .map(|_| r.u32().map(|x| x as usize))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if dims[..4] != [kv.k.len(), kv.n_head_kv, kv.head_dim, kv.head_dim_v] {
        return Err(err(path, "KV cache shape differs from this model's"));
    }
    let n = dims[4];
    if n >= kv.n_ctx {
        return Err(err(
            path,
            format!(
                "{n} saved tokens do not fit this server's context of {}",
                kv.n_ctx
            ),
        ));
    }
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        tokens.push(r.u32().ok_or_else(bad)?);
    }
    let n_ctx = kv.n_ctx;
    for layer in 0..kv.k.len() {
        for (buf, dim) in [
            (&mut kv.k[layer], kv.head_dim),
            (&mut kv.v[layer], kv.head_dim_v),
        ] {
            for h in 0..kv.n_head_kv {
                let src = r.take(n * dim * 2).ok_or_else(bad)?;
                let dst = &mut buf[h * n_ctx * dim..h * n_ctx * dim + n * dim];
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = f16::from_bits(u16::from_le_bytes([s[0], s[1]]));
                }
            }
        }
    }
    if r.at != body.len() {
        return Err(bad());
    }
    seq.session.assume_filled(n)?;
    seq.tokens = tokens;
    Ok(b.len() as u64)
}
