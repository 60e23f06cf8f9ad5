//! Per-campaign rollups of the events learned, for the dashboard's charts: counts per
//! minute and per hour, for the campaign, its holdout and each component option.
//!
//! The learner notes every event it applies ([`note`], called from the one place
//! events are applied: [`crate::learner::apply_log_observed`]) into the slot's
//! [`PendingRollups`]; [`flush`] adds them to the store with the sequence they count
//! through. Events at or below the stored sequence are not noted again, so the replay
//! at a restart counts nothing twice. Readers merge the store's rows with the pending
//! ones ([`series`]), so a chart shows an event as soon as it is learned.
//!
//! Rollups count events as stored; a later correction rebuilds the model but not the
//! rollups already written (the report's figures are the corrected ones).

use crate::campaign::CampaignSlot;
use std::collections::BTreeMap;
use tla_store::{EventKind, ROLLUP_RESOLUTIONS_MS, RollupCounts, RollupRow, Store, StoreError};

/// The series of the campaign's total.
pub const TOTAL: &str = "";
/// The series of the campaign's holdout.
pub const HELD_OUT: &str = "held_out";

/// Counts learned and not yet in the store.
#[derive(Debug, Default)]
pub struct PendingRollups {
    /// The stored rollups count the events through this sequence.
    through: u64,
    /// Highest sequence noted.
    noted: u64,
    /// By (resolution, bucket start, series).
    buckets: BTreeMap<(i64, i64, String), RollupCounts>,
}

impl PendingRollups {
    /// Sets the sequence the stored rollups count through (when a slot is opened).
    pub fn set_through(&mut self, through: u64) {
        self.through = through;
        self.noted = self.noted.max(through);
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The series name of option `option` of component `component`.
pub fn option_series(component: &str, option: &str) -> String {
    format!("{component}={option}")
}

/// Notes an event applied to `slot`'s engine (`value`: its value as corrected).
pub fn note(slot: &CampaignSlot, event: &tla_store::StoredEvent, value: f64) {
    let mut pending = slot.rollups();
    if event.seq <= pending.through {
        return;
    }
    pending.noted = pending.noted.max(event.seq);
    let mut counts = RollupCounts::default();
    match event.kind {
        EventKind::Impression => counts.impressions = 1,
        EventKind::Click => counts.clicks = 1,
        EventKind::Conversion => {
            counts.conversions = 1;
            counts.value = value;
        }
        EventKind::Cost => counts.cost = value,
    }
    let mut series = vec![if crate::decision_id::held_out_of(&event.decision_id) {
        HELD_OUT.to_owned()
    } else {
        TOTAL.to_owned()
    }];
    // The options of the version, under the revision it was served in.
    let served_under = crate::decision_id::revision_of(&event.decision_id).unwrap_or(1);
    let revisions = slot.revisions();
    let index = (served_under as usize).checked_sub(1);
    if let Some(revision) = index.and_then(|i| revisions.get(i)).or(revisions.last()) {
        let spec = revision.campaign.spec();
        let space = &revision.campaign.design().space;
        if event.version < space.total() {
            for (component, spec) in spec.components.iter().enumerate() {
                let option = space.option_of(event.version, component) as usize;
                if let Some(option) = spec.options.get(option) {
                    series.push(option_series(&spec.name, &option.name));
                }
            }
        }
    }
    for resolution in ROLLUP_RESOLUTIONS_MS {
        let bucket = event.at_ms.div_euclid(resolution) * resolution;
        for name in &series {
            pending
                .buckets
                .entry((resolution, bucket, name.clone()))
                .or_default()
                .add(&counts);
        }
    }
}

/// Adds `slot`'s pending rollups to the store (holding them while it writes, so a
/// reader sees each count once); on a failure keeps them for the next flush.
pub fn flush(slot: &CampaignSlot, store: &Store) -> Result<(), StoreError> {
    let mut pending = slot.rollups();
    if pending.buckets.is_empty() {
        return Ok(());
    }
    let rows: Vec<RollupRow> = pending
        .buckets
        .iter()
        .map(|((resolution_ms, bucket_ms, series), counts)| RollupRow {
            resolution_ms: *resolution_ms,
            bucket_ms: *bucket_ms,
            series: series.clone(),
            counts: *counts,
        })
        .collect();
    let through = pending.noted;
    store.add_rollups(&slot.id, &rows, through)?;
    pending.buckets.clear();
    pending.through = through;
    Ok(())
}

/// A campaign's rollups of one width from `since_ms` on: the store's rows with the
/// pending counts added, by bucket then series.
pub fn series(
    slot: &CampaignSlot,
    store: &Store,
    resolution_ms: i64,
    since_ms: i64,
) -> Result<Vec<RollupRow>, StoreError> {
    let pending = slot.rollups();
    let mut merged: BTreeMap<(i64, String), RollupCounts> = store
        .rollups(&slot.id, resolution_ms, since_ms)?
        .into_iter()
        .map(|row| ((row.bucket_ms, row.series), row.counts))
        .collect();
    for ((resolution, bucket, name), counts) in &pending.buckets {
        if *resolution == resolution_ms && *bucket >= since_ms {
            merged
                .entry((*bucket, name.clone()))
                .or_default()
                .add(counts);
        }
    }
    Ok(merged
        .into_iter()
        .map(|((bucket_ms, series), counts)| RollupRow {
            resolution_ms,
            bucket_ms,
            series,
            counts,
        })
        .collect())
}
