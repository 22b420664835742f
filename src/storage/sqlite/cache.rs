//! SQL for the appstatus_cache table (in jobs.db, as in the legacy app).

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::model::CacheStats;
use crate::storage::CacheRecord;

/// Served by the UNIQUE(cid, app_name) index.
pub(super) const GET_SQL: &str = "SELECT status_data FROM appstatus_cache
     WHERE cid = ?1 AND app_name = ?2 AND cached_at >= ?3";

pub fn get(conn: &Connection, cid: &str, app_name: &str, fresh_since: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(GET_SQL)?
        .query_row(params![cid, app_name, fresh_since], |r| r.get(0))
        .optional()?)
}

pub fn put(conn: &Connection, e: &CacheRecord<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO appstatus_cache (cid, app_name, status_data, cached_at, ttl_seconds)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(cid, app_name) DO UPDATE SET status_data = excluded.status_data,
             cached_at = excluded.cached_at, ttl_seconds = excluded.ttl_seconds",
    )?
    .execute(params![e.cid, e.app_name, e.status_data, e.cached_at, e.ttl_seconds])?;
    Ok(())
}

pub fn delete_older(conn: &Connection, cutoff: &str) -> Result<u64> {
    Ok(conn.prepare_cached("DELETE FROM appstatus_cache WHERE cached_at < ?1")?.execute([cutoff])?
        as u64)
}

/// One statement per combination of filters, so that a given cid is found through the
/// UNIQUE(cid, app_name) index instead of a scan (?1 and ?2 are bound either way).
pub(super) fn invalidate_sql(cid: bool, app_name: bool) -> &'static str {
    match (cid, app_name) {
        (true, true) => "DELETE FROM appstatus_cache WHERE cid = ?1 AND app_name = ?2",
        (true, false) => "DELETE FROM appstatus_cache WHERE cid = ?1 AND ?2 IS NULL",
        (false, true) => "DELETE FROM appstatus_cache WHERE app_name = ?2 AND ?1 IS NULL",
        (false, false) => "DELETE FROM appstatus_cache WHERE ?1 IS NULL AND ?2 IS NULL",
    }
}

pub fn invalidate(conn: &Connection, cid: Option<&str>, app_name: Option<&str>) -> Result<u64> {
    Ok(conn
        .prepare_cached(invalidate_sql(cid.is_some(), app_name.is_some()))?
        .execute(params![cid, app_name])? as u64)
}

pub fn stats(conn: &Connection) -> Result<CacheStats> {
    let (total, cids, bytes): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COUNT(DISTINCT cid), COALESCE(SUM(LENGTH(status_data)), 0)
             FROM appstatus_cache",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(CacheStats::from_counts(total, cids, bytes))
}
