//! Library-wide functions: version, errors, strings, and the stateless helpers.

use std::ffi::{CString, c_char, c_int};

use super::args::{c_json, out, required};
use super::boundary::last_error;
use super::status::TmsStatus;
use crate::action::map_action;
use crate::customer_ids::{self, InputFormat};

/// `tms_parse_customer_ids` format: one ID per line, or comma-separated.
pub const TMS_INPUT_MANUAL: c_int = 0;
/// `tms_parse_customer_ids` format: CSV, first column, optional header row.
pub const TMS_INPUT_CSV: c_int = 1;

/// The library version, e.g. "0.1.0". Static: never free it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn tms_version() -> *const c_char {
    ffi_boundary!(fallback = std::ptr::null(), {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}

/// The name of a status code, e.g. "TMS_STATUS_NOT_FOUND"; "TMS_STATUS_UNKNOWN" for a value
/// that is not a status. Static: never free it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn tms_status_name(status: c_int) -> *const c_char {
    ffi_boundary!(fallback = std::ptr::null(), {
        let name = TmsStatus::from_code(status).map_or("TMS_STATUS_UNKNOWN\0", TmsStatus::name);
        name.as_ptr().cast()
    })
}

/// A copy of the message explaining the last failed call on this thread, or NULL when the last
/// call succeeded. The caller owns the copy and frees it with `tms_string_free`.
/// Thread-safe: each thread has its own last error.
#[unsafe(no_mangle)]
pub extern "C" fn tms_last_error_message() -> *mut c_char {
    ffi_boundary!(fallback = std::ptr::null_mut(), {
        last_error().map_or(std::ptr::null_mut(), CString::into_raw)
    })
}

/// Free a string returned by this library. NULL is a no-op. Never pass any other pointer.
///
/// # Safety
/// `s` is NULL or a string this library returned, not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_string_free(s: *mut c_char) {
    ffi_boundary!(fallback = (), {
        if !s.is_null() {
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// Map a Set Action name to its code (1-5): case-insensitive, ignoring `-`, `_` and spaces
/// ("TRANS_BEGIN", "trans begin" and "Tran-Begin" all give 1). An unknown name gives
/// TMS_STATUS_UNKNOWN_ACTION and leaves `*out_code` untouched. Thread-safe.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `out_code` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_map_action(name: *const c_char, out_code: *mut i32) -> TmsStatus {
    ffi_boundary!({
        let name = unsafe { required(name, "name") }?;
        let out_code = out(out_code, "out_code")?;
        *out_code = map_action(name)?.code.get();
        Ok(())
    })
}

/// Parse pasted text (`TMS_INPUT_MANUAL`) or a CSV file's text (`TMS_INPUT_CSV`) into customer
/// IDs: trimmed, empty ones dropped, repeats dropped keeping first-seen order. An ID with control
/// characters or over 128 bytes gives TMS_STATUS_INVALID_INPUT naming it; over 100,000 distinct
/// IDs give TMS_STATUS_TOO_LARGE. On success `*out_json` receives a JSON array of strings,
/// owned by the caller (free with `tms_string_free`). Thread-safe.
///
/// # Safety
/// `text` is NULL or NUL-terminated; `out_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_parse_customer_ids(
    text: *const c_char,
    format: c_int,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let text = unsafe { required(text, "text") }?;
        let out_json = out(out_json, "out_json")?;
        let format = match format {
            TMS_INPUT_MANUAL => InputFormat::Manual,
            TMS_INPUT_CSV => InputFormat::Csv,
            other => {
                return Err(super::FfiError::new(
                    TmsStatus::InvalidInput,
                    format!("format {other} is neither TMS_INPUT_MANUAL (0) nor TMS_INPUT_CSV (1)"),
                ));
            }
        };
        let ids = customer_ids::parse(text, format)?;
        *out_json = c_json(&ids)?;
        Ok(())
    })
}
