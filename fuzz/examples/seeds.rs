//! Writes the seed corpora, `<dir>/<target>/<name>`, from real values: the
//! ledger's consortium fixture (a chain with a membership change, grants
//! and a revocation; its grant proof and export; a full agreement round),
//! the conformance vectors in `../shared/vectors`, and the shipped config
//! example. Run by `fuzz/seed.sh`; the output is committed.
//!
//! Usage: `cargo run --example seeds -- <corpus dir> <shared vectors dir> <repo root>`

use std::fs;
use std::path::{Path, PathBuf};

use quorate_api::objects::{ByteRange, Listing, ObjectInfo};
use quorate_api::signature::{AUDIENCE_HEADER, RequestParts, content_digest_sha256, sign_request};
use quorate_contracts::Body;
use quorate_did::Keypair;
use quorate_fuzz::{fixture, frame, round_messages};
use quorate_ledger::codec::encode;
use quorate_ledger::consensus::{Message, PersistedState, Step};
use quorate_ledger::entry::Proposal;
use quorate_ledger::export::ExportHeader;
use quorate_ledger::merkle;
use quorate_node::net::protocol::{ConsensusMessage, Denial, MempoolMessage, Request, Response};
use serde::Serialize;

struct Corpus {
    root: PathBuf,
}

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(name), bytes).expect("seed");
    }

    /// A selector byte, then the canonical CBOR of `value`.
    fn cbor<T: Serialize>(&self, target: &str, name: &str, kind: u8, value: &T) {
        let mut bytes = vec![kind];
        bytes.extend(encode(value).expect("encodes"));
        self.put(target, name, &bytes);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, corpus, vectors, repo] = args.as_slice() else {
        eprintln!("usage: seeds <corpus dir> <shared vectors dir> <repo root>");
        std::process::exit(2);
    };
    let c = Corpus {
        root: PathBuf::from(corpus),
    };
    let vectors = Path::new(vectors);
    let repo = Path::new(repo);
    let f = fixture();
    let blocks = &f.consortium.blocks;

    // cbor_value: whole encodings, no selector.
    c.put(
        "cbor_value",
        "block1",
        &encode(&blocks[1]).expect("encodes"),
    );
    c.put(
        "cbor_value",
        "state",
        &encode(&f.consortium.chain.state().consortium()).expect("encodes"),
    );
    c.put(
        "cbor_value",
        "small",
        &[0x83, 0x01, 0x61, b'a', 0xa1, 0x20, 0xf6],
    );

    // cbor_entry
    for (i, entry) in f.entries().enumerate() {
        let body = &entry.proposal.body;
        c.cbor("cbor_entry", &format!("proposal-{i}"), 0, &entry.proposal);
        c.cbor(
            "cbor_entry",
            &format!("endorsement-{i}"),
            1,
            &entry.endorsements[0],
        );
        c.cbor("cbor_entry", &format!("entry-{i}"), 2, entry);
        c.cbor("cbor_entry", &format!("body-{i}"), 3, body);
        match body {
            Body::Grant(terms) => c.cbor("cbor_entry", &format!("terms-{i}"), 4, terms),
            Body::Genesis(genesis) => {
                c.cbor("cbor_entry", "genesis", 5, genesis);
                c.cbor("cbor_entry", "policy", 6, &genesis.policy);
            }
            Body::AddMember(member) => c.cbor("cbor_entry", "new-member", 7, member),
            _ => {}
        }
    }
    // Selector 8 then the row kind: 0 consortium, 1 member, 2 grant, 3 meta.
    let mut row = vec![0u8];
    row.extend(encode(&f.consortium.chain.state().consortium()).expect("encodes"));
    c.put(
        "cbor_entry",
        "state-consortium",
        &[&[8u8][..], &row].concat(),
    );
    let mut row = vec![3u8];
    row.extend(encode(&f.consortium.chain.meta()).expect("encodes"));
    c.put("cbor_entry", "state-meta", &[&[8u8][..], &row].concat());
    // A revocation proposed now, for the tip (endorsements are the rules').
    let revoke = Proposal {
        chain_id: quorate_ledger::testing::CHAIN.to_owned(),
        epoch: f.consortium.chain.state().epoch,
        proposer: f.consortium.id(1),
        nonce: 1,
        created_at: f.consortium.now(),
        body: Body::Revoke {
            grant: *f
                .consortium
                .chain
                .state()
                .grant_ids()
                .expect("grants in memory are readable")
                .first()
                .expect("grant"),
        },
    };
    c.cbor("cbor_entry", "proposal-revoke", 0, &revoke);

    // cbor_block
    let messages = round_messages();
    for (i, block) in blocks.iter().enumerate() {
        c.cbor("cbor_block", &format!("header-{i}"), 0, &block.block.header);
        c.cbor("cbor_block", &format!("block-{i}"), 1, &block.block);
        c.cbor("cbor_block", &format!("committed-{i}"), 2, block);
        c.cbor(
            "cbor_block",
            &format!("certificate-{i}"),
            3,
            &block.certificate,
        );
    }
    let Message::Proposal(proposal) = &messages[0] else {
        unreachable!("the round starts with its proposal")
    };
    let Message::Vote(vote) = &messages[1] else {
        unreachable!("then votes")
    };
    c.cbor("cbor_block", "vote", 4, vote);
    c.cbor("cbor_block", "proposal", 5, proposal);
    let leaves = blocks[2].block.leaf_hashes().expect("leaf hashes");
    c.cbor(
        "cbor_block",
        "inclusion-proof",
        6,
        &merkle::prove(&leaves, 1).expect("proof"),
    );
    let persisted = PersistedState {
        height: 1,
        round: 0,
        step: Step::Prevote,
        locked: Some((0, proposal.value.clone())),
        valid: Some((0, proposal.value.clone())),
        signed_votes: vec![vote.clone()],
        proposed_rounds: vec![0],
    };
    c.cbor("cbor_block", "persisted", 7, &persisted);
    let header = ExportHeader {
        chain_id: f.consortium.chain.chain_id().to_owned(),
        genesis_hash: f.consortium.chain.genesis_hash(),
        tip_height: f.consortium.chain.tip().height,
        tip_hash: f.consortium.chain.tip().hash,
    };
    c.cbor("cbor_block", "export-header", 8, &header);
    // A whole round, in order, then with a timeout in the middle.
    let mut round = vec![9];
    for message in &messages {
        frame(&mut round, &encode(message).expect("encodes"));
    }
    c.put("cbor_block", "round", &round);
    let mut with_timeout = vec![9];
    frame(&mut with_timeout, &[0xff, 0, 0]);
    for message in &messages[1..] {
        frame(&mut with_timeout, &encode(message).expect("encodes"));
    }
    c.put("cbor_block", "round-timeout", &with_timeout);

    // grant_proof
    c.put("grant_proof", "proof", &encode(&f.proof).expect("encodes"));
    let mut no_change = f.proof.clone();
    no_change.membership_changes.clear();
    c.put(
        "grant_proof",
        "proof-missing-change",
        &encode(&no_change).expect("encodes"),
    );

    // export_reader
    c.put("export_reader", "chain", &f.export);
    c.put(
        "export_reader",
        "truncated",
        &f.export[..f.export.len() / 2],
    );
    let genesis_only = {
        let mut out = Vec::new();
        let header = ExportHeader {
            tip_height: 0,
            tip_hash: f.consortium.chain.genesis_hash(),
            ..header.clone()
        };
        quorate_ledger::export::write(&mut out, &header, [blocks[0].clone()]).expect("export");
        out
    };
    c.put("export_reader", "genesis-only", &genesis_only);

    // http_signature (text mode) and http_fields
    let rfc: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(vectors.join("rfc9421-ed25519.json")).expect("RFC 9421 vector"),
    )
    .expect("json");
    let request = &rfc["request"];
    let mut text = format!(
        "\0{}\n{}",
        request["method"].as_str().expect("method"),
        request["target_uri"].as_str().expect("uri")
    );
    for (name, value) in request["headers"].as_object().expect("headers") {
        text.push_str(&format!("\n{name}: {}", value.as_str().expect("value")));
    }
    text.push_str(&format!(
        "\nSignature-Input: {}\nSignature: {}",
        rfc["signature_input"].as_str().expect("input"),
        rfc["signature"].as_str().expect("signature")
    ));
    c.put("http_signature", "rfc9421-b26", text.as_bytes());
    let body = request["body"].as_str().expect("body");
    let digest = request["headers"]["Content-Digest"]
        .as_str()
        .expect("digest");
    c.put(
        "http_fields",
        "rfc9421-digest",
        format!("{digest}\n{body}").as_bytes(),
    );
    c.put(
        "http_fields",
        "sha-256",
        format!("{}\n{body}", content_digest_sha256(body.as_bytes())).as_bytes(),
    );
    for (name, range) in [
        ("bounded", "bytes=0-99"),
        ("from", "bytes=100-"),
        ("suffix", "bytes=-5"),
    ] {
        c.put(
            "http_fields",
            &format!("range-{name}"),
            format!("{range}\nbody").as_bytes(),
        );
    }
    // A gateway request as a Quorate client signs it (the target's NOW and
    // audience: fixture seeds 1 and 2).
    let caller = Keypair::from_seed(&[1; 32]);
    let audience = Keypair::from_seed(&[2; 32]).did().to_string();
    let headers = [(AUDIENCE_HEADER, audience.as_str())];
    for (name, uri, components) in [
        (
            "gateway-get",
            "http://127.0.0.1:7700/gateway/objects/datasets/shipments/a.csv",
            &["@method", "@target-uri", AUDIENCE_HEADER][..],
        ),
        (
            "gateway-list",
            "http://127.0.0.1:7700/gateway/objects?prefix=datasets",
            &["@method", "@path", "@authority", "@query", AUDIENCE_HEADER][..],
        ),
    ] {
        let parts = RequestParts {
            method: "GET",
            target_uri: uri,
            headers: &headers,
        };
        let signed =
            sign_request(&parts, components, &caller, 1_800_000_000, "9f3c1a").expect("signs");
        let text = format!(
            "\0GET\n{uri}\n{AUDIENCE_HEADER}: {audience}\nSignature-Input: {}\nSignature: {}",
            signed.signature_input, signed.signature
        );
        c.put("http_signature", name, text.as_bytes());
    }
    // A structured-mode input (any bytes after a non-zero first byte).
    c.put(
        "http_signature",
        "structured",
        b"\x01\x05GET http://a/b?c\x00\x01\x02\x03\x04\x05\x06\x07",
    );

    // did_key
    let did_vectors: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(vectors.join("did-key-ed25519.json")).expect("did:key vectors"),
    )
    .expect("json");
    for (i, v) in did_vectors["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .enumerate()
    {
        c.put(
            "did_key",
            &format!("w3c-{i}"),
            v["did"].as_str().expect("did").as_bytes(),
        );
    }
    for (i, v) in did_vectors["must_reject"]
        .as_array()
        .expect("rejects")
        .iter()
        .enumerate()
    {
        if let Some(input) = v["input"].as_str() {
            c.put("did_key", &format!("reject-{i}"), input.as_bytes());
        }
    }
    let did = f.consortium.keys[0].did();
    c.put("did_key", "raw-key", &did.public_key_bytes());
    c.put("did_key", "cbor", &encode(&did).expect("encodes"));

    // key_file
    for (i, key) in f.consortium.keys.iter().take(2).enumerate() {
        c.put(
            "key_file",
            &format!("fixture-{i}"),
            key.to_pkcs8_pem().as_bytes(),
        );
    }
    c.put(
        "key_file",
        "rfc9421",
        rfc["private_key_pkcs8_pem"]
            .as_str()
            .expect("pem")
            .as_bytes(),
    );
    c.put(
        "key_file",
        "public-key",
        rfc["public_key_spki_pem"].as_str().expect("pem").as_bytes(),
    );

    // resource_path
    for (name, text) in [
        ("exact", "reports/2026/q1.csv"),
        ("prefix", "datasets/shipments/*"),
        ("all", "*"),
        (
            "match",
            "datasets/shipments/*\ndatasets/shipments/2026/a.csv",
        ),
        ("no-match", "datasets/*\ndatasets-old/a"),
        ("traversal", "a/../b"),
    ] {
        c.put("resource_path", name, text.as_bytes());
    }

    // node_config
    let example = fs::read(repo.join("docs/config.example.toml")).expect("config example");
    c.put("node_config", "example", &example);
    let rendered =
        quorate_node::home::config::render(&quorate_node::home::config::TemplateValues {
            name: "org-a",
            api_port: 7700,
            p2p_port: 7701,
        });
    let with_upstream = format!(
        "{rendered}\n[[upstream]]\nprefix = \"erp\"\nurl = \"http://127.0.0.1:8080/base\"\ntimeout = \"5s\"\n"
    );
    c.put("node_config", "template", rendered.as_bytes());
    c.put("node_config", "upstream", with_upstream.as_bytes());

    // node_protocol
    let Message::Proposal(p) = messages[0].clone() else {
        unreachable!()
    };
    c.cbor(
        "node_protocol",
        "consensus-proposal",
        0,
        &ConsensusMessage::Proposal(p),
    );
    c.cbor(
        "node_protocol",
        "consensus-vote",
        0,
        &ConsensusMessage::Vote(vote.clone()),
    );
    let entry = f.entries().nth(2).expect("an entry").clone();
    let id = entry.id().expect("id");
    c.cbor(
        "node_protocol",
        "mempool-endorsement",
        1,
        &MempoolMessage::Endorsement {
            entry: id,
            endorsement: entry.endorsements[0].clone(),
        },
    );
    c.cbor(
        "node_protocol",
        "mempool-rejection",
        1,
        &MempoolMessage::Rejection {
            entry: id,
            rejection: quorate_node::agreement::mempool::Rejection::sign(
                &id,
                f.consortium.id(1),
                "not our data",
                &f.consortium.keys[1],
            ),
        },
    );
    c.cbor(
        "node_protocol",
        "mempool-withdrawal",
        1,
        &MempoolMessage::Withdrawal {
            entry: id,
            withdrawal: quorate_node::agreement::mempool::Withdrawal::sign(
                &id,
                &f.consortium.keys[0],
            ),
        },
    );
    c.cbor(
        "node_protocol",
        "mempool-entry",
        1,
        &MempoolMessage::Entry(Box::new(entry)),
    );
    for (name, request) in [
        ("status", Request::Status),
        ("blocks", Request::Blocks { from: 1, to: 3 }),
        (
            "object",
            Request::Object {
                path: "datasets/shipments/a.csv".into(),
                range: Some(ByteRange::Bounded(0, 4_194_303)),
                if_match: Some("ab12".into()),
                purpose: Some("customs clearance".into()),
            },
        ),
        (
            "list",
            Request::List {
                prefix: "datasets/".into(),
                after: Some("datasets/a".into()),
                limit: 100,
                purpose: None,
            },
        ),
    ] {
        c.cbor("node_protocol", &format!("request-{name}"), 2, &request);
    }
    let info = ObjectInfo {
        path: "datasets/shipments/a.csv".into(),
        size: 5,
        etag: "ab12".into(),
        content_type: "text/csv".into(),
        modified_ms: 1_800_000_000_000,
    };
    for (name, response) in [
        (
            "status",
            Response::Status {
                genesis: f.consortium.chain.genesis_hash(),
                height: 3,
                hash: f.consortium.chain.tip().hash,
            },
        ),
        ("blocks", Response::Blocks(blocks[1..].to_vec())),
        ("refused", Response::Refused("not a member".into())),
        (
            "object",
            Response::Object {
                info: info.clone(),
                start: 0,
                end: 5,
                data: serde_bytes::ByteBuf::from(b"a,b\n1".to_vec()),
            },
        ),
        (
            "listing",
            Response::Listing(Listing {
                objects: vec![info],
                next: Some("datasets/shipments/a.csv".into()),
            }),
        ),
        (
            "denied",
            Response::Denied(Denial {
                code: "no-grant".into(),
                detail: "no grant covers this path".into(),
                retry_after_secs: None,
            }),
        ),
    ] {
        c.cbor("node_protocol", &format!("response-{name}"), 3, &response);
    }
    println!("seeds written under {}", c.root.display());
}
