//! SQL for the jobs and job_customers tables.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::Result;
use crate::model::{JobDetails, JobStatus, JobSummary, parse_json_or_text};
use crate::storage::{JobChange, JobRecord};

/// A job's customer count: stored since schema v3, counted for rows a legacy writer added.
const COUNT: &str =
    "COALESCE(j.customer_count, (SELECT COUNT(*) FROM job_customers c WHERE c.job_id = j.job_id))";

/// Insert a job and its customers; `now_ms` is the library's clock (see `touched_unix_ms`).
pub fn insert(conn: &Connection, job: &JobRecord<'_>, now_ms: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO jobs (job_id, user_id, batch_id, action_code, action_name, cluster_url,
                           created_at, request_payload, response_summary, status, updated_at,
                           customer_count, touched_unix_ms, set_action_job)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?7, ?11, ?12, ?13)",
    )?
    .execute(params![
        job.job_id,
        job.user_id,
        job.batch_id,
        job.action_code,
        job.action_name,
        job.cluster_url,
        job.created_at,
        job.request_payload,
        job.response_summary,
        job.status,
        job.cids.len() as i64,
        now_ms,
        job.set_action.then_some(1),
    ])?;
    insert_customers(conn, job.job_id, job.cids)
}

/// Rows per multi-row INSERT of a job's customers, largest first: a Set Action of 150 IDs runs
/// 12 statements instead of 150 (each execution binds, steps and resets once; the job id is
/// bound once per statement). 32 rows bind 33 values, well under SQLite's limit of 999.
const CUSTOMER_CHUNKS: [usize; 3] = [32, 8, 1];

/// Each chunk size's INSERT, written once per process (the statement cache looks them up by text).
static CUSTOMER_INSERTS: LazyLock<[(usize, String); 3]> = LazyLock::new(|| {
    CUSTOMER_CHUNKS.map(|size| {
        let rows: Vec<String> = (0..size).map(|i| format!("(?1, ?{})", i + 2)).collect();
        (size, format!("INSERT INTO job_customers (job_id, cid) VALUES {}", rows.join(", ")))
    })
});

/// The job's customers, in the order given (their rowids keep it).
fn insert_customers(conn: &Connection, job_id: &str, cids: &[String]) -> Result<()> {
    let mut rest = cids;
    for (size, sql) in CUSTOMER_INSERTS.iter() {
        let size = *size;
        if rest.len() < size {
            continue;
        }
        let mut add = conn.prepare_cached(sql)?;
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            add.execute(rusqlite::params_from_iter(std::iter::once(job_id).chain(chunk.iter().map(String::as_str))))?;
            rest = tail;
        }
    }
    Ok(())
}

/// The legacy `update_job`: fields given change, the others keep their values.
pub fn update(conn: &Connection, change: &JobChange<'_>, now_ms: i64) -> Result<bool> {
    set_fields(
        conn,
        "UPDATE jobs SET status = ?2,
                         http_status = COALESCE(?3, http_status),
                         error_message = COALESCE(?4, error_message),
                         response_summary = COALESCE(?5, response_summary),
                         updated_at = ?6, touched_unix_ms = ?7
         WHERE job_id = ?1",
        change,
        now_ms,
    )
}

/// A Set Action's outcome: every outcome column is set, so nothing a recovery verdict wrote in
/// the meantime survives it.
pub fn record_outcome(conn: &Connection, outcome: &JobChange<'_>, now_ms: i64) -> Result<bool> {
    set_fields(
        conn,
        "UPDATE jobs SET status = ?2, http_status = ?3, error_message = ?4, response_summary = ?5,
                         updated_at = ?6, touched_unix_ms = ?7
         WHERE job_id = ?1",
        outcome,
        now_ms,
    )
}

/// Run one of the two updates above with the change's fields bound; whether the job exists.
fn set_fields(conn: &Connection, sql: &str, c: &JobChange<'_>, now_ms: i64) -> Result<bool> {
    let n = conn.prepare_cached(sql)?.execute(params![
        c.job_id,
        c.status,
        c.http_status,
        c.error_message,
        c.response_summary,
        c.updated_at,
        now_ms,
    ])?;
    Ok(n > 0)
}

pub fn details(conn: &Connection, job_id: &str) -> Result<Option<JobDetails>> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at,
                    request_payload, response_summary, status, http_status, error_message,
                    updated_at, {COUNT}
             FROM jobs j WHERE job_id = ?1"
        ))?
        .query_row([job_id], |r| {
            Ok(JobDetails {
                job_id: r.get(0)?,
                user_id: r.get(1)?,
                batch_id: r.get(2)?,
                action_code: r.get(3)?,
                action_name: r.get(4)?,
                cluster_url: r.get(5)?,
                created_at: r.get(6)?,
                request_payload: parse_json_or_text(r.get(7)?),
                response_summary: r.get(8)?,
                status: r.get::<_, Option<String>>(9)?.map(|s| JobStatus::from_stored(&s)),
                http_status: r.get(10)?,
                error_message: r.get(11)?,
                updated_at: r.get(12)?,
                customer_count: r.get(13)?,
            })
        })
        .optional()?;
    Ok(row)
}

fn summary(r: &Row<'_>) -> rusqlite::Result<JobSummary> {
    Ok(JobSummary {
        job_id: r.get(0)?,
        user_id: r.get(1)?,
        action_code: r.get(2)?,
        action_name: r.get(3)?,
        cluster_url: r.get(4)?,
        created_at: r.get(5)?,
        status: r.get::<_, Option<String>>(6)?.map(|s| JobStatus::from_stored(&s)),
        http_status: r.get(7)?,
        error_message: r.get(8)?,
        customer_count: r.get(9)?,
    })
}

pub(super) fn user_jobs_sql() -> String {
    // idx_jobs_user_created yields the rows already in order; the stored count spares a scan
    // of job_customers per listed job.
    format!(
        "SELECT job_id, user_id, action_code, action_name, cluster_url, created_at, status,
                http_status, error_message, {COUNT}
         FROM jobs j WHERE user_id = ?1
         ORDER BY created_at DESC, rowid DESC LIMIT ?2"
    )
}

pub fn for_user(conn: &Connection, user_id: &str, limit: u32) -> Result<Vec<JobSummary>> {
    let mut stmt = conn.prepare_cached(&user_jobs_sql())?;
    let rows = stmt.query_map(params![user_id, limit], summary)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub(super) const JOB_EXISTS_SQL: &str = "SELECT EXISTS(SELECT 1 FROM jobs WHERE job_id = ?1)";
/// Served by the UNIQUE(job_id, cid) index, already in cid order.
pub(super) const JOB_CUSTOMERS_SQL: &str = "SELECT cid FROM job_customers WHERE job_id = ?1 ORDER BY cid";

pub fn customers(conn: &Connection, job_id: &str) -> Result<Option<Vec<String>>> {
    let exists: bool = conn
        .prepare_cached(JOB_EXISTS_SQL)?
        .query_row([job_id], |r| r.get(0))?;
    if !exists {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(JOB_CUSTOMERS_SQL)?;
    let cids = stmt.query_map([job_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(Some(cids))
}

/// How much jobs.db holds (inside one read transaction).
pub fn counts(conn: &Connection) -> Result<crate::model::StoreCounts> {
    let mut counts = crate::model::StoreCounts::default();
    let mut stmt = conn.prepare("SELECT COALESCE(status, ''), COUNT(*) FROM jobs GROUP BY status")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (status, n) = row?;
        counts.jobs += n;
        counts.jobs_by_status.insert(status, n);
    }
    counts.job_customers = conn.query_row("SELECT COUNT(*) FROM job_customers", [], |r| r.get(0))?;
    counts.cache_entries = conn.query_row("SELECT COUNT(*) FROM appstatus_cache", [], |r| r.get(0))?;
    counts.audit_waiting = conn.query_row("SELECT COUNT(*) FROM audit_outbox", [], |r| r.get(0))?;
    Ok(counts)
}

/// `synchronous` and `journal_mode` as this connection has them, under `{file}.`.
pub fn durability(conn: &Connection, file: &str, into: &mut std::collections::BTreeMap<String, String>) -> Result<()> {
    let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    let sync = match sync {
        0 => "OFF".to_owned(),
        1 => "NORMAL".to_owned(),
        2 => "FULL".to_owned(),
        3 => "EXTRA".to_owned(),
        n => n.to_string(),
    };
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    into.insert(format!("{file}.synchronous"), sync);
    into.insert(format!("{file}.journal_mode"), mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listing a user's newest jobs walks one index in order and reads job_customers only for
    /// rows whose count is unknown (the COALESCE's subquery is never reached otherwise).
    #[test]
    fn listing_a_users_jobs_needs_no_sort_and_no_customer_scan() {
        let conn = Connection::open_in_memory().unwrap();
        crate::storage::sqlite::schema::migrate_jobs(&conn, true).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", user_jobs_sql()))
            .unwrap()
            .query_map(params!["u", 50], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("idx_jobs_user_created"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "sorts per call:\n{plan}");
        // The only job_customers access is the correlated fallback for NULL counts.
        assert!(plan.matches("job_customers").count() <= 1, "{plan}");
    }
}
