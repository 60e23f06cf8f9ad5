//! Platform mode on the command line (`docs/service.md`, *Platform mode*): `tla plan`
//! asks a running server for a plan of a period and writes its bulk-upload sheet;
//! `tla results import` sends a platform's results per ad and day (or hour) back.
//!
//! `tla plan CAMPAIGN --period 24h [--from RFC3339] [--budget X] [--ads-per-segment K]
//! [--format csv|json] [--changed] [--out FILE]` (`POST /v1/campaigns/{id}/plans`, then
//! `GET /v1/campaigns/{id}/plans/{plan}`; a key with the `admin` scope).
//!
//! `tla results import FILE --map KEY=COLUMN,... [--campaign ID]`
//! (`POST /v1/campaigns/{id}/results`; a key with the `ingest` scope, or `admin`): the
//! file is read as `tla evaluate --log` reads a log (CSV, TSV, JSON lines, gzip,
//! Parquet: [`crate::evaluate::import::read_rows`]) and sent in batches of [`BATCH`]
//! rows twice: first checked whole (`dry_run=true`: nothing stored), then, when no row
//! is refused, stored. A refused row is listed with its 1-based data row, its code and
//! the server's reason, and nothing of the file is stored.

use crate::evaluate::import::{LogFormat, Wanted, read_rows};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use tla_core::timestamp::{format_rfc3339, parse_rfc3339};

/// `tla plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The campaign id.
    campaign: String,
    /// The period's length from its start: `24h`, `4h`, `1d`, `90m` (or give `--to`).
    #[arg(long, conflicts_with = "to")]
    period: Option<String>,
    /// The period's start, RFC 3339 (default: now, to the minute).
    #[arg(long)]
    from: Option<String>,
    /// The period's end, RFC 3339 (instead of `--period`).
    #[arg(long)]
    to: Option<String>,
    /// The period's budget over all ad sets; default: the campaign's flight says (what
    /// is left of its budget spread over what is left of it, at most its daily cap).
    #[arg(long)]
    budget: Option<f64>,
    /// The most ads an ad set runs (default 6).
    #[arg(long)]
    ads_per_segment: Option<usize>,
    /// The sheet's format.
    #[arg(long, value_enum, default_value = "csv")]
    format: SheetFormat,
    /// Only the ads added, removed or changed (share or ad set budget) since the
    /// campaign's previous plan.
    #[arg(long)]
    changed: bool,
    /// Write the sheet to this file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The running server, e.g. http://127.0.0.1:8080 (plain HTTP).
    #[arg(long, env = "TLA_SERVER")]
    server: String,
    /// API key with the `admin` scope.
    #[arg(long, env = "TLA_KEY", hide_env_values = true)]
    key: String,
}

/// The format of a plan's sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SheetFormat {
    /// CSV with a header row, one row per ad.
    Csv,
    /// JSON: `{"plan_id", "previous_plan_id", "rows": [...]}`.
    Json,
}

/// `tla results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(subcommand)]
    command: ResultsCommand,
}

#[derive(Debug, Subcommand)]
enum ResultsCommand {
    /// Send a platform's results per ad and day (or hour) to a running server.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// The results: CSV, TSV, JSON lines (gzip accepted) or Parquet.
    file: PathBuf,
    /// Which column holds what: `ads-manager` (the columns of a typical ads-manager
    /// export: see `docs/service.md`) or KEY=COLUMN pairs, keys: ad_name, ad_set, day,
    /// hour, start, end, impressions, clicks, conversions, value, spend.
    #[arg(long)]
    map: String,
    /// The campaign (default: the one the first row's ad name names).
    #[arg(long)]
    campaign: Option<String>,
    /// The file's format (default: from its name, as `tla evaluate --log`).
    #[arg(long, value_enum)]
    format: Option<LogFormat>,
    /// Print the server's answers, summed, as JSON instead of sentences.
    #[arg(long)]
    json: bool,
    /// The running server, e.g. http://127.0.0.1:8080 (plain HTTP).
    #[arg(long, env = "TLA_SERVER")]
    server: String,
    /// API key with the `ingest` scope (or `admin`).
    #[arg(long, env = "TLA_KEY", hide_env_values = true)]
    key: String,
}

/// Rows sent per request (the server takes at most 10,000 by default; 1,000 rows keep
/// a request far below its default body limit of 1 MiB).
pub const BATCH: usize = 1_000;

/// How long to wait for the server for one request.
const SERVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The keys `--map` accepts.
pub const MAP_KEYS: [&str; 11] = [
    "ad_name",
    "ad_set",
    "day",
    "hour",
    "start",
    "end",
    "impressions",
    "clicks",
    "conversions",
    "value",
    "spend",
];

/// `--map ads-manager`: the columns of a typical ads-manager export (one row per ad,
/// ad set and day).
pub const ADS_MANAGER_MAP: &str = "ad_name=Ad name,ad_set=Ad set name,day=Day,impressions=Impressions,clicks=Link clicks,conversions=Results,value=Purchase conversion value,spend=Amount spent";

/// The numbers of a result row, by map key and what they are.
const NUMBERS: [(&str, &str); 5] = [
    ("impressions", "a whole number >= 0"),
    ("clicks", "a whole number >= 0"),
    ("conversions", "a whole number >= 0"),
    ("value", "a number >= 0"),
    ("spend", "a number >= 0"),
];

/// Which columns of a results file hold what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultMap {
    columns: HashMap<&'static str, String>,
}

impl ResultMap {
    /// Parses `--map`: `ads-manager`, or KEY=COLUMN pairs separated by commas. Required:
    /// ad_name, the five numbers, and either `day` (with `hour` optional) or `start` and
    /// `end`.
    pub fn parse(map: &str) -> anyhow::Result<ResultMap> {
        let map = if map.trim() == "ads-manager" {
            ADS_MANAGER_MAP
        } else {
            map
        };
        let mut columns = HashMap::new();
        for pair in map.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, column)) = pair.split_once('=') else {
                bail!(
                    "--map: {pair:?} is not KEY=COLUMN (keys: {}; or --map ads-manager)",
                    MAP_KEYS.join(", ")
                );
            };
            let (key, column) = (key.trim(), column.trim());
            let Some(&key) = MAP_KEYS.iter().find(|k| **k == key) else {
                bail!(
                    "--map: unknown key {key:?}; accepted: {}",
                    MAP_KEYS.join(", ")
                );
            };
            if column.is_empty() {
                bail!("--map: {key}= names no column");
            }
            if columns.insert(key, column.to_owned()).is_some() {
                bail!("--map: {key} is given twice");
            }
        }
        for key in [
            "ad_name",
            "impressions",
            "clicks",
            "conversions",
            "value",
            "spend",
        ] {
            if !columns.contains_key(key) {
                bail!(
                    "the column mapping does not say which column holds the {key}: add {key}=COLUMN to --map"
                );
            }
        }
        let by_day = columns.contains_key("day");
        let by_bounds = columns.contains_key("start") || columns.contains_key("end");
        match (by_day, by_bounds) {
            (true, true) => bail!(
                "--map: give the period either as day (with hour optional) or as start and end, not both"
            ),
            (false, false) => bail!(
                "--map: the period is missing; accepted: day=COLUMN (a date, YYYY-MM-DD; with hour=COLUMN for hourly rows) or start=COLUMN,end=COLUMN (RFC 3339)"
            ),
            (false, true) if !(columns.contains_key("start") && columns.contains_key("end")) => {
                bail!("--map: start and end come together")
            }
            (false, true) if columns.contains_key("hour") => {
                bail!("--map: hour goes with day, not with start and end")
            }
            _ => {}
        }
        Ok(ResultMap { columns })
    }

    fn wanted(&self) -> Vec<Wanted<'_>> {
        self.columns
            .iter()
            .map(|(key, column)| Wanted {
                column,
                what: key,
                required: *key != "ad_set" && *key != "hour",
            })
            .collect()
    }

    /// One data row as the JSON row `POST /v1/campaigns/{id}/results` takes, or why
    /// it cannot be read. An empty number cell is 0 (ads-manager exports leave a
    /// count empty when there was none).
    pub fn row(&self, cell: &dyn Fn(&str) -> Option<String>) -> Result<Value, String> {
        let get = |key: &str| {
            self.columns
                .get(key)
                .and_then(|column| cell(column))
                .map(|text| text.trim().to_owned())
        };
        let ad_name = get("ad_name")
            .filter(|t| !t.is_empty())
            .ok_or("ad_name: the cell is empty; accepted: the ad's name as planned")?;
        let (start, end) = match get("day") {
            Some(day) => period_of_day(&day, get("hour").as_deref())?,
            None => (
                get("start").unwrap_or_default(),
                get("end").unwrap_or_default(),
            ),
        };
        let mut row = json!({"ad_name": ad_name, "start": start, "end": end});
        if let Some(ad_set) = get("ad_set").filter(|t| !t.is_empty()) {
            row["ad_set"] = Value::from(ad_set);
        }
        for (key, accepted) in NUMBERS {
            let text = get(key).unwrap_or_default();
            let number = if text.is_empty() {
                0.0
            } else {
                text.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| {
                        format!("{key}: {text:?} is not a number; accepted: {accepted}")
                    })?
            };
            row[key] = Value::from(number);
        }
        Ok(row)
    }
}

/// The period of a day (`YYYY-MM-DD`, UTC), or of an hour of it: `hour` is a whole
/// number 0 to 23, or text that starts with two digits and `:` (`13:00:00 - 13:59:59`).
fn period_of_day(day: &str, hour: Option<&str>) -> Result<(String, String), String> {
    let start = parse_rfc3339(&format!("{day}T00:00:00Z"))
        .map_err(|_| format!("day: {day:?} is not a date; accepted: YYYY-MM-DD"))?;
    const HOUR_MS: i64 = 3_600_000;
    let (start, length) = match hour.filter(|h| !h.is_empty()) {
        None => (start, 24 * HOUR_MS),
        Some(text) => {
            let digits = text.split(':').next().unwrap_or(text).trim();
            let h: i64 = digits
                .parse()
                .ok()
                .filter(|h| (0..24).contains(h))
                .ok_or_else(|| {
                    format!("hour: {text:?}; accepted: 0 to 23, or HH:MM... (13:00:00 - 13:59:59)")
                })?;
            (start + h * HOUR_MS, HOUR_MS)
        }
    };
    Ok((format_rfc3339(start), format_rfc3339(start + length)))
}

/// Parses `24h`, `4h`, `1d`, `90m` into milliseconds.
pub fn parse_period(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!(
            "--period {text:?}; accepted: a whole number of minutes, hours or days, like 90m, 4h, 24h or 1d"
        ),
    };
    let n: i64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= 366 * 24 * 60)
        .with_context(|| {
            format!("--period {text:?}; accepted: a positive whole number then m, h or d, like 4h")
        })?;
    Ok(n * unit_ms)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs `tla plan`.
pub fn run_plan(args: PlanArgs) -> anyhow::Result<()> {
    crate::client::check_campaign_id(&args.campaign)?;
    let start_ms = match &args.from {
        Some(text) => parse_rfc3339(text).map_err(|e| anyhow::anyhow!("--from: {e}"))?,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            now - now % 60_000
        }
    };
    let end_ms = match (&args.period, &args.to) {
        (Some(period), None) => start_ms + parse_period(period)?,
        (None, Some(text)) => parse_rfc3339(text).map_err(|e| anyhow::anyhow!("--to: {e}"))?,
        _ => bail!("give the period: --period 24h (from --from or now) or --to RFC3339"),
    };
    let mut request = json!({"start": format_rfc3339(start_ms), "end": format_rfc3339(end_ms)});
    if let Some(budget) = args.budget {
        if !budget.is_finite() {
            bail!("--budget {budget}; accepted: a finite amount >= 0");
        }
        request["budget"] = Value::from(budget);
    }
    if let Some(k) = args.ads_per_segment {
        request["ads_per_segment"] = Value::from(k);
    }
    let address = crate::report::server_address(&args.server)?;
    let plans = format!("/v1/campaigns/{}/plans", args.campaign);
    let (plan, sheet) = runtime()?.block_on(async {
        let mut client = crate::client::Client::new(address, &args.key);
        let plan: Value = crate::client::within(
            SERVER_TIMEOUT,
            &args.server,
            &plans,
            client.post_json(&plans, &request),
        )
        .await?;
        let plan_id = plan["plan_id"]
            .as_u64()
            .context("the server's plan has no plan_id")?;
        let path = format!(
            "{plans}/{plan_id}?format={}&changed={}",
            match args.format {
                SheetFormat::Csv => "csv",
                SheetFormat::Json => "json",
            },
            args.changed
        );
        let sheet =
            crate::client::within(SERVER_TIMEOUT, &args.server, &path, client.get_text(&path))
                .await?;
        anyhow::Ok((plan, sheet))
    })?;
    let ads: usize = plan["ad_sets"].as_array().map_or(0, |sets| {
        sets.iter()
            .map(|s| s["ads"].as_array().map_or(0, Vec::len))
            .sum()
    });
    eprintln!(
        "plan {} of campaign {}: {} to {}, budget {:.2} over {} ad sets, {ads} ads",
        plan["plan_id"],
        args.campaign,
        plan["start"].as_str().unwrap_or("?"),
        plan["end"].as_str().unwrap_or("?"),
        plan["budget"].as_f64().unwrap_or(0.0),
        plan["ad_sets"].as_array().map_or(0, Vec::len),
    );
    match &args.out {
        Some(path) => std::fs::write(path, sheet.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => crate::report::emit(&sheet)?,
    }
    Ok(())
}

/// What the passes over a results file found.
#[derive(Debug, Default)]
struct Sums {
    rows: u64,
    inserted: u64,
    replaced: u64,
    unchanged: u64,
    /// (data row, code, reason), at most [`SHOWN_REFUSALS`] of them.
    refused: Vec<(usize, String, String)>,
    refused_count: u64,
}

/// Refusals listed at most.
const SHOWN_REFUSALS: usize = 50;

impl Sums {
    fn refuse(&mut self, row: usize, code: &str, error: String) {
        self.refused_count += 1;
        if self.refused.len() < SHOWN_REFUSALS {
            self.refused.push((row, code.to_owned(), error));
        }
    }
}

/// Runs `tla results`.
pub fn run_results(args: ResultsArgs) -> anyhow::Result<()> {
    let ResultsCommand::Import(args) = args.command;
    let map = ResultMap::parse(&args.map)?;
    let format = args
        .format
        .unwrap_or_else(|| LogFormat::of_path(&args.file));
    let address = crate::report::server_address(&args.server)?;
    let runtime = runtime()?;
    let mut client = crate::client::Client::new(address, &args.key);
    let mut campaign = args.campaign.clone();
    if let Some(id) = &campaign {
        crate::client::check_campaign_id(id)?;
    }
    // Pass 1 checks every row (nothing stored); pass 2 stores, when pass 1 refused none.
    let mut checked = Sums::default();
    let mut stored = Sums::default();
    for dry_run in [true, false] {
        let sums = if dry_run { &mut checked } else { &mut stored };
        let mut batch: Vec<(usize, Value)> = Vec::with_capacity(BATCH);
        let mut send = |batch: &mut Vec<(usize, Value)>, sums: &mut Sums, campaign: &str| {
            if batch.is_empty() {
                return anyhow::Ok(());
            }
            let path = format!("/v1/campaigns/{campaign}/results?dry_run={dry_run}");
            let body = json!({"rows": batch.iter().map(|(_, row)| row).collect::<Vec<_>>()});
            let answer: Value = runtime.block_on(crate::client::within(
                SERVER_TIMEOUT,
                &args.server,
                &path,
                client.post_json(&path, &body),
            ))?;
            sums.inserted += answer["inserted"].as_u64().unwrap_or(0);
            sums.replaced += answer["replaced"].as_u64().unwrap_or(0);
            sums.unchanged += answer["unchanged"].as_u64().unwrap_or(0);
            for refusal in answer["rejected"].as_array().into_iter().flatten() {
                let index = refusal["index"].as_u64().unwrap_or(0) as usize;
                let row = batch.get(index).map_or(0, |(row, _)| *row);
                sums.refuse(
                    row,
                    refusal["code"].as_str().unwrap_or("?"),
                    refusal["error"].as_str().unwrap_or("?").to_owned(),
                );
            }
            batch.clear();
            anyhow::Ok(())
        };
        read_rows(&args.file, format, &map.wanted(), &mut |number, cell| {
            sums.rows += 1;
            match map.row(cell) {
                Ok(row) => {
                    if campaign.is_none() {
                        let name = row["ad_name"].as_str().unwrap_or_default();
                        let (id, _, _) = tla_core::plan::parse_ad_name(name).map_err(|e| {
                            anyhow::anyhow!(
                                "data row {number}: {e}; or name the campaign with --campaign"
                            )
                        })?;
                        crate::client::check_campaign_id(&id)?;
                        campaign = Some(id);
                    }
                    batch.push((number, row));
                }
                Err(error) => sums.refuse(number, "unreadable", error),
            }
            if batch.len() >= BATCH {
                send(&mut batch, sums, campaign.as_deref().unwrap_or_default())?;
            }
            Ok(())
        })
        .with_context(|| format!("reading {}", args.file.display()))?;
        let id = campaign.clone().unwrap_or_default();
        send(&mut batch, sums, &id)?;
        if checked.refused_count > 0 || checked.rows == 0 {
            break;
        }
    }
    if checked.rows == 0 {
        bail!("{} holds no result row", args.file.display());
    }
    let refused = checked.refused_count + stored.refused_count;
    let shown: Vec<&(usize, String, String)> =
        checked.refused.iter().chain(&stored.refused).collect();
    let text = if args.json {
        let summed = json!({
            "rows": checked.rows,
            "inserted": stored.inserted,
            "replaced": stored.replaced,
            "unchanged": stored.unchanged,
            "refused": refused,
            "rejected": shown.iter().map(|(row, code, error)| json!({
                "row": row, "code": code, "error": error,
            })).collect::<Vec<_>>(),
        });
        format!("{}\n", serde_json::to_string_pretty(&summed)?)
    } else {
        let mut text = format!(
            "{} result rows: {} new, {} replaced, {} unchanged, {refused} refused\n",
            checked.rows, stored.inserted, stored.replaced, stored.unchanged
        );
        for (row, code, error) in &shown {
            text.push_str(&format!("  data row {row}: {code}: {error}\n"));
        }
        if refused as usize > shown.len() {
            text.push_str(&format!(
                "  ... and {} more\n",
                refused as usize - shown.len()
            ));
        }
        text
    };
    crate::report::emit(&text)?;
    if refused > 0 {
        bail!(
            "{refused} of {} result rows were refused (listed above); nothing of the file was stored",
            checked.rows
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |column: &str| map.get(column).cloned()
    }

    #[test]
    fn the_ads_manager_mapping_reads_a_day_row_and_empty_counts_as_zero() {
        let map = ResultMap::parse("ads-manager").unwrap();
        let row = map
            .row(&cells(&[
                ("Ad name", "tla-c-1-7"),
                ("Ad set name", "past-donors"),
                ("Day", "2026-12-01"),
                ("Impressions", "1200"),
                ("Link clicks", "30"),
                ("Results", ""),
                ("Purchase conversion value", ""),
                ("Amount spent", "12.5"),
            ]))
            .unwrap();
        assert_eq!(row["start"], "2026-12-01T00:00:00Z");
        assert_eq!(row["end"], "2026-12-02T00:00:00Z");
        assert_eq!(row["conversions"], 0.0);
        assert_eq!(row["spend"], 12.5);
        assert_eq!(row["ad_set"], "past-donors");
    }

    #[test]
    fn an_hour_column_makes_hourly_periods_and_bad_cells_name_what_is_accepted() {
        let map = ResultMap::parse(
            "ad_name=a,day=d,hour=h,impressions=i,clicks=c,conversions=v,value=x,spend=s",
        )
        .unwrap();
        let base = [
            ("a", "tla-c-1-7"),
            ("d", "2026-12-01"),
            ("i", "10"),
            ("c", "1"),
            ("v", "0"),
            ("x", "0"),
            ("s", "1"),
        ];
        let mut with_hour = base.to_vec();
        with_hour.push(("h", "13:00:00 - 13:59:59"));
        let row = map.row(&cells(&with_hour)).unwrap();
        assert_eq!(
            (row["start"].as_str(), row["end"].as_str()),
            (Some("2026-12-01T13:00:00Z"), Some("2026-12-01T14:00:00Z"))
        );
        let mut bad = base.to_vec();
        bad[2] = ("i", "many");
        assert!(
            map.row(&cells(&bad))
                .unwrap_err()
                .contains("impressions: \"many\"")
        );
        let mut bad_day = base.to_vec();
        bad_day[1] = ("d", "1/12/2026");
        assert!(
            map.row(&cells(&bad_day))
                .unwrap_err()
                .contains("YYYY-MM-DD")
        );
    }

    #[test]
    fn a_mapping_without_a_period_or_a_number_is_refused() {
        let missing =
            ResultMap::parse("ad_name=a,impressions=i,clicks=c,conversions=v,value=x,spend=s")
                .unwrap_err();
        assert!(
            missing.to_string().contains("the period is missing"),
            "{missing}"
        );
        let no_spend =
            ResultMap::parse("ad_name=a,day=d,impressions=i,clicks=c,conversions=v,value=x")
                .unwrap_err();
        assert!(no_spend.to_string().contains("spend=COLUMN"), "{no_spend}");
        assert!(ResultMap::parse("ad=a").is_err());
    }

    #[test]
    fn periods_read_minutes_hours_and_days() {
        assert_eq!(parse_period("24h").unwrap(), 86_400_000);
        assert_eq!(parse_period("1d").unwrap(), 86_400_000);
        assert_eq!(parse_period("90m").unwrap(), 5_400_000);
        assert!(parse_period("4").is_err());
        assert!(parse_period("0h").is_err());
    }
}
