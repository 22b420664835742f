//! The SQLite engine: jobs.db and audit.db, each behind its own connection pool.

mod audit;
mod cache;
mod group_commit;
mod jobs;
pub mod pool;
pub mod schema;
mod set_action;

use std::path::Path;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::audit_chain::ChainKey;
use crate::error::Result;
use crate::model::{AuditFilter, AuditRow, AuditStats, AuditVerification, CacheStats, JobDetails, JobSummary};
use crate::options::StoreOptions;
use crate::storage::{
    AuditRecord, CacheRecord, DbFile, Engine, IdempotencyKey, JobChange, JobRecord, PriorRequest,
};
use pool::Pool;

pub struct SqliteEngine {
    jobs: Pool,
    audit: Pool,
    /// jobs.db with audit.db attached: for the one transaction that records a Set Action's
    /// outcome in both files. Kept apart so ordinary job writes do not lock audit.db too.
    both: Pool,
    /// How audit rows are chained (the host's HMAC key, in memory only).
    chain: ChainKey,
}

impl SqliteEngine {
    /// Open (creating when missing) and migrate both files.
    pub fn open(jobs_path: &Path, audit_path: &Path, options: &StoreOptions) -> Result<Self> {
        let (jobs, first) = Pool::open(jobs_path, options)?;
        schema::migrate_jobs(&first)?;
        jobs.put(first);
        let (audit, first) = Pool::open(audit_path, options)?;
        schema::migrate_audit(&first)?;
        audit.put(first);
        let (both, first) = Pool::open_attached(jobs_path, Some(audit_path), options)?;
        both.put(first);
        let chain = ChainKey::new(options.audit_hmac_key.as_ref().map(|k| k.0.as_str()));
        Ok(SqliteEngine { jobs, audit, both, chain })
    }
}

/// Run `f` in a BEGIN IMMEDIATE transaction: the write lock is taken up front, so a write never
/// fails half-way on a lock upgrade, and the busy timeout applies to taking it. Writers of this
/// process are batched by group commit (see `group_commit`): they queue in the process first, so
/// SQLite's busy timeout only ever counts waiting for other processes, and writers arriving
/// together share one sync.
fn write<T: Send>(pool: &Pool, f: impl FnOnce(&Connection) -> Result<T> + Send) -> Result<T> {
    pool.group().submit(pool, f)
}

fn in_transaction<T>(pool: &Pool, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
    let conn = pool.get()?;
    let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

fn read<T>(pool: &Pool, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let conn = pool.get()?;
    f(&conn)
}

impl Engine for SqliteEngine {
    fn insert_job(&self, job: &JobRecord<'_>) -> Result<()> {
        write(&self.jobs, |tx| jobs::insert(tx, job))
    }
    fn update_job(&self, change: &JobChange<'_>) -> Result<bool> {
        write(&self.jobs, |tx| jobs::update(tx, change))
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
        write(&self.audit, |tx| audit::insert(tx, row, &self.chain))
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
        write(&self.audit, |tx| audit::reset(tx, &self.chain, timestamp))
    }
    fn verify_audit(&self, anchor: Option<(i64, &str)>) -> Result<AuditVerification> {
        // One read transaction: the walk sees one consistent snapshot however long it takes.
        let conn = self.audit.get()?;
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Deferred)?;
        audit::verify(&tx, &self.chain, anchor)
    }

    fn cache_get(&self, cid: &str, app_name: &str, fresh_since: &str) -> Result<Option<String>> {
        read(&self.jobs, |c| cache::get(c, cid, app_name, fresh_since))
    }
    fn cache_get_many(&self, cids: &[String], app_name: &str, fresh_since: &str) -> Result<Vec<Option<String>>> {
        let conn = self.jobs.get()?;
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Deferred)?;
        cids.iter().map(|cid| cache::get(&tx, cid, app_name, fresh_since)).collect()
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

    fn insert_set_action_job(&self, job: &JobRecord<'_>, key: Option<IdempotencyKey<'_>>) -> Result<Option<PriorRequest>> {
        write(&self.jobs, |tx| {
            if let Some(key) = key {
                if let Some(prior) = set_action::prior(tx, key)? {
                    return Ok(Some(prior));
                }
            }
            jobs::insert(tx, job)?;
            if let Some(key) = key {
                set_action::insert_key(tx, key, job.job_id, job.created_at)?;
            }
            Ok(None)
        })
    }
    fn prior_request(&self, key: IdempotencyKey<'_>) -> Result<Option<PriorRequest>> {
        read(&self.jobs, |c| set_action::prior(c, key))
    }
    fn finish_set_action(
        &self,
        change: &JobChange<'_>,
        audit: &AuditRecord<'_>,
        answer: Option<(IdempotencyKey<'_>, i64, &str)>,
    ) -> Result<i64> {
        // Both files are written: queue behind this process's writers of each, in a fixed order
        // (jobs, then audit) so two such calls cannot deadlock.
        let (jobs_writer, audit_writer) = (self.jobs.writer(), self.audit.writer());
        let _jobs_turn = jobs_writer.lock().unwrap_or_else(|p| p.into_inner());
        let _audit_turn = audit_writer.lock().unwrap_or_else(|p| p.into_inner());
        let id = in_transaction(&self.both, |tx| {
            jobs::update(tx, change)?;
            let id = audit::insert(tx, audit, &self.chain)?;
            if let Some((key, status, body)) = answer {
                set_action::store_answer(tx, key, status, body)?;
            }
            // The audit row again, in jobs.db: see schema::jobs_v4_pending_audit.
            set_action::add_pending(tx, change.job_id, id, &set_action::audit_record_json(audit))?;
            Ok(id)
        })?;
        // Both files are committed now; the outbox entry has done its job. If this fails, the
        // next recovery finds the row already in audit.db and just clears the entry.
        let _ = in_transaction(&self.both, |tx| set_action::clear_pending(tx, change.job_id));
        Ok(id)
    }
    fn replay_pending_audit(&self) -> Result<u64> {
        let (jobs_writer, audit_writer) = (self.jobs.writer(), self.audit.writer());
        let _jobs_turn = jobs_writer.lock().unwrap_or_else(|p| p.into_inner());
        let _audit_turn = audit_writer.lock().unwrap_or_else(|p| p.into_inner());
        in_transaction(&self.both, |tx| {
            let mut copied = 0;
            for (job_id, audit_id, record) in set_action::all_pending(tx)? {
                let pending: set_action::PendingAudit = serde_json::from_str(&record)?;
                if !audit::holds(tx, audit_id, &pending.record())? {
                    audit::insert(tx, &pending.record(), &self.chain)?;
                    copied += 1;
                }
                set_action::clear_pending(tx, &job_id)?;
            }
            Ok(copied)
        })
    }
    fn recover_interrupted(&self, cutoff: &str, message: &str, now: &str) -> Result<u64> {
        write(&self.jobs, |tx| set_action::recover_interrupted(tx, cutoff, message, now))
    }
    fn hold_write_lock(&self, file: DbFile, duration: std::time::Duration) -> Result<()> {
        let pool = match file {
            DbFile::Jobs => &self.jobs,
            DbFile::Audit => &self.audit,
        };
        let conn = pool.get()?;
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        std::thread::sleep(duration);
        tx.rollback()?;
        Ok(())
    }
}
