//! The bearer token of any request to the local API, before anything else
//! is known of its caller: the home's tokens (`TokenRegistry::authenticate`)
//! and, with `[auth.oidc]`, the identity provider's JWTs
//! (`OidcVerifier::verify`), as `LocalNode::authenticate` dispatches them.
//!
//! Properties: neither panics; no named token is accepted (none exists,
//! and the admin token is 256 random bits); a JWT is accepted only if its
//! signed part (header and claims) is the seed's own, so no mutation of
//! what was signed passes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quorate_node::home::NodeHome;
use quorate_node::home::tokens::TokenRegistry;
use quorate_node::oidc::{OidcSection, OidcVerifier, looks_like_jwt};

/// The one token the provider signed (seed `signed-eddsa`).
const SIGNED: &str = include_str!("../corpus/bearer_token/signed-eddsa");
/// The JWK of the Ed25519 key of seed [1; 32] (its signer).
const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w","kid":"fuzz","use":"sig"}]}"#;

struct Fixture {
    _dir: std::path::PathBuf,
    tokens: TokenRegistry,
    oidc: OidcVerifier,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("quorate-fuzz-bearer-{}", std::process::id()));
        let home = NodeHome::new(dir.join("home"));
        home.init(&quorate_node::home::InitOptions {
            name: "org-a",
            api_port: 7700,
            p2p_port: 7701,
            gateway_port: 7702,
            gateway_hosts: &[],
            force: true,
        })
        .expect("a home in the temp dir");
        let tokens = TokenRegistry::open(&home).expect("the new home's tokens");
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, JWKS).expect("the JWKS file");
        let section: OidcSection = toml::from_str(&format!(
            "issuer = \"https://idp.fuzz\"\naudience = \"quorate-fuzz\"\njwks_file = {:?}\n\
             [roles]\napprovers = [\"approver\"]\n",
            jwks.display()
        ))
        .expect("the section");
        let oidc = OidcVerifier::new(&section, &dir).expect("the verifier");
        Fixture {
            _dir: dir,
            tokens,
            oidc,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let fixture = fixture();
    // As `LocalNode::authenticate` dispatches: JWT-shaped to the provider's
    // verifier, the rest to the home's tokens.
    let accepted = if looks_like_jwt(token) {
        fixture.oidc.verify(token)
    } else {
        fixture.tokens.authenticate(token, 1_800_000_000_000)
    };
    // Each path on its own, too: neither panics on the other's input.
    assert!(
        fixture
            .tokens
            .authenticate(token, 1_800_000_000_000)
            .is_err(),
        "a token was accepted where none exists"
    );
    if let Ok(principal) = fixture.oidc.verify(token) {
        let signed_part = |t: &str| t.rsplit_once('.').map(|(m, _)| m.to_owned());
        assert_eq!(signed_part(token), signed_part(SIGNED), "accepted: {token}");
        assert_eq!(principal.label, "oidc:alice");
    }
    if let Ok(principal) = accepted {
        assert!(looks_like_jwt(token), "{principal:?} from {token}");
    }
});
