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
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        d.subsec_micros()
    )
}

/// UTC as the audit table stores it: `2026-01-30 17:00:26`.
pub fn utc_sql(t: SystemTime) -> String {
    let tm = broken_down(since_epoch(t).as_secs() as i64, false);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
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
    }
}
