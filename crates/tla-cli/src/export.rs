//! `tla export`: a campaign's decisions or events from a data directory, as CSV or
//! Parquet, streamed page by page (never the whole log in memory); or one table of the
//! campaign's report (see `report`); or the decisions of several data directories (the
//! servers of one stream) merged into one decision log (see `merge`).

mod merge;
mod report;

use crate::csv_text::spreadsheet_safe as safe;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tla_core::report::ReportSettings;
use tla_core::spec::CampaignSpec;
use tla_store::{CampaignRow, DATABASE_FILE_NAME, DecisionRow, EventLog, Store, StoredEvent};

/// Rows read from the store per page (and written per Parquet record batch).
pub const PAGE: usize = 8_192;

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// The decision log: one row per decision, with its exact propensity.
    Decisions,
    /// The event log: one row per stored event (impression, click, conversion, cost).
    Events,
    /// The report's option leaderboard: one row per option of every component.
    ReportOptions,
    /// The report's segments: one row per segment.
    ReportSegments,
    /// The report's leading versions of each segment, with P(best) among them.
    ReportLeaders,
    /// The report's most served (segment, version) pairs.
    ReportVersions,
}

impl What {
    /// The report table, for the `report-*` choices.
    fn report_table(self) -> Option<report::ReportTable> {
        match self {
            What::Decisions | What::Events => None,
            What::ReportOptions => Some(report::ReportTable::Options),
            What::ReportSegments => Some(report::ReportTable::Segments),
            What::ReportLeaders => Some(report::ReportTable::Leaders),
            What::ReportVersions => Some(report::ReportTable::Versions),
        }
    }

    /// What the rows are, for the closing message.
    fn rows_name(self) -> &'static str {
        match self {
            What::Decisions => "decisions",
            What::Events => "events",
            What::ReportOptions => "option rows of the report",
            What::ReportSegments => "segment rows of the report",
            What::ReportLeaders => "leading-version rows of the report",
            What::ReportVersions => "served-version rows of the report",
        }
    }
}

/// File format of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet (snappy-compressed), written with arrow-rs.
    Parquet,
}

/// Arguments of `tla export`.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Export a campaign's decisions or events from a data directory to CSV or \
Parquet, readable by pandas and DuckDB. Segments are written by name (from the campaign's spec). \
Columns are listed in docs/import-export.md.\n\ndecisions: decision_id, campaign_id, segment, \
version, propensity, model_version, at_ms, model_seq. With --data repeated (the data directories \
of the servers on one stream), the servers' decision logs merged into one: each decision once, \
ordered by time then id; directories of different streams or secrets, or two different rows \
under one decision id, are refused.\nevents: seq, event_id, decision_id, type, value, \
segment, version, decided_at_ms, at_ms, amount_known\n\nreport-options, report-segments, report-leaders, \
report-versions: one table of the campaign report (the report `tla report` prints, built the same \
way: the campaigns are rebuilt from the data directory, so stop the server or use a copy), one \
table per file, with the counts (impressions, clicks, conversions, value, spend) and the posterior \
rate and value per impression (mean, lower, upper of the 95% interval) of each row; options and \
leaders also carry p_best and expected_loss; every table ends with conversions_amount_unknown \
and value_learned. --draws sets the Monte Carlo draws."
)]
pub struct ExportArgs {
    /// The data directory (holding tla.db). With --what decisions it may be repeated:
    /// the data directories of the servers of one stream, merged into one decision log.
    #[arg(long, required = true)]
    pub data: Vec<PathBuf>,
    /// The campaign id.
    #[arg(long)]
    pub campaign: String,
    /// What to export.
    #[arg(long, value_enum)]
    pub what: What,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Output file (overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Monte Carlo draws of the posterior, for the report tables (default 1000, as
    /// `tla report`).
    #[arg(long)]
    pub draws: Option<usize>,
}

/// Column names of the decisions export, in order (`model_seq` last, so the older
/// columns keep their positions).
pub const DECISION_COLUMNS: [&str; 8] = [
    "decision_id",
    "campaign_id",
    "segment",
    "version",
    "propensity",
    "model_version",
    "at_ms",
    "model_seq",
];

/// Column names of the events export, in order.
pub const EVENT_COLUMNS: [&str; 10] = [
    "seq",
    "event_id",
    "decision_id",
    "type",
    "value",
    "segment",
    "version",
    "decided_at_ms",
    "at_ms",
    "amount_known",
];

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    if args.data.len() > 1 {
        if args.what != What::Decisions {
            bail!(
                "--data is given {} times; only --what decisions merges several data directories \
                 (the servers of one stream); --what {} reads one",
                args.data.len(),
                clap::ValueEnum::to_possible_value(&args.what)
                    .map_or_else(String::new, |v| v.get_name().to_owned())
            );
        }
        if args.draws.is_some() {
            bail!("--draws is for the report tables (--what report-...); decisions have no draws");
        }
        let merged = merge::export(&args)?;
        eprintln!(
            "wrote {} decisions of campaign {} to {} ({:.2} s), merged from {} data directories \
             of stream {:?}: {} rows read ({}), {} distinct",
            merged.written,
            args.campaign,
            args.out.display(),
            start.elapsed().as_secs_f64(),
            args.data.len(),
            merged.stream,
            merged.read.iter().sum::<u64>(),
            merged
                .read
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" + "),
            merged.written,
        );
        return Ok(());
    }
    let data = &args.data[0];
    let store = open_data(data)?;
    let campaign = store
        .campaign(&args.campaign)?
        .with_context(|| format!("no campaign {:?} in {}", args.campaign, data.display()))?;
    let rows = if let Some(table) = args.what.report_table() {
        export_report(store, &args, table)?
    } else {
        if args.draws.is_some() {
            bail!(
                "--draws is for the report tables (--what report-...); decisions and events have no draws"
            );
        }
        let segments = segment_names(&store, &campaign)?;
        match args.what {
            What::Decisions => export_decisions(&store, &args, &segments)?,
            _ => export_events(&store, &args, &segments)?,
        }
    };
    eprintln!(
        "wrote {rows} {} of campaign {} to {} ({:.2} s)",
        args.what.rows_name(),
        args.campaign,
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Opens the data directory `data` read-only; a directory without `tla.db` is refused.
fn open_data(data: &Path) -> anyhow::Result<Store> {
    if !data.join(DATABASE_FILE_NAME).is_file() {
        bail!(
            "{} holds no {DATABASE_FILE_NAME}: not a TLA data directory",
            data.display()
        );
    }
    Store::open_read_only(data)
        .with_context(|| format!("cannot open data directory {}", data.display()))
}

/// The segment names of each revision of `campaign` (`[r - 1]` holds revision `r`'s):
/// a decision's segment is an index of the spec of the revision it was served under.
fn segment_names(store: &Store, campaign: &CampaignRow) -> anyhow::Result<Vec<Vec<String>>> {
    let spec = CampaignSpec::from_json_str(&campaign.spec_json)
        .with_context(|| format!("the stored spec of campaign {:?}", campaign.id))?;
    let mut segments: Vec<Vec<String>> =
        vec![spec.segments.iter().map(|s| s.name.clone()).collect()];
    for revision in store.revisions(&campaign.id)? {
        let spec = CampaignSpec::from_json_str(&revision.spec_json).with_context(|| {
            format!(
                "the stored spec of revision {} of campaign {:?}",
                revision.revision, campaign.id
            )
        })?;
        segments.push(spec.segments.iter().map(|s| s.name.clone()).collect());
    }
    Ok(segments)
}

/// Builds the campaign's report as `tla report` does and writes one of its tables.
fn export_report(
    store: Store,
    args: &ExportArgs,
    table: report::ReportTable,
) -> anyhow::Result<u64> {
    let draws = args
        .draws
        .unwrap_or(tla_core::report::DEFAULT_POSTERIOR_DRAWS);
    if draws == 0 {
        bail!("--draws must be at least 1");
    }
    let settings = ReportSettings {
        draws,
        ..ReportSettings::default()
    };
    let replayed = crate::report::replay_campaigns(&store)?;
    let built =
        crate::report::report_of(&store, &replayed, &args.campaign, &settings, &args.data[0])?;
    Ok(report::write(&built, table, args.format, &args.out)? as u64)
}

/// The name of segment `index` of the campaign's revision `revision` (`segments[r - 1]`
/// holds revision `r`'s names).
fn segment_name<'a>(
    segments: &'a [Vec<String>],
    revision: u32,
    index: u32,
    what: &str,
) -> anyhow::Result<&'a str> {
    let names = (revision as usize)
        .checked_sub(1)
        .and_then(|r| segments.get(r))
        .with_context(|| {
            format!(
                "{what} was served under revision {revision}, but the campaign has {} revisions",
                segments.len()
            )
        })?;
    names.get(index as usize).map(String::as_str).with_context(|| {
        format!(
            "{what} has segment index {index}, but revision {revision} of the campaign spec has {} segments",
            names.len()
        )
    })
}

/// The revision a stored event's decision was served under (1 for an id that does not
/// say).
fn event_revision(event: &StoredEvent) -> u32 {
    tla_server::decision_id::revision_of(&event.decision_id).unwrap_or(1)
}

/// Where pages of rows go: a CSV writer or a Parquet writer.
enum Sink {
    Csv(csv::Writer<BufWriter<File>>),
    Parquet(ArrowWriter<File>, Arc<Schema>),
}

impl Sink {
    fn create(
        path: &Path,
        format: Format,
        columns: &[&str],
        schema: Schema,
    ) -> anyhow::Result<Sink> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        match format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(BufWriter::new(file));
                writer.write_record(columns)?;
                Ok(Sink::Csv(writer))
            }
            Format::Parquet => {
                let schema = Arc::new(schema);
                let properties = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .build();
                let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))?;
                Ok(Sink::Parquet(writer, schema))
            }
        }
    }

    fn finish(self, path: &Path) -> anyhow::Result<()> {
        match self {
            Sink::Csv(writer) => {
                let mut inner = writer
                    .into_inner()
                    .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error()))?;
                inner.flush()?;
            }
            Sink::Parquet(writer, _) => {
                writer.close()?;
            }
        }
        Ok(())
    }
}

fn decision_schema() -> Schema {
    Schema::new(vec![
        Field::new("decision_id", DataType::Utf8, false),
        Field::new("campaign_id", DataType::Utf8, false),
        Field::new("segment", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        Field::new("propensity", DataType::Float64, false),
        Field::new("model_version", DataType::UInt64, false),
        Field::new("at_ms", DataType::Int64, false),
        Field::new("model_seq", DataType::UInt64, false),
    ])
}

fn event_schema() -> Schema {
    Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("decision_id", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("segment", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        Field::new("decided_at_ms", DataType::Int64, false),
        Field::new("at_ms", DataType::Int64, false),
        Field::new("amount_known", DataType::Boolean, false),
    ])
}

fn export_decisions(
    store: &Store,
    args: &ExportArgs,
    segments: &[Vec<String>],
) -> anyhow::Result<u64> {
    let mut sink = DecisionSink::create(&args.out, args.format)?;
    let mut after = 0;
    let mut total = 0u64;
    loop {
        let page = store.decisions(&args.campaign, after, PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        total += page.len() as u64;
        let rows: Vec<(&DecisionRow, &[Vec<String>])> =
            page.iter().map(|(_, d)| (d, segments)).collect();
        sink.write(&rows)?;
    }
    sink.finish(&args.out)?;
    Ok(total)
}

/// The model seq a decision's id carries (`tla_server::decision_id`, layout 4; 0 for
/// ids made before it), for the `model_seq` column.
fn model_seq(d: &DecisionRow) -> anyhow::Result<u64> {
    tla_server::decision_id::model_seq_of(&d.decision_id).with_context(|| {
        format!(
            "decision {:?} of the decision log is not a decision id TLA issues",
            d.decision_id
        )
    })
}

/// Where decision rows go, in the decisions export's columns.
struct DecisionSink(Sink);

impl DecisionSink {
    fn create(path: &Path, format: Format) -> anyhow::Result<DecisionSink> {
        Ok(DecisionSink(Sink::create(
            path,
            format,
            &DECISION_COLUMNS,
            decision_schema(),
        )?))
    }

    fn finish(self, path: &Path) -> anyhow::Result<()> {
        self.0.finish(path)
    }

    /// Writes `rows`, each with the segment names of its campaign's revisions (see
    /// [`segment_names`]; merged rows come from different data directories).
    fn write(&mut self, rows: &[(&DecisionRow, &[Vec<String>])]) -> anyhow::Result<()> {
        match &mut self.0 {
            Sink::Csv(writer) => {
                for (d, segments) in rows {
                    let segment = segment_name(
                        segments,
                        d.revision,
                        d.segment,
                        &format!("decision {}", d.decision_id),
                    )?;
                    writer.write_record([
                        safe(&d.decision_id).as_ref(),
                        safe(&d.campaign_id).as_ref(),
                        safe(segment).as_ref(),
                        &d.version.to_string(),
                        &format!("{:?}", d.propensity),
                        &d.model_version.to_string(),
                        &d.at_ms.to_string(),
                        &model_seq(d)?.to_string(),
                    ])?;
                }
            }
            Sink::Parquet(writer, schema) => {
                let mut decision_id = StringBuilder::new();
                let mut campaign_id = StringBuilder::new();
                let mut segment = StringBuilder::new();
                let mut version = UInt64Builder::with_capacity(rows.len());
                let mut propensity = Float64Builder::with_capacity(rows.len());
                let mut model_version = UInt64Builder::with_capacity(rows.len());
                let mut at_ms = Int64Builder::with_capacity(rows.len());
                let mut seq = UInt64Builder::with_capacity(rows.len());
                for (d, segments) in rows {
                    decision_id.append_value(&d.decision_id);
                    campaign_id.append_value(&d.campaign_id);
                    segment.append_value(segment_name(
                        segments,
                        d.revision,
                        d.segment,
                        &format!("decision {}", d.decision_id),
                    )?);
                    version.append_value(d.version);
                    propensity.append_value(d.propensity);
                    model_version.append_value(d.model_version);
                    at_ms.append_value(d.at_ms);
                    seq.append_value(model_seq(d)?);
                }
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(decision_id.finish()),
                    Arc::new(campaign_id.finish()),
                    Arc::new(segment.finish()),
                    Arc::new(version.finish()),
                    Arc::new(propensity.finish()),
                    Arc::new(model_version.finish()),
                    Arc::new(at_ms.finish()),
                    Arc::new(seq.finish()),
                ];
                writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
            }
        }
        Ok(())
    }
}

/// Below this share of the event log, a campaign's events are exported through the
/// `(campaign_id, kind)` index rather than a scan of the whole log. Measured on logs of
/// 2,000,000 events: at a share of one half the scan took 1.85 s against 2.44 s through
/// the index (CSV); see docs/import-export.md for the figures at smaller shares.
const INDEX_READ_SHARE: f64 = 0.2;

fn export_events(
    store: &Store,
    args: &ExportArgs,
    segments: &[Vec<String>],
) -> anyhow::Result<u64> {
    let mut sink = Sink::create(&args.out, args.format, &EVENT_COLUMNS, event_schema())?;
    let log = store.event_log();
    let mut total = 0u64;
    // The log holds every campaign's events. A campaign with a small share of it is read
    // through the (campaign, kind) index; otherwise the sequential scan is faster.
    let share = store.campaign_event_count(&args.campaign)? as f64 / log.last_seq()?.max(1) as f64;
    if share < INDEX_READ_SHARE {
        let mut reader = store.campaign_events_reader(&args.campaign);
        loop {
            let page = reader.next_page(PAGE)?;
            if page.is_empty() {
                break;
            }
            let rows: Vec<&StoredEvent> = page.iter().collect();
            total += rows.len() as u64;
            write_events(&mut sink, &rows, segments)?;
        }
    } else {
        let mut after = 0;
        loop {
            let page = log.read_after(after, PAGE)?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.seq;
            let rows: Vec<&StoredEvent> = page
                .iter()
                .filter(|e| e.campaign_id == args.campaign)
                .collect();
            total += rows.len() as u64;
            write_events(&mut sink, &rows, segments)?;
        }
    }
    sink.finish(&args.out)?;
    Ok(total)
}

fn write_events(
    sink: &mut Sink,
    rows: &[&StoredEvent],
    segments: &[Vec<String>],
) -> anyhow::Result<()> {
    match sink {
        Sink::Csv(writer) => {
            for e in rows {
                let segment = segment_name(
                    segments,
                    event_revision(e),
                    e.segment,
                    &format!("event {}", e.seq),
                )?;
                writer.write_record([
                    e.seq.to_string().as_str(),
                    safe(&e.event_id).as_ref(),
                    safe(&e.decision_id).as_ref(),
                    e.kind.as_str(),
                    &format!("{:?}", e.value),
                    safe(segment).as_ref(),
                    &e.version.to_string(),
                    &e.decided_at_ms.to_string(),
                    &e.at_ms.to_string(),
                    if e.amount_known { "true" } else { "false" },
                ])?;
            }
        }
        Sink::Parquet(writer, schema) => {
            let mut seq = UInt64Builder::with_capacity(rows.len());
            let mut event_id = StringBuilder::new();
            let mut decision_id = StringBuilder::new();
            let mut kind = StringBuilder::new();
            let mut value = Float64Builder::with_capacity(rows.len());
            let mut segment = StringBuilder::new();
            let mut version = UInt64Builder::with_capacity(rows.len());
            let mut decided_at_ms = Int64Builder::with_capacity(rows.len());
            let mut at_ms = Int64Builder::with_capacity(rows.len());
            let mut amount_known = BooleanBuilder::with_capacity(rows.len());
            for e in rows {
                seq.append_value(e.seq);
                event_id.append_value(&e.event_id);
                decision_id.append_value(&e.decision_id);
                kind.append_value(e.kind.as_str());
                value.append_value(e.value);
                segment.append_value(segment_name(
                    segments,
                    event_revision(e),
                    e.segment,
                    &format!("event {}", e.seq),
                )?);
                version.append_value(e.version);
                decided_at_ms.append_value(e.decided_at_ms);
                at_ms.append_value(e.at_ms);
                amount_known.append_value(e.amount_known);
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(seq.finish()),
                Arc::new(event_id.finish()),
                Arc::new(decision_id.finish()),
                Arc::new(kind.finish()),
                Arc::new(value.finish()),
                Arc::new(segment.finish()),
                Arc::new(version.finish()),
                Arc::new(decided_at_ms.finish()),
                Arc::new(at_ms.finish()),
                Arc::new(amount_known.finish()),
            ];
            writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        }
    }
    Ok(())
}
