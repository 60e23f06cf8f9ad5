//! The event log on a replicated NATS JetStream stream ([`JetStreamEventLog`]), shared
//! by several servers: `tla serve --event-log nats://HOST:PORT[,...] --stream NAME`.
//! The design, the stream's format, the deduplication rules and the failure behaviour
//! are in docs/scale-out.md.
//!
//! Every message of the stream is one JSON [`Record`]: the stream's first message is
//! its genesis (a check of the decision-id secret, so servers with another secret
//! refuse to start), then events and corrections, in the one order every server
//! applies. The stream sequence of an event IS its `seq`: sequences of other records
//! (and of the skipped repeats below) are gaps, which the [`EventLog`] contract allows.
//!
//! Each event is published with `<campaign>/<event id>` as its `Nats-Msg-Id`, so the
//! stream absorbs a retry within its deduplication window (answering the original's
//! sequence), and acknowledged only after the stream's publish ack (a quorum of the
//! replicas has it). A repeat after the window is stored again; every reader skips the
//! later copy of an id ([`Mirror::apply`]), so each server's model is the same
//! function of the same prefix.
//!
//! Each server follows the stream with an ordered consumer (recreated after any
//! error, from the last sequence it applied) into its [`Mirror`], kept in the server's
//! own SQLite file (events with their stream sequences, the other records as bytes, the
//! position written in the same transaction), which answers `read_after`, `find_event`
//! and `corrections`; a restart loads the mirror and follows the stream only after its
//! position. The [`EventLog`] trait is synchronous and called from blocking threads:
//! each call bridges into the server's runtime with [`Handle::block_on`] (never from
//! an async worker).

use async_nats::jetstream::{self, consumer, stream};
use futures_util::{FutureExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tla_store::{
    AppendOutcome, CorrectionAction, CorrectionOutcome, EventKind, EventLog, NewCorrection,
    NewEvent, Standing, StoreError, StoredCorrection, StoredEvent, standing, validate_correction,
    validate_event,
};
use tokio::runtime::Handle;

/// The format of the stream's records, written in its genesis.
pub const STREAM_FORMAT: u32 = 1;

/// The stream's deduplication window: a retry of an event id within it is absorbed by
/// the stream itself; a later one is stored again and skipped by every reader.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// The default of [`StreamSettings::stale_after`]: how long a server may go without
/// hearing from the stream before it refuses decisions.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(5);

/// The shortest decision-id secret accepted with a stream (bytes).
pub const MIN_SECRET_LEN: usize = 16;

/// Longest a call waits for the stream (a publish ack, the mirror catching up).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server retries opening its stream (a cluster electing a leader).
const OPEN_RETRY_FOR: Duration = Duration::from_secs(30);

/// How long the catch-up at start may go without progress before the start fails.
const CATCH_UP_STALL: Duration = Duration::from_secs(30);

/// The most messages the follower applies and writes to the mirror in one transaction.
const FLUSH_BATCH: usize = 4_096;

/// How often the stream's state is asked for (position, connection).
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Where the shared log is and how a server behaves when it loses it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSettings {
    /// The NATS servers, as `nats://HOST:PORT`.
    pub servers: Vec<String>,
    /// The stream's name (created if missing).
    pub stream: String,
    /// A server that has not heard from the stream for longer refuses decisions
    /// (503 `stream_unavailable`) rather than decide on a stale model.
    pub stale_after: Duration,
}

impl StreamSettings {
    /// Parses `--event-log nats://HOST:PORT[,HOST:PORT...]` (a bare `HOST:PORT` after a
    /// comma takes the scheme of the first) and checks the stream name (letters,
    /// digits, `-` and `_`, at most 64: it is also part of the subject).
    pub fn parse(event_log: &str, stream: &str, stale_after: Duration) -> Result<Self, String> {
        let Some(rest) = event_log.strip_prefix("nats://") else {
            return Err(format!(
                "--event-log {event_log:?} is not accepted; accepted: nats://HOST:PORT[,HOST:PORT...] (without it the log is the data directory's SQLite file)"
            ));
        };
        let mut servers = Vec::new();
        for part in rest.split(',') {
            let part = part.trim().trim_start_matches("nats://");
            let valid = part
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(format!(
                    "--event-log: {part:?} is not HOST:PORT; accepted: nats://HOST:PORT[,HOST:PORT...]"
                ));
            }
            servers.push(format!("nats://{part}"));
        }
        let name_ok = !stream.is_empty()
            && stream.len() <= 64
            && stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "--stream {stream:?} is not accepted; accepted: 1 to 64 letters, digits, '-' or '_'"
            ));
        }
        Ok(Self {
            servers,
            stream: stream.to_owned(),
            stale_after,
        })
    }

    /// The one subject the stream holds.
    pub fn subject(&self) -> String {
        format!("tla.{}.log", self.stream)
    }
}

/// One message of the stream. Values are stored as the bits of their `f64`, so every
/// reader gets exactly the number written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The stream's first message.
    Genesis {
        /// [`STREAM_FORMAT`] of the writer.
        format: u32,
        /// [`secret_check`] of the servers' decision-id secret.
        secret_check: String,
    },
    /// An event ([`NewEvent`]).
    Event {
        /// See [`NewEvent::campaign_id`].
        campaign_id: String,
        /// See [`NewEvent::event_id`].
        event_id: String,
        /// See [`NewEvent::decision_id`].
        decision_id: String,
        /// [`EventKind::as_str`].
        kind: String,
        /// `f64::to_bits` of [`NewEvent::value`].
        value_bits: u64,
        /// See [`NewEvent::amount_known`].
        amount_known: bool,
        /// See [`NewEvent::segment`].
        segment: u32,
        /// See [`NewEvent::version`].
        version: u64,
        /// See [`NewEvent::decided_at_ms`].
        decided_at_ms: i64,
        /// See [`NewEvent::at_ms`].
        at_ms: i64,
    },
    /// A campaign created on one server; every server starts it (the first record of
    /// an id wins).
    Campaign {
        /// See [`tla_store::CampaignRow::id`].
        id: String,
        /// See [`tla_store::CampaignRow::name`].
        name: String,
        /// The spec as JSON, as stored.
        spec_json: String,
        /// See [`tla_store::CampaignRow::created_at_ms`].
        created_at_ms: i64,
    },
    /// A correction ([`NewCorrection`]); its effect (and its old value) is decided
    /// when it is applied, in stream order.
    Correction {
        /// See [`NewCorrection::campaign_id`].
        campaign_id: String,
        /// See [`NewCorrection::event_id`].
        event_id: String,
        /// `None` for a retraction, else `f64::to_bits` of the new value.
        value_bits: Option<u64>,
        /// See [`NewCorrection::reason`].
        reason: String,
        /// See [`NewCorrection::key_id`].
        key_id: String,
        /// See [`NewCorrection::at_ms`].
        at_ms: i64,
    },
    // --- Spend leases (crate::lease; docs/scale-out.md, *Budgets across servers*) ---
    /// A server asks for a spend lease of a campaign's budget; granted or refused when
    /// applied, in stream order ([`crate::lease::LeaseBook::apply`]).
    Lease {
        /// See [`crate::lease::LeaseAsk::campaign_id`].
        campaign_id: String,
        /// See [`crate::lease::LeaseAsk::server`].
        server: String,
        /// `f64::to_bits` of [`crate::lease::LeaseAsk::amount`].
        amount_bits: u64,
        /// `f64::to_bits` of [`crate::lease::LeaseAsk::budget`].
        budget_bits: u64,
        /// See [`crate::lease::LeaseAsk::at_ms`].
        at_ms: i64,
    },
    // ---- state changes (docs/scale-out.md, "State changes") ----
    /// A change of a campaign's state or of the API keys ([`Change`]), applied by
    /// every server in stream order ([`crate::change`]); its outcome is decided then.
    Change(ChangeRecord),
}

// ---- state changes (docs/scale-out.md, "State changes") --------------------------

/// One state change as the stream holds it: what, of which campaign, asked by which
/// key, when. The server that takes the request publishes it and answers the outcome
/// its own learner decided when applying it ([`crate::change::submit`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The campaign changed; empty for a key's change.
    pub campaign_id: String,
    /// What changes.
    pub change: Change,
    /// The public id of the key that asked (empty when the server itself shares a key
    /// of its data directory).
    pub key_id: String,
    /// When it was asked, ms since the Unix epoch (the time every server records).
    pub at_ms: i64,
    /// The `Idempotency-Key` the request was sent with (a revision or a budget change),
    /// which names it on the stream: see [`ChangeRecord::message_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The state changes that travel through the stream, tagged by `kind`. Amounts are
/// the bits of their `f64`, as in events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// `PUT /v1/campaigns/{id}/spec`: revision n + 1, in force after this record's
    /// sequence.
    Revise {
        /// The new spec as JSON.
        spec_json: String,
        /// Why, as given.
        reason: Option<String>,
    },
    /// `POST /v1/campaigns/{id}/pause`.
    Pause,
    /// `POST /v1/campaigns/{id}/resume`.
    Resume,
    /// `POST /v1/campaigns/{id}/archive`.
    Archive,
    /// `PATCH /v1/campaigns/{id}/budget`.
    Budget {
        /// `f64::to_bits` of the new budget; `None`: unchanged.
        budget_bits: Option<u64>,
        /// Whether the daily cap changes.
        sets_daily_cap: bool,
        /// `f64::to_bits` of the new daily cap (when it changes); `None`: no cap.
        daily_cap_bits: Option<u64>,
        /// Why.
        reason: String,
    },
    /// An API key made on one server (`tla keys create --data`, `TLA_ADMIN_KEY`, the
    /// first admin key): every server stores it. Message id `key/<id>`.
    KeyCreated {
        /// The key's public id.
        id: String,
        /// SHA-256 of its secret, hex (the secret never leaves the server).
        hash: String,
        /// Its scopes.
        scopes: Vec<String>,
        /// Its label.
        label: String,
        /// When it was made, ms.
        created_at_ms: i64,
    },
    /// A key revoked on one server: every server refuses it. Message id
    /// `key-revoked/<id>`.
    KeyRevoked {
        /// The key's public id.
        id: String,
    },
    /// `POST /v1/campaigns/{id}/spend`: one spend report, stored by every server
    /// (the first copy of a report id wins). Message id `spend/<campaign>/<report id>`.
    SpendReport {
        /// See [`tla_store::NewSpendReport::report_id`].
        report_id: String,
        /// See [`tla_store::NewSpendReport::segment`].
        segment: u32,
        /// See [`tla_store::NewSpendReport::start_ms`].
        start_ms: i64,
        /// See [`tla_store::NewSpendReport::end_ms`].
        end_ms: i64,
        /// `f64::to_bits` of [`tla_store::NewSpendReport::amount`].
        amount_bits: u64,
        /// See [`tla_store::NewSpendReport::impressions`].
        impressions: Option<u64>,
    },
    /// `POST /v1/campaigns/{id}/results` (not a dry run): the rows of a platform's
    /// results as checked by the server that took them (ads resolved to their
    /// segment, revision and version), stored and learned by every server at this
    /// record's place.
    ResultImport {
        /// The rows, in the order sent.
        rows: Vec<ResultRow>,
    },
    /// `POST /v1/campaigns/{id}/plans`: a plan drawn by the server that took the
    /// request, stored by every server (plans are numbered in stream order), so a
    /// platform's results for its ads are taken by any server.
    Plan {
        /// See [`tla_store::NewPlan::revision`].
        revision: u32,
        /// See [`tla_store::NewPlan::start_ms`].
        start_ms: i64,
        /// See [`tla_store::NewPlan::end_ms`].
        end_ms: i64,
        /// `f64::to_bits` of [`tla_store::NewPlan::budget`].
        budget_bits: u64,
        /// See [`tla_store::NewPlan::plan_json`].
        plan_json: String,
        /// Its ads.
        ads: Vec<PlanAdRow>,
    },
}

/// One ad of a plan ([`tla_store::PlanAd`]) as the stream holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanAdRow {
    /// See [`tla_store::PlanAd::segment`].
    pub segment: u32,
    /// See [`tla_store::PlanAd::ad_name`].
    pub ad_name: String,
    /// See [`tla_store::PlanAd::version`].
    pub version: u64,
    /// `f64::to_bits` of [`tla_store::PlanAd::share`].
    pub share_bits: u64,
}

/// One checked row of a platform's results ([`tla_store::NewResult`]) as the stream
/// holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// See [`tla_store::NewResult::ad_name`].
    pub ad_name: String,
    /// See [`tla_store::NewResult::segment`].
    pub segment: u32,
    /// See [`tla_store::NewResult::revision`].
    pub revision: u32,
    /// See [`tla_store::NewResult::version`].
    pub version: u64,
    /// See [`tla_store::NewResult::start_ms`].
    pub start_ms: i64,
    /// See [`tla_store::NewResult::end_ms`].
    pub end_ms: i64,
    /// See [`tla_store::NewResult::impressions`].
    pub impressions: u64,
    /// See [`tla_store::NewResult::clicks`].
    pub clicks: u64,
    /// See [`tla_store::NewResult::conversions`].
    pub conversions: u64,
    /// `f64::to_bits` of [`tla_store::NewResult::value`].
    pub value_bits: u64,
    /// `f64::to_bits` of [`tla_store::NewResult::spend`].
    pub spend_bits: u64,
}

impl ResultRow {
    /// The row as the stream holds it.
    pub fn of(row: &tla_store::NewResult) -> ResultRow {
        ResultRow {
            ad_name: row.ad_name.clone(),
            segment: row.segment,
            revision: row.revision,
            version: row.version,
            start_ms: row.start_ms,
            end_ms: row.end_ms,
            impressions: row.impressions,
            clicks: row.clicks,
            conversions: row.conversions,
            value_bits: row.value.to_bits(),
            spend_bits: row.spend.to_bits(),
        }
    }

    /// The row to store.
    pub fn to_new(&self) -> tla_store::NewResult {
        tla_store::NewResult {
            ad_name: self.ad_name.clone(),
            segment: self.segment,
            revision: self.revision,
            version: self.version,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            impressions: self.impressions,
            clicks: self.clicks,
            conversions: self.conversions,
            value: f64::from_bits(self.value_bits),
            spend: f64::from_bits(self.spend_bits),
        }
    }
}

impl Change {
    /// The [`Change::Plan`] of a plan to store.
    pub fn plan(plan: &tla_store::NewPlan) -> Change {
        Change::Plan {
            revision: plan.revision,
            start_ms: plan.start_ms,
            end_ms: plan.end_ms,
            budget_bits: plan.budget.to_bits(),
            plan_json: plan.plan_json.clone(),
            ads: plan
                .ads
                .iter()
                .map(|ad| PlanAdRow {
                    segment: ad.segment,
                    ad_name: ad.ad_name.clone(),
                    version: ad.version,
                    share_bits: ad.share.to_bits(),
                })
                .collect(),
        }
    }

    /// The plan a [`Change::Plan`] of campaign `campaign_id` carries, asked by
    /// `key_id` at `at_ms` (`None` for another change).
    pub fn to_plan(
        &self,
        campaign_id: &str,
        key_id: &str,
        at_ms: i64,
    ) -> Option<tla_store::NewPlan> {
        let Change::Plan {
            revision,
            start_ms,
            end_ms,
            budget_bits,
            plan_json,
            ads,
        } = self
        else {
            return None;
        };
        Some(tla_store::NewPlan {
            campaign_id: campaign_id.to_owned(),
            revision: *revision,
            start_ms: *start_ms,
            end_ms: *end_ms,
            budget: f64::from_bits(*budget_bits),
            plan_json: plan_json.clone(),
            ads: ads
                .iter()
                .map(|ad| tla_store::PlanAd {
                    segment: ad.segment,
                    ad_name: ad.ad_name.clone(),
                    version: ad.version,
                    share: f64::from_bits(ad.share_bits),
                })
                .collect(),
            key_id: key_id.to_owned(),
            at_ms,
        })
    }

    /// The [`Change::SpendReport`] of a checked report.
    pub fn spend_report(report: &tla_store::NewSpendReport) -> Change {
        Change::SpendReport {
            report_id: report.report_id.clone(),
            segment: report.segment,
            start_ms: report.start_ms,
            end_ms: report.end_ms,
            amount_bits: report.amount.to_bits(),
            impressions: report.impressions,
        }
    }
}

impl ChangeRecord {
    /// The message id the change is published with, when it has one, so the stream's
    /// deduplication absorbs a repeat within its window: a change that is its own
    /// identity (a key made or revoked: `key/<id>`, `key-revoked/<id>`; a spend
    /// report: `spend/<campaign>/<report id>`), and a revision or budget change sent
    /// with an `Idempotency-Key` (`revise/<campaign>/<key>`, `budget/<campaign>/<key>`).
    /// Campaign ids hold no `/`.
    pub fn message_id(&self) -> Option<String> {
        let campaign = &self.campaign_id;
        match (&self.change, &self.idempotency_key) {
            (Change::KeyCreated { id, .. }, _) => Some(format!("key/{id}")),
            (Change::KeyRevoked { id }, _) => Some(format!("key-revoked/{id}")),
            (Change::SpendReport { report_id, .. }, _) => {
                Some(format!("spend/{campaign}/{report_id}"))
            }
            (Change::Revise { .. }, Some(key)) => Some(format!("revise/{campaign}/{key}")),
            (Change::Budget { .. }, Some(key)) => Some(format!("budget/{campaign}/{key}")),
            _ => None,
        }
    }
}

impl Record {
    fn of_event(event: &NewEvent) -> Record {
        Record::Event {
            campaign_id: event.campaign_id.clone(),
            event_id: event.event_id.clone(),
            decision_id: event.decision_id.clone(),
            kind: event.kind.as_str().to_owned(),
            value_bits: event.value.to_bits(),
            amount_known: event.amount_known,
            segment: event.segment,
            version: event.version,
            decided_at_ms: event.decided_at_ms,
            at_ms: event.at_ms,
        }
    }

    fn of_correction(correction: &NewCorrection) -> Record {
        Record::Correction {
            campaign_id: correction.campaign_id.clone(),
            event_id: correction.event_id.clone(),
            value_bits: match correction.action {
                CorrectionAction::Retract => None,
                CorrectionAction::Correct { value } => Some(value.to_bits()),
            },
            reason: correction.reason.clone(),
            key_id: correction.key_id.clone(),
            at_ms: correction.at_ms,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serializes")
    }
}

/// Where a nats-server binary is, for the tests that start a NATS cluster: `NATS_SERVER`,
/// else where scripts/nats-deps.sh installs it (`target/nats-server/nats-server` of the
/// workspace, or of `CARGO_TARGET_DIR` at build time), else `nats-server` on the PATH.
pub fn nats_server_binary() -> Option<std::path::PathBuf> {
    use std::path::{Path, PathBuf};
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let target = option_env!("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let installed = target.join("nats-server/nats-server");
    if installed.is_file() {
        return Some(installed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    })
}

/// The check of a decision-id secret written in the stream's genesis: SHA-256 of a
/// fixed label and the secret, hex. The secret itself never leaves the server.
pub fn secret_check(secret: &[u8]) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"tla stream secret v1\0");
    hasher.update(secret);
    hex(&hasher.finalize())
}

/// The `secret_check` of a stream's genesis record given as its bytes (a mirror's
/// first record, `Store::first_mirror_record`), or `None` when the bytes are not a
/// genesis: how the offline tools tell whether two data directories mirror streams of
/// the same secret without knowing it.
pub fn genesis_secret_check(payload: &[u8]) -> Option<String> {
    match serde_json::from_slice(payload).ok()? {
        Record::Genesis { secret_check, .. } => Some(secret_check),
        _ => None,
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Nats-Msg-Id` of an event: campaign ids hold no `/` (`c_` and hex).
fn message_id(campaign_id: &str, event_id: &str) -> String {
    format!("{campaign_id}/{event_id}")
}

/// The stream as this server has applied it: every event (first copy of each id) in
/// the server's SQLite file, every correction, and the outcome of each correction
/// record by its sequence. Events are written to the file batch by batch
/// ([`Mirror::flush`], with the position in the same transaction); every other record
/// is written as its bytes and, at the next start, applied again into memory
/// ([`Mirror::load`]), so a restart reads the stream only after the position. Each
/// correction recorded is also written, in the same transaction, into the file's
/// `corrections` table under its id (its place among the stream's corrections), where
/// the reports and the offline tools (`tla report --data`, `tla export`) read it.
#[derive(Debug)]
pub struct Mirror {
    /// The server's SQLite file, where the events and the position are kept.
    store: tla_store::Store,
    /// The stream's name (written with the position).
    stream: String,
    /// Applied and not yet written: [`Mirror::flush`] writes it.
    batch: tla_store::MirrorBatch,
    /// `(campaign_id, event_id)` to the sequence of the first copy, for the events of
    /// `batch` (the file's unique index answers for the others).
    batch_ids: HashMap<(String, String), u64>,
    /// While [`Mirror::load`] applies the stored records again: nothing is written.
    reloading: bool,
    /// The sequence of the last event mirrored.
    last_event_seq: u64,
    /// Every correction recorded, in stream order (`id` = index + 1).
    corrections: Vec<StoredCorrection>,
    /// The stream sequence of each of `corrections`' records (ascending, by index).
    correction_seqs: Vec<u64>,
    /// What each correction record did, by its stream sequence.
    correction_outcomes: HashMap<u64, CorrectionOutcome>,
    /// Campaigns created through the stream, in stream order (first record of an id).
    campaigns: Vec<tla_store::CampaignRow>,
    /// The last stream sequence applied.
    applied: u64,
    /// Records that did not decode (skipped by every reader alike).
    undecodable: u64,
    /// Later copies of an event id skipped.
    repeats_skipped: u64,
    /// Spend leases as applied ([`Record::Lease`]).
    leases: crate::lease::LeaseBook,
    /// State changes in stream order, with their sequences ([`Record::Change`]).
    changes: Vec<(u64, ChangeRecord)>,
    /// The keys the stream holds: id to whether a record revoked it.
    keys: HashMap<String, bool>,
    /// The spend reports the stream holds, `(campaign, report id)`: the first copy of
    /// an id is counted by the lease book, a later one is not (it is a duplicate or a
    /// conflict for every server's store alike).
    spend_reports: HashSet<(String, String)>,
    /// The platform results in force, `(campaign, ad name, segment, start, end)` to
    /// their spend: a re-import of a period replaces its spend in the lease book.
    result_spend: HashMap<(String, String, u32, i64, i64), f64>,
    /// Changes sent with an `Idempotency-Key`: message id to the sequence of its first
    /// copy.
    keyed_changes: HashMap<String, u64>,
    /// A later copy of a keyed change (stored after the deduplication window) to its
    /// first copy's sequence: applied as a repeat, never again.
    repeated_changes: HashMap<u64, u64>,
    /// The `secret_check` of the stream's genesis, once applied (it stays known here
    /// after the stream purged its first records).
    genesis_check: Option<String>,
}

impl Mirror {
    /// The mirror of `stream` kept in `store`: what the file holds, its records other
    /// than events applied again into memory. A file that mirrored another stream, or
    /// that holds events of its own SQLite log, is refused.
    pub fn load(store: tla_store::Store, stream: &str) -> Result<Mirror, StoreError> {
        let position = store.mirror_position()?;
        let last_event_seq = store.event_log().last_seq()?;
        match &position {
            Some(position) if position.stream != stream => {
                return Err(StoreError::InvalidInput(format!(
                    "this data directory mirrors stream {:?}, not {stream:?}; give each stream its own data directory",
                    position.stream
                )));
            }
            None if last_event_seq > 0 => {
                return Err(StoreError::InvalidInput(format!(
                    "this data directory holds its own SQLite event log ({last_event_seq} events); a server on stream {stream:?} needs a data directory of its own"
                )));
            }
            _ => {}
        }
        let mut mirror = Mirror {
            store,
            stream: stream.to_owned(),
            batch: tla_store::MirrorBatch::default(),
            batch_ids: HashMap::new(),
            reloading: true,
            last_event_seq,
            corrections: Vec::new(),
            correction_seqs: Vec::new(),
            correction_outcomes: HashMap::new(),
            campaigns: Vec::new(),
            applied: 0,
            undecodable: 0,
            repeats_skipped: 0,
            genesis_check: None,
            leases: crate::lease::LeaseBook::default(),
            changes: Vec::new(),
            keys: HashMap::new(),
            spend_reports: HashSet::new(),
            result_spend: HashMap::new(),
            keyed_changes: HashMap::new(),
            repeated_changes: HashMap::new(),
        };
        for (seq, payload) in mirror.store.mirror_records()? {
            mirror.apply(seq, &payload);
        }
        mirror.correction_outcomes.clear();
        mirror.reloading = false;
        if let Some(position) = &position {
            // A file written before the mirror kept its corrections in `corrections`
            // gets them now (rows already there are kept), at the same position.
            if !mirror.corrections.is_empty() {
                let batch = tla_store::MirrorBatch {
                    corrections: mirror.corrections.clone(),
                    ..tla_store::MirrorBatch::default()
                };
                mirror
                    .store
                    .write_mirror(stream, &batch, position.mirrored_seq)?;
            }
        }
        mirror.applied = position.map_or(0, |p| p.mirrored_seq);
        Ok(mirror)
    }

    /// The last stream sequence applied (and, once flushed, in the file).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Writes what was applied since the last flush, with the position, in one
    /// transaction. On an error nothing is written and the batch is kept for the next
    /// try.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.reloading {
            return Ok(());
        }
        self.store
            .write_mirror(&self.stream, &self.batch, self.applied)?;
        if let Some(last) = self.batch.events.last() {
            self.last_event_seq = last.seq;
        }
        self.batch = tla_store::MirrorBatch::default();
        self.batch_ids.clear();
        Ok(())
    }

    /// Applies the message at stream sequence `seq`: the one rule every server
    /// follows. A record that does not decode, a second genesis, a later copy of an
    /// event id and a correction of an unknown event change nothing but the position.
    pub fn apply(&mut self, seq: u64, payload: &[u8]) {
        if seq <= self.applied {
            return;
        }
        self.applied = seq;
        let record: Option<Record> = serde_json::from_slice(payload).ok();
        if !self.reloading && !matches!(record, Some(Record::Event { .. })) {
            // Every record but an event is kept as its bytes, applied again at start.
            self.batch.records.push((seq, payload.to_vec()));
        }
        let record = match record {
            Some(record) => record,
            None => {
                let error = serde_json::from_slice::<Record>(payload).unwrap_err();
                self.undecodable += 1;
                tracing::warn!(seq, %error, "stream record skipped: it does not decode");
                return;
            }
        };
        match record {
            // Checked when the server opens the stream (`JetStreamEventLog::open`).
            Record::Genesis { secret_check, .. } => {
                self.genesis_check.get_or_insert(secret_check);
            }
            Record::Campaign {
                id,
                name,
                spec_json,
                created_at_ms,
            } => {
                if !self.campaigns.iter().any(|c| c.id == id) {
                    self.campaigns.push(tla_store::CampaignRow {
                        id,
                        name,
                        spec_json,
                        status: tla_store::CampaignStatus::Active,
                        created_at_ms,
                    });
                }
            }
            Record::Event {
                campaign_id,
                event_id,
                decision_id,
                kind,
                value_bits,
                amount_known,
                segment,
                version,
                decided_at_ms,
                at_ms,
            } => {
                let Some(kind) = EventKind::from_name(&kind) else {
                    self.undecodable += 1;
                    tracing::warn!(seq, kind, "stream event skipped: unknown kind");
                    return;
                };
                let key = (campaign_id, event_id);
                if self.find(&key.0, &key.1).is_some() {
                    self.repeats_skipped += 1;
                    return;
                }
                self.batch_ids.insert(key.clone(), seq);
                self.batch.events.push(StoredEvent {
                    seq,
                    campaign_id: key.0,
                    event_id: key.1,
                    decision_id,
                    kind,
                    value: f64::from_bits(value_bits),
                    amount_known,
                    segment,
                    version,
                    decided_at_ms,
                    at_ms,
                });
            }
            Record::Correction {
                campaign_id,
                event_id,
                value_bits,
                reason,
                key_id,
                at_ms,
            } => {
                let correction = NewCorrection {
                    campaign_id,
                    event_id,
                    action: match value_bits {
                        None => CorrectionAction::Retract,
                        Some(bits) => CorrectionAction::Correct {
                            value: f64::from_bits(bits),
                        },
                    },
                    reason,
                    key_id,
                    at_ms,
                };
                let outcome = self.correct(seq, &correction);
                self.correction_outcomes.insert(seq, outcome);
            }
            // --- Spend leases ---
            Record::Lease {
                campaign_id,
                server,
                amount_bits,
                budget_bits,
                at_ms,
            } => {
                let ask = crate::lease::LeaseAsk {
                    campaign_id,
                    server,
                    amount: f64::from_bits(amount_bits),
                    budget: f64::from_bits(budget_bits),
                    at_ms,
                };
                // The costs (and their corrections) before this record, then the rule.
                self.count_lease_costs(seq);
                self.leases.apply(seq, &ask);
            }
            // ---- state changes: kept in order; every server's learner applies them ----
            Record::Change(change) => {
                match &change.change {
                    Change::KeyCreated { id, .. } => {
                        self.keys.entry(id.clone()).or_insert(false);
                    }
                    Change::KeyRevoked { id } => {
                        self.keys.insert(id.clone(), true);
                    }
                    // Spend not in cost events counts against the leases' budget too.
                    Change::SpendReport {
                        report_id,
                        amount_bits,
                        ..
                    } => {
                        let id = (change.campaign_id.clone(), report_id.clone());
                        if self.spend_reports.insert(id) {
                            let amount = f64::from_bits(*amount_bits);
                            self.leases.note_spend(&change.campaign_id, 0.0, amount);
                        }
                    }
                    Change::ResultImport { rows } => {
                        for row in rows {
                            let spend = f64::from_bits(row.spend_bits);
                            let key = (
                                change.campaign_id.clone(),
                                row.ad_name.clone(),
                                row.segment,
                                row.start_ms,
                                row.end_ms,
                            );
                            let old = self.result_spend.insert(key, spend).unwrap_or(0.0);
                            self.leases.note_spend(&change.campaign_id, old, spend);
                        }
                    }
                    _ => {}
                }
                // The first copy of a keyed change wins, whenever a retry came.
                if let Some(id) = change
                    .message_id()
                    .filter(|_| change.idempotency_key.is_some())
                {
                    let first = *self.keyed_changes.entry(id).or_insert(seq);
                    if first != seq {
                        self.repeated_changes.insert(seq, first);
                    }
                }
                self.changes.push((seq, change));
            }
        }
    }

    /// The correction record at `seq`: of the event of its id stored before it.
    fn correct(&mut self, seq: u64, correction: &NewCorrection) -> CorrectionOutcome {
        // When the records are applied again at start, the file also holds the events
        // after `seq`: an event first sent after its correction is unknown to it.
        let Some(event) = self
            .find(&correction.campaign_id, &correction.event_id)
            .filter(|event| event.seq < seq)
        else {
            return CorrectionOutcome::UnknownEvent;
        };
        let old_value = match standing(&event, &self.corrections) {
            Standing::Retracted(retraction) => {
                return CorrectionOutcome::AlreadyRetracted(retraction.clone());
            }
            Standing::Open { value } => value,
        };
        let stored = StoredCorrection::of(
            self.corrections.len() as u64 + 1,
            &event,
            old_value,
            correction,
        );
        self.corrections.push(stored.clone());
        self.correction_seqs.push(seq);
        if !self.reloading {
            self.batch.corrections.push(stored.clone());
        }
        CorrectionOutcome::Recorded(stored)
    }

    /// The corrections of campaign `campaign_id` recorded at stream sequences up to
    /// `through`, in stream order.
    fn corrections_through(&self, campaign_id: &str, through: u64) -> Vec<StoredCorrection> {
        let upto = self.correction_seqs.partition_point(|&seq| seq <= through);
        self.corrections[..upto]
            .iter()
            .filter(|c| c.campaign_id == campaign_id)
            .cloned()
            .collect()
    }

    /// The first copy of an event id: in the batch being applied, else in the file.
    fn find(&self, campaign_id: &str, event_id: &str) -> Option<StoredEvent> {
        if let Some(seq) = self
            .batch_ids
            .get(&(campaign_id.to_owned(), event_id.to_owned()))
        {
            let at = self.batch.events.partition_point(|e| e.seq < *seq);
            return self.batch.events.get(at).cloned();
        }
        match self.store.event_log().find_event(campaign_id, event_id) {
            Ok(found) => found,
            Err(error) => {
                // The file cannot answer: stop rather than apply the stream differently
                // from every other server (the follower recreates the mirror's state
                // from the file after a restart).
                panic!("the stream mirror cannot read its SQLite file: {error}");
            }
        }
    }

    /// Counts into the lease book the cost events (first copies) and corrections of
    /// cost events before stream sequence `before` that it has not counted yet: the
    /// events from the file, then from the batch not yet written (while the records are
    /// applied again at start, the file also holds the events after `before`: they wait
    /// for their place). A file that cannot be read stops the server, as in
    /// [`Mirror::find`].
    fn count_lease_costs(&mut self, before: u64) {
        const PAGE: usize = 10_000;
        let through = before.saturating_sub(1);
        let mut after = self.leases.costs_counted_through();
        let mut fresh = Vec::new();
        while after < through {
            let page = match self.store.event_log().read_after(after, PAGE) {
                Ok(page) => page,
                Err(error) => panic!("the stream mirror cannot read its SQLite file: {error}"),
            };
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            fresh.extend(
                page.into_iter()
                    .filter(|e| e.seq <= through && e.kind == tla_store::EventKind::Cost),
            );
            after = last;
        }
        fresh.extend(
            self.batch
                .events
                .iter()
                .filter(|e| e.seq <= through && e.kind == tla_store::EventKind::Cost)
                .cloned(),
        );
        self.leases.count_costs(&fresh, through, &self.corrections);
    }

    /// Events with `seq > after`, ascending, at most `limit` (written ones: called
    /// between batches).
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.event_log().read_after(after, limit)
    }

    /// The outcome of one appended event published at `seq` (`duplicate`: the
    /// stream absorbed it as a repeat of the message at `seq`).
    fn outcome_of(&self, event: &NewEvent, seq: u64, duplicate: bool) -> Option<AppendOutcome> {
        let stored = self.find(&event.campaign_id, &event.event_id)?;
        Some(if !duplicate && stored.seq == seq {
            AppendOutcome::Appended { seq }
        } else if event.repeats(&stored) {
            AppendOutcome::Duplicate { seq: stored.seq }
        } else {
            AppendOutcome::Conflict { seq: stored.seq }
        })
    }
}

/// What a server knows of its stream, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StreamHealth {
    /// The stream's name.
    pub stream: String,
    /// Whether the NATS connection is up now.
    pub connected: bool,
    /// The stream's replicas.
    pub replicas: u64,
    /// The stream's last sequence, as last heard.
    pub stream_last_seq: u64,
    /// The last sequence this server's mirror applied.
    pub mirrored_seq: u64,
    /// Milliseconds since the server last heard from the stream.
    pub since_contact_ms: u64,
    /// True once `since_contact_ms` is beyond the bound (`stale_after_ms`): decisions
    /// are refused (503 `stream_unavailable`).
    pub stale: bool,
    /// The bound, ms.
    pub stale_after_ms: u64,
    /// Later copies of an event id skipped (stored again after the dedup window).
    pub repeats_skipped: u64,
    /// Records of the stream this server has not received yet:
    /// `stream_last_seq - mirrored_seq`.
    pub lag: u64,
    /// Events received that the models have not applied yet (the learner's lag).
    pub unapplied_events: u64,
}

/// The connection's state, shared with the background tasks.
#[derive(Debug, Default)]
struct Status {
    connected: AtomicBool,
    stream_last_seq: AtomicU64,
    /// Wall-clock ms of the last answer from the stream.
    last_contact_ms: AtomicI64,
    replicas: AtomicU64,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Status {
    fn contact(&self) {
        self.last_contact_ms.store(wall_ms(), Ordering::Relaxed);
    }

    fn saw_last(&self, seq: u64) {
        self.stream_last_seq.fetch_max(seq, Ordering::Relaxed);
    }
}

/// Why a server cannot open its stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamOpenError {
    /// The secret is missing or too short.
    #[error(
        "a shared stream needs the decision-id secret shared by its servers: set TLA_SECRET (or `secret` in the config file) to the same value, at least {MIN_SECRET_LEN} characters, on every server"
    )]
    Secret,
    /// The NATS servers cannot be reached, or JetStream refused.
    #[error("cannot open stream {stream} on {servers}: {detail}")]
    Nats {
        /// The stream.
        stream: String,
        /// The servers tried.
        servers: String,
        /// What failed.
        detail: String,
    },
    /// The stream was started with another secret.
    #[error(
        "stream {0} was started by servers with another decision-id secret; give this server the same TLA_SECRET as the others (decision ids signed by one server must verify on every other)"
    )]
    SecretMismatch(String),
    /// The stream's first message is not a TLA genesis.
    #[error("stream {0} is not a TLA event log: its first message is not a TLA genesis record")]
    NotTla(String),
    /// The data directory's mirror cannot be read or does not belong to this stream.
    #[error("cannot use the data directory's mirror of stream {stream}: {detail}")]
    Mirror {
        /// The stream.
        stream: String,
        /// What is wrong.
        detail: String,
    },
    /// The stream no longer holds the records right after this server's mirror (they
    /// were purged), or it is behind the mirror (it was deleted and made again).
    #[error(
        "stream {stream} cannot continue this server's mirror: the server mirrored it through sequence {mirrored}, and the stream now holds sequences {first} to {last}; start the server on a new data directory (it then reads the stream from its start) or restore the stream"
    )]
    Gap {
        /// The stream.
        stream: String,
        /// The last sequence in the server's mirror.
        mirrored: u64,
        /// The stream's first sequence.
        first: u64,
        /// The stream's last sequence.
        last: u64,
    },
}

/// The [`EventLog`] on a JetStream stream: see the module docs.
pub struct JetStreamEventLog {
    handle: Handle,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    settings: StreamSettings,
    subject: String,
    mirror: Arc<Mutex<Mirror>>,
    mirrored: tokio::sync::watch::Sender<u64>,
    status: Arc<Status>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The last change record this server's state applied ([`crate::change`]):
    /// `read_after` answers no event after the next one, so every model meets each
    /// change at its place in the stream.
    changes_through: AtomicU64,
}

impl std::fmt::Debug for JetStreamEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamEventLog")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Drop for JetStreamEventLog {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl JetStreamEventLog {
    /// Connects to the NATS servers, creates the stream if missing (replicas: the
    /// smaller of 3 and the cluster's size), writes its genesis if it is empty, refuses
    /// a stream started with another `secret`, loads the mirror kept in `store` and
    /// refuses a stream that cannot continue it (purged after its position, or behind
    /// it), then follows the stream from the mirror's position and waits until this
    /// server has applied all of it that existed at the start. Blocking: call it from
    /// a blocking thread of the runtime `handle` belongs to.
    pub fn open(
        settings: StreamSettings,
        secret: &[u8],
        handle: Handle,
        store: tla_store::Store,
    ) -> Result<Self, StreamOpenError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(StreamOpenError::Secret);
        }
        let nats = |detail: String| StreamOpenError::Nats {
            stream: settings.stream.clone(),
            servers: settings.servers.join(","),
            detail,
        };
        let subject = settings.subject();
        let check = secret_check(secret);
        // A cluster that is electing a leader (a node just restarted) answers late:
        // retry for a bounded time, not when the stream refuses this server.
        let deadline = std::time::Instant::now() + OPEN_RETRY_FOR;
        let opened = loop {
            let attempt = handle.block_on(Self::connect(&settings, &subject, &check, &nats));
            match attempt {
                Err(StreamOpenError::Nats { detail, .. })
                    if std::time::Instant::now() < deadline =>
                {
                    tracing::warn!(%detail, "opening the stream failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => break other,
            }
        };
        let (client, jetstream, stream, genesis_checked) = opened?;

        let status = Arc::new(Status::default());
        status.connected.store(true, Ordering::Relaxed);
        status.contact();
        let info = stream.cached_info();
        status.saw_last(info.state.last_sequence);
        status
            .replicas
            .store(info.config.num_replicas as u64, Ordering::Relaxed);
        let at_open = info.state.last_sequence;
        let mirror =
            Mirror::load(store, &settings.stream).map_err(|e| StreamOpenError::Mirror {
                stream: settings.stream.clone(),
                detail: e.to_string(),
            })?;
        let mirrored_seq = mirror.applied;
        // A stream that purged its genesis is checked against the genesis in the
        // mirror; without one the position check below refuses it.
        if !genesis_checked {
            match &mirror.genesis_check {
                Some(found) if *found != check => {
                    return Err(StreamOpenError::SecretMismatch(settings.stream.clone()));
                }
                _ => {}
            }
        }
        // The records right after the position must still be in the stream (the
        // genesis, sequence 1, was read above), and the stream must not be behind it.
        if info.state.first_sequence > mirrored_seq + 1 || at_open < mirrored_seq {
            return Err(StreamOpenError::Gap {
                stream: settings.stream.clone(),
                mirrored: mirrored_seq,
                first: info.state.first_sequence,
                last: at_open,
            });
        }
        tracing::info!(
            stream = %settings.stream,
            mirrored_seq,
            stream_last_seq = at_open,
            "following the stream after the mirror's position"
        );
        let mirror = Arc::new(Mutex::new(mirror));
        let (mirrored, _) = tokio::sync::watch::channel(mirrored_seq);
        let tasks = {
            let _entered = handle.enter();
            vec![
                tokio::spawn(follow(
                    stream.clone(),
                    mirror.clone(),
                    mirrored.clone(),
                    status.clone(),
                )),
                tokio::spawn(watch(client.clone(), stream, status.clone())),
            ]
        };
        let log = Self {
            handle,
            client,
            jetstream,
            settings,
            subject,
            mirror,
            mirrored,
            status,
            tasks,
            changes_through: AtomicU64::new(0),
        };
        // The replay at the server's start sees the whole stream as it was: wait as
        // long as the mirror moves, at most `CATCH_UP_STALL` without progress.
        loop {
            let before = log.lock().applied;
            match log.wait_mirrored(at_open, CATCH_UP_STALL) {
                Ok(()) => break,
                Err(_) if log.lock().applied > before => continue,
                Err(e) => {
                    return Err(StreamOpenError::Nats {
                        stream: log.settings.stream.clone(),
                        servers: log.settings.servers.join(","),
                        detail: format!("catching up to sequence {at_open}: {e}"),
                    });
                }
            }
        }
        Ok(log)
    }

    /// One attempt at connecting, creating the stream and checking its genesis.
    async fn connect(
        settings: &StreamSettings,
        subject: &str,
        check: &str,
        nats: &impl Fn(String) -> StreamOpenError,
    ) -> Result<(async_nats::Client, jetstream::Context, stream::Stream, bool), StreamOpenError>
    {
        let addrs = settings
            .servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| nats(e.to_string()))?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .connect(addrs)
            .await
            .map_err(|e| nats(e.to_string()))?;
        let cluster = client.server_info().connect_urls.len().max(1);
        let replicas = cluster.min(3);
        let jetstream = jetstream::new(client.clone());
        let mut stream = jetstream
            .get_or_create_stream(stream::Config {
                name: settings.stream.clone(),
                subjects: vec![subject.to_owned()],
                num_replicas: replicas,
                duplicate_window: DEDUP_WINDOW,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| nats(e.to_string()))?;
        // Only the first writer of an empty stream succeeds; the others read its
        // genesis below.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Sequence", "0");
        headers.insert("Nats-Msg-Id", "tla-genesis");
        let genesis = Record::Genesis {
            format: STREAM_FORMAT,
            secret_check: check.to_owned(),
        };
        if let Ok(ack) = jetstream
            .publish_with_headers(subject.to_owned(), headers, genesis.to_bytes().into())
            .await
        {
            let _ = ack.await;
        }
        // The genesis is sequence 1, unless the stream purged it (then `open` checks the
        // one in the server's mirror): `false`.
        let first_seq = stream
            .info()
            .await
            .map_err(|e| nats(format!("reading the stream's state: {e}")))?
            .state
            .first_sequence;
        if first_seq > 1 {
            return Ok((client, jetstream, stream, false));
        }
        let first = stream
            .get_raw_message(1)
            .await
            .map_err(|e| nats(format!("reading the genesis: {e}")))?;
        match serde_json::from_slice::<Record>(&first.payload) {
            Ok(Record::Genesis { secret_check, .. }) if secret_check == check => {}
            Ok(Record::Genesis { .. }) => {
                return Err(StreamOpenError::SecretMismatch(settings.stream.clone()));
            }
            _ => return Err(StreamOpenError::NotTla(settings.stream.clone())),
        }
        Ok((client, jetstream, stream, true))
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    /// What the server knows of the stream now, with its models at `applied_seq`.
    pub fn health(&self, applied_seq: u64) -> StreamHealth {
        let since = (wall_ms() - self.status.last_contact_ms.load(Ordering::Relaxed)).max(0) as u64;
        let stale_after_ms = self.settings.stale_after.as_millis() as u64;
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        let mirror = self.lock();
        let stream_last_seq = self
            .status
            .stream_last_seq
            .load(Ordering::Relaxed)
            .max(mirror.applied);
        let unapplied_events = mirror.store.events_after(applied_seq).unwrap_or(0);
        StreamHealth {
            stream: self.settings.stream.clone(),
            connected,
            replicas: self.status.replicas.load(Ordering::Relaxed),
            stream_last_seq,
            lag: stream_last_seq - mirror.applied,
            unapplied_events,
            mirrored_seq: mirror.applied,
            since_contact_ms: since,
            stale: since > stale_after_ms,
            stale_after_ms,
            repeats_skipped: mirror.repeats_skipped,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits (blocking) until the mirror has applied sequence `seq`.
    fn wait_mirrored(&self, seq: u64, timeout: Duration) -> Result<(), StoreError> {
        let mut seen = self.mirrored.subscribe();
        self.handle.block_on(async {
            tokio::time::timeout(timeout, seen.wait_for(|&m| m >= seq))
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "this server did not receive stream sequence {seq} within {timeout:?}"
                    ))
                })?
                .map_err(|_| StoreError::Unavailable("the stream follower stopped".into()))?;
            Ok(())
        })
    }

    /// Asks the stream for its last sequence and waits until the mirror has it: reads
    /// after this see every record acknowledged before the call.
    fn catch_up(&self) -> Result<(), StoreError> {
        let last = self.handle.block_on(async {
            let stream = self
                .jetstream
                .get_stream(&self.settings.stream)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok::<u64, StoreError>(stream.cached_info().state.last_sequence)
        })?;
        self.status.contact();
        self.status.saw_last(last);
        self.wait_mirrored(last, CALL_TIMEOUT)
    }

    /// Publishes a campaign created on this server, so that every server of the stream
    /// starts it (with the message id `campaign/<id>`: a repeat is absorbed), and waits
    /// until this server's mirror has it.
    pub fn share_campaign(&self, row: &tla_store::CampaignRow) -> Result<(), StoreError> {
        let record = Record::Campaign {
            id: row.id.clone(),
            name: row.name.clone(),
            spec_json: row.spec_json.clone(),
            created_at_ms: row.created_at_ms,
        };
        let acks = self.publish(vec![(
            Some(format!("campaign/{}", row.id)),
            record.to_bytes(),
        )])?;
        self.wait_mirrored(acks[0].0, CALL_TIMEOUT)
    }

    /// Publishes records, each with its message id, and waits for every ack: the
    /// `(sequence, duplicate)` of each, in order.
    fn publish(
        &self,
        records: Vec<(Option<String>, Vec<u8>)>,
    ) -> Result<Vec<(u64, bool)>, StoreError> {
        let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable(e.to_string());
        let acks = self.handle.block_on(async {
            let mut pending = Vec::with_capacity(records.len());
            for (id, payload) in records {
                let mut headers = async_nats::HeaderMap::new();
                if let Some(id) = id {
                    headers.insert("Nats-Msg-Id", id.as_str());
                }
                let ack = self
                    .jetstream
                    .publish_with_headers(self.subject.clone(), headers, payload.into())
                    .await
                    .map_err(|e| unavailable(&e))?;
                pending.push(ack);
            }
            let mut acks = Vec::with_capacity(pending.len());
            for ack in pending {
                let ack = tokio::time::timeout(CALL_TIMEOUT, ack)
                    .await
                    .map_err(|_| unavailable(&"no publish ack within the timeout"))?
                    .map_err(|e| unavailable(&e))?;
                acks.push((ack.sequence, ack.duplicate));
            }
            Ok::<_, StoreError>(acks)
        })?;
        self.status.contact();
        if let Some(&(last, _)) = acks.iter().max_by_key(|(seq, _)| *seq) {
            self.status.saw_last(last);
        }
        Ok(acks)
    }
}

// --- Spend leases (crate::lease; docs/scale-out.md, *Budgets across servers*) ---
impl JetStreamEventLog {
    /// Appends a [`Record::Lease`] for `ask`, waits until this server's mirror has
    /// applied it and answers what the rule gave it.
    pub fn ask_lease(
        &self,
        ask: &crate::lease::LeaseAsk,
    ) -> Result<crate::lease::Grant, StoreError> {
        let record = Record::Lease {
            campaign_id: ask.campaign_id.clone(),
            server: ask.server.clone(),
            amount_bits: ask.amount.to_bits(),
            budget_bits: ask.budget.to_bits(),
            at_ms: ask.at_ms,
        };
        let acks = self.publish(vec![(None, record.to_bytes())])?;
        let (seq, _) = acks[0];
        self.wait_mirrored(seq, CALL_TIMEOUT)?;
        self.lock().leases.grant(seq).ok_or_else(|| {
            StoreError::Unavailable(format!(
                "the lease ask was acknowledged at stream sequence {seq} but is not in the stream as applied"
            ))
        })
    }

    /// The lease book's view of `campaign_id` as this server applied it (the spend
    /// counted through the last record applied).
    pub fn lease_book(&self, campaign_id: &str) -> crate::lease::BookView {
        let mut mirror = self.lock();
        let through = mirror.applied + 1;
        mirror.count_lease_costs(through);
        mirror.leases.view(campaign_id)
    }

    /// The lease `server` holds for `campaign_id` as this server applied the stream.
    pub fn held_lease(&self, campaign_id: &str, server: &str) -> Option<crate::lease::Grant> {
        self.lock().leases.held(campaign_id, server)
    }
}

/// Follows the stream into the mirror with an ordered consumer, from the sequence
/// after the last one applied; recreated after any error.
async fn follow(
    stream: stream::Stream,
    mirror: Arc<Mutex<Mirror>>,
    mirrored: tokio::sync::watch::Sender<u64>,
    status: Arc<Status>,
) {
    loop {
        let start = mirror
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .applied
            + 1;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await;
        let messages = match consumer {
            Ok(consumer) => consumer.messages().await,
            Err(error) => {
                tracing::warn!(%error, "creating the stream's ordered consumer failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "reading the stream failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut failed = false;
        while let Some(next) = messages.next().await {
            // Take what has arrived already too (up to `FLUSH_BATCH`): one transaction
            // for the lot.
            let mut received = vec![next];
            while received.len() < FLUSH_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(next)) => received.push(next),
                    _ => break,
                }
            }
            let mut batch = Vec::with_capacity(received.len());
            for next in received {
                match next {
                    Ok(message) => batch.push(message),
                    Err(error) => {
                        tracing::warn!(%error, "the stream's ordered consumer failed; recreating it");
                        failed = true;
                        break;
                    }
                }
            }
            let applied = apply_batch(&mirror, &status, batch).await;
            mirrored.send_replace(applied);
            if failed {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies messages to the mirror and writes them to its file with the position (on a
/// blocking thread); a write that fails is retried until it succeeds, so the position
/// others wait for only moves once the rows are on disk. Returns the position.
async fn apply_batch(
    mirror: &Arc<Mutex<Mirror>>,
    status: &Arc<Status>,
    messages: Vec<async_nats::jetstream::Message>,
) -> u64 {
    let mirror = mirror.clone();
    let status = status.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut mirror = mirror.lock().unwrap_or_else(PoisonError::into_inner);
        for message in &messages {
            let Ok(info) = message.info() else {
                continue;
            };
            status.saw_last(info.stream_sequence + info.pending);
            mirror.apply(info.stream_sequence, &message.payload);
        }
        status.contact();
        while let Err(error) = mirror.flush() {
            tracing::error!(%error, "writing the stream mirror failed; retrying");
            std::thread::sleep(Duration::from_millis(500));
        }
        mirror.applied
    });
    task.await
        .expect("the mirror's writer does not panic unless its file cannot be read")
}

/// Asks the stream for its state every [`WATCH_EVERY`]: an answer is contact.
async fn watch(client: async_nats::Client, mut stream: stream::Stream, status: Arc<Status>) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        status.connected.store(
            client.connection_state() == async_nats::connection::State::Connected,
            Ordering::Relaxed,
        );
        if let Ok(Ok(info)) = tokio::time::timeout(WATCH_EVERY * 2, stream.info()).await {
            status.saw_last(info.state.last_sequence);
            status
                .replicas
                .store(info.config.num_replicas as u64, Ordering::Relaxed);
            status.contact();
        }
    }
}

impl EventLog for JetStreamEventLog {
    fn append(&self, batch: &[NewEvent]) -> Result<Vec<AppendOutcome>, StoreError> {
        for event in batch {
            validate_event(event)?;
        }
        let records = batch
            .iter()
            .map(|event| {
                (
                    Some(message_id(&event.campaign_id, &event.event_id)),
                    Record::of_event(event).to_bytes(),
                )
            })
            .collect();
        let acks = self.publish(records)?;
        let highest = acks.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
        self.wait_mirrored(highest, CALL_TIMEOUT)?;
        let mirror = self.lock();
        batch
            .iter()
            .zip(acks)
            .map(|(event, (seq, duplicate))| {
                mirror.outcome_of(event, seq, duplicate).ok_or_else(|| {
                    StoreError::Unavailable(format!(
                        "event {:?} was acknowledged at stream sequence {seq} but is not in the stream as applied",
                        event.event_id
                    ))
                })
            })
            .collect()
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mirror = self.lock();
        let mut events = mirror.read_after(after, limit)?;
        // No event after a change the state has not applied yet.
        let barrier = mirror.next_change_after(self.changes_through.load(Ordering::SeqCst));
        if let Some(barrier) = barrier {
            events.retain(|e| e.seq < barrier);
        }
        Ok(events)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.lock().last_event_seq)
    }

    fn find_event(
        &self,
        campaign_id: &str,
        event_id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.catch_up()?;
        Ok(self.lock().find(campaign_id, event_id))
    }

    fn append_correction(
        &self,
        correction: &NewCorrection,
    ) -> Result<CorrectionOutcome, StoreError> {
        validate_correction(correction)?;
        self.catch_up()?;
        {
            let mirror = self.lock();
            let Some(event) = mirror.find(&correction.campaign_id, &correction.event_id) else {
                return Ok(CorrectionOutcome::UnknownEvent);
            };
            if let Standing::Retracted(retraction) = standing(&event, &mirror.corrections) {
                return Ok(CorrectionOutcome::AlreadyRetracted(retraction.clone()));
            }
        }
        let acks = self.publish(vec![(None, Record::of_correction(correction).to_bytes())])?;
        let (seq, _) = acks[0];
        self.wait_mirrored(seq, CALL_TIMEOUT)?;
        self.lock()
            .correction_outcomes
            .get(&seq)
            .cloned()
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "the correction was acknowledged at stream sequence {seq} but is not in the stream as applied"
                ))
            })
    }

    fn shared_campaigns(&self) -> Result<Vec<tla_store::CampaignRow>, StoreError> {
        Ok(self.lock().campaigns.clone())
    }

    fn corrections(&self, campaign_id: &str) -> Result<Vec<StoredCorrection>, StoreError> {
        Ok(self
            .lock()
            .corrections
            .iter()
            .filter(|c| c.campaign_id == campaign_id)
            .cloned()
            .collect())
    }
}

// ---- state changes (docs/scale-out.md, "State changes") --------------------------

impl Mirror {
    /// The sequence of the first change record after `after`.
    fn next_change_after(&self, after: u64) -> Option<u64> {
        let at = self.changes.partition_point(|(seq, _)| *seq <= after);
        self.changes.get(at).map(|(seq, _)| *seq)
    }
}

impl JetStreamEventLog {
    /// Publishes a state change (with its message id, if it has one) and waits until
    /// this server's mirror has it; its stream sequence (the original's, for a repeat
    /// the stream absorbed).
    pub fn publish_change(&self, change: ChangeRecord) -> Result<u64, StoreError> {
        Ok(self.publish_changes(vec![change])?[0].0)
    }

    /// Publishes state changes in order (each with its message id, if it has one) and
    /// waits until this server's mirror has them all; the `(sequence, duplicate)` of
    /// each (for a repeat the stream absorbed, the original's sequence and `true`).
    pub fn publish_changes(
        &self,
        changes: Vec<ChangeRecord>,
    ) -> Result<Vec<(u64, bool)>, StoreError> {
        let records = changes
            .into_iter()
            .map(|change| (change.message_id(), Record::Change(change).to_bytes()))
            .collect();
        let acks = self.publish(records)?;
        if let Some(&(last, _)) = acks.iter().max_by_key(|(seq, _)| *seq) {
            self.wait_mirrored(last, CALL_TIMEOUT)?;
        }
        Ok(acks)
    }

    /// The corrections of campaign `campaign_id` recorded at stream sequences up to
    /// `through`, in stream order: what a state change at `through` sees (the mirror
    /// may have read further than the learner applying the change).
    pub fn corrections_through(&self, campaign_id: &str, through: u64) -> Vec<StoredCorrection> {
        self.lock().corrections_through(campaign_id, through)
    }

    /// The change record at stream sequence `seq`, if the mirror holds one there.
    pub fn change_at(&self, seq: u64) -> Option<ChangeRecord> {
        let mirror = self.lock();
        let at = mirror.changes.partition_point(|(s, _)| *s < seq);
        mirror
            .changes
            .get(at)
            .filter(|(s, _)| *s == seq)
            .map(|(_, change)| change.clone())
    }

    /// The change records after sequence `after`, in stream order (at most `limit`).
    pub fn changes_after(&self, after: u64, limit: usize) -> Vec<(u64, ChangeRecord)> {
        let mirror = self.lock();
        let at = mirror.changes.partition_point(|(seq, _)| *seq <= after);
        mirror.changes[at..].iter().take(limit).cloned().collect()
    }

    /// Tells the log that the state has applied every change record up to `seq`:
    /// `read_after` answers events up to the next one.
    pub fn set_changes_through(&self, seq: u64) {
        self.changes_through.store(seq, Ordering::SeqCst);
    }

    /// The sequence of the first event the mirror holds after `after`; on a read error,
    /// `after + 1` (the caller then takes the safe path).
    pub fn next_event_after(&self, after: u64) -> Option<u64> {
        match self.lock().read_after(after, 1) {
            Ok(events) => events.first().map(|event| event.seq),
            Err(_) => Some(after + 1),
        }
    }

    /// When the change record at `seq` is a later copy of a change sent with the same
    /// `Idempotency-Key` (stored after the deduplication window), its first copy's
    /// sequence.
    pub fn first_copy_of(&self, seq: u64) -> Option<u64> {
        self.lock().repeated_changes.get(&seq).copied()
    }

    /// The keys the stream holds: id to whether it is revoked.
    pub fn shared_keys(&self) -> HashMap<String, bool> {
        self.lock().keys.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(campaign: &str, id: &str, value: f64) -> NewEvent {
        NewEvent {
            campaign_id: campaign.into(),
            event_id: id.into(),
            decision_id: format!("d-{id}"),
            kind: EventKind::Conversion,
            value,
            amount_known: true,
            segment: 1,
            version: 2,
            decided_at_ms: 3,
            at_ms: 4,
        }
    }

    fn bytes(event: &NewEvent) -> Vec<u8> {
        Record::of_event(event).to_bytes()
    }

    fn mirror() -> Mirror {
        Mirror::load(tla_store::Store::open_in_memory().unwrap(), "s").unwrap()
    }

    /// Applies and writes one record, as the follower does with a batch.
    fn apply(mirror: &mut Mirror, seq: u64, payload: &[u8]) {
        mirror.apply(seq, payload);
        mirror.flush().unwrap();
    }

    #[test]
    fn a_later_copy_of_an_event_id_is_skipped_and_reported_a_duplicate_or_conflict() {
        let mut mirror = mirror();
        let genesis = Record::Genesis {
            format: STREAM_FORMAT,
            secret_check: secret_check(b"0123456789abcdef"),
        };
        apply(&mut mirror, 1, &genesis.to_bytes());
        let first = event("c", "e1", 0.1 + 0.2);
        apply(&mut mirror, 2, &bytes(&first));
        apply(&mut mirror, 3, &bytes(&event("c", "e2", 1.0)));
        // After the dedup window: the same id again, once the same, once not.
        apply(&mut mirror, 4, &bytes(&first));
        apply(&mut mirror, 5, &bytes(&event("c", "e1", 7.0)));
        apply(&mut mirror, 6, b"not json");
        apply(&mut mirror, 7, &bytes(&event("d", "e1", 1.0)));
        let seqs: Vec<u64> = mirror
            .read_after(0, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [2, 3, 7]);
        assert_eq!(mirror.read_after(2, 1).unwrap()[0].seq, 3);
        // The value is the exact number written.
        assert_eq!(mirror.read_after(0, 1).unwrap()[0].value, 0.1 + 0.2);
        assert_eq!(mirror.repeats_skipped, 2);
        assert_eq!(mirror.undecodable, 1);
        assert_eq!(mirror.applied, 7);
        assert_eq!(
            mirror.outcome_of(&first, 2, false),
            Some(AppendOutcome::Appended { seq: 2 })
        );
        assert_eq!(
            mirror.outcome_of(&first, 4, false),
            Some(AppendOutcome::Duplicate { seq: 2 })
        );
        assert_eq!(
            mirror.outcome_of(&event("c", "e1", 7.0), 5, false),
            Some(AppendOutcome::Conflict { seq: 2 })
        );
        assert_eq!(
            mirror.outcome_of(&first, 2, true),
            Some(AppendOutcome::Duplicate { seq: 2 })
        );
        // Re-applying a sequence changes nothing.
        apply(&mut mirror, 3, &bytes(&event("c", "e9", 1.0)));
        assert_eq!(mirror.read_after(0, 10).unwrap().len(), 3);
        // The first record of a campaign id wins.
        let campaign = |name: &str| Record::Campaign {
            id: "c_1".into(),
            name: name.into(),
            spec_json: "{}".into(),
            created_at_ms: 5,
        };
        apply(&mut mirror, 8, &campaign("first").to_bytes());
        apply(&mut mirror, 9, &campaign("second").to_bytes());
        assert_eq!(mirror.campaigns.len(), 1);
        assert_eq!(mirror.campaigns[0].name, "first");
    }

    #[test]
    fn corrections_take_effect_in_stream_order_and_a_retraction_is_final() {
        let mut mirror = mirror();
        apply(&mut mirror, 1, &bytes(&event("c", "e1", 5.0)));
        let correction = |action| NewCorrection {
            campaign_id: "c".into(),
            event_id: "e1".into(),
            action,
            reason: "r".into(),
            key_id: "k".into(),
            at_ms: 9,
        };
        let fix = correction(CorrectionAction::Correct { value: 3.0 });
        apply(&mut mirror, 2, &Record::of_correction(&fix).to_bytes());
        apply(
            &mut mirror,
            3,
            &Record::of_correction(&correction(CorrectionAction::Retract)).to_bytes(),
        );
        apply(&mut mirror, 4, &Record::of_correction(&fix).to_bytes());
        let unknown = NewCorrection {
            event_id: "nope".into(),
            ..fix.clone()
        };
        apply(&mut mirror, 5, &Record::of_correction(&unknown).to_bytes());
        assert!(matches!(
            &mirror.correction_outcomes[&2],
            CorrectionOutcome::Recorded(c) if c.old_value == Some(5.0)
        ));
        assert!(matches!(
            &mirror.correction_outcomes[&3],
            CorrectionOutcome::Recorded(c) if c.old_value == Some(3.0)
        ));
        assert!(matches!(
            &mirror.correction_outcomes[&4],
            CorrectionOutcome::AlreadyRetracted(c) if c.id == 2
        ));
        assert_eq!(
            mirror.correction_outcomes[&5],
            CorrectionOutcome::UnknownEvent
        );
        assert_eq!(mirror.corrections.len(), 2);
        // What a state change at each place sees: the corrections before it only.
        let ids = |through| -> Vec<u64> {
            mirror
                .corrections_through("c", through)
                .iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(ids(1), Vec::<u64>::new());
        assert_eq!(ids(2), vec![1]);
        assert_eq!(ids(4), vec![1, 2]);
        assert_eq!(mirror.corrections_through("other", 9), vec![]);
    }

    // --- Spend leases ---
    #[test]
    fn leases_are_granted_in_stream_order_against_the_costs_counted() {
        let store = tla_store::Store::open_in_memory().unwrap();
        let mut mirror = Mirror::load(store.clone(), "s").unwrap();
        let ask = |server: &str, amount: f64, at_ms: i64| {
            Record::Lease {
                campaign_id: "c".into(),
                server: server.into(),
                amount_bits: amount.to_bits(),
                budget_bits: 10.0f64.to_bits(),
                at_ms,
            }
            .to_bytes()
        };
        let cost = |id: &str, value: f64| NewEvent {
            kind: EventKind::Cost,
            ..event("c", id, value)
        };
        apply(&mut mirror, 1, &ask("a", 4.0, 0));
        // Counted from the batch not yet written (k1), and from the file (k2).
        mirror.apply(2, &bytes(&cost("k1", 3.0)));
        // A later copy of a cost event is not counted again.
        mirror.apply(3, &bytes(&cost("k1", 3.0)));
        mirror.apply(4, &ask("b", 4.0, 1));
        // 10 - 3 spent - 4 held by a = 3.
        assert_eq!(mirror.leases.grant(4).unwrap().amount, 3.0);
        mirror.flush().unwrap();
        apply(&mut mirror, 5, &bytes(&cost("k2", 1.0)));
        apply(&mut mirror, 6, &ask("b", 4.0, 1));
        // b's own lease returns first: 10 - 4 spent - 4 held by a = 2.
        assert_eq!(mirror.leases.grant(6).unwrap().amount, 2.0);
        // A retracted cost returns to the budget.
        let retract = NewCorrection {
            campaign_id: "c".into(),
            event_id: "k1".into(),
            action: CorrectionAction::Retract,
            reason: "r".into(),
            key_id: "k".into(),
            at_ms: 2,
        };
        apply(&mut mirror, 7, &Record::of_correction(&retract).to_bytes());
        apply(&mut mirror, 8, &ask("a", 4.0, 2));
        // An event after the ask waits for its place.
        apply(&mut mirror, 9, &bytes(&cost("k3", 2.0)));
        let book = |mirror: &Mirror| {
            let grants: Vec<Option<f64>> = [1, 4, 6, 8]
                .iter()
                .map(|&seq| mirror.leases.grant(seq).map(|g| g.amount))
                .collect();
            grants
        };
        assert_eq!(book(&mirror), [Some(4.0), Some(3.0), Some(2.0), Some(4.0)]);
        assert_eq!(mirror.leases.view("c").granted, 4);
        // Lease records are not events.
        assert_eq!(mirror.read_after(0, 10).unwrap().len(), 3);
        // A restart applies the lease records again against the costs before each, from
        // the file that already holds the later events too: the same grants.
        let again = Mirror::load(store, "s").unwrap();
        assert_eq!(book(&again), book(&mirror));
        let mut again = again;
        again.count_lease_costs(again.applied + 1);
        mirror.count_lease_costs(mirror.applied + 1);
        assert_eq!(again.leases.view("c"), mirror.leases.view("c"));
        assert_eq!(mirror.leases.view("c").spent_counted, 3.0);
    }

    #[test]
    fn change_records_are_kept_in_order_and_mark_where_events_stop() {
        let mut mirror = mirror();
        let change = |change: Change| {
            Record::Change(ChangeRecord {
                campaign_id: "c".into(),
                change,
                key_id: "k".into(),
                at_ms: 1,
                idempotency_key: None,
            })
            .to_bytes()
        };
        apply(&mut mirror, 1, &bytes(&event("c", "e1", 1.0)));
        apply(&mut mirror, 2, &change(Change::Pause));
        apply(&mut mirror, 3, &bytes(&event("c", "e2", 1.0)));
        let key = Change::KeyCreated {
            id: "0123456789ab".into(),
            hash: "00".repeat(32),
            scopes: vec!["read".into()],
            label: String::new(),
            created_at_ms: 0,
        };
        apply(&mut mirror, 4, &change(key.clone()));
        apply(
            &mut mirror,
            5,
            &change(Change::KeyRevoked {
                id: "0123456789ab".into(),
            }),
        );
        // A key made again after its revocation stays revoked.
        apply(&mut mirror, 6, &change(key));
        let seqs: Vec<u64> = mirror.changes.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [2, 4, 5, 6]);
        assert_eq!(mirror.changes[0].1.change, Change::Pause);
        // Events stop before the first change not applied.
        assert_eq!(mirror.next_change_after(0), Some(2));
        assert_eq!(mirror.next_change_after(2), Some(4));
        assert_eq!(mirror.next_change_after(6), None);
        assert_eq!(mirror.keys.get("0123456789ab"), Some(&true));
        // The record's JSON is tagged as documented.
        let json: serde_json::Value = serde_json::from_slice(&change(Change::Resume)).unwrap();
        assert_eq!(json["type"], "change");
        assert_eq!(json["change"]["kind"], "resume");
    }

    #[test]
    fn reported_and_imported_spend_is_counted_once_first_copy_first() {
        let store = tla_store::Store::open_in_memory().unwrap();
        let mut mirror = Mirror::load(store.clone(), "s").unwrap();
        let change = |change: Change, key: Option<&str>| {
            Record::Change(ChangeRecord {
                campaign_id: "c".into(),
                change,
                key_id: "k".into(),
                at_ms: 1,
                idempotency_key: key.map(str::to_owned),
            })
        };
        let report = |id: &str, amount: f64| {
            change(
                Change::spend_report(&tla_store::NewSpendReport {
                    campaign_id: "c".into(),
                    report_id: id.into(),
                    segment: 0,
                    start_ms: 0,
                    end_ms: 10,
                    amount,
                    impressions: None,
                    key_id: "k".into(),
                    at_ms: 1,
                }),
                None,
            )
        };
        let row = |ad: &str, spend: f64| ResultRow {
            ad_name: ad.into(),
            segment: 1,
            revision: 1,
            version: 2,
            start_ms: 0,
            end_ms: 10,
            impressions: 100,
            clicks: 1,
            conversions: 1,
            value_bits: 5.0f64.to_bits(),
            spend_bits: spend.to_bits(),
        };
        let import = |rows: Vec<ResultRow>| change(Change::ResultImport { rows }, None);
        // After the dedup window a report id comes again (the same, then another
        // amount): counted once, as first sent.
        apply(&mut mirror, 1, &report("r1", 30.0).to_bytes());
        apply(&mut mirror, 2, &report("r1", 30.0).to_bytes());
        apply(&mut mirror, 3, &report("r1", 99.0).to_bytes());
        apply(&mut mirror, 4, &report("r2", 0.5).to_bytes());
        assert_eq!(mirror.leases.view("c").spent_counted, 30.5);
        // An import, then a re-import replacing one ad's period: the new spend in place
        // of the old.
        apply(
            &mut mirror,
            5,
            &import(vec![row("a", 10.0), row("b", 4.0)]).to_bytes(),
        );
        apply(&mut mirror, 6, &import(vec![row("a", 12.0)]).to_bytes());
        assert_eq!(mirror.leases.view("c").spent_counted, 30.5 + 12.0 + 4.0);
        // A restart applies the records again: the same count.
        let again = Mirror::load(store, "s").unwrap();
        assert_eq!(again.leases.view("c"), mirror.leases.view("c"));
        // Message ids: a report by its id; a revision or budget change by its key only.
        let ids: Vec<Option<String>> = [
            report("r1", 1.0),
            change(
                Change::Revise {
                    spec_json: "{}".into(),
                    reason: None,
                },
                Some("k1"),
            ),
            change(
                Change::Revise {
                    spec_json: "{}".into(),
                    reason: None,
                },
                None,
            ),
            change(
                Change::Budget {
                    budget_bits: None,
                    sets_daily_cap: false,
                    daily_cap_bits: None,
                    reason: "r".into(),
                },
                Some("k2"),
            ),
            import(vec![]),
        ]
        .into_iter()
        .map(|record| match record {
            Record::Change(change) => change.message_id(),
            _ => unreachable!(),
        })
        .collect();
        assert_eq!(
            ids,
            [
                Some("spend/c/r1".to_owned()),
                Some("revise/c/k1".to_owned()),
                None,
                Some("budget/c/k2".to_owned()),
                None
            ]
        );
        // A record without the key (written before it existed) still decodes.
        let old = r#"{"type":"change","campaign_id":"c","change":{"kind":"pause"},"key_id":"k","at_ms":1}"#;
        let decoded: Record = serde_json::from_str(old).unwrap();
        assert_eq!(decoded, change(Change::Pause, None));
    }

    #[test]
    fn a_mirror_loaded_from_its_file_is_the_mirror_that_wrote_it() {
        let store = tla_store::Store::open_in_memory().unwrap();
        let mut first = Mirror::load(store.clone(), "s").unwrap();
        let genesis = Record::Genesis {
            format: STREAM_FORMAT,
            secret_check: secret_check(b"0123456789abcdef"),
        };
        let campaign = Record::Campaign {
            id: "c".into(),
            name: "n".into(),
            spec_json: "{}".into(),
            created_at_ms: 1,
        };
        let retract = |event_id: &str| {
            Record::of_correction(&NewCorrection {
                campaign_id: "c".into(),
                event_id: event_id.into(),
                action: CorrectionAction::Retract,
                reason: "r".into(),
                key_id: "k".into(),
                at_ms: 9,
            })
            .to_bytes()
        };
        // One batch (one transaction), as the follower writes it, then another.
        first.apply(1, &genesis.to_bytes());
        first.apply(2, &campaign.to_bytes());
        first.apply(3, &bytes(&event("c", "e1", 5.0)));
        // A correction of an event sent only after it: unknown, on every reading.
        first.apply(4, &retract("e2"));
        first.apply(5, &bytes(&event("c", "e2", 1.0)));
        first.apply(6, &bytes(&event("c", "e1", 5.0)));
        first.flush().unwrap();
        first.apply(7, &retract("e1"));
        first.apply(8, b"not json");
        first.flush().unwrap();
        // Applied, not written: a crash here loses it, and the position with it.
        first.apply(9, &bytes(&event("c", "e3", 1.0)));
        assert_eq!(
            first.correction_outcomes[&4],
            CorrectionOutcome::UnknownEvent
        );

        let mut again = Mirror::load(store.clone(), "s").unwrap();
        assert_eq!(again.applied, 8);
        assert_eq!(again.last_event_seq, 5);
        assert_eq!(again.campaigns, first.campaigns);
        assert_eq!(again.corrections, first.corrections);
        assert_eq!(again.corrections.len(), 1);
        assert_eq!(again.undecodable, 1);
        let seqs: Vec<u64> = again
            .read_after(0, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [3, 5]);
        // The first-copy rule holds across the restart (the index is in the file).
        apply(&mut again, 9, &bytes(&event("c", "e1", 5.0)));
        apply(&mut again, 10, &bytes(&event("c", "e3", 1.0)));
        let seqs: Vec<u64> = again
            .read_after(0, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [3, 5, 10]);
        assert_eq!(
            again.outcome_of(&event("c", "e1", 5.0), 9, false),
            Some(AppendOutcome::Duplicate { seq: 3 })
        );
        // The corrections recorded are in the file's `corrections` table too, where a
        // single server's are (reports and the offline tools read them there).
        assert_eq!(
            store.event_log().corrections("c").unwrap(),
            first.corrections
        );
        // A correction applied and lost before its batch was written comes back once,
        // under the same id, when the restart applies the stream again.
        again.flush().unwrap();
        let correction = retract("e3");
        again.apply(11, &correction);
        let written = store.event_log().corrections("c").unwrap();
        let mut lost = Mirror::load(store.clone(), "s").unwrap();
        assert_eq!(store.event_log().corrections("c").unwrap(), written);
        assert_eq!(lost.applied, 10);
        lost.apply(11, &correction);
        lost.flush().unwrap();
        assert_eq!(
            store.event_log().corrections("c").unwrap(),
            lost.corrections
        );
        assert_eq!(lost.corrections, again.corrections);
        let ids: Vec<u64> = lost.corrections.iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(
            Mirror::load(store.clone(), "s").unwrap().corrections,
            lost.corrections
        );
        assert_eq!(store.event_log().corrections("c").unwrap().len(), 2);

        // Another stream, or a data directory with its own SQLite log, is refused.
        let error = Mirror::load(store, "other").unwrap_err();
        assert!(
            error.to_string().contains("mirrors stream \"s\""),
            "{error}"
        );
        let sqlite = tla_store::Store::open_in_memory().unwrap();
        sqlite.event_log().append(&[event("c", "e1", 1.0)]).unwrap();
        let error = Mirror::load(sqlite, "s").unwrap_err();
        assert!(
            error.to_string().contains("its own SQLite event log"),
            "{error}"
        );
    }

    #[test]
    fn settings_parse_servers_and_refuse_bad_input() {
        let settings = StreamSettings::parse(
            "nats://127.0.0.1:4222,127.0.0.1:4223",
            "tla",
            DEFAULT_STALE_AFTER,
        )
        .unwrap();
        assert_eq!(
            settings.servers,
            ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
        );
        assert_eq!(settings.subject(), "tla.tla.log");
        for (log, stream, says) in [
            ("http://x:1", "s", "accepted: nats://"),
            ("nats://x", "s", "is not HOST:PORT"),
            ("nats://x:99999", "s", "is not HOST:PORT"),
            ("nats://x:1", "a.b", "--stream"),
            ("nats://x:1", "", "--stream"),
        ] {
            let error = StreamSettings::parse(log, stream, DEFAULT_STALE_AFTER).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn the_secret_check_depends_on_the_secret() {
        assert_eq!(secret_check(b"a"), secret_check(b"a"));
        assert_ne!(secret_check(b"a"), secret_check(b"b"));
        assert_eq!(secret_check(b"a").len(), 64);
        let genesis = Record::Genesis {
            format: STREAM_FORMAT,
            secret_check: secret_check(b"a"),
        };
        assert_eq!(
            genesis_secret_check(&genesis.to_bytes()),
            Some(secret_check(b"a"))
        );
        assert_eq!(genesis_secret_check(b"not json"), None);
        assert_eq!(genesis_secret_check(&bytes(&event("c", "e1", 1.0))), None);
    }
}
