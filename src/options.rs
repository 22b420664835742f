//! How a store is opened. Every option has a safe default; hosts pass only what they change
//! (the C ABI and Python take them as a JSON object / keyword arguments with these names).

use serde::Deserialize;

use crate::error::{Error, Result};

/// `PRAGMA synchronous` for both files. FULL (the default) makes every acknowledged write survive
/// power loss; NORMAL in WAL mode may lose the last transactions on power loss but never corrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

impl Synchronous {
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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    pub synchronous: Synchronous,
    /// How long a statement waits for another connection's lock before giving up.
    pub busy_timeout_ms: u32,
    /// Size the WAL file is truncated back to after a checkpoint.
    pub journal_size_limit_bytes: i64,
    /// Idle connections kept open per database file.
    pub max_idle_connections: usize,
    /// Cap on each database file's size in pages (`PRAGMA max_page_count`); 0 = SQLite's own
    /// limit. A write past it fails with TMS_STATUS_FULL and changes nothing.
    pub max_page_count: u32,
    /// Base URLs (scheme, host, port and path prefix) Set Action and proxy requests may go to.
    /// Anything else is refused before a request leaves. Empty: nothing may be called.
    pub allowed_clusters: Vec<String>,
    /// Whole-request limit for a remote call, connect included.
    pub request_timeout_s: u64,
    /// Limit for opening the connection to a cluster.
    pub connect_timeout_s: u64,
    /// Most bytes of a cluster's answer that are read; the rest is cut (and the cut reported).
    pub max_response_bytes: u64,
    /// Key for the audit chain's HMAC-SHA256. Kept in memory only, never written anywhere;
    /// without it rows are chained with plain SHA-256.
    pub audit_hmac_key: Option<Secret>,
    /// A job still IN_PROGRESS this long after it was last touched was left by a process that
    /// died mid-call; it is marked FAILED (outcome unknown) when a store opens or on demand.
    pub interrupted_after_s: u64,
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
        }
    }
}

impl StoreOptions {
    /// Parse a JSON object of options; absent keys keep their defaults, unknown keys are refused.
    pub fn from_json(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::default());
        }
        let options: StoreOptions = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("invalid store options: {e}")))?;
        options.validate()?;
        Ok(options)
    }

    /// Refuse values that cannot work (a zero timeout, an allowlist entry that is not a URL).
    pub fn validate(&self) -> Result<()> {
        if self.request_timeout_s == 0 || self.connect_timeout_s == 0 {
            return Err(Error::invalid("invalid store options: timeouts must be at least 1 second"));
        }
        if self.max_response_bytes == 0 {
            return Err(Error::invalid("invalid store options: max_response_bytes must be positive"));
        }
        if self.interrupted_after_s <= self.request_timeout_s {
            return Err(Error::invalid(
                "invalid store options: interrupted_after_s must exceed request_timeout_s, or live \
                 calls would be marked interrupted",
            ));
        }
        if self.max_idle_connections == 0 {
            return Err(Error::invalid("invalid store options: max_idle_connections must be positive"));
        }
        for base in &self.allowed_clusters {
            crate::set_action::allowlist::ClusterBase::parse(base)
                .map_err(|e| e.context("invalid store options: allowed_clusters"))?;
        }
        Ok(())
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
    }
}
