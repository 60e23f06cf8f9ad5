//! `tla serve --demo` end to end: the real binary on a free port, its simulated
//! audience reporting progress, then a clean stop on SIGTERM.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Removes the data directory and kills the server if the test fails half way.
struct Cleanup {
    data: PathBuf,
    child: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The impressions count of a progress line (`demo: 12,340 impressions, ...`).
fn impressions(line: &str) -> Option<u64> {
    let count = line.strip_prefix("demo: ")?.split_once(" impressions,")?.0;
    count.replace(',', "").parse().ok()
}

#[test]
fn demo_serves_a_simulated_audience_and_stops_cleanly_on_sigterm() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let data = std::env::temp_dir().join(format!("tla-demo-test-{}-{nanos}", std::process::id()));
    let mut cleanup = Cleanup {
        data: data.clone(),
        child: None,
    };
    let child = Command::new(env!("CARGO_BIN_EXE_tla"))
        .args([
            "serve",
            "--demo",
            "--demo-rate",
            "100",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(&data)
        .env_remove("TLA_ADMIN_KEY")
        .env_remove("TLA_LISTEN")
        .env_remove("TLA_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the tla binary starts");
    let child = cleanup.child.insert(child);
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let progress = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                printed.push(line.clone());
                if impressions(&line).is_some_and(|n| n > 0) {
                    break line;
                }
            }
            Err(error) => panic!("no demo progress within 60 s ({error}); printed: {printed:#?}"),
        }
    };
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("tla serving on http://127.0.0.1:")),
        "{printed:#?}"
    );
    assert!(
        progress.contains("% of the oracle's expected value (even split: "),
        "{progress}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the server did not stop within 60 s of SIGTERM; printed: {printed:#?}")
            }
        }
    }
    reader.join().expect("reader thread");
    let mut child = cleanup.child.take().expect("child");
    let exit = child.wait().expect("the server exits");
    assert!(exit.success(), "exit {exit:?}; printed: {printed:#?}");
    assert_eq!(
        printed.last().map(String::as_str),
        Some("tla stopped cleanly"),
        "{printed:#?}"
    );
}
