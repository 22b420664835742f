//! SQL for the audit_log table.

use rusqlite::{Connection, OptionalExtension, params};

use super::schema::AUDIT_TRIGGERS;
use crate::audit_chain::{ChainFields, ChainKey, GENESIS, RESET_ACTION, RESET_USER};
use crate::error::Result;
use crate::model::{
    AuditFilter, AuditRow, AuditStats, AuditVerification, ChainHead, ChainProblem, parse_json_or_text, round2,
};
use crate::storage::AuditRecord;

/// The chain's last row, if the chain has begun. Runs inside the writer's transaction, so the
/// head cannot move before the new row is in.
fn head(conn: &Connection) -> Result<Option<ChainHead>> {
    Ok(conn
        .prepare_cached(
            "SELECT chain_seq, chain_hash FROM audit_log WHERE chain_seq IS NOT NULL
             ORDER BY chain_seq DESC LIMIT 1",
        )?
        .query_row([], |r| Ok(ChainHead { seq: r.get(0)?, hash: r.get(1)? }))
        .optional()?)
}

/// Whether row `id` holds exactly this record (an outbox entry that did reach audit.db).
pub fn holds(conn: &Connection, id: i64, row: &AuditRecord<'_>) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM audit.audit_log WHERE id = ?1 AND user_id = ?2
                AND action_type = ?3 AND customer_ids IS ?4 AND timestamp IS ?5
                AND ip_address IS ?6 AND status IS ?7 AND error_message IS ?8 AND duration_ms IS ?9)",
        )?
        .query_row(
            params![id, row.user_id, row.action_type, row.customer_ids, row.timestamp, row.ip_address,
                    row.status, row.error_message, row.duration_ms],
            |r| r.get(0),
        )?)
}

/// Append one row to the chain; returns its id. Must run inside a write transaction.
pub fn insert(conn: &Connection, row: &AuditRecord<'_>, key: &ChainKey) -> Result<i64> {
    insert_after(conn, row, key, head(conn)?)
}

fn insert_after(conn: &Connection, row: &AuditRecord<'_>, key: &ChainKey, head: Option<ChainHead>) -> Result<i64> {
    let seq = head.as_ref().map_or(1, |h| h.seq + 1);
    let prev = head.map_or_else(|| GENESIS.to_owned(), |h| h.hash);
    let hash = key.hash(&ChainFields {
        seq,
        prev: &prev,
        user_id: row.user_id,
        action_type: row.action_type,
        customer_ids: row.customer_ids,
        timestamp: Some(row.timestamp),
        ip_address: row.ip_address,
        status: Some(row.status),
        error_message: row.error_message,
        duration_ms: row.duration_ms,
    });
    conn.prepare_cached(
        "INSERT INTO audit_log (user_id, action_type, customer_ids, timestamp, ip_address, status,
                                error_message, duration_ms, chain_seq, chain_prev, chain_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
        seq,
        prev,
        hash,
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

/// Clear the log as an explicit, recorded reset: in one transaction, lift the append-only
/// trigger, delete every row, restore the trigger, and append a reset row that continues the
/// chain from the last row cleared. Returns how many rows were deleted.
pub fn reset(conn: &Connection, key: &ChainKey, timestamp: &str) -> Result<u64> {
    let last = head(conn)?;
    conn.execute_batch("DROP TRIGGER IF EXISTS audit_log_no_delete;")?;
    let deleted = conn.execute("DELETE FROM audit_log", [])? as u64;
    conn.execute_batch(AUDIT_TRIGGERS)?;
    let note = match &last {
        Some(h) => format!("audit log cleared: {deleted} rows removed; the chain continues from seq {}", h.seq),
        None => format!("audit log cleared: {deleted} rows removed"),
    };
    insert_after(
        conn,
        &AuditRecord {
            user_id: RESET_USER,
            action_type: RESET_ACTION,
            customer_ids: None,
            timestamp,
            ip_address: None,
            status: "success",
            error_message: Some(&note),
            duration_ms: None,
        },
        key,
        last,
    )?;
    Ok(deleted)
}

/// Walk the log in id order and report the first break in the chain (see `AuditVerification`).
/// `anchor` is a head the host stored earlier: if that row is gone the tail was cut.
pub fn verify(conn: &Connection, key: &ChainKey, anchor: Option<(i64, &str)>) -> Result<AuditVerification> {
    let mut stmt = conn.prepare(
        "SELECT id, user_id, action_type, customer_ids, timestamp, ip_address, status,
                error_message, duration_ms, chain_seq, chain_prev, chain_hash
         FROM audit_log ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut report = AuditVerification { ok: true, checked: 0, unchained: 0, head: None, first_problem: None };
    let mut last: Option<ChainHead> = None;
    let problem = |id: i64, seq: Option<i64>, problem: &'static str, detail: String| ChainProblem {
        id: Some(id),
        seq,
        problem,
        detail,
    };
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let seq: Option<i64> = r.get(9)?;
        let (Some(seq), Some(prev), Some(stored)) = (seq, r.get::<_, Option<String>>(10)?, r.get::<_, Option<String>>(11)?)
        else {
            if last.is_none() {
                report.unchained += 1; // written before the chain existed
                continue;
            }
            report.first_problem = Some(problem(id, None, "inserted", format!("row {id} has no chain hash but follows chained rows")));
            break;
        };
        let action_type: String = r.get(2)?;
        let found = match &last {
            // A chain starts at its genesis, or at a reset row (which only clear_audit_logs
            // writes: record_audit refuses the action type).
            None if (seq == 1 && prev == GENESIS) || (action_type == RESET_ACTION && r.get::<_, String>(1)? == RESET_USER) => None,
            None => Some(problem(id, Some(seq), "removed", format!("the chain starts at seq {seq}: earlier rows are missing"))),
            Some(h) if seq > h.seq + 1 => Some(problem(id, Some(seq), "removed", format!("rows with seq {} to {} are missing", h.seq + 1, seq - 1))),
            Some(h) if seq != h.seq + 1 || prev != h.hash => {
                Some(problem(id, Some(seq), "inserted", format!("row {id} (seq {seq}) does not follow seq {}", h.seq)))
            }
            Some(_) => None,
        };
        if found.is_some() {
            report.first_problem = found;
            break;
        }
        if !key.can_verify(&stored) {
            report.first_problem = Some(problem(id, Some(seq), "unverifiable", "rows are HMAC-chained: configure audit_hmac_key to verify them".into()));
            break;
        }
        let user_id: String = r.get(1)?;
        let text: Vec<Option<String>> = (3..=7).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
        let fields = ChainFields {
            seq,
            prev: &prev,
            user_id: &user_id,
            action_type: &action_type,
            customer_ids: text[0].as_deref(),
            timestamp: text[1].as_deref(),
            ip_address: text[2].as_deref(),
            status: text[3].as_deref(),
            error_message: text[4].as_deref(),
            duration_ms: r.get(8)?,
        };
        if key.hash(&fields) != stored {
            report.first_problem = Some(problem(id, Some(seq), "altered", format!("row {id} (seq {seq}) does not match its hash")));
            break;
        }
        report.checked += 1;
        last = Some(ChainHead { seq, hash: stored });
    }
    drop(rows);
    if report.first_problem.is_none() {
        if let Some((anchor_seq, anchor_hash)) = anchor {
            let at: Option<(i64, String)> = conn
                .query_row("SELECT id, chain_hash FROM audit_log WHERE chain_seq = ?1", [anchor_seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            report.first_problem = match at {
                None => Some(ChainProblem {
                    id: None,
                    seq: Some(anchor_seq),
                    problem: "cut",
                    detail: format!("the anchored head seq {anchor_seq} is gone: the tail of the log was cut"),
                }),
                Some((id, hash)) if hash != anchor_hash => {
                    Some(problem(id, Some(anchor_seq), "altered", format!("row {id} (seq {anchor_seq}) no longer has the anchored hash")))
                }
                Some(_) => None,
            };
        }
    }
    report.ok = report.first_problem.is_none();
    report.head = last;
    Ok(report)
}
