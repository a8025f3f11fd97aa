//! RFC 9421 request signatures as the gateway checks them
//! (`quorate_api::signature::verify_request`), which runs the private
//! structured-field parser (`sfv.rs`) over `Signature-Input` and
//! `Signature`, and `verify_with_key`.
//!
//! Two modes, by the first byte:
//! - text (0): `METHOD\nTARGET-URI\nName: value\n…`, headers as given, so
//!   seeds come straight from the RFC's example and from signed requests.
//!   Checked: a request that verifies names its caller in `keyid`, covers
//!   `@method` and the audience header, and was created within the skew;
//!   one that verifies under the RFC's test key has a well-formed label.
//! - structured (other): arbitrary method, target URI, headers and covered
//!   components, signed with `sign_request` by a real key. Checked: what
//!   `sign_request` signs, `verify_with_key` accepts, with the very
//!   components, `created`, `keyid` and `nonce` signed; `verify_request`
//!   never calls it a bad signature, and when it accepts, the caller is the
//!   signer; changing the method, the target URI, a header or `created`
//!   afterwards breaks the signature exactly when the signature base (what
//!   it covers) changed.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use quorate_api::signature::{
    AUDIENCE_HEADER, PURPOSE_HEADER, Policy, RequestParts, SignatureError, sign_request,
    signature_base, verify_request, verify_with_key,
};
use quorate_did::{Did, Keypair};

/// Now, for every check (seconds); seeds are signed at this time.
const NOW: i64 = 1_800_000_000;
const SKEW: u64 = 60;

/// The RFC 9421 Appendix B.1.4 test key (also in shared/vectors).
const RFC_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";

fn rfc_key() -> &'static Did {
    static KEY: OnceLock<Did> = OnceLock::new();
    KEY.get_or_init(|| Keypair::from_pkcs8_pem(RFC_KEY).expect("RFC key").did())
}

/// The member the gateway serves (fixture seed 2, "org-b").
fn audience() -> &'static Did {
    static DID: OnceLock<Did> = OnceLock::new();
    DID.get_or_init(|| Keypair::from_seed(&[2; 32]).did())
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, text)) => text_mode(&String::from_utf8_lossy(text)),
        Some((_, rest)) => {
            if let Ok(case) = Signed::arbitrary_take_rest(Unstructured::new(rest)) {
                signed_mode(case);
            }
        }
        None => {}
    }
});

fn text_mode(text: &str) {
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or_default();
    let target_uri = lines.next().unwrap_or_default();
    let headers: Vec<(&str, &str)> = lines
        .map(|l| l.split_once(": ").unwrap_or((l, "")))
        .collect();
    let request = RequestParts {
        method,
        target_uri,
        headers: &headers,
    };
    for has_body in [false, true] {
        let policy = Policy {
            skew_secs: SKEW,
            has_body,
            audience: audience(),
        };
        if let Ok(verified) = verify_request(&request, &policy, NOW) {
            let p = &verified.params;
            assert_eq!(
                p.keyid.as_deref(),
                Some(verified.caller.to_string().as_str())
            );
            assert!(p.components.iter().any(|c| c == "@method"));
            assert!(p.components.iter().any(|c| c == AUDIENCE_HEADER));
            assert!(!has_body || p.components.iter().any(|c| c == "content-digest"));
            let created = p.created.expect("created");
            assert!(created.abs_diff(NOW) <= SKEW);
            assert!(p.nonce.as_deref().is_some_and(|n| !n.is_empty()));
            // A declared purpose is a covered one.
            assert!(verified.purpose.is_none() || p.components.iter().any(|c| c == PURPOSE_HEADER));
        }
    }
    if let Ok(params) = verify_with_key(&request, None, rfc_key()) {
        assert!(!params.label.is_empty());
    }
}

/// Header names the structured mode picks from (besides arbitrary ones).
const NAMES: &[&str] = &[
    "content-type",
    "content-digest",
    "date",
    "host",
    AUDIENCE_HEADER,
    PURPOSE_HEADER,
    "x-extra",
];

/// Components it may cover; `@status` is a derived component a request
/// does not have.
const COMPONENTS: &[&str] = &[
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@path",
    "@query",
    "@request-target",
    "@status",
    "content-type",
    "content-digest",
    "date",
    "host",
    AUDIENCE_HEADER,
    PURPOSE_HEADER,
    "x-extra",
];

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8, bool),
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Value {
    Audience,
    Signer,
    Text(String),
}

#[derive(Debug, Arbitrary)]
enum Mutation {
    Method,
    TargetUri,
    Header(u8),
    Created,
}

#[derive(Debug, Arbitrary)]
struct Signed {
    key_seed: u8,
    method: String,
    target_uri: String,
    headers: Vec<(Name, Value)>,
    components: Vec<u8>,
    created_offset: i16,
    nonce: u64,
    has_body: bool,
    mutation: Option<Mutation>,
}

fn signed_mode(case: Signed) {
    let key = Keypair::from_seed(&[case.key_seed; 32]);
    let signer = key.did().to_string();
    let audience_text = audience().to_string();
    let headers: Vec<(String, String)> = case
        .headers
        .iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Known(i, upper) => {
                    let n = NAMES[usize::from(*i) % NAMES.len()];
                    if *upper {
                        n.to_ascii_uppercase()
                    } else {
                        n.to_owned()
                    }
                }
                Name::Other(n) => n.clone(),
            };
            let value = match value {
                Value::Audience => audience_text.clone(),
                Value::Signer => signer.clone(),
                Value::Text(t) => t.clone(),
            };
            (name, value)
        })
        // The signature headers are added below, once.
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("signature") && !n.eq_ignore_ascii_case("signature-input")
        })
        .collect();
    let components: Vec<&str> = case
        .components
        .iter()
        .map(|i| COMPONENTS[usize::from(*i) % COMPONENTS.len()])
        .collect();
    let created = NOW + i64::from(case.created_offset);
    let nonce = format!("{:x}", case.nonce);
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let request = RequestParts {
        method: &case.method,
        target_uri: &case.target_uri,
        headers: &borrowed,
    };
    let Ok(signed) = sign_request(&request, &components, &key, created, &nonce) else {
        return;
    };
    let mut with_sig = borrowed.clone();
    with_sig.push(("Signature-Input", &signed.signature_input));
    with_sig.push(("Signature", &signed.signature));
    let request = RequestParts {
        headers: &with_sig,
        ..request
    };
    let params = verify_with_key(&request, Some("sig1"), &key.did())
        .expect("what sign_request signs verifies");
    assert_eq!(params.components, components);
    assert_eq!(params.created, Some(created));
    assert_eq!(params.keyid.as_deref(), Some(signer.as_str()));
    assert_eq!(params.nonce.as_deref(), Some(nonce.as_str()));

    let policy = Policy {
        skew_secs: SKEW,
        has_body: case.has_body,
        audience: audience(),
    };
    match verify_request(&request, &policy, NOW) {
        Ok(verified) => {
            assert_eq!(verified.caller, key.did());
            assert_eq!(verified.params, params);
            assert!(created.abs_diff(NOW) <= SKEW);
        }
        Err(SignatureError::BadSignature) => panic!("verify_request refused a good signature"),
        Err(_) => {}
    }

    let Some(mutation) = case.mutation else {
        return;
    };
    let mut method = case.method.clone();
    let mut target_uri = case.target_uri.clone();
    let mut headers: Vec<(String, String)> = with_sig
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    let params_changed = match mutation {
        Mutation::Method => {
            method.push('X');
            false
        }
        Mutation::TargetUri => {
            target_uri.push('x');
            false
        }
        Mutation::Header(i) => {
            if borrowed.is_empty() {
                return;
            }
            let i = usize::from(i) % borrowed.len();
            headers[i].1.push('!');
            false
        }
        Mutation::Created => {
            let last = headers.len() - 2;
            headers[last].1 = signed.signature_input.replace(
                &format!(";created={created};"),
                &format!(";created={};", created + 1),
            );
            true
        }
    };
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mutated = RequestParts {
        method: &method,
        target_uri: &target_uri,
        headers: &borrowed,
    };
    // What the signature covers changed exactly when the signature base
    // did (the base as the signer serialized its parameters).
    let owned: Vec<String> = components.iter().map(|c| (*c).to_owned()).collect();
    let raw = signed
        .signature_input
        .strip_prefix("sig1=")
        .expect("our label");
    let before = signature_base(&request, &owned, raw).expect("it was signed");
    let changed = params_changed
        || signature_base(&mutated, &owned, raw).map_or(true, |after| after != before);
    let result = verify_with_key(&mutated, Some("sig1"), &key.did());
    if changed {
        assert!(
            result.is_err(),
            "a change to a covered component still verifies: {mutation:?} of \
             {method:?} {target_uri:?} {headers:?}, covering {components:?}"
        );
    } else {
        result.expect("a change to nothing covered breaks the signature");
    }
}
