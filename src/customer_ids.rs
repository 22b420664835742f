//! Customer IDs as operators give them: pasted text (one per line or comma-separated) or a CSV
//! upload (first column, optional header). Every path that stores IDs goes through
//! [`normalize`], so a repeated ID can never reach the UNIQUE(job_id, cid) constraint.

use std::collections::HashSet;

use crate::error::{Error, ErrorKind, Result};

/// Longest ID accepted, in bytes. Real IDs are 24-32 characters.
pub const MAX_ID_BYTES: usize = 128;
/// Most distinct IDs one request may carry. Production holds 27,682 customers in all.
pub const MAX_IDS: usize = 100_000;

/// Header cells that mark the first CSV row as a header rather than an ID (compared case-insensitively).
const CSV_HEADERS: [&str; 4] = ["customer_id", "cust_id", "id", "customer"];

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
        InputFormat::Csv => {
            let mut first_cells = text.lines().map(first_csv_cell).peekable();
            if let Some(first) = first_cells.peek() {
                let first = first.trim();
                if CSV_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(first)) {
                    first_cells.next();
                }
            }
            normalize(first_cells)
        }
    }
}

/// Trim each ID, drop empty ones, reject malformed ones, drop repeats keeping the first, and
/// enforce [`MAX_IDS`]. The error message names the offending value.
pub fn normalize<I, S>(ids: I) -> Result<Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for raw in ids {
        let id = raw.as_ref().trim();
        if id.is_empty() || seen.contains(id) {
            continue;
        }
        validate(id)?;
        if out.len() == MAX_IDS {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("too many customer IDs: at most {MAX_IDS} distinct IDs per request"),
            ));
        }
        seen.insert(id.to_owned());
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
        let head: String = id.chars().take(40).collect();
        return Err(Error::invalid(format!(
            "customer ID \"{head}...\" is {} bytes; at most {MAX_ID_BYTES} are allowed",
            id.len()
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid(format!("customer ID {id:?} contains a control character")));
    }
    Ok(())
}

/// The first cell of one CSV row, with RFC 4180 quoting undone ("a""b" -> a"b).
fn first_csv_cell(line: &str) -> String {
    let line = line.trim_end_matches('\r').trim_start();
    if let Some(rest) = line.strip_prefix('"') {
        let mut cell = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cell.push('"');
                } else {
                    break;
                }
            } else {
                cell.push(c);
            }
        }
        cell
    } else {
        line.split(',').next().unwrap_or("").to_owned()
    }
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
    fn control_characters_and_long_ids_are_rejected_by_value() {
        let err = parse("ok\nbad\u{7}id\n", InputFormat::Manual).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("bad\\u{7}id"), "{}", err.message);
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let err = normalize([long.as_str()]).unwrap_err();
        assert!(err.message.contains("129 bytes"), "{}", err.message);
        assert!(normalize(["x".repeat(MAX_ID_BYTES)]).is_ok());
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
