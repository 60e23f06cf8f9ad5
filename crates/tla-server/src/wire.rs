//! The JSON bodies of API v1 as types: the handlers serialize these, and the OpenAPI
//! document ([`crate::openapi`]) takes its schemas from the same types, so the two
//! cannot drift apart. The report is [`tla_core::report::Report`], documented the same
//! way through tla-core's `openapi` feature.
//!
//! The request bodies the handlers parse ([`crate::event::EventIn`] and the decision
//! request) carry their schemas beside their parsers in [`crate::routes`].

use crate::campaign::CampaignSlot;
use serde::Serialize;
use std::collections::BTreeMap;
use tla_core::design::Objective;
use tla_core::spec::Campaign;
use utoipa::ToSchema;

/// Whether the service is serving, degraded, or draining for shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Serving.
    Ok,
    /// Storage cannot take writes (see `storage`): decisions are refused (503 or
    /// 507) and so are events on a full disk; answered with HTTP 503.
    Degraded,
    /// Shutting down: ingest is refused, the learner finishes the log.
    Closing,
}

/// Whether the data directory takes writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageStatus {
    /// The last writes of the decision log and the event log succeeded, and the
    /// decision log keeps up.
    Ok,
    /// The disk is full: decisions and events are refused with 507 `storage_full`
    /// until space is freed; the server retries by itself.
    Full,
    /// A write failed for another reason, or the decision log is at its backlog
    /// limit: decisions are refused with 503 `decision_log_unavailable`.
    Unwritable,
}

/// The storage part of `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StorageHealth {
    /// `ok`, `full` or `unwritable`.
    pub status: StorageStatus,
    /// Decisions served and not yet written to the decision log.
    pub decision_backlog: u64,
    /// The backlog at which decisions are refused with 503.
    pub decision_backlog_limit: u64,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`; `degraded` (HTTP 503) while storage cannot take writes; `closing` once
    /// shutdown began.
    pub status: HealthStatus,
    /// Sequence number of the last event the learner applied to the models.
    pub applied_seq: u64,
    /// Whether the data directory takes writes.
    pub storage: StorageHealth,
    /// The shared stream, when the event log is one (`tla serve --event-log nats://...`):
    /// its position, this server's lag and its connection. A stale stream makes the
    /// status `degraded` (503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<crate::stream_log::StreamHealth>,
    /// With a stream: each paced campaign's spend lease on this server and the leases
    /// of all servers as applied (docs/scale-out.md, *Budgets across servers*).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases: Option<Vec<crate::lease::LeaseHealth>>,
}

/// Whether a campaign serves decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Serves decisions.
    Active,
    /// Refuses decisions with 409 until resumed; events are still taken.
    Paused,
    /// Archived for good: refuses decisions with 409 and cannot be resumed; events
    /// for its earlier decisions are still taken; its report stays readable. Listed
    /// only when asked for (`?status=archived` or `?include_archived=true`).
    Archived,
}

impl CampaignStatus {
    /// The status's name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Active => "active",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Archived => "archived",
        }
    }
}

/// One component of a campaign and how many options it has.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentSize {
    /// Component name from the spec.
    pub name: String,
    /// Number of options.
    pub options: u32,
}

/// A campaign as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Campaign)]
pub struct CampaignBody {
    /// Campaign id.
    pub id: String,
    /// Campaign name from the spec.
    pub name: String,
    /// `active`, `paused` or `archived`.
    pub status: CampaignStatus,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The revision in force: 1 at creation, one more at each accepted replacement of
    /// the spec (`PUT /v1/campaigns/{id}/spec`).
    #[schema(minimum = 1)]
    pub revision: u32,
    /// When the revision in force took effect, ms since the Unix epoch (the creation
    /// time for revision 1).
    pub revised_at: i64,
    /// What the campaign maximizes.
    pub objective: Objective,
    /// Allowed versions (after exclusions).
    pub versions: u64,
    /// Versions of the full product of the components, exclusions included.
    pub total_versions: u64,
    /// Allowed versions that ask the reader to act.
    pub versions_asking_to_act: u64,
    /// The components in declared order.
    pub components: Vec<ComponentSize>,
    /// The segment names in declared order.
    pub segments: Vec<String>,
    /// Events the learner has applied to the campaign's models.
    pub events_learned: u64,
    /// Hours after a decision within which its clicks and conversions are attributed.
    pub attribution_window_hours: u32,
    /// The largest conversion value accepted: the spec's `max_value` or its default
    /// (100 times the largest ask; 10000 without asks).
    pub max_value: f64,
    /// The flight in force (budget, daily cap, dates, minimum return); null when the
    /// spec has no `[flight]`.
    #[schema(required)]
    pub flight: Option<FlightBody>,
}

/// A campaign's flight as it stands: the spec's dates and minimum return, the budget
/// and daily cap in force (the spec's, as the latest budget change set them).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Flight)]
pub struct FlightBody {
    /// What the whole flight may spend, in force.
    pub budget: f64,
    /// What one UTC day may spend, in force; null for no daily cap.
    #[schema(required)]
    pub daily_cap: Option<f64>,
    /// The budget the spec gives.
    pub spec_budget: f64,
    /// The daily cap the spec gives; null for none.
    #[schema(required)]
    pub spec_daily_cap: Option<f64>,
    /// Flight start, RFC 3339 in UTC.
    pub start: String,
    /// Flight end, RFC 3339 in UTC.
    pub end: String,
    /// The least value raised per unit of spend; null when the spec sets none.
    #[schema(required)]
    pub min_roas: Option<f64>,
}

impl FlightBody {
    /// The flight in force of a campaign whose spec's flight is `spec`.
    pub fn new(in_force: &tla_core::spec::FlightPlan, spec: &tla_core::spec::FlightPlan) -> Self {
        Self {
            budget: in_force.budget,
            daily_cap: in_force.daily_cap,
            spec_budget: spec.budget,
            spec_daily_cap: spec.daily_cap,
            start: tla_core::timestamp::format_rfc3339(in_force.start_ms),
            end: tla_core::timestamp::format_rfc3339(in_force.end_ms),
            min_roas: in_force.min_roas,
        }
    }
}

impl CampaignBody {
    /// The campaign of `slot` as it stands now (status and events learned included).
    pub fn new(slot: &CampaignSlot) -> Self {
        let current = slot.current();
        let campaign = &current.campaign;
        let design = campaign.design();
        let status = if slot.is_archived() {
            CampaignStatus::Archived
        } else if slot.is_paused() {
            CampaignStatus::Paused
        } else {
            CampaignStatus::Active
        };
        Self {
            id: slot.id.clone(),
            name: slot.name.clone(),
            status,
            created_at: slot.created_at_ms,
            revision: current.number,
            revised_at: current.at_ms,
            objective: design.objective,
            versions: campaign.allowed_versions(),
            total_versions: campaign.total_versions(),
            versions_asking_to_act: campaign.acting_versions(),
            components: design
                .component_names
                .iter()
                .zip(design.space.option_counts())
                .map(|(name, &options)| ComponentSize {
                    name: name.clone(),
                    options,
                })
                .collect(),
            segments: design.segment_names.clone(),
            events_learned: slot.engine().events(),
            attribution_window_hours: campaign.spec().attribution_window_hours,
            max_value: campaign.max_value(),
            flight: slot
                .flight()
                .zip(campaign.flight())
                .map(|(in_force, spec)| FlightBody::new(&in_force, spec)),
        }
    }
}

/// `GET /v1/campaigns`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignList {
    /// Every campaign, oldest first.
    pub campaigns: Vec<CampaignBody>,
}

/// One option of a version, with what an ad server needs to render it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionPart {
    /// Component name from the spec.
    pub component: String,
    /// Option name from the spec.
    pub option: String,
    /// The option's text, for a text option; null otherwise.
    #[schema(required)]
    pub text: Option<String>,
    /// The option's asset reference (URI or path of an image, video, ...), for an asset
    /// option; null otherwise.
    #[schema(required)]
    pub asset: Option<String>,
    /// What the option shows in the rendered text: its text, else its asset, else its
    /// name.
    pub shown: String,
}

/// One version of a campaign: its options, what each shows, and its rendered text.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Version)]
pub struct VersionBody {
    /// Version index in the version space of the campaign's revision `revision`.
    pub version: u64,
    /// The campaign's revision this version belongs to (1 at creation, one more at
    /// each accepted spec replacement).
    #[schema(minimum = 1)]
    pub revision: u32,
    /// The option chosen for each component, by component name.
    pub options: BTreeMap<String, String>,
    /// The options in component order, each with its text or asset reference: enough
    /// to render the version without a copy of the spec.
    pub parts: Vec<VersionPart>,
    /// The version rendered as text: the spec's `template` with each `{component}`
    /// replaced by what its option shows; without a template, those parts joined with
    /// ` | ` in component order.
    pub text: String,
    /// Whether the version asks the reader to act.
    pub asks_action: bool,
    /// The donation ask amount (null when the version carries none).
    #[schema(required)]
    pub ask: Option<f64>,
}

impl VersionBody {
    /// Version `version` of `campaign`, the campaign's revision `revision` (the caller
    /// checks the version exists).
    pub fn new(campaign: &Campaign, revision: u32, version: u64) -> Self {
        let chosen = campaign.chosen(version);
        Self {
            version,
            revision,
            options: chosen
                .iter()
                .map(|c| (c.component_name.to_string(), c.spec.name.clone()))
                .collect(),
            parts: chosen
                .iter()
                .map(|c| VersionPart {
                    component: c.component_name.to_string(),
                    option: c.spec.name.clone(),
                    text: c.spec.text.clone(),
                    asset: c.spec.asset.clone(),
                    shown: c.spec.display_text().to_string(),
                })
                .collect(),
            text: campaign.render(version),
            asks_action: campaign.asks_to_act(version),
            ask: campaign.ask_amount(version),
        }
    }
}

/// One decision: the version chosen, with what the event join needs.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Decision)]
pub struct DecisionBody {
    /// The version chosen.
    #[serde(flatten)]
    pub version: VersionBody,
    /// Signed; carries what the event join needs. Events name it.
    pub decision_id: String,
    /// Exact probability the policy chose this version for this segment, in (0, 1].
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub propensity: f64,
    /// Which rebuild of the decision distributions chose it.
    pub model_version: u64,
    /// Whether the unit (or, without one, the request) is in the campaign's holdout:
    /// served the even split over the versions available to the segment, and
    /// `propensity` is the even split's, given the arm.
    pub held_out: bool,
}

/// Why a campaign with a budget declined an opportunity: do not bid.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkipBody {
    /// The reason's code: `price` (worth less than the price of money times its
    /// expected cost), `min_roas`, `throttle`, `budget` (the flight budget, with the
    /// spend reserved, cannot pay for it), `daily_cap`, `before_flight`, `after_flight`.
    pub reason: String,
    /// The reason in words.
    pub message: String,
}

/// An opportunity declined by a campaign with a budget: nothing is shown, nothing is
/// paid, and the ad server does not bid. It is logged like any decision, with the
/// exact probability of the skip; events naming its id are refused.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Skip)]
pub struct SkippedDecision {
    /// Why.
    pub skip: SkipBody,
    /// Signed, as a served decision's.
    pub decision_id: String,
    /// Exact probability of the skip, in (0, 1].
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub propensity: f64,
    /// Which rebuild of the decision distributions decided.
    pub model_version: u64,
    /// Whether the unit (or the request) is in the campaign's holdout (paced evenly on
    /// the holdout's share of the budget).
    pub held_out: bool,
}

/// One answer of the decide endpoint: a version served or, for a campaign with a
/// budget, a skip.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum DecisionOut {
    /// A version served.
    Served(DecisionBody),
    /// An opportunity declined.
    Skipped(SkippedDecision),
}

/// `POST /v1/campaigns/{id}/decisions`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionList {
    /// One decision per impression asked for, in order: a version, or (a campaign
    /// with a `[flight]` budget) a skip.
    pub decisions: Vec<DecisionOut>,
}

/// An event of a batch that was refused; nothing is stored for it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedEvent {
    /// Position of the event in the batch, from 0.
    pub index: usize,
    /// Why, as a stable code (`docs/service.md` lists them).
    #[schema(value_type = String)]
    pub code: &'static str,
    /// What was wrong with it and what is accepted.
    pub error: String,
}

/// `POST /v1/events`: the outcome of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestOutcome {
    /// Events stored (committed to the event log).
    pub accepted: u64,
    /// Exact repeats of a stored event (same id, type, decision_id and amount); stored
    /// once.
    pub duplicates: u64,
    /// Events refused, with their reasons.
    pub rejected: Vec<RejectedEvent>,
}

/// A spend report of a batch that was refused; nothing is stored for it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedSpendReport {
    /// Position of the report in the batch, from 0.
    pub index: usize,
    /// Why, as a stable code (`docs/service.md` lists them).
    #[schema(value_type = String)]
    pub code: &'static str,
    /// What was wrong with it and what is accepted.
    pub error: String,
}

/// `POST /v1/campaigns/{id}/spend`: the outcome of a batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SpendOutcome {
    /// Reports stored (committed).
    pub accepted: u64,
    /// Exact repeats of a stored report (same report_id, segment, period, amount and
    /// impressions); stored once.
    pub duplicates: u64,
    /// Reports refused, with their reasons.
    pub rejected: Vec<RejectedSpendReport>,
}

/// `PATCH /v1/campaigns/{id}/budget`: a new budget, a new daily cap, or both, and why.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetChangeRequest {
    /// The new budget of the whole flight: a positive amount up to 1e12, at least what
    /// the campaign has spent. Absent: unchanged.
    #[schema(exclusive_minimum = 0, maximum = 1e12)]
    pub budget: Option<f64>,
    /// The new daily cap: a positive amount up to the budget, or null for no daily
    /// cap. Absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0)]
    pub daily_cap: Option<Option<f64>>,
    /// Why (kept for the audit), 1 to 500 characters.
    #[schema(min_length = 1)]
    pub reason: String,
}

/// A field that may be absent (`None`), null (`Some(None)`) or a value.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<f64>>, D::Error> {
    <Option<f64> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// A recorded budget change, as audited.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = BudgetChange)]
pub struct BudgetChangeBody {
    /// The budget before the change.
    pub old_budget: f64,
    /// The budget after it.
    pub new_budget: f64,
    /// The daily cap before; null for none.
    #[schema(required)]
    pub old_daily_cap: Option<f64>,
    /// The daily cap after; null for none.
    #[schema(required)]
    pub new_daily_cap: Option<f64>,
    /// What the campaign had spent when the change was made (cost events and spend
    /// reports).
    pub spent: f64,
    /// Why, as given.
    pub reason: String,
    /// The id of the API key that asked.
    pub key_id: String,
    /// When, ms since the Unix epoch.
    pub at: i64,
}

impl BudgetChangeBody {
    /// The body of a recorded change.
    pub fn new(change: &tla_store::NewBudgetChange) -> Self {
        Self {
            old_budget: change.old_budget,
            new_budget: change.new_budget,
            old_daily_cap: change.old_daily_cap,
            new_daily_cap: change.new_daily_cap,
            spent: change.spent,
            reason: change.reason.clone(),
            key_id: change.key_id.clone(),
            at: change.at_ms,
        }
    }
}

/// `PATCH /v1/campaigns/{id}/budget`: the outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetChangeOutcome {
    /// The change as recorded.
    pub change: BudgetChangeBody,
    /// The campaign as it now stands (its `flight` holds the budget in force).
    pub campaign: CampaignBody,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `bad_request`, `not_found`.
    pub code: String,
    /// What was wrong and what is accepted.
    pub message: String,
}

/// `POST /v1/campaigns/{id}/corrections`: what to do to which stored event, and why.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionRequest {
    /// The `event_id` the event was sent with.
    #[schema(min_length = 1)]
    pub event_id: String,
    /// `retract` (learned as if never sent) or `correct` (a new value).
    pub action: CorrectionActionName,
    /// The new value, for `correct` only: a conversion's donation or a cost's spend.
    #[schema(minimum = 0)]
    pub value: Option<f64>,
    /// Why (kept for the audit and listed by the report), 1 to 500 characters.
    #[schema(min_length = 1)]
    pub reason: String,
}

/// What a correction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionActionName {
    /// The event is learned as if it had never been sent.
    Retract,
    /// The event's value becomes `value`.
    Correct,
}

/// A recorded correction, as audited.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Correction)]
pub struct CorrectionBody {
    /// The corrected event's id.
    pub event_id: String,
    /// The corrected event's sequence number in the event log.
    pub event_seq: u64,
    /// The corrected event's type.
    #[schema(schema_with = crate::openapi::event_type_schema)]
    pub event_type: &'static str,
    /// `retract` or `correct`.
    pub action: CorrectionActionName,
    /// The event's value before this correction; null when that was a conversion's
    /// unknown amount (sent without one), which is not 0.
    #[schema(required)]
    pub old_value: Option<f64>,
    /// The value after it; null for a retraction.
    #[schema(required)]
    pub new_value: Option<f64>,
    /// Why, as given.
    pub reason: String,
    /// The id of the API key that asked.
    pub key_id: String,
    /// When, ms since the Unix epoch.
    pub at: i64,
}

impl CorrectionBody {
    /// The body of a stored correction.
    pub fn new(correction: &tla_store::StoredCorrection) -> Self {
        Self {
            event_id: correction.event_id.clone(),
            event_seq: correction.event_seq,
            event_type: correction.event_kind.as_str(),
            action: match correction.action {
                tla_store::CorrectionAction::Retract => CorrectionActionName::Retract,
                tla_store::CorrectionAction::Correct { .. } => CorrectionActionName::Correct,
            },
            old_value: correction.old_value,
            new_value: correction.new_value(),
            reason: correction.reason.clone(),
            key_id: correction.key_id.clone(),
            at: correction.at_ms,
        }
    }
}

/// How the campaign's model was rebuilt after a correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct RebuildBody {
    /// The event sequence the rebuild started after: the snapshot it restored, or 0
    /// (from the prior).
    pub from_seq: u64,
    /// The event sequence the rebuilt model covers (the learner's position).
    pub to_seq: u64,
    /// Events of the campaign applied after the snapshot.
    pub events_replayed: u64,
}

/// `POST /v1/campaigns/{id}/corrections`: the outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CorrectionOutcome {
    /// The correction recorded, or for a repeated retraction the earlier one.
    pub correction: CorrectionBody,
    /// True when the event was already retracted: nothing was recorded or changed.
    pub repeated: bool,
    /// How the model was rebuilt; null when nothing had been learned from the event yet
    /// (the learner applies it as corrected) or nothing changed.
    #[schema(required)]
    pub rebuild: Option<RebuildBody>,
}

/// One revision of a campaign's spec, as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = CampaignRevision)]
pub struct RevisionBody {
    /// The revision number: 1 for the spec the campaign was created with, one more for
    /// each accepted replacement.
    #[schema(minimum = 1)]
    pub revision: u32,
    /// When it took effect, ms since the Unix epoch (the creation time for revision 1).
    pub at: i64,
    /// The event sequence it took effect after: the campaign's events with a higher
    /// sequence number are learned under it (0 for revision 1).
    pub from_seq: u64,
    /// Why, as given; null when none was given (and for revision 1).
    #[schema(required)]
    pub reason: Option<String>,
    /// The id of the API key that made it; null for revision 1.
    #[schema(required)]
    pub key_id: Option<String>,
    /// The spec of this revision, as JSON (`docs/spec.md`).
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

/// `GET /v1/campaigns/{id}/revisions`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevisionList {
    /// Every revision, oldest first; the last is in force.
    pub revisions: Vec<RevisionBody>,
}

/// `PUT /v1/campaigns/{id}/spec`: the outcome of an accepted revision.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevisionOutcome {
    /// What changed, by name: options added, removed (none had an event), retired and
    /// restored; segments added and removed; the pins in force.
    pub summary: tla_core::revision::RevisionSummary,
    /// The revision recorded.
    pub revision: RevisionBody,
    /// The campaign as it now stands.
    pub campaign: CampaignBody,
}

// ---- platform mode: plans and results (`crate::platform`) ----------------------------

/// `POST /v1/campaigns/{id}/plans`: a plan for a period.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequestBody {
    /// Start of the period, RFC 3339 with an offset.
    pub start: String,
    /// End of the period (exclusive), RFC 3339 with an offset; after `start`, at most
    /// 366 days later.
    pub end: String,
    /// The period's budget over all ad sets (finite, >= 0). Absent: the campaign's
    /// flight says (what is left of its budget spread evenly over what is left of it,
    /// at most its daily cap per day); a campaign without a `[flight]` must give it.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub budget: Option<f64>,
    /// `K`: the most ads an ad set runs (default 6; at most 1,000).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub ads_per_segment: Option<usize>,
}

/// One ad of a plan's ad set: its stable name, the version it shows and its share.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlannedAdBody {
    /// `tla-<campaign>-<revision>-<version>`: the name to upload, which the results
    /// name back.
    pub ad_name: String,
    /// Its share of the ad set's impressions in the period: the propensity of the
    /// plan's decision distribution.
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub share: f64,
    /// The version, with its options, their texts and asset references.
    #[serde(flatten)]
    pub version: VersionBody,
}

/// One ad set (segment) of a plan.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdSetBody {
    /// The segment's name: the ad set's name.
    pub ad_set: String,
    /// Its budget for the period.
    pub budget: f64,
    /// Its ads, most weight first; their shares sum to 1.
    pub ads: Vec<PlannedAdBody>,
}

/// A stored plan.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Plan)]
pub struct PlanBody {
    /// The plan's number in the campaign, from 1.
    pub plan_id: u64,
    /// The campaign.
    pub campaign_id: String,
    /// The campaign revision its versions belong to.
    pub revision: u32,
    /// Start of the period, RFC 3339 (UTC).
    pub start: String,
    /// End of the period (exclusive), RFC 3339 (UTC).
    pub end: String,
    /// The period's budget, all ad sets together.
    pub budget: f64,
    /// The price of money the budgets were priced at.
    pub price_of_money: f64,
    /// When it was made, RFC 3339 (UTC).
    pub created: String,
    /// One per segment, in the campaign's order.
    pub ad_sets: Vec<AdSetBody>,
}

/// What changed in an ad from one plan to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdChange {
    /// Not in the previous plan's ad set.
    Added,
    /// In the previous plan's ad set, not in this one (its share and budget here are
    /// the previous plan's).
    Removed,
    /// In both, with another share or another ad set budget.
    Changed,
}

/// One row of a plan's export: what a bulk-upload sheet needs of one ad.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanRow {
    /// The plan's number.
    pub plan_id: u64,
    /// Start of the period, RFC 3339 (UTC).
    pub period_start: String,
    /// End of the period (exclusive), RFC 3339 (UTC).
    pub period_end: String,
    /// The ad set's name (the segment's).
    pub ad_set: String,
    /// The ad set's budget for the period.
    pub ad_set_budget: f64,
    /// The ad's stable name.
    pub ad_name: String,
    /// The version.
    pub version: u64,
    /// The ad's share of its ad set (its propensity).
    pub share: f64,
    /// With `changed=true`: what changed since the previous plan; null otherwise.
    #[schema(required)]
    pub change: Option<AdChange>,
    /// The version rendered as text.
    pub text: String,
    /// The options in component order, each with its text or asset reference.
    pub parts: Vec<VersionPart>,
}

/// `GET /v1/campaigns/{id}/plans/{plan}?format=json`: the plan's rows (with
/// `changed=true`, only the ads added, removed or changed since the previous plan).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanExport {
    /// The plan.
    pub plan_id: u64,
    /// The plan compared with (the campaign's plan before it), with `changed=true`.
    #[schema(required)]
    pub previous_plan_id: Option<u64>,
    /// The rows, by ad set then ad.
    pub rows: Vec<PlanRow>,
}

/// `GET /v1/campaigns/{id}/plans`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanList {
    /// Every plan of the campaign, oldest first.
    pub plans: Vec<PlanBody>,
}

/// One row of a platform's results: one ad, in one ad set, over one period.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultRowBody {
    /// The ad's name as planned (`tla-<campaign>-<revision>-<version>`).
    pub ad_name: String,
    /// The ad set's name (a segment's). Needed when the ad ran in more than one ad set.
    #[serde(default)]
    pub ad_set: Option<String>,
    /// Start of the period, RFC 3339 with an offset.
    pub start: String,
    /// End of the period (exclusive), RFC 3339 with an offset; after `start`.
    pub end: String,
    /// Impressions: a whole number >= 0.
    #[schema(minimum = 0)]
    pub impressions: f64,
    /// Clicks: a whole number from 0 to the impressions.
    #[schema(minimum = 0)]
    pub clicks: f64,
    /// Conversions: a whole number from 0 to the impressions.
    #[schema(minimum = 0)]
    pub conversions: f64,
    /// Conversion value, summed: finite, >= 0.
    #[schema(minimum = 0)]
    pub value: f64,
    /// Amount spent: finite, >= 0.
    #[schema(minimum = 0)]
    pub spend: f64,
}

/// `POST /v1/campaigns/{id}/results`.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultBatch {
    /// The rows; at most one per (ad, ad set, period).
    pub rows: Vec<ResultRowBody>,
}

/// A result row refused, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedResult {
    /// Its 0-based index in the batch.
    pub index: usize,
    /// `unknown_ad`, `unknown_segment`, `invalid_period` or `invalid_result`.
    pub code: String,
    /// What was wrong and what is accepted.
    pub error: String,
}

/// `POST /v1/campaigns/{id}/results`: the outcome. With any row rejected, nothing is
/// stored (the counts are then 0).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultOutcome {
    /// Rows for a period not stored before.
    pub inserted: u64,
    /// Rows that replaced the stored row of the same ad, ad set and period.
    pub replaced: u64,
    /// Rows stored exactly so already (nothing changed for them).
    pub unchanged: u64,
    /// Whether the batch was only checked (`dry_run=true`): nothing stored.
    pub dry_run: bool,
    /// Refused rows; when any, the batch stored nothing.
    pub rejected: Vec<RejectedResult>,
    /// When rows were replaced, how the model was rebuilt (it had learned the old
    /// rows); null otherwise.
    #[schema(required)]
    pub rebuild: Option<RebuildBody>,
}

/// `GET /v1/campaigns/{id}/model`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ModelHash {
    /// The campaign.
    pub campaign_id: String,
    /// The event sequence the server's models have applied through.
    pub applied_seq: u64,
    /// Events the campaign's engine has learned.
    pub events: u64,
    /// SHA-256 (hex) of the engine's learned state: its snapshot bytes.
    pub sha256: String,
}

/// `GET /v1/campaigns/{id}/events/{event_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredEventBody {
    /// Its sequence number in the event log (on a stream, its stream sequence).
    pub seq: u64,
    /// The client's id.
    pub event_id: String,
    /// The decision it joins.
    pub decision_id: String,
    /// `impression`, `click`, `conversion` or `cost`.
    pub kind: String,
    /// Its amount as first stored (corrections do not change it).
    pub value: f64,
    /// False for a conversion of unknown amount.
    pub amount_known: bool,
    /// The log prefix its decision came from: the sequence the deciding server's models
    /// had applied, signed in the decision id (0 for ids made before it was).
    pub decision_model_seq: u64,
}
