//! A signed access request: what a member asks of another, as it travels
//! over libp2p and as both keep it. The requester signs it, so the owner
//! holds proof of who asked for what; its id is the hash of what was
//! signed, so it names one request everywhere.

use quorate_api::local::access_requests::{DECLINE_REASON_BYTES_MAX, MESSAGE_BYTES_MAX};
use quorate_contracts::{Action, ResourcePattern};
use quorate_did::{Did, Keypair, Signature};
use quorate_ledger::hash::{Hash, hash_tagged};
use serde::{Deserialize, Serialize};

/// Domain tag of a request's signed bytes.
const REQUEST_TAG: &[u8] = b"QUORATE_ACCESS_REQUEST_V1";
/// The blake3 context of a request's id.
pub const REQUEST_ID_CONTEXT: &str = "quorate 2026 access request v1";
/// Most resource patterns one request asks for (as a grant holds).
pub const REQUEST_RESOURCES_MAX: usize = 32;
/// Longest purpose, in bytes (as a grant's).
pub const PURPOSE_BYTES_MAX: usize = 256;
/// Longest offer id.
pub const OFFER_ID_BYTES_MAX: usize = 64;
/// How far a request's time may be from the owner's clock.
pub const REQUEST_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// What a requester asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequestBody {
    /// The chain (its genesis hash): a request is good on one consortium.
    pub chain: Hash,
    /// The requester's key when it asked.
    pub requester: Did,
    /// The owner's key.
    pub owner: Did,
    /// The owner's offer it answers, if any.
    pub offer: Option<String>,
    /// Patterns of the owner's objects.
    pub resources: Vec<String>,
    /// Actions.
    pub actions: Vec<Action>,
    /// From when (ms); from acceptance if absent.
    pub not_before_ms: Option<u64>,
    /// Until when (ms, exclusive); exactly one of this and `duration_ms`.
    pub not_after_ms: Option<u64>,
    /// How long from acceptance (ms).
    pub duration_ms: Option<u64>,
    /// The grant's purpose.
    pub purpose: Option<String>,
    /// A note for the owner's approvers.
    pub message: Option<String>,
    /// When the requester made it (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// Random: two requests of the same terms are two requests.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 16],
}

/// A request and the requester's signature of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAccessRequest {
    /// What is asked.
    pub body: AccessRequestBody,
    /// The requester's signature of `"QUORATE_ACCESS_REQUEST_V1" ‖
    /// canonical CBOR of body`.
    pub signature: Signature,
}

/// Why a request is refused before it is queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A term is missing, malformed or out of bounds.
    #[error("{0}")]
    Terms(String),
    /// The signature is not the requester's.
    #[error("the request is not signed by its requester")]
    BadSignature,
    /// The request cannot be encoded (too deep or too large).
    #[error("the request cannot be encoded")]
    Encoding,
}

impl AccessRequestBody {
    /// The bytes signed and hashed.
    fn signed_bytes(&self) -> Result<Vec<u8>, RequestError> {
        let body = quorate_ledger::codec::encode(self).map_err(|_| RequestError::Encoding)?;
        let mut bytes = Vec::with_capacity(REQUEST_TAG.len() + body.len());
        bytes.extend_from_slice(REQUEST_TAG);
        bytes.extend_from_slice(&body);
        Ok(bytes)
    }

    /// Checks every bound and rule a request must meet, whoever reads it;
    /// returns its patterns parsed. `grant_ms_max` is the consortium's
    /// longest grant.
    pub fn check(&self, grant_ms_max: u64) -> Result<Vec<ResourcePattern>, RequestError> {
        let terms = |why: String| RequestError::Terms(why);
        if self.resources.is_empty() || self.resources.len() > REQUEST_RESOURCES_MAX {
            return Err(terms(format!(
                "ask for 1 to {REQUEST_RESOURCES_MAX} resource patterns"
            )));
        }
        let patterns = self
            .resources
            .iter()
            .map(|r| ResourcePattern::parse(r).map_err(|e| terms(format!("resource {r:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut actions = self.actions.clone();
        actions.sort();
        actions.dedup();
        if actions.is_empty() || actions.len() != self.actions.len() {
            return Err(terms("name each action once, at least one".to_owned()));
        }
        match (self.not_after_ms, self.duration_ms) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(terms(
                    "give exactly one of an end (not_after_ms) and a duration (duration_ms)"
                        .to_owned(),
                ));
            }
            (None, Some(0)) => return Err(terms("the duration must be longer than 0".to_owned())),
            (None, Some(d)) if d > grant_ms_max => {
                return Err(terms(format!(
                    "{} is longer than the consortium's longest grant, {}",
                    quorate_contracts::human_duration_ms(d),
                    quorate_contracts::human_duration_ms(grant_ms_max)
                )));
            }
            (Some(end), None) => {
                let start = self.not_before_ms.unwrap_or(self.created_at_ms);
                if end <= start {
                    return Err(terms("the end must come after the start".to_owned()));
                }
                if end - start > grant_ms_max {
                    return Err(terms(format!(
                        "{} from its start is longer than the consortium's longest grant, {}",
                        quorate_contracts::human_duration_ms(end - start),
                        quorate_contracts::human_duration_ms(grant_ms_max)
                    )));
                }
            }
            _ => {}
        }
        for (field, text, max) in [
            ("purpose", &self.purpose, PURPOSE_BYTES_MAX),
            ("message", &self.message, MESSAGE_BYTES_MAX),
            ("offer", &self.offer, OFFER_ID_BYTES_MAX),
        ] {
            if let Some(text) = text
                && (text.is_empty() || text.len() > max)
            {
                return Err(terms(format!("{field}: 1 to {max} bytes")));
            }
        }
        Ok(patterns)
    }

    /// How long the grant would last (ms), from `accepted_ms` if it counts
    /// from acceptance.
    pub fn span_ms(&self, accepted_ms: u64) -> u64 {
        let start = self.not_before_ms.unwrap_or(accepted_ms).max(accepted_ms);
        match (self.not_after_ms, self.duration_ms) {
            (Some(end), _) => end.saturating_sub(start),
            (None, Some(d)) => d,
            (None, None) => 0,
        }
    }
}

impl SignedAccessRequest {
    /// `key` signs `body` (whose `requester` must be `key`'s did).
    pub fn sign(body: AccessRequestBody, key: &Keypair) -> Result<Self, RequestError> {
        let signature = key.sign(&body.signed_bytes()?);
        Ok(Self { body, signature })
    }

    /// Its id: `blake3-derive-key(REQUEST_ID_CONTEXT, signed bytes)`.
    pub fn id(&self) -> Result<Hash, RequestError> {
        Ok(hash_tagged(REQUEST_ID_CONTEXT, &self.body.signed_bytes()?))
    }

    /// Whether the requester signed it.
    pub fn verify(&self) -> Result<(), RequestError> {
        let bytes = self.body.signed_bytes()?;
        if quorate_ledger::verified::verify(&self.body.requester, &bytes, &self.signature) {
            Ok(())
        } else {
            Err(RequestError::BadSignature)
        }
    }
}

/// `reason` trimmed and checked for a decline.
pub fn decline_reason(reason: &str) -> Result<String, RequestError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > DECLINE_REASON_BYTES_MAX {
        return Err(RequestError::Terms(format!(
            "a reason of 1 to {DECLINE_REASON_BYTES_MAX} bytes"
        )));
    }
    Ok(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn body(requester: &Keypair, owner: &Keypair) -> AccessRequestBody {
        AccessRequestBody {
            chain: Hash([9; 32]),
            requester: requester.did(),
            owner: owner.did(),
            offer: None,
            resources: vec!["datasets/shipments/*".into()],
            actions: vec![Action::Read],
            not_before_ms: None,
            not_after_ms: None,
            duration_ms: Some(86_400_000),
            purpose: Some("customs clearance".into()),
            message: None,
            created_at_ms: 1_000,
            nonce: [1; 16],
        }
    }

    #[test]
    fn a_request_is_bound_to_its_signer_and_every_term() {
        let (b, a) = (Keypair::from_seed(&[2; 32]), Keypair::from_seed(&[1; 32]));
        let signed = SignedAccessRequest::sign(body(&b, &a), &b).unwrap();
        signed.verify().unwrap();
        let mut changed = signed.clone();
        changed.body.resources = vec!["*".into()];
        assert_eq!(changed.verify(), Err(RequestError::BadSignature));
        assert_ne!(changed.id().unwrap(), signed.id().unwrap());
        let mut other_signer = signed.clone();
        other_signer.body.requester = a.did();
        assert_eq!(other_signer.verify(), Err(RequestError::BadSignature));
    }

    #[test]
    fn terms_out_of_bounds_are_refused_with_what_to_fix() {
        let (b, a) = (Keypair::from_seed(&[2; 32]), Keypair::from_seed(&[1; 32]));
        let max = 365 * 86_400_000;
        assert!(body(&b, &a).check(max).is_ok());
        let refused = |f: &dyn Fn(&mut AccessRequestBody)| {
            let mut x = body(&b, &a);
            f(&mut x);
            x.check(max).unwrap_err().to_string()
        };
        assert!(refused(&|x| x.resources.clear()).contains("resource patterns"));
        assert!(refused(&|x| x.resources = vec!["../x".into()]).contains("resource"));
        assert!(refused(&|x| x.actions = vec![Action::Read, Action::Read]).contains("once"));
        assert!(refused(&|x| x.not_after_ms = Some(5_000)).contains("exactly one"));
        assert!(refused(&|x| x.duration_ms = Some(max + 1)).contains("longest grant"));
        assert!(refused(&|x| x.purpose = Some("x".repeat(257))).contains("purpose"));
        assert!(
            refused(&|x| {
                x.duration_ms = None;
                x.not_after_ms = Some(500);
            })
            .contains("after the start")
        );
    }
}
