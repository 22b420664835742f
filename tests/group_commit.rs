//! Group commit: callers batched into one transaction keep their own outcomes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tms::storage::sqlite::{GroupCommitProbe, SqliteEngine};
use tms::storage::{Engine, JobRecord};
use tms::StoreOptions;

fn insert(engine: &SqliteEngine, id: &str, cids: &[String]) -> bool {
    engine
        .insert_job(&JobRecord {
            job_id: id,
            user_id: "u",
            batch_id: None,
            action_code: 1,
            action_name: "Trans-Begin",
            cluster_url: None,
            created_at: "2026-01-01T00:00:00.000000",
            request_payload: None,
            response_summary: None,
            status: "IN_PROGRESS",
            cids,
            set_action: false,
        })
        .is_ok()
}

/// Wait (bounded) until jobs.db's group commit looks as `done` wants.
fn wait_for(engine: &SqliteEngine, what: &str, done: impl Fn(GroupCommitProbe) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(engine.jobs_group_commit_probe()) {
        assert!(Instant::now() < deadline, "never {what}: {:?}", engine.jobs_group_commit_probe());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The batch is formed on purpose: another connection holds jobs.db's write lock, so the first
/// writer leads and waits in BEGIN IMMEDIATE while every other writer queues behind it; once all
/// are queued the lock goes, the leader commits its own write alone and the next leader takes
/// the whole queue into one transaction. In that batch two writers fail: one on a job id that is
/// taken (its first statement), one on a customer repeated in its list after its job row and
/// first customer were written (only the savepoint rollback removes those).
#[test]
fn a_failing_write_in_a_batch_rolls_back_only_itself() {
    let dir = TempDir::new("group");
    let engine = SqliteEngine::open(&dir.join("jobs.db"), &dir.join("audit.db"), &StoreOptions::default()).unwrap();
    let lock = inspect(&dir.join("jobs.db"));
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = engine.jobs_group_commit_probe().batches;
    let results: Vec<(String, bool)> = std::thread::scope(|s| {
        let engine = &engine;
        let leader = s.spawn(move || {
            let cids = vec!["lead".to_owned()];
            ("first".to_owned(), insert(engine, "first", &cids))
        });
        // The leader has taken its own write out of the queue and waits for the lock.
        wait_for(engine, "a leader waiting for the lock", |p| p.leading && p.queued == 0 && p.batches == before + 1);
        let members: Vec<_> = (0..8)
            .map(|i| {
                s.spawn(move || {
                    let (id, cids) = match i {
                        3 => ("first".to_owned(), vec!["x3".to_owned()]), // the leader's id: taken
                        5 => ("repeats".to_owned(), vec!["r1".to_owned(), "r1".to_owned()]), // fails after 2 rows
                        _ => (format!("job-{i}"), vec![format!("c{i}"), format!("d{i}")]),
                    };
                    let ok = insert(engine, &id, &cids);
                    (id, ok)
                })
            })
            .collect();
        wait_for(engine, "eight writers queued behind the leader", |p| p.queued == 8);
        lock.execute_batch("COMMIT").unwrap();
        std::iter::once(leader).chain(members).map(|h| h.join().unwrap()).collect()
    });
    // The leader's write alone, then all eight members in one batch.
    assert_eq!(engine.jobs_group_commit_probe().batches, before + 2, "the members did not share one batch");
    let failed: Vec<&str> = results.iter().filter(|(_, ok)| !ok).map(|(id, _)| id.as_str()).collect();
    assert!(results[0].1, "the leader failed: {results:?}");
    assert_eq!(failed, ["first", "repeats"], "{results:?}");
    let conn = inspect(&dir.join("jobs.db"));
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM jobs"), 7);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM jobs WHERE job_id = 'repeats'"), 0);
    // The failed callers' rows went with them: the leader's 1 customer and 2 per member job.
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM job_customers"), 1 + 6 * 2);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM job_customers WHERE cid IN ('x3', 'r1')"), 0);
}
