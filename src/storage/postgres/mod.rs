//! The PostgreSQL engine: several dashboard hosts share one database. Jobs and the audit log live
//! in the same database, so a Set Action's outcome and its audit row commit in one transaction
//! (no outbox); the chain's head row, locked FOR UPDATE, orders appends from every host into one
//! chain; recovery uses the server's clock and skips rows another host is writing.

mod audit;
mod cache;
mod copy;
mod jobs;
pub mod location;
mod pool;
mod requests;
mod schema;
mod tls;

use postgres::error::SqlState;

use crate::audit_chain::{ChainKey, CheckedHead};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{AuditFilter, AuditRow, AuditStats, AuditVerification, CacheStats, JobDetails, JobSummary};
use crate::options::StoreOptions;
use crate::storage::{
    AuditDelivery, AuditRecord, CacheExport, CacheRecord, Engine, IdempotencyKey, Imported, JobChange, JobExport,
    JobRecord, PriorRequest,
};
use location::Location;
use pool::{Cache, Pool};

pub use location::is_postgres_url;

/// A PostgreSQL error as the library reports it: the SQLSTATE decides the kind; the message is
/// the server's (which never holds the password).
pub(crate) fn pg_error(e: postgres::Error) -> Error {
    let kind = match e.code() {
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::QUERY_CANCELED =>
        {
            ErrorKind::Busy
        }
        Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::OUT_OF_MEMORY => ErrorKind::Full,
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => ErrorKind::ReadOnly,
        // 57P0x: the server is shutting down, restarting or terminated the session.
        Some(c) if c.code().starts_with("08")
            || c.code().starts_with("28")
            || c.code().starts_with("57P")
            || *c == SqlState::INVALID_CATALOG_NAME =>
        {
            ErrorKind::CantOpen
        }
        Some(_) => ErrorKind::Database,
        // No SQLSTATE: the connection itself failed (refused, closed, TLS).
        None => ErrorKind::CantOpen,
    };
    let message = match e.as_db_error() {
        Some(db) => format!("database error: {}: {}", db.severity(), db.message()),
        None => format!("database error: {e}"),
    };
    Error::new(kind, message)
}

/// Attempts of one call when its connection is lost: the first, and one on a fresh connection.
/// More would only wait out an outage the caller should hear about (a Set Action keeps its
/// outcome and audit row waiting and records them later).
const ATTEMPTS: u32 = 2;

/// Whether a transaction may run again after its connection was lost while COMMIT was in
/// flight (when it is unknown whether the first run committed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Running it again changes nothing if the first run committed (an update to fixed values,
    /// an insert that first looks for its own row, an audit row behind a receipt).
    Safe,
    /// A second run would write a second time (an audit row appended to the chain): repeated
    /// only when the connection was lost before COMMIT was sent.
    BeforeCommitOnly,
}

pub struct PostgresEngine {
    pool: Pool,
    chain: ChainKey,
    checked_head: CheckedHead,
    /// Set when the server only reads (a standby): every write is refused up front.
    read_only: bool,
    /// Whether the schema found at open has `tms_audit_append_at` (v4): a v3 schema that this
    /// role may not upgrade is written through v3's locked path until the store is opened again
    /// (v3's functions stay in v4, so that path still works after the owner's `tms migrate`).
    append_at: bool,
    /// The schema version found at open, when it is older than this library's and was kept
    /// (the role may not upgrade it, or the server is read-only): `tms migrate` must say so.
    schema_kept: Option<i64>,
}

impl std::fmt::Debug for PostgresEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEngine").field("location", self.pool.location()).finish_non_exhaustive()
    }
}

/// The schema the store lives in: the current schema (the first of the session's search_path that
/// exists; a URL sets the path with `options=-csearch_path%3D...`). A path whose first schema
/// is named but missing is refused rather than followed to the next one: a mistyped schema would
/// otherwise put a new, empty store in `public`, or use another schema's tables of the same names.
fn store_schema(client: &mut postgres::Client) -> Result<String> {
    let row = client
        .query_one("SELECT current_schema()::text, current_setting('search_path')", &[])
        .map_err(pg_error)?;
    let (current, path): (Option<String>, String) = (row.get(0), row.get(1));
    let first = path.split(',').map(str::trim).find(|s| !s.is_empty()).unwrap_or("");
    let first_name = match first.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => first.to_lowercase(), // unquoted names fold to lower case
    };
    // PostgreSQL truncates a longer identifier to 63 bytes, as it did when the schema was made.
    let mut first_name = first_name;
    if first_name.len() > 63 {
        let mut cut = 63;
        while !first_name.is_char_boundary(cut) {
            cut -= 1;
        }
        first_name.truncate(cut);
    }
    match current {
        None => Err(Error::new(
            ErrorKind::CantOpen,
            format!("no schema of the search_path ({path}) exists: create the store's schema, or fix the URL's options"),
        )),
        Some(current) if first_name != "$user" && first_name != current => Err(Error::new(
            ErrorKind::CantOpen,
            format!(
                "the search_path ({path}) names schema {first_name:?} first, which does not exist (or this role may not \
                 use it): refused rather than putting the store in {current:?}; create the schema, or fix the URL's options"
            ),
        )),
        Some(current) => Ok(current),
    }
}

impl PostgresEngine {
    /// Connect (one connection now, so that a bad URL or password fails here), check the server
    /// may be written, and bring the schema up to date.
    pub fn open(url: &str, options: &StoreOptions) -> Result<PostgresEngine> {
        refuse_sqlite_only_options(options)?;
        let location = Location::parse(url)?;
        let (mut pool, mut first) = Pool::open(location, options)?;
        let schema = store_schema(&mut first.client).map_err(|e| e.context(&format!("cannot open {}", pool.location().shown())))?;
        pool.pin_search_path(&schema, &mut first)?;
        let read_only: String = first
            .client
            .query_one("SHOW transaction_read_only", &[])
            .map_err(pg_error)?
            .get(0);
        let read_only = read_only == "on";
        if !options.create {
            // The schema on the URL's search path must hold a store already.
            let there: bool = first
                .client
                .query_one("SELECT to_regclass('jobs') IS NOT NULL AND to_regclass('audit_log') IS NOT NULL", &[])
                .map_err(pg_error)?
                .get(0);
            if !there {
                return Err(Error::new(
                    ErrorKind::CantOpen,
                    format!(
                        "{} holds no store (no jobs and audit_log tables on its search path); it is not created \
                         when it is missing (create: false; `tms init` creates one)",
                        pool.location().shown()
                    ),
                ));
            }
        }
        let version = schema::migrate(&mut first.client, !read_only)
            .map_err(|e| e.context(&format!("cannot open {}", pool.location().shown())))?;
        let append_at = schema::has_append_at(version);
        let schema_kept = (version < schema::SCHEMA_VERSION).then_some(version);
        pool.put(first);
        let chain = ChainKey::new(options.audit_hmac_key.as_ref().map(|k| k.0.as_str()));
        Ok(PostgresEngine { pool, chain, checked_head: CheckedHead::default(), read_only, append_at, schema_kept })
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::new(
                ErrorKind::ReadOnly,
                format!("{} is read-only (a standby server): writes are refused", self.pool.location().shown()),
            ));
        }
        Ok(())
    }

    /// Run `f` in a READ COMMITTED transaction. If the connection is lost (a restart, a
    /// failover, a terminated backend, a dead network), the transaction runs again on a fresh
    /// connection: always when it failed before COMMIT was sent (nothing was written), and after
    /// that only when `replay` says running it twice writes it once.
    fn write<T>(&self, replay: Replay, f: impl FnMut(&mut postgres::Transaction<'_>, &mut Cache) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        self.write_from(1, replay, f)
    }

    /// `write`, counting `attempt` as the first attempt of the transaction (a call whose single
    /// statement was lost in flight has had its first).
    fn write_from<T>(&self, mut attempt: u32, replay: Replay, mut f: impl FnMut(&mut postgres::Transaction<'_>, &mut Cache) -> Result<T>) -> Result<T> {
        loop {
            let mut conn = self.pool.get()?;
            let (result, committing) = {
                let pool::Conn { client, cache } = &mut *conn;
                match client.transaction() {
                    Err(e) => (Err(pg_error(e)), false),
                    Ok(mut tx) => match f(&mut tx, cache) {
                        Err(e) => (Err(e), false), // the transaction rolls back as it drops
                        Ok(value) => match tx.commit() {
                            Ok(()) => (Ok(value), false),
                            Err(e) => (Err(pg_error(e)), true),
                        },
                    },
                }
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !self.gone(&mut conn, &error) {
                return Err(error);
            }
            drop(conn);
            if attempt < ATTEMPTS && (!committing || replay == Replay::Safe) {
                attempt += 1;
                continue;
            }
            return Err(if committing {
                error.context("the connection to the server was lost while committing, so whether this write took effect is unknown")
            } else {
                error.context("the connection to the server was lost")
            });
        }
    }

    /// A write's first attempt as one statement that commits on its own (autocommit): one round
    /// trip, no BEGIN or COMMIT. Ok(None): the connection was lost with the statement in flight,
    /// so whether it committed is unknown: the caller reruns it as the second attempt of a
    /// transaction (`write_from(2, ...)`) that first looks for what it wrote. Any other error is
    /// the call's, as a transaction's would be.
    fn single<T>(&self, f: impl FnOnce(&mut postgres::Client, &mut Cache) -> Result<T>) -> Result<Option<T>> {
        self.check_writable()?;
        let mut conn = self.pool.get()?;
        let result = {
            let pool::Conn { client, cache } = &mut *conn;
            f(client, cache)
        };
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e) if self.gone(&mut conn, &e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Run a read; on a lost connection, once more on a fresh one (a read can always be repeated).
    fn read<T>(&self, mut f: impl FnMut(&mut postgres::Client, &mut Cache) -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            let mut conn = self.pool.get()?;
            let result = {
                let pool::Conn { client, cache } = &mut *conn;
                f(client, cache)
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if attempt < ATTEMPTS && self.gone(&mut conn, &e) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// After `error` on `conn`: whether the connection is gone (and so dropped, never reused).
    /// A read-only refusal (25006) on a store opened writable means the server was demoted in a
    /// failover: its connections go too, and a fresh one finds the new primary through the
    /// URL's host list and `target_session_attrs=read-write`.
    fn gone(&self, conn: &mut pool::Pooled<'_>, error: &Error) -> bool {
        let lost = if error.kind == ErrorKind::ReadOnly {
            conn.discard();
            true
        } else {
            conn.lost()
        };
        if lost {
            self.pool.drop_idle();
        }
        lost
    }

    /// A sent Set Action's audit row, appended only by the transaction that claims the job's
    /// receipt: a rerun after a lost commit, or a later delivery of a waiting outcome, never
    /// appends it twice.
    fn append_set_action_audit(&self, tx: &mut postgres::Transaction<'_>, cache: &mut Cache, job_id: &str, row: &AuditRecord<'_>) -> Result<()> {
        if requests::claim_audit_receipt(tx, cache, job_id)? {
            self.append_claimed_audit(tx, cache, job_id, row)?;
        }
        Ok(())
    }

    /// The audit row of job `job_id`, whose receipt this transaction has just claimed, and the
    /// receipt pointing at it.
    fn append_claimed_audit(&self, tx: &mut postgres::Transaction<'_>, cache: &mut Cache, job_id: &str, row: &AuditRecord<'_>) -> Result<()> {
        let id = audit::insert(tx, cache, row, &self.chain, &self.checked_head, self.append_at)?;
        requests::set_audit_receipt(tx, cache, job_id, id)
    }
}

/// A write of one statement that may run twice (`Replay::Safe`: fixed values, an upsert, a
/// delete by condition): committed on its own in one round trip; if the connection is lost with
/// it in flight, run again as the second attempt of a transaction (`write_from`), as before.
macro_rules! one_statement {
    ($engine:expr, |$c:ident, $cache:ident| $body:expr) => {{
        match $engine.single(|$c, $cache| $body)? {
            Some(value) => Ok(value),
            None => $engine.write_from(2, Replay::Safe, |$c, $cache| $body),
        }
    }};
}

/// Options that configure SQLite files mean nothing here: a value other than the default is
/// refused, so nobody believes it took effect.
fn refuse_sqlite_only_options(options: &StoreOptions) -> Result<()> {
    let default = StoreOptions::default();
    for (name, set) in [
        ("journal_size_limit_bytes", options.journal_size_limit_bytes != default.journal_size_limit_bytes),
        ("max_page_count", options.max_page_count != default.max_page_count),
    ] {
        if set {
            return Err(Error::invalid(format!(
                "invalid store options: {name} configures SQLite files and means nothing on PostgreSQL"
            )));
        }
    }
    Ok(())
}

impl Engine for PostgresEngine {
    fn read_only(&self) -> Option<Error> {
        self.check_writable().err()
    }
    fn schema_kept(&self) -> Option<(i64, i64)> {
        self.schema_kept.map(|found| (found, schema::SCHEMA_VERSION))
    }
    fn check_audit_key(&self) -> Result<()> {
        self.read(|c, cache| audit::check_head_key(c, cache, &self.chain, &self.checked_head))
    }

    fn insert_job(&self, job: &JobRecord<'_>) -> Result<()> {
        if let Some(()) = self.single(|c, cache| jobs::insert(c, cache, job))? {
            return Ok(());
        }
        // Lost in flight: a rerun finds the job there if the statement committed: done. (It
        // inserts only if absent, as a statement the server still runs may commit meanwhile.)
        self.write_from(2, Replay::Safe, |tx, cache| jobs::insert_unless_there(tx, cache, job))
    }
    fn update_job(&self, change: &JobChange<'_>) -> Result<bool> {
        one_statement!(self, |c, cache| jobs::update(c, cache, change))
    }
    fn job(&self, job_id: &str) -> Result<Option<JobDetails>> {
        self.read(|c, cache| jobs::details(c, cache, job_id))
    }
    fn user_jobs(&self, user_id: &str, limit: u32) -> Result<Vec<JobSummary>> {
        self.read(|c, cache| jobs::for_user(c, cache, user_id, limit))
    }
    fn job_customers(&self, job_id: &str) -> Result<Option<Vec<String>>> {
        // One statement: one snapshot for the existence check and the list.
        self.read(|c, cache| jobs::customers(c, cache, job_id))
    }

    fn insert_audit(&self, row: &AuditRecord<'_>) -> Result<i64> {
        if !self.append_at {
            // A v3 schema this role may not upgrade: v3's locked path, as the library before v4.
            return self.write(Replay::BeforeCommitOnly, |tx, cache| audit::insert(tx, cache, row, &self.chain, &self.checked_head, false));
        }
        // Commonly one statement: the row linked to the head this store last saw, appended by
        // the server only if that is still the head.
        let mut sent = None;
        match self.single(|c, cache| audit::append_at_head(c, cache, row, &self.chain, &self.checked_head, &mut sent))? {
            Some(Some(id)) => return Ok(id),
            // The locked path (a busy or unbegun chain, a head to judge under the lock).
            Some(None) => return self.write(Replay::BeforeCommitOnly, |tx, cache| audit::insert(tx, cache, row, &self.chain, &self.checked_head, self.append_at)),
            None => {}
        }
        // Lost in flight: the rerun first looks for the row sent, by its seq and the nonce only
        // this call sent (never another writer's row of the same content and link): a committed
        // one is answered, never written twice.
        self.write_from(2, Replay::BeforeCommitOnly, |tx, cache| {
            audit::insert_after_lost(tx, cache, row, &self.chain, &self.checked_head, sent.as_ref())
        })
    }
    fn insert_audit_durably(&self, row: &AuditRecord<'_>) -> Result<AuditDelivery> {
        // One database: a committed row is as durable as the outbox would make it.
        self.insert_audit(row).map(|_| AuditDelivery::Delivered)
    }
    fn audit_commits_with_outcome(&self) -> bool {
        true
    }
    fn insert_set_action_audit(&self, job_id: &str, row: &AuditRecord<'_>) -> Result<()> {
        // Not reached by Set Actions here (their audit row only ever commits with the outcome),
        // but it keeps the same promise: once per job, behind the job's receipt.
        self.write(Replay::Safe, |tx, cache| self.append_set_action_audit(tx, cache, job_id, row))
    }
    fn audit_trail(&self, filter: &AuditFilter<'_>, limit: u32) -> Result<Vec<AuditRow>> {
        self.read(|c, cache| audit::trail(c, cache, filter, limit))
    }
    fn action_types(&self) -> Result<Vec<String>> {
        self.read(audit::action_types)
    }
    fn audit_stats(&self) -> Result<AuditStats> {
        self.read(audit::stats)
    }
    fn clear_audit(&self, timestamp: &str) -> Result<u64> {
        self.write(Replay::BeforeCommitOnly, |tx, cache| audit::reset(tx, cache, &self.chain, &self.checked_head, timestamp))
    }
    fn counts(&self) -> Result<crate::model::StoreCounts> {
        self.read(|c, _| {
            let mut tx = c.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start().map_err(pg_error)?;
            let mut counts = crate::model::StoreCounts::default();
            for r in tx.query("SELECT COALESCE(status, ''), COUNT(*) FROM jobs GROUP BY status", &[]).map_err(pg_error)? {
                let n: i64 = r.get(1);
                counts.jobs += n;
                counts.jobs_by_status.insert(r.get(0), n);
            }
            let one = |tx: &mut postgres::Transaction<'_>, sql: &str| -> Result<i64> { Ok(tx.query_one(sql, &[]).map_err(pg_error)?.get(0)) };
            counts.job_customers = one(&mut tx, "SELECT COUNT(*) FROM job_customers")?;
            counts.cache_entries = one(&mut tx, "SELECT COUNT(*) FROM appstatus_cache")?;
            counts.audit_rows = one(&mut tx, "SELECT COUNT(*) FROM audit_log")?;
            counts.audit_chained = one(&mut tx, "SELECT COUNT(chain_hash) FROM audit_log")?;
            let sync: String = tx.query_one("SHOW synchronous_commit", &[]).map_err(pg_error)?.get(0);
            counts.durability.insert("synchronous_commit".into(), sync);
            tx.commit().map_err(pg_error)?;
            Ok(counts)
        })
    }
    fn adopt_unchained(&self, reason: &str, timestamp: &str) -> Result<crate::model::Adoption> {
        self.write(Replay::BeforeCommitOnly, |tx, cache| audit::adopt(tx, cache, &self.chain, &self.checked_head, timestamp, reason))
    }
    fn verify_audit(&self, anchor: Option<(i64, &str)>, progress: &mut dyn FnMut(u64)) -> Result<AuditVerification> {
        self.read(|c, _| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(pg_error)?;
            let report = audit::verify(&mut tx, &self.chain, anchor, progress)?;
            tx.commit().map_err(pg_error)?;
            Ok(report)
        })
    }

    fn cache_get(&self, cid: &str, app_name: &str, fresh_since: &str) -> Result<Option<String>> {
        Ok(self.cache_get_many(&[cid.to_owned()], app_name, fresh_since)?.pop().flatten())
    }
    fn cache_get_many(&self, cids: &[String], app_name: &str, fresh_since: &str) -> Result<Vec<Option<String>>> {
        self.read(|c, cache| cache::get_many(c, cache, cids, app_name, fresh_since))
    }
    fn cache_put(&self, entry: &CacheRecord<'_>) -> Result<()> {
        one_statement!(self, |c, cache| cache::put(c, cache, entry))
    }
    fn cache_delete_older(&self, cutoff: &str) -> Result<u64> {
        one_statement!(self, |c, cache| cache::delete_older(c, cache, cutoff))
    }
    fn cache_invalidate(&self, cid: Option<&str>, app_name: Option<&str>) -> Result<u64> {
        one_statement!(self, |c, cache| cache::invalidate(c, cache, cid, app_name))
    }
    fn cache_stats(&self) -> Result<CacheStats> {
        self.read(cache::stats)
    }

    fn insert_set_action_job(&self, job: &JobRecord<'_>, key: Option<(IdempotencyKey<'_>, &str)>) -> Result<Option<PriorRequest>> {
        // One statement: the key's claim, then the job and its customers if it was claimed.
        let claim = key.map(|(k, fingerprint)| (k.user_id, k.key, fingerprint));
        match self.single(|c, cache| jobs::insert_claiming(c, cache, job, claim))? {
            Some(true) => return Ok(None),
            // Taken by a request that has committed by now (the claim waited for it, and READ
            // COMMITTED shows its rows to the next statement): answer from it.
            Some(false) => return self.prior_request(key.map(|(k, _)| k).ok_or_else(|| Error::new(ErrorKind::Database, "a job without a key was not inserted"))?),
            None => {}
        }
        // Lost in flight: a rerun after a commit whose answer was lost finds its own job (or its
        // own key, if the statement committed while the rerun waited on it): recorded.
        self.write_from(2, Replay::Safe, |tx, cache| {
            if jobs::exists(tx, cache, job.job_id)? {
                return Ok(None);
            }
            if let Some((key, fingerprint)) = key {
                if !requests::claim_key(tx, cache, key, fingerprint, job.job_id, job.created_at)? {
                    let prior = requests::prior(tx, cache, key)?;
                    if prior.as_ref().is_some_and(|p| p.job_id == job.job_id) {
                        return Ok(None);
                    }
                    return Ok(prior);
                }
            }
            jobs::insert_unless_there(tx, cache, job)?;
            Ok(None)
        })
    }
    fn prior_request(&self, key: IdempotencyKey<'_>) -> Result<Option<PriorRequest>> {
        self.read(|c, cache| requests::prior(c, cache, key))
    }
    fn finish_set_action(
        &self,
        outcome: &JobChange<'_>,
        audit_row: Option<&AuditRecord<'_>>,
        answer: Option<(IdempotencyKey<'_>, i64, &str)>,
    ) -> Result<AuditDelivery> {
        // Replay-safe: the outcome and the answer are fixed values, and the audit row is written
        // only by the transaction that claims the job's receipt, so a rerun after a lost commit
        // (or a later delivery of a waiting outcome) never appends it twice.
        let found = self.write(Replay::Safe, |tx, cache| {
            // The outcome, the answer and the receipt's claim in one statement. The audit row of
            // an action that was sent is written even when its job is gone (the caller then hears
            // NotFound about the job, not about the row).
            let (found, claimed) = requests::finish(tx, cache, outcome, answer, audit_row.is_some())?;
            if let (true, Some(row)) = (claimed, audit_row) {
                self.append_claimed_audit(tx, cache, outcome.job_id, row)?;
            }
            Ok(found)
        })?;
        if !found {
            return Err(Error::not_found(format!("no job with id {:?}", outcome.job_id)));
        }
        Ok(AuditDelivery::Delivered)
    }
    fn export_jobs(&self, after: Option<&str>, max_jobs: u32, max_customers: usize) -> Result<Vec<JobExport>> {
        self.read(|c, cache| {
            let mut tx = c.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start().map_err(pg_error)?;
            let jobs = copy::export_jobs(&mut tx, cache, after, max_jobs, max_customers)?;
            tx.commit().map_err(pg_error)?;
            Ok(jobs)
        })
    }
    fn import_jobs(&self, jobs: &[JobExport]) -> Result<Imported> {
        self.write(Replay::Safe, |tx, cache| copy::import_jobs(tx, cache, jobs))
    }
    fn export_cache(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<CacheExport>> {
        self.read(|c, cache| copy::export_cache(c, cache, after, limit))
    }
    fn import_cache(&self, rows: &[CacheExport]) -> Result<Imported> {
        self.write(Replay::Safe, |tx, cache| copy::import_cache(tx, cache, rows))
    }
    fn export_audit(&self, after_id: Option<i64>, limit: u32) -> Result<Vec<crate::audit_chain::ChainRow>> {
        self.read(|c, cache| copy::export_audit(c, cache, after_id, limit))
    }
    fn import_audit(&self, rows: &[crate::audit_chain::ChainRow]) -> Result<Imported> {
        // The head is locked first, so no append on another host interleaves with the copy.
        self.write(Replay::BeforeCommitOnly, |tx, cache| {
            tx.batch_execute("SELECT 1 FROM audit_chain_head FOR UPDATE").map_err(pg_error)?;
            copy::import_audit(tx, cache, rows)
        })
    }
    fn audit_max_id(&self) -> Result<Option<i64>> {
        self.read(copy::audit_max_id)
    }
    fn deliver_pending_audit(&self) -> Result<u64> {
        Ok(0) // one database: nothing ever waits
    }
    fn recover_interrupted(&self, older_than: std::time::Duration, message: &str, now_text: &str) -> Result<u64> {
        self.write(Replay::Safe, |tx, cache| requests::recover_interrupted(tx, cache, older_than.as_secs_f64(), message, now_text))
    }
}
