//! Bytes -> the server's event parsing (`tla_server::event::check_raw_event`), the
//! function `POST /v1/events` runs on each item's raw text, against a state over an
//! in-memory store holding one campaign, on a manual clock.
//!
//! The input is JSON text in which `@D` stands for a real decision id signed by the
//! state's key and `@X` for a signed id naming a campaign that does not exist, so the
//! fuzzer reaches the checks after the signature. A top-level `{"events": [...]}` is
//! checked item by item (each item's raw text, as the server keeps it), anything else
//! as one event. Never panics; every refusal has a code and a non-empty message; every
//! accepted event is one the store accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tla_core::spec::CampaignSpec;
use tla_server::decision_id::DecisionClaims;
use tla_server::{AppState, ManualClock, ServerConfig};
use tla_store::Store;

const SPEC: &str = include_str!("../../examples/small.toml");
/// Decision time of the signed ids; "now" is a minute later.
const DECIDED_AT: i64 = 1_790_000_000_000;

struct Fixture {
    state: AppState,
    decision: String,
    unknown: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let store = Store::open_in_memory().expect("in-memory store");
        let log = Arc::new(store.event_log());
        let clock = Arc::new(ManualClock::new(DECIDED_AT + 60_000));
        let state = AppState::open(store, log, clock, b"fuzz secret", ServerConfig::default())
            .expect("state");
        let campaign = CampaignSpec::from_toml_str(SPEC)
            .and_then(|spec| spec.validate())
            .expect("examples/small.toml validates");
        let slot = state
            .create_campaign(campaign, "c_fuzz00000001".into())
            .expect("campaign");
        let claims = |campaign_id: &str| DecisionClaims {
            campaign_id: campaign_id.into(),
            segment: 1,
            version: 3,
            model_version: 0,
            propensity: 0.25,
            at_ms: DECIDED_AT,
            nonce: 7,
            revision: 1,
            held_out: false,
        };
        Fixture {
            decision: state.signer().sign(&claims(&slot.id)),
            unknown: state.signer().sign(&claims("c_missing")),
            state,
        }
    })
}

fn check(fixture: &Fixture, item: &str) {
    match tla_server::event::check_raw_event(&fixture.state, item, DECIDED_AT + 60_000) {
        Ok(event) => {
            assert!(
                !event.event_id.is_empty()
                    && event.event_id.chars().count() <= tla_server::event::MAX_EVENT_ID_LEN
            );
            assert!(event.value.is_finite() && event.value >= 0.0, "{event:?}");
            tla_store::validate_event(&event).expect("the store accepts what the server accepts");
        }
        Err(rejection) => {
            assert!(!rejection.to_string().trim().is_empty(), "a refusal without a message");
            assert!(!rejection.code().as_str().is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text
        .replace("@D", &fixture.decision)
        .replace("@X", &fixture.unknown);
    // A batch is split as the server splits it; anything else is checked as one event.
    match tla_server::event::parse_batch(text.as_bytes(), usize::MAX) {
        Ok(items) => {
            for item in items {
                check(fixture, item.get());
            }
        }
        Err(_) => check(fixture, &text),
    }
});
