//! The audit log's hash chain. Each new row carries its chain sequence number, the previous
//! row's hash and its own hash over both and its fields, so altering, removing or inserting a row
//! breaks the chain where it happened. With a key the hash is HMAC-SHA256 (the key lives only in
//! the host's memory, never in the database), else plain SHA-256.

use ring::{digest, hmac};
use serde_json::json;

/// The `prev` of the first row of a chain written before the chain committed to the rows that
/// came before it (schema v2). Such a chain commits to them with a later [`DIGEST_ACTION`] row.
pub const GENESIS: &str = "genesis";
/// action_type of the row `clear_audit_logs` leaves: it records the reset and continues the
/// chain from the last row that was cleared.
pub const RESET_ACTION: &str = "audit_reset";
/// action_type of the row that commits an older chain to the rows written before it began
/// (`error_message` holds the [`Commitment`]).
pub const DIGEST_ACTION: &str = "audit_legacy_digest";
/// user_id of the library's own rows (resets and digests).
pub const RESET_USER: &str = "system";
/// Action types only the library itself writes; every other writer is refused them.
pub(crate) const RESERVED_ACTIONS: [&str; 2] = [RESET_ACTION, DIGEST_ACTION];

/// What a chain commits to about the rows written before it began (legacy rows): how many there
/// were and a SHA-256 over all of them in id order. Any row added among them (at any id, -1 and
/// 0 included), altered or removed changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitment {
    pub rows: i64,
    pub sha256: String,
}

impl Commitment {
    /// Nothing came before the chain.
    pub fn empty() -> Commitment {
        LegacyDigest::default().finish()
    }

    /// `rows=N;sha256=HEX`, as a digest row's error_message holds it.
    pub fn text(&self) -> String {
        format!("rows={};sha256={}", self.rows, self.sha256)
    }

    /// The `prev` of a chain's first row: `genesis;rows=N;sha256=HEX`.
    pub fn genesis(&self) -> String {
        format!("{GENESIS};{}", self.text())
    }

    /// Parse [`Commitment::text`].
    pub fn parse(text: &str) -> Option<Commitment> {
        let rest = text.strip_prefix("rows=")?;
        let (rows, hash) = rest.split_once(";sha256=")?;
        let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        Some(Commitment { rows: rows.parse().ok()?, sha256: hash.to_owned() }).filter(|_| valid)
    }

    /// What a first row's `prev` commits to: a plain `genesis` (schema v2) committed to nothing.
    pub fn from_genesis(prev: &str) -> Option<Commitment> {
        if prev == GENESIS {
            return Some(Commitment::empty());
        }
        Commitment::parse(prev.strip_prefix(GENESIS)?.strip_prefix(';')?)
    }
}

/// Builds a [`Commitment`] from the unchained rows, fed in id order.
#[derive(Clone)]
pub struct LegacyDigest {
    rows: i64,
    ctx: digest::Context,
}

impl Default for LegacyDigest {
    fn default() -> Self {
        LegacyDigest { rows: 0, ctx: digest::Context::new(&digest::SHA256) }
    }
}

impl LegacyDigest {
    /// Add one row: its id and every legacy column, as a canonical JSON line.
    pub fn add(&mut self, id: i64, columns: &[serde_json::Value]) {
        let line = json!([id, columns]).to_string();
        self.ctx.update(line.as_bytes());
        self.ctx.update(b"\n");
        self.rows += 1;
    }

    pub fn finish(self) -> Commitment {
        Commitment { rows: self.rows, sha256: hex(self.ctx.finish().as_ref()) }
    }
}

/// What checking a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Matches,
    Differs,
    /// The row is HMAC-chained and this key is absent.
    NeedsKey,
}

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
        !is_keyed(stored) || self.0.is_some()
    }

    pub fn has_key(&self) -> bool {
        self.0.is_some()
    }

    /// Check a stored hash with the algorithm it names: plain SHA-256 rows are checked as such
    /// even by a keyed store (a chain may switch to a key), HMAC rows need the key.
    pub fn check(&self, f: &ChainFields<'_>, stored: &str) -> Check {
        let expected = if is_keyed(stored) {
            match &self.0 {
                Some(_) => self.hash(f),
                None => return Check::NeedsKey,
            }
        } else {
            ChainKey(None).hash(f)
        };
        if expected == stored { Check::Matches } else { Check::Differs }
    }
}

/// Whether a stored hash is HMAC-keyed.
pub fn is_keyed(stored: &str) -> bool {
    stored.starts_with(HMAC_PREFIX)
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
    fn checks_use_the_algorithm_each_row_names() {
        let plain = ChainKey::new(None);
        let keyed = ChainKey::new(Some("k1"));
        let sha = plain.hash(&fields("alice"));
        let mac = keyed.hash(&fields("alice"));
        assert_eq!(keyed.check(&fields("alice"), &sha), Check::Matches);
        assert_eq!(keyed.check(&fields("alicf"), &sha), Check::Differs);
        assert_eq!(plain.check(&fields("alice"), &mac), Check::NeedsKey);
        assert_eq!(ChainKey::new(Some("k2")).check(&fields("alice"), &mac), Check::Differs);
    }

    #[test]
    fn commitments_round_trip_and_refuse_garbage() {
        let mut d = LegacyDigest::default();
        d.add(1, &[json!("u"), json!(null), json!(3)]);
        let c = d.finish();
        assert_eq!(c.rows, 1);
        assert_eq!(Commitment::parse(&c.text()), Some(c.clone()));
        assert_eq!(Commitment::from_genesis(&c.genesis()), Some(c.clone()));
        assert_eq!(Commitment::from_genesis(GENESIS), Some(Commitment::empty()));
        assert_ne!(c, Commitment::empty());
        for bad in ["genesis;", "genesis;rows=x;sha256=00", "rows=1;sha256=zz", "other"] {
            assert!(Commitment::from_genesis(bad).is_none() && Commitment::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        let d = digest::digest(&digest::SHA256, b"abc");
        assert_eq!(hex(d.as_ref()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
