//! The storage boundary. The store (validation, ids, clocks) talks to an [`Engine`] only through
//! this trait and its record types, so a second engine can be added without touching the store or
//! the C ABI. Records reaching an engine are already validated and normalized.

pub mod postgres;
pub mod sqlite;

use crate::error::{Error, Result};
use crate::model::{AuditFilter, AuditRow, AuditStats, AuditVerification, CacheStats, JobDetails, JobSummary};

/// A validated job with its id, timestamps and de-duplicated customer IDs.
#[derive(Debug, Clone)]
pub struct JobRecord<'a> {
    pub job_id: &'a str,
    pub user_id: &'a str,
    pub batch_id: Option<&'a str>,
    pub action_code: i32,
    pub action_name: &'a str,
    pub cluster_url: Option<&'a str>,
    pub created_at: &'a str,
    pub request_payload: Option<&'a str>,
    pub response_summary: Option<&'a str>,
    pub status: &'a str,
    pub cids: &'a [String],
    /// Created by the library's own Set Action, which records its outcome: if its process dies
    /// first, recovery marks it interrupted. A job from `create_job` is the caller's to finish,
    /// and recovery never touches it.
    pub set_action: bool,
}

/// A validated change to one job's status and outcome fields. `Engine::update_job` leaves a
/// `None` field as it is (the legacy `update_job`); a Set Action's outcome
/// (`Engine::finish_set_action`) stores every field as given, `None` as NULL, so a late outcome
/// replaces whatever recovery wrote meanwhile.
#[derive(Debug, Clone)]
pub struct JobChange<'a> {
    pub job_id: &'a str,
    pub status: &'a str,
    pub http_status: Option<i64>,
    pub error_message: Option<&'a str>,
    pub response_summary: Option<&'a str>,
    pub updated_at: &'a str,
}

/// A validated audit row with its timestamp.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    pub user_id: &'a str,
    pub action_type: &'a str,
    pub customer_ids: Option<&'a str>,
    pub timestamp: &'a str,
    pub ip_address: Option<&'a str>,
    pub status: &'a str,
    pub error_message: Option<&'a str>,
    pub duration_ms: Option<i64>,
}

/// One cache entry to upsert.
#[derive(Debug, Clone)]
pub struct CacheRecord<'a> {
    pub cid: &'a str,
    pub app_name: &'a str,
    pub status_data: &'a str,
    pub cached_at: &'a str,
    pub ttl_seconds: i64,
}

/// A Set Action's idempotency key; keys are scoped to the user who sent them.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    pub user_id: &'a str,
    pub key: &'a str,
}

/// What an earlier request with the same idempotency key left behind.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorRequest {
    pub job_id: String,
    /// The answer (HTTP status, JSON body) once the first request finished.
    pub answer: Option<(i64, String)>,
    pub job_status: Option<String>,
    pub job_error: Option<String>,
    /// The fingerprint of the first request (None for keys stored before fingerprints existed).
    pub fingerprint: Option<String>,
}

/// Where an audit row written through the outbox is now.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditDelivery {
    /// In the audit log.
    Delivered,
    /// Kept in the outbox: the audit log could not be written now (the error says why). It is
    /// delivered, exactly once, by a later write, `recover_interrupted` or the next open.
    Deferred(Error),
}

/// A job with every column and its customers (in insertion order), as `copy_into` moves it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobExport {
    pub job_id: String,
    pub user_id: String,
    pub batch_id: Option<String>,
    pub action_code: i64,
    pub action_name: String,
    pub cluster_url: Option<String>,
    pub created_at: String,
    pub request_payload: Option<String>,
    pub response_summary: Option<String>,
    pub status: Option<String>,
    pub http_status: Option<i64>,
    pub error_message: Option<String>,
    pub updated_at: Option<String>,
    pub customer_count: Option<i64>,
    /// See [`JobRecord::set_action`].
    pub set_action: bool,
    pub cids: Vec<String>,
}

/// One appstatus cache entry, as `copy_into` moves it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheExport {
    pub cid: String,
    pub app_name: String,
    pub status_data: String,
    pub cached_at: String,
    pub ttl_seconds: Option<i64>,
}

/// The error when a copy's destination holds another audit log (its row `id` is not the source's).
pub fn other_log(id: i64) -> Error {
    Error::new(
        crate::ErrorKind::InvalidInput,
        format!(
            "the destination's audit row {id} differs from the source's: it holds another audit log, which a copy \
             would break; copy into an empty store"
        ),
    )
}

/// What importing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Rows new to the destination.
    pub added: u64,
    /// Rows it had already (from an earlier, interrupted copy); their changeable fields updated.
    pub present: u64,
    /// Customer rows added with the new jobs.
    pub customers: u64,
}

/// Everything the store needs from persistent storage. Implementations are shared by many threads.
pub trait Engine: Send + Sync {
    /// Which of the store's files refuse writes (opened read-only); None when all are writable.
    fn read_only(&self) -> Option<Error>;
    /// Ok when this store may append to the audit chain (an HMAC-keyed chain needs its key).
    fn check_audit_key(&self) -> Result<()>;
    /// (found, this library's) when the store was opened on an older schema it left as it was
    /// (a PostgreSQL role that may not upgrade it, or a read-only server); SQLite always upgrades.
    fn schema_kept(&self) -> Option<(i64, i64)> {
        None
    }

    /// Insert the job and all its customers atomically and durably.
    fn insert_job(&self, job: &JobRecord<'_>) -> Result<()>;
    /// Apply the change; `false` when no such job exists.
    fn update_job(&self, change: &JobChange<'_>) -> Result<bool>;
    fn job(&self, job_id: &str) -> Result<Option<JobDetails>>;
    /// Newest first, at most `limit`.
    fn user_jobs(&self, user_id: &str, limit: u32) -> Result<Vec<JobSummary>>;
    /// The job's IDs sorted; `None` when no such job exists.
    fn job_customers(&self, job_id: &str) -> Result<Option<Vec<String>>>;

    /// Insert one audit row; returns its id.
    fn insert_audit(&self, row: &AuditRecord<'_>) -> Result<i64>;
    /// Record an audit row that must not be lost to a busy or failing audit log: it is kept
    /// durably first, then delivered (now if possible, else later).
    fn insert_audit_durably(&self, row: &AuditRecord<'_>) -> Result<AuditDelivery>;
    /// Whether a Set Action's outcome and its audit row commit in one transaction (PostgreSQL:
    /// one database), so that neither may ever be written without the other; SQLite's two
    /// files commit apart, tied by the outbox.
    fn audit_commits_with_outcome(&self) -> bool {
        false
    }
    /// Write a sent Set Action's audit row alone (its outcome could not be recorded), at most
    /// once per job: a later delivery of the same job's row, with its outcome, is skipped.
    fn insert_set_action_audit(&self, job_id: &str, row: &AuditRecord<'_>) -> Result<()>;
    /// Newest first, at most `limit`.
    fn audit_trail(&self, filter: &AuditFilter<'_>, limit: u32) -> Result<Vec<AuditRow>>;
    fn action_types(&self) -> Result<Vec<String>>;
    fn audit_stats(&self) -> Result<AuditStats>;
    /// Delete every audit row and record the reset (stamped `timestamp`); returns how many.
    fn clear_audit(&self, timestamp: &str) -> Result<u64>;
    /// Adopt into the chain the unchained rows a legacy writer appended after its head, with one
    /// `audit_adopt_unchained` row (stamped `timestamp`) committing to them and giving `reason`
    /// (already checked); refused when nothing waits or the log is otherwise broken.
    fn adopt_unchained(&self, reason: &str, timestamp: &str) -> Result<crate::model::Adoption>;
    /// Check the audit hash chain, optionally against a head the host anchored earlier;
    /// `progress` hears the number of rows walked now and then (for a progress bar).
    fn verify_audit(&self, anchor: Option<(i64, &str)>, progress: &mut dyn FnMut(u64)) -> Result<AuditVerification>;
    /// How much the store holds.
    fn counts(&self) -> Result<crate::model::StoreCounts>;
    /// Consistent copies of the store's files in `dir`, taken while writers go on (SQLite's
    /// online backup); `progress` hears (pages done, pages in all). Engines without files refuse.
    fn backup(&self, dir: &std::path::Path, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<std::path::PathBuf>> {
        let _ = (dir, progress);
        Err(Error::invalid("backup copies SQLite files; back a PostgreSQL database up with its own tools (pg_dump)"))
    }

    /// The entry's data if it was cached at or after `fresh_since`.
    fn cache_get(&self, cid: &str, app_name: &str, fresh_since: &str) -> Result<Option<String>>;
    /// `cache_get` for many cids in one read (one connection, one snapshot); the data or None
    /// for each cid, in order.
    fn cache_get_many(&self, cids: &[String], app_name: &str, fresh_since: &str) -> Result<Vec<Option<String>>>;
    fn cache_put(&self, entry: &CacheRecord<'_>) -> Result<()>;
    /// Delete entries cached before `cutoff`; returns how many.
    fn cache_delete_older(&self, cutoff: &str) -> Result<u64>;
    /// Delete entries matching both filters (`None` = any); returns how many.
    fn cache_invalidate(&self, cid: Option<&str>, app_name: Option<&str>) -> Result<u64>;
    fn cache_stats(&self) -> Result<CacheStats>;

    /// Insert a Set Action's job (and customers, and its idempotency key with the request's
    /// fingerprint when given) in one durable transaction. When the key was already used,
    /// nothing is inserted and the earlier request is returned instead.
    fn insert_set_action_job(
        &self,
        job: &JobRecord<'_>,
        key: Option<(IdempotencyKey<'_>, &str)>,
    ) -> Result<Option<PriorRequest>>;
    fn prior_request(&self, key: IdempotencyKey<'_>) -> Result<Option<PriorRequest>>;
    /// Record a Set Action's outcome: the job's outcome and (with a key) the answer for repeats
    /// commit together, on their own, whatever state the audit log is in; the audit row, when
    /// given, goes with them into the outbox and on to the audit log (see [`AuditDelivery`]).
    fn finish_set_action(
        &self,
        outcome: &JobChange<'_>,
        audit: Option<&AuditRecord<'_>>,
        answer: Option<(IdempotencyKey<'_>, i64, &str)>,
    ) -> Result<AuditDelivery>;
    /// Deliver to the audit log every row still in the outbox, each exactly once; returns how
    /// many were delivered.
    fn deliver_pending_audit(&self) -> Result<u64>;
    /// Mark FAILED, with `message` (and `updated_at` = `now_text`), every job still IN_PROGRESS
    /// that the library last wrote more than `older_than` ago by the engine's own clock, which
    /// does not depend on any process's time zone.
    fn recover_interrupted(&self, older_than: std::time::Duration, message: &str, now_text: &str) -> Result<u64>;

    /// Jobs in job_id order after `after`, with their customers: at most `max_jobs`, and no more
    /// jobs once `max_customers` customers are gathered (at least one job), so a copy holds a
    /// bounded amount in memory however large the jobs.
    fn export_jobs(&self, after: Option<&str>, max_jobs: u32, max_customers: usize) -> Result<Vec<JobExport>>;
    /// Insert jobs the store lacks, with their customers, in one transaction; a job it has gets
    /// its changeable columns (status, http_status, error_message, response_summary, updated_at)
    /// from the copy.
    fn import_jobs(&self, jobs: &[JobExport]) -> Result<Imported>;
    /// Cache entries in (cid, app_name) order after `after`.
    fn export_cache(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<CacheExport>>;
    /// Insert the entries the store lacks (one it has is kept).
    fn import_cache(&self, rows: &[CacheExport]) -> Result<Imported>;
    /// Audit rows in id order after `after_id`, every column.
    fn export_audit(&self, after_id: Option<i64>, limit: u32) -> Result<Vec<crate::audit_chain::ChainRow>>;
    /// Insert audit rows with their ids and chain columns as they are (so the chain verifies in
    /// the copy); a row already there with the same id must be the same row, else the
    /// destination holds another log and the import fails.
    fn import_audit(&self, rows: &[crate::audit_chain::ChainRow]) -> Result<Imported>;
    /// The highest audit row id, if any.
    fn audit_max_id(&self) -> Result<Option<i64>>;

    /// Hold the write lock of one file for `duration`, then release it writing nothing
    /// (a diagnostic for lock interplay between processes and SQLite copies).
    fn hold_write_lock(&self, file: DbFile, duration: std::time::Duration) -> Result<()> {
        let _ = (file, duration);
        Err(Error::invalid("hold_write_lock is a diagnostic of SQLite stores"))
    }
}

/// One of the two database files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFile {
    Jobs,
    Audit,
}
