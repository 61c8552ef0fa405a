//! A persistent thread pool for the kernels.
//!
//! `n_threads - 1` worker threads are created once; the thread calling [`ThreadPool::run`]
//! takes part as thread 0. A run is published by storing the job and bumping a generation
//! counter; workers spin briefly on that counter (so back-to-back runs, as in a forward pass,
//! start with no syscall) and then park. Completion is a countdown of the workers still busy;
//! the caller spins on it, then parks until the last worker unparks it. Nothing is allocated per
//! run (the caller's `Thread` handle is a reference-counted clone).
//!
//! Panics: a panic in `f` on any thread is caught, `run` still waits for every thread to
//! finish, then resumes unwinding on the calling thread with the first payload (thread 0's if it
//! panicked). The pool stays usable afterwards.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long a waiting thread spins before it parks, unless told otherwise.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

type Job = *const (dyn Fn(usize, usize) + Sync + 'static);

struct Shared {
    n_threads: usize,
    spin: Duration,
    /// Bumped (Release) once per run, after `job` and `caller` are written.
    generation: AtomicU64,
    shutdown: AtomicBool,
    /// Workers that have not finished the current run.
    remaining: AtomicUsize,
    /// The current job and the thread to wake when it is done. Written only by `run` (serialized
    /// by `run_lock`) while no worker is between seeing the new generation and decrementing
    /// `remaining`; read only by workers in that window.
    job: UnsafeCell<Option<Job>>,
    caller: UnsafeCell<Option<Thread>>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: the UnsafeCells are accessed under the publication protocol described on the fields
// (writes happen-before the Release bump of `generation`, reads happen after the Acquire load
// that observes it and before the AcqRel decrement of `remaining` that `run` waits on). The job
// pointer is to a `Sync` closure.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<(Thread, JoinHandle<()>)>,
    run_lock: Mutex<()>,
}

/// Spin up to `spin`, then park, until `done()`.
#[inline]
fn wait_until(spin: Duration, done: impl Fn() -> bool) {
    let mut start: Option<Instant> = None;
    let mut i = 0u32;
    loop {
        if done() {
            return;
        }
        i = i.wrapping_add(1);
        if i % 64 == 0 {
            let s = *start.get_or_insert_with(Instant::now);
            if s.elapsed() >= spin {
                break;
            }
        }
        std::hint::spin_loop();
    }
    while !done() {
        thread::park();
    }
}

impl ThreadPool {
    /// A pool of `n_threads` threads in all (the caller of `run` counts as one), spinning
    /// [`DEFAULT_SPIN`] before parking. `n_threads == 0` is treated as 1.
    pub fn new(n_threads: usize) -> ThreadPool {
        ThreadPool::with_spin(n_threads, DEFAULT_SPIN)
    }

    /// As [`ThreadPool::new`] with a chosen spin time before parking.
    pub fn with_spin(n_threads: usize, spin: Duration) -> ThreadPool {
        let n = n_threads.max(1);
        let shared = Arc::new(Shared {
            n_threads: n,
            spin,
            generation: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            remaining: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            caller: UnsafeCell::new(None),
            panic: Mutex::new(None),
        });
        let workers = (1..n)
            .map(|idx| {
                let sh = Arc::clone(&shared);
                let h = thread::Builder::new()
                    .name(format!("kestrel-{idx}"))
                    .spawn(move || worker(sh, idx))
                    .expect("failed to spawn a thread-pool worker");
                (h.thread().clone(), h)
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            run_lock: Mutex::new(()),
        }
    }

    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Calls `f(thread_index, n_threads)` once on every thread of the pool (index 0 on the
    /// calling thread) and returns when all calls have returned. A panic in any call is
    /// propagated to the caller after all threads are done (see the module docs).
    ///
    /// Runs from several threads at once are serialized. `f` must not call `run` on the same
    /// pool (that deadlocks); running a different pool inside `f` is fine.
    pub fn run(&self, f: &(dyn Fn(usize, usize) + Sync)) {
        let sh = &*self.shared;
        let n = sh.n_threads;
        if n == 1 {
            f(0, 1);
            return;
        }
        let _guard = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: only the lifetime is erased; the pointer is used by workers only until they
        // decrement `remaining`, and we wait for that to reach zero before returning (also when
        // `f` panics on this thread), so `f` outlives every use.
        let job: Job = unsafe {
            std::mem::transmute::<*const (dyn Fn(usize, usize) + Sync + '_), Job>(f as *const _)
        };
        // SAFETY: no worker is inside a run (the previous run waited for all of them), so none
        // reads these cells now; the Release bump below publishes the writes.
        unsafe {
            *sh.job.get() = Some(job);
            *sh.caller.get() = Some(thread::current());
        }
        sh.remaining.store(n - 1, Ordering::Relaxed);
        sh.generation.fetch_add(1, Ordering::Release);
        for (t, _) in &self.workers {
            t.unpark(); // cheap (no syscall) unless that worker is parked
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0, n)));
        wait_until(sh.spin, || sh.remaining.load(Ordering::Acquire) == 0);
        let theirs = sh.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = theirs {
            resume_unwind(p);
        }
    }
}

fn worker(sh: Arc<Shared>, idx: usize) {
    let mut seen = 0u64;
    loop {
        wait_until(sh.spin, || sh.generation.load(Ordering::Acquire) != seen);
        seen = sh.generation.load(Ordering::Acquire);
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: see `Shared::job`: written before the generation bump we observed (Acquire),
        // not rewritten until we decrement `remaining` below.
        let (job, caller) = unsafe {
            (
                (*sh.job.get()).expect("job published"),
                (*sh.caller.get()).clone(),
            )
        };
        // SAFETY: `run` keeps the closure alive until `remaining` reaches zero.
        let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(idx, sh.n_threads) }));
        if let Err(p) = r {
            let mut slot = sh.panic.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(p);
            }
        }
        if sh.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(c) = caller {
                c.unpark();
            }
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.generation.fetch_add(1, Ordering::Release);
        for (t, h) in self.workers.drain(..) {
            t.unpark();
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.shared.n_threads)
            .finish()
    }
}
