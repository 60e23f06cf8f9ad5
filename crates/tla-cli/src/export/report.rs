//! The campaign report's tables as flat files: the option leaderboard, the segments,
//! each segment's leading versions, and the most served versions. The report is built
//! as `tla report` builds it (`tla_server::report::campaign_report`), then each table
//! is written whole (they are small: one row per option, segment or listed version).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::builder::{BooleanBuilder, Float64Builder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tla_core::engine::Counts;
use tla_core::report::{Interval, PosteriorStats, Report, VersionRow};

use super::Format;

/// The report tables `tla export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportTable {
    /// One row per option of every component: the option leaderboard.
    Options,
    /// One row per segment: its counts and its average version's posterior.
    Segments,
    /// One row per leading version of each segment, with P(best) among the leaders.
    Leaders,
    /// One row per (segment, version) pair among the most served.
    Versions,
}

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    UInt,
    Float,
    /// A float that may be missing: null in Parquet, an empty field in CSV.
    OptFloat,
    Bool,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(String),
    UInt(u64),
    Float(f64),
    OptFloat(Option<f64>),
    Bool(bool),
}

/// A flat table: column names and types, and rows of cells in column order.
#[derive(Debug, Clone, Default)]
struct Table {
    columns: Vec<(&'static str, Kind)>,
    rows: Vec<Vec<Cell>>,
}

const COUNT_COLUMNS: [(&str, Kind); 5] = [
    ("impressions", Kind::UInt),
    ("clicks", Kind::UInt),
    ("conversions", Kind::UInt),
    ("value", Kind::Float),
    ("spend", Kind::Float),
];

const POSTERIOR_COLUMNS: [(&str, Kind); 6] = [
    ("rate_mean", Kind::Float),
    ("rate_lower", Kind::Float),
    ("rate_upper", Kind::Float),
    ("value_per_impression_mean", Kind::OptFloat),
    ("value_per_impression_lower", Kind::OptFloat),
    ("value_per_impression_upper", Kind::OptFloat),
];

/// Appended to every report table, after its other columns (so the older columns keep
/// their positions): conversions of unknown amount and the value the model learned.
const AMOUNT_COLUMNS: [(&str, Kind); 2] = [
    ("conversions_amount_unknown", Kind::UInt),
    ("value_learned", Kind::Float),
];

fn amounts(counts: &Counts) -> [Cell; 2] {
    [
        Cell::UInt(counts.conversions_amount_unknown),
        Cell::Float(counts.value_learned),
    ]
}

fn counts(counts: &Counts) -> [Cell; 5] {
    [
        Cell::UInt(counts.impressions),
        Cell::UInt(counts.clicks),
        Cell::UInt(counts.conversions),
        Cell::Float(counts.value),
        Cell::Float(counts.spend),
    ]
}

fn posterior(posterior: &PosteriorStats) -> [Cell; 6] {
    let vpi: Option<Interval> = posterior.value_per_impression;
    [
        Cell::Float(posterior.rate.mean),
        Cell::Float(posterior.rate.lower),
        Cell::Float(posterior.rate.upper),
        Cell::OptFloat(vpi.map(|i| i.mean)),
        Cell::OptFloat(vpi.map(|i| i.lower)),
        Cell::OptFloat(vpi.map(|i| i.upper)),
    ]
}

impl ReportTable {
    fn columns(self) -> Vec<(&'static str, Kind)> {
        let mut columns = match self {
            ReportTable::Options => vec![
                ("component", Kind::Text),
                ("option", Kind::Text),
                ("asks_to_act", Kind::Bool),
            ],
            ReportTable::Segments => vec![("segment", Kind::Text), ("weight", Kind::Float)],
            ReportTable::Leaders => vec![
                ("segment", Kind::Text),
                ("rank", Kind::UInt),
                ("version", Kind::UInt),
                ("text", Kind::Text),
                ("asks_to_act", Kind::Bool),
            ],
            ReportTable::Versions => vec![
                ("segment", Kind::Text),
                ("version", Kind::UInt),
                ("text", Kind::Text),
                ("asks_to_act", Kind::Bool),
            ],
        };
        columns.extend(COUNT_COLUMNS);
        columns.extend(POSTERIOR_COLUMNS);
        match self {
            ReportTable::Options => columns.extend([
                ("p_best", Kind::Float),
                ("expected_loss", Kind::Float),
                ("draws", Kind::UInt),
            ]),
            ReportTable::Leaders => columns.extend([
                ("p_best", Kind::OptFloat),
                ("expected_loss", Kind::OptFloat),
                ("draws", Kind::UInt),
            ]),
            ReportTable::Segments | ReportTable::Versions => {}
        }
        columns.extend(AMOUNT_COLUMNS);
        columns
    }

    /// The table's rows from a report.
    fn table(self, report: &Report) -> Table {
        let draws = Cell::UInt(report.draws as u64);
        let version_cells = |v: &VersionRow| {
            [
                Cell::UInt(v.version),
                Cell::Text(v.text.clone()),
                Cell::Bool(v.asks_to_act),
            ]
        };
        let mut rows: Vec<Vec<Cell>> = Vec::new();
        match self {
            ReportTable::Options => {
                for component in &report.components {
                    for o in &component.options {
                        let mut row = vec![
                            Cell::Text(component.component.clone()),
                            Cell::Text(o.option.clone()),
                            Cell::Bool(o.asks_to_act),
                        ];
                        row.extend(counts(&o.counts));
                        row.extend(posterior(&o.posterior));
                        row.extend([
                            Cell::Float(o.p_best),
                            Cell::Float(o.expected_loss),
                            draws.clone(),
                        ]);
                        row.extend(amounts(&o.counts));
                        rows.push(row);
                    }
                }
            }
            ReportTable::Segments => {
                for s in &report.segments {
                    let mut row = vec![Cell::Text(s.segment.clone()), Cell::Float(s.weight)];
                    row.extend(counts(&s.counts));
                    row.extend(posterior(&s.posterior));
                    row.extend(amounts(&s.counts));
                    rows.push(row);
                }
            }
            ReportTable::Leaders => {
                for s in &report.segments {
                    for (rank, v) in s.leaders.iter().enumerate() {
                        let mut row =
                            vec![Cell::Text(v.segment.clone()), Cell::UInt(rank as u64 + 1)];
                        row.extend(version_cells(v));
                        row.extend(counts(&v.counts));
                        row.extend(posterior(&v.posterior));
                        row.extend([
                            Cell::OptFloat(v.p_best),
                            Cell::OptFloat(v.expected_loss),
                            draws.clone(),
                        ]);
                        row.extend(amounts(&v.counts));
                        rows.push(row);
                    }
                }
            }
            ReportTable::Versions => {
                for v in &report.versions.rows {
                    let mut row = vec![Cell::Text(v.segment.clone())];
                    row.extend(version_cells(v));
                    row.extend(counts(&v.counts));
                    row.extend(posterior(&v.posterior));
                    row.extend(amounts(&v.counts));
                    rows.push(row);
                }
            }
        }
        Table {
            columns: self.columns(),
            rows,
        }
    }
}

/// Writes one report table to `path`; returns the number of rows.
pub fn write(
    report: &Report,
    table: ReportTable,
    format: Format,
    path: &Path,
) -> anyhow::Result<usize> {
    let table = table.table(report);
    match format {
        Format::Csv => write_csv(&table, path)?,
        Format::Parquet => write_parquet(&table, path)?,
    }
    Ok(table.rows.len())
}

fn write_csv(table: &Table, path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = csv::Writer::from_writer(BufWriter::new(file));
    writer.write_record(table.columns.iter().map(|(name, _)| *name))?;
    for row in &table.rows {
        writer.write_record(row.iter().map(|cell| match cell {
            Cell::Text(text) => crate::csv_text::spreadsheet_safe(text).into_owned(),
            Cell::UInt(n) => n.to_string(),
            // `{:?}` keeps a decimal point (`10.0`), so readers type the column as float.
            Cell::Float(x) => format!("{x:?}"),
            Cell::OptFloat(x) => x.map_or_else(String::new, |x| format!("{x:?}")),
            Cell::Bool(b) => b.to_string(),
        }))?;
    }
    let mut inner = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error()))?;
    inner.flush()?;
    Ok(())
}

fn write_parquet(table: &Table, path: &Path) -> anyhow::Result<()> {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|&(name, kind)| match kind {
            Kind::Text => Field::new(name, DataType::Utf8, false),
            Kind::UInt => Field::new(name, DataType::UInt64, false),
            Kind::Float => Field::new(name, DataType::Float64, false),
            Kind::OptFloat => Field::new(name, DataType::Float64, true),
            Kind::Bool => Field::new(name, DataType::Boolean, false),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    for (index, &(name, kind)) in table.columns.iter().enumerate() {
        let cells = table.rows.iter().map(|row| &row[index]);
        let mismatch = || {
            anyhow::anyhow!("column {name}: a cell of another type (a bug in the report export)")
        };
        let array: ArrayRef = match kind {
            Kind::Text => {
                let mut builder = StringBuilder::new();
                for cell in cells {
                    let Cell::Text(text) = cell else {
                        return Err(mismatch());
                    };
                    builder.append_value(text);
                }
                Arc::new(builder.finish())
            }
            Kind::UInt => {
                let mut builder = UInt64Builder::new();
                for cell in cells {
                    let Cell::UInt(n) = cell else {
                        return Err(mismatch());
                    };
                    builder.append_value(*n);
                }
                Arc::new(builder.finish())
            }
            Kind::Float => {
                let mut builder = Float64Builder::new();
                for cell in cells {
                    let Cell::Float(x) = cell else {
                        return Err(mismatch());
                    };
                    builder.append_value(*x);
                }
                Arc::new(builder.finish())
            }
            Kind::OptFloat => {
                let mut builder = Float64Builder::new();
                for cell in cells {
                    let Cell::OptFloat(x) = cell else {
                        return Err(mismatch());
                    };
                    builder.append_option(*x);
                }
                Arc::new(builder.finish())
            }
            Kind::Bool => {
                let mut builder = BooleanBuilder::new();
                for cell in cells {
                    let Cell::Bool(b) = cell else {
                        return Err(mismatch());
                    };
                    builder.append_value(*b);
                }
                Arc::new(builder.finish())
            }
        };
        arrays.push(array);
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))?;
    writer.write(&RecordBatch::try_new(schema, arrays)?)?;
    writer.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ReportTable {
        fn column_names(self) -> Vec<&'static str> {
            self.columns().iter().map(|(name, _)| *name).collect()
        }
    }

    #[test]
    fn every_table_has_distinct_column_names_and_rows_match_the_columns() {
        for table in [
            ReportTable::Options,
            ReportTable::Segments,
            ReportTable::Leaders,
            ReportTable::Versions,
        ] {
            let names = table.column_names();
            let distinct: std::collections::HashSet<_> = names.iter().collect();
            assert_eq!(distinct.len(), names.len(), "{table:?}");
        }
        assert_eq!(
            ReportTable::Options.column_names(),
            [
                "component",
                "option",
                "asks_to_act",
                "impressions",
                "clicks",
                "conversions",
                "value",
                "spend",
                "rate_mean",
                "rate_lower",
                "rate_upper",
                "value_per_impression_mean",
                "value_per_impression_lower",
                "value_per_impression_upper",
                "p_best",
                "expected_loss",
                "draws",
                "conversions_amount_unknown",
                "value_learned"
            ]
        );
    }
}
