//! A closed-loop HTTP load generator: `connections` keep-alive connections,
//! each sending its next request when the previous answer has been read,
//! for a warm-up and then a measured window. Requests are built per call,
//! so each can carry its own RFC 9421 signature.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::Request;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How hard and how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadSpec {
    /// Concurrent connections (each one request in flight).
    pub connections: usize,
    /// Not measured.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
}

/// What one run measured.
#[derive(Debug, Default)]
pub(crate) struct LoadResult {
    /// Answers in the window.
    pub requests: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 4xx answers.
    pub refused: u64,
    /// Transport errors and 5xx.
    pub errors: u64,
    /// Latency of every answer in the window.
    pub latencies: Vec<Duration>,
    /// The window's length.
    pub elapsed: Duration,
    /// Refusals whose body contained the marker (must be 0).
    pub leaked: u64,
}

impl LoadResult {
    /// Answers per second.
    pub(crate) fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Builds request number `n`.
pub(crate) type MakeRequest = Arc<dyn Fn(u64) -> Request<Empty<Bytes>> + Send + Sync>;

/// The authorities `https://` targets are verified against.
static TRUST: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Trusts the authorities in `ca_pem` for every later `https://` run
/// (the testnet's, which issued the gateways' and nginx's certificate).
pub(crate) fn trust(ca_pem: &[u8]) -> anyhow::Result<()> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let _ = TRUST.set(Arc::new(config));
    Ok(())
}

fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    if let Some(config) = TRUST.get() {
        return Ok((**config).clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// Runs the load; `marker` is data that must never appear in a refusal.
pub(crate) fn run(spec: LoadSpec, make: MakeRequest, marker: Option<Vec<u8>>) -> LoadResult {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(_) => return LoadResult::default(),
    };
    let Ok(tls) = tls_config() else {
        return LoadResult::default();
    };
    runtime.block_on(async move {
        // Plain or TLS by the target's scheme; over TLS the handshake is
        // paid once per keep-alive connection, as a real client would.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(spec.connections)
            .build(connector);
        let start = Instant::now();
        let measure_from = start + spec.warmup;
        let end = measure_from + spec.duration;
        let marker = Arc::new(marker);
        let mut tasks = Vec::new();
        for c in 0..spec.connections {
            let (client, make, marker) = (client.clone(), make.clone(), marker.clone());
            tasks.push(tokio::spawn(async move {
                let mut result = LoadResult::default();
                let mut n = c as u64;
                while Instant::now() < end {
                    let request = make(n);
                    n += spec.connections as u64;
                    let sent = Instant::now();
                    let answer = client.request(request).await;
                    let outcome = match answer {
                        Ok(response) => {
                            let status = response.status();
                            let body = response.into_body().collect().await.map(|b| b.to_bytes());
                            match body {
                                Ok(body) => Some((status, body)),
                                Err(_) => None,
                            }
                        }
                        Err(_) => None,
                    };
                    let done = Instant::now();
                    if sent < measure_from || done > end {
                        continue;
                    }
                    result.requests += 1;
                    result.latencies.push(done - sent);
                    match outcome {
                        Some((status, _)) if status.is_success() => result.ok += 1,
                        Some((status, body)) if status.is_client_error() => {
                            result.refused += 1;
                            if let Some(marker) = marker.as_ref()
                                && body.windows(marker.len()).any(|w| w == marker.as_slice())
                            {
                                result.leaked += 1;
                            }
                        }
                        _ => result.errors += 1,
                    }
                }
                result
            }));
        }
        let mut total = LoadResult {
            elapsed: spec.duration,
            ..LoadResult::default()
        };
        for task in tasks {
            if let Ok(r) = task.await {
                total.requests += r.requests;
                total.ok += r.ok;
                total.refused += r.refused;
                total.errors += r.errors;
                total.leaked += r.leaked;
                total.latencies.extend(r.latencies);
            }
        }
        total
    })
}
