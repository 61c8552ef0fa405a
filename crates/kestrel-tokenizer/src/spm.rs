//! SentencePiece-style tokenizer (tokenizer.ggml.model = "llama") as llama.cpp's
//! llm_tokenizer_spm does it: start from UTF-8 characters, repeatedly merge the adjacent pair
//! whose concatenation is a vocab token with the highest score (leftmost on ties), then emit
//! tokens, falling back to `<0xXX>` byte tokens for pieces that are not in the vocab.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    // max-heap: higher score first, then the smaller left index
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| o.left.cmp(&self.left))
    }
}

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

/// Tokenize already-escaped text (spaces replaced by U+2581) and append ids to `out`.
pub(crate) fn tokenize(
    text: &str,
    vocab: &HashMap<String, u32>,
    scores: &[f32],
    byte_tokens: &[Option<u32>; 256],
    unk: Option<u32>,
    out: &mut Vec<u32>,
) {
    let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let n = syms.len() as isize;
        syms.push(Sym {
            start: i,
            len: c.len_utf8(),
            prev: n - 1,
            next: n + 1,
        });
    }
    if let Some(l) = syms.last_mut() {
        l.next = -1;
    }
    let mut heap = BinaryHeap::new();
    let try_add = |l: isize, r: isize, syms: &[Sym], heap: &mut BinaryHeap<Bigram>| {
        if l < 0 || r < 0 {
            return;
        }
        let (ls, rs) = (syms[l as usize], syms[r as usize]);
        let piece = &text[ls.start..ls.start + ls.len + rs.len];
        if let Some(&id) = vocab.get(piece) {
            let score = scores.get(id as usize).copied().unwrap_or(0.0);
            heap.push(Bigram {
                score,
                left: l as usize,
                right: r as usize,
                size: piece.len(),
            });
        }
    };
    for i in 1..syms.len() {
        try_add(i as isize - 1, i as isize, &syms, &mut heap);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (b.left, b.right);
        if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != b.size {
            continue;
        }
        syms[l].len += syms[r].len;
        syms[r].len = 0;
        let rn = syms[r].next;
        syms[l].next = rn;
        if rn >= 0 {
            syms[rn as usize].prev = l as isize;
        }
        let lp = syms[l].prev;
        try_add(lp, l as isize, &syms, &mut heap);
        try_add(l as isize, rn, &syms, &mut heap);
    }
    let mut i: isize = if syms.is_empty() { -1 } else { 0 };
    while i >= 0 {
        let s = syms[i as usize];
        let piece = &text[s.start..s.start + s.len];
        match vocab.get(piece) {
            Some(&id) => out.push(id),
            None => {
                for b in piece.bytes() {
                    if let Some(id) = byte_tokens[b as usize].or(unk) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_score_and_byte_fallback() {
        let toks = [
            "▁", "h", "i", "hi", "▁hi", "<0xF0>", "<0x9F>", "<0x99>", "<0x82>",
        ];
        let scores = [0.0, 0.0, 0.0, -1.0, -0.5, 0.0, 0.0, 0.0, 0.0];
        let vocab: HashMap<String, u32> = toks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let mut bt = [None; 256];
        for (b, id) in [(0xF0usize, 5u32), (0x9F, 6), (0x99, 7), (0x82, 8)] {
            bt[b] = Some(id);
        }
        let mut out = vec![];
        tokenize("▁hi🙂", &vocab, &scores, &bt, None, &mut out);
        assert_eq!(out, vec![4, 5, 6, 7, 8]);
    }
}
