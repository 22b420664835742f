//! The contract's outcome table: what an upstream answer means for the job, the audit row and
//! the answer the route sends back to the UI.

use serde_json::{Value, json};

use super::http::Upstream;

/// Everything decided about one finished remote call.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `SUCCESS` or `FAILED`.
    pub job_status: &'static str,
    pub job_http_status: Option<i64>,
    pub error_message: Option<String>,
    pub response_summary: Option<String>,
    /// `success` or `failure`.
    pub audit_status: &'static str,
    pub answer_status: u16,
    pub answer: Value,
}

impl Verdict {
    pub fn succeeded(&self) -> bool {
        self.job_status == "SUCCESS"
    }
}

/// Longest piece of a non-2xx body quoted in the error message (the legacy quoted 200 chars).
const QUOTED_CHARS: usize = 200;

fn quote(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(QUOTED_CHARS).collect()
}

fn with_job(mut answer: Value, job_id: Option<&str>) -> Value {
    if let (Some(id), Value::Object(map)) = (job_id, &mut answer) {
        map.insert("job_id".into(), Value::from(id));
    }
    answer
}

/// A UTF-8 byte order mark some servers put before JSON (Python's `requests` skipped it too).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Classify an upstream outcome. `job_id` is added to every answer when a job exists. Numbers
/// in a JSON answer are kept exactly as the cluster wrote them (serde_json's arbitrary
/// precision), integers beyond 64 bits included.
pub fn classify(up: &Upstream, job_id: Option<&str>, timeout_s: u64, limit: u64) -> Verdict {
    match up {
        Upstream::Answer { status, body, cut } if matches!(status, 200 | 201) => {
            let parsed: Result<Value, String> = if *cut {
                Err(format!("the answer is larger than {limit} bytes and was cut"))
            } else {
                serde_json::from_slice(body.strip_prefix(BOM).unwrap_or(body)).map_err(|e| e.to_string())
            };
            match parsed {
                Ok(data) => {
                    // What is stored of the answer: without fields named like credentials.
                    let summary = crate::net::secrets::redacted(&data).to_string();
                    let answer = with_job(
                        json!({"status": "success", "data": data, "httpStatus": status}),
                        job_id,
                    );
                    let remote_refused = data.get("success") == Some(&Value::Bool(false));
                    if remote_refused {
                        let message = match data.get("message") {
                            Some(Value::String(m)) => m.clone(),
                            Some(other) if !other.is_null() => other.to_string(),
                            _ => "the cluster answered success: false".to_owned(),
                        };
                        Verdict {
                            job_status: "FAILED",
                            job_http_status: Some(*status as i64),
                            error_message: Some(message),
                            response_summary: Some(summary),
                            audit_status: "failure",
                            answer_status: 200,
                            answer,
                        }
                    } else {
                        Verdict {
                            job_status: "SUCCESS",
                            job_http_status: Some(*status as i64),
                            error_message: None,
                            response_summary: Some(summary),
                            audit_status: "success",
                            answer_status: 200,
                            answer,
                        }
                    }
                }
                Err(e) => Verdict {
                    job_status: "FAILED",
                    job_http_status: Some(500),
                    error_message: Some(format!("JSON parse error: {e}")),
                    response_summary: Some(quote(body)),
                    // The legacy wrote no audit row here; every outcome is audited now.
                    audit_status: "failure",
                    answer_status: 500,
                    answer: with_job(
                        json!({"status": "error", "message": format!("Invalid JSON response: {e}"), "httpStatus": status}),
                        job_id,
                    ),
                },
            }
        }
        Upstream::Answer { status, body, cut } => {
            let mut message = format!("API returned status {status}: {}", quote(body));
            if *cut {
                message.push_str(&format!(" (answer over {limit} bytes, cut)"));
            }
            Verdict {
                job_status: "FAILED",
                job_http_status: Some(*status as i64),
                error_message: Some(message.clone()),
                response_summary: Some(quote(body)),
                audit_status: "failure",
                answer_status: *status,
                answer: with_job(json!({"status": "error", "message": message, "httpStatus": status}), job_id),
            }
        }
        // No answer: the summary says so, rather than keep "In progress...".
        Upstream::Timeout => Verdict {
            job_status: "FAILED",
            job_http_status: None,
            error_message: Some(format!("Request timeout after {timeout_s}s")),
            response_summary: Some(format!("No answer: request timeout after {timeout_s}s")),
            audit_status: "failure",
            answer_status: 408,
            answer: with_job(json!({"status": "error", "message": "Request timeout", "httpStatus": 408}), job_id),
        },
        Upstream::Failed(text) => Verdict {
            job_status: "FAILED",
            job_http_status: None,
            error_message: Some(text.clone()),
            response_summary: Some(format!("No answer: {text}")),
            audit_status: "failure",
            answer_status: 500,
            answer: with_job(json!({"status": "error", "message": text, "httpStatus": 500}), job_id),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Upstream {
        Upstream::Answer { status, body: body.as_bytes().to_vec(), cut: false }
    }

    #[test]
    fn the_outcome_table() {
        let v = classify(&answer(200, r#"{"success":true,"n":1}"#), Some("J"), 35, 100);
        assert_eq!((v.job_status, v.audit_status, v.answer_status), ("SUCCESS", "success", 200));
        assert_eq!(v.answer, json!({"status":"success","data":{"success":true,"n":1},"httpStatus":200,"job_id":"J"}));

        let v = classify(&answer(201, "[1,2]"), Some("J"), 35, 100);
        assert_eq!(v.job_status, "SUCCESS");

        let v = classify(&answer(200, r#"{"success":false,"message":"those CIDs are bad"}"#), Some("J"), 35, 100);
        assert_eq!((v.job_status, v.audit_status, v.answer_status), ("FAILED", "failure", 200));
        assert_eq!(v.error_message.as_deref(), Some("those CIDs are bad"));
        assert_eq!(v.answer["status"], "success");

        let v = classify(&answer(200, "<html>"), Some("J"), 35, 100);
        assert_eq!((v.job_status, v.job_http_status, v.audit_status, v.answer_status), ("FAILED", Some(500), "failure", 500));
        assert!(v.error_message.unwrap().starts_with("JSON parse error: "));
        assert!(v.answer["message"].as_str().unwrap().starts_with("Invalid JSON response: "));
        assert_eq!(v.answer["httpStatus"], 200);
        assert_eq!(v.answer["job_id"], "J");

        let long = "x".repeat(500);
        let v = classify(&answer(401, &long), Some("J"), 35, 1000);
        assert_eq!((v.job_http_status, v.answer_status), (Some(401), 401));
        assert_eq!(v.error_message.unwrap(), format!("API returned status 401: {}", "x".repeat(200)));

        let v = classify(&Upstream::Timeout, Some("J"), 35, 100);
        assert_eq!((v.job_http_status, v.answer_status), (None, 408));
        assert_eq!(v.error_message.as_deref(), Some("Request timeout after 35s"));
        assert_eq!(v.answer, json!({"status":"error","message":"Request timeout","httpStatus":408,"job_id":"J"}));

        let v = classify(&Upstream::Failed("connection refused".into()), None, 35, 100);
        assert_eq!(v.answer, json!({"status":"error","message":"connection refused","httpStatus":500}));

        let v = classify(&Upstream::Answer { status: 200, body: b"{\"a\":".to_vec(), cut: true }, Some("J"), 35, 5);
        assert!(v.error_message.unwrap().contains("larger than 5 bytes and was cut"));
    }

    #[test]
    fn a_bom_is_skipped_and_numbers_are_kept_exactly() {
        let body = "\u{feff}{\"success\":true,\"big\":123456789012345678901234567890,\"f\":1.10}";
        let v = classify(&answer(200, body), Some("J"), 35, 1000);
        assert_eq!(v.job_status, "SUCCESS");
        assert_eq!(v.response_summary.as_deref(), Some(r#"{"success":true,"big":123456789012345678901234567890,"f":1.10}"#));
        assert!(v.answer.to_string().contains("123456789012345678901234567890"));
        let v = classify(&Upstream::Timeout, Some("J"), 35, 100);
        assert_eq!(v.response_summary.as_deref(), Some("No answer: request timeout after 35s"));
    }
}
