//! The SQLite engine: jobs.db and audit.db, each behind its own connection pool. No transaction
//! spans both files: a Set Action's outcome commits in jobs.db alone and its audit row reaches
//! audit.db through the outbox (see `outbox`), so one file's trouble never blocks the other's.

mod audit;
mod busy;
mod cache;
mod copy;
mod group_commit;
pub use group_commit::GroupCommitProbe;
mod jobs;
mod outbox;
#[cfg(test)]
mod query_plans;
pub mod pool;
pub mod schema;
mod set_action;
mod settle;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::audit_chain::ChainKey;
use crate::error::{Error, Result};
use crate::model::{AuditFilter, AuditRow, AuditStats, AuditVerification, CacheStats, JobDetails, JobSummary};
use crate::options::StoreOptions;
use crate::storage::{
    AuditDelivery, AuditRecord, CacheExport, CacheRecord, DbFile, Engine, IdempotencyKey, Imported, JobChange, JobExport,
    JobRecord, PriorRequest,
};
use pool::Pool;
use settle::{Settling, When};

pub struct SqliteEngine {
    jobs: Pool,
    audit: Pool,
    /// How audit rows are chained (the host's HMAC key, in memory only).
    chain: ChainKey,
    /// The chain head this process last checked against its key.
    checked_head: crate::audit_chain::CheckedHead,
    /// Delivered rows still to be removed from the outbox (see `settle`).
    settling: Settling,
    /// Set when a delivery failed in this process: later audit writes retry it.
    outbox_waiting: AtomicBool,
}

/// The library's clock for jobs in flight: Unix time in ms, the same in every time zone.
fn unix_ms_now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl SqliteEngine {
    /// Open (creating when missing) and migrate both files. A file that cannot be written is
    /// opened read-only: reads work, writes are refused (`Engine::read_only`).
    pub fn open(jobs_path: &Path, audit_path: &Path, options: &StoreOptions) -> Result<Self> {
        if !options.create {
            // Both checked before either is opened: nothing is created beside a missing file.
            for path in [jobs_path, audit_path] {
                pool::check_exists(path)?;
            }
        }
        // Both files' versions are checked before either is changed: a newer audit.db must not
        // leave jobs.db switched to WAL or migrated behind it.
        pool::check_version(jobs_path, schema::JOBS_SCHEMA_VERSION)?;
        pool::check_version(audit_path, schema::AUDIT_SCHEMA_VERSION)?;
        let (jobs, first_jobs) = Pool::open(jobs_path, schema::JOBS_SCHEMA_VERSION, options)?;
        let (audit, first_audit) = Pool::open(audit_path, schema::AUDIT_SCHEMA_VERSION, options)?;
        schema::migrate_jobs(&first_jobs, jobs.read_only().is_none())?;
        jobs.put(first_jobs);
        schema::migrate_audit(&first_audit, audit.read_only().is_none())?;
        if audit.read_only().is_none() {
            // Triggers go with their table when someone renames it; whatever table is called
            // audit_log now gets them back.
            schema::ensure_audit_triggers(&first_audit)?;
        }
        audit.put(first_audit);
        let chain = ChainKey::new(options.audit_hmac_key.as_ref().map(|k| k.0.as_str()));
        let engine = SqliteEngine {
            jobs,
            audit,
            chain,
            checked_head: crate::audit_chain::CheckedHead::default(),
            settling: Settling::new(options.synchronous),
            outbox_waiting: AtomicBool::new(false),
        };
        if engine.audit.read_only().is_none() {
            // Best effort: a chain begun by schema v2 commits to its legacy rows now (another
            // process, or the next open, does it if this one cannot).
            let now = crate::clock::utc_sql(SystemTime::now());
            let _ = write(&engine.audit, |tx| audit::commit_legacy_rows(tx, &engine.chain, &engine.checked_head, &now));
        }
        Ok(engine)
    }

    /// jobs.db's group commit as it is now (a test hook: it lets a test queue writers behind a
    /// leader and see that they shared one batch). Costs nothing unless called.
    #[doc(hidden)]
    pub fn jobs_group_commit_probe(&self) -> GroupCommitProbe {
        self.jobs.group().probe()
    }

    /// A jobs.db write that also removes the outbox rows delivered since the last one (see
    /// `settle`): the removal costs no sync of its own.
    fn write_jobs_settling<T: Send>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send) -> Result<T> {
        let removals = self.settling.take_removals(&self.audit, When::Along);
        let result = write(&self.jobs, |tx| {
            outbox::remove(tx, &removals)?;
            f(tx)
        });
        if result.is_err() {
            self.settling.removals_failed(removals);
        }
        result
    }

    /// Remove every delivered row from the outbox now, in a commit of its own (an explicit
    /// delivery). Best effort: what fails waits for the next write, or another process's delivery.
    fn settle_now(&self) {
        if self.jobs.check_writable().is_err() {
            return;
        }
        let removals = self.settling.take_removals(&self.audit, When::Now);
        if !removals.is_empty() && write(&self.jobs, |tx| outbox::remove(tx, &removals)).is_err() {
            self.settling.removals_failed(removals);
        }
    }

    /// Run the outbox's delivery if an earlier one in this process failed.
    fn retry_waiting_delivery(&self) {
        if self.outbox_waiting.load(Ordering::Relaxed) {
            let _ = self.deliver_noting_failure();
        }
    }

    /// `deliver`, remembering whether it failed (later audit writes then retry it).
    fn deliver_noting_failure(&self) -> Result<u64> {
        let result = self.deliver();
        self.outbox_waiting.store(result.is_err(), Ordering::Relaxed);
        result
    }

    /// Deliver what was just put in the outbox: the common tail of both outbox writers.
    fn deliver_after_queueing(&self) -> AuditDelivery {
        match self.deliver_noting_failure() {
            Ok(_) => AuditDelivery::Delivered,
            Err(e) => AuditDelivery::Deferred(e),
        }
    }
}

/// Run `f` in a BEGIN IMMEDIATE transaction: the write lock is taken up front, so a write never
/// fails half-way on a lock upgrade, and the busy timeout applies to taking it. Writers of this
/// process are batched by group commit (see `group_commit`): they queue in the process first, so
/// SQLite's busy timeout only ever counts waiting for other processes, and writers arriving
/// together share one sync. A file opened read-only refuses before anything is queued.
fn write<T: Send>(pool: &Pool, f: impl FnOnce(&Connection) -> Result<T> + Send) -> Result<T> {
    pool.check_writable()?;
    pool.group().submit(pool, f)
}

fn read<T>(pool: &Pool, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let conn = pool.get()?;
    f(&conn)
}

/// A read of several statements that must see one snapshot.
fn read_snapshot<T>(pool: &Pool, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let conn = pool.get()?;
    let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Deferred)?;
    f(&tx)
}

impl Engine for SqliteEngine {
    fn read_only(&self) -> Option<Error> {
        self.jobs.read_only().or_else(|| self.audit.read_only())
    }
    fn check_audit_key(&self) -> Result<()> {
        read(&self.audit, |c| audit::check_head_key(c, &self.chain, &self.checked_head))
    }

    fn insert_job(&self, job: &JobRecord<'_>) -> Result<()> {
        let now = unix_ms_now();
        write(&self.jobs, |tx| jobs::insert(tx, job, now))
    }
    fn update_job(&self, change: &JobChange<'_>) -> Result<bool> {
        let now = unix_ms_now();
        write(&self.jobs, |tx| jobs::update(tx, change, now))
    }
    fn job(&self, job_id: &str) -> Result<Option<JobDetails>> {
        read(&self.jobs, |c| jobs::details(c, job_id))
    }
    fn user_jobs(&self, user_id: &str, limit: u32) -> Result<Vec<JobSummary>> {
        read(&self.jobs, |c| jobs::for_user(c, user_id, limit))
    }
    fn job_customers(&self, job_id: &str) -> Result<Option<Vec<String>>> {
        read(&self.jobs, |c| jobs::customers(c, job_id))
    }

    fn insert_audit(&self, row: &AuditRecord<'_>) -> Result<i64> {
        let id = write(&self.audit, |tx| audit::insert(tx, row, &self.chain, &self.checked_head))?;
        self.retry_waiting_delivery();
        Ok(id)
    }
    fn insert_set_action_audit(&self, job_id: &str, row: &AuditRecord<'_>) -> Result<()> {
        // Written with the receipt its outbox copy would get: if the outcome's commit that
        // failed did reach the WAL after all (an I/O error after the write), its outbox row is
        // recognised as delivered instead of being written a second time.
        let key = outbox::set_action_key(job_id);
        write(&self.audit, |tx| {
            if !outbox::receipted(tx, &key)? {
                let id = audit::insert(tx, row, &self.chain, &self.checked_head)?;
                outbox::receipt(tx, &key, id)?;
            }
            Ok(())
        })
    }
    fn insert_audit_durably(&self, row: &AuditRecord<'_>) -> Result<AuditDelivery> {
        // Refuse what audit::insert would refuse before it waits in the outbox for ever.
        if crate::audit_chain::RESERVED_ACTIONS.contains(&row.action_type) {
            return Err(Error::invalid(format!("action_type {:?} is reserved", row.action_type)));
        }
        match self.write_jobs_settling(|tx| outbox::add(tx, row, None)) {
            Ok(_) => Ok(self.deliver_after_queueing()),
            // jobs.db cannot keep it: write it straight to the audit log instead.
            Err(_) => self.insert_audit(row).map(|_| AuditDelivery::Delivered),
        }
    }
    fn audit_trail(&self, filter: &AuditFilter<'_>, limit: u32) -> Result<Vec<AuditRow>> {
        read(&self.audit, |c| audit::trail(c, filter, limit))
    }
    fn action_types(&self) -> Result<Vec<String>> {
        read(&self.audit, audit::action_types)
    }
    fn audit_stats(&self) -> Result<AuditStats> {
        read(&self.audit, audit::stats)
    }
    fn clear_audit(&self, timestamp: &str) -> Result<u64> {
        write(&self.audit, |tx| audit::reset(tx, &self.chain, &self.checked_head, timestamp))
    }
    fn adopt_unchained(&self, reason: &str, timestamp: &str) -> Result<crate::model::Adoption> {
        write(&self.audit, |tx| audit::adopt(tx, &self.chain, &self.checked_head, timestamp, reason))
    }
    fn verify_audit(&self, anchor: Option<(i64, &str)>, progress: &mut dyn FnMut(u64)) -> Result<AuditVerification> {
        // One read transaction: the walk sees one consistent snapshot however long it takes.
        read_snapshot(&self.audit, |tx| audit::verify(tx, &self.chain, anchor, progress))
    }
    fn counts(&self) -> Result<crate::model::StoreCounts> {
        let mut counts = read_snapshot(&self.jobs, jobs::counts)?;
        read(&self.jobs, |c| jobs::durability(c, "jobs", &mut counts.durability))?;
        read(&self.audit, |c| jobs::durability(c, "audit", &mut counts.durability))?;
        if counts.audit_waiting > 0 {
            // Delivered rows stay in the outbox until a later write removes them (`settle`): only
            // rows without a receipt in audit.db are still waiting for the audit log.
            // One list of keys for both counts, so rows added meanwhile cannot make it negative.
            let keys = read(&self.jobs, outbox::keys)?;
            let delivered = read(&self.audit, |c| {
                keys.iter().try_fold(0, |n, k| Ok::<_, Error>(n + i64::from(outbox::receipted(c, k)?)))
            })?;
            counts.audit_waiting = i64::try_from(keys.len()).unwrap_or(i64::MAX) - delivered;
        }
        let (rows, chained) = read(&self.audit, audit::counts)?;
        counts.audit_rows = rows;
        counts.audit_chained = chained;
        Ok(counts)
    }
    fn backup(&self, dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<std::path::PathBuf>> {
        let mut made = Vec::new();
        for (pool, name) in [(&self.jobs, "jobs.db"), (&self.audit, "audit.db")] {
            let to = dir.join(name);
            let conn = pool.get()?;
            pool::backup(&conn, &to, progress)?;
            made.push(to);
        }
        Ok(made)
    }

    fn cache_get(&self, cid: &str, app_name: &str, fresh_since: &str) -> Result<Option<String>> {
        read(&self.jobs, |c| cache::get(c, cid, app_name, fresh_since))
    }
    fn cache_get_many(&self, cids: &[String], app_name: &str, fresh_since: &str) -> Result<Vec<Option<String>>> {
        read_snapshot(&self.jobs, |tx| cids.iter().map(|cid| cache::get(tx, cid, app_name, fresh_since)).collect())
    }
    fn cache_put(&self, entry: &CacheRecord<'_>) -> Result<()> {
        write(&self.jobs, |tx| cache::put(tx, entry))
    }
    fn cache_delete_older(&self, cutoff: &str) -> Result<u64> {
        write(&self.jobs, |tx| cache::delete_older(tx, cutoff))
    }
    fn cache_invalidate(&self, cid: Option<&str>, app_name: Option<&str>) -> Result<u64> {
        write(&self.jobs, |tx| cache::invalidate(tx, cid, app_name))
    }
    fn cache_stats(&self) -> Result<CacheStats> {
        read(&self.jobs, cache::stats)
    }

    fn insert_set_action_job(
        &self,
        job: &JobRecord<'_>,
        key: Option<(IdempotencyKey<'_>, &str)>,
    ) -> Result<Option<PriorRequest>> {
        let now = unix_ms_now();
        write(&self.jobs, |tx| {
            if let Some((key, _)) = key {
                if let Some(prior) = set_action::prior(tx, key)? {
                    return Ok(Some(prior));
                }
            }
            jobs::insert(tx, job, now)?;
            if let Some((key, fingerprint)) = key {
                set_action::insert_key(tx, key, fingerprint, job.job_id, job.created_at)?;
            }
            Ok(None)
        })
    }
    fn prior_request(&self, key: IdempotencyKey<'_>) -> Result<Option<PriorRequest>> {
        read(&self.jobs, |c| set_action::prior(c, key))
    }
    fn finish_set_action(
        &self,
        outcome: &JobChange<'_>,
        audit: Option<&AuditRecord<'_>>,
        answer: Option<(IdempotencyKey<'_>, i64, &str)>,
    ) -> Result<AuditDelivery> {
        let now = unix_ms_now();
        // The outcome, the answer for repeats and the audit row in the outbox: jobs.db only.
        let found = self.write_jobs_settling(|tx| {
            let found = jobs::record_outcome(tx, outcome, now)?;
            if let Some((key, status, body)) = answer {
                set_action::store_answer(tx, key, status, body)?;
            }
            if let Some(audit) = audit {
                outbox::add(tx, audit, Some(outbox::set_action_key(outcome.job_id)))?;
            }
            Ok(found)
        })?;
        if !found {
            return Err(Error::not_found(format!("no job with id {:?}", outcome.job_id)));
        }
        Ok(if audit.is_some() { self.deliver_after_queueing() } else { AuditDelivery::Delivered })
    }
    fn deliver_pending_audit(&self) -> Result<u64> {
        let delivered = self.deliver_noting_failure()?;
        self.settle_now();
        Ok(delivered)
    }
    fn recover_interrupted(&self, older_than: std::time::Duration, message: &str, now_text: &str) -> Result<u64> {
        let now = unix_ms_now();
        let cutoff = now.saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        write(&self.jobs, |tx| set_action::recover_interrupted(tx, now, cutoff, message, now_text))
    }
    fn export_jobs(&self, after: Option<&str>, max_jobs: u32, max_customers: usize) -> Result<Vec<JobExport>> {
        read_snapshot(&self.jobs, |tx| copy::export_jobs(tx, after, max_jobs, max_customers))
    }
    fn import_jobs(&self, jobs: &[JobExport]) -> Result<Imported> {
        let now = unix_ms_now();
        write(&self.jobs, |tx| copy::import_jobs(tx, jobs, now))
    }
    fn export_cache(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<CacheExport>> {
        read(&self.jobs, |c| copy::export_cache(c, after, limit))
    }
    fn import_cache(&self, rows: &[CacheExport]) -> Result<Imported> {
        write(&self.jobs, |tx| copy::import_cache(tx, rows))
    }
    fn export_audit(&self, after_id: Option<i64>, limit: u32) -> Result<Vec<crate::audit_chain::ChainRow>> {
        read(&self.audit, |c| copy::export_audit(c, after_id, limit))
    }
    fn import_audit(&self, rows: &[crate::audit_chain::ChainRow]) -> Result<Imported> {
        write(&self.audit, |tx| copy::import_audit(tx, rows))
    }
    fn audit_max_id(&self) -> Result<Option<i64>> {
        read(&self.audit, copy::audit_max_id)
    }

    fn hold_write_lock(&self, file: DbFile, duration: std::time::Duration) -> Result<()> {
        let pool = match file {
            DbFile::Jobs => &self.jobs,
            DbFile::Audit => &self.audit,
        };
        pool.check_writable()?;
        let conn = pool.get()?;
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        std::thread::sleep(duration);
        tx.rollback()?;
        Ok(())
    }
}

impl SqliteEngine {
    /// Copy every outbox row into audit.db exactly once (see `outbox` for why this order): under
    /// audit.db's write lock, read the outbox from jobs.db and append each row that has no
    /// receipt yet with its receipt; the delivered rows are then removed from jobs.db by a later
    /// write (`settle`).
    fn deliver(&self) -> Result<u64> {
        if read(&self.jobs, outbox::is_empty)? {
            return Ok(0);
        }
        self.audit.check_writable()?;
        let done = write(&self.audit, |tx| {
            let ticket = self.settling.ticket();
            let entries = read(&self.jobs, outbox::pending)?;
            let mut delivered = 0;
            let mut rows = Vec::with_capacity(entries.len());
            for e in entries {
                let mut done = outbox::receipted(tx, &e.delivery_key)?;
                if !done {
                    let pending = e.record()?;
                    let row = pending.record();
                    done = e.audit_id_hint.map(|id| audit::holds(tx, id, &row)).transpose()?.unwrap_or(false);
                    if !done {
                        let id = audit::insert(tx, &row, &self.chain, &self.checked_head)?;
                        outbox::receipt(tx, &e.delivery_key, id)?;
                        delivered += 1;
                    }
                }
                // Whether this delivery wrote it (see `settle`).
                rows.push((e.id, e.delivery_key, !done));
            }
            Ok((delivered, rows, ticket))
        });
        match done {
            Ok((delivered, rows, ticket)) => {
                self.settling.delivered(ticket, rows);
                Ok(delivered)
            }
            Err(e) => Err(e.context("the audit rows waiting in the outbox could not be written to the audit log yet")),
        }
    }
}

impl std::fmt::Debug for SqliteEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEngine").finish_non_exhaustive()
    }
}
