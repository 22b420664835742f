//! Checked conversions of C arguments. Every pointer is checked for NULL and every string for
//! UTF-8 before anything else happens, so a bad argument never causes a partial write.

use std::ffi::{CStr, CString, c_char};

use serde::Serialize;

use super::boundary::FfiError;
use super::status::TmsStatus;
use super::store::TmsStore;
use crate::store::Store;

pub type FfiResult<T> = Result<T, FfiError>;

fn null(name: &str) -> FfiError {
    FfiError::new(TmsStatus::NullArgument, format!("argument `{name}` is NULL"))
}

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for `'a`.
pub unsafe fn required<'a>(p: *const c_char, name: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL, and the caller promises NUL termination.
    let bytes = unsafe { CStr::from_ptr(p) };
    bytes.to_str().map_err(|e| {
        FfiError::new(
            TmsStatus::InvalidUtf8,
            format!("argument `{name}` is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// An optional string: NULL means "not given".
///
/// # Safety
/// As [`required`].
pub unsafe fn optional<'a>(p: *const c_char, name: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() { Ok(None) } else { unsafe { required(p, name) }.map(Some) }
}

/// An array of `count` required strings. NULL is allowed only when `count` is 0.
///
/// # Safety
/// `p` is NULL or points to `count` string pointers, each as in [`required`].
pub unsafe fn string_array<'a>(p: *const *const c_char, count: usize, name: &str) -> FfiResult<Vec<&'a str>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(null(name));
    }
    if count > isize::MAX as usize / std::mem::size_of::<*const c_char>() {
        return Err(FfiError::new(TmsStatus::TooLarge, format!("`{name}` count {count} is impossible")));
    }
    // SAFETY: the caller promises `count` readable pointers.
    let items = unsafe { std::slice::from_raw_parts(p, count) };
    items
        .iter()
        .enumerate()
        .map(|(i, &s)| unsafe { required(s, &format!("{name}[{i}]")) })
        .collect()
}

/// An optional integer passed by pointer: NULL means "not given".
///
/// # Safety
/// `p` is NULL or points to a readable `T`.
pub unsafe fn optional_value<T: Copy>(p: *const T) -> Option<T> {
    if p.is_null() { None } else { Some(unsafe { *p }) }
}

/// The store behind a handle.
///
/// # Safety
/// `p` is NULL or a handle from `tms_store_open` that has not been closed.
pub unsafe fn store<'a>(p: *const TmsStore) -> FfiResult<&'a Store> {
    if p.is_null() {
        return Err(null("store"));
    }
    Ok(unsafe { &(*p).store })
}

/// The store behind a handle, naming the argument in the error.
///
/// # Safety
/// As [`store`].
pub unsafe fn store_named<'a>(p: *const TmsStore, name: &str) -> FfiResult<&'a Store> {
    if p.is_null() {
        return Err(null(name));
    }
    Ok(unsafe { &(*p).store })
}

/// A required output pointer, checked before any work is done.
pub fn out<'a, T>(p: *mut T, name: &str) -> FfiResult<&'a mut T> {
    // SAFETY: non-NULL output pointers point to writable storage by the API's contract.
    unsafe { p.as_mut() }.ok_or_else(|| null(name))
}

/// Move a Rust string to C. Free it with `tms_string_free`.
pub fn c_string(s: String) -> FfiResult<*mut c_char> {
    CString::new(s)
        .map(CString::into_raw)
        .map_err(|_| FfiError::new(TmsStatus::Panic, "internal error: output contains NUL"))
}

/// Serialize a value as JSON text for C.
pub fn c_json<T: Serialize + ?Sized>(value: &T) -> FfiResult<*mut c_char> {
    let text = serde_json::to_string(value)
        .map_err(|e| FfiError::new(TmsStatus::Panic, format!("internal error: {e}")))?;
    c_string(text)
}
