use std::ffi::c_char;

use super::args::{optional, out, required};
use crate::options::StoreOptions;
use crate::store::Store;

/// An open job-and-audit store: jobs.db and audit.db.
///
/// Thread safety: one handle may be used by any number of threads at once (each call takes its
/// own pooled connection). Only `tms_store_close` must not run concurrently with other calls on
/// the same handle. After `fork()`, the child may keep using the handle: the library notices the
/// new pid and opens fresh connections instead of reusing the parent's.
pub struct TmsStore {
    pub(crate) store: Store,
}

/// Open a store, creating either file when missing and bringing legacy files up to date in place
/// (every existing row is kept).
///
/// `options_json` may be NULL or a JSON object with any of: `"synchronous"` (`"FULL"`, the
/// default, or `"NORMAL"`), `"busy_timeout_ms"` (5000), `"journal_size_limit_bytes"` (67108864),
/// `"max_idle_connections"` (8). Unknown keys are refused with TMS_STATUS_INVALID_INPUT.
///
/// On success `*out_store` receives a new handle, owned by the caller and released with
/// `tms_store_close`. On failure `*out_store` is left untouched. A missing directory gives
/// TMS_STATUS_CANT_OPEN; a file written by a newer library gives TMS_STATUS_SCHEMA_TOO_NEW.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `out_store` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_store_open(
    jobs_db_path: *const c_char,
    audit_db_path: *const c_char,
    options_json: *const c_char,
    out_store: *mut *mut TmsStore,
) -> super::TmsStatus {
    ffi_boundary!({
        let jobs = unsafe { required(jobs_db_path, "jobs_db_path") }?;
        let audit = unsafe { required(audit_db_path, "audit_db_path") }?;
        let options = unsafe { optional(options_json, "options_json") }?;
        let out_store = out(out_store, "out_store")?;
        let options = StoreOptions::from_json(options.unwrap_or(""))?;
        let store = Store::open(jobs, audit, &options)?;
        *out_store = Box::into_raw(Box::new(TmsStore { store }));
        Ok(())
    })
}

/// Close a store and release its connections. NULL is a no-op. The handle must not be used
/// afterwards, nor by another thread while this runs.
///
/// # Safety
/// `store` is NULL or a handle from `tms_store_open` not yet closed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_store_close(store: *mut TmsStore) {
    ffi_boundary!(fallback = (), {
        if !store.is_null() {
            drop(unsafe { Box::from_raw(store) });
        }
    })
}

/// `tms_debug_hold_write_lock` file: jobs.db.
pub const TMS_DB_JOBS: i32 = 0;
/// `tms_debug_hold_write_lock` file: audit.db.
pub const TMS_DB_AUDIT: i32 = 1;

/// Diagnostic: take the write lock of jobs.db (`TMS_DB_JOBS`) or audit.db (`TMS_DB_AUDIT`),
/// hold it for `milliseconds` (at most 60000), and release it having written nothing. Blocks
/// the calling thread; other processes meanwhile get TMS_STATUS_BUSY once their busy timeout
/// passes. For tests of lock interplay; not needed in normal use. Thread-safe.
///
/// # Safety
/// `store` is NULL or an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_debug_hold_write_lock(store: *const TmsStore, file: i32, milliseconds: u32) -> super::TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let file = match file {
            TMS_DB_JOBS => crate::storage::DbFile::Jobs,
            TMS_DB_AUDIT => crate::storage::DbFile::Audit,
            other => {
                return Err(super::FfiError::new(
                    super::TmsStatus::InvalidInput,
                    format!("file {other} is neither TMS_DB_JOBS (0) nor TMS_DB_AUDIT (1)"),
                ));
            }
        };
        store.hold_write_lock(file, milliseconds)?;
        Ok(())
    })
}
