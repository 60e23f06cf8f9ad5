//! Spend leases: a campaign's budget shared by the servers of one stream
//! (docs/scale-out.md, *Budgets across servers*, has the rule and the overspend bound).
//!
//! A server commits money (serves a version of a paced campaign) only within a lease
//! it holds. It asks for one by appending a `lease` record to the stream
//! ([`crate::stream_log::Record::Lease`]); every server applies the records in stream
//! order to its [`LeaseBook`] with the one rule of [`LeaseBook::apply`], so all agree
//! who holds what. The server's side (committing within the lease, when to ask) is in
//! [`crate::pacing::CampaignPacing`] and [`ask_due_leases`].

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A lease is valid this long after the `at_ms` of the record that asked for it (on
/// the asker's clock); every server expires it once the stream time passes it.
pub const LEASE_TTL_MS: i64 = 60_000;

/// A server asks for its next lease once it has committed this share of its lease.
pub const LEASE_RENEW_AT: f64 = 0.8;

/// The default of `--lease-share`: a lease is this share of the day's allowance.
pub const DEFAULT_LEASE_SHARE: f64 = 0.05;

/// A refused ask (or one granted less than asked) is followed by the next after this
/// long at the earliest.
pub const RETRY_REFUSED_MS: i64 = 250;

/// Checks a `lease_share` setting: in (0, 1].
pub fn check_lease_share(share: f64) -> Result<f64, String> {
    if share.is_finite() && share > 0.0 && share <= 1.0 {
        Ok(share)
    } else {
        Err(format!(
            "lease_share = {share} is not accepted; accepted: a share of the day's allowance above 0, at most 1 (default {DEFAULT_LEASE_SHARE})"
        ))
    }
}

/// The lease size of a flight: `share` of the day's allowance (the budget spread over
/// the flight's days, the whole budget for a flight of a day or less, at most the
/// daily cap).
pub fn lease_size(plan: &tla_core::spec::FlightPlan, share: f64) -> f64 {
    let days = (plan.end_ms - plan.start_ms) as f64 / tla_core::pacing::DAY_MS as f64;
    let allowance = plan.budget / days.max(1.0);
    let allowance = plan.daily_cap.map_or(allowance, |cap| allowance.min(cap));
    share * allowance
}

/// One ask, as the stream carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseAsk {
    /// The campaign.
    pub campaign_id: String,
    /// The asking server's id.
    pub server: String,
    /// The amount asked (0: release the lease held).
    pub amount: f64,
    /// The flight budget in force on the asker.
    pub budget: f64,
    /// The asker's clock when it asked, ms.
    pub at_ms: i64,
}

/// What the rule gave an ask: `amount` 0 when refused (or a release).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    /// The stream sequence of the ask.
    pub seq: u64,
    /// The amount granted; 0 when refused.
    pub amount: f64,
    /// When the lease expires (the ask's `at_ms` + [`LEASE_TTL_MS`]).
    pub expires_at_ms: i64,
}

/// An active lease.
#[derive(Debug, Clone, PartialEq)]
struct Lease {
    seq: u64,
    amount: f64,
    expires_at_ms: i64,
}

/// One campaign's leases as applied.
#[derive(Debug, Default, Clone)]
struct CampaignLeases {
    /// Cost events in the stream so far (first copies, as corrected).
    spent: f64,
    /// The active leases, by server (ordered, so sums are the same on every server).
    active: BTreeMap<String, Lease>,
    granted: u64,
    refused: u64,
    granted_amount: f64,
}

/// The leases of every campaign as applied in stream order (part of
/// [`crate::stream_log::Mirror`]).
#[derive(Debug, Default)]
pub struct LeaseBook {
    campaigns: HashMap<String, CampaignLeases>,
    /// The stream time: the largest `at_ms` of the lease records applied.
    now_ms: i64,
    /// What each ask got, by its stream sequence.
    grants: HashMap<u64, Grant>,
    /// The stream sequence through which the mirror's events are counted
    /// ([`LeaseBook::count_costs`]).
    costs_counted_through: u64,
    /// Corrections of the mirror counted so far.
    corrections_counted: usize,
}

/// The book's view of one campaign, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BookView {
    /// Spend of the campaign in the stream so far: cost events (as corrected), spend
    /// reports and platform results in force.
    pub spent_counted: f64,
    /// The sum of the active leases (at the stream time of the last ask).
    pub active: f64,
    /// Active leases.
    pub active_leases: u64,
    /// Leases granted so far (all servers).
    pub granted: u64,
    /// Asks refused so far (all servers).
    pub refused: u64,
    /// The sum of every lease granted so far.
    pub granted_amount: f64,
}

impl LeaseBook {
    /// Counts the cost events and the corrections of cost events of the stream as
    /// applied that it has not counted yet: `events` are the first copies with a
    /// sequence above [`LeaseBook::costs_counted_through`] up to `through`, in stream
    /// order (the mirror reads them from its file and its unwritten batch,
    /// `Mirror::count_lease_costs`); `corrections` every correction recorded, in stream
    /// order. Called before each ask is applied, so the rule sees every cost before the
    /// ask in stream order.
    pub fn count_costs(
        &mut self,
        events: &[tla_store::StoredEvent],
        through: u64,
        corrections: &[tla_store::StoredCorrection],
    ) {
        for event in events {
            if event.seq > self.costs_counted_through
                && event.seq <= through
                && event.kind == tla_store::EventKind::Cost
            {
                self.note_cost(&event.campaign_id, 0.0, event.value);
            }
        }
        self.costs_counted_through = self.costs_counted_through.max(through);
        for correction in &corrections[self.corrections_counted.min(corrections.len())..] {
            if correction.event_kind == tla_store::EventKind::Cost {
                let new = match correction.action {
                    tla_store::CorrectionAction::Retract => 0.0,
                    tla_store::CorrectionAction::Correct { value } => value,
                };
                let old = correction.old_value.unwrap_or(0.0);
                self.note_cost(&correction.campaign_id, old, new);
            }
        }
        self.corrections_counted = corrections.len();
    }

    /// The stream sequence through which cost events are counted.
    pub fn costs_counted_through(&self) -> u64 {
        self.costs_counted_through
    }

    /// Spend of `campaign_id` not in cost events moved from `old` to `new`: a spend
    /// report (0 to its amount) or a platform result's period (its spend before and
    /// after a re-import), counted at its record's place in the stream.
    pub fn note_spend(&mut self, campaign_id: &str, old: f64, new: f64) {
        self.note_cost(campaign_id, old, new);
    }

    /// A cost of `campaign_id` moved from `old` to `new` (0 to its value when it is
    /// applied; to 0 when retracted).
    fn note_cost(&mut self, campaign_id: &str, old: f64, new: f64) {
        if old.is_finite() && new.is_finite() {
            self.campaigns
                .entry(campaign_id.to_owned())
                .or_default()
                .spent += new - old;
        }
    }

    /// Applies the ask at stream sequence `seq`: the one rule (docs/scale-out.md).
    /// 1. The stream time moves to the ask's `at_ms` if later; leases whose expiry it
    ///    passed are dropped. 2. The asker's own lease is dropped. 3. The grant is
    ///    `min(amount, budget - spent counted - the other active leases)`, if above 0.
    pub fn apply(&mut self, seq: u64, ask: &LeaseAsk) {
        self.now_ms = self.now_ms.max(ask.at_ms);
        let now_ms = self.now_ms;
        for leases in self.campaigns.values_mut() {
            leases
                .active
                .retain(|_, lease| lease.expires_at_ms > now_ms);
        }
        let book = self.campaigns.entry(ask.campaign_id.clone()).or_default();
        book.active.remove(&ask.server);
        let expires_at_ms = ask.at_ms.saturating_add(LEASE_TTL_MS);
        let mut grant = Grant {
            seq,
            amount: 0.0,
            expires_at_ms,
        };
        let valid = ask.amount.is_finite() && ask.budget.is_finite();
        if valid && ask.amount > 0.0 {
            let others: f64 = book.active.values().map(|lease| lease.amount).sum();
            let room = ask.budget - book.spent - others;
            let amount = ask.amount.min(room);
            if amount > 0.0 && expires_at_ms > now_ms {
                grant.amount = amount;
                book.active.insert(
                    ask.server.clone(),
                    Lease {
                        seq,
                        amount,
                        expires_at_ms,
                    },
                );
                book.granted += 1;
                book.granted_amount += amount;
            } else {
                book.refused += 1;
            }
        }
        self.grants.insert(seq, grant);
    }

    /// What the ask at `seq` got.
    pub fn grant(&self, seq: u64) -> Option<Grant> {
        self.grants.get(&seq).copied()
    }

    /// The lease `server` holds for `campaign_id` as applied (expired ones included
    /// until the next ask drops them): its sequence, amount and expiry.
    pub fn held(&self, campaign_id: &str, server: &str) -> Option<Grant> {
        let lease = self.campaigns.get(campaign_id)?.active.get(server)?;
        Some(Grant {
            seq: lease.seq,
            amount: lease.amount,
            expires_at_ms: lease.expires_at_ms,
        })
    }

    /// The book's view of `campaign_id`.
    pub fn view(&self, campaign_id: &str) -> BookView {
        let book = self.campaigns.get(campaign_id).cloned().unwrap_or_default();
        BookView {
            spent_counted: book.spent,
            active: book.active.values().map(|lease| lease.amount).sum(),
            active_leases: book.active.len() as u64,
            granted: book.granted,
            refused: book.refused,
            granted_amount: book.granted_amount,
        }
    }
}

/// One campaign's leases as `/healthz` shows them (with a stream).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeaseHealth {
    /// The campaign.
    pub campaign_id: String,
    /// This server's id on the stream.
    pub server: String,
    /// The lease size this server asks for.
    pub lease_size: f64,
    /// This server's lease.
    #[serde(flatten)]
    pub held: crate::pacing::LeaseStatus,
    /// The leases of every server as this server applied the stream.
    pub book: BookView,
}

/// The learner step's part (with a stream): for each paced campaign in its flight
/// whose lease is due ([`crate::pacing::CampaignPacing::lease_due`]), asks the stream
/// for a lease of [`lease_size`] under the budget in force and takes what the rule
/// gave. Blocking (it waits for the stream).
pub fn ask_due_leases(state: &crate::state::AppState, now_ms: i64) {
    let Some(stream) = state.stream() else {
        return;
    };
    let server = match state.server_id() {
        Ok(server) => server.to_owned(),
        Err(error) => {
            tracing::error!(%error, "reading the server id failed; no spend lease asked");
            return;
        }
    };
    // A stale stream would only make each ask wait for its timeout (decisions are
    // refused meanwhile anyway).
    let stale = stream.health(state.applied_seq()).stale;
    let share = state.config().lease_share;
    for slot in state.campaigns() {
        let (Some(pacing), Some(plan)) = (&slot.pacing, slot.flight()) else {
            continue;
        };
        if stale {
            pacing.use_leases();
            continue;
        }
        if slot.is_archived() || slot.is_paused() {
            continue;
        }
        // Every paced campaign needs a lease from the first step on, not only from
        // its first decision.
        pacing.use_leases();
        let in_flight = now_ms >= plan.start_ms && now_ms < plan.end_ms;
        // A budget spent (as this server counts it) needs no lease.
        let status = pacing.status(now_ms);
        let spent = status.spent >= status.budget;
        if !in_flight || spent || !pacing.lease_due(now_ms) {
            continue;
        }
        let ask = LeaseAsk {
            campaign_id: slot.id.clone(),
            server: server.clone(),
            amount: lease_size(&plan, share),
            budget: plan.budget,
            at_ms: now_ms,
        };
        crate::metrics::Metrics::add(&state.metrics().lease_asks, 1);
        match stream.ask_lease(&ask) {
            Ok(grant) => {
                if grant.amount <= 0.0 {
                    crate::metrics::Metrics::add(&state.metrics().lease_refused, 1);
                }
                pacing.take_lease(grant, ask.amount, now_ms);
            }
            Err(error) => {
                tracing::warn!(%error, campaign = %slot.id, "asking for a spend lease failed; the next step asks again");
            }
        }
    }
}

/// `/healthz`'s `leases` (with a stream): every paced campaign's lease on this server
/// and the book as applied.
pub fn health(state: &crate::state::AppState) -> Option<Vec<LeaseHealth>> {
    let stream = state.stream()?;
    let server = state.server_id().ok()?.to_owned();
    let now_ms = state.clock().now_ms();
    let share = state.config().lease_share;
    let mut out = Vec::new();
    for slot in state.campaigns() {
        let (Some(pacing), Some(plan)) = (&slot.pacing, slot.flight()) else {
            continue;
        };
        let Some(held) = pacing.lease_status(now_ms) else {
            continue;
        };
        out.push(LeaseHealth {
            campaign_id: slot.id.clone(),
            server: server.clone(),
            lease_size: lease_size(&plan, share),
            held,
            book: stream.lease_book(&slot.id),
        });
    }
    out.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(server: &str, amount: f64, at_ms: i64) -> LeaseAsk {
        LeaseAsk {
            campaign_id: "c".into(),
            server: server.into(),
            amount,
            budget: 100.0,
            at_ms,
        }
    }

    #[test]
    fn grants_keep_spend_and_active_leases_within_the_budget() {
        let mut book = LeaseBook::default();
        book.apply(1, &ask("a", 40.0, 0));
        book.apply(2, &ask("b", 40.0, 1));
        // Only 20 left for c: a partial grant.
        book.apply(3, &ask("c", 40.0, 2));
        assert_eq!(book.grant(3).unwrap().amount, 20.0);
        // Nothing left: refused.
        book.apply(4, &ask("d", 40.0, 3));
        assert_eq!(book.grant(4).unwrap().amount, 0.0);
        // a spent 30 of its 40 and asks again: its own lease is dropped first, so it
        // gets budget - spent - others = 100 - 30 - 60 = 10.
        book.note_cost("c", 0.0, 30.0);
        book.apply(5, &ask("a", 40.0, 4));
        assert_eq!(book.grant(5).unwrap().amount, 10.0);
        let view = book.view("c");
        assert_eq!((view.granted, view.refused), (4, 1));
        assert_eq!(view.active, 70.0);
        assert_eq!(view.spent_counted, 30.0);
        // A correction of a cost moves the spend counted.
        book.note_cost("c", 10.0, 0.0);
        assert_eq!(book.view("c").spent_counted, 20.0);
        // An ask of 0 releases: b's lease returns.
        book.apply(6, &ask("b", 0.0, 5));
        assert_eq!(book.view("c").active, 30.0);
        assert!(book.held("c", "b").is_none());
        // Other campaigns are apart.
        assert_eq!(book.view("other").granted, 0);
    }

    #[test]
    fn leases_expire_by_the_stream_time_alike() {
        let mut book = LeaseBook::default();
        book.apply(1, &ask("a", 60.0, 0));
        book.apply(2, &ask("b", 60.0, 10));
        assert_eq!(book.grant(2).unwrap().amount, 40.0);
        // a's lease is still active at a stream time just before its expiry...
        book.apply(3, &ask("c", 60.0, LEASE_TTL_MS - 1));
        assert_eq!(book.grant(3).unwrap().amount, 0.0);
        // ... and expired once the stream time reaches it.
        book.apply(4, &ask("c", 60.0, LEASE_TTL_MS));
        assert_eq!(book.grant(4).unwrap().amount, 60.0);
        assert!(book.held("c", "a").is_none());
        // An ask written by a clock far behind the stream time is refused (its lease
        // would have expired already).
        book.apply(5, &ask("d", 1.0, 0));
        assert_eq!(book.grant(5).unwrap().amount, 0.0);
    }

    #[test]
    fn the_lease_size_is_a_share_of_the_days_allowance() {
        let day = tla_core::pacing::DAY_MS;
        let plan = tla_core::spec::FlightPlan {
            budget: 1_000.0,
            daily_cap: None,
            start_ms: 0,
            end_ms: 10 * day,
            min_roas: None,
            hourly_traffic: None,
        };
        assert_eq!(lease_size(&plan, 0.05), 5.0);
        assert_eq!(lease_size(&plan.with_budget(1_000.0, Some(50.0)), 0.1), 5.0);
        let short = tla_core::spec::FlightPlan {
            end_ms: day / 2,
            ..plan
        };
        assert_eq!(lease_size(&short, 0.05), 50.0);
        assert!(check_lease_share(0.0).unwrap_err().contains("accepted"));
        assert!(check_lease_share(1.5).is_err());
        assert!(check_lease_share(f64::NAN).is_err());
        assert_eq!(check_lease_share(1.0), Ok(1.0));
    }
}
