//! `tla serve --demo`: the demo campaign and a simulated audience calling the API.
//!
//! The demo creates (once per data directory) the campaign of
//! `examples/fundraising.toml` and a `decide` + `ingest` key for its audience, draws a
//! ground truth for the campaign ([`tla_sim::generate::world_for`], seeded by the
//! server seed, so a restart meets the same audience), and runs that audience against
//! the server's own socket over HTTP/1.1: at most `rate` decision requests a second,
//! ten decisions each, one batch of events per request (an impression per decision,
//! and a conversion with its donation when the truth says the reader gives).
//!
//! Every 10 seconds it prints what the audience gave and how much of the oracle's
//! expected value the versions the server chose in the last 10 seconds earn, beside
//! what the even split would earn on the same traffic; every 60 seconds, the version
//! the model now thinks best for the largest segment.

use crate::client::Client;
use anyhow::{Context, bail};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tla_core::spec::CampaignSpec;
use tla_server::AppState;
use tla_server::auth::{Scope, new_key};
use tla_server::campaign::CampaignSlot;
use tla_sim::generate::{
    AudienceTruth, SegmentTruth, ValueTally, draw_outcome, segment_truths, world_for,
};
use tla_sim::world::World;
use tla_store::KeyRow;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

/// The demo campaign's spec.
const SPEC: &str = include_str!("../../../examples/fundraising.toml");
/// Decisions asked for per request.
const DECISIONS_PER_REQUEST: usize = 10;
/// Seconds between two progress lines.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Progress lines between two "best version" lines.
const BEST_EVERY_REPORTS: u64 = 6;
/// Tries of an event batch before it is given up.
const EVENT_TRIES: u32 = 3;
/// Label of the audience's key.
const KEY_LABEL: &str = "demo audience";
/// Label of the key the demo prints to sign in to the dashboard.
const DASHBOARD_KEY_LABEL: &str = "demo dashboard";

/// Creates (once) the demo campaign and starts the simulated audience; the returned
/// task ends when `stop` turns true.
pub async fn start(
    state: AppState,
    address: SocketAddr,
    rate: u32,
    seed: u64,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if rate == 0 {
        bail!("--demo-rate is 0; accepted: at least 1 decision request per second");
    }
    let setup_state = state.clone();
    let (slot, token, key_id, created, dashboard_token) =
        tokio::task::spawn_blocking(move || setup(&setup_state))
            .await
            .context("the demo setup task failed")??;
    println!(
        "demo: {} campaign {} ({:?}: {} versions, {} segments); audience key {key_id} ({KEY_LABEL})",
        if created { "created" } else { "reusing" },
        slot.id,
        slot.name,
        thousands(slot.current().campaign.allowed_versions()),
        slot.current().campaign.design().segments(),
    );
    println!(
        "demo: dashboard http://{}/campaigns/{} ; sign in with the key {dashboard_token} ({DASHBOARD_KEY_LABEL}, scope admin, shown once)",
        loopback(address),
        slot.id,
    );
    let audience = Audience {
        state,
        slot,
        token,
        key_id,
        target: loopback(address),
        rate,
        seed,
    };
    Ok(tokio::spawn(audience.run(stop)))
}

/// What [`setup`] answers: the campaign, the audience's token and key id, whether the
/// campaign was created now, and the dashboard's sign-in token.
type Setup = (Arc<CampaignSlot>, String, String, bool, String);

/// Finds or creates the campaign, creates the audience key and a key to sign in to the
/// dashboard. Blocking.
fn setup(state: &AppState) -> anyhow::Result<Setup> {
    let mut spec = CampaignSpec::from_toml_str(SPEC).context("the demo spec does not parse")?;
    // The demo's audience sends no costs and runs on any date: it leaves the example's
    // December flight out, so it is not paced (docs/pacing.md).
    spec.flight = None;
    let existing = state.campaigns().into_iter().find(|s| s.name == spec.name);
    let (slot, created) = match existing {
        Some(slot) => (slot, false),
        None => {
            let campaign = spec.validate().context("the demo spec does not validate")?;
            let id = format!("c_demo{:06x}", rand::rng().random::<u32>() & 0xFF_FFFF);
            let slot = state
                .create_campaign(campaign, id)
                .context("cannot create the demo campaign")?;
            (slot, true)
        }
    };
    let key = new_key(rand::rng().random());
    state.store().insert_key(&KeyRow {
        id: key.id.clone(),
        hash: key.hash,
        scopes: vec![Scope::Decide.as_str().into(), Scope::Ingest.as_str().into()],
        created_at_ms: state.clock().now_ms(),
        revoked: false,
        label: KEY_LABEL.into(),
    })?;
    let dashboard = new_key(rand::rng().random());
    state.store().insert_key(&KeyRow {
        id: dashboard.id.clone(),
        hash: dashboard.hash,
        scopes: vec![Scope::Admin.as_str().into()],
        created_at_ms: state.clock().now_ms(),
        revoked: false,
        label: DASHBOARD_KEY_LABEL.into(),
    })?;
    state.reload_keys()?;
    Ok((slot, key.token, key.id, created, dashboard.token))
}

/// The server's own socket as a client reaches it: an unspecified listen address
/// (`0.0.0.0`, `::`) is reached on loopback.
fn loopback(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, address.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, address.port()).into(),
        _ => address,
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Everything the audience needs.
struct Audience {
    state: AppState,
    slot: Arc<CampaignSlot>,
    token: String,
    key_id: String,
    target: SocketAddr,
    rate: u32,
    seed: u64,
}

/// The truth, shared by the audience's parts.
struct Truth {
    world: World,
    segments: Vec<SegmentTruth>,
    /// Expected value per impression of the oracle and of the even split, averaged over
    /// segments by traffic share.
    audience: AudienceTruth,
}

/// Counters shared by the audience's parts.
#[derive(Debug, Default)]
struct Stats {
    /// Acknowledged by the server.
    impressions: u64,
    donors: u64,
    raised: f64,
    /// Of the decisions made since the last progress line.
    window: ValueTally,
    /// Problems since the last progress line.
    failed_requests: u64,
    events_lost: u64,
    events_rejected: u64,
    last_error: Option<String>,
}

impl Stats {
    fn error(&mut self, message: String) {
        self.failed_requests += 1;
        self.last_error = Some(message);
    }
}

type Shared = Arc<Mutex<Stats>>;

fn lock(stats: &Shared) -> std::sync::MutexGuard<'_, Stats> {
    stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Unique event ids: a random prefix per run (so a restart never repeats one) and a
/// counter.
struct EventIds {
    run: String,
    next: u64,
}

impl EventIds {
    fn new() -> Self {
        Self {
            run: format!("{:016x}", rand::rng().random::<u64>()),
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        self.next += 1;
        format!("demo-{}-{}", self.run, self.next)
    }
}

/// One batch of events and what it holds.
struct Batch {
    body: Vec<u8>,
    impressions: u64,
    donors: u64,
    raised: f64,
}

impl Audience {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let clock = Instant::now();
        let design = self.slot.current().campaign.design().clone();
        let shares = self.slot.current().campaign.segment_shares().to_vec();
        let seed = self.seed;
        let job = tokio::task::spawn_blocking(move || {
            let world = world_for(&design, &shares, seed);
            let segments = segment_truths(&world);
            let audience = AudienceTruth::weigh(&segments, &shares);
            Truth {
                world,
                segments,
                audience,
            }
        });
        let truth = tokio::select! {
            () = stopped(&mut stop) => None,
            truth = job => match truth {
                Ok(truth) => Some(Arc::new(truth)),
                Err(error) => {
                    eprintln!("demo: drawing the ground truth failed: {error}");
                    None
                }
            },
        };
        if let Some(truth) = truth {
            println!(
                "demo: ground truth drawn in {:.1}s (seed {}): the oracle earns ${:.4} per impression, the even split ${:.4} ({:.1}%); {} requests/s of {DECISIONS_PER_REQUEST} decisions to http://{}",
                clock.elapsed().as_secs_f64(),
                self.seed,
                truth.audience.oracle_value,
                truth.audience.even_value,
                100.0 * truth.audience.even_value / truth.audience.oracle_value,
                self.rate,
                self.target,
            );
            let stats = Shared::default();
            let (batches_tx, batches_rx) = mpsc::channel(32);
            tokio::join!(
                self.decide(&truth, &stats, batches_tx, stop.clone()),
                self.send_events(batches_rx, &stats, stop.clone()),
                self.report(&truth, &stats, stop.clone()),
            );
        }
        // The audience is gone: its key authenticates nothing any more.
        let state = self.state.clone();
        let key_id = self.key_id.clone();
        let revoked = tokio::task::spawn_blocking(move || {
            state.store().revoke_key(&key_id)?;
            state.reload_keys()
        })
        .await;
        if !matches!(revoked, Ok(Ok(()))) {
            eprintln!("demo: could not revoke the audience key {}", self.key_id);
        }
    }

    /// Asks for decisions at most `rate` times a second and queues their events.
    async fn decide(
        &self,
        truth: &Truth,
        stats: &Shared,
        batches: mpsc::Sender<Batch>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut client = Client::new(self.target, &self.token);
        let mut interval = tokio::time::interval(Duration::from_secs(1) / self.rate);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut rng = Pcg64Mcg::seed_from_u64(self.seed ^ 0xA0D1_E4CE_5EED_0001);
        let segment_of = WeightedIndex::new(self.slot.current().campaign.segment_shares())
            .expect("validated shares are positive");
        let path = format!("/v1/campaigns/{}/decisions", self.slot.id);
        let mut ids = EventIds::new();
        loop {
            let round = async {
                interval.tick().await;
                let segment = segment_of.sample(&mut rng);
                let name = self.slot.current().campaign.design().segment_names[segment].clone();
                let request = json!({"segment": name, "count": DECISIONS_PER_REQUEST});
                let decisions = match client.post_json::<Decisions>(&path, &request).await {
                    Ok(answer) => answer.decisions,
                    Err(error) => {
                        lock(stats).error(format!("decisions: {error:#}"));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        return;
                    }
                };
                let batch = self.outcomes(truth, stats, segment, &decisions, &mut ids, &mut rng);
                // Waits when the event sender is behind: the audience slows down.
                let _ = batches.send(batch).await;
            };
            tokio::select! {
                () = stopped(&mut stop) => break,
                () = round => {}
            }
        }
    }

    /// What the audience does with the versions it was shown: one impression each, and
    /// a conversion with its donation when the truth says so.
    fn outcomes(
        &self,
        truth: &Truth,
        stats: &Shared,
        segment: usize,
        decisions: &[DecisionOut],
        ids: &mut EventIds,
        rng: &mut Pcg64Mcg,
    ) -> Batch {
        let world = &truth.world;
        let mut options = vec![0u32; world.space.components()];
        let mut events = Vec::with_capacity(decisions.len() + 1);
        let mut batch_value = 0.0;
        let (mut donors, mut raised) = (0u64, 0.0);
        for decision in decisions {
            let Some(version) = decision.version.filter(|&v| v < world.space.total()) else {
                continue;
            };
            world.space.decode_into(version, &mut options);
            batch_value += world.expected_value(segment, &options);
            events.push(json!({
                "event_id": ids.next(),
                "decision_id": decision.decision_id,
                "type": "impression",
            }));
            if let Some(amount) = draw_outcome(world, segment, &options, rng) {
                let amount = (amount * 100.0).round().max(1.0) / 100.0;
                donors += 1;
                raised += amount;
                events.push(json!({
                    "event_id": ids.next(),
                    "decision_id": decision.decision_id,
                    "type": "conversion",
                    "value": amount,
                }));
            }
        }
        let shown = decisions.len() as u64;
        let segment_truth = &truth.segments[segment];
        let mut stats = lock(stats);
        stats.window.add(segment_truth, shown, batch_value);
        drop(stats);
        Batch {
            body: serde_json::to_vec(&json!({ "events": events })).expect("JSON"),
            impressions: shown,
            donors,
            raised,
        }
    }

    /// Sends the queued event batches, each retried a few times (event ids make a
    /// retry harmless: the server answers a repeat as a duplicate).
    async fn send_events(
        &self,
        mut batches: mpsc::Receiver<Batch>,
        stats: &Shared,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut client = Client::new(self.target, &self.token);
        loop {
            let batch = tokio::select! {
                () = stopped(&mut stop) => return,
                batch = batches.recv() => match batch {
                    Some(batch) => batch,
                    None => return,
                },
            };
            let send = async {
                for attempt in 1..=EVENT_TRIES {
                    match client
                        .post::<Ingested>("/v1/events", batch.body.clone())
                        .await
                    {
                        Ok(answer) => {
                            let mut stats = lock(stats);
                            stats.impressions += batch.impressions;
                            stats.donors += batch.donors;
                            stats.raised += batch.raised;
                            stats.events_rejected += answer.rejected.len() as u64;
                            if let Some(first) = answer.rejected.first() {
                                stats.last_error = Some(format!("events rejected: {first}"));
                            }
                            return;
                        }
                        Err(error) => {
                            lock(stats).error(format!("events: {error:#}"));
                            if attempt < EVENT_TRIES {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                }
                lock(stats).events_lost += batch.impressions + batch.donors;
            };
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = send => {}
            }
        }
    }

    /// Prints the progress line every 10 seconds and the best version every minute.
    async fn report(&self, truth: &Truth, stats: &Shared, mut stop: watch::Receiver<bool>) {
        let largest = self
            .slot
            .current()
            .campaign
            .segment_shares()
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (s, &share)| {
                if share > best.1 { (s, share) } else { best }
            })
            .0;
        let mut interval =
            tokio::time::interval_at(tokio::time::Instant::now() + REPORT_EVERY, REPORT_EVERY);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reports = 0u64;
        loop {
            tokio::select! {
                () = stopped(&mut stop) => return,
                _ = interval.tick() => {}
            }
            reports += 1;
            println!("{}", progress_line(&mut lock(stats)));
            if reports % BEST_EVERY_REPORTS == 0 {
                let line = tokio::select! {
                    () = stopped(&mut stop) => return,
                    line = self.best_line(truth, largest) => line,
                };
                println!("{line}");
            }
        }
    }

    /// The version the model now thinks best for a segment, and what the truth says of it.
    async fn best_line(&self, truth: &Truth, segment: usize) -> String {
        let slot = self.slot.clone();
        let version = tokio::task::spawn_blocking(move || {
            let mut sampler = slot.engine().sampler().clone();
            let mut rng = Pcg64Mcg::seed_from_u64(0xBE57);
            sampler.posterior_mean_best(segment, &mut rng)
        })
        .await;
        let name = self.slot.current().campaign.design().segment_names[segment].clone();
        match version {
            Ok(version) => {
                let options = truth.world.space.decode(version);
                let value = truth.world.expected_value(segment, &options);
                let best = &truth.segments[segment];
                format!(
                    "demo: best version so far for {name} (largest segment): #{version} {:?}; it earns {:.1}% of the oracle's expected value there{}",
                    self.slot.current().campaign.render(version),
                    100.0 * value / best.best_value,
                    if version == best.best_version {
                        " (it is the oracle's choice)"
                    } else {
                        ""
                    },
                )
            }
            Err(error) => format!("demo: cannot read the model of {name}: {error}"),
        }
    }
}

/// The progress line; resets the window and the problem counters.
fn progress_line(stats: &mut Stats) -> String {
    let mut line = format!(
        "demo: {} impressions, {} donors, ${} raised; last 10s: ",
        thousands(stats.impressions),
        thousands(stats.donors),
        thousands(stats.raised.round() as u64),
    );
    match (stats.window.oracle_share(), stats.window.even_share()) {
        (Some(served), Some(even)) => line.push_str(&format!(
            "{:.1}% of the oracle's expected value (even split: {:.1}%)",
            100.0 * served,
            100.0 * even,
        )),
        _ => line.push_str("no decisions"),
    }
    if stats.failed_requests > 0 || stats.events_lost > 0 || stats.events_rejected > 0 {
        line.push_str(&format!(
            "; {} failed requests, {} events lost, {} rejected",
            stats.failed_requests, stats.events_lost, stats.events_rejected
        ));
        if let Some(error) = &stats.last_error {
            line.push_str(&format!(" (last: {error})"));
        }
    }
    stats.window = ValueTally::default();
    stats.failed_requests = 0;
    stats.events_lost = 0;
    stats.events_rejected = 0;
    stats.last_error = None;
    line
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, Deserialize)]
struct Decisions {
    decisions: Vec<DecisionOut>,
}

#[derive(Debug, Deserialize)]
struct DecisionOut {
    decision_id: String,
    /// `None` for a skip (a paced campaign declined the opportunity): nothing shown.
    version: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Ingested {
    #[serde(default)]
    rejected: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separates_groups_of_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_340), "12,340");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(loopback(at("0.0.0.0:8080")), at("127.0.0.1:8080"));
        assert_eq!(loopback(at("[::]:9")), at("[::1]:9"));
        assert_eq!(loopback(at("127.0.0.1:18181")), at("127.0.0.1:18181"));
    }

    #[test]
    fn the_progress_line_reads_like_the_docs_and_resets_the_window() {
        let mut stats = Stats {
            impressions: 12_340,
            donors: 231,
            raised: 6_120.4,
            window: ValueTally {
                impressions: 100,
                served_value: 0.412,
                oracle_value: 1.0,
                even_value: 0.169,
            },
            ..Stats::default()
        };
        assert_eq!(
            progress_line(&mut stats),
            "demo: 12,340 impressions, 231 donors, $6,120 raised; last 10s: 41.2% of the oracle's expected value (even split: 16.9%)"
        );
        assert!(progress_line(&mut stats).ends_with("last 10s: no decisions"));
    }
}
