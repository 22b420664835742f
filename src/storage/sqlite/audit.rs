//! SQL for the audit_log table and its hash chain.

use std::sync::Mutex;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::schema::AUDIT_TRIGGERS;
use crate::audit_chain::{
    ChainFields, ChainKey, Check, Commitment, DIGEST_ACTION, GENESIS, LegacyDigest, RESERVED_ACTIONS, RESET_ACTION,
    RESET_USER, is_keyed,
};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    AuditFilter, AuditRow, AuditStats, AuditStatus, AuditVerification, ChainHead, ChainProblem, ProblemKind,
    parse_json_or_text, round2,
};
use crate::storage::AuditRecord;

/// The legacy columns, then the chain's, in the order every query here reads them.
const COLUMNS: &str = "id, user_id, action_type, customer_ids, timestamp, ip_address, status, \
    error_message, duration_ms, chain_seq, chain_prev, chain_hash";

/// One stored row, as read for hashing.
struct StoredRow {
    id: i64,
    /// The eight legacy columns after `id`, as stored (any SQLite type).
    legacy: [SqlValue; 8],
    seq: Option<i64>,
    prev: Option<String>,
    hash: Option<String>,
}

fn stored_row(r: &Row<'_>) -> rusqlite::Result<StoredRow> {
    let legacy = [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?];
    Ok(StoredRow { id: r.get(0)?, legacy, seq: r.get(9)?, prev: r.get(10)?, hash: r.get(11)? })
}

fn text(v: &SqlValue) -> Option<&str> {
    match v {
        SqlValue::Text(t) => Some(t),
        _ => None,
    }
}

impl StoredRow {
    fn user_id(&self) -> &str {
        text(&self.legacy[0]).unwrap_or("")
    }
    fn action_type(&self) -> &str {
        text(&self.legacy[1]).unwrap_or("")
    }
    /// The library's own rows (resets, digests): reserved types by the system user.
    fn is_system(&self, action: &str) -> bool {
        self.action_type() == action && self.user_id() == RESET_USER
    }
    fn fields<'a>(&'a self, seq: i64, prev: &'a str) -> ChainFields<'a> {
        let int = |v: &SqlValue| match v {
            SqlValue::Integer(i) => Some(*i),
            _ => None,
        };
        ChainFields {
            seq,
            prev,
            user_id: self.user_id(),
            action_type: self.action_type(),
            customer_ids: text(&self.legacy[2]),
            timestamp: text(&self.legacy[3]),
            ip_address: text(&self.legacy[4]),
            status: text(&self.legacy[5]),
            error_message: text(&self.legacy[6]),
            duration_ms: int(&self.legacy[7]),
        }
    }
    /// Every legacy column as JSON, type preserved, for the legacy digest.
    fn legacy_json(&self) -> Vec<serde_json::Value> {
        self.legacy
            .iter()
            .map(|v| match v {
                SqlValue::Null => serde_json::Value::Null,
                SqlValue::Integer(i) => serde_json::json!(i),
                SqlValue::Real(f) => serde_json::json!({ "real": f.to_string() }),
                SqlValue::Text(t) => serde_json::json!(t),
                SqlValue::Blob(b) => serde_json::json!({ "blob": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
            })
            .collect()
    }
}

/// The chain's last row, if the chain has begun. Runs inside the writer's transaction, so the
/// head cannot move before the new row is in.
fn head(conn: &Connection) -> Result<Option<StoredRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1"
        ))?
        .query_row([], stored_row)
        .optional()?)
}

/// What this process has already checked about the chain (so a busy log does not recompute the
/// head's hash, or look for keyed rows, on every append).
#[derive(Default)]
pub struct CheckedHead {
    /// The last keyed head checked against this store's key.
    head: Mutex<Option<(i64, String)>>,
    /// For a store without a key: the chain holds no keyed row up to this seq.
    unkeyed_up_to: Mutex<i64>,
}

impl CheckedHead {
    fn is(&self, seq: i64, hash: &str) -> bool {
        // try_lock: never block (or deadlock in a forked child) on a cache.
        self.head.try_lock().ok().is_some_and(|g| g.as_ref().is_some_and(|(s, h)| *s == seq && h == hash))
    }
    fn set(&self, seq: i64, hash: String) {
        if let Ok(mut g) = self.head.try_lock() {
            *g = Some((seq, hash));
        }
    }
    fn unkeyed_up_to(&self) -> i64 {
        self.unkeyed_up_to.try_lock().map_or(0, |g| *g)
    }
    fn set_unkeyed_up_to(&self, seq: i64) {
        if let Ok(mut g) = self.unkeyed_up_to.try_lock() {
            *g = seq;
        }
    }
}

/// Refuse to append to a chain this store cannot continue honestly: an HMAC-keyed chain needs
/// the same key, or the new rows would make verification report the honest log as altered.
/// A chain that ever held a keyed row is keyed, even if a forger appended plain rows after it.
fn check_key(conn: &Connection, head: &StoredRow, key: &ChainKey, checked: &CheckedHead) -> Result<()> {
    let (Some(seq), Some(prev), Some(hash)) = (head.seq, head.prev.as_deref(), head.hash.as_deref()) else {
        return Ok(());
    };
    if !is_keyed(hash) {
        if key.has_key() {
            return Ok(()); // a plain chain taking on a key from here on
        }
        // Only the rows since the last look are searched (the chain_seq index), so this costs
        // one index probe per append.
        let keyed_since: bool = conn
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM audit_log WHERE chain_seq > ?1 AND chain_hash LIKE 'hmac-sha256:%')",
            )?
            .query_row([checked.unkeyed_up_to()], |r| r.get(0))?;
        if keyed_since {
            return Err(Error::new(
                ErrorKind::AuditKeyMismatch,
                "the audit log is chained with an HMAC key (its last rows are not, which verify_audit \
                 reports) and this store was opened without audit_hmac_key: audit rows are refused",
            ));
        }
        checked.set_unkeyed_up_to(seq);
        return Ok(());
    }
    if checked.is(seq, hash) {
        return Ok(());
    }
    match key.check(&head.fields(seq, prev), hash) {
        Check::Matches => {
            checked.set(seq, hash.to_owned());
            Ok(())
        }
        Check::NeedsKey => Err(Error::new(
            ErrorKind::AuditKeyMismatch,
            "the audit log is chained with an HMAC key and this store was opened without \
             audit_hmac_key: open it with the key to write audit rows",
        )),
        Check::Differs => Err(Error::new(
            ErrorKind::AuditKeyMismatch,
            format!(
                "the audit log's last row (seq {seq}) does not match this store's audit_hmac_key: \
                 it was written with another key (or altered); audit rows are refused"
            ),
        )),
    }
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
        let row = stored_row(r)?;
        digest.add(row.id, &row.legacy_json());
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
    let (seq, prev) = match head(conn)? {
        Some(h) => {
            check_key(conn, &h, key, checked)?;
            let (Some(seq), Some(hash)) = (h.seq, h.hash) else {
                return Err(Error::new(ErrorKind::Database, "the audit chain's last row has no hash"));
            };
            (seq + 1, hash)
        }
        // The chain begins: its first row commits to every row already in the log.
        None => (1, legacy_commitment(conn, None)?.genesis()),
    };
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
    checked.set(seq, hash);
    Ok(conn.last_insert_rowid())
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
                status: r.get::<_, Option<String>>(6)?.map(|s| AuditStatus::from_stored(&s)),
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
pub fn reset(conn: &Connection, key: &ChainKey, checked: &CheckedHead, timestamp: &str) -> Result<u64> {
    let last = head(conn)?;
    if let Some(h) = &last {
        check_key(conn, h, key, checked)?;
    }
    conn.execute_batch("DROP TRIGGER IF EXISTS audit_log_no_delete;")?;
    let deleted = conn.execute("DELETE FROM audit_log", [])? as u64;
    conn.execute_batch(AUDIT_TRIGGERS)?;
    let note = match last.as_ref().and_then(|h| h.seq) {
        Some(seq) => format!("audit log cleared: {deleted} rows removed; the chain continues from seq {seq}"),
        None => format!("audit log cleared: {deleted} rows removed"),
    };
    // The head is gone now: the reset row links to the one read before the delete.
    let (seq, prev) = match last {
        Some(StoredRow { seq: Some(seq), hash: Some(hash), .. }) => (seq + 1, hash),
        _ => (1, Commitment::empty().genesis()),
    };
    let row = AuditRecord {
        user_id: RESET_USER,
        action_type: RESET_ACTION,
        customer_ids: None,
        timestamp,
        ip_address: None,
        status: "success",
        error_message: Some(&note),
        duration_ms: None,
    };
    let hash = key.hash(&ChainFields {
        seq,
        prev: &prev,
        user_id: row.user_id,
        action_type: row.action_type,
        customer_ids: None,
        timestamp: Some(timestamp),
        ip_address: None,
        status: Some(row.status),
        error_message: row.error_message,
        duration_ms: None,
    });
    conn.execute(
        "INSERT INTO audit_log (user_id, action_type, timestamp, status, error_message, chain_seq, chain_prev, chain_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![row.user_id, row.action_type, timestamp, row.status, row.error_message, seq, prev, hash],
    )?;
    checked.set(seq, hash);
    Ok(deleted)
}

fn problem(id: Option<i64>, seq: Option<i64>, problem: ProblemKind, detail: String) -> ChainProblem {
    ChainProblem { id, seq, problem, detail }
}

/// Walk the log in id order and report the first break in the chain (see `AuditVerification`).
///
/// Rows before the chain's first row are the legacy rows it committed to (by count and digest,
/// in its first row's `prev`, or in a later digest row for chains begun before commitments
/// existed); an unchained row anywhere after the first chained row was inserted out of chain.
/// `anchor` is a head the host stored earlier: if that row is gone the tail was cut.
pub fn verify(conn: &Connection, key: &ChainKey, anchor: Option<(i64, &str)>) -> Result<AuditVerification> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY id"))?;
    let mut rows = stmt.query([])?;
    let mut report = AuditVerification { ok: true, checked: 0, unchained: 0, head: None, first_problem: None };
    let mut last: Option<ChainHead> = None;
    let mut legacy = LegacyDigest::default();
    // What the chain committed to about the legacy rows (None until the chain begins).
    let mut committed: Option<Commitment> = None;
    // A digest row may follow only a chain begun without a commitment (schema v2), once.
    let mut digest_allowed = false;
    // Once a row is keyed, every later row must be: a plain row after it was appended without
    // the key (by a forger, who can compute plain SHA-256 but not the HMAC).
    let mut keyed_seen = false;
    let mut found: Option<ChainProblem> = None;
    while let Some(r) = rows.next()? {
        let row = stored_row(r)?;
        let id = row.id;
        let Some(stored) = row.hash.clone() else {
            if last.is_none() {
                report.unchained += 1; // written before the chain began: covered by its commitment
                legacy.add(id, &row.legacy_json());
                continue;
            }
            found = Some(problem(Some(id), None, ProblemKind::Inserted, format!("row {id} has no chain hash but follows chained rows")));
            break;
        };
        let (Some(seq), Some(prev)) = (row.seq, row.prev.clone()) else {
            found = Some(problem(Some(id), row.seq, ProblemKind::Altered, format!("row {id} has a chain hash but no sequence or link")));
            break;
        };
        let out_of_place = match &last {
            None if seq == 1 => match Commitment::from_genesis(&prev) {
                Some(c) => {
                    committed = Some(c);
                    digest_allowed = prev == GENESIS;
                    None
                }
                None => Some(problem(Some(id), Some(seq), ProblemKind::Altered, format!("row {id} starts the chain with an unreadable commitment"))),
            },
            // A chain may also start at a reset row (only clear_audit_logs writes one): every
            // earlier row, legacy ones included, was deleted by it.
            None if row.is_system(RESET_ACTION) => {
                committed = Some(Commitment::empty());
                None
            }
            None => Some(problem(Some(id), Some(seq), ProblemKind::Removed, format!("the chain starts at seq {seq}: earlier rows are missing"))),
            Some(h) if seq > h.seq + 1 => Some(problem(Some(id), Some(seq), ProblemKind::Removed, format!("rows with seq {} to {} are missing", h.seq + 1, seq - 1))),
            Some(h) if seq != h.seq + 1 || prev != h.hash => {
                Some(problem(Some(id), Some(seq), ProblemKind::Inserted, format!("row {id} (seq {seq}) does not follow seq {}", h.seq)))
            }
            Some(_) => None,
        };
        if out_of_place.is_some() {
            found = out_of_place;
            break;
        }
        if keyed_seen && !is_keyed(&stored) {
            found = Some(problem(
                Some(id),
                Some(seq),
                ProblemKind::Inserted,
                format!("row {id} (seq {seq}) is chained without the HMAC key after keyed rows: it was not written by a store with the key"),
            ));
            break;
        }
        keyed_seen |= is_keyed(&stored);
        match key.check(&row.fields(seq, &prev), &stored) {
            Check::Matches => {}
            Check::NeedsKey => {
                found = Some(problem(Some(id), Some(seq), ProblemKind::Unverifiable, "rows are HMAC-chained: configure audit_hmac_key to verify them".into()));
                break;
            }
            Check::Differs => {
                found = Some(problem(Some(id), Some(seq), ProblemKind::Altered, format!("row {id} (seq {seq}) does not match its hash")));
                break;
            }
        }
        if last.is_some() && row.is_system(RESET_ACTION) {
            committed = Some(Commitment::empty());
            digest_allowed = false;
        }
        if row.is_system(DIGEST_ACTION) {
            if !digest_allowed {
                found = Some(problem(
                    Some(id),
                    Some(seq),
                    ProblemKind::Inserted,
                    format!("row {id} (seq {seq}) is a legacy digest where the chain already committed to its legacy rows"),
                ));
                break;
            }
            digest_allowed = false;
            committed = text(&row.legacy[6]).and_then(Commitment::parse);
            if committed.is_none() {
                found = Some(problem(Some(id), Some(seq), ProblemKind::Altered, format!("digest row {id} holds no readable commitment")));
                break;
            }
        }
        report.checked += 1;
        last = Some(ChainHead { seq, hash: stored });
    }
    drop(rows);
    if found.is_none() {
        if let Some(promised) = &committed {
            let now = legacy.finish();
            if &now != promised {
                let kind = match now.rows.cmp(&promised.rows) {
                    std::cmp::Ordering::Greater => ProblemKind::Inserted,
                    std::cmp::Ordering::Less => ProblemKind::Removed,
                    std::cmp::Ordering::Equal => ProblemKind::Altered,
                };
                found = Some(problem(
                    None,
                    None,
                    kind,
                    format!(
                        "the {} rows before the chain's first row do not match the {} rows it committed to: \
                         rows were added, altered or removed among them",
                        now.rows, promised.rows
                    ),
                ));
            }
        }
    }
    if found.is_none() {
        if let Some((anchor_seq, anchor_hash)) = anchor {
            let at: Option<(i64, String)> = conn
                .query_row("SELECT id, chain_hash FROM audit_log WHERE chain_seq = ?1", [anchor_seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            found = match at {
                None => Some(problem(
                    None,
                    Some(anchor_seq),
                    ProblemKind::Cut,
                    format!("the anchored head seq {anchor_seq} is gone: the tail of the log was cut"),
                )),
                Some((id, hash)) if hash != anchor_hash => {
                    Some(problem(Some(id), Some(anchor_seq), ProblemKind::Altered, format!("row {id} (seq {anchor_seq}) no longer has the anchored hash")))
                }
                Some(_) => None,
            };
        }
    }
    report.first_problem = found;
    report.ok = report.first_problem.is_none();
    report.head = last;
    Ok(report)
}
