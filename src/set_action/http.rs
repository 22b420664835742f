//! The remote call: one shared ureq agent (rustls) per store and process, bounded in time and in
//! bytes read, with kept-alive connections and a resolver that spawns no thread per request (see
//! `resolve`).
//!
//! Per process, because a forked child inherits the agent's idle connections: parent and child
//! would then write requests on one socket (and with https share, and break, one TLS session). A
//! child builds an agent of its own and leaks the inherited one untouched: dropping it could send
//! a TLS close_notify on the parent's connections. The leaked descriptors stay open in the child
//! (the parent's connection is not closed for the server until both have closed it).
//!
//! Trust for https clusters: the system's trust store (where an operator installs an internal
//! CA; `SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured as by OpenSSL), plus the certificates of the
//! `ca_bundle` option. A host with no system store falls back to the compiled-in Mozilla roots.

use std::io::Read;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

use ureq::Agent;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::request::ProxyRequest;
use super::resolve;
use super::wire;
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

/// Idle connections kept to one cluster host, and to all of them: one per thread calling at once
/// in a typical threaded server (ureq closes what is idle beyond these, and any after 15 s).
const IDLE_CONNECTIONS_PER_HOST: usize = 16;
const IDLE_CONNECTIONS: usize = 64;

pub struct HttpClient {
    options: StoreOptions,
    /// This process's agent, built on first use: loading the system trust store costs
    /// milliseconds, and many stores never call a cluster. Null until then. Not behind a mutex:
    /// a fork while another thread held it would leave the child's copy locked for ever.
    /// A published `Built` is freed only when the client drops in the process that built it, and
    /// is replaced only when it is a parent's (then leaked): a reader never sees it freed.
    agent: AtomicPtr<Built>,
}

/// An agent, or why it could not be built (a bad `ca_bundle`: every call fails alike), and the
/// process it belongs to.
struct Built {
    /// `process::fork_count()` when it was built: another count means another process.
    forks: u64,
    agent: std::result::Result<Agent, String>,
}

fn root_certs(options: &StoreOptions) -> std::result::Result<RootCerts, String> {
    let mut certs: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let system_found = !certs.is_empty();
    if let Some(path) = &options.ca_bundle {
        certs.extend(crate::net::ca_bundle::read_ca_bundle(path).map_err(|e| format!("ca_bundle: {e}"))?);
    }
    Ok(if system_found || options.ca_bundle.is_some() { RootCerts::new_with_certs(&certs) } else { RootCerts::WebPki })
}

impl HttpClient {
    pub fn new(options: &StoreOptions) -> HttpClient {
        HttpClient { options: options.clone(), agent: AtomicPtr::new(std::ptr::null_mut()) }
    }

    /// This process's agent (a cheap clone: ureq's agent is shared state behind an `Arc`).
    fn agent(&self) -> std::result::Result<Agent, String> {
        let forks = crate::process::fork_count();
        let mut current = self.agent.load(Ordering::Acquire);
        loop {
            // SAFETY: non-null pointers here came from Box::into_raw below and are freed only in
            // Drop (which has the client to itself); a parent's is leaked, never freed.
            if let Some(built) = unsafe { current.as_ref() } {
                if built.forks == forks {
                    return built.agent.clone();
                }
            }
            // None yet, or the parent's: build this process's own.
            let fresh = Box::into_raw(Box::new(Built { forks, agent: self.build() }));
            match self.agent.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
                // The parent's `Built` (if any) is leaked: see the module's comment.
                Ok(_) => current = fresh,
                Err(theirs) => {
                    // Another thread of this process published first: use its agent.
                    // SAFETY: `fresh` was never published.
                    drop(unsafe { Box::from_raw(fresh) });
                    current = theirs;
                }
            }
        }
    }

    fn build(&self) -> std::result::Result<Agent, String> {
        let options = &self.options;
        let tls = TlsConfig::builder().root_certs(root_certs(options)?).build();
        let config = Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(options.request_timeout_s)))
            .timeout_connect(Some(Duration::from_secs(options.connect_timeout_s)))
            .tls_config(tls)
            // Every status is an answer to classify, not an error.
            .http_status_as_error(false)
            // A redirect could lead outside the allowlist: hand the 3xx back instead.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("tms-core/", env!("CARGO_PKG_VERSION")))
            // ureq keeps 3 idle connections per host by default: a server calling from
            // more threads than that (gunicorn's 8 in bench/route.py) opened a new
            // connection for most calls, and with a timeout set ureq resolves each new
            // connection's host on a thread of its own. Keep one per calling thread.
            .max_idle_connections(IDLE_CONNECTIONS)
            .max_idle_connections_per_host(IDLE_CONNECTIONS_PER_HOST)
            .build();
        let (resolver, connector) = resolve::resolver_and_connector();
        Ok(Agent::with_parts(config, connector, resolver))
    }

    /// Send the request (already checked against the allowlist) and read its answer: up to
    /// `max_response_bytes` plus `extra` bytes, so that whoever cuts it to the limit can first
    /// see a token that straddles it (see `Redactor::upstream`).
    pub fn send(&self, req: &ProxyRequest, extra: usize) -> Upstream {
        let agent = match self.agent() {
            Ok(a) => a,
            Err(e) => return Upstream::Failed(format!("cannot set up TLS: {e}")),
        };
        let bearer = req.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match wire::body(req) {
            Some(body) => {
                let mut builder = agent.post(&req.url);
                if let Some(b) = &bearer {
                    builder = builder.header("Authorization", b);
                }
                builder.content_type(body.content_type).send(body.bytes)
            }
            // No body: a GET, as the legacy route sent a request without postData.
            None => {
                let mut builder = agent.get(&req.url).header("Content-Type", req.content_type_header());
                if let Some(b) = &bearer {
                    builder = builder.header("Authorization", b);
                }
                builder.call()
            }
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => return failure(&e),
        };
        let status = response.status().as_u16();
        let mut body = Vec::new();
        // In range by StoreOptions::validate (at most 1 GiB), so no overflow.
        let take = self.options.max_response_bytes + extra as u64 + 1;
        let read = response.into_body().into_reader().take(take).read_to_end(&mut body);
        if let Err(e) = read {
            return if is_timeout_io(&e) {
                Upstream::Timeout
            } else {
                Upstream::Failed(format!("error reading the answer: {e}"))
            };
        }
        Upstream::Answer { status, body, cut: false }
    }
}

impl Drop for HttpClient {
    fn drop(&mut self) {
        let current = *self.agent.get_mut();
        // SAFETY: as in `agent`; dropping has the client to itself.
        if let Some(built) = unsafe { current.as_ref() } {
            if built.forks == crate::process::fork_count() {
                drop(unsafe { Box::from_raw(current) });
            } // else the parent's: leaked, as its connections are not this process's to close
        }
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
