//! SQL for the audit_log table and its hash chain (the chain's rules are in `audit_chain`).

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::schema::AUDIT_TRIGGERS;
use crate::audit_adopt;
use crate::audit_chain::{
    Cell, ChainKey, ChainRow, CheckedHead, Commitment, DIGEST_ACTION, GENESIS, LegacyDigest,
    RESERVED_ACTIONS, RESET_USER, Verifier, check_append, link, reset_note, reset_record,
};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Adoption, AuditFilter, AuditRow, AuditStats, AuditStatus, AuditVerification, parse_json_or_text};
use crate::storage::AuditRecord;

/// The legacy columns, then the chain's, in the order every query here reads them.
pub const COLUMNS: &str = "id, user_id, action_type, customer_ids, timestamp, ip_address, status, \
    error_message, duration_ms, chain_seq, chain_prev, chain_hash";

fn cell(v: SqlValue) -> Cell {
    match v {
        SqlValue::Null => Cell::Null,
        SqlValue::Integer(i) => Cell::Int(i),
        SqlValue::Real(f) => Cell::Real(f),
        SqlValue::Text(t) => Cell::Text(t),
        SqlValue::Blob(b) => Cell::Blob(b),
    }
}

pub fn chain_row(r: &Row<'_>) -> rusqlite::Result<ChainRow> {
    let legacy = [
        cell(r.get(1)?),
        cell(r.get(2)?),
        cell(r.get(3)?),
        cell(r.get(4)?),
        cell(r.get(5)?),
        cell(r.get(6)?),
        cell(r.get(7)?),
        cell(r.get(8)?),
    ];
    Ok(ChainRow { id: r.get(0)?, legacy, seq: r.get(9)?, prev: r.get(10)?, hash: r.get(11)? })
}

/// Served by idx_audit_chain_seq: one probe at its end.
pub(super) fn head_sql() -> String {
    format!("SELECT {COLUMNS} FROM audit_log WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1")
}

/// The chain's last row, if the chain has begun. Runs inside the writer's transaction, so the
/// head cannot move before the new row is in.
fn head(conn: &Connection) -> Result<Option<ChainRow>> {
    Ok(conn
        .prepare_cached(&head_sql())?
        .query_row([], chain_row)
        .optional()?)
}

/// Whether any row after `seq` is HMAC-keyed (the chain_seq index: one probe per append).
fn keyed_since(conn: &Connection, seq: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM audit_log WHERE chain_seq > ?1 AND chain_hash LIKE 'hmac-sha256:%')",
        )?
        .query_row([seq], |r| r.get(0))?)
}

fn check_key(conn: &Connection, head: &ChainRow, key: &ChainKey, checked: &CheckedHead) -> Result<()> {
    check_append(head, key, checked, |seq| keyed_since(conn, seq))
}

/// Ok when this store's key can continue the chain (see `check_key`); a read.
pub fn check_head_key(conn: &Connection, key: &ChainKey, checked: &CheckedHead) -> Result<()> {
    match head(conn)? {
        Some(h) => check_key(conn, &h, key, checked),
        None => Ok(()),
    }
}

/// The commitment to every unchained row (before the chain begins, that is every row).
fn legacy_commitment(conn: &Connection, before_id: Option<i64>) -> Result<Commitment> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM audit_log WHERE chain_hash IS NULL AND (?1 IS NULL OR id < ?1) ORDER BY id"
    ))?;
    let mut rows = stmt.query([before_id])?;
    let mut digest = LegacyDigest::default();
    while let Some(r) = rows.next()? {
        chain_row(r)?.add_to(&mut digest);
    }
    Ok(digest.finish())
}

/// Whether row `id` holds exactly this record (an outbox entry of schema v4 that did reach
/// audit.db before the upgrade).
pub fn holds(conn: &Connection, id: i64, row: &AuditRecord<'_>) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM audit_log WHERE id = ?1 AND user_id = ?2
                AND action_type = ?3 AND customer_ids IS ?4 AND timestamp IS ?5
                AND ip_address IS ?6 AND status IS ?7 AND error_message IS ?8 AND duration_ms IS ?9)",
        )?
        .query_row(
            params![id, row.user_id, row.action_type, row.customer_ids, row.timestamp, row.ip_address,
                    row.status, row.error_message, row.duration_ms],
            |r| r.get(0),
        )?)
}

/// Append one caller's row to the chain; returns its id. Must run inside a write transaction.
/// The library's own row types are refused here: only `reset` and `commit_legacy_rows` write them.
pub fn insert(conn: &Connection, row: &AuditRecord<'_>, key: &ChainKey, checked: &CheckedHead) -> Result<i64> {
    if RESERVED_ACTIONS.contains(&row.action_type) {
        return Err(Error::invalid(format!(
            "action_type {:?} is reserved for the rows the library itself writes",
            row.action_type
        )));
    }
    append(conn, row, key, checked)
}

fn append(conn: &Connection, row: &AuditRecord<'_>, key: &ChainKey, checked: &CheckedHead) -> Result<i64> {
    let head = match head(conn)? {
        Some(h) => {
            check_key(conn, &h, key, checked)?;
            let (Some(seq), Some(hash)) = (h.seq, h.hash) else {
                return Err(Error::new(ErrorKind::Database, "the audit chain's last row has no hash"));
            };
            Some((seq, hash))
        }
        None => None,
    };
    let (seq, prev, hash) = link(key, head, || legacy_commitment(conn, None), row)?;
    insert_row(conn, row, seq, &prev, &hash)?;
    checked.set(seq, hash);
    Ok(conn.last_insert_rowid())
}

fn insert_row(conn: &Connection, row: &AuditRecord<'_>, seq: i64, prev: &str, hash: &str) -> Result<()> {
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
    Ok(())
}

/// A chain begun before chains committed to the rows that came before them (schema v2, first
/// row's prev a plain `genesis`) gets that commitment now, as a digest row: from here on any
/// change among those rows shows. Does nothing for other chains; returns whether it wrote.
pub fn commit_legacy_rows(conn: &Connection, key: &ChainKey, checked: &CheckedHead, timestamp: &str) -> Result<bool> {
    let first: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, chain_prev FROM audit_log WHERE chain_seq IS NOT NULL ORDER BY chain_seq LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((first_id, prev)) = first else { return Ok(false) };
    let already: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM audit_log WHERE action_type = ?1 AND user_id = ?2 AND chain_seq IS NOT NULL)",
        params![DIGEST_ACTION, RESET_USER],
        |r| r.get(0),
    )?;
    if prev != GENESIS || already {
        return Ok(false);
    }
    let commitment = legacy_commitment(conn, Some(first_id))?;
    if commitment.rows == 0 {
        return Ok(false);
    }
    let note = commitment.text();
    append(
        conn,
        &AuditRecord {
            user_id: RESET_USER,
            action_type: DIGEST_ACTION,
            customer_ids: None,
            timestamp,
            ip_address: None,
            status: "success",
            error_message: Some(&note),
            duration_ms: None,
        },
        key,
        checked,
    )?;
    Ok(true)
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

/// The trail's query for the filters given. Each combination is its own statement (eight of
/// them, each prepared once) so that SQLite can pick the index that fits: `idx_user_timestamp`
/// for a user, `idx_action_type` for an action, `idx_timestamp` for neither. One statement with
/// `(?1 IS NULL OR user_id = ?1)` would walk idx_timestamp for every user.
pub(super) fn trail_sql(filter: &AuditFilter<'_>) -> String {
    let mut conditions = Vec::new();
    if filter.user_id.is_some() {
        conditions.push("user_id = ?1".to_owned());
    }
    if filter.action_type.is_some() {
        conditions.push("action_type = ?2".to_owned());
    }
    if filter.customer_id.is_some() {
        conditions.push(CUSTOMER_MATCH.to_owned());
    }
    if conditions.is_empty() {
        conditions.push("1".to_owned());
    }
    // Numbered parameters: the same binding (?1..?4) serves each statement, SQLite leaves the
    // ones a statement does not name unused.
    format!(
        "SELECT id, user_id, action_type, customer_ids, timestamp, ip_address, status,
                error_message, duration_ms
         FROM audit_log
         WHERE {}
         ORDER BY timestamp DESC, id DESC LIMIT ?4",
        conditions.join(" AND ")
    )
}

pub fn trail(conn: &Connection, filter: &AuditFilter<'_>, limit: u32) -> Result<Vec<AuditRow>> {
    let sql = trail_sql(filter);
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
                status: r.get::<_, Option<String>>(6)?.map(|s| AuditStatus::from_stored(&s)),
                error_message: r.get(7)?,
                duration_ms: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Audit rows, and the chained ones among them.
pub fn counts(conn: &Connection) -> Result<(i64, i64)> {
    Ok(conn.query_row("SELECT COUNT(*), COUNT(chain_hash) FROM audit_log", [], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Read from idx_action_type alone (a covering index, already in order).
pub(super) const ACTION_TYPES_SQL: &str = "SELECT DISTINCT action_type FROM audit_log ORDER BY action_type";

pub fn action_types(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(ACTION_TYPES_SQL)?;
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
    Ok(AuditStats::from_counts(total, users, actions, ok, failed))
}

/// Clear the log as an explicit, recorded reset: in one transaction, lift the append-only
/// trigger, delete every row, restore the trigger, and append a reset row that continues the
/// chain from the last row cleared. Returns how many rows were deleted.
pub fn reset(conn: &Connection, key: &ChainKey, checked: &CheckedHead, timestamp: &str) -> Result<u64> {
    let last = head(conn)?;
    if let Some(h) = &last {
        check_key(conn, h, key, checked)?;
    }
    conn.execute_batch("DROP TRIGGER IF EXISTS audit_log_no_delete;")?;
    let deleted = conn.execute("DELETE FROM audit_log", [])? as u64;
    conn.execute_batch(AUDIT_TRIGGERS)?;
    let last = last.and_then(|h| h.seq.zip(h.hash));
    let note = reset_note(deleted, last.as_ref().map(|(seq, _)| *seq));
    let row = reset_record(timestamp, &note);
    // The head is gone now: the reset row links to the one read before the delete (a reset of
    // an empty log begins a chain that commits to nothing before it).
    let (seq, prev, hash) = link(key, last, || Ok(Commitment::empty()), &row)?;
    insert_row(conn, &row, seq, &prev, &hash)?;
    checked.set(seq, hash);
    Ok(deleted)
}

/// Feed the log to `verifier` in id order, up to its first problem.
fn walk(conn: &Connection, verifier: &mut Verifier<'_>, progress: &mut dyn FnMut(u64)) -> Result<()> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY id"))?;
    let mut rows = stmt.query([])?;
    let mut walked = 0u64;
    while let Some(r) = rows.next()? {
        if !verifier.push(&chain_row(r)?) {
            break;
        }
        walked += 1;
        if walked % 10_000 == 0 {
            progress(walked);
        }
    }
    progress(walked);
    Ok(())
}

/// Adopt the unchained rows a legacy writer appended after the chain's head (see
/// `audit_adopt`): inside the audit file's write transaction, so no writer (the legacy app's
/// included) appends meanwhile, walk the whole log; refuse when the chain has not begun, nothing
/// follows its head, or anything else is wrong; else append the adoption row. No row is changed.
pub fn adopt(conn: &Connection, key: &ChainKey, checked: &CheckedHead, timestamp: &str, reason: &str) -> Result<Adoption> {
    let Some(head_row) = head(conn)? else { return Err(audit_adopt::nothing_to_adopt()) };
    check_key(conn, &head_row, key, checked)?;
    let (Some(seq), Some(hash)) = (head_row.seq, head_row.hash.as_deref()) else {
        return Err(audit_adopt::nothing_to_adopt());
    };
    let mut verifier = Verifier::new(key);
    walk(conn, &mut verifier, &mut |_| {})?;
    let plan = audit_adopt::plan(verifier, (seq, hash), reason)?;
    let marker_id = append(conn, &audit_adopt::record(timestamp, &plan.note), key, checked)?;
    Ok(plan.adoption(marker_id))
}

/// Walk the log in id order (see `audit_chain::Verifier`).
pub fn verify(conn: &Connection, key: &ChainKey, anchor: Option<(i64, &str)>, progress: &mut dyn FnMut(u64)) -> Result<AuditVerification> {
    let mut verifier = Verifier::new(key);
    walk(conn, &mut verifier, progress)?;
    verifier.finish(anchor, |seq| {
        Ok(conn
            .query_row("SELECT id, chain_hash FROM audit_log WHERE chain_seq = ?1", [seq], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    })
}
