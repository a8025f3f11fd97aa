//! What a signed request costs before any grant is checked: decoding the
//! caller's did:key (base58 + point decompression) and one strict Ed25519
//! verification, beside signing.
//!
//! `cargo bench -p quorate-did --bench keys`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use quorate_did::{Did, Keypair};

fn keys(c: &mut Criterion) {
    let key = Keypair::from_seed(&[7; 32]);
    let did = key.did().to_string();
    let message = b"QUORATE_BENCH_V1 \"@method\": GET\n\"@target-uri\": http://127.0.0.1:7700/gateway/objects/a";
    let signature = key.sign(message);
    let parsed: Did = did.parse().expect("a did:key");

    c.bench_function("did:key decode", |b| {
        b.iter(|| black_box(&did).parse::<Did>().expect("a did:key"))
    });
    c.bench_function("ed25519 verify_strict", |b| {
        b.iter(|| {
            parsed
                .verify(black_box(message), black_box(&signature))
                .expect("verifies")
        })
    });
    c.bench_function("ed25519 sign", |b| b.iter(|| key.sign(black_box(message))));
}

criterion_group!(benches, keys);
criterion_main!(benches);
