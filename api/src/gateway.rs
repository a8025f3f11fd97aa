//! The gateway's HTTP door: members' requests signed with RFC 9421 HTTP
//! Message Signatures (Ed25519, `keyid` = the caller's did:key).
//!
//! Here a request is only authenticated, cheapest check first: addressed to
//! this gateway's authority, signed for this member (the covered
//! `quorate-audience`), a valid signature with `created` within the skew,
//! a member's key, and a nonce never seen in the window (remembered across
//! restarts through a [`NonceJournal`]). Authorization, rate limits,
//! serving and the audit record are the node's one pipeline
//! ([`Pipeline`]), the same that serves peers over libp2p. A request
//! refused here is audited too, and no data leaves; refusals of requests
//! that carry no member's valid signature are audited at a bounded rate per
//! source address, and summarized past it ([`UnauthenticatedRefusals`]).
//!
//! Every refusal, this door's or the pipeline's, is a [`Refusal`]; this is
//! the one place one becomes an HTTP status and problem ([`status`]).
//!
//! Routes: `GET /gateway/objects/{path}` (with `Range`),
//! `GET /gateway/objects?prefix=…` (a listing of what the caller may list),
//! `PUT /gateway/objects/{path}` (a write under a `write` grant: the body's
//! RFC 9530 `Content-Digest` must be covered by the signature, and is
//! checked against the body as it streams), `DELETE /gateway/objects/{path}`
//! (under a `delete` grant) and `GET /gateway/catalog`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use quorate_contracts::{Action, ResourcePath};
use quorate_did::Did;

use crate::objects::{
    ByteRange, Forward, ListQuery, Listing, ObjectBody, Precondition, Written, is_media_type,
    range_of,
};
use crate::problem::Problem;
use crate::refusal::{BadRange, Code, Refusal};
use crate::serve::PeerAddr;
use crate::signature::{
    ExpectedDigest, Policy, Remembered, ReplayGuard, RequestParts, verify_request,
};

/// The transport name in audit records.
pub const TRANSPORT: &str = "http";

/// Refusals of unauthenticated requests audited per second per source
/// address, after the burst; past it they are counted, not written.
pub const UNAUTHENTICATED_AUDITS_PER_SEC: f64 = 5.0;
/// The burst of unauthenticated refusals audited from one source address.
pub const UNAUTHENTICATED_AUDITS_BURST: f64 = 20.0;
/// How often the refusals not written are summarized, one record per
/// source address.
pub const SUPPRESSED_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// Source addresses tracked at once; past this, new ones share one bucket.
pub const SOURCES_MAX: usize = 4096;

/// Where the gateway keeps the nonces it accepted, so that a replay is
/// still refused after a restart. The node implements it on disk.
pub trait NonceJournal: Send + Sync + 'static {
    /// Keeps `nonce` before the request is served. An error refuses the
    /// request (503): serving it could let a replay through later.
    fn keep(&self, nonce: &Remembered) -> std::io::Result<()>;
}

/// A member's write, as the door hands it to the pipeline: authenticated,
/// its headers checked, its body not yet read.
#[derive(Debug)]
pub struct Upload {
    /// The body, streamed.
    pub body: Body,
    /// Its `Content-Length`, when it declared one.
    pub length: Option<u64>,
    /// What its covered `Content-Digest` promises.
    pub digest: ExpectedDigest,
    /// The media type to store (`application/octet-stream` if none).
    pub content_type: String,
    /// The purpose the caller declared.
    pub purpose: Option<String>,
    /// Its condition on what it replaces.
    pub precondition: Precondition,
    /// `POST` rather than `PUT`: only an upstream route takes it.
    pub post: bool,
    /// What an upstream route passes on (the query, the headers).
    pub forward: Forward,
}

/// What an allowed write did.
#[derive(Debug)]
pub enum Wrote {
    /// The object was stored in this node.
    Stored(Written),
    /// An upstream route's service took it, and answered this.
    Forwarded(ObjectBody),
}

/// The node's gateway pipeline, as the signed HTTP door calls it: the
/// caller is authenticated (a member's valid signature, a fresh nonce).
pub trait Pipeline: Clone + Send + Sync + 'static {
    /// A read: authorize against the committed grants, rate-limit, serve,
    /// audit.
    fn read(
        &self,
        caller: Did,
        path: ResourcePath,
        range: Option<ByteRange>,
        purpose: Option<String>,
        forward: Forward,
    ) -> impl Future<Output = Result<ObjectBody, Refusal>> + Send;
    /// A listing of what the caller may list, for `purpose`.
    fn list(
        &self,
        caller: Did,
        query: ListQuery,
        purpose: Option<String>,
    ) -> impl Future<Output = Result<Listing, Refusal>> + Send;
    /// A write: authorize (`write`) before a byte of the body is read,
    /// stream it to storage checked against its digest, commit, audit.
    fn write(
        &self,
        caller: Did,
        path: ResourcePath,
        upload: Upload,
    ) -> impl Future<Output = Result<Wrote, Refusal>> + Send;
    /// A delete under a `delete` grant, audited.
    fn delete(
        &self,
        caller: Did,
        path: ResourcePath,
        purpose: Option<String>,
        precondition: Precondition,
        forward: Forward,
    ) -> impl Future<Output = Result<(), Refusal>> + Send;
    /// This organization's catalog of offers as the caller may see it:
    /// DCAT in JSON-LD.
    fn catalog(
        &self,
        caller: Did,
    ) -> impl Future<Output = Result<serde_json::Value, Refusal>> + Send;
    /// Whether `did` is a member's current key on the committed ledger
    /// (cheap: a lookup in the state snapshot). The door asks before it
    /// stores anything for a signed request, such as its nonce.
    fn is_member(&self, did: &Did) -> bool;
    /// Audits a request this door refused (unsigned, bad signature,
    /// replay, bad path): `caller` when it was a member's valid signature.
    fn refused(
        &self,
        caller: Option<Did>,
        action: Action,
        resource: String,
        refusal: &Refusal,
    ) -> impl Future<Output = ()> + Send;
}

/// The HTTP status of a refusal: with [`Code::as_str`] as the problem
/// type, the one mapping of gateway refusals to HTTP. A peer's refusal
/// fetched over libp2p is answered with the status its code has here.
pub fn status(code: Code) -> StatusCode {
    match code {
        Code::Denied(_) => StatusCode::FORBIDDEN,
        Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Code::NotFound
        | Code::UnknownDownload
        | Code::UnknownUpload
        | Code::UnknownAccessRequest
        | Code::UnknownOffer => StatusCode::NOT_FOUND,
        Code::InvalidAccessRequest | Code::OutsideOffer => StatusCode::UNPROCESSABLE_ENTITY,
        Code::AccessRequestClosed => StatusCode::CONFLICT,
        Code::TooManyAccessRequests => StatusCode::TOO_MANY_REQUESTS,
        Code::RangeNotSatisfiable | Code::BadRange => StatusCode::RANGE_NOT_SATISFIABLE,
        Code::Changed => StatusCode::PRECONDITION_FAILED,
        Code::BadPath
        | Code::BadRequest
        | Code::BadChunk
        | Code::BadDigest
        | Code::DigestMismatch => StatusCode::BAD_REQUEST,
        Code::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::NotWritable => StatusCode::CONFLICT,
        Code::StaleLedger
        | Code::NotServing
        | Code::TooManyDownloads
        | Code::TooManyUploads
        | Code::UpstreamUnavailable
        | Code::ReplayJournalUnavailable
        | Code::AuditUnavailable
        | Code::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        Code::UpstreamFailed | Code::UpstreamTooLarge | Code::PeerRefused => {
            StatusCode::BAD_GATEWAY
        }
        Code::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::WrongAuthority | Code::WrongAudience => StatusCode::MISDIRECTED_REQUEST,
        Code::Unauthenticated | Code::BadSignature | Code::Replayed | Code::RefusalsSuppressed => {
            StatusCode::UNAUTHORIZED
        }
    }
}

impl From<&Refusal> for Problem {
    fn from(refusal: &Refusal) -> Self {
        let code = refusal.code();
        let mut problem = Problem::new(status(code), code.as_str(), refusal.to_string());
        problem.retry_after_secs = refusal.retry_after_secs();
        problem
    }
}

impl From<Refusal> for Problem {
    fn from(refusal: Refusal) -> Self {
        Problem::from(&refusal)
    }
}

impl From<BadRange> for Problem {
    fn from(bad: BadRange) -> Self {
        Problem::from(Refusal::BadRange(bad))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        Problem::from(&self).into_response()
    }
}

/// What the gateway's HTTP door needs to know about the node it guards.
pub struct Settings {
    /// How far a signature's `created` may be from now, either way; the
    /// replay window is as long.
    pub skew_secs: u64,
    /// This gateway's public authority (`host:port`, as members address
    /// it): a request whose `Host` (and so its covered `@authority` or
    /// `@target-uri`) names another is refused.
    pub authority: String,
    /// The member this gateway serves: the covered `quorate-audience` of
    /// every request must name it.
    pub audience: Did,
    /// Nonces seen so far (restored from the journal at start).
    pub replay: ReplayGuard,
    /// Where accepted nonces are kept; `None` keeps them in memory only.
    pub journal: Option<Arc<dyn NonceJournal>>,
}

impl Settings {
    /// Settings for the gateway of `audience` at `authority`, accepting
    /// signatures within `skew_secs`, remembering nonces in memory only.
    pub fn new(skew_secs: u64, authority: impl Into<String>, audience: Did) -> Self {
        Self {
            skew_secs,
            authority: authority.into().to_ascii_lowercase(),
            audience,
            replay: ReplayGuard::new(skew_secs),
            journal: None,
        }
    }

    /// Keeps accepted nonces in `journal`, starting from `replay` (the
    /// nonces the journal held at start).
    pub fn with_journal(mut self, journal: Arc<dyn NonceJournal>, replay: ReplayGuard) -> Self {
        self.journal = Some(journal);
        self.replay = replay;
        self
    }
}

/// The scheme members address the gateway by: its listener is TLS only,
/// so a signature over an `http://` target never verifies.
pub const SCHEME: &str = "https";

#[derive(Clone)]
struct Gateway<P> {
    pipeline: P,
    replay: Arc<Mutex<ReplayGuard>>,
    journal: Option<Arc<dyn NonceJournal>>,
    refusals: Arc<Mutex<UnauthenticatedRefusals>>,
    skew_secs: u64,
    authority: Arc<str>,
    audience: Arc<Did>,
}

/// The signed routes, in front of `pipeline`.
pub fn router<P: Pipeline>(pipeline: P, settings: Settings) -> Router {
    let gateway = Gateway {
        pipeline,
        replay: Arc::new(Mutex::new(settings.replay)),
        journal: settings.journal,
        refusals: Arc::new(Mutex::new(UnauthenticatedRefusals::default())),
        skew_secs: settings.skew_secs,
        authority: settings.authority.into(),
        audience: Arc::new(settings.audience),
    };
    // Summaries of suppressed refusals are written even if the flood
    // stops (no later refusal would carry them out).
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(summarize_suppressed(
            gateway.pipeline.clone(),
            Arc::downgrade(&gateway.refusals),
        ));
    }
    Router::new()
        .route("/gateway/objects", get(list::<P>))
        .route(
            "/gateway/objects/{*path}",
            get(read::<P>)
                .put(write::<P>)
                .post(write::<P>)
                .delete(delete::<P>),
        )
        .route("/gateway/catalog", get(catalog::<P>))
        .with_state(gateway)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Why authentication failed, and the caller when its signature was valid
/// and it is a member.
struct Refused {
    member: Option<Did>,
    refusal: Refusal,
}

impl Refused {
    fn anonymous(refusal: impl Into<Refusal>) -> Box<Self> {
        Box::new(Self {
            member: None,
            refusal: refusal.into(),
        })
    }
}

/// Checks where the request is addressed, the signature (covering
/// `content-digest` when it has a body), membership and the nonce; returns
/// the caller, a member.
fn authenticate<P: Pipeline>(
    gateway: &Gateway<P>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(Did, Option<String>), Box<Refused>> {
    authenticate_request(gateway, method, uri, headers, false)
}

fn authenticate_request<P: Pipeline>(
    gateway: &Gateway<P>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    has_body: bool,
) -> Result<(Did, Option<String>), Box<Refused>> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !host.eq_ignore_ascii_case(&gateway.authority) {
        return Err(Refused::anonymous(Refusal::WrongAuthority {
            authority: gateway.authority.to_string(),
            addressed: host.chars().take(128).collect(),
        }));
    }
    // The target URI is rebuilt from our own scheme and authority, so a
    // signature made for any other cannot verify here.
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target_uri = format!("{SCHEME}://{}{path_and_query}", gateway.authority);
    let fields: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let parts = RequestParts {
        method: method.as_str(),
        target_uri: &target_uri,
        headers: &fields,
    };
    let policy = Policy {
        skew_secs: gateway.skew_secs,
        has_body,
        audience: &gateway.audience,
    };
    let now = now_secs();
    let verified = verify_request(&parts, &policy, now).map_err(Refused::anonymous)?;
    // Nothing is stored for a key that is not a member's.
    if !gateway.pipeline.is_member(&verified.caller) {
        return Err(Refused::anonymous(Refusal::NotAMemberKey(Box::new(
            verified.caller,
        ))));
    }
    let nonce = verified.params.nonce.as_deref().unwrap_or_default();
    let created = verified.params.created.unwrap_or(now);
    let checked = match gateway.replay.lock() {
        Ok(mut guard) => guard.check(&verified.caller, nonce, created, now),
        Err(_) => Err(crate::signature::Replayed::Full),
    };
    let refused = |refusal| {
        Box::new(Refused {
            member: Some(verified.caller),
            refusal,
        })
    };
    let remembered = checked.map_err(|e| refused(Refusal::Replay(e)))?;
    if let Some(journal) = &gateway.journal
        && let Err(e) = journal.keep(&remembered)
    {
        tracing::error!(target: "gateway", error = %e, "cannot keep a nonce; refusing the request");
        return Err(refused(Refusal::JournalUnavailable));
    }
    let purpose = match verified.purpose.as_deref().map(crate::purpose::decode) {
        Some(Ok(purpose)) => Some(purpose),
        Some(Err(_)) => {
            return Err(refused(Refusal::BadRequest(
                "Quorate-Purpose is 1 to 256 bytes of percent-encoded UTF-8",
            )));
        }
        None => None,
    };
    Ok((verified.caller, purpose))
}

/// Audits a refusal before the pipeline and answers it. Refusals with no
/// member behind them are audited at a bounded rate per source address.
async fn refuse<P: Pipeline>(
    gateway: &Gateway<P>,
    peer: Option<PeerAddr>,
    refused: Refused,
    action: Action,
    resource: String,
) -> Response {
    let Refused { member, refusal } = refused;
    let audit = match member {
        Some(_) => true,
        None => {
            let source = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip());
            match gateway.refusals.lock() {
                Ok(mut refusals) => refusals.admit(source, Instant::now()),
                Err(_) => false,
            }
        }
    };
    if audit {
        gateway
            .pipeline
            .refused(member, action, resource, &refusal)
            .await;
    }
    refusal.into_response()
}

async fn read<P: Pipeline>(
    State(gateway): State<Gateway<P>>,
    peer: Option<Extension<PeerAddr>>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(p)| p);
    let (caller, purpose) = match authenticate(&gateway, &method, &uri, &headers) {
        Ok(authenticated) => authenticated,
        Err(refused) => return refuse(&gateway, peer, *refused, Action::Read, path).await,
    };
    let checked = range_of(&headers).map_err(Refusal::from).and_then(|range| {
        let resource = ResourcePath::parse(&path).map_err(|error| Refusal::BadPath {
            path: path.clone(),
            error,
        })?;
        Ok((resource, range))
    });
    let (resource, range) = match checked {
        Ok(ok) => ok,
        Err(refusal) => {
            let refused = Refused {
                member: Some(caller),
                refusal,
            };
            return refuse(&gateway, peer, refused, Action::Read, path).await;
        }
    };
    // What an upstream route may pass on; the headers are the request's
    // own, moved, not copied.
    let forward = Forward {
        head: method == Method::HEAD,
        query: uri.query().map(str::to_owned),
        headers,
    };
    match gateway
        .pipeline
        .read(caller, resource, range, purpose, forward)
        .await
    {
        Ok(object) => object.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The media type a write stores: its `Content-Type`, or
/// `application/octet-stream`.
fn written_content_type(headers: &HeaderMap) -> Result<String, Refusal> {
    match headers.get(axum::http::header::CONTENT_TYPE) {
        None => Ok("application/octet-stream".to_owned()),
        Some(value) => match value.to_str() {
            Ok(text) if is_media_type(text) => Ok(text.to_owned()),
            _ => Err(Refusal::BadRequest(
                "Content-Type must be a media type (type/subtype; parameters), at most 256 bytes",
            )),
        },
    }
}

/// What a write's headers say, checked: the path, the covered
/// `Content-Digest`, the media type, the precondition and the length.
fn write_headers(path: &str, headers: &HeaderMap) -> Result<(ResourcePath, Upload), Refusal> {
    let resource = ResourcePath::parse(path).map_err(|error| Refusal::BadPath {
        path: path.to_owned(),
        error,
    })?;
    let digest = headers
        .get("content-digest")
        .and_then(|v| v.to_str().ok())
        .ok_or(Refusal::Digest(crate::signature::DigestError::Malformed(
            "a write needs a Content-Digest".to_owned(),
        )))
        .and_then(|text| ExpectedDigest::parse(text).map_err(Refusal::Digest))?;
    let length = match headers.get(axum::http::header::CONTENT_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(Refusal::BadRequest("Content-Length is not a number"))?,
        ),
    };
    let upload = Upload {
        body: Body::empty(),
        length,
        digest,
        content_type: written_content_type(headers)?,
        purpose: None,
        precondition: Precondition::of(headers).map_err(Refusal::BadRequest)?,
        post: false,
        forward: Forward::default(),
    };
    Ok((resource, upload))
}

async fn write<P: Pipeline>(
    State(gateway): State<Gateway<P>>,
    peer: Option<Extension<PeerAddr>>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = peer.map(|Extension(p)| p);
    let authenticated = authenticate_request(&gateway, &method, &uri, &headers, true);
    let checked = authenticated.and_then(|(caller, purpose)| {
        write_headers(&path, &headers)
            .map(|(resource, upload)| (caller, resource, Upload { purpose, ..upload }))
            .map_err(|refusal| {
                Box::new(Refused {
                    member: Some(caller),
                    refusal,
                })
            })
    });
    let (caller, resource, upload) = match checked {
        Ok(checked) => checked,
        Err(refused) => {
            crate::local::drain(body);
            return refuse(&gateway, peer, *refused, Action::Write, path).await;
        }
    };
    let upload = Upload {
        body,
        post: method == Method::POST,
        forward: Forward {
            head: false,
            query: uri.query().map(str::to_owned),
            headers,
        },
        ..upload
    };
    match gateway.pipeline.write(caller, resource, upload).await {
        Ok(Wrote::Stored(written)) => {
            let status = if written.replaced {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (status, Json(written)).into_response()
        }
        Ok(Wrote::Forwarded(answer)) => answer.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn delete<P: Pipeline>(
    State(gateway): State<Gateway<P>>,
    peer: Option<Extension<PeerAddr>>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(p)| p);
    let checked = authenticate(&gateway, &method, &uri, &headers).and_then(|(caller, purpose)| {
        let refused = |refusal| {
            Box::new(Refused {
                member: Some(caller),
                refusal,
            })
        };
        let resource = ResourcePath::parse(&path).map_err(|error| {
            refused(Refusal::BadPath {
                path: path.clone(),
                error,
            })
        })?;
        let precondition =
            Precondition::of(&headers).map_err(|e| refused(Refusal::BadRequest(e)))?;
        Ok((caller, resource, purpose, precondition))
    });
    let (caller, resource, purpose, precondition) = match checked {
        Ok(checked) => checked,
        Err(refused) => return refuse(&gateway, peer, *refused, Action::Delete, path).await,
    };
    let forward = Forward {
        head: false,
        query: uri.query().map(str::to_owned),
        headers,
    };
    match gateway
        .pipeline
        .delete(caller, resource, purpose, precondition, forward)
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn list<P: Pipeline>(
    State(gateway): State<Gateway<P>>,
    peer: Option<Extension<PeerAddr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    const LISTING: &str = "(listing)";
    let peer = peer.map(|Extension(p)| p);
    let (caller, purpose) = match authenticate(&gateway, &method, &uri, &headers) {
        Ok(authenticated) => authenticated,
        Err(refused) => {
            return refuse(&gateway, peer, *refused, Action::List, LISTING.into()).await;
        }
    };
    let Ok(Query(query)) = query else {
        let refused = Refused {
            member: Some(caller),
            refusal: Refusal::BadRequest("bad listing query"),
        };
        return refuse(&gateway, peer, refused, Action::List, LISTING.into()).await;
    };
    match gateway.pipeline.list(caller, query, purpose).await {
        Ok(listing) => Json(listing).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The media type of a catalog: JSON-LD.
pub const CATALOG_MEDIA_TYPE: &str = "application/ld+json";

async fn catalog<P: Pipeline>(
    State(gateway): State<Gateway<P>>,
    peer: Option<Extension<PeerAddr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const CATALOG: &str = "catalog";
    let peer = peer.map(|Extension(p)| p);
    let caller = match authenticate(&gateway, &method, &uri, &headers) {
        Ok((caller, _)) => caller,
        Err(refused) => {
            return refuse(&gateway, peer, *refused, Action::Read, CATALOG.into()).await;
        }
    };
    match gateway.pipeline.catalog(caller).await {
        Ok(catalog) => (
            [(axum::http::header::CONTENT_TYPE, CATALOG_MEDIA_TYPE)],
            Json(catalog),
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Writes, every [`SUPPRESSED_SUMMARY_INTERVAL`], one record per source
/// address whose refusals were not audited one by one; stops when the
/// gateway is gone.
async fn summarize_suppressed<P: Pipeline>(
    pipeline: P,
    refusals: std::sync::Weak<Mutex<UnauthenticatedRefusals>>,
) {
    let mut tick = tokio::time::interval(SUPPRESSED_SUMMARY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(refusals) = refusals.upgrade() else {
            return;
        };
        let due = match refusals.lock() {
            Ok(mut refusals) => refusals.take_suppressed(),
            Err(_) => return,
        };
        drop(refusals);
        for (source, count) in due {
            let resource = format!("({count} refusals from {source})");
            let refusal = Refusal::Suppressed {
                count,
                from: source,
            };
            pipeline
                .refused(None, Action::Read, resource, &refusal)
                .await;
        }
    }
}

/// Rate of audit records for refusals with no member behind them, per
/// source address: a token bucket each, and a count of what it held back.
#[derive(Debug, Default)]
pub struct UnauthenticatedRefusals {
    sources: HashMap<IpAddr, Source>,
}

#[derive(Debug)]
struct Source {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

impl UnauthenticatedRefusals {
    /// Whether a refusal from `source` is audited now; if not, it is
    /// counted for the next summary.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        // Past the bound, unknown sources share one bucket: the log stays
        // bounded even under a flood from many addresses.
        let source = if self.sources.len() >= SOURCES_MAX && !self.sources.contains_key(&source) {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            source
        };
        let entry = self.sources.entry(source).or_insert(Source {
            tokens: UNAUTHENTICATED_AUDITS_BURST,
            at: now,
            suppressed: 0,
        });
        let elapsed = now.duration_since(entry.at).as_secs_f64();
        entry.tokens = (entry.tokens + elapsed * UNAUTHENTICATED_AUDITS_PER_SEC)
            .min(UNAUTHENTICATED_AUDITS_BURST);
        entry.at = now;
        if entry.tokens >= 1.0 {
            entry.tokens -= 1.0;
            true
        } else {
            entry.suppressed += 1;
            false
        }
    }

    /// The counts held back since the last call, and forgets sources whose
    /// bucket has refilled (they cost nothing to recreate).
    pub fn take_suppressed(&mut self) -> Vec<(IpAddr, u64)> {
        let now = Instant::now();
        let mut due = Vec::new();
        self.sources.retain(|source, entry| {
            if entry.suppressed > 0 {
                due.push((*source, std::mem::take(&mut entry.suppressed)));
            }
            let refill =
                now.duration_since(entry.at).as_secs_f64() * UNAUTHENTICATED_AUDITS_PER_SEC;
            entry.tokens + refill < UNAUTHENTICATED_AUDITS_BURST
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_refusals_are_audited_at_a_bounded_rate_and_counted() {
        let mut refusals = UnauthenticatedRefusals::default();
        let start = Instant::now();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let audited = (0..1000).filter(|_| refusals.admit(a, start)).count();
        assert_eq!(audited, UNAUTHENTICATED_AUDITS_BURST as usize);
        // Another source has its own budget.
        assert!(refusals.admit(b, start));
        // One second later, the rate's worth again.
        let later = start + Duration::from_secs(1);
        let audited = (0..1000).filter(|_| refusals.admit(a, later)).count();
        assert_eq!(audited, UNAUTHENTICATED_AUDITS_PER_SEC as usize);
        let mut due = refusals.take_suppressed();
        due.sort();
        assert_eq!(due, vec![(a, 2000 - 20 - 5)]);
        assert!(refusals.take_suppressed().is_empty());
    }

    #[test]
    fn sources_past_the_bound_share_one_bucket() {
        let mut refusals = UnauthenticatedRefusals::default();
        let now = Instant::now();
        for i in 0..SOURCES_MAX as u32 {
            refusals.admit(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), now);
        }
        let audited = (0..1000u32)
            .filter(|i| refusals.admit(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)), now))
            .count();
        assert_eq!(audited, UNAUTHENTICATED_AUDITS_BURST as usize);
        assert!(refusals.sources.len() <= SOURCES_MAX + 1);
    }
}
