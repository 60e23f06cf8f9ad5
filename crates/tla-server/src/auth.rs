//! API keys and scopes.
//!
//! A key reads `tla_<id>_<secret>`: a public id of 12 hex digits and a secret of 32. Only
//! SHA-256 of the secret is stored; a presented key is looked up by id and its hash
//! compared in constant time. Scopes: `admin` (campaigns, their budgets and keys, and
//! everything else), `decide`, `ingest` (events and spend reports), `read`, `correct`
//! (retract or correct stored events).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Create, pause and resume campaigns; change their budgets; manage keys; and
    /// everything below.
    Admin,
    /// Ask for decisions.
    Decide,
    /// Send events and spend reports.
    Ingest,
    /// Read campaigns, versions, reports, metrics.
    Read,
    /// Retract or correct stored events (audited with the key's id). Apart from
    /// `ingest`, so a key that sends events cannot rewrite what was learned.
    Correct,
}

impl Scope {
    /// Every scope, in the order of the docs.
    pub const ALL: [Scope; 5] = [
        Scope::Admin,
        Scope::Decide,
        Scope::Ingest,
        Scope::Read,
        Scope::Correct,
    ];

    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Decide => "decide",
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Correct => "correct",
        }
    }

    /// Parses a scope name.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A freshly created key: its public id and the full token, shown once.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Public id.
    pub id: String,
    /// The token the client presents: `tla_<id>_<secret>`.
    pub token: String,
    /// SHA-256 of the secret, to store.
    pub hash: [u8; 32],
}

/// Hash of a key secret.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Makes a new key from 22 random bytes.
pub fn new_key(random: [u8; 22]) -> NewKey {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let id = hex(&random[..6]);
    let secret = hex(&random[6..]);
    NewKey {
        token: format!("tla_{id}_{secret}"),
        hash: hash_secret(&secret),
        id,
    }
}

/// Splits a presented token into (id, secret).
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("tla_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 12) && hex(secret, 32)).then_some((id, secret))
}

/// Whether the presented secret matches the stored hash (constant time).
pub fn secret_matches(secret: &str, stored: &[u8; 32]) -> bool {
    hash_secret(secret).ct_eq(stored).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_match_only_their_hash() {
        let key = new_key([7; 22]);
        let (id, secret) = parse_token(&key.token).unwrap();
        assert_eq!(id, key.id);
        assert!(secret_matches(secret, &key.hash));
        assert!(!secret_matches("0".repeat(32).as_str(), &key.hash));
        for bad in [
            "",
            "tla_",
            "tla_abc_def",
            "xyz_0123456789ab_0123456789abcdef0123456789abcdef",
        ] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
        assert_eq!(Scope::parse("ingest"), Some(Scope::Ingest));
        assert_eq!(Scope::parse("write"), None);
    }
}
