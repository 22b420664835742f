//! Waiting for another process's lock on a file: SQLite's busy handler, with shorter sleeps.
//!
//! Writers of one process queue on a mutex before they reach SQLite (see `pool`); only another
//! process's lock makes SQLite call its busy handler. SQLite's own (`sqlite3_busy_timeout`) sleeps
//! 1, 2, 5, 10, 15, 20, 25 ... ms between tries: a lock held for the half millisecond a commit
//! takes here cost the waiter 1 to 8 ms, and two gunicorn workers writing the same files met it on
//! about one Set Action in four (bench/route.py, 16 clients). This one sleeps 50 µs, doubling to
//! 1 ms, and gives up after the same `busy_timeout_ms`.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::Result;

/// The first sleep, and the longest.
const FIRST_SLEEP: Duration = Duration::from_micros(50);
const LONGEST_SLEEP: Duration = Duration::from_millis(1);

thread_local! {
    /// When the current wait began (SQLite calls the handler on the waiting thread, with a count
    /// that starts at 0 for each wait).
    static WAITING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Wait up to `timeout` for another process's lock on this connection's file.
pub fn set_timeout(conn: &Connection, timeout: Duration) -> Result<()> {
    // The timeout travels as the handler's argument, in ms (validated to at most 600 000).
    let ms = usize::try_from(timeout.as_millis()).unwrap_or(usize::MAX);
    // SAFETY: the handle is this open connection's; the callback is a plain function that keeps
    // no pointer, and its argument is a number, not an address.
    let rc = unsafe { rusqlite::ffi::sqlite3_busy_handler(conn.handle(), Some(wait), ms as *mut c_void) };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(crate::error::Error::new(crate::error::ErrorKind::Database, format!("cannot set the busy handler (SQLite error {rc})")));
    }
    Ok(())
}

/// The sleep before try `count` + 1: 50 µs, doubling, at most 1 ms.
fn sleep_for(count: c_int) -> Duration {
    let doublings = u32::try_from(count).unwrap_or(0).min(5);
    (FIRST_SLEEP * 2u32.pow(doublings)).min(LONGEST_SLEEP)
}

extern "C" fn wait(timeout_ms: *mut c_void, count: c_int) -> c_int {
    let timeout = Duration::from_millis(timeout_ms as usize as u64);
    let now = Instant::now();
    let since = WAITING_SINCE
        .try_with(|since| {
            if count == 0 || since.get().is_none() {
                since.set(Some(now));
            }
            since.get().unwrap_or(now)
        })
        .unwrap_or(now);
    let waited = now.saturating_duration_since(since);
    if waited >= timeout {
        return 0; // SQLITE_BUSY goes to the caller
    }
    std::thread::sleep(sleep_for(count).min(timeout - waited));
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_grow_to_a_millisecond() {
        let sleeps: Vec<u128> = (0..8).map(|n| sleep_for(n).as_micros()).collect();
        assert_eq!(sleeps, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn a_lock_held_past_the_timeout_is_busy_after_the_timeout() {
        let dir = std::env::temp_dir().join(format!("tms-busy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(x); BEGIN IMMEDIATE").unwrap();
        let waiter = Connection::open(&path).unwrap();
        for ms in [0u64, 150] {
            set_timeout(&waiter, Duration::from_millis(ms)).unwrap();
            let started = Instant::now();
            let err = waiter.execute_batch("BEGIN IMMEDIATE").unwrap_err();
            let waited = started.elapsed();
            assert_eq!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy), "{err}");
            assert!(waited >= Duration::from_millis(ms) && waited < Duration::from_millis(ms + 500), "{ms} ms: {waited:?}");
        }
        // Freed while waiting: the waiter gets it.
        set_timeout(&waiter, Duration::from_secs(5)).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            holder.execute_batch("COMMIT").unwrap();
        });
        waiter.execute_batch("BEGIN IMMEDIATE; COMMIT").unwrap();
        release.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
