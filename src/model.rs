//! The records the store reads and writes, as plain Rust data. Output types serialize to the JSON
//! shapes the legacy Python functions returned, which is also what the C ABI hands out.

use serde::Serialize;
use serde_json::{Map, Value};

/// Status words of a job. Older legacy rows also hold lowercase `success`; those are read as they are.
pub const JOB_STATUSES: [&str; 3] = ["IN_PROGRESS", "SUCCESS", "FAILED"];
/// Status words of an audit row.
pub const AUDIT_STATUSES: [&str; 2] = ["success", "failure"];

/// A job to create. `cids` may hold repeats and padding: the store normalizes them.
#[derive(Debug, Clone, Default)]
pub struct NewJob<'a> {
    pub user_id: &'a str,
    pub action_code: i32,
    pub action_name: &'a str,
    pub cids: Vec<&'a str>,
    pub cluster_url: Option<&'a str>,
    pub batch_id: Option<&'a str>,
    /// The request body as JSON text (never the bearer token).
    pub request_payload: Option<&'a str>,
    pub response_summary: Option<&'a str>,
    /// Defaults to `IN_PROGRESS`.
    pub status: Option<&'a str>,
}

/// What `create_job` answers (the legacy dict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedJob {
    pub job_id: String,
    pub user_id: String,
    pub action_code: i32,
    pub action_name: String,
    pub customer_count: usize,
    pub created_at: String,
}

/// The fields `update_job` may change; `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct JobUpdate<'a> {
    pub status: &'a str,
    pub http_status: Option<i64>,
    pub error_message: Option<&'a str>,
    pub response_summary: Option<&'a str>,
}

/// One row of a user's job list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    pub job_id: String,
    pub user_id: String,
    pub action_code: i64,
    pub action_name: String,
    pub cluster_url: Option<String>,
    pub created_at: String,
    pub status: Option<String>,
    pub http_status: Option<i64>,
    pub error_message: Option<String>,
    pub customer_count: i64,
}

/// A whole job. `request_payload` is parsed back from JSON where it parses, else the text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetails {
    pub job_id: String,
    pub user_id: String,
    pub batch_id: Option<String>,
    pub action_code: i64,
    pub action_name: String,
    pub cluster_url: Option<String>,
    pub created_at: String,
    pub request_payload: Value,
    pub response_summary: Option<String>,
    pub status: Option<String>,
    pub http_status: Option<i64>,
    pub error_message: Option<String>,
    pub updated_at: Option<String>,
    pub customer_count: i64,
}

/// An audit row to record (the legacy `log_action`). `customer_ids` is stored as given: callers
/// holding a list store it as a JSON array (see [`customer_ids_json`]).
#[derive(Debug, Clone, Default)]
pub struct AuditEntry<'a> {
    pub user_id: &'a str,
    pub action_type: &'a str,
    pub customer_ids: Option<&'a str>,
    pub ip_address: Option<&'a str>,
    /// `success` (the default) or `failure`.
    pub status: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub duration_ms: Option<i64>,
}

/// Filters of the audit trail; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub user_id: Option<&'a str>,
    pub action_type: Option<&'a str>,
    /// Matched as a whole ID: `c1` does not match `c10`.
    pub customer_id: Option<&'a str>,
}

/// One audit row, all columns; `customer_ids` parsed back from JSON where it parses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub user_id: String,
    pub action_type: String,
    pub customer_ids: Value,
    pub timestamp: Option<String>,
    pub ip_address: Option<String>,
    pub status: Option<String>,
    pub error_message: Option<String>,
    pub duration_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditStats {
    pub total_records: i64,
    pub unique_users: i64,
    pub unique_actions: i64,
    pub successful_actions: i64,
    pub failed_actions: i64,
    pub success_rate_percent: f64,
}

/// `get_cached_appstatus_batch`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct CacheBatch {
    pub hits: Map<String, Value>,
    pub misses: Vec<String>,
    pub hit_count: usize,
    pub miss_count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheStats {
    pub total_entries: i64,
    pub unique_cids: i64,
    pub size_bytes: i64,
    pub size_kb: f64,
}

/// A list of IDs as the legacy stored it in `audit_log.customer_ids`: Python's `json.dumps(list)`,
/// i.e. `["a", "b"]` with a space after each comma.
pub fn customer_ids_json<S: AsRef<str>>(ids: &[S]) -> String {
    let items: Vec<String> = ids
        .iter()
        .map(|s| serde_json::to_string(s.as_ref()).unwrap_or_else(|_| "\"\"".into()))
        .collect();
    format!("[{}]", items.join(", "))
}

/// JSON text parsed back to a value where it parses, else kept as a string (legacy readers did this).
pub fn parse_json_or_text(text: Option<String>) -> Value {
    match text {
        None => Value::Null,
        Some(t) => serde_json::from_str(&t).unwrap_or(Value::String(t)),
    }
}

/// Round to two decimal places, as Python's `round(x, 2)` did for the stats.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The head of the audit chain: its last row's sequence number and hash. A host that stores it
/// elsewhere can later detect a cut tail by passing it back to `verify_audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

/// The first place the audit chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainProblem {
    /// The audit row where the break shows (None when the anchored head itself is gone).
    pub id: Option<i64>,
    pub seq: Option<i64>,
    /// `altered`, `removed`, `inserted`, `cut` or `unverifiable`.
    pub problem: &'static str,
    pub detail: String,
}

/// What `verify_audit` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    pub ok: bool,
    /// Chained rows checked before the first problem (or all of them).
    pub checked: i64,
    /// Rows written before the chain existed: not tampered, just not covered.
    pub unchained: i64,
    pub head: Option<ChainHead>,
    pub first_problem: Option<ChainProblem>,
}
