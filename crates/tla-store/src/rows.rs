//! The rows of the tables other than the event log.

/// Whether a campaign is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CampaignStatus {
    /// Decisions are served.
    Active,
    /// Decisions are refused; events for earlier decisions are still accepted.
    Paused,
    /// Retired for good: decisions are refused and the campaign cannot be resumed;
    /// events for earlier decisions are still accepted, history and reports kept.
    Archived,
}

impl CampaignStatus {
    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Active => "active",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Archived => "archived",
        }
    }

    /// Parses a name written by [`CampaignStatus::as_str`].
    pub fn from_name(name: &str) -> Option<CampaignStatus> {
        match name {
            "active" => Some(CampaignStatus::Active),
            "paused" => Some(CampaignStatus::Paused),
            "archived" => Some(CampaignStatus::Archived),
            _ => None,
        }
    }
}

/// A campaign as stored: the spec is kept as the JSON text the server validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRow {
    /// Unique id chosen by the server.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The validated campaign spec, as JSON text; the store does not parse it.
    pub spec_json: String,
    /// Whether the campaign is being served.
    pub status: CampaignStatus,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// One logged decision: the creative chosen for one impression opportunity, with the
/// exact probability the policy chose it with.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    /// Unique id of the decision; appending the same id again is a no-op.
    pub decision_id: String,
    /// The campaign it was made for.
    pub campaign_id: String,
    /// The segment it was made for.
    pub segment: u32,
    /// The creative (version index) chosen. At most `i64::MAX`.
    pub version: u64,
    /// Probability that the policy would have chosen this creative here, in (0, 1].
    pub propensity: f64,
    /// Version of the model (decision distribution) that made the choice. At most
    /// `i64::MAX`.
    pub model_version: u64,
    /// Decision time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// For a skip (a campaign with a budget declined the opportunity), the reason's
    /// code ([`tla_core::pacing::SkipReason::as_str`]); `version` is then 0 and means
    /// nothing. `None`: the version was served.
    pub skip: Option<String>,
    /// The campaign's revision the decision was served under (1 at creation); its
    /// `segment` and `version` are indices of that revision's spec.
    pub revision: u32,
    /// Whether the decision's unit was in the campaign's holdout (served the even
    /// split; `propensity` is then the even split's, given the arm).
    pub held_out: bool,
}

/// An API key. The server hashes the secret; only the hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Public id of the key (the part of the token that is not secret).
    pub id: String,
    /// Hash of the secret (for example SHA-256), computed by the server.
    pub hash: [u8; 32],
    /// What the key may do, e.g. `"decide"`, `"events:write"`, `"admin"`.
    pub scopes: Vec<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// A revoked key authenticates nothing; it is kept for the audit trail.
    pub revoked: bool,
    /// Free text saying what the key is for.
    pub label: String,
}
