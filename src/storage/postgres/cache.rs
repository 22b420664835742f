//! SQL for appstatus_cache (PostgreSQL).

use postgres::GenericClient;

use super::pg_error;
use super::pool::Cache;
use crate::error::Result;
use crate::model::CacheStats;
use crate::storage::CacheRecord;

pub fn get_many(c: &mut impl GenericClient, cache: &mut Cache, cids: &[String], app: &str, fresh_since: &str) -> Result<Vec<Option<String>>> {
    // One round trip for the whole batch.
    let st = cache.prepare(
        c,
        "SELECT cid, status_data FROM appstatus_cache WHERE cid = ANY($1) AND app_name = $2 AND cached_at >= $3",
    )?;
    let found: std::collections::HashMap<String, String> =
        c.query(&st, &[&cids, &app, &fresh_since]).map_err(pg_error)?.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(cids.iter().map(|cid| found.get(cid).cloned()).collect())
}

pub fn put(c: &mut impl GenericClient, cache: &mut Cache, e: &CacheRecord<'_>) -> Result<()> {
    let st = cache.prepare(
        c,
        "INSERT INTO appstatus_cache (cid, app_name, status_data, cached_at, ttl_seconds) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (cid, app_name) DO UPDATE SET status_data = EXCLUDED.status_data,
             cached_at = EXCLUDED.cached_at, ttl_seconds = EXCLUDED.ttl_seconds",
    )?;
    c.execute(&st, &[&e.cid, &e.app_name, &e.status_data, &e.cached_at, &e.ttl_seconds]).map_err(pg_error)?;
    Ok(())
}

pub fn delete_older(c: &mut impl GenericClient, cache: &mut Cache, cutoff: &str) -> Result<u64> {
    let st = cache.prepare(c, "DELETE FROM appstatus_cache WHERE cached_at < $1")?;
    c.execute(&st, &[&cutoff]).map_err(pg_error)
}

pub fn invalidate(c: &mut impl GenericClient, cache: &mut Cache, cid: Option<&str>, app: Option<&str>) -> Result<u64> {
    let st = cache.prepare(
        c,
        "DELETE FROM appstatus_cache WHERE ($1::text IS NULL OR cid = $1) AND ($2::text IS NULL OR app_name = $2)",
    )?;
    c.execute(&st, &[&cid, &app]).map_err(pg_error)
}

pub fn stats(c: &mut impl GenericClient, cache: &mut Cache) -> Result<CacheStats> {
    let st = cache.prepare(
        c,
        "SELECT COUNT(*), COUNT(DISTINCT cid), COALESCE(SUM(length(status_data)), 0)::bigint FROM appstatus_cache",
    )?;
    let r = c.query_one(&st, &[]).map_err(pg_error)?;
    Ok(CacheStats::from_counts(r.get(0), r.get(1), r.get(2)))
}
