//! Which URLs the library may call. The dashboard forwards whatever URL the browser sends, so
//! without a list any operator (or script) could make the server call any host (SSRF).

use ureq::http::Uri;

use crate::error::{Error, ErrorKind, Result};

/// One allowed cluster: scheme, host and port must match exactly; the path must be the prefix
/// itself or below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBase {
    scheme: String,
    host: String,
    port: u16,
    path_prefix: String,
}

fn not_allowed(message: String) -> Error {
    Error::new(ErrorKind::UrlNotAllowed, message)
}

/// The parts of an http(s) URL that decide where a request goes.
fn split(url: &str) -> Result<(String, String, u16, String)> {
    let uri: Uri = url.parse().map_err(|e| not_allowed(format!("{url:?} is not a valid URL: {e}")))?;
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        "" => return Err(not_allowed(format!("{url:?} is not an absolute http(s) URL"))),
        other => return Err(not_allowed(format!("scheme {other:?} is not allowed; only http and https"))),
    };
    let authority = uri.authority().ok_or_else(|| not_allowed(format!("{url:?} has no host")))?;
    if authority.as_str().contains('@') {
        return Err(not_allowed(format!("{url:?} carries credentials in the URL; refused")));
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return Err(not_allowed(format!("{url:?} has no host")));
    }
    let path = uri.path().to_owned();
    let dotted = path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase();
        seg == "." || seg == ".." || seg.contains("%2e") || seg.contains("%2f") || seg.contains('\\')
    });
    if dotted {
        return Err(not_allowed(format!("{url:?} has a relative or encoded path segment; refused")));
    }
    Ok((scheme, host, authority.port_u16().unwrap_or(default_port), path))
}

impl ClusterBase {
    pub fn parse(base: &str) -> Result<ClusterBase> {
        let (scheme, host, port, path) = split(base.trim()).map_err(|e| Error::invalid(e.message))?;
        Ok(ClusterBase { scheme, host, port, path_prefix: path.trim_end_matches('/').to_owned() })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16, path: &str) -> bool {
        self.scheme == scheme
            && self.host == host
            && self.port == port
            && (self.path_prefix.is_empty()
                || path == self.path_prefix
                || path.strip_prefix(&self.path_prefix).is_some_and(|rest| rest.starts_with('/')))
    }
}

/// The configured cluster bases.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    bases: Vec<ClusterBase>,
}

impl Allowlist {
    pub fn new(bases: &[String]) -> Result<Allowlist> {
        Ok(Allowlist { bases: bases.iter().map(|b| ClusterBase::parse(b)).collect::<Result<_>>()? })
    }

    /// Ok when `url` is http(s) and under one of the bases; `UrlNotAllowed` otherwise.
    pub fn check(&self, url: &str) -> Result<()> {
        let (scheme, host, port, path) = split(url)?;
        if self.bases.iter().any(|b| b.allows(&scheme, &host, port, &path)) {
            Ok(())
        } else {
            Err(not_allowed(format!(
                "URL {url:?} is not under any allowed cluster (configure allowed_clusters)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_under_a_configured_base_pass() {
        let list = Allowlist::new(&["https://Cluster.example/tms/".into(), "http://127.0.0.1:8080".into()]).unwrap();
        for ok in [
            "https://cluster.example/tms/v1/set/action",
            "https://CLUSTER.example:443/tms",
            "http://127.0.0.1:8080/anything?x=1",
        ] {
            assert!(list.check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://cluster.example/tmsx/v1",
            "https://cluster.example/other",
            "http://cluster.example/tms/v1",
            "https://cluster.example:8443/tms/v1",
            "https://evil.example/tms/v1",
            "https://cluster.example.evil/tms/v1",
            "https://user:pw@cluster.example/tms/v1",
            "https://cluster.example/tms/../admin",
            "https://cluster.example/tms/%2e%2e/admin",
            "http://127.0.0.1:8081/",
            "ftp://cluster.example/tms/",
            "file:///etc/passwd",
            "/tms/v1",
            "not a url",
            "",
        ] {
            let err = list.check(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::UrlNotAllowed, "{bad}");
        }
    }

    #[test]
    fn an_empty_list_allows_nothing_and_bad_bases_are_refused() {
        assert!(Allowlist::new(&[]).unwrap().check("https://a.example/").is_err());
        assert_eq!(Allowlist::new(&["gopher://x".into()]).unwrap_err().kind, ErrorKind::InvalidInput);
    }
}
