//! The per-customer app-status cache (appstatus_cache in jobs.db) over the C ABI.
//! All functions are thread-safe on a shared store handle.

use std::ffi::c_char;

use super::args::{c_json, optional, out, required, string_array};
use super::status::TmsStatus;
use crate::model::Json;
use super::store::TmsStore;

/// The cached status data of (`cid`, `app_name`) as JSON text, if cached within the last
/// `ttl_seconds`; otherwise TMS_STATUS_NOT_FOUND. `*out_json` is owned by the caller.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_cache_get(
    store: *const TmsStore,
    cid: *const c_char,
    app_name: *const c_char,
    ttl_seconds: i64,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let cid = unsafe { required(cid, "cid") }?;
        let app_name = unsafe { required(app_name, "app_name") }?;
        let out_json = out(out_json, "out_json")?;
        match store.cache_get(cid, app_name, ttl_seconds)? {
            Some(data) => *out_json = c_json(&data)?,
            None => {
                return Err(super::FfiError::new(
                    TmsStatus::NotFound,
                    format!("no fresh cache entry for {cid:?} / {app_name:?}"),
                ));
            }
        }
        Ok(())
    })
}

/// Look up `cid_count` cids at once: `{"hits":{cid:data},"misses":[cid],"hit_count",
/// "miss_count"}` as JSON. `*out_json` is owned by the caller.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_cache_get_batch(
    store: *const TmsStore,
    cids: *const *const c_char,
    cid_count: usize,
    app_name: *const c_char,
    ttl_seconds: i64,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let cids = unsafe { string_array(cids, cid_count, "cids") }?;
        let app_name = unsafe { required(app_name, "app_name") }?;
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.cache_get_batch(&cids, app_name, ttl_seconds)?)?;
        Ok(())
    })
}

/// Insert or replace the cached status data (any JSON value, as text) of (`cid`, `app_name`).
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_cache_put(
    store: *const TmsStore,
    cid: *const c_char,
    app_name: *const c_char,
    status_json: *const c_char,
    ttl_seconds: i64,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let cid = unsafe { required(cid, "cid") }?;
        let app_name = unsafe { required(app_name, "app_name") }?;
        let status_json = unsafe { required(status_json, "status_json") }?;
        store.cache_put(cid, app_name, Json::Text(status_json), ttl_seconds)?;
        Ok(())
    })
}

/// Delete entries cached more than `ttl_seconds` ago. When `out_deleted` is not NULL it receives
/// how many were deleted.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_cache_cleanup(store: *const TmsStore, ttl_seconds: i64, out_deleted: *mut u64) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let n = store.cache_cleanup(ttl_seconds)?;
        if let Some(out) = unsafe { out_deleted.as_mut() } {
            *out = n;
        }
        Ok(())
    })
}

/// Delete the entries of `cid` and/or `app_name` (NULL = any; both NULL clears the cache).
/// When `out_deleted` is not NULL it receives how many were deleted.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_cache_invalidate(
    store: *const TmsStore,
    cid: *const c_char,
    app_name: *const c_char,
    out_deleted: *mut u64,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let cid = unsafe { optional(cid, "cid") }?;
        let app_name = unsafe { optional(app_name, "app_name") }?;
        let n = store.cache_invalidate(cid, app_name)?;
        if let Some(out) = unsafe { out_deleted.as_mut() } {
            *out = n;
        }
        Ok(())
    })
}

/// `{"total_entries","unique_cids","size_bytes","size_kb"}` as JSON. Caller frees.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_cache_stats(store: *const TmsStore, out_json: *mut *mut c_char) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.cache_stats()?)?;
        Ok(())
    })
}
