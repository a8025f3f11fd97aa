//! The verifier against tokens it must accept and refuse, and the
//! sections it must refuse.

use super::*;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};

const ISSUER: &str = "https://idp.example.org";
const AUDIENCE: &str = "quorate-org-a";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An Ed25519 signing key for jsonwebtoken (PKCS#8 v1 DER of a seed)
/// and its JWK.
fn ed_key(seed: u8, kid: &str) -> (EncodingKey, serde_json::Value) {
    let seed = [seed; 32];
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    let public = quorate_did::Keypair::from_seed(&seed)
        .did()
        .public_key_bytes();
    let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public), "kid": kid, "use": "sig"});
    (EncodingKey::from_ed_der(&der), jwk)
}

fn section(dir: &Path, keys: &[serde_json::Value]) -> OidcSection {
    let path = dir.join("jwks.json");
    std::fs::write(&path, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    OidcSection {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_file: Some(path),
        jwks_url: None,
        jwks_ca: None,
        algorithms: default_algorithms(),
        roles_claim: "groups".into(),
        roles: BTreeMap::from([
            ("approvers".to_owned(), vec![Role::Approver]),
            ("staff".to_owned(), vec![Role::Reader, Role::Publisher]),
        ]),
        leeway: default_leeway(),
        jwks_refresh: default_refresh(),
        client_id: None,
        authorization_endpoint: None,
        token_endpoint: None,
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
        "exp": now() + 600, "iat": now(), "groups": ["approvers", "unmapped"],
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn sign(key: &EncodingKey, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn refusal(verifier: &OidcVerifier, token: &str) -> String {
    match verifier.verify(token) {
        Err(Unauthenticated::Jwt(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_token_of_the_provider_names_its_subject_with_the_mapped_roles() {
    let dir = tempfile::tempdir().unwrap();
    let (key, jwk) = ed_key(1, "k1");
    let verifier = OidcVerifier::new(&section(dir.path(), &[jwk]), dir.path()).unwrap();
    let exp = now() + 600;
    let token = sign(&key, Some("k1"), &claims(serde_json::json!({"exp": exp})));
    let principal = verifier.verify(&token).unwrap();
    assert_eq!(principal.label, "oidc:alice");
    assert_eq!(principal.roles, Roles::of(&[Role::Approver]));
    assert_eq!(principal.expires_ms, Some(exp * 1000));
    // A single value, and several mapped ones.
    let one = sign(
        &key,
        Some("k1"),
        &claims(serde_json::json!({"groups": "staff"})),
    );
    assert_eq!(
        verifier.verify(&one).unwrap().roles,
        Roles::of(&[Role::Reader, Role::Publisher])
    );
    // No mapped value: refused before any route.
    let none = sign(
        &key,
        Some("k1"),
        &claims(serde_json::json!({"groups": null})),
    );
    assert!(refusal(&verifier, &none).contains("maps to no role"));
    let unmapped = sign(
        &key,
        Some("k1"),
        &claims(serde_json::json!({"groups": ["visitors"]})),
    );
    assert!(refusal(&verifier, &unmapped).contains("maps to no role"));
    // A decimal exp, as some providers write it, holds.
    let exp = (now() + 60) as f64 + 0.5;
    let decimal = sign(&key, Some("k1"), &claims(serde_json::json!({"exp": exp})));
    assert!(verifier.verify(&decimal).is_ok());
    // Without a kid, the one EdDSA key is used.
    assert!(
        verifier
            .verify(&sign(&key, None, &claims(serde_json::json!({}))))
            .is_ok()
    );
}

#[test]
fn a_revoked_token_is_refused_and_a_new_sign_in_is_not() {
    use crate::home::NodeHome;
    use crate::home::jwt_revocations::{JwtRevocations, RevokeJwt};
    let dir = tempfile::tempdir().unwrap();
    let (key, jwk) = ed_key(1, "k1");
    let revocations =
        Arc::new(JwtRevocations::open(&NodeHome::new(dir.path().to_owned())).unwrap());
    let verifier = OidcVerifier::new(&section(dir.path(), &[jwk]), dir.path())
        .unwrap()
        .with_revocations(revocations.clone());
    let issued = now() - 5;
    let old = sign(
        &key,
        Some("k1"),
        &claims(serde_json::json!({"iat": issued, "jti": "s-1"})),
    );
    let other = sign(
        &key,
        Some("k1"),
        &claims(serde_json::json!({"iat": issued, "sub": "bob"})),
    );
    assert!(verifier.verify(&old).is_ok());
    let revoke = |revoke: RevokeJwt| {
        revocations.revoke(revoke, now() * 1000).unwrap();
    };
    revoke(RevokeJwt {
        subject: Some("alice".into()),
        reason: Some("laptop stolen".into()),
        ..RevokeJwt::default()
    });
    let why = refusal(&verifier, &old);
    assert!(
        why.contains("alice was signed out on this node") && why.contains("laptop stolen"),
        "{why}"
    );
    // Without iat, a revoked subject's token is refused too.
    let undated = sign(&key, Some("k1"), &claims(serde_json::json!({"iat": null})));
    assert!(refusal(&verifier, &undated).contains("signed out"));
    // Others are not touched; a token issued after the revocation holds.
    assert!(verifier.verify(&other).is_ok());
    let fresh = sign(
        &key,
        Some("k1"),
        &claims(serde_json::json!({"iat": now() + 2})),
    );
    assert!(verifier.verify(&fresh).is_ok());
    // One token by its jti.
    let bobs = sign(
        &key,
        Some("k1"),
        &claims(serde_json::json!({"sub": "bob", "jti": "b-7"})),
    );
    assert!(verifier.verify(&bobs).is_ok());
    revoke(RevokeJwt {
        jti: Some("b-7".into()),
        ..RevokeJwt::default()
    });
    assert!(refusal(&verifier, &bobs).contains("revoked on this node"));
    assert!(verifier.verify(&other).is_ok());
}

#[test]
fn tokens_that_do_not_hold_are_refused_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let (key, jwk) = ed_key(1, "k1");
    let (stranger, _) = ed_key(2, "k1");
    let verifier = OidcVerifier::new(&section(dir.path(), &[jwk]), dir.path()).unwrap();
    let cases = [
        (serde_json::json!({"exp": now() - 120}), "expired"),
        (serde_json::json!({"nbf": now() + 120}), "not valid yet"),
        (serde_json::json!({"aud": "someone-else"}), "audience"),
        (serde_json::json!({"iss": "https://evil.example"}), "issuer"),
        (serde_json::json!({"sub": null}), "no sub claim"),
        (serde_json::json!({"exp": null}), "no exp claim"),
        (serde_json::json!({"sub": "x".repeat(300)}), "over 255"),
    ];
    for (extra, says) in cases {
        let token = sign(&key, Some("k1"), &claims(extra.clone()));
        let why = refusal(&verifier, &token);
        assert!(why.contains(says), "{extra}: {why}");
    }
    // Within the leeway, a just-expired token still holds.
    let recent = sign(
        &key,
        Some("k1"),
        &claims(serde_json::json!({"exp": now() - 5})),
    );
    assert!(verifier.verify(&recent).is_ok());
    // Another key under the same kid, and a tampered payload.
    let forged = sign(&stranger, Some("k1"), &claims(serde_json::json!({})));
    assert!(refusal(&verifier, &forged).contains("signature"));
    let good = sign(&key, Some("k1"), &claims(serde_json::json!({})));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = b64(claims(serde_json::json!({"sub": "mallory"}))
        .to_string()
        .as_bytes());
    assert!(refusal(&verifier, &parts.join(".")).contains("signature"));
    // A key the JWKS does not hold.
    let unknown = sign(&key, Some("k9"), &claims(serde_json::json!({})));
    assert!(refusal(&verifier, &unknown).contains("no EdDSA key \"k9\""));
}

#[test]
fn none_and_algorithms_outside_the_list_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, jwk) = ed_key(1, "k1");
    let mut only_es256 = section(dir.path(), std::slice::from_ref(&jwk));
    let verifier = OidcVerifier::new(&section(dir.path(), &[jwk]), dir.path()).unwrap();
    let body = b64(claims(serde_json::json!({})).to_string().as_bytes());
    for alg in ["none", "HS256", "RS512", "ES384"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#).as_bytes());
        let token = format!("{header}.{body}.{}", b64(b"sig"));
        let why = refusal(&verifier, &token);
        assert!(
            why.contains(&format!("algorithm \"{alg}\" is not accepted")),
            "{why}"
        );
    }
    let unsigned = format!("{}.{body}.", b64(br#"{"alg":"none"}"#));
    assert!(refusal(&verifier, &unsigned).contains("not accepted"));
    // An EdDSA token where only ES256 is accepted: the key is not even kept.
    only_es256.algorithms = vec!["ES256".into()];
    let message = OidcVerifier::new(&only_es256, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("no signature key of an accepted algorithm"),
        "{message}"
    );
    assert!(
        verifier
            .verify(&sign(&key, Some("k1"), &claims(serde_json::json!({}))))
            .is_ok()
    );
    for garbage in ["", "ey.ey", "eyJ.x.y", &"a".repeat(JWT_BYTES_MAX + 1)] {
        assert!(matches!(
            verifier.verify(garbage),
            Err(Unauthenticated::Jwt(_))
        ));
    }
}

#[test]
fn bad_sections_are_refused_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (_, jwk) = ed_key(1, "k1");
    let good = section(dir.path(), &[jwk]);
    let mut cases: Vec<(OidcSection, &str)> = Vec::new();
    let mut s = good.clone();
    s.algorithms = vec!["HS256".into()];
    cases.push((s, "HS256"));
    let mut s = good.clone();
    s.jwks_url = Some("http://127.0.0.1:1/jwks".into());
    cases.push((s, "exactly one"));
    for bad in [
        "ftp://idp.example.org/jwks",
        "https://user@idp.example.org/jwks",
    ] {
        let mut s = good.clone();
        s.jwks_file = None;
        s.jwks_url = Some(bad.into());
        cases.push((s, "is neither an https:// URL"));
    }
    let mut s = good.clone();
    s.jwks_file = None;
    s.jwks_url = Some("https://idp.example.org/jwks".into());
    s.jwks_ca = Some(dir.path().join("no-ca.pem"));
    cases.push((s, "no-ca.pem"));
    let mut s = good.clone();
    s.jwks_file = None;
    s.jwks_url = Some("https://idp.example.org/jwks".into());
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    s.jwks_ca = Some(dir.path().join("empty.pem"));
    cases.push((s, "holds no certificate"));
    let mut s = good.clone();
    s.client_id = Some("console".into());
    cases.push((s.clone(), "set all three"));
    s.authorization_endpoint = Some("https://idp.example/authorize".into());
    for bad in [
        "ftp://idp.example/token",
        "http://idp.example/token",
        "https://*/token",
        "https://user@idp.example/token",
        "https://idp.example;script-src/token",
    ] {
        s.token_endpoint = Some(bad.into());
        cases.push((s.clone(), "is not an https URL"));
    }
    let mut s = good.clone();
    s.leeway = HumanDuration(Duration::from_secs(301));
    cases.push((s, "leeway"));
    let mut s = good.clone();
    s.audience = String::new();
    cases.push((s, "audience is empty"));
    let mut s = good.clone();
    s.jwks_file = None;
    s.jwks_url = Some("http://idp.example.org/jwks".into());
    cases.push((s, "of this machine"));
    let mut s = good.clone();
    s.jwks_file = Some(dir.path().join("missing.json"));
    cases.push((s, "missing.json"));
    for (section, says) in cases {
        let message = OidcVerifier::new(&section, dir.path())
            .unwrap_err()
            .to_string();
        assert!(message.contains(says), "{message}");
    }
}
