//! The audit log over the C ABI. All functions are thread-safe on a shared store handle.

use std::ffi::c_char;

use super::args::{c_json, c_string, optional, optional_value, out, required};
use super::status::TmsStatus;
use super::store::TmsStore;
use crate::model::{AuditEntry, AuditFilter};

/// Record one audit row (the legacy `log_action`). `customer_ids` is stored as given (pass a JSON
/// array such as `["c1", "c2"]` for a list); `customer_ids`, `ip_address`, `error_message` and
/// `duration_ms` may be NULL; `status` may be NULL for "success", else "success" or "failure".
/// The timestamp is the current UTC time. On success, when `out_id` is not NULL, `*out_id`
/// receives the new row's id. The action types `audit_reset`, `audit_legacy_digest` and
/// `audit_adopt_unchained` are the library's own (TMS_STATUS_INVALID_INPUT). On an HMAC-keyed
/// log a store opened without the key, or with another one, gets TMS_STATUS_AUDIT_KEY_MISMATCH.
/// Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_record_audit(
    store: *const TmsStore,
    user_id: *const c_char,
    action_type: *const c_char,
    customer_ids: *const c_char,
    ip_address: *const c_char,
    status: *const c_char,
    error_message: *const c_char,
    duration_ms: *const i64,
    out_id: *mut i64,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let entry = AuditEntry {
            user_id: unsafe { required(user_id, "user_id") }?,
            action_type: unsafe { required(action_type, "action_type") }?,
            customer_ids: unsafe { optional(customer_ids, "customer_ids") }?,
            ip_address: unsafe { optional(ip_address, "ip_address") }?,
            status: unsafe { optional(status, "status") }?.map(str::parse).transpose()?,
            error_message: unsafe { optional(error_message, "error_message") }?,
            duration_ms: unsafe { optional_value(duration_ms) },
        };
        let id = store.record_audit(&entry)?;
        if let Some(out_id) = unsafe { out_id.as_mut() } {
            *out_id = id;
        }
        Ok(())
    })
}

/// Audit rows newest first, at most `limit` (0-100000), each filter applied when not NULL.
/// `customer_id` matches whole IDs only (`c1` does not match `c10`). A JSON array of objects with
/// every column, `customer_ids` parsed back from JSON where it parses. `*out_json` is owned by
/// the caller (free with `tms_string_free`).
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_get_audit_trail(
    store: *const TmsStore,
    user_id: *const c_char,
    action_type: *const c_char,
    customer_id: *const c_char,
    limit: i64,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let filter = AuditFilter {
            user_id: unsafe { optional(user_id, "user_id") }?,
            action_type: unsafe { optional(action_type, "action_type") }?,
            customer_id: unsafe { optional(customer_id, "customer_id") }?,
        };
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.audit_trail(&filter, limit)?)?;
        Ok(())
    })
}

/// The distinct action types recorded, sorted, as a JSON array of strings. Caller frees.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_get_action_types(store: *const TmsStore, out_json: *mut *mut c_char) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.action_types()?)?;
        Ok(())
    })
}

/// `{"total_records","unique_users","unique_actions","successful_actions","failed_actions",
/// "success_rate_percent"}` as JSON. Caller frees.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_get_audit_stats(store: *const TmsStore, out_json: *mut *mut c_char) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.audit_stats()?)?;
        Ok(())
    })
}

/// Clear the audit log as an explicit, recorded reset: every row is deleted (the append-only
/// triggers are lifted for this transaction only) and one `audit_reset` row, chained to the last
/// row cleared, records it. When `out_deleted` is not NULL it receives how many were deleted.
/// TMS_STATUS_AUDIT_KEY_MISMATCH as for `tms_record_audit`. Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_clear_audit_logs(store: *const TmsStore, out_deleted: *mut u64) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let n = store.clear_audit_logs()?;
        if let Some(out) = unsafe { out_deleted.as_mut() } {
            *out = n;
        }
        Ok(())
    })
}

/// Adopt into the chain the audit rows a legacy writer appended after the chain's head (plain
/// INSERTs without chain columns, e.g. while the app ran the legacy code after a rollback), which
/// `tms_verify_audit` otherwise reports as `inserted` for ever. One `audit_adopt_unchained` row
/// (user `system`), itself chained, commits to exactly those rows and names how many, their ids
/// and `reason`; no row is changed. Afterwards `tms_verify_audit` is ok and counts them as
/// `adopted`; a later change to any of them, or to any chained row, still shows.
///
/// `reason` (required, UTF-8, one line, 1 to 1000 bytes after trimming) says why, e.g. the
/// rollback's ticket. On success `*out_json` receives `{"adopted", "ids", "after_seq",
/// "marker_id", "marker_seq"}` (`ids` as ranges, `"41-57,60"`), owned by the caller (free with
/// `tms_string_free`); on failure it is left untouched and nothing was written:
/// TMS_STATUS_NOT_FOUND when every row after the chain's start is chained or adopted,
/// TMS_STATUS_AUDIT_CHAIN_BROKEN when the log fails verification beyond its unchained rows, TMS_STATUS_AUDIT_KEY_MISMATCH on an HMAC-keyed log without its key. Thread-safe
/// (it holds the audit log's write lock while it walks the log).
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_adopt_unchained(
    store: *const TmsStore,
    reason: *const c_char,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let reason = unsafe { required(reason, "reason") }?;
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.adopt_unchained(reason)?)?;
        Ok(())
    })
}

/// Check the audit log's hash chain. `*out_json` receives `{"ok", "checked", "unchained",
/// "adopted", "head": {"seq","hash"} | null, "first_problem": {"id","seq","problem","detail"} |
/// null}` where `problem` is `altered`, `removed`, `inserted`, `cut`, `unverifiable` (HMAC rows
/// and no key) or `not_keyed` (a store with a key, a log with rows and none keyed by it: written
/// without the key, e.g. a keyed log replaced by a forgery). Rows written before the chain began (legacy rows) are counted as `unchained`:
/// the chain's first row commits to their number and a digest of them, so a row added among them
/// (at any id), altered or removed is reported too (`id` null, the detail says so). An unchained
/// row after the chain began is `inserted`, unless `tms_adopt_unchained` adopted it (counted as
/// `adopted`; its adoption row commits to it the same way). Store `head` elsewhere and pass it
/// back as `anchor_seq`/`anchor_hash` (both NULL: no anchor) to detect a cut tail. Owned by the
/// caller (free with `tms_string_free`). Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_verify_audit(
    store: *const TmsStore,
    anchor_seq: *const i64,
    anchor_hash: *const c_char,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let seq = unsafe { optional_value(anchor_seq) };
        let hash = unsafe { optional(anchor_hash, "anchor_hash") }?;
        let out_json = out(out_json, "out_json")?;
        let anchor = match (seq, hash) {
            (Some(s), Some(h)) => Some((s, h)),
            (None, None) => None,
            _ => {
                return Err(super::FfiError::new(
                    TmsStatus::InvalidInput,
                    "anchor_seq and anchor_hash go together: pass both or neither",
                ));
            }
        };
        *out_json = c_json(&store.verify_audit(anchor)?)?;
        Ok(())
    })
}

/// A signed checkpoint of the audit log's head, to ship somewhere this host cannot rewrite.
/// `signing_key` is the text of the private key file `tms keygen` writes (one line
/// `PRIVATE+KEY+NAME+ID+BASE64`); it is read, never stored, copied into an error message or
/// logged. `previous_checkpoint` (may be NULL) is the last checkpoint this key signed, as shipped:
/// when given, the log must still extend it, so a log rewritten below it is never signed over.
/// The whole log is verified first and only a log that verifies is signed.
///
/// On success `*out_checkpoint` receives the checkpoint, a C2SP signed note: `NAME\nSEQ\nHASH\n
/// time RFC3339\n\n` then the signature line, an em dash (U+2014), a space, `NAME BASE64SIG\n`
/// (the log's name, the head's chain seq and hash, the UTC time, then the Ed25519 signature),
/// owned by the caller (free with `tms_string_free`). On failure it is left untouched:
/// TMS_STATUS_INVALID_INPUT for a key that is not a checkpoint private key,
/// TMS_STATUS_CHECKPOINT_INVALID when `previous_checkpoint` is not one this key signed,
/// TMS_STATUS_AUDIT_CHAIN_BROKEN when the log does not verify (or no longer extends
/// `previous_checkpoint`), TMS_STATUS_AUDIT_KEY_MISMATCH when its rows are HMAC-keyed and the
/// store has no key, TMS_STATUS_NOT_FOUND when no row is chained yet. Thread-safe (it reads the
/// log like `tms_verify_audit`).
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_audit_checkpoint(
    store: *const TmsStore,
    signing_key: *const c_char,
    previous_checkpoint: *const c_char,
    out_checkpoint: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let signing_key = unsafe { required(signing_key, "signing_key") }?;
        let previous = unsafe { optional(previous_checkpoint, "previous_checkpoint") }?;
        let out_checkpoint = out(out_checkpoint, "out_checkpoint")?;
        *out_checkpoint = c_string(store.audit_checkpoint(signing_key, previous)?)?;
        Ok(())
    })
}

/// Whether the audit log still extends a signed checkpoint (from `tms_audit_checkpoint` or
/// `tms checkpoint`). `public_key` is the text of the public key file `tms keygen` writes (one
/// line `NAME+ID+BASE64`, a C2SP verifier key).
///
/// The checkpoint's signature must verify with `public_key` and name that key's log, else
/// TMS_STATUS_CHECKPOINT_INVALID (malformed, altered, forged, or signed by another key);
/// TMS_STATUS_INVALID_INPUT for a public key that is not one. Then the whole log is verified with
/// the checkpoint's head as its anchor, and `*out_json` receives `tms_verify_audit`'s object plus
/// `"checkpoint": {"origin","seq","hash","time"}`, owned by the caller (free with
/// `tms_string_free`). `"ok"` is false when rows were cut from the end past the checkpoint
/// (`cut`), a row before it changed or was inserted, or the chain was recomputed (`altered` at
/// the checkpoint's seq); a log that grew since is ok. Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid; `store` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tms_verify_audit_checkpoint(
    store: *const TmsStore,
    checkpoint: *const c_char,
    public_key: *const c_char,
    out_json: *mut *mut c_char,
) -> TmsStatus {
    ffi_boundary!({
        let store = unsafe { super::args::store(store) }?;
        let checkpoint = unsafe { required(checkpoint, "checkpoint") }?;
        let public_key = unsafe { required(public_key, "public_key") }?;
        let out_json = out(out_json, "out_json")?;
        *out_json = c_json(&store.verify_audit_checkpoint(checkpoint, public_key)?)?;
        Ok(())
    })
}
