//! The dashboard's pages, rendered on the server as HTML (no inline script or style:
//! the Content-Security-Policy forbids both), and the data its charts read.

use super::session::Access;
use crate::campaign::CampaignSlot;
use crate::error::ApiError;
use crate::state::AppState;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use tla_core::report::{Interval, Report, ReportSettings};
use tla_store::RollupCounts;

/// Escapes text for HTML (element content and quoted attributes).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes text for a URL's path segment or query value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A number as shown: 4 significant decimals below 1, 2 below 1,000, else none, with
/// thousands grouped (`1,234,567`).
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".to_owned();
    }
    let a = x.abs();
    if a >= 1000.0 {
        let grouped = group(&format!("{a:.0}"));
        if x < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if a >= 1.0 || a == 0.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// A count as shown, thousands grouped: `2,204,160`.
pub fn count(n: u64) -> String {
    group(&n.to_string())
}

/// Digits grouped by three from the right with commas.
fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt_num(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), num)
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |x| format!("{:.1}%", 100.0 * x))
}

/// A mean with its interval: `0.0123 [0.0101, 0.0150]`.
pub fn interval(i: &Interval) -> String {
    format!(
        "{} <span class=\"ci\">[{}, {}]</span>",
        num(i.mean),
        num(i.lower),
        num(i.upper)
    )
}

fn bounds(value: f64, lower: f64, upper: f64) -> String {
    format!(
        "{} <span class=\"ci\">[{}, {}]</span>",
        num(value),
        num(lower),
        num(upper)
    )
}

/// A time in ms since the Unix epoch, RFC 3339 in UTC.
pub fn time(ms: i64) -> String {
    tla_core::timestamp::format_rfc3339(ms)
}

/// The head and top bar of every page.
fn head(title: &str, csrf: Option<&str>) -> String {
    let signout = csrf.map_or_else(String::new, |csrf| {
        format!(
            "<form method=\"post\" action=\"/signout\" class=\"signout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
            esc(csrf)
        )
    });
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · TLA</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/assets/uPlot.min.css\"><link rel=\"stylesheet\" href=\"/assets/dashboard.css\"><script src=\"/assets/uPlot.iife.min.js\" defer></script><script src=\"/assets/dashboard.js\" defer></script></head><body><header><a href=\"/\" class=\"brand\">TLA</a><span class=\"title\">{}</span>{signout}</header><main>",
        esc(title),
        esc(title)
    )
}

const FOOT: &str = "</main></body></html>";

/// A page showing an error.
pub fn error_page(error: &ApiError) -> String {
    format!(
        "{}<section class=\"error\"><h1>{}</h1><p>{}</p><p><a href=\"/\">Campaigns</a></p></section>{FOOT}",
        head("Error", None),
        error.status(),
        esc(error.message())
    )
}

/// The sign-in page; `message` says why the last attempt failed.
pub fn signin(next: &str, message: Option<&str>) -> String {
    let message = message.map_or_else(String::new, |m| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m))
    });
    format!(
        "{}<section class=\"signin\"><h1>Sign in</h1>{message}<form method=\"post\" action=\"/signin\"><label>API key <input type=\"password\" name=\"key\" id=\"key\" autocomplete=\"off\" placeholder=\"tla_…\" required></label><input type=\"hidden\" name=\"next\" value=\"{}\"><button id=\"signin\">Sign in</button></form><p class=\"hint\">A key with scope <code>read</code> views; <code>admin</code> also acts. <code>tla keys create</code> makes one.</p></section>{FOOT}",
        head("Sign in", None),
        esc(next)
    )
}

/// `active`, `paused` or `archived`.
pub fn status_of(slot: &CampaignSlot) -> &'static str {
    if slot.is_archived() {
        "archived"
    } else if slot.paused.load(std::sync::atomic::Ordering::SeqCst) {
        "paused"
    } else {
        "active"
    }
}

/// A campaign's totals (holdout included), from its hourly rollups.
pub fn totals(state: &AppState, slot: &CampaignSlot) -> Result<RollupCounts, ApiError> {
    let mut total = RollupCounts::default();
    for row in super::rollup::series(slot, state.store(), 3_600_000, i64::MIN)? {
        if row.series == super::rollup::TOTAL || row.series == super::rollup::HELD_OUT {
            total.add(&row.counts);
        }
    }
    Ok(total)
}

/// The campaign list.
pub fn list(state: &AppState, csrf: &str) -> Result<String, ApiError> {
    let mut out = head("Campaigns", Some(csrf));
    out.push_str("<h1>Campaigns</h1><table class=\"list\"><thead><tr><th>Campaign</th><th>Status</th><th>Revision</th><th>Versions</th><th>Impressions</th><th>Donors</th><th>Raised</th><th>Spend</th><th>Value per $</th></tr></thead><tbody>");
    let campaigns = state.campaigns();
    for slot in &campaigns {
        let t = totals(state, slot)?;
        let current = slot.current();
        let vpd = (t.cost > 0.0).then(|| t.value / t.cost);
        let _ = write!(
            out,
            "<tr><td><a href=\"/campaigns/{}\">{}</a> <code>{}</code></td><td class=\"status-{st}\">{st}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            url_encode(&slot.id),
            esc(&slot.name),
            esc(&slot.id),
            current.number,
            count(current.campaign.design().space.allowed_count()),
            count(t.impressions),
            count(t.conversions),
            num(t.value),
            num(t.cost),
            opt_num(vpd),
            st = status_of(slot),
        );
    }
    if campaigns.is_empty() {
        out.push_str("<tr><td colspan=\"9\">No campaigns yet: <code>tla campaigns create spec.toml</code>.</td></tr>");
    }
    out.push_str("</tbody></table>");
    out.push_str(FOOT);
    Ok(out)
}

fn row(out: &mut String, label: &str, value: &str) {
    let _ = write!(out, "<tr><th>{}</th><td>{value}</td></tr>", esc(label));
}

fn live_row(out: &mut String, label: &str, key: &str, value: &str) {
    let _ = write!(
        out,
        "<tr><th>{}</th><td data-live=\"{key}\">{value}</td></tr>",
        esc(label)
    );
}

/// The settings of the report the campaign page shows.
pub fn report_settings() -> ReportSettings {
    ReportSettings::default()
}

/// The campaign page.
pub fn campaign(
    state: &AppState,
    slot: &Arc<CampaignSlot>,
    access: &Access,
) -> Result<String, ApiError> {
    let now = state.clock().now_ms();
    // The report from its cache, computed off the request path (`super::cache`).
    let cached = state.dashboard().reports.get(state, slot, now);
    let report = cached.report.as_deref();
    let csrf = access.csrf_token();
    let current = slot.current();
    let live = super::live_figures(state, &slot.id)?;
    let mut out = head(&slot.name, Some(&csrf));
    let even = report
        .and_then(|r| r.lift.as_ref())
        .and_then(|l| l.even_split.estimate.as_ref())
        .map(|e| e.value);
    let holdout_rate = report
        .and_then(|r| r.holdout.as_ref())
        .and_then(|h| h.holdout.value_per_impression);
    let _ = write!(
        out,
        "<div id=\"campaign\" data-id=\"{}\" data-even-split=\"{}\" data-holdout=\"{}\"><h1>{} <span class=\"status status-{}\" data-live=\"status\">{}</span></h1><p class=\"sub\"><code>{}</code> · revision {} since {} · objective {}</p>",
        esc(&slot.id),
        even.map_or_else(String::new, |v| v.to_string()),
        holdout_rate.map_or_else(String::new, |v| v.to_string()),
        esc(&slot.name),
        live.status,
        live.status,
        esc(&slot.id),
        current.number,
        esc(&time(current.at_ms)),
        esc(current.campaign.design().objective.as_str()),
    );
    controls(&mut out, slot, &csrf);
    let when = match (cached.at_ms, cached.computing) {
        (Some(at), true) => format!(
            "The report is as of {}; it is being computed again.",
            time(at)
        ),
        (Some(at), false) => format!(
            "The report is as of {} (computed again after a minute).",
            time(at)
        ),
        (None, _) => "The report is being computed: reload in a moment.".to_owned(),
    };
    let _ = write!(
        out,
        "<p class=\"hint\" id=\"report-age\">{}</p>",
        esc(&when)
    );
    if let Some(error) = &cached.error {
        let _ = write!(
            out,
            "<p class=\"error\">The report could not be computed: {}</p>",
            esc(error)
        );
    }
    story(&mut out, report, &live);
    out.push_str("<section><h2>Allocation over time</h2><p class=\"hint\">Share of impressions per option, per minute, stacked; lines mark revisions (R), pauses and resumes, and budget changes (B).</p><div id=\"allocation\" class=\"charts\"></div></section>");
    out.push_str("<section><h2>Cumulative value</h2><p class=\"hint\">Raised so far, against the even split's estimated value per decision and the holdout's value per impression, each times the impressions so far.</p><div id=\"cumulative\" class=\"chart\"></div></section>");
    if let Some(report) = report {
        leaderboards(&mut out, report);
        segments(&mut out, report);
        lift(&mut out, report);
        money(&mut out, report);
    }
    health(&mut out, state, &live);
    audit(&mut out, state, slot)?;
    out.push_str("</div>");
    out.push_str(FOOT);
    Ok(out)
}

fn controls(out: &mut String, slot: &CampaignSlot, csrf: &str) {
    if slot.is_archived() {
        out.push_str("<p class=\"hint\">Archived: no controls.</p>");
        return;
    }
    let id = url_encode(&slot.id);
    let csrf = esc(csrf);
    let paused = slot.paused.load(std::sync::atomic::Ordering::SeqCst);
    let (action, label) = if paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    let current = slot.current();
    let mut options = String::new();
    for component in &current.campaign.spec().components {
        for option in &component.options {
            let name = format!("{}.{}", component.name, option.name);
            let retired = if option.retired { " (retired)" } else { "" };
            let _ = write!(
                options,
                "<option value=\"{}\">{}{retired}</option>",
                esc(&name),
                esc(&name)
            );
        }
    }
    let _ = write!(
        out,
        "<section class=\"controls\"><h2>Controls</h2><p class=\"hint\">Admin keys only; each is recorded and marked on the charts.</p>\
<form method=\"post\" action=\"/campaigns/{id}/controls/{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button id=\"control-{action}\">{label}</button></form>\
<form method=\"post\" action=\"/campaigns/{id}/controls/option\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><select name=\"option\">{options}</select><select name=\"what\"><option value=\"retire\">retire</option><option value=\"pin\">pin (every segment)</option><option value=\"unpin\">unpin</option></select><input name=\"reason\" placeholder=\"reason\" required><button>Apply</button></form>"
    );
    if let Some(flight) = &current.campaign.spec().flight {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/campaigns/{id}/controls/budget\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input name=\"budget\" placeholder=\"budget ({})\" inputmode=\"decimal\"><input name=\"daily_cap\" placeholder=\"daily cap (none: no cap)\"><input name=\"reason\" placeholder=\"reason\" required><button>Change budget</button></form>\
<form method=\"post\" action=\"/campaigns/{id}/controls/end\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input name=\"end\" placeholder=\"end ({})\"><input name=\"reason\" placeholder=\"reason\" required><button>Change end date</button></form>",
            num(flight.budget),
            esc(&flight.end)
        );
    }
    out.push_str("</section>");
}

fn story(out: &mut String, report: Option<&Report>, live: &super::Live) {
    out.push_str("<section><h2>The campaign</h2><table class=\"kv\">");
    let Some(report) = report else {
        live_row(out, "Impressions", "impressions", &count(live.impressions));
        live_row(out, "Donors", "donors", &count(live.donors));
        live_row(out, "Raised", "raised", &num(live.raised));
        live_row(out, "Spend", "spend", &num(live.spend));
        out.push_str("</table></section>");
        return;
    };
    let s = &report.summary;
    row(
        out,
        "Versions defined",
        &format!(
            "{} ({} ask to act: {})",
            count(s.versions_defined),
            count(s.acting_versions_defined),
            pct(Some(s.acting_share_defined))
        ),
    );
    row(out, "Versions served", &count(s.versions_served));
    row(
        out,
        "Share of serving asking to act",
        &pct(s.acting_share_served),
    );
    row(
        out,
        "Share of spend asking to act",
        &pct(s.acting_share_spend),
    );
    live_row(out, "Impressions", "impressions", &count(live.impressions));
    live_row(out, "Donors", "donors", &count(live.donors));
    live_row(out, "Raised", "raised", &num(live.raised));
    live_row(out, "Spend", "spend", &num(live.spend));
    row(out, "Cost per donor", &opt_num(s.cost_per_donor));
    row(out, "Value per dollar", &opt_num(s.value_per_dollar));
    out.push_str("</table><p class=\"hint\">Live figures count the events as stored (holdout included); the rest is the report as of this page's load.</p></section>");
}

fn leaderboards(out: &mut String, report: &Report) {
    let _ = write!(
        out,
        "<section><h2>Leaderboards</h2><p class=\"hint\">Per component: the posterior rate with its {:.0}% credible interval, the value per impression, and the probability of being best ({} draws).</p>",
        100.0 * report.credible_level,
        report.draws
    );
    for component in &report.components {
        let _ = write!(
            out,
            "<h3>{}</h3><table class=\"board\"><thead><tr><th>Option</th><th>Impressions</th><th>Donors</th><th>Rate</th><th>Value per impression</th><th>P(best)</th><th>Expected loss</th></tr></thead><tbody>",
            esc(&component.component)
        );
        for option in &component.options {
            let _ = write!(
                out,
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><meter min=\"0\" max=\"1\" value=\"{}\"></meter> {}</td><td>{}</td></tr>",
                esc(&option.option),
                if option.asks_to_act {
                    " <span class=\"tag\">asks</span>"
                } else {
                    ""
                },
                count(option.counts.impressions),
                count(option.counts.conversions),
                interval(&option.posterior.rate),
                option
                    .posterior
                    .value_per_impression
                    .as_ref()
                    .map_or_else(|| "–".to_owned(), interval),
                option.p_best,
                pct(Some(option.p_best)),
                num(option.expected_loss),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

fn segments(out: &mut String, report: &Report) {
    out.push_str("<section><h2>Top versions per segment</h2>");
    for segment in &report.segments {
        let _ = write!(
            out,
            "<h3>{} <span class=\"hint\">{} impressions, rate {}</span></h3><table class=\"board\"><thead><tr><th>Version</th><th>Impressions</th><th>Donors</th><th>Rate</th><th>P(best)</th></tr></thead><tbody>",
            esc(&segment.segment),
            count(segment.counts.impressions),
            interval(&segment.posterior.rate)
        );
        for leader in &segment.leaders {
            let _ = write!(
                out,
                "<tr><td><code>{}</code> {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                leader.version,
                esc(&leader.text),
                count(leader.counts.impressions),
                count(leader.counts.conversions),
                interval(&leader.posterior.rate),
                pct(leader.p_best)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

fn lift(out: &mut String, report: &Report) {
    out.push_str("<section><h2>Lift</h2><table class=\"kv\">");
    match &report.lift {
        Some(lift) => {
            row(
                out,
                "Realized value per decision",
                &bounds(
                    lift.realized.value,
                    lift.realized.lower,
                    lift.realized.upper,
                ),
            );
            for (label, comparison) in [
                ("Even split", &lift.even_split),
                ("Best single version", &lift.best_single_version),
            ] {
                let text = match (&comparison.estimate, &comparison.lift) {
                    (Some(e), Some(l)) => format!(
                        "estimate {} · lift {}",
                        bounds(e.value, e.lower, e.upper),
                        bounds(l.value, l.lower, l.upper)
                    ),
                    _ => esc(comparison.error.as_deref().unwrap_or("not estimated")),
                };
                row(out, label, &text);
            }
            row(
                out,
                "Decisions read",
                &format!(
                    "{}{}",
                    lift.rows,
                    if lift.capped { " (capped)" } else { "" }
                ),
            );
        }
        None => row(
            out,
            "Lift",
            &esc(report
                .lift_unavailable
                .as_deref()
                .unwrap_or("not available")),
        ),
    }
    match &report.holdout {
        Some(h) => {
            row(
                out,
                "Holdout",
                &format!(
                    "{} of units; policy {} decisions, holdout {}",
                    pct(Some(h.share)),
                    h.policy.decisions,
                    h.holdout.decisions
                ),
            );
            if let Some(l) = &h.per_impression {
                row(
                    out,
                    "Lift per impression over the holdout",
                    &format!(
                        "{} · anytime-valid {}",
                        bounds(l.lift, l.fixed.lower, l.fixed.upper),
                        bounds(l.lift, l.sequence.lower, l.sequence.upper)
                    ),
                );
            }
            if let Some(l) = &h.per_dollar {
                row(
                    out,
                    "Lift per dollar over the holdout",
                    &bounds(l.lift, l.fixed.lower, l.fixed.upper),
                );
            }
        }
        None => row(out, "Holdout", "none (the spec's `holdout` share is 0)"),
    }
    out.push_str("</table></section>");
}

fn money(out: &mut String, report: &Report) {
    let m = &report.money;
    out.push_str("<section><h2>Money</h2><table class=\"kv\">");
    row(out, "Spend", &num(m.spend));
    row(out, "Budget", &opt_num(m.budget));
    row(out, "Budget left", &opt_num(m.budget_left));
    row(out, "Daily cap", &opt_num(m.daily_cap));
    row(out, "Plan so far", &opt_num(m.spend_plan));
    row(
        out,
        "Spend against plan",
        &m.spend_vs_plan_pct
            .map_or_else(|| "–".to_owned(), |p| format!("{p:.1}%")),
    );
    row(out, "Flight elapsed", &pct(m.flight_elapsed));
    row(
        out,
        "Price of money",
        &format!(
            "{} {}",
            opt_num(m.price_of_money),
            esc(m.price_of_money_text.as_deref().unwrap_or(""))
        ),
    );
    row(out, "Value per dollar", &opt_num(m.value_per_dollar));
    out.push_str("</table></section>");
}

fn health(out: &mut String, state: &AppState, live: &super::Live) {
    let storage = match state.storage_failure() {
        Some(crate::decision_log::LogFailure::Full) => "full",
        Some(crate::decision_log::LogFailure::Unwritable) => "unwritable",
        None => "ok",
    };
    let rejected = state.metrics().rejected_by_code();
    let rejected = if rejected.is_empty() {
        "none".to_owned()
    } else {
        rejected
            .iter()
            .map(|(code, n)| format!("<code>{}</code> {n}", esc(code)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str("<section><h2>Health</h2><table class=\"kv\">");
    live_row(
        out,
        "Event lag (events committed, not yet learned)",
        "event_lag",
        &count(live.event_lag),
    );
    live_row(
        out,
        "Decision log backlog",
        "decision_backlog",
        &count(live.decision_backlog),
    );
    live_row(
        out,
        "Events learned (sequence)",
        "applied_seq",
        &live.applied_seq.to_string(),
    );
    row(out, "Events rejected since the start, by code", &rejected);
    row(out, "Storage", storage);
    out.push_str("</table></section>");
}

fn audit(out: &mut String, state: &AppState, slot: &CampaignSlot) -> Result<(), ApiError> {
    out.push_str("<section><h2>Audit</h2><table class=\"list\" id=\"audit\"><thead><tr><th>When</th><th>What</th><th>Key</th><th>Details</th></tr></thead><tbody>");
    for marker in markers(state, slot)?.iter().rev() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&time(marker.at)),
            esc(&marker.kind),
            esc(&marker.key_id),
            esc(&marker.label)
        );
    }
    out.push_str("</tbody></table></section>");
    Ok(())
}

/// Something to mark on the charts and list in the audit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Marker {
    /// When, ms since the Unix epoch.
    pub at: i64,
    /// `revision`, `pause`, `resume`, `archive`, `budget`.
    pub kind: String,
    /// What, in words.
    pub label: String,
    /// The key that asked.
    pub key_id: String,
}

/// A campaign's markers, in time order: revisions, controls, budget changes.
pub fn markers(state: &AppState, slot: &CampaignSlot) -> Result<Vec<Marker>, ApiError> {
    let mut markers = Vec::new();
    for revision in state.store().revisions(&slot.id)? {
        markers.push(Marker {
            at: revision.at_ms,
            kind: "revision".into(),
            label: format!(
                "revision {}: {}",
                revision.revision,
                revision.reason.as_deref().unwrap_or("")
            ),
            key_id: revision.key_id,
        });
    }
    for control in state.store().controls(&slot.id)? {
        markers.push(Marker {
            at: control.audit.at_ms,
            kind: control.audit.action.clone(),
            label: control.audit.detail,
            key_id: control.audit.key_id,
        });
    }
    for change in state.store().budget_changes(&slot.id)? {
        let c = change.change;
        markers.push(Marker {
            at: c.at_ms,
            kind: "budget".into(),
            label: format!(
                "budget {} → {}: {}",
                num(c.old_budget),
                num(c.new_budget),
                c.reason
            ),
            key_id: c.key_id,
        });
    }
    markers.sort_by_key(|m| m.at);
    Ok(markers)
}

/// The chart data of a campaign: per bucket, the totals and each option's impressions.
#[derive(Debug, Serialize)]
pub struct Series {
    /// Bucket width, ms.
    pub resolution_ms: i64,
    /// Bucket starts, seconds since the Unix epoch (uPlot's time axis).
    pub t: Vec<i64>,
    /// The policy's impressions, donors, raised and spend per bucket.
    pub total: Columns,
    /// The holdout's.
    pub held_out: Columns,
    /// Per component, per option, impressions per bucket.
    pub components: Vec<ComponentSeries>,
    /// Revisions, controls, budget changes.
    pub markers: Vec<Marker>,
}

/// Counts per bucket.
#[derive(Debug, Serialize, Default)]
pub struct Columns {
    /// Impressions.
    pub impressions: Vec<u64>,
    /// Conversions (donors).
    pub donors: Vec<u64>,
    /// Value (raised).
    pub raised: Vec<f64>,
    /// Cost (spend).
    pub spend: Vec<f64>,
}

impl Columns {
    fn zeros(n: usize) -> Self {
        Self {
            impressions: vec![0; n],
            donors: vec![0; n],
            raised: vec![0.0; n],
            spend: vec![0.0; n],
        }
    }
    fn set(&mut self, i: usize, c: &RollupCounts) {
        self.impressions[i] = c.impressions;
        self.donors[i] = c.conversions;
        self.raised[i] = c.value;
        self.spend[i] = c.cost;
    }
}

/// One component's allocation.
#[derive(Debug, Serialize)]
pub struct ComponentSeries {
    /// Component name.
    pub component: String,
    /// Option names, in spec order.
    pub options: Vec<String>,
    /// `impressions[o][b]`: option `o`'s impressions in bucket `b`.
    pub impressions: Vec<Vec<u64>>,
}

/// The chart data of `slot` at `resolution_ms`.
pub fn series(
    state: &AppState,
    slot: &CampaignSlot,
    resolution_ms: i64,
) -> Result<Series, ApiError> {
    let rows = super::rollup::series(slot, state.store(), resolution_ms, i64::MIN)?;
    let buckets: Vec<i64> = rows
        .iter()
        .map(|r| r.bucket_ms)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let index: BTreeMap<i64, usize> = buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let n = buckets.len();
    let mut total = Columns::zeros(n);
    let mut held_out = Columns::zeros(n);
    let spec = slot.current().campaign.spec().clone();
    let mut components: Vec<ComponentSeries> = spec
        .components
        .iter()
        .map(|c| ComponentSeries {
            component: c.name.clone(),
            options: c.options.iter().map(|o| o.name.clone()).collect(),
            impressions: vec![vec![0; n]; c.options.len()],
        })
        .collect();
    for row in &rows {
        let i = index[&row.bucket_ms];
        if row.series == super::rollup::TOTAL {
            total.set(i, &row.counts);
        } else if row.series == super::rollup::HELD_OUT {
            held_out.set(i, &row.counts);
        } else if let Some((component, option)) = row.series.split_once('=') {
            let found = components.iter_mut().find(|c| c.component == component);
            if let Some(c) = found {
                if let Some(o) = c.options.iter().position(|o| o == option) {
                    c.impressions[o][i] = row.counts.impressions;
                }
            }
        }
    }
    Ok(Series {
        resolution_ms,
        t: buckets.iter().map(|b| b / 1000).collect(),
        total,
        held_out,
        components,
        markers: markers(state, slot)?,
    })
}

/// Applies a control: `pause`, `resume` (audited), `option` (`what` = retire, pin or
/// unpin: a revision of the spec), `budget` (an audited budget change), `end` (a
/// revision of the flight's end). Each through the function its API route calls.
pub fn apply_control(
    state: &AppState,
    id: &str,
    action: &str,
    form: &super::ActionForm,
    key_id: &str,
) -> Result<(), ApiError> {
    let slot = state.campaign(id)?;
    let reason = form.reason.trim();
    match action {
        "pause" | "resume" => {
            state.set_paused_by(id, action == "pause", key_id)?;
        }
        "budget" => {
            let budget = parse_amount("budget", &form.budget)?;
            let daily_cap = match form.daily_cap.trim() {
                "" => None,
                "none" => Some(None),
                text => Some(Some(parse_amount("daily_cap", text)?.ok_or_else(|| {
                    ApiError::bad_request("daily_cap must be a number or `none`")
                })?)),
            };
            let request = crate::wire::BudgetChangeRequest {
                budget,
                daily_cap,
                reason: reason.to_owned(),
            };
            crate::budget::change(state, &slot, &request, key_id, state.clock().now_ms(), None)?;
        }
        "option" | "end" => {
            let mut spec = slot.current().campaign.spec().clone();
            if action == "end" {
                let Some(flight) = spec.flight.as_mut() else {
                    return Err(ApiError::bad_request(
                        "this campaign has no [flight]: no end date to change",
                    ));
                };
                flight.end = form.end.trim().to_owned();
            } else {
                let (component, option) = form
                    .option
                    .split_once('.')
                    .ok_or_else(|| ApiError::bad_request("option must read `component.option`"))?;
                let found = spec
                    .components
                    .iter_mut()
                    .find(|c| c.name == component)
                    .and_then(|c| c.options.iter_mut().find(|o| o.name == option));
                let Some(found) = found else {
                    return Err(ApiError::bad_request(format!(
                        "no option {} in this campaign",
                        crate::error::quoted(&form.option)
                    )));
                };
                match form.what.as_str() {
                    "retire" => found.retired = true,
                    "pin" => {
                        let prefix = format!("{component}.");
                        spec.pins.retain(|p| {
                            p.segment.is_some() || !p.options.iter().any(|o| o.starts_with(&prefix))
                        });
                        spec.pins.push(tla_core::spec::PinSpec {
                            segment: None,
                            options: vec![form.option.clone()],
                        });
                    }
                    "unpin" => {
                        for pin in &mut spec.pins {
                            pin.options.retain(|o| *o != form.option);
                        }
                        spec.pins.retain(|p| !p.options.is_empty());
                    }
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "what {} is not an option control; accepted: retire, pin, unpin",
                            crate::error::quoted(other)
                        )));
                    }
                }
            }
            let next = spec
                .validate()
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let reason = (!reason.is_empty()).then(|| reason.to_owned());
            crate::revise::revise(state, &slot, next, reason, key_id, None)?;
        }
        other => {
            return Err(ApiError::not_found(format!(
                "no control {}; accepted: pause, resume, option, budget, end",
                crate::error::quoted(other)
            )));
        }
    }
    Ok(())
}

fn parse_amount(field: &str, text: &str) -> Result<Option<f64>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{field} {} is not an amount; accepted: a number > 0",
                crate::error::quoted(text)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::{count, num};

    #[test]
    fn counts_and_large_numbers_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(2_204_160), "2,204,160");
        assert_eq!(num(6_145_647.4), "6,145,647");
        assert_eq!(num(-12_345.6), "-12,346");
        assert_eq!(num(999.5), "999.50");
        assert_eq!(num(0.01234), "0.0123");
        assert_eq!(num(f64::NAN), "–");
    }
}
