//! Export and import for `copy_into` (PostgreSQL): whole rows, in batches, customers of a batch
//! in one round trip per job.

use postgres::GenericClient;

use super::audit::chain_row;
use super::pg_error;
use super::pool::Cache;
use crate::audit_chain::{Cell, ChainRow};
use crate::error::{Error, Result};
use crate::storage::{CacheExport, Imported, JobExport};

pub fn export_jobs(c: &mut impl GenericClient, cache: &mut Cache, after: Option<&str>, max_jobs: u32, max_customers: usize) -> Result<Vec<JobExport>> {
    let st = cache.prepare(
        c,
        "SELECT job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at, request_payload,
                response_summary, status, http_status, error_message, updated_at, customer_count, set_action_job
         FROM jobs WHERE ($1::text IS NULL OR job_id > $1) ORDER BY job_id LIMIT $2",
    )?;
    let rows = c.query(&st, &[&after, &i64::from(max_jobs)]).map_err(pg_error)?;
    let cids_st = cache.prepare(c, "SELECT cid FROM job_customers WHERE job_id = $1 ORDER BY id")?;
    let mut out = Vec::new();
    let mut customers = 0;
    for r in rows {
        let job_id: String = r.get(0);
        let cids: Vec<String> = c.query(&cids_st, &[&job_id]).map_err(pg_error)?.iter().map(|x| x.get(0)).collect();
        customers += cids.len();
        out.push(JobExport {
            job_id,
            user_id: r.get(1),
            batch_id: r.get(2),
            action_code: r.get(3),
            action_name: r.get(4),
            cluster_url: r.get(5),
            created_at: r.get(6),
            request_payload: r.get(7),
            response_summary: r.get(8),
            status: r.get(9),
            http_status: r.get(10),
            error_message: r.get(11),
            updated_at: r.get(12),
            customer_count: r.get(13),
            set_action: r.get(14),
            cids,
        });
        if customers >= max_customers {
            break;
        }
    }
    Ok(out)
}

pub fn import_jobs(c: &mut impl GenericClient, cache: &mut Cache, jobs: &[JobExport]) -> Result<Imported> {
    let insert = cache.prepare(
        c,
        "INSERT INTO jobs (job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at, request_payload,
                           response_summary, status, http_status, error_message, updated_at, customer_count, set_action_job)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (job_id) DO NOTHING RETURNING 1",
    )?;
    let refresh = cache.prepare(
        c,
        "UPDATE jobs SET status = $2, http_status = $3, error_message = $4, response_summary = $5, updated_at = $6
         WHERE job_id = $1",
    )?;
    let customers = cache.prepare(c, "INSERT INTO job_customers (job_id, cid) SELECT $1, unnest($2::text[])")?;
    let mut done = Imported::default();
    for j in jobs {
        let added = c
            .query_opt(
                &insert,
                &[&j.job_id, &j.user_id, &j.batch_id, &j.action_code, &j.action_name, &j.cluster_url, &j.created_at,
                  &j.request_payload, &j.response_summary, &j.status, &j.http_status, &j.error_message, &j.updated_at,
                  &j.customer_count, &j.set_action],
            )
            .map_err(pg_error)?
            .is_some();
        if added {
            if !j.cids.is_empty() {
                c.execute(&customers, &[&j.job_id, &j.cids]).map_err(pg_error)?;
            }
            done.added += 1;
            done.customers += j.cids.len() as u64;
        } else {
            c.execute(&refresh, &[&j.job_id, &j.status, &j.http_status, &j.error_message, &j.response_summary, &j.updated_at])
                .map_err(pg_error)?;
            done.present += 1;
        }
    }
    Ok(done)
}

pub fn export_cache(c: &mut impl GenericClient, cache: &mut Cache, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<CacheExport>> {
    let (cid, app) = after.unzip();
    let st = cache.prepare(
        c,
        "SELECT cid, app_name, status_data, cached_at, ttl_seconds FROM appstatus_cache
         WHERE $1::text IS NULL OR (cid, app_name) > ($1, $2::text) ORDER BY cid, app_name LIMIT $3",
    )?;
    Ok(c.query(&st, &[&cid, &app, &i64::from(limit)])
        .map_err(pg_error)?
        .iter()
        .map(|r| CacheExport { cid: r.get(0), app_name: r.get(1), status_data: r.get(2), cached_at: r.get(3), ttl_seconds: r.get(4) })
        .collect())
}

pub fn import_cache(c: &mut impl GenericClient, cache: &mut Cache, rows: &[CacheExport]) -> Result<Imported> {
    let st = cache.prepare(
        c,
        "INSERT INTO appstatus_cache (cid, app_name, status_data, cached_at, ttl_seconds) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (cid, app_name) DO NOTHING",
    )?;
    let mut done = Imported::default();
    for e in rows {
        if c.execute(&st, &[&e.cid, &e.app_name, &e.status_data, &e.cached_at, &e.ttl_seconds]).map_err(pg_error)? == 1 {
            done.added += 1;
        } else {
            done.present += 1;
        }
    }
    Ok(done)
}

macro_rules! columns {
    () => {
        "id, user_id, action_type, customer_ids, \"timestamp\", ip_address, status, error_message, duration_ms, \
         chain_seq, chain_prev, chain_hash"
    };
}

pub fn export_audit(c: &mut impl GenericClient, cache: &mut Cache, after_id: Option<i64>, limit: u32) -> Result<Vec<ChainRow>> {
    let st = cache.prepare(c, concat!("SELECT ", columns!(), " FROM audit_log WHERE $1::bigint IS NULL OR id > $1 ORDER BY id LIMIT $2"))?;
    Ok(c.query(&st, &[&after_id, &i64::from(limit)]).map_err(pg_error)?.iter().map(chain_row).collect())
}

/// A text column's value (NULL allowed); another type cannot be stored in it here.
fn text(row: &ChainRow, i: usize, column: &str) -> Result<Option<String>> {
    match &row.legacy[i] {
        Cell::Null => Ok(None),
        Cell::Text(t) => Ok(Some(t.clone())),
        other => Err(Error::invalid(format!(
            "audit row {}: its {column} holds {other:?}, which PostgreSQL's text column cannot keep as it is",
            row.id
        ))),
    }
}

pub fn import_audit(c: &mut impl GenericClient, cache: &mut Cache, rows: &[ChainRow]) -> Result<Imported> {
    let existing = cache.prepare(c, concat!("SELECT ", columns!(), " FROM audit_log WHERE id = $1"))?;
    let insert = cache.prepare(
        c,
        "INSERT INTO audit_log (id, user_id, action_type, customer_ids, \"timestamp\", ip_address, status, error_message,
                                duration_ms, chain_seq, chain_prev, chain_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )?;
    let mut done = Imported::default();
    let mut head: Option<(i64, String)> = None;
    for row in rows {
        if let Some(there) = c.query_opt(&existing, &[&row.id]).map_err(pg_error)? {
            if chain_row(&there) != *row {
                return Err(crate::storage::other_log(row.id));
            }
            done.present += 1;
            continue;
        }
        let duration = match &row.legacy[7] {
            Cell::Null => None,
            Cell::Int(i) => Some(*i),
            other => {
                return Err(Error::invalid(format!(
                    "audit row {}: its duration_ms holds {other:?}, which PostgreSQL's bigint column cannot keep",
                    row.id
                )));
            }
        };
        let user_id = text(row, 0, "user_id")?.unwrap_or_default();
        let action_type = text(row, 1, "action_type")?.unwrap_or_default();
        c.execute(
            &insert,
            &[&row.id, &user_id, &action_type, &text(row, 2, "customer_ids")?, &text(row, 3, "timestamp")?,
              &text(row, 4, "ip_address")?, &text(row, 5, "status")?, &text(row, 6, "error_message")?, &duration,
              &row.seq, &row.prev, &row.hash],
        )
        .map_err(pg_error)?;
        if let (Some(seq), Some(hash)) = (row.seq, &row.hash) {
            if head.as_ref().is_none_or(|(s, _)| seq > *s) {
                head = Some((seq, hash.clone()));
            }
        }
        done.added += 1;
    }
    // Appends after the copy continue the copied chain, and new ids follow the copied ones.
    if let Some((seq, hash)) = head {
        c.execute("UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE seq < $1", &[&seq, &hash]).map_err(pg_error)?;
    }
    c.batch_execute("SELECT setval(pg_get_serial_sequence('audit_log', 'id'), GREATEST((SELECT MAX(id) FROM audit_log), 1))")
        .map_err(pg_error)?;
    Ok(done)
}

pub fn audit_max_id(c: &mut impl GenericClient, cache: &mut Cache) -> Result<Option<i64>> {
    let st = cache.prepare(c, "SELECT MAX(id) FROM audit_log")?;
    Ok(c.query_one(&st, &[]).map_err(pg_error)?.get(0))
}
