//! Export and import for `copy_into` (SQLite): whole rows, in batches.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};

use crate::audit_chain::{Cell, ChainRow};
use crate::error::Result;
use crate::storage::{CacheExport, Imported, JobExport};

/// Jobs in job_id order, read along the primary key's index.
pub(super) const EXPORT_JOBS_SQL: &str =
    "SELECT job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at, request_payload,
            response_summary, status, http_status, error_message, updated_at, customer_count, set_action_job
     FROM jobs WHERE (?1 IS NULL OR job_id > ?1) ORDER BY job_id LIMIT ?2";
/// A job's customers in the order they were written: found through the UNIQUE(job_id, cid)
/// index and sorted (a job's handful to thousands of rows; the copy is not a hot path).
pub(super) const EXPORT_CUSTOMERS_SQL: &str = "SELECT cid FROM job_customers WHERE job_id = ?1 ORDER BY id";

pub fn export_jobs(conn: &Connection, after: Option<&str>, max_jobs: u32, max_customers: usize) -> Result<Vec<JobExport>> {
    let mut jobs_stmt = conn.prepare_cached(EXPORT_JOBS_SQL)?;
    let mut cids_stmt = conn.prepare_cached(EXPORT_CUSTOMERS_SQL)?;
    let mut out = Vec::new();
    let mut customers = 0;
    let mut rows = jobs_stmt.query(params![after, max_jobs])?;
    while let Some(r) = rows.next()? {
        let job_id: String = r.get(0)?;
        let cids: Vec<String> = cids_stmt.query_map([&job_id], |c| c.get(0))?.collect::<rusqlite::Result<_>>()?;
        customers += cids.len();
        out.push(JobExport {
            job_id,
            user_id: r.get(1)?,
            batch_id: r.get(2)?,
            action_code: r.get(3)?,
            action_name: r.get(4)?,
            cluster_url: r.get(5)?,
            created_at: r.get(6)?,
            request_payload: r.get(7)?,
            response_summary: r.get(8)?,
            status: r.get(9)?,
            http_status: r.get(10)?,
            error_message: r.get(11)?,
            updated_at: r.get(12)?,
            customer_count: r.get(13)?,
            set_action: r.get::<_, Option<i64>>(14)? == Some(1),
            cids,
        });
        if customers >= max_customers {
            break;
        }
    }
    Ok(out)
}

pub fn import_jobs(conn: &Connection, jobs: &[JobExport], now_ms: i64) -> Result<Imported> {
    let mut done = Imported::default();
    let mut insert = conn.prepare_cached(
        "INSERT INTO jobs (job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at, request_payload,
                           response_summary, status, http_status, error_message, updated_at, customer_count, touched_unix_ms,
                           set_action_job)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (job_id) DO NOTHING",
    )?;
    let mut refresh = conn.prepare_cached(
        "UPDATE jobs SET status = ?2, http_status = ?3, error_message = ?4, response_summary = ?5, updated_at = ?6
         WHERE job_id = ?1",
    )?;
    let mut add = conn.prepare_cached("INSERT INTO job_customers (job_id, cid) VALUES (?1, ?2)")?;
    for j in jobs {
        let n = insert.execute(params![
            j.job_id, j.user_id, j.batch_id, j.action_code, j.action_name, j.cluster_url, j.created_at,
            j.request_payload, j.response_summary, j.status, j.http_status, j.error_message, j.updated_at,
            j.customer_count, now_ms, j.set_action.then_some(1)
        ])?;
        if n == 1 {
            for cid in &j.cids {
                add.execute(params![j.job_id, cid])?;
            }
            done.added += 1;
            done.customers += j.cids.len() as u64;
        } else {
            refresh.execute(params![j.job_id, j.status, j.http_status, j.error_message, j.response_summary, j.updated_at])?;
            done.present += 1;
        }
    }
    Ok(done)
}

pub fn export_cache(conn: &Connection, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<CacheExport>> {
    let (cid, app) = after.unzip();
    let mut stmt = conn.prepare_cached(
        "SELECT cid, app_name, status_data, cached_at, ttl_seconds FROM appstatus_cache
         WHERE ?1 IS NULL OR (cid, app_name) > (?1, ?2) ORDER BY cid, app_name LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![cid, app, limit], |r| {
            Ok(CacheExport { cid: r.get(0)?, app_name: r.get(1)?, status_data: r.get(2)?, cached_at: r.get(3)?, ttl_seconds: r.get(4)? })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn import_cache(conn: &Connection, rows: &[CacheExport]) -> Result<Imported> {
    let mut done = Imported::default();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO appstatus_cache (cid, app_name, status_data, cached_at, ttl_seconds) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (cid, app_name) DO NOTHING",
    )?;
    for e in rows {
        if stmt.execute(params![e.cid, e.app_name, e.status_data, e.cached_at, e.ttl_seconds])? == 1 {
            done.added += 1;
        } else {
            done.present += 1;
        }
    }
    Ok(done)
}

fn value(c: &Cell) -> SqlValue {
    match c {
        Cell::Null => SqlValue::Null,
        Cell::Int(i) => SqlValue::Integer(*i),
        Cell::Real(f) => SqlValue::Real(*f),
        Cell::Text(t) => SqlValue::Text(t.clone()),
        Cell::Blob(b) => SqlValue::Blob(b.clone()),
    }
}

pub fn export_audit(conn: &Connection, after_id: Option<i64>, limit: u32) -> Result<Vec<ChainRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM audit_log WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2",
        super::audit::COLUMNS
    ))?;
    let rows = stmt.query_map(params![after_id, limit], super::audit::chain_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn import_audit(conn: &Connection, rows: &[ChainRow]) -> Result<Imported> {
    let mut done = Imported::default();
    let mut existing = conn.prepare_cached(&format!("SELECT {} FROM audit_log WHERE id = ?1", super::audit::COLUMNS))?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit_log (id, user_id, action_type, customer_ids, timestamp, ip_address, status, error_message,
                                duration_ms, chain_seq, chain_prev, chain_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for row in rows {
        if let Some(there) = existing.query_row([row.id], super::audit::chain_row).optional()? {
            if there != *row {
                return Err(crate::storage::other_log(row.id));
            }
            done.present += 1;
            continue;
        }
        let l = &row.legacy;
        insert.execute(params![
            row.id, value(&l[0]), value(&l[1]), value(&l[2]), value(&l[3]), value(&l[4]), value(&l[5]), value(&l[6]),
            value(&l[7]), row.seq, row.prev, row.hash
        ])?;
        done.added += 1;
    }
    Ok(done)
}

pub fn audit_max_id(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn.query_row("SELECT MAX(id) FROM audit_log", [], |r| r.get(0))?)
}
