//! State changes through a shared stream (docs/scale-out.md, "State changes"): two
//! servers' states on one NATS JetStream stream revise one campaign at once, pause,
//! archive and try to resume it, between events; every outcome is decided in stream
//! order, alike on both, and both models are the same at the same sequence. A server
//! stopped while changes are made catches up at its restart (the changes at their
//! place among the events), and so does a server that joins late on an empty data
//! directory. nats-server comes from scripts/nats-deps.sh; without it the test is
//! skipped with a message, unless `CI` is set. The server it starts is killed by pid.

#![cfg(unix)]

mod support;

use std::time::{Duration, Instant};
use support::nats::{StreamFixture, stream_fixture};
use tla_core::spec::CampaignSpec;
use tla_server::state::AppState;
use tla_store::{EventKind, NewEvent, Store};

const SECRET: &[u8] = b"stream-changes-test-secret-0123456789";
const SPEC: &str = include_str!("../../../examples/small.toml");
const ID: &str = "c_00000000c0de";

fn spec(extra_headline: Option<&str>) -> tla_core::spec::Campaign {
    let mut text = SPEC.to_string();
    if let Some(name) = extra_headline {
        let first = "  { name = \"first_gift\", text = \"Make your first gift count\", asks_action = false },";
        text = text.replace(
            first,
            &format!("{first}\n  {{ name = \"{name}\", text = \"{name}\", asks_action = false }},"),
        );
    }
    CampaignSpec::from_toml_str(&text)
        .and_then(|spec| spec.validate())
        .unwrap()
}

/// Sends `n` impressions and clicks named `prefix-i` through `state`'s log.
fn send(state: &AppState, prefix: &str, n: usize) {
    let campaign = spec(None);
    let allowed: Vec<u64> = (0..).filter(|&v| campaign.is_allowed(v)).take(4).collect();
    let events: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent {
            campaign_id: ID.into(),
            event_id: format!("{prefix}-{i}"),
            decision_id: format!("d-{prefix}-{}", i / 2),
            kind: if i % 2 == 0 {
                EventKind::Impression
            } else {
                EventKind::Click
            },
            value: 0.0,
            amount_known: true,
            segment: (i % 3) as u32,
            version: allowed[i % allowed.len()],
            decided_at_ms: 1_000,
            at_ms: 2_000,
        })
        .collect();
    state.log().append(&events).unwrap();
    state.wake_learner();
}

/// Sends `n` impressions for decisions served under revision `revision` (of the spec
/// with the extra headline `headline`) showing that headline, signed as the server
/// signs them.
fn send_served_under(state: &AppState, revision: u32, headline: &str, n: usize) {
    let campaign = spec(Some(headline));
    let version = (0..campaign.total_versions())
        .find(|&v| campaign.is_allowed(v) && campaign.options_of(v)[0].1 == headline)
        .expect("a version with the headline");
    let signer = tla_server::decision_id::DecisionSigner::new(SECRET);
    let events: Vec<NewEvent> = (0..n)
        .map(|i| {
            let decision_id = signer.sign(&tla_server::decision_id::DecisionClaims {
                campaign_id: ID.into(),
                segment: 0,
                version,
                model_version: 0,
                propensity: 0.5,
                at_ms: 1_000,
                nonce: i as u64,
                revision,
                held_out: false,
                model_seq: 0,
            });
            NewEvent {
                campaign_id: ID.into(),
                event_id: format!("{headline}-{i}"),
                decision_id,
                kind: EventKind::Impression,
                value: 0.0,
                amount_known: true,
                segment: 0,
                version,
                decided_at_ms: 1_000,
                at_ms: 2_000,
            }
        })
        .collect();
    state.log().append(&events).unwrap();
    state.wake_learner();
}

/// What must be the same on every server: the revisions (number, from_seq, spec),
/// paused, archived, the applied sequence and the learned model.
type View = (Vec<(u32, u64, String)>, bool, bool, u64, Vec<u8>);

fn view(state: &AppState) -> View {
    let slot = state.campaign(ID).unwrap();
    let revisions = slot
        .revisions()
        .iter()
        .map(|r| {
            (
                r.number,
                r.from_seq,
                serde_json::to_string(r.campaign.spec()).unwrap(),
            )
        })
        .collect();
    let engine = slot.engine();
    (
        revisions,
        slot.is_paused(),
        slot.is_archived(),
        state.applied_seq(),
        engine.snapshot(),
    )
}

/// Waits until every server has applied the whole stream and answers their views.
fn settle(servers: &[&AppState]) -> Vec<View> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up = servers.iter().all(|s| {
            let health = s.stream().unwrap().health(s.applied_seq());
            health.lag == 0 && health.unapplied_events == 0 && s.campaign(ID).is_ok()
        });
        if caught_up {
            let views: Vec<_> = servers.iter().map(|s| view(s)).collect();
            if views.iter().all(|v| v == &views[0]) {
                return views;
            }
        }
        if Instant::now() > deadline {
            let seen: Vec<_> = servers
                .iter()
                .filter_map(|s| s.campaign(ID).ok().map(|_| view(s)))
                .map(|(revisions, paused, archived, applied, _)| {
                    (revisions.len(), paused, archived, applied)
                })
                .collect();
            panic!(
                "the servers did not agree within 30 s: (revisions, paused, archived, applied_seq) {seen:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn changes_on_two_servers_are_decided_in_stream_order_and_every_server_agrees() {
    let Some(fixture) = stream_fixture("stream-changes", "tla_changes") else {
        return;
    };
    let StreamFixture {
        runtime, settings, ..
    } = &fixture;
    let (store_a, store_b) = (
        Store::open_in_memory().unwrap(),
        Store::open_in_memory().unwrap(),
    );
    let a = support::nats::open(runtime, settings, &store_a, SECRET);
    let b = support::nats::open(runtime, settings, &store_b, SECRET);

    // The campaign, made on A, reaches B; events from both.
    let slot = a.state.create_campaign(spec(None), ID.into()).unwrap();
    let row = a.state.store().campaign(&slot.id).unwrap().unwrap();
    a.state.stream().unwrap().share_campaign(&row).unwrap();
    send(&a.state, "a1", 40);
    send(&b.state, "b1", 40);
    settle(&[&a.state, &b.state]);

    // Two revisions at once, one on each server: both are decided in stream order, as
    // revisions 2 and 3, the second on top of the first.
    let revise = |state: &AppState, headline: &'static str| {
        let state = state.clone();
        runtime.spawn_blocking(move || {
            let slot = state.campaign(ID).unwrap();
            tla_server::revise::revise(&state, &slot, spec(Some(headline)), None, "k", None)
                .map(|revised| revised.revision.number)
        })
    };
    let (on_a, on_b) = (revise(&a.state, "otter"), revise(&b.state, "heron_two"));
    let mut numbers = vec![
        runtime.block_on(on_a).unwrap().unwrap(),
        runtime.block_on(on_b).unwrap().unwrap(),
    ];
    numbers.sort_unstable();
    assert_eq!(numbers, [2, 3]);
    send(&b.state, "b2", 40);
    let views = settle(&[&a.state, &b.state]);
    let revisions = &views[0].0;
    assert_eq!(revisions.len(), 3);
    // Each takes effect after its own record's stream sequence.
    assert!(
        revisions[1].1 > 0 && revisions[2].1 > revisions[1].1,
        "{revisions:?}"
    );

    // A pause on B, then B stops; meanwhile A revises, archives, and a resume after the
    // archive is refused; events go on.
    let paused = {
        let state = b.state.clone();
        runtime
            .block_on(runtime.spawn_blocking(move || state.set_paused_by(ID, true, "k")))
            .unwrap()
            .unwrap()
    };
    assert!(paused.is_paused());
    settle(&[&a.state, &b.state]);
    support::nats::stop(runtime, b);
    send(&a.state, "a3", 40);
    let state = a.state.clone();
    let (revised, archived, resumed) = runtime
        .block_on(runtime.spawn_blocking(move || {
            let slot = state.campaign(ID).unwrap();
            let revised = tla_server::revise::revise(
                &state,
                &slot,
                spec(Some("kingfisher")),
                None,
                "k",
                None,
            )
            .map(|r| r.revision.number);
            send(&state, "a4", 40);
            // Revision 5 removes the new headline, served by no event before it: taken.
            // Events for decisions served it under revision 4 arrive after it (outside
            // the campaign now). A server that learned them before applying revision 5
            // would refuse it (a served option removed) and part from the others.
            let removed = tla_server::revise::revise(&state, &slot, spec(None), None, "k", None)
                .map(|r| r.revision.number);
            assert_eq!(removed.unwrap(), 5);
            send_served_under(&state, 4, "kingfisher", 10);
            let archived = state.archive_by(ID, "k").map(|s| s.is_archived());
            let resumed = state.set_paused_by(ID, false, "k").map(|_| ());
            (revised, archived, resumed)
        }))
        .unwrap();
    assert_eq!(revised.unwrap(), 4);
    assert!(archived.unwrap());
    let refused = resumed.unwrap_err();
    assert_eq!(refused.code().as_str(), "campaign_archived", "{refused:?}");
    send(&a.state, "a5", 40);

    // B restarts on its data directory; C joins on an empty one: both catch up with
    // every change at its place.
    let b = support::nats::open(runtime, settings, &store_b, SECRET);
    let store_c = Store::open_in_memory().unwrap();
    let c = support::nats::open(runtime, settings, &store_c, SECRET);
    let views = settle(&[&a.state, &b.state, &c.state]);
    let (revisions, paused, archived, applied, model) = &views[0];
    assert_eq!(revisions.len(), 5, "{revisions:?}");
    assert!(*paused && *archived);
    assert!(!model.is_empty() && *applied > 0);
    let learned = a.state.campaign(ID).unwrap().engine().events();
    // Every event learned once; those of the removed headline are outside the campaign.
    assert_eq!(learned, 240, "every event learned once");
    // Each server wrote the same control audit (pause, archive; the refused resume
    // wrote nothing).
    let audit = |store: &Store| {
        store
            .controls(ID)
            .unwrap()
            .into_iter()
            .map(|a| (a.audit.action, a.audit.at_ms))
            .collect::<Vec<_>>()
    };
    assert_eq!(audit(&store_a).len(), 2);
    assert_eq!(audit(&store_a), audit(&store_b));
    assert_eq!(audit(&store_a), audit(&store_c));
    for server in [a, b, c] {
        support::nats::stop(runtime, server);
    }
}
