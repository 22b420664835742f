//! Where a cluster's host is: ureq's resolver without a thread per request.
//!
//! ureq resolves the host before every request, also when a kept-alive connection to it will
//! carry the request, and with a timeout set (the library always sets one) its default resolver
//! does every lookup on a new thread, so that the lookup can be abandoned. Per Set Action that was
//! a thread created and joined for nothing. Here an IP address in the URL is taken as it is (no
//! lookup, as the default resolver's lookup of it did not look anything up either), and a host
//! name's addresses are kept for a few seconds, shorter than ureq keeps an idle connection (15
//! s): a connection made with them would have been kept and reused for at least as long.
//!
//! Kept only while they work: when connecting to them fails (the host moved after a DNS
//! failover, say) the connector forgets them, so that the next request looks the name up again
//! instead of failing on the old addresses until they expire. A failed lookup is not kept either.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport};

/// How long a host name's addresses are used without a new lookup.
const KEEP_NAMES: Duration = Duration::from_secs(5);
/// Most host names remembered (a store calls a few clusters; a full map starts again).
const MAX_NAMES: usize = 64;

/// Host names' addresses ("host:port" → when looked up, what was found), shared by the
/// resolver that fills it and the connector that empties it when they do not work.
#[derive(Debug, Default, Clone)]
struct Names(Arc<Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>>);

impl Names {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, ResolvedSocketAddrs)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn host_port(uri: &Uri) -> Option<String> {
    match (uri.scheme(), uri.authority()) {
        (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
        _ => None,
    }
}

#[derive(Debug, Default)]
pub struct ClusterResolver {
    lookup: DefaultResolver,
    names: Names,
}

/// ureq's connector, which makes the resolver forget a host's addresses when connecting to them
/// fails.
#[derive(Debug)]
pub struct ClusterConnector {
    connect: DefaultConnector,
    names: Names,
}

/// A resolver and the connector that goes with it (one pair per agent).
pub fn resolver_and_connector() -> (ClusterResolver, ClusterConnector) {
    let resolver = ClusterResolver::default();
    let connector = ClusterConnector { connect: DefaultConnector::default(), names: resolver.names.clone() };
    (resolver, connector)
}

impl Connector<()> for ClusterConnector {
    type Out = Box<dyn Transport>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<()>) -> Result<Option<Self::Out>, ureq::Error> {
        let made = self.connect.connect(details, chained);
        if !matches!(made, Ok(Some(_))) {
            // Refused, timed out, TLS failed ...: whatever it was, look the name up again next
            // time (an address in the URL was never kept, so there is nothing to forget).
            if let Some(host_port) = host_port(details.uri) {
                self.names.lock().remove(&host_port);
            }
        }
        made
    }
}

impl Resolver for ClusterResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(host_port) = host_port(uri) else {
            return self.lookup.resolve(uri, config, timeout); // its error for a URL it cannot use
        };
        if let Ok(addr) = host_port.parse::<SocketAddr>() {
            let mut addrs = self.empty();
            for wanted in config.ip_family().keep_wanted(std::iter::once(addr)) {
                addrs.push(wanted);
            }
            return if addrs.is_empty() { Err(ureq::Error::HostNotFound) } else { Ok(addrs) };
        }
        let now = Instant::now();
        if let Some((at, addrs)) = self.names.lock().get(&host_port) {
            if now.duration_since(*at) < KEEP_NAMES {
                return Ok(addrs.clone());
            }
        }
        // A failed lookup is not kept: the next request looks again.
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        let mut names = self.names.lock();
        if names.len() >= MAX_NAMES {
            names.clear();
        }
        names.insert(host_port, (now, addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::transport::time::Duration as UreqDuration;

    fn resolve(r: &ClusterResolver, url: &str) -> Result<Vec<SocketAddr>, ureq::Error> {
        let uri: Uri = url.parse().unwrap();
        let timeout = NextTimeout { after: UreqDuration::from_secs(5), reason: ureq::Timeout::Resolve, per_read: None, per_write: None };
        r.resolve(&uri, &Config::default(), timeout).map(|a| a.iter().copied().collect())
    }

    #[test]
    fn addresses_are_taken_as_written_and_names_looked_up() {
        let r = ClusterResolver::default();
        assert_eq!(resolve(&r, "http://127.0.0.1:8080/tms").unwrap(), vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(resolve(&r, "https://[::1]/tms").unwrap(), vec!["[::1]:443".parse().unwrap()]);
        assert!(r.names.lock().is_empty(), "no lookup for an address");
        let local = resolve(&r, "http://localhost:9/").unwrap();
        assert!(!local.is_empty() && local.iter().all(|a| a.ip().is_loopback() && a.port() == 9), "{local:?}");
        assert_eq!(resolve(&r, "http://localhost:9/").unwrap(), local);
        assert_eq!(r.names.lock().len(), 1);
        assert!(resolve(&r, "http://no-such-host.invalid/").is_err());
        assert_eq!(r.names.lock().len(), 1, "a failed lookup is not kept");
    }

    #[test]
    fn addresses_that_refuse_a_connection_are_looked_up_again() {
        // A port nothing listens on (bound, then freed).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://localhost:{port}/tms");
        let (resolver, connector) = resolver_and_connector();
        let names = resolver.names.clone();
        assert!(!resolve(&resolver, &url).unwrap().is_empty());
        assert_eq!(names.lock().len(), 1, "kept after the lookup");
        let agent = ureq::Agent::with_parts(Config::default(), connector, resolver);
        let err = agent.get(&url).call().unwrap_err();
        assert!(names.lock().is_empty(), "still kept after connecting failed: {err}");
    }
}
