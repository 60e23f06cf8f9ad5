//! Snapshot of the report JSON on a seeded simulated campaign (examples/small.toml).
//!
//! The campaign id is redacted and every number is rounded to 4 significant digits,
//! so the snapshot holds across platforms' last-bit differences in `exp`/`ln`.
//! After an intended change to the report, review and accept the new snapshot with
//! `cargo insta review` (or `INSTA_UPDATE=always cargo test -p tla-server --test
//! report_snapshot`, then read the diff of `tests/snapshots/`).

mod support;

use rand::{Rng, SeedableRng};
use serde_json::Value;
use tla_core::engine::{Engine, Feedback};
use tla_core::ope::LoggedRow;
use tla_core::report::{self, ReportSettings};
use tla_core::spec::CampaignSpec;

const SPEC: &str = include_str!("../../../examples/small.toml");

fn round(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(0.0);
            let rounded = if x == 0.0 || !x.is_finite() {
                x
            } else {
                let digits = 4 - 1 - x.abs().log10().floor() as i32;
                let scale = 10f64.powi(digits);
                (x * scale).round() / scale
            };
            *value = serde_json::json!(rounded);
        }
        Value::Array(items) => items.iter_mut().for_each(round),
        Value::Object(map) => map.values_mut().for_each(round),
        _ => {}
    }
}

#[test]
fn report_json_of_a_seeded_simulated_campaign() {
    let campaign = CampaignSpec::from_toml_str(SPEC)
        .unwrap()
        .validate()
        .unwrap();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(42);
    let mut engine = Engine::new(&campaign, &mut rng);
    let shares = campaign.segment_shares().to_vec();
    let space = engine.space().clone();
    let mut rows = Vec::new();
    // The truth: headline 1 doubles the rate, the third CTA option halves it; the
    // donation is the ask (or 20 without one).
    for i in 0..20_000u64 {
        let u: f64 = rng.random();
        let mut segment = 0;
        let mut acc = shares[0];
        while u > acc && segment + 1 < shares.len() {
            segment += 1;
            acc += shares[segment];
        }
        let decision = engine.decide(segment, &mut rng);
        let v = decision.version;
        engine.learn(segment, v, Feedback::Impression);
        engine.learn(segment, v, Feedback::Cost { amount: 0.01 });
        let mut p = 0.02 * (1.0 + segment as f64 * 0.5);
        if space.option_of(v, 0) == 1 {
            p *= 2.0;
        }
        if space.option_of(v, space.components() - 1) == 2 {
            p *= 0.5;
        }
        let mut reward = 0.0;
        if rng.random::<f64>() < p {
            reward = campaign.ask_amount(v).unwrap_or(20.0);
            engine.learn(
                segment,
                v,
                Feedback::Conversion {
                    amount: Some(reward),
                },
            );
        }
        rows.push(LoggedRow {
            segment,
            action: v,
            propensity: decision.propensity,
            reward,
        });
        engine.refresh_due(&mut rng, i);
    }
    let settings = ReportSettings {
        draws: 200,
        leaders: 3,
        max_versions: 5,
    };
    let mut report = report::build(&campaign, &engine, &settings, &mut rng);
    let best = report::best_versions(&engine, &mut rng);
    let first_half_best = report::best_versions_on_first_half(&campaign, &rows, &mut rng);
    report.lift =
        Some(report::lift(&rows, campaign.allowed_versions(), &best, &first_half_best).unwrap());
    report.campaign = Some("cmp_0000000000".into());
    // The check against the truth: headline 1 leads its component.
    let headline = &report.components[0].options;
    let leader = (0..headline.len())
        .max_by(|&a, &b| headline[a].p_best.total_cmp(&headline[b].p_best))
        .unwrap();
    assert_eq!(leader, 1, "{headline:?}");
    let mut json = serde_json::to_value(&report).unwrap();
    // The report as the API serves it matches the OpenAPI document's schema.
    let openapi = support::openapi_check::OpenApiCheck::new(tla_server::openapi::document(
        &tla_server::ServerConfig::default(),
    ));
    if let Err(errors) = openapi.component("Report", &json) {
        panic!(
            "the report disagrees with the OpenAPI document:\n{}",
            errors.join("\n")
        );
    }
    json["campaign"] = Value::String("[id]".into());
    round(&mut json);
    insta::assert_json_snapshot!("report_small_seeded", json);
}
