//! The holdout: a sticky share of units served the even split, and the lift of the
//! policy against it, valid at every look.
//!
//! A campaign's `holdout` (a share in `[0, 0.5]`, `docs/spec.md`) sets aside that share
//! of its units (a person or a device, named by the caller) and serves them the even
//! split over the versions available to their segment. The lift of the policy is then
//! measured directly, policy arm against holdout arm, with no reweighting of the
//! policy's own log (whose weights explode for versions the policy rarely serves).
//!
//! - **Assignment** ([`held_out`]): a unit is held out when the salted hash of its id,
//!   read as a fraction in `[0, 1)`, is below the share. The hash is written out here
//!   (FNV-1a 64 over a length-prefixed salt, a domain byte and the unit, then the
//!   SplitMix64 finalizer), so the assignment is the same in every release and on
//!   every machine; the salt is the campaign's id, so a unit's arm is sticky for the
//!   campaign and unrelated between campaigns. Raising the share would only add units
//!   to the holdout, but the share is fixed for the campaign's life (a revision keeps
//!   it, [`crate::revision`]) so that every look compares the same two arms.
//! - **Draws per unit** ([`UnitRng::for_draw`]): with a unit, the random numbers of a
//!   decision come from a generator seeded by the hash of (salt, unit, segment, the
//!   table in force, position in the request), so a returning unit sees the same
//!   version while the table stands. The propensity logged stays the table's
//!   exact probability: the seed is a function of the unit's id only (and of the table's
//!   identity, not its contents), so over the units it behaves as a uniform draw
//!   independent of the table, which is all the alias-table sampler asks of its random
//!   numbers.
//! - **The holdout's decisions** ([`EvenSplit`]): the even split over the versions
//!   available to the segment (retired options and pins respected), propensity
//!   `1 / |available|` times what the pacing gate buys. The propensity logged is the
//!   probability of the version *given the arm*; the decision log records the arm
//!   (`held_out`) and the spec the share, so the probability under the mixed policy,
//!   `share / |available| + (1 - share) p_policy(v)`, is recoverable.
//! - **The lift** ([`HoldoutTracker`], [`HoldoutLift`]): value per impression and per
//!   dollar in each arm, their difference with its fixed-horizon `1 - α` normal interval
//!   and the asymptotic confidence sequence of [`crate::ope::sequence`], valid at every
//!   look (`docs/reports.md` has the formulas).

use crate::availability::Availability;
use crate::ope::sequence::{DEFAULT_ALPHA, DEFAULT_PLANNED_TERMS, RunningMean, Sequence};
use crate::policy::{Choice, Decision, Gate, Outcome, Policy, PricedPolicy, decide_gated};
use crate::space::VersionSpace;
use rand::{Rng, RngCore};

/// The largest holdout share a spec accepts: the holdout is the comparison, not the
/// campaign.
pub const MAX_HOLDOUT: f64 = 0.5;

/// How the report states the sequence's guarantee.
pub const SEQUENCE_VALIDITY: &str = "anytime-valid confidence sequence: it covers the true lift at every look at once with probability at least 1 - alpha, so it may be read as often as wanted and the campaign stopped as soon as it excludes zero";

/// How the report states the fixed-horizon interval's guarantee.
pub const FIXED_VALIDITY: &str = "fixed-horizon normal interval: valid at one planned look only; read at many looks it excludes a true zero far more often than alpha";

/// The longest unit id accepted, in bytes.
pub const MAX_UNIT_LEN: usize = 128;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Domain bytes: the assignment and the draws hash the same unit independently.
const ASSIGN_DOMAIN: u8 = 1;
const DRAW_DOMAIN: u8 = 2;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The SplitMix64 finalizer: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The salted hash of a unit in `domain`: FNV-1a 64 over the salt's length (8 bytes,
/// little-endian), the salt, the domain byte and the unit, then the SplitMix64
/// finalizer. Stable across releases (a test pins values).
pub fn unit_hash(salt: &[u8], domain: u8, unit: &[u8]) -> u64 {
    let mut h = fnv1a(FNV_OFFSET, &(salt.len() as u64).to_le_bytes());
    h = fnv1a(h, salt);
    h = fnv1a(h, &[domain]);
    mix(fnv1a(h, unit))
}

/// The unit's place in `[0, 1)` for the assignment: the top 53 bits of its hash.
pub fn unit_fraction(salt: &[u8], unit: &[u8]) -> f64 {
    (unit_hash(salt, ASSIGN_DOMAIN, unit) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Whether `unit` is held out of a campaign salted `salt` whose holdout is `share`:
/// its fraction ([`unit_fraction`]) is below the share. Sticky (a function of the
/// three), and about `share` of all units.
pub fn held_out(salt: &[u8], unit: &[u8], share: f64) -> bool {
    share > 0.0 && unit_fraction(salt, unit) < share
}

/// Whether a unit id is one the service accepts: 1 to [`MAX_UNIT_LEN`] bytes of ASCII
/// letters, digits and `-`, `_`, `.`, `:`, `@`. `Err` says what is accepted.
pub fn check_unit(unit: &str) -> Result<(), String> {
    let accepted = format!(
        "1 to {MAX_UNIT_LEN} characters, each an ASCII letter, digit, '-', '_', '.', ':' or '@' (an opaque id of a person or device, such as a hashed cookie)"
    );
    if unit.is_empty() || unit.len() > MAX_UNIT_LEN {
        return Err(format!(
            "unit has {} bytes; accepted: {accepted}",
            unit.len()
        ));
    }
    if let Some(c) = unit
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')))
    {
        return Err(format!(
            "unit holds the character {c:?}; accepted: {accepted}"
        ));
    }
    Ok(())
}

/// SplitMix64 as a random number generator: what a unit's decision draws from
/// ([`UnitRng::for_draw`]). Written out, so a seed gives the same numbers in every
/// release.
#[derive(Debug, Clone)]
pub struct UnitRng {
    state: u64,
}

impl UnitRng {
    /// The generator of a plain seed.
    pub fn from_seed(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The generator of the `index`-th decision (from 0) of one request for `unit` of a
    /// campaign salted `salt`, in `segment`, drawn from the table named `table` (the
    /// model version of the segment's decision table; the service names the holdout's
    /// even split by the revision number): the same five give the same numbers, so the
    /// same version while the table stands.
    pub fn for_draw(salt: &[u8], unit: &[u8], segment: usize, table: u64, index: u32) -> Self {
        let unit = unit_hash(salt, DRAW_DOMAIN, unit);
        let place = mix(mix(table ^ GOLDEN).wrapping_add(u64::from(index)));
        let seed = mix(unit ^ mix((segment as u64).wrapping_add(GOLDEN))) ^ place;
        Self::from_seed(mix(seed))
    }
}

impl RngCore for UnitRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The holdout's policy: the even split over the versions `availability` leaves each
/// segment. Under a pacing gate it knows no value, so a price never makes it skip (as
/// [`crate::policy::uniform::Uniform`]); a throttle buys at its rate.
#[derive(Debug, Clone, Copy)]
pub struct EvenSplit<'a> {
    space: &'a VersionSpace,
    availability: &'a Availability,
}

impl<'a> EvenSplit<'a> {
    /// The even split over `availability` in `space`.
    pub fn new(space: &'a VersionSpace, availability: &'a Availability) -> Self {
        Self {
            space,
            availability,
        }
    }

    /// A decision for `segment` under `gate`, with its exact propensity given the arm.
    pub fn decide_gated<R: Rng + ?Sized>(&self, segment: usize, gate: Gate, rng: &mut R) -> Choice {
        decide_gated(self, segment, gate, rng)
    }
}

impl Policy for EvenSplit<'_> {
    fn name(&self) -> &'static str {
        "holdout"
    }

    fn decide<R: Rng + ?Sized>(&self, segment: usize, rng: &mut R) -> Decision {
        let version = self.availability.sample_uniform(self.space, segment, rng);
        Decision {
            version,
            propensity: self.propensity(segment, version),
            model_version: 0,
        }
    }

    fn propensity(&self, segment: usize, version: u64) -> f64 {
        if self.availability.is_available(self.space, segment, version) {
            1.0 / self.availability.count(segment) as f64
        } else {
            0.0
        }
    }

    fn observe(&mut self, _outcome: &Outcome) {}

    fn refresh_due<R: Rng + ?Sized>(&mut self, _rng: &mut R, _now_millis: Option<u64>) -> usize {
        0
    }

    fn model_bytes(&self) -> usize {
        0
    }
}

impl PricedPolicy for EvenSplit<'_> {
    fn skip_probability(&self, _segment: usize, _price: f64) -> f64 {
        0.0
    }

    fn decide_priced<R: Rng + ?Sized>(&self, segment: usize, _price: f64, rng: &mut R) -> Choice {
        let d = self.decide(segment, rng);
        Choice {
            version: Some(d.version),
            propensity: d.propensity,
            model_version: 0,
        }
    }

    fn propensity_priced(&self, segment: usize, version: u64, _price: f64) -> f64 {
        self.propensity(segment, version)
    }

    fn mass_priced(
        &self,
        segment: usize,
        _price: f64,
        _pick: &dyn Fn(u64) -> bool,
        picked_allowed: u64,
    ) -> f64 {
        picked_allowed as f64 / self.availability.count(segment) as f64
    }
}

/// Running sums of one arm: value and spend per decision, and their co-moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArmStats {
    value: RunningMean,
    spend: RunningMean,
    /// `Σ (v - v̄)(s - s̄)` (Welford's co-moment).
    co_moment: f64,
}

impl ArmStats {
    /// Adds one decision's value and spend.
    pub fn push(&mut self, value: f64, spend: f64) {
        let dv = value - self.value.mean();
        self.value.push(value);
        self.spend.push(spend);
        self.co_moment += dv * (spend - self.spend.mean());
    }

    /// Decisions pushed.
    pub fn count(&self) -> u64 {
        self.value.count() as u64
    }

    /// Value per decision and its standard error (infinite below two decisions).
    fn per_impression(&self) -> (f64, f64) {
        (self.value.mean(), self.value.std_error())
    }

    /// Value per dollar `R = v̄ / s̄` and its delta-method standard error
    /// `sqrt(var(v - R s) / n) / s̄`; `None` without spend.
    fn per_dollar(&self) -> Option<(f64, f64)> {
        let n = self.value.count();
        let s = self.spend.mean();
        if n < 1.0 || s <= 0.0 {
            return None;
        }
        let r = self.value.mean() / s;
        let se = if n < 2.0 {
            f64::INFINITY
        } else {
            let cov = self.co_moment / (n - 1.0);
            let var =
                (self.value.variance() - 2.0 * r * cov + r * r * self.spend.variance()).max(0.0);
            (var / n).sqrt() / s
        };
        Some((r, se))
    }

    fn summary(&self) -> HoldoutArm {
        let n = self.value.count();
        HoldoutArm {
            decisions: self.count(),
            value: self.value.mean() * n,
            spend: self.spend.mean() * n,
            value_per_impression: (n > 0.0).then(|| self.value.mean()),
            value_per_dollar: self.per_dollar().map(|(r, _)| r),
        }
    }
}

/// Both arms of a holdout, pushed decision by decision in log order: what the lift is
/// computed from at any look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldoutTracker {
    share: f64,
    sequence: Sequence,
    planned: f64,
    policy: ArmStats,
    holdout: ArmStats,
}

impl HoldoutTracker {
    /// A tracker of a holdout of `share`, whose sequence is tightest at `planned`
    /// decisions (both arms; [`DEFAULT_PLANNED_TERMS`] when nothing better is known),
    /// at level `1 - alpha`.
    ///
    /// # Panics
    /// If `alpha` is outside (0, 1) or `planned` is not positive ([`Sequence::tuned`]).
    pub fn new(share: f64, alpha: f64, planned: f64) -> Self {
        Self {
            share,
            sequence: Sequence::tuned(alpha, planned),
            planned,
            policy: ArmStats::default(),
            holdout: ArmStats::default(),
        }
    }

    /// [`HoldoutTracker::new`] at [`DEFAULT_ALPHA`] and [`DEFAULT_PLANNED_TERMS`].
    pub fn with_defaults(share: f64) -> Self {
        Self::new(share, DEFAULT_ALPHA, DEFAULT_PLANNED_TERMS)
    }

    /// Adds one served decision: its arm, its value (the conversion values it raised)
    /// and its spend.
    pub fn push(&mut self, held_out: bool, value: f64, spend: f64) {
        if held_out {
            self.holdout.push(value, spend);
        } else {
            self.policy.push(value, spend);
        }
    }

    /// Decisions pushed, both arms.
    pub fn decisions(&self) -> u64 {
        self.policy.count() + self.holdout.count()
    }

    /// The lift now.
    pub fn lift(&self) -> HoldoutLift {
        let n = self.decisions() as f64;
        let interval = |(a, se_a): (f64, f64), (b, se_b): (f64, f64)| {
            let lift = a - b;
            let std_error = (se_a * se_a + se_b * se_b).sqrt();
            if !(lift.is_finite() && std_error.is_finite()) {
                return None;
            }
            let z = crate::stats::normal_quantile(1.0 - self.sequence.alpha / 2.0);
            let fixed = Bounds::around(lift, z * std_error);
            let sequence = Bounds::around(lift, self.sequence.radius(n, std_error));
            Some(LiftInterval {
                lift,
                relative: (b > 0.0).then(|| lift / b),
                std_error,
                fixed_excludes_zero: fixed.excludes_zero(),
                sequence_excludes_zero: sequence.excludes_zero(),
                fixed,
                sequence,
            })
        };
        let both = self.policy.count() >= 2 && self.holdout.count() >= 2;
        HoldoutLift {
            share: self.share,
            alpha: self.sequence.alpha,
            planned_decisions: self.planned,
            sequence_validity: SEQUENCE_VALIDITY.to_owned(),
            fixed_validity: FIXED_VALIDITY.to_owned(),
            policy: self.policy.summary(),
            holdout: self.holdout.summary(),
            per_impression: if both {
                interval(self.policy.per_impression(), self.holdout.per_impression())
            } else {
                None
            },
            per_dollar: match (both, self.policy.per_dollar(), self.holdout.per_dollar()) {
                (true, Some(a), Some(b)) => interval(a, b),
                _ => None,
            },
        }
    }
}

/// An interval's two ends.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bounds {
    /// Lower end.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
}

impl Bounds {
    fn around(centre: f64, radius: f64) -> Self {
        Self {
            lower: centre - radius,
            upper: centre + radius,
        }
    }

    /// Whether 0 lies outside the interval.
    pub fn excludes_zero(&self) -> bool {
        self.lower > 0.0 || self.upper < 0.0
    }
}

/// One arm of the holdout.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldoutArm {
    /// Decisions served (skips left out).
    pub decisions: u64,
    /// Value raised: the conversion values of its decisions, summed.
    pub value: f64,
    /// Spend: the costs of its decisions, summed.
    pub spend: f64,
    /// Value per decision served (null before the first).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub value_per_impression: Option<f64>,
    /// Value per dollar spent (null without spend).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub value_per_dollar: Option<f64>,
}

/// The policy minus the holdout in one measure, with both intervals.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiftInterval {
    /// Policy minus holdout.
    pub lift: f64,
    /// The lift as a share of the holdout's measure (null when that is not positive).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub relative: Option<f64>,
    /// Standard error of the lift (the two arms' added in quadrature).
    pub std_error: f64,
    /// The fixed-horizon `1 - alpha` normal interval: valid at one look only.
    pub fixed: Bounds,
    /// The anytime-valid `1 - alpha` confidence sequence: valid at every look.
    pub sequence: Bounds,
    /// Whether the fixed interval excludes 0.
    pub fixed_excludes_zero: bool,
    /// Whether the sequence excludes 0.
    pub sequence_excludes_zero: bool,
}

/// The report's holdout section: the policy against its holdout, per impression and
/// per dollar, with the fixed-horizon interval and the confidence sequence valid at
/// every look (`docs/reports.md`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldoutLift {
    /// The campaign's holdout share.
    pub share: f64,
    /// Miss probability of both intervals (0.05: 95%).
    pub alpha: f64,
    /// Decisions (both arms) at which the sequence is tightest.
    pub planned_decisions: f64,
    /// What the sequence guarantees.
    pub sequence_validity: String,
    /// What the fixed interval guarantees.
    pub fixed_validity: String,
    /// The policy's arm.
    pub policy: HoldoutArm,
    /// The holdout's arm.
    pub holdout: HoldoutArm,
    /// Value per decision served, policy minus holdout (null below two decisions in an
    /// arm).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub per_impression: Option<LiftInterval>,
    /// Value per dollar, policy minus holdout, by the delta method (null without spend
    /// in both arms).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub per_dollar: Option<LiftInterval>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_hash_is_pinned_and_the_assignment_sticky_and_about_the_share() {
        // Pinned (checked against an independent FNV-1a + SplitMix64 computation): a
        // change here moves units between arms of running campaigns.
        assert_eq!(
            unit_hash(b"", 1, b""),
            mix(fnv1a(fnv1a(FNV_OFFSET, &[0; 8]), &[1]))
        );
        assert_eq!(unit_hash(b"c1", 1, b"u1"), 0x9450_cc5d_308d_f5d2);
        let share = 0.1;
        let held = (0..100_000)
            .filter(|i| held_out(b"campaign", format!("unit-{i}").as_bytes(), share))
            .count();
        assert!((held as f64 / 1e5 - share).abs() < 0.003, "{held}");
        for i in 0..100 {
            let unit = format!("u{i}");
            let a = held_out(b"c", unit.as_bytes(), 0.3);
            assert_eq!(a, held_out(b"c", unit.as_bytes(), 0.3));
            // Monotone in the share: a larger share keeps every unit held out.
            if a {
                assert!(held_out(b"c", unit.as_bytes(), 0.4));
            }
        }
        assert!(!held_out(b"c", b"u", 0.0));
        // The salt's length is hashed: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(unit_hash(b"ab", 1, b"c"), unit_hash(b"a", 1, b"bc"));
    }

    #[test]
    fn units_are_checked() {
        assert!(check_unit("device-12_ab.c:d@e").is_ok());
        assert!(check_unit("").unwrap_err().contains("0 bytes"));
        assert!(
            check_unit(&"a".repeat(129))
                .unwrap_err()
                .contains("129 bytes")
        );
        assert!(check_unit("a b").unwrap_err().contains("' '"));
        assert!(check_unit("é").is_err());
    }

    #[test]
    fn a_unit_draws_the_same_numbers_for_the_same_table_and_others_for_another() {
        let a: Vec<u64> = {
            let mut r = UnitRng::for_draw(b"c", b"u", 0, 5, 0);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = UnitRng::for_draw(b"c", b"u", 0, 5, 0);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        for other in [
            UnitRng::for_draw(b"c", b"u", 0, 6, 0),
            UnitRng::for_draw(b"c", b"u", 1, 5, 0),
            UnitRng::for_draw(b"c", b"u", 0, 5, 1),
            UnitRng::for_draw(b"c", b"v", 0, 5, 0),
        ] {
            assert_ne!(other.clone().next_u64(), a[0]);
        }
        let mut bytes = [0u8; 11];
        UnitRng::from_seed(3).fill_bytes(&mut bytes);
        assert_eq!(&bytes[..8], &UnitRng::from_seed(3).next_u64().to_le_bytes());
    }

    #[test]
    fn units_sample_a_table_at_its_propensities() {
        // Over many units, one draw each from a fixed table, the versions come out at
        // the table's probabilities: the unit's seed is independent of the table.
        use crate::decision::DecisionTable;
        let table = DecisionTable::from_draws(vec![0, 0, 0, 0, 0, 1, 1, 1, 2, 2], 7);
        let mut counts = [0u32; 3];
        for i in 0..60_000 {
            let mut rng = UnitRng::for_draw(b"c", format!("{i}").as_bytes(), 0, 7, 0);
            counts[table.sample(&mut rng) as usize] += 1;
        }
        assert_eq!(table.probability(1), 0.3);
        for (c, p) in counts.iter().zip([0.5, 0.3, 0.2]) {
            assert!((f64::from(*c) / 60_000.0 - p).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn the_even_split_respects_availability_and_its_propensities_are_exact() {
        let space = VersionSpace::product(vec![3, 2]).unwrap();
        // Segment 1 may not see option 0 of component 0.
        let keep = vec![
            vec![vec![true; 3], vec![true; 2]],
            vec![vec![false, true, true], vec![true; 2]],
        ];
        let availability = Availability::new(&space, keep).unwrap();
        let even = EvenSplit::new(&space, &availability);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let c = even.decide_gated(1, Gate::Open, &mut rng);
            let v = c.version.unwrap();
            assert_ne!(space.option_of(v, 0), 0);
            assert_eq!(c.propensity, 0.25);
        }
        let c = even.decide_gated(0, Gate::Throttle(0.0), &mut rng);
        assert_eq!((c.version, c.propensity), (None, 1.0));
        let c = even.decide_gated(0, Gate::Price(1e9), &mut rng);
        assert!(
            c.version.is_some(),
            "a price never makes the even split skip"
        );
        assert!((c.propensity - 1.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn the_lift_by_hand() {
        let mut t = HoldoutTracker::new(0.5, 0.05, 100.0);
        // Policy: values 2, 4 with spend 1, 1; holdout: 0, 2 with spend 1, 3.
        t.push(false, 2.0, 1.0);
        t.push(false, 4.0, 1.0);
        t.push(true, 0.0, 1.0);
        t.push(true, 2.0, 3.0);
        let l = t.lift();
        assert_eq!(l.policy.decisions, 2);
        assert_eq!(l.holdout.value, 2.0);
        let p = l.per_impression.unwrap();
        assert_eq!(p.lift, 2.0);
        assert_eq!(p.relative, Some(2.0));
        // var 2 and 2, se^2 = 2/2 + 2/2 = 2.
        assert!((p.std_error - 2f64.sqrt()).abs() < 1e-12);
        let z = crate::ope::Z95;
        assert!((p.fixed.lower - (2.0 - z * 2f64.sqrt())).abs() < 1e-6);
        let radius = Sequence::tuned(0.05, 100.0).radius(4.0, 2f64.sqrt());
        assert!((p.sequence.upper - (2.0 + radius)).abs() < 1e-12);
        assert!(p.sequence.upper - p.sequence.lower > p.fixed.upper - p.fixed.lower);
        // Per dollar: policy 6/2 = 3 with var(v - 3 s) = var(-1, 1) = 2, se = sqrt(2/2)/1;
        // holdout 2/4 = 0.5, v - 0.5 s = (-0.5, 0.5): var 0.5, se = sqrt(0.5/2)/2.
        let d = l.per_dollar.unwrap();
        assert!((d.lift - 2.5).abs() < 1e-12);
        let se = (1.0f64 + 0.0625).sqrt();
        assert!((d.std_error - se).abs() < 1e-12, "{}", d.std_error);
        // One arm with fewer than two decisions: no interval.
        let mut one = HoldoutTracker::with_defaults(0.1);
        one.push(false, 1.0, 0.0);
        one.push(false, 1.0, 0.0);
        one.push(true, 1.0, 0.0);
        let l = one.lift();
        assert!(l.per_impression.is_none() && l.per_dollar.is_none());
        assert_eq!(l.holdout.value_per_dollar, None);
    }

    /// A/A: both arms the same distribution, 30 looks per run; the sequence excludes 0
    /// at some look in at most about alpha of the runs, the fixed interval in many more.
    #[test]
    fn the_sequence_holds_at_every_look_under_no_difference() {
        use rand_distr::{Distribution, Exp};
        let (runs, looks, per_look) = (300u64, 30, 200);
        let (mut fixed, mut seq) = (0, 0);
        for run in 0..runs {
            let mut rng = rand::rngs::StdRng::seed_from_u64(run);
            let mut t = HoldoutTracker::new(0.5, 0.05, f64::from(looks * per_look));
            let (mut f, mut s) = (false, false);
            let exp = Exp::new(0.2).unwrap();
            for _ in 0..looks {
                for _ in 0..per_look {
                    let held = rng.random::<f64>() < 0.5;
                    let value = if rng.random::<f64>() < 0.1 {
                        exp.sample(&mut rng)
                    } else {
                        0.0
                    };
                    t.push(held, value, 1.0);
                }
                if let Some(p) = t.lift().per_impression {
                    f |= p.fixed_excludes_zero;
                    s |= p.sequence_excludes_zero;
                }
            }
            fixed += usize::from(f);
            seq += usize::from(s);
        }
        assert!(seq as f64 <= 0.05 * runs as f64 + 6.0, "{seq}");
        assert!(fixed > 3 * seq.max(10), "{fixed} vs {seq}");
    }
}
