//! Delivered outbox rows on their way out, without a sync of their own.
//!
//! After a row is copied into audit.db (with its receipt), two clean-ups remain: remove the row
//! from jobs.db's outbox, then forget its receipt in audit.db. Each used to be a commit, and so a
//! sync, of its own. Now both ride along with the next write to the same file (the next Set
//! Action's outcome removes the rows the previous one delivered; the next delivery forgets the
//! receipts), and closing the store settles what is left. Until then a row stays in the outbox
//! with its receipt, which is harmless: every deliverer skips a receipted row and removes it.
//!
//! Order is what keeps exactly-once across a power cut, because the two files sync apart:
//! - a row's removal may reach the disk only after its audit row has (else a cut can keep the
//!   removal and lose the audit row: an outcome without its audit row);
//! - a receipt's forgetting may reach the disk only after the row's removal has (else a cut can
//!   bring the row back without its receipt: the audit row written twice).
//!
//! At FULL every commit is on disk when it returns, so taking the lists in order is enough. At
//! NORMAL a commit reaches the disk only at the next WAL sync, so before the removals are written
//! audit.db's WAL is synced, and before the receipts are forgotten jobs.db's is: one extra sync
//! per file every `NORMAL_BATCH` deliveries, instead of one per commit.

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
    /// The process these lists belong to: a forked child starts with empty ones (its parent
    /// settles its own rows; the child repeating it would be harmless but is not its job).
    pid: u32,
    /// Delivered rows (delivery key -> outbox id) still in jobs.db's outbox.
    to_remove: BTreeMap<String, i64>,
    /// Keys whose outbox rows this process removed: their receipts may go.
    to_forget: Vec<String>,
}

/// When a list is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Riding along with a write: at NORMAL only once a batch has gathered.
    Along,
    /// Now, whatever the count (closing the store, an explicit delivery).
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

    /// These rows are in audit.db now (their delivery committed): remove them from the outbox.
    pub fn delivered(&self, rows: impl IntoIterator<Item = (i64, String)>) {
        let mut state = self.lock();
        for (id, key) in rows {
            state.to_remove.insert(key, id);
        }
    }

    /// The rows to remove with the next jobs.db write, once their audit rows are known to be on
    /// disk (at NORMAL this syncs audit.db's WAL first; if that fails nothing is taken).
    pub fn take_removals(&self, audit: &Pool, when: When) -> Vec<(i64, String)> {
        let mut state = self.lock();
        if state.to_remove.is_empty() || !self.ready(state.to_remove.len(), when, audit) {
            return Vec::new();
        }
        std::mem::take(&mut state.to_remove).into_iter().map(|(key, id)| (id, key)).collect()
    }

    /// The write carrying `rows`' removal committed (`ok`) or did not (they wait again).
    pub fn removals_done(&self, rows: Vec<(i64, String)>, ok: bool) {
        let mut state = self.lock();
        if ok {
            state.to_forget.extend(rows.into_iter().map(|(_, key)| key));
        } else {
            for (id, key) in rows {
                state.to_remove.insert(key, id);
            }
        }
    }

    /// The receipts to forget with the next audit.db write, once their rows' removal is known to
    /// be on disk (at NORMAL this syncs jobs.db's WAL first; if that fails nothing is taken).
    pub fn take_forgettable(&self, jobs: &Pool, when: When) -> Vec<String> {
        let mut state = self.lock();
        if state.to_forget.is_empty() || !self.ready(state.to_forget.len(), when, jobs) {
            return Vec::new();
        }
        std::mem::take(&mut state.to_forget)
    }

    /// The write forgetting `keys` did not commit: they wait again.
    pub fn forgetting_failed(&self, keys: Vec<String>) {
        self.lock().to_forget.extend(keys);
    }

    /// Whether a list of `len` entries may go now; at NORMAL, syncs `synced_first`'s WAL (the
    /// file whose commits the list's entries depend on) once a batch is due.
    fn ready(&self, len: usize, when: When, synced_first: &Pool) -> bool {
        match self.synchronous {
            Synchronous::Full => true,
            Synchronous::Normal => {
                (when == When::Now || len >= NORMAL_BATCH) && pool::sync_wal(synced_first).is_ok()
            }
        }
    }
}
