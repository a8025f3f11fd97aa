//! S-series: the ledger at 10,000, 100,000 and 1,000,000 grants, built
//! through the library (`quorate_ledger::testing::append_grants`: every
//! entry signed, endorsed and checked as agreement would, every block
//! certified), then measured where the targets are: opening the
//! ledger (in a fresh process, with its resident memory), checking and
//! appending a block of 1 and of 256 entries and an empty heartbeat block,
//! and bytes on disk per grant. The same code at every size, so the ratios
//! to the smallest size are the result.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use quorate_contracts::{Action, Body, GrantTerms, ResourcePattern, Timestamp};
use quorate_did::Keypair;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::consensus::certify;
use quorate_ledger::entry::{Entry, Proposal};
use quorate_ledger::ledger::Ledger;

/// Members of the benchmark consortium.
const MEMBERS: u8 = 4;
/// Samples of each block measurement (the median is reported).
const SAMPLES: usize = 7;
/// Block time between the built blocks of 4,096 grants: about 200 grants
/// a second, the rate a 4-member testnet commits under a flood (L-series),
/// so the replay window holds what one proposal TTL of such a flood does.
const BUILD_STEP_MS: u64 = 20_000;
/// State history the built ledger keeps: none, so the tree holds what a
/// node whose history is older than its `[ledger] state_history` holds.
const HISTORY_KEPT_MS: u64 = 0;
/// Empty blocks appended (untimed) after the build, so the measured
/// blocks prune only what the measured blocks before them made stale.
const PRUNE_DRAIN_BLOCKS: usize = 120;

/// What one size measured.
#[derive(Debug, Clone)]
pub(crate) struct Scale {
    pub grants: usize,
    pub build_secs: f64,
    pub open_ms: f64,
    pub open_rss_mib: f64,
    pub bytes_per_grant: f64,
    /// The same after `quorate ledger compact` (redb's free pages given back).
    pub bytes_per_grant_compacted: f64,
    /// Check then append (with fsync) of a block of 0, 1 and 256 entries:
    /// (check ms, append ms) medians.
    pub blocks: [(f64, f64); 3],
    /// Bytes per table once built: (name, stored, redb's overhead).
    pub tables: Vec<(String, u64, u64)>,
    /// A status proof of one grant at the tip: its encoded bytes, the
    /// genesis block's share of them, and the median time to verify it.
    pub status_proof: (usize, usize, f64),
}

fn keys() -> Vec<Keypair> {
    (0..MEMBERS)
        .map(|i| Keypair::from_seed(&[i + 1; 32]))
        .collect()
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// A new ledger at `path` with the benchmark consortium's genesis, made
/// just before `at`.
fn genesis_ledger(path: &Path, keys: &[Keypair], at: Timestamp) -> anyhow::Result<Ledger> {
    let names: Vec<String> = (0..keys.len())
        .map(|i| format!("org-{}", (b'a' + i as u8) as char))
        .collect();
    let members: Vec<(&str, &Keypair)> = names.iter().map(String::as_str).zip(keys).collect();
    let genesis = quorate_ledger::genesis::build(
        "bench-scale",
        &members,
        quorate_contracts::Policy::default(),
        Timestamp(at.0 - 1_000),
    )?;
    let mut ledger = Ledger::open(path)?;
    ledger.init_genesis(&genesis)?;
    Ok(ledger)
}

/// `n` grant entries, distinct from `append_grants`' (nonces from 1).
fn entries(ledger: &Ledger, keys: &[Keypair], n: usize, nonce: u64) -> Vec<Entry> {
    let chain = ledger.chain().expect("genesis");
    let state = chain.state();
    let ids: Vec<_> = keys
        .iter()
        .map(|k| state.member_by_did(&k.did()).expect("member").id)
        .collect();
    let t = now();
    (0..n)
        .map(|k| {
            let from = k % keys.len();
            let proposal = Proposal {
                chain_id: chain.chain_id().to_owned(),
                epoch: state.epoch,
                proposer: ids[from],
                nonce: nonce + k as u64,
                created_at: t,
                body: Body::Grant(GrantTerms {
                    grantor: ids[from],
                    grantee: ids[(from + 1) % keys.len()],
                    resources: vec![ResourcePattern::parse("measured/*").expect("pattern")],
                    actions: vec![Action::Read],
                    not_before: t,
                    not_after: Timestamp(t.0 + 86_400_000),
                    purpose: None,
                    rate_limit: None,
                }),
            };
            let mut entry = Entry::propose(proposal, &keys[from]).expect("signs");
            for j in 1..3 {
                let by = (from + j) % keys.len();
                entry.endorse(ids[by], &keys[by]).expect("signs");
            }
            entry
        })
        .collect()
}

/// Builds a block of `entries` (outside the timing), then times checking
/// it as a validator does and appending it certified (fsync included).
fn time_block(ledger: &mut Ledger, keys: &[Keypair], entries: Vec<Entry>) -> (f64, f64) {
    let chain = ledger.chain().expect("genesis");
    let proposer = chain
        .state()
        .member_by_did(&keys[0].did())
        .expect("member")
        .id;
    let (block, skipped) = ledger
        .build_block(proposer, chain.next_block_time(now()), entries)
        .expect("builds");
    assert!(skipped.is_empty(), "{skipped:?}");
    let signers: Vec<&Keypair> = keys.iter().collect();
    let validators = ledger.chain().expect("genesis").validators();
    let certificate = certify(
        "bench-scale",
        &validators,
        block.header.height,
        0,
        block.hash().expect("hash").0,
        &signers,
    );
    let started = Instant::now();
    ledger.check_block(&block).expect("valid");
    let check = started.elapsed();
    let committed = CommittedBlock { block, certificate };
    let started = Instant::now();
    ledger.append(&committed).expect("appends");
    let append = started.elapsed();
    (ms(check), ms(append))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Builds a ledger of `grants` in `dir` and measures it.
pub(crate) fn run(dir: &Path, grants: usize) -> anyhow::Result<Scale> {
    let keys = keys();
    let path = dir.join(format!("scale-{grants}.redb"));
    let started = Instant::now();
    {
        let blocks = grants.div_ceil(quorate_ledger::block::ENTRIES_PER_BLOCK_MAX) as u64;
        let start = Timestamp(now().0 - (blocks + 1) * BUILD_STEP_MS);
        let mut ledger = genesis_ledger(&path, &keys, start)?;
        ledger.keep_state_history(Some(HISTORY_KEPT_MS));
        quorate_ledger::testing::append_grants_over(
            &mut ledger,
            &keys,
            grants,
            start,
            BUILD_STEP_MS,
            |_| {},
        );
    }
    let build_secs = started.elapsed().as_secs_f64();
    let bytes_per_grant = std::fs::metadata(&path)?.len() as f64 / grants as f64;
    let (_, compacted) = quorate_ledger::store::Store::compact_file(&path)?;
    let bytes_per_grant_compacted = compacted as f64 / grants as f64;

    // Open in a fresh process: its time and its resident memory once open.
    let out = Command::new(std::env::current_exe()?)
        .args(["open-ledger", &path.display().to_string()])
        .output()
        .context("cannot run the open-ledger child")?;
    anyhow::ensure!(
        out.status.success(),
        "open-ledger: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opened: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let open_ms = opened["open_ms"].as_f64().unwrap_or(f64::NAN);
    let open_rss_mib = opened["rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    eprintln!("  tables (stored+overhead bytes): {}", opened["tables"]);
    let tables = opened["tables"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| {
                    let (name, bytes) = row.as_str()?.split_once(' ')?;
                    let (stored, overhead) = bytes.split_once('+')?;
                    Some((
                        name.to_owned(),
                        stored.parse().ok()?,
                        overhead.parse().ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();

    let mut ledger = Ledger::open(&path)?;
    ledger.keep_state_history(Some(HISTORY_KEPT_MS));
    // Pruning lags a block and is bounded per append: let the heartbeats
    // that follow the build's last block (4,096 grants made stale about
    // 50,000 nodes) prune them before measuring, as a node's would.
    for _ in 0..PRUNE_DRAIN_BLOCKS {
        time_block(&mut ledger, &keys, Vec::new());
    }
    let mut blocks = [(0.0, 0.0); 3];
    for (slot, size) in [0usize, 1, 256].into_iter().enumerate() {
        let mut checks = Vec::new();
        let mut appends = Vec::new();
        for sample in 0..SAMPLES {
            let nonce = 1 + (slot * SAMPLES + sample) as u64 * 1_000;
            let entries = entries(&ledger, &keys, size, nonce);
            let (check, append) = time_block(&mut ledger, &keys, entries);
            checks.push(check);
            appends.push(append);
        }
        blocks[slot] = (median(checks), median(appends));
    }
    // Measured in the child: signatures are verified once per process, so
    // a proof verified here, where the chain was built, would be warm.
    let status_proof = (
        opened["status_bytes"].as_u64().unwrap_or(0) as usize,
        opened["status_genesis_bytes"].as_u64().unwrap_or(0) as usize,
        opened["status_verify_ms"].as_f64().unwrap_or(f64::NAN),
    );
    drop(ledger);
    let _ = std::fs::remove_file(&path);
    Ok(Scale {
        status_proof,
        grants,
        build_secs,
        open_ms,
        open_rss_mib,
        bytes_per_grant,
        bytes_per_grant_compacted,
        blocks,
        tables,
    })
}

/// A status proof of the first grant at the tip: bytes, genesis bytes, and
/// the time to decode and verify it in ms. Run in a fresh process (the
/// open-ledger child), where no signature was verified yet: the first
/// verification is the cold one a third party pays.
fn status_proof(ledger: &Ledger) -> anyhow::Result<(usize, usize, f64)> {
    let state = ledger.chain().context("genesis")?.state();
    let mut first = None;
    state.visit_grants(None, &mut |id, _| {
        first = Some(id);
        std::ops::ControlFlow::Break(())
    })?;
    let id = first.context("a grant")?;
    let proof = ledger.status_proof(&id, None)?;
    let bytes = quorate_ledger::codec::encode(&proof)?;
    let genesis = quorate_ledger::codec::encode(&proof.genesis)?.len();
    let started = Instant::now();
    let decoded: quorate_ledger::proof::StatusProof = quorate_ledger::codec::decode(&bytes)?;
    decoded.verify(None)?;
    Ok((bytes.len(), genesis, ms(started.elapsed())))
}

/// The child of [`run`]: opens the ledger, prints the time and VmRSS.
pub(crate) fn open_ledger(path: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let ledger = Ledger::open(path)?;
    let open_ms = ms(started.elapsed());
    let grants = ledger.chain().map_or(0, |c| c.state().grant_counts().total);
    let rss_kib = crate::sys::status_kib(std::process::id(), "VmRSS");
    let (status_bytes, status_genesis_bytes, status_verify_ms) = status_proof(&ledger)?;
    let tables: Vec<String> = ledger
        .table_bytes()?
        .into_iter()
        .map(|(name, stored, overhead)| format!("{name} {stored}+{overhead}"))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "open_ms": open_ms,
            "rss_kib": rss_kib,
            "grants": grants,
            "tables": tables,
            "status_bytes": status_bytes,
            "status_genesis_bytes": status_genesis_bytes,
            "status_verify_ms": status_verify_ms,
        })
    );
    Ok(())
}

/// The S-series section of RESULTS.md.
pub(crate) fn render(scales: &[Scale], command: &str, date: &str, machine: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "## Ledger at scale (S-series)\n");
    let _ = writeln!(
        out,
        "Generated by `{command}` on {date}. Machine: {machine}. Release build, in process: ledgers of 4 members built through the library (every entry signed, endorsed by 3 and checked once, blocks of 4,096 certified by all, {BUILD_STEP_MS} ms of block time apart, about 200 grants a second, the flood rate of the L-series), on the local disk with fsync, keeping no state history (`keep_state_history(Some({HISTORY_KEPT_MS}))`: the tree a node holds once its history is older than `[ledger] state_history`). *Check* is what a validator runs on a proposed block (entries, endorsements, contract rules, the state tree's changes); *append* adds the certified block durably (certificate, rows, tree nodes, deleting the tree nodes the block before made stale, fsync), measured after {PRUNE_DRAIN_BLOCKS} empty blocks let pruning catch up with the build. Medians of {SAMPLES}. Open is a fresh process opening the ledger, with its resident memory once open.\n"
    );
    let _ = writeln!(
        out,
        "| grants | built in (s) | open (ms) | RSS once open (MiB) | bytes on disk / grant (compacted) | empty block: check / append (ms) | 1 entry: check / append (ms) | 256 entries: check / append (ms) | status proof: bytes (of which genesis) / decode + verify, cold (ms) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for s in scales {
        let [e, one, many] = s.blocks;
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} ({:.0}) | {:.3} / {:.2} | {:.3} / {:.2} | {:.1} / {:.1} | {} ({}) / {:.2} |",
            s.grants,
            s.build_secs,
            s.open_ms,
            s.open_rss_mib,
            s.bytes_per_grant,
            s.bytes_per_grant_compacted,
            e.0,
            e.1,
            one.0,
            one.1,
            many.0,
            many.1,
            s.status_proof.0,
            s.status_proof.1,
            s.status_proof.2
        );
    }
    if let (Some(first), Some(last)) = (scales.first(), scales.last())
        && first.grants != last.grants
    {
        let ratio = |a: f64, b: f64| a / b.max(1e-9);
        let _ = writeln!(
            out,
            "\nFrom {} to {} grants: check of 1 entry {:.2}×, of 256 entries {:.2}×; append of 1 entry {:.2}×, of 256 {:.2}×; an empty block's check + append {:.2}×.",
            first.grants,
            last.grants,
            ratio(last.blocks[1].0, first.blocks[1].0),
            ratio(last.blocks[2].0, first.blocks[2].0),
            ratio(last.blocks[1].1, first.blocks[1].1),
            ratio(last.blocks[2].1, first.blocks[2].1),
            ratio(
                last.blocks[0].0 + last.blocks[0].1,
                first.blocks[0].0 + first.blocks[0].1
            ),
        );
        let heartbeat_ms = last.blocks[0].0 + last.blocks[0].1;
        let _ = writeln!(
            out,
            "\nAn idle node commits one heartbeat block a second; at {} grants one costs {heartbeat_ms:.2} ms wall (check + append, fsync wait included), so heartbeats take at most {:.2}% of a core (an upper bound: the fsync wait is not CPU).",
            last.grants,
            heartbeat_ms / 10.0
        );
        let mut tables = last.tables.clone();
        tables.sort_by_key(|(_, stored, overhead)| std::cmp::Reverse(stored + overhead));
        let per_grant = |bytes: u64| bytes as f64 / last.grants.max(1) as f64;
        let rows: Vec<String> = tables
            .iter()
            .filter(|(_, stored, overhead)| per_grant(stored + overhead) >= 1.0)
            .map(|(name, stored, overhead)| {
                format!(
                    "{name} {:.0} + {:.0}",
                    per_grant(*stored),
                    per_grant(*overhead)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\nWhere the bytes went at {} grants, per grant (stored + redb's overhead, from `Store::table_bytes`, before the measured blocks): {}; the file holds the rest as free pages.",
            last.grants,
            rows.join(", ")
        );
    }
    out
}

/// (For profiling) builds a ledger of `grants` at `path` unless it exists,
/// then appends `blocks` empty blocks and prints the mean check and append.
pub(crate) fn heartbeats(path: &Path, grants: usize, blocks: usize) -> anyhow::Result<()> {
    let keys = keys();
    if !path.exists() {
        let mut ledger = genesis_ledger(path, &keys, now())?;
        quorate_ledger::testing::append_grants(&mut ledger, &keys, grants, now(), |_| {});
    }
    let mut ledger = Ledger::open(path)?;
    let (mut check, mut append) = (0.0, 0.0);
    for _ in 0..blocks {
        let (c, a) = time_block(&mut ledger, &keys, Vec::new());
        check += c;
        append += a;
    }
    let n = blocks.max(1) as f64;
    println!(
        "{blocks} empty blocks at {} grants: check {:.3} ms, append {:.2} ms (mean)",
        ledger.chain().map_or(0, |c| c.state().grant_counts().total),
        check / n,
        append / n
    );
    Ok(())
}
