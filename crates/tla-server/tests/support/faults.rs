//! An event log and a decision log that fail on demand, around the real ones: a full
//! disk, a failed commit (an I/O error such as a failed `fsync`), and a write that
//! stops halfway through a batch after storing its first half. Event appends are
//! faulted; reads and corrections pass through. The tests switch the
//! fault on and off and check that nothing acknowledged is lost, nothing
//! unacknowledged is counted, and every decision served is logged.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tla_store::{
    AppendOutcome, CorrectionOutcome, DecisionLog, DecisionRow, EventLog, NewCorrection, NewEvent,
    StoreError, StoredCorrection, StoredEvent,
};

/// What the next writes do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Write normally.
    None = 0,
    /// Refuse as a full disk does (`SQLITE_FULL`): nothing stored.
    DiskFull = 1,
    /// Fail the commit with an I/O error (a failed `fsync`): nothing stored.
    FailedCommit = 2,
    /// Store the first half of the batch, then fail with an I/O error.
    FailedMidBatch = 3,
}

/// The switch shared by the wrappers of one test.
#[derive(Debug, Default)]
pub struct Faults {
    mode: AtomicU8,
    /// Writes refused or cut so far, for the test to check the fault was hit.
    pub hits: Mutex<u64>,
}

impl Faults {
    /// Sets what the next writes do.
    pub fn set(&self, fault: Fault) {
        self.mode.store(fault as u8, Ordering::SeqCst);
    }

    fn current(&self) -> Fault {
        match self.mode.load(Ordering::SeqCst) {
            1 => Fault::DiskFull,
            2 => Fault::FailedCommit,
            3 => Fault::FailedMidBatch,
            _ => Fault::None,
        }
    }

    fn hit(&self) {
        *self.hits.lock().unwrap() += 1;
    }
}

fn full() -> StoreError {
    StoreError::StorageFull {
        context: "appending",
        detail: "database or disk is full (injected)".into(),
    }
}

fn io_failure() -> StoreError {
    StoreError::Io {
        path: PathBuf::from("tla.db-wal"),
        source: Arc::new(std::io::Error::other("fsync failed (injected)")),
    }
}

/// An [`EventLog`] that injects [`Faults`] into its appends; reads pass through.
pub struct FaultyEventLog<L> {
    /// The real log.
    pub inner: L,
    /// The switch.
    pub faults: Arc<Faults>,
}

impl<L: EventLog> EventLog for FaultyEventLog<L> {
    fn append(&self, batch: &[NewEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        match self.faults.current() {
            Fault::None => self.inner.append(batch),
            Fault::DiskFull => {
                self.faults.hit();
                Err(full())
            }
            Fault::FailedCommit => {
                self.faults.hit();
                Err(io_failure())
            }
            Fault::FailedMidBatch => {
                self.faults.hit();
                self.inner.append(&batch[..batch.len() / 2])?;
                Err(io_failure())
            }
        }
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.read_after(after, limit)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        self.inner.last_seq()
    }

    fn find_event(
        &self,
        campaign_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.find_event(campaign_id, event_id)
    }

    fn append_correction(
        &self,
        correction: &NewCorrection,
    ) -> Result<CorrectionOutcome, StoreError> {
        self.inner.append_correction(correction)
    }

    fn corrections(&self, campaign_id: &str) -> Result<Vec<StoredCorrection>, StoreError> {
        self.inner.corrections(campaign_id)
    }
}

/// A [`DecisionLog`] that injects [`Faults`] into its appends.
pub struct FaultyDecisionLog<D> {
    /// The real log.
    pub inner: D,
    /// The switch.
    pub faults: Arc<Faults>,
}

impl<D: DecisionLog> DecisionLog for FaultyDecisionLog<D> {
    fn append_decisions(&self, rows: &[DecisionRow]) -> Result<usize, StoreError> {
        match self.faults.current() {
            Fault::None => self.inner.append_decisions(rows),
            Fault::DiskFull => {
                self.faults.hit();
                Err(full())
            }
            Fault::FailedCommit => {
                self.faults.hit();
                Err(io_failure())
            }
            Fault::FailedMidBatch => {
                self.faults.hit();
                self.inner.append_decisions(&rows[..rows.len() / 2])?;
                Err(io_failure())
            }
        }
    }
}
