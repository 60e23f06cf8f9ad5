//! Appends numbered events to a data directory forever, printing one line per
//! acknowledged event, for crash tests: run it, SIGKILL it, reopen the directory,
//! and check that every printed event is stored.
//!
//! ```text
//! cargo run --release -p tla-store --example append_loop -- DATA_DIR [BATCH_SIZE]
//! ```
//!
//! Each line is `SEQ EVENT_ID`, written and flushed only after the batch holding the
//! event was committed durably. Event ids are decimal numbers continuing from the
//! last sequence number already stored, in campaign `crash-test`, so after a restart
//! event `n` is normally stored at seq `n`. Exits 0 when stdout is closed, 1 on an
//! error (printed to stderr), 2 on bad arguments.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use tla_store::{EventKind, EventLog, NewEvent, Store};

fn main() -> ExitCode {
    let mut arguments = std::env::args_os().skip(1);
    let Some(dir) = arguments.next().map(PathBuf::from) else {
        eprintln!("usage: append_loop DATA_DIR [BATCH_SIZE]");
        return ExitCode::from(2);
    };
    let batch_size = match arguments.next().map(|size| size.into_string()) {
        None => 10,
        Some(Ok(size)) => match size.parse::<usize>() {
            Ok(size) if size > 0 => size,
            _ => {
                eprintln!("batch size {size:?} is not a positive integer");
                return ExitCode::from(2);
            }
        },
        Some(Err(size)) => {
            eprintln!("batch size {size:?} is not a positive integer");
            return ExitCode::from(2);
        }
    };
    match append_forever(&dir, batch_size) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("append_loop: {message}");
            ExitCode::FAILURE
        }
    }
}

fn append_forever(dir: &std::path::Path, batch_size: usize) -> Result<(), String> {
    let store = Store::open(dir).map_err(|error| error.to_string())?;
    let log = store.event_log();
    let mut next_number = log.last_seq().map_err(|error| error.to_string())? + 1;
    let stdout = std::io::stdout();
    loop {
        let batch: Vec<NewEvent> = (next_number..next_number + batch_size as u64)
            .map(|number| NewEvent {
                campaign_id: "crash-test".to_owned(),
                event_id: number.to_string(),
                decision_id: format!("decision-{number}"),
                kind: EventKind::Impression,
                value: 0.0,
                amount_known: true,
                segment: 0,
                version: number,
                decided_at_ms: 0,
                at_ms: 0,
            })
            .collect();
        let outcomes = log.append(&batch).map_err(|error| error.to_string())?;
        let mut out = stdout.lock();
        for (event, outcome) in batch.iter().zip(&outcomes) {
            if writeln!(out, "{} {}", outcome.seq(), event.event_id).is_err() {
                return Ok(());
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
        next_number += batch_size as u64;
    }
}
