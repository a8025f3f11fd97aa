//! `quorate grant …`, `data`, `peer`, `audit` and `member`: a running
//! node's local API from the command line, and offline proof verification.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use quorate_contracts::GrantStatus;
use quorate_node::home::NodeHome;
use quorate_testnet::client::{ApiClient, Response};

use crate::HomeArg;
use crate::proposals::{GrantProposal, RevokeProposal, propose_grant, propose_revoke};

#[derive(Debug, Subcommand)]
pub(crate) enum GrantCommand {
    /// Propose a grant of this organization's data to another member (the
    /// same as `quorate proposal grant`).
    Propose(GrantProposal),
    /// Propose revoking a grant (the same as `quorate proposal revoke`).
    Revoke(RevokeProposal),
    /// List the grants on the committed ledger (a JSON array, in id order,
    /// each with its standing as of the tip's time).
    List {
        #[command(flatten)]
        home: HomeArg,
        /// Only grants to this member (name or did:key).
        #[arg(long)]
        grantee: Option<String>,
        /// Only grants by this member (name or did:key).
        #[arg(long)]
        grantor: Option<String>,
        /// Only grants in this state: active, expired, not-yet-valid,
        /// revoked or ended.
        #[arg(long)]
        status: Option<String>,
        /// At most this many grants (all if not given).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one committed grant.
    Show {
        #[command(flatten)]
        home: HomeArg,
        /// The grant id.
        id: String,
    },
    /// Write a committed grant's proof (block header, quorum certificate,
    /// Merkle path and the membership history since genesis) to a file.
    Proof {
        #[command(flatten)]
        home: HomeArg,
        /// The grant id.
        id: String,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a proof of the grant's status at a committed height (active
    /// with its terms, revoked or ended, or absent then), checkable offline.
    Status {
        #[command(flatten)]
        home: HomeArg,
        /// The grant id.
        id: String,
        /// The committed height (default: the tip).
        #[arg(long, value_name = "HEIGHT")]
        at: Option<u64>,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify a grant proof, a status proof or a member status proof
    /// offline and print what it proves.
    Verify {
        /// A proof file from `quorate grant proof`, `quorate grant status`
        /// or `quorate member status`.
        file: PathBuf,
        /// The genesis hash you trust (otherwise the proof's own genesis is
        /// checked for internal consistency only and its hash printed).
        #[arg(long, value_name = "HASH")]
        genesis: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DataCommand {
    /// Store an object from FILE (or standard input, without one or with
    /// `-`), streamed: any size up to the node's object_bytes_max, with a
    /// progress line on a terminal.
    Put {
        #[command(flatten)]
        home: HomeArg,
        /// The object's path, e.g. datasets/shipments/2026-11.csv.
        path: String,
        /// The file to upload; standard input if absent or `-`.
        file: Option<PathBuf>,
        /// Its media type.
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
    },
    /// Write one of this organization's objects to standard output (or
    /// --out, where an interrupted download resumes), streamed.
    Get {
        #[command(flatten)]
        home: HomeArg,
        /// The object's path.
        path: String,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List this organization's objects.
    Ls {
        #[command(flatten)]
        home: HomeArg,
        /// Only paths starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete an object.
    Rm {
        #[command(flatten)]
        home: HomeArg,
        /// The object's path.
        path: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PeerCommand {
    /// Fetch another member's object through this node (over libp2p; the
    /// member's gateway checks this organization's grants), streamed, to
    /// standard output or --out (where an interrupted download resumes).
    Get {
        #[command(flatten)]
        home: HomeArg,
        /// The member: its name (org-a) or did:key.
        member: String,
        /// The object's path.
        path: String,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Declare the purpose of the request (a grant that names a
        /// purpose serves only requests that declare it).
        #[arg(long)]
        purpose: Option<String>,
        /// A query string for the member's upstream route that serves the
        /// path (`status=open&page=2`; without `?`, already
        /// percent-encoded).
        #[arg(long, value_name = "QUERY")]
        query: Option<String>,
    },
    /// Write an object into another member's namespace from FILE (or
    /// standard input), streamed through this node (over libp2p; the
    /// member's gateway checks for a grant with `write` on the path, and
    /// the body's sha-256 before it stores anything).
    Put {
        #[command(flatten)]
        home: HomeArg,
        /// The member: its name (org-a) or did:key.
        member: String,
        /// The object's path in the member's namespace.
        path: String,
        /// The file to upload; standard input if absent or `-`.
        file: Option<PathBuf>,
        /// Its media type.
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
        /// Declare the purpose of the write.
        #[arg(long)]
        purpose: Option<String>,
        /// Only if the member has no object at the path yet.
        #[arg(long, conflicts_with = "if_match")]
        if_absent: bool,
        /// Only if the member's object at the path has this ETag.
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// Delete an object in another member's namespace (a grant with
    /// `delete` on the path).
    Rm {
        #[command(flatten)]
        home: HomeArg,
        /// The member.
        member: String,
        /// The object's path.
        path: String,
        /// Declare the purpose of the delete.
        #[arg(long)]
        purpose: Option<String>,
        /// Only if the object has this ETag.
        #[arg(long, value_name = "ETAG")]
        if_match: Option<String>,
    },
    /// List what another member's gateway lets this organization list.
    Ls {
        #[command(flatten)]
        home: HomeArg,
        /// The member.
        member: String,
        /// Only paths starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Declare the purpose of the listing.
        #[arg(long)]
        purpose: Option<String>,
    },
    /// Show what another member offers this organization: its catalog's
    /// datasets and their terms (`--json`: the DCAT document itself).
    Catalog {
        #[command(flatten)]
        home: HomeArg,
        /// The member.
        member: String,
        /// Print the catalog as JSON-LD.
        #[arg(long)]
        json: bool,
    },
}

/// The `Quorate-Purpose` header value for a request declaring `purpose`
/// (percent-encoded UTF-8).
fn purpose_header(purpose: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(purpose) = purpose else {
        return Ok(None);
    };
    anyhow::ensure!(
        !purpose.is_empty() && purpose.len() <= quorate_contracts::model::PURPOSE_BYTES_MAX,
        "--purpose is 1 to {} bytes",
        quorate_contracts::model::PURPOSE_BYTES_MAX
    );
    Ok(Some(quorate_api::purpose::encode(purpose)))
}

fn with_purpose(value: &Option<String>) -> Vec<(&'static str, &str)> {
    value
        .as_deref()
        .map(|v| vec![("Quorate-Purpose", v)])
        .unwrap_or_default()
}

/// An ETag as `If-Match` writes it (quoted): the hex digits the node
/// prints.
fn etag_header(etag: &str) -> anyhow::Result<String> {
    let etag = etag.trim_matches('"');
    anyhow::ensure!(
        !etag.is_empty() && etag.len() <= 128 && etag.bytes().all(|b| b.is_ascii_alphanumeric()),
        "--if-match takes an ETag as the node prints it (hex digits)"
    );
    Ok(format!("\"{etag}\""))
}

/// Object paths go into URLs: the node checks them strictly; here only
/// what would break the request line is refused.
fn url_path(path: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        !path.is_empty()
            && path
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#' && b != b'%'),
        "{path:?} is not an object path (letters, digits, '.', '_', '-', separated by '/')"
    );
    Ok(path)
}

/// A query string as a URI carries it (RFC 3986 `query`), at most 2 KiB.
fn url_query(query: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        !query.is_empty()
            && query.len() <= 2048
            && query
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)),
        "--query takes a URI query of at most 2048 bytes, percent-encoded, without '?' in front (e.g. status=open&page=2), not {query:?}"
    );
    Ok(query)
}

fn query_value(value: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b)),
        "{value:?} is not a path prefix"
    );
    Ok(value)
}

fn print_listing(response: &Response) -> anyhow::Result<()> {
    let listing = response.json()?;
    for object in listing["objects"].as_array().into_iter().flatten() {
        println!(
            "{:>10}  {}  {}",
            object["size"],
            object["etag"]
                .as_str()
                .map(|e| &e[..12.min(e.len())])
                .unwrap_or("-"),
            object["path"].as_str().unwrap_or("-")
        );
    }
    if let Some(next) = listing["next"].as_str() {
        println!("(more after {next})");
    }
    Ok(())
}

pub(crate) fn data(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Put {
            home,
            path,
            file,
            content_type,
        } => {
            let api = client(home)?;
            let target = format!("/v1/objects/{}", url_path(&path)?);
            let (response, _) =
                crate::transfer::upload(&api, &target, &content_type, &[], file.as_deref())?;
            let info = response.json()?;
            println!(
                "stored {} ({} bytes, etag {})",
                path,
                info["size"],
                info["etag"].as_str().unwrap_or("-")
            );
        }
        DataCommand::Get { home, path, out } => {
            let api = client(home)?;
            let target = format!("/v1/objects/{}", url_path(&path)?);
            crate::transfer::download(&api, &target, &[], out.as_deref())?;
        }
        DataCommand::Ls { home, prefix } => {
            let api = client(home)?;
            let target = format!("/v1/objects?prefix={}", query_value(&prefix)?);
            print_listing(&checked(api.get(&target), &api)?)?;
        }
        DataCommand::Rm { home, path } => {
            let api = client(home)?;
            let target = format!("/v1/objects/{}", url_path(&path)?);
            checked(api.request("DELETE", &target, None), &api)?;
            println!("deleted {path}");
        }
    }
    Ok(())
}

pub(crate) fn peer(command: PeerCommand) -> anyhow::Result<()> {
    match command {
        PeerCommand::Get {
            home,
            member,
            path,
            out,
            purpose,
            query,
        } => {
            let api = client(home)?;
            let mut target = format!(
                "/v1/peers/{}/objects/{}",
                url_path(&member)?,
                url_path(&path)?
            );
            if let Some(query) = query {
                target.push('?');
                target.push_str(url_query(&query)?);
            }
            let purpose = purpose_header(purpose.as_deref())?;
            crate::transfer::download(&api, &target, &with_purpose(&purpose), out.as_deref())?;
        }
        PeerCommand::Put {
            home,
            member,
            path,
            file,
            content_type,
            purpose,
            if_absent,
            if_match,
        } => {
            let api = client(home)?;
            let target = format!(
                "/v1/peers/{}/objects/{}",
                url_path(&member)?,
                url_path(&path)?
            );
            let purpose = purpose_header(purpose.as_deref())?;
            let if_match = if_match.as_deref().map(etag_header).transpose()?;
            let mut headers = with_purpose(&purpose);
            if if_absent {
                headers.push(("If-None-Match", "*"));
            }
            if let Some(etag) = &if_match {
                headers.push(("If-Match", etag));
            }
            let (response, sent) =
                crate::transfer::upload(&api, &target, &content_type, &headers, file.as_deref())?;
            let written = response.json()?;
            let stored = written["digest"].as_str().unwrap_or("-");
            // The member checked our digest; this checks that the body
            // this command read is the one that travelled.
            anyhow::ensure!(
                stored == sent,
                "{member} stored a body whose sha-256 ({stored}) is not that of what was sent ({sent})"
            );
            let object = &written["object"];
            println!(
                "{} {} at {member} ({} bytes, etag {}, {stored})",
                if written["replaced"] == true {
                    "replaced"
                } else {
                    "stored"
                },
                path,
                object["size"],
                object["etag"].as_str().unwrap_or("-"),
            );
        }
        PeerCommand::Rm {
            home,
            member,
            path,
            purpose,
            if_match,
        } => {
            let api = client(home)?;
            let target = format!(
                "/v1/peers/{}/objects/{}",
                url_path(&member)?,
                url_path(&path)?
            );
            let purpose = purpose_header(purpose.as_deref())?;
            let if_match = if_match.as_deref().map(etag_header).transpose()?;
            let mut headers = with_purpose(&purpose);
            if let Some(etag) = &if_match {
                headers.push(("If-Match", etag));
            }
            checked(api.send_with("DELETE", &target, &headers), &api)?;
            println!("deleted {path} at {member}");
        }
        PeerCommand::Ls {
            home,
            member,
            prefix,
            purpose,
        } => {
            let api = client(home)?;
            let target = format!(
                "/v1/peers/{}/objects?prefix={}",
                url_path(&member)?,
                query_value(&prefix)?
            );
            let purpose = purpose_header(purpose.as_deref())?;
            print_listing(&checked(
                api.get_with(&target, &with_purpose(&purpose)),
                &api,
            )?)?;
        }
        PeerCommand::Catalog { home, member, json } => {
            crate::sharing::peer_catalog(home, &member, json)?;
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Show the newest gateway decisions (through the running node).
    Tail {
        #[command(flatten)]
        home: HomeArg,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only refusals.
        #[arg(long)]
        denied: bool,
    },
    /// Check every record's hash and link in an audit log, offline (the
    /// node may be running): its archived segments (`audit/` beside it)
    /// in order, then the current file, the chain continuing across them.
    Verify {
        /// An audit log file, or a node's data directory (default: the
        /// node home's log).
        #[arg(value_name = "FILE|DIR", conflicts_with = "home")]
        file: Option<PathBuf>,
        /// The node home whose log to check.
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
    },
}

pub(crate) fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Tail {
            home,
            limit,
            denied,
        } => {
            let api = client(home)?;
            let mut path = format!("/v1/audit?limit={}", limit.clamp(1, 1000));
            if denied {
                path.push_str("&decision=deny");
            }
            let response = checked(api.get(&path), &api)?;
            let records = response.json()?;
            for r in records.as_array().into_iter().flatten() {
                let text = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
                // A stored write also names the digest of what it stored.
                let digest = r["digest"]
                    .as_str()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default();
                println!(
                    "{:>6} {} {:<5} {:<6} {:<5} {:<40} {:<20} {}{digest}",
                    r["seq"].as_u64().unwrap_or(0),
                    r["time_ms"].as_u64().unwrap_or(0),
                    text("transport"),
                    text("action"),
                    text("decision"),
                    text("resource"),
                    text("reason"),
                    text("caller")
                );
            }
        }
        AuditCommand::Verify { file, home } => {
            let path = match (file, home) {
                (Some(dir), _) if dir.is_dir() => dir.join("audit.log"),
                (Some(file), _) => file,
                (None, home) => {
                    let home = NodeHome::new(home.unwrap_or_else(crate::default_home));
                    let config = home.load_config()?;
                    quorate_node::run::data_dir(&home, &config).join("audit.log")
                }
            };
            let verified = quorate_node::gateway::audit::verify_chain(&path)
                .map_err(|e| anyhow::anyhow!("FAILED: {e}"))?;
            println!("records: {}", verified.records);
            println!(
                "files:   {} (segments in {}, then the current file)",
                verified.files,
                quorate_node::gateway::audit::segments_dir(&path).display()
            );
            println!("head:    {}", verified.head);
            if verified.first_seq > 1 {
                println!(
                    "from:    record {} (the segments before it were archived away)",
                    verified.first_seq
                );
            }
            println!("OK: every record's hash and link verify");
        }
    }
    Ok(())
}

/// The local API of the node in `home`.
pub(crate) fn client(home: HomeArg) -> anyhow::Result<ApiClient> {
    let home = NodeHome::new(home.home);
    let config = home.load_config()?;
    let token = quorate_did::keyfile::read_secret_file(&home.admin_token_path(), 1024)?;
    let token = std::str::from_utf8(&token).context("admin.token is not text")?;
    Ok(ApiClient::new(
        config.api.listen.to_string(),
        token.trim().to_owned(),
    ))
}

/// The response if 2xx, else its problem as an error.
pub(crate) fn checked(
    response: std::io::Result<Response>,
    client: &ApiClient,
) -> anyhow::Result<Response> {
    let response = response.with_context(|| {
        format!(
            "cannot reach the node's API at {} (is `quorate node run` running?)",
            client.address()
        )
    })?;
    if !response.is_success() {
        bail!("{} ({})", response.problem_detail(), response.status);
    }
    Ok(response)
}

/// Prints the grants page by page (following each page's `Link: rel=next`),
/// as one JSON array, without holding the listing in memory.
fn list_grants(
    api: &ApiClient,
    [grantee, grantor, status]: [Option<String>; 3],
    limit: Option<usize>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut query = vec!["limit=1000".to_owned()];
    for (name, value) in [
        ("grantee", grantee),
        ("grantor", grantor),
        ("status", status),
    ] {
        if let Some(value) = value {
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-:_".contains(&b))
            {
                bail!("--{name} takes a member name, a did:key or a status, not {value:?}");
            }
            query.push(format!("{name}={value}"));
        }
    }
    let mut path = format!("/v1/grants?{}", query.join("&"));
    let mut out = std::io::stdout().lock();
    let mut printed = 0usize;
    write!(out, "[")?;
    loop {
        let response = checked(api.get(&path), api)?;
        let page = response.json()?;
        for grant in page.as_array().into_iter().flatten() {
            if limit.is_some_and(|l| printed == l) {
                break;
            }
            let sep = if printed == 0 { "\n" } else { ",\n" };
            write!(out, "{sep}{}", serde_json::to_string_pretty(grant)?)?;
            printed += 1;
        }
        let next = response.header("link").and_then(|link| {
            let (target, rel) = link.split_once(';')?;
            rel.contains("rel=\"next\"").then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
        });
        match next {
            Some(next) if limit.is_none_or(|l| printed < l) => path = next,
            _ => break,
        }
    }
    writeln!(out, "{}]", if printed == 0 { "" } else { "\n" })?;
    Ok(())
}

/// Fetches a proof from `path`, checks it with `check` (which describes it)
/// before writing it to `out`: never hands out a proof that fails. Returns
/// the description, with the size and the file.
fn save_proof(
    home: HomeArg,
    path: &str,
    out: &std::path::Path,
    check: impl FnOnce(&[u8]) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let api = client(home)?;
    let response = checked(api.get(path), &api)?;
    let described = check(&response.body).context("the node sent a proof that does not verify")?;
    std::fs::write(out, &response.body)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(format!(
        "{described}, {} bytes) to {}",
        response.body.len(),
        out.display()
    ))
}

/// Verifies a status proof and prints what it shows.
fn print_status(
    proof: &quorate_ledger::proof::StatusProof,
    trusted: Option<&quorate_ledger::hash::Hash>,
) -> anyhow::Result<()> {
    let status = proof
        .verify(trusted)
        .map_err(|e| anyhow::anyhow!("FAILED: {e}"))?;
    println!("grant:      {}", status.id);
    println!("height:     {}", status.height);
    println!("block time: {} ms", status.time.0);
    println!("genesis:    {}", status.genesis_hash);
    let when = match status.record.as_ref().map(|r| r.status) {
        Some(GrantStatus::Revoked { height }) | Some(GrantStatus::Ended { height }) => {
            format!(" at height {height}")
        }
        _ => String::new(),
    };
    println!(
        "status:     {}{when} (as of height {}, by its block's time)",
        status.standing(),
        status.height
    );
    if let Some(record) = &status.record {
        let t = &record.terms;
        println!("grantor:    {}", t.grantor);
        println!("grantee:    {}", t.grantee);
        let resources: Vec<String> = t.resources.iter().map(|r| r.to_string()).collect();
        println!("resources:  {}", resources.join(", "));
        println!("valid (ms): {} .. {}", t.not_before.0, t.not_after.0);
        println!("committed:  height {}", record.committed_height);
    }
    if trusted.is_some() {
        println!(
            "OK: the state at this height, certified by a quorum of the chain with the trusted genesis"
        );
    } else {
        println!(
            "OK: the state at this height, certified by a quorum of this genesis's members; compare the genesis hash with your own (or pass --genesis)"
        );
    }
    Ok(())
}

pub(crate) fn print_json(response: &Response) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&response.json()?)?);
    Ok(())
}

/// How long `did rotate --wait` waits for the node to take its new key.
const ROTATION_WAIT: Duration = Duration::from_secs(60);

/// `quorate did rotate`.
pub(crate) fn rotate(home: HomeArg, wait: bool) -> anyhow::Result<()> {
    let node_home = NodeHome::new(home.home.clone());
    let current = node_home.load_key()?.did();
    let next = node_home.next_key()?.did();
    let api = client(home)?;
    let body = serde_json::json!({ "rotate_key": { "did": next.to_string() } });
    let response = checked(api.post_json("/v1/proposals", &body), &api)?;
    println!("proposed rotation {}", id_of(&response)?);
    println!("from:  {current}");
    println!("to:    {next}  ({})", node_home.next_key_path().display());
    if !wait {
        println!("the node moves to the new key once a quorum commits the rotation");
        return Ok(());
    }
    let deadline = std::time::Instant::now() + ROTATION_WAIT;
    loop {
        let did = api
            .get("/v1/identity")
            .ok()
            .filter(Response::is_success)
            .and_then(|r| r.json().ok())
            .and_then(|j| j["did"].as_str().map(str::to_owned));
        if did.as_deref() == Some(next.to_string().as_str()) {
            println!("the node now runs under {next}");
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the node did not move to the new key within {ROTATION_WAIT:?} (see `quorate proposal list`)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn id_of(response: &Response) -> anyhow::Result<String> {
    response
        .json()?
        .get("id")
        .and_then(|id| id.as_str())
        .map(str::to_owned)
        .context("the node's answer has no id")
}

/// Ids go into a URL path: refuse anything but 64 hex digits up front.
pub(crate) fn ensure_hex_id(id: &str) -> anyhow::Result<()> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{id:?} is not an id (64 hex digits)");
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum MemberCommand {
    /// List the consortium's current members.
    List {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Write a proof of whether a member was one at a committed height
    /// (its name and key then), checkable offline with `quorate grant
    /// verify`.
    Status {
        #[command(flatten)]
        home: HomeArg,
        /// The member: its did:key (current or former), or a current
        /// member's name.
        member: String,
        /// The committed height (default: the tip).
        #[arg(long, value_name = "HEIGHT")]
        at: Option<u64>,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

pub(crate) fn member(command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::List { home } => {
            let api = client(home)?;
            print_json(&checked(api.get("/v1/members"), &api)?)?;
        }
        MemberCommand::Status {
            home,
            member,
            at,
            out,
        } => {
            anyhow::ensure!(
                !member.is_empty()
                    && member.len() <= 128
                    && member
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'-'),
                "{member:?} is not a did:key or a member name"
            );
            let path = match at {
                Some(at) => format!("/v1/members/{member}/status?at={at}"),
                None => format!("/v1/members/{member}/status"),
            };
            let summary = save_proof(home, &path, &out, |bytes| {
                let proof: quorate_ledger::proof::MemberStatusProof =
                    quorate_ledger::codec::decode(bytes)?;
                let verified = proof.verify(None)?;
                Ok(format!(
                    "the status of member {} at height {} ({}",
                    verified.id,
                    verified.height,
                    match &verified.record {
                        Some(m) => format!("a member, as {}", m.name),
                        None => "not a member".to_owned(),
                    }
                ))
            })?;
            println!("wrote {summary}");
        }
    }
    Ok(())
}

/// Verifies a member status proof and prints what it shows.
fn print_member_status(
    proof: &quorate_ledger::proof::MemberStatusProof,
    trusted: Option<&quorate_ledger::hash::Hash>,
) -> anyhow::Result<()> {
    let status = proof
        .verify(trusted)
        .map_err(|e| anyhow::anyhow!("FAILED: {e}"))?;
    println!("member:     {}", status.id);
    println!("height:     {}", status.height);
    println!("block time: {} ms", status.time.0);
    println!("genesis:    {}", status.genesis_hash);
    match &status.record {
        Some(member) => {
            println!(
                "status:     a member (as of height {}, since epoch {})",
                status.height, member.joined_epoch
            );
            println!("name:       {}", member.name);
            println!("did:        {}", member.did);
        }
        None => println!(
            "status:     not a member (as of height {}: not yet admitted, or removed)",
            status.height
        ),
    }
    if trusted.is_some() {
        println!("OK: certified by a quorum of the chain with the trusted genesis");
    } else {
        println!(
            "OK: certified by a quorum of this genesis's members; compare the genesis hash with your own (or pass --genesis)"
        );
    }
    Ok(())
}

pub(crate) fn grant(command: GrantCommand) -> anyhow::Result<()> {
    match command {
        GrantCommand::Propose(proposal) => propose_grant(proposal)?,
        GrantCommand::Revoke(proposal) => propose_revoke(proposal)?,
        GrantCommand::List {
            home,
            grantee,
            grantor,
            status,
            limit,
        } => list_grants(&client(home)?, [grantee, grantor, status], limit)?,
        GrantCommand::Show { home, id } => {
            ensure_hex_id(&id)?;
            let api = client(home)?;
            print_json(&checked(api.get(&format!("/v1/grants/{id}")), &api)?)?;
        }
        GrantCommand::Proof { home, id, out } => {
            ensure_hex_id(&id)?;
            let summary = save_proof(home, &format!("/v1/grants/{id}/proof"), &out, |bytes| {
                let proof: quorate_ledger::proof::GrantProof =
                    quorate_ledger::codec::decode(bytes)?;
                let verified = proof.verify(None)?;
                Ok(format!(
                    "the proof of grant {} (block {}",
                    verified.id, verified.height
                ))
            })?;
            println!("wrote {summary}");
        }
        GrantCommand::Status { home, id, at, out } => {
            ensure_hex_id(&id)?;
            let path = match at {
                Some(at) => format!("/v1/grants/{id}/status?at={at}"),
                None => format!("/v1/grants/{id}/status"),
            };
            let summary = save_proof(home, &path, &out, |bytes| {
                let proof: quorate_ledger::proof::StatusProof =
                    quorate_ledger::codec::decode(bytes)?;
                let verified = proof.verify(None)?;
                Ok(format!(
                    "the status of grant {} at height {} ({}",
                    verified.id,
                    verified.height,
                    verified.standing()
                ))
            })?;
            println!("wrote {summary}");
        }
        GrantCommand::Verify { file, genesis } => {
            const PROOF_BYTES_MAX: u64 = 64 * 1024 * 1024;
            let size = std::fs::metadata(&file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .len();
            anyhow::ensure!(
                size <= PROOF_BYTES_MAX,
                "{} is too large for a proof",
                file.display()
            );
            let bytes = std::fs::read(&file)?;
            let trusted: Option<quorate_ledger::hash::Hash> = genesis
                .map(|g| {
                    g.parse()
                        .map_err(|_| anyhow::anyhow!("{g:?} is not a hash (64 hex digits)"))
                })
                .transpose()?;
            // A status proof if it decodes as one (its fields differ from a
            // grant proof's), else a grant proof.
            if let Ok(status) =
                quorate_ledger::codec::decode::<quorate_ledger::proof::StatusProof>(&bytes)
            {
                return print_status(&status, trusted.as_ref());
            }
            if let Ok(member) =
                quorate_ledger::codec::decode::<quorate_ledger::proof::MemberStatusProof>(&bytes)
            {
                return print_member_status(&member, trusted.as_ref());
            }
            let proof: quorate_ledger::proof::GrantProof = quorate_ledger::codec::decode(&bytes)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "FAILED: {} is not a grant proof, a status proof or a member status proof: {e}",
                        file.display()
                    )
                })?;
            let grant = proof
                .verify(trusted.as_ref())
                .map_err(|e| anyhow::anyhow!("FAILED: {e}"))?;
            let t = &grant.terms;
            println!("grant:      {}", grant.id);
            println!("block:      {}", grant.height);
            println!("genesis:    {}", grant.genesis_hash);
            println!("grantor:    {}", t.grantor);
            println!("grantee:    {}", t.grantee);
            let resources: Vec<String> = t.resources.iter().map(|r| r.to_string()).collect();
            println!("resources:  {}", resources.join(", "));
            let actions: Vec<String> = t
                .actions
                .iter()
                .map(|a| format!("{a:?}").to_lowercase())
                .collect();
            println!("actions:    {}", actions.join(", "));
            println!("valid (ms): {} .. {}", t.not_before.0, t.not_after.0);
            if let Some(purpose) = &t.purpose {
                println!("purpose:    {purpose}");
            }
            if trusted.is_some() {
                println!("OK: committed by a quorum of the chain with the trusted genesis");
            } else {
                println!(
                    "OK: committed by a quorum of this genesis's members; compare the genesis hash with your own (or pass --genesis)"
                );
            }
        }
    }
    Ok(())
}
