//! Copying a whole store into another (SQLite to PostgreSQL when moving onto several hosts, or
//! any engine to any other): every job with its customers, the appstatus cache and every audit row
//! with its chain columns, in batches, so memory stays bounded however big the store. A copy can
//! be run again after an interruption: what the destination has is recognised and skipped (jobs
//! refreshed), audit rows must match row for row.

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::model::AuditVerification;
use crate::store::Store;

/// Jobs per batch, and customers per batch (a batch closes at whichever comes first).
const JOBS_PER_BATCH: u32 = 500;
const CUSTOMERS_PER_BATCH: usize = 100_000;
/// Cache entries and audit rows per batch.
const ROWS_PER_BATCH: u32 = 5_000;

/// Counts of one kind of row in a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counted {
    /// New to the destination.
    pub copied: u64,
    /// The destination had them already (an earlier, interrupted copy).
    pub already_there: u64,
}

/// What [`Store::copy_into`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyReport {
    /// Jobs (a job already there gets its status and outcome columns refreshed).
    pub jobs: Counted,
    /// Customer rows added with the new jobs.
    pub customers_copied: u64,
    /// Appstatus cache entries (one already there is kept).
    pub cache: Counted,
    /// Audit rows, with their ids and chain columns.
    pub audit: Counted,
    /// The destination's audit chain checked after the copy.
    pub audit_verification: AuditVerification,
}

impl Store {
    /// Copy this store into `dst`: jobs with their customers, the appstatus cache, and every audit
    /// row as it is (ids and chain included, so `dst.verify_audit` checks the same chain). Run it
    /// while the source's writers are stopped, or run it again after they stop: a rerun skips what
    /// is there and refreshes the jobs' outcomes. The destination's audit log must be empty or an
    /// earlier copy of this one.
    ///
    /// ```
    /// use tms::model::AuditEntry;
    /// # let (src, _d1) = tms::doctest::store();
    /// # let (dst, _d2) = tms::doctest::store();
    /// # tms::doctest::job(&src);
    /// src.record_audit(&AuditEntry { user_id: "alice", action_type: "Trans-Begin", ..Default::default() })?;
    /// let report = src.copy_into(&dst)?;
    /// assert_eq!((report.jobs.copied, report.audit.copied), (1, 1));
    /// assert!(report.audit_verification.ok);
    /// assert_eq!(src.copy_into(&dst)?.jobs.already_there, 1); // safe to run again
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn copy_into(&self, dst: &Store) -> Result<CopyReport> {
        self.copy_into_with_progress(dst, |_, _| {})
    }

    /// [`Store::copy_into`], telling `progress` what it is copying (`"jobs"`, `"cache"`,
    /// `"audit"`) and how many of those it has done, after every batch.
    ///
    /// ```
    /// # let (src, _d1) = tms::doctest::store();
    /// # let (dst, _d2) = tms::doctest::store();
    /// src.copy_into_with_progress(&dst, |what, done| eprintln!("{what}: {done}"))?;
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn copy_into_with_progress(&self, dst: &Store, mut progress: impl FnMut(&str, u64)) -> Result<CopyReport> {
        if std::ptr::eq(self, dst) {
            return Err(Error::invalid("a store cannot be copied into itself"));
        }
        if let Some(e) = dst.engine.read_only() {
            return Err(e.context("cannot copy into the destination"));
        }
        // Before anything is written: the destination must be empty or an earlier copy of this
        // store. Any job, cache entry or audit row there that is not the source's belongs to
        // another store, which the copy would mix into this one (and another audit log would
        // break): refuse, having written nothing.
        self.check_destination(dst)?;
        let mut report = CopyReport {
            jobs: Counted::default(),
            customers_copied: 0,
            cache: Counted::default(),
            audit: Counted::default(),
            audit_verification: AuditVerification { ok: true, checked: 0, unchained: 0, adopted: 0, head: None, first_problem: None },
        };

        let mut after: Option<String> = None;
        loop {
            let batch = self.engine.export_jobs(after.as_deref(), JOBS_PER_BATCH, CUSTOMERS_PER_BATCH)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.job_id.clone());
            let done = dst.engine.import_jobs(&batch)?;
            report.jobs.copied += done.added;
            report.jobs.already_there += done.present;
            report.customers_copied += done.customers;
            progress("jobs", report.jobs.copied + report.jobs.already_there);
        }

        let mut after: Option<(String, String)> = None;
        loop {
            let batch = self.engine.export_cache(after.as_ref().map(|(c, a)| (c.as_str(), a.as_str())), ROWS_PER_BATCH)?;
            let Some(last) = batch.last() else { break };
            after = Some((last.cid.clone(), last.app_name.clone()));
            let done = dst.engine.import_cache(&batch)?;
            report.cache.copied += done.added;
            report.cache.already_there += done.present;
            progress("cache", report.cache.copied + report.cache.already_there);
        }

        let mut after: Option<i64> = None;
        loop {
            let batch = self.engine.export_audit(after, ROWS_PER_BATCH)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id);
            let done = dst.engine.import_audit(&batch)?;
            report.audit.copied += done.added;
            report.audit.already_there += done.present;
            progress("audit", report.audit.copied + report.audit.already_there);
        }

        report.audit_verification = dst.verify_audit(None)?;
        Ok(report)
    }

    /// Walk the whole destination, reading only: every audit row must be the source's row with
    /// the same id, column for column (an interrupted copy's), every job a job of the source's
    /// (same id, user and action), every cache entry one the source has.
    fn check_destination(&self, dst: &Store) -> Result<()> {
        // Fast path: audit ids past the source's are another log's.
        if let (Some(dst_max), src_max) = (dst.engine.audit_max_id()?, self.engine.audit_max_id()?) {
            if src_max.is_none_or(|s| dst_max > s) {
                return Err(refused(
                    "the destination's audit log holds rows the source's does not (ids past the source's last)",
                ));
            }
        }
        // Audit rows: a merge over ids, which both engines order alike.
        let mut after: Option<i64> = None;
        let mut src_rows: std::collections::VecDeque<crate::audit_chain::ChainRow> = Default::default();
        let mut src_after: Option<i64> = None;
        let mut src_done = false;
        loop {
            let batch = dst.engine.export_audit(after, ROWS_PER_BATCH)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id);
            for row in &batch {
                loop {
                    if src_rows.is_empty() && !src_done {
                        let more = self.engine.export_audit(src_after, ROWS_PER_BATCH)?;
                        src_done = more.is_empty();
                        src_after = more.last().map(|r| r.id).or(src_after);
                        src_rows.extend(more);
                    }
                    match src_rows.front() {
                        Some(s) if s.id < row.id => {
                            src_rows.pop_front();
                        }
                        _ => break,
                    }
                }
                if src_rows.front() != Some(row) {
                    return Err(refused(&format!(
                        "the destination's audit row {} is not the source's: it holds another audit log",
                        row.id
                    )));
                }
            }
        }
        // Jobs: each looked up in the source (ids sort differently on the two engines).
        let mut after: Option<String> = None;
        loop {
            let batch = dst.engine.export_jobs(after.as_deref(), JOBS_PER_BATCH, CUSTOMERS_PER_BATCH)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.job_id.clone());
            for job in &batch {
                let theirs = self.engine.job(&job.job_id)?;
                if !theirs.is_some_and(|t| t.user_id == job.user_id && t.action_name == job.action_name) {
                    return Err(refused(&format!(
                        "the destination holds job {} that is not the source's",
                        job.job_id
                    )));
                }
            }
        }
        // Cache entries: looked up in the source, a batch per app name.
        let mut after: Option<(String, String)> = None;
        loop {
            let batch = dst.engine.export_cache(after.as_ref().map(|(c, a)| (c.as_str(), a.as_str())), ROWS_PER_BATCH)?;
            let Some(last) = batch.last() else { break };
            after = Some((last.cid.clone(), last.app_name.clone()));
            let mut by_app: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
            for e in &batch {
                by_app.entry(e.app_name.as_str()).or_default().push(e.cid.clone());
            }
            for (app, cids) in by_app {
                let found = self.engine.cache_get_many(&cids, app, "")?;
                if let Some((cid, _)) = cids.iter().zip(&found).find(|(_, f)| f.is_none()) {
                    return Err(refused(&format!(
                        "the destination holds a cache entry ({cid:?}, {app:?}) that is not the source's"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A copy refused before anything was written.
fn refused(why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{why}; nothing was written: copy into an empty store, or into an earlier copy of this one"),
    )
}
