use super::*;
use quorate_did::Keypair;

fn vector() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/rfc9421-ed25519.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("RFC 9421 vector")).unwrap()
}

#[test]
fn verifies_the_rfc9421_ed25519_example() {
    let v = vector();
    let key = Keypair::from_pkcs8_pem(v["private_key_pkcs8_pem"].as_str().unwrap()).unwrap();
    let mut headers: Vec<(String, String)> = v["request"]["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    headers.push((
        "Signature-Input".into(),
        v["signature_input"].as_str().unwrap().into(),
    ));
    headers.push(("Signature".into(), v["signature"].as_str().unwrap().into()));
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let request = RequestParts {
        method: v["request"]["method"].as_str().unwrap(),
        target_uri: v["request"]["target_uri"].as_str().unwrap(),
        headers: &headers,
    };
    let params = verify_with_key(&request, Some("sig-b26"), &key.did()).unwrap();
    assert_eq!(params.created, Some(1618884473));
    assert_eq!(params.keyid.as_deref(), Some("test-key-ed25519"));

    let sfv::Member::InnerList(_) =
        &sfv::parse_dictionary(v["signature_input"].as_str().unwrap()).unwrap()[0].value
    else {
        panic!("inner list")
    };
    let raw = sfv::parse_dictionary(v["signature_input"].as_str().unwrap()).unwrap()[0]
        .raw
        .clone();
    let base = signature_base(&request, &params.components, &raw).unwrap();
    assert_eq!(base, v["signature_base"].as_str().unwrap());

    // The body in the vector matches its Content-Digest (sha-512).
    let body = v["request"]["body"].as_str().unwrap();
    let digest = v["request"]["headers"]["Content-Digest"].as_str().unwrap();
    verify_content_digest(digest, body.as_bytes()).unwrap();
    assert_eq!(
        verify_content_digest(digest, b"{\"hello\": \"worle\"}"),
        Err(DigestError::Mismatch("sha-512"))
    );

    // Any change to a covered component breaks it.
    let tampered = RequestParts {
        method: "PUT",
        ..request
    };
    assert_eq!(
        verify_with_key(&tampered, Some("sig-b26"), &key.did()),
        Err(SignatureError::BadSignature)
    );
}

struct Signed {
    headers: Vec<(String, String)>,
}

const NOW: i64 = 1_800_000_000;
const URI: &str = "http://127.0.0.1:7700/v1/gateway/objects/datasets/a.csv";

fn signed(
    key: &Keypair,
    components: &[&str],
    created: i64,
    nonce: &str,
    body: Option<&[u8]>,
) -> Signed {
    let mut headers = vec![
        ("Host".to_owned(), "127.0.0.1:7700".to_owned()),
        ("Quorate-Audience".to_owned(), audience().to_string()),
    ];
    if let Some(body) = body {
        headers.push(("Content-Digest".into(), content_digest_sha256(body)));
    }
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let request = RequestParts {
        method: "GET",
        target_uri: URI,
        headers: &refs,
    };
    let sig = sign_request(&request, components, key, created, nonce).unwrap();
    headers.push(("Signature-Input".into(), sig.signature_input));
    headers.push(("Signature".into(), sig.signature));
    Signed { headers }
}

/// The member the test requests are for.
fn audience() -> Did {
    Keypair::from_seed(&[9; 32]).did()
}

fn verify(s: &Signed, method: &str, uri: &str, has_body: bool) -> Result<Verified, SignatureError> {
    verify_for(s, method, uri, has_body, &audience())
}

fn verify_for(
    s: &Signed,
    method: &str,
    uri: &str,
    has_body: bool,
    audience: &Did,
) -> Result<Verified, SignatureError> {
    let refs: Vec<(&str, &str)> = s
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let request = RequestParts {
        method,
        target_uri: uri,
        headers: &refs,
    };
    verify_request(
        &request,
        &Policy {
            skew_secs: 30,
            has_body,
            audience,
        },
        NOW,
    )
}

const FULL: &[&str] = &["@method", "@target-uri", "quorate-audience"];

#[test]
fn a_quorate_signed_request_verifies_and_names_its_caller() {
    let key = Keypair::from_seed(&[7; 32]);
    let s = signed(&key, FULL, NOW, "n-1", None);
    let verified = verify(&s, "GET", URI, false).unwrap();
    assert_eq!(verified.caller, key.did());
    assert_eq!(verified.params.nonce.as_deref(), Some("n-1"));
    // @path + @authority is an accepted alternative to @target-uri.
    let s = signed(
        &key,
        &[
            "@method",
            "@authority",
            "@path",
            "@query",
            "quorate-audience",
        ],
        NOW,
        "n-2",
        None,
    );
    verify(&s, "GET", URI, false).unwrap();
}

#[test]
fn each_policy_check_refuses_with_its_own_error() {
    let key = Keypair::from_seed(&[7; 32]);
    let s = signed(&key, FULL, NOW, "n", None);
    assert_eq!(
        verify(&s, "DELETE", URI, false),
        Err(SignatureError::BadSignature)
    );
    assert_eq!(
        verify(&s, "GET", &format!("{URI}x"), false),
        Err(SignatureError::BadSignature)
    );
    assert_eq!(
        verify(&s, "GET", URI, true),
        Err(SignatureError::NotCovered("content-digest"))
    );

    let s = signed(&key, &["@method"], NOW, "n", None);
    assert!(matches!(
        verify(&s, "GET", URI, false),
        Err(SignatureError::NotCovered(_))
    ));
    let s = signed(&key, &["@target-uri", "quorate-audience"], NOW, "n", None);
    assert_eq!(
        verify(&s, "GET", URI, false),
        Err(SignatureError::NotCovered("@method"))
    );

    let s = signed(&key, FULL, NOW - 31, "n", None);
    assert!(matches!(
        verify(&s, "GET", URI, false),
        Err(SignatureError::Skew { .. })
    ));
    let s = signed(&key, FULL, NOW + 31, "n", None);
    assert!(matches!(
        verify(&s, "GET", URI, false),
        Err(SignatureError::Skew { .. })
    ));
    let s = signed(&key, FULL, NOW, "", None);
    assert_eq!(verify(&s, "GET", URI, false), Err(SignatureError::NoNonce));

    let unsigned = Signed {
        headers: vec![("Host".into(), "x".into())],
    };
    assert_eq!(
        verify(&unsigned, "GET", URI, false),
        Err(SignatureError::Unsigned)
    );
}

#[test]
fn a_body_is_bound_by_its_digest() {
    let key = Keypair::from_seed(&[7; 32]);
    let body = b"hello";
    let s = signed(
        &key,
        &[
            "@method",
            "@target-uri",
            "content-digest",
            "quorate-audience",
        ],
        NOW,
        "n",
        Some(body),
    );
    verify(&s, "GET", URI, true).unwrap();
    let digest = &s
        .headers
        .iter()
        .find(|(k, _)| k == "Content-Digest")
        .unwrap()
        .1;
    verify_content_digest(digest, body).unwrap();
    assert_eq!(
        verify_content_digest(digest, b"hellO"),
        Err(DigestError::Mismatch("sha-256"))
    );
    // Swapping the digest header breaks the signature.
    let mut swapped = Signed {
        headers: s.headers.clone(),
    };
    for (k, v) in &mut swapped.headers {
        if k == "Content-Digest" {
            *v = content_digest_sha256(b"other");
        }
    }
    assert_eq!(
        verify(&swapped, "GET", URI, true),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn a_signature_by_another_key_under_my_keyid_fails() {
    let me = Keypair::from_seed(&[1; 32]);
    let forger = Keypair::from_seed(&[2; 32]);
    let s = signed(&forger, FULL, NOW, "n", None);
    let forged: Vec<(String, String)> = s
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.replace(&forger.did().to_string(), &me.did().to_string()),
            )
        })
        .collect();
    assert_eq!(
        verify(&Signed { headers: forged }, "GET", URI, false),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn replay_guard_refuses_a_nonce_twice_and_forgets_it_after_the_window() {
    let a = Keypair::from_seed(&[1; 32]).did();
    let b = Keypair::from_seed(&[2; 32]).did();
    let mut guard = ReplayGuard::new(30);
    guard.check(&a, "n1", NOW, NOW).unwrap();
    assert_eq!(guard.check(&a, "n1", NOW, NOW + 1), Err(Replayed::Seen));
    guard.check(&b, "n1", NOW, NOW).unwrap(); // nonces are per caller
    assert_eq!(
        guard.check(&a, &"x".repeat(200), NOW, NOW),
        Err(Replayed::TooLong)
    );
    // Past the window the first signatures can no longer pass the skew
    // check, so their nonces are dropped.
    guard.check(&a, "n2", NOW + 31, NOW + 31).unwrap();
    assert_eq!(guard.len(), 1);
}

#[test]
fn one_caller_cannot_fill_the_replay_guard_for_the_others() {
    use super::replay::REPLAY_ENTRIES_PER_CALLER_MAX;
    let a = Keypair::from_seed(&[1; 32]).did();
    let b = Keypair::from_seed(&[2; 32]).did();
    let mut guard = ReplayGuard::new(30);
    for i in 0..REPLAY_ENTRIES_PER_CALLER_MAX {
        guard.check(&a, &i.to_string(), NOW, NOW).unwrap();
    }
    assert_eq!(
        guard.check(&a, "one more", NOW, NOW),
        Err(Replayed::CallerFull)
    );
    guard.check(&b, "b's first", NOW, NOW).unwrap();
    // When the window passes, a's quota is free again.
    guard.check(&a, "later", NOW + 31, NOW + 31).unwrap();
    assert_eq!(guard.len(), 1);
}

#[test]
fn a_request_is_bound_to_its_audience_and_its_query() {
    let key = Keypair::from_seed(&[7; 32]);
    // Signed for one member, refused at any other.
    let s = signed(&key, FULL, NOW, "n", None);
    let other = Keypair::from_seed(&[10; 32]).did();
    assert!(matches!(
        verify_for(&s, "GET", URI, false, &other),
        Err(SignatureError::WrongAudience(_))
    ));
    // The audience must be covered, not only present.
    let s = signed(&key, &["@method", "@target-uri"], NOW, "n", None);
    assert_eq!(
        verify(&s, "GET", URI, false),
        Err(SignatureError::NotCovered(AUDIENCE_HEADER))
    );
    // Changing the covered audience header breaks the signature.
    let s = signed(&key, FULL, NOW, "n", None);
    let forged: Vec<(String, String)> = s
        .headers
        .iter()
        .map(|(k, v)| match k.as_str() {
            "Quorate-Audience" => (k.clone(), other.to_string()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    assert!(matches!(
        verify_for(&Signed { headers: forged }, "GET", URI, false, &other),
        Err(SignatureError::BadSignature)
    ));
    // A query must be covered: @path + @authority alone leave it open.
    let listing = "http://127.0.0.1:7700/gateway/objects?prefix=a/";
    let s = signed(
        &key,
        &["@method", "@authority", "@path", "quorate-audience"],
        NOW,
        "n",
        None,
    );
    assert!(matches!(
        verify(&s, "GET", listing, false),
        Err(SignatureError::NotCovered(_))
    ));
    // An over-long nonce is refused before the signature is checked.
    let s = signed(&key, FULL, NOW, &"x".repeat(NONCE_BYTES_MAX + 1), None);
    assert_eq!(
        verify(&s, "GET", URI, false),
        Err(SignatureError::NonceTooLong)
    );
}

#[test]
fn restored_nonces_are_refused_and_expired_ones_dropped() {
    let a = Keypair::from_seed(&[1; 32]).did();
    let mut before = ReplayGuard::new(30);
    let kept = before.check(&a, "n1", NOW, NOW).unwrap();
    let old = before.check(&a, "n0", NOW - 25, NOW).unwrap();
    assert_eq!(Remembered::from_bytes(&kept.to_bytes()), kept);
    // After a restart, 10 s later.
    let mut after = ReplayGuard::new(30);
    after.restore(kept, NOW + 10).unwrap();
    after.restore(old, NOW + 10).unwrap();
    assert_eq!(after.check(&a, "n1", NOW, NOW + 10), Err(Replayed::Seen));
    // n0 was created 35 s before: it cannot pass the skew check any more.
    assert_eq!(after.len(), 1);
}
