//! The records the store reads and writes, as plain Rust data. Output types serialize to the JSON
//! shapes the legacy Python functions returned, which is also what the C ABI hands out.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::action::ActionCode;
use crate::error::{Error, Result};

/// A job's status. Jobs are written with one of the first three; rows other writers left behind
/// may hold anything (older legacy rows hold lowercase `success`), read back as [`JobStatus::Other`].
///
/// ```
/// use tms::model::JobStatus;
/// assert_eq!("SUCCESS".parse::<JobStatus>().unwrap(), JobStatus::Success);
/// assert_eq!(JobStatus::InProgress.as_str(), "IN_PROGRESS");
/// assert!("done".parse::<JobStatus>().is_err());
/// assert_eq!(JobStatus::from_stored("success"), JobStatus::Other("success".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum JobStatus {
    /// Created, the remote call not answered yet (the legacy default).
    #[default]
    InProgress,
    /// The cluster answered and accepted.
    Success,
    /// Refused, failed, or interrupted.
    Failed,
    /// A value another writer stored; never written by the library.
    Other(String),
}

impl JobStatus {
    /// The word stored in `jobs.status`.
    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Success => "SUCCESS",
            JobStatus::Failed => "FAILED",
            JobStatus::Other(s) => s,
        }
    }

    /// A stored value as it is: the three known words, anything else as `Other`.
    pub fn from_stored(s: &str) -> JobStatus {
        s.parse().unwrap_or_else(|_| JobStatus::Other(s.to_owned()))
    }

    /// The status a job may be written with (`Other` is refused).
    pub(crate) fn writable(&self) -> Result<&str> {
        match self {
            JobStatus::Other(s) => Err(Error::invalid(format!(
                "job status {} is not one of IN_PROGRESS, SUCCESS, FAILED",
                crate::error::shown(s)
            ))),
            known => Ok(known.as_str()),
        }
    }
}

impl FromStr for JobStatus {
    type Err = Error;
    /// Only `IN_PROGRESS`, `SUCCESS` and `FAILED` parse.
    fn from_str(s: &str) -> Result<JobStatus> {
        match s {
            "IN_PROGRESS" => Ok(JobStatus::InProgress),
            "SUCCESS" => Ok(JobStatus::Success),
            "FAILED" => Ok(JobStatus::Failed),
            other => Err(Error::invalid(format!(
                "job status {} is not one of IN_PROGRESS, SUCCESS, FAILED",
                crate::error::shown(other)
            ))),
        }
    }
}

/// An audit row's status: `success` or `failure`; rows other writers left may hold anything.
///
/// ```
/// use tms::model::AuditStatus;
/// assert_eq!("failure".parse::<AuditStatus>().unwrap(), AuditStatus::Failure);
/// assert_eq!(AuditStatus::default().as_str(), "success");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum AuditStatus {
    /// The legacy default.
    #[default]
    Success,
    /// The action failed or was refused.
    Failure,
    /// A value another writer stored; never written by the library.
    Other(String),
}

impl AuditStatus {
    /// The word stored in `audit_log.status`.
    pub fn as_str(&self) -> &str {
        match self {
            AuditStatus::Success => "success",
            AuditStatus::Failure => "failure",
            AuditStatus::Other(s) => s,
        }
    }

    /// A stored value as it is.
    pub fn from_stored(s: &str) -> AuditStatus {
        s.parse().unwrap_or_else(|_| AuditStatus::Other(s.to_owned()))
    }

    pub(crate) fn writable(&self) -> Result<&str> {
        match self {
            AuditStatus::Other(s) => {
                Err(Error::invalid(format!("audit status {} is not one of success, failure", crate::error::shown(s))))
            }
            known => Ok(known.as_str()),
        }
    }
}

impl FromStr for AuditStatus {
    type Err = Error;
    /// Only `success` and `failure` parse.
    fn from_str(s: &str) -> Result<AuditStatus> {
        match s {
            "success" => Ok(AuditStatus::Success),
            "failure" => Ok(AuditStatus::Failure),
            other => Err(Error::invalid(format!(
                "audit status {} is not one of success, failure",
                crate::error::shown(other)
            ))),
        }
    }
}

macro_rules! as_text {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
as_text!(JobStatus);
as_text!(AuditStatus);

/// JSON for a column that stores JSON text: a value the caller holds, or text it already has
/// (checked to be JSON before anything is stored).
///
/// ```
/// use serde_json::json;
/// use tms::model::Json;
/// let payload = json!({"action": "Trans-Begin", "cids": ["c1"]});
/// let from_value: Json = (&payload).into();
/// let from_text = Json::Text(r#"{"action":"Trans-Begin"}"#);
/// # let _ = (from_value, from_text);
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Json<'a> {
    /// A value, serialized compactly.
    Value(&'a Value),
    /// JSON text, stored as given once it parses.
    Text(&'a str),
}

impl<'a> From<&'a Value> for Json<'a> {
    fn from(v: &'a Value) -> Json<'a> {
        Json::Value(v)
    }
}

/// A job to create. `cids` may hold repeats and padding: the store normalizes them.
///
/// ```
/// use tms::model::NewJob;
/// use tms::action::ActionCode;
/// let job = NewJob {
///     user_id: "alice",
///     action_code: ActionCode::try_from(1).unwrap(),
///     action_name: "Trans-Begin",
///     cids: vec!["c1", "c2", "c1"],
///     ..Default::default()
/// };
/// # let _ = job;
/// ```
#[derive(Debug, Clone, Default)]
pub struct NewJob<'a> {
    /// Who runs it (an identifier: non-blank, at most 256 bytes, no control characters).
    pub user_id: &'a str,
    /// 1 to 6.
    pub action_code: ActionCode,
    /// The name as the operator gave it.
    pub action_name: &'a str,
    /// Customer IDs; repeats and padding collapse.
    pub cids: Vec<&'a str>,
    /// Where the request goes.
    pub cluster_url: Option<&'a str>,
    /// An optional batch identifier.
    pub batch_id: Option<&'a str>,
    /// The request body (never the bearer token).
    pub request_payload: Option<Json<'a>>,
    /// Free text, e.g. "In progress...".
    pub response_summary: Option<&'a str>,
    /// Defaults to `IN_PROGRESS`.
    pub status: Option<JobStatus>,
}

/// What `create_job` answers (the legacy dict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedJob {
    /// A random UUID in its 36-character text form.
    pub job_id: String,
    /// As given.
    pub user_id: String,
    /// As given.
    pub action_code: ActionCode,
    /// As given.
    pub action_name: String,
    /// Distinct customer IDs stored.
    pub customer_count: usize,
    /// Local time, `YYYY-MM-DDTHH:MM:SS.ffffff`.
    pub created_at: String,
}

/// The fields `update_job` may change; `None` leaves a column as it is.
///
/// ```
/// use tms::model::{JobStatus, JobUpdate};
/// let done = JobUpdate { status: JobStatus::Success, http_status: Some(200), ..Default::default() };
/// # let _ = done;
/// ```
#[derive(Debug, Clone, Default)]
pub struct JobUpdate<'a> {
    /// The new status (`Other` is refused).
    pub status: JobStatus,
    /// The cluster's HTTP status.
    pub http_status: Option<i64>,
    /// Why it failed.
    pub error_message: Option<&'a str>,
    /// Free text, usually the cluster's answer as JSON text.
    pub response_summary: Option<&'a str>,
}

/// One row of a user's job list (the legacy `get_user_jobs` dict).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    /// The job's UUID.
    pub job_id: String,
    /// Who ran it.
    pub user_id: String,
    /// As stored (legacy rows may hold any integer).
    pub action_code: i64,
    /// The name as given.
    pub action_name: String,
    /// Where the request went.
    pub cluster_url: Option<String>,
    /// Local time, `YYYY-MM-DDTHH:MM:SS.ffffff`.
    pub created_at: String,
    /// As stored.
    pub status: Option<JobStatus>,
    /// The cluster's HTTP status, once known.
    pub http_status: Option<i64>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// Distinct customer IDs.
    pub customer_count: i64,
}

/// A whole job: every column plus its customer count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetails {
    /// The job's UUID.
    pub job_id: String,
    /// Who ran it.
    pub user_id: String,
    /// An optional batch identifier.
    pub batch_id: Option<String>,
    /// As stored.
    pub action_code: i64,
    /// The name as given.
    pub action_name: String,
    /// Where the request went.
    pub cluster_url: Option<String>,
    /// Local time, `YYYY-MM-DDTHH:MM:SS.ffffff`.
    pub created_at: String,
    /// The request body, parsed back from JSON where it parses, else the text.
    pub request_payload: Value,
    /// The cluster's answer as JSON text, or a short text.
    pub response_summary: Option<String>,
    /// As stored.
    pub status: Option<JobStatus>,
    /// The cluster's HTTP status, once known.
    pub http_status: Option<i64>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// Local time of the last change.
    pub updated_at: Option<String>,
    /// Distinct customer IDs.
    pub customer_count: i64,
}

/// An audit row to record (the legacy `log_action`). `customer_ids` is stored as given: callers
/// holding a list store it as a JSON array (see [`customer_ids_json`]).
#[derive(Debug, Clone, Default)]
///
/// ```
/// use tms::model::{customer_ids_json, AuditEntry, AuditStatus};
/// let ids = customer_ids_json(&["c1", "c2"]);
/// let entry = AuditEntry { user_id: "alice", action_type: "PE-Enable", customer_ids: Some(&ids),
///                          status: Some(AuditStatus::Failure), ..Default::default() };
/// # let _ = entry;
/// ```
pub struct AuditEntry<'a> {
    /// Who acted (an identifier).
    pub user_id: &'a str,
    /// What they did, e.g. an action name (`audit_reset`, `audit_legacy_digest` and `audit_adopt_unchained` are reserved).
    pub action_type: &'a str,
    /// A JSON array of IDs, or any text.
    pub customer_ids: Option<&'a str>,
    /// The client's address.
    pub ip_address: Option<&'a str>,
    /// `success` (the default) or `failure`.
    pub status: Option<AuditStatus>,
    /// Why it failed.
    pub error_message: Option<&'a str>,
    /// How long it took (not negative).
    pub duration_ms: Option<i64>,
}

/// Filters of the audit trail; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    /// Only this user's rows.
    pub user_id: Option<&'a str>,
    /// Only this action type.
    pub action_type: Option<&'a str>,
    /// Matched as a whole ID: `c1` does not match `c10`.
    pub customer_id: Option<&'a str>,
}

/// One audit row, all columns; `customer_ids` parsed back from JSON where it parses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    /// The row's id.
    pub id: i64,
    /// Who acted.
    pub user_id: String,
    /// What they did.
    pub action_type: String,
    /// The IDs parsed back from JSON where they parse, else the text.
    pub customer_ids: Value,
    /// UTC, `YYYY-MM-DD HH:MM:SS`.
    pub timestamp: Option<String>,
    /// The client's address.
    pub ip_address: Option<String>,
    /// As stored.
    pub status: Option<AuditStatus>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// How long it took.
    pub duration_ms: Option<i64>,
}

/// Counts over the whole audit log (the legacy `get_audit_stats` dict).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditStats {
    /// Rows.
    pub total_records: i64,
    /// Distinct users.
    pub unique_users: i64,
    /// Distinct action types.
    pub unique_actions: i64,
    /// Rows with status `success`.
    pub successful_actions: i64,
    /// Rows with status `failure`.
    pub failed_actions: i64,
    /// successful / total x 100, rounded to 2 places (0 for an empty log).
    pub success_rate_percent: f64,
}

impl AuditStats {
    /// From the counts either engine reads; the success rate is derived here, once.
    #[doc(hidden)]
    pub fn from_counts(total: i64, users: i64, actions: i64, successful: i64, failed: i64) -> AuditStats {
        AuditStats {
            total_records: total,
            unique_users: users,
            unique_actions: actions,
            successful_actions: successful,
            failed_actions: failed,
            success_rate_percent: if total > 0 { round2(successful as f64 * 100.0 / total as f64) } else { 0.0 },
        }
    }
}

/// `get_cached_appstatus_batch`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct CacheBatch {
    /// Fresh entries by cid.
    pub hits: Map<String, Value>,
    /// The cids with no fresh entry, in the order asked.
    pub misses: Vec<String>,
    /// `hits.len()`.
    pub hit_count: usize,
    /// `misses.len()`.
    pub miss_count: usize,
}

/// How much a store holds (the `tms stats` tool prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct StoreCounts {
    /// Jobs in all.
    pub jobs: i64,
    /// Jobs by stored status word.
    pub jobs_by_status: std::collections::BTreeMap<String, i64>,
    /// Customer rows of all jobs.
    pub job_customers: i64,
    /// Audit rows, and of those the ones on the hash chain.
    pub audit_rows: i64,
    /// Audit rows on the chain (the others were written before it began).
    pub audit_chained: i64,
    /// Audit rows waiting in the outbox for audit.db (SQLite; always 0 on PostgreSQL).
    pub audit_waiting: i64,
    /// Appstatus cache entries.
    pub cache_entries: i64,
    /// The durability settings in effect, read through a connection of the store's own pool:
    /// on SQLite `jobs.synchronous`, `jobs.journal_mode`, `audit.synchronous` and
    /// `audit.journal_mode` (`"FULL"` and `"wal"` by default), on PostgreSQL `synchronous_commit`
    /// (`"on"` by default).
    pub durability: std::collections::BTreeMap<String, String>,
}

/// The app-status cache's size (the legacy `get_cache_stats` dict).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheStats {
    /// Entries.
    pub total_entries: i64,
    /// Distinct cids.
    pub unique_cids: i64,
    /// Bytes of cached data.
    pub size_bytes: i64,
    /// The same in KiB, rounded to 2 places.
    pub size_kb: f64,
}

impl CacheStats {
    /// From the counts either engine reads; the KiB figure is derived here, once.
    #[doc(hidden)]
    pub fn from_counts(total_entries: i64, unique_cids: i64, size_bytes: i64) -> CacheStats {
        CacheStats { total_entries, unique_cids, size_bytes, size_kb: round2(size_bytes as f64 / 1024.0) }
    }
}

/// A list of IDs as the legacy stored it in `audit_log.customer_ids`: Python's `json.dumps(list)`,
/// i.e. `["a", "b"]` with a space after each comma.
///
/// ```
/// assert_eq!(tms::model::customer_ids_json(&["a", "b"]), r#"["a", "b"]"#);
/// ```
pub fn customer_ids_json<S: AsRef<str>>(ids: &[S]) -> String {
    let items: Vec<String> = ids
        .iter()
        .map(|s| serde_json::to_string(s.as_ref()).unwrap_or_else(|_| "\"\"".into()))
        .collect();
    format!("[{}]", items.join(", "))
}

/// JSON text parsed back to a value where it parses, else kept as a string (legacy readers did this).
///
/// ```
/// use serde_json::json;
/// use tms::model::parse_json_or_text;
/// assert_eq!(parse_json_or_text(Some("[1]".into())), json!([1]));
/// assert_eq!(parse_json_or_text(Some("c1".into())), json!("c1"));
/// ```
pub fn parse_json_or_text(text: Option<String>) -> Value {
    match text {
        None => Value::Null,
        Some(t) => serde_json::from_str(&t).unwrap_or(Value::String(t)),
    }
}

/// Round to two decimal places, as Python's `round(x, 2)` did for the stats.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The head of the audit chain: its last row's sequence number and hash. A host that stores it
/// elsewhere can later detect a cut tail by passing it back to `verify_audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    /// The last row's chain sequence number.
    pub seq: i64,
    /// Its hash, `sha256:...` or `hmac-sha256:...`.
    pub hash: String,
}

/// What kind of break verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProblemKind {
    /// A row's fields no longer match its hash (or the legacy rows their commitment).
    Altered,
    /// Rows are missing from the chain (or from the legacy rows).
    Removed,
    /// A row out of chain: unchained after the chain began, or not following its predecessor.
    Inserted,
    /// The anchored head is gone: the tail was cut.
    Cut,
    /// HMAC-chained rows and no key to check them.
    Unverifiable,
    /// Checked with a key, the log holds rows but none keyed by it: a log written without the
    /// key (a keyed log replaced by a forged one, or one no keyed store has written to yet).
    #[serde(rename = "not_keyed")]
    NotKeyed,
}

impl ProblemKind {
    /// The word the JSON answer uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Removed => "removed",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Cut => "cut",
            ProblemKind::Unverifiable => "unverifiable",
            ProblemKind::NotKeyed => "not_keyed",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first place the audit chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainProblem {
    /// The audit row where the break shows (None when it is not one row's: a cut tail, the
    /// legacy rows' commitment).
    pub id: Option<i64>,
    /// That row's chain sequence number, when it has one.
    pub seq: Option<i64>,
    /// What kind of break.
    pub problem: ProblemKind,
    /// A sentence for an operator.
    pub detail: String,
}

/// What `adopt_unchained` did: which unchained rows it adopted and the row that records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adoption {
    /// How many unchained rows were adopted.
    pub adopted: i64,
    /// Their ids, as ranges (`"41-57,60"`).
    pub ids: String,
    /// The chain's head they followed (seq).
    pub after_seq: i64,
    /// The id of the `audit_adopt_unchained` row that records the adoption.
    pub marker_id: i64,
    /// That row's chain seq (`after_seq + 1`).
    pub marker_seq: i64,
}

/// What `verify_audit` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// No problem found.
    pub ok: bool,
    /// Chained rows checked before the first problem (or all of them).
    pub checked: i64,
    /// Rows written before the chain began, covered by its commitment to them.
    pub unchained: i64,
    /// Rows a legacy writer appended after the chain, each run covered by the
    /// `audit_adopt_unchained` row that adopted it (`Store::adopt_unchained`).
    pub adopted: i64,
    /// The chain's last row checked: store it elsewhere and pass it back as an anchor later.
    pub head: Option<ChainHead>,
    /// The first break found.
    pub first_problem: Option<ChainProblem>,
}
