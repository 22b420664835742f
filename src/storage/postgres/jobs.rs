//! SQL for jobs and job_customers (PostgreSQL).

use postgres::types::ToSql;
use postgres::{GenericClient, Row};

use super::pg_error;
use super::pool::Cache;
use crate::error::Result;
use crate::model::{JobDetails, JobStatus, JobSummary, parse_json_or_text};
use crate::storage::{JobChange, JobRecord};

/// A job's customer count: stored, or counted for rows another writer added without it.
macro_rules! count {
    () => {
        "COALESCE(j.customer_count, (SELECT COUNT(*) FROM job_customers c WHERE c.job_id = j.job_id))"
    };
}

/// The job and every customer in one statement, however many (one round trip; outside a
/// transaction it commits on its own, all or nothing). The customers' foreign key is checked at
/// the statement's end, when the job's row is there.
const INSERT: &str = "WITH job AS (
                          INSERT INTO jobs (job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at,
                                            request_payload, response_summary, status, updated_at, customer_count,
                                            set_action_job)
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $7, $11, $12)
                          RETURNING job_id)
                      INSERT INTO job_customers (job_id, cid) SELECT job.job_id, unnest($13::text[]) FROM job";

/// INSERT for a rerun after a lost connection: a job already there (the first run's) is left as
/// it is, with its customers.
const INSERT_UNLESS_THERE: &str = "WITH job AS (
                          INSERT INTO jobs (job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at,
                                            request_payload, response_summary, status, updated_at, customer_count,
                                            set_action_job)
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $7, $11, $12)
                          ON CONFLICT (job_id) DO NOTHING
                          RETURNING job_id)
                      INSERT INTO job_customers (job_id, cid) SELECT job.job_id, unnest($13::text[]) FROM job";

/// A Set Action's job with its idempotency key's claim, in one statement: the key is claimed
/// first (a racing request with the same key waits on it until this one commits), and the job
/// and its customers are inserted only if it was (or there is no key). The request's foreign key
/// to the job is checked at commit.
const INSERT_CLAIMING: &str = "WITH claim AS (
                          INSERT INTO set_action_requests (user_id, idempotency_key, job_id, created_at, request_fingerprint)
                          SELECT $14::text, $15::text, $1, $7, $16::text WHERE $14::text IS NOT NULL
                          ON CONFLICT DO NOTHING
                          RETURNING 1),
                      job AS (
                          INSERT INTO jobs (job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at,
                                            request_payload, response_summary, status, updated_at, customer_count,
                                            set_action_job)
                          SELECT $1::text, $2::text, $3::text, $4::bigint, $5::text, $6::text, $7::text, $8::text, $9::text,
                                 $10::text, $7::text, $11::bigint, $12::boolean
                          WHERE $14::text IS NULL OR EXISTS (SELECT 1 FROM claim)
                          RETURNING job_id),
                      customers AS (
                          INSERT INTO job_customers (job_id, cid) SELECT job.job_id, unnest($13::text[]) FROM job)
                      SELECT EXISTS (SELECT 1 FROM job)";

/// Insert a Set Action's job, claiming its idempotency key (user, key, fingerprint) first when
/// given; false when the key was taken (nothing inserted).
pub fn insert_claiming(c: &mut impl GenericClient, cache: &mut Cache, job: &JobRecord<'_>, key: Option<(&str, &str, &str)>) -> Result<bool> {
    let st = cache.prepare(c, INSERT_CLAIMING)?;
    let (user, idempotency_key, fingerprint) = (key.map(|k| k.0), key.map(|k| k.1), key.map(|k| k.2));
    let row = with_job_params(job, &[&user, &idempotency_key, &fingerprint], |params| c.query_one(&st, params))
        .map_err(pg_error)?;
    Ok(row.get(0))
}

pub fn insert(c: &mut impl GenericClient, cache: &mut Cache, job: &JobRecord<'_>) -> Result<()> {
    insert_with(c, cache, INSERT, job)
}

/// The job unless one with its id is there (a rerun's insert, whose first run may have committed).
pub fn insert_unless_there(c: &mut impl GenericClient, cache: &mut Cache, job: &JobRecord<'_>) -> Result<()> {
    insert_with(c, cache, INSERT_UNLESS_THERE, job)
}

fn insert_with(c: &mut impl GenericClient, cache: &mut Cache, sql: &'static str, job: &JobRecord<'_>) -> Result<()> {
    let st = cache.prepare(c, sql)?;
    with_job_params(job, &[], |params| c.execute(&st, params)).map_err(pg_error)?;
    Ok(())
}

/// Run `f` with the job's parameters as every job insert binds them ($1 to $13), then `extra`.
fn with_job_params<R>(job: &JobRecord<'_>, extra: &[&(dyn ToSql + Sync)], f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R {
    let (action_code, customer_count) = (i64::from(job.action_code), job.cids.len() as i64);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &job.job_id,
        &job.user_id,
        &job.batch_id,
        &action_code,
        &job.action_name,
        &job.cluster_url,
        &job.created_at,
        &job.request_payload,
        &job.response_summary,
        &job.status,
        &customer_count,
        &job.set_action,
        &job.cids,
    ];
    params.extend_from_slice(extra);
    f(&params)
}

/// Whether job `job_id` exists (a rerun's check for its own insert).
pub fn exists(c: &mut impl GenericClient, cache: &mut Cache, job_id: &str) -> Result<bool> {
    let st = cache.prepare(c, "SELECT 1 FROM jobs WHERE job_id = $1")?;
    Ok(c.query_opt(&st, &[&job_id]).map_err(pg_error)?.is_some())
}

const UPDATE: &str = "UPDATE jobs SET status = $2, http_status = COALESCE($3, http_status),
                          error_message = COALESCE($4, error_message),
                          response_summary = COALESCE($5, response_summary), updated_at = $6, touched_at = now()
                      WHERE job_id = $1";

pub fn update(c: &mut impl GenericClient, cache: &mut Cache, ch: &JobChange<'_>) -> Result<bool> {
    set_fields(c, cache, UPDATE, ch)
}

/// Run UPDATE with the change's fields bound; whether the job exists.
fn set_fields(c: &mut impl GenericClient, cache: &mut Cache, sql: &'static str, ch: &JobChange<'_>) -> Result<bool> {
    let st = cache.prepare(c, sql)?;
    let n = c
        .execute(&st, &[&ch.job_id, &ch.status, &ch.http_status, &ch.error_message, &ch.response_summary, &ch.updated_at])
        .map_err(pg_error)?;
    Ok(n > 0)
}

const DETAILS: &str = concat!(
    "SELECT job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at, request_payload,
            response_summary, status, http_status, error_message, updated_at, ",
    count!(),
    " FROM jobs j WHERE job_id = $1"
);

fn status(r: &Row, i: usize) -> Option<JobStatus> {
    r.get::<_, Option<String>>(i).map(|s| JobStatus::from_stored(&s))
}

pub fn details(c: &mut impl GenericClient, cache: &mut Cache, job_id: &str) -> Result<Option<JobDetails>> {
    let st = cache.prepare(c, DETAILS)?;
    let row = c.query_opt(&st, &[&job_id]).map_err(pg_error)?;
    Ok(row.map(|r| JobDetails {
        job_id: r.get(0),
        user_id: r.get(1),
        batch_id: r.get(2),
        action_code: r.get(3),
        action_name: r.get(4),
        cluster_url: r.get(5),
        created_at: r.get(6),
        request_payload: parse_json_or_text(r.get(7)),
        response_summary: r.get(8),
        status: status(&r, 9),
        http_status: r.get(10),
        error_message: r.get(11),
        updated_at: r.get(12),
        customer_count: r.get(13),
    }))
}

const FOR_USER: &str = concat!(
    "SELECT job_id, user_id, action_code, action_name, cluster_url, created_at, status, http_status, error_message, ",
    count!(),
    " FROM jobs j WHERE user_id = $1 ORDER BY created_at DESC, seq DESC LIMIT $2"
);

pub fn for_user(c: &mut impl GenericClient, cache: &mut Cache, user_id: &str, limit: u32) -> Result<Vec<JobSummary>> {
    let st = cache.prepare(c, FOR_USER)?;
    let rows = c.query(&st, &[&user_id, &i64::from(limit)]).map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| JobSummary {
            job_id: r.get(0),
            user_id: r.get(1),
            action_code: r.get(2),
            action_name: r.get(3),
            cluster_url: r.get(4),
            created_at: r.get(5),
            status: status(r, 6),
            http_status: r.get(7),
            error_message: r.get(8),
            customer_count: r.get(9),
        })
        .collect())
}

/// Whether the job exists and its customers, in one statement (one snapshot, one round trip).
const CUSTOMERS: &str = "SELECT EXISTS(SELECT 1 FROM jobs WHERE job_id = $1),
                                ARRAY(SELECT cid FROM job_customers WHERE job_id = $1 ORDER BY cid)";

pub fn customers(c: &mut impl GenericClient, cache: &mut Cache, job_id: &str) -> Result<Option<Vec<String>>> {
    let st = cache.prepare(c, CUSTOMERS)?;
    let row = c.query_one(&st, &[&job_id]).map_err(pg_error)?;
    Ok(if row.get(0) { Some(row.get(1)) } else { None })
}
