//! What a learner is told about a campaign: the version space, the segments, the asks,
//! the objective and which interactions to model.
//!
//! A [`Design`] is built from a campaign spec (see [`crate::spec`]) or from a world
//! file by the simulator. It carries no effects and no outcomes: only what a campaign
//! team knows before the first impression.

use crate::space::VersionSpace;

/// Largest number of combinations of linked components searched exactly when choosing
/// a version; larger blocks use coordinate ascent.
pub const DEFAULT_EXACT_LIMIT: u64 = 4096;

/// What the campaign maximizes per impression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Objective {
    /// Expected donation amount: P(conversion) x E[amount | conversion].
    #[default]
    Value,
    /// Expected number of conversions.
    Conversions,
    /// Expected number of clicks.
    Clicks,
}

impl Objective {
    /// The name used in specs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Value => "value",
            Objective::Conversions => "conversions",
            Objective::Clicks => "clicks",
        }
    }
}

/// The component whose options carry a donation ask, and the ask amounts.
#[derive(Debug, Clone, PartialEq)]
pub struct AskComponent {
    /// Position of the component in declared order.
    pub component: usize,
    /// Ask amount of each option of that component (positive, finite).
    pub amounts: Vec<f64>,
}

/// Which interaction features the conversion model carries besides the main effects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interactions {
    /// Components crossed with the segment (one weight per option and segment).
    pub with_segment: Vec<usize>,
    /// Component pairs crossed with each other (one weight per pair of options), `a < b`.
    pub pairs: Vec<(usize, usize)>,
}

impl Interactions {
    /// Every component crossed with the segment, no component pairs: the default.
    pub fn segment_only(components: usize) -> Self {
        Self {
            with_segment: (0..components).collect(),
            pairs: Vec::new(),
        }
    }

    /// The default when a campaign says nothing, chosen by measurement on the
    /// simulation worlds (see `docs/models.md`): every component crossed with the
    /// segment, plus every pair of components when the whole space has at most
    /// `exact_limit` versions, so that the joint argmax stays exact and each pair cell
    /// sees enough traffic to be learned.
    pub fn auto(space: &crate::space::VersionSpace, exact_limit: u64) -> Self {
        if space.total() <= exact_limit {
            Self::all(space.components())
        } else {
            Self::segment_only(space.components())
        }
    }

    /// Every component crossed with the segment and every pair of components.
    pub fn all(components: usize) -> Self {
        let mut pairs = Vec::new();
        for a in 0..components {
            for b in a + 1..components {
                pairs.push((a, b));
            }
        }
        Self {
            with_segment: (0..components).collect(),
            pairs,
        }
    }
}

/// Everything a learner knows about a campaign before it starts.
#[derive(Debug, Clone)]
pub struct Design {
    /// Component names in declared order.
    pub component_names: Vec<String>,
    /// Segment names; the segment of an impression is its position here.
    pub segment_names: Vec<String>,
    /// The versions.
    pub space: VersionSpace,
    /// The ask-carrying component, if any.
    pub ask: Option<AskComponent>,
    /// What to maximize.
    pub objective: Objective,
    /// Which interactions the conversion model carries.
    pub interactions: Interactions,
}

impl Design {
    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.segment_names.len()
    }

    /// Number of components.
    pub fn components(&self) -> usize {
        self.space.components()
    }
}
