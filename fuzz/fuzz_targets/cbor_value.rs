//! The canonical-CBOR structural validator (`codec::validate`) against the
//! generic CBOR data model: whatever the validator accepts, ciborium reads
//! as a `Value` that re-encodes to exactly the same bytes, and whatever it
//! refuses, the typed decoder refuses too. Smaller limits only ever refuse
//! more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_ledger::codec::{self, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let valid = codec::validate(data, &limits).is_ok();
    match codec::decode::<ciborium::Value>(data) {
        Ok(value) => {
            assert!(valid, "decode accepted what validate refuses");
            assert_eq!(codec::encode(&value).expect("encodes"), data);
        }
        Err(e) => assert!(
            !valid,
            "validate accepted bytes that are not a canonical CBOR value: {e}"
        ),
    }
    // Tighter limits derived from the input: never accept more.
    if let Some((&a, _)) = data.split_first() {
        let tight = Limits {
            bytes_max: data.len().saturating_sub(usize::from(a & 1)),
            depth_max: u32::from(a >> 4),
            items_max: u32::from(a) + 1,
        };
        if codec::validate(data, &tight).is_ok() {
            assert!(valid, "tighter limits accepted what the defaults refuse");
        }
    }
});
