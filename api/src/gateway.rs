//! The gateway's HTTP door: members' requests signed with RFC 9421 HTTP
//! Message Signatures (Ed25519, `keyid` = the caller's did:key).
//!
//! Here a request is only authenticated, cheapest check first: addressed to
//! this gateway's authority, signed for this member (the covered
//! `quorate-audience`), a valid signature with `created` within the skew,
//! a member's key, and a nonce never seen in the window (remembered across
//! restarts through a [`NonceJournal`]). Authorization, rate limits,
//! serving and the audit record are the node's one pipeline
//! ([`Node::gateway_read`]), the same that serves peers over libp2p. A
//! request refused here is audited too, and no data leaves; refusals of
//! requests that carry no member's valid signature are audited at a
//! bounded rate per source address, and summarized past it
//! ([`UnauthenticatedRefusals`]).
//!
//! Routes: `GET /gateway/objects/{path}` (with `Range`) and
//! `GET /gateway/objects?prefix=…` (a listing of what the caller may list).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use quorate_contracts::Action;
use quorate_did::Did;

use crate::local::Node;
use crate::objects::{ListQuery, range_of};
use crate::problem::Problem;
use crate::serve::PeerAddr;
use crate::signature::{
    Policy, Remembered, ReplayGuard, Replayed, RequestParts, SignatureError, verify_request,
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

#[derive(Clone)]
struct Gateway<N> {
    node: N,
    replay: Arc<Mutex<ReplayGuard>>,
    journal: Option<Arc<dyn NonceJournal>>,
    refusals: Arc<Mutex<UnauthenticatedRefusals>>,
    skew_secs: u64,
    authority: Arc<str>,
    audience: Arc<Did>,
}

/// The signed routes.
pub fn router<N: Node>(node: N, settings: Settings) -> Router {
    let gateway = Gateway {
        node,
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
            gateway.node.clone(),
            Arc::downgrade(&gateway.refusals),
        ));
    }
    Router::new()
        .route("/gateway/objects", get(list::<N>))
        .route("/gateway/objects/{*path}", get(read::<N>))
        .with_state(gateway)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn signature_problem(e: &SignatureError) -> Problem {
    match e {
        SignatureError::Unsigned => Problem::unauthenticated(e.to_string()),
        SignatureError::WrongAudience(_) => Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong-audience",
            e.to_string(),
        ),
        _ => Problem::new(StatusCode::UNAUTHORIZED, "bad-signature", e.to_string()),
    }
}

/// Why authentication failed: the problem, and the caller when its
/// signature was valid and it is a member.
struct Refused {
    member: Option<Did>,
    problem: Problem,
}

impl Refused {
    fn anonymous(problem: Problem) -> Box<Self> {
        Box::new(Self {
            member: None,
            problem,
        })
    }
}

/// Checks where the request is addressed, the signature, membership and
/// the nonce; returns the caller, a member.
fn authenticate<N: Node>(
    gateway: &Gateway<N>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Did, Box<Refused>> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !host.eq_ignore_ascii_case(&gateway.authority) {
        let shown: String = host.chars().take(128).collect();
        return Err(Refused::anonymous(Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong-authority",
            format!(
                "this gateway is {}; the request is addressed to {shown:?}",
                gateway.authority
            ),
        )));
    }
    // The target URI is rebuilt from our own authority, so a signature
    // made for any other cannot verify here.
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target_uri = format!("http://{}{path_and_query}", gateway.authority);
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
        has_body: false,
        audience: &gateway.audience,
    };
    let now = now_secs();
    let verified = verify_request(&parts, &policy, now)
        .map_err(|e| Refused::anonymous(signature_problem(&e)))?;
    // Nothing is stored for a key that is not a member's.
    if !gateway.node.is_member(&verified.caller) {
        return Err(Refused::anonymous(Problem::new(
            StatusCode::FORBIDDEN,
            "not-a-member",
            format!("{} is not a member's key", verified.caller),
        )));
    }
    let nonce = verified.params.nonce.as_deref().unwrap_or_default();
    let created = verified.params.created.unwrap_or(now);
    let checked = match gateway.replay.lock() {
        Ok(mut guard) => guard.check(&verified.caller, nonce, created, now),
        Err(_) => Err(Replayed::Full),
    };
    let refused = |problem| {
        Box::new(Refused {
            member: Some(verified.caller),
            problem,
        })
    };
    let remembered = checked.map_err(|e| refused(replay_problem(e)))?;
    if let Some(journal) = &gateway.journal
        && let Err(e) = journal.keep(&remembered)
    {
        tracing::error!(target: "gateway", error = %e, "cannot keep a nonce; refusing the request");
        let mut problem = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "replay-journal-unavailable",
            "this gateway cannot record the request's nonce; retry shortly",
        );
        problem.retry_after_secs = Some(1);
        return Err(refused(problem));
    }
    Ok(verified.caller)
}

fn replay_problem(e: Replayed) -> Problem {
    match e {
        Replayed::Seen => Problem::new(
            StatusCode::UNAUTHORIZED,
            "replayed",
            "this signature's nonce was already used",
        ),
        Replayed::TooLong => Problem::new(StatusCode::UNAUTHORIZED, "bad-signature", e.to_string()),
        Replayed::CallerFull => {
            let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", e.to_string());
            p.retry_after_secs = Some(1);
            p
        }
        other => {
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                other.to_string(),
            );
            p.retry_after_secs = Some(1);
            p
        }
    }
}

/// Audits a refusal before the pipeline and answers it. Refusals with no
/// member behind them are audited at a bounded rate per source address.
async fn refuse<N: Node>(
    gateway: &Gateway<N>,
    peer: Option<PeerAddr>,
    refused: Refused,
    action: Action,
    resource: String,
) -> Response {
    let Refused { member, problem } = refused;
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
            .node
            .gateway_refused(member, TRANSPORT, action, resource, &problem)
            .await;
    }
    problem.into_response()
}

async fn read<N: Node>(
    State(gateway): State<Gateway<N>>,
    peer: Option<Extension<PeerAddr>>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(p)| p);
    let caller = match authenticate(&gateway, &method, &uri, &headers) {
        Ok(caller) => caller,
        Err(refused) => return refuse(&gateway, peer, *refused, Action::Read, path).await,
    };
    let checked =
        range_of(&headers).and_then(|range| crate::local::resource(&path).map(|p| (p, range)));
    let (resource, range) = match checked {
        Ok(ok) => ok,
        Err(problem) => {
            let refused = Refused {
                member: Some(caller),
                problem,
            };
            return refuse(&gateway, peer, refused, Action::Read, path).await;
        }
    };
    match gateway
        .node
        .gateway_read(caller, TRANSPORT, resource, range)
        .await
    {
        Ok(object) => object.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn list<N: Node>(
    State(gateway): State<Gateway<N>>,
    peer: Option<Extension<PeerAddr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    const LISTING: &str = "(listing)";
    let peer = peer.map(|Extension(p)| p);
    let caller = match authenticate(&gateway, &method, &uri, &headers) {
        Ok(caller) => caller,
        Err(refused) => {
            return refuse(&gateway, peer, *refused, Action::List, LISTING.into()).await;
        }
    };
    let Ok(Query(query)) = query else {
        let refused = Refused {
            member: Some(caller),
            problem: Problem::bad_request("bad listing query"),
        };
        return refuse(&gateway, peer, refused, Action::List, LISTING.into()).await;
    };
    match gateway.node.gateway_list(caller, TRANSPORT, query).await {
        Ok(json) => Json(json).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// Writes, every [`SUPPRESSED_SUMMARY_INTERVAL`], one record per source
/// address whose refusals were not audited one by one; stops when the
/// gateway is gone.
async fn summarize_suppressed<N: Node>(
    node: N,
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
            let problem = Problem::new(
                StatusCode::UNAUTHORIZED,
                "refusals-suppressed",
                format!(
                    "{count} unauthenticated refusals from {source} were not audited one by one"
                ),
            );
            let resource = format!("({count} refusals from {source})");
            node.gateway_refused(None, TRANSPORT, Action::Read, resource, &problem)
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
