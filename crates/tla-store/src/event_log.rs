//! The event log: the [`EventLog`] trait, its record types, and [`MemoryEventLog`].
//!
//! The log is append-only. Each stored event has a sequence number (`seq`), strictly
//! increasing in the order events were committed, starting at 1. An event is
//! identified by `(campaign_id, event_id)`; appending an id that is already stored
//! stores nothing: an exact repeat ([`NewEvent::repeats`]) is reported a duplicate with
//! the stored copy's `seq`, another content under the same id a conflict.
//!
//! Corrections ([`crate::correction`]) sit in the same log: an event can be retracted or
//! given a new amount, by its id, without rewriting the event itself.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::correction::{
    CorrectionOutcome, NewCorrection, Standing, StoredCorrection, standing, validate_correction,
};
use crate::error::StoreError;

/// What happened in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The ad was shown.
    Impression,
    /// The ad was clicked.
    Click,
    /// The person converted (donated, signed up); `value` is the amount.
    Conversion,
    /// Money was spent on the impression; `value` is the spend.
    Cost,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 4] = [
        EventKind::Impression,
        EventKind::Click,
        EventKind::Conversion,
        EventKind::Cost,
    ];

    /// The lowercase name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Impression => "impression",
            EventKind::Click => "click",
            EventKind::Conversion => "conversion",
            EventKind::Cost => "cost",
        }
    }

    /// Parses a name written by [`EventKind::as_str`].
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// An event to append. Ids are the server's strings; the store does not interpret
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The campaign the event belongs to. Event ids are unique within a campaign.
    pub campaign_id: String,
    /// The client-supplied id; a repeat is reported as a duplicate.
    pub event_id: String,
    /// The decision (impression opportunity) this outcome joins to.
    pub decision_id: String,
    /// What happened.
    pub kind: EventKind,
    /// Donation amount for a conversion, spend for a cost, 0 otherwise (and 0 for a
    /// conversion of unknown amount).
    pub value: f64,
    /// Whether `value` is the event's amount: false only for a conversion sent without
    /// one, whose amount is unknown (not 0). Events stored before schema version 4
    /// read as true.
    pub amount_known: bool,
    /// The segment the decision was made for.
    pub segment: u32,
    /// The creative (version index) that was served. At most `i64::MAX`.
    pub version: u64,
    /// When the decision was made, in milliseconds since the Unix epoch.
    pub decided_at_ms: i64,
    /// When the event happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

impl NewEvent {
    /// Whether this event is an exact repeat of a stored event with the same
    /// `(campaign_id, event_id)`, by [`is_exact_repeat`]. Segment, version and decision
    /// time come from the decision id, so they are the same too. The event time `at_ms`
    /// is not compared: a client that retries an event without `at` gets the server's
    /// clock, a new time each try, and the time teaches the model nothing; the stored
    /// time is kept.
    pub fn repeats(&self, stored: &StoredEvent) -> bool {
        is_exact_repeat(self.content(), stored.content())
    }

    /// The part of the event an exact repeat is judged on.
    pub fn content(&self) -> EventContent<'_> {
        EventContent {
            kind: self.kind,
            decision_id: &self.decision_id,
            value: self.value,
            amount_known: self.amount_known,
        }
    }
}

/// The part of an event that tells an exact repeat from a conflict when an event id
/// is sent again: see [`is_exact_repeat`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventContent<'a> {
    /// See [`NewEvent::kind`].
    pub kind: EventKind,
    /// See [`NewEvent::decision_id`].
    pub decision_id: &'a str,
    /// See [`NewEvent::value`].
    pub value: f64,
    /// See [`NewEvent::amount_known`].
    pub amount_known: bool,
}

/// Whether an event `sent` under an id already stored (with content `stored`) is an
/// exact repeat of it (a duplicate, acknowledged again) rather than a conflict: the
/// same kind, the same decision and the same value (numerically equal, and known or
/// unknown alike). Every [`EventLog`] decides with this one rule.
///
/// One exception keeps retries safe across the upgrade to schema version 4: a
/// conversion stored as a known amount of 0 is repeated by a conversion of unknown
/// amount. Before version 4 a conversion sent without a value was stored as 0 (and
/// reads back as known), while the same request now arrives as an unknown amount.
/// The reverse (a known 0 sent after an unknown amount was stored) is still a
/// conflict.
pub fn is_exact_repeat(sent: EventContent<'_>, stored: EventContent<'_>) -> bool {
    let same_amount = sent.value == stored.value && sent.amount_known == stored.amount_known;
    let unknown_after_stored_zero = sent.kind == EventKind::Conversion
        && !sent.amount_known
        && stored.amount_known
        && stored.value == 0.0;
    sent.kind == stored.kind
        && sent.decision_id == stored.decision_id
        && (same_amount || unknown_after_stored_zero)
}

/// A stored event: a [`NewEvent`] with the sequence number it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the log, strictly increasing, starting at 1.
    pub seq: u64,
    /// See [`NewEvent::campaign_id`].
    pub campaign_id: String,
    /// See [`NewEvent::event_id`].
    pub event_id: String,
    /// See [`NewEvent::decision_id`].
    pub decision_id: String,
    /// See [`NewEvent::kind`].
    pub kind: EventKind,
    /// See [`NewEvent::value`].
    pub value: f64,
    /// See [`NewEvent::amount_known`].
    pub amount_known: bool,
    /// See [`NewEvent::segment`].
    pub segment: u32,
    /// See [`NewEvent::version`].
    pub version: u64,
    /// See [`NewEvent::decided_at_ms`].
    pub decided_at_ms: i64,
    /// See [`NewEvent::at_ms`].
    pub at_ms: i64,
}

impl StoredEvent {
    /// The part of the event an exact repeat is judged on.
    pub fn content(&self) -> EventContent<'_> {
        EventContent {
            kind: self.kind,
            decision_id: &self.decision_id,
            value: self.value,
            amount_known: self.amount_known,
        }
    }

    /// Joins an event to the sequence number it was stored under.
    pub fn from_new(seq: u64, event: NewEvent) -> StoredEvent {
        StoredEvent {
            seq,
            campaign_id: event.campaign_id,
            event_id: event.event_id,
            decision_id: event.decision_id,
            kind: event.kind,
            value: event.value,
            amount_known: event.amount_known,
            segment: event.segment,
            version: event.version,
            decided_at_ms: event.decided_at_ms,
            at_ms: event.at_ms,
        }
    }
}

/// What happened to one event of an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppendOutcome {
    /// Stored now, under this sequence number.
    Appended {
        /// The new event's sequence number.
        seq: u64,
    },
    /// `(campaign_id, event_id)` was already stored (earlier, or earlier in the same
    /// batch) with the same content ([`NewEvent::repeats`]); nothing was written.
    Duplicate {
        /// The sequence number of the stored copy.
        seq: u64,
    },
    /// `(campaign_id, event_id)` was already stored with another content (another
    /// kind, decision or value); nothing was written and the stored event is kept.
    Conflict {
        /// The sequence number of the stored event with this id.
        seq: u64,
    },
}

impl AppendOutcome {
    /// The sequence number the event is stored under, either way.
    pub fn seq(self) -> u64 {
        match self {
            AppendOutcome::Appended { seq }
            | AppendOutcome::Duplicate { seq }
            | AppendOutcome::Conflict { seq } => seq,
        }
    }

    /// True for [`AppendOutcome::Conflict`].
    pub fn is_conflict(self) -> bool {
        matches!(self, AppendOutcome::Conflict { .. })
    }

    /// True for [`AppendOutcome::Duplicate`].
    pub fn is_duplicate(self) -> bool {
        matches!(self, AppendOutcome::Duplicate { .. })
    }
}

/// Checks that an event can be stored: its version fits SQLite's signed integers and
/// its value is a finite number (0 when its amount is unknown). Returns the version as stored. Every [`EventLog`]
/// applies it to the whole batch before storing anything.
pub fn validate_event(event: &NewEvent) -> Result<i64, StoreError> {
    let version = crate::error::to_sql_int("version", event.version)?;
    if !event.value.is_finite() {
        return Err(StoreError::InvalidInput(format!(
            "event {:?} of campaign {:?} has value {}; the value must be a finite number",
            event.event_id, event.campaign_id, event.value
        )));
    }
    if !event.amount_known && event.value != 0.0 {
        return Err(StoreError::InvalidInput(format!(
            "event {:?} of campaign {:?} has value {} and an unknown amount; an event of unknown amount has value 0",
            event.event_id, event.campaign_id, event.value
        )));
    }
    Ok(version)
}

/// The durable, ordered, deduplicated event log, with its corrections.
///
/// Behind a trait so that a replicated stream can replace SQLite later; every
/// implementation must give the same outcomes for the same appends and corrections
/// (the integration tests compare [`crate::SqliteEventLog`] with [`MemoryEventLog`]).
pub trait EventLog: Send + Sync {
    /// Appends a batch durably (one transaction). Each event gets a sequence number,
    /// or is reported a duplicate when `(campaign_id, event_id)` is already stored
    /// with the same content ([`NewEvent::repeats`]), or a conflict when it is stored
    /// with another (also within the same batch). Returns one outcome per input, in
    /// order. Must not return before the commit is durable.
    fn append(&self, batch: &[NewEvent]) -> Result<Vec<AppendOutcome>, StoreError>;

    /// Events with `seq > after`, ascending, at most `limit`.
    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Highest sequence number stored (0 if none).
    fn last_seq(&self) -> Result<u64, StoreError>;

    /// The stored event `(campaign_id, event_id)`, if any, as first stored
    /// (corrections do not change it).
    fn find_event(
        &self,
        campaign_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError>;

    /// Records a correction of a stored event durably (it must not return before the
    /// record is on disk), with the value the event had before it (the event's own,
    /// or the last correction's). Nothing is recorded for an event that is not stored
    /// ([`CorrectionOutcome::UnknownEvent`]) or already retracted
    /// ([`CorrectionOutcome::AlreadyRetracted`]: a retraction is final).
    fn append_correction(
        &self,
        correction: &NewCorrection,
    ) -> Result<CorrectionOutcome, StoreError>;

    /// Every correction of one campaign, in the order they were recorded.
    fn corrections(&self, campaign_id: &str) -> Result<Vec<StoredCorrection>, StoreError>;

    /// The campaigns created through a log shared by several servers, in the order
    /// created (the first record of an id wins); every server starts each of them. A
    /// log of one server holds none: its campaigns are in its store.
    fn shared_campaigns(&self) -> Result<Vec<crate::CampaignRow>, StoreError> {
        Ok(Vec::new())
    }
}

/// An [`EventLog`] in memory, with the same semantics as the SQLite one: for tests,
/// and as the model the property tests check the SQLite log against.
#[derive(Debug, Default)]
pub struct MemoryEventLog {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    /// Event `seq` is at index `seq - 1`.
    events: Vec<StoredEvent>,
    /// `(campaign_id, event_id)` to `seq`.
    seq_by_id: HashMap<(String, String), u64>,
    /// Every correction, in the order recorded (its `id` is its index + 1).
    corrections: Vec<StoredCorrection>,
}

impl MemoryEventLog {
    /// An empty log.
    pub fn new() -> MemoryEventLog {
        MemoryEventLog::default()
    }
}

impl EventLog for MemoryEventLog {
    fn append(&self, batch: &[NewEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        // Check every value before storing any, so a rejected batch stores nothing,
        // as the SQLite log does.
        for event in batch {
            validate_event(event)?;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut outcomes = Vec::with_capacity(batch.len());
        for event in batch {
            let key = (event.campaign_id.clone(), event.event_id.clone());
            if let Some(&seq) = state.seq_by_id.get(&key) {
                let stored = &state.events[(seq - 1) as usize];
                outcomes.push(if event.repeats(stored) {
                    AppendOutcome::Duplicate { seq }
                } else {
                    AppendOutcome::Conflict { seq }
                });
                continue;
            }
            let seq = state.events.len() as u64 + 1;
            state.seq_by_id.insert(key, seq);
            state.events.push(StoredEvent::from_new(seq, event.clone()));
            outcomes.push(AppendOutcome::Appended { seq });
        }
        Ok(outcomes)
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(state.events.len());
        Ok(state.events[start..].iter().take(limit).cloned().collect())
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(state.events.len() as u64)
    }

    fn find_event(
        &self,
        campaign_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (campaign_id.to_owned(), event_id.to_owned());
        Ok(state
            .seq_by_id
            .get(&key)
            .map(|&seq| state.events[(seq - 1) as usize].clone()))
    }

    fn append_correction(
        &self,
        correction: &NewCorrection,
    ) -> Result<CorrectionOutcome, StoreError> {
        validate_correction(correction)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (correction.campaign_id.clone(), correction.event_id.clone());
        let Some(&seq) = state.seq_by_id.get(&key) else {
            return Ok(CorrectionOutcome::UnknownEvent);
        };
        let event = state.events[(seq - 1) as usize].clone();
        let old_value = match standing(&event, &state.corrections) {
            Standing::Retracted(retraction) => {
                return Ok(CorrectionOutcome::AlreadyRetracted(retraction.clone()));
            }
            Standing::Open { value } => value,
        };
        let stored = StoredCorrection::of(
            state.corrections.len() as u64 + 1,
            &event,
            old_value,
            correction,
        );
        state.corrections.push(stored.clone());
        Ok(CorrectionOutcome::Recorded(stored))
    }

    fn corrections(&self, campaign_id: &str) -> Result<Vec<StoredCorrection>, StoreError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(state
            .corrections
            .iter()
            .filter(|c| c.campaign_id == campaign_id)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(campaign_id: &str, event_id: &str) -> NewEvent {
        NewEvent {
            campaign_id: campaign_id.to_owned(),
            event_id: event_id.to_owned(),
            decision_id: format!("d-{event_id}"),
            kind: EventKind::Click,
            value: 0.0,
            amount_known: true,
            segment: 1,
            version: 2,
            decided_at_ms: 3,
            at_ms: 4,
        }
    }

    #[test]
    fn an_exact_repeat_has_the_same_kind_decision_value_and_knowledge_of_the_amount() {
        let stored = EventContent {
            kind: EventKind::Conversion,
            decision_id: "d1",
            value: 5.0,
            amount_known: true,
        };
        assert!(is_exact_repeat(stored, stored));
        // -0 and 0 are the same amount.
        let zero = EventContent {
            value: 0.0,
            ..stored
        };
        assert!(is_exact_repeat(
            EventContent {
                value: -0.0,
                ..zero
            },
            zero
        ));
        let others = [
            EventContent {
                kind: EventKind::Cost,
                ..stored
            },
            EventContent {
                decision_id: "d2",
                ..stored
            },
            EventContent {
                value: 6.0,
                ..stored
            },
        ];
        for other in others {
            assert!(!is_exact_repeat(other, stored), "{other:?}");
            assert!(!is_exact_repeat(stored, other), "{other:?}");
        }
        // A conversion stored as a known 0 (before schema version 4, one sent without a
        // value) is repeated by the same conversion of unknown amount; not the reverse,
        // and not a known amount other than 0.
        let unknown = EventContent {
            amount_known: false,
            ..zero
        };
        assert!(is_exact_repeat(unknown, zero));
        assert!(is_exact_repeat(unknown, unknown));
        assert!(!is_exact_repeat(zero, unknown));
        assert!(!is_exact_repeat(unknown, stored));
        let cost = EventContent {
            kind: EventKind::Cost,
            ..zero
        };
        assert!(!is_exact_repeat(
            EventContent {
                amount_known: false,
                ..cost
            },
            cost
        ));
        // `NewEvent::repeats` is the same rule.
        let new = NewEvent {
            kind: EventKind::Conversion,
            value: 5.0,
            decision_id: "d1".into(),
            ..event("c", "e")
        };
        let stored_event = StoredEvent::from_new(1, new.clone());
        assert!(new.repeats(&stored_event));
        assert!(!NewEvent { value: 6.0, ..new }.repeats(&stored_event));
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::from_name("Click"), None);
    }

    #[test]
    fn memory_log_deduplicates_per_campaign() {
        let log = MemoryEventLog::new();
        let outcomes = log
            .append(&[event("a", "1"), event("b", "1"), event("a", "1")])
            .unwrap();
        assert_eq!(
            outcomes,
            [
                AppendOutcome::Appended { seq: 1 },
                AppendOutcome::Appended { seq: 2 },
                AppendOutcome::Duplicate { seq: 1 },
            ]
        );
        assert_eq!(log.last_seq().unwrap(), 2);
        assert_eq!(log.read_after(1, 10).unwrap()[0].campaign_id, "b");
        assert!(log.read_after(5, 10).unwrap().is_empty());
    }

    #[test]
    fn memory_log_rejects_a_batch_with_an_oversized_version_whole() {
        let log = MemoryEventLog::new();
        let mut bad = event("a", "2");
        bad.version = u64::MAX;
        assert!(log.append(&[event("a", "1"), bad]).is_err());
        assert_eq!(log.last_seq().unwrap(), 0);
        let mut not_a_number = event("a", "3");
        not_a_number.value = f64::NAN;
        let error = log.append(&[not_a_number]).unwrap_err();
        assert!(
            error.to_string().contains("must be a finite number"),
            "{error}"
        );
    }
}
