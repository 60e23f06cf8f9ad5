//! `tla events retract|correct` against a running server: the answer in a sentence,
//! each refusal with the server's code, the corrections listed by `tla report`, and the
//! report over the data directory afterwards (a replay with the corrections) equal to
//! the server's.

use std::process::{Command, Output};
use tla_store::{EventLog, Store};

mod common;

use common::{Fill, TempDir};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn events_retract_and_correct_through_a_running_server() {
    let dir = TempDir::new("events-test");
    let data = dir.0.join("data");
    {
        let store = Store::open(&data).unwrap();
        // Impressions i0.., conversions c0, c5, c10, ... of 20.
        common::fill(
            &store,
            "c_a",
            300,
            Fill {
                clicks_every: 0,
                conversion_value: |_| 20.0,
            },
        );
        // A conversion sent without an amount, on c0's decision.
        let log = store.event_log();
        let c0 = log.find_event("c_a", "c0").unwrap().unwrap();
        let unknown = tla_store::NewEvent {
            campaign_id: c0.campaign_id,
            event_id: "c-unknown".into(),
            decision_id: c0.decision_id,
            kind: c0.kind,
            value: 0.0,
            amount_known: false,
            segment: c0.segment,
            version: c0.version,
            decided_at_ms: c0.decided_at_ms,
            at_ms: c0.at_ms,
        };
        log.append(&[unknown]).unwrap();
    }
    let admin = "tla_0123456789ab_0123456789abcdef0123456789abcdef";
    let server = common::Server::start(&data, admin);
    let address = server.address.clone();
    let tla = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tla"))
            .args(args)
            .args(["--server", &address, "--key", admin])
            .env_remove("TLA_DATA")
            .output()
            .unwrap()
    };

    let out = tla(&["events", "retract", "c_a", "c0", "--reason", "a test order"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with(
            "retracted event c0 (conversion, seq 3): value 20 -> none\nmodel rebuilt from seq 0 to "
        ),
        "{stdout}"
    );
    let out = tla(&["events", "retract", "c_a", "c0", "--reason", "again"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("was already retracted"), "{stdout}");
    let out = tla(&[
        "events",
        "correct",
        "c_a",
        "c5",
        "--value",
        "40",
        "--reason",
        "charged $40",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["correction"]["old_value"], 20.0);
    assert_eq!(answer["correction"]["new_value"], 40.0);
    assert_eq!(answer["correction"]["key_id"], "0123456789ab");
    // The amount before a correction of a conversion sent without one is unknown, not 0.
    let out = tla(&[
        "events",
        "correct",
        "c_a",
        "c-unknown",
        "--value",
        "30",
        "--reason",
        "the gift was $30",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("value unknown -> 30\n"), "{stdout}");

    // Refusals carry the server's code and message.
    for (args, fragment) in [
        (
            vec![
                "events", "correct", "c_a", "i1", "--value", "1", "--reason", "r",
            ],
            "unexpected_amount: event \"i1\" is an impression event",
        ),
        (
            vec!["events", "retract", "c_a", "nope", "--reason", "r"],
            "event_not_found",
        ),
        (
            vec![
                "events", "correct", "c_a", "c0", "--value", "1", "--reason", "r",
            ],
            "event_retracted",
        ),
        (
            vec!["events", "retract", "c_zz", "c0", "--reason", "r"],
            "404",
        ),
    ] {
        let out = tla(&args);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(fragment), "{args:?}: {stderr}");
    }

    // The report lists them, in the table and in JSON.
    let out = tla(&["report", "c_a"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\nCorrections (3;"), "{stdout}");
    assert!(stdout.contains(" unknown -> 30 "), "{stdout}");
    assert!(stdout.contains("retract c0"), "{stdout}");
    let out = tla(&["report", "c_a", "--format", "json"]);
    assert!(out.status.success());
    let from_server = String::from_utf8(out.stdout).unwrap();

    // Stop the server we started: SIGTERM by its id, a bounded wait.
    server.stop();

    // The data directory replays to the same report, corrections included.
    let out = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args(["report", "c_a", "--format", "json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, from_server);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["corrections"].as_array().unwrap().len(), 3);
    assert_eq!(
        report["corrections"][2]["old_value"],
        serde_json::Value::Null
    );
}

/// A value JSON cannot carry, or a malformed campaign id, is refused before any request
/// (the server address below has nothing listening).
#[test]
fn events_correct_refuses_what_it_cannot_send() {
    for (campaign, value, expected) in [
        (
            "c_a",
            "inf",
            "--value inf is not accepted: a finite number >= 0",
        ),
        (
            "c_a",
            "NaN",
            "--value NaN is not accepted: a finite number >= 0",
        ),
        ("c/a", "5", "\"c/a\" is not a campaign id"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tla"))
            .args(["events", "correct", campaign, "e1", "--value", value])
            .args(["--reason", "r", "--server", "http://127.0.0.1:9", "--key"])
            .arg("tla_000000000000_00000000000000000000000000000000")
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{campaign} {value}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
