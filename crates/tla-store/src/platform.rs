//! Platform mode: the plans made for a campaign (a budget per ad set and the ads to run
//! with their shares) and the results an ad platform reports per ad and period.
//!
//! A plan is stored whole (as JSON, for its export) and as rows of `(ad set, ad name,
//! version, share)`: the share is the propensity of the logged decision distribution
//! the plan is, kept for off-policy evaluation. Plans are numbered per campaign from 1.
//!
//! Results are stored per `(campaign, ad name, segment, period)`. An import either
//! changes nothing (every row already stored as it is: the same file twice), or is
//! recorded (`result_imports`) with the event sequence the campaign's engine had learned
//! when it was taken (`after_seq`) and the spec revision in force: its rows are learned
//! right after that event, on a restart too. A row for a period already stored with
//! other numbers replaces it in place (never counted twice) and moves to the new import.
//!
//! Snapshots and results: a snapshot covering event `C` holds every result row whose
//! `after_seq <= C`. To keep that true, an import that changes anything deletes, in its
//! own transaction, the campaign's snapshots covering `after_seq` or later (those were
//! written before it), and, when it replaces rows, those covering the earliest
//! `after_seq` of a replaced row (they learned the old numbers). The store checks what
//! it can without the campaign (finite, non-negative numbers; no more clicks or
//! conversions than impressions; a period that ends after it starts); the server checks
//! the rest (the ad names, the segments).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::error::{StoreError, from_sql_int, to_sql_int};
use crate::store::Store;

/// A plan to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPlan {
    /// The campaign it is for.
    pub campaign_id: String,
    /// The campaign spec revision its versions are numbered in.
    pub revision: u32,
    /// Period start, ms since the Unix epoch.
    pub start_ms: i64,
    /// Period end, ms since the Unix epoch; after `start_ms`.
    pub end_ms: i64,
    /// The budget of the period, all ad sets together.
    pub budget: f64,
    /// The plan as JSON (opaque here).
    pub plan_json: String,
    /// Its ads, one per (ad set, ad).
    pub ads: Vec<PlanAd>,
    /// The id of the API key that asked for it.
    pub key_id: String,
    /// When it was made, ms since the Unix epoch.
    pub at_ms: i64,
}

/// One ad of a plan in one ad set.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanAd {
    /// The segment (ad set) position in the campaign's revision.
    pub segment: u32,
    /// The ad's stable name.
    pub ad_name: String,
    /// The version it shows.
    pub version: u64,
    /// Its share of the ad set: the propensity of the plan's decision distribution.
    pub share: f64,
}

/// A stored plan (without its ad rows: [`Store::plan_ads`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPlan {
    /// Its number in the campaign, from 1.
    pub plan_id: u64,
    /// See [`NewPlan::campaign_id`].
    pub campaign_id: String,
    /// See [`NewPlan::revision`].
    pub revision: u32,
    /// See [`NewPlan::start_ms`].
    pub start_ms: i64,
    /// See [`NewPlan::end_ms`].
    pub end_ms: i64,
    /// See [`NewPlan::budget`].
    pub budget: f64,
    /// See [`NewPlan::plan_json`].
    pub plan_json: String,
    /// See [`NewPlan::key_id`].
    pub key_id: String,
    /// See [`NewPlan::at_ms`].
    pub at_ms: i64,
}

/// An ad some plan of a campaign ran: what a result row may name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlannedAd {
    /// The ad's name.
    pub ad_name: String,
    /// Its segment (ad set).
    pub segment: u32,
    /// The spec revision of the plan.
    pub revision: u32,
    /// The version it shows, numbered in `revision`.
    pub version: u64,
}

/// One row of a platform's results: one ad in one ad set over one period.
#[derive(Debug, Clone, PartialEq)]
pub struct NewResult {
    /// The ad's name, as planned.
    pub ad_name: String,
    /// Its segment (ad set).
    pub segment: u32,
    /// The spec revision its version is numbered in.
    pub revision: u32,
    /// The version it showed.
    pub version: u64,
    /// Period start, ms since the Unix epoch.
    pub start_ms: i64,
    /// Period end, ms since the Unix epoch; after `start_ms`.
    pub end_ms: i64,
    /// Impressions.
    pub impressions: u64,
    /// Clicks, at most the impressions.
    pub clicks: u64,
    /// Conversions, at most the impressions.
    pub conversions: u64,
    /// Conversion value: finite, >= 0.
    pub value: f64,
    /// Spend: finite, >= 0.
    pub spend: f64,
}

impl NewResult {
    /// Whether `other` holds the same numbers for the same ad and period.
    pub fn same_as(&self, other: &NewResult) -> bool {
        self.ad_name == other.ad_name
            && self.segment == other.segment
            && self.revision == other.revision
            && self.version == other.version
            && self.start_ms == other.start_ms
            && self.end_ms == other.end_ms
            && self.impressions == other.impressions
            && self.clicks == other.clicks
            && self.conversions == other.conversions
            && self.value.to_bits() == other.value.to_bits()
            && self.spend.to_bits() == other.spend.to_bits()
    }
}

/// An import of results to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultImport {
    /// The campaign.
    pub campaign_id: String,
    /// The highest event sequence the campaign's engine had learned when it was taken.
    pub after_seq: u64,
    /// The spec revision the engine was in.
    pub engine_revision: u32,
    /// The rows; at most one per (ad name, segment, period).
    pub rows: Vec<NewResult>,
    /// The id of the API key that sent it.
    pub key_id: String,
    /// When it arrived, ms since the Unix epoch.
    pub at_ms: i64,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The import's number, when it changed anything.
    pub import_id: Option<u64>,
    /// Rows for a period not stored before.
    pub inserted: u64,
    /// Rows that replaced a stored row of the same ad and period with other numbers.
    pub replaced: u64,
    /// Rows already stored exactly so.
    pub unchanged: u64,
    /// When rows were replaced, the earliest `after_seq` of the rows they replaced: the
    /// engine must be rebuilt from a snapshot before it.
    pub replaced_after_seq: Option<u64>,
}

/// A stored result row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResult {
    /// Its row id.
    pub id: u64,
    /// The import that wrote it last.
    pub import_id: u64,
    /// That import's [`ResultImport::after_seq`].
    pub after_seq: u64,
    /// That import's [`ResultImport::engine_revision`].
    pub engine_revision: u32,
    /// The numbers.
    pub row: NewResult,
}

/// Checks what the store can of a result row; the message names what is accepted.
pub fn validate_result(row: &NewResult) -> Result<(), String> {
    for (field, amount) in [("value", row.value), ("spend", row.spend)] {
        if !(amount.is_finite() && amount >= 0.0) {
            return Err(format!(
                "{field} is {amount}; accepted: a finite number >= 0"
            ));
        }
    }
    if row.clicks > row.impressions {
        return Err(format!(
            "{} clicks from {} impressions; accepted: at most as many clicks as impressions",
            row.clicks, row.impressions
        ));
    }
    if row.conversions > row.impressions {
        return Err(format!(
            "{} conversions from {} impressions; accepted: at most as many conversions as impressions",
            row.conversions, row.impressions
        ));
    }
    if row.end_ms <= row.start_ms {
        return Err(format!(
            "the period ends ({} ms) before or when it starts ({} ms); accepted: a period that ends after it starts",
            row.end_ms, row.start_ms
        ));
    }
    if i64::try_from(row.impressions).is_err() {
        return Err(format!(
            "{} impressions; accepted: at most {}",
            row.impressions,
            i64::MAX
        ));
    }
    Ok(())
}

const SELECT_PLANS: &str = "SELECT plan_id, campaign_id, revision, start_ms, end_ms, budget, \
     plan_json, key_id, created_at_ms FROM plans";

fn plan_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, StoredPlan)> {
    Ok((
        row.get(0)?,
        StoredPlan {
            plan_id: 0,
            campaign_id: row.get(1)?,
            revision: row.get(2)?,
            start_ms: row.get(3)?,
            end_ms: row.get(4)?,
            budget: row.get(5)?,
            plan_json: row.get(6)?,
            key_id: row.get(7)?,
            at_ms: row.get(8)?,
        },
    ))
}

fn decode_plan((id, plan): (i64, StoredPlan)) -> Result<StoredPlan, StoreError> {
    Ok(StoredPlan {
        plan_id: from_sql_int("plans", "plan_id", id)?,
        ..plan
    })
}

const SELECT_RESULTS: &str = "SELECT id, import_id, after_seq, engine_revision, ad_name, segment, \
     revision, version, start_ms, end_ms, impressions, clicks, conversions, value, spend \
     FROM platform_results";

type RawResult = ([i64; 3], u32, NewResultRaw);

#[derive(Debug)]
struct NewResultRaw {
    ad_name: String,
    segment: u32,
    revision: u32,
    version: i64,
    start_ms: i64,
    end_ms: i64,
    counts: [i64; 3],
    value: f64,
    spend: f64,
}

fn result_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawResult> {
    Ok((
        [row.get(0)?, row.get(1)?, row.get(2)?],
        row.get(3)?,
        NewResultRaw {
            ad_name: row.get(4)?,
            segment: row.get(5)?,
            revision: row.get(6)?,
            version: row.get(7)?,
            start_ms: row.get(8)?,
            end_ms: row.get(9)?,
            counts: [row.get(10)?, row.get(11)?, row.get(12)?],
            value: row.get(13)?,
            spend: row.get(14)?,
        },
    ))
}

fn decode_result(
    ([id, import_id, after_seq], engine_revision, raw): RawResult,
) -> Result<StoredResult, StoreError> {
    let int = |field, value| from_sql_int("platform_results", field, value);
    Ok(StoredResult {
        id: int("id", id)?,
        import_id: int("import_id", import_id)?,
        after_seq: int("after_seq", after_seq)?,
        engine_revision,
        row: NewResult {
            ad_name: raw.ad_name,
            segment: raw.segment,
            revision: raw.revision,
            version: int("version", raw.version)?,
            start_ms: raw.start_ms,
            end_ms: raw.end_ms,
            impressions: int("impressions", raw.counts[0])?,
            clicks: int("clicks", raw.counts[1])?,
            conversions: int("conversions", raw.counts[2])?,
            value: raw.value,
            spend: raw.spend,
        },
    })
}

impl Store {
    /// Stores a plan as the campaign's next (numbered from 1), with its ads, in one
    /// durable transaction; returns it as stored.
    pub fn save_plan(&self, plan: &NewPlan) -> Result<StoredPlan, StoreError> {
        if plan.end_ms <= plan.start_ms || !(plan.budget.is_finite() && plan.budget >= 0.0) {
            return Err(StoreError::InvalidInput(format!(
                "a plan of campaign {:?} needs a period that ends after it starts and a finite budget >= 0",
                plan.campaign_id
            )));
        }
        let mut connection = self.database.general();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting the plan transaction"))?;
        let plan_id: i64 = transaction
            .query_row(
                "SELECT COALESCE(MAX(plan_id), 0) + 1 FROM plans WHERE campaign_id = ?1",
                params![plan.campaign_id],
                |row| row.get(0),
            )
            .map_err(StoreError::sqlite("numbering a plan"))?;
        transaction
            .execute(
                "INSERT INTO plans (campaign_id, plan_id, revision, start_ms, end_ms, budget, \
                 plan_json, key_id, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    plan.campaign_id,
                    plan_id,
                    plan.revision,
                    plan.start_ms,
                    plan.end_ms,
                    plan.budget,
                    plan.plan_json,
                    plan.key_id,
                    plan.at_ms
                ],
            )
            .map_err(StoreError::sqlite("storing a plan"))?;
        for ad in &plan.ads {
            let version = to_sql_int("version", ad.version)?;
            transaction
                .prepare_cached(
                    "INSERT INTO plan_ads (campaign_id, plan_id, segment, ad_name, version, share) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        plan.campaign_id,
                        plan_id,
                        ad.segment,
                        ad.ad_name,
                        version,
                        ad.share
                    ])
                })
                .map_err(StoreError::sqlite("storing a plan's ads"))?;
        }
        transaction
            .commit()
            .map_err(StoreError::sqlite("committing a plan"))?;
        Ok(StoredPlan {
            plan_id: from_sql_int("plans", "plan_id", plan_id)?,
            campaign_id: plan.campaign_id.clone(),
            revision: plan.revision,
            start_ms: plan.start_ms,
            end_ms: plan.end_ms,
            budget: plan.budget,
            plan_json: plan.plan_json.clone(),
            key_id: plan.key_id.clone(),
            at_ms: plan.at_ms,
        })
    }

    /// A campaign's plan by number.
    pub fn plan(&self, campaign_id: &str, plan_id: u64) -> Result<Option<StoredPlan>, StoreError> {
        let plan_id = to_sql_int("plan_id", plan_id)?;
        self.database
            .general()
            .prepare_cached(&format!(
                "{SELECT_PLANS} WHERE campaign_id = ?1 AND plan_id = ?2"
            ))
            .and_then(|mut statement| {
                statement
                    .query_row(params![campaign_id, plan_id], plan_of)
                    .optional()
            })
            .map_err(StoreError::sqlite("reading a plan"))?
            .map(decode_plan)
            .transpose()
    }

    /// Every plan of a campaign, oldest first.
    pub fn plans(&self, campaign_id: &str) -> Result<Vec<StoredPlan>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(&format!(
                "{SELECT_PLANS} WHERE campaign_id = ?1 ORDER BY plan_id"
            ))
            .map_err(StoreError::sqlite("reading plans"))?;
        let raw = statement
            .query_map(params![campaign_id], plan_of)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading plans"))?;
        raw.into_iter().map(decode_plan).collect()
    }

    /// The ads of a plan, by segment and name.
    pub fn plan_ads(&self, campaign_id: &str, plan_id: u64) -> Result<Vec<PlanAd>, StoreError> {
        let plan_id = to_sql_int("plan_id", plan_id)?;
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(
                "SELECT segment, ad_name, version, share FROM plan_ads \
                 WHERE campaign_id = ?1 AND plan_id = ?2 ORDER BY segment, ad_name",
            )
            .map_err(StoreError::sqlite("reading a plan's ads"))?;
        let raw = statement
            .query_map(params![campaign_id, plan_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)?, row.get(3)?))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading a plan's ads"))?;
        raw.into_iter()
            .map(|(segment, ad_name, version, share)| {
                Ok(PlanAd {
                    segment,
                    ad_name,
                    version: from_sql_int("plan_ads", "version", version)?,
                    share,
                })
            })
            .collect()
    }

    /// Every ad any plan of the campaign ran (each (name, segment) once).
    pub fn planned_ads(&self, campaign_id: &str) -> Result<Vec<PlannedAd>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(
                "SELECT DISTINCT a.ad_name, a.segment, p.revision, a.version \
                 FROM plan_ads a JOIN plans p ON p.campaign_id = a.campaign_id AND p.plan_id = a.plan_id \
                 WHERE a.campaign_id = ?1",
            )
            .map_err(StoreError::sqlite("reading planned ads"))?;
        let raw = statement
            .query_map(params![campaign_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get::<_, i64>(3)?))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading planned ads"))?;
        raw.into_iter()
            .map(|(ad_name, segment, revision, version)| {
                Ok(PlannedAd {
                    ad_name,
                    segment,
                    revision,
                    version: from_sql_int("plan_ads", "version", version)?,
                })
            })
            .collect()
    }

    /// Stores an import of results in one durable transaction (see the module
    /// documentation): new rows inserted, changed rows replaced in place, identical
    /// rows left; when anything changed, the import recorded and the snapshots it
    /// outdates deleted. Refused whole with [`StoreError::InvalidInput`] when a row
    /// fails [`validate_result`] or two rows name the same ad, segment and period; on
    /// any error nothing is stored.
    pub fn import_results(&self, import: &ResultImport) -> Result<ImportOutcome, StoreError> {
        let mut seen = std::collections::HashSet::with_capacity(import.rows.len());
        for (index, row) in import.rows.iter().enumerate() {
            validate_result(row).map_err(|message| {
                StoreError::InvalidInput(format!("result row {}: {message}", index + 1))
            })?;
            if !seen.insert((&row.ad_name, row.segment, row.start_ms, row.end_ms)) {
                return Err(StoreError::InvalidInput(format!(
                    "result row {}: ad {:?} in segment {} has two rows for the same period",
                    index + 1,
                    row.ad_name,
                    row.segment
                )));
            }
        }
        let after_seq = to_sql_int("after_seq", import.after_seq)?;
        let mut connection = self.database.general();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting the results transaction"))?;
        let mut outcome = ImportOutcome {
            import_id: None,
            inserted: 0,
            replaced: 0,
            unchanged: 0,
            replaced_after_seq: None,
        };
        // What each row does: None unchanged, Some(None) insert, Some(Some(id)) replace.
        let mut actions = Vec::with_capacity(import.rows.len());
        for row in &import.rows {
            let stored = transaction
                .prepare_cached(&format!(
                    "{SELECT_RESULTS} WHERE campaign_id = ?1 AND ad_name = ?2 AND segment = ?3 \
                     AND start_ms = ?4 AND end_ms = ?5"
                ))
                .and_then(|mut statement| {
                    statement
                        .query_row(
                            params![
                                import.campaign_id,
                                row.ad_name,
                                row.segment,
                                row.start_ms,
                                row.end_ms
                            ],
                            result_of,
                        )
                        .optional()
                })
                .map_err(StoreError::sqlite("looking up a result row"))?
                .map(decode_result)
                .transpose()?;
            match stored {
                Some(stored) if stored.row.same_as(row) => {
                    outcome.unchanged += 1;
                    actions.push(None);
                }
                Some(stored) => {
                    outcome.replaced += 1;
                    outcome.replaced_after_seq = Some(
                        outcome
                            .replaced_after_seq
                            .map_or(stored.after_seq, |a| a.min(stored.after_seq)),
                    );
                    actions.push(Some(Some(stored.id)));
                }
                None => {
                    outcome.inserted += 1;
                    actions.push(Some(None));
                }
            }
        }
        if outcome.inserted + outcome.replaced == 0 {
            return Ok(outcome);
        }
        transaction
            .execute(
                "INSERT INTO result_imports (campaign_id, after_seq, engine_revision, inserted, \
                 replaced, key_id, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    import.campaign_id,
                    after_seq,
                    import.engine_revision,
                    to_sql_int("inserted", outcome.inserted)?,
                    to_sql_int("replaced", outcome.replaced)?,
                    import.key_id,
                    import.at_ms
                ],
            )
            .map_err(StoreError::sqlite("recording a results import"))?;
        let import_id = transaction.last_insert_rowid();
        for (row, action) in import.rows.iter().zip(actions) {
            let Some(replacing) = action else {
                continue;
            };
            let version = to_sql_int("version", row.version)?;
            let counts = [
                to_sql_int("impressions", row.impressions)?,
                to_sql_int("clicks", row.clicks)?,
                to_sql_int("conversions", row.conversions)?,
            ];
            let written = match replacing.map(|id| to_sql_int("id", id)).transpose()? {
                Some(id) => transaction
                    .prepare_cached(
                        "UPDATE platform_results SET revision = ?2, version = ?3, impressions = ?4, \
                         clicks = ?5, conversions = ?6, value = ?7, spend = ?8, import_id = ?9, \
                         after_seq = ?10, engine_revision = ?11 WHERE id = ?1",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![
                            id,
                            row.revision,
                            version,
                            counts[0],
                            counts[1],
                            counts[2],
                            row.value,
                            row.spend,
                            import_id,
                            after_seq,
                            import.engine_revision
                        ])
                    }),
                None => transaction
                    .prepare_cached(
                        "INSERT INTO platform_results (campaign_id, ad_name, segment, revision, version, \
                         start_ms, end_ms, impressions, clicks, conversions, value, spend, import_id, \
                         after_seq, engine_revision) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![
                            import.campaign_id,
                            row.ad_name,
                            row.segment,
                            row.revision,
                            version,
                            row.start_ms,
                            row.end_ms,
                            counts[0],
                            counts[1],
                            counts[2],
                            row.value,
                            row.spend,
                            import_id,
                            after_seq,
                            import.engine_revision
                        ])
                    }),
            };
            written.map_err(StoreError::sqlite("storing a result row"))?;
        }
        let outdated_from = outcome
            .replaced_after_seq
            .map_or(after_seq, |a| after_seq.min(a as i64));
        transaction
            .execute(
                "DELETE FROM snapshots WHERE campaign_id = ?1 AND covers_seq >= ?2",
                params![import.campaign_id, outdated_from],
            )
            .map_err(StoreError::sqlite(
                "deleting the snapshots a results import outdates",
            ))?;
        transaction
            .commit()
            .map_err(StoreError::sqlite("committing a results import"))?;
        outcome.import_id = Some(from_sql_int("result_imports", "id", import_id)?);
        Ok(outcome)
    }

    /// The rows import `import_id` of the campaign wrote and that are still in force, in
    /// the order learned (through the `(campaign_id, import_id, id)` index).
    pub fn import_rows(
        &self,
        campaign_id: &str,
        import_id: u64,
    ) -> Result<Vec<StoredResult>, StoreError> {
        let import_id = to_sql_int("import_id", import_id)?;
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(&format!(
                "{SELECT_RESULTS} WHERE campaign_id = ?1 AND import_id = ?2 ORDER BY id"
            ))
            .map_err(StoreError::sqlite("reading an import's results"))?;
        let raw = statement
            .query_map(params![campaign_id, import_id], result_of)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading an import's results"))?;
        raw.into_iter().map(decode_result).collect()
    }

    /// A campaign's results in force, in the order they are learned (by import, then
    /// row): all of them, or those of imports taken after event `after` (a snapshot
    /// covering `after` holds the others).
    pub fn results(
        &self,
        campaign_id: &str,
        after: Option<u64>,
    ) -> Result<Vec<StoredResult>, StoreError> {
        let after = match after {
            Some(after) => to_sql_int("after", after)?,
            None => -1,
        };
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(&format!(
                "{SELECT_RESULTS} WHERE campaign_id = ?1 AND after_seq > ?2 ORDER BY import_id, id"
            ))
            .map_err(StoreError::sqlite("reading results"))?;
        let raw = statement
            .query_map(params![campaign_id, after], result_of)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading results"))?;
        raw.into_iter().map(decode_result).collect()
    }

    /// What the platform results in force of a campaign report spent, all periods
    /// together (a re-imported period counts once: its row was replaced).
    pub fn results_spend(&self, campaign_id: &str) -> Result<f64, StoreError> {
        self.database
            .general()
            .prepare_cached(
                "SELECT coalesce(sum(spend), 0.0) FROM platform_results WHERE campaign_id = ?1",
            )
            .and_then(|mut statement| statement.query_row(params![campaign_id], |row| row.get(0)))
            .map_err(StoreError::sqlite(
                "summing a campaign's platform results' spend",
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ad: &str, day: i64, impressions: u64, conversions: u64) -> NewResult {
        NewResult {
            ad_name: ad.into(),
            segment: 0,
            revision: 1,
            version: 7,
            start_ms: day * 86_400_000,
            end_ms: (day + 1) * 86_400_000,
            impressions,
            clicks: conversions,
            conversions,
            value: conversions as f64 * 10.0,
            spend: 5.0,
        }
    }

    fn import(after_seq: u64, rows: Vec<NewResult>) -> ResultImport {
        ResultImport {
            campaign_id: "c".into(),
            after_seq,
            engine_revision: 1,
            rows,
            key_id: "k".into(),
            at_ms: 0,
        }
    }

    #[test]
    fn the_same_import_twice_changes_nothing_and_a_changed_row_replaces_in_place() {
        let store = Store::open_in_memory().unwrap();
        store.save_snapshot("c", 3, b"s3", 0).unwrap();
        store.save_snapshot("c", 5, b"s5", 0).unwrap();
        let first = store
            .import_results(&import(5, vec![row("a", 0, 100, 2), row("b", 0, 50, 1)]))
            .unwrap();
        assert_eq!((first.inserted, first.replaced, first.unchanged), (2, 0, 0));
        assert_eq!(store.results_spend("c").unwrap(), 10.0);
        assert_eq!(store.results_spend("other").unwrap(), 0.0);
        // The snapshot written at 5 before the import is outdated; the one at 3 stays.
        assert_eq!(store.latest_snapshot("c").unwrap().unwrap().0, 3);
        store.save_snapshot("c", 9, b"s9", 0).unwrap();
        let again = store
            .import_results(&import(9, vec![row("a", 0, 100, 2), row("b", 0, 50, 1)]))
            .unwrap();
        assert_eq!((again.inserted, again.replaced, again.unchanged), (0, 0, 2));
        assert_eq!(again.import_id, None);
        assert_eq!(store.latest_snapshot("c").unwrap().unwrap().0, 9);
        let mut more = row("a", 0, 100, 4);
        more.spend = 7.5;
        let changed = store.import_results(&import(12, vec![more])).unwrap();
        assert_eq!((changed.inserted, changed.replaced), (0, 1));
        // The replaced period's spend counts once, as re-imported.
        assert_eq!(store.results_spend("c").unwrap(), 12.5);
        assert_eq!(changed.replaced_after_seq, Some(5));
        // The snapshots that learned the old numbers (covering 5 or later) are gone.
        assert_eq!(store.latest_snapshot("c").unwrap().unwrap().0, 3);
        let stored = store.results("c", None).unwrap();
        assert_eq!(stored.len(), 2);
        // Learned in import order: b (import 1) then the replaced a (import 2).
        assert_eq!(stored[0].row.ad_name, "b");
        assert_eq!(stored[1].row.conversions, 4);
        assert_eq!(stored[1].after_seq, 12);
        assert_eq!(store.results("c", Some(5)).unwrap().len(), 1);
        let second = changed.import_id.unwrap();
        assert_eq!(store.import_rows("c", second).unwrap(), stored[1..]);
        assert_eq!(
            store.import_rows("c", first.import_id.unwrap()).unwrap(),
            stored[..1]
        );
    }

    #[test]
    fn a_refused_row_refuses_the_import_whole() {
        let store = Store::open_in_memory().unwrap();
        let mut bad = row("b", 0, 10, 0);
        bad.clicks = 11;
        let refused = store
            .import_results(&import(0, vec![row("a", 0, 100, 2), bad]))
            .unwrap_err();
        assert!(refused.to_string().contains("result row 2"), "{refused}");
        assert!(store.results("c", None).unwrap().is_empty());
        let twice = store
            .import_results(&import(0, vec![row("a", 0, 100, 2), row("a", 0, 90, 2)]))
            .unwrap_err();
        assert!(twice.to_string().contains("same period"), "{twice}");
    }

    #[test]
    fn plans_are_numbered_per_campaign_and_their_ads_known() {
        let store = Store::open_in_memory().unwrap();
        let plan = |campaign: &str| NewPlan {
            campaign_id: campaign.into(),
            revision: 1,
            start_ms: 0,
            end_ms: 86_400_000,
            budget: 100.0,
            plan_json: "{}".into(),
            ads: vec![PlanAd {
                segment: 0,
                ad_name: "tla-c-1-7".into(),
                version: 7,
                share: 0.5,
            }],
            key_id: "k".into(),
            at_ms: 0,
        };
        assert_eq!(store.save_plan(&plan("c")).unwrap().plan_id, 1);
        assert_eq!(store.save_plan(&plan("c")).unwrap().plan_id, 2);
        assert_eq!(store.save_plan(&plan("d")).unwrap().plan_id, 1);
        assert_eq!(store.plans("c").unwrap().len(), 2);
        assert_eq!(store.plan_ads("c", 2).unwrap()[0].share, 0.5);
        assert_eq!(store.planned_ads("c").unwrap().len(), 1);
        assert!(store.plan("c", 3).unwrap().is_none());
    }
}
