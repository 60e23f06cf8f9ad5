//! Runs the built `tla` binary: `tla versions count|show|sample|list` on the example
//! specs, and on bad specs, checking exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> String {
    repo_root()
        .join("examples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn tla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tla"))
        .args(args)
        .output()
        .expect("the tla binary runs")
}

/// Runs `tla` and returns stdout, failing the test on a non-zero exit.
fn tla_ok(args: &[&str]) -> String {
    let output = tla(args);
    assert!(
        output.status.success(),
        "tla {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn tla_json(args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&tla_ok(&args)).expect("--json prints one JSON document")
}

/// A file under the temp dir with a name no other test run uses.
struct TempSpec(PathBuf);

impl TempSpec {
    fn new(name: &str, text: &str) -> Self {
        let unique = format!(
            "tla-versions-test-{}-{}-{name}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempSpec {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn count_small_and_fundraising() {
    let small = example("small.toml");
    let text = tla_ok(&["versions", "count", &small]);
    assert!(text.contains("total versions:      18"), "{text}");
    assert!(
        text.contains("allowed versions:    16 (after 1 exclusion)"),
        "{text}"
    );
    assert!(
        text.contains("ask to act:          12 (75.0% of allowed)"),
        "{text}"
    );
    assert!(text.contains("versions x segments: 48"), "{text}");

    let json = tla_json(&["versions", "count", &small]);
    assert_eq!(json["total_versions"], 18);
    assert_eq!(json["allowed_versions"], 16);
    assert_eq!(json["acting_versions"], 12);
    assert_eq!(json["segments"], 3);

    let fundraising = example("fundraising.toml");
    let text = tla_ok(&["versions", "count", &fundraising]);
    assert!(
        text.contains("30 headline x 24 image x 16 body x 12 description x 16 cta"),
        "{text}"
    );
    assert!(text.contains("total versions:      2,211,840"), "{text}");
    assert!(
        text.contains("allowed versions:    2,204,160 (after 2 exclusions)"),
        "{text}"
    );
    assert!(text.contains("versions x segments: 88,166,400"), "{text}");
    let json = tla_json(&["versions", "count", &fundraising]);
    assert_eq!(json["total_versions"], 2_211_840);
    assert_eq!(json["version_segment_pairs"], 88_166_400);
    let acting = json["acting_versions"].as_u64().unwrap();
    assert!(acting > 0 && acting <= 2_204_160, "{json}");
}

#[test]
fn show_prints_options_rendered_text_and_asks() {
    let small = example("small.toml");
    // Index 1 = river_needs_you, canoe, give_25.
    let text = tla_ok(&["versions", "show", &small, "1"]);
    assert!(text.contains("version 1 of 18: allowed"), "{text}");
    assert!(text.contains("give_25"), "{text}");
    assert!(
        text.contains("rendered:    The river needs you [Give $25]"),
        "{text}"
    );
    assert!(text.contains("asks to act: yes"), "{text}");

    let json = tla_json(&["versions", "show", &small, "17"]);
    assert_eq!(json["allowed"], false);
    assert_eq!(json["excluded_by"][0]["a"], "headline.first_gift");
    assert_eq!(json["options"][2]["option"], "learn_more");
    assert_eq!(json["asks_to_act"], false);
    assert_eq!(json["ask"], 25.0);

    let json = tla_json(&["versions", "show", &example("fundraising.toml"), "2211839"]);
    assert_eq!(json["options"][0]["option"], "every_dollar");
    assert_eq!(json["options"][3]["option"], "chip_in_today");
    assert_eq!(json["options"][4]["option"], "see_map");

    let output = tla(&["versions", "show", &small, "18"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("accepted: 0 to 17"), "{stderr}");
}

#[test]
fn sample_is_seeded_and_only_returns_allowed_versions() {
    let fundraising = example("fundraising.toml");
    let args = [
        "versions",
        "sample",
        &fundraising,
        "--n",
        "50",
        "--seed",
        "7",
    ];
    let first = tla_json(&args);
    let second = tla_json(&args);
    assert_eq!(first, second, "the same seed gives the same versions");
    assert_eq!(first["seed"], 7);
    let versions = first["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 50);

    // Every sampled version of small.toml is allowed (17 and 5 x ... are not).
    let small = example("small.toml");
    let json = tla_json(&["versions", "sample", &small, "--n", "200", "--seed", "1"]);
    for version in json["versions"].as_array().unwrap() {
        let index = version["index"].as_u64().unwrap();
        assert!(
            index != 14 && index != 17,
            "excluded version {index} sampled"
        );
    }
    let text = tla_ok(&["versions", "sample", &small, "--n", "3", "--seed", "1"]);
    assert!(text.starts_with("# seed 1: 3 versions"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
}

#[test]
fn list_pages_through_allowed_versions_in_index_order() {
    let small = example("small.toml");
    let json = tla_json(&["versions", "list", &small, "--limit", "100"]);
    let indices: Vec<u64> = json["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["index"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..18).filter(|&i| i != 14 && i != 17).collect();
    assert_eq!(indices, expected);
    assert_eq!(json["next_offset"], serde_json::Value::Null);

    let json = tla_json(&["versions", "list", &small, "--offset", "12", "--limit", "2"]);
    assert_eq!(json["versions"][0]["index"], 12);
    assert_eq!(json["versions"][1]["index"], 13);
    assert_eq!(json["next_offset"], 14);

    let fundraising = example("fundraising.toml");
    let text = tla_ok(&[
        "versions",
        "list",
        &fundraising,
        "--offset",
        "1000",
        "--limit",
        "5",
    ]);
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.contains("# more from --offset 1005"), "{text}");
}

#[test]
fn bad_spec_fails_naming_the_field() {
    let small = std::fs::read_to_string(example("small.toml")).unwrap();
    let bad_ask = TempSpec::new(
        "bad-ask.toml",
        &small.replace("ask = 10, asks_action", "ask = 0, asks_action"),
    );
    let output = tla(&["versions", "count", bad_ask.path()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("components[2].options[0].ask"), "{stderr}");
    assert!(stderr.contains("positive, finite"), "{stderr}");
    assert!(
        stderr.contains(bad_ask.path()),
        "the message names the file: {stderr}"
    );

    let unknown_field = TempSpec::new(
        "unknown-field.toml",
        &small.replace(
            "objective = \"value\"",
            "objective = \"value\"\nbudget = 100",
        ),
    );
    let output = tla(&["versions", "count", unknown_field.path()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field `budget`"), "{stderr}");

    let bad_exclusion = TempSpec::new(
        "bad-exclusion.toml",
        &small.replace("a = \"headline.first_gift\"", "a = \"headline.nope\""),
    );
    let output = tla(&["versions", "show", bad_exclusion.path(), "0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exclusions[0].a"), "{stderr}");

    let json_spec = TempSpec::new(
        "no-segments.json",
        r#"{"version": 1, "name": "x", "segments": [], "components": [{"name": "a", "options": [{"name": "b"}]}]}"#,
    );
    let output = tla(&["versions", "count", json_spec.path()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("segments: none given"), "{stderr}");

    let wrong_extension = TempSpec::new("spec.yaml", &small);
    let output = tla(&["versions", "count", wrong_extension.path()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(".toml and .json"), "{stderr}");
}
