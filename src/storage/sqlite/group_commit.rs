//! Group commit: writers of one process that arrive while a commit is under way are batched into
//! the next transaction, so several callers' writes are made durable by one sync. Each caller's
//! work runs inside its own savepoint (a failing caller rolls back only its own changes) and no
//! caller returns before the transaction holding its work has committed.
//!
//! Protocol: a caller queues its work and parks. If no thread is leading, it leads: it takes
//! everything queued, runs it in one BEGIN IMMEDIATE transaction, commits, marks those callers
//! done and wakes each of them, and repeats until its own work is done; then leadership passes to
//! the first waiting caller. A lone writer thus commits on its own thread, with no hand-off.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::Thread;

use rusqlite::Connection;

use super::pool::Pool;
use crate::error::{Error, Result};

/// Most callers' writes in one transaction (bounds the latency of the first of them).
const MAX_BATCH: usize = 64;

/// Type-erased queued work.
trait Work {
    /// Run on the leader's connection; returns whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// The batch could not commit: report `err` instead of the result.
    fn fail(&mut self, err: &Error);
    /// The error this work ended with, if it failed.
    fn error(&self) -> Option<Error>;
}

struct Slot<F, T> {
    work: Option<F>,
    result: Option<Result<T>>,
}

impl<F: FnOnce(&Connection) -> Result<T>, T> Work for Slot<F, T> {
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.work.take() {
            Some(work) => catch_unwind(AssertUnwindSafe(|| work(conn)))
                .unwrap_or_else(|_| Err(Error::internal("internal error (panic) in a queued write"))),
            None => Err(Error::internal("queued write ran twice")),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }
    fn fail(&mut self, err: &Error) {
        self.result = Some(Err(err.clone()));
    }
    fn error(&self) -> Option<Error> {
        match &self.result {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }
}

/// A queued caller: its work and its done flag, both on the caller's stack, and its thread,
/// woken alone when its work is done (waking every waiter per batch starves the leader of CPU).
struct Entry {
    work: *mut (dyn Work + 'static),
    done: *const AtomicBool,
    thread: Thread,
}
// SAFETY: an Entry is only dereferenced by the leader while its caller is blocked waiting for
// `done`, so the pointees outlive every use; the work itself is Send (enforced in `submit`).
unsafe impl Send for Entry {}

#[derive(Default)]
struct State {
    queue: Vec<Entry>,
    leading: bool,
}

#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    /// Batches run so far (one relaxed add per transaction, for `probe`).
    batches: AtomicU64,
}

/// What a test can see of a file's group commit (`SqliteEngine::group_commit_probe`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitProbe {
    /// Callers queued and not yet taken into a batch.
    pub queued: usize,
    /// Whether a caller is leading (running batches) now.
    pub leading: bool,
    /// Batches run since the store opened.
    pub batches: u64,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queue, the leader and the batch count now: lets a test form a batch on purpose.
    pub fn probe(&self) -> GroupCommitProbe {
        let state = self.lock();
        GroupCommitProbe { queued: state.queue.len(), leading: state.leading, batches: self.batches.load(Ordering::Relaxed) }
    }

    /// Run `work` in a write transaction shared with whoever else is writing now; returns once
    /// that transaction has committed (or failed).
    pub fn submit<T: Send>(&self, pool: &Pool, work: impl FnOnce(&Connection) -> Result<T> + Send) -> Result<T> {
        let mut slot = Slot { work: Some(work), result: None };
        let done = AtomicBool::new(false);
        let erased: *mut (dyn Work + '_) = &mut slot;
        // SAFETY: only the lifetime is erased; this function does not return (so `slot` and
        // `done` stay alive) until `done` is set, after which no one touches the entry again.
        let erased: *mut (dyn Work + 'static) = unsafe { std::mem::transmute(erased) };
        let mut state = self.lock();
        state.queue.push(Entry { work: erased, done: &done, thread: std::thread::current() });
        loop {
            if done.load(Ordering::Acquire) {
                break;
            }
            if state.leading {
                // Parked until the leader finishes our batch or hands leadership to us; unpark
                // before park is not lost, and the loop re-checks after spurious wake-ups.
                drop(state);
                std::thread::park();
                state = self.lock();
                continue;
            }
            state.leading = true;
            // Lead until our own work is done, then hand over: running batches for others after
            // that makes this caller wait for their commits, which cost it more than the wake-up
            // of the next leader costs them (BENCHMARKS.md, group commit).
            while !done.load(Ordering::Acquire) {
                let take = state.queue.len().min(MAX_BATCH);
                let batch: Vec<Entry> = state.queue.drain(..take).collect();
                drop(state);
                self.batches.fetch_add(1, Ordering::Relaxed);
                // A panic here must not strand the batch's callers (or leave `leading` set for
                // ever): report it to each of them as an internal error instead.
                if catch_unwind(AssertUnwindSafe(|| run_batch(pool, &batch))).is_err() {
                    let err = Error::internal("internal error (panic) while committing a batch of writes");
                    batch.iter().for_each(|e| unsafe { (*e.work).fail(&err) });
                }
                for e in &batch {
                    // SAFETY: see Entry; the caller is still waiting on this flag.
                    unsafe { (*e.done).store(true, Ordering::Release) };
                    e.thread.unpark();
                }
                state = self.lock();
            }
            state.leading = false;
            if let Some(next) = state.queue.first() {
                next.thread.unpark(); // the next waiter leads
            }
        }
        drop(state);
        slot.result.unwrap_or_else(|| Err(Error::internal("queued write finished without a result")))
    }
}

/// One transaction for the whole batch; each entry in its own savepoint when there are several.
fn run_batch(pool: &Pool, batch: &[Entry]) {
    // SAFETY (all derefs below): see Entry.
    let fail_all = |err: &Error| batch.iter().for_each(|e| unsafe { (*e.work).fail(err) });
    let writer = pool.writer();
    let _turn = writer.lock().unwrap_or_else(|p| p.into_inner());
    let conn = match pool.get() {
        Ok(c) => c,
        Err(e) => return fail_all(&e),
    };
    let tx = match WriteTransaction::begin(&conn) {
        Ok(tx) => tx,
        Err(e) => return fail_all(&e.into()),
    };
    let mut any_ok = false;
    let several = batch.len() > 1;
    for e in batch {
        if several {
            if let Err(err) = tx.prepare_cached("SAVEPOINT one_write").and_then(|mut st| st.execute([])) {
                unsafe { (*e.work).fail(&err.into()) };
                continue;
            }
        }
        let ok = unsafe { (*e.work).run(&tx) };
        if !ok && tx.is_autocommit() {
            // SQLite rolled the whole transaction back by itself (it does on SQLITE_FULL, IOERR,
            // NOMEM, BUSY): every earlier write of the batch is gone too, so none may report
            // success.
            let err = unsafe { (*e.work).error() }.unwrap_or_else(|| Error::internal("transaction rolled back"));
            return fail_all(&err);
        }
        if several {
            let end = if ok {
                tx.prepare_cached("RELEASE one_write").and_then(|mut st| st.execute([]))
            } else {
                tx.execute_batch("ROLLBACK TO one_write; RELEASE one_write").map(|_| 0)
            };
            if let Err(err) = end {
                // The transaction is in an unknown state: fail everyone rather than guess.
                return fail_all(&err.into());
            }
        }
        any_ok |= ok;
    }
    if !any_ok {
        // Nothing to keep; each caller already has its own error. (Dropping rolls back.)
        drop(tx);
        return;
    }
    if let Err(err) = tx.commit() {
        let err: Error = err.into();
        for e in batch {
            unsafe { (*e.work).fail(&err) };
        }
    }
}

/// `BEGIN IMMEDIATE` ... `COMMIT` through statements prepared once per connection: rusqlite's
/// `Transaction` parses both again for every transaction, which was about a tenth of the
/// instructions of a small job's whole write. Dropped without `commit` (or after a failed one),
/// it rolls back.
struct WriteTransaction<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> WriteTransaction<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(WriteTransaction { conn, open: true })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        Ok(())
    }

    fn is_autocommit(&self) -> bool {
        self.conn.is_autocommit()
    }
}

impl std::ops::Deref for WriteTransaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTransaction<'_> {
    fn drop(&mut self) {
        // SQLite may already have rolled back by itself (see run_batch): then there is nothing.
        if self.open && !self.conn.is_autocommit() {
            let _ = self.conn.prepare_cached("ROLLBACK").and_then(|mut st| st.execute([]));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::thread::ThreadId;

    use super::*;
    use crate::options::StoreOptions;

    fn pool(tag: &str) -> (Pool, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("tms-group-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (pool, first) = Pool::open(&dir.join("jobs.db"), 1, &StoreOptions::default()).unwrap();
        first.execute_batch("CREATE TABLE t (who TEXT)").unwrap();
        pool.put(first);
        (pool, dir)
    }

    fn ran_on(group: &GroupCommit, pool: &Pool) -> ThreadId {
        group
            .submit(pool, |conn| {
                conn.execute("INSERT INTO t VALUES ('x')", [])?;
                Ok(std::thread::current().id())
            })
            .unwrap()
    }

    #[test]
    fn a_lone_writer_commits_on_its_own_thread() {
        let (pool, dir) = pool("lone");
        let group = GroupCommit::default();
        assert_eq!(ran_on(&group, &pool), std::thread::current().id());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A leader whose own write has committed returns at once: the writers that queued behind
    /// it are committed by one of them, never on the leader's time.
    #[test]
    fn a_leader_returns_when_its_own_write_is_done() {
        let (pool, dir) = pool("handoff");
        let group = GroupCommit::default();
        let leading = Barrier::new(3);
        let (pool, group) = (&pool, &group);
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                group
                    .submit(pool, |conn| {
                        leading.wait(); // the others may queue now
                        // Hold the batch open until both are queued behind it.
                        while group.lock().queue.len() < 2 {
                            std::thread::yield_now();
                        }
                        conn.execute("INSERT INTO t VALUES ('leader')", [])?;
                        Ok(std::thread::current().id())
                    })
                    .unwrap()
            });
            let followers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        leading.wait();
                        ran_on(group, pool)
                    })
                })
                .collect();
            let leader_thread = leader.join().unwrap();
            for f in followers {
                let ran = f.join().unwrap();
                assert_ne!(ran, leader_thread, "the leader kept committing for others after its own write");
            }
        });
        let _ = std::fs::remove_dir_all(dir);
    }
}
