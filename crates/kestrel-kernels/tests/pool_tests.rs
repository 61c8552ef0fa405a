use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kestrel_kernels::ThreadPool;

#[test]
fn each_index_once_per_run() {
    for n in 1..=4 {
        let pool = ThreadPool::new(n);
        assert_eq!(pool.n_threads(), n);
        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        for run in 1..=2000 {
            pool.run(&|t, nt| {
                assert_eq!(nt, n);
                hits[t].fetch_add(1, Ordering::Relaxed);
            });
            for h in &hits {
                assert_eq!(h.load(Ordering::Relaxed), run);
            }
        }
    }
}

#[test]
fn runs_see_caller_writes_and_publish_theirs() {
    let pool = ThreadPool::new(3);
    let mut v = vec![0u64; 3];
    for i in 0..500u64 {
        let cells: Vec<AtomicUsize> = v.iter().map(|&x| AtomicUsize::new(x as usize)).collect();
        pool.run(&|t, _| {
            cells[t].fetch_add(i as usize, Ordering::Relaxed);
        });
        v = cells
            .iter()
            .map(|c| c.load(Ordering::Relaxed) as u64)
            .collect();
    }
    assert!(v.iter().all(|&x| x == (0..500).sum::<u64>()));
}

#[test]
fn nested_sequential_and_other_pool() {
    let outer = ThreadPool::new(2);
    let count = AtomicUsize::new(0);
    outer.run(&|_, _| {
        // a different pool inside a run
        let inner = ThreadPool::new(2);
        for _ in 0..10 {
            inner.run(&|_, _| {
                count.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(count.load(Ordering::Relaxed), 2 * 10 * 2);
    // back-to-back runs after sleeping workers have parked
    std::thread::sleep(std::time::Duration::from_millis(20));
    outer.run(&|_, _| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(count.load(Ordering::Relaxed), 42);
}

#[test]
fn shared_between_threads() {
    let pool = Arc::new(ThreadPool::new(2));
    let total = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..3)
        .map(|_| {
            let (p, t) = (pool.clone(), total.clone());
            std::thread::spawn(move || {
                for _ in 0..200 {
                    p.run(&|_, _| {
                        t.fetch_add(1, Ordering::Relaxed);
                    });
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(total.load(Ordering::Relaxed), 3 * 200 * 2);
}

#[test]
fn panics_propagate_and_pool_survives() {
    let pool = ThreadPool::new(3);
    for bad in 0..3 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(&|t, _| {
                if t == bad {
                    panic!("boom {t}");
                }
            })
        }));
        let msg = r.unwrap_err();
        assert_eq!(
            msg.downcast_ref::<String>().map(|s| s.as_str()),
            Some(format!("boom {bad}").as_str())
        );
    }
    let c = AtomicUsize::new(0);
    pool.run(&|_, _| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(c.load(Ordering::Relaxed), 3);
}

#[test]
fn drop_joins_workers() {
    struct Flag(Arc<AtomicUsize>);
    for _ in 0..50 {
        let pool = ThreadPool::new(4);
        let f = Flag(Arc::new(AtomicUsize::new(0)));
        pool.run(&|_, _| {
            f.0.fetch_add(1, Ordering::Relaxed);
        });
        drop(pool);
        assert_eq!(f.0.load(Ordering::Relaxed), 4);
        assert_eq!(Arc::strong_count(&f.0), 1);
    }
}

#[test]
fn pool_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<ThreadPool>();
}
