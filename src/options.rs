//! How a store is opened. Every option has a safe default and a documented range; hosts pass
//! only what they change (the C ABI and Python take them as a JSON object / keyword arguments
//! with these names). A value outside its range is refused at open with `InvalidInput`, so no
//! arithmetic on an accepted value can overflow later.

use serde::Deserialize;

use crate::error::{Error, Result};

/// `PRAGMA synchronous` for both files. FULL (the default) makes every acknowledged write survive
/// power loss; NORMAL in WAL mode may lose the last transactions on power loss but never corrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Synchronous {
    /// Sync on every commit (the default).
    #[default]
    Full,
    /// Sync at checkpoints only.
    Normal,
}

impl Synchronous {
    /// The pragma's value.
    pub fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// A secret option value: deserialized from a string, never shown by `{:?}`.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// How a store is opened; `Default` is the safe choice for everything.
///
/// ```
/// use tms::{StoreOptions, Synchronous};
/// let options = StoreOptions::from_json(r#"{"synchronous": "NORMAL", "busy_timeout_ms": 2000}"#)?;
/// assert_eq!(options.synchronous, Synchronous::Normal);
/// assert!(StoreOptions::from_json(r#"{"busy_timeout_ms": 4294967296}"#).is_err()); // out of range
/// # Ok::<(), tms::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// `"FULL"` (default) or `"NORMAL"`.
    pub synchronous: Synchronous,
    /// How long a statement waits for another process's lock before giving up, in ms.
    /// 0 to 600000 (10 minutes); default 5000.
    pub busy_timeout_ms: u64,
    /// Size the WAL file is truncated back to after a checkpoint, in bytes. -1 (never truncate)
    /// to 2^40; default 64 MiB.
    pub journal_size_limit_bytes: i64,
    /// Idle connections kept open per database file. 1 to 256; default 8.
    pub max_idle_connections: u64,
    /// Cap on each database file's size in pages (`PRAGMA max_page_count`); 0 = SQLite's own
    /// limit. 0 to 4294967294; default 0. A write past it fails with TMS_STATUS_FULL and changes
    /// nothing.
    pub max_page_count: u64,
    /// Base URLs (scheme, host, port and path prefix) Set Action and proxy requests may go to.
    /// Anything else is refused before a request leaves. At most 256 entries; default empty:
    /// nothing may be called.
    pub allowed_clusters: Vec<String>,
    /// Whole-request limit for a remote call, connect included, in seconds. 1 to 3600; default 35.
    pub request_timeout_s: u64,
    /// Limit for opening the connection to a cluster, in seconds. 1 to 3600; default 10.
    pub connect_timeout_s: u64,
    /// Most bytes of a cluster's answer that are read; the rest is cut (and the cut reported).
    /// 1 to 1 GiB; default 8 MiB.
    pub max_response_bytes: u64,
    /// Key for the audit chain's HMAC-SHA256, 16 to 4096 bytes. Kept in memory only, never
    /// written anywhere; without it rows are chained with plain SHA-256. A chain written with a
    /// key refuses appends from a store opened without it (or with another key).
    pub audit_hmac_key: Option<Secret>,
    /// A job still IN_PROGRESS this long after the library last wrote it was left by a process
    /// that died mid-call; it is marked FAILED (outcome unknown) when a store opens or on demand.
    /// Must exceed request_timeout_s; at most 30 days (2592000); default 600.
    pub interrupted_after_s: u64,
    /// A PEM file of extra CA certificates trusted for https clusters, on top of the system's
    /// trust store (an internal CA). Default none.
    pub ca_bundle: Option<String>,
    /// Create the store when it is missing (default true: an app's first start creates its
    /// files, or its tables in the PostgreSQL schema). false opens an existing store only: a
    /// missing file (or a PostgreSQL schema without the store's tables) is refused with
    /// `CantOpen` naming it, and nothing is created (the `tms` tool opens stores this way, so a
    /// mistyped path is an error, not a new empty store).
    pub create: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            synchronous: Synchronous::Full,
            busy_timeout_ms: 5_000,
            journal_size_limit_bytes: 64 * 1024 * 1024,
            max_idle_connections: 8,
            max_page_count: 0,
            allowed_clusters: Vec::new(),
            request_timeout_s: 35,
            connect_timeout_s: 10,
            max_response_bytes: 8 * 1024 * 1024,
            interrupted_after_s: 600,
            audit_hmac_key: None,
            ca_bundle: None,
            create: true,
        }
    }
}

/// serde names the position of a bad value, not its key: find the key whose value alone fails.
fn name_the_key(text: &str, err: serde_json::Error) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) {
        for (key, value) in map {
            let one = serde_json::Value::Object([(key.clone(), value)].into_iter().collect());
            if let Err(e) = serde_json::from_value::<StoreOptions>(one) {
                return format!("invalid store options: {key}: {e}");
            }
        }
    }
    format!("invalid store options: {err}")
}

/// One option's accepted range, checked by [`StoreOptions::validate`].
fn in_range<T: PartialOrd + std::fmt::Display>(name: &str, value: T, lo: T, hi: T) -> Result<()> {
    if value < lo || value > hi {
        return Err(Error::invalid(format!(
            "invalid store options: {name} = {value} is out of range {lo} to {hi}"
        )));
    }
    Ok(())
}

/// Most entries in `allowed_clusters`.
const MAX_CLUSTERS: usize = 256;
/// Shortest and longest accepted HMAC key, in bytes.
const HMAC_KEY_BYTES: (usize, usize) = (16, 4096);

impl StoreOptions {
    /// Parse a JSON object of options; absent keys keep their defaults, unknown keys are refused,
    /// and every value is checked against its range.
    pub fn from_json(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::default());
        }
        // serde would also fill the struct from a JSON array, by position: only an object names
        // what it sets.
        if !text.starts_with('{') {
            return Err(Error::invalid("invalid store options: expected a JSON object"));
        }
        let options: StoreOptions = serde_json::from_str(text).map_err(|e| Error::invalid(name_the_key(text, e)))?;
        options.validate()?;
        Ok(options)
    }

    /// Refuse values outside their documented range, and combinations that cannot work.
    pub fn validate(&self) -> Result<()> {
        in_range("busy_timeout_ms", self.busy_timeout_ms, 0, 600_000)?;
        in_range("journal_size_limit_bytes", self.journal_size_limit_bytes, -1, 1 << 40)?;
        in_range("max_idle_connections", self.max_idle_connections, 1, 256)?;
        in_range("max_page_count", self.max_page_count, 0, 4_294_967_294)?;
        in_range("request_timeout_s", self.request_timeout_s, 1, 3_600)?;
        in_range("connect_timeout_s", self.connect_timeout_s, 1, 3_600)?;
        in_range("max_response_bytes", self.max_response_bytes, 1, 1 << 30)?;
        in_range("interrupted_after_s", self.interrupted_after_s, 2, 30 * 24 * 3_600)?;
        if self.interrupted_after_s <= self.request_timeout_s {
            return Err(Error::invalid(
                "invalid store options: interrupted_after_s must exceed request_timeout_s, or live \
                 calls would be marked interrupted",
            ));
        }
        if let Some(key) = &self.audit_hmac_key {
            let (lo, hi) = HMAC_KEY_BYTES;
            if key.0.len() < lo || key.0.len() > hi {
                return Err(Error::invalid(format!(
                    "invalid store options: audit_hmac_key is {} bytes; it must be {lo} to {hi}",
                    key.0.len()
                )));
            }
        }
        if self.allowed_clusters.len() > MAX_CLUSTERS {
            return Err(Error::invalid(format!(
                "invalid store options: allowed_clusters has {} entries; at most {MAX_CLUSTERS}",
                self.allowed_clusters.len()
            )));
        }
        for base in &self.allowed_clusters {
            crate::net::allowlist::ClusterBase::parse(base)
                .map_err(|e| e.context("invalid store options: allowed_clusters"))?;
        }
        if let Some(path) = &self.ca_bundle {
            crate::net::ca_bundle::read_ca_bundle(path)
                .map_err(|e| e.context("invalid store options: ca_bundle"))?;
        }
        Ok(())
    }

    /// The busy timeout as a Duration (in range by `validate`).
    pub fn busy_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.busy_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_with_defaults_and_refuse_unknown_keys() {
        let o = StoreOptions::from_json(r#"{"synchronous":"NORMAL"}"#).unwrap();
        assert_eq!(o.synchronous, Synchronous::Normal);
        assert_eq!(o.busy_timeout_ms, 5_000);
        assert!(StoreOptions::from_json(r#"{"synchronus":"NORMAL"}"#).is_err());
        assert!(StoreOptions::from_json(r#"{"synchronous":"OFF"}"#).is_err());
        assert_eq!(StoreOptions::from_json("").unwrap(), StoreOptions::default());
        assert!(StoreOptions::from_json("[]").is_err() && StoreOptions::from_json(r#"["FULL", 1]"#).is_err());
    }

    #[test]
    fn every_numeric_option_takes_its_bounds_and_refuses_one_past_them_and_negatives() {
        // (name, lowest, highest); request_timeout_s is checked with interrupted_after_s above it.
        let ranges: [(&str, i128, i128); 8] = [
            ("busy_timeout_ms", 0, 600_000),
            ("journal_size_limit_bytes", -1, 1 << 40),
            ("max_idle_connections", 1, 256),
            ("max_page_count", 0, 4_294_967_294),
            ("request_timeout_s", 1, 3_600),
            ("connect_timeout_s", 1, 3_600),
            ("max_response_bytes", 1, 1 << 30),
            ("interrupted_after_s", 3_601, 2_592_000),
        ];
        let open = |key: &str, value: i128| {
            let others = if key == "interrupted_after_s" { r#""request_timeout_s": 3600, "#.to_string() } else { String::new() };
            let extra = if key == "request_timeout_s" { r#", "interrupted_after_s": 2592000"# } else { "" };
            StoreOptions::from_json(&format!("{{{others}\"{key}\": {value}{extra}}}"))
        };
        for (key, lo, hi) in ranges {
            assert!(open(key, lo).is_ok(), "{key}={lo}");
            assert!(open(key, hi).is_ok(), "{key}={hi}");
            for bad in [lo - 1, hi + 1, -1, i128::from(i64::MIN), i128::from(u64::MAX) + 1] {
                if (lo..=hi).contains(&bad) {
                    continue;
                }
                let err = open(key, bad).unwrap_err();
                assert_eq!(err.kind, crate::ErrorKind::InvalidInput, "{key}={bad}");
                assert!(err.message.contains(key), "{key}={bad}: {}", err.message);
            }
        }
        // The HMAC key's length: 16 and 4096 bytes taken, 15 and 4097 refused.
        for (n, ok) in [(15, false), (16, true), (4096, true), (4097, false)] {
            let text = format!(r#"{{"audit_hmac_key": "{}"}}"#, "k".repeat(n));
            assert_eq!(StoreOptions::from_json(&text).is_ok(), ok, "key of {n} bytes");
        }
        // allowed_clusters: 256 entries taken, 257 refused.
        for (n, ok) in [(256, true), (257, false)] {
            let list: Vec<String> = (0..n).map(|i| format!("\"https://c{i}.example/tms/\"")).collect();
            assert_eq!(StoreOptions::from_json(&format!(r#"{{"allowed_clusters": [{}]}}"#, list.join(","))).is_ok(), ok, "{n}");
        }
    }

    #[test]
    fn every_numeric_option_refuses_values_past_its_range() {
        let huge = u64::MAX.to_string();
        for (key, bad) in [
            ("busy_timeout_ms", "600001"),
            ("busy_timeout_ms", "2147483648"),
            ("busy_timeout_ms", huge.as_str()),
            ("journal_size_limit_bytes", "-2"),
            ("journal_size_limit_bytes", "9223372036854775807"),
            ("max_idle_connections", "0"),
            ("max_idle_connections", huge.as_str()),
            ("max_page_count", "4294967295"),
            ("request_timeout_s", "0"),
            ("request_timeout_s", huge.as_str()),
            ("connect_timeout_s", huge.as_str()),
            ("connect_timeout_s", "0"),
            ("max_response_bytes", "0"),
            ("max_response_bytes", huge.as_str()),
            ("interrupted_after_s", huge.as_str()),
            ("interrupted_after_s", "9223372036854775808"),
            ("interrupted_after_s", "-1"),
            ("busy_timeout_ms", "1e3"),
            ("busy_timeout_ms", "18446744073709551616"),
        ] {
            let err = StoreOptions::from_json(&format!("{{\"{key}\": {bad}}}")).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::InvalidInput, "{key}={bad}");
            assert!(err.message.contains(key), "{key}={bad}: {}", err.message);
        }
        assert!(StoreOptions::from_json(r#"{"audit_hmac_key":"short"}"#).is_err());
        assert!(StoreOptions::from_json(r#"{"request_timeout_s":700,"interrupted_after_s":600}"#).is_err());
        let edge = StoreOptions::from_json(
            r#"{"busy_timeout_ms":600000,"request_timeout_s":3600,"connect_timeout_s":3600,
                "interrupted_after_s":2592000,"max_response_bytes":1073741824,"max_idle_connections":256,
                "max_page_count":4294967294,"journal_size_limit_bytes":-1}"#,
        );
        assert!(edge.is_ok(), "{edge:?}");
    }
}
