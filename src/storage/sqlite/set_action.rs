//! SQL for Set Action bookkeeping: idempotency keys (set_action_requests) and interrupted jobs.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::storage::{AuditRecord, IdempotencyKey, PriorRequest};

pub fn prior(conn: &Connection, key: IdempotencyKey<'_>) -> Result<Option<PriorRequest>> {
    Ok(conn
        .prepare_cached(
            "SELECT r.job_id, r.answer_http_status, r.answer_body, j.status, j.error_message
             FROM set_action_requests r LEFT JOIN jobs j ON j.job_id = r.job_id
             WHERE r.user_id = ?1 AND r.idempotency_key = ?2",
        )?
        .query_row(params![key.user_id, key.key], |r| {
            let status: Option<i64> = r.get(1)?;
            let body: Option<String> = r.get(2)?;
            Ok(PriorRequest {
                job_id: r.get(0)?,
                answer: status.zip(body),
                job_status: r.get(3)?,
                job_error: r.get(4)?,
            })
        })
        .optional()?)
}

pub fn insert_key(conn: &Connection, key: IdempotencyKey<'_>, job_id: &str, now: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO set_action_requests (user_id, idempotency_key, job_id, created_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![key.user_id, key.key, job_id, now])?;
    Ok(())
}

pub fn store_answer(conn: &Connection, key: IdempotencyKey<'_>, status: i64, body: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE main.set_action_requests SET answer_http_status = ?3, answer_body = ?4
         WHERE user_id = ?1 AND idempotency_key = ?2",
    )?
    .execute(params![key.user_id, key.key, status, body])?;
    Ok(())
}

pub fn recover_interrupted(conn: &Connection, cutoff: &str, message: &str, now: &str) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "UPDATE jobs SET status = 'FAILED', error_message = ?2, updated_at = ?3
             WHERE status = 'IN_PROGRESS' AND created_at < ?1
               AND COALESCE(updated_at, created_at) < ?1",
        )?
        .execute(params![cutoff, message, now])? as u64)
}

/// An audit row as the outbox keeps it (JSON text of its fields).
pub fn audit_record_json(row: &AuditRecord<'_>) -> String {
    serde_json::json!({
        "user_id": row.user_id, "action_type": row.action_type, "customer_ids": row.customer_ids,
        "timestamp": row.timestamp, "ip_address": row.ip_address, "status": row.status,
        "error_message": row.error_message, "duration_ms": row.duration_ms,
    })
    .to_string()
}

/// The owned fields of an outbox entry.
#[derive(Debug, Clone, serde::Deserialize)]
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

pub fn add_pending(conn: &Connection, job_id: &str, audit_id: i64, record: &str) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO main.pending_audit (job_id, audit_id, record) VALUES (?1, ?2, ?3)")?
        .execute(params![job_id, audit_id, record])?;
    Ok(())
}

pub fn clear_pending(conn: &Connection, job_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM main.pending_audit WHERE job_id = ?1")?.execute([job_id])?;
    Ok(())
}

pub fn all_pending(conn: &Connection) -> Result<Vec<(String, i64, String)>> {
    let mut stmt = conn.prepare("SELECT job_id, audit_id, record FROM main.pending_audit")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}
