//! Group commit: callers batched into one transaction keep their own outcomes.

mod common;

use common::*;
use tms::storage::sqlite::SqliteEngine;
use tms::storage::{Engine, JobRecord};
use tms::StoreOptions;

#[test]
fn a_failing_write_in_a_batch_rolls_back_only_itself() {
    let dir = TempDir::new("group");
    let engine = SqliteEngine::open(&dir.join("jobs.db"), &dir.join("audit.db"), &StoreOptions::default()).unwrap();
    let results: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let engine = &engine;
                s.spawn(move || {
                    // Every third caller reuses one job id: all but the first of those must fail
                    // (primary key), without taking their batch-mates down with them.
                    let id = if i % 3 == 0 { "dup".to_owned() } else { format!("job-{i}") };
                    let cids = vec![format!("c{i}"), format!("d{i}")];
                    let ok = engine
                        .insert_job(&JobRecord {
                            job_id: &id,
                            user_id: "u",
                            batch_id: None,
                            action_code: 1,
                            action_name: "Trans-Begin",
                            cluster_url: None,
                            created_at: "2026-01-01T00:00:00.000000",
                            request_payload: None,
                            response_summary: None,
                            status: "IN_PROGRESS",
                            cids: &cids,
                            set_action: false,
                        })
                        .is_ok();
                    (id, ok)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dup_ok = results.iter().filter(|(id, ok)| id == "dup" && *ok).count();
    let others_ok = results.iter().filter(|(id, ok)| id != "dup" && *ok).count();
    assert_eq!(dup_ok, 1);
    assert_eq!(others_ok, 10);
    let conn = inspect(&dir.join("jobs.db"));
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM jobs"), 11);
    // The failed callers' customers were rolled back with them: 2 per surviving job.
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM job_customers"), 22);
}
