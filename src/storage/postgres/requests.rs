//! SQL for Set Action bookkeeping (PostgreSQL): idempotency keys and interrupted jobs.

use postgres::GenericClient;

use super::pg_error;
use super::pool::Cache;
use crate::error::Result;
use crate::storage::{IdempotencyKey, JobChange, PriorRequest};

const PRIOR: &str = "SELECT r.job_id, r.answer_http_status, r.answer_body, j.status, j.error_message, r.request_fingerprint
                     FROM set_action_requests r LEFT JOIN jobs j ON j.job_id = r.job_id
                     WHERE r.user_id = $1 AND r.idempotency_key = $2";

pub fn prior(c: &mut impl GenericClient, cache: &mut Cache, key: IdempotencyKey<'_>) -> Result<Option<PriorRequest>> {
    let st = cache.prepare(c, PRIOR)?;
    Ok(c.query_opt(&st, &[&key.user_id, &key.key]).map_err(pg_error)?.map(|r| {
        let status: Option<i64> = r.get(1);
        let body: Option<String> = r.get(2);
        PriorRequest { job_id: r.get(0), answer: status.zip(body), job_status: r.get(3), job_error: r.get(4), fingerprint: r.get(5) }
    }))
}

/// Claim the key first, in READ COMMITTED: a racing request with the same key blocks on this
/// insert until the first transaction ends, then finds the key taken (or free, if the first
/// rolled back). Returns whether this request claimed it.
pub fn claim_key(c: &mut impl GenericClient, cache: &mut Cache, key: IdempotencyKey<'_>, fingerprint: &str, job_id: &str, now: &str) -> Result<bool> {
    let st = cache.prepare(
        c,
        "INSERT INTO set_action_requests (user_id, idempotency_key, job_id, created_at, request_fingerprint)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
    )?;
    Ok(c.query_opt(&st, &[&key.user_id, &key.key, &job_id, &now, &fingerprint]).map_err(pg_error)?.is_some())
}

/// A Set Action's outcome (every outcome column set, replacing any recovery verdict), its key's
/// answer, and the claim of its audit row's receipt (see `claim_audit_receipt`), in one
/// statement, in that order (PostgreSQL runs every data-modifying WITH once, read or not).
/// Returns whether the job exists and whether the receipt was claimed.
const FINISH: &str = "WITH outcome AS (
                          UPDATE jobs SET status = $2, http_status = $3, error_message = $4, response_summary = $5,
                                          updated_at = $6, touched_at = now()
                          WHERE job_id = $1
                          RETURNING 1),
                      answer AS (
                          UPDATE set_action_requests SET answer_http_status = $9::bigint, answer_body = $10::text
                          WHERE user_id = $7::text AND idempotency_key = $8::text),
                      receipt AS (
                          INSERT INTO set_action_audit_receipts (job_id, audit_id) SELECT $1, NULL WHERE $11::boolean
                          ON CONFLICT DO NOTHING
                          RETURNING 1)
                      SELECT EXISTS (SELECT 1 FROM outcome), EXISTS (SELECT 1 FROM receipt)";

pub fn finish(
    c: &mut impl GenericClient,
    cache: &mut Cache,
    o: &JobChange<'_>,
    answer: Option<(IdempotencyKey<'_>, i64, &str)>,
    claim_receipt: bool,
) -> Result<(bool, bool)> {
    let st = cache.prepare(c, FINISH)?;
    let (user, key) = (answer.map(|a| a.0.user_id), answer.map(|a| a.0.key));
    let (status, body) = (answer.map(|a| a.1), answer.map(|a| a.2));
    let row = c
        .query_one(
            &st,
            &[&o.job_id, &o.status, &o.http_status, &o.error_message, &o.response_summary, &o.updated_at,
              &user, &key, &status, &body, &claim_receipt],
        )
        .map_err(pg_error)?;
    Ok((row.get(0), row.get(1)))
}

/// Claim the right to write job `job_id`'s Set Action audit row: true for the one transaction
/// that inserts its receipt (a concurrent claimer waits for it, then finds it taken).
pub fn claim_audit_receipt(c: &mut impl GenericClient, cache: &mut Cache, job_id: &str) -> Result<bool> {
    let st = cache.prepare(
        c,
        "INSERT INTO set_action_audit_receipts (job_id, audit_id) VALUES ($1, NULL) ON CONFLICT DO NOTHING RETURNING 1",
    )?;
    Ok(c.query_opt(&st, &[&job_id]).map_err(pg_error)?.is_some())
}

/// Record which audit row the receipt stands for.
pub fn set_audit_receipt(c: &mut impl GenericClient, cache: &mut Cache, job_id: &str, audit_id: i64) -> Result<()> {
    let st = cache.prepare(c, "UPDATE set_action_audit_receipts SET audit_id = $2 WHERE job_id = $1")?;
    c.execute(&st, &[&job_id, &audit_id]).map_err(pg_error)?;
    Ok(())
}

/// Mark FAILED the library's own Set Actions still IN_PROGRESS that it last wrote more than
/// `older_than_s` ago by the server's clock (jobs from `create_job` are the caller's: never
/// touched). Rows another host is writing right now are locked and skipped, never
/// waited for or taken: a job whose outcome is being recorded is not interrupted.
pub fn recover_interrupted(c: &mut impl GenericClient, cache: &mut Cache, older_than_s: f64, message: &str, now_text: &str) -> Result<u64> {
    let st = cache.prepare(
        c,
        "UPDATE jobs SET status = 'FAILED', error_message = $2, updated_at = $3, touched_at = now(),
                         response_summary = 'No answer recorded: interrupted'
         WHERE job_id IN (SELECT job_id FROM jobs
                          WHERE status = 'IN_PROGRESS' AND set_action_job
                            AND touched_at < now() - make_interval(secs => $1)
                          FOR UPDATE SKIP LOCKED)",
    )?;
    c.execute(&st, &[&older_than_s, &message, &now_text]).map_err(pg_error)
}
