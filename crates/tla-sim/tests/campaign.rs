//! A campaign spec served through the engine against ground truths drawn for it: the
//! report's option leaders are checked against the truth's best versions, and the
//! lift's estimate of the even split against the even split's true value.

use rand::SeedableRng;
use tla_core::report::{self, ReportSettings};
use tla_core::spec::CampaignSpec;
use tla_sim::campaign::{CampaignRunConfig, leader_check, lift_truth, run_campaign};
use tla_sim::generate::{option_truths, segment_truths, world_for};

/// Six ground truths for examples/small.toml (3 headlines, 2 images, 3 calls to
/// action), 40,000 impressions each at seed 7. The test fails if a change to the engine
/// or the report starts crowning wrong options; its claims are what was measured on two
/// independent draws of the runs (these seeds, and a second assignment of the audience
/// and outcome streams), so that they do not rest on one draw's luck:
///
/// - A leader the report calls decisive (P(best) >= 0.9, so a reader would act on it)
///   is the oracle's option. Below that the report itself says the race is open, and
///   the leader is often not the oracle's: in world seed 4 the call-to-action leader is
///   `learn_more` at P(best) 0.41, the oracle's `give_25` close behind, and headline
///   leaders mostly stand at 0.4–0.9 (the runner-up headline's true even-split value
///   lies 3–22% below the best in these worlds). Measured, every decisive leader was
///   the oracle's: 8 of 8 in each draw in these six worlds and settings; 43 of 43 in
///   `tla simulate --campaign examples/small.toml --seed 7 --world-seed 1..8` over both
///   draws at 40,000 and 200,000 impressions. At least
///   5 leaders must be decisive, so that this check cannot pass by the report never
///   deciding. The claim rests on this campaign modelling every pair of components:
///   examples/fundraising.toml models only headline × image, and there two leaders at
///   P(best) 0.97 and 0.94 crown the option best averaged over every version where an
///   unmodelled interaction makes the oracle prefer another (docs/reports.md).
/// - At least 15 of the 18 leaders are the oracle's options: 16 here (15 in the other
///   draw), 20 and 22 of 24 over world seeds 1..8; a report picking options at random
///   would match about 7 of 18.
/// - The even split's 95% interval covers its true value in at least 4 of the 6 worlds
///   (5 of 6 in both draws, 7 of 8 over world seeds 1..8); at a true 95% coverage, 3
///   or fewer happens with probability 0.002.
#[test]
fn report_leaders_are_the_oracles_options_on_seeded_runs() {
    let campaign = CampaignSpec::from_toml_str(include_str!("../../../examples/small.toml"))
        .unwrap()
        .validate()
        .unwrap();
    let design = campaign.design();
    let (mut matched, mut components, mut decisive, mut covered) = (0, 0, 0, 0);
    for world_seed in 1..=6 {
        let world = world_for(design, campaign.segment_shares(), world_seed);
        let truths = segment_truths(&world);
        let options = option_truths(&world);
        let run = run_campaign(
            &campaign,
            &world,
            &truths,
            &CampaignRunConfig::new(40_000, 7),
            |_| {},
        );
        // The policy beat the even split by a wide margin.
        assert!(
            run.oracle_share() > run.even_share() + 0.1,
            "world {world_seed}: {:.3} vs even {:.3}",
            run.oracle_share(),
            run.even_share()
        );
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0x5EED);
        let settings = ReportSettings {
            draws: 300,
            ..ReportSettings::default()
        };
        let mut report = report::build(&campaign, &run.engine, &settings, &mut rng);
        let best = report::best_versions(&run.engine, &mut rng);
        let first_half_best = report::best_versions_on_first_half(&campaign, &run.rows, &mut rng);
        let lift = report::lift(
            &run.rows,
            campaign.allowed_versions(),
            &best,
            &first_half_best,
        )
        .unwrap();
        let check = leader_check(&report, &options, design.objective);
        for c in check.components.iter().filter(|c| c.leader_p_best >= 0.9) {
            assert!(
                c.matched,
                "world {world_seed}: a decisive leader that is not the oracle's option: {c:?}"
            );
            decisive += 1;
        }
        matched += check.matched;
        components += check.components.len();
        let truth = lift_truth(&world, &truths, &run.rows, &best, &first_half_best);
        let even = lift
            .even_split
            .estimate
            .expect("the even split is estimable");
        covered += usize::from(even.covers(truth.even_split));
        report.lift = Some(lift);
    }
    assert!(matched >= 15, "{matched} of {components} leaders match");
    assert!(
        decisive >= 5,
        "only {decisive} of {components} leaders have a P(best) of at least 0.9"
    );
    assert!(
        covered >= 4,
        "the even split's interval covered its truth {covered} of 6 times"
    );
}
