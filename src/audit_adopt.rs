//! Adopting a legacy writer's rows after a rollback. A downgrade to the legacy code appends plain
//! audit rows (no chain columns) after the chain's head; back on the library, the app appends
//! chained rows after them again. Verification reports the first of them as inserted, for ever.
//! An operator's explicit step adopts them: one `audit_adopt_unchained` row, itself chained,
//! commits to exactly the unchained rows since the chain began (or the previous adoption): their
//! count and a digest over their ids and every column, as the chain's first row commits to the
//! rows before it; it names their ids and the reason. The rows themselves are never changed, so
//! the append-only protection stays whole.
//!
//! Here: the adoption row's text, its parsing, the reason's checks and the ids' ranges. The
//! walk that finds the rows is `audit_chain::Verifier`; the writes are the engines'.

use crate::audit_chain::{ADOPT_ACTION, Commitment, NotAdoptable, Verifier};
use crate::model::Adoption;
use crate::error::{Error, ErrorKind, Result};
use crate::storage::AuditRecord;

/// Longest adoption reason, in bytes.
pub(crate) const MAX_REASON_BYTES: usize = 1000;
/// Most id ranges an adoption row lists (the digest covers every id whatever the list shows).
const MAX_LISTED_RANGES: usize = 100;

/// The operator's reason: required, not blank, at most [`MAX_REASON_BYTES`], on one line (no
/// control characters), trimmed.
pub fn checked_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::invalid("reason is empty: say why these rows are adopted (e.g. the rollback's ticket)"));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("reason is {} bytes; at most {MAX_REASON_BYTES} are allowed", reason.len()),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(Error::invalid("reason contains a control character (it must be one line)"));
    }
    Ok(reason)
}

/// Increasing ids as ranges (`"3-7,9"`), kept as ranges so any number of rows stays small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRanges(Vec<(i64, i64)>);

impl IdRanges {
    /// Add the next id (ids come in increasing order).
    pub fn push(&mut self, id: i64) {
        match self.0.last_mut() {
            Some((_, end)) if id == *end + 1 => *end = id,
            _ => self.0.push((id, id)),
        }
    }

    /// `"3-7,9"`; past [`MAX_LISTED_RANGES`] ranges the rest are counted, not listed.
    pub fn text(&self) -> String {
        let shown = self.0.iter().take(MAX_LISTED_RANGES).map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") });
        let mut text = shown.collect::<Vec<_>>().join(",");
        if self.0.len() > MAX_LISTED_RANGES {
            text.push_str(&format!(",... ({} more ranges)", self.0.len() - MAX_LISTED_RANGES));
        }
        text
    }
}

/// The adoption row's message: the commitment first (what verification reads), then the ids and
/// the reason for people: `rows=N;sha256=HEX;ids=A-B: N unchained rows ... reason: TEXT`.
pub fn note(commitment: &Commitment, ids: &IdRanges, after_seq: i64, reason: &str) -> String {
    format!(
        "{};ids={}: {} unchained rows (a legacy writer's, by the operator's word) adopted into the chain at seq {}; reason: {reason}",
        commitment.text(),
        ids.text(),
        commitment.rows,
        after_seq + 1,
    )
}

/// The commitment an adoption row's message starts with.
pub fn commitment_of(note: &str) -> Option<Commitment> {
    let (commitment, _) = note.split_once(";ids=")?;
    Commitment::parse(commitment)
}

/// What an adoption writes, found by walking the whole log (`verifier` has seen every row) with
/// the chain's head held locked by the engine (`head`: its seq and hash).
pub struct Plan {
    pub note: String,
    pub rows: i64,
    pub ids: String,
    pub after_seq: i64,
}

impl Plan {
    /// The adoption's report, once its row is written as `marker_id`.
    pub fn adoption(self, marker_id: i64) -> Adoption {
        Adoption { adopted: self.rows, ids: self.ids, after_seq: self.after_seq, marker_id, marker_seq: self.after_seq + 1 }
    }
}

/// The plan, or the refusal (nothing written): nothing to adopt, a log broken beyond its
/// unchained rows, or a head record that is not the log's last chained row.
pub fn plan(verifier: Verifier<'_>, head: (i64, &str), reason: &str) -> Result<Plan> {
    let found = match verifier.finish_for_adoption() {
        Ok(found) => found,
        Err(NotAdoptable::Nothing) => return Err(nothing_to_adopt()),
        Err(NotAdoptable::Broken(problem)) => return Err(broken(&problem)),
    };
    if found.head.seq != head.0 || found.head.hash != head.1 {
        return Err(Error::new(
            ErrorKind::AuditChainBroken,
            format!(
                "the chain's head record (seq {}) is not the log's last chained row (seq {}); nothing was adopted \
                 (run verify-audit)",
                head.0, found.head.seq
            ),
        ));
    }
    let commitment = found.tail.digest.finish();
    Ok(Plan {
        note: note(&commitment, &found.tail.ids, head.0, reason),
        rows: commitment.rows,
        ids: found.tail.ids.text(),
        after_seq: head.0,
    })
}

/// The adoption row.
pub fn record<'a>(timestamp: &'a str, note: &'a str) -> AuditRecord<'a> {
    crate::audit_chain::system_record(ADOPT_ACTION, timestamp, note)
}

/// The refusal when nothing waits to be adopted.
pub fn nothing_to_adopt() -> Error {
    Error::not_found(
        "nothing to adopt: every row after the audit chain's start is chained or adopted already (rows \
         written before the chain began are covered by its first row)",
    )
}

/// The refusal when the log is broken in a way adoption must not paper over.
pub fn broken(problem: &crate::model::ChainProblem) -> Error {
    Error::new(
        ErrorKind::AuditChainBroken,
        format!(
            "the audit log has a {} problem besides unchained rows: {}; nothing was adopted (run verify-audit)",
            problem.problem.as_str(),
            problem.detail
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_notes_round_trip() {
        let mut ids = IdRanges::default();
        for id in [3, 4, 5, 7, 9, 10] {
            ids.push(id);
        }
        assert_eq!(ids.text(), "3-5,7,9-10");
        let c = Commitment { rows: 6, sha256: "ab".repeat(32) };
        let n = note(&c, &ids, 12, "rollback: INC-1; ids=1");
        assert!(n.starts_with("rows=6;sha256="), "{n}");
        assert_eq!(commitment_of(&n), Some(c));
        assert_eq!(commitment_of("rows=6;sha256=zz;ids=1"), None);
        let mut many = IdRanges::default();
        for id in (0..500).step_by(2) {
            many.push(id);
        }
        assert!(many.text().ends_with(",... (150 more ranges)"));
    }

    #[test]
    fn reasons_are_required_bounded_and_one_line() {
        assert_eq!(checked_reason("  INC-42 rollback ").unwrap(), "INC-42 rollback");
        assert_eq!(checked_reason(" ").unwrap_err().kind, ErrorKind::InvalidInput);
        assert_eq!(checked_reason("a\nb").unwrap_err().kind, ErrorKind::InvalidInput);
        assert_eq!(checked_reason(&"x".repeat(MAX_REASON_BYTES + 1)).unwrap_err().kind, ErrorKind::TooLarge);
        assert!(checked_reason(&"x".repeat(MAX_REASON_BYTES)).is_ok());
    }
}
