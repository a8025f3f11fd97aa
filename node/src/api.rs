//! The node behind the local API ([`quorate_api::local::Node`]).

use axum::http::StatusCode;
use quorate_api::local::{Node, ProposalRequest};
use quorate_api::problem::Problem;
use tokio::sync::oneshot;

use crate::driver::{Command, Handle};

/// The local API's view of the running node: a driver handle.
#[derive(Debug, Clone)]
pub struct LocalNode {
    handle: Handle,
}

impl LocalNode {
    /// Wraps a driver handle.
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Problem> {
        let (reply, answer) = oneshot::channel();
        let stopped = || {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node-stopping",
                "the node is stopping",
            )
        };
        self.handle.send(make(reply)).await.ok_or_else(stopped)?;
        answer.await.map_err(|_| stopped())
    }
}

fn rejected(reason: String) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "proposal-rejected",
        reason,
    )
}

impl Node for LocalNode {
    async fn status(&self) -> serde_json::Value {
        let status = self.handle.status();
        let mut json = serde_json::to_value(&status).unwrap_or_default();
        if let (Some(map), Some(last)) = (json.as_object_mut(), status.last_commit) {
            map.insert(
                "last_commit_age_ms".into(),
                serde_json::json!(last.elapsed().as_millis() as u64),
            );
        }
        json
    }

    async fn propose(&self, request: ProposalRequest) -> Result<String, Problem> {
        self.ask(|reply| Command::ProposeRequest { request, reply })
            .await?
            .map(|id| id.to_string())
            .map_err(rejected)
    }

    async fn proposals(&self) -> serde_json::Value {
        match self.ask(|reply| Command::Proposals { reply }).await {
            Ok(list) => serde_json::to_value(list).unwrap_or_default(),
            Err(_) => serde_json::json!([]),
        }
    }

    async fn decide(&self, id: String, approve: bool) -> Result<(), Problem> {
        let id = id.parse().map_err(|_| {
            Problem::bad_request(format!("{id:?} is not a proposal id (64 hex digits)"))
        })?;
        self.ask(|reply| Command::Decide { id, approve, reply })
            .await?
            .map_err(|reason| Problem::new(StatusCode::NOT_FOUND, "not-found", reason))
    }

    async fn grants(&self) -> serde_json::Value {
        self.ask(|reply| Command::Grants { reply })
            .await
            .unwrap_or_default()
    }

    async fn grant_proof(&self, id: String) -> Result<Vec<u8>, Problem> {
        let grant: quorate_contracts::GrantId = id.parse().map_err(|_| {
            Problem::bad_request(format!("{id:?} is not a grant id (64 hex digits)"))
        })?;
        self.ask(|reply| Command::GrantProof { id: grant, reply })
            .await?
            .map_err(|reason| {
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ledger-read-failed",
                    reason,
                )
            })?
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!("no committed grant {id}"),
                )
            })
    }
}
