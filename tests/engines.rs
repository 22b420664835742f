//! The store's contract, run on each engine: SQLite files and a PostgreSQL server (a fresh schema
//! per test). The same test bodies, the engine a parameter.

mod common;

use common::*;
use tms::model::{AuditEntry, AuditFilter, JobStatus, JobUpdate, Json, NewJob};
use tms::options::Secret;
use tms::{ErrorKind, StoreOptions};

fn audit(user: &str) -> AuditEntry<'_> {
    AuditEntry { user_id: user, action_type: "PE-Enable", customer_ids: Some(r#"["c1", "c2"]"#), ..Default::default() }
}

/// SQL that lets an attacker change audit rows, per engine (the triggers stop everyone else).
fn tamper(loc: &Location, sql: &str) {
    if loc.is_postgres() {
        loc.execute(&format!("ALTER TABLE audit_log DISABLE TRIGGER USER; {sql}; ALTER TABLE audit_log ENABLE TRIGGER USER"));
    } else {
        loc.execute(&format!("DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete; {sql}"));
    }
}

macro_rules! on_each_engine {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Location::sqlite(stringify!($name))) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Location::postgres(stringify!($name))) } )*
        }
    };
}

on_each_engine!(
    jobs_round_trip,
    the_audit_trail_matches_whole_ids_and_counts,
    the_chain_shows_rows_altered_removed_or_inserted,
    audit_rows_are_append_only_for_every_writer,
    a_keyed_chain_refuses_a_store_without_its_key,
    the_appstatus_cache,
    many_threads_share_one_store,
    recovery_leaves_jobs_from_create_job_alone,
    a_store_copies_into_the_other_engine_and_back,
    a_legacy_append_after_a_rollback_is_adopted_explicitly,
    rows_the_app_wrote_past_are_adopted_where_they_sit,
    adopting_a_keyed_log_needs_its_key,
    a_late_outcome_replaces_the_recovery_verdict,
    durability_is_full_by_default_on_the_stores_own_connections,
);

/// What the legacy Python app's log_action does: a plain INSERT, no chain columns.
fn legacy_insert(loc: &Location, user: &str, status: &str) {
    loc.execute(&format!(
        "INSERT INTO audit_log (user_id, action_type, customer_ids, \"timestamp\", ip_address, status, error_message, duration_ms) \
         VALUES ('{user}', 'PE-Enable', '[\"c9\"]', '2026-12-01 10:00:00', '10.1.1.1', '{status}', NULL, 12)"
    ));
}

fn problem_of(store: &tms::Store) -> Option<(String, Option<i64>, Option<i64>)> {
    store.verify_audit(None).unwrap().first_problem.map(|p| (p.problem.as_str().to_owned(), p.id, p.seq))
}

fn a_legacy_append_after_a_rollback_is_adopted_explicitly(loc: Location) {
    let store = loc.store();
    for u in ["u1", "u2", "u3"] {
        store.record_audit(&audit(u)).unwrap();
    }
    assert_eq!(store.adopt_unchained("INC-7 rollback").unwrap_err().kind, ErrorKind::NotFound);
    // The rollback: the legacy code appends two plain rows after the chain's head (ids 4 and 5).
    legacy_insert(&loc, "legacy-a", "success");
    legacy_insert(&loc, "legacy-b", "failure");
    assert_eq!(problem_of(&store), Some(("inserted".into(), Some(4), None)));
    // Refused reasons write nothing.
    for bad in ["", "   ", "two\nlines"] {
        assert_eq!(store.adopt_unchained(bad).unwrap_err().kind, ErrorKind::InvalidInput, "{bad:?}");
    }
    assert_eq!(store.adopt_unchained(&"r".repeat(1001)).unwrap_err().kind, ErrorKind::TooLarge);
    assert_eq!(store.counts().unwrap().audit_rows, 5);

    let adoption = store.adopt_unchained("  INC-7 rollback to 1.x and forward  ").unwrap();
    assert_eq!((adoption.adopted, adoption.ids.as_str(), adoption.after_seq, adoption.marker_id, adoption.marker_seq), (2, "4-5", 3, 6, 4));
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok, "{:?}", v.first_problem);
    assert_eq!((v.checked, v.adopted, v.unchained, v.head.as_ref().unwrap().seq), (4, 2, 0, 4));
    // The adoption row is in the trail, by the system user, naming the rows and the reason.
    let marker = &store.audit_trail(&AuditFilter { action_type: Some("audit_adopt_unchained"), ..Default::default() }, 10).unwrap()[0];
    assert_eq!((marker.id, marker.user_id.as_str()), (6, "system"));
    let note = marker.error_message.as_deref().unwrap();
    assert!(note.contains(";ids=4-5: 2 unchained rows") && note.ends_with("adopted into the chain at seq 4; reason: INC-7 rollback to 1.x and forward"), "{note}");
    // Callers may not write the library's own row type; the chain goes on; nothing is left to adopt.
    let forged = tms::model::AuditEntry { action_type: "audit_adopt_unchained", ..audit("mallory") };
    assert_eq!(store.record_audit(&forged).unwrap_err().kind, ErrorKind::InvalidInput);
    store.record_audit(&audit("u4")).unwrap();
    assert!(store.verify_audit(None).unwrap().ok);
    assert_eq!(store.adopt_unchained("again").unwrap_err().kind, ErrorKind::NotFound);

    // A change anywhere still shows: an adopted row, a chained row before the adoption, the
    // adoption row itself, a row after it; and an adopted row removed.
    for (change, undo, expect) in [
        ("UPDATE audit_log SET status = 'success' WHERE id = 5", "UPDATE audit_log SET status = 'failure' WHERE id = 5", ("altered", Some(6), Some(4))),
        ("UPDATE audit_log SET user_id = 'x' WHERE chain_seq = 2", "UPDATE audit_log SET user_id = 'u2' WHERE chain_seq = 2", ("altered", Some(2), Some(2))),
        ("UPDATE audit_log SET error_message = replace(error_message, 'INC-7', 'INC-8') WHERE id = 6", "UPDATE audit_log SET error_message = replace(error_message, 'INC-8', 'INC-7') WHERE id = 6", ("altered", Some(6), Some(4))),
        ("UPDATE audit_log SET duration_ms = 1 WHERE chain_seq = 5", "UPDATE audit_log SET duration_ms = NULL WHERE chain_seq = 5", ("altered", Some(7), Some(5))),
    ] {
        tamper(&loc, change);
        let p = problem_of(&store).unwrap_or_else(|| panic!("{change} went unnoticed"));
        assert_eq!((p.0.as_str(), p.1, p.2), expect, "{change}");
        tamper(&loc, undo);
        assert!(store.verify_audit(None).unwrap().ok, "{undo}");
    }
    tamper(&loc, "DELETE FROM audit_log WHERE id = 4");
    assert_eq!(problem_of(&store), Some(("removed".into(), Some(6), Some(4))));
}

/// The usual order in production: roll back (the legacy code appends plain rows), roll forward,
/// the app writes chained rows again, and only then does verify-audit show the legacy rows. They
/// are adopted where they sit, and the chain around them keeps every check.
fn rows_the_app_wrote_past_are_adopted_where_they_sit(loc: Location) {
    let store = loc.store();
    store.record_audit(&audit("u1")).unwrap();
    legacy_insert(&loc, "legacy-a", "success"); // id 2
    store.record_audit(&audit("u2")).unwrap(); // rolled forward: chained after it
    legacy_insert(&loc, "legacy-b", "success"); // id 4: a second rollback
    store.record_audit(&audit("u3")).unwrap();
    assert_eq!(problem_of(&store), Some(("inserted".into(), Some(2), None)));
    let adoption = store.adopt_unchained("INC-9 two rollbacks").unwrap();
    assert_eq!((adoption.adopted, adoption.ids.as_str(), adoption.marker_id), (2, "2,4", 6));
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok && v.adopted == 2, "{:?}", v.first_problem);
    // A plain row written after the adoption is not covered by it: inserted again.
    legacy_insert(&loc, "ghost", "success"); // id 7
    store.record_audit(&audit("u4")).unwrap();
    assert_eq!(problem_of(&store), Some(("inserted".into(), Some(7), None)));
    // A change to an adopted row, or to a chained row between them, still shows.
    tamper(&loc, "DELETE FROM audit_log WHERE id = 7");
    assert!(store.verify_audit(None).unwrap().ok);
    tamper(&loc, "UPDATE audit_log SET user_id = 'x' WHERE id = 2");
    assert_eq!(problem_of(&store).map(|p| p.0), Some("altered".into()));
    tamper(&loc, "UPDATE audit_log SET user_id = 'legacy-a' WHERE id = 2");
    tamper(&loc, "UPDATE audit_log SET user_id = 'x' WHERE id = 3");
    assert_eq!(problem_of(&store), Some(("altered".into(), Some(3), Some(2))));
}

fn adopting_a_keyed_log_needs_its_key(loc: Location) {
    let key = |k: &str| StoreOptions { audit_hmac_key: Some(Secret(k.into())), ..Default::default() };
    let keyed = loc.open(&key("adopt-suite-key-0123456789")).unwrap();
    keyed.record_audit(&audit("u1")).unwrap();
    legacy_insert(&loc, "legacy", "success");
    for other in [loc.store(), loc.open(&key("another-key-0123456789")).unwrap()] {
        assert_eq!(other.adopt_unchained("INC-1").unwrap_err().kind, ErrorKind::AuditKeyMismatch);
    }
    assert_eq!(keyed.counts().unwrap().audit_rows, 2);
    assert_eq!(keyed.adopt_unchained("INC-1").unwrap().adopted, 1);
    let v = keyed.verify_audit(None).unwrap();
    assert!(v.ok && v.head.unwrap().hash.starts_with("hmac-sha256:"), "{:?}", v.first_problem);
}

fn jobs_round_trip(loc: Location) {
    let store = loc.store();
    let payload = serde_json::json!({"action": "Trans-Begin", "cids": ["c2", "c1"]});
    let first = store
        .create_job(&NewJob { request_payload: Some(Json::Value(&payload)), batch_id: Some("b-1"), ..job("alice", vec!["c2", " c1", "c2", "c3"]) })
        .unwrap();
    assert_eq!(first.customer_count, 3);
    let second = store.create_job(&job("alice", vec!["x"])).unwrap();
    store.create_job(&job("bob", vec!["y"])).unwrap();

    let details = store.get_job(&first.job_id).unwrap();
    assert_eq!((details.status, details.batch_id.as_deref(), details.customer_count), (Some(JobStatus::InProgress), Some("b-1"), 3));
    assert_eq!(details.request_payload, payload);
    assert_eq!(store.get_job_customers(&first.job_id).unwrap(), ["c1", "c2", "c3"]);
    let listed: Vec<String> = store.get_user_jobs("alice", 50).unwrap().into_iter().map(|j| j.job_id).collect();
    assert_eq!(listed, [second.job_id.clone(), first.job_id.clone()]);
    assert_eq!(store.get_user_jobs("alice", 1).unwrap().len(), 1);

    store.update_job(&first.job_id, &JobUpdate { status: JobStatus::Failed, http_status: Some(401), error_message: Some("denied"), ..Default::default() }).unwrap();
    store.update_job(&first.job_id, &JobUpdate { status: JobStatus::Success, ..Default::default() }).unwrap();
    let d = store.get_job(&first.job_id).unwrap();
    assert_eq!((d.status, d.http_status, d.error_message.as_deref()), (Some(JobStatus::Success), Some(401), Some("denied")));
    assert_eq!(store.update_job("missing", &JobUpdate::default()).unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(store.get_job("missing").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(store.get_job_customers("missing").unwrap_err().kind, ErrorKind::NotFound);
}

fn the_audit_trail_matches_whole_ids_and_counts(loc: Location) {
    let store = loc.store();
    store.record_audit(&audit("ann")).unwrap();
    store.record_audit(&AuditEntry { customer_ids: Some("c10"), status: Some(tms::model::AuditStatus::Failure), ..audit("ann") }).unwrap();
    store.record_audit(&AuditEntry { action_type: "Trans-Begin", customer_ids: Some("c3, c1"), ..audit("ben") }).unwrap();
    let c1 = store.audit_trail(&AuditFilter { customer_id: Some("c1"), ..Default::default() }, 50).unwrap();
    let users: Vec<&str> = c1.iter().map(|r| r.user_id.as_str()).collect();
    assert_eq!(users, ["ben", "ann"]);
    assert_eq!(store.audit_trail(&AuditFilter { customer_id: Some("c10"), ..Default::default() }, 50).unwrap().len(), 1);
    assert_eq!(store.audit_trail(&AuditFilter { user_id: Some("ann"), ..Default::default() }, 50).unwrap().len(), 2);
    assert_eq!(store.action_types().unwrap(), ["PE-Enable", "Trans-Begin"]);
    let stats = store.audit_stats().unwrap();
    assert_eq!((stats.total_records, stats.unique_users, stats.successful_actions, stats.failed_actions), (3, 2, 2, 1));
    assert_eq!(stats.success_rate_percent, 66.67);
    assert_eq!(store.clear_audit_logs().unwrap(), 3);
    assert_eq!(store.action_types().unwrap(), ["audit_reset"]);
    store.record_audit(&audit("carl")).unwrap();
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok && v.head.unwrap().seq == 5, "{:?}", v.first_problem);
}

fn the_chain_shows_rows_altered_removed_or_inserted(loc: Location) {
    let store = loc.store();
    for u in ["u1", "u2", "u3", "u4"] {
        store.record_audit(&audit(u)).unwrap();
    }
    let head = store.verify_audit(None).unwrap().head.unwrap();
    let problem = |anchor: Option<(i64, &str)>| store.verify_audit(anchor).unwrap().first_problem.map(|p| (p.problem.as_str(), p.seq));
    tamper(&loc, "UPDATE audit_log SET status = 'failure' WHERE chain_seq = 2");
    assert_eq!(problem(None), Some(("altered", Some(2))));
    tamper(&loc, "UPDATE audit_log SET status = 'success' WHERE chain_seq = 2");
    assert_eq!(problem(None), None);
    tamper(&loc, "INSERT INTO audit_log (user_id, action_type, status) VALUES ('ghost', 'PE-Enable', 'success')");
    assert_eq!(problem(None).map(|p| p.0), Some("inserted"));
    tamper(&loc, "DELETE FROM audit_log WHERE user_id = 'ghost'");
    tamper(&loc, "DELETE FROM audit_log WHERE chain_seq = 4");
    assert_eq!(problem(None), None); // a cut tail shows only against an anchor
    assert_eq!(problem(Some((head.seq, &head.hash))), Some(("cut", Some(4))));
    tamper(&loc, "DELETE FROM audit_log WHERE chain_seq = 2");
    assert_eq!(problem(None), Some(("removed", Some(3))));
}

fn audit_rows_are_append_only_for_every_writer(loc: Location) {
    let store = loc.store();
    store.record_audit(&audit("u1")).unwrap();
    for sql in ["UPDATE audit_log SET status = 'failure'", "DELETE FROM audit_log"] {
        let refused = loc.try_execute(sql).expect_err(sql);
        assert!(refused.contains("audit_log is append-only"), "{sql} refused otherwise: {refused}");
    }
    assert!(store.verify_audit(None).unwrap().ok);
}

fn a_keyed_chain_refuses_a_store_without_its_key(loc: Location) {
    let keyed = StoreOptions { audit_hmac_key: Some(Secret("engine-suite-key-0123456789".into())), ..Default::default() };
    let store = loc.open(&keyed).unwrap();
    store.record_audit(&audit("u1")).unwrap();
    drop(store);
    let unkeyed = loc.store();
    assert_eq!(unkeyed.record_audit(&audit("u2")).unwrap_err().kind, ErrorKind::AuditKeyMismatch);
    assert_eq!(unkeyed.verify_audit(None).unwrap().first_problem.unwrap().problem.as_str(), "unverifiable");
    let store = loc.open(&keyed).unwrap();
    assert!(store.verify_audit(None).unwrap().ok);
}

fn the_appstatus_cache(loc: Location) {
    let store = loc.store();
    store.cache_put("c1", "ALL", &serde_json::json!({"apps": [1]}), 1800).unwrap();
    store.cache_put("c1", "ALL", &serde_json::json!({"apps": [2]}), 1800).unwrap();
    store.cache_put("c2", "X", Json::Text("[]"), 1800).unwrap();
    assert_eq!(store.cache_get("c1", "ALL", 1800).unwrap(), Some(serde_json::json!({"apps": [2]})));
    let batch = store.cache_get_batch(&["c1", "c9", "c1"], "ALL", 1800).unwrap();
    assert_eq!((batch.hit_count, batch.misses), (1, vec!["c9".to_string()]));
    let stats = store.cache_stats().unwrap();
    assert_eq!((stats.total_entries, stats.unique_cids), (2, 2));
    assert_eq!(store.cache_invalidate(None, Some("X")).unwrap(), 1);
    assert_eq!(store.cache_cleanup(1800).unwrap(), 0);
    assert_eq!(store.cache_invalidate(None, None).unwrap(), 1);
}

fn many_threads_share_one_store(loc: Location) {
    let store = loc.store();
    std::thread::scope(|s| {
        for t in 0..6 {
            let store = &store;
            s.spawn(move || {
                for i in 0..20 {
                    let user = format!("t{t}");
                    let (a, b) = (format!("a{i}"), format!("b{i}"));
                    store.create_job(&job(&user, vec![&a, &b])).unwrap();
                    store.record_audit(&audit(&user)).unwrap();
                }
            });
        }
    });
    for t in 0..6 {
        assert_eq!(store.get_user_jobs(&format!("t{t}"), 100).unwrap().len(), 20);
    }
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok && v.checked == 120, "{v:?}");
}

/// Recovery marks only the library's own Set Actions (tests/python/test_set_action.py kills a
/// process mid-call on both engines to show one recovered); a job from `create_job` is its
/// caller's to finish, however old (the dashboard's `/api/jobs/create` leaves them IN_PROGRESS).
fn recovery_leaves_jobs_from_create_job_alone(loc: Location) {
    let options = StoreOptions { request_timeout_s: 1, interrupted_after_s: 2, ..Default::default() };
    let store = loc.open(&options).unwrap();
    let id = store.create_job(&job("u", vec!["c1"])).unwrap().job_id;
    assert_eq!(store.recover_interrupted().unwrap(), 0);
    std::thread::sleep(std::time::Duration::from_millis(2300));
    assert_eq!(store.recover_interrupted().unwrap(), 0);
    drop(store);
    let store = loc.open(&options).unwrap(); // nor at open
    assert_eq!(store.get_job(&id).unwrap().status, Some(JobStatus::InProgress));
}

/// A Set Action judged interrupted (its process looked dead) whose call then answers: the late
/// outcome replaces every field of the verdict, and its audit row is written once.
fn a_late_outcome_replaces_the_recovery_verdict(loc: Location) {
    use tms::storage::{AuditRecord, JobChange, JobRecord};
    drop(loc.store()); // the schema
    let engine = loc.engine();
    let cids = vec!["c1".to_owned()];
    let record = JobRecord {
        job_id: "late-1",
        user_id: "alice",
        batch_id: None,
        action_code: 2,
        action_name: "PE-Enable",
        cluster_url: Some("http://127.0.0.1:9/tms/v1/set/action"),
        created_at: "2026-12-01T10:00:00.000000",
        request_payload: None,
        response_summary: None,
        status: "IN_PROGRESS",
        cids: &cids,
        set_action: true,
    };
    engine.insert_job(&record).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let verdict = "interrupted: no outcome recorded";
    assert_eq!(engine.recover_interrupted(std::time::Duration::ZERO, verdict, "2026-12-01T10:00:05.000000").unwrap(), 1);
    let judged = engine.job("late-1").unwrap().unwrap();
    assert_eq!((judged.status, judged.error_message.as_deref()), (Some(JobStatus::Failed), Some(verdict)));
    let outcome = JobChange {
        job_id: "late-1",
        status: "SUCCESS",
        http_status: Some(200),
        error_message: None,
        response_summary: Some(r#"{"status":"success"}"#),
        updated_at: "2026-12-01T10:00:09.000000",
    };
    let row = AuditRecord {
        user_id: "alice",
        action_type: "PE-Enable",
        customer_ids: Some(r#"["c1"]"#),
        timestamp: "2026-12-01 10:00:09",
        ip_address: None,
        status: "success",
        error_message: None,
        duration_ms: Some(9000),
    };
    engine.finish_set_action(&outcome, Some(&row), None).unwrap();
    let late = engine.job("late-1").unwrap().unwrap();
    assert_eq!((late.status, late.http_status, late.error_message.as_deref()), (Some(JobStatus::Success), Some(200), None));
    assert_eq!(late.response_summary.as_deref(), Some(r#"{"status":"success"}"#));
    assert_eq!(late.updated_at.as_deref(), Some("2026-12-01T10:00:09.000000"));
    // Nothing recovers it again, and its audit row is there once.
    assert_eq!(engine.recover_interrupted(std::time::Duration::ZERO, verdict, "2026-12-01T10:00:10.000000").unwrap(), 0);
    drop(engine);
    let store = loc.store();
    assert_eq!(store.get_job("late-1").unwrap().status, Some(JobStatus::Success));
    assert_eq!(store.audit_trail(&AuditFilter { user_id: Some("alice"), ..Default::default() }, 50).unwrap().len(), 1);
}

/// The durability default as the store's own connections have it: synchronous FULL and WAL on
/// both SQLite files, synchronous_commit on for PostgreSQL.
fn durability_is_full_by_default_on_the_stores_own_connections(loc: Location) {
    let store = loc.store();
    store.create_job(&job("d", vec!["c"])).unwrap();
    let d = store.counts().unwrap().durability;
    let expected: Vec<(&str, &str)> = if loc.is_postgres() {
        vec![("synchronous_commit", "on")]
    } else {
        vec![("audit.journal_mode", "wal"), ("audit.synchronous", "FULL"), ("jobs.journal_mode", "wal"), ("jobs.synchronous", "FULL")]
    };
    let got: Vec<(&str, &str)> = d.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, expected);
}

fn a_store_copies_into_the_other_engine_and_back(loc: Location) {
    // From the legacy fixtures (SQLite) into this engine, then back out into fresh SQLite files.
    let legacy = TempDir::new("copy-legacy");
    copy_fixture(&legacy, "jobs.db", "jobs.db");
    copy_fixture(&legacy, "audit.db", "audit.db");
    let src = tms::Store::open(legacy.join("jobs.db"), legacy.join("audit.db"), &StoreOptions::default()).unwrap();
    src.record_audit(&audit("new")).unwrap();
    src.cache_put("c1", "ALL", &serde_json::json!(1), 1800).unwrap();
    let dst = loc.store();
    let report = src.copy_into(&dst).unwrap();
    assert_eq!((report.jobs.copied, report.customers_copied, report.cache.copied, report.audit.copied), (20, 106, 1, 8));
    assert!(report.audit_verification.ok && report.audit_verification.unchained == 7, "{report:?}");
    let again = src.copy_into(&dst).unwrap();
    assert_eq!((again.jobs.copied, again.jobs.already_there, again.audit.already_there), (0, 20, 8));
    for user in ["test_user_001", "test_user_002"] {
        assert_eq!(src.get_user_jobs(user, 500).unwrap(), dst.get_user_jobs(user, 500).unwrap());
    }
    // The copy goes on as a store of its own: its chain continues the copied one.
    dst.record_audit(&audit("after")).unwrap();
    assert!(dst.verify_audit(None).unwrap().ok);
    let back = TempDir::new("copy-back");
    let out = tms::Store::open(back.join("jobs.db"), back.join("audit.db"), &StoreOptions::default()).unwrap();
    let report = dst.copy_into(&out).unwrap();
    assert!(report.audit_verification.ok && report.audit.copied == 9, "{report:?}");
    // A destination holding another log is refused before anything is written.
    let other = TempDir::new("copy-other");
    let foreign = tms::Store::open(other.join("jobs.db"), other.join("audit.db"), &StoreOptions::default()).unwrap();
    for _ in 0..20 {
        foreign.record_audit(&audit("other")).unwrap();
    }
    assert_eq!(src.copy_into(&foreign).unwrap_err().kind, ErrorKind::InvalidInput);
    assert!(foreign.get_user_jobs("test_user_001", 10).unwrap().is_empty());
}

#[test]
fn postgres_refuses_options_that_configure_sqlite_files() {
    let loc = Location::postgres("sqlite-only-options");
    let err = loc.open(&StoreOptions { max_page_count: 100, ..Default::default() }).unwrap_err();
    assert!(err.kind == ErrorKind::InvalidInput && err.message.contains("max_page_count"), "{}", err.message);
    let err = loc.open(&StoreOptions { journal_size_limit_bytes: 1, ..Default::default() }).unwrap_err();
    assert!(err.message.contains("journal_size_limit_bytes"), "{}", err.message);
}

#[test]
fn postgres_refuses_a_newer_schema_and_reads_a_read_only_server() {
    let loc = Location::postgres("newer");
    let store = loc.store();
    store.create_job(&job("u", vec!["c1"])).unwrap();
    drop(store);
    let Location::Postgres { admin_url, schema, .. } = &loc else { unreachable!() };
    // A read-only session (as on a standby): reads work, writes are refused up front.
    let read_only = with_param(admin_url, &format!("options=-csearch_path%3D{schema}%20-cdefault_transaction_read_only%3Don"));
    let ro = tms::Store::open_postgres(&read_only, &StoreOptions::default());
    let ro = match ro {
        Ok(s) => s,
        Err(e) => panic!("read-only open: {e}"),
    };
    assert_eq!(ro.get_user_jobs("u", 10).unwrap().len(), 1);
    assert_eq!(ro.create_job(&job("u", vec!["c2"])).unwrap_err().kind, ErrorKind::ReadOnly);
    drop(ro);
    loc.execute("UPDATE tms_schema SET version = 99");
    let err = loc.open(&StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::SchemaTooNew, "{}", err.message);
}

#[test]
fn postgres_errors_never_show_the_password() {
    let pw_url = std::env::var("TMS_TEST_PG_PW_URL").expect("TMS_TEST_PG_PW_URL (scripts/with-postgres.sh sets it)");
    // A schema of the password role's own, for the store it opens.
    let loc = Location::postgres("password");
    let Location::Postgres { schema, .. } = &loc else { unreachable!() };
    let role = pw_url.split("://").nth(1).and_then(|r| r.split(':').next()).unwrap().to_owned();
    loc.execute(&format!("GRANT ALL ON SCHEMA {schema} TO {role}"));
    let pw_url = with_param(&pw_url, &format!("options=-csearch_path%3D{schema}"));
    let wrong = pw_url.replace(":right-password@", ":wrong-password-123@");
    assert_ne!(wrong, pw_url, "TMS_TEST_PG_PW_URL's password must be right-password");
    let err = tms::Store::open_postgres(&wrong, &StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::CantOpen, "{}", err.message);
    assert!(err.message.contains("password authentication failed"), "{}", err.message);
    assert!(!err.message.contains("wrong-password-123") && !err.message.contains("right-password"), "{}", err.message);
    // Wrong passwords in every legal and sloppy spelling: refused by the server, never shown,
    // not even in part (an unencoded `@` used to spill the password's tail into the host).
    let (_, rest) = pw_url.split_once('@').unwrap();
    let (hostport, tail) = rest.split_once('/').unwrap();
    let multi = format!("{hostport},{hostport}/{tail}&target_session_attrs=read-write");
    for url in [
        format!("postgresql://tms_pw:Hunter2@Zq9Secret@{rest}"),
        format!("postgresql://tms_pw:Hu:nt/er2%zz@Zq9Secret@{rest}"),
        format!("postgresql://tms_pw:Hunter2%40Zq9Secret@{rest}"),
        format!("postgresql://tms_pw@{rest}&password=Hunter2@Zq9Secret"),
        format!("postgresql://tms_pw:Hunter2@Zq9Secret@{multi}"),
    ] {
        let err = tms::Store::open_postgres(&url, &StoreOptions::default()).unwrap_err();
        assert!(err.message.contains("password authentication failed"), "{url}: {}", err.message);
        for piece in ["Hunter", "Zq9", "Secret", "nt/er"] {
            assert!(!err.message.contains(piece), "{url}: {}", err.message);
        }
    }
    // The right one works.
    assert!(tms::Store::open_postgres(&pw_url, &StoreOptions::default()).is_ok());
}

#[test]
fn postgres_over_tls_as_libpq_modes_say() {
    let tls_url = std::env::var("TMS_TEST_PG_TLS_URL").expect("TMS_TEST_PG_TLS_URL (scripts/with-postgres.sh sets it)");
    let ca = std::env::var("TMS_TEST_PG_CA").expect("TMS_TEST_PG_CA");
    let opts = StoreOptions::default();
    assert!(tms::Store::open_postgres(&with_param(&tls_url, "sslmode=require"), &opts).is_ok());
    let full = with_param(&tls_url, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let store = tms::Store::open_postgres(&full, &opts).unwrap();
    store.record_audit(&audit("tls")).unwrap();
    // Another CA (the system's roots, which do not hold the test CA) refuses the server.
    let err = tms::Store::open_postgres(&with_param(&tls_url, "sslmode=verify-full"), &opts).unwrap_err();
    assert_eq!(err.kind, ErrorKind::CantOpen, "{}", err.message);
    // verify-full checks the name: "localhost" is in the certificate, "127.0.0.2" is not.
    let other_name = full.replace("127.0.0.1", "localhost");
    assert!(tms::Store::open_postgres(&other_name, &opts).is_ok());
}
