//! Timestamps in the legacy formats, from the C library's clock (no date crate needed):
//! jobs use local time `YYYY-MM-DDTHH:MM:SS.ffffff` (Python's `datetime.now().isoformat()`),
//! audit rows use UTC `YYYY-MM-DD HH:MM:SS` (SQLite's CURRENT_TIMESTAMP).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn broken_down(secs: i64, local: bool) -> libc::tm {
    let t = secs as libc::time_t;
    // SAFETY: tm is plain data; localtime_r/gmtime_r only write into it and are thread-safe.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if local {
            libc::localtime_r(&t, &mut tm);
        } else {
            libc::gmtime_r(&t, &mut tm);
        }
        tm
    }
}

/// Local time as the jobs table stores it: `2026-01-28T15:04:53.003687`.
pub fn local_iso(t: SystemTime) -> String {
    let d = since_epoch(t);
    let tm = broken_down(d.as_secs() as i64, true);
    let mut text = *b"0000-00-00T00:00:00.000000";
    put_date_time(&mut text, &tm);
    put_digits(&mut text[20..26], d.subsec_micros());
    ascii(&text)
}

/// UTC as the audit table stores it: `2026-01-30 17:00:26`.
pub fn utc_sql(t: SystemTime) -> String {
    let tm = broken_down(since_epoch(t).as_secs() as i64, false);
    let mut text = *b"0000-00-00 00:00:00";
    put_date_time(&mut text, &tm);
    ascii(&text)
}

// Written digit by digit: every job and audit row takes a timestamp, and `format!` with its
// width and padding handling cost more than the rest of the timestamp.
fn put_date_time(text: &mut [u8], tm: &libc::tm) {
    put_digits(&mut text[0..4], (tm.tm_year + 1900) as u32);
    put_digits(&mut text[5..7], (tm.tm_mon + 1) as u32);
    put_digits(&mut text[8..10], tm.tm_mday as u32);
    put_digits(&mut text[11..13], tm.tm_hour as u32);
    put_digits(&mut text[14..16], tm.tm_min as u32);
    put_digits(&mut text[17..19], tm.tm_sec as u32);
}

/// `value`'s last `out.len()` decimal digits, zero-padded.
fn put_digits(out: &mut [u8], mut value: u32) {
    for place in out.iter_mut().rev() {
        *place = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn ascii(text: &[u8]) -> String {
    text.iter().map(|&b| b as char).collect()
}

/// Local ISO time `age_s` seconds ago, for comparing against stored local timestamps as text.
pub fn local_iso_ago(age_s: i64) -> String {
    let now = SystemTime::now();
    let then = if age_s >= 0 {
        now.checked_sub(Duration::from_secs(age_s as u64)).unwrap_or(UNIX_EPOCH)
    } else {
        now + Duration::from_secs(age_s.unsigned_abs())
    };
    local_iso(then)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_the_legacy_columns() {
        let t = UNIX_EPOCH + Duration::from_micros(1_769_612_693_003_687);
        assert_eq!(utc_sql(t), "2026-01-28 15:04:53");
        let local = local_iso(t);
        assert_eq!(local.len(), 26);
        assert!(local.ends_with(":53.003687"), "{local}");
        assert_eq!(&local[10..11], "T");
        let at_second = UNIX_EPOCH + Duration::from_secs(1_769_612_693);
        assert!(local_iso(at_second).ends_with(":53.000000"));
        assert_eq!(utc_sql(UNIX_EPOCH), "1970-01-01 00:00:00");
    }
}
