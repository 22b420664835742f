//! A PostgreSQL URL as the store takes it: `postgresql://user[:password]@host[:port]/db?params`
//! (also `postgres://`). tokio-postgres parses the usual parameters; the TLS modes it lacks
//! (`verify-ca`, `verify-full`, with `sslrootcert`) are taken out here. The password never leaves
//! this module: messages name the store by [`Location::shown`], which has none.

use std::str::FromStr;

use crate::error::{Error, ErrorKind, Result};

/// How the connection is protected (libpq's `sslmode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, the server's certificate not checked (libpq's default).
    Prefer,
    /// TLS or nothing; the certificate not checked (as libpq without a root certificate).
    Require,
    /// TLS, the certificate checked against the CA (`sslrootcert`, else the system's roots).
    VerifyCa { root_cert: Option<String> },
    /// As VerifyCa, and the certificate must name the host.
    VerifyFull { root_cert: Option<String> },
}

/// A parsed PostgreSQL URL.
#[derive(Clone)]
pub struct Location {
    pub config: postgres::Config,
    pub tls: TlsMode,
    shown: String,
    /// Every spelling of the URL's password (raw, decoded, encoded; from the userinfo and from
    /// a `password=` parameter), and the pieces of a sloppy one, for [`Location::scrub`].
    secrets: Vec<Secret>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Whether a store location is a PostgreSQL URL rather than a file path.
pub fn is_postgres_url(location: &str) -> bool {
    let lower = location.trim_start().to_ascii_lowercase();
    lower.starts_with("postgresql://") || lower.starts_with("postgres://")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Characters a URL's userinfo may hold as they are (RFC 3986's unreserved ones).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `text` percent-encoded for a userinfo part; an escape already there (`%` and two hex digits)
/// is kept, so a correctly encoded URL comes out as it went in.
fn encode_userinfo(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, &b) in bytes.iter().enumerate() {
        let escape = b == b'%' && bytes.len() > i + 2 && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit();
        if is_unreserved(b) || escape {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL with its user and password percent-encoded as they were meant, and every spelling
/// of the password. The userinfo runs from `://` to the *last* `@` before the query: a password
/// holding an unencoded `@`, `/`, `:` or `%` (`postgresql://u:Hunter2@Zq9@host/db`) would
/// otherwise end early, spill its tail into the host name and show up in "cannot connect to
/// ..." (libpq stops at the first `@`).
/// A text to keep out of messages: everywhere, or (a piece of a sloppy URL's password, which
/// may be an ordinary word such as `word` in `Pass?word`) only where it stands as a token of its
/// own, not inside a longer word such as "password authentication failed".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Secret {
    text: String,
    anywhere: bool,
}

fn normalize(url: &str) -> (String, Vec<Secret>) {
    let mut secrets: Vec<Secret> = Vec::new();
    let whole = |texts: &mut Vec<Secret>, t: String| texts.push(Secret { text: t, anywhere: true });
    // A password may hold an unencoded `?` too (`u:Pass?word@host/db`): when the text before the
    // first `?` has no `@` but a later `@` is followed by a host (no `=` or `&` before the next
    // `/` or `?`), the userinfo runs to that `@`.
    let split_at = match url.split_once("://") {
        Some((scheme, rest)) if !url.split('?').next().unwrap_or("").contains('@') => rest
            .rfind('@')
            .filter(|&at| {
                let host = rest[at + 1..].split(['/', '?']).next().unwrap_or("");
                !host.is_empty() && !host.contains(['=', '&'])
            })
            .and_then(|at| rest[at..].find('?').map(|q| scheme.len() + 3 + at + q)),
        _ => None,
    };
    let (before_query, query) = match split_at {
        Some(i) => (&url[..i], Some(&url[i + 1..])),
        None => match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        },
    };
    // Whatever stands between `://` and the URL's last `@` may be password, however it is
    // spelled or wherever it was cut: each piece of it is scrubbed from messages (the user
    // name and parameter names aside).
    if let Some((_, rest)) = url.split_once("://") {
        if let Some(at) = rest.rfind('@') {
            let userinfo = &rest[..at];
            let after_user = userinfo.split_once(':').map_or("", |(_, p)| p);
            secrets.extend(
                after_user
                    .split(['@', '?', '/', '&', '=', '#', ';', ':'])
                    .filter(|piece| piece.len() >= 4 && !URL_WORDS.contains(piece))
                    .flat_map(|piece| [piece.to_owned(), percent_decode(piece)])
                    .map(|text| Secret { text, anywhere: false }),
            );
        }
    }
    for pair in query.unwrap_or("").split('&') {
        if let Some(("password", value)) = pair.split_once('=') {
            whole(&mut secrets, value.to_owned());
            whole(&mut secrets, percent_decode(value));
        }
    }
    let rebuilt = match before_query.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => {
                let (user, password) = match rest[..at].split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (&rest[..at], None),
                };
                let mut out = format!("{scheme}://{}", encode_userinfo(user));
                if let Some(p) = password {
                    let encoded = encode_userinfo(p);
                    for t in [p.to_owned(), percent_decode(p), encoded.clone()] {
                        whole(&mut secrets, t);
                    }
                    out.push(':');
                    out.push_str(&encoded);
                }
                out.push_str(&rest[at..]);
                out
            }
            None => before_query.to_owned(),
        },
        None => before_query.to_owned(),
    };
    secrets.retain(|s| !s.text.is_empty());
    secrets.sort_by_key(|s| (std::cmp::Reverse(s.text.len()), !s.anywhere));
    secrets.dedup_by(|a, b| a.text == b.text);
    let url = match query {
        Some(q) => format!("{rebuilt}?{q}"),
        None => rebuilt,
    };
    (url, secrets)
}

/// When a connection attempt gives up, and how a dead peer is noticed, unless the URL says
/// otherwise (libpq's names; tokio-postgres reads each in seconds). Without them a server that
/// vanished without a reset (a failed host, a dropped route) would hold a connect for minutes
/// and a query until the kernel gives up (about 15 minutes on Linux): calls must fail within
/// seconds instead, and the pool then finds the next host of a multi-host URL.
const DEFAULT_TIMEOUTS: [(&str, u64); 5] = [
    ("connect_timeout", 5),
    ("keepalives_idle", 30),
    ("keepalives_interval", 10),
    ("keepalives_retries", 3),
    ("tcp_user_timeout", 30),
];

fn apply_default_timeouts(config: &mut postgres::Config, given: &[&str]) {
    let named = |key: &str| given.iter().any(|pair| pair.split('=').next() == Some(key));
    for (key, value) in DEFAULT_TIMEOUTS {
        if named(key) {
            continue;
        }
        let seconds = std::time::Duration::from_secs(value);
        match key {
            "connect_timeout" => config.connect_timeout(seconds),
            "keepalives_idle" => config.keepalives_idle(seconds),
            "keepalives_interval" => config.keepalives_interval(seconds),
            "keepalives_retries" => config.keepalives_retries(value as u32),
            _ => config.tcp_user_timeout(seconds),
        };
    }
}

/// Parameter names and words of a URL that are not secrets even when a sloppy URL puts them
/// where a password could be.
const URL_WORDS: &[&str] = &[
    "sslmode", "sslrootcert", "password", "options", "application_name", "target_session_attrs", "connect_timeout",
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_retries", "tcp_user_timeout", "dbname",
    "user", "host", "port", "disable", "prefer", "require", "verify-ca", "verify-full", "read-write", "postgresql",
    "postgres",
];

/// `message` with every spelling of a password in `secrets` replaced.
fn scrub_with(secrets: &[Secret], message: &str) -> String {
    let mut out = message.to_owned();
    for s in secrets {
        out = if s.anywhere { out.replace(s.text.as_str(), "[REDACTED]") } else { replace_tokens(&out, &s.text) };
    }
    out
}

/// `text` with each occurrence of `piece` that is not part of a longer word (letters or digits
/// on either side) replaced.
fn replace_tokens(text: &str, piece: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(piece) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + piece.len()..].chars().next();
        let inside_word = before.is_some_and(char::is_alphanumeric) || after.is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..at]);
        out.push_str(if inside_word { piece } else { "[REDACTED]" });
        rest = &rest[at + piece.len()..];
    }
    out.push_str(rest);
    out
}

impl Location {
    /// Parse a URL. Errors never quote the URL (it may hold a password), and no part of the
    /// password reaches one in any spelling (see [`normalize`]).
    pub fn parse(url: &str) -> Result<Location> {
        let (url, secrets) = normalize(url.trim());
        Self::parse_normalized(&url, &secrets)
            .map_err(|mut e| {
                e.message = scrub_with(&secrets, &e.message);
                e
            })
    }

    /// `message` without the URL's password, in any spelling: for every text that may quote
    /// what the driver says about this location.
    pub fn scrub(&self, message: &str) -> String {
        scrub_with(&self.secrets, message)
    }

    fn parse_normalized(url: &str, secrets: &[Secret]) -> Result<Location> {
        let invalid = |why: String| Error::new(ErrorKind::InvalidInput, format!("invalid PostgreSQL URL: {why}"));
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode: Option<String> = None;
        let mut root_cert: Option<String> = None;
        let mut kept: Vec<&str> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => mode = Some(percent_decode(v)),
                "sslrootcert" => root_cert = Some(percent_decode(v)),
                _ => kept.push(pair),
            }
        }
        let tls = match mode.as_deref() {
            None | Some("prefer") => TlsMode::Prefer,
            Some("disable") => TlsMode::Disable,
            Some("require") => TlsMode::Require,
            Some("verify-ca") => TlsMode::VerifyCa { root_cert: root_cert.clone() },
            Some("verify-full") => TlsMode::VerifyFull { root_cert: root_cert.clone() },
            Some(other) => {
                return Err(invalid(format!(
                    "sslmode {} is not one of disable, prefer, require, verify-ca, verify-full",
                    crate::error::shown(other)
                )));
            }
        };
        if root_cert.is_some() && !matches!(tls, TlsMode::VerifyCa { .. } | TlsMode::VerifyFull { .. }) {
            return Err(invalid("sslrootcert is only used with sslmode=verify-ca or verify-full".into()));
        }
        let mut rebuilt = base.to_owned();
        if !kept.is_empty() {
            rebuilt.push('?');
            rebuilt.push_str(&kept.join("&"));
        }
        let mut config = postgres::Config::from_str(&rebuilt).map_err(|e| invalid(e.to_string()))?;
        config.ssl_mode(match tls {
            TlsMode::Disable => postgres::config::SslMode::Disable,
            TlsMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        if config.get_hosts().is_empty() {
            return Err(invalid("it names no host".into()));
        }
        apply_default_timeouts(&mut config, &kept);
        let shown = scrub_with(secrets, &Self::show(&config));
        Ok(Location { config, tls, shown, secrets: secrets.to_vec() })
    }

    /// `postgresql://user@host:port/db`, for messages: never the password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn show(config: &postgres::Config) -> String {
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgresql://{}@{host}:{port}/{}",
            config.get_user().unwrap_or(""),
            config.get_dbname().unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_the_tls_modes_libpq_knows_and_never_show_the_password() {
        let l = Location::parse("postgresql://tms:s3cr3t@db.example:6432/tms?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x").unwrap();
        assert_eq!(l.tls, TlsMode::VerifyFull { root_cert: Some("/etc/ca.pem".into()) });
        assert_eq!(l.shown(), "postgresql://tms@db.example:6432/tms");
        assert!(!format!("{l:?}").contains("s3cr3t"));
        assert_eq!(Location::parse("postgres://u@h/d").unwrap().tls, TlsMode::Prefer);
        for bad in ["postgresql://u:pw@h/d?sslmode=bogus", "postgresql://u:pw@h/d?sslrootcert=x", "postgresql://u:pw@h/d?nope=1"] {
            let e = Location::parse(bad).unwrap_err();
            assert!(!e.message.contains("pw@"), "{}", e.message);
        }
        assert!(is_postgres_url("postgresql://x") && is_postgres_url("POSTGRES://x") && !is_postgres_url("/tmp/jobs.db"));
    }

    #[test]
    fn sloppy_passwords_are_encoded_as_meant_and_never_shown() {
        for (url, host) in [
            ("postgresql://tmsu:Hunter2@Zq9Secret@db.example/tms", "db.example"),
            ("postgresql://tmsu:Hu:nt/er2%zz@Zq9Secret@db.example:6432/tms?sslmode=disable", "db.example"),
            ("postgresql://tmsu:Hunter2%40Zq9Secret@h1:5432,h2:5433/tms?target_session_attrs=read-write", "h1"),
            ("postgres://tmsu@db.example/tms?password=Hunter2@Zq9Secret", "db.example"),
            ("postgresql://tmsu:Pass?word@Zq9Secret@db.example/tms?sslmode=disable", "db.example"),
        ] {
            let l = Location::parse(url).unwrap_or_else(|e| panic!("{url}: {}", e.message));
            assert_eq!(l.shown(), format!("postgresql://tmsu@{host}:{}/tms", l.config.get_ports()[0]), "{url}");
            assert!(matches!(&l.config.get_hosts()[0], postgres::config::Host::Tcp(h) if h == host), "{url}");
            assert!(!format!("{l:?}").contains("Zq9") && !l.shown().contains("Hunter"), "{url}");
            assert!(!l.scrub(url).contains("Zq9"), "{url}: {}", l.scrub(url));
            // A piece of a sloppy password that is also a word is kept inside other words.
            assert!(l.scrub("FATAL: password authentication failed").contains("password authentication"));
        }
        let l = Location::parse("postgresql://u:p%40ss@h/d").unwrap();
        assert_eq!(l.config.get_password(), Some(&b"p@ss"[..]));
        // Timeouts: the URL's own, else ones that fail calls within seconds.
        assert_eq!(l.config.get_connect_timeout(), Some(&std::time::Duration::from_secs(5)));
        assert_eq!(l.config.get_tcp_user_timeout(), Some(&std::time::Duration::from_secs(30)));
        let l = Location::parse("postgresql://u@h/d?connect_timeout=2&keepalives_idle=7").unwrap();
        assert_eq!(l.config.get_connect_timeout(), Some(&std::time::Duration::from_secs(2)));
        assert_eq!(l.config.get_keepalives_idle(), std::time::Duration::from_secs(7));
        // Broken URLs: the error names the problem, never a piece of the password.
        for url in ["postgresql://u:Hunter2@Zq9Secret@h:notaport/d", "postgresql://u:Hunter2@Zq9Secret@/d",
                    "postgresql://u:Hunter2@Zq9Secret@h/d?bogus=Zq9Secret",
                    "postgresql://tmsu:Hunter2?sslmode=Zq9Secret@h/db", "postgresql://u:Hu/nt?er@Zq9Secret@h:x/d"] {
            let e = Location::parse(url).unwrap_err();
            assert!(!e.message.contains("Zq9") && !e.message.contains("Hunter"), "{url}: {}", e.message);
        }
    }
}
