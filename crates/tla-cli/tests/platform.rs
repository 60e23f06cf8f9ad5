//! `tla simulate --mode plan`: the flags, the JSON fields, and the refusals.

use std::process::{Command, Output};

fn simulate(args: &[&str]) -> Output {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    Command::new(env!("CARGO_BIN_EXE_tla"))
        .current_dir(root)
        .arg("simulate")
        .args(args)
        .output()
        .unwrap()
}

/// `simulate` with `args`, which must succeed, and its JSON.
fn simulate_json(args: &[&str]) -> serde_json::Value {
    let out = simulate(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn plan_mode_prints_its_fields_beside_the_budget_scores() {
    let value = simulate_json(&[
        "--world",
        "worlds/flight-small.json",
        "--budget",
        "auto",
        "--mode",
        "plan",
        "--plan-every",
        "12",
        "--ads-per-segment",
        "4",
        "--impressions",
        "20000",
        "--json",
    ]);
    assert_eq!(value["mode"], "plan");
    assert_eq!(value["plan_every_hours"], 12.0);
    assert_eq!(value["ads_per_segment"], 4);
    assert_eq!(value["plans"], 28, "14 days, two plans a day");
    assert_eq!(value["pacing"], "platform");
    assert_eq!(value["plan_draws"], 64);
    assert!(value["plan_draw_scale"].is_null(), "the tables' scale");
    assert_eq!(value["plan_exploration"], 0.1);
    assert_eq!(value["plan_draw_scale_schedule"], true);
    assert_eq!(value["plan_budget_draw_scale_schedule"], false);
    for field in [
        "pct_of_budget_oracle",
        "spend",
        "budget",
        "overspend_pct",
        "underspend_pct",
    ] {
        assert!(value[field].is_number(), "{field}: {value}");
    }
    assert!(value["spend"].as_f64().unwrap() <= value["budget"].as_f64().unwrap() * 1.001);
    // The budgets' draws on the schedule too, as plans drew before.
    let value = simulate_json(&[
        "--world",
        "worlds/flight-small.json",
        "--budget",
        "auto",
        "--mode",
        "plan",
        "--impressions",
        "2000",
        "--plan-budget-draw-scale-schedule",
        "true",
        "--json",
    ]);
    assert_eq!(value["plan_budget_draw_scale_schedule"], true);
    // The per-impression default says its mode too.
    let value = simulate_json(&[
        "--world",
        "worlds/flight-small.json",
        "--budget",
        "auto",
        "--impressions",
        "2000",
        "--json",
    ]);
    assert_eq!(value["mode"], "impression");
    assert!(value.get("plans").is_none());
    // The table names the mode.
    let out = simulate(&[
        "--world",
        "worlds/flight-small.json",
        "--budget",
        "auto",
        "--mode",
        "plan",
        "--impressions",
        "5000",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mode plan: 14 plans, every 24 h, 6 ads per ad set"),
        "{text}"
    );
}

#[test]
fn plan_mode_refuses_what_it_cannot_run() {
    for (args, fragment) in [
        (
            vec!["--world", "worlds/flight-small.json", "--mode", "plan"],
            "--mode plan needs --budget",
        ),
        (
            vec![
                "--world",
                "worlds/flight-small.json",
                "--budget",
                "auto",
                "--mode",
                "plan",
                "--ads-per-segment",
                "0",
            ],
            "--ads-per-segment: 0",
        ),
        (
            vec![
                "--world",
                "worlds/flight-small.json",
                "--budget",
                "auto",
                "--mode",
                "plan",
                "--plan-draws",
                "0",
            ],
            "--plan-draws: 0",
        ),
        (
            vec![
                "--world",
                "worlds/flight-small.json",
                "--budget",
                "auto",
                "--mode",
                "plan",
                "--plan-draw-scale",
                "0",
            ],
            "--plan-draw-scale: 0",
        ),
        (
            vec![
                "--world",
                "worlds/flight-small.json",
                "--budget",
                "auto",
                "--mode",
                "plan",
                "--plan-exploration",
                "1.5",
            ],
            "--plan-exploration: 1.5",
        ),
        (
            vec![
                "--world",
                "worlds/flight-small.json",
                "--budget",
                "auto",
                "--mode",
                "plan",
                "--plan-every",
                "0",
            ],
            "--plan-every must be a number of hours above 0",
        ),
        (
            vec![
                "--world",
                "worlds/flight-small.json",
                "--budget",
                "auto",
                "--mode",
                "plan",
                "--holdout",
                "0.1",
            ],
            "--mode plan does not take --holdout",
        ),
        (
            vec!["--world", "worlds/flight-small.json", "--mode", "auction"],
            "invalid value 'auction'",
        ),
    ] {
        let out = simulate(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(fragment), "{args:?}: {stderr}");
    }
}
