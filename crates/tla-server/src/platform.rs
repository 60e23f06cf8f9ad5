//! Platform mode in the service: plans out, results in (`docs/service.md`, *Platform
//! mode*; the planner is `tla_core::plan`).
//!
//! - [`make`] draws a plan for a period from the campaign's engine (under the learner's
//!   lock, with the learner's random stream), prices the period's budget (given, or
//!   [`period_budget`] from the flight in force) and stores it with each ad's share,
//!   the propensity of the plan's decision distribution ([`tla_store::Store::save_plan`]).
//!   With a stream the drawn plan is published as a `plan` change and every server
//!   stores it when its learner applies it, so plans are numbered in stream order and
//!   any server takes the results of any plan's ads.
//! - [`export`] gives a stored plan's rows (all, or only what changed since the plan
//!   before it) and [`csv`] writes them for a bulk-upload sheet.
//! - [`import`] checks a batch of a platform's results row by row (each refusal with
//!   its index, code and reason; a batch with any refusal stores nothing) and stores it
//!   in one transaction ([`tla_store::Store::import_results`]) under the learner's lock.
//!   With a stream the checked rows are published as a `result_import` change and
//!   every server's learner stores and learns them at the record's place
//!   ([`store_import`], docs/scale-out.md, *State changes*).
//!   New rows are learned at once ([`learn_import`], through
//!   `tla_core::engine::Engine::learn_results`); a row that replaces a stored one makes
//!   the engine be rebuilt ([`crate::correction::rebuild`]), so the old numbers are
//!   un-counted.
//!
//! Results reach an engine only through [`learn_import`], at their place in the event
//! log: an import taken when the engine had learned event `after_seq` is learned right
//! after that event, by the learner (at once), the replay of a data directory and a
//! rebuild alike ([`PendingResults`]). A snapshot covering event `C` holds the imports
//! taken after events up to `C` (the store deletes the snapshots an import outdates).

use crate::campaign::CampaignSlot;
use crate::error::{ApiError, ErrorCode};
use crate::pacing::CampaignPacing;
use crate::state::AppState;
use crate::wire::{
    AdChange, AdSetBody, PlanBody, PlanExport, PlanRequestBody, PlanRow, PlannedAdBody,
    RejectedResult, ResultBatch, ResultOutcome, ResultRowBody, VersionBody,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use tla_core::engine::Engine;
use tla_core::plan::{self, AdResult, Plan, PlanRequest, PlanSettings};
use tla_core::timestamp::{DAY_MS, format_rfc3339};
use tla_store::{
    NewPlan, NewResult, PlanAd, PlannedAd, ResultImport, Store, StoreError, StoredPlan,
    StoredResult,
};

/// The most ads a plan request may ask per ad set (`ads_per_segment`): a bulk-upload sheet
/// of more is not one anybody uploads, and the planner's work grows with it.
pub const MAX_ADS_PER_SEGMENT: usize = 1_000;

/// The budget of the period `[start_ms, end_ms)` when a plan request gives none: what
/// is left of the flight's budget in force (`budget - spent`) spread evenly over what
/// is left of the flight from the period's start, for the part of the period inside
/// the flight, and at most the daily cap per day of it. 0 for a period outside the
/// flight. `None` for a campaign without a `[flight]`.
pub fn period_budget(slot: &CampaignSlot, spent: f64, start_ms: i64, end_ms: i64) -> Option<f64> {
    let flight = slot.flight()?;
    let from = start_ms.max(flight.start_ms);
    let to = end_ms.min(flight.end_ms);
    if to <= from {
        return Some(0.0);
    }
    let left = (flight.budget - spent).max(0.0);
    let mut budget = left * (to - from) as f64 / (flight.end_ms - from) as f64;
    if let Some(cap) = flight.daily_cap {
        budget = budget.min(cap * (to - from) as f64 / DAY_MS as f64);
    }
    Some(budget)
}

/// The plan stored as `stored`.
fn decode(stored: &StoredPlan) -> Result<Plan, ApiError> {
    serde_json::from_str(&stored.plan_json).map_err(|error| {
        ApiError::internal(format!(
            "plan {} of campaign {} does not decode: {error}",
            stored.plan_id, stored.campaign_id
        ))
    })
}

/// Draws, stores and returns a plan for the period `request` names (see the module
/// documentation). Blocking: run it on a blocking thread.
pub fn make(
    state: &AppState,
    slot: &CampaignSlot,
    request: &PlanRequestBody,
    key_id: &str,
) -> Result<PlanBody, ApiError> {
    crate::state::refuse_archived(slot, "planned")?;
    let (start_ms, end_ms) =
        crate::spend::parse_period(&request.start, &request.end).map_err(|(field, problem)| {
            ApiError::new(ErrorCode::InvalidPeriod, format!("{field}: {problem}"))
        })?;
    let store = state.store();
    let budget = match request.budget {
        Some(budget) => {
            if !(budget.is_finite() && (0.0..=tla_core::spec::AMOUNT_LIMIT).contains(&budget)) {
                return Err(ApiError::new(
                    ErrorCode::InvalidBudget,
                    format!(
                        "budget: {budget}; accepted: a finite amount from 0 to {}",
                        tla_core::spec::AMOUNT_LIMIT
                    ),
                ));
            }
            budget
        }
        None => {
            let spent = crate::report::stored_spend(slot, store)?.total();
            period_budget(slot, spent, start_ms, end_ms).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidPlan,
                    format!(
                        "budget: campaign {} has no [flight] to take the period's budget from; accepted: a request with `budget` (tla plan --budget)",
                        slot.id
                    ),
                )
            })?
        }
    };
    let mut settings = PlanSettings {
        min_roas: slot.flight().and_then(|flight| flight.min_roas),
        ..PlanSettings::default()
    };
    if let Some(k) = request.ads_per_segment {
        if k > MAX_ADS_PER_SEGMENT {
            return Err(ApiError::new(
                ErrorCode::InvalidPlan,
                format!("ads_per_segment: {k}; accepted: 1 to {MAX_ADS_PER_SEGMENT}"),
            ));
        }
        settings.ads_per_segment = k;
    }
    // One plan at a time, drawn from the learner's stream, with no event applied
    // meanwhile.
    let mut learner = state.learner_state();
    let previous = store.plans(&slot.id)?.pop();
    let previous = previous.as_ref().map(decode).transpose()?;
    let drawn = {
        let engine = slot.engine();
        let mut plan_request = PlanRequest::new(start_ms, end_ms, budget);
        // A plan of another revision may number its segments otherwise.
        plan_request.previous = previous
            .as_ref()
            .filter(|previous| previous.revision == engine.revision());
        plan_request.settings = settings;
        // The versions' draw scale follows the flight left
        // (`PlanSettings::draw_scale_schedule`; the budgets are priced at the exploiting
        // scale), by time: the server knows the flight's dates, not its traffic's shape.
        plan_request.flight_left = slot
            .flight()
            .and_then(|flight| plan::flight_left_by_time(flight.start_ms, flight.end_ms, end_ms));
        let drawn = match &slot.pacing {
            // Priced with what the campaign knows of costs (cost events, spend reports,
            // platform results) and of the traffic on offer (its opportunities).
            Some(pacing) => pacing.with_knowledge(|costs, traffic| {
                let priced = PlanRequest {
                    costs: (costs.observations() > 0.0).then_some(costs),
                    traffic: (traffic.seen() > 0.0).then_some(traffic),
                    ..plan_request.clone()
                };
                plan::make_plan(&engine, &priced, &mut learner.rng)
            }),
            None => plan::make_plan(&engine, &plan_request, &mut learner.rng),
        };
        drawn.map_err(|error| ApiError::new(ErrorCode::InvalidPlan, error.to_string()))?
    };
    let ads = drawn
        .ad_sets
        .iter()
        .flat_map(|ad_set| {
            ad_set.ads.iter().map(|ad| PlanAd {
                segment: ad_set.segment as u32,
                ad_name: plan::ad_name(&slot.id, drawn.revision, ad.version),
                version: ad.version,
                share: ad.share,
            })
        })
        .collect();
    let plan = NewPlan {
        campaign_id: slot.id.clone(),
        revision: drawn.revision,
        start_ms,
        end_ms,
        budget: drawn.budget(),
        plan_json: serde_json::to_string(&drawn).map_err(ApiError::internal)?,
        ads,
        key_id: key_id.to_owned(),
        at_ms: state.clock().now_ms(),
    };
    let stored = if state.stream().is_some() {
        // Every server stores it, numbered in stream order: the learner applies it.
        drop(learner);
        let change = crate::stream_log::Change::plan(&plan);
        match crate::change::submit(state, &slot.id, change, key_id, None)? {
            crate::change::Applied::Plan(stored) => stored,
            other => {
                return Err(ApiError::internal(format!("a plan applied as {other:?}")));
            }
        }
    } else {
        let stored = store.save_plan(&plan)?;
        drop(learner);
        stored
    };
    tracing::info!(campaign = %slot.id, plan = stored.plan_id, key = %key_id, "plan made");
    body(slot, &stored, &drawn)
}

/// A stored plan as the API shows it.
pub fn body(slot: &CampaignSlot, stored: &StoredPlan, plan: &Plan) -> Result<PlanBody, ApiError> {
    let revision = slot.revision(plan.revision).ok_or_else(|| {
        ApiError::internal(format!(
            "plan {} of campaign {} names revision {}, which the campaign does not hold",
            stored.plan_id, slot.id, plan.revision
        ))
    })?;
    let campaign = &revision.campaign;
    let names = &campaign.design().segment_names;
    Ok(PlanBody {
        plan_id: stored.plan_id,
        campaign_id: slot.id.clone(),
        revision: plan.revision,
        start: format_rfc3339(plan.start_ms),
        end: format_rfc3339(plan.end_ms),
        budget: plan.budget(),
        price_of_money: plan.price_of_money,
        created: format_rfc3339(stored.at_ms),
        ad_sets: plan
            .ad_sets
            .iter()
            .map(|ad_set| AdSetBody {
                ad_set: names.get(ad_set.segment).cloned().unwrap_or_default(),
                budget: ad_set.budget,
                ads: ad_set
                    .ads
                    .iter()
                    .map(|ad| PlannedAdBody {
                        ad_name: plan::ad_name(&slot.id, plan.revision, ad.version),
                        share: ad.share,
                        version: VersionBody::new(campaign, plan.revision, ad.version),
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// Plan `plan_id` of the campaign, stored and decoded; 404 `plan_not_found` when the
/// campaign holds none by that number.
pub fn find(
    store: &Store,
    slot: &CampaignSlot,
    plan_id: u64,
) -> Result<(StoredPlan, Plan), ApiError> {
    let stored = store.plan(&slot.id, plan_id)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::PlanNotFound,
            format!(
                "campaign {} holds no plan {plan_id}; GET /v1/campaigns/{}/plans lists its plans",
                slot.id, slot.id
            ),
        )
    })?;
    let plan = decode(&stored)?;
    Ok((stored, plan))
}

/// Every plan of the campaign, oldest first.
pub fn list(store: &Store, slot: &CampaignSlot) -> Result<Vec<PlanBody>, ApiError> {
    store
        .plans(&slot.id)?
        .iter()
        .map(|stored| body(slot, stored, &decode(stored)?))
        .collect()
}

/// The rows of plan `plan_id` (see [`PlanRow`]); with `changed`, only the ads added,
/// removed, or with another share or ad set budget than in the plan before it (every
/// ad is added in a campaign's first plan).
pub fn export(
    store: &Store,
    slot: &CampaignSlot,
    plan_id: u64,
    changed: bool,
) -> Result<PlanExport, ApiError> {
    let (stored, plan) = find(store, slot, plan_id)?;
    let current = rows(slot, &stored, &plan)?;
    if !changed {
        return Ok(PlanExport {
            plan_id,
            previous_plan_id: None,
            rows: current,
        });
    }
    let previous = match plan_id.checked_sub(1).filter(|&id| id > 0) {
        Some(id) => Some(find(store, slot, id)?),
        None => None,
    };
    let before = match &previous {
        Some((stored, plan)) => rows(slot, stored, plan)?,
        None => Vec::new(),
    };
    let key = |row: &PlanRow| (row.ad_set.clone(), row.ad_name.clone());
    let before_by_key: HashMap<_, _> = before.iter().map(|row| (key(row), row)).collect();
    let now_keys: HashSet<_> = current.iter().map(key).collect();
    let mut out = Vec::new();
    for row in &current {
        let change = match before_by_key.get(&key(row)) {
            None => Some(AdChange::Added),
            Some(old) if old.share != row.share || old.ad_set_budget != row.ad_set_budget => {
                Some(AdChange::Changed)
            }
            Some(_) => None,
        };
        if let Some(change) = change {
            out.push(PlanRow {
                change: Some(change),
                ..row.clone()
            });
        }
    }
    for row in before.iter().filter(|row| !now_keys.contains(&key(row))) {
        out.push(PlanRow {
            change: Some(AdChange::Removed),
            ..row.clone()
        });
    }
    Ok(PlanExport {
        plan_id,
        previous_plan_id: previous.map(|(stored, _)| stored.plan_id),
        rows: out,
    })
}

/// A plan's rows, by ad set then ad, without `change`.
fn rows(slot: &CampaignSlot, stored: &StoredPlan, plan: &Plan) -> Result<Vec<PlanRow>, ApiError> {
    let shown = body(slot, stored, plan)?;
    Ok(shown
        .ad_sets
        .iter()
        .flat_map(|ad_set| {
            ad_set.ads.iter().map(|ad| PlanRow {
                plan_id: stored.plan_id,
                period_start: shown.start.clone(),
                period_end: shown.end.clone(),
                ad_set: ad_set.ad_set.clone(),
                ad_set_budget: ad_set.budget,
                ad_name: ad.ad_name.clone(),
                version: ad.version.version,
                share: ad.share,
                change: None,
                text: ad.version.text.clone(),
                parts: ad.version.parts.clone(),
            })
        })
        .collect())
}

/// The columns of a plan's CSV before the components': see [`csv`].
pub const CSV_COLUMNS: [&str; 10] = [
    "plan_id",
    "period_start",
    "period_end",
    "ad_set",
    "ad_set_budget",
    "ad_name",
    "version",
    "share",
    "change",
    "text",
];

/// A plan's rows as CSV for a bulk-upload sheet: [`CSV_COLUMNS`], then per component of
/// the campaign (in the spec's order) `<component>` (what its option shows: text, else
/// asset, else name) and `<component>_asset` (the asset reference, empty for a text
/// option). Text cells are made safe for spreadsheets ([`crate::csv_text`]).
pub fn csv(slot: &CampaignSlot, export: &PlanExport) -> Result<String, ApiError> {
    let components: Vec<String> = slot
        .current()
        .campaign
        .spec()
        .components
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = CSV_COLUMNS.iter().map(|c| c.to_string()).collect();
    for component in &components {
        header.push(component.clone());
        header.push(format!("{component}_asset"));
    }
    writer.write_record(&header).map_err(ApiError::internal)?;
    let safe = |text: &str| crate::csv_text::spreadsheet_safe(text).into_owned();
    for row in &export.rows {
        let change = match row.change {
            Some(AdChange::Added) => "added",
            Some(AdChange::Removed) => "removed",
            Some(AdChange::Changed) => "changed",
            None => "",
        };
        let mut record = vec![
            row.plan_id.to_string(),
            row.period_start.clone(),
            row.period_end.clone(),
            safe(&row.ad_set),
            row.ad_set_budget.to_string(),
            safe(&row.ad_name),
            row.version.to_string(),
            row.share.to_string(),
            change.to_owned(),
            safe(&row.text),
        ];
        for component in &components {
            let part = row.parts.iter().find(|p| &p.component == component);
            record.push(part.map(|p| safe(&p.shown)).unwrap_or_default());
            record.push(
                part.and_then(|p| p.asset.as_deref())
                    .map(safe)
                    .unwrap_or_default(),
            );
        }
        writer.write_record(&record).map_err(ApiError::internal)?;
    }
    let bytes = writer.into_inner().map_err(ApiError::internal)?;
    String::from_utf8(bytes).map_err(ApiError::internal)
}

// ---- results ---------------------------------------------------------------------

/// The most a count may be (whole numbers above 2^53 are not exact in JSON).
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// A refused row: its code and what was wrong and what is accepted.
type Refusal = (ErrorCode, String);

/// Checks one result row against the campaign's planned ads (by name) and the rules of
/// a result ([`AdResult::check`]).
fn check_row(
    slot: &CampaignSlot,
    planned: &HashMap<&str, Vec<&PlannedAd>>,
    raw: &ResultRowBody,
) -> Result<NewResult, Refusal> {
    let Some(ads) = planned.get(raw.ad_name.as_str()) else {
        let why = match plan::parse_ad_name(&raw.ad_name) {
            Err(error) => error.to_string(),
            Ok((campaign, _, _)) if campaign != slot.id => format!(
                "ad {}: an ad of campaign {}, not of {}; accepted: the ads of this campaign's plans",
                crate::error::quoted(&raw.ad_name),
                crate::error::quoted(&campaign),
                slot.id
            ),
            Ok(_) => format!(
                "ad {}: no plan of campaign {} runs it; accepted: an ad name of one of its plans (GET /v1/campaigns/{}/plans)",
                crate::error::quoted(&raw.ad_name),
                slot.id,
                slot.id
            ),
        };
        return Err((ErrorCode::UnknownAd, why));
    };
    let ad_set_of = |ad: &PlannedAd| {
        slot.revision(ad.revision).and_then(|revision| {
            revision
                .campaign
                .design()
                .segment_names
                .get(ad.segment as usize)
                .cloned()
        })
    };
    let ad = match &raw.ad_set {
        Some(name) => ads
            .iter()
            .find(|ad| ad_set_of(ad).as_deref() == Some(name.as_str())),
        None if ads.len() == 1 => ads.first(),
        None => None,
    };
    let Some(ad) = ad else {
        let sets: Vec<String> = ads.iter().filter_map(|ad| ad_set_of(ad)).collect();
        let why = match &raw.ad_set {
            Some(name) => format!(
                "ad {} ran in no ad set named {}; accepted: an ad set it ran in ({})",
                crate::error::quoted(&raw.ad_name),
                crate::error::quoted(name),
                sets.join(", ")
            ),
            None => format!(
                "ad {} ran in {} ad sets ({}); accepted: a row that names its ad set (ad_set)",
                crate::error::quoted(&raw.ad_name),
                sets.len(),
                sets.join(", ")
            ),
        };
        return Err((ErrorCode::UnknownSegment, why));
    };
    let (start_ms, end_ms) = crate::spend::parse_period(&raw.start, &raw.end)
        .map_err(|(field, problem)| (ErrorCode::InvalidPeriod, format!("{field}: {problem}")))?;
    let count = |field: &str, x: f64| {
        if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= MAX_COUNT {
            Ok(x as u64)
        } else {
            Err((
                ErrorCode::InvalidResult,
                format!("{field}: {x} is not accepted; accepted: a whole number from 0 to 2^53"),
            ))
        }
    };
    let result = AdResult {
        segment: ad.segment as usize,
        version: ad.version,
        impressions: count("impressions", raw.impressions)?,
        clicks: count("clicks", raw.clicks)?,
        conversions: count("conversions", raw.conversions)?,
        value: raw.value,
        spend: raw.spend,
    };
    result
        .check()
        .map_err(|error| (ErrorCode::InvalidResult, error.to_string()))?;
    Ok(NewResult {
        ad_name: raw.ad_name.clone(),
        segment: ad.segment,
        revision: ad.revision,
        version: ad.version,
        start_ms,
        end_ms,
        impressions: result.impressions,
        clicks: result.clicks,
        conversions: result.conversions,
        value: result.value,
        spend: result.spend,
    })
}

/// Checks a batch of results and, when every row is accepted and `dry_run` is false,
/// stores it and brings the model in line (see the module documentation). Any refused
/// row: nothing stored, every refusal listed. Blocking: run it on a blocking thread.
pub fn import(
    state: &AppState,
    slot: &CampaignSlot,
    batch: &ResultBatch,
    key_id: &str,
    dry_run: bool,
) -> Result<ResultOutcome, ApiError> {
    let store = state.store();
    let planned_ads = store.planned_ads(&slot.id)?;
    let mut planned: HashMap<&str, Vec<&PlannedAd>> = HashMap::new();
    for ad in &planned_ads {
        planned.entry(ad.ad_name.as_str()).or_default().push(ad);
    }
    let mut rows = Vec::with_capacity(batch.rows.len());
    let mut rejected = Vec::new();
    let mut seen = HashMap::with_capacity(batch.rows.len());
    for (index, raw) in batch.rows.iter().enumerate() {
        let checked = check_row(slot, &planned, raw).and_then(|row| {
            match seen.insert((row.ad_name.clone(), row.segment, row.start_ms, row.end_ms), index) {
                Some(first) => Err((
                    ErrorCode::InvalidResult,
                    format!(
                        "ad {} has a row for this ad set and period already (index {first}); accepted: one row per ad, ad set and period",
                        crate::error::quoted(&row.ad_name)
                    ),
                )),
                None => Ok(row),
            }
        });
        match checked {
            Ok(row) => rows.push(row),
            Err((code, error)) => rejected.push(RejectedResult {
                index,
                code: code.as_str().to_owned(),
                error,
            }),
        }
    }
    let outcome = ResultOutcome {
        inserted: 0,
        replaced: 0,
        unchanged: 0,
        dry_run,
        rejected,
        rebuild: None,
    };
    if !outcome.rejected.is_empty() || dry_run || rows.is_empty() {
        return Ok(outcome);
    }
    if state.stream().is_some() {
        // Every server stores and learns the rows at the record's place.
        let change = crate::stream_log::Change::ResultImport {
            rows: rows.iter().map(crate::stream_log::ResultRow::of).collect(),
        };
        return match crate::change::submit(state, &slot.id, change, key_id, None)? {
            crate::change::Applied::Results(outcome) => Ok(outcome),
            other => Err(ApiError::internal(format!(
                "a results import applied as {other:?}"
            ))),
        };
    }
    // No event is applied meanwhile: the import's place in the log is the learner's.
    let mut learner = state.learner_state();
    let after_seq = state.applied_seq();
    let at_ms = state.clock().now_ms();
    store_import(
        state,
        slot,
        rows,
        key_id,
        at_ms,
        after_seq,
        &mut learner.rng,
    )
}

/// Stores checked result rows of campaign `slot` as one import taken after event
/// `after_seq` and brings the model in line: new rows learned at once
/// ([`learn_import`]), replaced ones by a rebuild of the engine with `rng`; the pacing
/// learns their costs and spend. The caller holds the learner's lock (the route of a
/// single server; the learner applying a stream's `result_import` record, with
/// `after_seq` the record's sequence). Blocking.
pub(crate) fn store_import(
    state: &AppState,
    slot: &CampaignSlot,
    rows: Vec<NewResult>,
    key_id: &str,
    at_ms: i64,
    after_seq: u64,
    rng: &mut rand_pcg::Pcg64Mcg,
) -> Result<ResultOutcome, ApiError> {
    let store = state.store();
    let mut outcome = ResultOutcome {
        inserted: 0,
        replaced: 0,
        unchanged: 0,
        dry_run: false,
        rejected: Vec::new(),
        rebuild: None,
    };
    let engine_revision = slot.engine().revision();
    let stored = store.import_results(&ResultImport {
        campaign_id: slot.id.clone(),
        after_seq,
        engine_revision,
        rows,
        key_id: key_id.to_owned(),
        at_ms,
    })?;
    outcome.inserted = stored.inserted;
    outcome.replaced = stored.replaced;
    outcome.unchanged = stored.unchanged;
    let Some(import_id) = stored.import_id else {
        return Ok(outcome);
    };
    if stored.replaced > 0 {
        // The engine learned the rows replaced: rebuild it without them.
        let now_ms = state.clock().now_ms();
        let (engine, rebuilt) =
            crate::correction::rebuild(slot, store, state.log().as_ref(), after_seq, rng, now_ms)?;
        slot.replace_engine(engine);
        outcome.rebuild = Some(rebuilt);
    } else {
        let rows = store.import_rows(&slot.id, import_id)?;
        learn_import(slot, &mut slot.engine_mut(), &rows);
    }
    if let Some(pacing) = &slot.pacing {
        learn_costs(slot, pacing, &store.import_rows(&slot.id, import_id)?);
        pacing.restore_spent(slot, store, state.clock().now_ms())?;
    }
    // Snapshot at the next round: the store deleted those the import outdated.
    slot.since_snapshot.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        campaign = %slot.id,
        import = import_id,
        inserted = stored.inserted,
        replaced = stored.replaced,
        key = %key_id,
        "platform results imported"
    );
    Ok(outcome)
}

/// The one path from stored results to an engine: the rows of one import (in the
/// store's order), learned by period end (each period's rows together, at its end,
/// through `Engine::learn_results`), each mapped from its plan's revision to the
/// engine's, after the revisions made before the import.
pub fn learn_import(slot: &CampaignSlot, engine: &mut Engine, rows: &[StoredResult]) {
    let Some(first) = rows.first() else {
        return;
    };
    crate::revise::catch_up_to_import(slot, engine, first.after_seq, first.engine_revision);
    let in_force = engine.revision();
    let mut by_end: BTreeMap<i64, Vec<AdResult>> = BTreeMap::new();
    for stored in rows {
        let row = &stored.row;
        let Some((segment, version)) =
            crate::revise::map_decision(slot, row.revision, in_force, row.segment, row.version)
        else {
            tracing::warn!(campaign = %slot.id, ad = %row.ad_name, "a result row's version is not in the revision in force; skipped");
            continue;
        };
        by_end.entry(row.end_ms).or_default().push(AdResult {
            segment: segment as usize,
            version,
            impressions: row.impressions,
            clicks: row.clicks,
            conversions: row.conversions,
            value: row.value,
            spend: row.spend,
        });
    }
    for (end_ms, results) in by_end {
        if let Err(error) = engine.learn_results(&results, end_ms.max(0) as u64) {
            tracing::warn!(campaign = %slot.id, %error, "stored results skipped");
        }
    }
}

/// The pacing's cost models learn what `rows` (stored results of campaign `slot`)
/// paid per impression, each in the segment of the revision in force
/// ([`CampaignPacing::learn_result_costs`]); their spend is counted from the store.
pub fn learn_costs(slot: &CampaignSlot, pacing: &CampaignPacing, rows: &[StoredResult]) {
    let in_force = slot.current().number;
    for stored in rows {
        let row = &stored.row;
        if let Some((segment, _)) =
            crate::revise::map_decision(slot, row.revision, in_force, row.segment, row.version)
        {
            pacing.learn_result_costs(
                segment as usize,
                row.start_ms,
                row.end_ms,
                row.impressions,
                row.spend,
            );
        }
    }
}

/// The stored results a replay or a rebuild has yet to learn, per campaign, in the
/// order learned: each import right after the event it was taken after.
#[derive(Debug, Default)]
pub struct PendingResults {
    by_campaign: HashMap<String, VecDeque<StoredResult>>,
}

impl PendingResults {
    /// Loads campaign `campaign_id`'s results not held by a snapshot covering event
    /// `covered` (all of them without a snapshot).
    pub fn load(
        &mut self,
        store: &Store,
        campaign_id: &str,
        covered: Option<u64>,
    ) -> Result<(), StoreError> {
        let rows = store.results(campaign_id, covered)?;
        if !rows.is_empty() {
            self.by_campaign.insert(campaign_id.to_owned(), rows.into());
        }
        Ok(())
    }

    /// Learns the imports of `slot`'s campaign taken before event `seq` (after an event
    /// below it).
    pub fn before(&mut self, slot: &CampaignSlot, engine: &mut Engine, seq: u64) {
        if let Some(queue) = self.by_campaign.get_mut(&slot.id) {
            learn_due(slot, engine, queue, |after| after < seq);
        }
    }

    /// Learns every import of `slot`'s campaign left.
    pub fn rest(&mut self, slot: &CampaignSlot, engine: &mut Engine) {
        if let Some(mut queue) = self.by_campaign.remove(&slot.id) {
            learn_due(slot, engine, &mut queue, |_| true);
        }
    }
}

fn learn_due(
    slot: &CampaignSlot,
    engine: &mut Engine,
    queue: &mut VecDeque<StoredResult>,
    due: impl Fn(u64) -> bool,
) {
    while let Some(import_id) = queue
        .front()
        .filter(|row| due(row.after_seq))
        .map(|row| row.import_id)
    {
        let mut rows = Vec::new();
        while let Some(row) = queue.front().filter(|row| row.import_id == import_id) {
            rows.push(row.clone());
            queue.pop_front();
        }
        learn_import(slot, engine, &rows);
    }
}
