//! `tla spend report`: send spend reports (spend per segment and period, not tied to a
//! decision) from a CSV or JSON file to a running server, through
//! `POST /v1/campaigns/{id}/spend` (a key with the `ingest` scope, or `admin`).
//!
//! `tla spend report --campaign ID --file spend.csv --server URL --key KEY`
//!
//! A CSV file has a header row naming the columns `report_id,segment,start,end,amount`
//! and optionally `impressions` (an empty cell: not reported), in any order. A JSON file
//! holds `{"reports": [...]}` or a bare array of the same objects. The reports are sent
//! in batches of [`BATCH`]; a report the server refuses is listed with its line (CSV)
//! or position (JSON), its code and message, and the command then fails. Sending the
//! same file again is safe: reports already stored come back as duplicates.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// `tla spend`.
#[derive(Debug, Args)]
pub struct SpendArgs {
    #[command(subcommand)]
    command: SpendCommand,
}

#[derive(Debug, Subcommand)]
enum SpendCommand {
    /// Send spend reports per segment and period from a CSV or JSON file.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The campaign id (as `GET /v1/campaigns` lists them).
    #[arg(long)]
    campaign: String,
    /// The reports: `.csv` (columns report_id,segment,start,end,amount[,impressions]) or
    /// `.json` (`{"reports": [...]}` or an array).
    #[arg(long)]
    file: PathBuf,
    /// The running server, e.g. http://127.0.0.1:8080 (plain HTTP).
    #[arg(long, env = "TLA_SERVER")]
    server: String,
    /// API key with the `ingest` scope (or `admin`).
    #[arg(long, env = "TLA_KEY", hide_env_values = true)]
    key: String,
    /// Print the server's answers, summed, as JSON instead of sentences.
    #[arg(long)]
    json: bool,
}

/// Reports sent per request (the server's default limit is 10,000 per batch; this keeps
/// a request far below its default body limit of 1 MiB).
pub const BATCH: usize = 1_000;

/// How long to wait for the server for one batch.
const SERVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The columns a CSV file must have, and the optional one.
const REQUIRED_COLUMNS: [&str; 5] = ["report_id", "segment", "start", "end", "amount"];
const OPTIONAL_COLUMN: &str = "impressions";

/// One report read from the file, with where it was.
struct Item {
    /// `line 3` (CSV) or `report 2` (JSON), for messages.
    place: String,
    report: Value,
}

/// Runs `tla spend`.
pub fn run(args: SpendArgs) -> anyhow::Result<()> {
    let SpendCommand::Report(args) = args.command;
    crate::client::check_campaign_id(&args.campaign)?;
    let items = read_reports(&args.file)?;
    let address = crate::report::server_address(&args.server)?;
    let path = format!("/v1/campaigns/{}/spend", args.campaign);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    let mut rejected: Vec<Value> = Vec::new();
    runtime.block_on(async {
        let mut client = crate::client::Client::new(address, &args.key);
        for (batch_number, batch) in items.chunks(BATCH).enumerate() {
            let body = serde_json::json!({
                "reports": batch.iter().map(|item| item.report.clone()).collect::<Vec<_>>(),
            });
            let answer: Value = crate::client::within(
                SERVER_TIMEOUT,
                &args.server,
                &path,
                client.post_json(&path, &body),
            )
            .await?;
            accepted += answer["accepted"].as_u64().unwrap_or(0);
            duplicates += answer["duplicates"].as_u64().unwrap_or(0);
            for refusal in answer["rejected"].as_array().into_iter().flatten() {
                let index = refusal["index"].as_u64().unwrap_or(0) as usize;
                let item = &batch[index.min(batch.len() - 1)];
                rejected.push(serde_json::json!({
                    "index": batch_number * BATCH + index,
                    "place": item.place,
                    "report_id": item.report["report_id"],
                    "code": refusal["code"],
                    "error": refusal["error"],
                }));
            }
        }
        anyhow::Ok(())
    })?;
    let text = if args.json {
        let summed = serde_json::json!({
            "accepted": accepted, "duplicates": duplicates, "rejected": rejected,
        });
        format!("{}\n", serde_json::to_string_pretty(&summed)?)
    } else {
        let mut text = format!(
            "{} spend reports: {accepted} stored, {duplicates} already stored (duplicates), {} refused\n",
            items.len(),
            rejected.len()
        );
        for refusal in &rejected {
            text.push_str(&format!(
                "  {} ({}): {}: {}\n",
                refusal["place"].as_str().unwrap_or("?"),
                refusal["report_id"].as_str().unwrap_or("?"),
                refusal["code"].as_str().unwrap_or("?"),
                refusal["error"].as_str().unwrap_or("?"),
            ));
        }
        text
    };
    crate::report::emit(&text)?;
    if !rejected.is_empty() {
        anyhow::bail!(
            "{} of {} spend reports were refused (listed above); nothing was stored for them",
            rejected.len(),
            items.len()
        );
    }
    Ok(())
}

/// The reports of a `.csv` or `.json` file, each with where it was.
fn read_reports(file: &Path) -> anyhow::Result<Vec<Item>> {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let read: fn(&str) -> anyhow::Result<Vec<Item>> = match extension.as_deref() {
        Some("csv") => read_csv,
        Some("json") => read_json,
        _ => anyhow::bail!(
            "{} is neither .csv nor .json; accepted: a CSV file with columns {},{} or a JSON file",
            file.display(),
            REQUIRED_COLUMNS.join(","),
            OPTIONAL_COLUMN
        ),
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let items = read(&text).with_context(|| format!("reading {}", file.display()))?;
    if items.is_empty() {
        anyhow::bail!("{} holds no spend report", file.display());
    }
    Ok(items)
}

fn read_csv(text: &str) -> anyhow::Result<Vec<Item>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .context("the header row")?
        .iter()
        .map(str::to_owned)
        .collect();
    let position = |name: &str| header.iter().position(|column| column == name);
    let mut columns = Vec::with_capacity(REQUIRED_COLUMNS.len());
    for name in REQUIRED_COLUMNS {
        let Some(at) = position(name) else {
            anyhow::bail!(
                "the header row has no column {name:?}; accepted: {},{} (impressions optional), in any order",
                REQUIRED_COLUMNS.join(","),
                OPTIONAL_COLUMN
            );
        };
        columns.push(at);
    }
    let impressions_column = position(OPTIONAL_COLUMN);
    if let Some(unknown) = header
        .iter()
        .find(|column| !REQUIRED_COLUMNS.contains(&column.as_str()) && *column != OPTIONAL_COLUMN)
    {
        anyhow::bail!(
            "the header row has a column {unknown:?}; accepted: {},{}",
            REQUIRED_COLUMNS.join(","),
            OPTIONAL_COLUMN
        );
    }
    let mut items = Vec::new();
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        let place = format!("line {line}");
        let cell = |at: usize| record.get(at).unwrap_or("");
        let mut report = Map::new();
        for (name, &at) in REQUIRED_COLUMNS.iter().zip(&columns).take(4) {
            report.insert((*name).into(), Value::from(cell(at)));
        }
        let amount_text = cell(columns[4]);
        let amount: f64 = amount_text.parse().map_err(|_| {
            anyhow::anyhow!("{place}: amount {amount_text:?} is not a number; accepted: a finite number >= 0, like 120.50")
        })?;
        // JSON has no infinity or NaN: such a number would reach the server as null.
        if !amount.is_finite() {
            anyhow::bail!(
                "{place}: amount {amount_text:?} is not a finite number; accepted: a finite number >= 0"
            );
        }
        report.insert("amount".into(), Value::from(amount));
        if let Some(at) = impressions_column {
            let impressions_text = cell(at);
            if !impressions_text.is_empty() {
                let impressions: u64 = impressions_text.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "{place}: impressions {impressions_text:?} is not a whole number >= 0; leave the cell empty when unknown"
                    )
                })?;
                report.insert("impressions".into(), Value::from(impressions));
            }
        }
        items.push(Item {
            place,
            report: Value::Object(report),
        });
    }
    Ok(items)
}

fn read_json(text: &str) -> anyhow::Result<Vec<Item>> {
    let value: Value = serde_json::from_str(text).context("not JSON")?;
    let reports = match value {
        Value::Array(reports) => reports,
        Value::Object(mut object) if object.len() == 1 && object.contains_key("reports") => {
            match object.remove("reports") {
                Some(Value::Array(reports)) => reports,
                _ => anyhow::bail!("\"reports\" is not an array of spend reports"),
            }
        }
        _ => anyhow::bail!(
            "expected {{\"reports\": [...]}} or an array of spend reports (report_id, segment, start, end, amount, impressions?)"
        ),
    };
    Ok(reports
        .into_iter()
        .enumerate()
        .map(|(index, report)| Item {
            place: format!("report {}", index + 1),
            report,
        })
        .collect())
}
