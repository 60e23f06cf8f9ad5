//! `tla evaluate --data DIR --campaign ID` on data directories written through the
//! store: a log small enough to check by hand, the targets, and the refusals.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tla_store::{DecisionRow, EventKind, EventLog, NewEvent, Store};

mod common;

use common::{TempDir, insert_small_campaign as insert_campaign};

fn decision(id: &str, campaign: &str, segment: u32, version: u64, propensity: f64) -> DecisionRow {
    DecisionRow {
        decision_id: id.into(),
        campaign_id: campaign.into(),
        segment,
        version,
        propensity,
        model_version: 1,
        at_ms: 1_700_000_000_000,
        skip: None,
        revision: 1,
        held_out: false,
    }
}

fn event(
    campaign: &str,
    event_id: &str,
    decision: &DecisionRow,
    kind: EventKind,
    value: f64,
) -> NewEvent {
    NewEvent {
        campaign_id: campaign.into(),
        event_id: event_id.into(),
        decision_id: decision.decision_id.clone(),
        kind,
        value,
        amount_known: true,
        segment: decision.segment,
        version: decision.version,
        decided_at_ms: decision.at_ms,
        at_ms: decision.at_ms + 1_000,
    }
}

/// Campaign `c_hand` (examples/small.toml: 18 versions, 16 allowed, 3 segments) with
/// four decisions, in log order:
///
/// | decision | segment | version | propensity | conversions | reward |
/// |---|---|---|---|---|---|
/// | h0 | 0 | 0 | 0.5  | 10      | 10 |
/// | h1 | 0 | 1 | 0.25 | 4 and 2 | 6  |
/// | h2 | 1 | 1 | 0.5  | none    | 0  |
/// | h3 | 1 | 0 | 0.5  | none    | 0  |
///
/// Campaign `c_other` has a decision with the id `h1` too, converting 100: it must not
/// leak into `c_hand`'s rewards. `c_empty` has no decisions.
fn fill_by_hand(data: &Path) {
    let store = Store::open(data).unwrap();
    for id in ["c_hand", "c_other", "c_empty"] {
        insert_campaign(&store, id);
    }
    let hand = [
        decision("h0", "c_hand", 0, 0, 0.5),
        decision("h1", "c_hand", 0, 1, 0.25),
        decision("h2", "c_hand", 1, 1, 0.5),
        decision("h3", "c_hand", 1, 0, 0.5),
    ];
    let other = decision("h1", "c_other", 0, 1, 0.5);
    store.append_decisions(&hand).unwrap();
    store
        .append_decisions(std::slice::from_ref(&other))
        .unwrap();
    let log = store.event_log();
    let mut events = Vec::new();
    for (i, d) in hand.iter().enumerate() {
        events.push(event(
            "c_hand",
            &format!("i{i}"),
            d,
            EventKind::Impression,
            0.0,
        ));
    }
    events.push(event("c_other", "c1", &other, EventKind::Conversion, 100.0));
    events.push(event("c_hand", "c0", &hand[0], EventKind::Conversion, 10.0));
    events.push(event("c_hand", "c1a", &hand[1], EventKind::Conversion, 4.0));
    events.push(event("c_hand", "k1", &hand[1], EventKind::Click, 0.0));
    events.push(event("c_hand", "c1b", &hand[1], EventKind::Conversion, 2.0));
    events.push(event("c_hand", "s2", &hand[2], EventKind::Cost, 0.5));
    log.append(&events).unwrap();
}

fn evaluate(data: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args(["evaluate", "--data"])
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(data: &Path, target: &str) -> Value {
    let (ok, out, err) = evaluate(
        data,
        &["--campaign", "c_hand", "--target", target, "--json"],
    );
    assert!(ok, "{target}: {err}");
    serde_json::from_str(out.trim()).unwrap()
}

fn estimate<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["estimator"] == name)
        .unwrap()
}

fn close(value: &Value, expected: f64) {
    let value = value.as_f64().unwrap();
    assert!((value - expected).abs() < 1e-12, "{value} != {expected}");
}

#[test]
fn estimates_on_a_campaign_log_match_the_hand_computed_values() {
    let dir = TempDir::new("evaluate-campaign-hand");
    let data = dir.0.join("data");
    fill_by_hand(&data);

    // version:1 (headline river_needs_you, image canoe, cta give_25). Weights
    // 1[a = 1] / p: h1 4, h2 2, the others 0. IPS (4 * 6 + 2 * 0) / 4 = 6;
    // SNIPS 24 / 6 = 4; ESS 6^2 / (4^2 + 2^2) = 1.8.
    let result = json(&data, "version:1");
    assert_eq!(result["campaign"], "c_hand");
    assert_eq!(result["rows"], 4);
    assert_eq!(result["capped"], false);
    assert_eq!(result["distinct_actions"], 2);
    assert_eq!(result["action_space"], 16);
    assert_eq!(result["contexts"], 3);
    close(&result["logged_mean_reward"], 4.0);
    close(&estimate(&result, "ips")["value"], 6.0);
    close(&estimate(&result, "snips")["value"], 4.0);
    close(&estimate(&result, "snips")["ess"], 1.8);
    assert_eq!(estimate(&result, "dr")["rows"], 4);
    let target = result["target"].as_str().unwrap();
    assert!(
        target.contains("always version 1 (headline=river_needs_you, image=canoe, cta=give_25)"),
        "{target}"
    );
    // The weights: 0, 4, 2, 0; the heaviest is decision 2 (propensity 0.25), 4 / 6 of
    // the weight; mean weight 6 / 4. The rewarded decisions (1 and 2, weights 0 and 4)
    // count as (0 + 4)^2 / (0 + 16) = 1 effective row. Both are warned about.
    assert_eq!(result["weights"]["heaviest_row"], "decision 2");
    close(&result["weights"]["max_weight_share"], 4.0 / 6.0);
    close(&result["weights"]["mean_weight"], 1.5);
    close(&result["weights"]["effective_rewarded"], 1.0);
    let warnings = result["warnings"].to_string();
    assert!(
        warnings.contains(
            "one row (decision 2, propensity 0.25) holds 66.7% of the total importance weight"
        ) && warnings.contains("count as 1.0 rows"),
        "{warnings}"
    );
    // --alpha and the bootstrap apply to --data: seeded, the same twice.
    let bootstrap = || {
        let (ok, out, err) = evaluate(
            &data,
            &[
                "--campaign",
                "c_hand",
                "--target",
                "version:1",
                "--alpha",
                "0.1",
                "--interval",
                "bootstrap",
                "--bootstrap",
                "50",
                "--seed",
                "3",
                "--json",
            ],
        );
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(out.trim()).unwrap()
    };
    let first = bootstrap();
    assert_eq!(first["interval"]["method"], "bootstrap");
    assert_eq!(first["alpha"], 0.1);
    assert_eq!(first["estimates"], bootstrap()["estimates"]);
    assert_ne!(first["estimates"], result["estimates"]);
    // The same version by option names and by indices.
    for form in [
        "fixed-options:river_needs_you,canoe,give_25",
        "fixed-options:0,0,1",
    ] {
        let again = json(&data, form);
        assert_eq!(again["estimates"], result["estimates"], "{form}");
    }

    // uniform over the 16 allowed versions: w = (1/16) / p = 1/8, 1/4, 1/8, 1/8.
    // IPS (10 / 8 + 6 / 4) / 4 = 0.6875; SNIPS 2.75 / 0.625 = 4.4.
    let result = json(&data, "uniform");
    close(&estimate(&result, "ips")["value"], 0.6875);
    close(&estimate(&result, "snips")["value"], 4.4);
    assert!(
        result["target"]
            .as_str()
            .unwrap()
            .contains("16 allowed versions")
    );

    // best-logged: on the first half (h0, h1) version 0 has SNIPS 10, version 1 6;
    // version 0 is evaluated on h2, h3: only h3 (reward 0) matches, so 0.
    let result = json(&data, "best-logged");
    let target = result["target"].as_str().unwrap();
    assert!(target.starts_with("best-logged: version 0 ("), "{target}");
    assert!(target.contains("(10.0000)"), "{target}");
    close(&estimate(&result, "ips")["value"], 0.0);
    close(&estimate(&result, "snips")["value"], 0.0);
    assert_eq!(estimate(&result, "snips")["rows"], 2);
    close(&result["logged_mean_reward"], 0.0);

    // factorized-ts: the campaign's model trained on the first half (h0, h1), its
    // decision distribution evaluated on the second half (h2, h3), where nothing
    // converted: every estimate is 0, on 2 rows, with positive weights (the floor gives
    // every allowed version probability >= 0.02 / 16).
    let result = json(&data, "factorized-ts");
    let target = result["target"].as_str().unwrap();
    assert!(
        target.starts_with("factorized-ts: the campaign's model trained from its prior on the first half (2 decisions"),
        "{target}"
    );
    for name in ["ips", "snips", "dr"] {
        close(&estimate(&result, name)["value"], 0.0);
        assert_eq!(estimate(&result, name)["rows"], 2);
    }
    assert!(estimate(&result, "snips")["ess"].as_f64().unwrap() > 0.0);
    close(&result["logged_mean_reward"], 0.0);
    // Its floor is the spec's exploration unless --target-floor says otherwise.
    let (ok, out, err) = evaluate(
        &data,
        &[
            "--campaign",
            "c_hand",
            "--target",
            "factorized-ts",
            "--target-floor",
            "0.5",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let result: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(result["target"].as_str().unwrap().contains("floor 0.5;"));

    // --max-decisions cuts the log: the first three decisions.
    let (ok, out, err) = evaluate(
        &data,
        &[
            "--campaign",
            "c_hand",
            "--target",
            "version:1",
            "--max-decisions",
            "3",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let result: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["rows"], 3);
    assert_eq!(result["capped"], true);
    // IPS (4 * 6 + 2 * 0) / 3 = 8.
    close(&estimate(&result, "ips")["value"], 8.0);

    // The table names the campaign, the target and the three estimators.
    let (ok, table, err) = evaluate(&data, &["--campaign", "c_hand"]);
    assert!(ok, "{err}");
    assert!(table.contains("campaign c_hand in "), "{table}");
    assert!(
        table.contains("4 decisions, 2 distinct versions served of 16 allowed"),
        "{table}"
    );
    for line in ["target: uniform", "ips ", "snips ", "dr "] {
        assert!(table.contains(line), "{line}: {table}");
    }

    // Reading changed nothing stored.
    let store = Store::open(&data).unwrap();
    assert_eq!(store.event_log().last_seq().unwrap(), 10);
    assert_eq!(store.decisions("c_hand", 0, 100).unwrap().len(), 4);
}

#[test]
fn bad_input_is_refused_with_what_is_accepted() {
    let dir = TempDir::new("evaluate-campaign-refusals");
    let data = dir.0.join("data");
    fill_by_hand(&data);
    let refused = |args: &[&str]| {
        let (ok, _, err) = evaluate(&data, args);
        assert!(!ok, "{args:?} should fail");
        err
    };

    let err = refused(&["--campaign", "c_nope"]);
    assert!(
        err.contains("no campaign \"c_nope\"")
            && err.contains("campaigns: c_empty, c_hand, c_other"),
        "{err}"
    );
    let err = refused(&["--campaign", "c_empty"]);
    assert!(
        err.contains("campaign c_empty has no logged decisions"),
        "{err}"
    );
    let err = refused(&["--campaign", "c_hand", "--target", "oracle"]);
    assert!(
        err.contains("--target: \"oracle\" does not apply to --data; accepted: oracle (--world), uniform (--world, --log, --data)")
            && err.contains("version:INDEX (--data), fixed:ACTION (--log), best-logged (--log, --data)"),
        "{err}"
    );
    let err = refused(&["--campaign", "c_hand", "--target", "version:18"]);
    assert!(
        err.contains("the campaign's versions are 0 to 17 (18 versions)"),
        "{err}"
    );
    let err = refused(&["--campaign", "c_hand", "--target", "version:14"]);
    assert!(
        err.contains("excluded") && err.contains("headline.first_gift with cta.learn_more"),
        "{err}"
    );
    let err = refused(&[
        "--campaign",
        "c_hand",
        "--target",
        "fixed-options:0,otter,0",
    ]);
    assert!(
        err.contains("component image has no option \"otter\" (options: canoe, heron)"),
        "{err}"
    );
    let err = refused(&["--campaign", "c_hand", "--target", "version:5"]);
    assert!(
        err.contains("version 5") && err.contains("never served"),
        "{err}"
    );
    let err = refused(&[
        "--campaign",
        "c_hand",
        "--target",
        "factorized-ts",
        "--target-floor",
        "1.5",
    ]);
    assert!(
        err.contains("the target floor 1.5 is not in [0, 1)"),
        "{err}"
    );
    let err = refused(&["--campaign", "c_hand", "--target-floor", "0.1"]);
    assert!(
        err.contains("--target-floor is the floor of --target factorized-ts"),
        "{err}"
    );
    let err = refused(&["--campaign", "c_hand", "--per-seed"]);
    assert!(err.contains("--per-seed is for --world"), "{err}");
    let err = refused(&["--campaign", "c_hand", "--actions", "20"]);
    assert!(err.contains("--actions is for --log"), "{err}");
    let err = refused(&["--campaign", "c_hand", "--log", "x.csv"]);
    assert!(err.contains("cannot be used with"), "{err}");

    // A directory without tla.db is refused, and nothing is created in it.
    let empty = dir.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, err) = evaluate(&empty, &["--campaign", "c_hand"]);
    assert!(!ok);
    assert!(
        err.contains("holds no tla.db: not a TLA data directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // --campaign without --data, and --data without --campaign.
    let output = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args(["evaluate", "--campaign", "c_hand"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--data"));
}

/// `--target` has one grammar: a form that does not apply to the input is refused with
/// the same list of every form and the inputs it applies to, on --world, --log and
/// --data alike.
#[test]
fn one_target_grammar_refuses_alike_on_every_input() {
    let dir = TempDir::new("evaluate-target-grammar");
    let data = dir.0.join("data");
    fill_by_hand(&data);
    let log = dir.0.join("log.csv");
    std::fs::write(&log, "arm,r,p\na,1,0.5\nb,0,0.5\na,0,0.5\nb,2,0.5\n").unwrap();
    let world = concat!(env!("CARGO_MANIFEST_DIR"), "/../../worlds/small.json");
    let tail = "accepted: oracle (--world), uniform (--world, --log, --data), factorized-ts \
(--world, --log, --data), fixed-options:O1,O2,... (one option per component: indices with \
--world, indices or names with --data), version:INDEX (--data), fixed:ACTION (--log), \
best-logged (--log, --data), column:NAME (--log: the target's probability of each row's logged \
action), file:PATH (--log: the target's probabilities per context and action)";
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tla"))
            .arg("evaluate")
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let data = data.to_str().unwrap();
    let log = log.to_str().unwrap();
    let world_args = ["--world", world, "--seeds", "1", "--impressions", "5000"];
    let log_args = ["--log", log, "--map", "action=arm,reward=r,propensity=p"];
    let data_args = ["--data", data, "--campaign", "c_hand"];
    for (input, args, target) in [
        ("--world", &world_args[..], "best-logged"),
        ("--log", &log_args[..], "version:3"),
        ("--data", &data_args[..], "fixed:a"),
    ] {
        let (ok, err) = run(&[args, &["--target", target]].concat());
        assert!(!ok, "{input} {target} should be refused");
        assert!(
            err.contains(&format!(
                "--target: {target:?} does not apply to {input}; {tail}"
            )),
            "{input}: {err}"
        );
    }
    let (ok, err) = run(&[&world_args[..], &["--target", "sometimes"]].concat());
    assert!(!ok);
    assert!(
        err.contains(&format!("--target: \"sometimes\" is not a target; {tail}")),
        "{err}"
    );
    // Forms each input accepted before still run: blanks around world option indices,
    // a log's fixed action, a campaign's options by name (version 1, served).
    for args in [
        [&world_args[..], &["--target", "fixed-options: 0, 1,2,3"]].concat(),
        [&log_args[..], &["--target", "fixed:b"]].concat(),
        [
            &data_args[..],
            &["--target", "fixed-options:river_needs_you, canoe ,give_25"],
        ]
        .concat(),
    ] {
        let (ok, err) = run(&args);
        assert!(ok, "{args:?}: {err}");
    }
}

/// A flight world is validated by `tla evaluate --world` (its truth follows the drift
/// and the launches; `crates/tla-cli/tests/evaluate_world.rs` checks the output).
#[test]
fn evaluate_world_accepts_a_flight_world() {
    let world = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../worlds/flight-small.json"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args([
            "evaluate",
            "--world",
            world,
            "--seeds",
            "1",
            "--impressions",
            "1000",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("world flight-small"), "{stdout}");
}
