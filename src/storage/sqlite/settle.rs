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
//! `NORMAL_BATCH` delivered rows, at FULL only when such a row is found.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::pool::{self, Pool};
use crate::options::Synchronous;

/// At NORMAL, how many delivered rows wait before a sync lets them go (bounds the outbox's size
/// and the rows a later delivery reads again).
const NORMAL_BATCH: usize = 32;

pub struct Settling {
    synchronous: Synchronous,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The process these rows belong to: a forked child starts with none (its parent settles
    /// them; the child repeating it would be harmless but is not its job).
    pid: u32,
    /// Delivered rows still in jobs.db's outbox: delivery key -> (outbox id, whether audit.db's
    /// WAL must be synced before the row may be removed).
    to_remove: BTreeMap<String, (i64, bool)>,
}

/// When the rows are taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Riding along with a write: at NORMAL only once a batch has gathered.
    Along,
    /// Now, whatever the count (an explicit delivery).
    Now,
}

impl Settling {
    pub fn new(synchronous: Synchronous) -> Settling {
        Settling { synchronous, state: Mutex::new(State { pid: crate::process::id(), ..State::default() }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let me = crate::process::id();
        if state.pid != me {
            *state = State { pid: me, ..State::default() };
        }
        state
    }

    /// These rows are in audit.db now: remove them from the outbox. `own` says this process's
    /// delivery just committed them; the others were receipted before it looked (by another
    /// process, or by this one earlier).
    pub fn delivered(&self, rows: impl IntoIterator<Item = (i64, String, bool)>) {
        let on_disk_already = self.synchronous == Synchronous::Full;
        let mut state = self.lock();
        for (id, key, own) in rows {
            state.to_remove.entry(key).or_insert((id, !(own && on_disk_already)));
        }
    }

    /// The rows to remove with the next jobs.db write, each known to have its audit row on disk:
    /// rows that need it wait for a sync of audit.db's WAL, done here (if it fails they wait).
    pub fn take_removals(&self, audit: &Pool, when: When) -> Vec<(i64, String)> {
        let taken = {
            let mut state = self.lock();
            let batch_due = self.synchronous == Synchronous::Full || when == When::Now || state.to_remove.len() >= NORMAL_BATCH;
            if state.to_remove.is_empty() || !batch_due {
                return Vec::new();
            }
            std::mem::take(&mut state.to_remove)
        };
        // Every row taken was delivered (its audit.db commit returned) before this sync starts,
        // so the sync covers them all. It runs outside the lock: other threads go on delivering.
        if taken.values().any(|&(_, needs_sync)| needs_sync) && pool::sync_wal(audit).is_err() {
            let (ready, waiting): (Vec<_>, Vec<_>) = taken.into_iter().partition(|(_, (_, needs_sync))| !needs_sync);
            self.lock().to_remove.extend(waiting);
            return ready.into_iter().map(|(key, (id, _))| (id, key)).collect();
        }
        taken.into_iter().map(|(key, (id, _))| (id, key)).collect()
    }

    /// The write carrying `rows`' removal did not commit: they wait again (their audit rows are
    /// on disk now, so no sync is owed for them any more).
    pub fn removals_failed(&self, rows: Vec<(i64, String)>) {
        let mut state = self.lock();
        for (id, key) in rows {
            state.to_remove.entry(key).or_insert((id, false));
        }
    }
}
