//! Metrics over the C ABI.

use std::ffi::c_char;

use super::args::{c_string, out};
use super::status::TmsStatus;
use super::store::TmsStore;

/// The store's metrics in the Prometheus text exposition format, version 0.0.4 (serve it as
/// `text/plain; version=0.0.4`): `tms_jobs{status}` (jobs by stored status), `tms_audit_rows` and
/// `tms_audit_outbox_pending` (gauges read from the database now), `tms_set_actions_total{outcome}`
/// (this process's `tms_set_action` calls by outcome: success, failure, refused, repeat) and
/// `tms_set_action_duration_seconds` (a histogram of their durations), and
/// `tms_store_setting{setting,value}` (the durability settings in effect on a connection of the
/// store's own pool: `jobs.synchronous="FULL"`, `jobs.journal_mode="wal"` and the same for
/// `audit.` on SQLite, `synchronous_commit="on"` on PostgreSQL, by default). The counters and the
/// histogram count this process's calls since it loaded libtms, every store handle's together.
/// `*out_text` receives the text, owned by the caller (free with `tms_string_free`); on failure
/// it is left untouched. Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_store_metrics(store: *const TmsStore, out_text: *mut *mut c_char) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let out_text = out(out_text, "out_text")?;
        *out_text = c_string(store.metrics()?)?;
        Ok(())
    })
}
