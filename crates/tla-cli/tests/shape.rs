//! Guards of the workspace's shape, read from its source files: the core's dependency
//! list stays tiny, and no test decides by the machine's speed.
//!
//! The core's build without default features runs in `.ci/run`; these checks are the
//! part that reading files can do.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The core's normal dependencies: these three always; anything else optional, behind a
/// feature, and one of the few the core's features name.
#[test]
fn core_dependencies_stay_rand_rand_distr_thiserror_and_optional_serde() {
    const ALWAYS: [&str; 3] = ["rand", "rand_distr", "thiserror"];
    // serde: the `serde` feature; toml and serde_json: the `text` feature (spec text in,
    // values out); utoipa: the `openapi` feature (schemas of the served types).
    const OPTIONAL: [&str; 4] = ["serde", "toml", "serde_json", "utoipa"];
    let text = std::fs::read_to_string(workspace().join("crates/tla-core/Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let dependencies = manifest["dependencies"].as_table().unwrap();
    for name in ALWAYS {
        assert!(dependencies.contains_key(name), "tla-core lost {name}");
    }
    for (name, spec) in dependencies {
        if ALWAYS.contains(&name.as_str()) {
            continue;
        }
        assert!(
            OPTIONAL.contains(&name.as_str()),
            "tla-core depends on {name}; its dependencies stay rand, rand_distr and thiserror, \
             with {OPTIONAL:?} optional behind features"
        );
        let optional = spec
            .as_table()
            .and_then(|table| table.get("optional"))
            .and_then(toml::Value::as_bool)
            .unwrap_or(false);
        assert!(optional, "tla-core's dependency {name} must be optional");
    }
    for section in ["target", "build-dependencies"] {
        assert!(
            !manifest.contains_key(section),
            "tla-core has a [{section}] section; its dependencies live in [dependencies] only"
        );
    }
}

/// Every Rust file of the workspace's tests, benches, examples and sources.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The test code of a file: all of a file under `tests/`, else what follows its
/// `#[cfg(test)]` marker (unit tests sit at the end of a module here).
fn test_code(path: &Path, text: &str) -> Option<String> {
    if path.components().any(|part| part.as_os_str() == "tests") {
        return Some(text.to_owned());
    }
    let at = text.find("#[cfg(test)]").or(text.find("#[cfg(all(test"))?;
    Some(text[at..].to_owned())
}

/// Statements of test code that decide by elapsed time: an assertion on a duration, a
/// loop that runs while time is left, or a time budget after which a loop stops doing
/// its work (what it covers would depend on the machine). Waiting for a server against
/// a `deadline` that fails the test when passed is allowed: it decides nothing unless
/// the server hangs.
fn timed_lines(code: &str) -> Vec<String> {
    const TIMING: [&str; 4] = ["elapsed()", "as_secs", "as_millis", "Instant::now"];
    let timing = |text: &str| TIMING.iter().any(|word| text.contains(word));
    let lines: Vec<&str> = code.lines().map(str::trim).collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        if line.starts_with("//") {
            continue;
        }
        if line.starts_with("assert") || line.starts_with("prop_assert") {
            // The whole statement: rustfmt splits a long assertion over several lines.
            let end = (at..lines.len().min(at + 12))
                .find(|&i| lines[i].ends_with(';'))
                .unwrap_or(at);
            let statement = lines[at..=end].join(" ");
            if timing(&statement) && !statement.contains("deadline") {
                found.push(statement);
            }
            continue;
        }
        // `while started.elapsed() < budget {`: work bounded by time.
        if line.starts_with("while ") && timing(line) && !line.contains("deadline") {
            found.push((*line).to_owned());
            continue;
        }
        // `if Instant::now() > deadline { break; }`: a budget that skips work.
        if line.starts_with("if ") && timing(line) && (line.contains('>') || line.contains('<')) {
            let next: String = lines[at..(at + 3).min(lines.len())].join(" ");
            if next.contains("break") || next.contains("return") {
                found.push((*line).to_owned());
            }
        }
    }
    found
}

#[test]
fn no_test_asserts_on_time_or_stops_on_a_time_budget() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    if workspace().join("fuzz").is_dir() {
        rust_files(&workspace().join("fuzz"), &mut files);
    }
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let mut offenders = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let Some(code) = test_code(path, &text) else {
            continue;
        };
        for line in timed_lines(&code) {
            let shown = path.strip_prefix(workspace()).unwrap_or(path);
            offenders.push(format!("{}: {line}", shown.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "tests that decide by the machine's speed (assert on counts, bound loops by \
         count):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_timing_check_finds_what_it_looks_for() {
    let asserted = "let started = Instant::now();\nassert!(started.elapsed() < limit);";
    assert_eq!(timed_lines(asserted).len(), 1);
    let split = "assert!(\n    started.elapsed() < Duration::from_secs(60),\n    \"too slow\"\n);";
    assert_eq!(timed_lines(split).len(), 1);
    let bounded = "while started.elapsed() < BUDGET {\n    run_case();\n}";
    assert_eq!(timed_lines(bounded).len(), 1);
    let reversed = "if deadline < Instant::now() {\n    break;\n}";
    assert_eq!(timed_lines(reversed).len(), 1);
    let waited = "assert!(\n    Instant::now() < deadline,\n    \"the server did not stop\"\n);";
    assert!(timed_lines(waited).is_empty());
    let budget =
        "for case in cases {\n    if Instant::now() > deadline {\n        break;\n    }\n}";
    assert_eq!(timed_lines(budget).len(), 1);
    let wait =
        "loop {\n    if Instant::now() > deadline {\n        panic!(\"no answer\");\n    }\n}";
    assert!(timed_lines(wait).is_empty());
    let counted = "for case in 0..CASES {\n    check(case);\n}";
    assert!(timed_lines(counted).is_empty());
}
