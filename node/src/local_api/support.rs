//! What the adapter's methods share: ledger reads off the async workers,
//! block views, streamed uploads and small conversions.

use super::*;

/// A receiver as a stream (no extra crate for this one adapter).
pub(super) fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// A block as the API shows it: the header, entries by id and kind, and
/// who signed its certificate (validator indices, in the epoch's order).
/// A committed block was hashed when it was checked, so its hashes here
/// cannot fail; an empty string stands in if one ever did.
pub(super) fn block_view(
    block: &quorate_ledger::block::CommittedBlock,
    state: &quorate_contracts::State,
) -> BlockView {
    let name = crate::views::member_name(state);
    let header = &block.block.header;
    let entries = block
        .block
        .entries
        .iter()
        .map(|entry| BlockEntry {
            id: entry.id().map(|id| id.to_string()).unwrap_or_default(),
            kind: entry.proposal.body.kind().to_owned(),
            proposer: name(&entry.proposal.proposer),
            endorsements: entry.endorsements.len() as u64,
        })
        .collect();
    BlockView {
        height: header.height,
        hash: block
            .block
            .hash()
            .map(|h| h.to_string())
            .unwrap_or_default(),
        prev_hash: header.prev_hash.to_string(),
        epoch: header.epoch,
        time_ms: header.time.0,
        proposer: name(&header.proposer),
        tx_root: header.tx_root.to_string(),
        state_root: header.state_root.to_string(),
        entries,
        certificate: CertificateView {
            round: block.certificate.round,
            signers: block
                .certificate
                .signatures
                .iter()
                .map(|(i, _)| *i)
                .collect(),
        },
    }
}

impl LocalNode {
    pub(super) async fn blocks(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<quorate_ledger::block::CommittedBlock>, Problem> {
        let to = protocol::sync_batch_end(from, to);
        let reader = self.ledger.clone();
        on_reader(move || reader.blocks(from, to))
            .await?
            .map_err(|e| ledger_read_failed(&e))
    }
}

/// Runs disk work off the async threads; a failure is logged here and
/// answered as a 500 with no internals.
/// Runs a read of the ledger's store on a blocking thread (never on the
/// agreement task); a task that died is a 500.
pub(super) async fn on_reader<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(read).await.map_err(|e| {
        tracing::error!(target: "ledger", error = %e, "ledger read task failed");
        Problem::internal()
    })
}

pub(super) async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::error!(target: "objects", error = %e, "storage failed");
            Err(Problem::internal())
        }
        Err(e) => {
            tracing::error!(target: "objects", error = %e, "storage task failed");
            Err(Problem::internal())
        }
    }
}

/// Streams `body` to `upload`, hashing as it goes; refuses more than `max`
/// bytes with 413. Returns (blake3 hex, size).
pub(super) async fn write_upload(
    upload: &std::path::Path,
    body: Body,
    max: u64,
) -> Result<(String, u64), Problem> {
    let mut file = tokio::fs::File::create(upload)
        .await
        .map_err(|_| Problem::internal())?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Problem::bad_request(format!("the upload broke off: {e}")))?;
        size += chunk.len() as u64;
        if size > max {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("objects are limited to {max} bytes"),
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|_| Problem::internal())?;
    }
    file.flush().await.map_err(|_| Problem::internal())?;
    Ok((hasher.finalize().to_hex().to_string(), size))
}

/// The ledger status's name, as filters spell it.
pub(super) fn now_ms() -> u64 {
    crate::agreement::driver::now().0
}

pub(super) fn jwt_revocation_view(
    r: crate::home::jwt_revocations::JwtRevocation,
) -> quorate_api::local::responses::JwtRevocationView {
    quorate_api::local::responses::JwtRevocationView {
        subject: r.subject,
        jti: r.jti,
        revoked_ms: r.revoked_ms,
        until_ms: r.until_ms,
        reason: r.reason,
    }
}

pub(super) fn token_view(token: &StoredToken, now_ms: u64) -> TokenView {
    TokenView {
        name: token.name.clone(),
        roles: token.roles.clone(),
        created_ms: token.created_ms,
        expires_ms: token.expires_ms,
        expired: token.expired(now_ms),
    }
}

pub(super) fn status_kind(status: &GrantStatus) -> &'static str {
    match status {
        GrantStatus::Active => "active",
        GrantStatus::Revoked { .. } => "revoked",
        GrantStatus::Ended { .. } => "ended",
    }
}

/// A proposal id from the API (64 hex digits).
pub(super) fn proposal_id(id: &str) -> Result<quorate_ledger::entry::EntryId, Problem> {
    id.parse()
        .map_err(|_| Problem::bad_request(format!("{id:?} is not a proposal id (64 hex digits)")))
}
