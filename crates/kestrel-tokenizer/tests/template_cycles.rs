//! A chat template whose namespace holds itself (`{% set ns.me = ns %}`, found by the
//! chat-template fuzz target as a LeakSanitizer report) makes a reference cycle minijinja never
//! frees; rendered a thousand times it must not keep memory (the renderer breaks the cycles
//! after each render). Live heap bytes are counted by this test binary's allocator.

use kestrel_tokenizer::{ChatMessage, ChatTemplate};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn a_namespace_that_holds_itself_is_freed() {
    let src = "{% set ns = namespace(n=0, text='x' * 1000) %}{% set ns.me = ns %}\
               {% set other = namespace(back=ns) %}{% set ns.other = other %}\
               {% for m in messages %}{{ m.content }}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}";
    let t = ChatTemplate::from_source(src, "<s>", "</s>").unwrap();
    let msgs = [ChatMessage::new("user", "hello")];
    // In this process (as built-in templates and non-Unix systems render).
    assert_eq!(t.render_here(&msgs, true).unwrap(), "hello1");
    let before = LIVE.load(Relaxed);
    for _ in 0..1000 {
        t.render_here(&msgs, true).unwrap();
    }
    let grown = LIVE.load(Relaxed) - before;
    // Leaked, the two namespaces and the 1000-byte string would be over 1 MB.
    assert!(grown < 64 * 1024, "{grown} bytes kept after 1000 renders");
}
