//! This process's Set Action counters and durations, kept in atomics (a few relaxed adds per
//! call, no lock), and the store's metrics as Prometheus text (see `exposition`). Counts are per
//! process, since libtms was loaded: a forked worker (gunicorn) starts from its parent's counts
//! at fork and counts on its own, so a scraper sums over processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a Set Action call (`Store::set_action`) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetActionOutcome {
    /// Sent; the cluster's answer made the job SUCCESS.
    Success,
    /// Sent; the job FAILED: the cluster refused it, answered an error or did not answer.
    Failure,
    /// Refused before anything was sent (invalid request, unknown action, URL not allowed, short
    /// token, reused idempotency key, unwritable store ...).
    Refused,
    /// A repeat of an idempotency key, answered from the first request without sending again.
    Repeat,
}

/// Every outcome, in the order the metrics text lists them.
const OUTCOMES: [SetActionOutcome; 4] =
    [SetActionOutcome::Success, SetActionOutcome::Failure, SetActionOutcome::Refused, SetActionOutcome::Repeat];

impl SetActionOutcome {
    pub fn label(self) -> &'static str {
        match self {
            SetActionOutcome::Success => "success",
            SetActionOutcome::Failure => "failure",
            SetActionOutcome::Refused => "refused",
            SetActionOutcome::Repeat => "repeat",
        }
    }
}

/// Upper bounds (seconds) of the duration histogram's buckets: a refusal takes microseconds, a
/// cluster's answer milliseconds to seconds, a timeout up to request_timeout_s (35 s by default).
pub const DURATION_BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The process's Set Action metrics.
pub struct SetActionMetrics {
    by_outcome: [AtomicU64; 4],
    /// Per bucket (not cumulative; summed when written), the last one `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// The one instance of this process.
pub static SET_ACTIONS: SetActionMetrics = SetActionMetrics {
    by_outcome: [const { AtomicU64::new(0) }; 4],
    buckets: [const { AtomicU64::new(0) }; DURATION_BUCKETS.len() + 1],
    sum_micros: AtomicU64::new(0),
};

impl SetActionMetrics {
    /// Count one call and its duration: three relaxed atomic adds.
    pub fn observe(&self, outcome: SetActionOutcome, took: Duration) {
        self.by_outcome[outcome as usize].fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn count(&self, outcome: SetActionOutcome) -> u64 {
        self.by_outcome[outcome as usize].load(Ordering::Relaxed)
    }

    /// Cumulative bucket counts (the last is `+Inf`, the total), and the sum in seconds.
    pub fn histogram(&self) -> (Vec<u64>, f64) {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        (cumulative, self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

pub mod exposition;

/// Job statuses always written (0 when none), so a dashboard's series exist from the start.
const KNOWN_JOB_STATUSES: [&str; 3] = ["IN_PROGRESS", "SUCCESS", "FAILED"];

/// The metrics text: the store's gauges from `counts` (read from the database now) and this
/// process's Set Action counters and durations from `set_actions`.
pub fn render(counts: &crate::model::StoreCounts, set_actions: &SetActionMetrics) -> String {
    let mut t = exposition::Text::default();
    t.family("tms_jobs", "gauge", "Jobs in the store by stored status (read from the database at each scrape; all processes' jobs).");
    let mut statuses = counts.jobs_by_status.clone();
    for known in KNOWN_JOB_STATUSES {
        statuses.entry(known.to_owned()).or_insert(0);
    }
    for (status, n) in &statuses {
        t.sample("tms_jobs", &[("status", status)], *n as f64);
    }
    t.family(
        "tms_set_actions_total",
        "counter",
        "Set Action calls (tms_set_action, the /proxy_fetch route) handled by this process since it loaded libtms, by \
         outcome: success (sent, job SUCCESS), failure (sent, job FAILED: refused by the cluster, an error status, no \
         answer), refused (refused before anything was sent), repeat (an idempotency key's repeat answered from the \
         first request). Per process: sum over processes.",
    );
    for outcome in OUTCOMES {
        t.sample("tms_set_actions_total", &[("outcome", outcome.label())], set_actions.count(outcome) as f64);
    }
    t.family(
        "tms_set_action_duration_seconds",
        "histogram",
        "Duration of this process's Set Action calls, from the call to its answer (every outcome). Per process.",
    );
    let (buckets, sum) = set_actions.histogram();
    t.histogram("tms_set_action_duration_seconds", &DURATION_BUCKETS, &buckets, sum);
    t.family("tms_audit_rows", "gauge", "Rows in the audit log (read from the database at each scrape).");
    t.sample("tms_audit_rows", &[], counts.audit_rows as f64);
    t.family(
        "tms_audit_outbox_pending",
        "gauge",
        "Audit rows waiting in jobs.db's outbox for the audit log (SQLite; always 0 on PostgreSQL, where jobs and \
         the audit log commit together).",
    );
    t.sample("tms_audit_outbox_pending", &[], counts.audit_waiting as f64);
    t.family(
        "tms_store_setting",
        "gauge",
        "The durability settings in effect on a connection of the store's own pool (always 1; the setting and its \
         value are labels): jobs.synchronous, jobs.journal_mode, audit.synchronous, audit.journal_mode on SQLite, \
         synchronous_commit on PostgreSQL.",
    );
    for (setting, value) in &counts.durability {
        t.sample("tms_store_setting", &[("setting", setting), ("value", value)], 1.0);
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_bucket_and_the_histogram_is_cumulative() {
        let m = SetActionMetrics {
            by_outcome: [const { AtomicU64::new(0) }; 4],
            buckets: [const { AtomicU64::new(0) }; DURATION_BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
        };
        m.observe(SetActionOutcome::Refused, Duration::from_micros(200));
        m.observe(SetActionOutcome::Success, Duration::from_millis(30));
        m.observe(SetActionOutcome::Failure, Duration::from_secs(100));
        let (buckets, sum) = m.histogram();
        assert_eq!((buckets[0], buckets[3], buckets[4], buckets[13], buckets[14]), (1, 1, 2, 2, 3));
        assert!((sum - 100.0302).abs() < 1e-9, "{sum}");
        assert_eq!((m.count(SetActionOutcome::Success), m.count(SetActionOutcome::Repeat)), (1, 0));
    }
}
