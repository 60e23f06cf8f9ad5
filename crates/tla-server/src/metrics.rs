//! Counters, a gauge and latency histograms, served as Prometheus text at `/metrics`.
//!
//! Kept in a [`prometheus::Registry`] and written by its [`TextEncoder`] in the text
//! exposition format 0.0.4 ([`CONTENT_TYPE`]): every family announces its name with
//! `# HELP` and `# TYPE` (counters under their `_total` name), then its samples.
//! The names are an interface (`bench/http.sh` and dashboards read them); the table
//! in `docs/service.md` lists them.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder};

/// Content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Upper bounds (seconds) of the commit latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
];

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Holds every metric below, for [`Metrics::render`].
    registry: Registry,
    /// Decisions served and not yet written to the decision log (set when rendered).
    decision_log_backlog: IntGauge,
    /// Decisions served.
    pub decisions: IntCounter,
    /// Events stored.
    pub events_accepted: IntCounter,
    /// Exact repeats of a stored event (a reused id with another content is rejected).
    pub events_duplicate: IntCounter,
    /// Events refused, with their reason in the response.
    pub events_rejected: IntCounter,
    /// Spend reports stored.
    pub spend_reports_accepted: IntCounter,
    /// Exact repeats of a stored spend report.
    pub spend_reports_duplicate: IntCounter,
    /// Spend reports refused, with their reason in the response.
    pub spend_reports_rejected: IntCounter,
    /// Budget changes recorded.
    pub budget_changes: IntCounter,
    /// Requests refused at the key check (401, 403).
    pub client_errors: IntCounter,
    /// Decision distributions rebuilt.
    pub refreshes: IntCounter,
    /// Events the learner has applied to the models.
    pub events_learned: IntCounter,
    /// Decisions written to the decision log.
    pub decisions_logged: IntCounter,
    /// Decisions refused because the decision log was behind or could not be written
    /// (503 `decision_log_unavailable`, 507 `storage_full`).
    pub decisions_refused: IntCounter,
    /// Time from a decision to the commit that wrote it to the decision log, seconds:
    /// one sample per write, for its oldest decision (the write's largest lag).
    pub decision_log_lag_seconds: Histogram,
    /// Snapshots written.
    pub snapshots: IntCounter,
    /// Time from handing a batch to the event log until its commit returned, seconds.
    pub commit_seconds: Histogram,
    /// Spend leases this server asked for (with a stream: `crate::lease`).
    pub lease_asks: IntCounter,
    /// Of those, the asks the stream's rule refused.
    pub lease_refused: IntCounter,
    /// Purchases skipped for want of a spend lease.
    pub lease_skips: IntCounter,
    /// HTTP connections open now.
    pub connections_open: IntGauge,
    /// Times a connection found the connection cap reached.
    pub connection_limit_reached: IntCounter,
    /// Events refused since the start, by rejection code (the dashboard's health; the
    /// total is `events_rejected`).
    rejected_by_code: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// A counter registered in `registry`. The names are constants of this module, valid
/// and distinct (a unit test renders them all), so registration cannot fail.
fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("metric names here are valid");
    registry
        .register(Box::new(counter.clone()))
        .expect("metric names here are distinct");
    counter
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let decision_log_backlog = IntGauge::new(
            "tla_decision_log_backlog",
            "Decisions served and not yet written to the decision log.",
        )
        .expect("metric names here are valid");
        registry
            .register(Box::new(decision_log_backlog.clone()))
            .expect("metric names here are distinct");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tla_event_commit_seconds",
                "Time to commit a batch of events durably.",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("metric names and buckets here are valid");
        registry
            .register(Box::new(commit_seconds.clone()))
            .expect("metric names here are distinct");
        let connections_open =
            IntGauge::new("tla_http_connections_open", "HTTP connections open now.")
                .expect("metric names here are valid");
        registry
            .register(Box::new(connections_open.clone()))
            .expect("metric names here are distinct");
        let decision_log_lag_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tla_decision_log_lag_seconds",
                "Time from a decision to its commit in the decision log (oldest of each write).",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("metric names and buckets here are valid");
        registry
            .register(Box::new(decision_log_lag_seconds.clone()))
            .expect("metric names here are distinct");
        let r = &registry;
        Self {
            rejected_by_code: std::sync::Mutex::default(),
            decision_log_backlog,
            decisions: counter(r, "tla_decisions_total", "Decisions served."),
            events_accepted: counter(r, "tla_events_accepted_total", "Events stored."),
            events_duplicate: counter(
                r,
                "tla_events_duplicate_total",
                "Exact repeats of a stored event (same id and content).",
            ),
            events_rejected: counter(r, "tla_events_rejected_total", "Events refused."),
            spend_reports_accepted: counter(
                r,
                "tla_spend_reports_accepted_total",
                "Spend reports stored.",
            ),
            spend_reports_duplicate: counter(
                r,
                "tla_spend_reports_duplicate_total",
                "Exact repeats of a stored spend report (same id and content).",
            ),
            spend_reports_rejected: counter(
                r,
                "tla_spend_reports_rejected_total",
                "Spend reports refused.",
            ),
            budget_changes: counter(
                r,
                "tla_budget_changes_total",
                "Budget changes of running campaigns recorded.",
            ),
            client_errors: counter(
                r,
                "tla_client_errors_total",
                "Requests refused at the key check (401 or 403).",
            ),
            refreshes: counter(r, "tla_refreshes_total", "Decision distributions rebuilt."),
            events_learned: counter(
                r,
                "tla_events_learned_total",
                "Events applied to the models.",
            ),
            decisions_logged: counter(
                r,
                "tla_decisions_logged_total",
                "Decisions written to the decision log.",
            ),
            decisions_refused: counter(
                r,
                "tla_decisions_refused_total",
                "Decisions refused because the decision log was behind or unwritable.",
            ),
            snapshots: counter(r, "tla_snapshots_total", "Model snapshots written."),
            lease_asks: counter(
                r,
                "tla_lease_asks_total",
                "Spend leases this server asked for on the stream.",
            ),
            lease_refused: counter(
                r,
                "tla_lease_refused_total",
                "Spend lease asks the stream's rule refused.",
            ),
            lease_skips: counter(
                r,
                "tla_lease_skips_total",
                "Purchases skipped for want of a spend lease.",
            ),
            commit_seconds,
            connections_open,
            connection_limit_reached: counter(
                r,
                "tla_http_connection_limit_reached_total",
                "Times a new connection found the connection cap reached.",
            ),
            decision_log_lag_seconds,
            registry,
        }
    }
}

impl Metrics {
    /// Counts an event refused with `code` (and in `events_rejected`).
    pub fn note_rejected(&self, code: &'static str) {
        Metrics::add(&self.events_rejected, 1);
        *self
            .rejected_by_code
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(code)
            .or_default() += 1;
    }

    /// Events refused since the start, by code, in code order.
    pub fn rejected_by_code(&self) -> Vec<(&'static str, u64)> {
        self.rejected_by_code
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(code, n)| (*code, *n))
            .collect()
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &IntCounter, n: u64) {
        counter.inc_by(n);
    }

    /// Prometheus text exposition ([`CONTENT_TYPE`]); `backlog` is the decision-log
    /// queue length.
    pub fn render(&self, backlog: usize) -> Result<String, prometheus::Error> {
        self.decision_log_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// The gauges of a shared stream, in the text format, appended to `/metrics` when the
/// event log is one (names in docs/service.md).
pub fn render_stream(health: &crate::stream_log::StreamHealth) -> String {
    let gauges: [(&str, &str, f64); 7] = [
        (
            "tla_stream_last_seq",
            "The stream's last sequence, as last heard.",
            health.stream_last_seq as f64,
        ),
        (
            "tla_stream_mirrored_seq",
            "The last stream sequence this server received and applied to its mirror.",
            health.mirrored_seq as f64,
        ),
        (
            "tla_stream_lag",
            "Stream records this server has not received yet.",
            health.lag as f64,
        ),
        (
            "tla_stream_unapplied_events",
            "Events received that the models have not applied yet.",
            health.unapplied_events as f64,
        ),
        (
            "tla_stream_connected",
            "1 while the NATS connection is up.",
            f64::from(u8::from(health.connected)),
        ),
        (
            "tla_stream_since_contact_seconds",
            "Seconds since the server last heard from the stream.",
            health.since_contact_ms as f64 / 1000.0,
        ),
        (
            "tla_stream_stale",
            "1 while decisions are refused because the stream has not been heard from within the bound.",
            f64::from(u8::from(health.stale)),
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in gauges {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_keeps_its_name_type_and_help() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.decisions, 5);
        Metrics::add(&metrics.events_accepted, 2);
        metrics.commit_seconds.observe(0.003);
        metrics.commit_seconds.observe(2.0);
        let text = metrics.render(7).unwrap();
        for (name, kind, help) in [
            (
                "tla_decision_log_backlog",
                "gauge",
                "Decisions served and not yet written to the decision log.",
            ),
            ("tla_decisions_total", "counter", "Decisions served."),
            ("tla_events_accepted_total", "counter", "Events stored."),
            (
                "tla_events_duplicate_total",
                "counter",
                "Exact repeats of a stored event (same id and content).",
            ),
            ("tla_events_rejected_total", "counter", "Events refused."),
            (
                "tla_spend_reports_accepted_total",
                "counter",
                "Spend reports stored.",
            ),
            (
                "tla_spend_reports_duplicate_total",
                "counter",
                "Exact repeats of a stored spend report (same id and content).",
            ),
            (
                "tla_spend_reports_rejected_total",
                "counter",
                "Spend reports refused.",
            ),
            (
                "tla_budget_changes_total",
                "counter",
                "Budget changes of running campaigns recorded.",
            ),
            (
                "tla_client_errors_total",
                "counter",
                "Requests refused at the key check (401 or 403).",
            ),
            (
                "tla_refreshes_total",
                "counter",
                "Decision distributions rebuilt.",
            ),
            (
                "tla_events_learned_total",
                "counter",
                "Events applied to the models.",
            ),
            (
                "tla_decisions_logged_total",
                "counter",
                "Decisions written to the decision log.",
            ),
            ("tla_snapshots_total", "counter", "Model snapshots written."),
            (
                "tla_lease_asks_total",
                "counter",
                "Spend leases this server asked for on the stream.",
            ),
            (
                "tla_lease_refused_total",
                "counter",
                "Spend lease asks the stream's rule refused.",
            ),
            (
                "tla_lease_skips_total",
                "counter",
                "Purchases skipped for want of a spend lease.",
            ),
            (
                "tla_decisions_refused_total",
                "counter",
                "Decisions refused because the decision log was behind or unwritable.",
            ),
            (
                "tla_decision_log_lag_seconds",
                "histogram",
                "Time from a decision to its commit in the decision log (oldest of each write).",
            ),
            (
                "tla_event_commit_seconds",
                "histogram",
                "Time to commit a batch of events durably.",
            ),
            (
                "tla_http_connections_open",
                "gauge",
                "HTTP connections open now.",
            ),
            (
                "tla_http_connection_limit_reached_total",
                "counter",
                "Times a new connection found the connection cap reached.",
            ),
        ] {
            assert!(
                text.contains(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n")),
                "{name} {kind}: {text}"
            );
        }
        for sample in [
            "tla_decision_log_backlog 7\n",
            "tla_decisions_total 5\n",
            "tla_events_accepted_total 2\n",
            "tla_snapshots_total 0\n",
            "tla_event_commit_seconds_bucket{le=\"0.0005\"} 0\n",
            "tla_event_commit_seconds_bucket{le=\"0.004\"} 1\n",
            "tla_event_commit_seconds_bucket{le=\"1.024\"} 1\n",
            "tla_event_commit_seconds_bucket{le=\"+Inf\"} 2\n",
            "tla_event_commit_seconds_sum 2.003\n",
            "tla_event_commit_seconds_count 2\n",
        ] {
            assert!(text.contains(sample), "{sample:?} missing from {text}");
        }
        assert_eq!(text.matches("# TYPE ").count(), 22, "{text}");
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4");
    }
}
