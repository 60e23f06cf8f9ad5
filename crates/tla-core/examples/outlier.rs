//! One mistyped amount on a campaign of 3 calls to action, before and after the robust
//! value model and `max_value`:
//!
//! `cargo run --release -p tla-core --example outlier`
//!
//! Two segments; the calls to action convert at 4%, 3% and 2% and give on average 50,
//! 30 and 20 (log-normal, sigma 0.6), so `give_50` is best in value per impression
//! (2.0 against 0.9 and 0.4) and `donate_10` worst. The engine decides 30,000
//! impressions (factorized Thompson sampling under the floor); after 3,000 one
//! conversion on `donate_10` carries a wrong amount. Each run prints, from the
//! campaign report, every segment's leader and every call to action's value per
//! impression (posterior mean and 95% interval), and the donations raised and learned.
//!
//! - `before`: the Gaussian step (`residual_cutoff = inf`) and no `max_value` (the
//!   campaign's bound raised to the 1e12 limit, so nothing is refused or capped), as the
//!   engine was: the amount 1e9 is learned as sent;
//! - `after, 1e9`: the amount is above the campaign's `max_value` (100 x the largest
//!   ask = 5000) and refused, as `POST /v1/events` does (`value_above_max`);
//! - `after, 4999`: an amount just under `max_value`, learned with the Huber-type step;
//! - `before, 4999` and `no outlier`: for reference.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use tla_core::engine::{Engine, Feedback};
use tla_core::policy::campaign::CampaignPolicySettings;
use tla_core::report::{self, ReportSettings};
use tla_core::spec::{Campaign, CampaignSpec};

const SPEC: &str = r#"
version = 1
name = "three calls to action"
objective = "value"
segments = [{ name = "new" }, { name = "past" }]

[[components]]
name = "cta"
options = [
  { name = "give_50", text = "Give $50", ask = 50, asks_action = true },
  { name = "give_25", text = "Give $25", ask = 25, asks_action = true },
  { name = "donate_10", text = "Donate $10", ask = 10, asks_action = true },
]
"#;

const RATES: [f64; 3] = [0.04, 0.03, 0.02];
const MEAN_AMOUNTS: [f64; 3] = [50.0, 30.0, 20.0];
const AMOUNT_SIGMA: f64 = 0.6;
const IMPRESSIONS: u64 = 30_000;
const OUTLIER_AT: u64 = 3_000;
/// A first report 1,500 impressions after the outlier (3 s of the demo's 500 a second).
const CHECKPOINT: u64 = OUTLIER_AT + 1_500;
const WORST: u64 = 2;

fn run(campaign: &Campaign, label: &str, cutoff: f64, outlier: Option<f64>, bounded: bool) {
    let mut settings = CampaignPolicySettings::for_campaign(campaign).without_clock();
    settings.factorized.value.residual_cutoff = cutoff;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let mut engine = Engine::with_settings(campaign, settings, &mut rng);
    let amounts: Vec<LogNormal<f64>> = MEAN_AMOUNTS
        .iter()
        .map(|m| LogNormal::new(m.ln() - AMOUNT_SIGMA * AMOUNT_SIGMA / 2.0, AMOUNT_SIGMA).unwrap())
        .collect();
    let mut refused = String::new();
    let label = label.to_owned();
    for i in 0..IMPRESSIONS {
        let segment = (i % 2) as usize;
        let v = engine.decide(segment, &mut rng).version;
        engine.learn(segment, v, Feedback::Impression);
        if rng.random::<f64>() < RATES[v as usize] {
            let amount = amounts[v as usize].sample(&mut rng);
            engine.learn(
                segment,
                v,
                Feedback::Conversion {
                    amount: Some(amount),
                },
            );
        }
        if i == OUTLIER_AT {
            if let Some(amount) = outlier {
                if bounded && amount > campaign.max_value() {
                    refused = format!(
                        " (refused: value {amount} is above max_value {})",
                        campaign.max_value()
                    );
                } else {
                    engine.learn(
                        0,
                        WORST,
                        Feedback::Conversion {
                            amount: Some(amount),
                        },
                    );
                }
            }
        }
        engine.refresh_due(&mut rng, i);
        if i + 1 == CHECKPOINT {
            print_report(campaign, &engine, &format!("{label}{refused}"));
        }
    }
    print_report(campaign, &engine, &format!("{label}{refused}"));
    println!("----");
}

fn print_report(campaign: &Campaign, engine: &Engine, label: &str) {
    let mut report_rng = rand_pcg::Pcg64Mcg::seed_from_u64(0x5EED);
    let report = report::build(
        campaign,
        engine,
        &ReportSettings::default(),
        &mut report_rng,
    );
    println!("{label}, after {} impressions", report.summary.impressions);
    for segment in &report.segments {
        let leader = &segment.leaders[0];
        let vpi = leader.posterior.value_per_impression.unwrap();
        println!(
            "  segment {:<5} leader {:<10} value/impr {:.3} [{:.3}, {:.3}]  P(best) {:.2}",
            segment.segment,
            leader.text,
            vpi.mean,
            vpi.lower,
            vpi.upper,
            leader.p_best.unwrap_or(0.0)
        );
    }
    for option in &report.components[0].options {
        let vpi = option.posterior.value_per_impression.unwrap();
        println!(
            "  {:<10} impr {:>6}  value/impr {:>9.3} [{:.3}, {:.3}]  P(best) {:.2}",
            option.option, option.counts.impressions, vpi.mean, vpi.lower, vpi.upper, option.p_best
        );
    }
    println!(
        "  donations raised {:.2}, learned {:.2}\n",
        report.summary.donations, report.summary.donations_learned
    );
}

fn main() {
    let campaign = CampaignSpec::from_toml_str(SPEC)
        .unwrap()
        .validate()
        .unwrap();
    // Before max_value: nothing below the 1e12 limit is refused or capped.
    let unbounded = CampaignSpec::from_toml_str(&format!("max_value = 1e12\n{SPEC}"))
        .unwrap()
        .validate()
        .unwrap();
    println!(
        "true value per impression: give_50 2.000, give_25 0.900, donate_10 0.400; max_value {}\n",
        campaign.max_value()
    );
    run(&campaign, "no outlier", 3.0, None, true);
    run(
        &unbounded,
        "BEFORE (Gaussian step, no max_value), 1e9 on donate_10",
        f64::INFINITY,
        Some(1e9),
        false,
    );
    run(
        &campaign,
        "AFTER (Huber step, max_value), 1e9 on donate_10",
        3.0,
        Some(1e9),
        true,
    );
    run(
        &unbounded,
        "BEFORE (Gaussian step), 4999 on donate_10",
        f64::INFINITY,
        Some(4999.0),
        false,
    );
    run(
        &campaign,
        "AFTER (Huber step, max_value), 4999 on donate_10",
        3.0,
        Some(4999.0),
        true,
    );
}
