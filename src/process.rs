//! This process's id without a system call per use. Every pool compares it on each checkout to
//! notice a `fork()` (glibc no longer caches `getpid`, so that was several system calls per
//! write). The cache is cleared in the child of every fork by a `pthread_atfork` handler, which
//! also counts forks for whatever keeps per-process state in memory (the id generator's
//! buffered random bytes).
//!
//! A child made without the C library's `fork()` (a raw `clone` system call, glibc's `_Fork`)
//! would keep the parent's cached id; Python's `os.fork`, `multiprocessing` and gunicorn all use
//! `fork()`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// 0 = not known yet (or forgotten in a child).
static PID: AtomicU32 = AtomicU32::new(0);
static FORKS: AtomicU64 = AtomicU64::new(0);
static WATCHING: AtomicBool = AtomicBool::new(false);

extern "C" fn in_child_after_fork() {
    // Only atomic stores: async-signal-safe, as a handler that runs in a child must be.
    PID.store(0, Ordering::SeqCst);
    FORKS.fetch_add(1, Ordering::SeqCst);
}

fn watch_forks() {
    register_fork_handlers(&WATCHING, None, None, Some(in_child_after_fork));
}

/// A `pthread_atfork` handler the C library calls around every `fork()`.
pub type ForkHandler = Option<unsafe extern "C" fn()>;

/// Register fork handlers once per `registered` flag. Not with a `Once`: a fork while another
/// thread is inside `call_once` would leave the child's copy "running" for ever, and the child's
/// first call would hang. Two threads racing here may both register; every handler of the
/// library is written to be harmless when it runs twice.
pub fn register_fork_handlers(registered: &AtomicBool, prepare: ForkHandler, parent: ForkHandler, child: ForkHandler) {
    if !registered.load(Ordering::Acquire) {
        // SAFETY: plain function pointers with the C signature pthread_atfork expects.
        unsafe { libc::pthread_atfork(prepare, parent, child) };
        registered.store(true, Ordering::Release);
    }
}

/// This process's id (as `std::process::id`), cached until the next fork.
pub fn id() -> u32 {
    watch_forks();
    match PID.load(Ordering::Acquire) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Release);
            pid
        }
        pid => pid,
    }
}

/// How many forks led to this process since the library was loaded: state kept in memory for
/// one process (random bytes not yet used) is stale when this changed.
pub fn fork_count() -> u64 {
    watch_forks();
    FORKS.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cached_id_follows_a_fork() {
        let parent = super::id();
        assert_eq!(parent, std::process::id());
        let forks = super::fork_count();
        // SAFETY: the child only calls async-signal-safe functions and atomics before _exit.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            let ok = super::id() == unsafe { libc::getpid() } as u32 && super::fork_count() > forks;
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child saw a stale id");
        assert_eq!(super::id(), parent);
    }
}
