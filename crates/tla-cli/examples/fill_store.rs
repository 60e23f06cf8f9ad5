//! Fills a data directory with campaigns (examples/small.toml) and a synthetic log, for
//! timing `tla export`, `tla report` and `tla evaluate`:
//! `cargo run --release -p tla-cli --example fill_store -- DIR DECISIONS [CAMPAIGN_ID...]`.
//! Each campaign (default one, `c_fill`) gets DECISIONS decisions; with several
//! campaigns their pages of 10,000 decisions alternate, so their events interleave in
//! the log. Each decision gets an impression; one in four also a conversion. Versions
//! cycle over the campaign's 16 allowed versions (the 18 defined minus the 2 its exclusion
//! removes) with uniform propensity 1/16; written straight through `tla_store`.

use tla_core::spec::CampaignSpec;
use tla_store::{CampaignRow, CampaignStatus, DecisionRow, EventKind, EventLog, NewEvent, Store};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(decisions)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: fill_store DIR DECISIONS [CAMPAIGN_ID...]");
    };
    let decisions: u64 = decisions.parse()?;
    let mut campaigns: Vec<String> = args.collect();
    if campaigns.is_empty() {
        campaigns.push("c_fill".into());
    }
    let store = Store::open(std::path::Path::new(&dir))?;
    let spec = CampaignSpec::from_toml_str(include_str!("../../../examples/small.toml"))?;
    let validated = spec.validate()?;
    let allowed: Vec<u64> = (0..validated.total_versions())
        .filter(|&v| validated.is_allowed(v))
        .collect();
    anyhow::ensure!(
        allowed.len() == 16,
        "examples/small.toml should allow 16 versions"
    );
    for campaign in &campaigns {
        store.insert_campaign(&CampaignRow {
            id: campaign.clone(),
            name: spec.name.clone(),
            spec_json: serde_json::to_string(&spec)?,
            status: CampaignStatus::Active,
            created_at_ms: 1_700_000_000_000,
        })?;
    }
    let log = store.event_log();
    let page = 10_000;
    let mut next = 0u64;
    while next < decisions {
        let end = (next + page).min(decisions);
        for campaign in &campaigns {
            let mut rows = Vec::new();
            let mut events = Vec::new();
            for i in next..end {
                let version = allowed[((i * 7 + i / 3) % 16) as usize];
                let segment = (i % 3) as u32;
                let at_ms = 1_700_000_000_000 + i as i64;
                let decision_id = format!("{campaign}-d{i}");
                rows.push(DecisionRow {
                    decision_id: decision_id.clone(),
                    campaign_id: campaign.clone(),
                    segment,
                    version,
                    propensity: 1.0 / 16.0,
                    model_version: 1,
                    at_ms,
                    skip: None,
                    revision: 1,
                    held_out: false,
                });
                let event = |kind, value, suffix: &str| NewEvent {
                    campaign_id: campaign.clone(),
                    event_id: format!("{suffix}{i}"),
                    decision_id: decision_id.clone(),
                    kind,
                    value,
                    amount_known: true,
                    segment,
                    version,
                    decided_at_ms: at_ms,
                    at_ms: at_ms + 1_000,
                };
                events.push(event(EventKind::Impression, 0.0, "i"));
                if i % 4 == 1 {
                    events.push(event(
                        EventKind::Conversion,
                        10.0 + (version % 3) as f64 * 5.0,
                        "c",
                    ));
                }
            }
            store.append_decisions(&rows)?;
            log.append(&events)?;
        }
        next = end;
    }
    println!(
        "campaigns {}: {decisions} decisions each, {} events in the log",
        campaigns.join(", "),
        log.last_seq()?
    );
    Ok(())
}
