//! The version space: every combination of one option per component, minus exclusions.
//!
//! A version is identified by its mixed-radix index over the components in declared
//! order, first component most significant:
//! `index = ((o0 * n1 + o1) * n2 + o2) * n3 + o3`. The space is never materialized; every
//! operation here is O(number of components) or, for counting under exclusions, a search
//! over the components that exclusions touch (see [`VersionSpace::allowed_count`] and
//! `docs/version-space.md`).

use rand::Rng;

/// One option of one component, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OptionRef {
    /// Position of the component in declared order.
    pub component: usize,
    /// Position of the option within its component.
    pub option: u32,
}

/// A pair of options that never appear together in one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Exclusion {
    /// One side of the pair.
    pub first: OptionRef,
    /// The other side; always of a different component than `first`.
    pub second: OptionRef,
}

/// Errors building a version space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceError {
    /// No components at all.
    #[error("a version space needs at least one component; none were given")]
    NoComponents,
    /// A component without options.
    #[error("component {component} has no options; every component needs at least one")]
    EmptyComponent {
        /// Position of the empty component.
        component: usize,
    },
    /// The product of option counts does not fit in a u64 index.
    #[error(
        "the version space is too large to index: the product of option counts exceeds 2^64 - 1 (18,446,744,073,709,551,615); use fewer options or components"
    )]
    TooLarge,
    /// An exclusion names a component or option that does not exist, or one component twice.
    #[error("exclusion {index} is invalid: {reason}")]
    BadExclusion {
        /// Position of the exclusion in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Exclusions remove every version.
    #[error("the exclusions remove every version; at least one version must remain")]
    Empty,
    /// Counting under exclusions would visit too many partial assignments.
    #[error(
        "counting versions under these exclusions would search more than {limit} combinations of the {components} components they touch; exclude fewer options or involve fewer components"
    )]
    CountTooExpensive {
        /// The search budget.
        limit: u64,
        /// How many components the exclusions touch.
        components: usize,
    },
}

/// How many partial assignments the exact count may visit before giving up.
pub const COUNT_SEARCH_LIMIT: u64 = 50_000_000;

/// The set of versions of a campaign: option counts per component plus exclusions.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSpace {
    /// Number of options of each component, in declared order.
    option_counts: Vec<u32>,
    /// `strides[k]` = product of the option counts of the components after `k`.
    strides: Vec<u64>,
    /// Product of all option counts (versions before exclusions).
    total: u64,
    /// Versions that no exclusion removes.
    allowed: u64,
    /// The exclusions, as given.
    exclusions: Vec<Exclusion>,
    /// `excluded_with[k][o]`: the options of other components that option `o` of `k` excludes.
    excluded_with: Vec<Vec<Vec<OptionRef>>>,
}

impl VersionSpace {
    /// Builds a space from option counts (declared order) and exclusions.
    pub fn new(option_counts: Vec<u32>, exclusions: Vec<Exclusion>) -> Result<Self, SpaceError> {
        if option_counts.is_empty() {
            return Err(SpaceError::NoComponents);
        }
        if let Some(component) = option_counts.iter().position(|&n| n == 0) {
            return Err(SpaceError::EmptyComponent { component });
        }
        let mut strides = vec![1u64; option_counts.len()];
        let mut total: u64 = 1;
        for k in (0..option_counts.len()).rev() {
            strides[k] = total;
            total = total
                .checked_mul(u64::from(option_counts[k]))
                .ok_or(SpaceError::TooLarge)?;
        }
        let mut excluded_with: Vec<Vec<Vec<OptionRef>>> = option_counts
            .iter()
            .map(|&n| vec![Vec::new(); n as usize])
            .collect();
        for (index, exclusion) in exclusions.iter().enumerate() {
            for side in [exclusion.first, exclusion.second] {
                let Some(&count) = option_counts.get(side.component) else {
                    return Err(SpaceError::BadExclusion {
                        index,
                        reason: format!(
                            "component {} does not exist (there are {})",
                            side.component,
                            option_counts.len()
                        ),
                    });
                };
                if side.option >= count {
                    return Err(SpaceError::BadExclusion {
                        index,
                        reason: format!(
                            "option {} of component {} does not exist (it has {count})",
                            side.option, side.component
                        ),
                    });
                }
            }
            if exclusion.first.component == exclusion.second.component {
                return Err(SpaceError::BadExclusion {
                    index,
                    reason: "both options belong to the same component; a version holds one option per component already".into(),
                });
            }
            let (a, b) = (exclusion.first, exclusion.second);
            excluded_with[a.component][a.option as usize].push(b);
            excluded_with[b.component][b.option as usize].push(a);
        }
        let mut space = Self {
            option_counts,
            strides,
            total,
            allowed: total,
            exclusions,
            excluded_with,
        };
        space.allowed = space.count_allowed()?;
        if space.allowed == 0 {
            return Err(SpaceError::Empty);
        }
        Ok(space)
    }

    /// A space with no exclusions.
    pub fn product(option_counts: Vec<u32>) -> Result<Self, SpaceError> {
        Self::new(option_counts, Vec::new())
    }

    /// Number of components.
    pub fn components(&self) -> usize {
        self.option_counts.len()
    }

    /// Option counts per component, in declared order.
    pub fn option_counts(&self) -> &[u32] {
        &self.option_counts
    }

    /// Number of options of component `k`.
    pub fn option_count(&self, component: usize) -> u32 {
        self.option_counts[component]
    }

    /// Versions before exclusions: the product of option counts.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Versions that no exclusion removes.
    pub fn allowed_count(&self) -> u64 {
        self.allowed
    }

    /// The exclusions as given.
    pub fn exclusions(&self) -> &[Exclusion] {
        &self.exclusions
    }

    /// Whether any exclusion is declared.
    pub fn has_exclusions(&self) -> bool {
        !self.exclusions.is_empty()
    }

    /// The options of other components that option `option` of `component` excludes.
    pub fn excluded_with(&self, component: usize, option: u32) -> &[OptionRef] {
        &self.excluded_with[component][option as usize]
    }

    /// The index of the version holding `options` (one per component, declared order).
    ///
    /// # Panics
    /// If `options` has the wrong length or an option is out of range (a caller bug:
    /// user input goes through [`VersionSpace::try_encode`]).
    pub fn encode(&self, options: &[u32]) -> u64 {
        assert_eq!(options.len(), self.option_counts.len());
        let mut index = 0u64;
        for (k, &o) in options.iter().enumerate() {
            assert!(o < self.option_counts[k], "option out of range");
            index += u64::from(o) * self.strides[k];
        }
        index
    }

    /// Like [`VersionSpace::encode`], with an error for bad input.
    pub fn try_encode(&self, options: &[u32]) -> Result<u64, String> {
        if options.len() != self.option_counts.len() {
            return Err(format!(
                "expected {} options (one per component), got {}",
                self.option_counts.len(),
                options.len()
            ));
        }
        for (k, &o) in options.iter().enumerate() {
            if o >= self.option_counts[k] {
                return Err(format!(
                    "option {o} of component {k} is out of range (it has {})",
                    self.option_counts[k]
                ));
            }
        }
        Ok(self.encode(options))
    }

    /// Writes the options of version `index` into `out` (one per component).
    ///
    /// # Panics
    /// If `index >= total()` or `out` has the wrong length.
    pub fn decode_into(&self, index: u64, out: &mut [u32]) {
        assert!(index < self.total, "version index out of range");
        assert_eq!(out.len(), self.option_counts.len());
        let mut rest = index;
        for k in 0..self.option_counts.len() {
            let stride = self.strides[k];
            out[k] = (rest / stride) as u32;
            rest %= stride;
        }
    }

    /// The options of version `index`, one per component.
    pub fn decode(&self, index: u64) -> Vec<u32> {
        let mut out = vec![0; self.option_counts.len()];
        self.decode_into(index, &mut out);
        out
    }

    /// The option of one component in version `index`, without decoding the rest.
    pub fn option_of(&self, index: u64, component: usize) -> u32 {
        ((index / self.strides[component]) % u64::from(self.option_counts[component])) as u32
    }

    /// Whether a full assignment of options respects every exclusion.
    pub fn is_allowed_options(&self, options: &[u32]) -> bool {
        if self.exclusions.is_empty() {
            return true;
        }
        self.exclusions.iter().all(|e| {
            options[e.first.component] != e.first.option
                || options[e.second.component] != e.second.option
        })
    }

    /// Whether version `index` exists and respects every exclusion.
    pub fn is_allowed(&self, index: u64) -> bool {
        if index >= self.total {
            return false;
        }
        if self.exclusions.is_empty() {
            return true;
        }
        self.exclusions.iter().all(|e| {
            self.option_of(index, e.first.component) != e.first.option
                || self.option_of(index, e.second.component) != e.second.option
        })
    }

    /// A version drawn uniformly from the allowed space.
    ///
    /// Without exclusions this is one draw; with them, rejection sampling from the full
    /// product, which is exactly uniform over the allowed versions and takes
    /// `total / allowed` draws on average.
    pub fn sample_uniform<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        loop {
            let index = rng.random_range(0..self.total);
            if self.is_allowed(index) {
                return index;
            }
        }
    }

    /// Allowed versions that use only the kept options (`keep[k][o]`): the space is
    /// rebuilt over the kept options ([`VersionSpace::keeping`]) and counted exactly. 0
    /// when a component keeps no option or the exclusions leave no version.
    ///
    /// # Panics
    /// If `keep` does not have one entry per option of the space.
    pub fn allowed_within(&self, keep: &[Vec<bool>]) -> Result<u64, SpaceError> {
        match self.keeping(keep) {
            Ok(restricted) => Ok(restricted.allowed_count()),
            Err(SpaceError::Empty) => Ok(0),
            Err(other) => Err(other),
        }
    }

    /// The space over the kept options only (`keep[k][o]`), each component's kept
    /// options renumbered from 0 in their order, with the exclusions between kept
    /// options. [`SpaceError::Empty`] when a component keeps no option or the
    /// exclusions leave no version.
    ///
    /// # Panics
    /// If `keep` does not have one entry per option of the space.
    pub fn keeping(&self, keep: &[Vec<bool>]) -> Result<VersionSpace, SpaceError> {
        assert_eq!(keep.len(), self.components(), "one keep list per component");
        let mut renumbered: Vec<Vec<Option<u32>>> = Vec::with_capacity(keep.len());
        let mut counts = Vec::with_capacity(keep.len());
        for (component, kept) in keep.iter().enumerate() {
            assert_eq!(kept.len(), self.option_count(component) as usize);
            let mut next = 0u32;
            let map: Vec<Option<u32>> = kept
                .iter()
                .map(|&is_kept| {
                    is_kept.then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect();
            if next == 0 {
                return Err(SpaceError::Empty);
            }
            counts.push(next);
            renumbered.push(map);
        }
        let remap = |side: OptionRef| {
            renumbered[side.component][side.option as usize].map(|option| OptionRef {
                component: side.component,
                option,
            })
        };
        let exclusions: Vec<Exclusion> = self
            .exclusions()
            .iter()
            .filter_map(|e| {
                Some(Exclusion {
                    first: remap(e.first)?,
                    second: remap(e.second)?,
                })
            })
            .collect();
        VersionSpace::new(counts, exclusions)
    }

    /// Exact count of allowed versions.
    ///
    /// Components that no exclusion touches multiply the count by their option count.
    /// The touched components are searched depth first, pruning an option as soon as it
    /// conflicts with one already chosen; the search visits at most
    /// [`COUNT_SEARCH_LIMIT`] partial assignments.
    fn count_allowed(&self) -> Result<u64, SpaceError> {
        if self.exclusions.is_empty() {
            return Ok(self.total);
        }
        let touched: Vec<usize> = (0..self.components())
            .filter(|&k| self.excluded_with[k].iter().any(|v| !v.is_empty()))
            .collect();
        let free: u64 = (0..self.components())
            .filter(|k| !touched.contains(k))
            .map(|k| u64::from(self.option_counts[k]))
            .product();
        let mut chosen = vec![u32::MAX; self.components()];
        let mut visited = 0u64;
        let count = self.count_from(&touched, 0, &mut chosen, &mut visited)?;
        Ok(count * free)
    }

    fn count_from(
        &self,
        touched: &[usize],
        depth: usize,
        chosen: &mut [u32],
        visited: &mut u64,
    ) -> Result<u64, SpaceError> {
        let Some(&component) = touched.get(depth) else {
            return Ok(1);
        };
        let mut count = 0u64;
        for option in 0..self.option_counts[component] {
            *visited += 1;
            if *visited > COUNT_SEARCH_LIMIT {
                return Err(SpaceError::CountTooExpensive {
                    limit: COUNT_SEARCH_LIMIT,
                    components: touched.len(),
                });
            }
            let conflicts = self.excluded_with[component][option as usize]
                .iter()
                .any(|other| chosen[other.component] == other.option);
            if conflicts {
                continue;
            }
            chosen[component] = option;
            count += self.count_from(touched, depth + 1, chosen, visited)?;
            chosen[component] = u32::MAX;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ex(a: (usize, u32), b: (usize, u32)) -> Exclusion {
        Exclusion {
            first: OptionRef {
                component: a.0,
                option: a.1,
            },
            second: OptionRef {
                component: b.0,
                option: b.1,
            },
        }
    }

    #[test]
    fn index_round_trips_and_matches_the_formula() {
        let space = VersionSpace::product(vec![3, 4, 5, 6]).unwrap();
        assert_eq!(space.total(), 360);
        let options = [2, 1, 4, 3];
        assert_eq!(space.encode(&options), ((2 * 4 + 1) * 5 + 4) * 6 + 3);
        for index in 0..space.total() {
            let decoded = space.decode(index);
            assert_eq!(space.encode(&decoded), index);
            for k in 0..4 {
                assert_eq!(space.option_of(index, k), decoded[k]);
            }
        }
    }

    #[test]
    fn count_with_exclusions_matches_enumeration() {
        let exclusions = vec![ex((0, 1), (2, 0)), ex((0, 1), (3, 2)), ex((1, 0), (3, 2))];
        let space = VersionSpace::new(vec![3, 2, 4, 3], exclusions).unwrap();
        let brute = (0..space.total()).filter(|&i| space.is_allowed(i)).count() as u64;
        assert_eq!(space.allowed_count(), brute);
        assert!(brute < space.total());
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(VersionSpace::product(vec![]), Err(SpaceError::NoComponents));
        assert_eq!(
            VersionSpace::product(vec![2, 0]),
            Err(SpaceError::EmptyComponent { component: 1 })
        );
        assert_eq!(
            VersionSpace::product(vec![u32::MAX; 3]),
            Err(SpaceError::TooLarge)
        );
        assert!(matches!(
            VersionSpace::new(vec![2, 2], vec![ex((0, 0), (0, 1))]),
            Err(SpaceError::BadExclusion { index: 0, .. })
        ));
        assert!(matches!(
            VersionSpace::new(vec![2, 2], vec![ex((0, 0), (1, 5))]),
            Err(SpaceError::BadExclusion { index: 0, .. })
        ));
        assert_eq!(
            VersionSpace::new(vec![1, 1], vec![ex((0, 0), (1, 0))]),
            Err(SpaceError::Empty)
        );
    }

    #[test]
    fn uniform_sampling_never_returns_an_excluded_version() {
        let space = VersionSpace::new(vec![2, 2], vec![ex((0, 0), (1, 0))]).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut counts = [0u32; 4];
        for _ in 0..3000 {
            counts[space.sample_uniform(&mut rng) as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        for &c in &counts[1..] {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }
}
