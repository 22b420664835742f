//! Delivered outbox rows on their way out, without a sync of their own.
//!
//! After a row is copied into audit.db (with its receipt), it must leave jobs.db's outbox. That
//! used to be a commit, and so a sync, of its own. Now the removal rides along with the next
//! jobs.db write (the next Set Action's outcome removes the rows the previous one delivered), and
//! an explicit delivery (`recover_interrupted`, run at open) settles what is left. Until then a
//! row stays in the outbox with its receipt, which is harmless: every deliverer skips a
//! receipted row and removes it. Receipts are kept: a backup copies jobs.db before audit.db, and
//! a receipt forgotten in between would let the copy's outbox row be delivered a second time.
//!
//! Order is what keeps exactly-once across a power cut, because the two files sync apart: a row's
//! removal may reach the disk only after its audit row has (else a cut can keep the removal and
//! lose the audit row: an outcome without its audit row). A row this process delivered in a
//! commit at FULL is on disk already. Any other row (delivered at NORMAL, or by another process,
//! which may run at NORMAL) waits for a sync of audit.db's WAL first: at NORMAL once per
//! `NORMAL_BATCH` delivered rows; at FULL another process's rows are left to it, and only an
//! explicit delivery (at open: what a dead process left) syncs to remove them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use super::pool::{self, Pool};
use crate::options::Synchronous;

/// At NORMAL, how many delivered rows wait before a sync lets them go (bounds the outbox's size
/// and the rows a later delivery reads again).
const NORMAL_BATCH: usize = 32;

pub struct Settling {
    synchronous: Synchronous,
    /// The process whose thread last took `state`: a child forked while a thread of its parent
    /// held the lock finds it held for ever, and must not wait for it.
    holder: AtomicU32,
    state: Mutex<State>,
    /// Numbers this process's deliveries in the order they read the outbox (see `ticket`).
    tickets: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The process these rows belong to: a forked child starts with none (its parent settles
    /// them; the child repeating it would be harmless but is not its job).
    pid: u32,
    /// Delivered rows still in jobs.db's outbox, by (outbox id, delivery key): whether audit.db's
    /// WAL must be synced before the row may be removed. Rows another process delivered are
    /// left to it while the store runs (removing them would cost this process a sync per call
    /// while both write) and taken only by an explicit delivery, which finds what a dead process
    /// left.
    to_remove: BTreeMap<(i64, String), bool>,
    /// The ticket of the newest delivery whose view `to_remove` was pruned to: a delivery that
    /// read the outbox earlier but reports later must not prune rows a newer one added.
    view: u64,
}

/// When the rows are taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Riding along with a write: at FULL the rows this process delivered; at NORMAL every row,
    /// once a batch has gathered.
    Along,
    /// Now, every row (an explicit delivery).
    Now,
}

impl Settling {
    pub fn new(synchronous: Synchronous) -> Settling {
        let me = crate::process::id();
        Settling {
            synchronous,
            holder: AtomicU32::new(me),
            state: Mutex::new(State { pid: me, ..State::default() }),
            tickets: AtomicU64::new(0),
        }
    }

    /// The state, or None in a forked child whose parent's thread held it at the fork (settling
    /// is best effort: the rows stay receipted and a later delivery finds them). The lock is
    /// only ever held for a few map operations, never across I/O.
    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        let me = crate::process::id();
        loop {
            let mut state = match self.state.try_lock() {
                Ok(state) => state,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) if self.holder.load(Ordering::Acquire) != me => return None,
                Err(TryLockError::WouldBlock) => {
                    std::thread::yield_now();
                    continue;
                }
            };
            self.holder.store(me, Ordering::Release);
            if state.pid != me {
                *state = State { pid: me, ..State::default() };
            }
            return Some(state);
        }
    }

    /// A delivery's place in line, taken inside audit.db's write transaction just before it reads
    /// the outbox. This process's audit.db writes run one after another (group commit runs a
    /// batch's writes in turn, and batches hold the write lock in turn), so tickets number the
    /// reads in the order they saw the outbox; their `delivered` reports may come in any order.
    pub fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// What a delivery saw: every row in the outbox (read inside audit.db's write transaction,
    /// after taking `ticket`), with whether this delivery committed it (`own`).
    ///
    /// A row this delivery committed at FULL is on disk: that holds whatever another delivery
    /// reported of it first. (A later delivery in the same group-commit batch sees it receipted,
    /// not its own, and may report first: trusting its word left the row waiting for a sync that
    /// FULL never takes along, and the outbox, read by every delivery, grew by about half the
    /// Set Actions of a busy process.) Rows no longer in the newest view were removed by someone:
    /// they are forgotten, which bounds the list by the outbox; an older view only adds.
    pub fn delivered(&self, ticket: u64, rows: impl IntoIterator<Item = (i64, String, bool)>) {
        let on_disk_already = self.synchronous == Synchronous::Full;
        let Some(mut state) = self.lock() else { return };
        let newest = ticket > state.view;
        // The newest view starts afresh (what it did not see is gone); an older one adds to all.
        let known = std::mem::take(&mut state.to_remove);
        let (mut seen, known) = if newest { (BTreeMap::new(), known) } else { (known, BTreeMap::new()) };
        for (id, key, own) in rows {
            let key = (id, key);
            let needs_sync = if own && on_disk_already {
                false
            } else {
                known.get(&key).or(seen.get(&key)).copied().unwrap_or(true)
            };
            seen.insert(key, needs_sync);
        }
        if newest {
            state.view = ticket;
        }
        state.to_remove = seen;
    }

    /// The rows to remove with the next jobs.db write, each known to have its audit row on disk:
    /// rows that need it wait for a sync of audit.db's WAL, done here (if it fails they wait).
    pub fn take_removals(&self, audit: &Pool, when: When) -> Vec<(i64, String)> {
        let taken: Vec<((i64, String), bool)> = {
            let Some(mut state) = self.lock() else { return Vec::new() };
            let take_all = match (self.synchronous, when) {
                (_, When::Now) => true,
                (Synchronous::Normal, When::Along) => state.to_remove.len() >= NORMAL_BATCH,
                (Synchronous::Full, When::Along) => false,
            };
            if take_all {
                std::mem::take(&mut state.to_remove).into_iter().collect()
            } else if self.synchronous == Synchronous::Full {
                // This process's own rows, on disk since their commit returned: no sync.
                let own: Vec<(i64, String)> = state.to_remove.iter().filter(|(_, needs)| !**needs).map(|(k, _)| k.clone()).collect();
                for key in &own {
                    state.to_remove.remove(key);
                }
                own.into_iter().map(|key| (key, false)).collect()
            } else {
                Vec::new()
            }
        };
        if taken.is_empty() {
            return Vec::new();
        }
        // Every row taken was delivered (its audit.db commit returned) before this sync starts,
        // so the sync covers them all. It runs outside the lock: other threads go on delivering.
        // If it fails, the rows that needed it stay in the outbox (receipted: harmless) until a
        // later delivery finds them and a later sync succeeds. After a failed fsync Linux may
        // have dropped the pages whose writeback failed, which a later sync does not bring back:
        // SQLite's own commits share that limit.
        let synced = !taken.iter().any(|(_, needs_sync)| *needs_sync) || pool::sync_wal(audit).is_ok();
        taken.into_iter().filter(|(_, needs_sync)| synced || !needs_sync).map(|(key, _)| key).collect()
    }

    /// The write carrying `rows`' removal did not commit: they wait again (their audit rows are
    /// on disk now, so no sync is owed for them any more).
    pub fn removals_failed(&self, rows: Vec<(i64, String)>) {
        let Some(mut state) = self.lock() else { return };
        for key in rows {
            state.to_remove.entry(key).or_insert(false);
        }
    }
}
