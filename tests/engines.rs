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
    a_checkpoint_catches_a_log_cut_changed_or_rewritten_up_to_it,
    a_checkpoint_of_a_keyed_log_catches_a_rewrite_with_or_without_the_key,
    checkpoints_are_signed_only_for_a_log_that_verifies_and_checked_strictly,
    a_copy_into_another_store_is_refused_before_anything_is_written,
    create_false_opens_an_existing_store_only,
    a_keyed_log_swapped_for_a_keyless_one_fails_with_the_key,
    a_plain_log_taking_on_a_key_verifies_and_stays_keyed,
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

/// Empty the audit log as an attacker with write access would (on PostgreSQL the chain's head
/// row too, so that the library starts a new chain).
fn wipe(loc: &Location) {
    tamper(loc, "DELETE FROM audit_log");
    if loc.is_postgres() {
        loc.execute("UPDATE audit_chain_head SET seq = 0, hash = ''");
    }
}

/// Someone with write access but without the key replaces a keyed log with a forged one (the
/// whole table rewritten): checked with the key, it must not verify, whatever the forgery.
fn a_keyed_log_swapped_for_a_keyless_one_fails_with_the_key(loc: Location) {
    let keyed = StoreOptions { audit_hmac_key: Some(Secret("engine-suite-key-0123456789".into())), ..Default::default() };
    let app = loc.open(&keyed).unwrap();
    for u in ["u1", "u2", "u3"] {
        app.record_audit(&audit(u)).unwrap();
    }
    assert!(app.verify_audit(None).unwrap().ok);
    // The swap: every row deleted (PostgreSQL's head row reset too), a plain SHA-256 chain
    // written in their place.
    wipe(&loc);
    {
        let forger = loc.store();
        for u in ["u1", "u2", "u3"] {
            forger.record_audit(&audit(u)).unwrap();
        }
        assert!(forger.verify_audit(None).unwrap().ok); // without the key it looks fine
    }
    let checker = loc.open(&keyed).unwrap();
    let v = checker.verify_audit(None).unwrap();
    assert!(!v.ok, "a forged keyless log verified with the key: {v:?}");
    let p = v.first_problem.unwrap();
    assert_eq!((p.problem.as_str(), p.seq), ("not_keyed", Some(3)), "{}", p.detail);
    // The app that wrote the keyed head refuses to continue the forgery (its rows would bless it).
    assert_eq!(app.record_audit(&audit("u4")).unwrap_err().kind, ErrorKind::AuditKeyMismatch);
    // Forged as rows from before any chain (legacy rows): the same.
    wipe(&loc);
    legacy_insert(&loc, "u1", "success");
    let v = checker.verify_audit(None).unwrap();
    assert!(!v.ok && v.first_problem.as_ref().unwrap().problem.as_str() == "not_keyed", "{v:?}");
    // Plain rows after keyed ones were never allowed; a keyed store refuses to append after them.
    wipe(&loc);
    drop(app);
    let app = loc.open(&keyed).unwrap();
    app.record_audit(&audit("k1")).unwrap();
    let head = app.verify_audit(None).unwrap().head.unwrap();
    let forged_prev = head.hash.clone();
    let plain = tms::audit_chain::ChainKey::new(None).hash(&tms::audit_chain::ChainFields {
        seq: head.seq + 1, prev: &forged_prev, user_id: "mallory", action_type: "PE-Enable", customer_ids: None,
        timestamp: Some("2026-12-01 10:00:00"), ip_address: None, status: Some("success"), error_message: None, duration_ms: None,
    });
    loc.execute(&format!(
        "INSERT INTO audit_log (user_id, action_type, \"timestamp\", status, chain_seq, chain_prev, chain_hash) \
         VALUES ('mallory', 'PE-Enable', '2026-12-01 10:00:00', 'success', {}, '{forged_prev}', '{plain}')",
        head.seq + 1
    ));
    if loc.is_postgres() {
        loc.execute(&format!("UPDATE audit_chain_head SET seq = {}, hash = '{plain}'", head.seq + 1));
    }
    assert_eq!(problem_of(&app).unwrap().0, "inserted");
    drop(app);
    let app = loc.open(&keyed).unwrap(); // a fresh process, no memory of the head
    assert_eq!(app.record_audit(&audit("k2")).unwrap_err().kind, ErrorKind::AuditKeyMismatch);
    // An empty log is the one forgery the key cannot show (a cut to nothing): anchors and
    // checkpoints kept elsewhere do.
    wipe(&loc);
    assert!(checker.verify_audit(None).unwrap().ok);
}

/// A log begun without a key and continued with one: the plain rows before the first keyed row
/// are bound by its HMAC (its link is their head's hash), so it verifies with the key.
fn a_plain_log_taking_on_a_key_verifies_and_stays_keyed(loc: Location) {
    let keyed = StoreOptions { audit_hmac_key: Some(Secret("engine-suite-key-0123456789".into())), ..Default::default() };
    {
        let plain = loc.store();
        plain.record_audit(&audit("p1")).unwrap();
        plain.record_audit(&audit("p2")).unwrap();
    }
    let app = loc.open(&keyed).unwrap();
    assert!(!app.verify_audit(None).unwrap().ok); // nothing keyed yet: not_keyed
    app.record_audit(&audit("k1")).unwrap();
    let v = app.verify_audit(None).unwrap();
    assert!(v.ok && v.checked == 3, "{v:?}");
    // Altering a plain row before the key now breaks the keyed row's link.
    tamper(&loc, "UPDATE audit_log SET user_id = 'mallory' WHERE chain_seq = 1");
    assert!(!app.verify_audit(None).unwrap().ok);
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

/// A destination that is not empty nor an earlier copy of the source is refused before the copy
/// writes anything: another audit log (even a shorter one, whose ids the source also has), a job
/// or a cache entry the source does not have. The destination is left row for row as it was.
fn a_copy_into_another_store_is_refused_before_anything_is_written(loc: Location) {
    let dir = TempDir::new("copy-src");
    let src = tms::Store::open(dir.join("jobs.db"), dir.join("audit.db"), &StoreOptions::default()).unwrap();
    for i in 0..5 {
        src.create_job(&job("alice", vec!["c1", "c2"])).unwrap();
        src.record_audit(&audit(&format!("src{i}"))).unwrap();
    }
    src.cache_put("c1", "ALL", &serde_json::json!({"ready": true}), 1800).unwrap();
    let refuse = |what: &str, dst: &tms::Store| {
        let before = loc.snapshot();
        let err = src.copy_into(dst).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{what}: {}", err.message);
        assert!(err.message.contains("nothing was written"), "{what}: {}", err.message);
        assert_eq!(loc.snapshot(), before, "{what}: the destination changed");
    };
    {
        // Another, shorter log: ids 1 and 2 are the source's ids, not its rows.
        let dst = loc.store();
        dst.record_audit(&audit("other")).unwrap();
        dst.record_audit(&audit("other")).unwrap();
        refuse("another audit log", &dst);
        assert!(dst.get_user_jobs("alice", 10).unwrap().is_empty());
    }
    tamper(&loc, "DELETE FROM audit_log");
    {
        // A job of another store's, no audit row.
        let dst = loc.store();
        dst.create_job(&job("mallory", vec!["m1"])).unwrap();
        refuse("a foreign job", &dst);
        loc.execute("DELETE FROM job_customers; DELETE FROM jobs");
        // A cache entry the source does not have.
        dst.cache_put("c9", "ALL", &serde_json::json!(1), 1800).unwrap();
        refuse("a foreign cache entry", &dst);
        loc.execute("DELETE FROM appstatus_cache");
        // Empty again: the copy goes through, and a rerun into the copy is still welcome.
        let report = src.copy_into(&dst).unwrap();
        assert_eq!((report.jobs.copied, report.audit.copied, report.cache.copied), (5, 5, 1), "{report:?}");
        assert!(report.audit_verification.ok);
        src.record_audit(&audit("later")).unwrap();
        let again = src.copy_into(&dst).unwrap();
        assert_eq!((again.jobs.already_there, again.audit.already_there, again.audit.copied), (5, 5, 1));
        // The copy's own later row makes it another log.
        dst.record_audit(&audit("dst-only")).unwrap();
        refuse("a copy that went on by itself", &dst);
    }
}

/// `create: false` (the `tms` tool's way): a missing store is CantOpen, naming it, and nothing is
/// created; an existing one opens as usual.
fn create_false_opens_an_existing_store_only(loc: Location) {
    let existing_only = StoreOptions { create: false, ..Default::default() };
    let before = loc.snapshot();
    let err = loc.open(&existing_only).unwrap_err();
    assert_eq!(err.kind, ErrorKind::CantOpen, "{}", err.message);
    assert!(err.message.contains("tms init"), "{}", err.message);
    assert_eq!(loc.snapshot(), before);
    if let Location::Sqlite(dir) = &loc {
        assert!(err.message.contains(&dir.join("jobs.db").display().to_string()), "{}", err.message);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a file was created");
        // One file there, the other missing: still nothing created, and the missing one named.
        drop(tms::Store::open(dir.join("jobs.db"), dir.join("other-audit.db"), &StoreOptions::default()).unwrap());
        let err = loc.open(&existing_only).unwrap_err();
        assert!(err.kind == ErrorKind::CantOpen && err.message.contains("audit.db"), "{}", err.message);
        assert!(!dir.join("audit.db").exists());
        std::fs::rename(dir.join("other-audit.db"), dir.join("audit.db")).unwrap();
    } else {
        assert!(err.message.contains("holds no store"), "{}", err.message);
        drop(loc.store()); // creates the tables
    }
    let store = loc.open(&existing_only).unwrap();
    store.record_audit(&audit("u")).unwrap();
    assert!(store.verify_audit(None).unwrap().ok);
    assert!(tms::StoreOptions::from_json(r#"{"create": false}"#).is_ok_and(|o| !o.create));
    assert!(tms::StoreOptions::from_json(r#"{"create": 0}"#).is_err());
}

/// A URL's `options=-csearch_path%3D...` chooses the store's schema, and only that schema: a
/// first schema that does not exist is refused (not followed to the next one on the path), and
/// another schema on the path never serves the store's tables.
#[test]
fn postgres_keeps_the_store_in_the_first_schema_of_the_urls_search_path() {
    let n = std::process::id();
    let (missing, fallback, store, other, mixed) =
        (format!("sp_missing_{n}"), format!("sp_fallback_{n}"), format!("sp_store_{n}"), format!("sp_other_{n}"), format!("Sp_Mixed_{n}"));
    let mut admin = ::postgres::Client::connect(&pg_url(), ::postgres::NoTls).unwrap();
    let drop_all = format!(
        "DROP SCHEMA IF EXISTS {fallback} CASCADE; DROP SCHEMA IF EXISTS {store} CASCADE; \
         DROP SCHEMA IF EXISTS {other} CASCADE; DROP SCHEMA IF EXISTS \"{mixed}\" CASCADE"
    );
    admin.batch_execute(&drop_all).unwrap();
    admin.batch_execute(&format!("CREATE SCHEMA {fallback}; CREATE SCHEMA {store}; CREATE SCHEMA {other}; CREATE SCHEMA \"{mixed}\"")).unwrap();
    let url = |path: &str| with_param(&pg_url(), &format!("options=-csearch_path%3D{path}"));
    let tables_in = |admin: &mut ::postgres::Client, schema: &str| -> i64 {
        admin.query_one("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = $1", &[&schema]).unwrap().get(0)
    };
    // A mistyped first schema: refused, and nothing lands in the next one.
    let err = tms::Store::open_postgres(&url(&format!("{missing}%2C{fallback}")), &StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::CantOpen, "{}", err.message);
    assert!(err.message.contains(&missing) && err.message.contains("does not exist"), "{}", err.message);
    assert_eq!(tables_in(&mut admin, &fallback), 0);
    // Another schema later on the path holds a store: it is not used; the first gets its own.
    let theirs = tms::Store::open_postgres(&url(&other), &StoreOptions::default()).unwrap();
    theirs.create_job(&job("other-user", vec!["c1"])).unwrap();
    theirs.record_audit(&audit("other-user")).unwrap();
    let ours = tms::Store::open_postgres(&url(&format!("{store}%2C{other}")), &StoreOptions::default()).unwrap();
    assert!(ours.get_user_jobs("other-user", 10).unwrap().is_empty());
    assert_eq!(ours.counts().unwrap().audit_rows, 0);
    ours.record_audit(&audit("mine")).unwrap();
    assert!(tables_in(&mut admin, &store) > 0);
    assert_eq!(theirs.counts().unwrap().audit_rows, 1);
    // A quoted mixed-case schema name is honoured as written.
    let quoted = tms::Store::open_postgres(&url(&format!("%22{mixed}%22")), &StoreOptions::default()).unwrap();
    quoted.record_audit(&audit("q")).unwrap();
    assert!(tables_in(&mut admin, &mixed) > 0);
    drop((theirs, ours, quoted));
    admin.batch_execute(&drop_all).unwrap();
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

// Signed checkpoints. An attacker who can write the files (or tables) rewrites the audit log and
// recomputes its whole chain, as the library would have written it: `write_log` deletes every
// row and inserts `rows` with ids 1.. and a chain computed with `key` (or plain SHA-256).

/// One audit row's fields as the chain covers them (and the first row's commitment).
#[derive(Clone, Debug, PartialEq)]
struct LogRow {
    user_id: String,
    action_type: String,
    customer_ids: Option<String>,
    timestamp: Option<String>,
    ip_address: Option<String>,
    status: Option<String>,
    error_message: Option<String>,
    duration_ms: Option<i64>,
    prev: Option<String>,
}

const LOG_COLUMNS: &str = "user_id, action_type, customer_ids, \"timestamp\", ip_address, status, error_message, duration_ms, chain_prev";

fn read_log(loc: &Location) -> Vec<LogRow> {
    let sql = format!("SELECT {LOG_COLUMNS} FROM audit_log ORDER BY id");
    match loc {
        Location::Sqlite(dir) => {
            let conn = inspect(&dir.join("audit.db"));
            let mut st = conn.prepare(&sql).unwrap();
            st.query_map([], |r| {
                Ok(LogRow {
                    user_id: r.get(0)?, action_type: r.get(1)?, customer_ids: r.get(2)?, timestamp: r.get(3)?,
                    ip_address: r.get(4)?, status: r.get(5)?, error_message: r.get(6)?, duration_ms: r.get(7)?, prev: r.get(8)?,
                })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        }
        Location::Postgres { url, .. } => ::postgres::Client::connect(url, ::postgres::NoTls)
            .unwrap()
            .query(&sql, &[])
            .unwrap()
            .iter()
            .map(|r| LogRow {
                user_id: r.get(0), action_type: r.get(1), customer_ids: r.get(2), timestamp: r.get(3),
                ip_address: r.get(4), status: r.get(5), error_message: r.get(6), duration_ms: r.get(7), prev: r.get(8),
            })
            .collect(),
    }
}

fn sql_text(v: &Option<String>) -> String {
    v.as_ref().map_or_else(|| "NULL".to_owned(), |t| format!("'{}'", t.replace('\'', "''")))
}

/// Replace the whole log by `rows`, chained afresh with `key` (None: plain SHA-256).
fn write_log(loc: &Location, key: Option<&str>, rows: &[LogRow]) {
    let key = tms::audit_chain::ChainKey::new(key);
    let genesis = rows[0].prev.clone().unwrap();
    let mut sql = String::from("DELETE FROM audit_log;");
    let mut last: Option<String> = None;
    for (i, r) in rows.iter().enumerate() {
        let seq = i as i64 + 1;
        let prev = last.clone().unwrap_or_else(|| genesis.clone());
        let hash = key.hash(&tms::audit_chain::ChainFields {
            seq,
            prev: &prev,
            user_id: &r.user_id,
            action_type: &r.action_type,
            customer_ids: r.customer_ids.as_deref(),
            timestamp: r.timestamp.as_deref(),
            ip_address: r.ip_address.as_deref(),
            status: r.status.as_deref(),
            error_message: r.error_message.as_deref(),
            duration_ms: r.duration_ms,
        });
        sql += &format!(
            "INSERT INTO audit_log (id, {LOG_COLUMNS}, chain_seq, chain_hash) VALUES ({seq}, {}, {}, {}, {}, {}, {}, {}, {}, '{prev}', {seq}, '{hash}');",
            sql_text(&Some(r.user_id.clone())),
            sql_text(&Some(r.action_type.clone())),
            sql_text(&r.customer_ids),
            sql_text(&r.timestamp),
            sql_text(&r.ip_address),
            sql_text(&r.status),
            sql_text(&r.error_message),
            r.duration_ms.map_or_else(|| "NULL".to_owned(), |d| d.to_string()),
        );
        last = Some(hash);
    }
    if loc.is_postgres() {
        sql += &format!("UPDATE audit_chain_head SET seq = {}, hash = '{}'", rows.len(), last.unwrap());
    }
    tamper(loc, sql.trim_end_matches(';'));
}

/// The first problem of verifying against `checkpoint`: (problem, seq), None when ok.
fn against(store: &tms::Store, checkpoint: &str, public: &str) -> Option<(String, Option<i64>)> {
    let v = store.verify_audit_checkpoint(checkpoint, public).unwrap();
    assert_eq!(v.verification.ok, v.verification.first_problem.is_none());
    v.verification.first_problem.map(|p| (p.problem.as_str().to_owned(), p.seq))
}

fn a_checkpoint_catches_a_log_cut_changed_or_rewritten_up_to_it(loc: Location) {
    let store = loc.store();
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        store.record_audit(&audit(u)).unwrap();
    }
    let keys = tms::audit_checkpoint::generate_keys("audit.engine-suite").unwrap();
    let checkpoint = store.audit_checkpoint(&keys.private, None).unwrap();
    let head = store.verify_audit(None).unwrap().head.unwrap();
    assert!(checkpoint.starts_with(&format!("audit.engine-suite\n5\n{}\ntime ", head.hash)), "{checkpoint}");
    let cp = store.verify_audit_checkpoint(&checkpoint, &keys.public).unwrap();
    assert!(cp.verification.ok);
    assert_eq!((cp.checkpoint.seq, cp.checkpoint.hash.as_str()), (5, head.hash.as_str()));

    // A log that grew since passes.
    store.record_audit(&audit("u6")).unwrap();
    store.record_audit(&audit("u7")).unwrap();
    assert_eq!(against(&store, &checkpoint, &keys.public), None);
    let original = read_log(&loc);
    assert_eq!(original.len(), 7);
    // The forger is faithful: the same rows chained afresh are the same log.
    write_log(&loc, None, &original);
    assert_eq!(against(&store, &checkpoint, &keys.public), None);

    // A row before the checkpoint changed, the whole chain recomputed: the chain alone verifies,
    // the checkpoint does not.
    let mut changed = original.clone();
    changed[2].status = Some("failure".into());
    write_log(&loc, None, &changed);
    assert!(store.verify_audit(None).unwrap().ok);
    assert_eq!(against(&store, &checkpoint, &keys.public), Some(("altered".into(), Some(5))));
    let detail = store.verify_audit_checkpoint(&checkpoint, &keys.public).unwrap().verification.first_problem.unwrap().detail;
    assert!(detail.contains("checkpoint") && detail.contains("rewritten"), "{detail}");
    // Signing over it: refused against the previous checkpoint (without it, the rewritten log
    // verifies and would be signed: that is why `previous` exists).
    let refused = store.audit_checkpoint(&keys.private, Some(&checkpoint)).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::AuditChainBroken);
    assert!(refused.message.contains("rewritten"), "{}", refused.message);
    assert!(store.audit_checkpoint(&keys.private, None).is_ok());

    // A row inserted before it, the chain recomputed.
    let mut inserted = original.clone();
    inserted.insert(1, LogRow { user_id: "ghost".into(), ..original[1].clone() });
    write_log(&loc, None, &inserted);
    assert!(store.verify_audit(None).unwrap().ok);
    assert_eq!(against(&store, &checkpoint, &keys.public), Some(("altered".into(), Some(5))));

    // A row removed before it, the chain recomputed.
    let mut removed = original.clone();
    removed.remove(1);
    write_log(&loc, None, &removed);
    assert_eq!(against(&store, &checkpoint, &keys.public), Some(("altered".into(), Some(5))));

    // Back to the original: it passes again.
    write_log(&loc, None, &original);
    assert_eq!(against(&store, &checkpoint, &keys.public), None);
    let next = store.audit_checkpoint(&keys.private, Some(&checkpoint)).unwrap();
    assert!(next.starts_with("audit.engine-suite\n7\n"), "{next}");
    let other = tms::audit_checkpoint::generate_keys("audit.engine-suite").unwrap();
    let foreign = store.audit_checkpoint(&other.private, None).unwrap();
    assert_eq!(store.audit_checkpoint(&keys.private, Some(&foreign)).unwrap_err().kind, ErrorKind::CheckpointInvalid);

    // A row changed without recomputing: the walk finds it.
    tamper(&loc, "UPDATE audit_log SET user_id = 'x' WHERE chain_seq = 3");
    assert_eq!(against(&store, &checkpoint, &keys.public), Some(("altered".into(), Some(3))));
    tamper(&loc, "UPDATE audit_log SET user_id = 'u3' WHERE chain_seq = 3");
    assert_eq!(against(&store, &checkpoint, &keys.public), None);

    // Rows cut after the checkpoint are beyond what it covers; cut back past it, they show.
    tamper(&loc, "DELETE FROM audit_log WHERE chain_seq > 5");
    assert_eq!(against(&store, &checkpoint, &keys.public), None);
    tamper(&loc, "DELETE FROM audit_log WHERE chain_seq > 3");
    assert_eq!(against(&store, &checkpoint, &keys.public), Some(("cut".into(), Some(5))));
    let detail = store.verify_audit_checkpoint(&checkpoint, &keys.public).unwrap().verification.first_problem.unwrap().detail;
    assert!(detail.contains("cut from the end"), "{detail}");
}

fn a_checkpoint_of_a_keyed_log_catches_a_rewrite_with_or_without_the_key(loc: Location) {
    const HMAC: &str = "engine-suite-key-0123456789";
    let keyed = StoreOptions { audit_hmac_key: Some(Secret(HMAC.into())), ..Default::default() };
    let store = loc.open(&keyed).unwrap();
    for u in ["u1", "u2", "u3", "u4"] {
        store.record_audit(&audit(u)).unwrap();
    }
    let keys = tms::audit_checkpoint::generate_keys("audit.keyed").unwrap();
    // Signing needs the HMAC key: without it the log cannot be verified first.
    assert_eq!(loc.store().audit_checkpoint(&keys.private, None).unwrap_err().kind, ErrorKind::AuditKeyMismatch);
    let checkpoint = store.audit_checkpoint(&keys.private, None).unwrap();
    assert!(checkpoint.contains("\nhmac-sha256:"));
    let original = read_log(&loc);
    write_log(&loc, Some(HMAC), &original);
    assert_eq!(against(&store, &checkpoint, &keys.public), None);

    let mut changed = original.clone();
    changed[1].error_message = Some("nothing happened here".into());
    // With the stolen HMAC key: every row verifies with the key, the checkpoint does not.
    write_log(&loc, Some(HMAC), &changed);
    assert!(store.verify_audit(None).unwrap().ok);
    assert_eq!(against(&store, &checkpoint, &keys.public), Some(("altered".into(), Some(4))));
    // Without the key: a plain SHA-256 chain swapped in, for a store with the key (which finds
    // no row keyed by it) or without.
    write_log(&loc, None, &changed);
    assert_eq!(against(&store, &checkpoint, &keys.public), Some(("not_keyed".into(), Some(4))));
    assert_eq!(against(&loc.store(), &checkpoint, &keys.public), Some(("altered".into(), Some(4))));
    write_log(&loc, None, &original);
    assert_eq!(against(&loc.store(), &checkpoint, &keys.public), Some(("altered".into(), Some(4))));
}

fn checkpoints_are_signed_only_for_a_log_that_verifies_and_checked_strictly(loc: Location) {
    let store = loc.store();
    let keys = tms::audit_checkpoint::generate_keys("audit.strict").unwrap();
    assert_eq!(store.audit_checkpoint(&keys.private, None).unwrap_err().kind, ErrorKind::NotFound);
    for u in ["u1", "u2", "u3"] {
        store.record_audit(&audit(u)).unwrap();
    }
    let checkpoint = store.audit_checkpoint(&keys.private, None).unwrap();
    let invalid = |cp: &str, public: &str| store.verify_audit_checkpoint(cp, public).unwrap_err().kind;

    // Another key, even of the same name; another log's key and checkpoint.
    let same_name = tms::audit_checkpoint::generate_keys("audit.strict").unwrap();
    assert_eq!(invalid(&checkpoint, &same_name.public), ErrorKind::CheckpointInvalid);
    let other = tms::audit_checkpoint::generate_keys("audit.other").unwrap();
    assert_eq!(invalid(&checkpoint, &other.public), ErrorKind::CheckpointInvalid);
    assert_eq!(invalid(&store.audit_checkpoint(&other.private, None).unwrap(), &keys.public), ErrorKind::CheckpointInvalid);
    // A forged checkpoint: any change to what was signed, or a signature re-used.
    let head = store.verify_audit(None).unwrap().head.unwrap();
    for (from, to) in [("\n3\n", "\n2\n"), (head.hash.as_str(), &format!("sha256:{}", "0".repeat(64))), ("time 2", "time 1")] {
        assert_eq!(invalid(&checkpoint.replacen(from, to, 1), &keys.public), ErrorKind::CheckpointInvalid, "{from}");
    }
    // Malformed.
    for bad in ["", "garbage", &checkpoint[..checkpoint.len() / 2], &checkpoint.replace('\n', "\r\n"), &checkpoint.replace("\u{2014}", "-")] {
        assert_eq!(invalid(bad, &keys.public), ErrorKind::CheckpointInvalid, "{bad:?}");
    }
    // A key file that is not one is bad input, and never quoted back.
    assert_eq!(invalid(&checkpoint, "not a key"), ErrorKind::InvalidInput);
    let secret = keys.private.trim_end().splitn(5, '+').nth(4).unwrap();
    let e = store.audit_checkpoint(&keys.private.replace(&secret[4..12], "AAAAAAAA"), None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(!e.message.contains(&secret[24..56]), "{}", e.message);
    let e = store.verify_audit_checkpoint(&checkpoint, &keys.private).unwrap_err();
    assert!(e.kind == ErrorKind::InvalidInput && !e.message.contains(&secret[24..56]), "{}", e.message);

    // A log that does not verify is not signed.
    tamper(&loc, "UPDATE audit_log SET status = 'failure' WHERE chain_seq = 2");
    let refused = store.audit_checkpoint(&keys.private, None).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::AuditChainBroken, "{}", refused.message);
    assert!(refused.message.contains("altered"), "{}", refused.message);
    assert_eq!(against(&store, &checkpoint, &keys.public), Some(("altered".into(), Some(2))));
}
