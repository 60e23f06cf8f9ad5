//! The money commands against a running server. `tla spend report`: CSV and JSON
//! files, duplicates on a second send, each refusal listed with its line, code and
//! message, and the command failing when any report is refused. `tla campaigns budget`:
//! a change in a sentence, each refusal with the server's code, the audit stored.

use std::process::{Command, Output};
use tla_store::Store;

mod common;

use common::TempDir;

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn spend_report_sends_csv_and_json_files_and_lists_refusals() {
    let dir = TempDir::new("spend-test");
    let data = dir.0.join("data");
    {
        let store = Store::open(&data).unwrap();
        common::insert_small_campaign(&store, "c_a");
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
    let csv = dir.0.join("spend.csv");
    std::fs::write(
        &csv,
        "report_id,segment,start,end,amount,impressions\n\
         d1-past,past-donors,2026-12-01T00:00:00Z,2026-12-02T00:00:00Z,120.50,4000\n\
         d1-new,new-visitors,2026-12-01T00:00:00Z,2026-12-02T00:00:00Z,80,\n",
    )
    .unwrap();
    let out = tla(&[
        "spend",
        "report",
        "--campaign",
        "c_a",
        "--file",
        csv.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "2 spend reports: 2 stored, 0 already stored (duplicates), 0 refused\n"
    );
    // The same file again: nothing new.
    let out = tla(&[
        "spend",
        "report",
        "--campaign",
        "c_a",
        "--file",
        csv.to_str().unwrap(),
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(0), Some(2))
    );

    // A JSON file with a changed report, an unknown segment and a bad period.
    let json = dir.0.join("spend.json");
    std::fs::write(
        &json,
        serde_json::json!({"reports": [
            {"report_id": "d1-past", "segment": "past-donors", "start": "2026-12-01T00:00:00Z",
             "end": "2026-12-02T00:00:00Z", "amount": 125.0},
            {"report_id": "d2", "segment": "nobody", "start": "2026-12-02T00:00:00Z",
             "end": "2026-12-03T00:00:00Z", "amount": 5.0},
            {"report_id": "d3", "segment": "volunteers", "start": "2026-12-03T00:00:00Z",
             "end": "2026-12-02T00:00:00Z", "amount": 5.0},
            {"report_id": "d4", "segment": "volunteers", "start": "2026-12-03T00:00:00Z",
             "end": "2026-12-04T00:00:00Z", "amount": 5.0, "impressions": 100},
        ]})
        .to_string(),
    )
    .unwrap();
    let out = tla(&[
        "spend",
        "report",
        "--campaign",
        "c_a",
        "--file",
        json.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("4 spend reports: 1 stored, 0 already stored (duplicates), 3 refused\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  report 1 (d1-past): report_id_conflict: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("  report 2 (d2): unknown_segment: segment \"nobody\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("  report 3 (d3): invalid_period: end: "),
        "{stdout}"
    );
    assert!(
        stderr.contains("3 of 4 spend reports were refused"),
        "{stderr}"
    );

    // Refused before sending: a CSV without a required column, a bad number, a file
    // of another kind; refused by the server: an unknown campaign.
    let bad = dir.0.join("bad.csv");
    for (content, fragment) in [
        (
            "report_id,segment,start,amount\nx,past-donors,a,1\n",
            "no column \"end\"",
        ),
        (
            "report_id,segment,start,end,amount\nx,past-donors,a,b,lots\n",
            "line 2: amount \"lots\" is not a number",
        ),
        (
            "report_id,segment,start,end,amount\nx,past-donors,a,b,inf\n",
            "not a finite number",
        ),
        (
            "report_id,segment,start,end,amount,cost\n",
            "column \"cost\"",
        ),
    ] {
        std::fs::write(&bad, content).unwrap();
        let out = tla(&[
            "spend",
            "report",
            "--campaign",
            "c_a",
            "--file",
            bad.to_str().unwrap(),
        ]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(stderr.contains(fragment), "{content:?}: {stderr}");
    }
    let out = tla(&[
        "spend",
        "report",
        "--campaign",
        "c_a",
        "--file",
        "spend.txt",
    ]);
    assert!(
        text(&out).1.contains("neither .csv nor .json"),
        "{}",
        text(&out).1
    );
    let out = tla(&[
        "spend",
        "report",
        "--campaign",
        "c_zz",
        "--file",
        csv.to_str().unwrap(),
    ]);
    assert!(text(&out).1.contains("404"), "{}", text(&out).1);
    server.stop();

    let store = Store::open_read_only(&data).unwrap();
    let stored = store.spend_reports("c_a").unwrap();
    let ids: Vec<&str> = stored.iter().map(|r| r.report_id.as_str()).collect();
    assert_eq!(ids, ["d1-past", "d1-new", "d4"]);
    assert_eq!(
        (stored[0].amount, stored[0].impressions),
        (120.5, Some(4_000))
    );
    assert_eq!(stored[1].impressions, None);
    assert_eq!(stored[0].key_id, "0123456789ab");
}

#[test]
fn campaigns_budget_changes_a_running_campaigns_budget() {
    let dir = TempDir::new("budget-test");
    let data = dir.0.join("data");
    {
        let store = Store::open(&data).unwrap();
        let text = format!(
            "{}\n[flight]\nbudget = 1000\ndaily_cap = 100\nstart = 2026-12-01T00:00:00Z\nend = 2027-01-01T00:00:00Z\n",
            include_str!("../../../examples/small.toml")
        );
        let spec = tla_core::spec::CampaignSpec::from_toml_str(&text).unwrap();
        spec.validate().unwrap();
        store
            .insert_campaign(&tla_store::CampaignRow {
                id: "c_f".into(),
                name: spec.name.clone(),
                spec_json: serde_json::to_string(&spec).unwrap(),
                status: tla_store::CampaignStatus::Active,
                created_at_ms: 1_700_000_000_000,
            })
            .unwrap();
        common::insert_small_campaign(&store, "c_a");
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
    let out = tla(&[
        "campaigns",
        "budget",
        "--campaign",
        "c_f",
        "--budget",
        "1500",
        "--no-daily-cap",
        "--reason",
        "board approved",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "campaign c_f: budget 1000 -> 1500, daily cap 100 -> none (spent so far 0)\n"
    );
    let out = tla(&[
        "campaigns",
        "budget",
        "--campaign",
        "c_f",
        "--daily-cap",
        "120",
        "--reason",
        "even",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["campaign"]["flight"]["budget"], 1500.0);
    assert_eq!(answer["campaign"]["flight"]["daily_cap"], 120.0);
    for (args, fragment) in [
        (
            vec![
                "campaigns",
                "budget",
                "--campaign",
                "c_f",
                "--budget",
                "-1",
                "--reason",
                "r",
            ],
            "invalid_budget: budget: -1 is out of range",
        ),
        (
            vec![
                "campaigns",
                "budget",
                "--campaign",
                "c_a",
                "--budget",
                "10",
                "--reason",
                "r",
            ],
            "no_flight",
        ),
        (
            vec!["campaigns", "budget", "--campaign", "c_f", "--reason", "r"],
            "nothing to change",
        ),
        (
            vec![
                "campaigns",
                "budget",
                "--campaign",
                "c_f",
                "--budget",
                "inf",
                "--reason",
                "r",
            ],
            "--budget inf is not accepted",
        ),
    ] {
        let out = tla(&args);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(fragment), "{args:?}: {stderr}");
    }
    // The report's Money table lists them.
    let out = tla(&["report", "c_f"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\nMoney\n"), "{stdout}");
    assert!(stdout.contains("  budget changes (2; the last is in force):\n    budget 1000.00 -> 1500.00, daily cap 100.00 -> none  spent 0.00  key 0123456789ab  at "), "{stdout}");
    server.stop();
    let store = Store::open_read_only(&data).unwrap();
    let changes = store.budget_changes("c_f").unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].change.reason, "board approved");
    assert_eq!(changes[1].change.new_daily_cap, Some(120.0));
}
