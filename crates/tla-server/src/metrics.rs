//! Counters and a latency histogram, rendered as Prometheus text at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the commit latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
];

/// A histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation, in seconds.
    pub fn observe(&self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The service's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Decisions served.
    pub decisions: AtomicU64,
    /// Events stored.
    pub events_accepted: AtomicU64,
    /// Events whose id was already stored.
    pub events_duplicate: AtomicU64,
    /// Events refused, with their reason in the response.
    pub events_rejected: AtomicU64,
    /// Requests refused with a 4xx (auth, validation, unknown resources).
    pub client_errors: AtomicU64,
    /// Decision distributions rebuilt.
    pub refreshes: AtomicU64,
    /// Events the learner has applied to the models.
    pub events_learned: AtomicU64,
    /// Decisions written to the decision log.
    pub decisions_logged: AtomicU64,
    /// Snapshots written.
    pub snapshots: AtomicU64,
    /// Time from handing a batch to the event log until its commit returned.
    pub commit_seconds: Histogram,
}

impl Metrics {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text exposition; `backlog` is the decision-log queue length.
    pub fn render(&self, backlog: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tla_decision_log_backlog Decisions served and not yet written to the decision log.\n# TYPE tla_decision_log_backlog gauge\ntla_decision_log_backlog {backlog}"
        );
        let counters = [
            ("tla_decisions_total", "Decisions served.", &self.decisions),
            (
                "tla_events_accepted_total",
                "Events stored.",
                &self.events_accepted,
            ),
            (
                "tla_events_duplicate_total",
                "Events whose id was already stored.",
                &self.events_duplicate,
            ),
            (
                "tla_events_rejected_total",
                "Events refused.",
                &self.events_rejected,
            ),
            (
                "tla_client_errors_total",
                "Requests refused with a 4xx status.",
                &self.client_errors,
            ),
            (
                "tla_refreshes_total",
                "Decision distributions rebuilt.",
                &self.refreshes,
            ),
            (
                "tla_events_learned_total",
                "Events applied to the models.",
                &self.events_learned,
            ),
            (
                "tla_decisions_logged_total",
                "Decisions written to the decision log.",
                &self.decisions_logged,
            ),
            (
                "tla_snapshots_total",
                "Model snapshots written.",
                &self.snapshots,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        self.commit_seconds.render(
            "tla_event_commit_seconds",
            "Time to commit a batch of events durably.",
            &mut out,
        );
        out
    }
}
