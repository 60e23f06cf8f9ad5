//! `tla export --what report-*`: the report's tables as CSV and Parquet, read back and
//! compared with `tla report --format json` on the same data directory.

use std::path::Path;
use std::process::Command;

use arrow_array::{Array, BooleanArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use tla_store::Store;

mod common;

use common::{Fill, TempDir};

/// Campaign `id` of examples/small.toml with `n` uniform decisions over its allowed
/// versions, an impression each, a click for one in three and a conversion whose value
/// depends on the version for one in five.
fn fill(store: &Store, id: &str, n: u64) {
    common::fill(
        store,
        id,
        n,
        Fill {
            clicks_every: 3,
            conversion_value: |version| 10.0 + (version % 3) as f64 * 5.0,
        },
    );
}

fn tla(args: &[&str], data: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args(args)
        .arg("--data")
        .arg(data)
        .args(["--draws", "200"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn export(data: &Path, what: &str, format: &str, out: &Path) {
    tla(
        &[
            "export",
            "--campaign",
            "c_a",
            "--what",
            what,
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ],
        data,
    );
}

/// The whole Parquet file as one batch.
fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(
        batches.len(),
        1,
        "the report tables are written as one batch"
    );
    batches.pop().unwrap()
}

fn text<'a>(batch: &'a RecordBatch, column: &str) -> &'a StringArray {
    batch
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap()
}

fn uint<'a>(batch: &'a RecordBatch, column: &str) -> &'a UInt64Array {
    batch
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap()
}

fn float<'a>(batch: &'a RecordBatch, column: &str) -> &'a Float64Array {
    batch
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap()
}

/// Equal up to the last bits: serde_json's default float parser is not always
/// correctly rounded (off by one unit in the last place), so the JSON side may differ.
fn same(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} != {b}");
}

fn csv_rows(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader.records().map(Result::unwrap).collect();
    (header, rows)
}

#[test]
fn report_tables_read_back_from_parquet_and_csv_match_the_json_report() {
    let dir = TempDir::new("export-report-test");
    let data = dir.0.join("data");
    {
        let store = Store::open(&data).unwrap();
        fill(&store, "c_a", 1_200);
        fill(&store, "c_b", 300);
    }
    let report: Value =
        serde_json::from_str(&tla(&["report", "c_a", "--format", "json"], &data)).unwrap();

    // Options: one row per option of every component (3 + 2 + 3), in report order.
    let options: Vec<(&Value, &Value)> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["options"].as_array().unwrap().iter().map(move |o| (c, o)))
        .collect();
    assert_eq!(options.len(), 8);
    let path = dir.0.join("options.parquet");
    export(&data, "report-options", "parquet", &path);
    let batch = read_parquet(&path);
    assert_eq!(batch.num_rows(), options.len());
    assert_eq!(batch.num_columns(), 19);
    for (row, (component, option)) in options.iter().enumerate() {
        assert_eq!(
            text(&batch, "component").value(row),
            component["component"].as_str().unwrap()
        );
        assert_eq!(
            text(&batch, "option").value(row),
            option["option"].as_str().unwrap()
        );
        assert_eq!(
            uint(&batch, "impressions").value(row),
            option["impressions"].as_u64().unwrap()
        );
        same(
            float(&batch, "value").value(row),
            option["value"].as_f64().unwrap(),
        );
        same(
            float(&batch, "p_best").value(row),
            option["p_best"].as_f64().unwrap(),
        );
        same(
            float(&batch, "expected_loss").value(row),
            option["expected_loss"].as_f64().unwrap(),
        );
        same(
            float(&batch, "rate_mean").value(row),
            option["rate"]["mean"].as_f64().unwrap(),
        );
        same(
            float(&batch, "value_per_impression_upper").value(row),
            option["value_per_impression"]["upper"].as_f64().unwrap(),
        );
        assert_eq!(uint(&batch, "draws").value(row), 200);
        same(
            float(&batch, "value_learned").value(row),
            option["value_learned"].as_f64().unwrap(),
        );
        assert_eq!(
            uint(&batch, "conversions_amount_unknown").value(row),
            option["conversions_amount_unknown"].as_u64().unwrap()
        );
    }
    let asks: &BooleanArray = batch
        .column_by_name("asks_to_act")
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap();
    // headline river_needs_you asks nothing; cta donate_10 (row 5) asks to act.
    assert!(!asks.value(0) && asks.value(5));
    // Every option's impressions add up to the campaign's, once per component.
    let impressions: u64 = uint(&batch, "impressions").values().iter().sum();
    assert_eq!(impressions, 3 * 1_200);

    // Segments.
    let segments = report["segments"].as_array().unwrap();
    let path = dir.0.join("segments.parquet");
    export(&data, "report-segments", "parquet", &path);
    let batch = read_parquet(&path);
    assert_eq!(batch.num_rows(), segments.len());
    assert_eq!(batch.num_rows(), 3);
    for (row, segment) in segments.iter().enumerate() {
        assert_eq!(
            text(&batch, "segment").value(row),
            segment["segment"].as_str().unwrap()
        );
        same(
            float(&batch, "weight").value(row),
            segment["weight"].as_f64().unwrap(),
        );
        assert_eq!(
            uint(&batch, "conversions").value(row),
            segment["conversions"].as_u64().unwrap()
        );
        same(
            float(&batch, "value_per_impression_mean").value(row),
            segment["value_per_impression"]["mean"].as_f64().unwrap(),
        );
    }

    // Leaders: each segment's leaders in rank order.
    let leaders: Vec<&Value> = segments
        .iter()
        .flat_map(|s| s["leaders"].as_array().unwrap())
        .collect();
    assert!(!leaders.is_empty());
    let path = dir.0.join("leaders.parquet");
    export(&data, "report-leaders", "parquet", &path);
    let batch = read_parquet(&path);
    assert_eq!(batch.num_rows(), leaders.len());
    assert_eq!(uint(&batch, "rank").value(0), 1);
    for (row, leader) in leaders.iter().enumerate() {
        assert_eq!(
            uint(&batch, "version").value(row),
            leader["version"].as_u64().unwrap()
        );
        same(
            float(&batch, "p_best").value(row),
            leader["p_best"].as_f64().unwrap(),
        );
    }

    // Served versions: every (segment, version) pair listed, by impressions.
    let versions = report["versions"]["rows"].as_array().unwrap();
    assert_eq!(
        versions.len() as u64,
        report["versions"]["served_pairs"].as_u64().unwrap()
    );
    let path = dir.0.join("versions.parquet");
    export(&data, "report-versions", "parquet", &path);
    let batch = read_parquet(&path);
    assert_eq!(batch.num_rows(), versions.len());
    for (row, version) in versions.iter().enumerate() {
        assert_eq!(
            text(&batch, "segment").value(row),
            version["segment"].as_str().unwrap()
        );
        assert_eq!(
            uint(&batch, "version").value(row),
            version["version"].as_u64().unwrap()
        );
        assert_eq!(
            text(&batch, "text").value(row),
            version["text"].as_str().unwrap()
        );
        same(
            float(&batch, "rate_lower").value(row),
            version["rate"]["lower"].as_f64().unwrap(),
        );
        assert!(
            !batch
                .column_by_name("value_per_impression_mean")
                .unwrap()
                .is_null(row)
        );
    }

    // CSV: the same rows; the options table is `tla report --format csv`'s leaderboard.
    let path = dir.0.join("options.csv");
    export(&data, "report-options", "csv", &path);
    let (header, rows) = csv_rows(&path);
    let leaderboard = tla(&["report", "c_a", "--format", "csv"], &data);
    assert_eq!(header.join(","), leaderboard.lines().next().unwrap());
    assert_eq!(rows.len(), options.len());
    same(
        rows[0][14].parse::<f64>().unwrap(),
        options[0].1["p_best"].as_f64().unwrap(),
    );
    for (what, expected) in [
        ("report-segments", segments.len()),
        ("report-leaders", leaders.len()),
        ("report-versions", versions.len()),
    ] {
        let path = dir.0.join(format!("{what}.csv"));
        export(&data, what, "csv", &path);
        assert_eq!(csv_rows(&path).1.len(), expected, "{what}");
    }

    // --draws is refused for the logs, and an unknown campaign names the problem.
    let output = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args([
            "export",
            "--campaign",
            "c_a",
            "--what",
            "events",
            "--draws",
            "10",
            "--out",
        ])
        .arg(dir.0.join("x.csv"))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--draws is for the report tables"),
        "{stderr}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args([
            "export",
            "--campaign",
            "c_nope",
            "--what",
            "report-options",
            "--out",
        ])
        .arg(dir.0.join("x.csv"))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no campaign \"c_nope\""), "{stderr}");
}
