//! SQL for the audit_log table.

use rusqlite::{Connection, params};

use crate::error::Result;
use crate::model::{AuditFilter, AuditRow, AuditStats, parse_json_or_text, round2};
use crate::storage::AuditRecord;

pub fn insert(conn: &Connection, row: &AuditRecord<'_>) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO audit_log (user_id, action_type, customer_ids, timestamp, ip_address, status,
                                error_message, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        row.user_id,
        row.action_type,
        row.customer_ids,
        row.timestamp,
        row.ip_address,
        row.status,
        row.error_message,
        row.duration_ms,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// customer_ids holds a JSON array of IDs, or one ID (or a comma-separated list) as plain text.
/// An ID matches only as a whole element, never as a substring of a longer ID. The CASE keeps
/// json_each away from text that is not a JSON array (it would raise "malformed JSON").
const CUSTOMER_MATCH: &str = "(customer_ids = ?3 OR CASE
        WHEN json_valid(customer_ids) AND json_type(customer_ids) = 'array'
            THEN EXISTS(SELECT 1 FROM json_each(customer_ids) WHERE value = ?3)
        ELSE instr(',' || replace(replace(customer_ids, ' ', ''), char(10), ',') || ',',
                   ',' || ?3 || ',') > 0
    END)";

pub fn trail(conn: &Connection, filter: &AuditFilter<'_>, limit: u32) -> Result<Vec<AuditRow>> {
    let sql = format!(
        "SELECT id, user_id, action_type, customer_ids, timestamp, ip_address, status,
                error_message, duration_ms
         FROM audit_log
         WHERE (?1 IS NULL OR user_id = ?1)
           AND (?2 IS NULL OR action_type = ?2)
           AND (?3 IS NULL OR {CUSTOMER_MATCH})
         ORDER BY timestamp DESC, id DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![filter.user_id, filter.action_type, filter.customer_id, limit], |r| {
            Ok(AuditRow {
                id: r.get(0)?,
                user_id: r.get(1)?,
                action_type: r.get(2)?,
                customer_ids: parse_json_or_text(r.get(3)?),
                timestamp: r.get(4)?,
                ip_address: r.get(5)?,
                status: r.get(6)?,
                error_message: r.get(7)?,
                duration_ms: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub fn action_types(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT action_type FROM audit_log ORDER BY action_type")?;
    let types = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(types)
}

pub fn stats(conn: &Connection) -> Result<AuditStats> {
    let (total, users, actions, ok, failed): (i64, i64, i64, i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COUNT(DISTINCT user_id), COUNT(DISTINCT action_type),
                    COALESCE(SUM(status = 'success'), 0), COALESCE(SUM(status = 'failure'), 0)
             FROM audit_log",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
    let rate = if total > 0 { round2(ok as f64 * 100.0 / total as f64) } else { 0.0 };
    Ok(AuditStats {
        total_records: total,
        unique_users: users,
        unique_actions: actions,
        successful_actions: ok,
        failed_actions: failed,
        success_rate_percent: rate,
    })
}

pub fn clear(conn: &Connection) -> Result<u64> {
    Ok(conn.prepare_cached("DELETE FROM audit_log")?.execute([])? as u64)
}
