//! The remote call: one shared ureq agent (rustls) per store, bounded in time and in bytes read.

use std::io::Read;
use std::time::Duration;

use ureq::Agent;

use super::request::{BodyEncoding, ProxyRequest, form_fields};
use crate::options::StoreOptions;

/// What came back from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// An HTTP answer of any status. `cut` says the body was longer than the limit and was cut.
    Answer { status: u16, body: Vec<u8>, cut: bool },
    /// No complete answer within the request timeout.
    Timeout,
    /// No answer: refused connection, unknown host, TLS failure ... (the error text).
    Failed(String),
}

pub struct HttpClient {
    agent: Agent,
    max_response_bytes: u64,
}

impl HttpClient {
    pub fn new(options: &StoreOptions) -> HttpClient {
        let config = Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(options.request_timeout_s)))
            .timeout_connect(Some(Duration::from_secs(options.connect_timeout_s)))
            // Every status is an answer to classify, not an error.
            .http_status_as_error(false)
            // A redirect could lead outside the allowlist: hand the 3xx back instead of following.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("tms-core/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpClient { agent: config.into(), max_response_bytes: options.max_response_bytes }
    }

    /// Send the request (already checked against the allowlist) and read its answer.
    pub fn send(&self, req: &ProxyRequest) -> Upstream {
        let bearer = req.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = if req.is_post {
            let mut builder = self.agent.post(&req.url);
            if let Some(b) = &bearer {
                builder = builder.header("Authorization", b);
            }
            match (&req.post_data, req.encoding) {
                (None, _) => builder.send_empty(),
                (Some(data), BodyEncoding::Form) => builder.send_form(form_fields(data)),
                // Serialized here, compact: ureq's send_json would pretty-print.
                (Some(data), BodyEncoding::Json) => {
                    builder.content_type("application/json").send(data.to_string())
                }
            }
        } else {
            let mut builder = self.agent.get(&req.url);
            if let Some(b) = &bearer {
                builder = builder.header("Authorization", b);
            }
            builder.call()
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => return failure(&e),
        };
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let limit = self.max_response_bytes;
        let read = response.into_body().into_reader().take(limit + 1).read_to_end(&mut body);
        if let Err(e) = read {
            return if is_timeout_io(&e) {
                Upstream::Timeout
            } else {
                Upstream::Failed(format!("error reading the answer: {e}"))
            };
        }
        let cut = body.len() as u64 > limit;
        body.truncate(limit as usize);
        Upstream::Answer { status, body, cut }
    }
}

fn is_timeout_io(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
        || e.to_string().to_ascii_lowercase().contains("timeout")
}

fn failure(e: &ureq::Error) -> Upstream {
    match e {
        ureq::Error::Timeout(_) => Upstream::Timeout,
        ureq::Error::Io(io) if is_timeout_io(io) => Upstream::Timeout,
        ureq::Error::ConnectionFailed => Upstream::Failed("connection failed".into()),
        ureq::Error::HostNotFound => Upstream::Failed("host not found".into()),
        other => Upstream::Failed(other.to_string()),
    }
}
