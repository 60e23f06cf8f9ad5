//! A background thread that copies the write-ahead log back into the database file.
//!
//! SQLite's automatic checkpoint runs inside the commit that pushes the log past its
//! threshold, so one group commit in a few hundred would stall for tens of
//! milliseconds copying pages while every appender waits. Instead, the group-commit
//! leader counts the rows it commits and, every [`ROWS_PER_CHECKPOINT`] rows, wakes
//! this thread, which runs a `PASSIVE` checkpoint on its own connection: it copies
//! what is committed without blocking the writer, on the other core.
//!
//! A passive checkpoint that races with the writer never finishes the log (new frames
//! keep arriving), and SQLite only starts the log file over after a finished one. So
//! the writer keeps SQLite's automatic checkpoint with a larger threshold
//! (`wal_autocheckpoint`, see `schema.rs`): when it fires, this thread has already
//! copied nearly everything, the writer copies the last few frames, and the next
//! transaction starts the log over. The log file stays bounded.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;

/// Committed rows between two background checkpoints (about 1,000 log pages for
/// event rows).
pub(crate) const ROWS_PER_CHECKPOINT: usize = 5_000;

#[derive(Debug, Default)]
struct Signal {
    state: Mutex<SignalState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    rows_since_request: usize,
    requested: bool,
    stop: bool,
}

/// Owns the checkpoint thread; stops and joins it when dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to the database.
    pub(crate) fn start(connection: Connection) -> std::io::Result<Checkpointer> {
        let signal = Arc::new(Signal::default());
        let thread_signal = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("tla-store-checkpoint".to_owned())
            .spawn(move || run(&connection, &thread_signal))?;
        Ok(Checkpointer {
            signal,
            thread: Some(thread),
        })
    }

    /// Records rows committed; wakes the thread every [`ROWS_PER_CHECKPOINT`].
    pub(crate) fn note_committed_rows(&self, rows: usize) {
        let mut state = self
            .signal
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.rows_since_request += rows;
        if state.rows_since_request >= ROWS_PER_CHECKPOINT {
            state.rows_since_request = 0;
            state.requested = true;
            self.signal.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.signal
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.signal.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // A panic in the thread has nothing to hand back: checkpoints are an
            // optimization, and the writer's own automatic checkpoint still runs.
            let _ = thread.join();
        }
    }
}

fn run(connection: &Connection, signal: &Signal) {
    loop {
        {
            let mut state = signal.state.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.requested && !state.stop {
                state = signal
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
            state.requested = false;
        }
        // An error here (the log is busy, the disk is full) loses nothing: the
        // committed frames stay in the log, and the next checkpoint, ours or the
        // writer's automatic one, copies them.
        let _ = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}
