//! # tla-core: the pure statistical core of TLA
//!
//! TLA (Test, Learn, Adapt) chooses which ad version each impression sees, learns from
//! what happened which components work for which audience segment, and moves traffic
//! toward what raises the most. This crate holds everything that is mathematics and
//! nothing that touches the outside world: no I/O, no clock, no environment, no global
//! random number generator. Randomness is passed in as `&mut impl Rng`, time as numbers.
//! The same seed gives the same decisions.
//!
//! - [`spec`]: the campaign spec (TOML or JSON text in, validated [`design::Design`] out).
//! - [`space`]: the version space, indexed in mixed radix, never materialized.
//! - [`availability`]: which versions each segment may be served (retired options, pins).
//! - [`revision`]: a running campaign taking a new spec, matched by name, keeping what
//!   it learned.
//! - [`asks`]: whether an option, and so a version, asks the reader to act.
//! - [`model`]: the factorized Bayesian conversion model and the donation value model,
//!   and how they forget old events ([`model::forgetting`]).
//! - [`policy`]: uniform, independent Thompson sampling, factorized Thompson sampling,
//!   and the exploration floor that wraps any of them.
//! - [`engine`]: one live campaign: decides, learns from events in log order, snapshots.
//! - [`decision`]: per-segment decision distributions sampled in O(1), with the exact
//!   propensity of every decision.
//! - [`pacing`]: spending a flight's budget toward value per dollar: the cost model,
//!   the traffic forecast, the price of money, reservations and the skip.
//! - [`report`]: the campaign report: summary, leaderboards, posterior intervals, lift.
//! - [`holdout`]: a sticky share of units served the even split, and the lift of the
//!   policy against it with a confidence sequence valid at every look.
//! - [`ope`]: off-policy evaluation on logged decisions: IPS, SNIPS, cross-fitted DR;
//!   the targets evaluated (one grammar for their text), the direct model, and their
//!   evaluation on an imported log or a campaign's own log.
//! - [`timestamp`]: RFC 3339 timestamps (flight dates, spend report periods) to and
//!   from milliseconds since the Unix epoch.
//! - [`target`]: target policies learned from a log (factorized Thompson sampling
//!   trained on logged rows) for off-policy evaluation.
//!
//! Cargo features: `serde` (default) derives Serialize/Deserialize on the spec and
//! report types; `text` (default) parses specs from TOML and JSON; `openapi` derives
//! OpenAPI schemas (utoipa) on the types the HTTP API serves.
//!
//! ```
//! use tla_core::space::VersionSpace;
//! let space = VersionSpace::product(vec![24, 24, 16, 16]).unwrap();
//! assert_eq!(space.total(), 147_456);
//! let index = space.encode(&[3, 5, 0, 15]);
//! assert_eq!(space.decode(index), vec![3, 5, 0, 15]);
//! ```

#![warn(missing_docs)]

pub mod asks;
pub mod availability;
pub mod decision;
pub mod design;
pub mod engine;
pub mod holdout;
pub mod model;
pub mod ope;
pub mod pacing;
pub mod plan;
pub mod policy;
pub mod report;
pub mod revision;
pub mod snapshot;
pub mod space;
pub mod spec;
pub mod stats;
pub mod target;
pub mod timestamp;
