//! SQL for Set Action bookkeeping: idempotency keys (set_action_requests) and interrupted jobs.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::storage::{IdempotencyKey, PriorRequest};

pub fn prior(conn: &Connection, key: IdempotencyKey<'_>) -> Result<Option<PriorRequest>> {
    Ok(conn
        .prepare_cached(
            "SELECT r.job_id, r.answer_http_status, r.answer_body, j.status, j.error_message,
                    r.request_fingerprint
             FROM set_action_requests r LEFT JOIN jobs j ON j.job_id = r.job_id
             WHERE r.user_id = ?1 AND r.idempotency_key = ?2",
        )?
        .query_row(params![key.user_id, key.key], |r| {
            let status: Option<i64> = r.get(1)?;
            let body: Option<String> = r.get(2)?;
            Ok(PriorRequest {
                job_id: r.get(0)?,
                answer: status.zip(body),
                job_status: r.get(3)?,
                job_error: r.get(4)?,
                fingerprint: r.get(5)?,
            })
        })
        .optional()?)
}

pub fn insert_key(conn: &Connection, key: IdempotencyKey<'_>, fingerprint: &str, job_id: &str, now: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO set_action_requests (user_id, idempotency_key, job_id, created_at, request_fingerprint)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![key.user_id, key.key, job_id, now, fingerprint])?;
    Ok(())
}

pub fn store_answer(conn: &Connection, key: IdempotencyKey<'_>, status: i64, body: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE set_action_requests SET answer_http_status = ?3, answer_body = ?4
         WHERE user_id = ?1 AND idempotency_key = ?2",
    )?
    .execute(params![key.user_id, key.key, status, body])?;
    Ok(())
}

/// Walks the partial index of jobs in flight (idx_jobs_in_flight), never the whole table.
pub(super) const RECOVER_SQL: &str =
    "UPDATE jobs SET status = 'FAILED', error_message = ?2, updated_at = ?3, touched_unix_ms = ?4,
                     response_summary = 'No answer recorded: interrupted'
     WHERE status = 'IN_PROGRESS' AND touched_unix_ms < ?1 AND set_action_job = 1";

/// Mark FAILED the library's own Set Actions still IN_PROGRESS that it last wrote before
/// `cutoff_ms` (Unix ms, the library's clock, so no process's time zone is involved). Jobs from
/// `create_job` or a legacy writer are their caller's to finish and are never touched.
pub fn recover_interrupted(conn: &Connection, now_ms: i64, cutoff_ms: i64, message: &str, now_text: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached(RECOVER_SQL)?
        .execute(params![cutoff_ms, message, now_text, now_ms])? as u64)
}
