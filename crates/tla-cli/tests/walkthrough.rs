//! `docs/walkthrough.md` works as written: every `bash` block of the page is run, in
//! order, in one shell, against a `tla serve` this test starts on 127.0.0.1, from a
//! directory holding the page's example specs.

mod common;

use common::{Server, TempDir};

/// The `bash` blocks of a Markdown page, in order.
fn bash_blocks(page: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        match &mut current {
            None if line.trim_start() == "```bash" => current = Some(String::new()),
            None => {}
            Some(block) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

#[test]
fn every_command_of_the_walkthrough_works() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let page = std::fs::read_to_string(root.join("docs/walkthrough.md")).unwrap();
    let blocks = bash_blocks(&page);
    assert!(blocks.len() >= 8, "{} bash blocks", blocks.len());
    let work = TempDir::new("walkthrough");
    std::fs::create_dir_all(work.0.join("examples")).unwrap();
    for spec in ["small.toml", "small-revised.toml"] {
        std::fs::copy(
            root.join("examples").join(spec),
            work.0.join("examples").join(spec),
        )
        .unwrap();
    }
    let admin = tla_server::auth::new_key([9; 22]).token;
    let server = Server::start(&work.0.join("data"), &admin);
    let tla = std::path::Path::new(env!("CARGO_BIN_EXE_tla"));
    let path = format!(
        "{}:{}",
        tla.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = blocks.join("\n");
    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work.0)
        .env("PATH", path)
        .env("TLA_SERVER", &server.address)
        .env("TLA_KEY", &admin)
        .env_remove("TLA_DATA")
        .output()
        .unwrap();
    server.stop();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    // The data directory reads back after the revision: a decision export names each
    // decision's segment by the spec of the revision it was served under.
    let id = stdout
        .split("created ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    for what in ["decisions", "events"] {
        let out = work.0.join(format!("{what}.csv"));
        let export = std::process::Command::new(tla)
            .args(["export", "--campaign", &id, "--what", what, "--out"])
            .arg(&out)
            .arg("--data")
            .arg(work.0.join("data"))
            .output()
            .unwrap();
        assert!(
            export.status.success(),
            "{}",
            String::from_utf8_lossy(&export.stderr)
        );
        let csv = std::fs::read_to_string(&out).unwrap();
        assert!(csv.contains("volunteers") || what == "events", "{csv}");
        assert!(csv.contains("past-donors"), "{csv}");
    }
    for expected in [
        "created c_",
        "retry answered 200",
        "already created with this idempotency key",
        "is now at revision 2",
        "added:    headline.new_bridge",
        "retired:  image.heron",
        "\"reason\": \"bridge news\"",
        "A new bridge for the river [Donate $10]",
        "archived",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}
