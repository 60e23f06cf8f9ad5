//! `tla evaluate --log` as a data scientist uses it, through the real binary: every
//! input format (CSV, TSV, JSON lines, gzip, Parquet) read to the same estimates;
//! targets from a column and from a file of probabilities, against numbers computed by
//! hand; a file whose probabilities do not sum to 1 refused; the factorized-ts target
//! trained on the first part of the log and evaluated on the rest; the warning of a
//! tiny propensity carrying most of the weight; bootstrap intervals and `--alpha`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "tla-evaluate-log-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn evaluate(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tla"))
        .arg("evaluate")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn evaluate_json(args: &[&str]) -> Value {
    let (ok, stdout, stderr) = evaluate(&[args, &["--json"]].concat());
    assert!(ok, "{args:?}: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap()
}

fn estimate<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["estimator"] == name)
        .unwrap_or_else(|| panic!("no {name} in {result}"))
}

fn f(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// A log of `n` rows: time, context (2 values), slot (2), action (4), reward, logged
/// propensity; epsilon-greedy logging (0.7 on the context's favourite, 0.1 on each
/// other), deterministic rewards from a small linear congruential generator.
fn rows(n: usize) -> Vec<(i64, String, i64, String, f64, f64)> {
    let mut state: u64 = 12345;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let ctx = if next() < 0.5 { 0 } else { 1 };
            let slot = if next() < 0.5 { 0 } else { 1 };
            let u = next();
            let favourite = ctx * 2;
            let action = if u < 0.7 {
                favourite
            } else {
                let k = ((u - 0.7) / 0.1) as usize;
                [0, 1, 2, 3]
                    .into_iter()
                    .filter(|&a| a != favourite)
                    .nth(k.min(2))
                    .unwrap()
            };
            let p = if action == favourite { 0.7 } else { 0.1 };
            let rate = 0.05 + 0.05 * action as f64 + 0.02 * slot as f64;
            let reward = if next() < rate { 3.0 } else { 0.0 };
            (
                (n - i) as i64,
                format!("c{ctx}"),
                slot as i64,
                format!("a{action}"),
                reward,
                p,
            )
        })
        .collect()
}

fn write_delimited(path: &Path, rows: &[(i64, String, i64, String, f64, f64)], sep: &str) {
    let mut text = ["ts", "ctx", "slot", "arm", "r", "p"].join(sep) + "\n";
    for (ts, ctx, slot, arm, r, p) in rows {
        text.push_str(
            &[
                ts.to_string(),
                ctx.clone(),
                slot.to_string(),
                arm.clone(),
                r.to_string(),
                p.to_string(),
            ]
            .join(sep),
        );
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn write_jsonl(path: &Path, rows: &[(i64, String, i64, String, f64, f64)]) {
    let mut text = String::new();
    for (ts, ctx, slot, arm, r, p) in rows {
        text.push_str(
            &serde_json::json!({"ts": ts, "ctx": ctx, "slot": slot, "arm": arm, "r": r, "p": p})
                .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn gzip(from: &Path, to: &Path) {
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(to).unwrap(),
        flate2::Compression::default(),
    );
    encoder.write_all(&std::fs::read(from).unwrap()).unwrap();
    encoder.finish().unwrap();
}

fn write_parquet(path: &Path, rows: &[(i64, String, i64, String, f64, f64)]) {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "ts",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "ctx",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.1.clone()),
            )),
        ),
        (
            "slot",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "arm",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.3.clone()),
            )),
        ),
        (
            "r",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.4))),
        ),
        (
            "p",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.5))),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

const MAP: &str = "timestamp=ts,action=arm,segment=ctx,reward=r,propensity=p";

#[test]
fn every_format_reads_to_the_same_estimates() {
    let dir = scratch("formats");
    let rows = rows(600);
    let csv = dir.join("log.csv");
    write_delimited(&csv, &rows, ",");
    let tsv = dir.join("log.tsv");
    write_delimited(&tsv, &rows, "\t");
    let jsonl = dir.join("log.jsonl");
    write_jsonl(&jsonl, &rows);
    let csv_gz = dir.join("log.csv.gz");
    gzip(&csv, &csv_gz);
    let jsonl_gz = dir.join("log.jsonl.gz");
    gzip(&jsonl, &jsonl_gz);
    // gzip is recognized by its bytes, not by the name.
    let hidden_gz = dir.join("log-compressed.csv");
    gzip(&csv, &hidden_gz);
    let parquet = dir.join("log.parquet");
    write_parquet(&parquet, &rows);
    let run = |path: &Path| {
        evaluate_json(&[
            "--log",
            path.to_str().unwrap(),
            "--map",
            MAP,
            "--slot",
            "slot",
            "--target",
            "fixed:a2",
        ])
    };
    let reference = run(&csv);
    assert_eq!(reference["rows"], 600);
    assert_eq!(reference["contexts"], 4);
    assert_eq!(reference["format"], "csv");
    for (path, format) in [
        (&tsv, "tsv"),
        (&jsonl, "jsonl"),
        (&csv_gz, "csv"),
        (&jsonl_gz, "jsonl"),
        (&hidden_gz, "csv"),
        (&parquet, "parquet"),
    ] {
        let result = run(path);
        assert_eq!(result["format"], format, "{}", path.display());
        assert_eq!(
            result["estimates"],
            reference["estimates"],
            "{}",
            path.display()
        );
        assert_eq!(
            result["weights"],
            reference["weights"],
            "{}",
            path.display()
        );
    }
    // SNIPS of "always a2" by hand: sum over a2's rows of r / p over sum of 1 / p.
    let (num, den) = rows
        .iter()
        .filter(|r| r.3 == "a2")
        .fold((0.0, 0.0), |(n, d), r| (n + r.4 / r.5, d + 1.0 / r.5));
    assert!((f(&estimate(&reference, "snips")["value"]) - num / den).abs() < 1e-12);

    // Errors name the file, the data row and the column, in every format.
    let bad = dir.join("bad.tsv");
    std::fs::write(
        &bad,
        "ts\tctx\tslot\tarm\tr\tp\n1\tc0\t0\ta0\t0\t0.5\n2\tc0\t0\ta1\tx\t0.5\n",
    )
    .unwrap();
    let (ok, _, stderr) = evaluate(&["--log", bad.to_str().unwrap(), "--map", MAP]);
    assert!(!ok);
    assert!(
        stderr.contains("bad.tsv")
            && stderr.contains("data row 2: the reward (column \"r\") is \"x\""),
        "{stderr}"
    );
    let mut zero = rows[..3].to_vec();
    zero[2].5 = 0.0;
    let bad = dir.join("bad.parquet");
    write_parquet(&bad, &zero);
    let (ok, _, stderr) = evaluate(&["--log", bad.to_str().unwrap(), "--map", MAP]);
    assert!(!ok);
    assert!(
        stderr.contains("bad.parquet")
            && stderr.contains("data row 3: the propensity (column \"p\") is 0"),
        "{stderr}"
    );
    let (ok, _, stderr) = evaluate(&[
        "--log",
        parquet.to_str().unwrap(),
        "--map",
        "action=arm,reward=r,propensity=prob",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("the propensity column \"prob\" is not in the columns of")
            && stderr.contains("ts, ctx, slot, arm, r, p"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two contexts x, y and actions a, b:
///
/// | ctx | arm | p   | r | pi (target) |
/// | x   | a   | 0.5 | 2 | 0.25 |
/// | x   | b   | 0.5 | 0 | 0.75 |
/// | y   | a   | 0.8 | 1 | 1    |
/// | y   | b   | 0.2 | 5 | 0    |
const SMALL_LOG: &str =
    "ctx,arm,p,r,pi\nx,a,0.5,2,0.25\nx,b,0.5,0,0.75\ny,a,0.8,1,1\ny,b,0.2,5,0\n";

#[test]
fn targets_from_a_column_and_from_a_file_match_the_hand_computed_values() {
    let dir = scratch("targets");
    let log = dir.join("log.csv");
    std::fs::write(&log, SMALL_LOG).unwrap();
    let log = log.to_str().unwrap();
    let map = "action=arm,segment=ctx,reward=r,propensity=p";
    // Weights pi / p: 0.5, 1.5, 1.25, 0; w r: 1, 0, 1.25, 0.
    // IPS = 2.25 / 4 = 0.5625; SNIPS = 2.25 / 3.25.
    let column = evaluate_json(&["--log", log, "--map", map, "--target", "column:pi"]);
    assert!((f(&estimate(&column, "ips")["value"]) - 0.5625).abs() < 1e-12);
    assert!((f(&estimate(&column, "snips")["value"]) - 2.25 / 3.25).abs() < 1e-12);
    assert_eq!(column["estimates"].as_array().unwrap().len(), 2);
    assert!(
        column["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("doubly robust is not computed"),
        "{column}"
    );

    // The same target as a file, in JSON lines, with an action the log never holds
    // given probability 0 and a context the log never holds.
    let file = dir.join("target.jsonl");
    std::fs::write(
        &file,
        "{\"ctx\":\"x\",\"action\":\"a\",\"probability\":0.25}\n\
         {\"ctx\":\"x\",\"action\":\"b\",\"probability\":0.75}\n\
         {\"ctx\":\"y\",\"action\":\"a\",\"probability\":1}\n\
         {\"ctx\":\"y\",\"action\":\"c\",\"probability\":0}\n\
         {\"ctx\":\"z\",\"action\":\"a\",\"probability\":1}\n",
    )
    .unwrap();
    let target = format!("file:{}", file.display());
    let table = evaluate_json(&["--log", log, "--map", map, "--target", &target]);
    assert!((f(&estimate(&table, "ips")["value"]) - 0.5625).abs() < 1e-12);
    assert!((f(&estimate(&table, "snips")["value"]) - 2.25 / 3.25).abs() < 1e-12);
    // DR, 2 folds (rows 1, 3 | rows 2, 4), q(s, a) = (sum r + 10 mean(s)) / (n + 10):
    // fold 1 scored by rows 2, 4: mean(x) = 0, mean(y) = 5; DM(x) = 0 (a unseen in x, at
    // the mean), DM(y) = q(y, a) = 5 (unseen); row 1: 0 + 0.5 (2 - 0) = 1; row 3:
    // 5 + 1.25 (1 - 5) = 0. Fold 2 scored by rows 1, 3: q(x, a) = (2 + 20) / 11 = 2,
    // mean(x) = 2, q(y, a) = 1; DM(x) = 0.25 · 2 + 0.75 · 2 = 2, DM(y) = 1; row 2:
    // 2 + 1.5 (0 - 2) = -1; row 4: 1 + 0 = 1. DR = (1 + 0 - 1 + 1) / 4 = 0.25.
    assert!(
        (f(&estimate(&table, "dr")["value"]) - 0.25).abs() < 1e-12,
        "{table}"
    );
    let notes = table["notes"].to_string();
    assert!(notes.contains("1 of the 4 logged rows"), "{notes}");
    assert!(
        table["target"]
            .as_str()
            .unwrap()
            .contains("1 of its contexts never appear in the log"),
        "{table}"
    );

    // Probabilities not summing to 1 are refused, naming the context.
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "ctx,action,probability\nx,a,0.25\nx,b,0.7\ny,a,1\n").unwrap();
    let (ok, _, stderr) = evaluate(&[
        "--log",
        log,
        "--map",
        map,
        "--target",
        &format!("file:{}", bad.display()),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("bad.csv")
            && stderr.contains("the target's probabilities in context (ctx=x) sum to 0.95"),
        "{stderr}"
    );
    // A context of the log without probabilities is refused too.
    std::fs::write(&bad, "ctx,action,probability\nx,a,1\n").unwrap();
    let (ok, _, stderr) = evaluate(&[
        "--log",
        log,
        "--map",
        map,
        "--target",
        &format!("file:{}", bad.display()),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "no probabilities in context (ctx=y), which the log holds (first at data row 3)"
        ),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_trained_target_reports_the_rows_it_learned_and_the_rows_evaluated() {
    let dir = scratch("trained");
    let log = dir.join("log.csv");
    write_delimited(&log, &rows(2000), ",");
    let args = [
        "--log",
        log.to_str().unwrap(),
        "--map",
        MAP,
        "--slot",
        "slot",
        "--target",
        "factorized-ts",
        "--train-share",
        "0.6",
    ];
    let result = evaluate_json(&args);
    assert_eq!(result["training_rows"], 1200);
    assert_eq!(result["evaluated_rows"], 800);
    for e in result["estimates"].as_array().unwrap() {
        assert_eq!(e["rows"], 800, "{e}");
    }
    assert!(
        result["target"]
            .as_str()
            .unwrap()
            .contains("trained from its prior on the first 1200 rows")
    );
    // Seeded: the same seed gives the same target and estimates.
    assert_eq!(evaluate_json(&args)["estimates"], result["estimates"]);
    let (ok, stdout, _) = evaluate(&args);
    assert!(ok);
    assert!(
        stdout.contains("rows: 1200 to train or pick the target, 800 evaluated"),
        "{stdout}"
    );
    let (ok, _, stderr) = evaluate(&[
        "--log",
        log.to_str().unwrap(),
        "--map",
        MAP,
        "--train-share",
        "0.6",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("--train-share is the training share of --target factorized-ts"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One row logged with propensity 1e-6 whose target probability is 0.001 (weight 1,000)
/// among 449 rows of weight 1 (p = pi = 0.5): it holds 1,000 / 1,449 = 69.0% of the
/// weight, and the output says so, naming the row and its propensity.
#[test]
fn a_tiny_propensity_carrying_most_of_the_weight_warns() {
    let dir = scratch("tiny");
    let log = dir.join("log.csv");
    let mut text = String::from("arm,r,p,pi\nrare,0,0.000001,0.001\n");
    for i in 0..449 {
        text.push_str(&format!("a,{},0.5,0.5\n", if i % 9 == 0 { 1 } else { 0 }));
    }
    std::fs::write(&log, text).unwrap();
    let args = [
        "--log",
        log.to_str().unwrap(),
        "--map",
        "action=arm,reward=r,propensity=p",
        "--target",
        "column:pi",
    ];
    let result = evaluate_json(&args);
    let share = f(&result["weights"]["max_weight_share"]);
    assert!((share - 1000.0 / 1449.0).abs() < 1e-9, "{share}");
    assert_eq!(result["weights"]["heaviest_row"], "data row 1");
    let warnings = result["warnings"].to_string();
    assert!(
        warnings.contains(
            "one row (data row 1, propensity 0.000001) holds 69.0% of the total importance weight"
        ),
        "{warnings}"
    );
    let (ok, stdout, _) = evaluate(&args);
    assert!(ok);
    assert!(
        stdout.contains("warning: one row (data row 1, propensity 0.000001) holds 69.0%"),
        "{stdout}"
    );
    // Without the rare row, nothing is flagged about the weights.
    let text = std::fs::read_to_string(&log)
        .unwrap()
        .replace("rare,0,0.000001,0.001\n", "");
    std::fs::write(&log, text).unwrap();
    let result = evaluate_json(&args);
    assert!(
        !result["warnings"]
            .to_string()
            .contains("total importance weight"),
        "{result}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bootstrap_intervals_are_seeded_and_alpha_sets_the_level() {
    let dir = scratch("intervals");
    let log = dir.join("log.csv");
    write_delimited(&log, &rows(1500), ",");
    let base = [
        "--log",
        log.to_str().unwrap(),
        "--map",
        MAP,
        "--slot",
        "slot",
    ];
    let boot = |seed: &str| {
        evaluate_json(
            &[
                &base[..],
                &[
                    "--interval",
                    "bootstrap",
                    "--bootstrap",
                    "300",
                    "--seed",
                    seed,
                ],
            ]
            .concat(),
        )
    };
    let a = boot("7");
    assert_eq!(a["interval"]["method"], "bootstrap");
    assert_eq!(a["interval"]["resamples"], 300);
    assert_eq!(boot("7")["estimates"], a["estimates"]);
    assert_ne!(boot("8")["estimates"], a["estimates"]);
    for e in a["estimates"].as_array().unwrap() {
        let (value, lower, upper) = (f(&e["value"]), f(&e["lower"]), f(&e["upper"]));
        assert!(lower < value && value < upper, "{e}");
        // Close to the normal interval on a log this size: within 30% of its width.
        let normal = 2.0 * 1.959_964 * f(&e["std_error"]);
        assert!(((upper - lower) / normal - 1.0).abs() < 0.3, "{e}");
    }
    assert!(a["notes"].to_string().contains("exchangeable"), "{a}");

    // Normal intervals: widths scale with z_{1 - alpha/2}.
    let at = |alpha: &str| evaluate_json(&[&base[..], &["--alpha", alpha]].concat());
    let (wide, narrow) = (at("0.05"), at("0.2"));
    assert_eq!(narrow["alpha"], 0.2);
    for name in ["ips", "snips", "dr"] {
        let width = |r: &Value| f(&estimate(r, name)["upper"]) - f(&estimate(r, name)["lower"]);
        let ratio = width(&narrow) / width(&wide);
        // z_0.9 / z_0.975 = 1.281552 / 1.959964.
        assert!(
            (ratio - 1.281_552 / 1.959_964).abs() < 1e-5,
            "{name}: {ratio}"
        );
    }
    let (ok, stdout, _) = evaluate(&[&base[..], &["--alpha", "0.2"]].concat());
    assert!(ok && stdout.contains("80% low"), "{stdout}");
    for bad in ["0", "0.6", "nan"] {
        let (ok, _, stderr) = evaluate(&[&base[..], &["--alpha", bad]].concat());
        assert!(
            !ok && stderr.contains("is not in (0, 0.5]"),
            "{bad}: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
