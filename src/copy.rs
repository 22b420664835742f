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
        // Before anything is written: a destination with audit rows past the source's is
        // another log, which the copy would break.
        if let (Some(dst_max), src_max) = (dst.engine.audit_max_id()?, self.engine.audit_max_id()?) {
            if src_max.is_none_or(|s| dst_max > s) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "the destination's audit log holds rows the source's does not: copy into an empty store",
                ));
            }
        }
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
}
