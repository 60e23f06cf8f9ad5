//! Decision ids that carry, signed, everything an event needs to join its decision.
//!
//! An event names its decision by id. If the process dies after answering a decision and
//! before the decision log reaches the disk, the event must still be attributable; so
//! the id itself holds the campaign, segment, version, model version, propensity and
//! time of the decision, followed by the first 16 bytes of an HMAC-SHA256 tag under the
//! server's secret. The server verifies the tag in constant time and never trusts an id
//! it did not sign. Layout (little-endian), then base64url without padding:
//! `4 | campaign id length (1 byte) | campaign id | segment u32 | version u64 |
//! model version u64 | propensity f64 | time ms i64 | nonce u64 | revision u32 |
//! held out u8 | model seq u64 | tag [16]`. The segment and version are indices of the
//! campaign's revision `revision`; `held out` is 1 when the decision's unit was in the
//! campaign's holdout (its propensity is then the even split's, given the arm), so a
//! decision restored from an event's id keeps its arm; `model seq` is the event-log
//! sequence (on a shared stream, the stream sequence) the server's models had applied
//! when it decided, so an event says which prefix of the log its decision came from.
//! Ids of layout 3 (before the model seq) verify with model seq 0; ids of layout 2
//! (before holdouts, without that byte either) as not held out; ids of layout 1 (before
//! revisions, without the revision either) as revision 1, not held out.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const LAYOUT: u8 = 4;

/// The layout before the model seq: read as model seq 0.
const LAYOUT_V3: u8 = 3;

/// The layout before holdouts: no held-out byte, read as not held out.
const LAYOUT_V2: u8 = 2;

/// The layout before revisions: no revision field, read as revision 1.
const LAYOUT_V1: u8 = 1;

/// Bytes after the campaign id: segment, version, model version, propensity, time and
/// nonce (layout 1), then the revision (layout 2), then the held-out byte (layout 3),
/// then the model seq (layout 4).
const FIELDS_V1: usize = 44;
const FIELDS_V2: usize = FIELDS_V1 + 4;
const FIELDS_V3: usize = FIELDS_V2 + 1;
const FIELDS: usize = FIELDS_V3 + 8;
const TAG_BYTES: usize = 16;

/// The version a skip's signed id carries (a skip serves none): events naming it are
/// refused.
pub const SKIPPED_VERSION: u64 = u64::MAX;

/// What a decision id says about its decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionClaims {
    /// Campaign id.
    pub campaign_id: String,
    /// Segment index.
    pub segment: u32,
    /// Version index.
    pub version: u64,
    /// Model version that decided.
    pub model_version: u64,
    /// Propensity logged.
    pub propensity: f64,
    /// Decision time, ms since the Unix epoch.
    pub at_ms: i64,
    /// Random nonce, so two equal decisions get distinct ids.
    pub nonce: u64,
    /// The campaign's revision the decision was served under; `segment` and
    /// `version` are indices of that revision's spec.
    pub revision: u32,
    /// Whether the decision's unit was in the campaign's holdout.
    pub held_out: bool,
    /// The event-log sequence the server's models had applied when it decided (on a
    /// shared stream, the stream sequence); 0 for ids of layouts before 4.
    pub model_seq: u64,
}

/// Signs and verifies decision ids.
#[derive(Clone)]
pub struct DecisionSigner {
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for DecisionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionSigner(..)")
    }
}

impl DecisionSigner {
    /// A signer with the server's secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length"),
        }
    }

    /// The id of a decision.
    pub fn sign(&self, claims: &DecisionClaims) -> String {
        let id = claims.campaign_id.as_bytes();
        debug_assert!(id.len() <= 255);
        let mut bytes = Vec::with_capacity(2 + id.len() + FIELDS + TAG_BYTES);
        bytes.push(LAYOUT);
        bytes.push(id.len() as u8);
        bytes.extend_from_slice(id);
        bytes.extend_from_slice(&claims.segment.to_le_bytes());
        bytes.extend_from_slice(&claims.version.to_le_bytes());
        bytes.extend_from_slice(&claims.model_version.to_le_bytes());
        bytes.extend_from_slice(&claims.propensity.to_bits().to_le_bytes());
        bytes.extend_from_slice(&claims.at_ms.to_le_bytes());
        bytes.extend_from_slice(&claims.nonce.to_le_bytes());
        bytes.extend_from_slice(&claims.revision.to_le_bytes());
        bytes.push(u8::from(claims.held_out));
        bytes.extend_from_slice(&claims.model_seq.to_le_bytes());
        let mut mac = self.key.clone();
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The claims of an id this server signed, or why it is refused.
    pub fn verify(&self, id: &str) -> Result<DecisionClaims, &'static str> {
        const REFUSED: &str = "is not a decision id issued by this server";
        if id.len() > 512 {
            return Err(REFUSED);
        }
        let bytes = URL_SAFE_NO_PAD.decode(id).map_err(|_| REFUSED)?;
        if bytes.len() < 2 + TAG_BYTES
            || !matches!(bytes[0], LAYOUT | LAYOUT_V3 | LAYOUT_V2 | LAYOUT_V1)
        {
            return Err(REFUSED);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let mut mac = self.key.clone();
        mac.update(payload);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(tag).map_err(|_| REFUSED)?;
        let id_len = payload[1] as usize;
        let fields = match payload[0] {
            LAYOUT => FIELDS,
            LAYOUT_V3 => FIELDS_V3,
            LAYOUT_V2 => FIELDS_V2,
            _ => FIELDS_V1,
        };
        if payload.len() != 2 + id_len + fields {
            return Err(REFUSED);
        }
        let campaign_id = std::str::from_utf8(&payload[2..2 + id_len])
            .map_err(|_| REFUSED)?
            .to_string();
        let rest = &payload[2 + id_len..];
        let u64_at = |i: usize| u64::from_le_bytes(rest[i..i + 8].try_into().expect("8 bytes"));
        Ok(DecisionClaims {
            campaign_id,
            segment: u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")),
            version: u64_at(4),
            model_version: u64_at(12),
            propensity: f64::from_bits(u64_at(20)),
            at_ms: u64_at(28) as i64,
            nonce: u64_at(36),
            revision: if fields >= FIELDS_V2 {
                u32::from_le_bytes(rest[44..48].try_into().expect("4 bytes"))
            } else {
                1
            },
            held_out: match fields {
                FIELDS | FIELDS_V3 => match rest[48] {
                    0 => false,
                    1 => true,
                    _ => return Err(REFUSED),
                },
                _ => false,
            },
            model_seq: if fields == FIELDS {
                u64_at(FIELDS_V3)
            } else {
                0
            },
        })
    }
}

/// The revision a decision id says its decision was served under, read without
/// checking its tag: for ids already verified when their event was taken (the event
/// log holds only those). `None` for text that is not a decision id.
pub fn revision_of(id: &str) -> Option<u32> {
    let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
    let id_len = *bytes.get(1)? as usize;
    match bytes[0] {
        LAYOUT_V1 => Some(1),
        LAYOUT | LAYOUT_V3 | LAYOUT_V2 => {
            let at = 2 + id_len + FIELDS_V1;
            let field = bytes.get(at..at + 4)?;
            Some(u32::from_le_bytes(field.try_into().ok()?))
        }
        _ => None,
    }
}

/// Whether a decision id says its unit was held out, read without checking its tag
/// (as [`revision_of`]); ids of layouts before holdouts, and text that is not an id,
/// say no.
pub fn held_out_of(id: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(id) else {
        return false;
    };
    let Some(&id_len) = bytes.get(1) else {
        return false;
    };
    matches!(bytes[0], LAYOUT | LAYOUT_V3) && bytes.get(2 + id_len as usize + FIELDS_V2) == Some(&1)
}

/// The model seq a decision id carries (see the module documentation), read without
/// checking its tag (as [`revision_of`]): 0 for ids of layouts before 4, `None` for
/// text that is not a decision id.
pub fn model_seq_of(id: &str) -> Option<u64> {
    let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
    let id_len = *bytes.get(1)? as usize;
    match bytes[0] {
        LAYOUT => {
            let at = 2 + id_len + FIELDS_V3;
            let field = bytes.get(at..at + 8)?;
            Some(u64::from_le_bytes(field.try_into().ok()?))
        }
        LAYOUT_V3 | LAYOUT_V2 | LAYOUT_V1 => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> DecisionClaims {
        DecisionClaims {
            campaign_id: "c_0123456789ab".into(),
            segment: 7,
            version: 1_234_567,
            model_version: 42,
            propensity: 0.0123,
            at_ms: 1_790_000_000_000,
            nonce: 99,
            revision: 3,
            held_out: true,
            model_seq: 123_456,
        }
    }

    #[test]
    fn round_trips_and_refuses_forgeries() {
        let signer = DecisionSigner::new(b"secret one");
        let id = signer.sign(&claims());
        assert_eq!(signer.verify(&id).unwrap(), claims());
        assert!(DecisionSigner::new(b"secret two").verify(&id).is_err());
        let mut tampered = URL_SAFE_NO_PAD.decode(&id).unwrap();
        tampered[20] ^= 1;
        assert!(signer.verify(&URL_SAFE_NO_PAD.encode(tampered)).is_err());
        for junk in ["", "x", "!!!!", &"A".repeat(600)] {
            assert!(signer.verify(junk).is_err());
        }
        assert_eq!(revision_of(&id), Some(3));
        assert!(held_out_of(&id));
        assert!(!held_out_of("x"));
        assert_eq!(model_seq_of(&id), Some(123_456));
        assert_eq!(model_seq_of("x"), None);
        // The model seq is signed with the rest.
        let mut tampered = URL_SAFE_NO_PAD.decode(&id).unwrap();
        let at = tampered.len() - TAG_BYTES - 1;
        tampered[at] ^= 1;
        assert!(signer.verify(&URL_SAFE_NO_PAD.encode(tampered)).is_err());
    }

    #[test]
    fn ids_of_the_layout_before_the_model_seq_verify_with_model_seq_zero() {
        let signer = DecisionSigner::new(b"secret one");
        let id = signer.sign(&claims());
        let mut bytes = URL_SAFE_NO_PAD.decode(&id).unwrap();
        bytes.truncate(bytes.len() - TAG_BYTES - 8);
        bytes[0] = LAYOUT_V3;
        let mut mac = signer.key.clone();
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_BYTES]);
        let old = URL_SAFE_NO_PAD.encode(bytes);
        let verified = signer.verify(&old).unwrap();
        assert_eq!(
            verified,
            DecisionClaims {
                model_seq: 0,
                ..claims()
            }
        );
        assert_eq!(revision_of(&old), Some(3));
        assert!(held_out_of(&old));
        assert_eq!(model_seq_of(&old), Some(0));
    }

    #[test]
    fn ids_of_the_layout_before_revisions_verify_as_revision_one() {
        let signer = DecisionSigner::new(b"secret one");
        let id = signer.sign(&claims());
        let mut bytes = URL_SAFE_NO_PAD.decode(&id).unwrap();
        bytes.truncate(bytes.len() - TAG_BYTES - 13);
        bytes[0] = LAYOUT_V1;
        let mut mac = signer.key.clone();
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_BYTES]);
        let old = URL_SAFE_NO_PAD.encode(bytes);
        let claims = signer.verify(&old).unwrap();
        assert_eq!(claims.revision, 1);
        assert!(!claims.held_out);
        assert_eq!(claims.version, 1_234_567);
        assert_eq!(revision_of(&old), Some(1));
    }

    #[test]
    fn ids_of_the_layout_before_holdouts_verify_as_not_held_out() {
        let signer = DecisionSigner::new(b"secret one");
        let id = signer.sign(&claims());
        let mut bytes = URL_SAFE_NO_PAD.decode(&id).unwrap();
        bytes.truncate(bytes.len() - TAG_BYTES - 9);
        bytes[0] = LAYOUT_V2;
        let sign = |bytes: &mut Vec<u8>| {
            let mut mac = signer.key.clone();
            mac.update(bytes);
            let tag = mac.finalize().into_bytes();
            bytes.extend_from_slice(&tag[..TAG_BYTES]);
        };
        sign(&mut bytes);
        let old = URL_SAFE_NO_PAD.encode(&bytes);
        let claims = signer.verify(&old).unwrap();
        assert_eq!((claims.revision, claims.held_out), (3, false));
        assert_eq!(revision_of(&old), Some(3));
        // A held-out byte other than 0 or 1 is refused, even when signed.
        let mut bad = URL_SAFE_NO_PAD.decode(&id).unwrap();
        bad.truncate(bad.len() - TAG_BYTES);
        // The held-out byte comes before the 8 bytes of the model seq.
        let at = bad.len() - 9;
        bad[at] = 2;
        sign(&mut bad);
        assert!(signer.verify(&URL_SAFE_NO_PAD.encode(&bad)).is_err());
        // Not held out round-trips too.
        let plain = DecisionClaims {
            held_out: false,
            ..claims
        };
        assert_eq!(signer.verify(&signer.sign(&plain)).unwrap(), plain);
    }
}
