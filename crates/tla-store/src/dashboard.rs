//! What the dashboard keeps: per-campaign rollups of the events learned (per minute and
//! per hour, per component option) and the audit of the controls used on a campaign
//! (pause, resume, archive).
//!
//! Rollups are added to, never rewritten: each flush adds the counts of the events
//! learned since the last one and moves the campaign's `through_seq` on in the same
//! transaction, and the learner skips events at or below it, so a restart (which
//! re-applies the events after the last snapshot) counts no event twice.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::error::{StoreError, from_sql_int, to_sql_int};
use crate::store::Store;

/// Bucket widths kept, ms: a minute and an hour.
pub const ROLLUP_RESOLUTIONS_MS: [i64; 2] = [60_000, 3_600_000];

/// The counts of one bucket of one series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RollupCounts {
    /// Impressions.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
    /// Conversions (donors).
    pub conversions: u64,
    /// Value of the conversions (donations).
    pub value: f64,
    /// Cost.
    pub cost: f64,
}

impl RollupCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &RollupCounts) {
        self.impressions += other.impressions;
        self.clicks += other.clicks;
        self.conversions += other.conversions;
        self.value += other.value;
        self.cost += other.cost;
    }
}

/// One stored bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    /// Bucket width, ms (one of [`ROLLUP_RESOLUTIONS_MS`]).
    pub resolution_ms: i64,
    /// Start of the bucket, ms since the Unix epoch (a multiple of the width).
    pub bucket_ms: i64,
    /// `""` for the campaign's total, `"held_out"` for its holdout, or
    /// `"<component>=<option>"` for one option of one component.
    pub series: String,
    /// The counts.
    pub counts: RollupCounts,
}

/// A control used on a campaign, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewControlAudit {
    /// The campaign.
    pub campaign_id: String,
    /// What was done: `pause`, `resume`, `archive`.
    pub action: String,
    /// Details, in words (may be empty).
    pub detail: String,
    /// The id of the API key that asked (never the secret).
    pub key_id: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
}

/// A recorded control.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredControlAudit {
    /// Position among all recorded controls, strictly increasing from 1.
    pub id: u64,
    /// The control as recorded.
    pub audit: NewControlAudit,
}

impl Store {
    /// The event sequence a campaign's rollups count through (0: none yet).
    pub fn rollup_through(&self, campaign_id: &str) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .database
            .general()
            .prepare_cached("SELECT through_seq FROM rollup_state WHERE campaign_id = ?1")
            .and_then(|mut s| s.query_row(params![campaign_id], |r| r.get(0)).optional())
            .map_err(StoreError::sqlite("reading a campaign's rollup state"))?;
        seq.map_or(Ok(0), |s| from_sql_int("rollup_state", "through_seq", s))
    }

    /// Adds `rows` to a campaign's rollups and records that they count the events
    /// through `through_seq`, in one transaction. Rows of events at or below the
    /// recorded sequence must not be passed (the caller filters them).
    pub fn add_rollups(
        &self,
        campaign_id: &str,
        rows: &[RollupRow],
        through_seq: u64,
    ) -> Result<(), StoreError> {
        let through = to_sql_int("through_seq", through_seq)?;
        let mut connection = self.database.general();
        let context = "adding to a campaign's rollups";
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite(context))?;
        {
            let mut statement = tx
                .prepare_cached(
                    "INSERT INTO rollups (campaign_id, resolution_ms, bucket_ms, series, \
                     impressions, clicks, conversions, value, cost) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                     ON CONFLICT (campaign_id, resolution_ms, bucket_ms, series) DO UPDATE SET \
                     impressions = impressions + excluded.impressions, \
                     clicks = clicks + excluded.clicks, \
                     conversions = conversions + excluded.conversions, \
                     value = value + excluded.value, cost = cost + excluded.cost",
                )
                .map_err(StoreError::sqlite(context))?;
            for row in rows {
                let c = &row.counts;
                statement
                    .execute(params![
                        campaign_id,
                        row.resolution_ms,
                        row.bucket_ms,
                        row.series,
                        to_sql_int("impressions", c.impressions)?,
                        to_sql_int("clicks", c.clicks)?,
                        to_sql_int("conversions", c.conversions)?,
                        c.value,
                        c.cost,
                    ])
                    .map_err(StoreError::sqlite(context))?;
            }
            tx.prepare_cached(
                "INSERT INTO rollup_state (campaign_id, through_seq) VALUES (?1, ?2) \
                 ON CONFLICT (campaign_id) DO UPDATE SET \
                 through_seq = max(through_seq, excluded.through_seq)",
            )
            .and_then(|mut s| s.execute(params![campaign_id, through]))
            .map_err(StoreError::sqlite(context))?;
        }
        tx.commit().map_err(StoreError::sqlite(context))
    }

    /// A campaign's rollups of one width from `since_ms` on, by bucket then series.
    pub fn rollups(
        &self,
        campaign_id: &str,
        resolution_ms: i64,
        since_ms: i64,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let connection = self.database.general();
        let context = "reading a campaign's rollups";
        let mut statement = connection
            .prepare_cached(
                "SELECT bucket_ms, series, impressions, clicks, conversions, value, cost \
                 FROM rollups WHERE campaign_id = ?1 AND resolution_ms = ?2 AND bucket_ms >= ?3 \
                 ORDER BY bucket_ms, series",
            )
            .map_err(StoreError::sqlite(context))?;
        let raw = statement
            .query_map(params![campaign_id, resolution_ms, since_ms], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, f64>(5)?,
                    r.get::<_, f64>(6)?,
                ))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite(context))?;
        raw.into_iter()
            .map(|(bucket_ms, series, i, c, v, value, cost)| {
                Ok(RollupRow {
                    resolution_ms,
                    bucket_ms,
                    series,
                    counts: RollupCounts {
                        impressions: from_sql_int("rollups", "impressions", i)?,
                        clicks: from_sql_int("rollups", "clicks", c)?,
                        conversions: from_sql_int("rollups", "conversions", v)?,
                        value,
                        cost,
                    },
                })
            })
            .collect()
    }

    /// Records a control used on a campaign; returns its position.
    pub fn record_control(&self, audit: &NewControlAudit) -> Result<u64, StoreError> {
        let id: i64 = self
            .database
            .general()
            .prepare_cached(
                "INSERT INTO control_audits (campaign_id, action, detail, key_id, at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        audit.campaign_id,
                        audit.action,
                        audit.detail,
                        audit.key_id,
                        audit.at_ms
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(StoreError::sqlite("recording a control"))?;
        from_sql_int("control_audits", "id", id)
    }

    /// The controls used on a campaign, in order.
    pub fn controls(&self, campaign_id: &str) -> Result<Vec<StoredControlAudit>, StoreError> {
        let connection = self.database.general();
        let context = "reading a campaign's controls";
        let mut statement = connection
            .prepare_cached(
                "SELECT id, action, detail, key_id, at_ms FROM control_audits \
                 WHERE campaign_id = ?1 ORDER BY id",
            )
            .map_err(StoreError::sqlite(context))?;
        let raw = statement
            .query_map(params![campaign_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite(context))?;
        raw.into_iter()
            .map(|(id, action, detail, key_id, at_ms)| {
                Ok(StoredControlAudit {
                    id: from_sql_int("control_audits", "id", id)?,
                    audit: NewControlAudit {
                        campaign_id: campaign_id.to_owned(),
                        action,
                        detail,
                        key_id,
                        at_ms,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(bucket_ms: i64, series: &str, impressions: u64, value: f64) -> RollupRow {
        RollupRow {
            resolution_ms: 60_000,
            bucket_ms,
            series: series.to_owned(),
            counts: RollupCounts {
                impressions,
                value,
                ..RollupCounts::default()
            },
        }
    }

    #[test]
    fn rollups_add_up_and_remember_how_far_they_count() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.rollup_through("c").unwrap(), 0);
        store
            .add_rollups("c", &[row(0, "", 3, 1.0), row(0, "a=x", 2, 0.5)], 5)
            .unwrap();
        store
            .add_rollups("c", &[row(0, "", 1, 2.0), row(60_000, "", 4, 0.0)], 9)
            .unwrap();
        assert_eq!(store.rollup_through("c").unwrap(), 9);
        assert_eq!(store.rollup_through("other").unwrap(), 0);
        let rows = store.rollups("c", 60_000, 0).unwrap();
        assert_eq!(
            rows,
            vec![
                row(0, "", 4, 3.0),
                row(0, "a=x", 2, 0.5),
                row(60_000, "", 4, 0.0)
            ]
        );
        assert_eq!(store.rollups("c", 60_000, 1).unwrap().len(), 1);
        assert!(store.rollups("c", 3_600_000, 0).unwrap().is_empty());
    }

    #[test]
    fn controls_are_recorded_in_order() {
        let store = Store::open_in_memory().unwrap();
        for (action, at_ms) in [("pause", 10), ("resume", 20)] {
            store
                .record_control(&NewControlAudit {
                    campaign_id: "c".into(),
                    action: action.into(),
                    detail: String::new(),
                    key_id: "k".into(),
                    at_ms,
                })
                .unwrap();
        }
        let controls = store.controls("c").unwrap();
        assert_eq!(controls.len(), 2);
        assert_eq!(controls[0].audit.action, "pause");
        assert_eq!(controls[1].id, 2);
        assert!(store.controls("d").unwrap().is_empty());
    }
}
