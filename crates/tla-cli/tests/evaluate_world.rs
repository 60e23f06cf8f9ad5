//! `tla evaluate --world`: the looks, the adaptive estimator and the confidence sequence
//! in `--json`, and the refusals of the validation's flags.

use std::process::Command;

use serde_json::Value;

fn world(name: &str) -> String {
    format!("{}/../../worlds/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn evaluate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tla"))
        .arg("evaluate")
        .args(args)
        .output()
        .expect("run tla")
}

#[test]
fn json_reports_every_estimator_at_every_look_and_the_sequence() {
    let small = world("small.json");
    let output = evaluate(&[
        "--world",
        &small,
        "--logging",
        "factorized-ts",
        "--impressions",
        "4000",
        "--seeds",
        "2",
        "--looks",
        "4",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["looks"], serde_json::json!([1000, 2000, 3000, 4000]));
    assert_eq!(report["alpha"], 0.05);
    let names: Vec<&str> = report["estimators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["estimator"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ips", "snips", "dr", "aw_aipw"]);
    for e in report["estimators"].as_array().unwrap() {
        let by_look = e["coverage_by_look"].as_array().unwrap();
        assert_eq!(by_look.len(), 4, "{e}");
        let all = e["covered_at_all_looks"].as_f64().unwrap();
        // Covered at every look implies covered at each, and at the end.
        for c in by_look {
            assert!(c.as_f64().unwrap() >= all);
        }
        assert_eq!(
            by_look[3].as_f64().unwrap(),
            e["coverage"].as_f64().unwrap()
        );
    }
    let sequence = &report["sequence"];
    assert_eq!(sequence["planned_rows"], 4000);
    assert_eq!(sequence["coverage_by_look"].as_array().unwrap().len(), 4);
    assert!(sequence["width_ratio_to_fixed"].as_f64().unwrap() > 1.0);
    for run in report["runs"].as_array().unwrap() {
        assert_eq!(run["estimates"].as_array().unwrap().len(), 4);
        assert_eq!(run["estimates"][3]["estimator"], "aw_aipw");
        let s = &run["sequence"];
        assert!(s["lower"].as_f64().unwrap() <= s["upper"].as_f64().unwrap());
        let looks = run["looks"].as_array().unwrap();
        assert_eq!(looks.len(), 4);
        assert_eq!(looks[3]["rows"], 4000);
        assert_eq!(looks[0]["covered"].as_array().unwrap().len(), 4);
    }
    // The table names the new rows.
    let output = evaluate(&[
        "--world",
        &small,
        "--impressions",
        "2000",
        "--seeds",
        "1",
        "--looks",
        "3",
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("aw_aipw"), "{text}");
    assert!(text.contains("sequence"), "{text}");
    assert!(text.contains("all looks"), "{text}");
}

#[test]
fn flight_worlds_are_accepted_and_bad_flags_refused() {
    let flight = world("flight-small.json");
    let output = evaluate(&[
        "--world",
        &flight,
        "--impressions",
        "2000",
        "--seeds",
        "1",
        "--looks",
        "2",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["world"], "flight-small");
    let small = world("small.json");
    for (args, fragment) in [
        (
            vec!["--world", small.as_str(), "--looks", "0"],
            "--looks must be at least 1",
        ),
        (
            vec!["--world", small.as_str(), "--budget", "auto"],
            "--budget needs a world with a flight",
        ),
        (
            vec!["--world", flight.as_str(), "--budget", "lots"],
            "is not a number",
        ),
        (
            vec![
                "--world",
                flight.as_str(),
                "--target",
                "fixed-options:3,0,0,0",
            ],
            "launches during the flight",
        ),
    ] {
        let output = evaluate(&args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(fragment), "{args:?}: {stderr}");
    }
}
