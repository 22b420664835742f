//! The audit log's hash chain. Each new row carries its chain sequence number, the previous
//! row's hash and its own hash over both and its fields, so altering, removing or inserting a row
//! breaks the chain where it happened. With a key the hash is HMAC-SHA256 (the key lives only in
//! the host's memory, never in the database), else plain SHA-256.

use ring::{digest, hmac};
use serde_json::json;

/// The `prev` of the first row of a chain.
pub const GENESIS: &str = "genesis";
/// action_type of the row `clear_audit_logs` leaves: it records the reset and continues the
/// chain from the last row that was cleared.
pub const RESET_ACTION: &str = "audit_reset";
/// user_id of that row.
pub const RESET_USER: &str = "system";

/// The fields of an audit row that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainFields<'a> {
    pub seq: i64,
    pub prev: &'a str,
    pub user_id: &'a str,
    pub action_type: &'a str,
    pub customer_ids: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub ip_address: Option<&'a str>,
    pub status: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub duration_ms: Option<i64>,
}

/// How rows are hashed: with the host's key, or without.
#[derive(Clone, Default)]
pub struct ChainKey(Option<hmac::Key>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ChainKey(hmac)" } else { "ChainKey(none)" })
    }
}

const SHA_PREFIX: &str = "sha256:";
const HMAC_PREFIX: &str = "hmac-sha256:";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ChainKey {
    pub fn new(secret: Option<&str>) -> ChainKey {
        ChainKey(secret.filter(|s| !s.is_empty()).map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes())))
    }

    /// The hash of a row, prefixed with its algorithm (`sha256:` or `hmac-sha256:`).
    pub fn hash(&self, f: &ChainFields<'_>) -> String {
        let canonical = json!([
            f.seq, f.prev, f.user_id, f.action_type, f.customer_ids, f.timestamp, f.ip_address,
            f.status, f.error_message, f.duration_ms
        ])
        .to_string();
        match &self.0 {
            Some(key) => format!("{HMAC_PREFIX}{}", hex(hmac::sign(key, canonical.as_bytes()).as_ref())),
            None => format!("{SHA_PREFIX}{}", hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())),
        }
    }

    /// Whether this key can check a stored hash (an HMAC row needs the key).
    pub fn can_verify(&self, stored: &str) -> bool {
        !stored.starts_with(HMAC_PREFIX) || self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(user: &str) -> ChainFields<'_> {
        ChainFields {
            seq: 1, prev: GENESIS, user_id: user, action_type: "Trans-Begin", customer_ids: None,
            timestamp: Some("2026-01-01 00:00:00"), ip_address: None, status: Some("success"),
            error_message: None, duration_ms: Some(3),
        }
    }

    #[test]
    fn hashes_depend_on_every_field_and_the_key() {
        let plain = ChainKey::new(None);
        let a = plain.hash(&fields("alice"));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        assert_eq!(a, plain.hash(&fields("alice")));
        assert_ne!(a, plain.hash(&fields("alicf")));
        assert_ne!(a, plain.hash(&ChainFields { seq: 2, ..fields("alice") }));
        assert_ne!(a, plain.hash(&ChainFields { duration_ms: None, ..fields("alice") }));
        let keyed = ChainKey::new(Some("k1"));
        let h = keyed.hash(&fields("alice"));
        assert!(h.starts_with("hmac-sha256:"));
        assert_ne!(h, ChainKey::new(Some("k2")).hash(&fields("alice")));
        assert!(!plain.can_verify(&h) && keyed.can_verify(&h) && keyed.can_verify(&a));
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        let d = digest::digest(&digest::SHA256, b"abc");
        assert_eq!(hex(d.as_ref()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
