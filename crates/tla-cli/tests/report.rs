//! `tla report` on a data directory: table, JSON, CSV and `compare`.

use std::path::Path;
use std::process::Command;
use tla_store::Store;

mod common;

use common::{Fill, TempDir};

/// A campaign of examples/small.toml with `n` uniform decisions over its allowed
/// versions, an impression each, and a conversion of 20 for one in five.
fn fill(store: &Store, id: &str, n: u64) {
    common::fill(
        store,
        id,
        n,
        Fill {
            clicks_every: 0,
            conversion_value: |_| 20.0,
        },
    );
}

fn tla(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tla"))
        .arg("report")
        .args(args)
        .arg("--data")
        .arg(data)
        .args(["--draws", "200"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn report_from_a_data_directory_in_every_format() {
    let dir = TempDir::new("report-test");
    let data = dir.0.join("data");
    {
        let store = Store::open(&data).unwrap();
        fill(&store, "c_a", 1_000);
        fill(&store, "c_b", 500);
    }

    let (ok, json, err) = tla(&data, &["c_a", "--format", "json"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["campaign"], "c_a");
    assert_eq!(report["draws"], 200);
    assert_eq!(report["summary"]["impressions"], 1_000);
    assert_eq!(report["summary"]["donors"], 200);
    assert_eq!(report["summary"]["donations"], 4_000.0);
    let spend = report["summary"]["spend"].as_f64().unwrap();
    assert!((spend - 10.0).abs() < 1e-9);
    let cost_per_donor = report["summary"]["cost_per_donor"].as_f64().unwrap();
    assert!((cost_per_donor - 0.05).abs() < 1e-9);
    assert_eq!(report["lift"]["rows"], 1_000);
    // The log is uniform, so the even split is the policy that ran: lift 0.
    let lift = report["lift"]["even_split"]["lift"]["value"]
        .as_f64()
        .unwrap();
    assert!(lift.abs() < 1e-9, "{lift}");
    let realized = report["lift"]["realized"]["value"].as_f64().unwrap();
    assert!((realized - 4.0).abs() < 1e-9);

    let (ok, table, err) = tla(&data, &["c_a"]);
    assert!(ok, "{err}");
    assert!(table.contains("versions served"), "{table}");
    assert!(table.contains("Component headline"), "{table}");
    assert!(table.contains("even split"), "{table}");

    let (ok, csv, err) = tla(&data, &["c_a", "--format", "csv"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("component,option,asks_to_act,impressions"));
    assert_eq!(lines.len(), 1 + 3 + 2 + 3, "{csv}");

    let (ok, compare, err) = tla(&data, &["compare", "c_a", "c_b"]);
    assert!(ok, "{err}");
    assert!(compare.contains("versions run"), "{compare}");
    assert!(compare.contains("c_b"), "{compare}");

    let (ok, _, err) = tla(&data, &["c_missing"]);
    assert!(!ok);
    assert!(err.contains("no campaign"), "{err}");
}

#[test]
fn report_from_a_running_server_equals_the_data_directory_one() {
    let dir = TempDir::new("report-server-test");
    let data = dir.0.join("data");
    {
        let store = Store::open(&data).unwrap();
        fill(&store, "c_a", 600);
        fill(&store, "c_b", 300);
    }
    // From the directory first (the server's defaults: 1000 draws).
    let from_dir = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tla"))
            .arg("report")
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let dir_json = from_dir(&["c_a", "--format", "json"]);
    let dir_compare = from_dir(&["compare", "c_a", "c_b"]);

    let admin = "tla_0123456789ab_0123456789abcdef0123456789abcdef";
    let server = common::Server::start(&data, admin);
    let address = server.address.clone();
    let from_server = |args: &[&str], key: &str| {
        Command::new(env!("CARGO_BIN_EXE_tla"))
            .arg("report")
            .args(args)
            .args(["--server", &address, "--key", key])
            .env_remove("TLA_DATA")
            .output()
            .unwrap()
    };
    let out = from_server(&["c_a", "--format", "json"], admin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), dir_json);
    let out = from_server(&["compare", "c_a", "c_b"], admin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), dir_compare);

    // Refusals name what is wrong.
    let out = from_server(
        &["c_a"],
        "tla_0123456789ab_ffffffffffffffffffffffffffffffff",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    let out = from_server(&["c_zz"], admin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("404"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args([
            "report",
            "c_a",
            "--server",
            "https://127.0.0.1:1",
            "--key",
            admin,
        ])
        .env_remove("TLA_DATA")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("plain HTTP"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args(["report", "c_a", "--server", &address])
        .env_remove("TLA_DATA")
        .env_remove("TLA_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--key"), "{err}");

    // Stop the server we started: SIGTERM by its id, a bounded wait.
    server.stop();
}

/// Every file of a directory (not recursive) with its bytes.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// Sets the permissions of `dir` and its files: read-only (`0o555`/`0o444`) or back.
fn set_read_only(dir: &Path, read_only: bool) {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir_mode, file_mode) = if read_only {
        (0o555, 0o444)
    } else {
        (0o755, 0o644)
    };
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file_mode)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
}

#[test]
fn a_report_over_a_data_directory_writes_nothing_and_runs_on_a_read_only_copy() {
    let dir = TempDir::new("report-read-only");
    let data = dir.0.join("data");
    {
        let store = Store::open(&data).unwrap();
        fill(&store, "c_a", 1_000);
    }
    let (ok, from_log, err) = tla(&data, &["c_a", "--format", "json"]);
    assert!(ok, "{err}");
    // A snapshot covering the log: the report then restores it instead of replaying.
    {
        let store = Store::open(&data).unwrap();
        let options = tla_server::replay::ReplayOptions {
            seed: tla_server::ServerConfig::default().seed,
            from_start: false,
            now_ms: 0,
        };
        let replayed = tla_server::replay::replay(&store, &store.event_log(), options).unwrap();
        let engine = replayed.campaigns.get("c_a").unwrap().engine().snapshot();
        store
            .save_snapshot("c_a", replayed.applied_seq, &engine, 0)
            .unwrap();
    }
    let before = files(&data);
    assert!(before.contains_key("tla.db") && !before.contains_key("tla.db-wal"));
    let (ok, from_snapshot, err) = tla(&data, &["c_a", "--format", "json"]);
    assert!(ok, "{err}");
    assert_eq!(
        from_snapshot, from_log,
        "snapshot + replay equals the replay"
    );
    assert_eq!(
        files(&data),
        before,
        "the report changed a file or created one (no secret, no log)"
    );

    // On a read-only directory, as a user the permissions apply to (root passes them,
    // so a root test runs the report as `nobody`).
    set_read_only(&data, true);
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let tla_binary = env!("CARGO_BIN_EXE_tla");
    let mut command = if root {
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            tla_binary,
        ]);
        command
    } else {
        Command::new(tla_binary)
    };
    let out = command
        .args([
            "report", "c_a", "--format", "json", "--draws", "200", "--data",
        ])
        .arg(&data)
        .output();
    set_read_only(&data, false);
    let out = out.expect("run tla report on the read-only directory");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), from_log);
    assert_eq!(files(&data), before);
}

/// A data directory written before amounts were bounded: conversions of 1e308 (then
/// accepted) on some versions. `tla report --data` still prints numbers only: no `inf`,
/// `NaN` or hundreds of digits in the table, JSON that parses with numbers where the
/// schema has them, and the lift says why it is left out.
#[test]
fn a_report_over_amounts_of_1e308_prints_only_finite_numbers() {
    let dir = TempDir::new("report-huge");
    let data = dir.0.join("data");
    {
        let store = Store::open(&data).unwrap();
        common::fill(
            &store,
            "c_huge",
            600,
            Fill {
                clicks_every: 0,
                conversion_value: |version| if version % 2 == 0 { 1e308 } else { 20.0 },
            },
        );
    }
    let (ok, table, err) = tla(&data, &["c_huge"]);
    assert!(ok, "{err}");
    let lowercase = table.to_lowercase();
    assert!(
        !lowercase.contains("inf") && !lowercase.contains("nan"),
        "{table}"
    );
    let longest_digit_run = table
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap();
    assert!(longest_digit_run < 20, "{table}");
    assert!(table.contains("e308"), "{table}");

    let (ok, json, err) = tla(&data, &["c_huge", "--format", "json"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let summary = &report["summary"];
    for field in ["donations", "donations_learned", "spend"] {
        assert!(summary[field].as_f64().unwrap().is_finite(), "{summary}");
    }
    // Unwrapped first: `None < Some(_)` holds, so comparing the Options would pass with
    // a field missing.
    let donations_learned = summary["donations_learned"].as_f64().unwrap();
    let donations = summary["donations"].as_f64().unwrap();
    assert!(donations_learned < donations, "{summary}");
    for option in report["components"][0]["options"].as_array().unwrap() {
        assert!(option["value"].as_f64().unwrap().is_finite(), "{option}");
        let vpi = &option["value_per_impression"];
        for end in ["mean", "lower", "upper"] {
            assert!(vpi[end].as_f64().unwrap().is_finite(), "{option}");
        }
    }
    assert!(report["lift"].is_null(), "{}", report["lift"]);
    let why = report["lift_unavailable"].as_str().unwrap();
    assert!(why.contains("too large to sum"), "{why}");

    let (ok, csv, err) = tla(&data, &["c_huge", "--format", "csv"]);
    assert!(ok, "{err}");
    assert!(!csv.to_lowercase().contains("inf"), "{csv}");
}

/// A campaign with a holdout: the report's holdout section counts each arm, the lift
/// section reads the policy's arm only, and the table prints both intervals.
#[test]
fn a_campaign_with_a_holdout_reports_the_policy_against_it() {
    let dir = TempDir::new("report-holdout");
    let data = dir.0.join("data");
    {
        let store = Store::open(&data).unwrap();
        common::fill_held_out(
            &store,
            "c_h",
            1_000,
            Fill {
                clicks_every: 0,
                conversion_value: |_| 20.0,
            },
            0.25,
        );
        fill(&store, "c_plain", 100);
    }
    let (ok, json, err) = tla(&data, &["c_h", "--format", "json"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let h = &report["holdout"];
    assert_eq!(h["share"], 0.25);
    assert_eq!(h["policy"]["decisions"], 750);
    assert_eq!(h["holdout"]["decisions"], 250);
    assert_eq!(report["lift"]["rows"], 750);
    // Every fifth decision converts for 20, in both arms alike: 4 per impression.
    let p = &h["per_impression"];
    assert!(p["lift"].as_f64().unwrap().abs() < 0.5, "{p}");
    let spend = h["policy"]["spend"].as_f64().unwrap();
    assert!((spend - 7.5).abs() < 1e-9, "{h}");
    assert!(h["per_dollar"].is_object(), "{h}");
    let (ok, table, err) = tla(&data, &["c_h"]);
    assert!(ok, "{err}");
    assert!(
        table.contains("Policy against its holdout (25% of units"),
        "{table}"
    );
    assert!(table.contains("valid at every look ["), "{table}");
    assert!(table.contains("fixed-horizon ["), "{table}");
    let (ok, json, err) = tla(&data, &["c_plain", "--format", "json"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(report.get("holdout").is_none());
}
