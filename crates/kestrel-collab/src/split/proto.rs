//! The split protocol: one binary message per HTTP request body and one per response body,
//! POSTed to [`ROUTE`]. Every message starts with the magic `KSPL`, the protocol version
//! (u16) and a kind byte; integers are little-endian. See docs/split.md for the layout.

use crate::error::{CollabError, Result};
use crate::split::wire::WireFormat;

pub const ROUTE: &str = "/split/v1";
pub const MAGIC: &[u8; 4] = b"KSPL";
/// 2: f16 rows carry a power-of-two scale.
pub const VERSION: u16 = 2;

/// Why the server refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    VersionMismatch,
    Malformed,
    ModelMismatch,
    /// Never opened, closed, or expired after idling.
    UnknownSession,
    /// The step's position is not where the session's cache ends.
    OutOfOrder,
    /// Every session slot is taken.
    Busy,
    /// The forward pass refused (context full, bad split layer ...).
    Compute,
}

impl ErrorCode {
    fn code(self) -> u16 {
        self as u16 + 1
    }

    fn from_code(c: u16) -> ErrorCode {
        match c {
            1 => ErrorCode::VersionMismatch,
            2 => ErrorCode::Malformed,
            3 => ErrorCode::ModelMismatch,
            4 => ErrorCode::UnknownSession,
            5 => ErrorCode::OutOfOrder,
            6 => ErrorCode::Busy,
            _ => ErrorCode::Compute,
        }
    }

    /// The HTTP status the server answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::UnknownSession => 404,
            ErrorCode::OutOfOrder | ErrorCode::ModelMismatch => 409,
            ErrorCode::Busy => 503,
            ErrorCode::Compute => 422,
            ErrorCode::VersionMismatch | ErrorCode::Malformed => 400,
        }
    }
}

/// What the server sends back for a step that asks for logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    /// The whole row of logits, f32.
    Full,
    /// The k largest logits with their token ids.
    TopK(u32),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Open {
        fingerprint: u64,
        /// The first layer the server runs.
        k: u16,
        wire: WireFormat,
        reply: ReplyMode,
        n_ctx: u32,
        /// The device's micro-batch size: each step carries at most this many rows, and the
        /// server runs each step as one micro-batch, as the unsplit model would.
        n_batch: u32,
    },
    Step {
        session: u64,
        /// The position of the first row (the tokens the session holds already).
        pos: u32,
        rows: u32,
        want_logits: bool,
        /// Encoded rows in the session's wire format.
        payload: Vec<u8>,
    },
    Close {
        session: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Opened {
        session: u64,
        n_layer: u16,
        n_embd: u32,
        n_vocab: u32,
    },
    /// A step that asked for no logits was applied.
    Ack,
    /// The logits of the step's last row.
    Logits(Vec<f32>),
    /// (token, logit) pairs, largest first.
    TopK(Vec<(u32, f32)>),
    Closed,
    Error {
        code: ErrorCode,
        message: String,
    },
}

const K_OPEN: u8 = 1;
const K_STEP: u8 = 2;
const K_CLOSE: u8 = 3;
const K_OPENED: u8 = 0x81;
const K_ACK: u8 = 0x82;
const K_LOGITS: u8 = 0x83;
const K_TOPK: u8 = 0x84;
const K_CLOSED: u8 = 0x85;
const K_ERROR: u8 = 0xff;

/// Bytes before the payload of a step (what the planner adds per request).
pub const STEP_HEADER_BYTES: usize = 7 + 8 + 4 + 4 + 1;

fn header(out: &mut Vec<u8>, kind: u8) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(kind);
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        match self {
            Request::Open {
                fingerprint,
                k,
                wire,
                reply,
                n_ctx,
                n_batch,
            } => {
                header(&mut o, K_OPEN);
                o.extend_from_slice(&fingerprint.to_le_bytes());
                o.extend_from_slice(&k.to_le_bytes());
                o.push(wire.code());
                let topk = match reply {
                    ReplyMode::Full => 0u32,
                    ReplyMode::TopK(n) => *n,
                };
                o.extend_from_slice(&topk.to_le_bytes());
                o.extend_from_slice(&n_ctx.to_le_bytes());
                o.extend_from_slice(&n_batch.to_le_bytes());
            }
            Request::Step {
                session,
                pos,
                rows,
                want_logits,
                payload,
            } => {
                o.reserve(STEP_HEADER_BYTES + payload.len());
                header(&mut o, K_STEP);
                o.extend_from_slice(&session.to_le_bytes());
                o.extend_from_slice(&pos.to_le_bytes());
                o.extend_from_slice(&rows.to_le_bytes());
                o.push(*want_logits as u8);
                o.extend_from_slice(payload);
            }
            Request::Close { session } => {
                header(&mut o, K_CLOSE);
                o.extend_from_slice(&session.to_le_bytes());
            }
        }
        o
    }

    pub fn decode(b: &[u8]) -> Result<Request> {
        let mut r = Reader::new(b)?;
        let req = match r.kind {
            K_OPEN => {
                let fingerprint = r.u64()?;
                let k = r.u16()?;
                let wire = WireFormat::from_code(r.u8()?)?;
                let reply = match r.u32()? {
                    0 => ReplyMode::Full,
                    n => ReplyMode::TopK(n),
                };
                Request::Open {
                    fingerprint,
                    k,
                    wire,
                    reply,
                    n_ctx: r.u32()?,
                    n_batch: r.u32()?,
                }
            }
            K_STEP => Request::Step {
                session: r.u64()?,
                pos: r.u32()?,
                rows: r.u32()?,
                want_logits: r.u8()? != 0,
                payload: r.rest().to_vec(),
            },
            K_CLOSE => Request::Close { session: r.u64()? },
            k => return Err(CollabError::Malformed(format!("unknown request kind {k}"))),
        };
        r.end()?;
        Ok(req)
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        match self {
            Reply::Opened {
                session,
                n_layer,
                n_embd,
                n_vocab,
            } => {
                header(&mut o, K_OPENED);
                o.extend_from_slice(&session.to_le_bytes());
                o.extend_from_slice(&n_layer.to_le_bytes());
                o.extend_from_slice(&n_embd.to_le_bytes());
                o.extend_from_slice(&n_vocab.to_le_bytes());
            }
            Reply::Ack => header(&mut o, K_ACK),
            Reply::Logits(l) => {
                o.reserve(11 + 4 * l.len());
                header(&mut o, K_LOGITS);
                o.extend_from_slice(&(l.len() as u32).to_le_bytes());
                l.iter().for_each(|v| o.extend_from_slice(&v.to_le_bytes()));
            }
            Reply::TopK(t) => {
                header(&mut o, K_TOPK);
                o.extend_from_slice(&(t.len() as u32).to_le_bytes());
                for (id, v) in t {
                    o.extend_from_slice(&id.to_le_bytes());
                    o.extend_from_slice(&v.to_le_bytes());
                }
            }
            Reply::Closed => header(&mut o, K_CLOSED),
            Reply::Error { code, message } => {
                header(&mut o, K_ERROR);
                o.extend_from_slice(&code.code().to_le_bytes());
                o.extend_from_slice(&(message.len() as u32).to_le_bytes());
                o.extend_from_slice(message.as_bytes());
            }
        }
        o
    }

    pub fn decode(b: &[u8]) -> Result<Reply> {
        let mut r = Reader::new(b)?;
        let rep = match r.kind {
            K_OPENED => Reply::Opened {
                session: r.u64()?,
                n_layer: r.u16()?,
                n_embd: r.u32()?,
                n_vocab: r.u32()?,
            },
            K_ACK => Reply::Ack,
            K_LOGITS => {
                let n = r.u32()? as usize;
                let b = r.take(n.checked_mul(4).ok_or_else(too_long)?)?;
                Reply::Logits(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
            K_TOPK => {
                let n = r.u32()? as usize;
                let b = r.take(n.checked_mul(8).ok_or_else(too_long)?)?;
                Reply::TopK(
                    b.chunks_exact(8)
                        .map(|c| {
                            let id = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                            (id, f32::from_le_bytes([c[4], c[5], c[6], c[7]]))
                        })
                        .collect(),
                )
            }
            K_CLOSED => Reply::Closed,
            K_ERROR => {
                let code = ErrorCode::from_code(r.u16()?);
                let n = r.u32()? as usize;
                let message = String::from_utf8_lossy(r.take(n)?).into_owned();
                Reply::Error { code, message }
            }
            k => return Err(CollabError::Malformed(format!("unknown reply kind {k}"))),
        };
        r.end()?;
        Ok(rep)
    }
}

fn too_long() -> CollabError {
    CollabError::Malformed("length overflows".into())
}

/// Reads the common header, then fields, never past the end.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    kind: u8,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Result<Reader<'a>> {
        if b.len() < 7 || &b[..4] != MAGIC {
            return Err(CollabError::Malformed(
                "not a split message (no KSPL magic)".into(),
            ));
        }
        let v = u16::from_le_bytes([b[4], b[5]]);
        if v != VERSION {
            return Err(CollabError::Version {
                got: v,
                want: VERSION,
            });
        }
        Ok(Reader {
            b,
            at: 7,
            kind: b[6],
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| CollabError::Malformed("message truncated".into()))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.at..];
        self.at = self.b.len();
        s
    }
    fn end(&self) -> Result<()> {
        if self.at != self.b.len() {
            return Err(CollabError::Malformed(format!(
                "{} trailing bytes",
                self.b.len() - self.at
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let reqs = [
            Request::Open {
                fingerprint: 0x0123_4567_89ab_cdef,
                k: 7,
                wire: WireFormat::Q8,
                reply: ReplyMode::TopK(40),
                n_ctx: 4096,
                n_batch: 512,
            },
            Request::Step {
                session: 42,
                pos: 17,
                rows: 1,
                want_logits: true,
                payload: vec![1, 2, 3],
            },
            Request::Close { session: 9 },
        ];
        for r in reqs {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
        let reps = [
            Reply::Opened {
                session: 1,
                n_layer: 30,
                n_embd: 576,
                n_vocab: 49152,
            },
            Reply::Ack,
            Reply::Logits(vec![0.5, -1.0, f32::MIN]),
            Reply::TopK(vec![(3, 2.0), (1, 1.0)]),
            Reply::Closed,
            Reply::Error {
                code: ErrorCode::ModelMismatch,
                message: "different model".into(),
            },
        ];
        for r in reps {
            assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn bad_messages_are_errors() {
        let mut m = Request::Close { session: 1 }.encode();
        m[4..6].copy_from_slice(&1u16.to_le_bytes()); // version 1: unscaled f16 rows
        assert!(matches!(
            Request::decode(&m),
            Err(CollabError::Version { got: 1, want: 2 })
        ));
        let m = Request::Close { session: 1 }.encode();
        assert!(Request::decode(&m[..m.len() - 1]).is_err());
        assert!(Request::decode(b"GET / HTTP/1.1").is_err());
        let mut m = Reply::Logits(vec![1.0; 4]).encode();
        m[7] = 200; // claims 200 values, has 4
        assert!(Reply::decode(&m).is_err());
    }
}
