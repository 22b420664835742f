//! The Rust API against real SQLite files.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tms::model::{AuditEntry, AuditFilter, AuditStatus, JobStatus, JobUpdate, Json, NewJob, customer_ids_json};
use tms::{ErrorKind, Store, StoreOptions, Synchronous};

#[test]
fn a_new_store_creates_both_files_in_wal_with_the_legacy_tables() {
    let dir = TempDir::new("fresh");
    let store = open_fresh(&dir);
    drop(store);
    let jobs = inspect(&dir.join("jobs.db"));
    let mode: String = jobs.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(count(&jobs, "PRAGMA user_version"), 7);
    let has = |conn: &rusqlite::Connection, name: &str| {
        count(conn, &format!("SELECT COUNT(*) FROM sqlite_schema WHERE name = '{name}'")) == 1
    };
    for name in ["jobs", "job_customers", "appstatus_cache", "idx_jobs_user_created", "idx_jobs_in_flight"] {
        assert!(has(&jobs, name), "{name} missing");
    }
    // The legacy indexes another index covers, or no query uses, are not created.
    for name in ["idx_jobs_user_id", "idx_jobs_created_at", "idx_job_customers_job_id", "idx_appstatus_cache_cid"] {
        assert!(!has(&jobs, name), "{name} present");
    }
    let audit = inspect(&dir.join("audit.db"));
    for name in ["audit_log", "idx_user_timestamp", "idx_action_type", "idx_timestamp", "idx_audit_chain_seq"] {
        assert!(has(&audit, name), "{name} missing");
    }
    assert!(!has(&audit, "idx_customer_search"));
}

#[test]
fn a_job_is_written_with_all_its_customers_and_read_back() {
    let dir = TempDir::new("job");
    let store = open_fresh(&dir);
    let payload = r#"{"action":"Trans-Begin","cids":["c2","c1"]}"#;
    let created = store
        .create_job(&NewJob {
            cluster_url: Some("https://cluster.example/tms/v1/set/action"),
            batch_id: Some("b-7"),
            request_payload: Some(Json::Text(payload)),
            ..job("alice", vec!["c2", "c1", "c3"])
        })
        .unwrap();
    assert_eq!(created.job_id.len(), 36);
    assert_eq!(created.customer_count, 3);
    assert_eq!(created.created_at.len(), 26);

    let details = store.get_job(&created.job_id).unwrap();
    assert_eq!(details.status.as_ref(), Some(&JobStatus::InProgress));
    assert_eq!(details.batch_id.as_deref(), Some("b-7"));
    assert_eq!(details.request_payload["cids"][0], "c2");
    assert_eq!(details.customer_count, 3);
    assert_eq!(store.get_job_customers(&created.job_id).unwrap(), ["c1", "c2", "c3"]);
}

#[test]
fn repeated_ids_collapse_and_the_next_call_is_not_slowed() {
    let dir = TempDir::new("repeat");
    // A long busy timeout: a lock left behind would make the next call wait all of it.
    let opts = StoreOptions { busy_timeout_ms: 60_000, ..Default::default() };
    let store = Store::open(dir.join("jobs.db"), dir.join("audit.db"), &opts).unwrap();
    let created = store.create_job(&job("bob", vec!["c1", " c1", "c2", "c1 ", "c2", ""])).unwrap();
    assert_eq!(created.customer_count, 2);
    assert_eq!(store.get_job_customers(&created.job_id).unwrap(), ["c1", "c2"]);
    // The legacy app left its transaction open here and the next create_job waited 5 s for a lock.
    let start = Instant::now();
    store.create_job(&job("bob", vec!["c3"])).unwrap();
    assert!(start.elapsed() < Duration::from_secs(30), "next call took {:?}", start.elapsed());
    let conn = inspect(&dir.join("jobs.db"));
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM jobs"), 2);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM job_customers"), 3);
}

#[test]
fn update_changes_only_the_given_fields() {
    let dir = TempDir::new("update");
    let store = open_fresh(&dir);
    let id = store
        .create_job(&NewJob { response_summary: Some("In progress..."), ..job("u", vec!["c1"]) })
        .unwrap()
        .job_id;
    store
        .update_job(&id, &JobUpdate { status: JobStatus::Failed, http_status: Some(401), error_message: Some("denied"), ..Default::default() })
        .unwrap();
    store.update_job(&id, &JobUpdate { status: JobStatus::Success, ..Default::default() }).unwrap();
    let d = store.get_job(&id).unwrap();
    assert_eq!(d.status, Some(JobStatus::Success));
    assert_eq!(d.http_status, Some(401));
    assert_eq!(d.error_message.as_deref(), Some("denied"));
    assert_eq!(d.response_summary.as_deref(), Some("In progress..."));
    assert!(d.updated_at.unwrap() >= d.created_at);

    let missing = store.update_job("no-such-job", &JobUpdate { status: JobStatus::Failed, ..Default::default() });
    assert_eq!(missing.unwrap_err().kind, ErrorKind::NotFound);
    let bad = store.update_job(&id, &JobUpdate { status: JobStatus::Other("DONE".into()), ..Default::default() });
    assert_eq!(bad.unwrap_err().kind, ErrorKind::InvalidInput);
    assert_eq!("DONE".parse::<JobStatus>().unwrap_err().kind, ErrorKind::InvalidInput);
}

#[test]
fn user_jobs_are_newest_first_with_counts_and_limited() {
    let dir = TempDir::new("list");
    let store = open_fresh(&dir);
    let mut ids = Vec::new();
    for n in 0..5 {
        let cids: Vec<String> = (0..=n).map(|i| format!("c{i}")).collect();
        let cids: Vec<&str> = cids.iter().map(String::as_str).collect();
        ids.push(store.create_job(&job("carol", cids)).unwrap().job_id);
    }
    store.create_job(&job("dave", vec!["x"])).unwrap();
    let list = store.get_user_jobs("carol", 3).unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].job_id, ids[4]);
    assert_eq!(list[0].customer_count, 5);
    assert_eq!(list[2].job_id, ids[2]);
    assert!(store.get_user_jobs("nobody", 50).unwrap().is_empty());
    assert_eq!(store.get_user_jobs("carol", -1).unwrap_err().kind, ErrorKind::InvalidInput);
    assert_eq!(store.get_user_jobs("carol", i64::MAX).unwrap_err().kind, ErrorKind::InvalidInput);
}

#[test]
fn invalid_jobs_are_refused_and_write_nothing() {
    let dir = TempDir::new("invalid");
    let store = open_fresh(&dir);
    let long_list: Vec<String> = (0..=100_000).map(|i| format!("c{i}")).collect();
    let long_list: Vec<&str> = long_list.iter().map(String::as_str).collect();
    let cases: Vec<(NewJob, ErrorKind)> = vec![
        (job("", vec!["c1"]), ErrorKind::InvalidInput),
        (job("  ", vec!["c1"]), ErrorKind::InvalidInput),
        (NewJob { action_name: "", ..job("u", vec!["c1"]) }, ErrorKind::InvalidInput),
        (job("u", vec!["ok", "bad\nid"]), ErrorKind::InvalidInput),
        (NewJob { request_payload: Some(Json::Text("{not json")), ..job("u", vec!["c1"]) }, ErrorKind::InvalidInput),
        (NewJob { status: Some(JobStatus::Other("done".into())), ..job("u", vec!["c1"]) }, ErrorKind::InvalidInput),
        (job("u", long_list), ErrorKind::TooLarge),
    ];
    for (bad, kind) in cases {
        let err = store.create_job(&bad).unwrap_err();
        assert_eq!(err.kind, kind, "{}", err.message);
    }
    let conn = inspect(&dir.join("jobs.db"));
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM jobs"), 0);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM job_customers"), 0);
}

#[test]
fn the_100000_id_job_is_accepted() {
    let dir = TempDir::new("big");
    let store = open_fresh(&dir);
    let ids: Vec<String> = (0..100_000).map(|i| format!("{i:032x}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let created = store.create_job(&job("big", ids)).unwrap();
    assert_eq!(created.customer_count, 100_000);
    assert_eq!(store.get_job(&created.job_id).unwrap().customer_count, 100_000);
}

#[test]
fn audit_rows_are_recorded_filtered_and_summarized() {
    let dir = TempDir::new("audit");
    let store = open_fresh(&dir);
    let list = customer_ids_json(&["c1", "c2"]);
    assert_eq!(list, r#"["c1", "c2"]"#);
    let a = store
        .record_audit(&AuditEntry { user_id: "ann", action_type: "Trans-Begin", customer_ids: Some(&list), ip_address: Some("10.0.0.1"), duration_ms: Some(12), ..Default::default() })
        .unwrap();
    store
        .record_audit(&AuditEntry { user_id: "ann", action_type: "PE-Enable", customer_ids: Some("c10"), status: Some(AuditStatus::Failure), error_message: Some("boom"), ..Default::default() })
        .unwrap();
    store
        .record_audit(&AuditEntry { user_id: "ben", action_type: "PE-Enable", customer_ids: Some("c3, c1"), ..Default::default() })
        .unwrap();

    let all = store.audit_trail(&AuditFilter::default(), 50).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].id, a);
    assert_eq!(all[2].customer_ids, serde_json::json!(["c1", "c2"]));
    assert_eq!(all[2].timestamp.as_ref().unwrap().len(), 19);

    // Whole-ID match: c1 matches the array and the comma list, never "c10".
    let c1 = store.audit_trail(&AuditFilter { customer_id: Some("c1"), ..Default::default() }, 50).unwrap();
    let users: Vec<&str> = c1.iter().map(|r| r.user_id.as_str()).collect();
    assert_eq!(users, ["ben", "ann"]);
    assert!(c1.iter().all(|r| r.action_type != "PE-Enable" || r.user_id == "ben"));
    let c10 = store.audit_trail(&AuditFilter { customer_id: Some("c10"), ..Default::default() }, 50).unwrap();
    assert_eq!(c10.len(), 1);
    let by_action = store.audit_trail(&AuditFilter { user_id: Some("ann"), action_type: Some("PE-Enable"), ..Default::default() }, 50).unwrap();
    assert_eq!(by_action.len(), 1);
    assert_eq!(store.audit_trail(&AuditFilter::default(), 1).unwrap().len(), 1);

    assert_eq!(store.action_types().unwrap(), ["PE-Enable", "Trans-Begin"]);
    let stats = store.audit_stats().unwrap();
    assert_eq!((stats.total_records, stats.unique_users, stats.unique_actions), (3, 2, 2));
    assert_eq!((stats.successful_actions, stats.failed_actions), (2, 1));
    assert_eq!(stats.success_rate_percent, 66.67);

    let bad = store.record_audit(&AuditEntry { user_id: "ann", action_type: "x", status: Some(AuditStatus::Other("ok".into())), ..Default::default() });
    assert_eq!(bad.unwrap_err().kind, ErrorKind::InvalidInput);
    // Clearing is a recorded reset: one audit_reset row remains.
    assert_eq!(store.clear_audit_logs().unwrap(), 3);
    assert_eq!(store.audit_stats().unwrap().total_records, 1);
    assert_eq!(store.action_types().unwrap(), ["audit_reset"]);
}

#[test]
fn the_appstatus_cache_upserts_expires_and_counts() {
    let dir = TempDir::new("cache");
    let store = open_fresh(&dir);
    store.cache_put("c1", "ALL", Json::Text(r#"{"apps":[1]}"#), 1800).unwrap();
    store.cache_put("c1", "ALL", &serde_json::json!({"apps":[2]}), 1800).unwrap();
    store.cache_put("c2", "X", Json::Text("[]"), 1800).unwrap();
    assert_eq!(store.cache_get("c1", "ALL", 1800).unwrap(), Some(serde_json::json!({"apps":[2]})));
    assert_eq!(store.cache_get("c9", "ALL", 1800).unwrap(), None);
    let batch = store.cache_get_batch(&["c1", "c9", "c1"], "ALL", 1800).unwrap();
    assert_eq!((batch.hit_count, batch.miss_count), (1, 1));
    assert_eq!(batch.misses, ["c9"]);
    let stats = store.cache_stats().unwrap();
    assert_eq!((stats.total_entries, stats.unique_cids), (2, 2));
    assert!(stats.size_bytes > 0);

    // Age the c1 entry by an hour: it is stale for a 30-minute ttl and swept by cleanup.
    let conn = inspect(&dir.join("jobs.db"));
    let old = tms::clock::local_iso_ago(3600);
    conn.execute("UPDATE appstatus_cache SET cached_at = ?1 WHERE cid = 'c1'", [&old]).unwrap();
    assert_eq!(store.cache_get("c1", "ALL", 1800).unwrap(), None);
    assert!(store.cache_get("c1", "ALL", 7200).unwrap().is_some());
    assert_eq!(store.cache_cleanup(1800).unwrap(), 1);
    assert_eq!(store.cache_invalidate(None, Some("X")).unwrap(), 1);
    assert_eq!(store.cache_invalidate(None, None).unwrap(), 0);
    assert_eq!(store.cache_put("c1", "ALL", Json::Text("{bad"), 1800).unwrap_err().kind, ErrorKind::InvalidInput);
}

#[test]
fn legacy_jobs_and_audit_files_are_adopted_with_every_row() {
    let dir = TempDir::new("legacy");
    let jobs = copy_fixture(&dir, "jobs.db", "jobs.db");
    let audit = copy_fixture(&dir, "audit.db", "audit.db");
    let jobs_before = dump(&jobs, "jobs");
    let customers_before = dump(&jobs, "job_customers");
    let audit_before = dump(&audit, "audit_log");
    assert_eq!((jobs_before.len(), customers_before.len()), (20, 106));

    let store = Store::open(&jobs, &audit, &StoreOptions::default()).unwrap();
    // Every job row is kept as it was, with its customer count stored in the added column.
    let jobs_after = dump(&jobs, "jobs");
    assert_eq!(jobs_after.len(), jobs_before.len());
    for (old, new) in jobs_before.iter().zip(&jobs_after) {
        assert!(new.starts_with(&format!("{old}|Integer(")), "job row changed: {}", &old[..60]);
    }
    assert!(dump(&jobs, "job_customers") == customers_before, "job_customers changed");
    // Every audit row is kept as it was; the hash chain's three columns are added, NULL for them.
    let audit_after = dump(&audit, "audit_log");
    assert_eq!(audit_after.len(), audit_before.len());
    for (old, new) in audit_before.iter().zip(&audit_after) {
        assert!(new == &format!("{old}|Null|Null|Null"), "audit row changed: {old}");
    }

    // Legacy rows read back through the API, mixed status spellings included.
    let first = store.get_user_jobs("test_user_001", 100).unwrap();
    assert!(!first.is_empty());
    assert!(store.get_job("2aa81724-8228-426f-aa96-244284db852e").unwrap().request_payload.is_object());
    assert!(!store.audit_trail(&AuditFilter::default(), 100).unwrap().is_empty());

    let created = store.create_job(&job("new_user", vec!["c1", "c2"])).unwrap();
    store.record_audit(&AuditEntry { user_id: "new_user", action_type: "Trans-Begin", ..Default::default() }).unwrap();
    drop(store);
    let conn = inspect(&jobs);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM jobs"), 21);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM job_customers"), 108);
    assert_eq!(count(&conn, "PRAGMA user_version"), 7);
    assert_eq!(
        count(&conn, &format!("SELECT COUNT(*) FROM job_customers WHERE job_id = '{}'", created.job_id)),
        2
    );
    assert_eq!(count(&inspect(&audit), "SELECT COUNT(*) FROM audit_log") as usize, audit_before.len() + 1);
}

/// Schema v6 rebuilds job_customers without AUTOINCREMENT: every row keeps its id, what someone
/// added by hand (a column, an index, a trigger) comes along, and new ids continue above the old.
#[test]
fn customer_rows_keep_their_ids_when_autoincrement_goes() {
    let dir = TempDir::new("autoinc");
    let jobs = copy_fixture(&dir, "jobs.db", "jobs.db");
    inspect(&jobs)
        .execute_batch(
            "ALTER TABLE job_customers ADD COLUMN note TEXT NOT NULL DEFAULT 'none';
             UPDATE job_customers SET note = 'n' || id;
             CREATE INDEX by_cid ON job_customers(cid);
             CREATE TABLE seen (cid TEXT);
             CREATE TRIGGER remember AFTER INSERT ON job_customers BEGIN INSERT INTO seen VALUES (NEW.cid); END;
             CREATE VIEW customers_per_job AS SELECT job_id, COUNT(*) AS n FROM job_customers GROUP BY job_id;
             CREATE TRIGGER jobs_touch AFTER UPDATE ON jobs BEGIN SELECT COUNT(*) FROM job_customers; END;",
        )
        .unwrap();
    let before = dump(&jobs, "job_customers");
    let max_id = count(&inspect(&jobs), "SELECT MAX(id) FROM job_customers");
    assert!(inspect(&jobs).query_row("SELECT sql FROM sqlite_schema WHERE name = 'job_customers'", [], |r| r.get::<_, String>(0)).unwrap().contains("AUTOINCREMENT"));

    let store = Store::open(&jobs, dir.join("audit.db"), &StoreOptions::default()).unwrap();
    let created = store.create_job(&job("new_user", vec!["x1", "x2"])).unwrap();
    drop(store);

    let conn = inspect(&jobs);
    let sql: String = conn.query_row("SELECT sql FROM sqlite_schema WHERE name = 'job_customers'", [], |r| r.get(0)).unwrap();
    assert!(!sql.contains("AUTOINCREMENT"), "{sql}");
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'job_customers'"), 0);
    let after = dump(&jobs, "job_customers");
    assert_eq!(&after[..before.len()], &before[..], "rows or ids changed");
    let new_ids: Vec<i64> =
        column(&conn, &format!("SELECT id FROM job_customers WHERE job_id = '{}' ORDER BY id", created.job_id));
    assert_eq!(new_ids, [max_id + 1, max_id + 2]);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('by_cid', 'remember')"), 2);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM seen"), 2, "the hand-made trigger still fires");
    // A view that reads the table, and a column's constraint and default, came through too.
    assert_eq!(count(&conn, &format!("SELECT n FROM customers_per_job WHERE job_id = '{}'", created.job_id)), 2);
    assert!(sql.contains("NOT NULL DEFAULT 'none'"), "{sql}");
    assert_eq!(count(&conn, &format!("SELECT COUNT(*) FROM job_customers WHERE note = 'none' AND job_id = '{}'", created.job_id)), 2);
    // The foreign key to jobs survived the rebuild.
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM pragma_foreign_key_list('job_customers') WHERE \"table\" = 'jobs'"), 1);
}

/// The legacy app's start-up recreates the dropped indexes with `CREATE INDEX IF NOT EXISTS`
/// (and its tables' `IF NOT EXISTS` are no-ops): that works while the library has the files open,
/// the legacy writer's own inserts work, and the library opens and works with them there.
#[test]
fn a_legacy_writer_recreating_the_dropped_indexes_still_works() {
    let dir = TempDir::new("recreate");
    let store = open_fresh(&dir);
    store.create_job(&job("alice", vec!["a1"])).unwrap();
    let legacy = inspect(&dir.join("jobs.db"));
    legacy
        .execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS job_customers (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,
                 cid TEXT NOT NULL, FOREIGN KEY (job_id) REFERENCES jobs(job_id), UNIQUE(job_id, cid));
             CREATE INDEX IF NOT EXISTS idx_jobs_user_id ON jobs(user_id);
             CREATE INDEX IF NOT EXISTS idx_jobs_created_at ON jobs(created_at);
             CREATE INDEX IF NOT EXISTS idx_job_customers_job_id ON job_customers(job_id);
             CREATE INDEX IF NOT EXISTS idx_appstatus_cache_cid ON appstatus_cache(cid);
             CREATE INDEX IF NOT EXISTS idx_appstatus_cache_cid_app ON appstatus_cache(cid, app_name);
             INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, status)
                 VALUES ('legacy-job', 'bob', 1, 'Trans-Begin', '2026-01-01T00:00:00.000000', 'IN_PROGRESS');
             INSERT INTO job_customers (job_id, cid) VALUES ('legacy-job', 'b1'), ('legacy-job', 'b2');",
        )
        .unwrap();
    inspect(&dir.join("audit.db"))
        .execute_batch("CREATE INDEX IF NOT EXISTS idx_customer_search ON audit_log(customer_ids);")
        .unwrap();
    // The open store's prepared statements see the schema change and carry on.
    let second = store.create_job(&job("alice", vec!["a2", "a3"])).unwrap();
    assert_eq!(store.get_job_customers(&second.job_id).unwrap(), ["a2", "a3"]);
    assert_eq!(store.get_job_customers("legacy-job").unwrap(), ["b1", "b2"]);
    assert_eq!(store.get_user_jobs("bob", 10).unwrap()[0].customer_count, 2);
    drop(store);

    let store = open_fresh(&dir);
    assert_eq!(store.get_user_jobs("alice", 10).unwrap().len(), 2);
    store.create_job(&job("carol", vec!["c1"])).unwrap();
    assert_eq!(count(&inspect(&dir.join("jobs.db")), "SELECT COUNT(*) FROM job_customers"), 6);
}

#[test]
fn the_v0_file_with_the_users_foreign_key_is_rebuilt_and_writable() {
    let dir = TempDir::new("v0");
    let jobs = copy_fixture(&dir, "jobs_v0_user_fk.db", "jobs.db");
    let jobs_before = dump(&jobs, "jobs");
    let customers_before = dump(&jobs, "job_customers");
    assert_eq!((jobs_before.len(), customers_before.len()), (15, 18));

    let store = Store::open(&jobs, dir.join("audit.db"), &StoreOptions::default()).unwrap();
    let created = store.create_job(&job("someone", vec!["c1"])).unwrap();
    assert_eq!(store.get_job_customers(&created.job_id).unwrap(), ["c1"]);
    drop(store);

    let conn = inspect(&jobs);
    // Every old row is there, with the three late columns added as NULL.
    let after: Vec<String> = dump(&jobs, "jobs").into_iter().take(15).collect();
    for (old, new) in jobs_before.iter().zip(&after) {
        assert!(new.starts_with(old.as_str()), "{old} vs {new}");
    }
    assert_eq!(dump(&jobs, "job_customers")[..18], customers_before[..]);
    let fks: Vec<String> = column(&conn, "SELECT \"table\" FROM pragma_foreign_key_list('jobs')");
    assert!(fks.is_empty(), "jobs still references {fks:?}");
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM pragma_foreign_key_list('job_customers') WHERE \"table\" = 'jobs'"), 1);
    for col in ["http_status", "error_message", "updated_at"] {
        assert_eq!(count(&conn, &format!("SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = '{col}'")), 1);
    }
    // The job_customers -> jobs key is still enforced.
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    assert!(conn.execute("INSERT INTO job_customers (job_id, cid) VALUES ('nope', 'c')", []).is_err());
}

#[test]
fn bad_paths_get_clear_errors() {
    let dir = TempDir::new("paths");
    let err = Store::open(dir.join("missing/jobs.db"), dir.join("audit.db"), &StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::CantOpen);
    assert!(err.message.contains("does not exist"), "{}", err.message);
    let err = Store::open(dir.path(), dir.join("audit.db"), &StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::CantOpen);
    assert!(err.message.contains("directory"), "{}", err.message);
    std::fs::write(dir.join("text.db"), "this is not a database, just some text that is long enough to fill a header...........").unwrap();
    let err = Store::open(dir.join("text.db"), dir.join("audit.db"), &StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotADatabase, "{}", err.message);
}

/// The durability default, read where it matters: through the store's own pooled connections
/// (`counts().durability`, which `tms stats` and the metrics print), on a store opened with the
/// default options and again with NORMAL asked for.
#[test]
fn synchronous_defaults_to_full_and_normal_is_an_option() {
    assert_eq!(StoreOptions::default().synchronous, Synchronous::Full);
    for (opts, expected) in [
        (StoreOptions::default(), "FULL"),
        (StoreOptions { synchronous: Synchronous::Normal, ..Default::default() }, "NORMAL"),
    ] {
        let dir = TempDir::new("sync");
        let store = Store::open(dir.join("jobs.db"), dir.join("audit.db"), &opts).unwrap();
        store.create_job(&job("s", vec!["c"])).unwrap();
        let d = store.counts().unwrap().durability;
        for file in ["jobs", "audit"] {
            assert_eq!(d[&format!("{file}.synchronous")], expected, "{d:?}");
            assert_eq!(d[&format!("{file}.journal_mode")], "wal", "{d:?}");
        }
        let metrics = store.metrics().unwrap();
        assert!(metrics.contains(&format!("tms_store_setting{{setting=\"jobs.synchronous\",value=\"{expected}\"}} 1\n")), "{metrics}");
    }
}

#[test]
fn many_threads_share_one_store() {
    let dir = TempDir::new("threads");
    let store = open_fresh(&dir);
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = &store;
            s.spawn(move || {
                for i in 0..25 {
                    let user = format!("t{t}");
                    let a = format!("a{i}");
                    let b = format!("b{i}");
                    let id = store.create_job(&job(&user, vec![&a, &b])).unwrap().job_id;
                    store.get_job(&id).unwrap();
                    store.record_audit(&AuditEntry { user_id: &user, action_type: "T-Enable", ..Default::default() }).unwrap();
                }
            });
        }
    });
    let conn = inspect(&dir.join("jobs.db"));
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM jobs"), 200);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM job_customers"), 400);
    assert_eq!(store.audit_stats().unwrap().total_records, 200);
}

#[test]
fn columns_added_by_hand_survive_the_v0_rebuild() {
    let dir = TempDir::new("v0-extra");
    let jobs = copy_fixture(&dir, "jobs_v0_user_fk.db", "jobs.db");
    let conn = inspect(&jobs);
    conn.execute_batch("ALTER TABLE jobs ADD COLUMN \"ticket ref\" TEXT; UPDATE jobs SET \"ticket ref\" = 'T-' || rowid;").unwrap();
    drop(conn);
    drop(Store::open(&jobs, dir.join("audit.db"), &StoreOptions::default()).unwrap());
    let conn = inspect(&jobs);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM jobs WHERE \"ticket ref\" LIKE 'T-%'"), 15);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM pragma_foreign_key_list('jobs')"), 0);
}

/// A file newer than the library is refused (SchemaTooNew, naming its version) and left alone;
/// when only audit.db is newer, jobs.db is not migrated or switched to WAL behind it either.
/// (Python: test_edges.py test_11 checks the bytes; PostgreSQL: engines.rs.)
#[test]
fn a_newer_schema_is_refused_and_leaves_both_files_alone() {
    let dir = TempDir::new("newer");
    drop(open_fresh(&dir));
    inspect(&dir.join("jobs.db")).pragma_update(None, "user_version", 99).unwrap();
    let err = Store::open(dir.join("jobs.db"), dir.join("audit.db"), &StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::SchemaTooNew, "{}", err.message);
    assert!(err.message.contains("99"));
    assert_eq!(count(&inspect(&dir.join("jobs.db")), "PRAGMA user_version"), 99);

    let dir = TempDir::new("newer-audit");
    let jobs = copy_fixture(&dir, "jobs_v0_user_fk.db", "jobs.db");
    let audit = dir.join("audit.db");
    inspect(&audit).execute_batch("CREATE TABLE x (y); PRAGMA user_version = 77;").unwrap();
    let before = std::fs::read(&jobs).unwrap();
    let err = Store::open(&jobs, &audit, &StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::SchemaTooNew, "{}", err.message);
    assert!(std::fs::read(&jobs).unwrap() == before, "jobs.db was changed");
    assert!(!dir.join("jobs.db-wal").exists());
}

#[test]
fn dropped_append_only_triggers_come_back_at_the_next_open() {
    let dir = TempDir::new("triggers-back");
    drop(open_fresh(&dir));
    inspect(&dir.join("audit.db"))
        .execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; DROP TRIGGER audit_log_no_replace;")
        .unwrap();
    drop(open_fresh(&dir));
    let n = count(&inspect(&dir.join("audit.db")), "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'trigger'");
    assert_eq!(n, 3);
}
