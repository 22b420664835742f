//! The audit log's hash chain. Each new row carries its chain sequence number, the previous
//! row's hash and its own hash over both and its fields, so altering, removing or inserting a row
//! breaks the chain where it happened. With a key the hash is HMAC-SHA256 (the key lives only in
//! the host's memory, never in the database), else plain SHA-256.

use ring::{digest, hmac};
use serde_json::json;

use crate::model::{AuditVerification, ChainHead, ChainProblem, ProblemKind};
use crate::storage::AuditRecord;

/// The `prev` of the first row of a chain written before the chain committed to the rows that
/// came before it (schema v2). Such a chain commits to them with a later [`DIGEST_ACTION`] row.
pub const GENESIS: &str = "genesis";
/// action_type of the row `clear_audit_logs` leaves: it records the reset and continues the
/// chain from the last row that was cleared.
pub const RESET_ACTION: &str = "audit_reset";
/// action_type of the row that commits an older chain to the rows written before it began
/// (`error_message` holds the [`Commitment`]).
pub const DIGEST_ACTION: &str = "audit_legacy_digest";
/// action_type of the row that adopts into the chain the unchained rows a legacy writer appended
/// after the chain's head (`error_message` starts with the [`Commitment`] to them; see
/// `audit_adopt`).
pub const ADOPT_ACTION: &str = "audit_adopt_unchained";
/// user_id of the library's own rows (resets, digests, adoptions).
pub const RESET_USER: &str = "system";
/// Action types only the library itself writes; every other writer is refused them.
pub(crate) const RESERVED_ACTIONS: [&str; 3] = [RESET_ACTION, DIGEST_ACTION, ADOPT_ACTION];

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

/// One value of a stored row, as the engine gave it (SQLite stores any type in any column).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(t) => Some(t),
            _ => None,
        }
    }
    fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// The value as the legacy digest hashes it, type preserved.
    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(i) => json!(i),
            Cell::Real(f) => json!({ "real": f.to_string() }),
            Cell::Text(t) => json!(t),
            Cell::Blob(b) => json!({ "blob": hex(b) }),
        }
    }
}

/// A stored audit row as the chain sees it: the eight legacy columns after `id` (user_id,
/// action_type, customer_ids, timestamp, ip_address, status, error_message, duration_ms) and the
/// chain's three.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRow {
    pub id: i64,
    pub legacy: [Cell; 8],
    pub seq: Option<i64>,
    pub prev: Option<String>,
    pub hash: Option<String>,
}

impl ChainRow {
    pub fn user_id(&self) -> &str {
        self.legacy[0].text().unwrap_or("")
    }
    pub fn action_type(&self) -> &str {
        self.legacy[1].text().unwrap_or("")
    }
    /// The library's own rows (resets, digests): reserved types by the system user.
    pub fn is_system(&self, action: &str) -> bool {
        self.action_type() == action && self.user_id() == RESET_USER
    }
    /// The fields its hash covers, with the chain position given.
    pub fn fields<'a>(&'a self, seq: i64, prev: &'a str) -> ChainFields<'a> {
        ChainFields {
            seq,
            prev,
            user_id: self.user_id(),
            action_type: self.action_type(),
            customer_ids: self.legacy[2].text(),
            timestamp: self.legacy[3].text(),
            ip_address: self.legacy[4].text(),
            status: self.legacy[5].text(),
            error_message: self.legacy[6].text(),
            duration_ms: self.legacy[7].int(),
        }
    }
    fn legacy_json(&self) -> Vec<serde_json::Value> {
        self.legacy.iter().map(Cell::json).collect()
    }
    /// Feed this (unchained) row into a legacy digest.
    pub fn add_to(&self, digest: &mut LegacyDigest) {
        digest.add(self.id, &self.legacy_json());
    }
}

/// What an engine keeps between appends so that a busy log does not recompute the head's hash,
/// or look for keyed rows, on every one.
#[derive(Default)]
pub struct CheckedHead {
    /// The last keyed head checked against this store's key.
    head: std::sync::Mutex<Option<(i64, String)>>,
    /// For a store without a key: the chain holds no keyed row up to this seq.
    unkeyed_up_to: std::sync::Mutex<i64>,
}

impl CheckedHead {
    // try_lock throughout: never block (or deadlock in a forked child) on a cache.
    fn is(&self, seq: i64, hash: &str) -> bool {
        self.head.try_lock().ok().is_some_and(|g| g.as_ref().is_some_and(|(s, h)| *s == seq && h == hash))
    }
    /// Note a head this store wrote or checked.
    pub fn set(&self, seq: i64, hash: String) {
        if let Ok(mut g) = self.head.try_lock() {
            *g = Some((seq, hash));
        }
    }
    /// Whether this store wrote or checked a keyed head (then the log was keyed).
    fn has_head(&self) -> bool {
        self.head.try_lock().ok().is_some_and(|g| g.is_some())
    }
    /// For a store without a key: the seq up to which the chain is known to hold no keyed row
    /// (`check_append` looks for keyed rows after it; an engine may look in the head's read).
    pub fn unkeyed_up_to(&self) -> i64 {
        self.unkeyed_up_to.try_lock().map_or(0, |g| *g)
    }
    fn set_unkeyed_up_to(&self, seq: i64) {
        if let Ok(mut g) = self.unkeyed_up_to.try_lock() {
            *g = seq;
        }
    }
    /// The head this store last wrote or checked, for an append that the server makes only
    /// while that is still the head (one round trip): `check_append` would pass it without
    /// reading anything, but for a store without a key on a plain chain, which must also find
    /// no keyed row after `keyed_after`. None when `check_append` must see the head row itself.
    pub fn expected(&self, key: &ChainKey) -> Option<ExpectedHead> {
        let (seq, hash) = self.head.try_lock().ok()?.clone()?;
        ExpectedHead::new(key, seq, hash, self.unkeyed_up_to())
    }
    /// After a row was appended onto `head` (the server found no keyed row after
    /// `head.keyed_after`): what `check_append` would have noted for it.
    pub fn appended_onto(&self, head: &ExpectedHead) {
        if head.keyed_after.is_some() {
            self.set_unkeyed_up_to(head.seq);
        }
    }
}

/// A head that needs no more checking while it stays the head (see [`CheckedHead::expected`]).
#[derive(Debug, Clone)]
pub struct ExpectedHead {
    pub seq: i64,
    pub hash: String,
    /// Set for a store without a key on a plain chain: no keyed row may follow this seq.
    pub keyed_after: Option<i64>,
}

impl ExpectedHead {
    /// The head (seq, hash) to append onto: on a keyed head as it is; on a plain head, for a
    /// store without a key, with no keyed row allowed after `plain_up_to` (the seq up to which
    /// the chain is known to hold none). None for a keyed store on a plain head: only the locked
    /// path may judge that one.
    pub fn new(key: &ChainKey, seq: i64, hash: String, plain_up_to: i64) -> Option<ExpectedHead> {
        if is_keyed(&hash) {
            Some(ExpectedHead { seq, hash, keyed_after: None })
        } else if !key.has_key() {
            Some(ExpectedHead { seq, hash, keyed_after: Some(plain_up_to) })
        } else {
            None
        }
    }
}

/// Refuse to append to a chain this store cannot continue honestly: an HMAC-keyed chain needs the
/// same key, or the new rows would make verification report the honest log as altered. A chain
/// that ever held a keyed row is keyed, even if a forger appended plain rows after it:
/// `keyed_since(seq)` tells whether any row after `seq` is keyed (an engine's index probe).
pub fn check_append(
    head: &ChainRow,
    key: &ChainKey,
    checked: &CheckedHead,
    keyed_since: impl FnOnce(i64) -> crate::error::Result<bool>,
) -> crate::error::Result<()> {
    use crate::error::{Error, ErrorKind};
    let (Some(seq), Some(prev), Some(hash)) = (head.seq, head.prev.as_deref(), head.hash.as_deref()) else {
        return Ok(());
    };
    if !is_keyed(hash) {
        if key.has_key() {
            // A plain head where this store wrote or checked a keyed one, or after keyed rows:
            // the log was replaced or appended to without the key. Keyed rows after it would
            // bind the forgery into the keyed chain, so none are written.
            if checked.has_head() || keyed_since(0)? {
                return Err(Error::new(
                    ErrorKind::AuditKeyMismatch,
                    format!(
                        "the audit log's last row (seq {seq}) is chained without the HMAC key, but the log was \
                         keyed: it was replaced or appended to without the key (verify_audit shows where); \
                         audit rows are refused"
                    ),
                ));
            }
            return Ok(()); // a plain chain taking on a key from here on
        }
        if keyed_since(checked.unkeyed_up_to())? {
            return Err(Error::new(
                ErrorKind::AuditKeyMismatch,
                "the audit log is chained with an HMAC key (its last rows are not, which verify_audit \
                 reports) and this store was opened without audit_hmac_key: audit rows are refused",
            ));
        }
        checked.set_unkeyed_up_to(seq);
        return Ok(());
    }
    if checked.is(seq, hash) {
        return Ok(());
    }
    match key.check(&head.fields(seq, prev), hash) {
        Check::Matches => {
            checked.set(seq, hash.to_owned());
            Ok(())
        }
        Check::NeedsKey => Err(Error::new(
            ErrorKind::AuditKeyMismatch,
            "the audit log is chained with an HMAC key and this store was opened without \
             audit_hmac_key: open it with the key to write audit rows",
        )),
        Check::Differs => Err(Error::new(
            ErrorKind::AuditKeyMismatch,
            format!(
                "the audit log's last row (seq {seq}) does not match this store's audit_hmac_key: \
                 it was written with another key (or altered); audit rows are refused"
            ),
        )),
    }
}

/// Walks a log in id order and reports the first break (see `Store::verify_audit`). Engines feed
/// it rows; it holds no more than the previous row and a running digest, so any size of log
/// is checked in bounded memory.
///
/// Rows before the chain's first row are the legacy rows it committed to (by count and digest,
/// in its first row's `prev`, or in one later digest row for chains begun before commitments
/// existed); an unchained row anywhere after the first chained row was inserted out of chain;
/// on a keyed chain a plain row after a keyed one was not written by a store with the key,
/// unless a later [`ADOPT_ACTION`] row commits to exactly those rows (a legacy writer's rows,
/// adopted by an operator after a rollback and forward again: by then the app may have appended
/// chained rows after them). Unchained rows that no adoption covers are reported as inserted
/// (the first of them); an adoption covers every unchained row since the previous one.
pub struct Verifier<'k> {
    key: &'k ChainKey,
    report: AuditVerification,
    last: Option<ChainHead>,
    legacy: LegacyDigest,
    committed: Option<Commitment>,
    digest_allowed: bool,
    keyed_seen: bool,
    /// The id of the last chained row (where a `not_keyed` log shows).
    last_id: Option<i64>,
    /// Unchained rows after the chain began (since the last adoption), waiting for the adoption
    /// row that commits to them.
    tail: Option<Tail>,
}

/// The unchained rows after chained ones not yet adopted: the first's id, their ids and digest.
#[derive(Clone, Default)]
pub struct Tail {
    pub first_id: i64,
    pub ids: crate::audit_adopt::IdRanges,
    pub digest: LegacyDigest,
}

/// What [`Verifier::finish_for_adoption`] found: the chain's head and the unchained rows no
/// adoption covers yet.
pub struct Adoptable {
    pub head: ChainHead,
    pub tail: Tail,
}

/// Why a log cannot be adopted.
pub enum NotAdoptable {
    /// The chain has not begun, or every unchained row after its start is adopted already.
    Nothing,
    /// A problem other than a legacy append (the first one found).
    Broken(ChainProblem),
}

fn problem(id: Option<i64>, seq: Option<i64>, problem: ProblemKind, detail: String) -> ChainProblem {
    ChainProblem { id, seq, problem, detail }
}

impl<'k> Verifier<'k> {
    pub fn new(key: &'k ChainKey) -> Verifier<'k> {
        Verifier {
            key,
            report: AuditVerification { ok: true, checked: 0, unchained: 0, adopted: 0, head: None, first_problem: None },
            last: None,
            legacy: LegacyDigest::default(),
            committed: None,
            digest_allowed: false,
            keyed_seen: false,
            last_id: None,
            tail: None,
        }
    }

    /// Check the next row (in id order). Returns false once a problem is found: stop feeding.
    pub fn push(&mut self, row: &ChainRow) -> bool {
        match self.check(row) {
            Ok(()) => true,
            Err(p) => {
                self.report.first_problem = Some(p);
                false
            }
        }
    }

    fn check(&mut self, row: &ChainRow) -> std::result::Result<(), ChainProblem> {
        let id = row.id;
        let Some(stored) = row.hash.clone() else {
            if self.last.is_none() {
                self.report.unchained += 1; // written before the chain began: covered by its commitment
                row.add_to(&mut self.legacy);
                return Ok(());
            }
            // Perhaps a legacy writer's append after a rollback: inserted unless a later adoption
            // row commits to it.
            let tail = self.tail.get_or_insert_with(|| Tail { first_id: id, ..Tail::default() });
            tail.ids.push(id);
            row.add_to(&mut tail.digest);
            return Ok(());
        };
        let adopted = match row.is_system(ADOPT_ACTION) {
            false => None,
            true => match self.tail.take() {
                Some(tail) => Some(tail),
                None => {
                    return Err(problem(Some(id), row.seq, ProblemKind::Inserted, format!("row {id} adopts unchained rows but none precede it")));
                }
            },
        };
        let (Some(seq), Some(prev)) = (row.seq, row.prev.clone()) else {
            return Err(problem(Some(id), row.seq, ProblemKind::Altered, format!("row {id} has a chain hash but no sequence or link")));
        };
        match &self.last {
            None if seq == 1 => match Commitment::from_genesis(&prev) {
                Some(c) => {
                    self.committed = Some(c);
                    self.digest_allowed = prev == GENESIS;
                }
                None => {
                    return Err(problem(Some(id), Some(seq), ProblemKind::Altered, format!("row {id} starts the chain with an unreadable commitment")));
                }
            },
            // A chain may also start at a reset row (only clear_audit_logs writes one): every
            // earlier row, legacy ones included, was deleted by it.
            None if row.is_system(RESET_ACTION) => self.committed = Some(Commitment::empty()),
            None => {
                return Err(problem(Some(id), Some(seq), ProblemKind::Removed, format!("the chain starts at seq {seq}: earlier rows are missing")));
            }
            Some(h) if seq > h.seq + 1 => {
                return Err(problem(Some(id), Some(seq), ProblemKind::Removed, format!("rows with seq {} to {} are missing", h.seq + 1, seq - 1)));
            }
            Some(h) if seq != h.seq + 1 || prev != h.hash => {
                return Err(problem(Some(id), Some(seq), ProblemKind::Inserted, format!("row {id} (seq {seq}) does not follow seq {}", h.seq)));
            }
            Some(_) => {}
        }
        if self.keyed_seen && !is_keyed(&stored) {
            return Err(problem(
                Some(id),
                Some(seq),
                ProblemKind::Inserted,
                format!("row {id} (seq {seq}) is chained without the HMAC key after keyed rows: it was not written by a store with the key"),
            ));
        }
        self.keyed_seen |= is_keyed(&stored);
        match self.key.check(&row.fields(seq, &prev), &stored) {
            Check::Matches => {}
            Check::NeedsKey => {
                return Err(problem(Some(id), Some(seq), ProblemKind::Unverifiable, "rows are HMAC-chained: configure audit_hmac_key to verify them".into()));
            }
            Check::Differs => {
                return Err(problem(Some(id), Some(seq), ProblemKind::Altered, format!("row {id} (seq {seq}) does not match its hash")));
            }
        }
        if self.last.is_some() && row.is_system(RESET_ACTION) {
            self.committed = Some(Commitment::empty());
            self.digest_allowed = false;
        }
        if let Some(tail) = adopted {
            let promised = row.legacy[6].text().and_then(crate::audit_adopt::commitment_of);
            let Some(promised) = promised else {
                return Err(problem(Some(id), Some(seq), ProblemKind::Altered, format!("adoption row {id} holds no readable commitment")));
            };
            let found = tail.digest.finish();
            if found != promised {
                return Err(problem(
                    Some(id),
                    Some(seq),
                    mismatch_kind(&found, &promised),
                    format!(
                        "the {} unchained rows before adoption row {id} (since the chain began or the previous \
                         adoption) do not match the {} rows it adopted: rows were added, altered or removed among them",
                        found.rows, promised.rows
                    ),
                ));
            }
            self.report.adopted += found.rows;
        }
        if row.is_system(DIGEST_ACTION) {
            if !self.digest_allowed {
                return Err(problem(
                    Some(id),
                    Some(seq),
                    ProblemKind::Inserted,
                    format!("row {id} (seq {seq}) is a legacy digest where the chain already committed to its legacy rows"),
                ));
            }
            self.digest_allowed = false;
            self.committed = row.legacy[6].text().and_then(Commitment::parse);
            if self.committed.is_none() {
                return Err(problem(Some(id), Some(seq), ProblemKind::Altered, format!("digest row {id} holds no readable commitment")));
            }
        }
        self.report.checked += 1;
        self.last = Some(ChainHead { seq, hash: stored });
        self.last_id = Some(id);
        Ok(())
    }

    /// The rows before the chain's first row against the chain's commitment to them.
    fn check_legacy(&mut self) {
        if self.report.first_problem.is_none() {
            if let Some(promised) = &self.committed {
                let now = std::mem::take(&mut self.legacy).finish();
                if &now != promised {
                    let kind = mismatch_kind(&now, promised);
                    self.report.first_problem = Some(problem(
                        None,
                        None,
                        kind,
                        format!(
                            "the {} rows before the chain's first row do not match the {} rows it committed to: \
                             rows were added, altered or removed among them",
                            now.rows, promised.rows
                        ),
                    ));
                }
            }
        }
    }

    /// After the last row, for an adoption: the chain's head and the unchained rows after it,
    /// when everything before them verifies (the legacy rows against the chain's commitment
    /// included).
    pub fn finish_for_adoption(mut self) -> std::result::Result<Adoptable, NotAdoptable> {
        let tail = self.tail.take();
        self.check_legacy();
        if let Some(p) = self.report.first_problem {
            return Err(NotAdoptable::Broken(p));
        }
        match (self.last, tail) {
            (Some(head), Some(tail)) => Ok(Adoptable { head, tail }),
            _ => Err(NotAdoptable::Nothing),
        }
    }

    /// After the last row: check the legacy rows against the chain's commitment, then the anchor
    /// (a head stored elsewhere earlier; `row_at(seq)` gives the id and hash of the row with that
    /// seq, if any).
    pub fn finish(
        mut self,
        anchor: Option<(i64, &str)>,
        row_at: impl FnOnce(i64) -> crate::error::Result<Option<(i64, String)>>,
    ) -> crate::error::Result<AuditVerification> {
        if self.report.first_problem.is_none() {
            if let Some(tail) = self.tail.take() {
                self.report.first_problem = Some(unchained_after_chain(tail.first_id));
            }
        }
        self.check_legacy();
        // Checked with a key, a log with rows must be keyed by it. Plain rows before the first
        // keyed row are bound by its HMAC (its link is their head's hash); a log without any
        // keyed row was written without the key, so anyone could have written it: a keyed log
        // replaced by a forged one (a plain chain, or rows that pass for legacy ones) looks so.
        if self.report.first_problem.is_none()
            && self.key.has_key()
            && !self.keyed_seen
            && self.report.checked + self.report.unchained > 0
        {
            let (id, seq) = match &self.last {
                Some(h) => (self.last_id, Some(h.seq)),
                None => (None, None),
            };
            self.report.first_problem = Some(problem(
                id,
                seq,
                ProblemKind::NotKeyed,
                format!(
                    "the log holds {} rows and none is keyed by this audit_hmac_key: it was written without the key \
                     (a keyed log replaced by a forged one looks so); a log begun without a key is keyed from \
                     the first row a store with the key appends",
                    self.report.checked + self.report.unchained
                ),
            ));
        }
        if self.report.first_problem.is_none() {
            if let Some((anchor_seq, anchor_hash)) = anchor {
                self.report.first_problem = match row_at(anchor_seq)? {
                    None => Some(problem(
                        None,
                        Some(anchor_seq),
                        ProblemKind::Cut,
                        format!("the anchored head seq {anchor_seq} is gone: the tail of the log was cut"),
                    )),
                    Some((id, hash)) if hash != anchor_hash => Some(problem(
                        Some(id),
                        Some(anchor_seq),
                        ProblemKind::Altered,
                        format!("row {id} (seq {anchor_seq}) no longer has the anchored hash"),
                    )),
                    Some(_) => None,
                };
            }
        }
        self.report.ok = self.report.first_problem.is_none();
        self.report.head = self.last;
        Ok(self.report)
    }
}

/// An unchained row after chained ones that no adoption row covers.
fn unchained_after_chain(id: i64) -> ChainProblem {
    problem(Some(id), None, ProblemKind::Inserted, format!("row {id} has no chain hash but follows chained rows"))
}

/// What a digest that differs from its commitment shows: more rows, fewer, or changed ones.
fn mismatch_kind(found: &Commitment, promised: &Commitment) -> ProblemKind {
    match found.rows.cmp(&promised.rows) {
        std::cmp::Ordering::Greater => ProblemKind::Inserted,
        std::cmp::Ordering::Less => ProblemKind::Removed,
        std::cmp::Ordering::Equal => ProblemKind::Altered,
    }
}

/// The chain position and hash of a row appended after `head` (None: the chain begins, and its
/// first row commits to `legacy`, the rows already in the log).
pub fn link(
    key: &ChainKey,
    head: Option<(i64, String)>,
    legacy: impl FnOnce() -> crate::error::Result<Commitment>,
    row: &crate::storage::AuditRecord<'_>,
) -> crate::error::Result<(i64, String, String)> {
    let (seq, prev) = match head {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, legacy()?.genesis()),
    };
    let hash = key.hash(&ChainFields {
        seq,
        prev: &prev,
        user_id: row.user_id,
        action_type: row.action_type,
        customer_ids: row.customer_ids,
        timestamp: Some(row.timestamp),
        ip_address: row.ip_address,
        status: Some(row.status),
        error_message: row.error_message,
        duration_ms: row.duration_ms,
    });
    Ok((seq, prev, hash))
}

/// The message of a reset row.
pub fn reset_note(deleted: u64, continues_from: Option<i64>) -> String {
    match continues_from {
        Some(seq) => format!("audit log cleared: {deleted} rows removed; the chain continues from seq {seq}"),
        None => format!("audit log cleared: {deleted} rows removed"),
    }
}

/// The row a reset leaves.
pub fn reset_record<'a>(timestamp: &'a str, note: &'a str) -> AuditRecord<'a> {
    system_record(RESET_ACTION, timestamp, note)
}

/// A row the library itself writes (a reset, an adoption): by [`RESET_USER`], `note` as its
/// message.
pub fn system_record<'a>(action_type: &'a str, timestamp: &'a str, note: &'a str) -> AuditRecord<'a> {
    AuditRecord {
        user_id: RESET_USER,
        action_type,
        customer_ids: None,
        timestamp,
        ip_address: None,
        status: "success",
        error_message: Some(note),
        duration_ms: None,
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
