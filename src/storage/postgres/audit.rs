//! SQL for audit_log and its hash chain (PostgreSQL). The chain's rules are in `audit_chain`;
//! here the head row (`audit_chain_head`, locked FOR UPDATE inside the writer's transaction)
//! orders appends from every host into one unbroken chain.

use postgres::{GenericClient, Row};

use super::pg_error;
use super::pool::Cache;
use crate::audit_adopt;
use crate::audit_chain::{
    Cell, ChainKey, ChainRow, CheckedHead, Commitment, ExpectedHead, LegacyDigest, RESERVED_ACTIONS, Verifier,
    check_append, link,
};
use crate::error::{Error, Result};
use crate::model::{Adoption, AuditFilter, AuditRow, AuditStats, AuditStatus, AuditVerification, parse_json_or_text};
use crate::storage::AuditRecord;

macro_rules! columns {
    () => {
        "id, user_id, action_type, customer_ids, \"timestamp\", ip_address, status, error_message, duration_ms, \
         chain_seq, chain_prev, chain_hash"
    };
}

fn text(r: &Row, i: usize) -> Cell {
    r.get::<_, Option<String>>(i).map_or(Cell::Null, Cell::Text)
}

pub fn chain_row(r: &Row) -> ChainRow {
    ChainRow {
        id: r.get(0),
        legacy: [
            text(r, 1),
            text(r, 2),
            text(r, 3),
            text(r, 4),
            text(r, 5),
            text(r, 6),
            text(r, 7),
            r.get::<_, Option<i64>>(8).map_or(Cell::Null, Cell::Int),
        ],
        seq: r.get(9),
        prev: r.get(10),
        hash: r.get(11),
    }
}

/// Through the schema owner's functions (schema v3): the app's role may lock and extend the head,
/// never write audit_log or the head itself.
const LOCK_HEAD: &str = "SELECT seq, hash FROM tms_audit_lock_head()";
const ROW_AT: &str = concat!("SELECT ", columns!(), " FROM audit_log WHERE chain_seq = $1");
const KEYED_SINCE: &str =
    "SELECT EXISTS(SELECT 1 FROM audit_log WHERE chain_seq > $1 AND chain_hash LIKE 'hmac-sha256:%')";
const LEGACY: &str = concat!("SELECT ", columns!(), " FROM audit_log WHERE chain_hash IS NULL ORDER BY id");
const APPEND: &str = "SELECT tms_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
/// Schema v4: the append made only while the head is still the one linked to (else NULL), with
/// the call's nonce kept on the row.
const APPEND_AT: &str = "SELECT tms_audit_append_at($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
/// The head's row, read without a lock (none when the chain has not begun), and when $1 is set
/// whether a keyed row follows seq $1 (what `check_append` asks a store without a key): one
/// round trip.
const HEAD_ROW: &str = concat!(
    "SELECT ", columns!(), ",
            $1::bigint IS NOT NULL AND EXISTS(SELECT 1 FROM audit_log k WHERE k.chain_seq > $1 AND k.chain_hash LIKE 'hmac-sha256:%')
     FROM audit_chain_head h JOIN audit_log ON chain_seq = h.seq"
);
/// The row this call sent, by its seq and the call's nonce (a rerun after a lost connection finds
/// it). The link alone is not enough: another writer's row of the same content, linked onto the
/// same head in the same second, has the same seq and hash.
const OWN_ROW: &str = "SELECT id, chain_hash FROM audit_log WHERE chain_seq = $1 AND append_nonce = $2";
/// Appends onto a head read unlocked before a busy chain sends its writer to the locked path.
const TRIES_AT_HEAD: usize = 3;
/// The owner's own writes (the reset): straight into the tables.
const INSERT: &str = "INSERT INTO audit_log (user_id, action_type, customer_ids, \"timestamp\", ip_address, status,
                                            error_message, duration_ms, chain_seq, chain_prev, chain_hash)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";
const SET_HEAD: &str = "UPDATE audit_chain_head SET seq = $1, hash = $2";

/// Take the chain's head (locked until the transaction ends) and check this store may continue
/// it; None when the chain has not begun.
fn lock_head(c: &mut impl GenericClient, cache: &mut Cache, key: &ChainKey, checked: &CheckedHead) -> Result<Option<(i64, String)>> {
    let st = cache.prepare(c, LOCK_HEAD)?;
    let head = c.query_one(&st, &[]).map_err(pg_error)?;
    let (seq, hash): (i64, String) = (head.get(0), head.get(1));
    if seq == 0 {
        return Ok(None);
    }
    let st = cache.prepare(c, ROW_AT)?;
    let row = c
        .query_opt(&st, &[&seq])
        .map_err(pg_error)?
        .ok_or_else(|| Error::new(crate::ErrorKind::Database, format!("the audit chain's head (seq {seq}) is missing from audit_log")))?;
    let row = chain_row(&row);
    let st = cache.prepare(c, KEYED_SINCE)?;
    check_append(&row, key, checked, |since| Ok(c.query_one(&st, &[&since]).map_err(pg_error)?.get(0)))?;
    Ok(Some((seq, hash)))
}

/// The commitment to every unchained row, read in id order a batch at a time.
fn legacy_commitment(c: &mut impl GenericClient, cache: &mut Cache) -> Result<Commitment> {
    let st = cache.prepare(c, LEGACY)?;
    let mut digest = LegacyDigest::default();
    for r in c.query(&st, &[]).map_err(pg_error)? {
        chain_row(&r).add_to(&mut digest);
    }
    Ok(digest.finish())
}

fn append(c: &mut impl GenericClient, cache: &mut Cache, row: &AuditRecord<'_>, key: &ChainKey, checked: &CheckedHead, head: Option<(i64, String)>) -> Result<i64> {
    let (seq, prev, hash) = link(key, head, || legacy_commitment(c, cache), row)?;
    let st = cache.prepare(c, APPEND)?;
    let id: i64 = c
        .query_one(
            &st,
            &[&row.user_id, &row.action_type, &row.customer_ids, &row.timestamp, &row.ip_address, &row.status,
              &row.error_message, &row.duration_ms, &seq, &prev, &hash],
        )
        .map_err(pg_error)?
        .get(0);
    checked.set(seq, hash);
    Ok(id)
}

fn refuse_reserved(row: &AuditRecord<'_>) -> Result<()> {
    if RESERVED_ACTIONS.contains(&row.action_type) {
        return Err(Error::invalid(format!("action_type {:?} is reserved for the rows the library itself writes", row.action_type)));
    }
    Ok(())
}

/// Append one caller's row (inside the caller's transaction); returns its id. Onto the head
/// this store last saw when it is still the head (one statement; `append_at`: the schema has
/// that function), else under the locked head.
pub fn insert(c: &mut impl GenericClient, cache: &mut Cache, row: &AuditRecord<'_>, key: &ChainKey, checked: &CheckedHead, append_at: bool) -> Result<i64> {
    if append_at {
        if let Some(id) = append_at_head(c, cache, row, key, checked, &mut None)? {
            return Ok(id);
        }
    } else {
        refuse_reserved(row)?;
    }
    let head = lock_head(c, cache, key, checked)?;
    append(c, cache, row, key, checked, head)
}

/// The head's row, read unlocked and checked as `lock_head` checks it; None when the chain has
/// not begun, or its head is one that only the locked path may judge (a keyed store on a plain
/// head).
fn read_head(c: &mut impl GenericClient, cache: &mut Cache, key: &ChainKey, checked: &CheckedHead) -> Result<Option<ExpectedHead>> {
    let Some(row) = read_and_check_head(c, cache, key, checked)? else { return Ok(None) };
    let (Some(seq), Some(hash)) = (row.seq, row.hash) else { return Ok(None) };
    // check_append found no keyed row up to the head it read.
    Ok(ExpectedHead::new(key, seq, hash, seq))
}

/// Append `row` in one statement onto the head this store last wrote or checked, or onto the
/// head read and checked now; a head another writer moved meanwhile costs a read and another
/// try. The HMAC link is computed here, never on the server, which only compares the head.
/// Outside a transaction the statement commits on its own: one round trip in all. None: this
/// row needs the locked path (`insert`): the chain has not begun, its head needs a check only
/// that path makes, or other writers kept moving the head. `sent` holds the seq and the call's
/// nonce of the append in flight (None once the server answered that it appended nothing), so
/// that a rerun after a lost connection can find the row if it committed.
pub fn append_at_head(
    c: &mut impl GenericClient,
    cache: &mut Cache,
    row: &AuditRecord<'_>,
    key: &ChainKey,
    checked: &CheckedHead,
    sent: &mut Option<(i64, String)>,
) -> Result<Option<i64>> {
    refuse_reserved(row)?;
    // Random, so that no other call's row carries it; not a secret (it is stored with the row).
    let nonce = crate::uuid::new_v4()?;
    let mut expected = checked.expected(key);
    for _ in 0..TRIES_AT_HEAD {
        let head = match expected.take() {
            Some(head) => head,
            None => match read_head(c, cache, key, checked)? {
                Some(head) => head,
                None => return Ok(None),
            },
        };
        let (seq, prev, hash) = link(key, Some((head.seq, head.hash.clone())), || Ok(Commitment::empty()), row)?;
        *sent = Some((seq, nonce.clone()));
        let st = cache.prepare(c, APPEND_AT)?;
        let id: Option<i64> = c
            .query_one(
                &st,
                &[&row.user_id, &row.action_type, &row.customer_ids, &row.timestamp, &row.ip_address, &row.status,
                  &row.error_message, &row.duration_ms, &seq, &prev, &hash, &head.keyed_after, &nonce],
            )
            .map_err(pg_error)?
            .get(0);
        if let Some(id) = id {
            checked.appended_onto(&head);
            checked.set(seq, hash);
            return Ok(Some(id));
        }
        *sent = None; // the server appended nothing for this link
    }
    Ok(None)
}

/// The rerun of an append whose statement (`sent`: its seq and nonce) was lost in flight, inside the
/// caller's transaction: the head is locked first, which waits for that statement if the server
/// still runs it; then the row sent is answered if it committed, else the row is appended under
/// the lock. A lost statement reaching the server later finds the head moved and appends
/// nothing, so the row is never written twice.
pub fn insert_after_lost(
    c: &mut impl GenericClient,
    cache: &mut Cache,
    row: &AuditRecord<'_>,
    key: &ChainKey,
    checked: &CheckedHead,
    sent: Option<&(i64, String)>,
) -> Result<i64> {
    refuse_reserved(row)?;
    let head = lock_head(c, cache, key, checked)?;
    if let Some((seq, nonce)) = sent {
        let st = cache.prepare(c, OWN_ROW)?;
        if let Some(found) = c.query_opt(&st, &[seq, nonce]).map_err(pg_error)? {
            checked.set(*seq, found.get(1));
            return Ok(found.get(0));
        }
    }
    append(c, cache, row, key, checked, head)
}

/// Ok when this store's key can continue the chain (a read; nothing stays locked).
pub fn check_head_key(c: &mut impl GenericClient, cache: &mut Cache, key: &ChainKey, checked: &CheckedHead) -> Result<()> {
    read_and_check_head(c, cache, key, checked).map(|_| ())
}

/// The head's row, read unlocked, once `check_append` passed it (None: the chain has not
/// begun, or the head's row is missing). One round trip: a store without a key learns in the same
/// read whether a keyed row follows the seq it checked up to; any other question of
/// `check_append` (rare: a keyed store on a plain head) is a query of its own.
fn read_and_check_head(c: &mut impl GenericClient, cache: &mut Cache, key: &ChainKey, checked: &CheckedHead) -> Result<Option<ChainRow>> {
    let since = (!key.has_key()).then(|| checked.unkeyed_up_to());
    let st = cache.prepare(c, HEAD_ROW)?;
    let Some(found) = c.query_opt(&st, &[&since]).map_err(pg_error)? else { return Ok(None) };
    let keyed_after_since: bool = found.get(12);
    let row = chain_row(&found);
    check_append(&row, key, checked, |asked| match since {
        Some(s) if s == asked => Ok(keyed_after_since),
        _ => {
            let st = cache.prepare(c, KEYED_SINCE)?;
            Ok(c.query_one(&st, &[&asked]).map_err(pg_error)?.get(0))
        }
    })?;
    Ok(Some(row))
}

/// Clear the log as a recorded reset (see the SQLite engine); the transaction may delete.
pub fn reset(c: &mut impl GenericClient, cache: &mut Cache, key: &ChainKey, checked: &CheckedHead, timestamp: &str) -> Result<u64> {
    let head = lock_head(c, cache, key, checked)?;
    c.batch_execute("SET LOCAL tms.audit_reset = 'on'").map_err(pg_error)?;
    let deleted = c.execute("DELETE FROM audit_log", &[]).map_err(pg_error)?;
    c.batch_execute("SET LOCAL tms.audit_reset = 'off'").map_err(pg_error)?;
    let note = crate::audit_chain::reset_note(deleted, head.as_ref().map(|(s, _)| *s));
    let row = crate::audit_chain::reset_record(timestamp, &note);
    // The reset row links to the head read before the delete.
    let (seq, prev, hash) = link(key, head, || Ok(Commitment::empty()), &row)?;
    let st = cache.prepare(c, INSERT)?;
    c.query_one(
        &st,
        &[&row.user_id, &row.action_type, &row.customer_ids, &row.timestamp, &row.ip_address, &row.status,
          &row.error_message, &row.duration_ms, &seq, &prev, &hash],
    )
    .map_err(pg_error)?;
    let st = cache.prepare(c, SET_HEAD)?;
    c.execute(&st, &[&seq, &hash]).map_err(pg_error)?;
    checked.set(seq, hash);
    Ok(deleted)
}

/// Feed the log to `verifier` in id order, a batch at a time, up to its first problem.
fn walk(tx: &mut postgres::Transaction<'_>, verifier: &mut Verifier<'_>, progress: &mut dyn FnMut(u64)) -> Result<()> {
    let portal = tx.bind(VERIFY, &[]).map_err(pg_error)?;
    let mut walked = 0u64;
    'walk: loop {
        let rows = tx.query_portal(&portal, VERIFY_BATCH).map_err(pg_error)?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            if !verifier.push(&chain_row(r)) {
                break 'walk;
            }
            walked += 1;
        }
        progress(walked);
    }
    Ok(())
}

/// Adopt the unchained rows a legacy writer appended after the chain's head (see
/// `audit_adopt`; the SQLite engine's `adopt`). The head is locked first (the order every
/// appender takes), then the table against plain INSERTs: a legacy writer's row in flight is
/// committed before the walk, and none lands between the walk and the adoption row. No row is
/// changed.
pub fn adopt(tx: &mut postgres::Transaction<'_>, cache: &mut Cache, key: &ChainKey, checked: &CheckedHead, timestamp: &str, reason: &str) -> Result<Adoption> {
    let Some(head) = lock_head(tx, cache, key, checked)? else { return Err(audit_adopt::nothing_to_adopt()) };
    tx.batch_execute("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE").map_err(pg_error)?;
    let mut verifier = Verifier::new(key);
    walk(tx, &mut verifier, &mut |_| {})?;
    let plan = audit_adopt::plan(verifier, (head.0, &head.1), reason)?;
    let marker_id = append(tx, cache, &audit_adopt::record(timestamp, &plan.note), key, checked, Some(head))?;
    Ok(plan.adoption(marker_id))
}

const VERIFY: &str = concat!("SELECT ", columns!(), " FROM audit_log ORDER BY id");
/// Rows fetched per round trip while verifying: memory stays bounded for any size of log.
const VERIFY_BATCH: i32 = 5_000;

/// Walk the log in id order inside a REPEATABLE READ READ ONLY transaction (one snapshot).
pub fn verify(tx: &mut postgres::Transaction<'_>, key: &ChainKey, anchor: Option<(i64, &str)>, progress: &mut dyn FnMut(u64)) -> Result<AuditVerification> {
    let mut verifier = Verifier::new(key);
    walk(tx, &mut verifier, progress)?;
    verifier.finish(anchor, |seq| {
        Ok(tx
            .query_opt("SELECT id, chain_hash FROM audit_log WHERE chain_seq = $1", &[&seq])
            .map_err(pg_error)?
            .map(|r| (r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default())))
    })
}

const TRAIL: &str = "SELECT id, user_id, action_type, customer_ids, \"timestamp\", ip_address, status, error_message, duration_ms
                     FROM audit_log
                     WHERE ($1::text IS NULL OR user_id = $1)
                       AND ($2::text IS NULL OR action_type = $2)
                       AND ($3::text IS NULL OR customer_ids = $3 OR tms_ids_contain(customer_ids, $3))
                     ORDER BY \"timestamp\" DESC NULLS LAST, id DESC LIMIT $4";

pub fn trail(c: &mut impl GenericClient, cache: &mut Cache, f: &AuditFilter<'_>, limit: u32) -> Result<Vec<AuditRow>> {
    let st = cache.prepare(c, TRAIL)?;
    let rows = c.query(&st, &[&f.user_id, &f.action_type, &f.customer_id, &i64::from(limit)]).map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| AuditRow {
            id: r.get(0),
            user_id: r.get(1),
            action_type: r.get(2),
            customer_ids: parse_json_or_text(r.get(3)),
            timestamp: r.get(4),
            ip_address: r.get(5),
            status: r.get::<_, Option<String>>(6).map(|s| AuditStatus::from_stored(&s)),
            error_message: r.get(7),
            duration_ms: r.get(8),
        })
        .collect())
}

pub fn action_types(c: &mut impl GenericClient, cache: &mut Cache) -> Result<Vec<String>> {
    let st = cache.prepare(c, "SELECT DISTINCT action_type FROM audit_log ORDER BY action_type")?;
    Ok(c.query(&st, &[]).map_err(pg_error)?.iter().map(|r| r.get(0)).collect())
}

pub fn stats(c: &mut impl GenericClient, cache: &mut Cache) -> Result<AuditStats> {
    let st = cache.prepare(
        c,
        "SELECT COUNT(*), COUNT(DISTINCT user_id), COUNT(DISTINCT action_type),
                COUNT(*) FILTER (WHERE status = 'success'), COUNT(*) FILTER (WHERE status = 'failure')
         FROM audit_log",
    )?;
    let r = c.query_one(&st, &[]).map_err(pg_error)?;
    let (total, users, actions, ok, failed): (i64, i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    Ok(AuditStats::from_counts(total, users, actions, ok, failed))
}
