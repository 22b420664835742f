//! The store: the library's Rust API. It validates every input, makes ids and timestamps, and
//! hands finished records to a storage engine. Nothing here knows about FFI or SQL.

use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;

use crate::clock;
use crate::customer_ids;
use crate::error::{Error, ErrorKind, Result};
use crate::model::*;
use crate::options::StoreOptions;
use crate::net::allowlist::Allowlist;
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

/// Jobs and audit persistence over two database files. Safe to share between threads (`&Store`
/// is all any operation needs); a process forked after opening one may keep using it.
pub struct Store {
    pub(crate) engine: Box<dyn Engine>,
    pub(crate) options: StoreOptions,
    pub(crate) allowlist: Allowlist,
    pub(crate) http: HttpClient,
    pub(crate) events: EventSink,
    /// Set Action outcomes jobs.db would not take when they came (see `record_outcome`).
    pub(crate) waiting_outcomes: std::sync::Mutex<Vec<crate::set_action::WaitingOutcome>>,
    /// Jobs the recovery at open marked interrupted.
    recovered_at_open: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// A store going away records what it kept waiting (best effort: outcomes a still unwritable
/// store refuses are lost with the process, as they would be in a crash; recovery then marks
/// their jobs interrupted).
impl Drop for Store {
    fn drop(&mut self) {
        self.record_waiting_outcomes();
    }
}

impl Store {
    /// Open jobs.db and audit.db (created when missing, migrated in place when older, every row
    /// kept), then, best effort, mark jobs interrupted by a dead process FAILED and deliver audit
    /// rows waiting in the outbox. A file or directory that cannot be written opens read-only:
    /// reads work, writes fail with [`ErrorKind::ReadOnly`].
    ///
    /// ```
    /// use tms::{Store, StoreOptions, Synchronous};
    /// # let dir = tms::doctest::Dir::new();
    /// let options = StoreOptions { synchronous: Synchronous::Normal, ..Default::default() };
    /// let store = Store::open(dir.join("jobs.db"), dir.join("audit.db"), &options)?;
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn open(jobs_db: impl AsRef<Path>, audit_db: impl AsRef<Path>, options: &StoreOptions) -> Result<Store> {
        options.validate()?;
        let engine = SqliteEngine::open(jobs_db.as_ref(), audit_db.as_ref(), options)?;
        Store::with_engine(Box::new(engine), options)
    }

    /// Open a store on a PostgreSQL database (`postgresql://user:password@host:port/db?...` or
    /// `postgres://...`), for several dashboard hosts at once: jobs and the audit log live in that
    /// one database. The schema is created or brought up to date (once, however many hosts start
    /// together). TLS follows libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full` with `sslrootcert`). The password never appears in an error or event.
    ///
    /// ```no_run
    /// use tms::{Store, StoreOptions};
    /// let store = Store::open_postgres("postgresql://tms@db.example/tms?sslmode=verify-full", &StoreOptions::default())?;
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn open_postgres(url: &str, options: &StoreOptions) -> Result<Store> {
        options.validate()?;
        let engine = crate::storage::postgres::PostgresEngine::open(url, options)?;
        Store::with_engine(Box::new(engine), options)
    }

    /// Open a store where the C ABI and the Python binding say: a PostgreSQL URL (with `audit`
    /// None, empty or the same URL), or the paths of jobs.db and audit.db.
    ///
    /// ```
    /// use tms::{Store, StoreOptions};
    /// # let dir = tms::doctest::Dir::new();
    /// # let (jobs, audit) = (dir.join("jobs.db"), dir.join("audit.db"));
    /// let store = Store::open_location(jobs.to_str().unwrap(), Some(audit.to_str().unwrap()), &StoreOptions::default())?;
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn open_location(jobs: &str, audit: Option<&str>, options: &StoreOptions) -> Result<Store> {
        if crate::storage::postgres::is_postgres_url(jobs) {
            return match audit.filter(|a| !a.trim().is_empty()) {
                None => Store::open_postgres(jobs, options),
                Some(a) if a.trim() == jobs.trim() => Store::open_postgres(jobs, options),
                Some(_) => Err(Error::invalid(
                    "on PostgreSQL jobs and the audit log live in one database: give the audit location as \
                     NULL, empty or the same URL",
                )),
            };
        }
        let Some(audit) = audit.filter(|a| !a.is_empty()) else {
            return Err(Error::invalid("a SQLite store needs both files: the audit.db path is missing"));
        };
        if crate::storage::postgres::is_postgres_url(audit) {
            return Err(Error::invalid("jobs.db is a file path but the audit location is a PostgreSQL URL"));
        }
        Store::open(jobs, audit, options)
    }

    /// A store over an engine; then, best effort, recover interrupted jobs and deliver waiting
    /// audit rows (a store that cannot write now leaves this to another process or a later call).
    fn with_engine(engine: Box<dyn Engine>, options: &StoreOptions) -> Result<Store> {
        let mut store = Store {
            engine,
            options: options.clone(),
            allowlist: Allowlist::new(&options.allowed_clusters)?,
            http: HttpClient::new(options),
            events: EventSink::default(),
            waiting_outcomes: std::sync::Mutex::new(Vec::new()),
            recovered_at_open: 0,
        };
        if store.engine.read_only().is_none() {
            match store.recover_interrupted() {
                Err(e) if matches!(e.kind, ErrorKind::Busy | ErrorKind::ReadOnly | ErrorKind::Full) => {}
                other => store.recovered_at_open = other?,
            }
        }
        Ok(store)
    }

    /// How many jobs the recovery that opening runs marked interrupted.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// assert_eq!(store.recovered_at_open(), 0);
    /// ```
    pub fn recovered_at_open(&self) -> u64 {
        self.recovered_at_open
    }

    /// Where Set Action events go (nowhere by default): (level, event name, legacy log line).
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// store.set_event_callback(Some(std::sync::Arc::new(|_level, _event, line: &str| eprintln!("{line}"))));
    /// ```
    pub fn set_event_callback(&self, callback: Option<EventCallback>) {
        self.events.set(callback);
    }

    /// Create a job and all its customers in one durable transaction, all or nothing. Repeated
    /// and padded IDs collapse.
    ///
    /// ```
    /// use tms::model::NewJob;
    /// # let (store, _dir) = tms::doctest::store();
    /// let job = store.create_job(&NewJob {
    ///     user_id: "alice",
    ///     action_code: tms::action::map_action("PE-Enable")?.code,
    ///     action_name: "PE-Enable",
    ///     cids: vec!["c1", " c2", "c1"],
    ///     request_payload: Some((&serde_json::json!({"action": "PE-Enable"})).into()),
    ///     ..Default::default()
    /// })?;
    /// assert_eq!(job.customer_count, 2);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn create_job(&self, job: &NewJob<'_>) -> Result<CreatedJob> {
        let user_id = name("user_id", job.user_id)?;
        let action_name = name("action_name", job.action_name)?;
        let status = job.status.as_ref().unwrap_or(&JobStatus::InProgress).writable()?;
        let batch_id = optional(job.batch_id, |v| name("batch_id", v))?;
        let cluster_url = optional(job.cluster_url, |v| text("cluster_url", v))?;
        let payload_text = job.request_payload.map(|p| json_text("request_payload", p)).transpose()?;
        let request_payload = payload_text.as_deref();
        let response_summary = optional(job.response_summary, |v| text("response_summary", v))?;
        let cids = customer_ids::normalize(&job.cids)?;

        let job_id = crate::uuid::new_v4()?;
        let created_at = clock::local_iso(SystemTime::now());
        self.engine.insert_job(&JobRecord {
            set_action: false,
            job_id: &job_id,
            user_id,
            batch_id,
            action_code: job.action_code.get(),
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
    /// An unknown job is [`ErrorKind::NotFound`].
    ///
    /// ```
    /// use tms::model::{JobStatus, JobUpdate};
    /// # let (store, _dir) = tms::doctest::store();
    /// # let job_id = tms::doctest::job(&store);
    /// store.update_job(&job_id, &JobUpdate { status: JobStatus::Failed, http_status: Some(401),
    ///                                        error_message: Some("denied"), ..Default::default() })?;
    /// assert_eq!(store.get_job(&job_id)?.status, Some(JobStatus::Failed));
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn update_job(&self, job_id: &str, update: &JobUpdate<'_>) -> Result<()> {
        let job_id = name("job_id", job_id)?;
        let changed = self.engine.update_job(&JobChange {
            job_id,
            status: update.status.writable()?,
            http_status: update.http_status,
            error_message: optional(update.error_message, |v| text("error_message", v))?,
            response_summary: optional(update.response_summary, |v| text("response_summary", v))?,
            updated_at: &clock::local_iso(SystemTime::now()),
        })?;
        if changed { Ok(()) } else { Err(no_job(job_id)) }
    }

    /// Every column of a job and its customer count; an unknown job is [`ErrorKind::NotFound`].
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// # let job_id = tms::doctest::job(&store);
    /// let job = store.get_job(&job_id)?;
    /// assert_eq!(job.customer_count, 2);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn get_job(&self, job_id: &str) -> Result<JobDetails> {
        let job_id = name("job_id", job_id)?;
        self.engine.job(job_id)?.ok_or_else(|| no_job(job_id))
    }

    /// A user's jobs, newest first, each with its customer count; `limit` is 0 to 100,000.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// # tms::doctest::job(&store);
    /// let jobs = store.get_user_jobs("alice", 50)?;
    /// assert_eq!(jobs.len(), 1);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn get_user_jobs(&self, user_id: &str, limit: i64) -> Result<Vec<JobSummary>> {
        self.engine.user_jobs(name("user_id", user_id)?, checked_limit(limit)?)
    }

    /// The job's customer IDs, sorted; an unknown job is [`ErrorKind::NotFound`].
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// # let job_id = tms::doctest::job(&store);
    /// assert_eq!(store.get_job_customers(&job_id)?, ["c1", "c2"]);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn get_job_customers(&self, job_id: &str) -> Result<Vec<String>> {
        let job_id = name("job_id", job_id)?;
        self.engine.job_customers(job_id)?.ok_or_else(|| no_job(job_id))
    }

    /// Write one audit row (the legacy `log_action`) on the hash chain; returns its id. An
    /// HMAC-keyed chain refuses a store without its key ([`ErrorKind::AuditKeyMismatch`]).
    ///
    /// ```
    /// use tms::model::AuditEntry;
    /// # let (store, _dir) = tms::doctest::store();
    /// let id = store.record_audit(&AuditEntry { user_id: "alice", action_type: "Trans-Begin",
    ///                                           customer_ids: Some(r#"["c1"]"#), ..Default::default() })?;
    /// assert!(id > 0);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn record_audit(&self, entry: &AuditEntry<'_>) -> Result<i64> {
        let status = entry.status.as_ref().unwrap_or(&AuditStatus::Success).writable()?;
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
    ///
    /// ```
    /// use tms::model::{AuditEntry, AuditFilter};
    /// # let (store, _dir) = tms::doctest::store();
    /// store.record_audit(&AuditEntry { user_id: "bob", action_type: "PE-Enable", customer_ids: Some("c10"), ..Default::default() })?;
    /// let rows = store.audit_trail(&AuditFilter { customer_id: Some("c1"), ..Default::default() }, 50)?;
    /// assert!(rows.is_empty()); // c1 does not match c10
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn audit_trail(&self, filter: &AuditFilter<'_>, limit: i64) -> Result<Vec<AuditRow>> {
        let filter = AuditFilter {
            user_id: optional(filter.user_id, |v| name("user_id", v))?,
            action_type: optional(filter.action_type, |v| name("action_type", v))?,
            customer_id: optional(filter.customer_id, |v| name("customer_id", v))?,
        };
        self.engine.audit_trail(&filter, checked_limit(limit)?)
    }

    /// The distinct action types recorded, sorted.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// assert!(store.action_types()?.is_empty());
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn action_types(&self) -> Result<Vec<String>> {
        self.engine.action_types()
    }

    /// Counts over the whole audit log.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// assert_eq!(store.audit_stats()?.total_records, 0);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn audit_stats(&self) -> Result<AuditStats> {
        self.engine.audit_stats()
    }

    /// Clear the audit log as an explicit, recorded reset: every row is deleted and one
    /// `audit_reset` row, chained to the last row cleared, records it. Returns how many were deleted.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// assert_eq!(store.clear_audit_logs()?, 0);
    /// assert_eq!(store.audit_stats()?.total_records, 1); // the reset row
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn clear_audit_logs(&self) -> Result<u64> {
        self.engine.clear_audit(&clock::utc_sql(SystemTime::now()))
    }

    /// Adopt into the chain the unchained rows a legacy writer appended after the chain began (plain
    /// INSERTs without chain columns, e.g. while the app was rolled back to the legacy code),
    /// which `verify_audit` otherwise reports as inserted for ever. One `audit_adopt_unchained`
    /// row, chained and written by the user `system`, commits to exactly those rows (count and
    /// digest over their ids and every column) and names how many, their ids and `reason`; the
    /// rows themselves are not changed. Afterwards `verify_audit` is ok, and any change to an
    /// adopted row, the adoption row or any other chained row still shows.
    ///
    /// `reason` is required: one line, 1 to 1000 bytes after trimming. Refused with
    /// [`ErrorKind::NotFound`] when nothing is unchained, [`ErrorKind::AuditChainBroken`] when
    /// anything else fails verification (nothing is written), [`ErrorKind::AuditKeyMismatch`] on an HMAC-keyed log without its key.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// let refused = store.adopt_unchained("rolled back for INC-42").unwrap_err();
    /// assert_eq!(refused.kind, tms::ErrorKind::NotFound); // nothing to adopt
    /// ```
    pub fn adopt_unchained(&self, reason: &str) -> Result<Adoption> {
        let reason = crate::audit_adopt::checked_reason(reason)?;
        self.engine.adopt_unchained(reason, &clock::utc_sql(SystemTime::now()))
    }

    /// Check the audit log's hash chain: the first row altered, removed or inserted out of chain,
    /// the rows written before the chain existed (unchained, not tampered), and the chain's head.
    /// `anchor` is a head (seq, hash) stored elsewhere earlier: if it is gone, the tail was cut.
    ///
    /// ```
    /// use tms::model::AuditEntry;
    /// # let (store, _dir) = tms::doctest::store();
    /// store.record_audit(&AuditEntry { user_id: "alice", action_type: "Trans-Begin", ..Default::default() })?;
    /// let v = store.verify_audit(None)?;
    /// let head = v.head.unwrap();
    /// assert!(v.ok && store.verify_audit(Some((head.seq, &head.hash)))?.ok);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn verify_audit(&self, anchor: Option<(i64, &str)>) -> Result<AuditVerification> {
        self.engine.verify_audit(anchor, &mut |_| {})
    }

    /// [`Store::verify_audit`], telling `progress` how many rows it has walked now and then (a
    /// log of millions of rows takes a while).
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// let mut walked = 0;
    /// assert!(store.verify_audit_with_progress(None, |n| walked = n)?.ok);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn verify_audit_with_progress(&self, anchor: Option<(i64, &str)>, mut progress: impl FnMut(u64)) -> Result<AuditVerification> {
        self.engine.verify_audit(anchor, &mut progress)
    }

    /// A signed checkpoint of the audit log's head, to ship somewhere the log's host cannot
    /// rewrite (see [`crate::audit_checkpoint`] for the format). `signing_key` is the private key
    /// file's text (`tms keygen`); it is never quoted in an error. `previous` is the last
    /// checkpoint this key signed (as shipped): when given, the log must still extend it, so a
    /// rewrite below it is never signed over. The whole log is verified first and only a log
    /// that verifies is signed: [`ErrorKind::AuditChainBroken`] when it does not (or no longer
    /// extends `previous`), [`ErrorKind::CheckpointInvalid`] when `previous` is not a checkpoint
    /// of this key, [`ErrorKind::AuditKeyMismatch`] when the rows are HMAC-keyed and this store
    /// has no key, [`ErrorKind::NotFound`] when no row is chained yet,
    /// [`ErrorKind::InvalidInput`] for a signing key that is not one.
    ///
    /// ```
    /// use tms::model::AuditEntry;
    /// # let (store, _dir) = tms::doctest::store();
    /// let keys = tms::audit_checkpoint::generate_keys("audit.example")?;
    /// store.record_audit(&AuditEntry { user_id: "alice", action_type: "Trans-Begin", ..Default::default() })?;
    /// let first = store.audit_checkpoint(&keys.private, None)?;
    /// store.record_audit(&AuditEntry { user_id: "bob", action_type: "Trans-Begin", ..Default::default() })?;
    /// let second = store.audit_checkpoint(&keys.private, Some(&first))?; // the log extends `first`
    /// assert!(second.starts_with("audit.example\n2\nsha256:"));
    /// assert!(store.verify_audit_checkpoint(&first, &keys.public)?.verification.ok);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn audit_checkpoint(&self, signing_key: &str, previous: Option<&str>) -> Result<String> {
        self.audit_checkpoint_with_progress(signing_key, previous, |_| {})
    }

    /// [`Store::audit_checkpoint`], telling `progress` how many rows the verification walked.
    pub fn audit_checkpoint_with_progress(&self, signing_key: &str, previous: Option<&str>, mut progress: impl FnMut(u64)) -> Result<String> {
        use crate::audit_checkpoint::{SigningKey, VerifierKey, explain_anchor_problem, rfc3339};
        let key = SigningKey::parse(signing_key)?;
        let previous = match previous {
            None => None,
            Some(text) => Some(VerifierKey::parse(&key.public_key())?.open(text).map_err(|e| e.context("the previous checkpoint"))?),
        };
        let mut report = self.engine.verify_audit(previous.as_ref().map(|p| (p.seq, p.hash.as_str())), &mut progress)?;
        if let Some(p) = &previous {
            explain_anchor_problem(&mut report, p);
        }
        if let Some(p) = report.first_problem {
            let kind = if p.problem == ProblemKind::Unverifiable { ErrorKind::AuditKeyMismatch } else { ErrorKind::AuditChainBroken };
            return Err(Error::new(kind, format!("the audit log does not verify, so no checkpoint was signed: {} ({})", p.detail, p.problem)));
        }
        let head = report.head.ok_or_else(|| Error::not_found("the audit log has no chained row yet: there is no head to sign"))?;
        Ok(key.sign(&head, &rfc3339(&clock::utc_sql(SystemTime::now()))))
    }

    /// Whether the audit log still extends a signed checkpoint: the checkpoint's signature must
    /// verify with `public_key` (the public key file's text) and name that key's log, else
    /// [`ErrorKind::CheckpointInvalid`]; then the whole log is verified with the checkpoint's
    /// head as its anchor. Not ok (a report, not an error) when rows were cut from the end past
    /// the checkpoint (`cut`), a row before it changed or was inserted (`altered`, `inserted`, or
    /// `altered` at the checkpoint's seq when the chain was recomputed, with or without the
    /// HMAC key), or the log fails verification in any other way. A log that grew since passes.
    pub fn verify_audit_checkpoint(&self, checkpoint: &str, public_key: &str) -> Result<crate::audit_checkpoint::CheckpointVerification> {
        self.verify_audit_checkpoint_with_progress(checkpoint, public_key, |_| {})
    }

    /// [`Store::verify_audit_checkpoint`], telling `progress` how many rows it has walked.
    pub fn verify_audit_checkpoint_with_progress(
        &self,
        checkpoint: &str,
        public_key: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<crate::audit_checkpoint::CheckpointVerification> {
        let key = crate::audit_checkpoint::VerifierKey::parse(public_key)?;
        let checkpoint = key.open(checkpoint)?;
        let mut verification = self.engine.verify_audit(Some((checkpoint.seq, &checkpoint.hash)), &mut progress)?;
        crate::audit_checkpoint::explain_anchor_problem(&mut verification, &checkpoint);
        Ok(crate::audit_checkpoint::CheckpointVerification { verification, checkpoint })
    }

    /// `(found, needed)` when the store was opened on an older schema version that it left as
    /// it was: a PostgreSQL v3 schema opened by a role that may not upgrade it (the app's role of
    /// the README's two roles) or on a read-only server. The store works on it (audit rows take
    /// v3's locked path); `tms migrate` reports it as not migrated. None on SQLite, which upgrades.
    pub fn schema_kept(&self) -> Option<(i64, i64)> {
        self.engine.schema_kept()
    }

    /// How much the store holds: jobs (by status), customers, audit rows (chained, waiting in the
    /// outbox) and cache entries, read in one snapshot per file.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// # tms::doctest::job(&store);
    /// assert_eq!(store.counts()?.job_customers, 2);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn counts(&self) -> Result<crate::model::StoreCounts> {
        self.engine.counts()
    }

    /// Metrics in the Prometheus text exposition format (0.0.4), for a `/metrics` route
    /// (content type `text/plain; version=0.0.4`): jobs by status, audit rows and rows waiting in
    /// the outbox (gauges read from the database now), and this process's Set Action calls by
    /// outcome (`tms_set_actions_total`) and their durations (`tms_set_action_duration_seconds`),
    /// counted per process since it loaded libtms.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// let text = store.metrics()?;
    /// assert!(text.contains("# TYPE tms_set_actions_total counter") && text.contains("tms_audit_rows 0"));
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn metrics(&self) -> Result<String> {
        Ok(crate::metrics::render(&self.engine.counts()?, &crate::metrics::SET_ACTIONS))
    }

    /// Back a SQLite store up into `dir` (which must not hold jobs.db or audit.db yet) while
    /// writers go on: SQLite's online backup gives each copy one consistent state of its file,
    /// and each copy is checked (integrity_check). Returns the copies' paths; `progress` hears
    /// (pages done, pages in all) per file. A PostgreSQL store refuses (use pg_dump).
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// # let backups = tms::doctest::Dir::new();
    /// let files = store.backup_to(backups.join("nightly"), |_, _| {})?;
    /// assert_eq!(files.len(), 2);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn backup_to(&self, dir: impl AsRef<Path>, mut progress: impl FnMut(u64, u64)) -> Result<Vec<std::path::PathBuf>> {
        let dir = dir.as_ref();
        // The directories made here must survive a power cut with the files in them: each new
        // one's entry is synced in its parent once the backup is done (SQLite syncs only the
        // directory holding the files).
        let new_dirs: Vec<&Path> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).collect();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::new(ErrorKind::CantOpen, format!("cannot create {}: {e}", dir.display())))?;
        let files = self.engine.backup(dir, &mut progress)?;
        for parent in new_dirs.iter().filter_map(|d| d.parent()) {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::new(ErrorKind::Database, format!("cannot sync the directory {}: {e}", parent.display())))?;
        }
        Ok(files)
    }

    /// The cached status data for (cid, app), or None when missing or older than `ttl_seconds`.
    ///
    /// ```
    /// use serde_json::json;
    /// # let (store, _dir) = tms::doctest::store();
    /// store.cache_put("c1", "ALL", &json!({"ready": true}), 1800)?;
    /// assert_eq!(store.cache_get("c1", "ALL", 1800)?, Some(json!({"ready": true})));
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn cache_get(&self, cid: &str, app_name: &str, ttl_seconds: i64) -> Result<Option<Value>> {
        let fresh_since = clock::local_iso_ago(checked_ttl(ttl_seconds)?);
        let data =
            self.engine.cache_get(name("cid", cid)?, name("app_name", app_name)?, &fresh_since)?;
        Ok(data.map(|t| parse_json_or_text(Some(t))))
    }

    /// Look up many cids at once; repeats in `cids` are looked up once.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// store.cache_put("c1", "ALL", &serde_json::json!(1), 1800)?;
    /// let batch = store.cache_get_batch(&["c1", "c2"], "ALL", 1800)?;
    /// assert_eq!((batch.hit_count, batch.misses), (1, vec!["c2".to_string()]));
    /// # Ok::<(), tms::Error>(())
    /// ```
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

    /// Insert or replace the cached data for (cid, app): a JSON value, or JSON text.
    ///
    /// ```
    /// use tms::model::Json;
    /// # let (store, _dir) = tms::doctest::store();
    /// store.cache_put("c1", "ALL", Json::Text(r#"{"ready":false}"#), 600)?;
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn cache_put<'a>(&self, cid: &str, app_name: &str, status_data: impl Into<Json<'a>>, ttl_seconds: i64) -> Result<()> {
        let data = json_text("status_data", status_data.into())?;
        self.engine.cache_put(&CacheRecord {
            cid: name("cid", cid)?,
            app_name: name("app_name", app_name)?,
            status_data: &data,
            cached_at: &clock::local_iso(SystemTime::now()),
            ttl_seconds: checked_ttl(ttl_seconds)?,
        })
    }

    /// Delete entries older than `ttl_seconds`; returns how many.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// assert_eq!(store.cache_cleanup(1800)?, 0);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn cache_cleanup(&self, ttl_seconds: i64) -> Result<u64> {
        self.engine.cache_delete_older(&clock::local_iso_ago(checked_ttl(ttl_seconds)?))
    }

    /// Delete entries matching cid and/or app (both None: all); returns how many.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// store.cache_put("c1", "ALL", &serde_json::json!(1), 1800)?;
    /// assert_eq!(store.cache_invalidate(Some("c1"), None)?, 1);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn cache_invalidate(&self, cid: Option<&str>, app_name: Option<&str>) -> Result<u64> {
        self.engine.cache_invalidate(
            optional(cid, |v| name("cid", v))?,
            optional(app_name, |v| name("app_name", v))?,
        )
    }

    /// The cache's size.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// assert_eq!(store.cache_stats()?.total_entries, 0);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn cache_stats(&self) -> Result<CacheStats> {
        self.engine.cache_stats()
    }

    /// Hold one file's write lock for `millis` ms and release it having written nothing. A
    /// diagnostic: it lets tests prove that locks survive another SQLite user in the process and
    /// that a lock held past the busy timeout is reported as busy.
    #[doc(hidden)]
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

/// JSON as the text a column stores: a value serialized compactly, or text checked to parse
/// (it is parsed back when read).
fn json_text<'a>(field: &str, value: Json<'a>) -> Result<std::borrow::Cow<'a, str>> {
    match value {
        Json::Value(v) => {
            let t = serde_json::to_string(v)?;
            text(field, &t)?;
            Ok(t.into())
        }
        Json::Text(t) => {
            let t = text(field, t)?;
            serde_json::from_str::<serde::de::IgnoredAny>(t)
                .map_err(|e| Error::invalid(format!("{field} is not valid JSON: {e}")))?;
            Ok(t.into())
        }
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
