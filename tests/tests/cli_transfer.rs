//! Goal: the CLI moves objects of any size within `object_bytes_max` with
//! bounded memory: a 1 GiB file up (`data put`), to another member over
//! libp2p (`peer get`) and back from the owner (`data get`), each
//! arriving whole while the CLI's peak memory stays far below the
//! object's size; a download killed midway resumes where it stopped, and
//! one whose object changed meanwhile starts again; errors say what
//! happened.
//! Method: a 2-node testnet; the real `quorate` CLI as a child process,
//! its peak RSS sampled from /proc/PID/status (VmHWM) while it runs.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quorate_tests::{Testnet, admin, home_arg, put_object, quorate_bin, run};

const SIZE: u64 = 1 << 30;
const BLOCK: usize = 1 << 20;
/// The CLI's peak memory may not come near the object's size.
const CLI_PEAK_MAX_KIB: u64 = 64 * 1024;

/// A file of SIZE bytes where every 1 MiB block differs (its index in
/// each of its 8-byte words), so a misplaced block shows.
fn write_pattern(path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; BLOCK];
    for index in 0..SIZE / BLOCK as u64 {
        for (i, word) in block.chunks_exact_mut(8).enumerate() {
            word.copy_from_slice(&(index << 20 | i as u64).to_le_bytes());
        }
        out.write_all(&block).unwrap();
    }
    out.flush().unwrap();
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut x, mut y) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
    loop {
        let n = a.read(&mut x).unwrap();
        let mut m = 0;
        while m < n {
            let got = b.read(&mut y[m..n]).unwrap();
            if got == 0 {
                return false;
            }
            m += got;
        }
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if x[..n] != y[..n] {
            return false;
        }
    }
}

/// Runs `quorate ARGS` to its end, sampling its peak memory; returns
/// whether it succeeded, its stderr and the peak (KiB).
fn run_measured(args: &[&str]) -> (bool, String, u64) {
    let mut child = Command::new(quorate_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.success(), stderr, peak)
}

#[test]
fn a_gigabyte_moves_through_the_cli_both_ways_and_an_interrupted_download_resumes() {
    let (net, _) = Testnet::up(&["--nodes", "2"]);
    let (home_a, home_b) = (home_arg(&net.home("org-a")), home_arg(&net.home("org-b")));
    let files = tempfile::tempdir().unwrap();
    let source = files.path().join("one.gib");
    write_pattern(&source);

    // Up: streamed from the file.
    let started = Instant::now();
    let (ok, stderr, peak) = run_measured(&[
        "data",
        "put",
        "--home",
        &home_a,
        "big/one.gib",
        &home_arg(&source),
    ]);
    assert!(ok, "{stderr}");
    eprintln!(
        "data put 1 GiB: {:.1?}, CLI peak {peak} KiB",
        started.elapsed()
    );
    assert!(peak < CLI_PEAK_MAX_KIB, "data put peaked at {peak} KiB");
    net.grant("org-a", "org-b", "big/*", &["org-a", "org-b"]);

    // To org-b over libp2p, killed midway, then resumed.
    let out = files.path().join("fetched.gib");
    let part = files.path().join("fetched.gib.part");
    let mut first = Command::new(quorate_bin())
        .args([
            "peer",
            "get",
            "--home",
            &home_b,
            "org-a",
            "big/one.gib",
            "--out",
        ])
        .arg(&out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 64 << 20 {
        assert!(Instant::now() < deadline, "the download never got going");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the download ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept < SIZE, "the download finished before it was killed");
    let started = Instant::now();
    let (ok, stderr, peak) = run_measured(&[
        "peer",
        "get",
        "--home",
        &home_b,
        "org-a",
        "big/one.gib",
        "--out",
        &home_arg(&out),
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    eprintln!(
        "peer get resumed at {} MiB: {:.1?}, CLI peak {peak} KiB",
        kept >> 20,
        started.elapsed()
    );
    assert!(peak < CLI_PEAK_MAX_KIB, "peer get peaked at {peak} KiB");
    assert!(same_contents(&source, &out), "the fetched object differs");
    assert!(!part.exists() && !files.path().join("fetched.gib.part.etag").exists());
    std::fs::remove_file(&out).unwrap();

    // Back from the owner.
    let (ok, stderr, peak) = run_measured(&[
        "data",
        "get",
        "--home",
        &home_a,
        "big/one.gib",
        "--out",
        &home_arg(&out),
    ]);
    assert!(ok, "{stderr}");
    assert!(peak < CLI_PEAK_MAX_KIB, "data get peaked at {peak} KiB");
    assert!(
        same_contents(&source, &out),
        "the downloaded object differs"
    );
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&source).unwrap();

    // A part left by another version of the object: started again.
    let a = admin(&net, "org-a");
    put_object(&a, "big/small.csv", "text/csv", b"id,port\n1,Rotterdam\n");
    let small = files.path().join("small.csv");
    std::fs::write(files.path().join("small.csv.part"), b"id,stale-bytes").unwrap();
    std::fs::write(files.path().join("small.csv.part.etag"), "\"not-this-one\"").unwrap();
    let again = run(&[
        "data",
        "get",
        "--home",
        &home_a,
        "big/small.csv",
        "--out",
        &home_arg(&small),
    ]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("changed since"), "{stderr}");
    assert_eq!(std::fs::read(&small).unwrap(), b"id,port\n1,Rotterdam\n");

    // A part that is already whole (stopped just before the rename) is
    // finished, not fetched again.
    let etag = a
        .get("/v1/objects/big/small.csv")
        .unwrap()
        .header("etag")
        .unwrap()
        .to_owned();
    let whole = files.path().join("whole.csv");
    std::fs::write(
        files.path().join("whole.csv.part"),
        b"id,port\n1,Rotterdam\n",
    )
    .unwrap();
    std::fs::write(files.path().join("whole.csv.part.etag"), &etag).unwrap();
    let finished = run(&[
        "data",
        "get",
        "--home",
        &home_a,
        "big/small.csv",
        "--out",
        &home_arg(&whole),
    ]);
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(
        finished.status.success() && !stderr.contains("changed"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&whole).unwrap(), b"id,port\n1,Rotterdam\n");
    assert!(!files.path().join("whole.csv.part").exists());

    // Errors say what happened.
    let missing = run(&["data", "get", "--home", &home_a, "big/nope.csv"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && stderr.contains("no object big/nope.csv"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("is `quorate node run` running"),
        "{stderr}"
    );
    net.cli(&["testnet", "down"]);
    let down = run(&["data", "get", "--home", &home_a, "big/small.csv"]);
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("cannot reach the node's API"), "{stderr}");
}
