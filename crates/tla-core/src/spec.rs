//! The campaign spec: what a campaign team writes, checked and turned into a [`Design`].
//!
//! A spec is a versioned, strict document written in TOML (the same structure is accepted
//! as JSON). [`CampaignSpec`] is its literal shape; [`CampaignSpec::validate`] checks every
//! rule and returns a [`Campaign`]: the spec, the [`Design`] a learner needs, the normalized
//! segment shares, and which options (and so how many versions) ask the reader to act.
//! The format is described field by field in `docs/spec.md`.
//!
//! Every refusal is a [`SpecError`] that names the field by its path
//! (`components[2].options[5].ask`) and says what is accepted.
//!
//! ```
//! # #[cfg(feature = "text")] {
//! use tla_core::spec::CampaignSpec;
//! let spec = CampaignSpec::from_toml_str(r#"
//!     version = 1
//!     name = "spring appeal"
//!     segments = [{ name = "everyone" }]
//!
//!     [[components]]
//!     name = "headline"
//!     options = [{ name = "a", text = "Rivers need you" }, { name = "b", text = "Clean water now" }]
//!
//!     [[components]]
//!     name = "cta"
//!     options = [{ name = "give", text = "Donate $10", ask = 10 }, { name = "read", text = "Learn more", ask = 25 }]
//! "#).unwrap();
//! let campaign = spec.validate().unwrap();
//! assert_eq!(campaign.allowed_versions(), 4);
//! assert_eq!(campaign.render(1), "Rivers need you | Learn more");
//! # }
//! ```

use std::collections::HashMap;

use crate::availability::{Availability, AvailabilityError};
use crate::design::DEFAULT_EXACT_LIMIT;
use crate::design::{AskComponent, Design, Interactions, Objective};
use crate::space::{Exclusion, OptionRef, SpaceError, VersionSpace};

/// The only spec format version this build accepts.
pub const SPEC_VERSION: u32 = 1;
// The policy defaults are written once, with the campaign policy.
pub use crate::policy::campaign::{
    DEFAULT_DRAWS, DEFAULT_EXPLORATION, DEFAULT_REFRESH_EVERY_EVENTS, DEFAULT_REFRESH_EVERY_MILLIS,
};
/// Default attribution window: one week.
pub const DEFAULT_ATTRIBUTION_WINDOW_HOURS: u32 = 168;

/// The largest amount anywhere in a campaign: an ask, `max_value`, a conversion's value
/// or a cost's amount. Sums of many such amounts stay finite, so every report figure
/// does.
pub const AMOUNT_LIMIT: f64 = 1e12;

/// Without `max_value`, a campaign with asks refuses conversion values above this many
/// times its largest ask.
pub const DEFAULT_MAX_VALUE_ASK_MULTIPLE: f64 = 100.0;

/// Without `max_value`, a campaign without asks refuses conversion values above this.
pub const DEFAULT_MAX_VALUE_WITHOUT_ASKS: f64 = 10_000.0;

/// The largest conversion value a campaign accepts when its spec gives no `max_value`:
/// [`DEFAULT_MAX_VALUE_ASK_MULTIPLE`] times the largest ask, or
/// [`DEFAULT_MAX_VALUE_WITHOUT_ASKS`] without asks; at most [`AMOUNT_LIMIT`]. The only
/// place the default is computed.
pub fn default_max_value(asks: Option<&[f64]>) -> f64 {
    match asks.and_then(|asks| asks.iter().copied().reduce(f64::max)) {
        Some(largest) => (DEFAULT_MAX_VALUE_ASK_MULTIPLE * largest).min(AMOUNT_LIMIT),
        None => DEFAULT_MAX_VALUE_WITHOUT_ASKS,
    }
}

/// Separator between the parts of a rendered version when the spec has no template.
pub const RENDER_SEPARATOR: &str = " | ";

#[cfg(feature = "serde")]
fn default_exploration() -> f64 {
    DEFAULT_EXPLORATION
}

#[cfg(feature = "serde")]
fn default_draws() -> u32 {
    DEFAULT_DRAWS
}

#[cfg(feature = "serde")]
fn default_attribution_window_hours() -> u32 {
    DEFAULT_ATTRIBUTION_WINDOW_HOURS
}

/// A campaign spec exactly as written (TOML or JSON), before validation.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct CampaignSpec {
    /// Format version; must be [`SPEC_VERSION`].
    pub version: u32,
    /// Campaign name, for people.
    pub name: String,
    /// What the campaign maximizes; `value` unless given.
    #[cfg_attr(feature = "serde", serde(default))]
    pub objective: Objective,
    /// The slots of the ad, in declared order (first is most significant in the index).
    pub components: Vec<ComponentSpec>,
    /// The audience segments.
    pub segments: Vec<SegmentSpec>,
    /// Which interaction features the conversion model carries.
    #[cfg_attr(feature = "serde", serde(default))]
    pub interactions: InteractionsSpec,
    /// Option pairs that never appear together.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub exclusions: Vec<ExclusionSpec>,
    /// Exploration floor epsilon, `0 <= exploration < 1`.
    #[cfg_attr(feature = "serde", serde(default = "default_exploration"))]
    pub exploration: f64,
    /// How often the decision distributions are refreshed.
    #[cfg_attr(feature = "serde", serde(default))]
    pub refresh: RefreshSpec,
    /// Thompson draws per refresh (at least 1).
    #[cfg_attr(feature = "serde", serde(default = "default_draws"))]
    pub draws: u32,
    /// How to render a version as text, with `{component}` placeholders.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub template: Option<String>,
    /// How long after its impression a conversion still counts, in hours (at least 1).
    #[cfg_attr(feature = "serde", serde(default = "default_attribution_window_hours"))]
    pub attribution_window_hours: u32,
    /// The largest conversion value accepted (a positive amount, at least the largest
    /// ask, at most [`AMOUNT_LIMIT`]); a larger one is refused. Default
    /// [`default_max_value`] of the asks.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub max_value: Option<f64>,
    /// The money of the campaign: budget, daily cap, flight dates, minimum return.
    /// Without it the campaign has no budget (spend is still recorded and reported).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub flight: Option<FlightSpec>,
    /// How the model forgets old events: `"auto"` (the default: the rate chosen from
    /// the data among a few half-lives and none), `"off"`, or a half-life such as
    /// `"36h"`, `"3d"`, `"90m"` ([`crate::model::forgetting::Forgetting::parse`]).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub forgetting: Option<String>,
    /// Options pinned for a segment, or for every segment: only the pinned option of
    /// its component is served there ("stop and ship" when every component is pinned).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub pins: Vec<PinSpec>,
    /// The share of units held out, `0 <= holdout <= 0.5` (default 0: none): served
    /// the even split so the policy's lift is measured against them
    /// ([`crate::holdout`]). Fixed for the campaign's life: a revision keeps it.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "is_zero_share")
    )]
    pub holdout: f64,
}

/// Serde's test for a holdout share left out when written (0: none).
#[cfg(feature = "serde")]
fn is_zero_share(share: &f64) -> bool {
    *share == 0.0
}

/// `[[pins]]`: `{ segment = "donors", options = ["headline.river", "cta.donate_10"] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct PinSpec {
    /// The segment the pin holds for, by name; `None`: every segment.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub segment: Option<String>,
    /// The pinned options, as `component.option`, at most one per component; none may
    /// be retired.
    pub options: Vec<String>,
}

/// Serde's test for a `false` flag left out when written.
#[cfg(feature = "serde")]
fn is_false(flag: &bool) -> bool {
    !flag
}

/// `[flight]`: what the campaign may spend, over which dates, for at least what return.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct FlightSpec {
    /// What the whole flight may spend: a positive amount, at most [`AMOUNT_LIMIT`].
    pub budget: f64,
    /// What one day (UTC) may spend: positive, at most the budget.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub daily_cap: Option<f64>,
    /// When the flight starts, RFC 3339 with an offset (`2026-12-01T00:00:00Z`); in
    /// TOML quoted or as a bare date-time.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "timestamp_text::deserialize")
    )]
    pub start: String,
    /// When it ends, RFC 3339 with an offset; after `start`, at most
    /// [`MAX_FLIGHT_DAYS`] days later.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "timestamp_text::deserialize")
    )]
    pub end: String,
    /// The least return accepted: value raised at least `min_roas` times spend
    /// (finite, positive, at most [`MAX_MIN_ROAS`]).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub min_roas: Option<f64>,
    /// The traffic expected in each hour of the UTC day, as 24 relative weights (not
    /// negative, not all 0): the pacing's forecast starts from this shape and learns
    /// each hour as it is watched. Flat when not given.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub hourly_traffic: Option<Vec<f64>>,
}

/// The longest flight accepted, days.
pub const MAX_FLIGHT_DAYS: i64 = 366;

/// The largest `min_roas` accepted: a return of 1000 times spend.
pub const MAX_MIN_ROAS: f64 = 1000.0;

/// A validated `[flight]`: numbers checked, timestamps in milliseconds since the Unix
/// epoch. A running campaign's budget and daily cap can be changed (the server keeps
/// the changes); [`FlightPlan::with_budget`] gives the plan in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlightPlan {
    /// What the whole flight may spend.
    pub budget: f64,
    /// What one day (UTC) may spend, if capped.
    pub daily_cap: Option<f64>,
    /// Flight start, ms since the Unix epoch.
    pub start_ms: i64,
    /// Flight end, ms since the Unix epoch; after `start_ms`.
    pub end_ms: i64,
    /// The least value raised per unit of spend, if set.
    pub min_roas: Option<f64>,
    /// The traffic expected in each hour of the UTC day (24 relative weights), if
    /// given.
    pub hourly_traffic: Option<[f64; 24]>,
}

impl FlightPlan {
    /// The same flight with another budget and daily cap (checked by the caller with
    /// [`check_budget`] and [`check_daily_cap`]).
    pub fn with_budget(self, budget: f64, daily_cap: Option<f64>) -> FlightPlan {
        FlightPlan {
            budget,
            daily_cap,
            ..self
        }
    }

    /// The share of the flight elapsed at `now_ms`, in [0, 1]; `None` before the start.
    pub fn elapsed_share(&self, now_ms: i64) -> Option<f64> {
        if now_ms < self.start_ms {
            return None;
        }
        let length = (self.end_ms - self.start_ms) as f64;
        Some(((now_ms - self.start_ms) as f64 / length).min(1.0))
    }

    /// What an even plan has spent by `now_ms`: the budget times the elapsed share of
    /// the flight; `None` before the start.
    pub fn planned_spend(&self, now_ms: i64) -> Option<f64> {
        self.elapsed_share(now_ms).map(|share| self.budget * share)
    }
}

/// The budget rule, one place for the spec and a change of a running campaign's
/// budget: a positive, finite amount up to [`AMOUNT_LIMIT`]. `field` names it in the
/// refusal (`flight.budget`, `budget`).
pub fn check_budget(field: &str, budget: f64) -> Result<f64, SpecError> {
    if budget.is_finite() && budget > 0.0 && budget <= AMOUNT_LIMIT {
        return Ok(budget);
    }
    Err(SpecError::OutOfRange {
        field: field.into(),
        found: budget.to_string(),
        accepted: format!("a positive, finite amount up to {AMOUNT_LIMIT} (like 25000)"),
    })
}

/// The daily cap rule, one place for the spec and a change of a running campaign's
/// budget: a positive, finite amount, at most the budget in force (a cap above the
/// budget would never bind).
pub fn check_daily_cap(field: &str, daily_cap: f64, budget: f64) -> Result<f64, SpecError> {
    if daily_cap.is_finite() && daily_cap > 0.0 && daily_cap <= budget {
        return Ok(daily_cap);
    }
    Err(SpecError::OutOfRange {
        field: field.into(),
        found: daily_cap.to_string(),
        accepted: format!(
            "a positive, finite amount up to the budget ({budget}); leave it out for no daily cap"
        ),
    })
}

/// One component (slot) of the ad.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct ComponentSpec {
    /// Unique name: letters, digits, `_` and `-`.
    pub name: String,
    /// The values this slot can take (at least one).
    pub options: Vec<OptionSpec>,
}

/// One option of a component.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct OptionSpec {
    /// Name, unique within its component.
    pub name: String,
    /// The text shown, for text options.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub text: Option<String>,
    /// URI or path of the asset shown (image, video), for asset options.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub asset: Option<String>,
    /// Free labels for reports.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub tags: Vec<String>,
    /// Donation amount this option asks for; only on the one ask-carrying component.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub ask: Option<f64>,
    /// Whether this option asks the reader to act; detected from the text when absent.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub asks_action: Option<bool>,
    /// Whether the option is retired: never served from the revision that retires it
    /// on; what it was served and earned stays in the reports. `false` unless given.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_false"))]
    pub retired: bool,
}

impl OptionSpec {
    /// What this option shows: its text, else its asset, else its name.
    pub fn display_text(&self) -> &str {
        self.text
            .as_deref()
            .or(self.asset.as_deref())
            .unwrap_or(&self.name)
    }

    /// Whether this option asks the reader to act: `asks_action` if given, else the
    /// rule of [`crate::asks::asks_to_act`] applied to its text (or, without text, its name).
    pub fn asks_to_act(&self) -> bool {
        match self.asks_action {
            Some(explicit) => explicit,
            None => crate::asks::asks_to_act(self.text.as_deref().unwrap_or(&self.name)),
        }
    }
}

/// One audience segment.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct SegmentSpec {
    /// Unique name (the audience id).
    pub name: String,
    /// Relative share of traffic; positive; normalized over all segments.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub share: Option<f64>,
}

/// `interactions = { segment = ..., pairs = ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct InteractionsSpec {
    /// Components crossed with the segment: `"all"` (default), `"none"` or a list of names.
    #[cfg_attr(feature = "serde", serde(default = "ComponentSelection::all"))]
    pub segment: ComponentSelection,
    /// Component pairs crossed with each other: `"auto"` (default: every pair when the
    /// whole space has at most 4,096 versions, none otherwise), `"none"`, `"all"` or a
    /// list of `[a, b]` name pairs.
    #[cfg_attr(feature = "serde", serde(default = "PairSelection::auto"))]
    pub pairs: PairSelection,
}

impl Default for InteractionsSpec {
    fn default() -> Self {
        Self {
            segment: ComponentSelection::All,
            pairs: PairSelection::Auto,
        }
    }
}

/// A set of components: `"all"`, `"none"` or a list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentSelection {
    /// Every component.
    All,
    /// No component.
    None,
    /// The named components.
    Only(Vec<String>),
}

impl ComponentSelection {
    #[cfg(feature = "serde")]
    fn all() -> Self {
        Self::All
    }
}

/// A set of component pairs: `"none"`, `"all"` or a list of `[a, b]` name pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairSelection {
    /// Every pair when the whole space is small enough to search exactly, else none
    /// (see [`crate::design::Interactions::auto`]).
    Auto,
    /// No pair.
    None,
    /// Every pair of distinct components.
    All,
    /// The listed pairs; each entry must hold exactly two names (checked by validation).
    Only(Vec<Vec<String>>),
}

impl PairSelection {
    #[cfg(feature = "serde")]
    fn auto() -> Self {
        Self::Auto
    }
}

#[cfg(feature = "serde")]
mod selection_serde {
    //! `"all"` / `"none"` / list, both ways, with a message that says what is accepted.

    use super::{ComponentSelection, PairSelection};
    use serde::de::{self, SeqAccess, Unexpected, Visitor};
    use std::fmt;

    impl serde::Serialize for ComponentSelection {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self {
                Self::All => serializer.serialize_str("all"),
                Self::None => serializer.serialize_str("none"),
                Self::Only(names) => names.serialize(serializer),
            }
        }
    }

    impl serde::Serialize for PairSelection {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self {
                Self::Auto => serializer.serialize_str("auto"),
                Self::All => serializer.serialize_str("all"),
                Self::None => serializer.serialize_str("none"),
                Self::Only(pairs) => pairs.serialize(serializer),
            }
        }
    }

    struct ComponentSelectionVisitor;

    impl<'de> Visitor<'de> for ComponentSelectionVisitor {
        type Value = ComponentSelection;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str(r#""all", "none" or a list of component names"#)
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            match value {
                "all" => Ok(ComponentSelection::All),
                "none" => Ok(ComponentSelection::None),
                other => Err(E::invalid_value(Unexpected::Str(other), &self)),
            }
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                names.push(name);
            }
            Ok(ComponentSelection::Only(names))
        }
    }

    impl<'de> serde::Deserialize<'de> for ComponentSelection {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(ComponentSelectionVisitor)
        }
    }

    struct PairSelectionVisitor;

    impl<'de> Visitor<'de> for PairSelectionVisitor {
        type Value = PairSelection;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str(
                r#""auto", "none", "all" or a list of component name pairs like [["headline", "image"]]"#,
            )
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            match value {
                "auto" => Ok(PairSelection::Auto),
                "all" => Ok(PairSelection::All),
                "none" => Ok(PairSelection::None),
                other => Err(E::invalid_value(Unexpected::Str(other), &self)),
            }
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::new();
            while let Some(pair) = seq.next_element::<Vec<String>>()? {
                pairs.push(pair);
            }
            Ok(PairSelection::Only(pairs))
        }
    }

    impl<'de> serde::Deserialize<'de> for PairSelection {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(PairSelectionVisitor)
        }
    }
}

#[cfg(feature = "serde")]
mod timestamp_text {
    //! A timestamp as text: a string, or TOML's bare date-time (`start =
    //! 2026-12-01T00:00:00Z`), which reaches serde as a one-entry map holding its text.
    //! Checked as RFC 3339 by validation, which names the field.

    use serde::de::{self, MapAccess, Visitor};
    use std::fmt;

    struct TimestampVisitor;

    impl<'de> Visitor<'de> for TimestampVisitor {
        type Value = String;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str(crate::timestamp::RFC3339_EXAMPLE)
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(value.to_owned())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let Some((_, text)) = map.next_entry::<String, String>()? else {
                return Err(de::Error::invalid_length(0, &self));
            };
            if map.next_key::<String>()?.is_some() {
                return Err(de::Error::invalid_length(2, &self));
            }
            Ok(text)
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<String, D::Error> {
        deserializer.deserialize_any(TimestampVisitor)
    }
}

/// `{ a = "component.option", b = "component.option" }`: the two options never appear
/// together in one version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct ExclusionSpec {
    /// One option, as `component.option`.
    pub a: String,
    /// The other option, of a different component, as `component.option`.
    pub b: String,
    /// Why, for people reading the spec.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub reason: Option<String>,
}

/// `refresh = { every_events = N, every_millis = T }`: the decision distributions are
/// rebuilt after N events or T milliseconds, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields, default)
)]
pub struct RefreshSpec {
    /// Events between refreshes (at least 1).
    pub every_events: u64,
    /// Milliseconds between refreshes (at least 1).
    pub every_millis: u64,
}

impl Default for RefreshSpec {
    fn default() -> Self {
        Self {
            every_events: DEFAULT_REFRESH_EVERY_EVENTS,
            every_millis: DEFAULT_REFRESH_EVERY_MILLIS,
        }
    }
}

/// Why a spec was refused. Each message names the field and says what is accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The text is not well-formed TOML or JSON, or does not have the spec's shape
    /// (unknown field, wrong type, missing required field).
    #[error("the spec is not a valid {format} campaign spec: {message}")]
    Parse {
        /// `TOML` or `JSON`.
        format: &'static str,
        /// The parser's message (it names the field and the position).
        message: String,
    },
    /// No `version` field.
    #[error("version: missing; write `version = {SPEC_VERSION}` (accepted: {SPEC_VERSION})")]
    MissingVersion,
    /// A `version` this build does not read.
    #[error("version: {found} is not supported; accepted: {SPEC_VERSION}")]
    UnsupportedVersion {
        /// The version found, as written.
        found: String,
    },
    /// A name used twice where names must be unique.
    #[error("{field}: {name:?} is used twice (first at {first}); {kind} names must be unique")]
    Duplicate {
        /// Path of the second use.
        field: String,
        /// What kind of name (`component`, `option`, `segment`).
        kind: &'static str,
        /// The repeated name.
        name: String,
        /// Path of the first use.
        first: String,
    },
    /// A reference to a name that does not exist.
    #[error("{field}: unknown {kind} {name:?}; accepted: {accepted}")]
    UnknownName {
        /// Path of the reference.
        field: String,
        /// What kind of name was expected.
        kind: &'static str,
        /// The name given.
        name: String,
        /// The names that exist.
        accepted: String,
    },
    /// A number outside its range.
    #[error("{field}: {found} is out of range; accepted: {accepted}")]
    OutOfRange {
        /// Path of the number.
        field: String,
        /// The value given.
        found: String,
        /// The accepted range.
        accepted: String,
    },
    /// Any other rule broken; `problem` says what and what is accepted.
    #[error("{field}: {problem}")]
    Invalid {
        /// Path of the field.
        field: String,
        /// What is wrong and what is accepted.
        problem: String,
    },
    /// The version space cannot be built (too large, emptied by exclusions, too costly to count).
    #[error("{field}: {source}")]
    Space {
        /// `components` or `exclusions`.
        field: String,
        /// The space's own error.
        #[source]
        source: SpaceError,
    },
}

impl SpecError {
    /// The path of the field at fault, when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Parse { .. } => None,
            SpecError::MissingVersion | SpecError::UnsupportedVersion { .. } => Some("version"),
            SpecError::Duplicate { field, .. }
            | SpecError::UnknownName { field, .. }
            | SpecError::OutOfRange { field, .. }
            | SpecError::Invalid { field, .. }
            | SpecError::Space { field, .. } => Some(field),
        }
    }

    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

#[cfg(feature = "text")]
impl CampaignSpec {
    /// Parses a spec written in TOML. The `version` is checked first, so a spec from a
    /// newer format is refused for its version rather than for its fields.
    pub fn from_toml_str(text: &str) -> Result<Self, SpecError> {
        let parse_error = |error: toml::de::Error| SpecError::Parse {
            format: "TOML",
            message: error.to_string().trim_end().to_owned(),
        };
        let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        match table.get("version") {
            None => return Err(SpecError::MissingVersion),
            Some(toml::Value::Integer(v)) if *v == i64::from(SPEC_VERSION) => {}
            Some(other) => {
                let found = match other {
                    toml::Value::Integer(v) => v.to_string(),
                    toml::Value::Float(v) => v.to_string(),
                    toml::Value::String(v) => format!("{v:?}"),
                    other => format!("a {}", other.type_str()),
                };
                return Err(SpecError::UnsupportedVersion { found });
            }
        }
        toml::from_str(text).map_err(parse_error)
    }

    /// Parses a spec written in JSON (the same structure as the TOML form).
    pub fn from_json_str(text: &str) -> Result<Self, SpecError> {
        let parse_error = |error: serde_json::Error| SpecError::Parse {
            format: "JSON",
            message: error.to_string(),
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(parse_error)?;
        let Some(object) = value.as_object() else {
            return Err(SpecError::Parse {
                format: "JSON",
                message: "expected an object at the top level".into(),
            });
        };
        match object.get("version") {
            None => return Err(SpecError::MissingVersion),
            Some(v) if v.as_u64() == Some(u64::from(SPEC_VERSION)) => {}
            Some(other) => {
                return Err(SpecError::UnsupportedVersion {
                    found: other.to_string(),
                });
            }
        }
        serde_json::from_str(text).map_err(parse_error)
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// The display text of the chosen option of this component.
    Component(usize),
}

/// A validated campaign: the spec, its [`Design`], and what rendering and reporting need.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// The spec as written.
    spec: CampaignSpec,
    /// What a learner is told.
    design: Design,
    /// Traffic share of each segment, summing to 1.
    segment_shares: Vec<f64>,
    /// `asks_action[k][o]`: whether option `o` of component `k` asks the reader to act.
    asks_action: Vec<Vec<bool>>,
    /// Allowed versions in which at least one option asks to act.
    acting_versions: u64,
    /// The template, parsed; `None` joins the parts with [`RENDER_SEPARATOR`].
    template: Option<Vec<TemplatePart>>,
    /// The largest conversion value accepted: the spec's `max_value` or its default.
    max_value: f64,
    /// The validated `[flight]`, if any.
    flight: Option<FlightPlan>,
    /// The versions each segment may be served: retired options and pins applied.
    availability: Availability,
}

/// One option of a version, with its component.
#[derive(Debug, Clone, Copy)]
pub struct ChosenOption<'a> {
    /// Position of the component.
    pub component: usize,
    /// Name of the component.
    pub component_name: &'a str,
    /// Position of the option within the component.
    pub option: u32,
    /// The option as written in the spec.
    pub spec: &'a OptionSpec,
    /// Whether the option asks the reader to act.
    pub asks_to_act: bool,
}

impl Campaign {
    /// The spec as written.
    pub fn spec(&self) -> &CampaignSpec {
        &self.spec
    }

    /// What a learner is told about the campaign.
    pub fn design(&self) -> &Design {
        &self.design
    }

    /// Traffic share of each segment, in declared order, summing to 1 (equal shares when
    /// the spec gives none).
    pub fn segment_shares(&self) -> &[f64] {
        &self.segment_shares
    }

    /// Versions before exclusions.
    pub fn total_versions(&self) -> u64 {
        self.design.space.total()
    }

    /// Versions that no exclusion removes.
    pub fn allowed_versions(&self) -> u64 {
        self.design.space.allowed_count()
    }

    /// Allowed versions that ask the reader to act (counted exactly).
    pub fn acting_versions(&self) -> u64 {
        self.acting_versions
    }

    /// Share of the allowed versions that ask the reader to act.
    pub fn acting_share(&self) -> f64 {
        self.acting_versions as f64 / self.allowed_versions() as f64
    }

    /// Whether option `option` of component `component` asks the reader to act.
    pub fn option_asks_to_act(&self, component: usize, option: u32) -> bool {
        self.asks_action[component][option as usize]
    }

    /// Whether version `index` exists and no exclusion removes it.
    pub fn is_allowed(&self, index: u64) -> bool {
        self.design.space.is_allowed(index)
    }

    /// Positions in `spec().exclusions` of the exclusions that remove version `index`.
    ///
    /// # Panics
    /// If `index >= total_versions()`.
    pub fn violated_exclusions(&self, index: u64) -> Vec<usize> {
        let options = self.design.space.decode(index);
        self.design
            .space
            .exclusions()
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                options[e.first.component] == e.first.option
                    && options[e.second.component] == e.second.option
            })
            .map(|(position, _)| position)
            .collect()
    }

    /// The options of version `index`, in component order.
    ///
    /// # Panics
    /// If `index >= total_versions()`.
    pub fn chosen(&self, index: u64) -> Vec<ChosenOption<'_>> {
        self.design
            .space
            .decode(index)
            .into_iter()
            .enumerate()
            .map(|(component, option)| ChosenOption {
                component,
                component_name: &self.spec.components[component].name,
                option,
                spec: &self.spec.components[component].options[option as usize],
                asks_to_act: self.asks_action[component][option as usize],
            })
            .collect()
    }

    /// `(component name, option name)` of each option of version `index`, in component order.
    ///
    /// # Panics
    /// If `index >= total_versions()`.
    pub fn options_of(&self, index: u64) -> Vec<(&str, &str)> {
        self.chosen(index)
            .into_iter()
            .map(|chosen| (chosen.component_name, chosen.spec.name.as_str()))
            .collect()
    }

    /// Whether version `index` asks the reader to act: whether any of its options does.
    ///
    /// # Panics
    /// If `index >= total_versions()`.
    pub fn asks_to_act(&self, index: u64) -> bool {
        let space = &self.design.space;
        (0..space.components()).any(|component| {
            self.asks_action[component][space.option_of(index, component) as usize]
        })
    }

    /// The largest conversion value the campaign accepts: the spec's `max_value`, or
    /// [`default_max_value`] of its asks.
    pub fn max_value(&self) -> f64 {
        self.max_value
    }

    /// The share of units held out and served the even split (the spec's `holdout`;
    /// 0: none).
    pub fn holdout(&self) -> f64 {
        self.spec.holdout
    }

    /// The versions each segment may be served: allowed, with no retired option and
    /// the segment's pins held.
    pub fn availability(&self) -> &Availability {
        &self.availability
    }

    /// Whether version `index` may be served to `segment` (see [`Campaign::availability`]).
    pub fn is_available(&self, segment: usize, index: u64) -> bool {
        self.availability
            .is_available(&self.design.space, segment, index)
    }

    /// The flight as the spec wrote it (budget, daily cap, dates, minimum return), if the
    /// spec has a `[flight]` table. A running campaign's budget and daily cap may have
    /// been changed since; the server holds the plan in force.
    pub fn flight(&self) -> Option<&FlightPlan> {
        self.flight.as_ref()
    }

    /// The donation ask of version `index`, when the campaign has an ask component.
    ///
    /// # Panics
    /// If `index >= total_versions()`.
    pub fn ask_amount(&self, index: u64) -> Option<f64> {
        let ask = self.design.ask.as_ref()?;
        let option = self.design.space.option_of(index, ask.component);
        Some(ask.amounts[option as usize])
    }

    /// Version `index` as text: the template with each `{component}` replaced by the
    /// chosen option's text (or asset, or name); without a template, those parts joined
    /// in component order with [`RENDER_SEPARATOR`].
    ///
    /// # Panics
    /// If `index >= total_versions()`.
    pub fn render(&self, index: u64) -> String {
        let chosen = self.chosen(index);
        match &self.template {
            None => chosen
                .iter()
                .map(|c| c.spec.display_text())
                .collect::<Vec<_>>()
                .join(RENDER_SEPARATOR),
            Some(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        TemplatePart::Literal(text) => out.push_str(text),
                        TemplatePart::Component(k) => out.push_str(chosen[*k].spec.display_text()),
                    }
                }
                out
            }
        }
    }
}

impl CampaignSpec {
    /// Checks every rule of the format and builds the [`Campaign`].
    pub fn validate(&self) -> Result<Campaign, SpecError> {
        if self.version != SPEC_VERSION {
            return Err(SpecError::UnsupportedVersion {
                found: self.version.to_string(),
            });
        }
        if self.name.trim().is_empty() {
            return Err(SpecError::invalid(
                "name",
                "must not be empty; give the campaign a name people will recognize",
            ));
        }
        self.check_components()?;
        let ask = self.ask_component()?;
        let max_value = self.max_value(ask.as_ref())?;
        let segment_shares = self.segment_shares()?;
        let space = self.build_space()?;
        let interactions = self.interactions(&space)?;
        let availability = self.availability(&space)?;
        self.check_numbers()?;
        let template = self.parse_template()?;
        let flight = self.flight_plan()?;

        let asks_action: Vec<Vec<bool>> = self
            .components
            .iter()
            .map(|c| c.options.iter().map(OptionSpec::asks_to_act).collect())
            .collect();
        let keep_non_acting: Vec<Vec<bool>> = asks_action
            .iter()
            .map(|options| options.iter().map(|acts| !acts).collect())
            .collect();
        let non_acting =
            space
                .allowed_within(&keep_non_acting)
                .map_err(|source| SpecError::Space {
                    field: "exclusions".into(),
                    source,
                })?;
        let acting_versions = space.allowed_count() - non_acting;

        let design = Design {
            component_names: self.components.iter().map(|c| c.name.clone()).collect(),
            segment_names: self.segments.iter().map(|s| s.name.clone()).collect(),
            space,
            ask,
            objective: self.objective,
            interactions,
        };
        Ok(Campaign {
            spec: self.clone(),
            design,
            segment_shares,
            asks_action,
            acting_versions,
            template,
            max_value,
            flight,
            availability,
        })
    }

    /// The versions each segment may be served: options not `retired`, and for each
    /// component a segment has a pin on, only the pinned option.
    fn availability(&self, space: &VersionSpace) -> Result<Availability, SpecError> {
        for (k, component) in self.components.iter().enumerate() {
            if component.options.iter().all(|o| o.retired) {
                return Err(SpecError::invalid(
                    format!("components[{k}].options"),
                    format!(
                        "every option of {:?} is retired; keep at least one option of each component in service (`retired = false`)",
                        component.name
                    ),
                ));
            }
        }
        let segments = self.segments.len();
        // pinned[s][k]: the option pinned for segment s on component k, with the path
        // of the pin that set it.
        let mut pinned: Vec<Vec<Option<(u32, String)>>> =
            vec![vec![None; self.components.len()]; segments];
        for (p, pin) in self.pins.iter().enumerate() {
            let targets: Vec<usize> = match &pin.segment {
                None => (0..segments).collect(),
                Some(name) => match self.segments.iter().position(|s| &s.name == name) {
                    Some(s) => vec![s],
                    None => {
                        return Err(SpecError::UnknownName {
                            field: format!("pins[{p}].segment"),
                            kind: "segment",
                            name: name.clone(),
                            accepted: list_names(self.segments.iter().map(|s| s.name.as_str())),
                        });
                    }
                },
            };
            if pin.options.is_empty() {
                return Err(SpecError::invalid(
                    format!("pins[{p}].options"),
                    "empty; accepted: one or more options as \"component.option\", at most one per component",
                ));
            }
            for (i, reference) in pin.options.iter().enumerate() {
                let field = format!("pins[{p}].options[{i}]");
                let option = self.resolve_option_ref(field.clone(), reference)?;
                let component = &self.components[option.component];
                if component.options[option.option as usize].retired {
                    return Err(SpecError::invalid(
                        field,
                        format!(
                            "{reference:?} is retired and cannot be pinned; accepted: an option in service (pin another, or set `retired = false` on it)"
                        ),
                    ));
                }
                for &s in &targets {
                    if let Some((other, first)) = &pinned[s][option.component] {
                        return Err(SpecError::invalid(
                            field,
                            format!(
                                "{reference:?} pins component {:?} for segment {:?}, which {first} already pins to {:?}; accepted: one pin per component and segment",
                                component.name,
                                self.segments[s].name,
                                format!(
                                    "{}.{}",
                                    component.name, component.options[*other as usize].name
                                ),
                            ),
                        ));
                    }
                    pinned[s][option.component] = Some((option.option, field.clone()));
                }
            }
        }
        let keep: Vec<Vec<Vec<bool>>> = pinned
            .iter()
            .map(|pins| {
                self.components
                    .iter()
                    .zip(pins)
                    .map(|(component, pin)| {
                        component
                            .options
                            .iter()
                            .enumerate()
                            .map(|(o, option)| {
                                !option.retired
                                    && pin.as_ref().is_none_or(|(p, _)| *p as usize == o)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        Availability::new(space, keep).map_err(|error| match error {
            AvailabilityError::NothingLeft { segment } => {
                let name = &self.segments[segment].name;
                if pinned[segment].iter().any(Option::is_some) {
                    SpecError::invalid(
                        "pins",
                        format!(
                            "the pins of segment {name:?} leave it no version to serve: every version holding the pinned options is removed by an exclusion or holds a retired option; accepted: pins whose options can appear together in a version in service"
                        ),
                    )
                } else {
                    SpecError::invalid(
                        "components",
                        format!(
                            "segment {name:?} has no version left to serve: every allowed version holds a retired option; retire fewer options or drop an exclusion"
                        ),
                    )
                }
            }
            AvailabilityError::Space(source) => SpecError::Space {
                field: "pins".into(),
                source,
            },
            AvailabilityError::Shape(problem) => SpecError::invalid("pins", problem),
        })
    }

    fn component_names(&self) -> String {
        list_names(self.components.iter().map(|c| c.name.as_str()))
    }

    fn component_position(&self, name: &str) -> Option<usize> {
        self.components.iter().position(|c| c.name == name)
    }

    fn check_components(&self) -> Result<(), SpecError> {
        if self.components.is_empty() {
            return Err(SpecError::invalid(
                "components",
                "none given; a campaign needs at least one component (headline, image, ...) with at least one option",
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (k, component) in self.components.iter().enumerate() {
            let field = format!("components[{k}].name");
            let name = component.name.as_str();
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(SpecError::invalid(
                    field,
                    format!(
                        "{name:?} is not a valid component name; accepted: a non-empty name of letters, digits, '_' and '-' (it is used in `component.option` references and `{{component}}` placeholders)"
                    ),
                ));
            }
            if let Some(first) = seen.insert(name, k) {
                return Err(SpecError::Duplicate {
                    field,
                    kind: "component",
                    name: name.into(),
                    first: format!("components[{first}].name"),
                });
            }
            if component.options.is_empty() {
                return Err(SpecError::invalid(
                    format!("components[{k}].options"),
                    format!(
                        "component {name:?} has no options; every component needs at least one"
                    ),
                ));
            }
            let mut seen_options: HashMap<&str, usize> = HashMap::new();
            for (o, option) in component.options.iter().enumerate() {
                let path = format!("components[{k}].options[{o}]");
                if option.name.trim().is_empty() {
                    return Err(SpecError::invalid(
                        format!("{path}.name"),
                        "must not be empty; give every option a name unique within its component",
                    ));
                }
                if let Some(first) = seen_options.insert(option.name.as_str(), o) {
                    return Err(SpecError::Duplicate {
                        field: format!("{path}.name"),
                        kind: "option",
                        name: option.name.clone(),
                        first: format!("components[{k}].options[{first}].name"),
                    });
                }
                if option.text.is_some() && option.asset.is_some() {
                    return Err(SpecError::invalid(
                        path,
                        "has both `text` and `asset`; accepted: one of them (or neither, to show the name)",
                    ));
                }
                if option.text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                    return Err(SpecError::invalid(
                        format!("{path}.text"),
                        "must not be empty; leave it out to show the option's name",
                    ));
                }
                if option.asset.as_deref().is_some_and(|a| a.trim().is_empty()) {
                    return Err(SpecError::invalid(
                        format!("{path}.asset"),
                        "must not be empty; accepted: a URI or path of the asset",
                    ));
                }
                if let Some(t) = option.tags.iter().position(|tag| tag.trim().is_empty()) {
                    return Err(SpecError::invalid(
                        format!("{path}.tags[{t}]"),
                        "must not be empty; accepted: non-empty labels",
                    ));
                }
                let bad_ask = option
                    .ask
                    .filter(|ask| !(ask.is_finite() && *ask > 0.0 && *ask <= AMOUNT_LIMIT));
                if let Some(ask) = bad_ask {
                    return Err(SpecError::OutOfRange {
                        field: format!("{path}.ask"),
                        found: ask.to_string(),
                        accepted: format!(
                            "a positive, finite amount up to {AMOUNT_LIMIT} (like 5 or 25.0)"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The spec's `max_value` checked against the asks, or its default.
    fn max_value(&self, ask: Option<&AskComponent>) -> Result<f64, SpecError> {
        let asks = ask.map(|ask| ask.amounts.as_slice());
        let Some(max_value) = self.max_value else {
            return Ok(default_max_value(asks));
        };
        let largest_ask = asks
            .and_then(|asks| asks.iter().copied().reduce(f64::max))
            .unwrap_or(0.0);
        if !(max_value.is_finite() && max_value > 0.0 && max_value <= AMOUNT_LIMIT)
            || max_value < largest_ask
        {
            return Err(SpecError::OutOfRange {
                field: "max_value".into(),
                found: max_value.to_string(),
                accepted: format!(
                    "a positive amount, at least the largest ask ({largest_ask}) and at most {AMOUNT_LIMIT} \
                     (default {} = {DEFAULT_MAX_VALUE_ASK_MULTIPLE} x the largest ask, or {DEFAULT_MAX_VALUE_WITHOUT_ASKS} without asks)",
                    default_max_value(asks)
                ),
            });
        }
        Ok(max_value)
    }

    fn ask_component(&self) -> Result<Option<AskComponent>, SpecError> {
        let mut ask_component: Option<usize> = None;
        for (k, component) in self.components.iter().enumerate() {
            let Some(o) = component.options.iter().position(|o| o.ask.is_some()) else {
                continue;
            };
            if let Some(first) = ask_component {
                return Err(SpecError::invalid(
                    format!("components[{k}].options[{o}].ask"),
                    format!(
                        "asks are allowed on one component only, and component {:?} (components[{first}]) already carries them; move the amounts to that component or remove them here",
                        self.components[first].name
                    ),
                ));
            }
            ask_component = Some(k);
        }
        let Some(k) = ask_component else {
            return Ok(None);
        };
        let component = &self.components[k];
        let mut amounts = Vec::with_capacity(component.options.len());
        for (o, option) in component.options.iter().enumerate() {
            let Some(amount) = option.ask else {
                return Err(SpecError::invalid(
                    format!("components[{k}].options[{o}].ask"),
                    format!(
                        "missing on option {:?}; once one option of component {:?} has an ask, every option of it needs one (a positive amount; for an option that does not ask, give the amount its landing page suggests)",
                        option.name, component.name
                    ),
                ));
            };
            amounts.push(amount);
        }
        Ok(Some(AskComponent {
            component: k,
            amounts,
        }))
    }

    fn segment_shares(&self) -> Result<Vec<f64>, SpecError> {
        if self.segments.is_empty() {
            return Err(SpecError::invalid(
                "segments",
                "none given; accepted: a list of at least one `{ name, share? }` (use one segment named \"all\" for a single audience)",
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (s, segment) in self.segments.iter().enumerate() {
            let field = format!("segments[{s}].name");
            if segment.name.trim().is_empty() {
                return Err(SpecError::invalid(
                    field,
                    "must not be empty; accepted: the audience id",
                ));
            }
            if let Some(first) = seen.insert(segment.name.as_str(), s) {
                return Err(SpecError::Duplicate {
                    field,
                    kind: "segment",
                    name: segment.name.clone(),
                    first: format!("segments[{first}].name"),
                });
            }
        }
        let with_share = self.segments.iter().filter(|s| s.share.is_some()).count();
        if with_share == 0 {
            let n = self.segments.len() as f64;
            return Ok(vec![1.0 / n; self.segments.len()]);
        }
        if with_share < self.segments.len() {
            let s = self
                .segments
                .iter()
                .position(|s| s.share.is_none())
                .unwrap_or_default();
            return Err(SpecError::invalid(
                format!("segments[{s}].share"),
                format!(
                    "missing on segment {:?} while other segments have one; give a share to every segment or to none (equal shares)",
                    self.segments[s].name
                ),
            ));
        }
        let mut shares = Vec::with_capacity(self.segments.len());
        for (s, segment) in self.segments.iter().enumerate() {
            let share = segment.share.unwrap_or_default();
            if !(share.is_finite() && share > 0.0) {
                return Err(SpecError::OutOfRange {
                    field: format!("segments[{s}].share"),
                    found: share.to_string(),
                    accepted: "a positive, finite number (shares are normalized to sum to 1)"
                        .into(),
                });
            }
            shares.push(share);
        }
        let sum: f64 = shares.iter().sum();
        if !sum.is_finite() {
            return Err(SpecError::invalid(
                "segments",
                "the shares add up to more than a finite number; use smaller relative shares",
            ));
        }
        Ok(shares.into_iter().map(|share| share / sum).collect())
    }

    fn resolve_option_ref(&self, field: String, reference: &str) -> Result<OptionRef, SpecError> {
        let Some((component_name, option_name)) = reference.split_once('.') else {
            return Err(SpecError::invalid(
                field,
                format!(
                    "{reference:?} is not an option reference; accepted: \"component.option\", like \"{}.{}\"",
                    self.components[0].name, self.components[0].options[0].name
                ),
            ));
        };
        let Some(component) = self.component_position(component_name) else {
            return Err(SpecError::UnknownName {
                field,
                kind: "component",
                name: component_name.into(),
                accepted: self.component_names(),
            });
        };
        let options = &self.components[component].options;
        let Some(option) = options.iter().position(|o| o.name == option_name) else {
            return Err(SpecError::UnknownName {
                field,
                kind: "option",
                name: reference.into(),
                accepted: list_names(
                    options
                        .iter()
                        .map(|o| format!("{component_name}.{}", o.name))
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str),
                ),
            });
        };
        Ok(OptionRef {
            component,
            option: option as u32,
        })
    }

    fn build_space(&self) -> Result<VersionSpace, SpecError> {
        let mut exclusions = Vec::with_capacity(self.exclusions.len());
        for (e, exclusion) in self.exclusions.iter().enumerate() {
            let first = self.resolve_option_ref(format!("exclusions[{e}].a"), &exclusion.a)?;
            let second = self.resolve_option_ref(format!("exclusions[{e}].b"), &exclusion.b)?;
            if first.component == second.component {
                return Err(SpecError::invalid(
                    format!("exclusions[{e}]"),
                    format!(
                        "{:?} and {:?} are options of the same component, which never appear together anyway; accepted: options of two different components",
                        exclusion.a, exclusion.b
                    ),
                ));
            }
            exclusions.push(Exclusion { first, second });
        }
        let mut option_counts = Vec::with_capacity(self.components.len());
        for component in &self.components {
            let count = u32::try_from(component.options.len()).map_err(|_| SpecError::Space {
                field: "components".into(),
                source: SpaceError::TooLarge,
            })?;
            option_counts.push(count);
        }
        VersionSpace::new(option_counts, exclusions).map_err(|source| {
            let field = match source {
                SpaceError::NoComponents
                | SpaceError::EmptyComponent { .. }
                | SpaceError::TooLarge => "components",
                SpaceError::BadExclusion { .. }
                | SpaceError::Empty
                | SpaceError::CountTooExpensive { .. } => "exclusions",
            };
            SpecError::Space {
                field: field.into(),
                source,
            }
        })
    }

    fn interactions(&self, space: &VersionSpace) -> Result<Interactions, SpecError> {
        let n = self.components.len();
        let with_segment = match &self.interactions.segment {
            ComponentSelection::All => (0..n).collect(),
            ComponentSelection::None => Vec::new(),
            ComponentSelection::Only(names) => {
                let mut picked: Vec<usize> = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    let field = format!("interactions.segment[{i}]");
                    let Some(k) = self.component_position(name) else {
                        return Err(SpecError::UnknownName {
                            field,
                            kind: "component",
                            name: name.clone(),
                            accepted: self.component_names(),
                        });
                    };
                    if picked.contains(&k) {
                        return Err(SpecError::invalid(
                            field,
                            format!("component {name:?} is listed twice; list each component once"),
                        ));
                    }
                    picked.push(k);
                }
                picked.sort_unstable();
                picked
            }
        };
        let pairs = match &self.interactions.pairs {
            PairSelection::Auto => Interactions::auto(space, DEFAULT_EXACT_LIMIT).pairs,
            PairSelection::None => Vec::new(),
            PairSelection::All => Interactions::all(n).pairs,
            PairSelection::Only(listed) => {
                let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(listed.len());
                for (i, pair) in listed.iter().enumerate() {
                    let field = format!("interactions.pairs[{i}]");
                    let [a, b] = pair.as_slice() else {
                        return Err(SpecError::invalid(
                            field,
                            format!(
                                "has {} names; accepted: exactly two component names, like [\"headline\", \"image\"]",
                                pair.len()
                            ),
                        ));
                    };
                    let position = |j: usize, name: &String| {
                        self.component_position(name)
                            .ok_or_else(|| SpecError::UnknownName {
                                field: format!("interactions.pairs[{i}][{j}]"),
                                kind: "component",
                                name: name.clone(),
                                accepted: self.component_names(),
                            })
                    };
                    let (ka, kb) = (position(0, a)?, position(1, b)?);
                    if ka == kb {
                        return Err(SpecError::invalid(
                            field,
                            format!(
                                "pairs component {a:?} with itself; accepted: two different components"
                            ),
                        ));
                    }
                    let normalized = (ka.min(kb), ka.max(kb));
                    if pairs.contains(&normalized) {
                        return Err(SpecError::invalid(
                            field,
                            format!("the pair {a:?} x {b:?} is listed twice; list each pair once"),
                        ));
                    }
                    pairs.push(normalized);
                }
                pairs
            }
        };
        Ok(Interactions {
            with_segment,
            pairs,
        })
    }

    /// The spec's `forgetting`, parsed ([`crate::model::forgetting::Forgetting::Auto`]
    /// when absent).
    pub fn forgetting(&self) -> Result<crate::model::forgetting::Forgetting, SpecError> {
        match &self.forgetting {
            None => Ok(crate::model::forgetting::Forgetting::default()),
            Some(text) => crate::model::forgetting::Forgetting::parse(text).map_err(|_| {
                SpecError::OutOfRange {
                    field: "forgetting".into(),
                    found: format!("{text:?}"),
                    accepted: "\"auto\" (default), \"off\", or a half-life: a positive whole \
                               number followed by m, h or d, such as \"36h\" or \"3d\""
                        .into(),
                }
            }),
        }
    }

    fn check_numbers(&self) -> Result<(), SpecError> {
        self.forgetting()?;
        if !(self.holdout.is_finite()
            && (0.0..=crate::holdout::MAX_HOLDOUT).contains(&self.holdout))
        {
            return Err(SpecError::OutOfRange {
                field: "holdout".into(),
                found: self.holdout.to_string(),
                accepted: format!(
                    "a share with 0 <= holdout <= {} (default 0: no holdout), such as 0.1 for a tenth of the units",
                    crate::holdout::MAX_HOLDOUT
                ),
            });
        }
        if !(self.exploration.is_finite() && (0.0..1.0).contains(&self.exploration)) {
            return Err(SpecError::OutOfRange {
                field: "exploration".into(),
                found: self.exploration.to_string(),
                accepted: format!(
                    "a number with 0 <= exploration < 1 (default {DEFAULT_EXPLORATION})"
                ),
            });
        }
        if self.refresh.every_events == 0 {
            return Err(SpecError::OutOfRange {
                field: "refresh.every_events".into(),
                found: "0".into(),
                accepted: format!(
                    "a whole number of events, at least 1 (default {DEFAULT_REFRESH_EVERY_EVENTS})"
                ),
            });
        }
        if self.refresh.every_millis == 0 {
            return Err(SpecError::OutOfRange {
                field: "refresh.every_millis".into(),
                found: "0".into(),
                accepted: format!(
                    "a whole number of milliseconds, at least 1 (default {DEFAULT_REFRESH_EVERY_MILLIS})"
                ),
            });
        }
        if self.draws == 0 {
            return Err(SpecError::OutOfRange {
                field: "draws".into(),
                found: "0".into(),
                accepted: format!(
                    "a whole number of Thompson draws per refresh, at least 1 (default {DEFAULT_DRAWS})"
                ),
            });
        }
        if self.attribution_window_hours == 0 {
            return Err(SpecError::OutOfRange {
                field: "attribution_window_hours".into(),
                found: "0".into(),
                accepted: format!(
                    "a whole number of hours, at least 1 (default {DEFAULT_ATTRIBUTION_WINDOW_HOURS})"
                ),
            });
        }
        Ok(())
    }

    /// Checks `[flight]` and reads its timestamps.
    fn flight_plan(&self) -> Result<Option<FlightPlan>, SpecError> {
        let Some(flight) = &self.flight else {
            return Ok(None);
        };
        let budget = check_budget("flight.budget", flight.budget)?;
        let daily_cap = flight
            .daily_cap
            .map(|cap| check_daily_cap("flight.daily_cap", cap, budget))
            .transpose()?;
        let timestamp = |field: &str, text: &str| {
            crate::timestamp::parse_rfc3339(text)
                .map_err(|error| SpecError::invalid(field, error.to_string()))
        };
        let start_ms = timestamp("flight.start", &flight.start)?;
        let end_ms = timestamp("flight.end", &flight.end)?;
        if end_ms <= start_ms {
            return Err(SpecError::invalid(
                "flight.end",
                format!(
                    "{:?} is not after flight.start {:?}; accepted: a time after the start, at most {MAX_FLIGHT_DAYS} days later",
                    flight.end, flight.start
                ),
            ));
        }
        if end_ms - start_ms > MAX_FLIGHT_DAYS * crate::timestamp::DAY_MS {
            return Err(SpecError::invalid(
                "flight.end",
                format!(
                    "{:?} is {:.1} days after flight.start {:?}; accepted: a flight of at most {MAX_FLIGHT_DAYS} days",
                    flight.end,
                    (end_ms - start_ms) as f64 / crate::timestamp::DAY_MS as f64,
                    flight.start
                ),
            ));
        }
        let min_roas = match flight.min_roas {
            None => None,
            Some(roas) if roas.is_finite() && roas > 0.0 && roas <= MAX_MIN_ROAS => Some(roas),
            Some(roas) => {
                return Err(SpecError::OutOfRange {
                    field: "flight.min_roas".into(),
                    found: roas.to_string(),
                    accepted: format!(
                        "a positive, finite number up to {MAX_MIN_ROAS} (value raised at least this many times spend; 1.5 means $1.50 per $1)"
                    ),
                });
            }
        };
        let hourly_traffic = match &flight.hourly_traffic {
            None => None,
            Some(weights) => {
                let shape: Option<[f64; 24]> = weights.as_slice().try_into().ok();
                match shape {
                    Some(shape)
                        if shape.iter().all(|w| w.is_finite() && *w >= 0.0)
                            && shape.iter().sum::<f64>() > 0.0 =>
                    {
                        Some(shape)
                    }
                    _ => {
                        return Err(SpecError::invalid(
                            "flight.hourly_traffic",
                            format!(
                                "{} weights{}; accepted: 24 relative weights, one per hour of the UTC day from 00:00, each finite and not negative, not all 0",
                                weights.len(),
                                if weights.len() == 24 {
                                    " with one negative, not finite, or all 0"
                                } else {
                                    ""
                                }
                            ),
                        ));
                    }
                }
            }
        };
        Ok(Some(FlightPlan {
            budget,
            daily_cap,
            start_ms,
            end_ms,
            min_roas,
            hourly_traffic,
        }))
    }

    /// Parses `template`: `{component}` placeholders, `{{` and `}}` for literal braces.
    fn parse_template(&self) -> Result<Option<Vec<TemplatePart>>, SpecError> {
        let Some(template) = &self.template else {
            return Ok(None);
        };
        let refuse = |problem: String| SpecError::invalid("template", problem);
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(refuse(
                        "has a '}' without a matching '{'; write '}}' for a literal brace".into(),
                    ));
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(refuse(format!(
                            "the placeholder {{{name} is not closed; write {{component}}, or '{{{{' for a literal brace"
                        )));
                    }
                    let Some(k) = self.component_position(&name) else {
                        return Err(SpecError::UnknownName {
                            field: "template".into(),
                            kind: "placeholder",
                            name: format!("{{{name}}}"),
                            accepted: list_names(
                                self.components
                                    .iter()
                                    .map(|c| format!("{{{}}}", c.name))
                                    .collect::<Vec<_>>()
                                    .iter()
                                    .map(String::as_str),
                            ),
                        });
                    };
                    if !literal.is_empty() {
                        parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(TemplatePart::Component(k));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(literal));
        }
        Ok(Some(parts))
    }
}

/// `a, b, c`, or the first 12 names and how many more.
fn list_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 12;
    let names: Vec<&str> = names.collect();
    let mut out = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

#[cfg(all(test, feature = "text"))]
mod tests {
    use super::*;

    const SMALL: &str = include_str!("../../../examples/small.toml");
    const FUNDRAISING: &str = include_str!("../../../examples/fundraising.toml");

    /// A valid spec to break one field at a time.
    const BASE: &str = r#"
version = 1
name = "test"
segments = [{ name = "s1" }, { name = "s2" }]

[[components]]
name = "headline"
options = [
  { name = "h1", text = "Rivers need you" },
  { name = "h2", text = "Donate to clean water" },
  { name = "h3", text = "Spring is here" },
]

[[components]]
name = "image"
options = [{ name = "i1", asset = "img/one.jpg" }, { name = "i2", asset = "img/two.jpg" }]

[[components]]
name = "cta"
options = [
  { name = "c1", text = "Donate $5", ask = 5 },
  { name = "c2", text = "Learn more", ask = 25 },
]
"#;

    fn parse(text: &str) -> Result<Campaign, SpecError> {
        CampaignSpec::from_toml_str(text)?.validate()
    }

    fn refused(text: &str) -> SpecError {
        match parse(text) {
            Ok(_) => panic!("spec was accepted:\n{text}"),
            Err(error) => error,
        }
    }

    /// The refusal's message names `field` and contains `says`.
    fn assert_refused(text: &str, field: &str, says: &str) {
        let error = refused(text);
        let message = error.to_string();
        assert!(message.contains(field), "{message:?} does not name {field}");
        assert!(message.contains(says), "{message:?} does not say {says:?}");
    }

    const FLIGHT: &str = r#"
[flight]
budget = 25000
daily_cap = 1500
start = "2026-12-01T00:00:00Z"
end = "2026-12-31T23:59:59-05:00"
min_roas = 1.5
"#;

    fn with_flight(replace: (&str, &str)) -> String {
        format!("{BASE}{}", FLIGHT.replace(replace.0, replace.1))
    }

    #[test]
    fn a_flight_is_validated_into_a_plan() {
        let campaign = parse(&format!("{BASE}{FLIGHT}")).unwrap();
        let plan = *campaign.flight().unwrap();
        assert_eq!(plan.budget, 25_000.0);
        assert_eq!(plan.daily_cap, Some(1_500.0));
        assert_eq!(plan.start_ms, 1_796_083_200_000);
        assert_eq!(
            plan.end_ms,
            crate::timestamp::parse_rfc3339("2027-01-01T04:59:59Z").unwrap()
        );
        assert_eq!(plan.min_roas, Some(1.5));
        assert_eq!(plan.planned_spend(plan.start_ms - 1), None);
        assert_eq!(plan.planned_spend(plan.start_ms), Some(0.0));
        let middle = plan.start_ms + (plan.end_ms - plan.start_ms) / 2;
        assert!((plan.planned_spend(middle).unwrap() - 12_500.0).abs() < 1e-6);
        assert_eq!(plan.planned_spend(plan.end_ms + 1), Some(25_000.0));
        let changed = plan.with_budget(30_000.0, None);
        assert_eq!((changed.budget, changed.daily_cap), (30_000.0, None));
        assert_eq!(changed.start_ms, plan.start_ms);
        // Without a table there is no flight; the JSON form round-trips the table.
        assert!(parse(BASE).unwrap().flight().is_none());
        let json = serde_json::to_string(campaign.spec()).unwrap();
        let again = CampaignSpec::from_json_str(&json)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(again.flight(), campaign.flight());
    }

    #[test]
    fn flight_dates_may_be_bare_toml_date_times() {
        let text = with_flight((
            "start = \"2026-12-01T00:00:00Z\"",
            "start = 2026-12-01T00:00:00Z",
        ));
        let campaign = parse(&text).unwrap();
        assert_eq!(campaign.flight().unwrap().start_ms, 1_796_083_200_000);
        assert_eq!(
            campaign.spec().flight.as_ref().unwrap().start,
            "2026-12-01T00:00:00Z"
        );
        // A bare local date-time has no offset and is refused for it.
        let local = with_flight((
            "start = \"2026-12-01T00:00:00Z\"",
            "start = 2026-12-01T00:00:00",
        ));
        assert_refused(&local, "flight.start", "offset is missing");
    }

    #[test]
    fn a_flight_may_give_its_hourly_traffic_shape() {
        let shape: Vec<String> = (0..24).map(|h| format!("{}", 1 + h % 3)).collect();
        let text = with_flight((
            "min_roas = 1.5",
            &format!("min_roas = 1.5\nhourly_traffic = [{}]", shape.join(", ")),
        ));
        let plan = *parse(&text).unwrap().flight().unwrap();
        let weights = plan.hourly_traffic.unwrap();
        assert_eq!((weights[0], weights[1], weights[23]), (1.0, 2.0, 3.0));
        assert_eq!(
            parse(&with_flight(("", "")))
                .unwrap()
                .flight()
                .unwrap()
                .hourly_traffic,
            None
        );
        for bad in [
            "[1, 2, 3]".to_string(),
            format!("[{}]", vec!["0"; 24].join(", ")),
            format!("[-1, {}]", vec!["1"; 23].join(", ")),
            format!("[nan, {}]", vec!["1"; 23].join(", ")),
        ] {
            assert_refused(
                &with_flight((
                    "min_roas = 1.5",
                    &format!("min_roas = 1.5\nhourly_traffic = {bad}"),
                )),
                "flight.hourly_traffic",
                "24 relative weights",
            );
        }
    }

    #[test]
    fn refuses_bad_flight_budgets_naming_the_field_and_range() {
        for bad in ["0", "-5", "nan", "inf", "2e12"] {
            assert_refused(
                &with_flight(("budget = 25000", &format!("budget = {bad}"))),
                "flight.budget",
                "a positive, finite amount up to 1000000000000",
            );
        }
        for bad in ["0", "-1", "nan", "25001"] {
            assert_refused(
                &with_flight(("daily_cap = 1500", &format!("daily_cap = {bad}"))),
                "flight.daily_cap",
                "up to the budget (25000)",
            );
        }
        for bad in ["0", "-1", "nan", "inf", "1001"] {
            assert_refused(
                &with_flight(("min_roas = 1.5", &format!("min_roas = {bad}"))),
                "flight.min_roas",
                "up to 1000",
            );
        }
        // The budget is required in the table; the cap and the return are not.
        let error = refused(&with_flight(("budget = 25000", "")));
        assert!(error.to_string().contains("budget"), "{error}");
        let bare = with_flight(("daily_cap = 1500", "")).replace("min_roas = 1.5", "");
        let plan = *parse(&bare).unwrap().flight().unwrap();
        assert_eq!((plan.daily_cap, plan.min_roas), (None, None));
    }

    #[test]
    fn refuses_bad_flight_dates_naming_the_field() {
        assert_refused(
            &with_flight(("2026-12-01T00:00:00Z", "2026-12-01")),
            "flight.start",
            "too short",
        );
        assert_refused(
            &with_flight(("2026-12-31T23:59:59-05:00", "2026-02-30T00:00:00Z")),
            "flight.end",
            "does not exist",
        );
        assert_refused(
            &with_flight(("2026-12-31T23:59:59-05:00", "2026-12-01T00:00:00Z")),
            "flight.end",
            "is not after flight.start",
        );
        assert_refused(
            &with_flight(("2026-12-31T23:59:59-05:00", "2027-12-03T00:00:00Z")),
            "flight.end",
            "at most 366 days",
        );
        // 366 days exactly is accepted.
        let year = with_flight(("2026-12-31T23:59:59-05:00", "2027-12-02T00:00:00Z"));
        assert!(parse(&year).is_ok());
        let error = refused(&with_flight(("start = \"2026-12-01T00:00:00Z\"\n", "")));
        assert!(error.to_string().contains("start"), "{error}");
        let unknown = with_flight(("min_roas = 1.5", "min_roas = 1.5\ncurrency = \"USD\""));
        assert!(refused(&unknown).to_string().contains("currency"));
    }

    #[test]
    fn base_spec_is_accepted_with_defaults() {
        let campaign = parse(BASE).unwrap();
        let spec = campaign.spec();
        assert_eq!(spec.objective, Objective::Value);
        assert_eq!(spec.exploration, DEFAULT_EXPLORATION);
        assert_eq!(spec.refresh, RefreshSpec::default());
        assert_eq!(spec.draws, DEFAULT_DRAWS);
        assert_eq!(
            spec.attribution_window_hours,
            DEFAULT_ATTRIBUTION_WINDOW_HOURS
        );
        let design = campaign.design();
        assert_eq!(design.component_names, ["headline", "image", "cta"]);
        assert_eq!(design.segment_names, ["s1", "s2"]);
        // The default pairs are "auto": this space is small enough to search exactly,
        // so every pair is modelled.
        assert!(design.space.total() <= DEFAULT_EXACT_LIMIT);
        assert_eq!(design.interactions, Interactions::all(3));
        assert_eq!(
            design.ask,
            Some(AskComponent {
                component: 2,
                amounts: vec![5.0, 25.0]
            })
        );
        assert_eq!(campaign.segment_shares(), [0.5, 0.5]);
        assert_eq!(campaign.total_versions(), 12);
        assert_eq!(campaign.allowed_versions(), 12);
        // Index 0 = h1, i1, c1.
        assert_eq!(
            campaign.options_of(0),
            [("headline", "h1"), ("image", "i1"), ("cta", "c1")]
        );
        assert_eq!(
            campaign.render(0),
            "Rivers need you | img/one.jpg | Donate $5"
        );
        assert_eq!(campaign.ask_amount(1), Some(25.0));
    }

    #[test]
    fn acting_versions_are_counted_exactly() {
        // Acting options depend on the asks rule; compare the exact count with enumeration.
        for text in [BASE, SMALL, &BASE.replace("]\n\n[[components]]\nname = \"image\"", "]\n\n[[exclusions]]\na = \"headline.h1\"\nb = \"cta.c2\"\n\n[[components]]\nname = \"image\"")] {
            let campaign = parse(text).unwrap();
            let brute = (0..campaign.total_versions())
                .filter(|&i| campaign.is_allowed(i) && campaign.asks_to_act(i))
                .count() as u64;
            assert_eq!(campaign.acting_versions(), brute);
        }
    }

    #[test]
    fn explicit_asks_action_overrides_the_rule() {
        let text = BASE
            .replace(
                r#"{ name = "c1", text = "Donate $5", ask = 5 }"#,
                r#"{ name = "c1", text = "Donate $5", ask = 5, asks_action = false }"#,
            )
            .replace(
                r#"{ name = "h2", text = "Donate to clean water" }"#,
                r#"{ name = "h2", text = "Donate to clean water", asks_action = false }"#,
            )
            .replace(
                r#"{ name = "h3", text = "Spring is here" }"#,
                r#"{ name = "h3", text = "Spring is here", asks_action = true }"#,
            )
            .replace(
                r#"{ name = "h1", text = "Rivers need you" }"#,
                r#"{ name = "h1", text = "Rivers need you", asks_action = false }"#,
            )
            .replace(
                r#"{ name = "c2", text = "Learn more", ask = 25 }"#,
                r#"{ name = "c2", text = "Learn more", ask = 25, asks_action = false }"#,
            )
            .replace(
                r#"asset = "img/one.jpg" }"#,
                r#"asset = "img/one.jpg", asks_action = false }"#,
            )
            .replace(
                r#"asset = "img/two.jpg" }"#,
                r#"asset = "img/two.jpg", asks_action = false }"#,
            );
        let campaign = parse(&text).unwrap();
        // Only h3 acts: 1 x 2 x 2 of 12 versions.
        assert_eq!(campaign.acting_versions(), 4);
        assert!(!campaign.option_asks_to_act(2, 0));
        assert!(campaign.option_asks_to_act(0, 2));
    }

    #[test]
    fn restricted_count_handles_exclusions_and_empty_components() {
        let exclusion = |a: (usize, u32), b: (usize, u32)| Exclusion {
            first: OptionRef {
                component: a.0,
                option: a.1,
            },
            second: OptionRef {
                component: b.0,
                option: b.1,
            },
        };
        let space = VersionSpace::new(
            vec![3, 2, 4],
            vec![exclusion((0, 1), (2, 0)), exclusion((1, 0), (2, 3))],
        )
        .unwrap();
        let keep = vec![
            vec![true, true, false],
            vec![true, true],
            vec![true, false, true, true],
        ];
        let brute = (0..space.total())
            .filter(|&i| {
                let options = space.decode(i);
                space.is_allowed(i)
                    && options
                        .iter()
                        .enumerate()
                        .all(|(k, &o)| keep[k][o as usize])
            })
            .count() as u64;
        assert_eq!(space.allowed_within(&keep).unwrap(), brute);
        let none_kept = vec![vec![true; 3], vec![false; 2], vec![true; 4]];
        assert_eq!(space.allowed_within(&none_kept).unwrap(), 0);
        // Keeping only an excluded pair leaves nothing.
        let only_pair = vec![
            vec![false, true, false],
            vec![true, true],
            vec![true, false, false, false],
        ];
        assert_eq!(space.allowed_within(&only_pair).unwrap(), 0);
    }

    #[test]
    fn example_specs_validate_with_the_expected_counts() {
        let small = parse(SMALL).unwrap();
        assert_eq!(small.total_versions(), 3 * 2 * 3);
        assert_eq!(small.allowed_versions(), 18 - 2);
        // small.toml sets asks_action on every option: only the two asking CTAs act,
        // and the exclusion removes only versions with the non-asking one.
        assert_eq!(small.acting_versions(), 3 * 2 * 2);
        assert_eq!(small.design().segments(), 3);

        let fundraising = parse(FUNDRAISING).unwrap();
        let design = fundraising.design();
        assert_eq!(design.space.option_counts(), [30, 24, 16, 12, 16]);
        assert_eq!(fundraising.total_versions(), 2_211_840);
        // Two exclusions, disjoint: 24 x 16 x 12 and 16 x 16 x 12 versions removed.
        assert_eq!(fundraising.allowed_versions(), 2_211_840 - 4_608 - 3_072);
        assert_eq!(design.segments(), 40);
        assert_eq!(design.objective, Objective::Value);
        assert_eq!(design.ask.as_ref().map(|a| a.component), Some(4));
        assert!((fundraising.segment_shares().iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(fundraising.acting_versions() > 0);
        assert!(fundraising.acting_versions() < fundraising.allowed_versions());
        let brute = (0..fundraising.total_versions())
            .filter(|&i| fundraising.is_allowed(i) && fundraising.asks_to_act(i))
            .count() as u64;
        assert_eq!(fundraising.acting_versions(), brute);
        assert!(fundraising.render(0).contains(" — "));
    }

    #[test]
    fn json_form_is_accepted_and_round_trips() {
        let spec = CampaignSpec::from_toml_str(FUNDRAISING).unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        let again = CampaignSpec::from_json_str(&json).unwrap();
        assert_eq!(spec, again);
        let campaign = again.validate().unwrap();
        assert_eq!(campaign.total_versions(), 2_211_840);
    }

    #[test]
    fn six_million_versions_validate() {
        let mut text =
            String::from("version = 1\nname = \"big\"\nsegments = [{ name = \"all\" }]\n");
        for (component, count) in [("a", 50), ("b", 50), ("c", 50), ("d", 48)] {
            text.push_str(&format!("[[components]]\nname = \"{component}\"\n"));
            for o in 0..count {
                text.push_str(&format!("[[components.options]]\nname = \"o{o}\"\n"));
            }
        }
        text.push_str("[[exclusions]]\na = \"a.o1\"\nb = \"d.o2\"\n");
        let campaign = parse(&text).unwrap();
        assert_eq!(campaign.total_versions(), 6_000_000);
        assert_eq!(campaign.allowed_versions(), 6_000_000 - 2500);
    }

    #[test]
    fn template_fills_placeholders_and_literal_braces() {
        let text = format!("template = \"{{{{{{headline}}}}}} — {{cta}}\"\n{BASE}");
        let campaign = parse(&text).unwrap();
        assert_eq!(campaign.render(1), "{Rivers need you} — Learn more");
    }

    #[test]
    fn refuses_versions_other_than_1() {
        let error = refused(&BASE.replace("version = 1", "version = 2"));
        assert_eq!(error, SpecError::UnsupportedVersion { found: "2".into() });
        assert!(error.to_string().contains("accepted: 1"));
        assert_eq!(
            refused(&BASE.replace("version = 1", "")),
            SpecError::MissingVersion
        );
        assert!(matches!(
            CampaignSpec::from_json_str(r#"{"version": 3, "name": "x"}"#),
            Err(SpecError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn refuses_unknown_fields() {
        let error = refused(&BASE.replace("name = \"test\"", "name = \"test\"\nbudget = 5"));
        assert!(error.to_string().contains("budget"), "{error}");
        let error = refused(&BASE.replace(
            r#"{ name = "h3", text = "Spring is here" }"#,
            r#"{ name = "h3", txt = "Spring is here" }"#,
        ));
        assert!(error.to_string().contains("txt"), "{error}");
        let error = CampaignSpec::from_json_str(r#"{"version": 1, "colour": 2}"#).unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn refuses_bad_objective_saying_what_is_accepted() {
        let error = refused(&format!("objective = \"reach\"\n{BASE}"));
        let message = error.to_string();
        assert!(
            message.contains("reach") && message.contains("conversions"),
            "{message}"
        );
    }

    #[test]
    fn refuses_duplicate_names() {
        assert_refused(
            &BASE.replace("name = \"image\"", "name = \"headline\""),
            "components[1].name",
            "used twice (first at components[0].name)",
        );
        assert_refused(
            &BASE.replace("name = \"h3\"", "name = \"h1\""),
            "components[0].options[2].name",
            "option names must be unique",
        );
        assert_refused(
            &BASE.replace("name = \"s2\"", "name = \"s1\""),
            "segments[1].name",
            "segment names must be unique",
        );
    }

    #[test]
    fn refuses_empty_components_and_bad_component_names() {
        assert_refused(
            &BASE.replace(
                r#"options = [{ name = "i1", asset = "img/one.jpg" }, { name = "i2", asset = "img/two.jpg" }]"#,
                "options = []",
            ),
            "components[1].options",
            "at least one",
        );
        let no_components =
            "version = 1\nname = \"x\"\ncomponents = []\nsegments = [{ name = \"s\" }]\n";
        assert_refused(no_components, "components", "at least one component");
        assert_refused(
            &BASE.replace("name = \"image\"", "name = \"my.image\""),
            "components[1].name",
            "letters, digits",
        );
    }

    #[test]
    fn refuses_option_content_errors() {
        assert_refused(
            &BASE.replace(
                r#"{ name = "i1", asset = "img/one.jpg" }"#,
                r#"{ name = "i1", asset = "img/one.jpg", text = "one" }"#,
            ),
            "components[1].options[0]",
            "both `text` and `asset`",
        );
        assert_refused(
            &BASE.replace(r#"text = "Spring is here""#, r#"text = "", tags = ["x"]"#),
            "components[0].options[2].text",
            "must not be empty",
        );
    }

    #[test]
    fn refuses_no_segments_and_partial_or_bad_shares() {
        assert_refused(
            &BASE.replace(
                r#"segments = [{ name = "s1" }, { name = "s2" }]"#,
                "segments = []",
            ),
            "segments",
            "at least one",
        );
        assert_refused(
            &BASE.replace(r#"{ name = "s1" }"#, r#"{ name = "s1", share = 2 }"#),
            "segments[1].share",
            "to every segment or to none",
        );
        assert_refused(
            &BASE.replace(
                r#"segments = [{ name = "s1" }, { name = "s2" }]"#,
                r#"segments = [{ name = "s1", share = 2 }, { name = "s2", share = -1 }]"#,
            ),
            "segments[1].share",
            "positive",
        );
        let campaign = parse(&BASE.replace(
            r#"segments = [{ name = "s1" }, { name = "s2" }]"#,
            r#"segments = [{ name = "s1", share = 3 }, { name = "s2", share = 1 }]"#,
        ))
        .unwrap();
        assert_eq!(campaign.segment_shares(), [0.75, 0.25]);
    }

    #[test]
    fn refuses_asks_on_two_components_or_missing_asks() {
        assert_refused(
            &BASE.replace(
                r#"{ name = "h1", text = "Rivers need you" }"#,
                r#"{ name = "h1", text = "Rivers need you", ask = 3 }"#,
            ),
            "components[2].options[0].ask",
            "one component only",
        );
        assert_refused(
            &BASE.replace(
                r#"{ name = "c2", text = "Learn more", ask = 25 }"#,
                r#"{ name = "c2", text = "Learn more" }"#,
            ),
            "components[2].options[1].ask",
            "every option of it needs one",
        );
    }

    #[test]
    fn refuses_non_positive_and_nan_asks() {
        for bad in ["0", "-5", "nan", "inf", "1e13"] {
            assert_refused(
                &BASE.replace("ask = 5 }", &format!("ask = {bad} }}")),
                "components[2].options[0].ask",
                "positive, finite",
            );
        }
    }

    #[test]
    fn max_value_defaults_to_a_multiple_of_the_largest_ask_and_is_checked() {
        // BASE asks 5 and 25.
        assert_eq!(parse(BASE).unwrap().max_value(), 2_500.0);
        assert_eq!(default_max_value(None), DEFAULT_MAX_VALUE_WITHOUT_ASKS);
        assert_eq!(default_max_value(Some(&[1e11])), AMOUNT_LIMIT);
        let campaign = parse(&format!("max_value = 800.5\n{BASE}")).unwrap();
        assert_eq!(campaign.max_value(), 800.5);
        for bad in ["0", "-1", "nan", "inf", "1e13", "20"] {
            assert_refused(
                &format!("max_value = {bad}\n{BASE}"),
                "max_value",
                "at least the largest ask (25) and at most 1000000000000",
            );
        }
    }

    #[test]
    fn refuses_a_space_too_large_to_index() {
        let mut text =
            String::from("version = 1\nname = \"huge\"\nsegments = [{ name = \"all\" }]\n");
        for component in 0..20 {
            text.push_str(&format!(
                "[[components]]\nname = \"c{component}\"\noptions = ["
            ));
            for o in 0..10 {
                text.push_str(&format!("{{ name = \"o{o}\" }},"));
            }
            text.push_str("]\n");
        }
        let error = refused(&text);
        assert!(matches!(
            error,
            SpecError::Space {
                source: SpaceError::TooLarge,
                ..
            }
        ));
        assert!(error.to_string().starts_with("components: "), "{error}");
    }

    #[test]
    fn refuses_bad_exclusion_references() {
        let with = |a: &str, b: &str| format!("{BASE}\n[[exclusions]]\na = \"{a}\"\nb = \"{b}\"\n");
        assert_refused(
            &with("headline", "cta.c1"),
            "exclusions[0].a",
            "\"component.option\"",
        );
        assert_refused(
            &with("hedline.h1", "cta.c1"),
            "exclusions[0].a",
            "unknown component \"hedline\"",
        );
        assert_refused(
            &with("headline.h1", "cta.c9"),
            "exclusions[0].b",
            "\"cta.c1\", \"cta.c2\"",
        );
        assert_refused(
            &with("headline.h1", "headline.h2"),
            "exclusions[0]",
            "two different components",
        );
        let one_by_one = "version = 1\nname = \"x\"\nsegments = [{ name = \"s\" }]\n\
            components = [{ name = \"a\", options = [{ name = \"x\" }] }, { name = \"b\", options = [{ name = \"y\" }] }]\n\
            exclusions = [{ a = \"a.x\", b = \"b.y\" }]\n";
        assert_refused(one_by_one, "exclusions", "remove every version");
    }

    #[test]
    fn refuses_unknown_names_in_interactions() {
        assert_refused(
            &format!("{BASE}\n[interactions]\nsegment = [\"headline\", \"imgae\"]\n"),
            "interactions.segment[1]",
            "unknown component \"imgae\"",
        );
        assert_refused(
            &format!("{BASE}\n[interactions]\npairs = [[\"headline\", \"body\"]]\n"),
            "interactions.pairs[0][1]",
            "accepted: \"headline\", \"image\", \"cta\"",
        );
        assert_refused(
            &format!("{BASE}\n[interactions]\npairs = [[\"headline\"]]\n"),
            "interactions.pairs[0]",
            "exactly two",
        );
        assert_refused(
            &format!("{BASE}\n[interactions]\npairs = [[\"cta\", \"cta\"]]\n"),
            "interactions.pairs[0]",
            "two different components",
        );
        let error = refused(&format!("{BASE}\n[interactions]\nsegment = \"some\"\n"));
        assert!(error.to_string().contains(r#""all", "none""#), "{error}");
        let campaign = parse(&format!(
            "{BASE}\n[interactions]\nsegment = [\"cta\", \"headline\"]\npairs = [[\"cta\", \"image\"]]\n"
        ))
        .unwrap();
        assert_eq!(
            campaign.design().interactions,
            Interactions {
                with_segment: vec![0, 2],
                pairs: vec![(1, 2)]
            }
        );
        let campaign = parse(&format!(
            "{BASE}\n[interactions]\nsegment = \"none\"\npairs = \"all\"\n"
        ))
        .unwrap();
        assert_eq!(
            campaign.design().interactions,
            Interactions {
                with_segment: vec![],
                pairs: vec![(0, 1), (0, 2), (1, 2)]
            }
        );
    }

    #[test]
    fn forgetting_defaults_to_auto_and_refuses_what_is_not_a_rate() {
        use crate::model::forgetting::Forgetting;
        let campaign = parse(BASE).unwrap();
        assert_eq!(campaign.spec().forgetting(), Ok(Forgetting::Auto));
        let settings = crate::policy::campaign::CampaignPolicySettings::for_campaign(&campaign);
        assert_eq!(settings.factorized.forgetting, Forgetting::Auto);
        let set = parse(&format!("forgetting = \"36h\"\n{BASE}")).unwrap();
        assert_eq!(
            set.spec().forgetting(),
            Ok(Forgetting::HalfLife(36 * 3_600_000))
        );
        assert_eq!(
            parse(&format!("forgetting = \"off\"\n{BASE}"))
                .unwrap()
                .spec()
                .forgetting(),
            Ok(Forgetting::Off)
        );
        for bad in ["\"weekly\"", "\"0d\"", "\"3\""] {
            assert_refused(
                &format!("forgetting = {bad}\n{BASE}"),
                "forgetting",
                "a half-life",
            );
        }
    }

    #[test]
    fn the_holdout_is_a_share_up_to_a_half() {
        assert_eq!(parse(BASE).unwrap().holdout(), 0.0);
        let held = parse(&format!("holdout = 0.1\n{BASE}")).unwrap();
        assert_eq!(held.holdout(), 0.1);
        assert!(parse(&format!("holdout = 0.5\n{BASE}")).is_ok());
        for bad in ["0.51", "-0.1", "nan", "1.0"] {
            assert_refused(
                &format!("holdout = {bad}\n{BASE}"),
                "holdout",
                "0 <= holdout <= 0.5",
            );
        }
        // A revision keeps the share.
        let other = parse(&format!("holdout = 0.2\n{BASE}")).unwrap();
        let error = crate::revision::Revision::between(&held, &other).unwrap_err();
        assert_eq!(error.field(), "holdout");
        assert!(error.to_string().contains("from 0.1 to 0.2"), "{error}");
        assert!(crate::revision::Revision::between(&held, &held).is_ok());
    }

    #[test]
    fn refuses_exploration_out_of_range_and_zero_cadences() {
        for bad in ["1.0", "-0.1", "nan"] {
            assert_refused(
                &format!("exploration = {bad}\n{BASE}"),
                "exploration",
                "0 <= exploration < 1",
            );
        }
        assert!(parse(&format!("exploration = 0.0\n{BASE}")).is_ok());
        assert_refused(&format!("draws = 0\n{BASE}"), "draws", "at least 1");
        assert_refused(
            &format!("attribution_window_hours = 0\n{BASE}"),
            "attribution_window_hours",
            "at least 1",
        );
        assert_refused(
            &format!("{BASE}\n[refresh]\nevery_events = 0\n"),
            "refresh.every_events",
            "at least 1",
        );
        // Each refusal quotes the default the spec really falls back to.
        let quoted = [
            (
                "exploration = 1.0\n".to_owned(),
                DEFAULT_EXPLORATION.to_string(),
            ),
            ("draws = 0\n".to_owned(), DEFAULT_DRAWS.to_string()),
            (
                "attribution_window_hours = 0\n".to_owned(),
                DEFAULT_ATTRIBUTION_WINDOW_HOURS.to_string(),
            ),
        ];
        for (line, default) in quoted {
            assert_refused(
                &format!("{line}{BASE}"),
                "",
                &format!("(default {default})"),
            );
        }
        for (field, default) in [
            ("every_events", DEFAULT_REFRESH_EVERY_EVENTS),
            ("every_millis", DEFAULT_REFRESH_EVERY_MILLIS),
        ] {
            assert_refused(
                &format!("{BASE}\n[refresh]\n{field} = 0\n"),
                field,
                &format!("(default {default})"),
            );
        }
    }

    #[test]
    fn refuses_unknown_template_placeholders() {
        assert_refused(
            &format!("template = \"{{headline}} {{body}}\"\n{BASE}"),
            "template",
            "unknown placeholder \"{body}\"; accepted: \"{headline}\", \"{image}\", \"{cta}\"",
        );
        assert_refused(
            &format!("template = \"{{headline\"\n{BASE}"),
            "template",
            "not closed",
        );
        assert_refused(
            &format!("template = \"a }} b\"\n{BASE}"),
            "template",
            "'}}'",
        );
    }

    #[test]
    fn refuses_empty_name() {
        assert_refused(
            &BASE.replace("name = \"test\"", "name = \"\""),
            "name",
            "must not be empty",
        );
    }

    /// BASE with `h3` retired and the given pins (TOML `[[pins]]` tables) appended.
    fn with_pins(pins: &str) -> String {
        let retired = BASE.replace(
            "{ name = \"h3\", text = \"Spring is here\" }",
            "{ name = \"h3\", text = \"Spring is here\", retired = true }",
        );
        format!("{retired}{pins}")
    }

    #[test]
    fn retired_options_and_pins_set_what_each_segment_may_be_served() {
        let campaign = parse(&with_pins(
            "\n[[pins]]\nsegment = \"s2\"\noptions = [\"image.i2\", \"cta.c1\"]\n",
        ))
        .unwrap();
        let availability = campaign.availability();
        // s1: h3 retired, so 2 x 2 x 2; s2: also image and cta pinned, so 2 x 1 x 1.
        assert_eq!(availability.count(0), 8);
        assert_eq!(availability.count(1), 2);
        assert!(campaign.spec().components[0].options[2].retired);
        assert!(!campaign.spec().components[0].options[0].retired);
        for version in 0..campaign.total_versions() {
            let options = campaign.design().space.decode(version);
            assert_eq!(campaign.is_available(0, version), options[0] != 2);
            assert_eq!(
                campaign.is_available(1, version),
                options == [options[0].min(1), 1, 0] && options[0] != 2
            );
        }
        // A pin without a segment holds for every segment; the flag round-trips.
        let everywhere = parse(&with_pins("\n[[pins]]\noptions = [\"cta.c2\"]\n")).unwrap();
        assert_eq!(everywhere.availability().count(0), 4);
        assert_eq!(everywhere.availability().count(1), 4);
        let json = serde_json::to_string(everywhere.spec()).unwrap();
        assert!(json.contains("\"retired\":true") && json.contains("\"pins\""));
        assert_eq!(
            CampaignSpec::from_json_str(&json).unwrap(),
            *everywhere.spec()
        );
        // Nothing retired or pinned: every allowed version everywhere, and `retired`
        // left out when written.
        let plain = parse(BASE).unwrap();
        assert!(plain.availability().is_everything());
        assert!(
            !serde_json::to_string(plain.spec())
                .unwrap()
                .contains("retired")
        );
    }

    #[test]
    fn refuses_bad_pins_and_retirements_naming_the_field() {
        let pin = |body: &str| with_pins(&format!("\n[[pins]]\n{body}\n"));
        assert_refused(
            &pin("segment = \"s9\"\noptions = [\"cta.c1\"]"),
            "pins[0].segment",
            "unknown segment \"s9\"; accepted: \"s1\", \"s2\"",
        );
        assert_refused(
            &pin("options = []"),
            "pins[0].options",
            "one or more options",
        );
        assert_refused(
            &pin("options = [\"cta.c9\"]"),
            "pins[0].options[0]",
            "unknown option \"cta.c9\"",
        );
        assert_refused(
            &pin("options = [\"cta\"]"),
            "pins[0].options[0]",
            "\"component.option\"",
        );
        assert_refused(
            &pin("options = [\"headline.h3\"]"),
            "pins[0].options[0]",
            "\"headline.h3\" is retired and cannot be pinned",
        );
        assert_refused(
            &pin("options = [\"cta.c1\", \"cta.c2\"]"),
            "pins[0].options[1]",
            "which pins[0].options[0] already pins to \"cta.c1\"; accepted: one pin per component and segment",
        );
        assert_refused(
            &with_pins(
                "\n[[pins]]\noptions = [\"cta.c1\"]\n\n[[pins]]\nsegment = \"s2\"\noptions = [\"cta.c2\"]\n",
            ),
            "pins[1].options[0]",
            "for segment \"s2\"",
        );
        let excluded = format!(
            "{}\n[[exclusions]]\na = \"image.i1\"\nb = \"cta.c1\"\n",
            pin("segment = \"s1\"\noptions = [\"image.i1\", \"cta.c1\"]")
        );
        assert_refused(
            &excluded,
            "pins",
            "the pins of segment \"s1\" leave it no version to serve",
        );
        let all_retired = BASE.replace(
            "options = [{ name = \"i1\", asset = \"img/one.jpg\" }, { name = \"i2\", asset = \"img/two.jpg\" }]",
            "options = [{ name = \"i1\", asset = \"img/one.jpg\", retired = true }, { name = \"i2\", asset = \"img/two.jpg\", retired = true }]",
        );
        assert_refused(
            &all_retired,
            "components[1].options",
            "every option of \"image\" is retired",
        );
        let retired_by_exclusion = format!(
            "{}\n[[exclusions]]\na = \"image.i1\"\nb = \"cta.c1\"\n",
            BASE.replace(
                "{ name = \"i2\", asset = \"img/two.jpg\" }",
                "{ name = \"i2\", asset = \"img/two.jpg\", retired = true }",
            )
            .replace(
                "{ name = \"c2\", text = \"Learn more\", ask = 25 }",
                "{ name = \"c2\", text = \"Learn more\", ask = 25, retired = true }",
            )
        );
        assert_refused(
            &retired_by_exclusion,
            "components",
            "segment \"s1\" has no version left to serve",
        );
        assert_refused(
            &pin("options = [\"cta.c1\"]\nsegmnt = \"s1\""),
            "",
            "unknown field `segmnt`",
        );
    }
}
