//! Snapshot of the report as terminal tables (`tla report --format table` renders the
//! same `table` function) on a seeded simulated campaign: `tla simulate --campaign
//! examples/small.toml` serves 20,000 impressions through the engine against a ground
//! truth drawn for the campaign, then prints the report, the leader check and the lift
//! against the truth. The run is deterministic; only the line with timings is redacted.
//! After an intended change, review and accept with `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test -p tla-cli --test report_table`, then read the diff
//! of `tests/snapshots/`).

use std::process::Command;

#[test]
fn report_table_of_a_seeded_simulated_campaign() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let output = Command::new(env!("CARGO_BIN_EXE_tla"))
        .current_dir(root)
        .args([
            "simulate",
            "--campaign",
            "examples/small.toml",
            "--impressions",
            "20000",
            "--seed",
            "7",
            "--world-seed",
            "4",
            "--report-draws",
            "300",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let redacted: Vec<String> = text
        .lines()
        .map(|line| {
            if line.contains(" impressions served in ") {
                "[20000 impressions served; timings redacted]".to_string()
            } else {
                line.to_string()
            }
        })
        .collect();
    let redacted = redacted.join("\n");
    // The table holds every section a reader needs.
    for section in [
        "Summary",
        "versions defined",
        "Check \"leaders are the oracle's options\"",
        "Lift estimates against the truth",
    ] {
        assert!(redacted.contains(section), "{section}:\n{redacted}");
    }
    insta::assert_snapshot!("report_table_small_seeded", redacted);
}

#[test]
fn simulate_campaign_refuses_what_it_cannot_hold() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tla"))
            .current_dir(root)
            .arg("simulate")
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let err = run(&[
        "--campaign",
        "examples/small.toml",
        "--impressions",
        "200000000",
    ]);
    assert!(err.contains("at most 100000000 per run"), "{err}");
    let err = run(&["--campaign", "examples/small.toml", "--cpm=-1"]);
    assert!(err.contains("--cpm must be a finite spend"), "{err}");
    let err = run(&["--campaign", "examples/small.toml", "--rate", "0"]);
    assert!(err.contains("--rate must be at least 1"), "{err}");
    let err = run(&["--campaign", "examples/small.toml", "--policy", "uniform"]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = run(&["--campaign", "examples/missing.toml"]);
    assert!(err.contains("cannot read campaign spec"), "{err}");
}
