//! The audit outbox: audit rows that must not be lost wait in jobs.db (`audit_outbox`) until
//! they are in audit.db.
//!
//! A Set Action's outcome commits in jobs.db on its own, with its audit row in the outbox, so a
//! busy, full or read-only audit.db can never leave an answered job IN_PROGRESS. Delivery then
//! copies each row into audit.db together with a receipt (its delivery key) in one audit.db
//! transaction; a later jobs.db write removes it from the outbox (`settle`: no commit, and so no
//! sync, of its own). Until then, or after a crash between the two, the row's receipt says it was
//! delivered: every delivery skips it and only removes it.
//!
//! Exactly once, whichever processes deliver at the same time, rests on two rules:
//! - the outbox is read inside the audit.db write transaction, so no deliverer acts on a stale
//!   read: a row it sees either has no receipt (nobody delivered it) or has one;
//! - receipts are kept (a row's removal and its receipt are never undone in the wrong order,
//!   and a backup, which copies jobs.db first, never holds an outbox row whose receipt it lost),
//!   and rows are removed by id and delivery key together, so a reused id never removes another
//!   row.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::storage::AuditRecord;

/// An audit row as the outbox keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingAudit {
    pub user_id: String,
    pub action_type: String,
    pub customer_ids: Option<String>,
    pub timestamp: String,
    pub ip_address: Option<String>,
    pub status: String,
    pub error_message: Option<String>,
    pub duration_ms: Option<i64>,
}

impl PendingAudit {
    pub fn from_record(row: &AuditRecord<'_>) -> PendingAudit {
        PendingAudit {
            user_id: row.user_id.to_owned(),
            action_type: row.action_type.to_owned(),
            customer_ids: row.customer_ids.map(str::to_owned),
            timestamp: row.timestamp.to_owned(),
            ip_address: row.ip_address.map(str::to_owned),
            status: row.status.to_owned(),
            error_message: row.error_message.map(str::to_owned),
            duration_ms: row.duration_ms,
        }
    }

    pub fn record(&self) -> AuditRecord<'_> {
        AuditRecord {
            user_id: &self.user_id,
            action_type: &self.action_type,
            customer_ids: self.customer_ids.as_deref(),
            timestamp: &self.timestamp,
            ip_address: self.ip_address.as_deref(),
            status: &self.status,
            error_message: self.error_message.as_deref(),
            duration_ms: self.duration_ms,
        }
    }
}

/// One row waiting in the outbox.
pub struct Entry {
    pub id: i64,
    pub delivery_key: String,
    /// The audit row as JSON text (see [`Entry::record`]).
    record: String,
    /// Rows carried over from schema v4's outbox already have an audit row id: if that row
    /// holds the record, it was delivered.
    pub audit_id_hint: Option<i64>,
}

impl Entry {
    /// The audit row. Parsed only when it is needed: most rows a delivery reads were delivered
    /// already and wait to be removed (at NORMAL up to a batch of them, each of a 150-ID Set
    /// Action some 5 KB of JSON), and only their receipt is looked at.
    pub fn record(&self) -> Result<PendingAudit> {
        Ok(serde_json::from_str(&self.record)?)
    }
}

/// A Set Action's audit row has one delivery key, the same in the outbox and in a direct write
/// (see `SqliteEngine::insert_set_action_audit`), so it reaches the audit log once whichever way
/// it goes first.
pub fn set_action_key(job_id: &str) -> String {
    format!("job:{job_id}")
}

/// Put a row in the outbox (inside the caller's jobs.db transaction) under `key`, or a fresh
/// random key; returns the key.
pub fn add(conn: &Connection, row: &AuditRecord<'_>, key: Option<String>) -> Result<String> {
    let key = match key {
        Some(key) => key,
        None => crate::uuid::new_v4()?,
    };
    let record = serde_json::to_string(&PendingAudit::from_record(row))?;
    conn.prepare_cached("INSERT INTO audit_outbox (delivery_key, record) VALUES (?1, ?2)")?
        .execute(params![key, record])?;
    Ok(key)
}

/// Everything waiting, oldest first.
pub fn pending(conn: &Connection) -> Result<Vec<Entry>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, delivery_key, record, audit_id_hint FROM audit_outbox ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok(Entry { id: r.get(0)?, delivery_key: r.get(1)?, record: r.get(2)?, audit_id_hint: r.get(3)? }))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Remove delivered rows (jobs.db), each by its id and key.
pub fn remove(conn: &Connection, rows: &[(i64, String)]) -> Result<()> {
    let mut stmt = conn.prepare_cached("DELETE FROM audit_outbox WHERE id = ?1 AND delivery_key = ?2")?;
    for (id, key) in rows {
        stmt.execute(params![id, key])?;
    }
    Ok(())
}

/// Whether anything waits (jobs.db): the cheap look before taking audit.db's write lock.
pub fn is_empty(conn: &Connection) -> Result<bool> {
    Ok(!conn.prepare_cached("SELECT EXISTS(SELECT 1 FROM audit_outbox)")?.query_row([], |r| r.get::<_, bool>(0))?)
}

/// Every waiting row's delivery key (jobs.db).
pub fn keys(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT delivery_key FROM audit_outbox ORDER BY id")?;
    Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

/// Whether audit.db already has this row (audit.db).
pub fn receipted(conn: &Connection, delivery_key: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM audit_outbox_receipts WHERE delivery_key = ?1)")?
        .query_row([delivery_key], |r| r.get(0))?)
}

/// Note that the row with this key is in audit.db as `audit_id` (audit.db, same transaction).
pub fn receipt(conn: &Connection, delivery_key: &str, audit_id: i64) -> Result<()> {
    conn.prepare_cached("INSERT INTO audit_outbox_receipts (delivery_key, audit_id) VALUES (?1, ?2)")?
        .execute(params![delivery_key, audit_id])?;
    Ok(())
}
