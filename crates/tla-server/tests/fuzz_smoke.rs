//! The fuzz targets' entry points on stable, bounded: random and mutated bytes and JSON
//! through the campaign spec parser (`from_toml_str` / `from_json_str`, then `validate`)
//! and through the server's event parsing (`event::check_raw_event`, the function
//! `POST /v1/events` calls on each item, and whole batches through the router), and
//! through spend report parsing (`spend::check_raw_report`, and whole batches of
//! `POST /v1/campaigns/{id}/spend` through the router).
//! Nothing may panic; every refusal is an error with a code and a non-empty message;
//! nothing answers 5xx. The coverage-guided versions are in `fuzz/` at the repository
//! root (cargo-fuzz, nightly).
//!
//! Each test runs a fixed number of cases, so what is covered does not depend on the
//! machine's speed.

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use tla_core::spec::CampaignSpec;
use tla_server::auth::new_key;
use tla_server::decision_id::DecisionClaims;
use tla_server::{AppState, ManualClock, ServerConfig, app};
use tla_store::{KeyRow, Store};
use tower::ServiceExt;

const SMALL: &str = include_str!("../../../examples/small.toml");
const FUNDRAISING: &str = include_str!("../../../examples/fundraising.toml");
/// Decision time of the signed ids the fixture makes.
const DECIDED_AT: i64 = 1_790_000_000_000;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    })
}

/// Byte strings that tend to matter to TOML and JSON parsers and to the spec's checks.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    ":",
    "\n",
    "\\",
    "\\u0000",
    "#",
    "0",
    "-1",
    "1e400",
    "-0",
    "nan",
    "inf",
    "18446744073709551616",
    "9223372036854775808",
    "4294967296",
    "65536",
    "0.0",
    "\"\"",
    "true",
    "null",
    "[]",
    "{}",
    "\u{feff}",
    "\u{0}",
    "\nversion = 2\n",
    "\n[[components]]\nname = \"x\"\noptions = []\n",
    "\n[[exclusions]]\na = \"headline.fish_back\"\nb = \"cta.give_25\"\n",
    "{headline}",
    "{nope}",
    "share = 0",
    "share = -1",
    "ask = -5",
    "asks_action = 1",
];

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip {
        at: usize,
        bit: u8,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Token {
        at: usize,
        token: usize,
        replace: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (at, 1usize..64).prop_map(|(at, len)| Edit::Delete { at, len }),
        (at, prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (at, 0..TOKENS.len(), 0usize..8).prop_map(|(at, token, replace)| Edit::Token {
            at,
            token,
            replace
        }),
        (at, 1usize..256).prop_map(|(at, len)| Edit::Duplicate { at, len }),
        at.prop_map(|at| Edit::Truncate { at }),
    ]
}

fn apply(base: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for edit in edits {
        let n = bytes.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % (n + 1) };
        match edit {
            Edit::Flip { at, bit } => {
                if n > 0 {
                    bytes[at % n] ^= 1 << bit;
                }
            }
            Edit::Delete { at, len } => {
                let start = pos(*at);
                let end = (start + len).min(n);
                bytes.drain(start..end);
            }
            Edit::Insert { at, bytes: new } => {
                let start = pos(*at);
                bytes.splice(start..start, new.iter().copied());
            }
            Edit::Token { at, token, replace } => {
                let start = pos(*at);
                let end = (start + replace).min(n);
                bytes.splice(start..end, TOKENS[*token].bytes());
            }
            Edit::Duplicate { at, len } => {
                let start = pos(*at);
                let end = (start + len).min(n);
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Edit::Truncate { at } => bytes.truncate(pos(*at)),
        }
    }
    bytes
}

/// JSON values that stress a field: wrong types, extremes, empties, long strings.
fn odd_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(-1.0),
            Just(0.5),
            Just(1e308),
            Just(-1e308),
            Just(f64::MIN_POSITIVE),
            any::<f64>().prop_filter("finite", |x| x.is_finite()),
        ]
        .prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(4_294_967_296u64)),
        ".{0,12}".prop_map(Value::from),
        Just(Value::from("x".repeat(300))),
        Just(Value::from("")),
        Just(Value::from("{headline}")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer of a value, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One structural edit of a JSON document.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace {
        at: usize,
        with: Value,
    },
    Remove {
        at: usize,
    },
    Grow {
        at: usize,
        times: usize,
    },
    AddField {
        at: usize,
        name: String,
        with: Value,
    },
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<usize>(), odd_value()).prop_map(|(at, with)| JsonEdit::Replace { at, with }),
        2 => any::<usize>().prop_map(|at| JsonEdit::Remove { at }),
        1 => (any::<usize>(), 1usize..40).prop_map(|(at, times)| JsonEdit::Grow { at, times }),
        1 => (any::<usize>(), "[a-z_]{1,10}", odd_value())
            .prop_map(|(at, name, with)| JsonEdit::AddField { at, name, with }),
    ]
}

fn apply_json(mut doc: Value, edits: &[JsonEdit]) -> Value {
    for edit in edits {
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let pick = |at: usize| all[at % all.len()].clone();
        match edit {
            JsonEdit::Replace { at, with } => {
                let pointer = pick(*at);
                if let Some(slot) = doc.pointer_mut(&pointer) {
                    *slot = with.clone();
                }
            }
            JsonEdit::Remove { at } => {
                let pointer = pick(*at);
                let Some((parent, last)) = pointer.rsplit_once('/') else {
                    continue;
                };
                let last = last.replace("~1", "/").replace("~0", "~");
                match doc.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = last.parse::<usize>() {
                            if i < items.len() {
                                items.remove(i);
                            }
                        }
                    }
                    _ => {}
                }
            }
            JsonEdit::Grow { at, times } => {
                let pointer = pick(*at);
                if let Some(Value::Array(items)) = doc.pointer_mut(&pointer) {
                    if let Some(first) = items.first().cloned() {
                        for k in 0..*times {
                            let mut copy = first.clone();
                            if let Some(name) = copy.get_mut("name") {
                                *name = Value::from(format!("grown_{k}"));
                            }
                            items.push(copy);
                        }
                    }
                }
            }
            JsonEdit::AddField { at, name, with } => {
                let pointer = pick(*at);
                if let Some(Value::Object(map)) = doc.pointer_mut(&pointer) {
                    map.insert(name.clone(), with.clone());
                }
            }
        }
    }
    doc
}

// ---------------------------------------------------------------- spec_parse

/// The `spec_parse` fuzz target's body: never panics, every refusal has a message.
/// Counts the inputs that validate, so a test can tell its inputs reach `validate`'s
/// success path too.
fn spec_parse(data: &[u8], valid: &AtomicUsize) -> Result<(), TestCaseError> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    for (format, parsed) in [
        ("TOML", CampaignSpec::from_toml_str(text)),
        ("JSON", CampaignSpec::from_json_str(text)),
    ] {
        match parsed.and_then(|spec| spec.validate().map(|_| ())) {
            Ok(()) => {
                valid.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => prop_assert!(
                !error.to_string().trim().is_empty(),
                "a {format} refusal without a message: {error:?}"
            ),
        }
    }
    Ok(())
}

fn spec_json(toml: &str) -> Value {
    let spec = CampaignSpec::from_toml_str(toml).expect("example parses");
    serde_json::to_value(&spec).expect("spec serializes")
}

#[test]
fn spec_parser_takes_random_bytes() {
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        ".{0,256}".prop_map(String::into_bytes),
        // Random TOML-ish and JSON-ish text from the tokens.
        prop::collection::vec(0..TOKENS.len(), 0..64)
            .prop_map(|picks| picks.into_iter().flat_map(|i| TOKENS[i].bytes()).collect()),
    ];
    let valid = AtomicUsize::new(0);
    runner(1_500)
        .run(&strategy, |data| spec_parse(&data, &valid))
        .unwrap();
}

#[test]
fn spec_parser_takes_mutated_example_specs() {
    let small_json = spec_json(SMALL).to_string();
    let bases: Vec<Vec<u8>> = vec![
        SMALL.as_bytes().to_vec(),
        small_json.into_bytes(),
        FUNDRAISING.as_bytes().to_vec(),
    ];
    // The large example is costly to validate in a debug build: one case in six.
    let strategy = (
        prop_oneof![3 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize)],
        prop::collection::vec(edit(), 1..6),
    );
    let valid = AtomicUsize::new(0);
    runner(1_500)
        .run(&strategy, |(base, edits)| {
            spec_parse(&apply(&bases[base], &edits), &valid)
        })
        .unwrap();
    // Some edits (in comments, in texts) leave a valid spec: the success path ran.
    assert!(valid.load(Ordering::Relaxed) > 0);
}

#[test]
fn spec_parser_takes_structurally_mutated_json_specs() {
    let base = spec_json(SMALL);
    let valid = AtomicUsize::new(0);
    runner(1_500)
        .run(&prop::collection::vec(json_edit(), 1..5), |edits| {
            let doc = apply_json(base.clone(), &edits);
            spec_parse(doc.to_string().as_bytes(), &valid)
        })
        .unwrap();
    assert!(valid.load(Ordering::Relaxed) > 0);
}

// ---------------------------------------------------------------- event_batch

struct Fixture {
    state: AppState,
    ingest: String,
    /// A real decision id of the fixture's campaign.
    decision: String,
    /// A signed decision id naming a campaign that does not exist.
    unknown: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let store = Store::open_in_memory().unwrap();
        let key = new_key([3; 22]);
        store
            .insert_key(&KeyRow {
                id: key.id.clone(),
                hash: key.hash,
                scopes: vec!["ingest".into()],
                created_at_ms: 0,
                revoked: false,
                label: "fuzz smoke".into(),
            })
            .unwrap();
        let log = Arc::new(store.event_log());
        // The clock stands a minute after the fixture's decisions.
        let clock = Arc::new(ManualClock::new(DECIDED_AT + 60_000));
        let state =
            AppState::open(store, log, clock, b"fuzz secret", ServerConfig::default()).unwrap();
        let campaign = CampaignSpec::from_toml_str(SMALL)
            .and_then(|spec| spec.validate())
            .unwrap();
        let slot = state
            .create_campaign(campaign, "c_fuzz00000001".into())
            .unwrap();
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
            model_seq: 0,
        };
        Fixture {
            decision: state.signer().sign(&claims(&slot.id)),
            unknown: state.signer().sign(&claims("c_missing")),
            ingest: key.token,
            state,
        }
    })
}

/// Events `check_raw_event` accepted, over every test of this file.
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

/// The `event_batch` fuzz target's check of one event's raw text: never panics, every
/// refusal has a code and a message, and every accepted event is one the store accepts.
fn check_event(item: &str, now: i64) -> Result<(), TestCaseError> {
    let fixture = fixture();
    match tla_server::event::check_raw_event(&fixture.state, item, now) {
        Ok(event) => {
            ACCEPTED.fetch_add(1, Ordering::Relaxed);
            prop_assert!(
                !event.event_id.is_empty()
                    && event.event_id.chars().count() <= tla_server::event::MAX_EVENT_ID_LEN,
                "{event:?}"
            );
            prop_assert!(event.value.is_finite() && event.value >= 0.0, "{event:?}");
            prop_assert!(
                tla_store::validate_event(&event).is_ok(),
                "accepted by the server, refused by the store: {event:?} from {item}"
            );
        }
        Err(rejection) => {
            prop_assert!(
                !rejection.to_string().trim().is_empty(),
                "a refusal without a message for {item}"
            );
            prop_assert!(!rejection.code().as_str().is_empty());
        }
    }
    Ok(())
}

/// A decision id as a client might send it: real, forged, cut, of another campaign.
fn decision_id() -> impl Strategy<Value = Value> {
    let fixture = fixture();
    let (real, unknown) = (fixture.decision.clone(), fixture.unknown.clone());
    let cut = real.clone();
    let flipped = real.clone();
    prop_oneof![
        6 => Just(Value::from(real)),
        1 => Just(Value::from(unknown)),
        1 => (0usize..200).prop_map(move |n| Value::from(cut[..n.min(cut.len())].to_string())),
        1 => (any::<usize>(), any::<char>()).prop_map(move |(at, c)| {
            let mut chars: Vec<char> = flipped.chars().collect();
            let i = at % chars.len();
            chars[i] = c;
            Value::from(chars.into_iter().collect::<String>())
        }),
        1 => odd_value(),
    ]
}

/// An event: each field kept well-formed, dropped or replaced by an odd value, with
/// now and then an unknown field.
fn event() -> impl Strategy<Value = Value> {
    let field = |good: BoxedStrategy<Value>| {
        prop_oneof![
            6 => good.prop_map(Some),
            1 => Just(None),
            1 => odd_value().prop_map(Some),
        ]
    };
    let kind = prop_oneof![
        Just("impression"),
        Just("click"),
        Just("conversion"),
        Just("cost"),
        Just("Impression"),
        Just(""),
    ]
    .prop_map(Value::from)
    .boxed();
    let event_id = prop_oneof![".{1,40}", Just(String::new()), Just("e".repeat(129))]
        .prop_map(Value::from)
        .boxed();
    let number = prop_oneof![
        (0.0..1000.0f64).prop_map(Value::from),
        Just(json!(-1.0)),
        Just(json!(1e308)),
        any::<u64>().prop_map(Value::from),
    ]
    .boxed();
    let at = prop_oneof![
        (-120_000i64..100 * 3_600_000).prop_map(|d| Value::from(DECIDED_AT + d)),
        any::<i64>().prop_map(Value::from),
    ]
    .boxed();
    (
        field(event_id),
        decision_id().prop_map(Some),
        field(kind),
        prop::option::of(number.clone()),
        prop::option::of(number),
        prop::option::of(at),
        prop::option::weighted(0.1, ("[a-z]{1,8}", odd_value())),
    )
        .prop_map(|(event_id, decision_id, kind, value, amount, at, extra)| {
            let mut map = serde_json::Map::new();
            for (name, item) in [
                ("event_id", event_id),
                ("decision_id", decision_id),
                ("type", kind),
                ("value", value),
                ("amount", amount),
                ("at", at),
            ] {
                if let Some(item) = item {
                    map.insert(name.into(), item);
                }
            }
            if let Some((name, item)) = extra {
                map.insert(name, item);
            }
            Value::Object(map)
        })
}

#[test]
fn event_parsing_takes_mutated_events() {
    let now = prop_oneof![
        Just(DECIDED_AT + 60_000),
        (-3_600_000i64..200 * 3_600_000).prop_map(|d| DECIDED_AT + d),
    ];
    let before = ACCEPTED.load(Ordering::Relaxed);
    runner(3_000)
        .run(&(event(), now), |(item, now)| {
            check_event(&item.to_string(), now)
        })
        .unwrap();
    // Most fields are kept well-formed, so the accepting path ran too.
    assert!(ACCEPTED.load(Ordering::Relaxed) > before);
}

#[test]
fn event_parsing_takes_random_json_and_bytes() {
    let fixture = fixture();
    let base = json!({"event_id": "e-1", "decision_id": fixture.decision, "type": "conversion",
                      "value": 10.0})
    .to_string()
    .into_bytes();
    let strategy = prop_oneof![
        odd_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(edit(), 1..4).prop_map(move |edits| apply(&base, &edits)),
    ];
    runner(2_000)
        .run(&strategy, |bytes| {
            // Any text reaches the check, JSON or not (the server passes each item's
            // raw text; anything else must be refused as well).
            match std::str::from_utf8(&bytes) {
                Ok(text) => check_event(text, DECIDED_AT + 60_000),
                Err(_) => Ok(()),
            }
        })
        .unwrap();
}

/// Whole batches through `POST /v1/events` (parsing, checks, the in-memory log): the
/// answer is never 5xx, a 200 accounts for every event, every error has a message.
#[test]
fn event_batches_through_the_router_never_answer_5xx() {
    let fixture = fixture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = prop_oneof![
        4 => prop::collection::vec(event(), 0..12)
            .prop_map(|events| json!({"events": events}).to_string().into_bytes()),
        1 => odd_value().prop_map(|v| json!({"events": v}).to_string().into_bytes()),
        1 => (prop::collection::vec(event(), 1..4), prop::collection::vec(edit(), 1..4))
            .prop_map(|(events, edits)| {
                apply(json!({"events": events}).to_string().as_bytes(), &edits)
            }),
    ];
    let stored = AtomicUsize::new(0);
    runner(400)
        .run(&body, |body| {
            // Count the items as the server splits the batch: each event is kept as raw
            // JSON text, so an item whose number does not fit an f64 is one rejected
            // item, not a malformed batch.
            let sent: Option<usize> = tla_server::event::parse_batch(&body, usize::MAX)
                .ok()
                .map(|items| items.len());
            let request = Request::builder()
                .method("POST")
                .uri("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {}", fixture.ingest))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.clone()))
                .unwrap();
            let (status, answer) = runtime.block_on(async {
                let response = app(fixture.state.clone()).oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                (status, bytes)
            });
            let answer: Value = serde_json::from_slice(&answer)
                .map_err(|e| TestCaseError::fail(format!("answer is not JSON: {e}")))?;
            prop_assert!(
                !status.is_server_error(),
                "{status} for {}: {answer}",
                String::from_utf8_lossy(&body)
            );
            if status.is_success() {
                let counted = answer["accepted"].as_u64().unwrap_or(0)
                    + answer["duplicates"].as_u64().unwrap_or(0)
                    + answer["rejected"].as_array().map_or(0, |r| r.len() as u64);
                prop_assert_eq!(Some(counted as usize), sent, "{}", answer);
                stored.fetch_add(
                    answer["accepted"].as_u64().unwrap_or(0) as usize,
                    Ordering::Relaxed,
                );
                for rejected in answer["rejected"].as_array().into_iter().flatten() {
                    prop_assert!(
                        rejected["error"]
                            .as_str()
                            .is_some_and(|m| !m.trim().is_empty()),
                        "{}",
                        answer
                    );
                    prop_assert!(rejected["code"].is_string(), "{}", answer);
                }
            } else {
                prop_assert!(
                    answer["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.trim().is_empty()),
                    "{status}: {answer}"
                );
            }
            Ok(())
        })
        .unwrap();
    assert!(
        stored.load(Ordering::Relaxed) > 0,
        "no batch stored an event"
    );
}

/// A spend report: each field kept well-formed, dropped or replaced by an odd value,
/// with now and then an unknown field.
fn spend_report() -> impl Strategy<Value = Value> {
    let field = |good: BoxedStrategy<Value>| {
        prop_oneof![
            6 => good.prop_map(Some),
            1 => Just(None),
            1 => odd_value().prop_map(Some),
        ]
    };
    let report_id = prop_oneof![
        "[a-z0-9-]{1,20}",
        Just(String::new()),
        Just("r".repeat(129))
    ]
    .prop_map(Value::from)
    .boxed();
    let segment = prop_oneof![
        4 => Just("past-donors".to_owned()),
        2 => Just("volunteers".to_owned()),
        1 => ".{0,12}",
    ]
    .prop_map(Value::from)
    .boxed();
    let time = prop_oneof![
        4 => (1u32..=28, 0u32..24).prop_map(|(day, hour)| format!("2026-12-{day:02}T{hour:02}:00:00Z")),
        1 => (0u32..=9999, 0u32..=13, 0u32..=32).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}T00:00:00+01:00")),
        1 => ".{0,30}",
    ]
    .prop_map(Value::from)
    .boxed();
    let amount = prop_oneof![
        (0.0..1e6f64).prop_map(Value::from),
        Just(json!(-1.0)),
        Just(json!(1e308)),
        Just(json!(2e12)),
        any::<u64>().prop_map(Value::from),
    ]
    .boxed();
    let impressions = prop_oneof![
        any::<u64>().prop_map(Value::from),
        Just(json!(-3)),
        Just(json!(1.5)),
    ];
    (
        field(report_id),
        field(segment),
        field(time.clone()),
        field(time),
        field(amount),
        prop::option::of(impressions),
        prop::option::weighted(0.1, ("[a-z]{1,8}", odd_value())),
    )
        .prop_map(
            |(report_id, segment, start, end, amount, impressions, extra)| {
                let mut map = serde_json::Map::new();
                for (name, item) in [
                    ("report_id", report_id),
                    ("segment", segment),
                    ("start", start),
                    ("end", end),
                    ("amount", amount),
                    ("impressions", impressions),
                ] {
                    if let Some(item) = item {
                        map.insert(name.into(), item);
                    }
                }
                if let Some((name, item)) = extra {
                    map.insert(name, item);
                }
                Value::Object(map)
            },
        )
}

/// Mutated spend reports through `check_raw_report`: never a panic, every refusal with a
/// code and a message, every accepted report one the store accepts.
#[test]
fn spend_report_parsing_takes_mutated_reports() {
    let fixture = fixture();
    let slot = fixture.state.campaign("c_fuzz00000001").unwrap();
    let accepted = AtomicUsize::new(0);
    runner(3_000)
        .run(&spend_report(), |item| {
            let text = item.to_string();
            match tla_server::spend::check_raw_report(&slot, &text, "key", DECIDED_AT) {
                Ok(report) => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    prop_assert!(
                        tla_store::validate_spend_report(&report).is_ok(),
                        "accepted by the server, refused by the store: {report:?} from {text}"
                    );
                    prop_assert!(report.amount <= tla_core::spec::AMOUNT_LIMIT);
                }
                Err(rejection) => {
                    prop_assert!(!rejection.to_string().trim().is_empty(), "{text}");
                    prop_assert!(!rejection.code().as_str().is_empty());
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(
        accepted.load(Ordering::Relaxed) > 0,
        "no report was accepted"
    );
}

/// Whole batches through `POST /v1/campaigns/{id}/spend`: never 5xx, a 200 accounts for
/// every report.
#[test]
fn spend_batches_through_the_router_never_answer_5xx() {
    let fixture = fixture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = prop_oneof![
        4 => prop::collection::vec(spend_report(), 0..12)
            .prop_map(|reports| json!({"reports": reports}).to_string().into_bytes()),
        1 => odd_value().prop_map(|v| json!({"reports": v}).to_string().into_bytes()),
        1 => (prop::collection::vec(spend_report(), 1..4), prop::collection::vec(edit(), 1..4))
            .prop_map(|(reports, edits)| {
                apply(json!({"reports": reports}).to_string().as_bytes(), &edits)
            }),
    ];
    runner(300)
        .run(&body, |body| {
            let sent: Option<usize> = tla_server::spend::parse_batch(&body, usize::MAX)
                .ok()
                .map(|items| items.len());
            let request = Request::builder()
                .method("POST")
                .uri("/v1/campaigns/c_fuzz00000001/spend")
                .header(header::AUTHORIZATION, format!("Bearer {}", fixture.ingest))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.clone()))
                .unwrap();
            let (status, answer) = runtime.block_on(async {
                let response = app(fixture.state.clone()).oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                (status, bytes)
            });
            let answer: Value = serde_json::from_slice(&answer)
                .map_err(|e| TestCaseError::fail(format!("answer is not JSON: {e}")))?;
            prop_assert!(
                !status.is_server_error(),
                "{status} for {}: {answer}",
                String::from_utf8_lossy(&body)
            );
            if status.is_success() {
                let counted = answer["accepted"].as_u64().unwrap_or(0)
                    + answer["duplicates"].as_u64().unwrap_or(0)
                    + answer["rejected"].as_array().map_or(0, |r| r.len() as u64);
                prop_assert_eq!(Some(counted as usize), sent, "{}", answer);
            } else {
                prop_assert!(
                    answer["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.trim().is_empty()),
                    "{status}: {answer}"
                );
            }
            Ok(())
        })
        .unwrap();
}
