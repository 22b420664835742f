//! Where a cluster's host is: ureq's resolver without a thread per request.
//!
//! ureq resolves the host before every request, also when a kept-alive connection to it will
//! carry the request, and with a timeout set (the library always sets one) its default resolver
//! does every lookup on a new thread, so that the lookup can be abandoned. Per Set Action that was
//! a thread created and joined for nothing. Here an IP address in the URL is taken as it is (no
//! lookup, as the default resolver's lookup of it did not look anything up either), and a host
//! name's addresses are kept for a few seconds, shorter than ureq keeps an idle connection (15
//! s): a connection made with them would have been kept and reused for at least as long.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a host name's addresses are used without a new lookup.
const KEEP_NAMES: Duration = Duration::from_secs(5);
/// Most host names remembered (a store calls a few clusters; a full map starts again).
const MAX_NAMES: usize = 64;

#[derive(Debug, Default)]
pub struct ClusterResolver {
    lookup: DefaultResolver,
    names: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for ClusterResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host_port = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        let Some(host_port) = host_port else {
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
        if let Some((at, addrs)) = self.names.lock().unwrap_or_else(|p| p.into_inner()).get(&host_port) {
            if now.duration_since(*at) < KEEP_NAMES {
                return Ok(addrs.clone());
            }
        }
        // A failed lookup is not kept: the next request looks again.
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
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
        assert!(r.names.lock().unwrap().is_empty(), "no lookup for an address");
        let local = resolve(&r, "http://localhost:9/").unwrap();
        assert!(!local.is_empty() && local.iter().all(|a| a.ip().is_loopback() && a.port() == 9), "{local:?}");
        assert_eq!(resolve(&r, "http://localhost:9/").unwrap(), local);
        assert_eq!(r.names.lock().unwrap().len(), 1);
        assert!(resolve(&r, "http://no-such-host.invalid/").is_err());
        assert_eq!(r.names.lock().unwrap().len(), 1, "a failed lookup is not kept");
    }
}
