//! Platform mode's round trip with the real binary against a running server: `tla plan`
//! writes a plan's CSV sheet; a results CSV in the ads-manager layout ("Ad name", "Ad
//! set name", "Day", "Impressions", "Link clicks", "Results", "Purchase conversion
//! value", "Amount spent") is built from it, one ad per ad set clearly better; `tla
//! results import --map ads-manager` stores it; the next `tla plan` gives each winner
//! the largest share. Sending the file again changes nothing; a file with an unknown
//! ad, a negative number or impossible totals is refused whole, each row listed.

use std::collections::HashMap;
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

/// The rows of a plan sheet: (ad set, ad name, share) by column name.
fn sheet_rows(sheet: &str) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(sheet.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

#[test]
fn plan_sheet_ads_manager_results_and_the_next_plan() {
    let dir = TempDir::new("platform-test");
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
    let first_sheet = dir.0.join("plan-1.csv");
    let out = tla(&[
        "plan",
        "c_a",
        "--from",
        "2026-12-01T00:00:00Z",
        "--period",
        "24h",
        "--budget",
        "300",
        "--ads-per-segment",
        "16",
        "--out",
        first_sheet.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("plan 1 of campaign c_a: 2026-12-01T00:00:00Z to 2026-12-02T00:00:00Z, budget 300.00 over 3 ad sets"), "{stderr}");
    let sheet = std::fs::read_to_string(&first_sheet).unwrap();
    let first = sheet_rows(&sheet);
    assert_eq!(first.len(), 48, "{sheet}");
    for column in [
        "ad_name",
        "ad_set",
        "ad_set_budget",
        "share",
        "text",
        "headline",
        "image_asset",
        "period_start",
    ] {
        assert!(first[0].contains_key(column), "{column} missing: {sheet}");
    }
    // In each ad set the first ad listed wins: 10 % against 0.5 %.
    let mut winners: HashMap<String, String> = HashMap::new();
    for row in &first {
        winners
            .entry(row["ad_set"].clone())
            .or_insert_with(|| row["ad_name"].clone());
    }
    let mut results = String::from(
        "Ad name,Ad set name,Day,Impressions,Link clicks,Results,Purchase conversion value,Amount spent\n",
    );
    for (i, row) in first.iter().enumerate() {
        let conversions = if winners[&row["ad_set"]] == row["ad_name"] {
            200
        } else {
            10
        };
        // An empty cell is 0: one loser reports no result at all.
        let cell = |n: u32| {
            if i == first.len() - 1 {
                String::new()
            } else {
                n.to_string()
            }
        };
        results.push_str(&format!(
            "{},{},2026-12-01,2000,{},{},{},20.00\n",
            row["ad_name"],
            row["ad_set"],
            cell(conversions * 2),
            cell(conversions),
            cell(conversions * 25),
        ));
    }
    let results_file = dir.0.join("ads-manager.csv");
    std::fs::write(&results_file, &results).unwrap();

    // A file with an unknown ad, a negative number and impossible totals: refused
    // whole, nothing stored.
    let mut lines: Vec<String> = results.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replacen("tla-c_a-1-", "tla-c_a-1-99", 1);
    lines[2] = lines[2].replacen(",2000,", ",-5,", 1);
    lines[3] = lines[3].replacen(",2000,", ",3,", 1);
    let bad_file = dir.0.join("bad.csv");
    std::fs::write(&bad_file, lines.join("\n") + "\n").unwrap();
    let out = tla(&[
        "results",
        "import",
        bad_file.to_str().unwrap(),
        "--map",
        "ads-manager",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("48 result rows: 0 new, 0 replaced, 0 unchanged, 3 refused\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  data row 1: unknown_ad: ad \"tla-c_a-1-99"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  data row 2: invalid_result: impressions: -5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  data row 3: invalid_result: clicks: "),
        "{stdout}"
    );
    assert!(
        stderr.contains("nothing of the file was stored"),
        "{stderr}"
    );

    let out = tla(&[
        "results",
        "import",
        results_file.to_str().unwrap(),
        "--map",
        "ads-manager",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "48 result rows: 48 new, 0 replaced, 0 unchanged, 0 refused\n"
    );
    let out = tla(&[
        "results",
        "import",
        results_file.to_str().unwrap(),
        "--map",
        "ads-manager",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (answer["inserted"].as_u64(), answer["unchanged"].as_u64()),
        (Some(0), Some(48))
    );

    // The next plan: each winner has its ad set's largest share.
    let out = tla(&[
        "plan",
        "c_a",
        "--from",
        "2026-12-02T00:00:00Z",
        "--period",
        "24h",
        "--budget",
        "300",
        "--ads-per-segment",
        "4",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let second = sheet_rows(&stdout);
    for (set, winner) in &winners {
        let shares: Vec<(&str, f64)> = second
            .iter()
            .filter(|r| &r["ad_set"] == set)
            .map(|r| (r["ad_name"].as_str(), r["share"].parse().unwrap()))
            .collect();
        let top = shares.iter().map(|s| s.1).fold(0.0, f64::max);
        assert!(
            shares
                .iter()
                .any(|(name, share)| name == winner && *share == top),
            "{set}: {winner} not on top of {shares:?}"
        );
    }
    // Only what changed: every ad of plan 2 differs from plan 1 in share or budget, and
    // the ads dropped are listed as removed.
    let out = tla(&[
        "plan",
        "c_a",
        "--from",
        "2026-12-03T00:00:00Z",
        "--period",
        "24h",
        "--budget",
        "300",
        "--ads-per-segment",
        "4",
        "--changed",
        "--format",
        "json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let changed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (
            changed["plan_id"].as_u64(),
            changed["previous_plan_id"].as_u64()
        ),
        (Some(3), Some(2))
    );
    server.stop();
}
