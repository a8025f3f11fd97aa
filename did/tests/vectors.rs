//! Goal: the did:key implementation agrees with the W3C did:key vectors.
//! Method: read `../shared/vectors/did-key-ed25519.json` (beside the project)
//! and check every derivation and every input that must be rejected.

use quorate_did::{Did, Keypair};

fn vectors() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/did-key-ed25519.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("conformance vectors missing at {path}: {e}"));
    serde_json::from_str(&text).expect("vector file is JSON")
}

#[test]
fn derives_every_vector_did_from_its_seed() {
    let vectors = vectors();
    let cases = vectors["vectors"].as_array().expect("vectors array");
    assert!(cases.len() >= 5);
    for case in cases {
        let seed: [u8; 32] = hex::decode(case["seed_hex"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let did = Keypair::from_seed(&seed).did();
        assert_eq!(did.to_string(), case["did"].as_str().unwrap());
        let public = bs58::encode(did.public_key_bytes()).into_string();
        assert_eq!(public, case["public_key_base58"].as_str().unwrap());
        let parsed: Did = case["did"].as_str().unwrap().parse().unwrap();
        assert_eq!(parsed, did);
    }
}

#[test]
fn rejects_every_must_reject_input() {
    let vectors = vectors();
    let cases = vectors["must_reject"]
        .as_array()
        .expect("must_reject array");
    assert!(!cases.is_empty());
    for case in cases {
        let input = case["input"].as_str().unwrap();
        let result = input.parse::<Did>();
        assert!(
            result.is_err(),
            "accepted {input:?}, which must be rejected because {}",
            case["why"]
        );
    }
}
