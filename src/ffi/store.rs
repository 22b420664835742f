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
/// (every existing row is kept). Then, best effort, mark jobs interrupted by a dead process and
/// deliver audit rows waiting in the outbox.
///
/// `jobs_db_path` may instead be a PostgreSQL URL (`postgresql://user:password@host:port/db?...`
/// or `postgres://`), for several dashboard hosts sharing one database: then `audit_db_path` is
/// NULL, empty or the same URL (jobs and the audit log live in one database). TLS follows libpq's
/// `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`, with `sslrootcert` a
/// PEM file). On PostgreSQL `synchronous` sets `synchronous_commit` (FULL: on, NORMAL: off) and
/// `busy_timeout_ms` the `lock_timeout`; `journal_size_limit_bytes` and `max_page_count` mean
/// nothing there and are refused. The password never appears in an error message or event. An
/// unreachable server or a wrong password gives TMS_STATUS_CANT_OPEN.
///
/// `options_json` may be NULL or a JSON object with any of these keys (default; accepted range):
///  - `"synchronous"`: `"FULL"` (default) or `"NORMAL"` (may lose the last commits on power loss);
///  - `"busy_timeout_ms"`: wait for another process's lock (5000; 0 to 600000);
///  - `"journal_size_limit_bytes"`: WAL size kept after a checkpoint (67108864; -1 to 2^40);
///  - `"max_idle_connections"`: per file (8; 1 to 256);
///  - `"max_page_count"`: size cap per file in pages, 0 = none (0; 0 to 4294967294);
///  - `"allowed_clusters"`: base URLs Set Actions may call (`[]`, nothing; at most 256);
///  - `"request_timeout_s"`: whole remote call (35; 1 to 3600);
///  - `"connect_timeout_s"`: connecting to a cluster (10; 1 to 3600);
///  - `"max_response_bytes"`: most of an answer read (8388608; 1 to 2^30);
///  - `"interrupted_after_s"`: a job IN_PROGRESS this long is marked interrupted (600; more than
///    request_timeout_s, at most 2592000);
///  - `"audit_hmac_key"`: key of the audit chain's HMAC-SHA256, kept in memory only (none; 16 to
///    4096 bytes);
///  - `"ca_bundle"`: path of a PEM file of CA certificates trusted for https clusters on top of
///    the system's trust store (none);
///  - `"create"`: create the store when it is missing (`true`); `false` opens an existing store
///    only: a missing file, or a PostgreSQL schema without the store's tables, gives
///    TMS_STATUS_CANT_OPEN naming it, and nothing is created.
///
/// Unknown keys and values out of range give TMS_STATUS_INVALID_INPUT.
///
/// A file or directory that cannot be written is opened read-only: every read works, every
/// write (and every Set Action, before anything is sent) gives TMS_STATUS_READ_ONLY. A
/// read-only file must already be at this library's schema version.
///
/// On success `*out_store` receives a new handle, owned by the caller and released with
/// `tms_store_close`. On failure `*out_store` is left untouched. A missing directory gives
/// TMS_STATUS_CANT_OPEN; a file written by a newer library gives TMS_STATUS_SCHEMA_TOO_NEW and
/// is left unchanged. Thread-safe (each call opens its own store).
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
        let audit = unsafe { optional(audit_db_path, "audit_db_path") }?;
        let options = unsafe { optional(options_json, "options_json") }?;
        let out_store = out(out_store, "out_store")?;
        // A SQLite store needs both paths: a NULL audit path is a NULL argument there, as it
        // always was; only a PostgreSQL URL stands alone.
        if audit.is_none() && !crate::storage::postgres::is_postgres_url(jobs) {
            return Err(super::FfiError::new(super::TmsStatus::NullArgument, "argument `audit_db_path` is NULL"));
        }
        let options = StoreOptions::from_json(options.unwrap_or(""))?;
        let store = Store::open_location(jobs, audit, &options)?;
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

/// Copy every job with its customers, the appstatus cache and every audit row (ids and hash
/// chain as they are) from `src` into `dst`, e.g. from SQLite files onto PostgreSQL when moving
/// to several hosts. Work goes in batches (bounded memory for any size); running it again after
/// an interruption skips what `dst` has (and refreshes the jobs' outcomes). `dst`'s audit log must
/// be empty or an earlier copy of `src`'s (else TMS_STATUS_INVALID_INPUT before anything is
/// written). Stop the source's writers first, or copy again once they stopped.
///
/// On success, when `out_report_json` is not NULL, it receives `{"jobs": {"copied",
/// "already_there"}, "customers_copied", "cache": {...}, "audit": {...}, "audit_verification":
/// {...}}` (the destination's chain checked, as `tms_verify_audit` reports it), owned by the
/// caller (free with `tms_string_free`). Thread-safe; `src` and `dst` must be different handles.
///
/// # Safety
/// `src` and `dst` are NULL or open handles; `out_report_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_store_copy_into(
    src: *const TmsStore,
    dst: *const TmsStore,
    out_report_json: *mut *mut c_char,
) -> super::TmsStatus {
    ffi_boundary!({
        let from = unsafe { super::args::store_named(src, "src") }?;
        let to = unsafe { super::args::store_named(dst, "dst") }?;
        let report = from.copy_into(to)?;
        if let Some(out) = unsafe { out_report_json.as_mut() } {
            *out = super::args::c_json(&report)?;
        }
        Ok(())
    })
}
