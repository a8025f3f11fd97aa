//! The local API's routes, through `tower::ServiceExt::oneshot` against
//! test nodes (in process, no sockets).

mod access;
mod fake;
mod refusals;
mod routes;
