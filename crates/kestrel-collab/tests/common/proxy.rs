//! A user-space TCP proxy that delays every chunk of bytes by a fixed time each way (the
//! stand-in for `tc netem`, which this kernel lacks) and can be told to stall: stop
//! forwarding while keeping the connections open, as a hung server would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub struct Proxy {
    pub addr: SocketAddr,
    pub stall: Arc<AtomicBool>,
}

impl Proxy {
    /// Listen on `bind` and forward to `target`, adding `delay` in each direction.
    pub fn start(bind: &str, target: SocketAddr, delay: Duration) -> std::io::Result<Proxy> {
        let l = TcpListener::bind(bind)?;
        let addr = l.local_addr()?;
        let stall = Arc::new(AtomicBool::new(false));
        let st = stall.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let Ok(s) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = c.set_nodelay(true);
                let _ = s.set_nodelay(true);
                let (c2, s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
                pipe(c, s2, delay, st.clone());
                pipe(s, c2, delay, st.clone());
            }
        });
        Ok(Proxy { addr, stall })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Copy `from` to `to`, each chunk released `delay` after it was read. A reader thread
/// timestamps chunks and a writer thread sleeps until each one is due, so a burst is delayed
/// once, not once per chunk (a link's latency, not a per-packet cost).
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration, stall: Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            while stall.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if to.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
