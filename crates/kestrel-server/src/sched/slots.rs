//! The slots: one KV cache each, with the tokens it holds so a later prompt that starts the same
//! way (a shared system prompt, an earlier turn of the conversation) reuses them, and the
//! `session_id` that owns it, if any.

use kestrel_engine::{common_prefix, Sequence};

pub(crate) struct Slot {
    /// The cache; only its exact tokens are reused (`Sequence::reusable`), so a cached prefix
    /// never changes an answer.
    pub seq: Sequence,
    /// The conversation this cache belongs to.
    pub owner: Option<String>,
    /// Step counter at last use, for least-recently-used eviction.
    pub last_used: u64,
    pub busy: bool,
}

/// The free slot for a prompt: the one its session owns if free; else a slot no session owns
/// (a conversation's cache is evicted only when there is no other choice), with the longest
/// reusable prefix, then the least recently used.
pub(crate) fn choose(slots: &[Slot], prompt: &[u32], session: Option<&str>) -> Option<usize> {
    if let Some(id) = session {
        if let Some(i) = slots
            .iter()
            .position(|s| !s.busy && s.owner.as_deref() == Some(id))
        {
            return Some(i);
        }
    }
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.busy)
        .max_by_key(|(_, s)| {
            (
                s.owner.is_none(),
                common_prefix(&s.seq.tokens[..s.seq.exact()], prompt),
                std::cmp::Reverse(s.last_used),
            )
        })
        .map(|(i, _)| i)
}

/// A free slot to restore a saved session into: the one it owns, else least valuable.
pub(crate) fn choose_for_restore(slots: &[Slot], id: &str) -> Option<usize> {
    if let Some(i) = slots
        .iter()
        .position(|s| !s.busy && s.owner.as_deref() == Some(id))
    {
        return Some(i);
    }
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.busy)
        .min_by_key(|(_, s)| (s.owner.is_some(), s.last_used))
        .map(|(i, _)| i)
}
