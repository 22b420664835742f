//! Export and import for `copy_into` (PostgreSQL): whole rows, a page of jobs with all their
//! customers in a few queries (a round trip per job made a copy of 100,000 jobs take half a
//! minute on loopback).

use postgres::GenericClient;

use super::audit::chain_row;
use super::pg_error;
use super::pool::Cache;
use crate::audit_chain::{Cell, ChainRow};
use crate::error::{Error, Result};
use crate::storage::{CacheExport, Imported, JobExport};

/// A page of jobs in job_id order with their customers: two queries, whatever the page holds
/// (the page stops at the job whose customers reach `max_customers`).
pub fn export_jobs(c: &mut impl GenericClient, cache: &mut Cache, after: Option<&str>, max_jobs: u32, max_customers: usize) -> Result<Vec<JobExport>> {
    let st = cache.prepare(
        c,
        "SELECT job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at, request_payload,
                response_summary, status, http_status, error_message, updated_at, customer_count, set_action_job
         FROM jobs WHERE ($1::text IS NULL OR job_id > $1) ORDER BY job_id LIMIT $2",
    )?;
    let rows = c.query(&st, &[&after, &i64::from(max_jobs)]).map_err(pg_error)?;
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let cids_st = cache.prepare(
        c,
        "SELECT job_id, cid FROM job_customers WHERE job_id = ANY($1::text[]) ORDER BY job_id, id",
    )?;
    let mut by_job: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for r in c.query(&cids_st, &[&ids]).map_err(pg_error)? {
        by_job.entry(r.get(0)).or_default().push(r.get(1));
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut customers = 0;
    for r in rows {
        let job_id: String = r.get(0);
        let cids = by_job.remove(&job_id).unwrap_or_default();
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

/// A page of jobs in three queries: the new ones inserted (those already there skipped), their
/// customers, and the outcome fields of those already there refreshed (a copy run again after
/// an interruption brings them up to date).
pub fn import_jobs(c: &mut impl GenericClient, cache: &mut Cache, jobs: &[JobExport]) -> Result<Imported> {
    if jobs.is_empty() {
        return Ok(Imported::default());
    }
    let insert = cache.prepare(
        c,
        "INSERT INTO jobs (job_id, user_id, batch_id, action_code, action_name, cluster_url, created_at, request_payload,
                           response_summary, status, http_status, error_message, updated_at, customer_count, set_action_job)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],
                              $8::text[], $9::text[], $10::text[], $11::bigint[], $12::text[], $13::text[], $14::bigint[],
                              $15::bool[])
         ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
    )?;
    let column = |f: fn(&JobExport) -> Option<String>| jobs.iter().map(f).collect::<Vec<Option<String>>>();
    let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    let users: Vec<&str> = jobs.iter().map(|j| j.user_id.as_str()).collect();
    let codes: Vec<i64> = jobs.iter().map(|j| j.action_code).collect();
    let names: Vec<&str> = jobs.iter().map(|j| j.action_name.as_str()).collect();
    let created: Vec<&str> = jobs.iter().map(|j| j.created_at.as_str()).collect();
    let http: Vec<Option<i64>> = jobs.iter().map(|j| j.http_status).collect();
    let counts: Vec<Option<i64>> = jobs.iter().map(|j| j.customer_count).collect();
    let set_action: Vec<bool> = jobs.iter().map(|j| j.set_action).collect();
    let (batch, cluster, payload, summary, status, error, updated) = (
        column(|j| j.batch_id.clone()),
        column(|j| j.cluster_url.clone()),
        column(|j| j.request_payload.clone()),
        column(|j| j.response_summary.clone()),
        column(|j| j.status.clone()),
        column(|j| j.error_message.clone()),
        column(|j| j.updated_at.clone()),
    );
    let added: std::collections::HashSet<String> = c
        .query(
            &insert,
            &[&ids, &users, &batch, &codes, &names, &cluster, &created, &payload, &summary, &status, &http, &error,
              &updated, &counts, &set_action],
        )
        .map_err(pg_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut done = Imported::default();
    let (mut cid_jobs, mut cids): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let mut present = Vec::new();
    for j in jobs {
        if added.contains(&j.job_id) {
            done.added += 1;
            done.customers += j.cids.len() as u64;
            for cid in &j.cids {
                cid_jobs.push(&j.job_id);
                cids.push(cid);
            }
        } else {
            present.push(j);
        }
    }
    if !cids.is_empty() {
        let st = cache.prepare(c, "INSERT INTO job_customers (job_id, cid) SELECT * FROM unnest($1::text[], $2::text[])")?;
        c.execute(&st, &[&cid_jobs, &cids]).map_err(pg_error)?;
    }
    if !present.is_empty() {
        let st = cache.prepare(
            c,
            "UPDATE jobs SET status = u.status, http_status = u.http_status, error_message = u.error_message,
                             response_summary = u.response_summary, updated_at = u.updated_at
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[])
                  AS u(job_id, status, http_status, error_message, response_summary, updated_at)
             WHERE jobs.job_id = u.job_id",
        )?;
        let ids: Vec<&str> = present.iter().map(|j| j.job_id.as_str()).collect();
        let status: Vec<Option<&str>> = present.iter().map(|j| j.status.as_deref()).collect();
        let http: Vec<Option<i64>> = present.iter().map(|j| j.http_status).collect();
        let error: Vec<Option<&str>> = present.iter().map(|j| j.error_message.as_deref()).collect();
        let summary: Vec<Option<&str>> = present.iter().map(|j| j.response_summary.as_deref()).collect();
        let updated: Vec<Option<&str>> = present.iter().map(|j| j.updated_at.as_deref()).collect();
        c.execute(&st, &[&ids, &status, &http, &error, &summary, &updated]).map_err(pg_error)?;
        done.present = present.len() as u64;
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

/// A page of cache entries in one query; entries already there are kept.
pub fn import_cache(c: &mut impl GenericClient, cache: &mut Cache, rows: &[CacheExport]) -> Result<Imported> {
    if rows.is_empty() {
        return Ok(Imported::default());
    }
    let st = cache.prepare(
        c,
        "INSERT INTO appstatus_cache (cid, app_name, status_data, cached_at, ttl_seconds)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
         ON CONFLICT (cid, app_name) DO NOTHING",
    )?;
    let cids: Vec<&str> = rows.iter().map(|e| e.cid.as_str()).collect();
    let apps: Vec<&str> = rows.iter().map(|e| e.app_name.as_str()).collect();
    let data: Vec<&str> = rows.iter().map(|e| e.status_data.as_str()).collect();
    let cached: Vec<&str> = rows.iter().map(|e| e.cached_at.as_str()).collect();
    let ttl: Vec<Option<i64>> = rows.iter().map(|e| e.ttl_seconds).collect();
    let added = c.execute(&st, &[&cids, &apps, &data, &cached, &ttl]).map_err(pg_error)?;
    Ok(Imported { added, present: rows.len() as u64 - added, customers: 0 })
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
    // The rows the destination has already, in one query: each must be the source's own.
    let existing = cache.prepare(c, concat!("SELECT ", columns!(), " FROM audit_log WHERE id = ANY($1::bigint[])"))?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let there: std::collections::HashMap<i64, ChainRow> =
        c.query(&existing, &[&ids]).map_err(pg_error)?.iter().map(|r| { let row = chain_row(r); (row.id, row) }).collect();
    let mut done = Imported::default();
    let mut head: Option<(i64, String)> = None;
    #[derive(Default)]
    struct Columns {
        id: Vec<i64>,
        text: [Vec<Option<String>>; 7],
        duration: Vec<Option<i64>>,
        seq: Vec<Option<i64>>,
        prev: Vec<Option<String>>,
        hash: Vec<Option<String>>,
    }
    let mut new = Columns::default();
    const NAMES: [&str; 7] = ["user_id", "action_type", "customer_ids", "timestamp", "ip_address", "status", "error_message"];
    for row in rows {
        if let Some(found) = there.get(&row.id) {
            if found != row {
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
        new.id.push(row.id);
        for (i, name) in NAMES.iter().enumerate() {
            let value = text(row, i, name)?;
            // user_id and action_type are NOT NULL here; a legacy NULL becomes empty text.
            new.text[i].push(if i < 2 { Some(value.unwrap_or_default()) } else { value });
        }
        new.duration.push(duration);
        new.seq.push(row.seq);
        new.prev.push(row.prev.clone());
        new.hash.push(row.hash.clone());
        if let (Some(seq), Some(hash)) = (row.seq, &row.hash) {
            if head.as_ref().is_none_or(|(s, _)| seq > *s) {
                head = Some((seq, hash.clone()));
            }
        }
        done.added += 1;
    }
    if !new.id.is_empty() {
        let insert = cache.prepare(
            c,
            "INSERT INTO audit_log (id, user_id, action_type, customer_ids, \"timestamp\", ip_address, status, error_message,
                                    duration_ms, chain_seq, chain_prev, chain_hash)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                  $8::text[], $9::bigint[], $10::bigint[], $11::text[], $12::text[])",
        )?;
        let [t0, t1, t2, t3, t4, t5, t6] = &new.text;
        c.execute(&insert, &[&new.id, t0, t1, t2, t3, t4, t5, t6, &new.duration, &new.seq, &new.prev, &new.hash])
            .map_err(pg_error)?;
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
