//! `tla report`: the campaign report from a running server (`--server URL`, through
//! `GET /v1/campaigns/{id}/report`) or straight from a data directory (`--data DIR`,
//! the same report built the same way: `tla_server::report::campaign_report`).
//!
//! `tla report CAMPAIGN (--data DIR | --server URL --key KEY) [--format table|json|csv]`;
//! `tla report compare A B ...` puts two campaigns side by side.

use crate::number::significant;
use anyhow::Context;
use std::path::{Path, PathBuf};
use tla_core::report::{Interval, Report, ReportSettings};
use tla_server::replay::{ReplayOptions, Replayed, replay};
use tla_server::report::{LOG_ROWS_CAP, campaign_report};
use tla_server::{Clock, ServerConfig, SystemClock};
use tla_store::Store;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for a terminal.
    Table,
    /// The report JSON (as the API serves it).
    Json,
    /// The option leaderboard rows as CSV.
    Csv,
}

/// Arguments of `tla report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A campaign id, or `compare A B` for two campaigns side by side.
    #[arg(required = true, num_args = 1..=3, value_name = "CAMPAIGN_ID | compare A B")]
    pub campaigns: Vec<String>,
    /// The data directory of the server (only read, never written: a read-only copy
    /// works; stop the server or use a copy).
    #[arg(long, env = "TLA_DATA", required_unless_present = "server")]
    pub data: Option<PathBuf>,
    /// A running server to ask instead, e.g. http://127.0.0.1:8080 (plain HTTP).
    #[arg(long, env = "TLA_SERVER", conflicts_with = "data")]
    pub server: Option<String>,
    /// API key with the read scope, for --server.
    #[arg(long, env = "TLA_KEY", requires = "server", hide_env_values = true)]
    pub key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Monte Carlo draws of the posterior (with --data; a server uses its default,
    /// 1000).
    #[arg(long, conflicts_with = "server")]
    pub draws: Option<usize>,
}

/// How long `--server` waits for one report.
const SERVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The socket address of `--server`: `http://HOST:PORT[/]` or `HOST:PORT`.
pub(crate) fn server_address(text: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs as _;
    if text.starts_with("https://") {
        anyhow::bail!(
            "--server {text}: TLA serves plain HTTP; give http://HOST:PORT (put TLS in a proxy in front of it)"
        );
    }
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        anyhow::bail!("--server {text}: give the server's root, http://HOST:PORT, without a path");
    }
    rest.to_socket_addrs()
        .with_context(|| format!("--server {text}: not HOST:PORT (e.g. http://127.0.0.1:8080)"))?
        .next()
        .with_context(|| format!("--server {text}: the name resolves to no address"))
}

/// Fetches the reports of `ids` from a running server, one connection.
fn fetch(server: &str, key: Option<&str>, ids: &[&str]) -> anyhow::Result<Vec<Report>> {
    let Some(key) = key else {
        anyhow::bail!("--server needs --key (or TLA_KEY): an API key with the read scope");
    };
    let address = server_address(server)?;
    for id in ids {
        crate::client::check_campaign_id(id)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = crate::client::Client::new(address, key);
        let mut reports = Vec::with_capacity(ids.len());
        for id in ids {
            let path = format!("/v1/campaigns/{id}/report");
            let report = crate::client::within(
                SERVER_TIMEOUT,
                server,
                &path,
                client.get_json::<Report>(&path),
            )
            .await?;
            reports.push(report);
        }
        Ok(reports)
    })
}

/// Runs `tla report`.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let ids: Vec<&str> = match args.campaigns.as_slice() {
        [id] => vec![id.as_str()],
        [compare, a, b] if compare == "compare" => vec![a.as_str(), b.as_str()],
        _ => anyhow::bail!("expected `tla report CAMPAIGN_ID` or `tla report compare A B`"),
    };
    let mut reports = if let Some(server) = &args.server {
        fetch(server, args.key.as_deref(), &ids)?
    } else {
        let Some(data) = &args.data else {
            anyhow::bail!("give --data DIR (a data directory) or --server URL (a running server)");
        };
        let settings = ReportSettings {
            draws: args
                .draws
                .unwrap_or(tla_core::report::DEFAULT_POSTERIOR_DRAWS)
                .max(1),
            ..ReportSettings::default()
        };
        let (store, replayed) = rebuild(data)?;
        ids.iter()
            .map(|id| report_of(&store, &replayed, id, &settings, data))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let mut take = || reports.remove(0);
    match ids.len() {
        1 => {
            let report = take();
            match args.format {
                Format::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?,
                Format::Csv => emit(&leaderboard_csv(&report))?,
                Format::Table => emit(&table(&report))?,
            }
        }
        _ => {
            let (a, b) = (take(), take());
            match args.format {
                Format::Json => emit(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&serde_json::json!({"a": a, "b": b}))?
                ))?,
                Format::Csv => emit(&compare_csv(&a, &b))?,
                Format::Table => emit(&compare_table(&a, &b))?,
            }
        }
    }
    Ok(())
}

/// Opens a data directory read-only and rebuilds its campaigns (latest snapshot,
/// then the events after it), writing nothing: no server secret, no snapshot, no
/// write-ahead log.
pub(crate) fn rebuild(data: &Path) -> anyhow::Result<(Store, Replayed)> {
    let store = Store::open_read_only(data)
        .with_context(|| format!("cannot open the data directory {}", data.display()))?;
    let replayed = replay_campaigns(&store)?;
    Ok((store, replayed))
}

/// Rebuilds the campaigns of a store (latest snapshot, then the events after it),
/// reading only.
pub(crate) fn replay_campaigns(store: &Store) -> anyhow::Result<Replayed> {
    let log = store.event_log();
    let options = ReplayOptions {
        seed: ServerConfig::default().seed,
        from_start: false,
        now_ms: SystemClock.now_ms(),
    };
    replay(store, &log, options).context("cannot rebuild the campaigns from the data directory")
}

/// The report of campaign `id` of a rebuilt data directory.
pub(crate) fn report_of(
    store: &Store,
    replayed: &Replayed,
    id: &str,
    settings: &ReportSettings,
    data: &Path,
) -> anyhow::Result<Report> {
    let slot = replayed
        .campaigns
        .get(id)
        .with_context(|| format!("no campaign {id:?} in {}", data.display()))?;
    campaign_report(&slot, store, settings, LOG_ROWS_CAP, SystemClock.now_ms())
        .with_context(|| format!("cannot build the report of campaign {id}"))
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A number with `digits` decimals; in scientific notation from 1e12 on, so a table
/// never prints a number of hundreds of digits, and `-` for a number that is not finite
/// (never printed as `inf` or `NaN`).
fn fixed(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 1e12 {
        format!("{x:.3e}")
    } else {
        format!("{x:.digits$}")
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |x| fixed(x, digits))
}

fn opt_sig(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), sig)
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.1}%", 100.0 * x))
}

/// An interval with its mean, each number to [`crate::number::TABLE_DIGITS`] significant
/// digits (a rate of 0.0038 keeps its digits).
fn ci(i: &Interval) -> String {
    format!("{} [{}, {}]", sig(i.mean), sig(i.lower), sig(i.upper))
}

/// `x` to [`crate::number::TABLE_DIGITS`] significant digits, `-` when not finite.
fn sig(x: f64) -> String {
    if x.is_finite() {
        significant(x)
    } else {
        "-".into()
    }
}

/// [`sig`] with its sign always written (`0` has none).
fn signed_sig(x: f64) -> String {
    let text = sig(x);
    if x.is_finite() && x > 0.0 {
        format!("+{text}")
    } else {
        text
    }
}

fn ci_opt(i: Option<&Interval>) -> String {
    i.map_or_else(|| "-".into(), ci)
}

/// The report as terminal tables.
pub fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = &report.summary;
    let _ = writeln!(
        out,
        "{} ({}) — objective {}, {} events learned, {} posterior draws, 95% intervals",
        report.name,
        report.campaign.as_deref().unwrap_or("-"),
        report.objective,
        report.events_learned,
        report.draws
    );
    let _ = writeln!(out, "\nSummary");
    let rows = [
        ("versions defined", s.versions_defined.to_string()),
        (
            "  asking to act",
            format!(
                "{} ({})",
                s.acting_versions_defined,
                pct(Some(s.acting_share_defined))
            ),
        ),
        ("versions served", s.versions_served.to_string()),
        ("  share asking to act", pct(s.acting_share_served)),
        (
            "spend behind versions asking to act",
            pct(s.acting_share_spend),
        ),
        ("impressions", s.impressions.to_string()),
        ("clicks", s.clicks.to_string()),
        ("spend", fixed(s.spend, 2)),
        ("donors", s.donors.to_string()),
        ("  of unknown amount", s.donors_amount_unknown.to_string()),
        ("donations", fixed(s.donations, 2)),
        ("  as the model learned them", fixed(s.donations_learned, 2)),
        ("cost per donor", opt(s.cost_per_donor, 2)),
        ("value per dollar", opt(s.value_per_dollar, 3)),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<38} {value:>14}");
    }
    money_table(&mut out, &report.money);
    let f = &report.forgetting;
    let _ = writeln!(
        out,
        "\nForgetting {}: half-life in force {}{}",
        f.setting,
        f.in_force,
        if f.candidates.is_empty() {
            String::new()
        } else {
            format!(" ({} changes of rate)", f.switches)
        }
    );
    for component in &report.components {
        let _ = writeln!(out, "\nComponent {}", component.component);
        let _ = writeln!(
            out,
            "  {:<24} {:>4} {:>9} {:>6} {:>10} {:>28} {:>28} {:>7} {:>9}",
            "option", "act", "impr", "conv", "value", "rate", "value/impr", "P(best)", "exp.loss"
        );
        for o in &component.options {
            let _ = writeln!(
                out,
                "  {:<24} {:>4} {:>9} {:>6} {:>10} {:>28} {:>28} {:>7.3} {:>9.4}",
                truncate(&o.option, 24),
                if o.asks_to_act { "yes" } else { "no" },
                o.counts.impressions,
                o.counts.conversions,
                fixed(o.counts.value, 2),
                ci(&o.posterior.rate),
                ci_opt(o.posterior.value_per_impression.as_ref()),
                o.p_best,
                o.expected_loss
            );
        }
    }
    for segment in &report.segments {
        let _ = writeln!(
            out,
            "\nSegment {} (weight {:.3}): {} impressions, {} donors, {} donated; average version rate {}, value/impr {}",
            segment.segment,
            segment.weight,
            segment.counts.impressions,
            segment.counts.conversions,
            fixed(segment.counts.value, 2),
            ci(&segment.posterior.rate),
            ci_opt(segment.posterior.value_per_impression.as_ref())
        );
        for v in &segment.leaders {
            let _ = writeln!(
                out,
                "  #{:<9} P(best) {:.3}  loss {:.4}  {:>7} impr  rate {}  value/impr {}\n             {}",
                v.version,
                v.p_best.unwrap_or(0.0),
                v.expected_loss.unwrap_or(0.0),
                v.counts.impressions,
                ci(&v.posterior.rate),
                ci_opt(v.posterior.value_per_impression.as_ref()),
                v.text
            );
        }
    }
    let _ = writeln!(
        out,
        "\nMost served versions ({} of {} served (segment, version) pairs)",
        report.versions.rows.len(),
        report.versions.served_pairs
    );
    for v in report.versions.rows.iter().take(20) {
        let _ = writeln!(
            out,
            "  {:<16} #{:<9} {:>7} impr {:>5} conv  rate {}  {}",
            truncate(&v.segment, 16),
            v.version,
            v.counts.impressions,
            v.counts.conversions,
            ci(&v.posterior.rate),
            truncate(&v.text, 60)
        );
    }
    match &report.lift {
        None => {
            let why = report
                .lift_unavailable
                .as_deref()
                .unwrap_or("no logged decisions");
            let _ = writeln!(out, "\nLift: {why}");
        }
        Some(lift) => {
            let _ = writeln!(
                out,
                "\nValue per impression from the decision log ({} decisions{}):",
                lift.rows,
                if lift.capped {
                    format!(", capped at {}", lift.rows_cap.unwrap_or(0))
                } else {
                    String::new()
                }
            );
            let r = &lift.realized;
            let _ = writeln!(
                out,
                "  policy that ran        {} [{}, {}]",
                sig(r.value),
                sig(r.lower),
                sig(r.upper)
            );
            for (name, c) in [
                ("even split", &lift.even_split),
                ("best single version", &lift.best_single_version),
            ] {
                match (&c.estimate, &c.lift) {
                    (Some(e), Some(l)) => {
                        let _ = writeln!(
                            out,
                            "  {name:<22} {} [{}, {}] (SNIPS, ESS {:.0}); lift {} [{}, {}]",
                            sig(e.value),
                            sig(e.lower),
                            sig(e.upper),
                            e.ess,
                            signed_sig(l.value),
                            signed_sig(l.lower),
                            signed_sig(l.upper)
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            out,
                            "  {name:<22} not estimable: {}",
                            c.error.as_deref().unwrap_or("-")
                        );
                    }
                }
            }
        }
    }
    if let Some(h) = &report.holdout {
        holdout_table(&mut out, h);
    }
    if !report.corrections.is_empty() {
        let _ = writeln!(
            out,
            "\nCorrections ({}; the model and the lift learned the events as corrected):",
            report.corrections.len()
        );
        for c in &report.corrections {
            let old_value = c
                .old_value
                .map_or_else(|| "unknown".to_owned(), |v| format!("{v}"));
            let new_value = c
                .new_value
                .map_or_else(|| "retracted".to_owned(), |v| format!("{v}"));
            let _ = writeln!(
                out,
                "  {:<7} {:<24} {:<10} {} -> {}  key {}  at {} ms  {}",
                c.action,
                truncate(&c.event_id, 24),
                c.event_type,
                old_value,
                new_value,
                c.key_id,
                c.at,
                truncate(&one_line(&c.reason), 60)
            );
        }
    }
    out
}

/// The holdout section: both arms, and the lift per impression and per dollar with the
/// fixed-horizon interval and the confidence sequence, each stated for what it is.
fn holdout_table(out: &mut String, h: &tla_core::holdout::HoldoutLift) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "\nPolicy against its holdout ({:.0}% of units served the even split; {:.0}% intervals):",
        100.0 * h.share,
        100.0 * (1.0 - h.alpha)
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>10} {:>14} {:>12} {:>14} {:>12}",
        "arm", "decisions", "value", "spend", "value/impr.", "value/$"
    );
    for (name, arm) in [("policy", &h.policy), ("holdout", &h.holdout)] {
        let _ = writeln!(
            out,
            "  {:<10} {:>10} {:>14} {:>12} {:>14} {:>12}",
            name,
            arm.decisions,
            fixed(arm.value, 2),
            fixed(arm.spend, 2),
            opt_sig(arm.value_per_impression),
            opt_sig(arm.value_per_dollar)
        );
    }
    for (name, lift) in [
        ("lift per impression", &h.per_impression),
        ("lift per dollar", &h.per_dollar),
    ] {
        match lift {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "  {name:<20} {} ({}); fixed-horizon [{}, {}]; valid at every look [{}, {}]{}",
                    signed_sig(l.lift),
                    pct(l.relative),
                    signed_sig(l.fixed.lower),
                    signed_sig(l.fixed.upper),
                    signed_sig(l.sequence.lower),
                    signed_sig(l.sequence.upper),
                    if l.sequence_excludes_zero {
                        "  (excludes 0)"
                    } else {
                        ""
                    }
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {name:<20} - (needs two decisions in each arm{})",
                    if name == "lift per dollar" {
                        " and spend in both"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    let _ = writeln!(out, "  The sequence is an {}.", h.sequence_validity);
    let _ = writeln!(out, "  The fixed interval is a {}.", h.fixed_validity);
}

/// The money section: spend against the budget and the plan, return per dollar, spend per
/// segment (the segments that spent).
fn money_table(out: &mut String, money: &tla_core::report::Money) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "\nMoney");
    let plan_label = match money.as_of {
        Some(at) => format!(
            "plan by {}",
            tla_core::timestamp::format_rfc3339(at - at.rem_euclid(60_000))
        ),
        None => "plan by now".to_owned(),
    };
    let rows = [
        ("spend".to_owned(), fixed(money.spend, 2)),
        (
            "  tied to decisions (cost events)".to_owned(),
            fixed(money.attributed_spend, 2),
        ),
        (
            "  reported per segment (unattributed)".to_owned(),
            fixed(money.unattributed_spend, 2),
        ),
        ("budget".to_owned(), opt(money.budget, 2)),
        ("daily cap".to_owned(), opt(money.daily_cap, 2)),
        ("budget left".to_owned(), opt(money.budget_left, 2)),
        ("flight elapsed".to_owned(), pct(money.flight_elapsed)),
        (plan_label, opt(money.spend_plan, 2)),
        (
            "spend vs plan".to_owned(),
            money
                .spend_vs_plan_pct
                .map_or_else(|| "-".into(), |x| format!("{}%", fixed(x, 1))),
        ),
        (
            "minimum return (min_roas)".to_owned(),
            opt(money.min_roas, 2),
        ),
        (
            "value per dollar".to_owned(),
            opt(money.value_per_dollar, 3),
        ),
        ("cost per donor".to_owned(), opt(money.cost_per_donor, 2)),
        (
            "tied spend behind versions asking to act".to_owned(),
            pct(money.acting_spend_share),
        ),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<38} {value:>14}");
    }
    if let (Some(price), Some(text)) = (money.price_of_money, &money.price_of_money_text) {
        let _ = writeln!(
            out,
            "  {:<38} {:>14}  ({text})",
            "price of money",
            fixed(price, 3)
        );
    }
    let spending: Vec<_> = money.segments.iter().filter(|s| s.spend > 0.0).collect();
    if !spending.is_empty() {
        let _ = writeln!(
            out,
            "  {:<38} {:>14} {:>14} {:>14}",
            "spend per segment", "total", "tied", "reported"
        );
        for segment in spending {
            let _ = writeln!(
                out,
                "    {:<36} {:>14} {:>14} {:>14}",
                truncate(&segment.segment, 36),
                fixed(segment.spend, 2),
                fixed(segment.attributed_spend, 2),
                fixed(segment.unattributed_spend, 2)
            );
        }
    }
    if !money.budget_changes.is_empty() {
        let _ = writeln!(
            out,
            "  budget changes ({}; the last is in force):",
            money.budget_changes.len()
        );
        // A null daily cap is no cap.
        let cap = |cap: Option<f64>| cap.map_or_else(|| "none".to_owned(), |c| fixed(c, 2));
        for change in &money.budget_changes {
            let _ = writeln!(
                out,
                "    budget {} -> {}, daily cap {} -> {}  spent {}  key {}  at {}  {}",
                fixed(change.old_budget, 2),
                fixed(change.new_budget, 2),
                cap(change.old_daily_cap),
                cap(change.new_daily_cap),
                fixed(change.spent, 2),
                change.key_id,
                tla_core::timestamp::format_rfc3339(change.at),
                truncate(&one_line(&change.reason), 60)
            );
        }
    }
}

/// A client's free text on one line of a table.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut t: String = text.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A name or label as a CSV cell: safe for spreadsheets ([`crate::csv_text`]), quoted
/// where needed.
fn csv_text(text: &str) -> String {
    csv_field(&crate::csv_text::spreadsheet_safe(text))
}

/// A value as a CSV cell, quoted where needed (numbers are written as they are).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The option leaderboard rows as CSV.
pub fn leaderboard_csv(report: &Report) -> String {
    let mut out = String::from(
        "component,option,asks_to_act,impressions,clicks,conversions,value,spend,rate_mean,rate_lower,rate_upper,value_per_impression_mean,value_per_impression_lower,value_per_impression_upper,p_best,expected_loss,draws,conversions_amount_unknown,value_learned\n",
    );
    for component in &report.components {
        for o in &component.options {
            let vpi = o.posterior.value_per_impression;
            let f = |x: Option<f64>| x.map_or_else(String::new, |x| x.to_string());
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                csv_text(&component.component),
                csv_text(&o.option),
                o.asks_to_act,
                o.counts.impressions,
                o.counts.clicks,
                o.counts.conversions,
                o.counts.value,
                o.counts.spend,
                o.posterior.rate.mean,
                o.posterior.rate.lower,
                o.posterior.rate.upper,
                f(vpi.map(|i| i.mean)),
                f(vpi.map(|i| i.lower)),
                f(vpi.map(|i| i.upper)),
                o.p_best,
                o.expected_loss,
                report.draws,
                o.counts.conversions_amount_unknown,
                o.counts.value_learned
            ));
        }
    }
    out
}

/// Rows of the side-by-side comparison: (label, value of A, value of B).
fn compare_rows(a: &Report, b: &Report) -> Vec<(&'static str, String, String)> {
    let both = |f: &dyn Fn(&Report) -> String| (f(a), f(b));
    let mut rows = Vec::new();
    let mut push = |label, (x, y): (String, String)| rows.push((label, x, y));
    push(
        "campaign",
        both(&|r| r.campaign.clone().unwrap_or_default()),
    );
    push("name", both(&|r| r.name.clone()));
    push(
        "versions defined",
        both(&|r| r.summary.versions_defined.to_string()),
    );
    push(
        "versions run",
        both(&|r| r.summary.versions_served.to_string()),
    );
    push(
        "share of versions run asking to act",
        both(&|r| pct(r.summary.acting_share_served)),
    );
    push(
        "share of spend asking to act",
        both(&|r| pct(r.summary.acting_share_spend)),
    );
    push("impressions", both(&|r| r.summary.impressions.to_string()));
    push("spend", both(&|r| fixed(r.summary.spend, 2)));
    push("donors", both(&|r| r.summary.donors.to_string()));
    push("donations", both(&|r| fixed(r.summary.donations, 2)));
    push(
        "cost per donor",
        both(&|r| opt(r.summary.cost_per_donor, 2)),
    );
    push(
        "value per dollar",
        both(&|r| opt(r.summary.value_per_dollar, 3)),
    );
    push(
        "value per impression (realized)",
        both(&|r| opt_sig(r.lift.as_ref().map(|l| l.realized.value))),
    );
    push(
        "lift over an even split",
        both(&|r| {
            r.lift.as_ref().and_then(|l| l.even_split.lift).map_or_else(
                || "-".into(),
                |l| format!("{:+.4} [{:+.4}, {:+.4}]", l.value, l.lower, l.upper),
            )
        }),
    );
    rows
}

fn compare_table(a: &Report, b: &Report) -> String {
    let mut out = String::new();
    for (label, x, y) in compare_rows(a, b) {
        out.push_str(&format!("{label:<36} {x:>30} {y:>30}\n"));
    }
    out
}

fn compare_csv(a: &Report, b: &Report) -> String {
    let mut out = String::from("measure,a,b\n");
    for (label, x, y) in compare_rows(a, b) {
        out.push_str(&format!(
            "{},{},{}\n",
            csv_text(label),
            csv_field(&x),
            csv_field(&y)
        ));
    }
    out
}
