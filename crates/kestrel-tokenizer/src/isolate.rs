//! A model file's chat template runs in a child process (on Unix): minijinja bounds a render's
//! instructions, depth and output (`chat.rs`), but not the stack a self-referencing value takes
//! to print (`{% set ns.me = ns %}{{ ns }}` recursed until the stack overflowed, found by the
//! chat-template fuzz target) nor the memory a string doubled in a loop takes. A forked child
//! renders with the template and messages it already has, under a CPU-time alarm and an
//! address-space limit, and writes the prompt (or the error) back through a pipe; whatever
//! kills it is the request's error, and the server goes on. A fork costs about a millisecond
//! (the page tables are copied; the pages are shared until written).

/// Seconds of CPU a render may take.
const CPU_SECONDS: u32 = 5;
/// Address space a render may add to what the process had mapped.
const EXTRA_MEMORY: u64 = 1 << 30;

/// `f` in a child process; its result, or why the child died.
#[cfg(unix)]
pub fn run(f: impl FnOnce() -> Result<String, String>) -> Result<String, String> {
    let mapped = mapped_bytes();
    let mut fds = [0i32; 2];
    // SAFETY: a plain pipe(2) into a two-int array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!(
            "rendering the chat template: pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: the child only renders (allocating through glibc, whose malloc is fork-safe),
    // writes to its pipe and leaves with _exit, running no destructors or atexit handlers.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        close(rd);
        close(wr);
        return Err(format!("rendering the chat template: fork: {e}"));
    }
    if pid == 0 {
        close(rd);
        limit(mapped);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err("the chat template renderer panicked".into()));
        let (tag, body) = match &r {
            Ok(s) => (b'O', s.as_bytes()),
            Err(e) => (b'E', e.as_bytes()),
        };
        let ok = write_all(wr, &[tag]) && write_all(wr, body);
        // SAFETY: ends the child at once, as fork's child must.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) }
    }
    close(wr);
    let out = read_all(rd);
    close(rd);
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    if libc::WIFSIGNALED(status) {
        let why = match libc::WTERMSIG(status) {
            libc::SIGALRM | libc::SIGXCPU => format!("ran past {CPU_SECONDS} s of CPU"),
            libc::SIGSEGV | libc::SIGBUS => "overflowed its stack or memory".into(),
            libc::SIGABRT => "ran out of stack or memory".into(),
            s => format!("was killed by signal {s}"),
        };
        return Err(format!(
            "the chat template's render {why} (a template that recurses or explodes?)"
        ));
    }
    match out.split_first() {
        Some((b'O', text)) => Ok(String::from_utf8_lossy(text).into_owned()),
        Some((b'E', e)) => Err(String::from_utf8_lossy(e).into_owned()),
        _ => Err("the chat template's render ended without an answer".into()),
    }
}

/// Elsewhere the template renders in this process (its instruction, depth and output bounds
/// still hold).
#[cfg(not(unix))]
pub fn run(f: impl FnOnce() -> Result<String, String>) -> Result<String, String> {
    f()
}

#[cfg(unix)]
fn mapped_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("VmSize:"))?.to_string();
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(unix)]
fn limit(mapped: u64) {
    // SAFETY: alarm and setrlimit on this (child) process only.
    unsafe {
        libc::alarm(CPU_SECONDS);
        if mapped > 0 {
            let lim = libc::rlimit {
                rlim_cur: (mapped + EXTRA_MEMORY) as libc::rlim_t,
                rlim_max: (mapped + EXTRA_MEMORY) as libc::rlim_t,
            };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
        }
    }
}

#[cfg(unix)]
fn close(fd: i32) {
    // SAFETY: closes a descriptor this module opened.
    unsafe { libc::close(fd) };
}

#[cfg(unix)]
fn write_all(fd: i32, mut b: &[u8]) -> bool {
    while !b.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        b = &b[n as usize..];
    }
    true
}

#[cfg(unix)]
fn read_all(fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        // SAFETY: reads into a live buffer of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}
