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

/// The wait the current thread is in. SQLite calls the handler on the waiting thread with a
/// count that it sets to 0 when a statement is prepared or starts, and increments per call; a
/// second lock wanted within one statement (after a first wait succeeded) continues the count.
#[derive(Debug, Clone, Copy, Default)]
struct Waiting {
    /// The count of the last call on this thread, if any.
    last_count: Option<c_int>,
    /// Time slept in this wait (or this statement's waits, as SQLite's own handler counts).
    /// Only the time spent in the handler counts, never the work between two waits: a count
    /// carried over from a wait long ago must not make a new one give up at once.
    slept: Duration,
}

impl Waiting {
    /// How long to sleep before try `count` + 1, or None to give up (SQLITE_BUSY).
    fn next(&mut self, count: c_int, timeout: Duration) -> Option<Duration> {
        // A new wait: the count starts again, or does not follow this thread's last call (a
        // count left over on another connection than the one waited on last).
        let follows = self.last_count.is_some_and(|last| count == last.wrapping_add(1));
        if count == 0 || !follows {
            self.slept = Duration::ZERO;
        }
        self.last_count = Some(count);
        if self.slept >= timeout {
            self.last_count = None; // SQLite calls no more until the count is reset
            return None;
        }
        Some(sleep_for(count).min(timeout - self.slept))
    }
}

thread_local! {
    static WAITING: Cell<Waiting> = const { Cell::new(Waiting { last_count: None, slept: Duration::ZERO }) };
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
    let mut waiting = WAITING.try_with(Cell::get).unwrap_or_default();
    let Some(sleep) = waiting.next(count, timeout) else {
        let _ = WAITING.try_with(|w| w.set(waiting));
        return 0; // SQLITE_BUSY goes to the caller
    };
    // Measured, not assumed: a loaded machine oversleeps, and the timeout is of real time.
    let started = Instant::now();
    std::thread::sleep(sleep);
    waiting.slept += started.elapsed();
    let _ = WAITING.try_with(|w| w.set(waiting));
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

    /// A wait that sleeps exactly what it is told (a fake clock: no real time involved).
    fn sleeps_until_busy(waiting: &mut Waiting, first_count: c_int, timeout: Duration) -> Vec<Duration> {
        let mut sleeps = Vec::new();
        let mut count = first_count;
        while let Some(sleep) = waiting.next(count, timeout) {
            sleeps.push(sleep);
            waiting.slept += sleep;
            count += 1;
            assert!(sleeps.len() < 10_000, "never gave up");
        }
        sleeps
    }

    #[test]
    fn a_wait_sleeps_the_timeout_then_gives_up() {
        let timeout = Duration::from_millis(20);
        let mut waiting = Waiting::default();
        let sleeps = sleeps_until_busy(&mut waiting, 0, timeout);
        assert_eq!(sleeps.iter().sum::<Duration>(), timeout);
        assert_eq!(sleeps[..3], [Duration::from_micros(50), Duration::from_micros(100), Duration::from_micros(200)]);
        // A zero timeout: busy at once.
        assert!(Waiting::default().next(0, Duration::ZERO).is_none());
    }

    #[test]
    fn a_new_wait_gets_the_whole_timeout_whatever_count_it_starts_with() {
        let timeout = Duration::from_millis(20);
        let mut waiting = Waiting::default();
        let first = sleeps_until_busy(&mut waiting, 0, timeout).len() as c_int;
        // The statement's counter was reset: a new wait.
        assert_eq!(sleeps_until_busy(&mut waiting, 0, timeout).iter().sum::<Duration>(), timeout);
        // A count left over from another wait (not the one after this thread's last call), and
        // one that is not 0 on a thread that never waited: new waits, not given up at once.
        assert_eq!(sleeps_until_busy(&mut waiting, first + 7, timeout).iter().sum::<Duration>(), timeout);
        assert_eq!(sleeps_until_busy(&mut Waiting::default(), 3, timeout).iter().sum::<Duration>(), timeout);
        // A wait that got its lock just before the timeout, then another connection's wait on
        // this thread whose count an earlier statement left at 2: a new wait, with all its time.
        let mut waiting = Waiting::default();
        let mut count = 0;
        while waiting.slept + LONGEST_SLEEP < timeout {
            let sleep = waiting.next(count, timeout).unwrap();
            waiting.slept += sleep;
            count += 1;
        }
        assert_eq!(sleeps_until_busy(&mut waiting, 2, timeout).iter().sum::<Duration>(), timeout);
        // A second wait within one statement continues the count, and the time slept (as
        // SQLite's own handler does): the statement waits at most the timeout in all.
        let mut waiting = Waiting::default();
        for count in 0..4 {
            let sleep = waiting.next(count, timeout).unwrap();
            waiting.slept += sleep;
        }
        let rest = sleeps_until_busy(&mut waiting, 4, timeout);
        assert_eq!(waiting.slept, timeout);
        assert!(rest.iter().sum::<Duration>() < timeout);
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
            // A lower bound only: how much longer it took depends on the machine's load.
            assert!(waited >= Duration::from_millis(ms), "{ms} ms: {waited:?}");
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
