//! The audit log's writer, its checks and its segments, on real files.

use super::*;

fn decision(i: u64) -> Decision {
    Decision {
        purpose: None,
        digest: None,
        transport: "http".into(),
        caller: Some("did:key:z6Mk".into()),
        action: "read".into(),
        resource: format!("a/{i}"),
        decision: if i.is_multiple_of(2) { "allow" } else { "deny" }.into(),
        reason: (i % 2 == 1).then(|| "no-grant".into()),
        grant: None,
        bytes: i,
    }
}

async fn write(path: &Path, n: u64) {
    let (auditor, task) = Auditor::start(path.to_owned()).unwrap();
    for i in 0..n {
        auditor.record(decision(i)).await;
    }
    drop(auditor);
    task.await.unwrap();
}

#[tokio::test]
async fn records_chain_across_restarts_and_any_edit_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write(&path, 5).await;
    write(&path, 5).await;
    let verified = verify(&path).unwrap();
    assert_eq!(verified.records, 10);

    let denies = query(
        &path,
        &Query {
            decision: Some("deny".into()),
            limit: Some(3),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(denies.len(), 3);
    assert!(denies.iter().all(|r| r.decision.decision == "deny"));
    assert_eq!(denies[2].seq, 9, "record 10 is an allow");

    let text = std::fs::read_to_string(&path).unwrap();
    let edits = [
        text.replacen("\"bytes\":4", "\"bytes\":5", 1),
        text.replacen("\"allow\"", "\"deny\"", 1),
        // Drop the third line.
        text.lines()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, l)| format!("{l}\n"))
            .collect(),
    ];
    for edited in edits {
        assert_ne!(edited, text);
        std::fs::write(&path, &edited).unwrap();
        assert!(matches!(verify(&path), Err(AuditError::Broken { .. })));
    }
}

#[tokio::test]
async fn any_client_field_is_bounded_and_a_log_ending_in_the_largest_record_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (auditor, task) = Auditor::start(path.clone()).unwrap();
    let huge = "é\"\u{1}".repeat(30_000);
    let worst = Decision {
        purpose: Some(huge.clone()),
        transport: huge.clone(),
        caller: Some(huge.clone()),
        action: huge.clone(),
        resource: huge.clone(),
        decision: huge.clone(),
        reason: Some(huge.clone()),
        grant: Some(huge.clone()),
        bytes: u64::MAX,
        // Not a client's field: the gateway writes it, always this long.
        digest: Some(quorate_api::signature::sha256_field(&[0xff; 32])),
    };
    auditor.record(worst).await;
    drop(auditor);
    task.await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.len() <= RECORD_BYTES_MAX, "{} bytes", text.len());
    let record: Record = serde_json::from_str(text.trim_end()).unwrap();
    assert!(record.decision.resource.contains("bytes, blake3 "));
    assert_eq!(verify(&path).unwrap().records, 1);
    // The node starts again on it and the chain goes on.
    write(&path, 2).await;
    assert_eq!(verify(&path).unwrap().records, 3);
}

#[tokio::test]
async fn a_log_whose_last_record_is_a_legacy_long_line_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write(&path, 1).await;
    // A record as releases before the bound wrote it: a 60 KB path.
    let (seq, prev) = recover(&path).unwrap();
    let decision = Decision {
        resource: "a".repeat(60_000),
        ..decision(1)
    };
    let hash = record_hash(seq + 1, 7, &decision, &prev);
    let record = Record {
        seq: seq + 1,
        time_ms: 7,
        decision,
        prev,
        hash,
    };
    let mut line = serde_json::to_vec(&record).unwrap();
    line.push(b'\n');
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&line)
        .unwrap();
    assert_eq!(verify(&path).unwrap().records, 2);
    write(&path, 1).await;
    assert_eq!(verify(&path).unwrap().records, 3);
}

#[tokio::test]
async fn a_torn_last_line_is_cut_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write(&path, 3).await;
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"{\"seq\":4,\"time").unwrap();
    drop(file);
    assert!(verify(&path).is_err());
    write(&path, 2).await;
    assert_eq!(verify(&path).unwrap().records, 5);
}

#[tokio::test]
async fn the_tail_is_checked_at_start_and_a_break_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write(&path, 6).await;
    assert_eq!(verify_tail(&path).unwrap(), 6);
    let (auditor, task) = Auditor::start(path.clone()).unwrap();
    assert!(auditor.broken().is_none());
    drop(auditor);
    task.await.unwrap();
    // An edited record near the end: reported, and the log goes on.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"bytes\":4", "\"bytes\":40", 1)).unwrap();
    assert!(matches!(
        verify_tail(&path),
        Err(AuditError::Broken { line: 5, .. })
    ));
    let (auditor, task) = Auditor::start(path.clone()).unwrap();
    let report = auditor.broken().expect("the break is reported");
    assert!(report.contains("line 5"), "{report}");
    auditor.record(decision(7)).await;
    drop(auditor);
    task.await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 7);
}

#[tokio::test]
async fn the_tail_check_reads_a_bounded_end_of_a_long_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // Well over TAIL_CHECK_BYTES of records (each ~250 bytes).
    write(&path, 2_000).await;
    assert!(std::fs::metadata(&path).unwrap().len() > TAIL_CHECK_BYTES);
    let checked = verify_tail(&path).unwrap();
    assert!(checked > 100 && checked < 2_000, "{checked}");
    // An edit at the very start is beyond it (`verify` finds it).
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"bytes\":0", "\"bytes\":9", 1)).unwrap();
    assert!(verify_tail(&path).is_ok());
    assert!(matches!(
        verify(&path),
        Err(AuditError::Broken { line: 1, .. })
    ));
    // A reordering near the end is not.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(1_990, 1_991);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert!(verify_tail(&path).is_err());
}

/// A full disk, for real: `/dev/full` fails every write with ENOSPC.
#[test]
fn a_write_that_fails_does_not_advance_the_chain_and_is_reported() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
    let (queue, records) = mpsc::channel(4);
    let health = Arc::new(Health::default());
    let writer = health.clone();
    let task = std::thread::spawn(move || {
        write_loop(full, records, 41, "ab".repeat(32), &writer, None);
    });
    queue.blocking_send((1, decision(1))).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !health.failing.load(Ordering::Acquire) {
        assert!(std::time::Instant::now() < deadline, "no failure reported");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let auditor = Auditor {
        queue: queue.clone(),
        path: PathBuf::from("/dev/full"),
        health: health.clone(),
    };
    let failure = auditor.failure().expect("reported");
    assert!(failure.to_lowercase().contains("space"), "{failure}");
    assert!(auditor.failure_counts().0 >= 1);
    // Nothing more is written meanwhile; the writer stops with the node.
    drop((queue, auditor));
    task.join().unwrap();
}

async fn write_segmented(path: &Path, from: u64, n: u64, segment_bytes: u64) {
    let (auditor, task) = Auditor::start_with_segments(path.to_owned(), segment_bytes).unwrap();
    for i in from..from + n {
        auditor.record(decision(i)).await;
        // Let the writer drain now and then, as real traffic does: it
        // rotates between batches.
        if i % 20 == 19 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    drop(auditor);
    task.await.unwrap();
}

#[tokio::test]
async fn the_log_moves_into_segments_and_the_chain_runs_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // ~250-byte records, 16 KiB segments: several of them.
    write_segmented(&path, 0, 300, 16 * 1024).await;
    let archived = segments(&path).unwrap();
    assert!(archived.len() >= 3, "{archived:?}");
    let chain = verify_chain(&path).unwrap();
    assert_eq!((chain.records, chain.first_seq), (300, 1));
    assert_eq!(chain.files, archived.len() + 1);
    // The current file's end checks against the segments at start.
    assert!(verify_tail(&path).is_ok());
    // A query sees past a rotation: the newest records, in order.
    let newest = query(
        &path,
        &Query {
            limit: Some(100),
            ..Query::default()
        },
    )
    .unwrap();
    assert!(newest.len() >= 50, "{}", newest.len());
    assert_eq!(newest.last().unwrap().seq, 300);
    assert!(newest.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    // Restarted, the chain goes on.
    write_segmented(&path, 300, 50, 16 * 1024).await;
    assert_eq!(verify_chain(&path).unwrap().records, 350);
    // Each segment's name says its first and last records.
    let name = archived[1]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (first, last) = name.trim_end_matches(".log").split_once('-').unwrap();
    let text = std::fs::read_to_string(&archived[1]).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<Record>(l).unwrap().seq)
        .collect();
    assert_eq!(seqs.first(), Some(&first.parse().unwrap()));
    assert_eq!(seqs.last(), Some(&last.parse().unwrap()));

    // A record changed in a middle segment: the chain check names it.
    std::fs::write(&archived[1], text.replacen("\"bytes\":", "\"bytes\":1", 1)).unwrap();
    let err = verify_chain(&path).unwrap_err().to_string();
    assert!(err.contains(&name), "{err}");
    std::fs::write(&archived[1], &text).unwrap();
    // A segment removed from the middle breaks the links.
    std::fs::rename(&archived[1], dir.path().join("elsewhere.log")).unwrap();
    assert!(verify_chain(&path).is_err());
    std::fs::rename(dir.path().join("elsewhere.log"), &archived[1]).unwrap();
    // The oldest archived away: the rest verifies, from where it starts.
    std::fs::remove_file(&archived[0]).unwrap();
    let chain = verify_chain(&path).unwrap();
    assert!(chain.first_seq > 1 && chain.records < 350, "{chain:?}");
}

#[tokio::test]
async fn a_crash_between_the_rename_and_the_new_file_continues_from_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_segmented(&path, 0, 100, 16 * 1024).await;
    let last = segments(&path).unwrap().pop().unwrap();
    // As if the node stopped right after moving the file.
    std::fs::remove_file(&path).unwrap();
    let chain_end = verify_chain(&path).unwrap();
    write_segmented(&path, 100, 5, 16 * 1024).await;
    let chain = verify_chain(&path).unwrap();
    assert_eq!(chain.records, chain_end.records + 5);
    let (auditor, task) = Auditor::start_with_segments(path.clone(), 16 * 1024).unwrap();
    assert!(
        auditor.broken().is_none(),
        "{:?} after {}",
        auditor.broken(),
        last.display()
    );
    drop(auditor);
    task.await.unwrap();
}

#[tokio::test]
async fn a_tampered_segment_end_is_found_at_start_while_the_current_file_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_segmented(&path, 0, 100, 16 * 1024).await;
    let last = segments(&path).unwrap().pop().unwrap();
    let text = std::fs::read_to_string(&last).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let end = lines.len() - 1;
    lines[end] = lines[end].replacen("\"read\"", "\"list\"", 1);
    std::fs::write(&last, lines.join("\n") + "\n").unwrap();
    std::fs::write(&path, b"").unwrap();
    let (auditor, task) = Auditor::start_with_segments(path.clone(), 16 * 1024).unwrap();
    let report = auditor.broken().expect("reported");
    assert!(
        report.contains(last.file_name().unwrap().to_str().unwrap()),
        "{report}"
    );
    drop(auditor);
    task.await.unwrap();
}

#[tokio::test]
async fn archived_segments_may_be_read_only_or_moved_away_without_a_false_break() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write_segmented(&path, 0, 200, 16 * 1024).await;
    for segment in segments(&path).unwrap() {
        std::fs::set_permissions(&segment, std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    let (auditor, task) = Auditor::start_with_segments(path.clone(), 16 * 1024).unwrap();
    assert!(auditor.broken().is_none(), "{:?}", auditor.broken());
    auditor.record(decision(200)).await;
    drop(auditor);
    task.await.unwrap();
    // Every segment archived elsewhere: the current file verifies from
    // its own first record.
    std::fs::rename(segments_dir(&path), dir.path().join("archive")).unwrap();
    let (auditor, task) = Auditor::start_with_segments(path.clone(), 16 * 1024).unwrap();
    assert!(auditor.broken().is_none(), "{:?}", auditor.broken());
    drop(auditor);
    task.await.unwrap();
    assert!(verify_chain(&path).unwrap().first_seq > 1);
}
