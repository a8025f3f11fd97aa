//! DID documents, as the did:key method derives them from the key alone.

use serde::{Deserialize, Serialize};

use crate::Did;

const DID_CONTEXT: &str = "https://www.w3.org/ns/did/v1";
const ED25519_2020_CONTEXT: &str = "https://w3id.org/security/suites/ed25519-2020/v1";
const ED25519_2020_TYPE: &str = "Ed25519VerificationKey2020";

/// The DID document of an Ed25519 `did:key`: one verification method, the
/// key itself, referenced by every verification relationship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DidDocument {
    /// JSON-LD contexts.
    #[serde(rename = "@context")]
    pub context: Vec<String>,
    /// The DID itself.
    pub id: String,
    /// The single Ed25519 verification method.
    pub verification_method: Vec<VerificationMethod>,
    /// Methods that may authenticate as the DID subject.
    pub authentication: Vec<String>,
    /// Methods that may issue assertions (sign ledger entries, endorsements).
    pub assertion_method: Vec<String>,
    /// Methods that may invoke capabilities (sign gateway requests).
    pub capability_invocation: Vec<String>,
    /// Methods that may delegate capabilities.
    pub capability_delegation: Vec<String>,
}

/// A verification method entry of a DID document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerificationMethod {
    /// `did:key:z…#z…`.
    pub id: String,
    /// `Ed25519VerificationKey2020`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The DID that controls this key (the DID itself).
    pub controller: String,
    /// The public key, multibase (`z6Mk…`).
    pub public_key_multibase: String,
}

impl Did {
    /// The DID document the did:key method defines for this key.
    pub fn document(&self) -> DidDocument {
        let id = self.to_string();
        let method_id = format!("{id}#{}", self.multibase_key());
        let relationship = vec![method_id.clone()];
        DidDocument {
            context: vec![DID_CONTEXT.to_owned(), ED25519_2020_CONTEXT.to_owned()],
            verification_method: vec![VerificationMethod {
                id: method_id,
                kind: ED25519_2020_TYPE.to_owned(),
                controller: id.clone(),
                public_key_multibase: self.multibase_key(),
            }],
            id,
            authentication: relationship.clone(),
            assertion_method: relationship.clone(),
            capability_invocation: relationship.clone(),
            capability_delegation: relationship,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Keypair;

    #[test]
    fn every_relationship_references_the_one_key() {
        let did = Keypair::from_seed(&[3; 32]).did();
        let doc = did.document();
        let method = &doc.verification_method[0];
        assert_eq!(doc.id, did.to_string());
        assert_eq!(method.id, format!("{did}#{}", did.multibase_key()));
        assert_eq!(method.controller, doc.id);
        for rel in [
            &doc.authentication,
            &doc.assertion_method,
            &doc.capability_invocation,
            &doc.capability_delegation,
        ] {
            assert_eq!(rel, &vec![method.id.clone()]);
        }
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json["verificationMethod"][0]["type"],
            "Ed25519VerificationKey2020"
        );
        assert!(json.get("capabilityInvocation").is_some());
    }
}
