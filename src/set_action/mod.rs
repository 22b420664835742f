//! The dashboard's `/proxy_fetch` route as one library call, in an order that cannot lose a job:
//! validate, map the action, de-duplicate the IDs, record the job IN_PROGRESS durably, and only
//! then send; classify the answer; record the job's outcome and its audit row in one
//! transaction; answer. If the job cannot be recorded, nothing is sent.

pub mod events;
pub mod http;
pub mod outcome;
pub mod redact;
pub mod request;
pub mod resolve;
pub mod wire;

// Where they live now (below `options`, which checks configured values with them); kept here
// for the paths callers already use.
pub use crate::net::{allowlist, secrets};

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::action::map_action;
use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::SetActionOutcome;
use crate::model::customer_ids_json;
use crate::storage::{AuditDelivery, AuditRecord, IdempotencyKey, JobChange, JobRecord, PriorRequest};
use crate::store::{Store, name};
use events::{Event, Level};
use http::Upstream;
use outcome::{Verdict, classify};
use redact::{MAX_TOKEN_BYTES, MIN_TOKEN_BYTES, Redactor};
use request::ProxyRequest;

/// What the route answers: the HTTP status and JSON body, and the job when one exists.
#[derive(Debug, Clone, PartialEq)]
pub struct SetActionAnswer {
    /// The status the route answers with (the cluster's, or the refusal's).
    pub http_status: u16,
    /// The legacy answer shape; refusals carry `error_code`.
    pub body: Value,
    /// The job, once one was recorded.
    pub job_id: Option<String>,
}

/// The error_message of a job left IN_PROGRESS by a process that died mid-call.
pub const INTERRUPTED_MESSAGE: &str = "interrupted: the process handling this Set Action stopped \
    before it recorded the cluster's answer; the outcome is unknown";

/// Audit action_type of refused requests that are not Set Actions of a known action (plain
/// proxy requests, unknown or malformed action names: the name given is quoted, bounded, in the
/// error message, never stored as an action type).
const PROXY_ACTION: &str = "proxy_fetch";

/// Busy retries of a Set Action's outcome before it is kept waiting in memory.
const OUTCOME_ATTEMPTS: u64 = 5;

/// A Set Action's outcome that the store would not take when it came (owned, to be recorded
/// later), with its audit row while that is not written either.
#[derive(Debug, Clone)]
pub(crate) struct WaitingOutcome {
    job_id: String,
    status: &'static str,
    http_status: Option<i64>,
    error_message: Option<String>,
    response_summary: Option<String>,
    /// (user, idempotency key, answer status, answer body) for repeats.
    answer: Option<(String, String, i64, String)>,
    /// The audit row, until it is written: recorded with the outcome (and exactly once, by the
    /// engine's outbox or receipt), never dropped.
    audit: Option<WaitingAudit>,
    /// The process that keeps it: a child forked meanwhile inherits the list, and must leave it
    /// to its parent (both would write the audit row).
    pid: u32,
}

/// An audit row kept to be written later.
#[derive(Debug, Clone)]
struct WaitingAudit {
    user_id: String,
    action_type: String,
    customer_ids: String,
    timestamp: String,
    ip_address: Option<String>,
    status: &'static str,
    error_message: Option<String>,
    duration_ms: Option<i64>,
}

impl WaitingAudit {
    fn record(&self) -> AuditRecord<'_> {
        AuditRecord {
            user_id: &self.user_id,
            action_type: &self.action_type,
            customer_ids: Some(&self.customer_ids),
            timestamp: &self.timestamp,
            ip_address: self.ip_address.as_deref(),
            status: self.status,
            error_message: self.error_message.as_deref(),
            duration_ms: self.duration_ms,
        }
    }
}

impl WaitingOutcome {
    fn record(&self, store: &Store) -> Result<AuditDelivery> {
        let now = clock::local_iso(SystemTime::now());
        let audit = self.audit.as_ref().map(WaitingAudit::record);
        store.engine.finish_set_action(
            &JobChange {
                job_id: &self.job_id,
                status: self.status,
                http_status: self.http_status,
                error_message: self.error_message.as_deref(),
                response_summary: self.response_summary.as_deref(),
                updated_at: &now,
            },
            audit.as_ref(),
            self.answer.as_ref().map(|(user_id, key, status, body)| (IdempotencyKey { user_id, key }, *status, body.as_str())),
        )
    }
}

/// Most customer IDs a refusal's audit row lists (the rest are counted in its message).
const REFUSAL_MAX_IDS: usize = 1_000;

/// The answer to a request refused before anything was sent.
fn refusal(err: &Error, job_id: Option<&str>) -> SetActionAnswer {
    let status = match err.kind {
        ErrorKind::InvalidInput | ErrorKind::TooLarge | ErrorKind::UnknownAction | ErrorKind::TokenTooShort => 400,
        ErrorKind::UrlNotAllowed => 403,
        ErrorKind::IdempotencyKeyReused => 422,
        ErrorKind::Busy | ErrorKind::ReadOnly | ErrorKind::Full => 503,
        _ => 500,
    };
    let mut body = json!({
        "status": "error",
        "message": err.message,
        "httpStatus": status,
        "error_code": err.kind.code_name(),
    });
    if let Some(id) = job_id {
        body["job_id"] = Value::from(id);
    }
    SetActionAnswer { http_status: status, body, job_id: job_id.map(str::to_owned) }
}

fn api_base(url: &str) -> String {
    url.parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// A token the library can keep out of what it stores: none, or 8 bytes to 8 KiB.
fn check_token(token: Option<&str>) -> Result<()> {
    match token.map(str::len) {
        Some(n) if n < MIN_TOKEN_BYTES => Err(Error::new(
            ErrorKind::TokenTooShort,
            format!(
                "the bearer token is {n} bytes; at least {MIN_TOKEN_BYTES} are needed: a shorter one \
                 cannot be redacted safely from what the cluster answers, so nothing was sent"
            ),
        )),
        Some(n) if n > MAX_TOKEN_BYTES => Err(Error::new(
            ErrorKind::TooLarge,
            format!("the bearer token is {n} bytes; at most {MAX_TOKEN_BYTES} are allowed"),
        )),
        _ => Ok(()),
    }
}

/// The redactor of a request whose token can be kept out of what is stored: the token and the
/// request's other secrets (see [`secrets`]). A token the library cannot redact safely is
/// refused here, before anything quotes it; the refusal comes with a redactor of the other
/// secrets only, as its message is the library's own words (replacing a short token in them
/// would garble the reason).
fn redactor_for(req: &ProxyRequest) -> std::result::Result<Redactor, (Error, Redactor)> {
    let others = secrets::values(&req.url, req.post_data.as_ref());
    match check_token(req.token.as_deref()) {
        Ok(()) => Ok(Redactor::with_secrets(req.token.as_deref(), &others)),
        Err(e) => Err((e, Redactor::with_secrets(None, &others))),
    }
}

/// The caller's identity and the parts of the request every step needs.
struct Caller<'a> {
    user_id: &'a str,
    client_ip: Option<&'a str>,
    key: Option<IdempotencyKey<'a>>,
    started: Instant,
    /// How the call ended, for the process's metrics (refused until something is sent; None
    /// for a plain proxy request, which is no Set Action and is not counted as one).
    outcome: &'a Cell<Option<SetActionOutcome>>,
}

impl Caller<'_> {
    fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }
}

impl Store {
    /// Handle one `/proxy_fetch` request body for `user_id` and return what the route answers.
    /// Never fails: a refusal is an answer too (4xx/5xx with `error_code`). The job is recorded
    /// before the cluster is called, its outcome after, whatever state the audit log is in.
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// let answer = store.set_action(
    ///     r#"{"url":"https://cluster.example/tms/v1/set/action","token":"bearer-token-123","isPost":true,
    ///         "postData":{"action":"Trans-Begin","cids":["c1"]}}"#,
    ///     "alice", Some("10.0.0.7"), None);
    /// // No allowed_clusters configured: refused before anything is sent.
    /// assert_eq!((answer.http_status, answer.body["error_code"].as_str()), (403, Some("URL_NOT_ALLOWED")));
    /// ```
    pub fn set_action(
        &self,
        request_json: &str,
        user_id: &str,
        client_ip: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> SetActionAnswer {
        let started = Instant::now();
        let outcome = Cell::new(Some(SetActionOutcome::Refused));
        let answer = self.answer_set_action(request_json, user_id, client_ip, idempotency_key, started, &outcome);
        if let Some(outcome) = outcome.get() {
            crate::metrics::SET_ACTIONS.observe(outcome, started.elapsed());
        }
        answer
    }

    fn answer_set_action(
        &self,
        request_json: &str,
        user_id: &str,
        client_ip: Option<&str>,
        idempotency_key: Option<&str>,
        started: Instant,
        outcome: &Cell<Option<SetActionOutcome>>,
    ) -> SetActionAnswer {
        let checked = (|| -> Result<(&str, Option<&str>, Option<&str>, ProxyRequest)> {
            let user_id = name("user_id", user_id)?;
            let client_ip = client_ip.map(|ip| name("client_ip", ip)).transpose()?;
            let key = idempotency_key.map(|k| name("idempotency_key", k)).transpose()?;
            Ok((user_id, client_ip, key, request::parse(request_json)?))
        })();
        let (user_id, client_ip, key, req) = match checked {
            Ok(parts) => parts,
            Err(e) => return refusal(&e, None),
        };
        // A store that could not record the outcome refuses before anything is sent.
        if let Some(e) = self.engine.read_only() {
            return refusal(&e.context("the store is read-only, so nothing was sent"), None);
        }
        if let Err(e) = self.engine.check_audit_key() {
            return refusal(&e.context("nothing was sent"), None);
        }
        self.record_waiting_outcomes();
        let caller = Caller {
            user_id,
            client_ip,
            key: key.map(|key| IdempotencyKey { user_id, key }),
            started,
            outcome,
        };
        match &req.set_action {
            Some(part) => self.run_set_action(&caller, &req, &part.action, &part.cids),
            None => self.run_proxy(&caller, &req),
        }
    }

    /// [`Store::set_action`] with the request body as a JSON value.
    ///
    /// ```
    /// use serde_json::json;
    /// # let (store, _dir) = tms::doctest::store();
    /// let body = json!({"url": "http://127.0.0.1:9/tms", "postData": {"action": "Nope", "cids": ["c1"]}});
    /// assert_eq!(store.set_action_value(&body, "alice", None, None).body["error_code"], "UNKNOWN_ACTION");
    /// ```
    pub fn set_action_value(
        &self,
        request: &Value,
        user_id: &str,
        client_ip: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> SetActionAnswer {
        self.set_action(&request.to_string(), user_id, client_ip, idempotency_key)
    }

    /// Mark jobs interrupted by a dead process as FAILED (outcome unknown); returns how many.
    /// Also delivers audit rows still waiting in the outbox (best effort: rows the audit log
    /// cannot take now wait for the next write or open).
    ///
    /// ```
    /// # let (store, _dir) = tms::doctest::store();
    /// assert_eq!(store.recover_interrupted()?, 0);
    /// # Ok::<(), tms::Error>(())
    /// ```
    pub fn recover_interrupted(&self) -> Result<u64> {
        self.record_waiting_outcomes();
        let _ = self.engine.deliver_pending_audit();
        let now = clock::local_iso(SystemTime::now());
        self.engine.recover_interrupted(Duration::from_secs(self.options.interrupted_after_s), INTERRUPTED_MESSAGE, &now)
    }

    /// Record a refusal in the audit log (through the outbox, best effort: the answer reports
    /// the refusal anyway). What it records is bounded: the message quotes caller values only
    /// in part, and at most [`REFUSAL_MAX_IDS`] IDs are listed.
    fn audit_refusal(&self, caller: &Caller<'_>, action: &str, cids: Option<&[String]>, err: &Error, redactor: &Redactor) {
        let listed = cids.map(|c| &c[..c.len().min(REFUSAL_MAX_IDS)]);
        let ids = listed.map(customer_ids_json);
        let mut message = redactor.text(&err.message);
        if let Some(all) = cids.filter(|c| c.len() > REFUSAL_MAX_IDS) {
            message.push_str(&format!(" ({} customer IDs; the first {REFUSAL_MAX_IDS} are listed)", all.len()));
        }
        let _ = self.engine.insert_audit_durably(&AuditRecord {
            user_id: caller.user_id,
            action_type: action,
            customer_ids: ids.as_deref(),
            timestamp: &clock::utc_sql(SystemTime::now()),
            ip_address: caller.client_ip,
            status: "failure",
            error_message: Some(&message),
            duration_ms: Some(caller.elapsed_ms()),
        });
    }

    fn done_event(&self, caller: &Caller<'_>, action: &str, job_id: Option<&str>, http_status: Option<i64>, ok: bool, error: Option<&str>) {
        let mut e = Event::new(Level::Info, "set_action_done")
            .field("user", caller.user_id)
            .field("action", action)
            .field("job_id", job_id.unwrap_or("NONE"))
            .field("http_status", http_status.map_or("NONE".to_owned(), |s| s.to_string()))
            .field("elapsed_ms", caller.elapsed_ms())
            .field("result", if ok { "success" } else { "fail" });
        if let Some(err) = error {
            e = e.error(err);
        }
        self.events.emit(e);
    }

    fn run_proxy(&self, caller: &Caller<'_>, req: &ProxyRequest) -> SetActionAnswer {
        // A GET of status data or an SSO token request: proxied, not counted as a Set Action.
        caller.outcome.set(None);
        // Nothing of a plain proxy request's body is stored: its refusals quote only the URL,
        // with its secrets replaced.
        let redactor = match redactor_for(req) {
            Ok(r) => r,
            Err((e, r)) => {
                self.audit_refusal(caller, PROXY_ACTION, None, &e, &r);
                return refusal(&e, None);
            }
        };
        if let Err(e) = self.allowlist.check(&req.url) {
            self.audit_refusal(caller, PROXY_ACTION, None, &e, &redactor);
            return refusal(&e, None);
        }
        let up = self.send(req, &redactor);
        let v = classify(&up, None, self.options.request_timeout_s, self.options.max_response_bytes);
        SetActionAnswer { http_status: v.answer_status, body: v.answer, job_id: None }
    }

    /// Send and read the answer with the token redacted before anything cuts or quotes it.
    fn send(&self, req: &ProxyRequest, redactor: &Redactor) -> Upstream {
        redactor.upstream(self.http.send(req, redactor.overlap()), self.options.max_response_bytes)
    }

    fn run_set_action(&self, caller: &Caller<'_>, req: &ProxyRequest, action: &str, cids: &[String]) -> SetActionAnswer {
        // Refusals are audited under the action when it is a known one, else as a refused
        // proxy request: an action type is never a name the library has not vetted.
        let refuse = |as_type: &str, e: Error, redactor: &Redactor| {
            self.audit_refusal(caller, as_type, Some(cids), &e, redactor);
            self.done_event(caller, action, None, None, false, Some(&redactor.text(&e.message)));
            refusal(&e, None)
        };
        let known = map_action(action);
        let redactor = match redactor_for(req) {
            Ok(r) => r,
            Err((e, r)) => return refuse(if known.is_ok() { action } else { PROXY_ACTION }, e, &r),
        };
        let code = match known {
            Ok(a) => a.code,
            Err(e) => return refuse(PROXY_ACTION, e, &redactor),
        };
        if let Err(e) = self.allowlist.check(&req.url) {
            return refuse(action, e, &redactor);
        }
        self.events.emit(
            Event::new(Level::Info, "set_action_start")
                .field("user", caller.user_id)
                .field("action", action)
                .field("cid_count", cids.len())
                .field("api_base", api_base(&req.url)),
        );

        // 1. The job, durably, before anything leaves.
        let job_id = match crate::uuid::new_v4() {
            Ok(id) => id,
            Err(e) => return refuse(action, e, &redactor),
        };
        let created_at = clock::local_iso(SystemTime::now());
        // Stored without the token or any field named like a credential, as the legacy stored
        // it (`json.dumps`).
        let payload = req.post_data.as_ref().map(|p| redactor.text(&wire::python_json(&secrets::redacted(p))));
        // A careless caller may put the token or another secret in the URL too (`?access_token=`).
        let url = redactor.text(&secrets::redact_url(&req.url));
        let record = JobRecord {
            job_id: &job_id,
            user_id: caller.user_id,
            batch_id: None,
            action_code: code.get(),
            action_name: action,
            cluster_url: Some(&url),
            created_at: &created_at,
            request_payload: payload.as_deref(),
            response_summary: Some("In progress..."),
            status: "IN_PROGRESS",
            cids,
            set_action: true,
        };
        // Only a key binds the request to what it sends (canonical JSON and SHA-256 of the body).
        let fingerprint = caller.key.map(|k| (k, req.fingerprint()));
        match self.engine.insert_set_action_job(&record, fingerprint.as_ref().map(|(k, f)| (*k, f.as_str()))) {
            Ok(None) => {}
            Ok(Some(prior)) => {
                if prior.fingerprint.as_deref().is_some_and(|f| fingerprint.as_ref().is_none_or(|(_, mine)| f != mine)) {
                    let e = Error::new(
                        ErrorKind::IdempotencyKeyReused,
                        format!(
                            "idempotency key {} was already used by {} for a different request (job {}); \
                             nothing was sent: use a new key for a new request",
                            crate::error::shown(caller.key.map_or("", |k| k.key)),
                            caller.user_id,
                            prior.job_id
                        ),
                    );
                    return refuse(action, e, &redactor);
                }
                caller.outcome.set(Some(SetActionOutcome::Repeat));
                return self.replay(caller, prior);
            }
            Err(e) => {
                let e = Error::new(e.kind, format!("the job could not be recorded, so nothing was sent: {}", e.message));
                return refuse(action, e, &redactor);
            }
        }

        // 2. The remote call, and what its answer means.
        let up = self.send(req, &redactor);
        let v = classify(&up, Some(&job_id), self.options.request_timeout_s, self.options.max_response_bytes);
        caller.outcome.set(Some(if v.succeeded() { SetActionOutcome::Success } else { SetActionOutcome::Failure }));

        // 3. The job's outcome (and the answer for repeats) in jobs.db; its audit row follows.
        let recorded = self.record_outcome(caller, action, cids, &job_id, &v, &redactor);
        let upstream_status = match &up {
            Upstream::Answer { status, .. } => Some(i64::from(*status)),
            _ => None,
        };
        let error = v.error_message.as_deref().map(|m| redactor.text(m));
        self.done_event(caller, action, Some(&job_id), upstream_status, v.succeeded(), error.as_deref());
        let mut body = v.answer;
        match recorded {
            Ok(AuditDelivery::Delivered) => {}
            Ok(AuditDelivery::Deferred(e)) => self.events.emit(
                Event::new(Level::Warning, "set_action_audit_deferred")
                    .field("user", caller.user_id)
                    .field("job_id", &job_id)
                    .error(&e.message),
            ),
            Err(w) => {
                self.events.emit(
                    Event::new(Level::Warning, "set_action_outcome_unrecorded")
                        .field("user", caller.user_id)
                        .field("job_id", &job_id)
                        .error(&w.message),
                );
                body["warning"] = Value::from(format!("the outcome could not be recorded: {}", w.message));
            }
        }
        SetActionAnswer { http_status: v.answer_status, body, job_id: Some(job_id) }
    }

    /// Write the job's outcome, stored answer and audit row. A busy store is retried (the job
    /// is already durable, so the outcome is worth waiting for). If it stays unwritable, the
    /// outcome waits in this process's memory, recorded by its next Set Action,
    /// `recover_interrupted` or close (see [`Store::record_waiting_outcomes`]), and so does the
    /// audit row unless it could be written alone: on SQLite straight into audit.db (jobs.db is
    /// the file that refused), never on PostgreSQL, where the two commit together or not at all.
    /// The error says which of these happened.
    fn record_outcome(&self, caller: &Caller<'_>, action: &str, cids: &[String], job_id: &str, v: &Verdict, redactor: &Redactor) -> Result<AuditDelivery> {
        let error_message = v.error_message.as_deref().map(|m| redactor.text(m));
        let mut waiting = WaitingOutcome {
            job_id: job_id.to_owned(),
            status: v.job_status,
            http_status: v.job_http_status,
            error_message: error_message.clone(),
            // Stored: also without fields the cluster's answer names like credentials (the
            // summary is redacted so where classify writes it).
            response_summary: v.response_summary.as_deref().map(|s| redactor.text(s)),
            answer: caller.key.map(|k| {
                let stored = secrets::redacted(&v.answer).to_string();
                (k.user_id.to_owned(), k.key.to_owned(), i64::from(v.answer_status), redactor.text(&stored))
            }),
            pid: crate::process::id(),
            audit: Some(WaitingAudit {
                user_id: caller.user_id.to_owned(),
                action_type: action.to_owned(),
                customer_ids: customer_ids_json(cids),
                timestamp: clock::utc_sql(SystemTime::now()),
                ip_address: caller.client_ip.map(str::to_owned),
                status: v.audit_status,
                error_message,
                duration_ms: Some(caller.elapsed_ms()),
            }),
        };
        let mut attempt = 0;
        let failed = loop {
            match waiting.record(self) {
                Err(e) if e.kind == ErrorKind::Busy && attempt < OUTCOME_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100 * attempt));
                }
                Err(e) => break e,
                Ok(delivery) => return Ok(delivery),
            }
        };
        if failed.kind == ErrorKind::NotFound {
            return Err(failed.context("the job's outcome could not be recorded: its job is gone"));
        }
        let audit_note = if self.engine.audit_commits_with_outcome() {
            "its audit row waits with it (the two are written together)"
        } else {
            let written = waiting.audit.as_ref().is_some_and(|a| self.engine.insert_set_action_audit(job_id, &a.record()).is_ok());
            if written {
                waiting.audit = None;
                "its audit row was written"
            } else {
                "its audit row could not be written either and waits with it"
            }
        };
        self.waiting_outcomes.lock().unwrap_or_else(|p| p.into_inner()).push(waiting);
        Err(failed.context(&format!(
            "the job's outcome could not be recorded yet (this process records it at its next Set Action, \
             recover_interrupted or close); {audit_note}"
        )))
    }

    /// Record the outcomes (with their audit rows) an unwritable store kept waiting in this
    /// process, oldest first; those that still cannot be written keep waiting, none is dropped.
    /// The first that fails stops the round (the store is still unwritable: trying the others
    /// would make the caller wait a timeout per outcome). Outcomes a parent process kept before
    /// a fork are its own to record: a child forgets them.
    pub(crate) fn record_waiting_outcomes(&self) {
        // Another thread already recording them: nothing to do here.
        let waiting = match self.waiting_outcomes.try_lock() {
            Ok(mut list) if !list.is_empty() => std::mem::take(&mut *list),
            _ => return,
        };
        let me = crate::process::id();
        let mut still = Vec::new();
        let mut unwritable = false;
        for w in waiting.into_iter().filter(|w| w.pid == me) {
            if unwritable {
                still.push(w);
                continue;
            }
            match w.record(self) {
                Err(e) if e.kind != ErrorKind::NotFound => {
                    unwritable = true;
                    still.push(w);
                }
                _ => {}
            }
        }
        if !still.is_empty() {
            let mut list = self.waiting_outcomes.lock().unwrap_or_else(|p| p.into_inner());
            still.append(&mut list);
            *list = still;
        }
    }

    /// A repeat of an idempotency key: the first request's answer, without sending again. If the
    /// first is still running (another thread or process), wait for its answer.
    fn replay(&self, caller: &Caller<'_>, mut prior: PriorRequest) -> SetActionAnswer {
        let Some(key) = caller.key else {
            return refusal(&Error::internal("a prior request without a key"), Some(&prior.job_id));
        };
        // Both in range by StoreOptions::validate: no overflow.
        let patience = Duration::from_secs(self.options.request_timeout_s + self.options.connect_timeout_s + 5);
        loop {
            if let Some((status, body)) = &prior.answer {
                let body = serde_json::from_str(body).unwrap_or_else(|_| json!({"status": "error"}));
                let status = u16::try_from(*status).unwrap_or(500);
                return SetActionAnswer { http_status: status, body, job_id: Some(prior.job_id) };
            }
            if prior.job_status.as_deref() != Some("IN_PROGRESS") {
                // The first request's process died; the job was marked interrupted.
                let message = prior.job_error.clone().unwrap_or_else(|| "the first request did not finish".into());
                let err = Error::new(ErrorKind::Database, message);
                return refusal(&err, Some(&prior.job_id));
            }
            if caller.started.elapsed() > patience {
                let err = Error::new(ErrorKind::Busy, "the first request with this idempotency key is still running");
                return refusal(&err, Some(&prior.job_id));
            }
            std::thread::sleep(Duration::from_millis(25));
            match self.engine.prior_request(key) {
                Ok(Some(p)) => prior = p,
                Ok(None) => {}
                Err(e) => return refusal(&e, Some(&prior.job_id)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_redacted_before_the_body_is_cut_or_quoted() {
        let token = "eyJ0eXAi/long.token/value";
        let r = Redactor::new(Some(token));
        // The echo straddles the 200-character quote limit, and appears JSON-escaped too.
        let body = format!(r#"{}"seen":"Bearer {token}","again":"{}""#, "x".repeat(190), token.replace('/', "\\/"));
        let up = r.upstream(Upstream::Answer { status: 401, body: body.into_bytes(), cut: false }, 1 << 20);
        let v = classify(&up, Some("J"), 35, 1 << 20);
        let all = format!("{:?}{}", v.error_message, v.answer);
        assert!(!all.contains("eyJ0eXAi"), "{all}");
        let Upstream::Answer { body, .. } = up else { panic!() };
        let body = String::from_utf8(body).unwrap();
        assert!(!body.contains("long.token") && body.matches("[REDACTED]").count() == 2, "{body}");
    }

    #[test]
    fn short_and_huge_tokens_are_refused() {
        assert_eq!(check_token(Some("1234567")).unwrap_err().kind, ErrorKind::TokenTooShort);
        assert!(check_token(Some("12345678")).is_ok() && check_token(None).is_ok());
        assert_eq!(check_token(Some(&"t".repeat(MAX_TOKEN_BYTES + 1))).unwrap_err().kind, ErrorKind::TooLarge);
    }
}
