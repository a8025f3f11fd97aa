//! Key files (`key.pem` in a node home, `--key FILE`): the contents that
//! `keyfile::load` parses once it has checked the file's mode and size.
//!
//! Properties: a parsed key is a working Ed25519 key (what it signs, its
//! DID verifies); its PEM encoding (PKCS#8 v1, what we write) parses back
//! to the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_did::{Keypair, keyfile};

fuzz_target!(|data: &[u8]| {
    // `load` refuses larger files before reading them.
    if data.len() as u64 > keyfile::KEY_FILE_BYTES_MAX {
        return;
    }
    let Ok(key) = keyfile::parse(data) else {
        return;
    };
    let signature = key.sign(data);
    key.did()
        .verify(data, &signature)
        .expect("a parsed key's signature verifies");
    let pem = key.to_pkcs8_pem();
    let again = keyfile::parse(pem.as_bytes()).expect("our own PEM parses");
    assert_eq!(again.did(), key.did());
    assert_eq!(*again.secret_seed(), *key.secret_seed());
    assert_eq!(
        Keypair::from_pkcs8_pem(&pem).expect("parses").did(),
        key.did()
    );
});
