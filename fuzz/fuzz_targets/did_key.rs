//! `did:key` identifiers from outside (`keyid` of a signed request, the
//! CLI, JSON and CBOR): `Did::from_str`, and the 32 raw key bytes.
//!
//! Properties: a parsed DID prints back as exactly the input (one spelling
//! per key), within `DID_LEN_MAX`, and parses again to the same DID; its
//! JSON and canonical CBOR forms round-trip; a DID made from raw key bytes
//! keeps those bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_did::Did;
use quorate_fuzz::round_trip;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(did) = text.parse::<Did>()
    {
        let printed = did.to_string();
        assert_eq!(printed, text, "a DID has another spelling");
        assert!(printed.len() <= 128);
        assert_eq!(printed.parse::<Did>().expect("reparses"), did);
        let json = serde_json::to_string(&did).expect("json");
        assert_eq!(serde_json::from_str::<Did>(&json).expect("json back"), did);
        let cbor = quorate_ledger::codec::encode(&did).expect("cbor");
        assert_eq!(round_trip::<Did>(&cbor), Some(did));
        let document = serde_json::to_string(&did.document()).expect("document");
        assert!(document.contains(&printed));
    }
    if let Ok(bytes) = <[u8; 32]>::try_from(data)
        && let Ok(did) = Did::from_public_key_bytes(&bytes)
    {
        assert_eq!(did.public_key_bytes(), bytes);
        assert_eq!(did.to_string().parse::<Did>().expect("reparses"), did);
    }
    // Also as CBOR (a DID inside an entry or a vote).
    round_trip::<Did>(data);
});
