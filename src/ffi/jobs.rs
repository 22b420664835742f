//! Jobs over the C ABI. All functions are thread-safe on a shared store handle.

use std::ffi::c_char;

use super::args::{c_json, c_string, optional, optional_value, out, required, string_array};
use super::status::TmsStatus;
use super::store::TmsStore;
use crate::action::ActionCode;
use crate::model::{Json, JobUpdate, NewJob};

/// Create a job and all its customer IDs in one durable transaction: all or nothing.
///
/// `cids` points to `cid_count` NUL-terminated IDs (NULL only when `cid_count` is 0); they are
/// trimmed, and repeats collapse to one. `cluster_url`, `batch_id`, `request_payload_json` (a JSON
/// value, never containing the bearer token), `response_summary` and `status` may be NULL;
/// `status` defaults to "IN_PROGRESS" and must be IN_PROGRESS, SUCCESS or FAILED.
///
/// On success `*out_job_id` receives the new job's UUID, and, when `out_job_json` is not NULL,
/// `*out_job_json` receives `{"job_id","user_id","action_code","action_name","customer_count",
/// "created_at"}` as JSON. Both are owned by the caller (free with `tms_string_free`).
/// On failure nothing is written to the database or to the outputs. An empty `user_id` gives
/// TMS_STATUS_INVALID_INPUT; more than 100,000 distinct IDs give TMS_STATUS_TOO_LARGE.
///
/// # Safety
/// Pointers are NULL or valid as described; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_create_job(
    store: *const TmsStore,
    user_id: *const c_char,
    action_code: i32,
    action_name: *const c_char,
    cids: *const *const c_char,
    cid_count: usize,
    cluster_url: *const c_char,
    batch_id: *const c_char,
    request_payload_json: *const c_char,
    response_summary: *const c_char,
    status: *const c_char,
    out_job_id: *mut *mut c_char,
    out_job_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let job = NewJob {
            user_id: unsafe { required(user_id, "user_id") }?,
            action_code: ActionCode::try_from(action_code)?,
            action_name: unsafe { required(action_name, "action_name") }?,
            cids: unsafe { string_array(cids, cid_count, "cids") }?,
            cluster_url: unsafe { optional(cluster_url, "cluster_url") }?,
            batch_id: unsafe { optional(batch_id, "batch_id") }?,
            request_payload: unsafe { optional(request_payload_json, "request_payload_json") }?.map(Json::Text),
            response_summary: unsafe { optional(response_summary, "response_summary") }?,
            status: unsafe { optional(status, "status") }?.map(str::parse).transpose()?,
        };
        let out_job_id = out(out_job_id, "out_job_id")?;
        let created = store.create_job(&job)?;
        let json = if out_job_json.is_null() { None } else { Some(c_json(&created)?) };
        *out_job_id = c_string(created.job_id)?;
        if let Some(json) = json {
            unsafe { *out_job_json = json };
        }
        Ok(())
    })
}

/// Set a job's `status` (IN_PROGRESS, SUCCESS or FAILED) and, where not NULL, its
/// `http_status`, `error_message` and `response_summary`; other fields keep their values and
/// `updated_at` always changes. An unknown job gives TMS_STATUS_NOT_FOUND.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_update_job(
    store: *const TmsStore,
    job_id: *const c_char,
    status: *const c_char,
    http_status: *const i64,
    error_message: *const c_char,
    response_summary: *const c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let job_id = unsafe { required(job_id, "job_id") }?;
        let update = JobUpdate {
            status: unsafe { required(status, "status") }?.parse()?,
            http_status: unsafe { optional_value(http_status) },
            error_message: unsafe { optional(error_message, "error_message") }?,
            response_summary: unsafe { optional(response_summary, "response_summary") }?,
        };
        store.update_job(job_id, &update)?;
        Ok(())
    })
}

/// One job as a JSON object: every column plus `customer_count`, with `request_payload` parsed
/// back from JSON where it parses. An unknown job gives TMS_STATUS_NOT_FOUND.
/// `*out_json` is owned by the caller (free with `tms_string_free`).
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_get_job(
    store: *const TmsStore,
    job_id: *const c_char,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let job_id = unsafe { required(job_id, "job_id") }?;
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.get_job(job_id)?)?;
        Ok(())
    })
}

/// A user's jobs, newest first, at most `limit` (0-100000), as a JSON array of objects with
/// `job_id, user_id, action_code, action_name, cluster_url, created_at, status, http_status,
/// error_message, customer_count`. `*out_json` is owned by the caller.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_get_user_jobs(
    store: *const TmsStore,
    user_id: *const c_char,
    limit: i64,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let user_id = unsafe { required(user_id, "user_id") }?;
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.get_user_jobs(user_id, limit)?)?;
        Ok(())
    })
}

/// A job's customer IDs, sorted, as a JSON array of strings. An unknown job gives
/// TMS_STATUS_NOT_FOUND. `*out_json` is owned by the caller.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_get_job_customers(
    store: *const TmsStore,
    job_id: *const c_char,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let job_id = unsafe { required(job_id, "job_id") }?;
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.get_job_customers(job_id)?)?;
        Ok(())
    })
}
