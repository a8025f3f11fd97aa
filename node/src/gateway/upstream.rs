//! Upstream routes: a resource prefix served by an existing HTTP service
//! (`erp/*` → `http://127.0.0.1:9000`), so an organization can share a
//! service under grants, not only stored objects.
//!
//! The gateway authorizes first; only then is the upstream asked. Every
//! call is bounded in time (until the headers, then per body chunk), and a
//! route that keeps failing opens its circuit: for a cool-down it is
//! refused at once (`upstream-unavailable`) instead of tying up requests, then one trial call
//! decides whether it closes again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use quorate_api::refusal::UpstreamFailure;
use quorate_contracts::ResourcePath;
use serde::{Deserialize, Serialize};

use crate::home::duration::HumanDuration;

/// Consecutive failures that open a route's circuit.
pub const BREAKER_FAILURES: u32 = 5;
/// How long an open circuit refuses before a trial call.
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(10);

/// `[[upstream]]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// The resource prefix, e.g. `erp`: `erp/orders/42` goes to
    /// `{url}/orders/42`.
    pub prefix: String,
    /// The service's base URL (`http://host:port[/base]`).
    pub url: String,
    /// Limit on the wait for the response headers, and between body chunks.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// Why the upstream routes are misconfigured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamConfigError {
    /// The prefix is not a resource path.
    #[error("upstream prefix {0:?} is not a resource path")]
    Prefix(String),
    /// The URL is not `http://…`.
    #[error("upstream url {0:?} is not an http:// URL")]
    Url(String),
    /// Two routes share a prefix.
    #[error("two upstream routes for prefix {0:?}")]
    Duplicate(String),
}

struct Route {
    prefix: String,
    base: String,
    timeout: Duration,
    breaker: Mutex<Breaker>,
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// The configured routes and one shared HTTP client.
pub struct Upstreams {
    routes: Vec<Route>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<&str> = self.routes.iter().map(|r| r.prefix.as_str()).collect();
        f.debug_struct("Upstreams")
            .field("prefixes", &prefixes)
            .finish()
    }
}

/// An upstream's answer, streaming.
pub struct UpstreamResponse {
    /// Its media type.
    pub content_type: String,
    /// Its length, when it said.
    pub length: Option<u64>,
    /// The body (each chunk bounded in time).
    pub body: Body,
}

impl Upstreams {
    /// Checks and builds the routes.
    pub fn new(sections: &[UpstreamSection]) -> Result<Self, UpstreamConfigError> {
        let mut routes: Vec<Route> = Vec::new();
        for section in sections {
            ResourcePath::parse(&section.prefix)
                .map_err(|_| UpstreamConfigError::Prefix(section.prefix.clone()))?;
            let uri: Uri = section
                .url
                .parse()
                .map_err(|_| UpstreamConfigError::Url(section.url.clone()))?;
            if uri.scheme_str() != Some("http")
                || uri.authority().is_none()
                || uri.query().is_some()
            {
                return Err(UpstreamConfigError::Url(section.url.clone()));
            }
            if routes.iter().any(|r| r.prefix == section.prefix) {
                return Err(UpstreamConfigError::Duplicate(section.prefix.clone()));
            }
            routes.push(Route {
                prefix: section.prefix.clone(),
                base: section.url.trim_end_matches('/').to_owned(),
                timeout: section.timeout.0,
                breaker: Mutex::new(Breaker::default()),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { routes, client })
    }

    /// Whether `path` belongs to an upstream route.
    pub fn serves(&self, path: &ResourcePath) -> bool {
        self.route(path).is_some()
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

    /// GETs `path` from its upstream.
    pub async fn get(&self, path: &ResourcePath) -> Result<UpstreamResponse, UpstreamFailure> {
        let Some((route, rest)) = self.route(path) else {
            return Err(UpstreamFailure::NoRoute(path.clone()));
        };
        route.admit()?;
        let result = self.call(route, rest).await;
        route.settle(!matches!(&result, Err(failure) if failure.is_failure()));
        result
    }

    async fn call(&self, route: &Route, rest: &str) -> Result<UpstreamResponse, UpstreamFailure> {
        // `rest` is a checked resource path: safe to append as is.
        let uri: Uri = format!("{}/{rest}", route.base)
            .parse()
            .map_err(|_| UpstreamFailure::BadUrl)?;
        let request = axum::http::Request::get(uri)
            .body(Empty::new())
            .map_err(|_| UpstreamFailure::BadUrl)?;
        let response = tokio::time::timeout(route.timeout, self.client.request(request))
            .await
            .map_err(|_| UpstreamFailure::Timeout(route.timeout))?
            .map_err(|e| {
                tracing::warn!(target: "upstream", prefix = route.prefix, error = %e, "upstream call failed");
                UpstreamFailure::Unreachable
            })?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            // The service is fine; the resource is not there.
            return Err(UpstreamFailure::NotFound);
        }
        if !status.is_success() {
            return Err(UpstreamFailure::Status(status.as_u16()));
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
        let idle = route.timeout;
        let frames = futures::stream::unfold(response.into_body(), move |mut body| async move {
            loop {
                return match tokio::time::timeout(idle, body.frame()).await {
                    Err(_) => Some((Err(std::io::Error::other("upstream body timed out")), body)),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), body)),
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => Some((Ok(data), body)),
                        Err(_) => continue, // trailers
                    },
                };
            }
        });
        Ok(UpstreamResponse {
            content_type,
            length,
            body: Body::from_stream(frames),
        })
    }
}

impl Route {
    fn admit(&self) -> Result<(), UpstreamFailure> {
        let Ok(mut breaker) = self.breaker.lock() else {
            // A poisoned breaker: refuse as if open rather than guess.
            return Err(self.open_circuit());
        };
        match breaker.open_until {
            Some(until) if Instant::now() < until => Err(self.open_circuit()),
            Some(_) => {
                // Half-open: let this one call through as the trial.
                breaker.open_until = None;
                breaker.failures = BREAKER_FAILURES - 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn open_circuit(&self) -> UpstreamFailure {
        UpstreamFailure::CircuitOpen {
            prefix: self.prefix.clone(),
            failures: BREAKER_FAILURES,
            retry_after_secs: BREAKER_COOLDOWN.as_secs(),
        }
    }

    fn settle(&self, ok: bool) {
        let Ok(mut breaker) = self.breaker.lock() else {
            return;
        };
        if ok {
            breaker.failures = 0;
            return;
        }
        breaker.failures += 1;
        if breaker.failures >= BREAKER_FAILURES {
            breaker.open_until = Some(Instant::now() + BREAKER_COOLDOWN);
            tracing::warn!(target: "upstream", prefix = self.prefix, "circuit open");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(prefix: &str, url: &str) -> UpstreamSection {
        UpstreamSection {
            prefix: prefix.into(),
            url: url.into(),
            timeout: default_timeout(),
        }
    }

    #[test]
    fn routes_match_whole_segments_and_bad_routes_are_refused() {
        let upstreams = Upstreams::new(&[section("erp", "http://127.0.0.1:9/api/")]).unwrap();
        let path = |p: &str| ResourcePath::parse(p).unwrap();
        assert!(upstreams.serves(&path("erp/orders/42")));
        assert!(!upstreams.serves(&path("erp")));
        assert!(!upstreams.serves(&path("erpx/orders")));
        let orders = path("erp/orders/42");
        let (route, rest) = upstreams.route(&orders).unwrap();
        assert_eq!(
            (route.base.as_str(), rest),
            ("http://127.0.0.1:9/api", "orders/42")
        );

        assert!(Upstreams::new(&[section("../x", "http://a")]).is_err());
        assert!(Upstreams::new(&[section("erp", "https://a")]).is_err());
        assert!(Upstreams::new(&[section("erp", "http://a?q=1")]).is_err());
        assert!(Upstreams::new(&[section("erp", "http://a"), section("erp", "http://b")]).is_err());
    }

    #[test]
    fn the_circuit_opens_after_consecutive_failures_and_a_success_closes_it() {
        let upstreams = Upstreams::new(&[section("erp", "http://127.0.0.1:9")]).unwrap();
        let route = &upstreams.routes[0];
        for _ in 0..BREAKER_FAILURES - 1 {
            route.admit().unwrap();
            route.settle(false);
        }
        route.admit().unwrap();
        route.settle(true);
        for _ in 0..BREAKER_FAILURES {
            route.admit().unwrap();
            route.settle(false);
        }
        let refused = quorate_api::refusal::Refusal::from(route.admit().unwrap_err());
        assert_eq!(refused.code().as_str(), "upstream-unavailable");
        assert_eq!(refused.retry_after_secs(), Some(BREAKER_COOLDOWN.as_secs()));
    }
}
