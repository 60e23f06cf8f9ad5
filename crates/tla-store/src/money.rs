//! The money of a campaign that is not in the event log: spend reports (spend not tied
//! to a decision, reported per segment and period by channels that bill that way) and
//! the audited changes of a running campaign's budget and daily cap.
//!
//! Both are append-only, like the event log: a spend report is stored once per
//! `(campaign, report_id)` (an exact repeat is a duplicate, another content under the
//! same id a conflict, as for events), and a budget change is a record with who asked,
//! when, why, and the values before and after. Nothing here rewrites stored spend or
//! events. The store checks what it can without knowing the campaign (finite amounts,
//! a period that ends after it starts, integers that fit SQLite); the server checks the
//! rest (the segment, the amount limit, the budget rules).

use crate::error::StoreError;

/// A spend report to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSpendReport {
    /// The campaign it is for.
    pub campaign_id: String,
    /// Client-supplied id: one report per id within the campaign.
    pub report_id: String,
    /// The segment's position in the campaign.
    pub segment: u32,
    /// Period start, ms since the Unix epoch.
    pub start_ms: i64,
    /// Period end, ms since the Unix epoch; after `start_ms`.
    pub end_ms: i64,
    /// What was spent in the period: finite, >= 0.
    pub amount: f64,
    /// Impressions bought in the period, when the channel says. At most `i64::MAX`.
    pub impressions: Option<u64>,
    /// The id of the API key that sent it (never the secret).
    pub key_id: String,
    /// When it was received, ms since the Unix epoch.
    pub at_ms: i64,
}

impl NewSpendReport {
    /// The report as stored at position `id`.
    pub fn stored_as(self, id: u64) -> StoredSpendReport {
        StoredSpendReport {
            id,
            campaign_id: self.campaign_id,
            report_id: self.report_id,
            segment: self.segment,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            amount: self.amount,
            impressions: self.impressions,
            key_id: self.key_id,
            at_ms: self.at_ms,
        }
    }

    /// Whether `stored` holds the same report: the same segment, period, amount and
    /// impressions (who sent it and when are not its content).
    pub fn is_exact_repeat_of(&self, stored: &StoredSpendReport) -> bool {
        self.segment == stored.segment
            && self.start_ms == stored.start_ms
            && self.end_ms == stored.end_ms
            && self.amount.to_bits() == stored.amount.to_bits()
            && self.impressions == stored.impressions
    }
}

/// A stored spend report.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpendReport {
    /// Position among all stored spend reports, strictly increasing from 1.
    pub id: u64,
    /// See [`NewSpendReport::campaign_id`].
    pub campaign_id: String,
    /// See [`NewSpendReport::report_id`].
    pub report_id: String,
    /// See [`NewSpendReport::segment`].
    pub segment: u32,
    /// See [`NewSpendReport::start_ms`].
    pub start_ms: i64,
    /// See [`NewSpendReport::end_ms`].
    pub end_ms: i64,
    /// See [`NewSpendReport::amount`].
    pub amount: f64,
    /// See [`NewSpendReport::impressions`].
    pub impressions: Option<u64>,
    /// See [`NewSpendReport::key_id`].
    pub key_id: String,
    /// See [`NewSpendReport::at_ms`].
    pub at_ms: i64,
}

/// What storing one spend report of a batch did.
#[derive(Debug, Clone, PartialEq)]
pub enum SpendReportOutcome {
    /// Stored, as report `id`.
    Appended {
        /// Its position.
        id: u64,
    },
    /// An exact repeat of stored report `id`; nothing stored.
    Duplicate {
        /// The stored report's position.
        id: u64,
    },
    /// The campaign holds report `id` under this report id with another content;
    /// nothing stored.
    Conflict {
        /// The stored report's position.
        id: u64,
    },
}

/// Checks what the store can of a spend report: a finite amount >= 0, a period that
/// ends after it starts, impressions that fit SQLite.
pub fn validate_spend_report(report: &NewSpendReport) -> Result<(), StoreError> {
    if !(report.amount.is_finite() && report.amount >= 0.0) {
        return Err(StoreError::InvalidInput(format!(
            "spend report {:?} has amount {}; an amount must be finite and >= 0",
            report.report_id, report.amount
        )));
    }
    if report.end_ms <= report.start_ms {
        return Err(StoreError::InvalidInput(format!(
            "spend report {:?} ends ({}) before or when it starts ({}); a period ends after it starts",
            report.report_id, report.end_ms, report.start_ms
        )));
    }
    if let Some(impressions) = report.impressions {
        crate::error::to_sql_int("impressions", impressions)?;
    }
    Ok(())
}

/// A change of a running campaign's budget and daily cap to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBudgetChange {
    /// The campaign.
    pub campaign_id: String,
    /// The budget before the change (the spec's, or the last change's).
    pub old_budget: f64,
    /// The budget after it.
    pub new_budget: f64,
    /// The daily cap before the change; `None` for no cap.
    pub old_daily_cap: Option<f64>,
    /// The daily cap after it; `None` for no cap.
    pub new_daily_cap: Option<f64>,
    /// What the campaign had spent when the change was made (cost events and spend
    /// reports), for the audit.
    pub spent: f64,
    /// Why, in the words of whoever asked.
    pub reason: String,
    /// The id of the API key that asked (never the secret).
    pub key_id: String,
    /// When it was asked, ms since the Unix epoch.
    pub at_ms: i64,
}

/// A recorded budget change.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBudgetChange {
    /// Position among all recorded budget changes, strictly increasing from 1.
    pub id: u64,
    /// The change as recorded.
    pub change: NewBudgetChange,
}

/// Checks what the store can of a budget change: every amount finite and >= 0.
pub fn validate_budget_change(change: &NewBudgetChange) -> Result<(), StoreError> {
    let amounts = [
        ("old_budget", Some(change.old_budget)),
        ("new_budget", Some(change.new_budget)),
        ("old_daily_cap", change.old_daily_cap),
        ("new_daily_cap", change.new_daily_cap),
        ("spent", Some(change.spent)),
    ];
    for (field, amount) in amounts {
        if let Some(amount) = amount.filter(|a| !(a.is_finite() && *a >= 0.0)) {
            return Err(StoreError::InvalidInput(format!(
                "a budget change of campaign {:?} has {field} {amount}; amounts are finite and >= 0",
                change.campaign_id
            )));
        }
    }
    Ok(())
}
