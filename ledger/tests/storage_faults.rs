//! Goal: no storage fault loses what the store acknowledged, makes a
//! refused append visible, or panics: after a failed write or sync, a torn
//! write or a crash at any write, reopening on the bytes that survive
//! either finds a tip at or above the last acknowledged height (and at the
//! end of some attempted append, never inside a batch) with every block,
//! certificate, entry index and state exactly as written, or refuses with
//! an error.
//! Method: a redb `StorageBackend` over an in-memory "disk" that keeps what
//! reads see apart from what a power loss leaves (the synced bytes). Per
//! seed: the N-th write or sync fails, or the machine dies at the N-th
//! write and keeps only the synced bytes, every earlier write, those plus a
//! torn prefix of the N-th, or a random subset of the writes since the last
//! sync. Both the raw `Store` and the `Ledger` (real certified blocks from
//! the test consortium). A failure prints `seed=…`; `QUORATE_FAULT_SEED=…`
//! replays that one seed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock};

use quorate_contracts::Body;
use quorate_ledger::block::CommittedBlock;
use quorate_ledger::chain::MemoryChain;
use quorate_ledger::ledger::Ledger;
use quorate_ledger::store::{StateWrite, Store, StoredBlock};
use quorate_ledger::testing::Consortium;

/// SplitMix64: small, seeded, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// What a crash leaves on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Survive {
    /// Only what was synced.
    Synced,
    /// Every write before the crash, in order (a write-through disk).
    WrittenBefore,
    /// Every earlier write and a prefix of the one the crash interrupted.
    Torn,
    /// What was synced, plus any subset of the writes since (the disk
    /// reorders), the interrupted one possibly torn.
    Reordered,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The `nth` write (counted from arming) fails and writes nothing; the
    /// disk works on.
    WriteError { nth: u64 },
    /// The `nth` sync fails. With `forget`, the writes it should have made
    /// durable never become so (Linux may drop dirty pages after a failed
    /// fsync), though reads still see them.
    SyncError { nth: u64, forget: bool },
    /// The machine dies at the `nth` write; every later call fails.
    Crash { nth: u64, survive: Survive },
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(offset, data) => {
            let start = *offset as usize;
            let end = start + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        Op::SetLen(len) => image.resize(*len as usize, 0),
    }
}

#[derive(Debug)]
struct Disk {
    /// What reads see (the page cache).
    current: Vec<u8>,
    /// What a power loss leaves.
    durable: Vec<u8>,
    /// Changes since the last sync, in order.
    unsynced: Vec<Op>,
    writes: u64,
    syncs: u64,
    fault: Option<Fault>,
    fired: bool,
    /// After a crash: what survived. Every call fails from then on.
    crashed: Option<Vec<u8>>,
    seed: u64,
}

impl Disk {
    /// The bytes a power loss would leave now.
    fn survivors(&self, survive: Survive, interrupted: Option<&Op>, rng: &mut Rng) -> Vec<u8> {
        let mut image = self.durable.clone();
        for op in &self.unsynced {
            let keep = match survive {
                Survive::Synced => false,
                Survive::WrittenBefore | Survive::Torn => true,
                Survive::Reordered => matches!(op, Op::SetLen(_)) || rng.coin(),
            };
            if keep {
                apply(&mut image, op);
            }
        }
        if let Some(Op::Write(offset, data)) = interrupted {
            let torn = match survive {
                Survive::Torn => Some(rng.below(data.len() as u64) as usize),
                Survive::Reordered if rng.coin() => Some(rng.below(data.len() as u64 + 1) as usize),
                _ => None,
            };
            if let Some(len) = torn {
                apply(&mut image, &Op::Write(*offset, data[..len].to_vec()));
            }
        }
        image
    }
}

/// A redb backend over a shared [`Disk`]; the test keeps a handle to look
/// at the disk after redb is done with it.
#[derive(Debug, Clone)]
struct FaultyBackend(Arc<Mutex<Disk>>);

fn io_error(what: &str) -> std::io::Error {
    std::io::Error::other(format!("injected fault: {what}"))
}

impl FaultyBackend {
    fn on(image: Vec<u8>, seed: u64) -> Self {
        Self(Arc::new(Mutex::new(Disk {
            current: image.clone(),
            durable: image,
            unsynced: Vec::new(),
            writes: 0,
            syncs: 0,
            fault: None,
            fired: false,
            crashed: None,
            seed,
        })))
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arm(&self, fault: Fault) {
        let mut disk = self.disk();
        disk.writes = 0;
        disk.syncs = 0;
        disk.fault = Some(fault);
    }

    fn crashed(&self) -> bool {
        self.disk().crashed.is_some()
    }
}

impl redb::StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        let disk = self.disk();
        if disk.crashed.is_some() {
            return Err(io_error("the machine is down"));
        }
        Ok(disk.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let disk = self.disk();
        if disk.crashed.is_some() {
            return Err(io_error("the machine is down"));
        }
        let start = offset as usize;
        let source = disk.current.get(start..start + out.len()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the end")
        })?;
        out.copy_from_slice(source);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut disk = self.disk();
        if disk.crashed.is_some() {
            return Err(io_error("the machine is down"));
        }
        apply(&mut disk.current, &Op::SetLen(len));
        disk.unsynced.push(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut disk = self.disk();
        if disk.crashed.is_some() {
            return Err(io_error("the machine is down"));
        }
        disk.syncs += 1;
        if let Some(Fault::SyncError { nth, forget }) = disk.fault
            && disk.syncs == nth
            && !disk.fired
        {
            disk.fired = true;
            if forget {
                disk.unsynced.clear();
            }
            return Err(io_error("sync_data failed"));
        }
        let ops = std::mem::take(&mut disk.unsynced);
        for op in &ops {
            apply(&mut disk.durable, op);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut disk = self.disk();
        if disk.crashed.is_some() {
            return Err(io_error("the machine is down"));
        }
        disk.writes += 1;
        let op = Op::Write(offset, data.to_vec());
        match disk.fault {
            Some(Fault::WriteError { nth }) if disk.writes == nth && !disk.fired => {
                disk.fired = true;
                return Err(io_error("write failed"));
            }
            Some(Fault::Crash { nth, survive }) if disk.writes == nth => {
                let mut rng = Rng(disk.seed ^ 0xC4A5);
                let image = disk.survivors(survive, Some(&op), &mut rng);
                disk.crashed = Some(image);
                return Err(io_error("the machine died during this write"));
            }
            _ => {}
        }
        apply(&mut disk.current, &op);
        disk.unsynced.push(op);
        Ok(())
    }
}

/// Runs `case` for each seed (or only `$QUORATE_FAULT_SEED`), naming the
/// seed of a failure.
fn for_seeds(seeds: std::ops::Range<u64>, case: impl Fn(u64) -> Outcome) -> Outcome {
    let seeds: Vec<u64> = match std::env::var("QUORATE_FAULT_SEED") {
        Ok(s) => vec![s.parse().expect("QUORATE_FAULT_SEED is a number")],
        Err(_) => seeds.collect(),
    };
    let mut total = Outcome::default();
    for seed in seeds {
        match catch_unwind(AssertUnwindSafe(|| case(seed))) {
            Ok(outcome) => total.add(&outcome),
            Err(panic) => {
                eprintln!("seed={seed} failed (replay: QUORATE_FAULT_SEED={seed})");
                std::panic::resume_unwind(panic);
            }
        }
    }
    total
}

/// What the reopenings found, summed over seeds (printed, to show the
/// faults were hit).
#[derive(Debug, Default)]
struct Outcome {
    reopened: u32,
    refused: u32,
    refused_appends: u32,
    beyond_acknowledged: u32,
}

impl Outcome {
    fn add(&mut self, other: &Outcome) {
        self.reopened += other.reopened;
        self.refused += other.refused;
        self.refused_appends += other.refused_appends;
        self.beyond_acknowledged += other.beyond_acknowledged;
    }
}

/// A fault drawn from `rng`, at one of the first `writes` writes or
/// `syncs` syncs.
fn draw_fault(rng: &mut Rng, writes: u64, syncs: u64) -> Fault {
    match rng.below(6) {
        0 => Fault::WriteError {
            nth: 1 + rng.below(writes),
        },
        1 => Fault::SyncError {
            nth: 1 + rng.below(syncs),
            forget: rng.coin(),
        },
        k => Fault::Crash {
            nth: 1 + rng.below(writes),
            survive: [
                Survive::Synced,
                Survive::WrittenBefore,
                Survive::Torn,
                Survive::Reordered,
            ][k as usize - 2],
        },
    }
}

/// The images to reopen after the appends: what the crash left, or, when
/// the machine lived, the disk as a restarted process sees it and what a
/// power loss then leaves.
fn images(backend: &FaultyBackend, rng: &mut Rng) -> Vec<(&'static str, Vec<u8>)> {
    let disk = backend.disk();
    match &disk.crashed {
        Some(image) => vec![("crash", image.clone())],
        None => vec![
            ("restart", disk.current.clone()),
            (
                "power loss",
                disk.survivors(Survive::Synced, None, &mut Rng(rng.next())),
            ),
            (
                "power loss, reordered",
                disk.survivors(Survive::Reordered, None, &mut Rng(rng.next())),
            ),
        ],
    }
}

/// Writes and syncs a run of appends makes, from a clean start (so that
/// faults land within it).
struct Calibration {
    writes: u64,
    syncs: u64,
}

// ---------------------------------------------------------------- raw Store

const STORE_APPENDS: u64 = 6;

fn hash_of(height: u64) -> [u8; 32] {
    let mut h = *blake3::hash(&height.to_be_bytes()).as_bytes();
    h[0] = 0x51;
    h
}

/// The block the raw-store test writes at `height`: sizes from a few bytes
/// to several pages, so that some span many writes.
fn stored_block(height: u64) -> StoredBlock {
    let len = [40usize, 700, 5_000, 13_000, 90][(height % 5) as usize];
    StoredBlock {
        height,
        hash: hash_of(height),
        prev_hash: if height == 0 {
            [0; 32]
        } else {
            hash_of(height - 1)
        },
        block: (0..len).map(|i| (i as u64 ^ height) as u8).collect(),
        certificate: vec![height as u8; 96],
        entry_ids: (0..height % 3)
            .map(|i| hash_of(1_000 + height * 10 + i))
            .collect(),
        membership_entries: Vec::new(),
    }
}

/// What an append writes besides its block: a meta row of varying size
/// (so commits span different numbers of pages) and one grant row.
fn state_after(height: u64) -> StateWrite {
    let mut meta = height.to_be_bytes().to_vec();
    meta.resize(64 + (height as usize % 4) * 1_500, height as u8);
    StateWrite {
        meta,
        consortium: Some(b"consortium".to_vec()),
        grants: vec![(hash_of(height), Some(vec![height as u8; 100]))],
        ..StateWrite::default()
    }
}

fn store_calibration() -> &'static Calibration {
    static CAL: OnceLock<Calibration> = OnceLock::new();
    CAL.get_or_init(|| {
        let backend = FaultyBackend::on(Vec::new(), 0);
        let store = Store::open_with_backend(backend.clone(), "calibration").unwrap();
        backend.arm(Fault::WriteError { nth: u64::MAX });
        for h in 0..STORE_APPENDS + 2 {
            store.append(&stored_block(h), &state_after(h)).unwrap();
        }
        let disk = backend.disk();
        Calibration {
            writes: disk.writes,
            syncs: disk.syncs,
        }
    })
}

/// Reopens the raw store on `image` and checks it against what was
/// acknowledged (`acked`: the last acknowledged height) and the ends of the
/// attempted appends.
fn check_store_reopen(
    what: &str,
    image: Vec<u8>,
    acked: Option<u64>,
    attempted: &[u64],
    outcome: &mut Outcome,
) {
    let backend = FaultyBackend::on(image, 0);
    let store = match Store::open_with_backend(backend, "faulty") {
        Ok(store) => store,
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("faulty"),
                "{what}: unclear refusal: {message}"
            );
            outcome.refused += 1;
            return;
        }
    };
    outcome.reopened += 1;
    let tip = store.tip().unwrap();
    match (acked, tip) {
        (Some(acked), None) => panic!("{what}: no tip, {acked} acknowledged"),
        (Some(acked), Some(tip)) => assert!(
            tip.height >= acked,
            "{what}: tip {} < acknowledged {acked}",
            tip.height
        ),
        (None, _) => {}
    }
    if let Some(tip) = tip {
        assert!(
            attempted.contains(&tip.height),
            "{what}: tip {} was never the end of an append ({attempted:?})",
            tip.height
        );
        if acked.is_none_or(|a| tip.height > a) {
            outcome.beyond_acknowledged += 1;
        }
        assert_eq!(tip.hash, hash_of(tip.height), "{what}: tip hash");
        assert_eq!(
            store.meta_row().unwrap(),
            Some(state_after(tip.height).meta),
            "{what}: the state is not the tip's"
        );
        for h in 0..=tip.height {
            let expected = stored_block(h);
            assert_eq!(
                store.block(h).unwrap(),
                Some(expected.block.clone()),
                "{what}: block {h}"
            );
            assert_eq!(
                store.certificate(h).unwrap(),
                Some(expected.certificate.clone()),
                "{what}: certificate {h}"
            );
            for (i, id) in expected.entry_ids.iter().enumerate() {
                assert_eq!(
                    store.entry_location(id).unwrap(),
                    Some((h, i as u32)),
                    "{what}: entry index at {h}"
                );
            }
        }
    }
    let next = tip.map_or(0, |t| t.height + 1);
    assert_eq!(
        store.block(next).unwrap(),
        None,
        "{what}: a block past the tip"
    );
    // The reopened store is usable.
    store
        .append(&stored_block(next), &state_after(next))
        .unwrap_or_else(|e| panic!("{what}: append after reopen: {e}"));
    assert_eq!(store.tip().unwrap().map(|t| t.height), Some(next));
}

fn store_case(seed: u64) -> Outcome {
    let mut rng = Rng(seed);
    let cal = store_calibration();
    let backend = FaultyBackend::on(Vec::new(), seed);
    let store = Store::open_with_backend(backend.clone(), "faulty").unwrap();
    let base = rng.below(3);
    for h in 0..base {
        store.append(&stored_block(h), &state_after(h)).unwrap();
    }
    let mut acked = base.checked_sub(1);
    let mut attempted: Vec<u64> = acked.into_iter().collect();
    let fault = draw_fault(&mut rng, cal.writes, cal.syncs);
    backend.arm(fault);
    let mut outcome = Outcome::default();
    for _ in 0..STORE_APPENDS {
        let height = acked.map_or(0, |a| a + 1);
        attempted.push(height);
        let before = store.tip().ok().flatten();
        match store.append(&stored_block(height), &state_after(height)) {
            Ok(()) => acked = Some(height),
            Err(_) => {
                outcome.refused_appends += 1;
                // Nothing visible changed (a read may fail as well).
                if let Ok(tip) = store.tip() {
                    assert_eq!(tip, before, "{fault:?}: a refused append moved the tip");
                }
                if let Ok(block) = store.block(height) {
                    assert_eq!(block, None, "{fault:?}: a refused block is readable");
                }
                if backend.crashed() {
                    break;
                }
            }
        }
    }
    drop(store);
    for (what, image) in images(&backend, &mut rng) {
        let what = format!("{fault:?}, {what}");
        check_store_reopen(&what, image, acked, &attempted, &mut outcome);
    }
    outcome
}

#[test]
fn store_faults_lose_nothing_acknowledged() {
    let outcome = for_seeds(0..400, store_case);
    eprintln!("store: {outcome:?}");
    assert!(outcome.refused_appends > 0, "no fault was ever hit");
    assert!(outcome.reopened > 0);
}

// ------------------------------------------------------------------ Ledger

/// A consortium's chain: genesis, then blocks with grants and heartbeat
/// blocks, and the chain state after each.
struct Fixture {
    blocks: Vec<CommittedBlock>,
    chains: Vec<MemoryChain>,
}

const LEDGER_BLOCKS: usize = 12;

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut c = Consortium::new(4);
        let mut chains = vec![c.chain.clone()];
        for i in 1..LEDGER_BLOCKS {
            let entries = (0..i % 3)
                .map(|k| {
                    let from = (i + k) % 4;
                    let terms = c.grant_terms(from, (from + 1) % 4);
                    c.entry(from, Body::Grant(terms), &c.all())
                })
                .collect();
            c.commit(entries);
            chains.push(c.chain.clone());
        }
        Fixture {
            blocks: c.blocks.clone(),
            chains,
        }
    })
}

fn ledger_calibration() -> &'static Calibration {
    static CAL: OnceLock<Calibration> = OnceLock::new();
    CAL.get_or_init(|| {
        let f = fixture();
        let backend = FaultyBackend::on(Vec::new(), 0);
        let mut ledger =
            Ledger::with_store(Store::open_with_backend(backend.clone(), "calibration").unwrap())
                .unwrap();
        backend.arm(Fault::WriteError { nth: u64::MAX });
        ledger.init_genesis(&f.blocks[0]).unwrap();
        for block in &f.blocks[1..] {
            ledger.append(block).unwrap();
        }
        let disk = backend.disk();
        Calibration {
            writes: disk.writes,
            syncs: disk.syncs,
        }
    })
}

fn check_ledger_reopen(
    what: &str,
    image: Vec<u8>,
    acked: Option<u64>,
    attempted: &[u64],
    outcome: &mut Outcome,
) {
    let f = fixture();
    let opened = Store::open_with_backend(FaultyBackend::on(image, 0), "faulty")
        .map_err(|e| e.to_string())
        .and_then(|store| Ledger::with_store(store).map_err(|e| e.to_string()));
    let mut ledger = match opened {
        Ok(ledger) => ledger,
        Err(message) => {
            assert!(!message.is_empty(), "{what}: a refusal without a reason");
            outcome.refused += 1;
            return;
        }
    };
    outcome.reopened += 1;
    let tip = ledger.chain().map(|c| c.tip().height);
    match (acked, tip) {
        (Some(acked), None) => panic!("{what}: no chain, {acked} acknowledged"),
        (Some(acked), Some(tip)) => {
            assert!(tip >= acked, "{what}: tip {tip} < acknowledged {acked}")
        }
        (None, _) => {}
    }
    if let Some(tip) = tip {
        assert!(
            attempted.contains(&tip),
            "{what}: tip {tip} is inside a batch ({attempted:?})"
        );
        if acked.is_none_or(|a| tip > a) {
            outcome.beyond_acknowledged += 1;
        }
        let height = tip as usize;
        assert_eq!(
            ledger.chain(),
            Some(f.chains[height].chain()),
            "{what}: the state at the tip"
        );
        let summary = ledger
            .verify()
            .unwrap_or_else(|e| panic!("{what}: the chain does not verify: {e}"));
        assert_eq!(summary.chain, *f.chains[height].chain());
        assert_eq!(
            ledger.blocks(0, tip).unwrap(),
            f.blocks[..=height].to_vec(),
            "{what}: the blocks"
        );
    }
    assert_eq!(ledger.block(tip.map_or(0, |t| t + 1)).unwrap(), None);
    // The reopened ledger is usable.
    match tip {
        None => ledger.init_genesis(&f.blocks[0]),
        Some(tip) if (tip as usize) + 1 < f.blocks.len() => {
            ledger.append(&f.blocks[tip as usize + 1])
        }
        Some(_) => Ok(()),
    }
    .unwrap_or_else(|e| panic!("{what}: append after reopen: {e}"));
}

fn ledger_case(seed: u64) -> Outcome {
    let f = fixture();
    let cal = ledger_calibration();
    let mut rng = Rng(seed);
    let backend = FaultyBackend::on(Vec::new(), seed);
    let mut ledger =
        Ledger::with_store(Store::open_with_backend(backend.clone(), "faulty").unwrap()).unwrap();
    let base = rng.below(4) as usize; // blocks written before the fault is armed
    if base > 0 {
        ledger.init_genesis(&f.blocks[0]).unwrap();
        for block in &f.blocks[1..base] {
            ledger.append(block).unwrap();
        }
    }
    let mut acked = base.checked_sub(1).map(|h| h as u64);
    let mut attempted: Vec<u64> = acked.into_iter().collect();
    let fault = draw_fault(&mut rng, cal.writes, cal.syncs);
    backend.arm(fault);
    let mut outcome = Outcome::default();
    loop {
        let from = acked.map_or(0, |a| a as usize + 1);
        if from >= f.blocks.len() {
            break;
        }
        // Genesis alone, then batches of one to three blocks.
        let to = if from == 0 {
            0
        } else {
            (from + rng.below(3) as usize).min(f.blocks.len() - 1)
        };
        attempted.push(to as u64);
        let before = ledger.chain().cloned();
        let result = if from == 0 {
            ledger.init_genesis(&f.blocks[0])
        } else {
            ledger.append_batch(&f.blocks[from..=to])
        };
        match result {
            Ok(()) => acked = Some(to as u64),
            Err(_) => {
                outcome.refused_appends += 1;
                assert_eq!(
                    ledger.chain(),
                    before.as_ref(),
                    "{fault:?}: a refused append moved the chain"
                );
                if let Ok(block) = ledger.block(from as u64) {
                    assert_eq!(block, None, "{fault:?}: a refused block is readable");
                }
                if backend.crashed() || outcome.refused_appends > 3 {
                    break;
                }
            }
        }
    }
    drop(ledger);
    for (what, image) in images(&backend, &mut rng) {
        let what = format!("{fault:?}, {what}");
        check_ledger_reopen(&what, image, acked, &attempted, &mut outcome);
    }
    outcome
}

#[test]
fn ledger_faults_lose_nothing_acknowledged() {
    let outcome = for_seeds(0..150, ledger_case);
    eprintln!("ledger: {outcome:?}");
    assert!(outcome.refused_appends > 0, "no fault was ever hit");
    assert!(outcome.reopened > 0);
}
