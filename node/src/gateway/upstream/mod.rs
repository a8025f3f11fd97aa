//! Upstream routes: a resource prefix served by existing HTTP services
//! (`erp/*` → `http://10.0.0.7:9000`, `http://10.0.0.8:9000`), so an
//! organization can share a service under grants, not only stored objects.
//!
//! The gateway authorizes first; only then is an upstream asked. What
//! travels on: the method the grant's action allows (read → GET or HEAD,
//! write → PUT or POST, delete → DELETE), the query string, the request
//! headers the route allows, and who is asking (`Quorate-Member`,
//! `Quorate-Grant`, `Quorate-Purpose`); what comes back: the status (2xx),
//! the media type, the length and the response headers the route allows.
//!
//! A route may name several URLs, taken in turn (`round-robin`) or by the
//! fewest calls in flight (`least-connections`). Health is passive: every
//! URL has its own circuit, which consecutive failures open; an open URL
//! is skipped for a cool-down, then one trial call decides whether it
//! closes again. A call that could not connect at all (nothing was sent)
//! is tried once more on another URL. Every call is bounded in time (until
//! the headers, then per body chunk).
//!
//! The routes are a value: `quorate node reload` (or SIGHUP) builds a new
//! one from the config and swaps it in whole, or keeps the old one if the
//! new config is invalid.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use quorate_api::local::responses::{UpstreamRouteView, UpstreamUrlView, UpstreamsView};
use quorate_api::refusal::UpstreamFailure;
use quorate_contracts::{GrantId, ResourcePath};
use quorate_did::Did;
use serde::{Deserialize, Serialize};

use crate::home::duration::HumanDuration;

/// Consecutive failures that open a URL's circuit.
pub const BREAKER_FAILURES: u32 = 5;
/// How long an open circuit refuses before a trial call.
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(10);
/// URLs one route may name.
pub const URLS_MAX: usize = 16;
/// Header names one allow-list may hold.
pub const HEADERS_MAX: usize = 32;
/// The longest query string forwarded.
pub const QUERY_BYTES_MAX: usize = 2048;
/// Routes one config may hold.
pub const ROUTES_MAX: usize = 256;
/// The longest wait for a connection to a URL.
pub const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// Headers that describe one connection or the message's framing, or that
/// the gateway itself sets or consumes: never copied from one side to the
/// other, whatever an allow-list says.
const NEVER_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-type",
    // Ranges are not forwarded (the gateway answers an upstream route's
    // resource whole), so neither are the headers that would make a part.
    "range",
    "if-range",
    "content-range",
    // The member's credentials for this gateway, and who it is: the
    // gateway says who asks (and every `quorate-` name is its own).
    "authorization",
    "signature",
    "signature-input",
    "content-digest",
    "cookie",
    "set-cookie",
    // Who the client is, as a proxy would say it: a member could forge it.
    "forwarded",
    "x-real-ip",
    // Preconditions of writes travel always (see `Route::request`).
    "if-match",
    "if-none-match",
];

/// Name prefixes never forwarded either way.
const NEVER_FORWARDED_PREFIXES: &[&str] = &["quorate-", "x-forwarded-"];

/// The member a forwarded call is made for (its `did:key`).
pub const MEMBER_HEADER: &str = "quorate-member";
/// The grant that allowed it (hex).
pub const GRANT_HEADER: &str = "quorate-grant";

/// How a route spreads its calls over its URLs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each URL in turn.
    #[default]
    RoundRobin,
    /// The URL with the fewest calls in flight (in turn among equals).
    LeastConnections,
}

/// `[[upstream]]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// The resource prefix, e.g. `erp`: `erp/orders/42` goes to
    /// `{url}/orders/42`.
    pub prefix: String,
    /// The service's base URL (`http://host:port[/base]`); or `urls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Several base URLs serving the same resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// How calls are spread over `urls`.
    #[serde(default)]
    pub balance: Balance,
    /// Limit on the wait for the response headers, and between body chunks.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Request headers passed on to the service (names, any case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers: Vec<String>,
    /// Response headers passed back to the member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<String>,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// Why the upstream routes are misconfigured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamConfigError {
    /// The prefix is not a resource path.
    #[error("upstream prefix {0:?} is not a resource path")]
    Prefix(String),
    /// A URL is not `http://host[:port][/base]`.
    #[error("upstream {prefix:?}: url {url:?} is not an http:// URL without a query")]
    Url {
        /// The route.
        prefix: String,
        /// The URL.
        url: String,
    },
    /// Neither `url` nor `urls`, both, or too many.
    #[error(
        "upstream {0:?}: name its service with url = \"http://…\" or urls = [\"http://…\", …] (1 to {URLS_MAX}), not both"
    )]
    Urls(String),
    /// Two routes share a prefix.
    #[error("two upstream routes for prefix {0:?}")]
    Duplicate(String),
    /// More routes than [`ROUTES_MAX`].
    #[error("at most {ROUTES_MAX} upstream routes")]
    TooMany,
    /// An allow-list names a header that is not a header name, one the
    /// gateway never forwards, or more than [`HEADERS_MAX`].
    #[error(
        "upstream {prefix:?}: {list} cannot hold {name:?} (at most {HEADERS_MAX} header names; hop-by-hop, framing, range and credential headers are never forwarded)"
    )]
    Header {
        /// The route.
        prefix: String,
        /// `request_headers` or `response_headers`.
        list: &'static str,
        /// The name.
        name: String,
    },
    /// A zero timeout.
    #[error("upstream {0:?}: timeout must be above 0")]
    Timeout(String),
}

/// What an upstream call does: the method a grant's action allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `read`.
    Get,
    /// `read`, headers only.
    Head,
    /// `write`: create or replace.
    Put,
    /// `write`: submit.
    Post,
    /// `delete`.
    Delete,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Head => Method::HEAD,
            Verb::Put => Method::PUT,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        }
    }
}

/// One call to make on a member's behalf, already allowed.
#[derive(Debug)]
pub struct Call<'a> {
    /// The method.
    pub verb: Verb,
    /// The resource (under a route's prefix).
    pub path: &'a ResourcePath,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The member's request headers: the route's allow-list picks from them.
    pub headers: &'a HeaderMap,
    /// The caller.
    pub caller: &'a Did,
    /// The grant that allowed it.
    pub grant: GrantId,
    /// The purpose the caller declared.
    pub purpose: Option<&'a str>,
    /// What a write sends (its media type and bytes, already checked
    /// against its digest).
    pub body: Option<(String, Bytes)>,
}

/// An upstream's answer, streaming.
pub struct UpstreamResponse {
    /// Its status (2xx).
    pub status: StatusCode,
    /// Its media type.
    pub content_type: String,
    /// Its length, when it said.
    pub length: Option<u64>,
    /// The response headers the route passes back.
    pub headers: HeaderMap,
    /// The body (each chunk bounded in time; empty for HEAD).
    pub body: Body,
}

/// One URL of a route, with its own circuit and count of calls in flight.
struct Target {
    base: String,
    in_flight: Arc<AtomicUsize>,
    breaker: Mutex<Breaker>,
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    /// Open until then; past it, one trial call at a time decides.
    open_until: Option<Instant>,
    /// When the trial call in flight began (a trial not settled within a
    /// cool-down, its caller gone, is given up).
    trial_since: Option<Instant>,
}

impl Breaker {
    /// Whether a call may go to the URL at `now`.
    fn admits(&self, now: Instant) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) => self
                .trial_since
                .is_none_or(|since| now.saturating_duration_since(since) >= BREAKER_COOLDOWN),
        }
    }
}

struct Route {
    prefix: String,
    targets: Vec<Target>,
    balance: Balance,
    cursor: AtomicUsize,
    timeout: Duration,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
}

/// The configured routes and one shared HTTP client.
pub struct Upstreams {
    routes: Vec<Route>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<&str> = self.routes.iter().map(|r| r.prefix.as_str()).collect();
        f.debug_struct("Upstreams")
            .field("prefixes", &prefixes)
            .finish()
    }
}

/// The routes in force, cheap to clone; a reload replaces them whole, so
/// a request sees either the old routes or the new, never a mix.
#[derive(Clone)]
pub struct UpstreamTable {
    current: Arc<std::sync::RwLock<Arc<Upstreams>>>,
    /// Held across a reload's read, build and swap, so that of two at once
    /// the later read is the one left in force.
    reloading: Arc<Mutex<()>>,
    /// The config file a reload reads (none: the routes are fixed).
    config: Option<Arc<Path>>,
}

/// Why a reload kept the routes in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// This node's routes do not come from a file.
    #[error("this node's upstream routes do not come from a config file")]
    NoConfig,
    /// The file cannot be read or parsed.
    #[error(transparent)]
    Load(#[from] crate::home::config::LoadError),
    /// Its routes are invalid.
    #[error("config [[upstream]]: {0}")]
    Invalid(#[from] UpstreamConfigError),
}

impl UpstreamTable {
    /// A table holding `upstreams`, reloaded from `config` if given.
    pub fn new(upstreams: Upstreams, config: Option<&Path>) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(Arc::new(upstreams))),
            reloading: Arc::default(),
            config: config.map(Arc::from),
        }
    }

    /// The routes now.
    pub fn current(&self) -> Arc<Upstreams> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `upstreams` in force (calls in flight finish on the old ones;
    /// the new routes' circuits start closed).
    pub fn replace(&self, upstreams: Upstreams) {
        let upstreams = Arc::new(upstreams);
        match self.current.write() {
            Ok(mut current) => *current = upstreams,
            Err(poisoned) => *poisoned.into_inner() = upstreams,
        }
    }

    /// Reads the config file again and puts its routes in force; if it
    /// cannot be read or its routes are invalid, keeps those in force and
    /// says why. Only `[[upstream]]` is reloaded: other sections take
    /// effect at the next start. Blocking (it reads a file).
    pub fn reload(&self) -> Result<Arc<Upstreams>, ReloadError> {
        let path = self.config.as_deref().ok_or(ReloadError::NoConfig)?;
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let config = crate::home::config::Config::load(path)?;
        let upstreams = Upstreams::new(&config.upstream)?;
        let prefixes: Vec<&str> = upstreams.routes.iter().map(|r| r.prefix.as_str()).collect();
        tracing::info!(target: "upstream", routes = ?prefixes, "upstream routes reloaded");
        self.replace(upstreams);
        Ok(self.current())
    }
}

impl std::fmt::Debug for UpstreamTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.current().fmt(f)
    }
}

impl Upstreams {
    /// Checks and builds the routes.
    pub fn new(sections: &[UpstreamSection]) -> Result<Self, UpstreamConfigError> {
        if sections.len() > ROUTES_MAX {
            return Err(UpstreamConfigError::TooMany);
        }
        let mut routes: Vec<Route> = Vec::new();
        for section in sections {
            let route = Route::new(section)?;
            if routes.iter().any(|r| r.prefix == route.prefix) {
                return Err(UpstreamConfigError::Duplicate(section.prefix.clone()));
            }
            routes.push(route);
        }
        // Connecting takes at most half of the shortest route's timeout, so
        // a URL that does not connect leaves time to try another.
        let shortest = routes.iter().map(|r| r.timeout).min();
        let connect = shortest.map_or(CONNECT_TIMEOUT_MAX, |t| (t / 2).min(CONNECT_TIMEOUT_MAX));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { routes, client })
    }

    /// Whether `path` belongs to an upstream route.
    pub fn serves(&self, path: &ResourcePath) -> bool {
        self.route(path).is_some()
    }

    /// The routes and the health of their URLs (`GET /v1/upstreams`).
    pub fn view(&self) -> UpstreamsView {
        let now = Instant::now();
        let routes = self
            .routes
            .iter()
            .map(|route| UpstreamRouteView {
                prefix: route.prefix.clone(),
                balance: match route.balance {
                    Balance::RoundRobin => "round-robin",
                    Balance::LeastConnections => "least-connections",
                }
                .to_owned(),
                timeout_ms: u64::try_from(route.timeout.as_millis()).unwrap_or(u64::MAX),
                request_headers: route
                    .request_headers
                    .iter()
                    .map(|h| h.to_string())
                    .collect(),
                response_headers: route
                    .response_headers
                    .iter()
                    .map(|h| h.to_string())
                    .collect(),
                urls: route
                    .targets
                    .iter()
                    .map(|target| {
                        let (failures, open) = {
                            let b = target.breaker();
                            (b.failures, b.open_until.is_some_and(|until| now < until))
                        };
                        UpstreamUrlView {
                            url: target.base.clone(),
                            in_flight: target.in_flight.load(Ordering::Relaxed) as u64,
                            failures,
                            open,
                        }
                    })
                    .collect(),
            })
            .collect();
        UpstreamsView { routes }
    }

    fn route<'a>(&'a self, path: &'a ResourcePath) -> Option<(&'a Route, &'a str)> {
        self.routes.iter().find_map(|route| {
            let rest = path
                .as_str()
                .strip_prefix(route.prefix.as_str())?
                .strip_prefix('/')?;
            Some((route, rest))
        })
    }

    /// Makes `call` on one of its route's URLs.
    pub async fn call(&self, call: Call<'_>) -> Result<UpstreamResponse, UpstreamFailure> {
        let Some((route, rest)) = self.route(call.path) else {
            return Err(UpstreamFailure::NoRoute(call.path.clone()));
        };
        if call.query.is_some_and(|q| q.len() > QUERY_BYTES_MAX) {
            return Err(UpstreamFailure::BadQuery(QUERY_BYTES_MAX));
        }
        let request = route.request(&call, rest)?;
        let first = route.pick(None)?;
        match self.call_target(route, first, &request).await {
            // Nothing reached that URL: another may serve it.
            Err(Attempt::NotConnected) => match route.pick(Some(first)) {
                Ok(second) => self
                    .call_target(route, second, &request)
                    .await
                    .map_err(Attempt::into_failure),
                Err(_) => Err(UpstreamFailure::Unreachable),
            },
            other => other.map_err(Attempt::into_failure),
        }
    }

    async fn call_target(
        &self,
        route: &Route,
        index: usize,
        request: &Outgoing,
    ) -> Result<UpstreamResponse, Attempt> {
        let target = &route.targets[index];
        target.admit()?;
        let in_flight = InFlight::enter(&target.in_flight);
        let result = self.send(route, target, request, in_flight).await;
        target.settle(&route.prefix, !matches!(&result, Err(a) if a.is_failure()));
        result
    }

    async fn send(
        &self,
        route: &Route,
        target: &Target,
        outgoing: &Outgoing,
        in_flight: InFlight,
    ) -> Result<UpstreamResponse, Attempt> {
        // `rest` is a checked resource path and the query a checked URI
        // query: safe to append as they are.
        let uri: Uri = format!("{}/{}", target.base, outgoing.path_and_query)
            .parse()
            .map_err(|_| Attempt::Failed(UpstreamFailure::BadUrl))?;
        let mut request = axum::http::Request::builder()
            .method(outgoing.method.clone())
            .uri(uri)
            .body(Full::new(outgoing.body.clone()))
            .map_err(|_| Attempt::Failed(UpstreamFailure::BadUrl))?;
        *request.headers_mut() = outgoing.headers.clone();
        let response = tokio::time::timeout(route.timeout, self.client.request(request))
            .await
            .map_err(|_| Attempt::Failed(UpstreamFailure::Timeout(route.timeout)))?
            .map_err(|e| {
                tracing::warn!(target: "upstream", prefix = route.prefix, url = target.base, error = %e, "upstream call failed");
                if e.is_connect() {
                    Attempt::NotConnected
                } else {
                    Attempt::Failed(UpstreamFailure::Unreachable)
                }
            })?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            // The service is fine; the resource is not there.
            return Err(Attempt::Answered(UpstreamFailure::NotFound));
        }
        // A 304 is a revalidation the service answered: passed on, bodiless.
        let not_modified = status == StatusCode::NOT_MODIFIED;
        let unsized_empty =
            || Body::from_stream(futures::stream::empty::<Result<Bytes, std::io::Error>>());
        if status.is_client_error() || (status.is_redirection() && !not_modified) {
            // The service is fine; the request is not what it serves (the
            // member is told its status).
            return Err(Attempt::Answered(UpstreamFailure::Status(status.as_u16())));
        }
        if !status.is_success() && !not_modified {
            return Err(Attempt::Failed(UpstreamFailure::Status(status.as_u16())));
        }
        let headers = response.headers();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let passed = passed_headers(&route.response_headers, headers);
        let idle = route.timeout;
        let frames = futures::stream::unfold(
            (response.into_body(), in_flight),
            move |(mut body, in_flight)| async move {
                loop {
                    return match tokio::time::timeout(idle, body.frame()).await {
                        Err(_) => Some((
                            Err(std::io::Error::other("upstream body timed out")),
                            (body, in_flight),
                        )),
                        // The call ends with its body: `in_flight` drops here.
                        Ok(None) => None,
                        Ok(Some(Err(e))) => {
                            Some((Err(std::io::Error::other(e)), (body, in_flight)))
                        }
                        Ok(Some(Ok(frame))) => match frame.into_data() {
                            Ok(data) => Some((Ok(data), (body, in_flight))),
                            Err(_) => continue, // trailers
                        },
                    };
                }
            },
        );
        Ok(UpstreamResponse {
            status,
            content_type,
            length: if not_modified { None } else { length },
            headers: passed,
            body: match (outgoing.method == Method::HEAD, not_modified, length) {
                (false, false, _) => Body::from_stream(frames),
                // HEAD: no body, and the length the service said (an empty
                // body would say 0; one of unknown size says nothing).
                (true, false, Some(_)) => Body::empty(),
                (_, true, _) | (true, false, None) => unsized_empty(),
            },
        })
    }
}

/// The headers of `from` that `allowed` names.
fn passed_headers(allowed: &[HeaderName], from: &HeaderMap) -> HeaderMap {
    let mut passed = HeaderMap::new();
    for name in allowed {
        for value in from.get_all(name) {
            passed.append(name.clone(), value.clone());
        }
    }
    passed
}

/// A request built once for every URL it may be tried on.
struct Outgoing {
    method: Method,
    /// The rest of the path after the prefix, and `?query`.
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

/// How one try on one URL ended, when it did not succeed.
enum Attempt {
    /// Could not connect: nothing was sent, another URL may be tried.
    NotConnected,
    /// The service answered, and is working (a 4xx): not a failure of it.
    Answered(UpstreamFailure),
    /// The service failed.
    Failed(UpstreamFailure),
}

impl Attempt {
    fn is_failure(&self) -> bool {
        !matches!(self, Attempt::Answered(_))
    }

    fn into_failure(self) -> UpstreamFailure {
        match self {
            Attempt::NotConnected => UpstreamFailure::Unreachable,
            Attempt::Answered(failure) | Attempt::Failed(failure) => failure,
        }
    }
}

/// One call in flight on a URL, until its body has been read or dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Route {
    fn new(section: &UpstreamSection) -> Result<Self, UpstreamConfigError> {
        let prefix = &section.prefix;
        ResourcePath::parse(prefix).map_err(|_| UpstreamConfigError::Prefix(prefix.clone()))?;
        let urls: Vec<&String> = match (&section.url, section.urls.as_slice()) {
            (Some(url), []) => vec![url],
            (None, urls) if !urls.is_empty() && urls.len() <= URLS_MAX => urls.iter().collect(),
            _ => return Err(UpstreamConfigError::Urls(prefix.clone())),
        };
        let mut targets = Vec::with_capacity(urls.len());
        for url in urls {
            let bad = || UpstreamConfigError::Url {
                prefix: prefix.clone(),
                url: url.clone(),
            };
            let uri: Uri = url.parse().map_err(|_| bad())?;
            if uri.scheme_str() != Some("http")
                || uri.authority().is_none()
                || uri.query().is_some()
            {
                return Err(bad());
            }
            targets.push(Target {
                base: url.trim_end_matches('/').to_owned(),
                in_flight: Arc::new(AtomicUsize::new(0)),
                breaker: Mutex::new(Breaker::default()),
            });
        }
        if section.timeout.0.is_zero() {
            return Err(UpstreamConfigError::Timeout(prefix.clone()));
        }
        Ok(Self {
            prefix: prefix.clone(),
            targets,
            balance: section.balance,
            cursor: AtomicUsize::new(0),
            timeout: section.timeout.0,
            request_headers: allow_list(prefix, "request_headers", &section.request_headers)?,
            response_headers: allow_list(prefix, "response_headers", &section.response_headers)?,
        })
    }

    /// The request `call` makes, the same on whichever URL it is tried.
    fn request(&self, call: &Call<'_>, rest: &str) -> Result<Outgoing, UpstreamFailure> {
        let path_and_query = match call.query {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        // A query that is not one a URI may carry is refused, not mended.
        if format!("/{path_and_query}").parse::<Uri>().is_err() {
            return Err(UpstreamFailure::BadQuery(QUERY_BYTES_MAX));
        }
        let mut headers = HeaderMap::new();
        let preconditions: &[HeaderName] = match call.verb {
            // A member's condition on what it replaces or removes is the
            // service's to check: it always travels with a change.
            Verb::Put | Verb::Post | Verb::Delete => &[header::IF_MATCH, header::IF_NONE_MATCH],
            Verb::Get | Verb::Head => &[],
        };
        for name in self.request_headers.iter().chain(preconditions) {
            for value in call.headers.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let who = [
            (MEMBER_HEADER, Some(call.caller.to_string())),
            (GRANT_HEADER, Some(call.grant.to_string())),
            (
                quorate_api::purpose::PURPOSE_HEADER,
                call.purpose.map(quorate_api::purpose::encode),
            ),
        ];
        for (name, value) in who {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        let body = match &call.body {
            Some((content_type, bytes)) => {
                if let Ok(value) = HeaderValue::from_str(content_type) {
                    headers.insert(header::CONTENT_TYPE, value);
                }
                bytes.clone()
            }
            None => Bytes::new(),
        };
        Ok(Outgoing {
            method: call.verb.method(),
            path_and_query,
            headers,
            body,
        })
    }

    /// The URL to try next, skipping `tried` and URLs whose circuit is
    /// open; when every one is open, the route refuses at once.
    fn pick(&self, tried: Option<usize>) -> Result<usize, UpstreamFailure> {
        let now = Instant::now();
        let count = self.targets.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..count)
            .map(|i| (start + i) % count)
            .filter(|&i| Some(i) != tried && self.targets[i].available(now));
        let chosen = match self.balance {
            Balance::RoundRobin => candidates.into_iter().next(),
            Balance::LeastConnections => {
                candidates.min_by_key(|&i| self.targets[i].in_flight.load(Ordering::Relaxed))
            }
        };
        chosen.ok_or_else(|| self.open_circuit(now))
    }

    fn open_circuit(&self, now: Instant) -> UpstreamFailure {
        let retry_after = self
            .targets
            .iter()
            .filter_map(|t| t.breaker().open_until)
            .map(|until| until.saturating_duration_since(now))
            .min()
            .unwrap_or(BREAKER_COOLDOWN);
        UpstreamFailure::CircuitOpen {
            prefix: self.prefix.clone(),
            failures: BREAKER_FAILURES,
            retry_after_secs: retry_after.as_secs().max(1),
        }
    }
}

impl Target {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // A breaker's state is a few counters, valid whatever panicked.
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go to this URL now: closed, or cooled down with
    /// no trial in flight.
    fn available(&self, now: Instant) -> bool {
        self.breaker().admits(now)
    }

    fn admit(&self) -> Result<(), Attempt> {
        let now = Instant::now();
        let mut breaker = self.breaker();
        if !breaker.admits(now) {
            return Err(Attempt::NotConnected);
        }
        if breaker.open_until.is_some() {
            // Half-open: this call is the one trial.
            breaker.trial_since = Some(now);
        }
        Ok(())
    }

    fn settle(&self, prefix: &str, ok: bool) {
        let mut breaker = self.breaker();
        breaker.trial_since = None;
        if ok {
            breaker.failures = 0;
            breaker.open_until = None;
            return;
        }
        breaker.failures = breaker.failures.saturating_add(1);
        if breaker.failures >= BREAKER_FAILURES {
            if breaker.open_until.is_none() {
                tracing::warn!(target: "upstream", prefix, url = self.base, "circuit open");
            }
            // Opened, or a failed trial: another cool-down.
            breaker.open_until = Some(Instant::now() + BREAKER_COOLDOWN);
        }
    }
}

/// The header names of an allow-list, checked.
fn allow_list(
    prefix: &str,
    list: &'static str,
    names: &[String],
) -> Result<Vec<HeaderName>, UpstreamConfigError> {
    let refuse = |name: &str| UpstreamConfigError::Header {
        prefix: prefix.to_owned(),
        list,
        name: name.to_owned(),
    };
    if names.len() > HEADERS_MAX {
        return Err(refuse(&names[HEADERS_MAX]));
    }
    let mut out: Vec<HeaderName> = Vec::with_capacity(names.len());
    for name in names {
        let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| refuse(name))?;
        if NEVER_FORWARDED.contains(&parsed.as_str())
            || NEVER_FORWARDED_PREFIXES
                .iter()
                .any(|prefix| parsed.as_str().starts_with(prefix))
        {
            return Err(refuse(name));
        }
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
