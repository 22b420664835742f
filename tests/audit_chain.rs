//! The tamper-evident audit log on real files: an attacker with the file (and SQLite) alters,
//! removes, inserts and cuts rows; verification finds the first break each time.

mod common;

use common::*;
use rusqlite::Connection;
use tms::model::AuditEntry;
use tms::options::Secret;
use tms::{Store, StoreOptions};

fn log_n(store: &Store, n: usize) {
    for i in 0..n {
        let user = format!("user{i}");
        store
            .record_audit(&AuditEntry { user_id: &user, action_type: "Trans-Begin", customer_ids: Some(r#"["c1", "c2"]"#), duration_ms: Some(i as i64), ..Default::default() })
            .unwrap();
    }
}

/// The attacker's connection: triggers dropped, as anyone holding the file can do.
fn attacker(dir: &TempDir) -> Connection {
    let conn = inspect(&dir.join("audit.db"));
    conn.execute_batch("DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;").unwrap();
    conn
}

fn problem(store: &Store, anchor: Option<(i64, &str)>) -> (String, Option<i64>) {
    let v = store.verify_audit(anchor).unwrap();
    assert!(!v.ok);
    let p = v.first_problem.unwrap();
    (p.problem.as_str().to_owned(), p.seq)
}

#[test]
fn an_untouched_chain_verifies_and_reports_its_head() {
    let dir = TempDir::new("chain-ok");
    let store = open_fresh(&dir);
    log_n(&store, 5);
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!((v.checked, v.unchained), (5, 0));
    let head = v.head.unwrap();
    assert_eq!(head.seq, 5);
    assert!(head.hash.starts_with("sha256:"));
    assert!(store.verify_audit(Some((5, &head.hash))).unwrap().ok);
}

#[test]
fn triggers_refuse_update_and_delete() {
    let dir = TempDir::new("chain-triggers");
    let store = open_fresh(&dir);
    log_n(&store, 2);
    let conn = inspect(&dir.join("audit.db"));
    let err = conn.execute("UPDATE audit_log SET status = 'failure'", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = conn.execute("DELETE FROM audit_log WHERE id = 1", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(store.verify_audit(None).unwrap().ok);
}

#[test]
fn an_altered_row_is_found() {
    let dir = TempDir::new("chain-altered");
    let store = open_fresh(&dir);
    log_n(&store, 5);
    attacker(&dir).execute("UPDATE audit_log SET status = 'failure' WHERE chain_seq = 3", []).unwrap();
    assert_eq!(problem(&store, None), ("altered".into(), Some(3)));
}

#[test]
fn a_removed_row_is_found() {
    let dir = TempDir::new("chain-removed");
    let store = open_fresh(&dir);
    log_n(&store, 5);
    attacker(&dir).execute("DELETE FROM audit_log WHERE chain_seq = 3", []).unwrap();
    assert_eq!(problem(&store, None), ("removed".into(), Some(4)));
    // Removing the first row is found too.
    attacker(&dir).execute("DELETE FROM audit_log WHERE chain_seq = 1", []).unwrap();
    assert_eq!(problem(&store, None), ("removed".into(), Some(2)));
}

#[test]
fn rows_inserted_out_of_chain_are_found() {
    let dir = TempDir::new("chain-inserted");
    let store = open_fresh(&dir);
    log_n(&store, 3);
    let conn = attacker(&dir);
    conn.execute("INSERT INTO audit_log (user_id, action_type, status) VALUES ('ghost', 'PE-Enable', 'success')", []).unwrap();
    assert_eq!(problem(&store, None).0, "inserted");
    conn.execute("DELETE FROM audit_log WHERE user_id = 'ghost'", []).unwrap();
    assert!(store.verify_audit(None).unwrap().ok);
    // A forged row with a plausible seq but the wrong predecessor.
    conn.execute(
        "INSERT INTO audit_log (user_id, action_type, status, chain_seq, chain_prev, chain_hash)
         VALUES ('ghost', 'PE-Enable', 'success', 4, 'sha256:00', 'sha256:00')",
        [],
    )
    .unwrap();
    assert_eq!(problem(&store, None), ("inserted".into(), Some(4)));
}

#[test]
fn a_cut_tail_is_found_against_an_anchored_head() {
    let dir = TempDir::new("chain-cut");
    let store = open_fresh(&dir);
    log_n(&store, 5);
    let head = store.verify_audit(None).unwrap().head.unwrap();
    attacker(&dir).execute("DELETE FROM audit_log WHERE chain_seq >= 4", []).unwrap();
    // Without the anchor the shorter chain is consistent; with it the cut shows.
    assert!(store.verify_audit(None).unwrap().ok);
    assert_eq!(problem(&store, Some((head.seq, &head.hash))), ("cut".into(), Some(5)));
}

#[test]
fn legacy_rows_are_unchained_not_tampered() {
    let dir = TempDir::new("chain-legacy");
    let audit = copy_fixture(&dir, "audit.db", "audit.db");
    let legacy = dump(&audit, "audit_log").len() as i64;
    let store = Store::open(dir.join("jobs.db"), &audit, &StoreOptions::default()).unwrap();
    log_n(&store, 2);
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!((v.unchained, v.checked), (legacy, 2));
    assert_eq!(count(&inspect(&audit), "PRAGMA user_version"), 4);
}

#[test]
fn clearing_is_a_recorded_reset_that_continues_the_chain() {
    let dir = TempDir::new("chain-reset");
    let store = open_fresh(&dir);
    log_n(&store, 4);
    assert_eq!(store.clear_audit_logs().unwrap(), 4);
    let trail = store.audit_trail(&Default::default(), 10).unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].action_type, "audit_reset");
    assert!(trail[0].error_message.as_deref().unwrap().contains("4 rows removed"));
    log_n(&store, 2);
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.head.unwrap().seq, 7); // 4 cleared, the reset row, 2 more
}

#[test]
fn hmac_chains_need_the_key_which_is_never_stored() {
    let dir = TempDir::new("chain-hmac");
    let key = "k3y-never-stored-0123456789";
    let with_key = StoreOptions { audit_hmac_key: Some(Secret(key.into())), ..Default::default() };
    let store = Store::open(dir.join("jobs.db"), dir.join("audit.db"), &with_key).unwrap();
    log_n(&store, 3);
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok && v.head.as_ref().unwrap().hash.starts_with("hmac-sha256:"), "{v:?}");
    assert!(!format!("{with_key:?}").contains(key));
    drop(store);

    let no_key = Store::open(dir.join("jobs.db"), dir.join("audit.db"), &StoreOptions::default()).unwrap();
    assert_eq!(problem(&no_key, None).0, "unverifiable");
    let wrong = StoreOptions { audit_hmac_key: Some(Secret("another-key-0123456789".into())), ..Default::default() };
    let wrong = Store::open(dir.join("jobs.db"), dir.join("audit.db"), &wrong).unwrap();
    assert_eq!(problem(&wrong, None), ("altered".into(), Some(1)));
    // Neither may append: their rows would make the honest log look altered to its owner.
    for (store, says) in [(&no_key, "without audit_hmac_key"), (&wrong, "another key")] {
        let err = store.record_audit(&AuditEntry { user_id: "x", action_type: "Trans-Begin", ..Default::default() }).unwrap_err();
        assert_eq!(err.kind, tms::ErrorKind::AuditKeyMismatch, "{}", err.message);
        assert!(err.message.contains(says), "{}", err.message);
        assert_eq!(store.clear_audit_logs().unwrap_err().kind, tms::ErrorKind::AuditKeyMismatch);
    }
    drop((no_key, wrong));
    let store = Store::open(dir.join("jobs.db"), dir.join("audit.db"), &with_key).unwrap();
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok && v.checked == 3, "{v:?}");
    drop(store);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()), "key found on disk");
    }
}

#[test]
fn a_forged_reset_row_does_not_restart_the_chain() {
    let dir = TempDir::new("chain-forged-reset");
    let store = open_fresh(&dir);
    // The reset action type is reserved for clear_audit_logs.
    let err = store.record_audit(&AuditEntry { user_id: "mallory", action_type: "audit_reset", ..Default::default() }).unwrap_err();
    assert_eq!(err.kind, tms::ErrorKind::InvalidInput);
    log_n(&store, 4);
    // Someone with the file deletes the first rows and relabels the next as a reset.
    let conn = attacker(&dir);
    conn.execute("DELETE FROM audit_log WHERE chain_seq <= 2", []).unwrap();
    conn.execute("UPDATE audit_log SET action_type = 'audit_reset' WHERE chain_seq = 3", []).unwrap();
    let (problem_kind, _) = problem(&store, None);
    assert!(problem_kind == "removed" || problem_kind == "altered", "{problem_kind}");
}

/// Schema v4 kept a Set Action's audit row in `pending_audit` when a crash came between the two
/// files' commits. Upgrading moves those rows into the outbox; the next delivery puts the one
/// that never reached audit.db there and only clears the one that did: each row exactly once.
#[test]
fn v4_outbox_rows_are_delivered_exactly_once_after_the_upgrade() {
    let dir = TempDir::new("chain-outbox-v4");
    let store = open_fresh(&dir);
    let job = store
        .create_job(&tms::model::NewJob { user_id: "op", action_name: "Trans-Begin", cids: vec!["c1"], ..Default::default() })
        .unwrap();
    log_n(&store, 1); // audit row id 1
    drop(store);
    // Back to v4: a jobs.db as the previous release left it (fresh file, four steps).
    std::fs::remove_file(dir.join("jobs.db")).unwrap();
    let conn = inspect(&dir.join("jobs.db"));
    tms::storage::sqlite::schema::migrate_to(&conn, tms::storage::DbFile::Jobs, 4).unwrap();
    conn.execute(
        "INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, status) VALUES (?1, 'op', 1, 'Trans-Begin', '2026-11-28T10:00:00.000000', 'SUCCESS')",
        [&job.job_id],
    )
    .unwrap();
    let record = |ip: &str| format!(r#"{{"user_id":"op","action_type":"Trans-Begin","customer_ids":"[\"c1\"]","timestamp":"2026-11-28 10:00:00","ip_address":"{ip}","status":"success","error_message":null,"duration_ms":12}}"#);
    // One row whose audit id (7) never reached audit.db, one that did reach it as row 1? No:
    // row 1 is user0's; the second entry names row 1 with a record that matches it.
    let user0 = r#"{"user_id":"user0","action_type":"Trans-Begin","customer_ids":"[\"c1\", \"c2\"]","timestamp":"TS","ip_address":null,"status":"success","error_message":null,"duration_ms":0}"#;
    let ts: String = inspect(&dir.join("audit.db")).query_row("SELECT timestamp FROM audit_log WHERE id = 1", [], |r| r.get(0)).unwrap();
    conn.execute("INSERT INTO pending_audit (job_id, audit_id, record) VALUES (?1, 7, ?2)", [&job.job_id, &record("10.0.0.1")]).unwrap();
    conn.execute("INSERT INTO jobs (job_id, user_id, action_code, action_name, created_at, status) VALUES ('j2', 'op', 1, 'Trans-Begin', '2026-11-28T10:00:00.000000', 'SUCCESS')", []).unwrap();
    conn.execute("INSERT INTO pending_audit (job_id, audit_id, record) VALUES ('j2', 1, ?1)", [&user0.replace("TS", &ts)]).unwrap();
    drop(conn);

    let store = open_fresh(&dir);
    let trail = store.audit_trail(&Default::default(), 10).unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    let replayed = trail.iter().find(|r| r.user_id == "op").expect("the outbox row reached audit.db");
    assert_eq!((replayed.ip_address.as_deref(), replayed.duration_ms), (Some("10.0.0.1"), Some(12)));
    assert_eq!(count(&inspect(&dir.join("jobs.db")), "SELECT COUNT(*) FROM audit_outbox"), 0);
    assert!(store.verify_audit(None).unwrap().ok);
}

/// A crash after audit.db took a row (with its receipt) but before jobs.db let go of it: the
/// next delivery sees the receipt and only removes the row from the outbox.
#[test]
fn a_receipted_outbox_row_is_not_delivered_twice() {
    let dir = TempDir::new("chain-outbox-receipt");
    let store = open_fresh(&dir);
    drop(store);
    let record = r#"{"user_id":"op","action_type":"PE-Enable","customer_ids":null,"timestamp":"2026-11-28 10:00:00","ip_address":null,"status":"success","error_message":null,"duration_ms":1}"#;
    let jobs = inspect(&dir.join("jobs.db"));
    jobs.execute("INSERT INTO audit_outbox (delivery_key, record) VALUES ('k-1', ?1)", [record]).unwrap();
    jobs.execute("INSERT INTO audit_outbox (delivery_key, record) VALUES ('k-2', ?1)", [record]).unwrap();
    drop(jobs);
    // k-1 was delivered before the crash (its receipt exists); k-2 was not.
    inspect(&dir.join("audit.db")).execute("INSERT INTO audit_outbox_receipts (delivery_key, audit_id) VALUES ('k-1', 99)", []).unwrap();
    let store = open_fresh(&dir);
    assert_eq!(store.audit_trail(&Default::default(), 10).unwrap().len(), 1);
    assert_eq!(count(&inspect(&dir.join("jobs.db")), "SELECT COUNT(*) FROM audit_outbox"), 0);
    // Receipts are kept (a backup copies jobs.db first: its outbox rows must find theirs).
    assert_eq!(store.recover_interrupted().unwrap(), 0);
    assert_eq!(count(&inspect(&dir.join("audit.db")), "SELECT COUNT(*) FROM audit_outbox_receipts"), 2);
    assert!(store.verify_audit(None).unwrap().ok);
}

/// Rows written before the chain began are covered by the commitment in its first row: a row
/// slipped in among them (at id -1, 0, or between two of them), altered or removed shows.
#[test]
fn rows_forged_among_the_legacy_rows_are_found() {
    for attack in [
        "INSERT INTO audit_log (id, user_id, action_type, timestamp, status) VALUES (-1, 'ghost', 'PE-Enable', '2099-01-01 00:00:00', 'success')",
        "INSERT INTO audit_log (id, user_id, action_type, timestamp, status) VALUES (0, 'ghost', 'PE-Enable', '2099-01-01 00:00:00', 'success')",
        "UPDATE audit_log SET user_id = user_id || 'x' WHERE id = (SELECT MIN(id) FROM audit_log)",
        "DELETE FROM audit_log WHERE id = (SELECT MIN(id) FROM audit_log)",
    ] {
        let dir = TempDir::new("chain-legacy-forged");
        let audit = copy_fixture(&dir, "audit.db", "audit.db");
        let store = Store::open(dir.join("jobs.db"), &audit, &StoreOptions::default()).unwrap();
        log_n(&store, 2);
        assert!(store.verify_audit(None).unwrap().ok);
        attacker(&dir).execute(attack, []).unwrap();
        let v = store.verify_audit(None).unwrap();
        assert!(!v.ok, "{attack}: {v:?}");
        let p = v.first_problem.unwrap();
        assert!(p.detail.contains("before the chain"), "{attack}: {p:?}");
    }
    // Between two legacy rows: free an id by moving one row up, and forge one in its place.
    let dir = TempDir::new("chain-legacy-between");
    let audit = copy_fixture(&dir, "audit.db", "audit.db");
    let conn = inspect(&audit);
    conn.execute("DELETE FROM audit_log WHERE id = 2", []).unwrap();
    drop(conn);
    let store = Store::open(dir.join("jobs.db"), &audit, &StoreOptions::default()).unwrap();
    log_n(&store, 1);
    assert!(store.verify_audit(None).unwrap().ok);
    attacker(&dir).execute("INSERT INTO audit_log (id, user_id, action_type, status) VALUES (2, 'ghost', 'PE-Enable', 'success')", []).unwrap();
    assert_eq!(problem(&store, None).0, "inserted");
}

/// `INSERT OR REPLACE` deletes the row it replaces without firing the delete trigger; the
/// database refuses any insert that would replace a row, by id or by chain sequence.
#[test]
fn an_insert_that_would_replace_a_row_is_refused() {
    let dir = TempDir::new("chain-replace");
    let store = open_fresh(&dir);
    log_n(&store, 3);
    let conn = inspect(&dir.join("audit.db")); // every trigger in place
    for sql in [
        "INSERT OR REPLACE INTO audit_log SELECT 3, user_id, action_type, customer_ids, timestamp, ip_address, status, error_message, duration_ms, chain_seq, chain_prev, chain_hash FROM audit_log WHERE id = 2",
        "REPLACE INTO audit_log (id, user_id, action_type) VALUES (1, 'x', 'y')",
        "INSERT OR REPLACE INTO audit_log (user_id, action_type, chain_seq) VALUES ('x', 'y', 3)",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("may not replace"), "{sql}: {err}");
    }
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok && v.checked == 3, "{v:?}");
    // Ordinary inserts by other writers (the legacy app) still work.
    conn.execute("INSERT INTO audit_log (user_id, action_type, status) VALUES ('legacy', 'PE-Enable', 'success')", []).unwrap();
}

/// A refused Set Action named "audit_reset" is audited as a refused request, never as a row of
/// the reset type: deleting everything before it cannot pass for a recorded reset.
#[test]
fn a_set_action_named_audit_reset_writes_no_reset_row() {
    let dir = TempDir::new("chain-reset-name");
    let store = open_fresh(&dir);
    log_n(&store, 3);
    let answer = store.set_action(
        r#"{"url":"http://127.0.0.1:9/tms","token":"token-0123456789","isPost":true,"postData":{"action":"audit_reset","cids":["c1"]}}"#,
        "mallory",
        None,
        None,
    );
    assert_eq!(answer.http_status, 400);
    let conn = attacker(&dir);
    let resets: i64 = conn.query_row("SELECT COUNT(*) FROM audit_log WHERE action_type = 'audit_reset'", [], |r| r.get(0)).unwrap();
    assert_eq!(resets, 0);
    let (ty, msg): (String, String) =
        conn.query_row("SELECT action_type, error_message FROM audit_log WHERE user_id = 'mallory'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(ty, "proxy_fetch");
    assert!(msg.contains("unknown action \"audit_reset\""), "{msg}");
    conn.execute("DELETE FROM audit_log WHERE user_id != 'mallory'", []).unwrap();
    assert!(!store.verify_audit(None).unwrap().ok);
}

/// A chain begun by schema v2 (first row's prev a plain "genesis", no commitment) gets one for
/// its legacy rows when the upgraded library opens it: a digest row, chained and verified.
#[test]
fn a_v2_chain_commits_to_its_legacy_rows_on_upgrade() {
    use tms::audit_chain::{ChainFields, ChainKey, GENESIS};
    let dir = TempDir::new("chain-v2");
    let audit = copy_fixture(&dir, "audit.db", "audit.db");
    let conn = inspect(&audit);
    tms::storage::sqlite::schema::migrate_to(&conn, tms::storage::DbFile::Audit, 2).unwrap();
    // One row chained the way v2 did it.
    let fields = ChainFields {
        seq: 1, prev: GENESIS, user_id: "old", action_type: "Trans-Begin", customer_ids: None,
        timestamp: Some("2026-11-01 00:00:00"), ip_address: None, status: Some("success"), error_message: None, duration_ms: None,
    };
    let hash = ChainKey::new(None).hash(&fields);
    conn.execute(
        "INSERT INTO audit_log (user_id, action_type, timestamp, status, chain_seq, chain_prev, chain_hash) VALUES ('old', 'Trans-Begin', '2026-11-01 00:00:00', 'success', 1, ?1, ?2)",
        [GENESIS, &hash],
    )
    .unwrap();
    drop(conn);
    let store = Store::open(dir.join("jobs.db"), &audit, &StoreOptions::default()).unwrap();
    let v = store.verify_audit(None).unwrap();
    assert!(v.ok && v.checked == 2, "{v:?}");
    let digests = count(&inspect(&audit), "SELECT COUNT(*) FROM audit_log WHERE action_type = 'audit_legacy_digest' AND user_id = 'system'");
    assert_eq!(digests, 1);
    drop(store);
    // Opening again adds no second digest row, and a forged legacy row now shows.
    let store = Store::open(dir.join("jobs.db"), &audit, &StoreOptions::default()).unwrap();
    attacker(&dir).execute("INSERT INTO audit_log (id, user_id, action_type) VALUES (-5, 'ghost', 'x')", []).unwrap();
    assert_eq!(problem(&store, None).0, "inserted");
    assert_eq!(count(&inspect(&audit), "SELECT COUNT(*) FROM audit_log WHERE action_type = 'audit_legacy_digest'"), 1);
}
