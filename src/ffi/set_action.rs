//! The Set Action route as one call, interrupted-job recovery and the event callback.

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use super::args::{c_json, optional, out, required};
use super::status::TmsStatus;
use super::store::TmsStore;

/// Receives Set Action events: `level` as Python's logging numbers it (20 INFO, 30 WARNING),
/// `event` its name (`set_action_start`, `set_action_done`, ...), `line` the legacy log line
/// `YYYY-MM-DD HH:MM:SS | LEVEL    | event | key=value | ...`. Both strings are valid only during
/// the call. It runs on the thread that called `tms_set_action`, possibly on several threads at
/// once, and must not call `tms_store_close` on the store. The bearer token never appears.
pub type TmsEventCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: i32, event: *const c_char, line: *const c_char)>;

/// The host's pointer, handed back to its callback untouched.
struct UserData(*mut c_void);
// SAFETY: the library never dereferences it; the host promises (in the header) that its
// callback may be called from any thread with it.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

/// Handle one `/proxy_fetch` request body (`{"url","token","isPost","contentType","postData"}`)
/// for `user_id` and produce what the route answers, in the legacy shapes.
///
/// For a Set Action (postData with `action` and `cids`) the order is: validate, map the action,
/// de-duplicate the IDs, record the job IN_PROGRESS durably, then send (`Authorization: Bearer`
/// token, never stored or logged in any escaping); then record the job's outcome (and the
/// answer for repeats) in jobs.db, whatever state audit.db is in, and its audit row through the
/// outbox: into audit.db now, or as soon as it can be written (at the next write, open or
/// `tms_recover_interrupted`), exactly once. Other requests are proxied without a job.
///
/// Refused before anything is sent, with `"error_code"` in the answer: a malformed request or
/// an action name breaking the identifier rules (400 INVALID_INPUT / TOO_LARGE), an unknown
/// action (400 UNKNOWN_ACTION), a token under 8 bytes (400 TOKEN_TOO_SHORT), a URL outside
/// `allowed_clusters` or breaking the path rule (403 URL_NOT_ALLOWED), an idempotency key the
/// user already used for a different request (422 IDEMPOTENCY_KEY_REUSED), a read-only store
/// (503 READ_ONLY), an audit chain keyed with another HMAC key (500 AUDIT_KEY_MISMATCH), and a
/// job that could not be recorded (503/500). Refusals of a Set Action are audited (bounded:
/// at most 1000 IDs, caller values quoted in part). With an `idempotency_key` (may be NULL), a
/// repeat of the same request by the same user returns the first answer without sending again.
///
/// Returns TMS_STATUS_OK whenever there is an answer, refusals included; then `*out_http_status`
/// receives the HTTP status and `*out_body_json` the JSON body (with `job_id` once a job exists),
/// owned by the caller (free with `tms_string_free`). Other statuses mean the arguments
/// themselves were unusable (NULL, invalid UTF-8). Thread-safe; blocks for the remote call.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_set_action(
    store: *const TmsStore,
    request_json: *const c_char,
    user_id: *const c_char,
    client_ip: *const c_char,
    idempotency_key: *const c_char,
    out_http_status: *mut i32,
    out_body_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let request = unsafe { required(request_json, "request_json") }?;
        let user_id = unsafe { required(user_id, "user_id") }?;
        let client_ip = unsafe { optional(client_ip, "client_ip") }?;
        let key = unsafe { optional(idempotency_key, "idempotency_key") }?;
        let out_status = out(out_http_status, "out_http_status")?;
        let out_body = out(out_body_json, "out_body_json")?;
        let answer = store.set_action(request, user_id, client_ip, key);
        *out_body = c_json(&answer.body)?;
        *out_status = i32::from(answer.http_status);
        Ok(())
    })
}

/// Mark FAILED every job still IN_PROGRESS that the library last wrote more than the store's
/// `interrupted_after_s` ago (left by a process that died mid-call), with an error_message saying
/// its outcome is unknown. The age is measured on the library's own UTC clock, the same for
/// processes in any time zone; a job a legacy writer left IN_PROGRESS is timed from the first
/// recovery that sees it. A later outcome of such a job replaces this verdict entirely. Also
/// delivers audit rows still waiting in the outbox (best effort). Opening a store does both.
/// When `out_count` is not NULL it receives how many jobs were marked. Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_recover_interrupted(store: *const TmsStore, out_count: *mut u64) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let n = store.recover_interrupted()?;
        if let Some(out) = unsafe { out_count.as_mut() } {
            *out = n;
        }
        Ok(())
    })
}

/// Register (or, with a NULL `callback`, remove) the function that receives Set Action events.
/// With no callback nothing is written anywhere. `user_data` is passed back to every call.
///
/// # Safety
/// `store` is an open handle; `callback` and `user_data` stay valid until the store is closed
/// (a call already under way on another thread may still use the old pair just after it is
/// replaced), and may be used from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_store_set_event_callback(
    store: *const TmsStore,
    callback: TmsEventCallback,
    user_data: *mut c_void,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let sink = callback.map(|cb| {
            let data = UserData(user_data);
            Arc::new(move |level: crate::set_action::events::Level, event: &str, line: &str| {
                let to_c = |s: &str| CString::new(s.replace('\0', "\\0")).unwrap_or_default();
                let (event, line) = (to_c(event), to_c(line));
                let data = &data;
                // SAFETY: the host registered this function for exactly these arguments.
                unsafe { cb(data.0, level as i32, event.as_ptr(), line.as_ptr()) };
            }) as crate::set_action::events::EventCallback
        });
        store.set_event_callback(sink);
        Ok(())
    })
}
