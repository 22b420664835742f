//! The store: the library's Rust API. It validates every input, makes ids and timestamps, and
//! hands finished records to a storage engine. Nothing here knows about FFI or SQL.

use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;

use crate::action::{MAX_ACTION_CODE, MIN_ACTION_CODE};
use crate::clock;
use crate::customer_ids;
use crate::error::{Error, ErrorKind, Result};
use crate::model::*;
use crate::options::StoreOptions;
use crate::set_action::allowlist::Allowlist;
use crate::set_action::events::{EventCallback, EventSink};
use crate::set_action::http::HttpClient;
use crate::storage::sqlite::SqliteEngine;
use crate::storage::{AuditRecord, CacheRecord, DbFile, Engine, JobChange, JobRecord};

/// Longest identifier-like value (user id, action name, status, ip, app name ...), in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest free-text value (payloads, summaries, messages, URLs), in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024 * 1024;
/// Largest `limit` a list query accepts.
pub const MAX_LIMIT: i64 = 100_000;
/// The legacy default cache lifetime.
pub const DEFAULT_CACHE_TTL_S: i64 = 1800;

/// Jobs and audit persistence over two database files. Safe to share between threads (`&Store`
/// is all any operation needs).
pub struct Store {
    pub(crate) engine: Box<dyn Engine>,
    pub(crate) options: StoreOptions,
    pub(crate) allowlist: Allowlist,
    pub(crate) http: HttpClient,
    pub(crate) events: EventSink,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Open jobs.db and audit.db (created when missing, migrated when older) with the SQLite
    /// engine, then mark jobs interrupted by a dead process as FAILED.
    pub fn open(jobs_db: impl AsRef<Path>, audit_db: impl AsRef<Path>, options: &StoreOptions) -> Result<Store> {
        options.validate()?;
        let engine = SqliteEngine::open(jobs_db.as_ref(), audit_db.as_ref(), options)?;
        let store = Store {
            engine: Box::new(engine),
            options: options.clone(),
            allowlist: Allowlist::new(&options.allowed_clusters)?,
            http: HttpClient::new(options),
            events: EventSink::default(),
        };
        // Best effort: a store that cannot write now (busy, read-only, no audit key) leaves this
        // to another process or a later call.
        if store.engine.read_only().is_none() {
            match store.recover_interrupted() {
                Err(e) if matches!(e.kind, ErrorKind::Busy | ErrorKind::ReadOnly | ErrorKind::Full) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(store)
    }

    /// Where Set Action events go (nowhere by default).
    pub fn set_event_callback(&self, callback: Option<EventCallback>) {
        self.events.set(callback);
    }

    /// Create a job and all its customers in one transaction. Repeated and padded IDs collapse.
    pub fn create_job(&self, job: &NewJob<'_>) -> Result<CreatedJob> {
        let user_id = name("user_id", job.user_id)?;
        let action_name = name("action_name", job.action_name)?;
        if !(MIN_ACTION_CODE..=MAX_ACTION_CODE).contains(&job.action_code) {
            return Err(Error::invalid(format!(
                "action_code {} is out of range {MIN_ACTION_CODE}-{MAX_ACTION_CODE}",
                job.action_code
            )));
        }
        let status = job_status(job.status.unwrap_or("IN_PROGRESS"))?;
        let batch_id = optional(job.batch_id, |v| name("batch_id", v))?;
        let cluster_url = optional(job.cluster_url, |v| text("cluster_url", v))?;
        let request_payload = optional(job.request_payload, |v| json("request_payload", v))?;
        let response_summary = optional(job.response_summary, |v| text("response_summary", v))?;
        let cids = customer_ids::normalize(&job.cids)?;

        let job_id = crate::uuid::new_v4()?;
        let created_at = clock::local_iso(SystemTime::now());
        self.engine.insert_job(&JobRecord {
            job_id: &job_id,
            user_id,
            batch_id,
            action_code: job.action_code,
            action_name,
            cluster_url,
            created_at: &created_at,
            request_payload,
            response_summary,
            status,
            cids: &cids,
        })?;
        Ok(CreatedJob {
            job_id,
            user_id: user_id.to_owned(),
            action_code: job.action_code,
            action_name: action_name.to_owned(),
            customer_count: cids.len(),
            created_at,
        })
    }

    /// Change a job's status and whichever other fields are given; `updated_at` always changes.
    pub fn update_job(&self, job_id: &str, update: &JobUpdate<'_>) -> Result<()> {
        let job_id = name("job_id", job_id)?;
        let changed = self.engine.update_job(&JobChange {
            job_id,
            status: job_status(update.status)?,
            http_status: update.http_status,
            error_message: optional(update.error_message, |v| text("error_message", v))?,
            response_summary: optional(update.response_summary, |v| text("response_summary", v))?,
            updated_at: &clock::local_iso(SystemTime::now()),
        })?;
        if changed { Ok(()) } else { Err(no_job(job_id)) }
    }

    pub fn get_job(&self, job_id: &str) -> Result<JobDetails> {
        let job_id = name("job_id", job_id)?;
        self.engine.job(job_id)?.ok_or_else(|| no_job(job_id))
    }

    /// A user's jobs, newest first, each with its customer count.
    pub fn get_user_jobs(&self, user_id: &str, limit: i64) -> Result<Vec<JobSummary>> {
        self.engine.user_jobs(name("user_id", user_id)?, checked_limit(limit)?)
    }

    /// The job's customer IDs, sorted.
    pub fn get_job_customers(&self, job_id: &str) -> Result<Vec<String>> {
        let job_id = name("job_id", job_id)?;
        self.engine.job_customers(job_id)?.ok_or_else(|| no_job(job_id))
    }

    /// Write one audit row (the legacy `log_action`); returns its id.
    pub fn record_audit(&self, entry: &AuditEntry<'_>) -> Result<i64> {
        let status = entry.status.unwrap_or("success");
        if !AUDIT_STATUSES.contains(&status) {
            return Err(Error::invalid(format!(
                "audit status {status:?} is not one of {AUDIT_STATUSES:?}"
            )));
        }
        if crate::audit_chain::RESERVED_ACTIONS.contains(&entry.action_type) {
            return Err(Error::invalid(format!(
                "action_type {:?} is reserved for the rows the library itself writes (clear_audit_logs \
                 records its reset)",
                entry.action_type
            )));
        }
        if entry.duration_ms.is_some_and(|d| d < 0) {
            return Err(Error::invalid("duration_ms is negative"));
        }
        self.engine.insert_audit(&AuditRecord {
            user_id: name("user_id", entry.user_id)?,
            action_type: name("action_type", entry.action_type)?,
            customer_ids: optional(entry.customer_ids, |v| text("customer_ids", v))?,
            timestamp: &clock::utc_sql(SystemTime::now()),
            ip_address: optional(entry.ip_address, |v| name("ip_address", v))?,
            status,
            error_message: optional(entry.error_message, |v| text("error_message", v))?,
            duration_ms: entry.duration_ms,
        })
    }

    /// Audit rows newest first, filtered; a customer ID matches whole IDs only.
    pub fn audit_trail(&self, filter: &AuditFilter<'_>, limit: i64) -> Result<Vec<AuditRow>> {
        let filter = AuditFilter {
            user_id: optional(filter.user_id, |v| name("user_id", v))?,
            action_type: optional(filter.action_type, |v| name("action_type", v))?,
            customer_id: optional(filter.customer_id, |v| name("customer_id", v))?,
        };
        self.engine.audit_trail(&filter, checked_limit(limit)?)
    }

    pub fn action_types(&self) -> Result<Vec<String>> {
        self.engine.action_types()
    }

    pub fn audit_stats(&self) -> Result<AuditStats> {
        self.engine.audit_stats()
    }

    /// Clear the audit log as an explicit, recorded reset: every row is deleted and one
    /// `audit_reset` row, chained to the last row cleared, records it. Returns how many were deleted.
    pub fn clear_audit_logs(&self) -> Result<u64> {
        self.engine.clear_audit(&clock::utc_sql(SystemTime::now()))
    }

    /// Check the audit log's hash chain: the first row altered, removed or inserted out of chain,
    /// the rows written before the chain existed (unchained, not tampered), and the chain's head.
    /// `anchor` is a head (seq, hash) stored elsewhere earlier: if it is gone, the tail was cut.
    pub fn verify_audit(&self, anchor: Option<(i64, &str)>) -> Result<AuditVerification> {
        self.engine.verify_audit(anchor)
    }

    /// The cached status data for (cid, app), or None when missing or older than `ttl_seconds`.
    pub fn cache_get(&self, cid: &str, app_name: &str, ttl_seconds: i64) -> Result<Option<Value>> {
        let fresh_since = clock::local_iso_ago(checked_ttl(ttl_seconds)?);
        let data =
            self.engine.cache_get(name("cid", cid)?, name("app_name", app_name)?, &fresh_since)?;
        Ok(data.map(|t| parse_json_or_text(Some(t))))
    }

    /// Look up many cids at once; repeats in `cids` are looked up once.
    pub fn cache_get_batch(&self, cids: &[&str], app_name: &str, ttl_seconds: i64) -> Result<CacheBatch> {
        let fresh_since = clock::local_iso_ago(checked_ttl(ttl_seconds)?);
        let app_name = name("app_name", app_name)?;
        let mut batch = CacheBatch::default();
        let cids = customer_ids::normalize(cids)?;
        let found = self.engine.cache_get_many(&cids, app_name, &fresh_since)?;
        for (cid, data) in cids.into_iter().zip(found) {
            match data {
                Some(t) => {
                    batch.hits.insert(cid, parse_json_or_text(Some(t)));
                }
                None => batch.misses.push(cid),
            }
        }
        batch.hit_count = batch.hits.len();
        batch.miss_count = batch.misses.len();
        Ok(batch)
    }

    /// Insert or replace the cached data (JSON text) for (cid, app).
    pub fn cache_put(&self, cid: &str, app_name: &str, status_json: &str, ttl_seconds: i64) -> Result<()> {
        self.engine.cache_put(&CacheRecord {
            cid: name("cid", cid)?,
            app_name: name("app_name", app_name)?,
            status_data: json("status_data", status_json)?,
            cached_at: &clock::local_iso(SystemTime::now()),
            ttl_seconds: checked_ttl(ttl_seconds)?,
        })
    }

    /// Delete entries older than `ttl_seconds`; returns how many.
    pub fn cache_cleanup(&self, ttl_seconds: i64) -> Result<u64> {
        self.engine.cache_delete_older(&clock::local_iso_ago(checked_ttl(ttl_seconds)?))
    }

    /// Delete entries matching cid and/or app (both None: all); returns how many.
    pub fn cache_invalidate(&self, cid: Option<&str>, app_name: Option<&str>) -> Result<u64> {
        self.engine.cache_invalidate(
            optional(cid, |v| name("cid", v))?,
            optional(app_name, |v| name("app_name", v))?,
        )
    }

    pub fn cache_stats(&self) -> Result<CacheStats> {
        self.engine.cache_stats()
    }

    /// Hold one file's write lock for `millis` ms and release it having written nothing. A
    /// diagnostic: it lets tests prove that locks survive another SQLite user in the process and
    /// that a lock held past the busy timeout is reported as busy.
    pub fn hold_write_lock(&self, file: DbFile, millis: u32) -> Result<()> {
        if millis > 60_000 {
            return Err(Error::invalid("hold_write_lock: at most 60000 ms"));
        }
        self.engine.hold_write_lock(file, std::time::Duration::from_millis(millis.into()))
    }
}

fn no_job(job_id: &str) -> Error {
    Error::not_found(format!("no job with id {job_id:?}"))
}

fn optional<'a>(v: Option<&'a str>, check: impl FnOnce(&'a str) -> Result<&'a str>) -> Result<Option<&'a str>> {
    v.map(check).transpose()
}

/// An identifier-like value: not blank, not over [`MAX_NAME_BYTES`], no control characters.
pub(crate) fn name<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.trim().is_empty() {
        return Err(Error::invalid(format!("{field} is empty")));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("{field} is {} bytes; at most {MAX_NAME_BYTES} are allowed", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(format!("{field} {} contains a control character", crate::error::shown(value))));
    }
    Ok(value)
}

/// Free text: anything up to [`MAX_TEXT_BYTES`] except NUL (which C callers cannot pass anyway).
fn text<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    if value.len() > MAX_TEXT_BYTES {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("{field} is {} bytes; at most {MAX_TEXT_BYTES} are allowed", value.len()),
        ));
    }
    if value.contains('\0') {
        return Err(Error::invalid(format!("{field} contains a NUL character")));
    }
    Ok(value)
}

/// Free text that must be JSON (it is parsed back when read).
fn json<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    let value = text(field, value)?;
    serde_json::from_str::<serde::de::IgnoredAny>(value)
        .map_err(|e| Error::invalid(format!("{field} is not valid JSON: {e}")))?;
    Ok(value)
}

fn job_status(status: &str) -> Result<&str> {
    if JOB_STATUSES.contains(&status) {
        Ok(status)
    } else {
        Err(Error::invalid(format!("job status {status:?} is not one of {JOB_STATUSES:?}")))
    }
}

fn checked_limit(limit: i64) -> Result<u32> {
    if (0..=MAX_LIMIT).contains(&limit) {
        Ok(limit as u32)
    } else {
        Err(Error::invalid(format!("limit {limit} is out of range 0-{MAX_LIMIT}")))
    }
}

fn checked_ttl(ttl: i64) -> Result<i64> {
    if (0..=10 * 365 * 24 * 3600).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(Error::invalid(format!("ttl_seconds {ttl} is out of range (0 to 10 years)")))
    }
}
