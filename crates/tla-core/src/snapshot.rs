//! Model snapshots: the learned state of a campaign's model as bytes, so a restart
//! loads it instead of replaying every event.
//!
//! The format is little-endian and versioned: the magic `TLAM`, a format number (3; 1
//! and 2 are still read), a model kind, then each model's weights as `(mean, variance)` pairs of `f64` preceded by
//! their count. Restoring checks the kind and every count against the campaign's
//! design, so a snapshot is never applied to a model of another shape. `f64` values are
//! stored bit for bit: a restored model equals the saved one exactly, which is what lets
//! "snapshot + replay of newer events" equal "replay of every event".

use crate::model::Belief;

/// Magic bytes at the start of every snapshot.
pub const MAGIC: &[u8; 4] = b"TLAM";
/// The snapshot format this build writes. Format 2 added, to the engine's counts,
/// conversions of unknown amount and the value learned; format 3, the campaign
/// revision the engine serves; formats 1 and 2 are still read ([`OLDEST_FORMAT`]).
pub const FORMAT: u32 = 3;
/// The oldest snapshot format this build reads.
pub const OLDEST_FORMAT: u32 = 1;

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot, or of another format version.
    #[error("not a TLA model snapshot of format {OLDEST_FORMAT} to {FORMAT}: {0}")]
    Format(String),
    /// A snapshot of a model of another shape or kind.
    #[error("snapshot does not fit this campaign's model: {0}")]
    Mismatch(String),
}

/// Appends values to a snapshot.
#[derive(Debug)]
pub struct Writer {
    bytes: Vec<u8>,
    /// The format being written.
    format: u32,
}

impl Writer {
    /// A snapshot of model `kind`, in [`FORMAT`].
    pub fn new(kind: u8) -> Self {
        Self::with_format(kind, FORMAT)
    }

    /// A snapshot of model `kind` in `format` ([`OLDEST_FORMAT`] to [`FORMAT`]; the
    /// caller writes that format's layout).
    pub(crate) fn with_format(kind: u8, format: u32) -> Self {
        debug_assert!((OLDEST_FORMAT..=FORMAT).contains(&format));
        let mut bytes = Vec::with_capacity(1024);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&format.to_le_bytes());
        bytes.push(kind);
        Self { bytes, format }
    }

    /// The format being written.
    pub fn format(&self) -> u32 {
        self.format
    }

    /// Appends a u64.
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends an f64, bit for bit.
    pub fn f64(&mut self, value: f64) {
        self.bytes.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    /// Appends a length and the bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends a count and the beliefs.
    pub fn beliefs(&mut self, beliefs: &[Belief]) {
        self.u64(beliefs.len() as u64);
        for belief in beliefs {
            self.f64(belief.mean);
            self.f64(belief.variance);
        }
    }

    /// The bytes.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads values from a snapshot.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    /// The format the snapshot was written in.
    format: u32,
}

impl<'a> Reader<'a> {
    /// Checks the header; the model kind must be `kind`.
    pub fn new(bytes: &'a [u8], kind: u8) -> Result<Self, SnapshotError> {
        if bytes.len() < 9 || &bytes[..4] != MAGIC {
            return Err(SnapshotError::Format("missing the TLAM header".into()));
        }
        let format = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if !(OLDEST_FORMAT..=FORMAT).contains(&format) {
            return Err(SnapshotError::Format(format!(
                "format {format}; this build reads {OLDEST_FORMAT} to {FORMAT}"
            )));
        }
        if bytes[8] != kind {
            return Err(SnapshotError::Mismatch(format!(
                "model kind {} where {kind} was expected",
                bytes[8]
            )));
        }
        Ok(Self {
            bytes: &bytes[9..],
            format,
        })
    }

    /// The format the snapshot was written in, [`OLDEST_FORMAT`] to [`FORMAT`].
    pub fn format(&self) -> u32 {
        self.format
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(SnapshotError::Format("truncated".into()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// Reads a u64.
    pub fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// Reads an f64.
    pub fn f64(&mut self) -> Result<f64, SnapshotError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// Reads bytes written by [`Writer::bytes`].
    pub fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let len = usize::try_from(self.u64()?)
            .map_err(|_| SnapshotError::Format("length overflows".into()))?;
        self.take(len)
    }

    /// Reads beliefs into `out`, which must have the stored count.
    pub fn beliefs(&mut self, what: &str, out: &mut [Belief]) -> Result<(), SnapshotError> {
        let count = self.u64()?;
        if count != out.len() as u64 {
            return Err(SnapshotError::Mismatch(format!(
                "{what} has {count} weights in the snapshot and {} in the model",
                out.len()
            )));
        }
        for belief in out.iter_mut() {
            let mean = self.f64()?;
            let variance = self.f64()?;
            if !(mean.is_finite() && variance.is_finite() && variance > 0.0) {
                return Err(SnapshotError::Format(format!(
                    "{what} holds a weight with mean {mean} and variance {variance}"
                )));
            }
            *belief = Belief::new(mean, variance);
        }
        Ok(())
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<(), SnapshotError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(SnapshotError::Format(format!(
                "{} unexpected trailing bytes",
                self.bytes.len()
            )))
        }
    }
}
