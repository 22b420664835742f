//! The one boundary every exported function runs inside: panics are caught, errors become a
//! status code plus the thread-local last-error message.

use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::status::TmsStatus;
use crate::error::Error;

/// A failure on its way out through the ABI.
#[derive(Debug)]
pub struct FfiError {
    pub status: TmsStatus,
    pub message: String,
}

impl FfiError {
    pub fn new(status: TmsStatus, message: impl Into<String>) -> Self {
        FfiError { status, message: message.into() }
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        FfiError { status: e.kind.into(), message: e.message }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: &str) {
    // A message cannot hold NUL in C; replace rather than lose the message.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(c));
}

/// A copy of this thread's last error message, if any.
pub fn last_error() -> Option<CString> {
    LAST_ERROR.with(|slot| slot.borrow().clone())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Run a fallible body: Ok -> TMS_STATUS_OK; Err -> its status, with the message recorded;
/// panic -> TMS_STATUS_PANIC. The last error is cleared first so it always speaks of this call.
pub fn guard(body: impl FnOnce() -> Result<(), FfiError>) -> TmsStatus {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = None);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => TmsStatus::Ok,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(payload) => {
            set_last_error(&format!("internal error (panic): {}", panic_message(&*payload)));
            TmsStatus::Panic
        }
    }
}

/// Run an infallible body (constructors of static values, frees); a panic yields `fallback`.
pub fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&format!("internal error (panic): {}", panic_message(&*payload)));
            fallback
        }
    }
}

/// The body of every exported function. Fallible ones: `ffi_boundary!({ ...; Ok(()) })` returns a
/// `TmsStatus`; the few that return a value: `ffi_boundary!(fallback = v, { ... })`.
macro_rules! ffi_boundary {
    (fallback = $fallback:expr, $body:block) => {
        $crate::ffi::boundary::guard_value($fallback, move || $body)
    };
    ($body:block) => {
        $crate::ffi::boundary::guard(move || -> ::std::result::Result<(), $crate::ffi::FfiError> {
            $body
        })
    };
}
