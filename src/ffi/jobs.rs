//! Jobs over the C ABI. All functions are thread-safe on a shared store handle.

use std::ffi::c_char;

use super::args::{FfiResult, c_json, c_string, optional, optional_value, out, required, string_array};
use super::boundary::FfiError;
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
        let cids = || unsafe { string_array(cids, cid_count, "cids") };
        let job = unsafe {
            new_job(user_id, action_code, action_name, cids, cluster_url, batch_id, request_payload_json, response_summary, status)
        }?;
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

/// What `tms_create_job_packed` writes on success: fixed-size, NUL-terminated texts in a struct
/// of the caller's (on its stack, or a ctypes Structure), so nothing is allocated or freed.
#[repr(C)]
pub struct TmsCreatedJob {
    /// The new job's UUID (36 characters and a NUL).
    pub job_id: [c_char; 37],
    /// Its `created_at`, `YYYY-MM-DDTHH:MM:SS.ffffff` in local time (26 characters and a NUL).
    pub created_at: [c_char; 32],
    /// How many distinct IDs were stored.
    pub customer_count: u64,
}

/// `tms_create_job` for a caller that packs the IDs and builds the answer itself (the Python
/// binding's hot path): the same checks, in the same order, and the same transaction, without
/// an array of pointers to build, strings to free or JSON to parse. The rest of the answer is
/// the caller's own arguments.
///
/// `cids` points to `cids_len` bytes: the IDs separated by NUL bytes (NULL only when
/// `cids_len` is 0, which means no IDs). IDs are trimmed, empty ones dropped and repeats
/// collapsed as in `tms_create_job`. The other arguments are `tms_create_job`'s.
///
/// On success `*out` receives the job's id, `created_at` and customer count. On failure nothing
/// is written to the database or to `*out`. Thread-safe on a shared store handle; nothing
/// returned needs freeing.
///
/// # Safety
/// Pointers are NULL or valid as described; `store` is an open handle; `out` points to a
/// writable `TmsCreatedJob`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_create_job_packed(
    store: *const TmsStore,
    user_id: *const c_char,
    action_code: i32,
    action_name: *const c_char,
    cids: *const c_char,
    cids_len: usize,
    cluster_url: *const c_char,
    batch_id: *const c_char,
    request_payload_json: *const c_char,
    response_summary: *const c_char,
    status: *const c_char,
    out: *mut TmsCreatedJob,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let cids = || unsafe { packed_ids(cids, cids_len, "cids") };
        let job = unsafe {
            new_job(user_id, action_code, action_name, cids, cluster_url, batch_id, request_payload_json, response_summary, status)
        }?;
        let out = super::args::out(out, "out")?;
        let created = store.create_job(&job)?;
        // Both texts have a fixed length (36 and 26): a longer one would be a bug here.
        let job_id = fixed_text::<37>(&created.job_id)?;
        let created_at = fixed_text::<32>(&created.created_at)?;
        *out = TmsCreatedJob { job_id, created_at, customer_count: created.customer_count as u64 };
        Ok(())
    })
}

/// `text` and a NUL in an array of N, or an internal error when it does not fit.
fn fixed_text<const N: usize>(text: &str) -> FfiResult<[c_char; N]> {
    if text.len() >= N {
        return Err(FfiError::new(TmsStatus::Panic, format!("internal error: {text:?} does not fit {N} bytes")));
    }
    let mut buf = [0 as c_char; N];
    for (dst, &src) in buf.iter_mut().zip(text.as_bytes()) {
        *dst = src as c_char;
    }
    Ok(buf)
}

/// `tms_create_job_packed`'s IDs: `len` bytes at `p`, separated by NULs, each checked for UTF-8
/// (named `{name}[i]` as `string_array` names them).
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes.
unsafe fn packed_ids<'a>(p: *const c_char, len: usize, name: &str) -> FfiResult<Vec<&'a str>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(FfiError::new(TmsStatus::NullArgument, format!("argument `{name}` is NULL")));
    }
    if len > isize::MAX as usize {
        return Err(FfiError::new(TmsStatus::TooLarge, format!("`{name}` length {len} is impossible")));
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    bytes
        .split(|&b| b == 0)
        .enumerate()
        .map(|(i, id)| {
            std::str::from_utf8(id).map_err(|e| {
                FfiError::new(
                    TmsStatus::InvalidUtf8,
                    format!("argument `{name}[{i}]` is not valid UTF-8 (at byte {})", e.valid_up_to()),
                )
            })
        })
        .collect()
}

/// The arguments `tms_create_job` and `tms_create_job_packed` share, checked in the order they
/// come (`cids` reads the IDs in the function's own layout).
#[allow(clippy::too_many_arguments)]
unsafe fn new_job<'a>(
    user_id: *const c_char,
    action_code: i32,
    action_name: *const c_char,
    cids: impl FnOnce() -> FfiResult<Vec<&'a str>>,
    cluster_url: *const c_char,
    batch_id: *const c_char,
    request_payload_json: *const c_char,
    response_summary: *const c_char,
    status: *const c_char,
) -> FfiResult<NewJob<'a>> {
    Ok(NewJob {
        user_id: unsafe { required(user_id, "user_id") }?,
        action_code: ActionCode::try_from(action_code)?,
        action_name: unsafe { required(action_name, "action_name") }?,
        cids: cids()?,
        cluster_url: unsafe { optional(cluster_url, "cluster_url") }?,
        batch_id: unsafe { optional(batch_id, "batch_id") }?,
        request_payload: unsafe { optional(request_payload_json, "request_payload_json") }?.map(Json::Text),
        response_summary: unsafe { optional(response_summary, "response_summary") }?,
        status: unsafe { optional(status, "status") }?.map(str::parse).transpose()?,
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
