//! `quorate access …` (asking members for access, and deciding what they
//! ask of us) and `quorate catalog …` (what this organization offers),
//! through the node's local API.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use quorate_testnet::client::ApiClient;
use serde_json::{Value, json};

use crate::api::{checked, client, ensure_hex_id, print_json};
use crate::{HomeArg, time};

/// How often `--wait` looks at a request.
const POLL: Duration = Duration::from_millis(500);
/// Longest `--wait`.
const WAIT_MAX: Duration = Duration::from_secs(24 * 3600);
/// Largest offer file read.
const OFFER_FILE_BYTES_MAX: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub(crate) enum AccessCommand {
    /// Ask another member for access to some of its data. The request,
    /// signed by this member, goes to the owner over libp2p and waits in
    /// its queue until it accepts (it proposes the grant) or declines.
    /// Prints the request's id.
    Request(NewRequest),
    /// List access requests, asked of this organization (incoming) and by
    /// it (outgoing), newest first, with where each stands (JSON).
    List {
        #[command(flatten)]
        home: HomeArg,
        /// Only those asked of this organization.
        #[arg(long, conflicts_with = "outgoing")]
        incoming: bool,
        /// Only those this organization asked.
        #[arg(long)]
        outgoing: bool,
        /// Only those still open.
        #[arg(long)]
        open: bool,
    },
    /// Show one access request (JSON).
    Show {
        #[command(flatten)]
        home: HomeArg,
        /// The request id.
        id: String,
    },
    /// Accept a request asked of this organization: it proposes the grant
    /// (prints the proposal id, which the grant takes once committed).
    Accept {
        #[command(flatten)]
        home: HomeArg,
        /// The request id.
        id: String,
        #[command(flatten)]
        wait: crate::governance::WaitArg,
    },
    /// Decline a request asked of this organization; the requester reads
    /// the reason.
    Decline {
        #[command(flatten)]
        home: HomeArg,
        /// The request id.
        id: String,
        /// Why (1 to 256 bytes).
        #[arg(long)]
        reason: String,
    },
    /// Withdraw a request this organization made (its owner is told).
    Withdraw {
        #[command(flatten)]
        home: HomeArg,
        /// The request id.
        id: String,
    },
}

/// What `access request` asks for.
#[derive(Debug, Args)]
pub(crate) struct NewRequest {
    #[command(flatten)]
    home: HomeArg,
    /// The owner: a member name (org-a) or its did:key.
    #[arg(long)]
    to: String,
    /// An offer of the owner's catalog (`quorate peer catalog`): its
    /// resource and actions are asked for unless given here.
    #[arg(long)]
    offer: Option<String>,
    /// A resource pattern of the owner's: `*`, `prefix/*` or a path
    /// (repeatable).
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// `read`, `list` or `write` (repeatable; `read` if neither this nor
    /// --offer is given).
    #[arg(long = "action")]
    actions: Vec<String>,
    /// How long the grant should last once accepted: 90m, 12h, 30d.
    #[arg(long = "for", value_name = "DURATION", conflicts_with = "until_ms", value_parser = time::parse_duration_ms)]
    for_ms: Option<u64>,
    /// When the grant should end, instead of --for (2027-03-31T00:00:00Z,
    /// or a date).
    #[arg(long = "until", value_name = "TIME", value_parser = time::parse_instant_ms)]
    until_ms: Option<u64>,
    /// When the grant should start, if later than its acceptance.
    #[arg(long = "not-before", value_name = "TIME", value_parser = time::parse_instant_ms)]
    not_before_ms: Option<u64>,
    /// Why: the grant's purpose (requests under it must declare it).
    #[arg(long)]
    purpose: Option<String>,
    /// A note for the owner's approvers.
    #[arg(long)]
    message: Option<String>,
    /// Wait until the owner decides (and, once accepted, until the grant
    /// is committed here); at most TIMEOUT (2m if not given). A decline
    /// exits non-zero.
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "2m", value_parser = parse_wait)]
    wait: Option<Duration>,
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    let ms = time::parse_duration_ms(text)?;
    let d = Duration::from_millis(ms);
    if d.is_zero() || d > WAIT_MAX {
        return Err(format!(
            "wait between 1s and {}h",
            WAIT_MAX.as_secs() / 3600
        ));
    }
    Ok(d)
}

pub(crate) fn access(command: AccessCommand) -> anyhow::Result<()> {
    match command {
        AccessCommand::Request(request) => ask(request)?,
        AccessCommand::List {
            home,
            incoming,
            outgoing,
            open,
        } => {
            let api = client(home)?;
            let mut query = Vec::new();
            if incoming {
                query.push("direction=incoming");
            }
            if outgoing {
                query.push("direction=outgoing");
            }
            if open {
                query.push("open=true");
            }
            let path = format!("/v1/access-requests?{}", query.join("&"));
            let list = checked(api.get(&path), &api)?.json()?;
            println!("{}", serde_json::to_string_pretty(&list["requests"])?);
        }
        AccessCommand::Show { home, id } => {
            ensure_hex_id(&id)?;
            let api = client(home)?;
            print_json(&checked(
                api.get(&format!("/v1/access-requests/{id}")),
                &api,
            )?)?;
        }
        AccessCommand::Accept { home, id, wait } => {
            ensure_hex_id(&id)?;
            let api = client(home)?;
            let view = checked(
                api.post_json(&format!("/v1/access-requests/{id}/accept"), &json!({})),
                &api,
            )?
            .json()?;
            let proposal = view["proposal"]
                .as_str()
                .context("the node's answer names no proposal")?;
            println!("{proposal}");
            wait.apply(&api, proposal)?;
        }
        AccessCommand::Decline { home, id, reason } => {
            ensure_hex_id(&id)?;
            let api = client(home)?;
            checked(
                api.post_json(
                    &format!("/v1/access-requests/{id}/decline"),
                    &json!({ "reason": reason }),
                ),
                &api,
            )?;
            eprintln!("declined {id}");
        }
        AccessCommand::Withdraw { home, id } => {
            ensure_hex_id(&id)?;
            let api = client(home)?;
            let view = checked(
                api.post_json(&format!("/v1/access-requests/{id}/withdraw"), &json!({})),
                &api,
            )?
            .json()?;
            eprintln!("{id}: {}", view["state"].as_str().unwrap_or("?"));
        }
    }
    Ok(())
}

fn ask(request: NewRequest) -> anyhow::Result<()> {
    let NewRequest {
        home,
        to,
        offer,
        resources,
        mut actions,
        for_ms,
        until_ms,
        not_before_ms,
        purpose,
        message,
        wait,
    } = request;
    if offer.is_none() && resources.is_empty() {
        bail!("name what you ask for: --resource PATTERN (repeatable), or --offer ID");
    }
    if offer.is_none() && actions.is_empty() {
        actions.push("read".to_owned());
    }
    let (not_after_ms, duration_ms) = match (until_ms, for_ms) {
        (Some(until), _) => (Some(until), None),
        (None, Some(length)) => (None, Some(length)),
        (None, None) => (None, Some(30 * time::DAY_MS)),
    };
    let api = client(home)?;
    let body = json!({
        "to": to,
        "offer": offer,
        "resources": resources,
        "actions": actions,
        "not_before_ms": not_before_ms,
        "not_after_ms": not_after_ms,
        "duration_ms": duration_ms,
        "purpose": purpose,
        "message": message,
    });
    let view = checked(api.post_json("/v1/access-requests", &body), &api)?.json()?;
    let id = view["id"]
        .as_str()
        .context("the node's answer has no id")?
        .to_owned();
    println!("{id}");
    eprintln!("{}", standing(&view));
    if let Some(timeout) = wait {
        wait_for_decision(&api, &id, timeout)?;
    }
    Ok(())
}

/// Where a request stands, in a line.
fn standing(view: &Value) -> String {
    match view["state"].as_str().unwrap_or("unknown") {
        "open" => format!(
            "open: waiting for {} to decide{}",
            view["owner"].as_str().unwrap_or("the owner"),
            view["policy"]
                .as_str()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default()
        ),
        "accepted" => format!(
            "accepted by {} ({}): grant proposal {}",
            view["owner"].as_str().unwrap_or("the owner"),
            view["by"].as_str().unwrap_or("?"),
            view["proposal"].as_str().unwrap_or("?")
        ),
        "declined" => format!(
            "declined by {} ({}): {}",
            view["owner"].as_str().unwrap_or("the owner"),
            view["by"].as_str().unwrap_or("?"),
            view["reason"].as_str().unwrap_or("no reason given")
        ),
        other => other.to_owned(),
    }
}

/// Polls the request until its owner decides; once accepted, waits for the
/// grant to commit.
fn wait_for_decision(api: &ApiClient, id: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let view = checked(api.get(&format!("/v1/access-requests/{id}")), api)?.json()?;
        let line = standing(&view);
        if line != last {
            eprintln!("{line}");
            last = line.clone();
        }
        match view["state"].as_str().unwrap_or("") {
            "accepted" => {
                let proposal = view["proposal"].as_str().unwrap_or_default();
                let left = deadline.saturating_duration_since(Instant::now());
                return crate::governance::wait_for(
                    api,
                    proposal,
                    left.max(Duration::from_secs(1)),
                );
            }
            "declined" => bail!(
                "access request {id} was declined: {}",
                view["reason"].as_str().unwrap_or("no reason given")
            ),
            "withdrawn" => bail!("access request {id} was withdrawn"),
            "expired" => bail!("access request {id} expired without a decision"),
            _ => {}
        }
        if Instant::now() >= deadline {
            bail!(
                "access request {id} is still open after {}s; `quorate access show {id}` tells where it stands",
                timeout.as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum CatalogCommand {
    /// List this organization's offers (JSON).
    List {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Print this organization's catalog as members read it: DCAT in
    /// JSON-LD.
    Show {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Offer a dataset to members (or replace the offer of that id).
    Offer(Box<NewOffer>),
    /// Remove an offer (grants made under it stay).
    Remove {
        #[command(flatten)]
        home: HomeArg,
        /// The offer's id.
        id: String,
    },
}

/// What `catalog offer` writes.
#[derive(Debug, Args)]
pub(crate) struct NewOffer {
    #[command(flatten)]
    home: HomeArg,
    /// The offer's id (1 to 64 of a-z, 0-9, '-'): requests cite it.
    id: String,
    /// The whole offer as a JSON file (the body of `PUT
    /// /v1/catalog/offers/{id}`), instead of the flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["title", "resource"])]
    file: Option<PathBuf>,
    /// A short title.
    #[arg(long, required_unless_present = "file")]
    title: Option<String>,
    /// What the data is.
    #[arg(long)]
    description: Option<String>,
    /// The objects it covers: `*`, `prefix/*` or a path.
    #[arg(long, required_unless_present = "file")]
    resource: Option<String>,
    /// Their media type (text/csv).
    #[arg(long)]
    media_type: Option<String>,
    /// A word to find it by (repeatable).
    #[arg(long = "keyword")]
    keywords: Vec<String>,
    /// Where its schema is published.
    #[arg(long, value_name = "URL")]
    schema_url: Option<String>,
    /// An action it grants: read, list, write, delete (repeatable; read if none).
    #[arg(long = "action")]
    actions: Vec<String>,
    /// The longest grant it leads to (90m, 12h, 30d).
    #[arg(long)]
    longest: Option<String>,
    /// A purpose requests must declare (repeatable; any if none).
    #[arg(long = "purpose")]
    purposes: Vec<String>,
    /// A member that sees it, by name or did:key (repeatable; every
    /// member if none).
    #[arg(long = "audience")]
    audience: Vec<String>,
}

pub(crate) fn catalog(command: CatalogCommand) -> anyhow::Result<()> {
    match command {
        CatalogCommand::List { home } => {
            let api = client(home)?;
            let list = checked(api.get("/v1/catalog/offers"), &api)?.json()?;
            println!("{}", serde_json::to_string_pretty(&list["offers"])?);
        }
        CatalogCommand::Show { home } => {
            let api = client(home)?;
            print_json(&checked(api.get("/v1/catalog"), &api)?)?;
        }
        CatalogCommand::Offer(offer) => {
            let id = offer.id.clone();
            check_offer_id(&id)?;
            let api = client(offer.home.clone())?;
            let body = offer_body(*offer)?;
            let response = checked(
                api.request(
                    "PUT",
                    &format!("/v1/catalog/offers/{id}"),
                    Some(("application/json", &serde_json::to_vec(&body)?)),
                ),
                &api,
            )?;
            let verb = if response.status == 201 {
                "offered"
            } else {
                "replaced"
            };
            eprintln!("{verb} {id}");
        }
        CatalogCommand::Remove { home, id } => {
            check_offer_id(&id)?;
            let api = client(home)?;
            checked(
                api.request("DELETE", &format!("/v1/catalog/offers/{id}"), None),
                &api,
            )?;
            eprintln!("removed {id}");
        }
    }
    Ok(())
}

/// Offer ids go into a URL path: refuse anything else up front.
fn check_offer_id(id: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    anyhow::ensure!(ok, "offer id {id:?}: write 1 to 64 of a-z, 0-9, '-'");
    Ok(())
}

fn offer_body(offer: NewOffer) -> anyhow::Result<Value> {
    if let Some(file) = offer.file {
        let bytes = quorate_node::home::durable::read_bounded(&file, OFFER_FILE_BYTES_MAX)
            .with_context(|| format!("cannot read {}", file.display()))?
            .with_context(|| format!("{} does not exist", file.display()))?;
        return serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not JSON", file.display()));
    }
    let actions = if offer.actions.is_empty() {
        vec!["read".to_owned()]
    } else {
        offer.actions
    };
    let mut body = json!({
        "title": offer.title,
        "resource": offer.resource,
        "terms": { "actions": actions },
    });
    for (key, value) in [
        ("description", offer.description),
        ("media_type", offer.media_type),
    ] {
        if let Some(value) = value {
            body[key] = value.into();
        }
    }
    if let Some(url) = offer.schema_url {
        body["schema"] = json!({ "url": url });
    }
    if let Some(longest) = offer.longest {
        body["terms"]["duration_max"] = longest.into();
    }
    if !offer.purposes.is_empty() {
        body["terms"]["purposes"] = json!(offer.purposes);
    }
    if !offer.keywords.is_empty() {
        body["keywords"] = json!(offer.keywords);
    }
    if !offer.audience.is_empty() {
        body["audience"] = json!(offer.audience);
    }
    Ok(body)
}

/// `peer catalog MEMBER`: a member's offers as it shows them to us.
pub(crate) fn peer_catalog(home: HomeArg, member: &str, as_json: bool) -> anyhow::Result<()> {
    let api = client(home)?;
    anyhow::ensure!(
        !member.is_empty()
            && member
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-:".contains(&b)),
        "{member:?} is not a member name or did:key"
    );
    let catalog = checked(api.get(&format!("/v1/peers/{member}/catalog")), &api)?.json()?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&catalog)?);
        return Ok(());
    }
    let datasets = catalog["dcat:dataset"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if datasets.is_empty() {
        println!("{member} offers nothing to this organization");
        return Ok(());
    }
    for d in datasets {
        let terms = &d["quorate:terms"];
        let list = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        println!(
            "{}  {}\n  resource: {}\n  actions:  {}{}{}{}",
            d["dct:identifier"].as_str().unwrap_or("?"),
            d["dct:title"].as_str().unwrap_or(""),
            d["quorate:resource"].as_str().unwrap_or("?"),
            list(&terms["quorate:actions"]),
            terms["quorate:durationMaxMs"]
                .as_u64()
                .map(|ms| format!("\n  longest:  {}", quorate_contracts::human_duration_ms(ms)))
                .unwrap_or_default(),
            if terms["quorate:purposes"].is_array() {
                format!("\n  purposes: {}", list(&terms["quorate:purposes"]))
            } else {
                String::new()
            },
            d["dct:description"]
                .as_str()
                .map(|s| format!("\n  {s}"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}
