//! Customer IDs as operators give them: pasted text (one per line or comma-separated) or a CSV
//! upload (first column, optional header). Every path that stores IDs goes through
//! [`normalize`], so a repeated ID can never reach the UNIQUE(job_id, cid) constraint.

use std::collections::HashSet;

use crate::error::{Error, ErrorKind, Result};

/// Longest ID accepted, in bytes. Real IDs are 24-32 characters.
pub const MAX_ID_BYTES: usize = 128;
/// Most distinct IDs one request may carry. Production holds 27,682 customers in all.
pub const MAX_IDS: usize = 100_000;

/// Header cells that mark the first CSV row as a header rather than an ID, as operators spell
/// them (`customer_id`, `Customer ID`, `CustomerId`, `cust-id`, `CID`, ...): compared after
/// lowercasing and dropping spaces, `_`, `-` and `.`.
const CSV_HEADERS: [&str; 10] =
    ["customerid", "customerids", "custid", "id", "ids", "customer", "customers", "cid", "cids", "customerno"];

fn is_header(cell: &str) -> bool {
    let key: String = cell
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    CSV_HEADERS.contains(&key.as_str())
}

/// How the text given to [`parse`] is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One ID per line, or several separated by commas.
    Manual,
    /// CSV: the first column of each row; a first row naming the column is skipped.
    Csv,
}

/// Parse pasted text or a CSV file into trimmed, validated, de-duplicated IDs in first-seen order.
pub fn parse(text: &str, format: InputFormat) -> Result<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        InputFormat::Manual => normalize(text.split(['\n', ',']).map(|s| s.trim_end_matches('\r'))),
        InputFormat::Csv => normalize(first_csv_column(text)?),
    }
}

/// Trim each ID, drop empty ones, reject malformed ones, drop repeats keeping the first, and
/// enforce [`MAX_IDS`]. The error message names the offending value.
pub fn normalize<I, S>(ids: I) -> Result<Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    // While few IDs are kept, a repeat is found by comparing with them: a Set Action usually
    // carries a handful, and hashing them cost more than the comparisons. Past that, a hash set.
    const LINEAR_UP_TO: usize = 16;
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for raw in ids {
        let id = raw.as_ref().trim();
        if id.is_empty() {
            continue;
        }
        let repeat = if out.len() <= LINEAR_UP_TO {
            out.iter().any(|kept| kept == id)
        } else {
            if seen.is_empty() {
                seen.extend(out.iter().cloned());
            }
            seen.contains(id)
        };
        if repeat {
            continue;
        }
        validate(id)?;
        if out.len() == MAX_IDS {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("too many customer IDs: at most {MAX_IDS} distinct IDs per request"),
            ));
        }
        if !seen.is_empty() {
            seen.insert(id.to_owned());
        }
        out.push(id.to_owned());
    }
    Ok(out)
}

/// One ID: not empty, at most [`MAX_ID_BYTES`], no control characters.
pub fn validate(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid("customer ID is empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(format!(
            "customer ID {} is {} bytes; at most {MAX_ID_BYTES} are allowed",
            crate::error::shown(id),
            id.len()
        )));
    }
    // Real IDs are ASCII: check their bytes, and decode characters only for the others.
    let control = if id.is_ascii() { id.bytes().any(|b| b.is_ascii_control()) } else { id.chars().any(char::is_control) };
    if control {
        return Err(Error::invalid(format!("customer ID {} contains a control character", crate::error::shown(id))));
    }
    Ok(())
}

/// The first column of a CSV text (RFC 4180: quoted fields may hold commas, quotes and line
/// breaks), without a header row. Rows may have any number of fields.
fn first_csv_column(text: &str) -> Result<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut cells = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| Error::invalid(format!("the CSV text cannot be read: {e}")))?;
        let first = record.get(0).unwrap_or("");
        if i == 0 && is_header(first) {
            continue;
        }
        if cells.len() > 2 * MAX_IDS {
            // Far past what normalize accepts, repeats included: stop reading.
            return Err(Error::new(ErrorKind::TooLarge, format!("too many customer IDs: at most {MAX_IDS} distinct IDs per request")));
        }
        cells.push(first.to_owned());
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_text_splits_on_lines_and_commas_trims_and_dedupes() {
        let ids = parse(" a1 ,b2\r\n\n c3\n a1,,b2 ", InputFormat::Manual).unwrap();
        assert_eq!(ids, ["a1", "b2", "c3"]);
    }

    #[test]
    fn csv_takes_the_first_column_and_skips_a_header_in_any_case() {
        let ids = parse("Customer_ID,name\nx1,foo\n\"x2\",bar\nx1,dup\n", InputFormat::Csv).unwrap();
        assert_eq!(ids, ["x1", "x2"]);
        let ids = parse("x0,h\nx1,foo\n", InputFormat::Csv).unwrap();
        assert_eq!(ids, ["x0", "x1"]);
        let ids = parse("\u{feff}ID\r\n\"q\"\"1\"\r\n", InputFormat::Csv).unwrap();
        assert_eq!(ids, ["q\"1"]);
    }

    #[test]
    fn csv_follows_rfc_4180_and_the_header_spellings_operators_use() {
        for header in ["cid", "CID", "Customer ID", "CustomerId", "customer-id", "Cust_ID", "ids", "customer_id"] {
            let ids = parse(&format!("{header},note\nc1,x\nc2,y\n"), InputFormat::Csv).unwrap();
            assert_eq!(ids, ["c1", "c2"], "{header}");
        }
        // Quoted fields with commas, quotes and a line break in a later column.
        let text = "id,note\r\n\"c1\",\"a, b\"\r\nc2,\"multi\nline, note\"\r\n\"c\"\"3\",z\r\n";
        assert_eq!(parse(text, InputFormat::Csv).unwrap(), ["c1", "c2", "c\"3"]);
        // A quoted first cell holding a comma is one ID, not two.
        assert_eq!(parse("\"a,b\",x\n", InputFormat::Csv).unwrap(), ["a,b"]);
        // A first cell that is an ID is kept.
        assert_eq!(parse("948ef156c19511f08f342664b3b9825e\n", InputFormat::Csv).unwrap().len(), 1);
    }

    #[test]
    fn control_characters_and_long_ids_are_rejected_by_value() {
        let err = parse("ok\nbad\u{7}id\n", InputFormat::Manual).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("bad\\u{7}id"), "{}", err.message);
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let err = normalize([long.as_str()]).unwrap_err();
        assert!(err.message.contains("129 bytes"), "{}", err.message);
        assert!(normalize(["x".repeat(MAX_ID_BYTES)]).is_ok());
    }

    /// Repeats are dropped the same way below, at and above the size where the search for them
    /// changes from comparisons to a hash set.
    #[test]
    fn repeats_are_dropped_at_every_size_keeping_first_seen_order() {
        for n in [1, 2, 15, 16, 17, 18, 40] {
            let distinct: Vec<String> = (0..n).map(|i| format!("id{i}")).collect();
            // Each ID twice, the second copies in reverse order, with blanks and spaces between.
            let mut given: Vec<String> = distinct.clone();
            given.push(" ".into());
            given.extend(distinct.iter().rev().map(|id| format!(" {id} ")));
            given.insert(n / 2, distinct[0].clone());
            assert_eq!(normalize(&given).unwrap(), distinct, "n = {n}");
        }
    }

    #[test]
    fn the_cap_allows_100000_and_refuses_one_more() {
        let ids: Vec<String> = (0..MAX_IDS).map(|i| format!("c{i}")).collect();
        assert_eq!(normalize(&ids).unwrap().len(), MAX_IDS);
        let mut more = ids.clone();
        more.push("c-extra".into());
        assert_eq!(normalize(&more).unwrap_err().kind, ErrorKind::TooLarge);
        // Repeats do not count toward the cap.
        more.pop();
        more.push("c0".into());
        assert_eq!(normalize(&more).unwrap().len(), MAX_IDS);
    }

    #[test]
    fn the_150_id_fixture_parses_to_150_ids() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy/dummy_batch_150_customers.csv");
        let text = std::fs::read_to_string(path).unwrap();
        {
            assert_eq!(parse(&text, InputFormat::Csv).unwrap().len(), 150);
        }
    }
}
