//! Corrections of stored events: a retraction (the event is to be learned as if it had
//! never been sent) or a new amount (a conversion's donation, a cost's spend).
//!
//! The event log is append-only, so an event is never rewritten: a correction is a
//! record of its own, kept by the [`crate::EventLog`] beside the events, with who made it
//! (the API key's id), when, why, and the value before and after. Whoever applies the
//! log (the server's learner, its replay) applies each event with its corrections
//! ([`effects`]): a retracted event is skipped, a corrected one is applied with its
//! latest value. A retraction is final: a later correction of the same event is
//! refused ([`CorrectionOutcome::AlreadyRetracted`]).

use std::collections::HashMap;

use crate::error::StoreError;
use crate::event_log::{EventKind, StoredEvent};

/// What a correction does to its event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CorrectionAction {
    /// The event is withdrawn: learned as if never sent.
    Retract,
    /// The event's value (a conversion's donation, a cost's spend) becomes `value`.
    Correct {
        /// The new value, finite and >= 0.
        value: f64,
    },
}

impl CorrectionAction {
    /// `retract` or `correct`, as stored and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CorrectionAction::Retract => "retract",
            CorrectionAction::Correct { .. } => "correct",
        }
    }
}

/// A correction to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCorrection {
    /// The campaign of the event.
    pub campaign_id: String,
    /// The event's client-supplied id.
    pub event_id: String,
    /// What to do to it.
    pub action: CorrectionAction,
    /// Why, in the words of whoever asked (kept for the audit).
    pub reason: String,
    /// The id of the API key that asked (never the secret).
    pub key_id: String,
    /// When it was asked, ms since the Unix epoch.
    pub at_ms: i64,
}

/// A recorded correction, with what the audit needs.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCorrection {
    /// Position among all recorded corrections, strictly increasing from 1.
    pub id: u64,
    /// See [`NewCorrection::campaign_id`].
    pub campaign_id: String,
    /// See [`NewCorrection::event_id`].
    pub event_id: String,
    /// The sequence number of the corrected event in the log.
    pub event_seq: u64,
    /// The corrected event's kind.
    pub event_kind: EventKind,
    /// The decision the corrected event follows.
    pub decision_id: String,
    /// See [`NewCorrection::action`].
    pub action: CorrectionAction,
    /// The event's value before this correction: the last correction's, or else its
    /// own; `None` when that is a conversion's unknown amount (never recorded as 0).
    pub old_value: Option<f64>,
    /// See [`NewCorrection::reason`].
    pub reason: String,
    /// See [`NewCorrection::key_id`].
    pub key_id: String,
    /// See [`NewCorrection::at_ms`].
    pub at_ms: i64,
}

impl StoredCorrection {
    /// The record of `correction` of the stored `event`, numbered `id`.
    pub fn of(
        id: u64,
        event: &StoredEvent,
        old_value: Option<f64>,
        correction: &NewCorrection,
    ) -> StoredCorrection {
        StoredCorrection {
            id,
            campaign_id: event.campaign_id.clone(),
            event_id: event.event_id.clone(),
            event_seq: event.seq,
            event_kind: event.kind,
            decision_id: event.decision_id.clone(),
            action: correction.action,
            old_value,
            reason: correction.reason.clone(),
            key_id: correction.key_id.clone(),
            at_ms: correction.at_ms,
        }
    }

    /// The value after the correction; `None` for a retraction.
    pub fn new_value(&self) -> Option<f64> {
        match self.action {
            CorrectionAction::Retract => None,
            CorrectionAction::Correct { value } => Some(value),
        }
    }
}

/// What recording a correction did.
#[derive(Debug, Clone, PartialEq)]
pub enum CorrectionOutcome {
    /// Recorded durably.
    Recorded(StoredCorrection),
    /// The event was already retracted (by this earlier correction); nothing recorded.
    AlreadyRetracted(StoredCorrection),
    /// The campaign holds no event with this id; nothing recorded.
    UnknownEvent,
}

/// Where a stored event stands before another correction of it: see [`standing`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Standing<'a> {
    /// Retracted by this correction. A retraction is final: nothing more is recorded
    /// ([`CorrectionOutcome::AlreadyRetracted`]).
    Retracted(&'a StoredCorrection),
    /// Open to correction.
    Open {
        /// Its value now, the old value of the next correction: the last correction's
        /// new value, or else the event's own; `None` for a conversion's unknown amount.
        value: Option<f64>,
    },
}

/// Where `event` stands given `corrections`, which may hold other events' corrections
/// (they are skipped) and must hold the event's own in the order recorded (or at least
/// its last one). The one rule every [`crate::EventLog`] records corrections by, and the
/// server checks before it asks: a retraction is final, and the old value of a
/// correction is the last correction's.
pub fn standing<'a>(
    event: &StoredEvent,
    corrections: impl IntoIterator<Item = &'a StoredCorrection>,
) -> Standing<'a> {
    let mut value = event.amount_known.then_some(event.value);
    for correction in corrections
        .into_iter()
        .filter(|c| c.campaign_id == event.campaign_id && c.event_seq == event.seq)
    {
        match correction.action {
            CorrectionAction::Retract => return Standing::Retracted(correction),
            CorrectionAction::Correct { value: new_value } => value = Some(new_value),
        }
    }
    Standing::Open { value }
}

/// The content an event is applied with once its corrections are taken into account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventFix {
    /// Retracted: not applied at all.
    Retracted,
    /// Applied with this value instead of the stored one.
    Value(f64),
}

/// The net effect of a campaign's corrections, by event sequence number: the last
/// correction of each event wins (a retraction is always last, being final).
pub fn effects(corrections: &[StoredCorrection]) -> HashMap<u64, EventFix> {
    let mut fixes = HashMap::with_capacity(corrections.len());
    for correction in corrections {
        let fix = match correction.action {
            CorrectionAction::Retract => EventFix::Retracted,
            CorrectionAction::Correct { value } => EventFix::Value(value),
        };
        fixes.insert(correction.event_seq, fix);
    }
    fixes
}

/// Checks that a correction can be stored: a new value is a finite number >= 0. Every
/// [`crate::EventLog`] applies it before recording anything.
pub fn validate_correction(correction: &NewCorrection) -> Result<(), StoreError> {
    let CorrectionAction::Correct { value } = correction.action else {
        return Ok(());
    };
    if !(value.is_finite() && value >= 0.0) {
        return Err(StoreError::InvalidInput(format!(
            "the correction of event {:?} of campaign {:?} has value {value}; the value must be a finite number >= 0",
            correction.event_id, correction.campaign_id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correction(id: u64, event_seq: u64, action: CorrectionAction) -> StoredCorrection {
        StoredCorrection {
            id,
            campaign_id: "c".into(),
            event_id: format!("e{event_seq}"),
            event_seq,
            event_kind: EventKind::Conversion,
            decision_id: "d".into(),
            action,
            old_value: Some(1.0),
            reason: "r".into(),
            key_id: "k".into(),
            at_ms: 0,
        }
    }

    fn stored_event(seq: u64, value: f64, amount_known: bool) -> StoredEvent {
        StoredEvent {
            seq,
            campaign_id: "c".into(),
            event_id: format!("e{seq}"),
            decision_id: "d".into(),
            kind: EventKind::Conversion,
            value,
            amount_known,
            segment: 0,
            version: 0,
            decided_at_ms: 0,
            at_ms: 0,
        }
    }

    #[test]
    fn an_event_stands_at_its_last_value_until_a_final_retraction() {
        let event = stored_event(5, 10.0, true);
        assert_eq!(standing(&event, &[]), Standing::Open { value: Some(10.0) });
        // An unknown amount is not 0.
        assert_eq!(
            standing(&stored_event(5, 0.0, false), &[]),
            Standing::Open { value: None }
        );
        let mut other_campaign = correction(1, 5, CorrectionAction::Correct { value: 9.0 });
        other_campaign.campaign_id = "other".into();
        let corrections = [
            other_campaign,
            correction(2, 5, CorrectionAction::Correct { value: 2.0 }),
            correction(3, 7, CorrectionAction::Retract),
            correction(4, 5, CorrectionAction::Correct { value: 3.0 }),
        ];
        assert_eq!(
            standing(&event, &corrections),
            Standing::Open { value: Some(3.0) }
        );
        // Only the last correction known (as the SQLite log reads it): the same answer.
        assert_eq!(
            standing(&event, corrections.last()),
            Standing::Open { value: Some(3.0) }
        );
        assert_eq!(
            standing(&stored_event(7, 1.0, true), &corrections),
            Standing::Retracted(&corrections[2])
        );
        // A retraction is final: a correction listed after it does not reopen the event.
        let retracted_then_corrected = [
            correction(1, 5, CorrectionAction::Retract),
            correction(2, 5, CorrectionAction::Correct { value: 4.0 }),
        ];
        assert_eq!(
            standing(&event, &retracted_then_corrected),
            Standing::Retracted(&retracted_then_corrected[0])
        );
    }

    #[test]
    fn the_last_correction_of_each_event_wins() {
        let fixes = effects(&[
            correction(1, 5, CorrectionAction::Correct { value: 2.0 }),
            correction(2, 7, CorrectionAction::Retract),
            correction(3, 5, CorrectionAction::Correct { value: 3.0 }),
        ]);
        assert_eq!(fixes.len(), 2);
        assert_eq!(fixes[&5], EventFix::Value(3.0));
        assert_eq!(fixes[&7], EventFix::Retracted);
    }

    #[test]
    fn a_new_value_must_be_finite_and_not_negative() {
        let mut new = NewCorrection {
            campaign_id: "c".into(),
            event_id: "e".into(),
            action: CorrectionAction::Correct { value: -1.0 },
            reason: String::new(),
            key_id: "k".into(),
            at_ms: 0,
        };
        let error = validate_correction(&new).unwrap_err();
        assert!(error.to_string().contains("finite number >= 0"), "{error}");
        new.action = CorrectionAction::Correct { value: f64::NAN };
        assert!(validate_correction(&new).is_err());
        new.action = CorrectionAction::Retract;
        assert!(validate_correction(&new).is_ok());
    }
}
