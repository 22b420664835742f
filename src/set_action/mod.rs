//! The dashboard's `/proxy_fetch` route as one library call, in an order that cannot lose a job:
//! validate, map the action, de-duplicate the IDs, record the job IN_PROGRESS durably, and only
//! then send; classify the answer; record the job's outcome and its audit row in one
//! transaction; answer. If the job cannot be recorded, nothing is sent.

pub mod allowlist;
pub mod events;
pub mod http;
pub mod outcome;
pub mod request;

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::action::map_action;
use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::model::customer_ids_json;
use crate::storage::{AuditRecord, IdempotencyKey, JobChange, JobRecord, PriorRequest};
use crate::store::{Store, name};
use events::{Event, Level};
use http::Upstream;
use outcome::{Verdict, classify};
use request::ProxyRequest;

/// What the route answers: the HTTP status and JSON body, and the job when one exists.
#[derive(Debug, Clone, PartialEq)]
pub struct SetActionAnswer {
    pub http_status: u16,
    pub body: Value,
    pub job_id: Option<String>,
}

/// The error_message of a job left IN_PROGRESS by a process that died mid-call.
pub const INTERRUPTED_MESSAGE: &str = "interrupted: the process handling this Set Action stopped \
    before it recorded the cluster's answer; the outcome is unknown";

/// Audit action_type of refused requests that are not Set Actions.
const PROXY_ACTION: &str = "proxy_fetch";

/// The spellings of the token an upstream answer may echo: as sent, and JSON-escaped.
fn token_forms(token: Option<&str>) -> Vec<String> {
    match token {
        Some(t) if t.len() >= 4 => {
            let mut forms = vec![t.to_owned()];
            let escaped = t.replace('/', "\\/");
            if escaped != t {
                forms.push(escaped);
            }
            forms
        }
        _ => Vec::new(),
    }
}

/// Replace the bearer token wherever it appears in text that will be stored or logged.
fn redact(text: &str, token: Option<&str>) -> String {
    token_forms(token).iter().fold(text.to_owned(), |acc, form| acc.replace(form.as_str(), "[REDACTED]"))
}

/// Redact the upstream answer itself, before anything quotes or cuts it: an error page may echo
/// the Authorization header, and a token split by a 200-character cut would escape `redact`.
fn redact_upstream(up: Upstream, token: Option<&str>) -> Upstream {
    let forms = token_forms(token);
    if forms.is_empty() {
        return up;
    }
    match up {
        Upstream::Answer { status, body, cut } => {
            let mut body = body;
            for form in &forms {
                body = replace_bytes(&body, form.as_bytes(), b"[REDACTED]");
            }
            Upstream::Answer { status, body, cut }
        }
        Upstream::Failed(text) => Upstream::Failed(redact(&text, token)),
        Upstream::Timeout => Upstream::Timeout,
    }
}

fn replace_bytes(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// The answer to a request refused before anything was sent.
fn refusal(err: &Error, job_id: Option<&str>) -> SetActionAnswer {
    let status = match err.kind {
        ErrorKind::InvalidInput | ErrorKind::TooLarge | ErrorKind::UnknownAction => 400,
        ErrorKind::UrlNotAllowed => 403,
        ErrorKind::Busy => 503,
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

/// The caller's identity and the parts of the request every step needs.
struct Caller<'a> {
    user_id: &'a str,
    client_ip: Option<&'a str>,
    key: Option<IdempotencyKey<'a>>,
    started: Instant,
}

impl Caller<'_> {
    fn elapsed_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }
}

impl Store {
    /// Handle one `/proxy_fetch` request body for `user_id` and return what the route answers.
    /// Never fails: a refusal is an answer too (4xx/5xx with `error_code`).
    pub fn set_action(
        &self,
        request_json: &str,
        user_id: &str,
        client_ip: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> SetActionAnswer {
        let started = Instant::now();
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
        let caller = Caller {
            user_id,
            client_ip,
            key: key.map(|key| IdempotencyKey { user_id, key }),
            started,
        };
        match &req.set_action {
            Some(part) => self.run_set_action(&caller, &req, &part.action, &part.cids),
            None => self.run_proxy(&caller, &req),
        }
    }

    /// Mark jobs interrupted by a dead process as FAILED (outcome unknown); returns how many.
    /// Also completes any Set Action whose audit row a crash kept out of audit.db.
    pub fn recover_interrupted(&self) -> Result<u64> {
        self.engine.replay_pending_audit()?;
        let cutoff = clock::local_iso_ago(self.options.interrupted_after_s as i64);
        let now = clock::local_iso(SystemTime::now());
        self.engine.recover_interrupted(&cutoff, INTERRUPTED_MESSAGE, &now)
    }

    /// Record a refusal in the audit log (best effort: the answer reports the refusal anyway).
    fn audit_refusal(&self, caller: &Caller<'_>, action: &str, cids: Option<&[String]>, err: &Error, token: Option<&str>) {
        let ids = cids.map(customer_ids_json);
        let message = redact(&err.message, token);
        let _ = self.engine.insert_audit(&AuditRecord {
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
        if let Err(e) = self.allowlist.check(&req.url) {
            self.audit_refusal(caller, PROXY_ACTION, None, &e, req.token.as_deref());
            return refusal(&e, None);
        }
        let up = redact_upstream(self.http.send(req), req.token.as_deref());
        let v = classify(&up, None, self.options.request_timeout_s, self.options.max_response_bytes);
        SetActionAnswer { http_status: v.answer_status, body: v.answer, job_id: None }
    }

    fn run_set_action(&self, caller: &Caller<'_>, req: &ProxyRequest, action: &str, cids: &[String]) -> SetActionAnswer {
        let token = req.token.as_deref();
        let refuse = |e: Error| {
            self.audit_refusal(caller, action, Some(cids), &e, token);
            self.done_event(caller, action, None, None, false, Some(&redact(&e.message, token)));
            refusal(&e, None)
        };
        let code = match map_action(action) {
            Ok(a) => a.code,
            Err(e) => return refuse(e),
        };
        if let Err(e) = self.allowlist.check(&req.url) {
            return refuse(e);
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
            Err(e) => return refuse(e),
        };
        let created_at = clock::local_iso(SystemTime::now());
        let payload = req.post_data.as_ref().map(Value::to_string);
        let record = JobRecord {
            job_id: &job_id,
            user_id: caller.user_id,
            batch_id: None,
            action_code: code,
            action_name: action,
            cluster_url: Some(&req.url),
            created_at: &created_at,
            request_payload: payload.as_deref(),
            response_summary: Some("In progress..."),
            status: "IN_PROGRESS",
            cids,
        };
        match self.engine.insert_set_action_job(&record, caller.key) {
            Ok(None) => {}
            Ok(Some(prior)) => return self.replay(caller, prior),
            Err(e) => {
                let e = Error::new(e.kind, format!("the job could not be recorded, so nothing was sent: {}", e.message));
                return refuse(e);
            }
        }

        // 2. The remote call, and what its answer means.
        let up = redact_upstream(self.http.send(req), token);
        let v = classify(&up, Some(&job_id), self.options.request_timeout_s, self.options.max_response_bytes);

        // 3. The job's outcome and its audit row together (and the answer for repeats).
        let warning = self.record_outcome(caller, action, cids, &job_id, &v, token).err();
        let upstream_status = match &up {
            Upstream::Answer { status, .. } => Some(*status as i64),
            _ => None,
        };
        let error = v.error_message.as_deref().map(|m| redact(m, token));
        self.done_event(caller, action, Some(&job_id), upstream_status, v.succeeded(), error.as_deref());
        let mut body = v.answer;
        if let Some(w) = warning {
            self.events.emit(
                Event::new(Level::Warning, "set_action_outcome_unrecorded")
                    .field("user", caller.user_id)
                    .field("job_id", &job_id)
                    .error(&w.message),
            );
            body["warning"] = Value::from(format!("the outcome could not be recorded: {}", w.message));
        }
        SetActionAnswer { http_status: v.answer_status, body, job_id: Some(job_id) }
    }

    /// Write the job update, audit row and stored answer; a busy database is retried a few times
    /// (the job is already durable, so the outcome is worth waiting for).
    fn record_outcome(&self, caller: &Caller<'_>, action: &str, cids: &[String], job_id: &str, v: &Verdict, token: Option<&str>) -> Result<i64> {
        let error = v.error_message.as_deref().map(|m| redact(m, token));
        let summary = v.response_summary.as_deref().map(|s| redact(s, token));
        let answer_text = redact(&v.answer.to_string(), token);
        let ids = customer_ids_json(cids);
        let mut attempt = 0;
        loop {
            let now = SystemTime::now();
            let result = self.engine.finish_set_action(
                &JobChange {
                    job_id,
                    status: v.job_status,
                    http_status: v.job_http_status,
                    error_message: error.as_deref(),
                    response_summary: summary.as_deref(),
                    updated_at: &clock::local_iso(now),
                },
                &AuditRecord {
                    user_id: caller.user_id,
                    action_type: action,
                    customer_ids: Some(&ids),
                    timestamp: &clock::utc_sql(now),
                    ip_address: caller.client_ip,
                    status: v.audit_status,
                    error_message: error.as_deref(),
                    duration_ms: Some(caller.elapsed_ms()),
                },
                caller.key.map(|k| (k, v.answer_status as i64, answer_text.as_str())),
            );
            match result {
                Err(e) if e.kind == ErrorKind::Busy && attempt < 3 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100 * attempt));
                }
                other => return other,
            }
        }
    }

    /// A repeat of an idempotency key: the first request's answer, without sending again. If the
    /// first is still running (another thread or process), wait for its answer.
    fn replay(&self, caller: &Caller<'_>, mut prior: PriorRequest) -> SetActionAnswer {
        let key = caller.key.expect("a prior request implies a key");
        let patience = Duration::from_secs(self.options.request_timeout_s + self.options.connect_timeout_s + 5);
        loop {
            if let Some((status, body)) = &prior.answer {
                let body = serde_json::from_str(body).unwrap_or_else(|_| json!({"status": "error"}));
                return SetActionAnswer { http_status: *status as u16, body, job_id: Some(prior.job_id) };
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
        // The echo straddles the 200-character quote limit, and appears JSON-escaped too.
        let body = format!(r#"{}"seen":"Bearer {token}","again":"{}""#, "x".repeat(190), token.replace('/', "\\/"));
        let up = redact_upstream(Upstream::Answer { status: 401, body: body.into_bytes(), cut: false }, Some(token));
        let v = classify(&up, Some("J"), 35, 1 << 20);
        let all = format!("{:?}{}", v.error_message, v.answer);
        assert!(!all.contains("eyJ0eXAi"), "{all}");
        let Upstream::Answer { body, .. } = up else { panic!() };
        let body = String::from_utf8(body).unwrap();
        assert!(!body.contains("long.token") && body.matches("[REDACTED]").count() == 2, "{body}");
    }
}
