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
    (p.problem.to_owned(), p.seq)
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
    assert_eq!(count(&inspect(&audit), "PRAGMA user_version"), 2);
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
    let wrong = StoreOptions { audit_hmac_key: Some(Secret("other".into())), ..Default::default() };
    let wrong = Store::open(dir.join("jobs.db"), dir.join("audit.db"), &wrong).unwrap();
    assert_eq!(problem(&wrong, None), ("altered".into(), Some(1)));
    drop((no_key, wrong));
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

/// A crash between the two files' commits of a Set Action's outcome leaves its audit row only
/// in jobs.db's outbox; recovery (at open, or on demand) copies it into audit.db exactly once.
#[test]
fn an_outcome_whose_audit_row_missed_audit_db_is_completed_by_recovery() {
    let dir = TempDir::new("chain-outbox");
    let store = open_fresh(&dir);
    let job = store
        .create_job(&tms::model::NewJob { user_id: "op", action_code: 1, action_name: "Trans-Begin", cids: vec!["c1"], ..Default::default() })
        .unwrap();
    log_n(&store, 1); // audit row id 1
    drop(store);
    let record = r#"{"user_id":"op","action_type":"Trans-Begin","customer_ids":"[\"c1\"]","timestamp":"2026-11-28 10:00:00","ip_address":"10.0.0.1","status":"success","error_message":null,"duration_ms":12}"#;
    let conn = inspect(&dir.join("jobs.db"));
    // As if jobs.db committed and the process died before audit.db did: the id it was given
    // (2) never reached audit.db.
    conn.execute("INSERT INTO pending_audit (job_id, audit_id, record) VALUES (?1, 2, ?2)", [&job.job_id, record]).unwrap();
    drop(conn);

    let store = open_fresh(&dir);
    let trail = store.audit_trail(&Default::default(), 10).unwrap();
    assert_eq!(trail.len(), 2);
    let replayed = trail.iter().find(|r| r.user_id == "op").expect("the outbox row reached audit.db");
    assert_eq!((replayed.ip_address.as_deref(), replayed.duration_ms), (Some("10.0.0.1"), Some(12)));
    assert_eq!(count(&inspect(&dir.join("jobs.db")), "SELECT COUNT(*) FROM pending_audit"), 0);
    assert!(store.verify_audit(None).unwrap().ok);

    // An entry whose row did reach audit.db (the clean-up was what failed) is only cleared.
    let conn = inspect(&dir.join("jobs.db"));
    let id = replayed.id;
    conn.execute("INSERT INTO pending_audit (job_id, audit_id, record) VALUES (?1, ?2, ?3)", rusqlite::params![job.job_id, id, record]).unwrap();
    drop(conn);
    assert_eq!(store.recover_interrupted().unwrap(), 0);
    assert_eq!(store.audit_trail(&Default::default(), 10).unwrap().len(), 2);
    assert_eq!(count(&inspect(&dir.join("jobs.db")), "SELECT COUNT(*) FROM pending_audit"), 0);
}
