//! The C ABI called as C would call it: NULLs, invalid UTF-8, bad values, outputs untouched on
//! failure, the last-error message, and files unchanged after a refused call.

mod common;

use std::ffi::{CStr, CString, c_char};
use std::ptr::{null, null_mut};

use common::*;
use tms::ffi::*;

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> Option<String> {
    let p = tms_last_error_message();
    if p.is_null() {
        return None;
    }
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    unsafe { tms_string_free(p) };
    Some(s)
}

fn take(p: *mut c_char) -> String {
    assert!(!p.is_null());
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned();
    unsafe { tms_string_free(p) };
    s
}

struct Fixture {
    dir: TempDir,
    store: *mut TmsStore,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let dir = TempDir::new(tag);
        let jobs = c(dir.join("jobs.db").to_str().unwrap());
        let audit = c(dir.join("audit.db").to_str().unwrap());
        let mut store = null_mut();
        let st = unsafe { tms_store_open(jobs.as_ptr(), audit.as_ptr(), null(), &mut store) };
        assert_eq!(st, TmsStatus::Ok);
        Fixture { dir, store }
    }
    fn snapshot(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            dump(&self.dir.join("jobs.db"), "jobs"),
            dump(&self.dir.join("jobs.db"), "job_customers"),
            dump(&self.dir.join("audit.db"), "audit_log"),
        )
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        unsafe { tms_store_close(self.store) };
    }
}

/// Create a job with the given raw arguments; returns the status and whether outputs were written.
unsafe fn create(store: *const TmsStore, user: *const c_char, code: i32, name: *const c_char, cids: &[*const c_char]) -> (TmsStatus, bool) {
    let mut id: *mut c_char = null_mut();
    let mut json: *mut c_char = null_mut();
    let st = unsafe {
        tms_create_job(store, user, code, name, cids.as_ptr(), cids.len(), null(), null(), null(), null(), null(), &mut id, &mut json)
    };
    let wrote = !id.is_null() || !json.is_null();
    unsafe {
        tms_string_free(id);
        tms_string_free(json);
    }
    (st, wrote)
}

#[test]
fn bad_create_job_arguments_get_their_own_codes_and_change_nothing() {
    let f = Fixture::new("ffi-create");
    let (user, name, c1) = (c("alice"), c("Trans-Begin"), c("c1"));
    let bad_utf8 = [0xffu8, 0xfe, 0];
    let empty = c("");
    let many: Vec<CString> = (0..=100_000).map(|i| c(&format!("c{i}"))).collect();
    let many: Vec<*const c_char> = many.iter().map(|s| s.as_ptr()).collect();
    let before = f.snapshot();

    let cases: Vec<(&str, TmsStatus, (TmsStatus, bool))> = unsafe {
        vec![
            ("NULL store", TmsStatus::NullArgument, create(null(), user.as_ptr(), 1, name.as_ptr(), &[c1.as_ptr()])),
            ("NULL user", TmsStatus::NullArgument, create(f.store, null(), 1, name.as_ptr(), &[c1.as_ptr()])),
            ("NULL cid", TmsStatus::NullArgument, create(f.store, user.as_ptr(), 1, name.as_ptr(), &[c1.as_ptr(), null()])),
            ("bad UTF-8", TmsStatus::InvalidUtf8, create(f.store, bad_utf8.as_ptr().cast(), 1, name.as_ptr(), &[c1.as_ptr()])),
            ("bad UTF-8 cid", TmsStatus::InvalidUtf8, create(f.store, user.as_ptr(), 1, name.as_ptr(), &[bad_utf8.as_ptr().cast()])),
            ("empty user", TmsStatus::InvalidInput, create(f.store, empty.as_ptr(), 1, name.as_ptr(), &[c1.as_ptr()])),
            ("code 0", TmsStatus::InvalidInput, create(f.store, user.as_ptr(), 0, name.as_ptr(), &[c1.as_ptr()])),
            ("100,001 IDs", TmsStatus::TooLarge, create(f.store, user.as_ptr(), 1, name.as_ptr(), &many)),
        ]
    };
    for (label, expected, (got, wrote)) in cases {
        assert_eq!(got, expected, "{label}");
        assert!(!wrote, "{label}: outputs written on failure");
        let msg = last_error().unwrap_or_default();
        assert!(!msg.is_empty(), "{label}: no message");
    }
    assert_eq!(f.snapshot(), before);

    // An unknown action is refused by tms_map_action with its own code, output untouched.
    let mut code = -7;
    let bogus = c("Trans-Beginn");
    assert_eq!(unsafe { tms_map_action(bogus.as_ptr(), &mut code) }, TmsStatus::UnknownAction);
    assert_eq!(code, -7);
    assert!(last_error().unwrap().contains("Trans-Beginn"));

    // And a good call succeeds and clears the last error.
    let (st, wrote) = unsafe { create(f.store, user.as_ptr(), 1, name.as_ptr(), &[c1.as_ptr(), c1.as_ptr()]) };
    assert_eq!(st, TmsStatus::Ok);
    assert!(wrote);
    assert_eq!(last_error(), None);
    assert_eq!(f.snapshot().1.len(), 1);
}

#[test]
fn null_in_every_required_pointer_of_every_function_is_refused() {
    let f = Fixture::new("ffi-null");
    let s = f.store as *const TmsStore;
    let (a, j) = (c("a"), c("{}"));
    let a = a.as_ptr();
    let j = j.as_ptr();
    let mut out_s: *mut c_char = null_mut();
    let mut out_code = -7i32;
    let o = &mut out_s as *mut *mut c_char;
    let oc = &mut out_code as *mut i32; // written by no call below: each fails on a NULL first
    let mut out_job = TmsCreatedJob { job_id: [0; 37], created_at: [0; 32], customer_count: 7 };
    let ocj = &mut out_job as *mut TmsCreatedJob;
    type Case<'a> = (&'a str, Box<dyn Fn() -> TmsStatus>);
    let cases: Vec<Case> = unsafe {
        vec![
            ("tms_store_open jobs", Box::new(move || tms_store_open(null(), a, null(), &mut null_mut()))),
            ("tms_store_open audit", Box::new(move || tms_store_open(a, null(), null(), &mut null_mut()))),
            ("tms_store_open out", Box::new(move || tms_store_open(a, a, null(), null_mut()))),
            ("tms_map_action name", Box::new(move || tms_map_action(null(), oc))),
            ("tms_map_action out", Box::new(move || tms_map_action(a, null_mut()))),
            ("tms_parse_customer_ids text", Box::new(move || tms_parse_customer_ids(null(), 0, o))),
            ("tms_parse_customer_ids out", Box::new(move || tms_parse_customer_ids(a, 0, null_mut()))),
            ("tms_create_job store", Box::new(move || tms_create_job(null(), a, 1, a, null(), 0, null(), null(), null(), null(), null(), o, null_mut()))),
            ("tms_create_job user", Box::new(move || tms_create_job(s, null(), 1, a, null(), 0, null(), null(), null(), null(), null(), o, null_mut()))),
            ("tms_create_job name", Box::new(move || tms_create_job(s, a, 1, null(), null(), 0, null(), null(), null(), null(), null(), o, null_mut()))),
            ("tms_create_job cids", Box::new(move || tms_create_job(s, a, 1, a, null(), 1, null(), null(), null(), null(), null(), o, null_mut()))),
            ("tms_create_job out", Box::new(move || tms_create_job(s, a, 1, a, null(), 0, null(), null(), null(), null(), null(), null_mut(), null_mut()))),
            ("tms_create_job_packed store", Box::new(move || tms_create_job_packed(null(), a, 1, a, null(), 0, null(), null(), null(), null(), null(), ocj))),
            ("tms_create_job_packed user", Box::new(move || tms_create_job_packed(s, null(), 1, a, null(), 0, null(), null(), null(), null(), null(), ocj))),
            ("tms_create_job_packed name", Box::new(move || tms_create_job_packed(s, a, 1, null(), null(), 0, null(), null(), null(), null(), null(), ocj))),
            ("tms_create_job_packed cids", Box::new(move || tms_create_job_packed(s, a, 1, a, null(), 1, null(), null(), null(), null(), null(), ocj))),
                                    ("tms_create_job_packed out", Box::new(move || tms_create_job_packed(s, a, 1, a, null(), 0, null(), null(), null(), null(), null(), null_mut()))),
            ("tms_update_job store", Box::new(move || tms_update_job(null(), a, a, null(), null(), null()))),
            ("tms_update_job id", Box::new(move || tms_update_job(s, null(), a, null(), null(), null()))),
            ("tms_update_job status", Box::new(move || tms_update_job(s, a, null(), null(), null(), null()))),
            ("tms_get_job store", Box::new(move || tms_get_job(null(), a, o))),
            ("tms_get_job id", Box::new(move || tms_get_job(s, null(), o))),
            ("tms_get_job out", Box::new(move || tms_get_job(s, a, null_mut()))),
            ("tms_get_user_jobs user", Box::new(move || tms_get_user_jobs(s, null(), 5, o))),
            ("tms_get_user_jobs out", Box::new(move || tms_get_user_jobs(s, a, 5, null_mut()))),
            ("tms_get_job_customers id", Box::new(move || tms_get_job_customers(s, null(), o))),
            ("tms_get_job_customers out", Box::new(move || tms_get_job_customers(s, a, null_mut()))),
            ("tms_record_audit store", Box::new(move || tms_record_audit(null(), a, a, null(), null(), null(), null(), null(), null_mut()))),
            ("tms_record_audit user", Box::new(move || tms_record_audit(s, null(), a, null(), null(), null(), null(), null(), null_mut()))),
            ("tms_record_audit type", Box::new(move || tms_record_audit(s, a, null(), null(), null(), null(), null(), null(), null_mut()))),
            ("tms_get_audit_trail store", Box::new(move || tms_get_audit_trail(null(), null(), null(), null(), 5, o))),
            ("tms_get_audit_trail out", Box::new(move || tms_get_audit_trail(s, null(), null(), null(), 5, null_mut()))),
            ("tms_get_action_types out", Box::new(move || tms_get_action_types(s, null_mut()))),
            ("tms_get_audit_stats out", Box::new(move || tms_get_audit_stats(s, null_mut()))),
            ("tms_clear_audit_logs store", Box::new(move || tms_clear_audit_logs(null(), null_mut()))),
            ("tms_cache_get cid", Box::new(move || tms_cache_get(s, null(), a, 5, o))),
            ("tms_cache_get app", Box::new(move || tms_cache_get(s, a, null(), 5, o))),
            ("tms_cache_get out", Box::new(move || tms_cache_get(s, a, a, 5, null_mut()))),
            ("tms_cache_get_batch cids", Box::new(move || tms_cache_get_batch(s, null(), 2, a, 5, o))),
            ("tms_cache_get_batch app", Box::new(move || tms_cache_get_batch(s, null(), 0, null(), 5, o))),
            ("tms_cache_put cid", Box::new(move || tms_cache_put(s, null(), a, j, 5))),
            ("tms_cache_put data", Box::new(move || tms_cache_put(s, a, a, null(), 5))),
            ("tms_cache_cleanup store", Box::new(move || tms_cache_cleanup(null(), 5, null_mut()))),
            ("tms_cache_invalidate store", Box::new(move || tms_cache_invalidate(null(), null(), null(), null_mut()))),
            ("tms_cache_stats out", Box::new(move || tms_cache_stats(s, null_mut()))),
            ("tms_set_action store", Box::new(move || tms_set_action(null(), j, a, null(), null(), oc, o))),
            ("tms_set_action request", Box::new(move || tms_set_action(s, null(), a, null(), null(), oc, o))),
            ("tms_set_action user", Box::new(move || tms_set_action(s, j, null(), null(), null(), oc, o))),
            ("tms_set_action status_out", Box::new(move || tms_set_action(s, j, a, null(), null(), null_mut(), o))),
            ("tms_set_action body_out", Box::new(move || tms_set_action(s, j, a, null(), null(), oc, null_mut()))),
            ("tms_recover_interrupted store", Box::new(move || tms_recover_interrupted(null(), null_mut()))),
            ("tms_store_set_event_callback store", Box::new(move || tms_store_set_event_callback(null(), None, null_mut()))),
            ("tms_verify_audit store", Box::new(move || tms_verify_audit(null(), null(), null(), o))),
            ("tms_verify_audit out", Box::new(move || tms_verify_audit(s, null(), null(), null_mut()))),
            ("tms_adopt_unchained store", Box::new(move || tms_adopt_unchained(null(), a, o))),
            ("tms_adopt_unchained reason", Box::new(move || tms_adopt_unchained(s, null(), o))),
            ("tms_adopt_unchained out", Box::new(move || tms_adopt_unchained(s, a, null_mut()))),
            ("tms_audit_checkpoint store", Box::new(move || tms_audit_checkpoint(null(), a, null(), o))),
            ("tms_audit_checkpoint key", Box::new(move || tms_audit_checkpoint(s, null(), null(), o))),
            ("tms_audit_checkpoint out", Box::new(move || tms_audit_checkpoint(s, a, null(), null_mut()))),
            ("tms_verify_audit_checkpoint store", Box::new(move || tms_verify_audit_checkpoint(null(), a, a, o))),
            ("tms_verify_audit_checkpoint checkpoint", Box::new(move || tms_verify_audit_checkpoint(s, null(), a, o))),
            ("tms_verify_audit_checkpoint key", Box::new(move || tms_verify_audit_checkpoint(s, a, null(), o))),
            ("tms_verify_audit_checkpoint out", Box::new(move || tms_verify_audit_checkpoint(s, a, a, null_mut()))),
            ("tms_store_metrics store", Box::new(move || tms_store_metrics(null(), o))),
            ("tms_store_metrics out", Box::new(move || tms_store_metrics(s, null_mut()))),
            ("tms_debug_hold_write_lock store", Box::new(move || tms_debug_hold_write_lock(null(), 0, 1))),
            ("tms_store_copy_into src", Box::new(move || tms_store_copy_into(null(), s, null_mut()))),
            ("tms_store_copy_into dst", Box::new(move || tms_store_copy_into(s, null(), null_mut()))),
        ]
    };
    let before = f.snapshot();
    for (label, call) in &cases {
        assert_eq!(call(), TmsStatus::NullArgument, "{label}");
        assert!(last_error().unwrap().contains("NULL"), "{label}");
    }
    assert!(out_s.is_null());
    assert_eq!(out_code, -7, "an output was written by a call that failed");
    assert!(out_job.job_id == [0; 37] && out_job.customer_count == 7, "an output was written by a call that failed");
    assert_eq!(f.snapshot(), before);

    // The walk covers every exported function that takes a pointer. Those that take none, or
    // for which NULL is documented as a no-op, are listed here on purpose.
    let no_pointer_args = ["tms_version", "tms_status_name", "tms_last_error_message", "tms_string_free", "tms_store_close"];
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/tms.h")).unwrap();
    // Declarations are the lines that start with a return type and name a `tms_...(`.
    let exported: std::collections::BTreeSet<&str> = header
        .lines()
        .filter(|l| !l.starts_with("//") && !l.starts_with(' '))
        .filter_map(|l| {
            let start = l.find("tms_")?;
            let end = start + l[start..].find('(')?;
            Some(&l[start..end])
        })
        .collect();
    assert!(exported.len() >= 28, "{exported:?}");
    let walked: std::collections::BTreeSet<&str> = cases.iter().map(|(label, _)| label.split(' ').next().unwrap()).collect();
    for name in &exported {
        assert!(walked.contains(name) || no_pointer_args.contains(name), "{name} is not walked with NULLs");
    }
    // Releasing NULL is a no-op.
    unsafe {
        tms_store_close(null_mut());
        tms_string_free(null_mut());
    }
}

/// tms_create_job_packed: the IDs in one NUL-separated buffer (trimmed, empty ones dropped,
/// repeats collapsed as tms_create_job does), the answer in the caller's struct; a refused call
/// writes neither the struct nor the files.
#[test]
fn packed_ids_and_caller_struct() {
    let f = Fixture::new("ffi-packed");
    let (user, name) = (c("bob"), c("PE-Enable"));
    let untouched = || TmsCreatedJob { job_id: [b'#' as c_char; 37], created_at: [b'#' as c_char; 32], customer_count: 99 };
    let mut out = untouched();
    let create = |ids: &[u8], out: &mut TmsCreatedJob| unsafe {
        tms_create_job_packed(
            f.store, user.as_ptr(), 2, name.as_ptr(), ids.as_ptr().cast(), ids.len(), null(), null(), null(), null(), null(), out,
        )
    };
    let same = |a: &TmsCreatedJob, b: &TmsCreatedJob| a.job_id == b.job_id && a.created_at == b.created_at && a.customer_count == b.customer_count;

    let bad_utf8 = b"x1\0x\xff2";
    assert_eq!(create(bad_utf8, &mut out), TmsStatus::InvalidUtf8);
    assert!(last_error().unwrap().contains("`cids[1]`"));
    assert!(same(&out, &untouched()));
    assert_eq!(f.snapshot().0.len(), 0);

    assert_eq!(create(b" x2\0x1\0\0x2 ", &mut out), TmsStatus::Ok);
    let id = unsafe { CStr::from_ptr(out.job_id.as_ptr()) }.to_str().unwrap().to_owned();
    let at = unsafe { CStr::from_ptr(out.created_at.as_ptr()) }.to_str().unwrap().to_owned();
    assert_eq!((id.len(), at.len(), out.customer_count), (36, 26, 2));
    let cid = c(&id);
    let mut json = null_mut();
    assert_eq!(unsafe { tms_get_job(f.store, cid.as_ptr(), &mut json) }, TmsStatus::Ok);
    let job: serde_json::Value = serde_json::from_str(&take(json)).unwrap();
    assert_eq!((job["user_id"].as_str(), job["action_code"].as_i64()), (Some("bob"), Some(2)));
    assert_eq!((job["created_at"].as_str(), job["customer_count"].as_i64()), (Some(at.as_str()), Some(2)));
    let mut json = null_mut();
    assert_eq!(unsafe { tms_get_job_customers(f.store, cid.as_ptr(), &mut json) }, TmsStatus::Ok);
    assert_eq!(take(json), r#"["x1","x2"]"#);

    // No IDs at all: cids may be NULL when its length is 0.
    let st = unsafe {
        tms_create_job_packed(f.store, user.as_ptr(), 2, name.as_ptr(), null(), 0, null(), null(), null(), null(), null(), &mut out)
    };
    assert_eq!((st, out.customer_count), (TmsStatus::Ok, 0));
}

#[test]
fn outputs_and_json_shapes() {
    let f = Fixture::new("ffi-json");
    let (user, name) = (c("bob"), c("PE-Enable"));
    let cids = [c("x2"), c("x1")];
    let ptrs: Vec<*const c_char> = cids.iter().map(|s| s.as_ptr()).collect();
    let (mut id, mut json) = (null_mut(), null_mut());
    let st = unsafe {
        tms_create_job(f.store, user.as_ptr(), 2, name.as_ptr(), ptrs.as_ptr(), 2, null(), null(), null(), null(), null(), &mut id, &mut json)
    };
    assert_eq!(st, TmsStatus::Ok);
    let id = take(id);
    let created: serde_json::Value = serde_json::from_str(&take(json)).unwrap();
    assert_eq!(created["job_id"], id.as_str());
    assert_eq!(created["customer_count"], 2);

    let cid = c(&id);
    let mut out = null_mut();
    assert_eq!(unsafe { tms_get_job_customers(f.store, cid.as_ptr(), &mut out) }, TmsStatus::Ok);
    assert_eq!(take(out), r#"["x1","x2"]"#);
    let http = 502i64;
    let failed = c("FAILED");
    assert_eq!(unsafe { tms_update_job(f.store, cid.as_ptr(), failed.as_ptr(), &http, null(), null()) }, TmsStatus::Ok);
    let mut out = null_mut();
    assert_eq!(unsafe { tms_get_user_jobs(f.store, user.as_ptr(), 10, &mut out) }, TmsStatus::Ok);
    let list: serde_json::Value = serde_json::from_str(&take(out)).unwrap();
    assert_eq!(list[0]["http_status"], 502);
    let mut out = null_mut();
    let missing = c("missing");
    assert_eq!(unsafe { tms_get_job(f.store, missing.as_ptr(), &mut out) }, TmsStatus::NotFound);
    assert!(out.is_null());
    assert_eq!(unsafe { CStr::from_ptr(tms_status_name(5)) }.to_str().unwrap(), "TMS_STATUS_NOT_FOUND");
    assert_eq!(unsafe { CStr::from_ptr(tms_status_name(-1)) }.to_str().unwrap(), "TMS_STATUS_UNKNOWN");
    assert_eq!(unsafe { CStr::from_ptr(tms_version()) }.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn opening_reports_missing_directories_and_bad_options() {
    let dir = TempDir::new("ffi-open");
    let missing = c(dir.join("nope/jobs.db").to_str().unwrap());
    let audit = c(dir.join("audit.db").to_str().unwrap());
    let mut store = null_mut();
    assert_eq!(unsafe { tms_store_open(missing.as_ptr(), audit.as_ptr(), null(), &mut store) }, TmsStatus::CantOpen);
    assert!(store.is_null());
    assert!(last_error().unwrap().contains("does not exist"));
    let jobs = c(dir.join("jobs.db").to_str().unwrap());
    let bad = c(r#"{"synchronous":"SOMETIMES"}"#);
    assert_eq!(unsafe { tms_store_open(jobs.as_ptr(), audit.as_ptr(), bad.as_ptr(), &mut store) }, TmsStatus::InvalidInput);
    assert!(store.is_null());
}

unsafe extern "C" fn count_events(user_data: *mut std::ffi::c_void, level: i32, event: *const c_char, line: *const c_char) {
    let seen = unsafe { &*(user_data as *const std::sync::Mutex<Vec<(i32, String, String)>>) };
    let event = unsafe { CStr::from_ptr(event) }.to_string_lossy().into_owned();
    let line = unsafe { CStr::from_ptr(line) }.to_string_lossy().into_owned();
    seen.lock().unwrap().push((level, event, line));
}

#[test]
fn set_action_refusals_are_answers_and_reach_the_callback() {
    let f = Fixture::new("ffi-set-action");
    let seen: std::sync::Mutex<Vec<(i32, String, String)>> = std::sync::Mutex::new(Vec::new());
    let st = unsafe { tms_store_set_event_callback(f.store, Some(count_events), &seen as *const _ as *mut _) };
    assert_eq!(st, TmsStatus::Ok);
    let req = c(r#"{"url":"https://cluster.example/tms/v1/set/action","token":"hidden-token-123","isPost":true,
        "postData":{"action":"Trans-Begin","cids":["c1","c1"]}}"#);
    let (user, ip) = (c("alice"), c("10.0.0.1"));
    let mut status = 0;
    let mut body = null_mut();
    let rc = unsafe { tms_set_action(f.store, req.as_ptr(), user.as_ptr(), ip.as_ptr(), null(), &mut status, &mut body) };
    assert_eq!(rc, TmsStatus::Ok);
    assert_eq!(status, 403);
    let body: serde_json::Value = serde_json::from_str(&take(body)).unwrap();
    assert_eq!(body["error_code"], "URL_NOT_ALLOWED");
    let (jobs, _, audit) = f.snapshot();
    assert!(jobs.is_empty());
    assert_eq!(audit.len(), 1, "the refusal is audited");
    assert!(audit[0].contains("failure") && !audit[0].contains("hidden-token-123"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].0, seen[0].1.as_str()), (20, "set_action_done"));
    assert!(seen[0].2.contains("result=fail") && !seen[0].2.contains("hidden-token-123"));
    unsafe { tms_store_set_event_callback(f.store, None, null_mut()) };
    let mut n = 7;
    assert_eq!(unsafe { tms_recover_interrupted(f.store, &mut n) }, TmsStatus::Ok);
    assert_eq!(n, 0);
}
