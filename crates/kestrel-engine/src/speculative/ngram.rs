//! Prompt lookup: find the latest earlier occurrence of the sequence's last n tokens (longest n
//! first) and propose the tokens that followed it. Costs no model pass; pays off on text that
//! repeats its context (summaries, code edits, quoting).

use super::{Draft, DraftCtx, Drafter};
use crate::Result;

pub struct NgramDrafter {
    /// Longest and shortest suffix lengths tried.
    max_n: usize,
    min_n: usize,
}

impl NgramDrafter {
    pub fn new(max_n: usize, min_n: usize) -> NgramDrafter {
        let min_n = min_n.max(1);
        NgramDrafter {
            max_n: max_n.max(min_n),
            min_n,
        }
    }
}

impl Default for NgramDrafter {
    fn default() -> Self {
        NgramDrafter::new(3, 1)
    }
}

impl Drafter for NgramDrafter {
    fn name(&self) -> &'static str {
        "ngram"
    }

    fn draft(
        &mut self,
        history: &[u32],
        max: usize,
        _cx: &mut DraftCtx,
        out: &mut Draft,
    ) -> Result<()> {
        out.clear();
        let h = history.len();
        for n in (self.min_n..=self.max_n).rev() {
            if n >= h {
                continue;
            }
            let key = &history[h - n..];
            // Latest match first: recent context predicts best.
            let found = (0..h - n).rev().find(|&i| &history[i..i + n] == key);
            if let Some(i) = found {
                let from = i + n;
                let take = max.min(h - from);
                out.tokens.extend_from_slice(&history[from..from + take]);
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_kernels::ThreadPool;

    #[test]
    fn proposes_what_followed_the_latest_match() {
        let pool = ThreadPool::new(1);
        let mut cx = DraftCtx { pool: &pool };
        let mut d = NgramDrafter::default();
        let mut out = Draft::default();
        // The suffix "2 3" occurs twice before; the later one is followed by 9 8 5 2.
        d.draft(&[1, 2, 3, 4, 1, 2, 3, 9, 8, 5, 2, 3], 4, &mut cx, &mut out)
            .unwrap();
        assert_eq!(out.tokens, vec![9, 8, 5, 2]);
        d.draft(&[5, 6, 7], 4, &mut cx, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
