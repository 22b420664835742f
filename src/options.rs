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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            synchronous: Synchronous::Full,
            busy_timeout_ms: 5_000,
            journal_size_limit_bytes: 64 * 1024 * 1024,
            max_idle_connections: 8,
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
        serde_json::from_str(text).map_err(|e| Error::invalid(format!("invalid store options: {e}")))
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
