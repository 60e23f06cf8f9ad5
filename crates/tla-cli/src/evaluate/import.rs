//! Importing a logged-bandit file with a column mapping into a [`LabelledLog`], which
//! `tla_core::ope::labelled` evaluates, and a target's probabilities per (context,
//! action) into a [`TargetTable`].
//!
//! Formats ([`LogFormat`]): CSV (a header row), TSV (the same with tabs), JSON lines
//! (one object per line; blank lines skipped and not counted) and Parquet (columns of
//! integers, floats, strings, booleans, timestamps or dates; nulls are missing values).
//! CSV, TSV and JSON lines may be gzip-compressed (recognized by their first two bytes,
//! whatever the file's name). Every cell is read as text and parsed the same way in
//! every format.
//!
//! Every data row must carry an action, a reward and a propensity in (0, 1]; the first
//! row that does not is refused with its 1-based data-row number and the column (the
//! header is not a data row).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};
use tla_core::ope::LoggedRow;
use tla_core::ope::labelled::{LabelledLog, TargetEntry, TargetTable, context_key};

/// Formats of an imported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Comma-separated values with a header row (gzip accepted).
    Csv,
    /// Tab-separated values with a header row (gzip accepted).
    Tsv,
    /// One JSON object per line (gzip accepted).
    Jsonl,
    /// Apache Parquet.
    Parquet,
}

impl LogFormat {
    /// The format a file's name says, after any `.gz`: `.jsonl` / `.ndjson` JSON lines,
    /// `.tsv` / `.tab` TSV, `.parquet` / `.pq` Parquet, anything else CSV.
    pub fn of_path(path: &Path) -> LogFormat {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("jsonl" | "ndjson") => LogFormat::Jsonl,
            Some("tsv" | "tab") => LogFormat::Tsv,
            Some("parquet" | "pq") => LogFormat::Parquet,
            _ => LogFormat::Csv,
        }
    }
}

/// The mapping keys `--map` accepts.
pub const MAP_KEYS: [&str; 7] = [
    "timestamp",
    "action",
    "reward",
    "propensity",
    "segment",
    "slot",
    "position",
];

/// Which columns of the file hold what.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub timestamp: Option<String>,
    pub action: String,
    pub reward: String,
    pub propensity: String,
    /// Columns whose values, together, make the context (segment, slot, others).
    pub context: Vec<String>,
    /// With `--target column:NAME`: the column holding the target's probability of each
    /// row's logged action.
    pub target: Option<String>,
}

impl Mapping {
    /// Parses `timestamp=ts,action=arm,segment=ctx,reward=r,propensity=p` plus the
    /// `--slot` and `--context` flags. Action, reward and propensity are required.
    pub fn parse(map: &str, slot: Option<&str>, context: &[String]) -> anyhow::Result<Mapping> {
        let mut given: HashMap<&str, &str> = HashMap::new();
        for pair in map.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, column)) = pair.split_once('=') else {
                bail!(
                    "--map: {pair:?} is not KEY=COLUMN (keys: {})",
                    MAP_KEYS.join(", ")
                );
            };
            let (key, column) = (key.trim(), column.trim());
            if !MAP_KEYS.contains(&key) {
                bail!(
                    "--map: unknown key {key:?}; accepted: {}",
                    MAP_KEYS.join(", ")
                );
            }
            if column.is_empty() {
                bail!("--map: {key}= names no column");
            }
            if given.insert(key, column).is_some() {
                bail!("--map: {key} is given twice");
            }
        }
        let required = |key: &str| -> anyhow::Result<String> {
            given.get(key).map(|c| c.to_string()).with_context(|| {
                format!(
                    "the column mapping does not say which column holds the {key}: add {key}=COLUMN to --map"
                )
            })
        };
        let action = required("action")?;
        let reward = required("reward")?;
        let propensity = required("propensity")?;
        let mut columns = Vec::new();
        for key in ["segment", "slot", "position"] {
            if let Some(c) = given.get(key) {
                columns.push(c.to_string());
            }
        }
        if let Some(s) = slot {
            columns.push(s.to_string());
        }
        columns.extend(context.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        columns.retain(|c| seen.insert(c.clone()));
        Ok(Mapping {
            timestamp: given.get("timestamp").map(|c| c.to_string()),
            action,
            reward,
            propensity,
            context: columns,
            target: None,
        })
    }
}

/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens a text file, decompressing it when it starts with the gzip magic bytes.
fn open_text(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let start = reader
        .fill_buf()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if start.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(reader),
        )))
    } else {
        Ok(Box::new(reader))
    }
}

/// A column to read: its name, what it holds (for messages), and whether the first
/// JSON object must hold it (CSV, TSV and Parquet check every column against the
/// header).
pub struct Wanted<'a> {
    pub column: &'a str,
    pub what: &'a str,
    pub required: bool,
}

/// A row's cells by column name.
pub type Field<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads `path` in `format`, calling `visit` with each data row's 1-based number and
/// its cells. Columns are checked against the header (CSV, TSV), the schema (Parquet)
/// or the first object (JSON lines, required columns only).
pub fn read_rows(
    path: &Path,
    format: LogFormat,
    wanted: &[Wanted<'_>],
    visit: &mut dyn FnMut(usize, Field<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match format {
        LogFormat::Csv | LogFormat::Tsv => read_delimited(path, format, wanted, visit),
        LogFormat::Jsonl => read_jsonl_rows(path, wanted, visit),
        LogFormat::Parquet => read_parquet_rows(path, wanted, visit),
    }
}

fn missing_column(path: &Path, w: &Wanted<'_>, place: &str, names: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "the {} column {:?} is not in the {place} of {} (columns: {})",
        w.what,
        w.column,
        path.display(),
        names.join(", ")
    )
}

fn read_delimited(
    path: &Path,
    format: LogFormat,
    wanted: &[Wanted<'_>],
    visit: &mut dyn FnMut(usize, Field<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .delimiter(if format == LogFormat::Tsv {
            b'\t'
        } else {
            b','
        })
        .from_reader(open_text(path)?);
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("cannot read the header row of {}", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut index: HashMap<String, usize> = HashMap::new();
    for w in wanted {
        let i = header
            .iter()
            .position(|h| h == w.column)
            .ok_or_else(|| missing_column(path, w, "header", &header))?;
        index.insert(w.column.to_string(), i);
    }
    let mut record = csv::StringRecord::new();
    let mut row = 0usize;
    loop {
        let more = reader.read_record(&mut record).with_context(|| {
            format!(
                "data row {}: cannot parse the {}",
                row + 1,
                if format == LogFormat::Tsv {
                    "TSV"
                } else {
                    "CSV"
                }
            )
        })?;
        if !more {
            return Ok(());
        }
        row += 1;
        let field = |column: &str| -> Option<String> {
            index
                .get(column)
                .and_then(|&i| record.get(i))
                .map(str::to_string)
        };
        visit(row, &field)?;
    }
}

fn read_jsonl_rows(
    path: &Path,
    wanted: &[Wanted<'_>],
    visit: &mut dyn FnMut(usize, Field<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut row = 0usize;
    for line in open_text(path)?.lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        row += 1;
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("data row {row}: not a JSON object"))?;
        let Some(object) = value.as_object() else {
            bail!("data row {row}: not a JSON object");
        };
        if row == 1 {
            let keys: Vec<String> = object.keys().cloned().collect();
            for w in wanted.iter().filter(|w| w.required) {
                if !object.contains_key(w.column) {
                    return Err(missing_column(path, w, "keys of the first object", &keys));
                }
            }
        }
        let field = |column: &str| -> Option<String> {
            match object.get(column)? {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        };
        visit(row, &field)?;
    }
    Ok(())
}

fn read_parquet_rows(
    path: &Path,
    wanted: &[Wanted<'_>],
    visit: &mut dyn FnMut(usize, Field<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut magic = [0u8; 2];
    if file.read_exact(&mut magic).is_ok() && magic == GZIP_MAGIC {
        bail!(
            "{} is gzip-compressed; Parquet compresses its own pages, so give the .parquet file itself",
            path.display()
        );
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).with_context(|| {
        format!(
            "{} is not a Parquet file this build can read",
            path.display()
        )
    })?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for w in wanted {
        if !names.iter().any(|n| n == w.column) {
            return Err(missing_column(path, w, "columns", &names));
        }
    }
    let reader = builder
        .with_batch_size(8192)
        .build()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut row = 0usize;
    for batch in reader {
        let batch = match batch {
            Ok(batch) => batch,
            Err(error)
                if error
                    .to_string()
                    .contains("Disabled feature at compile time") =>
            {
                bail!(
                    "{}: its pages are compressed with a codec this build does not read ({error}); accepted: snappy or uncompressed pages (e.g. pyarrow's write_table(..., compression=\"snappy\"), polars' write_parquet(..., compression=\"snappy\"))",
                    path.display()
                )
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "{}: cannot decode the rows after data row {row}",
                        path.display()
                    )
                });
            }
        };
        let mut columns: HashMap<&str, Vec<Option<String>>> = HashMap::new();
        for w in wanted {
            let array = batch
                .column_by_name(w.column)
                .expect("the schema holds every wanted column");
            columns.insert(w.column, column_texts(array.as_ref(), w.column, path)?);
        }
        for i in 0..batch.num_rows() {
            row += 1;
            let field =
                |column: &str| -> Option<String> { columns.get(column).and_then(|c| c[i].clone()) };
            visit(row, &field)?;
        }
    }
    Ok(())
}

/// A Parquet column's cells as text (None for a null), parsed afterwards exactly as a
/// CSV cell is.
fn column_texts(
    array: &dyn arrow_array::Array,
    column: &str,
    path: &Path,
) -> anyhow::Result<Vec<Option<String>>> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types as t;
    use arrow_schema::{DataType, TimeUnit};
    macro_rules! texts {
        ($a:expr) => {{
            let a = $a;
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect()
        }};
    }
    Ok(match array.data_type() {
        DataType::Int8 => texts!(array.as_primitive::<t::Int8Type>()),
        DataType::Int16 => texts!(array.as_primitive::<t::Int16Type>()),
        DataType::Int32 => texts!(array.as_primitive::<t::Int32Type>()),
        DataType::Int64 => texts!(array.as_primitive::<t::Int64Type>()),
        DataType::UInt8 => texts!(array.as_primitive::<t::UInt8Type>()),
        DataType::UInt16 => texts!(array.as_primitive::<t::UInt16Type>()),
        DataType::UInt32 => texts!(array.as_primitive::<t::UInt32Type>()),
        DataType::UInt64 => texts!(array.as_primitive::<t::UInt64Type>()),
        DataType::Float32 => texts!(array.as_primitive::<t::Float32Type>()),
        DataType::Float64 => texts!(array.as_primitive::<t::Float64Type>()),
        DataType::Date32 => texts!(array.as_primitive::<t::Date32Type>()),
        DataType::Date64 => texts!(array.as_primitive::<t::Date64Type>()),
        DataType::Timestamp(TimeUnit::Second, _) => {
            texts!(array.as_primitive::<t::TimestampSecondType>())
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            texts!(array.as_primitive::<t::TimestampMillisecondType>())
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            texts!(array.as_primitive::<t::TimestampMicrosecondType>())
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            texts!(array.as_primitive::<t::TimestampNanosecondType>())
        }
        DataType::Boolean => texts!(array.as_boolean()),
        DataType::Utf8 => texts!(array.as_string::<i32>()),
        DataType::LargeUtf8 => texts!(array.as_string::<i64>()),
        DataType::Utf8View => texts!(array.as_string_view()),
        DataType::Dictionary(_, _) => {
            let dictionary = array.as_any_dictionary();
            let values = column_texts(dictionary.values().as_ref(), column, path)?;
            let keys = dictionary.normalized_keys();
            (0..array.len())
                .map(|i| {
                    if array.is_valid(i) {
                        values[keys[i]].clone()
                    } else {
                        None
                    }
                })
                .collect()
        }
        other => bail!(
            "the column {column:?} of {} has the Parquet/Arrow type {other}, which the import does not read; accepted: integers, floats, strings, booleans, timestamps, dates",
            path.display()
        ),
    })
}

#[derive(Default)]
struct Builder {
    rows: Vec<LoggedRow>,
    data_rows: Vec<usize>,
    times: Vec<Time>,
    targets: Vec<f64>,
    action_index: HashMap<String, u64>,
    actions: Vec<String>,
    context_index: HashMap<String, usize>,
    context_keys: Vec<String>,
}

#[derive(Clone, PartialEq, PartialOrd)]
enum Time {
    Number(f64),
    Text(String),
}

impl Builder {
    fn action(&mut self, label: &str) -> u64 {
        if let Some(&a) = self.action_index.get(label) {
            return a;
        }
        let a = self.actions.len() as u64;
        self.actions.push(label.to_string());
        self.action_index.insert(label.to_string(), a);
        a
    }

    fn context(&mut self, key: String) -> usize {
        if let Some(&c) = self.context_index.get(&key) {
            return c;
        }
        let c = self.context_keys.len();
        self.context_index.insert(key.clone(), c);
        self.context_keys.push(key);
        c
    }

    /// Adds data row `row` (1-based) from its fields.
    fn push(&mut self, row: usize, mapping: &Mapping, field: Field<'_>) -> anyhow::Result<()> {
        let action = field(&mapping.action)
            .filter(|a| !a.is_empty())
            .with_context(|| {
                format!(
                    "data row {row}: the action (column {:?}) is missing",
                    mapping.action
                )
            })?;
        let propensity = parse_propensity(row, &mapping.propensity, field(&mapping.propensity))?;
        let reward_text = field(&mapping.reward).filter(|r| !r.trim().is_empty());
        let reward = match reward_text {
            None => bail!(
                "data row {row}: the reward (column {:?}) is missing",
                mapping.reward
            ),
            Some(text) => match text.trim().parse::<f64>() {
                Ok(r) if r.is_finite() => r,
                _ => bail!(
                    "data row {row}: the reward (column {:?}) is {text:?}, not a finite number",
                    mapping.reward
                ),
            },
        };
        if let Some(column) = &mapping.target {
            self.targets
                .push(parse_target_probability(row, column, field(column))?);
        }
        let values: Vec<String> = mapping
            .context
            .iter()
            .map(|c| field(c).unwrap_or_default())
            .collect();
        let key = context_key(values.iter().map(String::as_str));
        if let Some(column) = &mapping.timestamp {
            let text = field(column).unwrap_or_default();
            self.times.push(match text.trim().parse::<f64>() {
                Ok(t) => Time::Number(t),
                Err(_) => Time::Text(text),
            });
        }
        let action = self.action(&action);
        let segment = self.context(key);
        self.rows.push(LoggedRow {
            segment,
            action,
            propensity,
            reward,
        });
        self.data_rows.push(row);
        Ok(())
    }

    fn finish(mut self, mapping: &Mapping) -> anyhow::Result<LabelledLog> {
        if self.rows.is_empty() {
            bail!("the log has no data rows");
        }
        let sorted_by_time = !self.times.is_empty();
        if sorted_by_time {
            let mut order: Vec<usize> = (0..self.rows.len()).collect();
            // Numbers before text; stable, so equal times keep file order.
            order.sort_by(|&a, &b| {
                self.times[a]
                    .partial_cmp(&self.times[b])
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            self.rows = order.iter().map(|&i| self.rows[i]).collect();
            self.data_rows = order.iter().map(|&i| self.data_rows[i]).collect();
            if mapping.target.is_some() {
                self.targets = order.iter().map(|&i| self.targets[i]).collect();
            }
        }
        Ok(LabelledLog {
            rows: self.rows,
            actions: self.actions,
            context_columns: mapping.context.clone(),
            context_keys: self.context_keys,
            data_rows: self.data_rows,
            target_column: mapping.target.is_some().then_some(self.targets),
            sorted_by_time,
        })
    }
}

fn parse_propensity(row: usize, column: &str, text: Option<String>) -> anyhow::Result<f64> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        bail!("data row {row}: the propensity (column {column:?}) is missing");
    };
    let Ok(p) = text.trim().parse::<f64>() else {
        bail!("data row {row}: the propensity (column {column:?}) is {text:?}, not a number");
    };
    if p.is_nan() {
        bail!("data row {row}: the propensity (column {column:?}) is {text:?}, not a number");
    }
    if p == 0.0 {
        bail!(
            "data row {row}: the propensity (column {column:?}) is 0; a logged action must have had a positive probability, in (0, 1]"
        );
    }
    if p < 0.0 {
        bail!(
            "data row {row}: the propensity (column {column:?}) is {text}, negative; it must be in (0, 1]"
        );
    }
    if p > 1.0 {
        bail!(
            "data row {row}: the propensity (column {column:?}) is {text}, above 1; it must be in (0, 1]"
        );
    }
    Ok(p)
}

/// A target probability: a number in [0, 1] (0 allowed: the target never takes the
/// logged action).
fn parse_target_probability(row: usize, column: &str, text: Option<String>) -> anyhow::Result<f64> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        bail!("data row {row}: the target probability (column {column:?}) is missing");
    };
    match text.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => bail!(
            "data row {row}: the target probability (column {column:?}) is {text:?}, not a number in [0, 1]"
        ),
    }
}

/// Reads a logged-bandit file in `format` through `mapping`.
pub fn read_log(path: &Path, format: LogFormat, mapping: &Mapping) -> anyhow::Result<LabelledLog> {
    let mut wanted = vec![
        Wanted {
            column: &mapping.action,
            what: "action",
            required: true,
        },
        Wanted {
            column: &mapping.reward,
            what: "reward",
            required: true,
        },
        Wanted {
            column: &mapping.propensity,
            what: "propensity",
            required: true,
        },
    ];
    if let Some(t) = &mapping.timestamp {
        wanted.push(Wanted {
            column: t,
            what: "timestamp",
            required: false,
        });
    }
    for c in &mapping.context {
        wanted.push(Wanted {
            column: c,
            what: "context",
            required: false,
        });
    }
    if let Some(t) = &mapping.target {
        wanted.push(Wanted {
            column: t,
            what: "target probability",
            required: true,
        });
    }
    let mut builder = Builder::default();
    read_rows(path, format, &wanted, &mut |row, field| {
        builder.push(row, mapping, field)
    })?;
    builder.finish(mapping)
}

/// The column of a target file holding the action label.
pub const TARGET_ACTION_COLUMN: &str = "action";
/// The column of a target file holding the probability.
pub const TARGET_PROBABILITY_COLUMN: &str = "probability";

/// Reads a target file (any format of [`read_rows`], by its name): one row per
/// (context, action) with the log's context columns (same names), `action` (the label
/// as in the log) and `probability`; checked against `log` by [`TargetTable::build`].
pub fn read_target_file(path: &Path, log: &LabelledLog) -> anyhow::Result<TargetTable> {
    let mut wanted: Vec<Wanted<'_>> = log
        .context_columns
        .iter()
        .map(|c| Wanted {
            column: c,
            what: "context",
            required: true,
        })
        .collect();
    for column in [TARGET_ACTION_COLUMN, TARGET_PROBABILITY_COLUMN] {
        wanted.push(Wanted {
            column,
            what: column,
            required: true,
        });
    }
    let mut entries = Vec::new();
    read_rows(path, LogFormat::of_path(path), &wanted, &mut |row, field| {
        let action = field(TARGET_ACTION_COLUMN)
            .filter(|a| !a.is_empty())
            .with_context(|| {
                format!("data row {row}: the action (column {TARGET_ACTION_COLUMN:?}) is missing")
            })?;
        let text = field(TARGET_PROBABILITY_COLUMN).unwrap_or_default();
        let probability = text.trim().parse::<f64>().map_err(|_| {
            anyhow::anyhow!(
                "data row {row}: the probability (column {TARGET_PROBABILITY_COLUMN:?}) is {text:?}, not a number"
            )
        })?;
        let values: Vec<String> = log
            .context_columns
            .iter()
            .map(|c| field(c).unwrap_or_default())
            .collect();
        entries.push(TargetEntry {
            row,
            context: context_key(values.iter().map(String::as_str)),
            action,
            probability,
        });
        Ok(())
    })
    .with_context(|| format!("refusing the target file {}", path.display()))?;
    TargetTable::build(log, entries)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("refusing the target file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("tla-import-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn mapping_requires_action_reward_propensity_and_collects_context() {
        let m = Mapping::parse(
            "timestamp=ts,action=arm,segment=ctx,reward=r,propensity=p",
            Some("pos"),
            &["device".to_string(), "ctx".to_string()],
        )
        .unwrap();
        assert_eq!(m.context, ["ctx", "pos", "device"]);
        assert_eq!(m.timestamp.as_deref(), Some("ts"));
        for (map, fragment) in [
            ("reward=r,propensity=p", "holds the action"),
            ("action=a,propensity=p", "holds the reward"),
            ("action=a,reward=r,colour=c", "unknown key \"colour\""),
            ("action=a,action=b", "action is given twice"),
            ("action", "not KEY=COLUMN"),
        ] {
            let error = Mapping::parse(map, None, &[]).unwrap_err().to_string();
            assert!(error.contains(fragment), "{map}: {error}");
        }
    }

    #[test]
    fn rows_sorted_by_numeric_timestamp_and_best_logged_uses_halves() {
        use tla_core::ope::choice::EvaluationTarget;
        use tla_core::ope::labelled::{LogSettings, evaluate_labelled_log};
        // File order is not time order: ts 10 comes before ts 9.
        let text = "ts,arm,r,p\n10,b,0,0.5\n9,a,4,0.5\n1,a,1,0.5\n2,b,0,0.5\n3,a,0,0.5\n4,b,2,0.5\n5,a,0,0.5\n6,b,2,0.5\n";
        let path = write("order.csv", text);
        let m = Mapping::parse("timestamp=ts,action=arm,reward=r,propensity=p", None, &[]).unwrap();
        let log = read_log(&path, LogFormat::Csv, &m).unwrap();
        let rewards: Vec<f64> = log.rows.iter().map(|r| r.reward).collect();
        assert_eq!(rewards, [1.0, 0.0, 0.0, 2.0, 0.0, 2.0, 4.0, 0.0]);
        // First half (ts 1-4): a earns 1/2 = 0.5, b earns 2/2 = 1.0: b is picked and
        // evaluated on ts 5, 6, 9, 10, where b's rows earn 2 and 0: SNIPS 1.0.
        let e = evaluate_labelled_log(
            &log,
            &EvaluationTarget::BestLogged,
            &LogSettings::default(),
            &mut rand_pcg::Pcg64Mcg::new(1),
        )
        .unwrap();
        assert_eq!(log.data_rows, [3, 4, 5, 6, 7, 8, 2, 1]);
        assert!(e.target.contains("action \"b\""), "{}", e.target);
        assert_eq!(e.estimates[1].rows, 4);
        assert!((e.estimates[1].value - 1.0).abs() < 1e-12);
        // IPS: (1/4) (2 / 0.5 + 0) = 1.0; logged mean of the second half 1.5.
        assert!((e.estimates[0].value - 1.0).abs() < 1e-12);
        assert!((e.logged_mean - 1.5).abs() < 1e-12);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn jsonl_rows_count_non_blank_lines_and_accept_numbers_or_text() {
        let text = "{\"arm\":1,\"r\":1,\"p\":0.5}\n\n{\"arm\":\"x\",\"r\":\"0\",\"p\":\"0.5\"}\n{\"arm\":2,\"r\":0,\"p\":2}\n";
        let path = write("rows.jsonl", text);
        let m = Mapping::parse("action=arm,reward=r,propensity=p", None, &[]).unwrap();
        let error = read_log(&path, LogFormat::Jsonl, &m)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("data row 3") && error.contains("above 1"),
            "{error}"
        );
        std::fs::remove_file(path).unwrap();
    }
}
