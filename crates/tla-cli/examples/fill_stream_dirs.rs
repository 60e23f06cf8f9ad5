//! Fills the data directories of several servers of one stream with decision logs, for
//! timing the merged export (`tla export --what decisions` with `--data` repeated;
//! docs/scale-out.md, *The servers' decision logs*):
//! `cargo run --release -p tla-cli --example fill_stream_dirs -- ROOT SERVERS DECISIONS [COPY_EVERY]`.
//!
//! Makes `ROOT/tla0` ... `ROOT/tla{SERVERS-1}`, each mirroring stream `tla_fill` (its
//! position and a genesis record of one secret, as a stream server writes them), with
//! campaign `c_fill` (examples/small.toml) and DECISIONS decisions of its own, signed
//! with that secret like a server's (model seq = the decision's number), their times
//! interleaved across the servers. Each directory also holds a restored copy of every
//! COPY_EVERY-th decision (default 10) of each other server, as a server writes the
//! decisions of others that events it applied refer to. Written straight through
//! `tla_store`; no events.

use tla_core::spec::CampaignSpec;
use tla_server::decision_id::{DecisionClaims, DecisionSigner};
use tla_server::stream_log::{Record, STREAM_FORMAT, secret_check};
use tla_store::{CampaignRow, CampaignStatus, DecisionRow, MirrorBatch, Store};

const STREAM: &str = "tla_fill";
const SECRET: &[u8] = b"fill-stream-dirs-secret-0123456789";
const CAMPAIGN: &str = "c_fill";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, servers, decisions, rest @ ..] = &args[..] else {
        anyhow::bail!("usage: fill_stream_dirs ROOT SERVERS DECISIONS [COPY_EVERY]");
    };
    let servers: u64 = servers.parse()?;
    let decisions: u64 = decisions.parse()?;
    let copy_every: u64 = rest.first().map_or(Ok(10), |n| n.parse())?;
    anyhow::ensure!(copy_every >= 1, "COPY_EVERY must be at least 1");
    let spec = CampaignSpec::from_toml_str(include_str!("../../../examples/small.toml"))?;
    let validated = spec.validate()?;
    let allowed: Vec<u64> = (0..validated.total_versions())
        .filter(|&v| validated.is_allowed(v))
        .collect();
    let signer = DecisionSigner::new(SECRET);
    let row = |server: u64, i: u64| {
        let version = allowed[((i * 7 + server) % allowed.len() as u64) as usize];
        let claims = DecisionClaims {
            campaign_id: CAMPAIGN.into(),
            segment: (i % 3) as u32,
            version,
            model_version: 1 + i / 10_000,
            propensity: 1.0 / (2 + (i + server) % 15) as f64,
            at_ms: 1_700_000_000_000 + (i * servers + server) as i64,
            nonce: server << 40 | i,
            revision: 1,
            held_out: false,
            model_seq: i,
        };
        DecisionRow {
            decision_id: signer.sign(&claims),
            campaign_id: claims.campaign_id,
            segment: claims.segment,
            version: claims.version,
            propensity: claims.propensity,
            model_version: claims.model_version,
            at_ms: claims.at_ms,
            skip: None,
            revision: 1,
            held_out: false,
        }
    };
    let genesis = serde_json::to_vec(&Record::Genesis {
        format: STREAM_FORMAT,
        secret_check: secret_check(SECRET),
    })?;
    let mut total = 0;
    for server in 0..servers {
        let store = Store::open(&std::path::Path::new(root).join(format!("tla{server}")))?;
        store.insert_campaign(&CampaignRow {
            id: CAMPAIGN.into(),
            name: spec.name.clone(),
            spec_json: serde_json::to_string(&spec)?,
            status: CampaignStatus::Active,
            created_at_ms: 1_700_000_000_000,
        })?;
        let batch = MirrorBatch {
            records: vec![(1, genesis.clone())],
            ..MirrorBatch::default()
        };
        store.write_mirror(STREAM, &batch, 1)?;
        const PAGE: u64 = 10_000;
        for start in (0..decisions).step_by(PAGE as usize) {
            let mut rows = Vec::new();
            for i in start..(start + PAGE).min(decisions) {
                rows.push(row(server, i));
                if i % copy_every == 0 {
                    rows.extend((0..servers).filter(|&s| s != server).map(|s| row(s, i)));
                }
            }
            total += store.append_decisions(&rows)?;
        }
    }
    println!(
        "{servers} data directories of stream {STREAM} under {root}: {decisions} decisions each, \
         a copy of every {copy_every}th of the others'; {total} rows in all, {} distinct",
        servers * decisions
    );
    Ok(())
}
