//! Which URLs the library may call. The dashboard forwards whatever URL the browser sends, so
//! without a list any operator (or script) could make the server call any host (SSRF).
//!
//! The path rule is strict, because the server behind the allowed prefix may normalize a path
//! differently from us (`..;/` on Java servers, `%5c` on IIS, double decoding): a path may hold
//! only printable ASCII, no `;` (path parameters), no `\`, no segment ending in `.` or a space
//! once decoded (so no `.` or `..`, nor `..%20`, which Windows servers trim to `..`), and no
//! percent-escape of `.`, `/`, `\`, `%`, `;`, a control character or a non-ASCII byte. Other
//! escapes (`%20`, `%40`, ...) pass. A query string may hold anything printable ASCII except a
//! (raw or escaped) control character.

use ureq::http::Uri;

use crate::error::{Error, ErrorKind, Result, shown};

/// One allowed cluster: scheme, host and port must match exactly; the path must be the prefix
/// itself or below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBase {
    scheme: String,
    host: String,
    port: u16,
    path_prefix: String,
}

/// A refused URL as messages quote it: in part, and without the credentials or secret query
/// fields it may carry (the message reaches the audit log and the caller).
fn quoted(url: &str) -> String {
    shown(&crate::net::secrets::redact_url_for_message(url))
}

fn not_allowed(message: String) -> Error {
    Error::new(ErrorKind::UrlNotAllowed, message)
}

/// The parts of an http(s) URL that decide where a request goes.
fn split(url: &str) -> Result<(String, String, u16, String)> {
    let uri: Uri = url.parse().map_err(|e| not_allowed(format!("{} is not a valid URL: {e}", quoted(url))))?;
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        "" => return Err(not_allowed(format!("{} is not an absolute http(s) URL", quoted(url)))),
        other => return Err(not_allowed(format!("scheme {} is not allowed; only http and https", shown(other)))),
    };
    let authority = uri.authority().ok_or_else(|| not_allowed(format!("{} has no host", quoted(url))))?;
    if authority.as_str().contains('@') {
        return Err(not_allowed(format!("{} carries credentials in the URL; refused", quoted(url))));
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return Err(not_allowed(format!("{} has no host", quoted(url))));
    }
    // `http` reads a port it cannot parse as "no port" (the scheme's default): refuse it.
    if let Some((_, port)) = authority.as_str().rsplit_once(':') {
        if !port.contains(']') && !port.is_empty() && port.parse::<u16>().is_err() {
            return Err(not_allowed(format!("{} has a port out of range; refused", quoted(url))));
        }
    }
    let path = uri.path().to_owned();
    if let Err(why) = check_path(&path) {
        return Err(not_allowed(format!("{} {why}; refused", quoted(url))));
    }
    if let Some(query) = uri.query() {
        if let Err(why) = check_query(query) {
            return Err(not_allowed(format!("{} {why}; refused", quoted(url))));
        }
    }
    Ok((scheme, host, authority.port_u16().unwrap_or(default_port), path))
}

/// The value of a `%XX` escape at the start of `rest`, if it is one.
fn escape_value(rest: &[u8]) -> Option<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    match rest {
        [b'%', h, l, ..] => Some((hex(*h)? * 16 + hex(*l)?) as u8),
        _ => None,
    }
}

fn check_path(path: &str) -> std::result::Result<(), &'static str> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b if b >= 0x80 => return Err("has a non-ASCII character in its path"),
            b if b < 0x20 || b == 0x7f => return Err("has a control character in its path"),
            b';' => return Err("has a `;` parameter in its path"),
            b'\\' => return Err("has a backslash in its path"),
            b'%' => match escape_value(&bytes[i..]) {
                None => return Err("has a malformed %-escape in its path"),
                Some(b'.' | b'/' | b'\\' | b'%' | b';') => return Err("has an encoded `.`, `/`, `\\`, `%` or `;` in its path"),
                Some(v) if !(0x20..0x7f).contains(&v) => {
                    return Err("has an encoded control or non-ASCII character in its path");
                }
                Some(_) => i += 2,
            },
            _ => {}
        }
        i += 1;
    }
    // Windows servers drop trailing dots and spaces from a segment (`..%20` becomes `..`):
    // no segment may end in either, once decoded.
    for seg in path.split('/') {
        let decoded = decode(seg);
        if decoded.ends_with(['.', ' ']) {
            return Err("has a segment ending in `.` or a space in its path (`.` and `..` included)");
        }
    }
    Ok(())
}

/// A path segment with its (already vetted, printable ASCII) %-escapes decoded.
fn decode(seg: &str) -> String {
    let bytes = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    let mut i = 0;
    while i < bytes.len() {
        match escape_value(&bytes[i..]) {
            Some(v) => {
                out.push(v as char);
                i += 3;
            }
            None => {
                out.push(bytes[i] as char);
                i += 1;
            }
        }
    }
    out
}

fn check_query(query: &str) -> std::result::Result<(), &'static str> {
    let bytes = query.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if !(0x20..0x7f).contains(&b) {
            return Err("has a control or non-ASCII character in its query");
        }
        if b == b'%' && escape_value(&bytes[i..]).is_some_and(|v| v < 0x20 || v == 0x7f) {
            return Err("has an encoded control character in its query");
        }
    }
    Ok(())
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
                "URL {} is not under any allowed cluster: add its base URL to the store's allowed_clusters \
                 (TMS_ALLOWED_CLUSTERS for tms.shared_store() and the drop-in modules)",
                quoted(url)
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
    fn the_strict_path_rule() {
        let list = Allowlist::new(&["http://host:8080/tms/".into()]).unwrap();
        for bad in [
            "http://host:8080/tms/..;/admin",
            "http://host:8080/tms/;jsessionid=1/x",
            "http://host:8080/tms/%5c../admin",
            "http://host:8080/tms/%5C../admin",
            "http://host:8080/tms/%252e%252e/admin",
            "http://host:8080/tms/%2e%2e/admin",
            "http://host:8080/tms/%2E/admin",
            "http://host:8080/tms/a%2fb",
            "http://host:8080/tms/%00/ok",
            "http://host:8080/tms/%0a/ok",
            "http://host:8080/tms/%e2%80%a5/admin",
            "http://host:8080/tms/\u{2025}/admin",
            "http://host:8080/tms/%zz",
            "http://host:8080/tms/./x",
            "http://host:8080/tms/x?a=%00",
            "http://host:8080/tms/x?a=\u{e9}",
            "http://host:8080/tms/..%20/admin",
            "http://host:8080/tms/.%20/x",
            "http://host:8080/tms/.../x",
            "http://host:8080/tms/v1./x",
            "http://host:8080/tms/a%20/x",
            "http://host:8080:99999/tms/x",
        ] {
            let err = list.check(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::UrlNotAllowed, "{bad}");
        }
        for ok in [
            "http://host:8080/tms/v1/set/action",
            "http://host:8080/tms/v1/status?cid=abc&app=ALL&x=a%20b&q=1,2",
            "http://host:8080/tms/v1/a%20b/c%40d",
            "http://host:8080/tms/v1/file.json",
            "http://host:8080/tms/v1/x?redirect=%2Fhome",
        ] {
            assert!(list.check(ok).is_ok(), "{ok}: {:?}", list.check(ok));
        }
    }

    #[test]
    fn an_empty_list_allows_nothing_and_bad_bases_are_refused() {
        assert!(Allowlist::new(&[]).unwrap().check("https://a.example/").is_err());
        assert_eq!(Allowlist::new(&["gopher://x".into()]).unwrap_err().kind, ErrorKind::InvalidInput);
        assert_eq!(Allowlist::new(&["http://a:99999/".into()]).unwrap_err().kind, ErrorKind::InvalidInput);
    }
}
