//! RFC 9421 HTTP Message Signatures (Ed25519) and RFC 9530 `Content-Digest`.
//!
//! A caller signs its request with its member key; `keyid` is its `did:key`,
//! so the key needs no lookup: the identifier *is* the key. The gateway then
//! requires, beyond a valid signature ([`Policy`]):
//! - covered components `@method` and either `@target-uri` or both `@path`
//!   and `@authority` (with `@query` too when the request has a query), and
//!   `content-digest` when the request has a body;
//! - a covered [`AUDIENCE_HEADER`] naming the member the request is for, so
//!   a request signed for one member is worthless at any other;
//! - a `created` parameter within the allowed clock skew, and no `expires`
//!   in the past;
//! - a `nonce` parameter of at most [`NONCE_BYTES_MAX`] bytes, never seen
//!   before within that window ([`ReplayGuard`]), so a captured request
//!   cannot be sent again.
//!
//! Pure: no HTTP types, no clock (`now` is an argument).

mod digest;
mod replay;
mod sfv;

use base64::Engine as _;
use quorate_did::{Did, Signature};

pub use digest::{
    DigestError, ExpectedDigest, StreamingDigest, content_digest_sha256, sha256_field,
    verify_content_digest,
};
pub use replay::{
    NONCE_BYTES_MAX, REPLAY_ENTRIES_MAX, REPLAY_ENTRIES_PER_CALLER_MAX, Remembered, ReplayGuard,
    Replayed,
};

/// The header that names the member a request is addressed to (its
/// did:key). The signature must cover it; the gateway refuses a request
/// whose audience is not its own member.
pub const AUDIENCE_HEADER: &str = "quorate-audience";
/// The header in which a caller declares the purpose of a request
/// ([`crate::purpose`]). When present it must be covered: a purpose
/// changed in flight would be served under another grant's terms.
pub use crate::purpose::PURPOSE_HEADER;

/// The request as the signature sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The absolute target URI, e.g. `http://127.0.0.1:7700/v1/objects/a`.
    pub target_uri: &'a str,
    /// Header fields (names in any case), in the order received.
    pub headers: &'a [(&'a str, &'a str)],
}

/// The parameters of a verified signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    /// The signature's label in the headers (`sig1`).
    pub label: String,
    /// The covered components, in order.
    pub components: Vec<String>,
    /// `keyid`.
    pub keyid: Option<String>,
    /// `created` (Unix seconds).
    pub created: Option<i64>,
    /// `expires` (Unix seconds).
    pub expires: Option<i64>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `alg`.
    pub alg: Option<String>,
}

/// A request whose signature and policy checks passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The caller: the `did:key` in `keyid`.
    pub caller: Did,
    /// The signature's parameters.
    pub params: SignatureParams,
    /// The covered [`PURPOSE_HEADER`]'s value as sent (percent-encoded),
    /// if the request declares one.
    pub purpose: Option<String>,
}

/// What the gateway requires of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy<'a> {
    /// How far `created` may be from now, either way (seconds).
    pub skew_secs: u64,
    /// Whether the request has a body (then `content-digest` must be covered).
    pub has_body: bool,
    /// The member this gateway serves: the covered [`AUDIENCE_HEADER`] must
    /// name it.
    pub audience: &'a Did,
}

/// Why a signature was refused. Each variant is one check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `Signature-Input` or `Signature` header.
    #[error("the request is not signed (no Signature-Input and Signature headers)")]
    Unsigned,
    /// A header is not a valid structured field.
    #[error("{header}: {reason}")]
    Malformed {
        /// Which header.
        header: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No usable signature label (none with a did:key `keyid`, or the
    /// label's signature is missing).
    #[error("no signature with a did:key keyid and a matching Signature entry")]
    NoUsableSignature,
    /// `keyid` is not an Ed25519 did:key.
    #[error("keyid is not an Ed25519 did:key: {0}")]
    KeyId(String),
    /// `alg` is present and not `ed25519`.
    #[error("alg {0:?} is not ed25519")]
    Algorithm(String),
    /// A covered component is missing from the request.
    #[error("covered component {0:?} is not in the request")]
    MissingComponent(String),
    /// A component the policy requires is not covered.
    #[error("the signature must cover {0}")]
    NotCovered(&'static str),
    /// A component is covered twice.
    #[error("component {0:?} is covered twice")]
    DuplicateComponent(String),
    /// The target URI cannot be split into its parts.
    #[error("target URI {0:?} is not absolute")]
    TargetUri(String),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// `created` is missing.
    #[error("the signature has no created parameter")]
    NoCreated,
    /// `created` is outside the allowed skew.
    #[error("created {created} is more than {skew}s from now ({now})")]
    Skew {
        /// `created`.
        created: i64,
        /// Now (Unix seconds).
        now: i64,
        /// The allowed skew.
        skew: u64,
    },
    /// `expires` has passed.
    #[error("the signature expired at {0}")]
    Expired(i64),
    /// `nonce` is missing.
    #[error("the signature has no nonce parameter")]
    NoNonce,
    /// `nonce` is longer than [`NONCE_BYTES_MAX`].
    #[error("the signature's nonce is longer than {NONCE_BYTES_MAX} bytes")]
    NonceTooLong,
    /// The covered [`AUDIENCE_HEADER`] names another member (or is not a
    /// did:key): the request was meant for someone else.
    #[error("the request is addressed to {0:?}, not to this member")]
    WrongAudience(String),
}

/// Builds the RFC 9421 signature base for `components`, ending with the
/// `@signature-params` line as the sender serialized it (`raw_params`).
pub fn signature_base(
    request: &RequestParts<'_>,
    components: &[String],
    raw_params: &str,
) -> Result<String, SignatureError> {
    let uri = TargetUri::parse(request.target_uri)?;
    let mut base = String::new();
    for (i, name) in components.iter().enumerate() {
        if components[..i].contains(name) {
            return Err(SignatureError::DuplicateComponent(name.clone()));
        }
        let value = match name.as_str() {
            "@method" => request.method.to_owned(),
            "@target-uri" => request.target_uri.to_owned(),
            "@authority" => uri.authority.to_ascii_lowercase(),
            "@scheme" => uri.scheme.to_ascii_lowercase(),
            "@path" => uri.path.to_owned(),
            "@query" => format!("?{}", uri.query.unwrap_or("")),
            "@request-target" => match uri.query {
                Some(q) => format!("{}?{q}", uri.path),
                None => uri.path.to_owned(),
            },
            derived if derived.starts_with('@') => {
                return Err(SignatureError::MissingComponent(derived.to_owned()));
            }
            field => header_value(request.headers, field)
                .ok_or_else(|| SignatureError::MissingComponent(field.to_owned()))?,
        };
        if value.contains('\n') {
            return Err(SignatureError::MissingComponent(name.clone()));
        }
        base.push_str(&format!("\"{name}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {raw_params}"));
    Ok(base)
}

/// Verifies the signature labelled `label` (or the only/first one) with
/// `key`, checking only the cryptography and the signature base. The
/// gateway uses [`verify_request`], which adds the policy.
pub fn verify_with_key(
    request: &RequestParts<'_>,
    label: Option<&str>,
    key: &Did,
) -> Result<SignatureParams, SignatureError> {
    let (params, raw, signature) = select(request, |p| label.is_none_or(|l| p.label == l))?;
    check_crypto(request, &params, &raw, &signature, key)?;
    Ok(params)
}

/// Verifies a gateway request: the signature by the `did:key` in `keyid`,
/// then the [`Policy`]. Replay (the nonce) is checked by the caller with a
/// [`ReplayGuard`], after this succeeds.
pub fn verify_request(
    request: &RequestParts<'_>,
    policy: &Policy<'_>,
    now_secs: i64,
) -> Result<Verified, SignatureError> {
    let (params, raw, signature) = select(request, |p| {
        p.keyid
            .as_deref()
            .is_some_and(|k| k.starts_with("did:key:"))
    })?;
    let keyid = params.keyid.clone().unwrap_or_default();
    let caller: Did = keyid
        .parse()
        .map_err(|e: quorate_did::ParseError| SignatureError::KeyId(e.to_string()))?;
    if let Some(alg) = &params.alg
        && alg != "ed25519"
    {
        return Err(SignatureError::Algorithm(alg.clone()));
    }
    let covers = |c: &str| params.components.iter().any(|x| x == c);
    if !covers("@method") {
        return Err(SignatureError::NotCovered("@method"));
    }
    if !(covers("@target-uri") || (covers("@path") && covers("@authority"))) {
        return Err(SignatureError::NotCovered(
            "@target-uri (or @path and @authority)",
        ));
    }
    // An uncovered query could be changed in flight: a listing signed for
    // one prefix would be served for another.
    let has_query = TargetUri::parse(request.target_uri)?.query.is_some();
    if has_query && !(covers("@target-uri") || covers("@query") || covers("@request-target")) {
        return Err(SignatureError::NotCovered(
            "@query (the request has a query; or cover @target-uri)",
        ));
    }
    if policy.has_body && !covers("content-digest") {
        return Err(SignatureError::NotCovered("content-digest"));
    }
    if !covers(AUDIENCE_HEADER) {
        return Err(SignatureError::NotCovered(AUDIENCE_HEADER));
    }
    let audience = header_value(request.headers, AUDIENCE_HEADER).unwrap_or_default();
    if audience.parse::<Did>().ok().as_ref() != Some(policy.audience) {
        // Shown in the refusal, so bounded.
        let shown: String = audience.chars().take(128).collect();
        return Err(SignatureError::WrongAudience(shown));
    }
    let purpose = header_value(request.headers, PURPOSE_HEADER);
    if purpose.is_some() && !covers(PURPOSE_HEADER) {
        return Err(SignatureError::NotCovered(PURPOSE_HEADER));
    }
    let created = params.created.ok_or(SignatureError::NoCreated)?;
    if created.abs_diff(now_secs) > policy.skew_secs {
        return Err(SignatureError::Skew {
            created,
            now: now_secs,
            skew: policy.skew_secs,
        });
    }
    if let Some(expires) = params.expires
        && expires < now_secs
    {
        return Err(SignatureError::Expired(expires));
    }
    match params.nonce.as_deref() {
        None | Some("") => return Err(SignatureError::NoNonce),
        Some(nonce) if nonce.len() > NONCE_BYTES_MAX => {
            return Err(SignatureError::NonceTooLong);
        }
        Some(_) => {}
    }
    // The expensive step last: everything above is cheap string checks.
    check_crypto(request, &params, &raw, &signature, &caller)?;
    Ok(Verified {
        caller,
        params,
        purpose,
    })
}

fn check_crypto(
    request: &RequestParts<'_>,
    params: &SignatureParams,
    raw: &str,
    signature: &Signature,
    key: &Did,
) -> Result<(), SignatureError> {
    let base = signature_base(request, &params.components, raw)?;
    key.verify(base.as_bytes(), signature)
        .map_err(|_| SignatureError::BadSignature)
}

/// Finds the first signature whose parameters satisfy `wanted`.
fn select(
    request: &RequestParts<'_>,
    wanted: impl Fn(&SignatureParams) -> bool,
) -> Result<(SignatureParams, String, Signature), SignatureError> {
    let (Some(input), Some(signatures)) = (
        header_value(request.headers, "signature-input"),
        header_value(request.headers, "signature"),
    ) else {
        return Err(SignatureError::Unsigned);
    };
    let malformed = |header| {
        move |e: sfv::ParseError| SignatureError::Malformed {
            header,
            reason: e.to_string(),
        }
    };
    let inputs = sfv::parse_dictionary(&input).map_err(malformed("Signature-Input"))?;
    let signatures = sfv::parse_dictionary(&signatures).map_err(malformed("Signature"))?;
    for entry in inputs {
        let Some(params) = params_of(&entry) else {
            continue;
        };
        if !wanted(&params) {
            continue;
        }
        let signature = signatures
            .iter()
            .find(|s| s.key == entry.key)
            .and_then(|s| match &s.value {
                sfv::Member::Item(sfv::Item::Bytes(bytes)) => {
                    Signature::try_from(bytes.as_slice()).ok()
                }
                _ => None,
            });
        if let Some(signature) = signature {
            return Ok((params, entry.raw, signature));
        }
    }
    Err(SignatureError::NoUsableSignature)
}

fn params_of(entry: &sfv::Entry) -> Option<SignatureParams> {
    let sfv::Member::InnerList(items) = &entry.value else {
        return None;
    };
    let components = items
        .iter()
        .map(|i| match i {
            sfv::Item::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let mut params = SignatureParams {
        label: entry.key.clone(),
        components,
        keyid: None,
        created: None,
        expires: None,
        nonce: None,
        alg: None,
    };
    for (key, value) in &entry.params {
        match (key.as_str(), value) {
            ("keyid", sfv::Item::String(s)) => params.keyid = Some(s.clone()),
            ("nonce", sfv::Item::String(s)) => params.nonce = Some(s.clone()),
            ("alg", sfv::Item::String(s)) => params.alg = Some(s.clone()),
            ("created", sfv::Item::Integer(n)) => params.created = Some(*n),
            ("expires", sfv::Item::Integer(n)) => params.expires = Some(*n),
            ("tag", _) => {}
            _ => return None,
        }
    }
    Some(params)
}

/// All values of a header (case-insensitive name), trimmed and joined with
/// `, ` as RFC 9421 section 2.1 says.
fn header_value(headers: &[(&str, &str)], name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

struct TargetUri<'a> {
    scheme: &'a str,
    authority: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> TargetUri<'a> {
    fn parse(uri: &'a str) -> Result<Self, SignatureError> {
        let bad = || SignatureError::TargetUri(uri.to_owned());
        let (scheme, rest) = uri.split_once("://").ok_or_else(bad)?;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        if scheme.is_empty() || authority.is_empty() {
            return Err(bad());
        }
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(Self {
            scheme,
            authority,
            path,
            query,
        })
    }
}

/// The two headers of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// The `Signature-Input` value.
    pub signature_input: String,
    /// The `Signature` value.
    pub signature: String,
}

/// Signs `request` as a Quorate client does: label `sig1`, the given
/// covered components, `created`, `keyid` = the key's did:key, `nonce`, and
/// `alg="ed25519"`. Header components must already be in `request`.
pub fn sign_request(
    request: &RequestParts<'_>,
    components: &[&str],
    key: &quorate_did::Keypair,
    created: i64,
    nonce: &str,
) -> Result<SignatureHeaders, SignatureError> {
    let list: Vec<String> = components.iter().map(|c| format!("\"{c}\"")).collect();
    let raw = format!(
        "({});created={created};keyid=\"{}\";nonce=\"{nonce}\";alg=\"ed25519\"",
        list.join(" "),
        key.did()
    );
    let components: Vec<String> = components.iter().map(|c| (*c).to_owned()).collect();
    let base = signature_base(request, &components, &raw)?;
    let signature = key.sign(base.as_bytes());
    Ok(SignatureHeaders {
        signature_input: format!("sig1={raw}"),
        signature: encode_signature("sig1", &signature),
    })
}

/// Encodes a signature as the `Signature` header's byte-sequence value.
pub fn encode_signature(label: &str, signature: &Signature) -> String {
    format!(
        "{label}=:{}:",
        base64::engine::general_purpose::STANDARD.encode(signature.as_bytes())
    )
}

#[cfg(test)]
mod tests;
