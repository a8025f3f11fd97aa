//! The local API: what an organization's own operators and applications
//! call, each with an API token whose roles open the routes it calls
//! ([`access`]). (Peers come in through the gateway.)
//!
//! The API reaches the node through [`Node`], a narrow trait, so it is
//! testable without a swarm.
//!
//! Its parts: [`routes`] (the router and its limits as layers), the
//! handlers that turn requests into [`Node`] calls, [`requests`] and
//! [`responses`] (the bodies and queries, with their JSON Schemas), and
//! [`openapi`] (the document at `/openapi.json`, built from them).

use std::time::Duration;

pub mod access;
pub mod access_requests;
pub mod catalog;
pub mod endorsement;
mod handlers;
mod layers;
pub(crate) use layers::drain;
pub mod node;
pub mod openapi;
pub mod requests;
pub mod responses;
pub mod routes;
mod sharing;
#[cfg(test)]
mod tests;

pub use node::{EventStream, Node};
pub use openapi::openapi_json;
pub use requests::{
    AuditQuery, BlockQuery, GRANTS_PAGE_DEFAULT, GRANTS_PAGE_MAX, GrantQuery, ProposalRequest,
    StatusQuery, TokenRequest,
};
pub use responses::GrantPage;
pub use routes::{gateway_router, router};

/// Largest JSON body the local API reads.
pub const JSON_BODY_BYTES_MAX: usize = 64 * 1024;

/// Longest request target (scheme, authority, path and query) the API
/// reads; a longer one is refused with 414 `uri-too-long`.
pub const URI_BYTES_MAX: usize = 8 * 1024;
/// Largest header section (each field counted as name, value and 4 bytes
/// of `: ` and CRLF); a larger one is refused with 431 `headers-too-large`.
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
/// Most header fields in one request; more are refused with 431.
pub const HEADERS_MAX: usize = 64;
// These sit below hyper's own limits so that a refusal reaches us and goes
// out as a problem. Beyond them hyper answers before the router runs, with
// an empty body we cannot shape: 431 for more than 100 header fields or a
// head larger than its read buffer (`max_buf_size`, 64 KiB in
// `crate::serve`), 414 for a request target over 65,534 bytes, and 400 for
// a head HTTP/1.1 forbids (a control byte in a header value, a malformed
// request line or header name).

/// Admin requests served at once unless the caller says otherwise; more
/// wait their turn.
pub const ADMIN_CONCURRENCY_DEFAULT: usize = 64;
/// Gateway requests served at once unless the caller says otherwise (the
/// default of the node's `[gateway] concurrency`).
pub const GATEWAY_CONCURRENCY_DEFAULT: usize = 256;
/// Largest object unless the caller says otherwise (the default of the
/// node's `[gateway] object_bytes_max`).
pub const OBJECT_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Of an upload refused for its declared length, at most this much is read
/// and dropped, so that a client that writes its body before it reads
/// still gets the 413 rather than a reset connection.
pub const REFUSED_BODY_DRAIN_BYTES_MAX: u64 = 8 << 20;
/// ... and for at most this long.
pub const REFUSED_BODY_DRAIN_TIME: Duration = Duration::from_secs(5);
/// Longest text of a framework's refusal kept as a problem's `detail`.
const REFUSAL_TEXT_BYTES_MAX: usize = 1024;

/// How many requests each group of routes serves at once. Each group has
/// its own budget, so that slow admin uploads cannot starve members'
/// gateway reads; the probes (`/healthz`, `/readyz`, `/openapi.json`)
/// answer from memory and have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// The token routes (`/v1/…`, `/metrics`).
    pub admin: usize,
    /// The signed routes (`/gateway/…`).
    pub gateway: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            admin: ADMIN_CONCURRENCY_DEFAULT,
            gateway: GATEWAY_CONCURRENCY_DEFAULT,
        }
    }
}

/// The router's limits that come from the node's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests served at once, per group of routes.
    pub budgets: Budgets,
    /// Largest object a put accepts: a declared `Content-Length` above it
    /// is refused (413) before a byte of the body is read. (The node still
    /// cuts a body without a declared length when it passes its limit.)
    pub object_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            budgets: Budgets::default(),
            object_bytes_max: OBJECT_BYTES_MAX_DEFAULT,
        }
    }
}
