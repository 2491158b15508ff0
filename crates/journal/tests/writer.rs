//! The writer: group commit without an explicit flush, rotation, retention,
//! a failing disk, and what happens to records nobody can take.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifeline_journal::format::{encode_header, segment_name};
use lifeline_journal::reader::list_segments;
use lifeline_journal::{
    Faults, JournalOptions, JournalReader, JournalRecord, JournalWriter, TrunkChange, TrunkRecord,
    WallTime,
};

fn rec(i: u64) -> JournalRecord {
    JournalRecord::Trunk(TrunkRecord {
        at: WallTime(i as i64),
        trunk: format!("trunk-{i}"),
        change: TrunkChange::Drained,
    })
}

fn indices(dir: &Path) -> Vec<u64> {
    let (entries, issues) = JournalReader::open(&[dir]).unwrap().read_all();
    assert!(issues.is_empty(), "{issues:?}");
    entries
        .iter()
        .map(|e| match &e.record {
            JournalRecord::Trunk(t) => t.trunk[6..].parse().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Poll `f` until true; a generous bound so a loaded CI machine does not
/// fail the test (no assertion on how long it took).
fn eventually(mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < end, "condition not reached in 30 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn group_commit_makes_records_durable_without_a_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let w = JournalWriter::open(tmp.path(), JournalOptions::default()).unwrap();
    assert_eq!(w.first_seq(), 1);
    let h = w.handle();
    assert_eq!(h.fsynced_seq(), 0);
    for i in 0..10 {
        assert!(h.record(rec(i)));
    }
    // Fewer than group_commit_records: the interval commits them.
    eventually(|| h.fsynced_seq() == 10);
    assert_eq!(h.durable(), 10);
    // Durable means readable now, before shutdown.
    assert_eq!(indices(tmp.path()), (0..10).collect::<Vec<_>>());
    let stats = w.shutdown();
    assert_eq!(stats.segments_created, 1);
    assert_eq!(stats.dropped(), 0);
}

#[test]
fn numbering_continues_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let w = JournalWriter::open(tmp.path(), JournalOptions::default()).unwrap();
        assert_eq!(w.first_seq(), round * 5 + 1);
        let h = w.handle();
        for i in 0..5 {
            h.record(rec(round * 5 + i));
        }
        assert_eq!(h.flush(), round * 5 + 5);
        w.shutdown();
    }
    assert_eq!(
        list_segments(tmp.path()).unwrap().len(),
        3,
        "never appends to old segments"
    );
    assert_eq!(indices(tmp.path()), (0..15).collect::<Vec<_>>());
}

#[test]
fn restart_right_after_a_crash_that_left_an_empty_segment() {
    // A crash just after a segment was created, before any record reached
    // it, leaves a header-only segment whose name the next run would choose
    // too (same first record, same second). Found by the SIGKILL test.
    let tmp = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for ts in now..now + 3 {
        fs::write(tmp.path().join(segment_name(1, ts)), encode_header(1, "")).unwrap();
    }
    let w = JournalWriter::open(tmp.path(), JournalOptions::default()).unwrap();
    assert_eq!(w.first_seq(), 1);
    let h = w.handle();
    for i in 0..100 {
        assert!(h.record(rec(i)));
    }
    assert_eq!(h.flush(), 100);
    let stats = w.shutdown();
    assert_eq!(stats.write_errors, 0);
    assert_eq!(stats.dropped(), 0);
    assert_eq!(indices(tmp.path()), (0..100).collect::<Vec<_>>());
}

#[test]
fn rotates_by_size_and_retention_deletes_the_oldest() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = JournalOptions {
        max_segment_bytes: 2_000,
        retention_bytes: Some(10_000),
        retention_age: None,
        group_commit_records: 10,
        ..JournalOptions::default()
    };
    let w = JournalWriter::open(tmp.path(), opts).unwrap();
    let h = w.handle();
    for i in 0..2_000 {
        assert!(h.record(rec(i)));
        if i % 10 == 9 {
            h.flush();
        }
    }
    let stats = w.shutdown();
    assert!(stats.segments_created > 10, "{stats:?}");
    assert!(stats.segments_deleted > 0, "{stats:?}");
    let segs = list_segments(tmp.path()).unwrap();
    let total: u64 = segs.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    // Retention runs when a segment closes: at most one segment over.
    assert!(total <= 10_000 + 2_000 + 1_000, "{total} bytes kept");
    // What is left is the newest records, contiguous, ending with the last.
    let idx = indices(tmp.path());
    assert_eq!(idx.last(), Some(&1_999));
    assert!(idx.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(idx.first() > Some(&0), "oldest deleted");
}

#[test]
fn rotates_by_age_and_retention_by_age() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = JournalOptions {
        max_segment_age: Duration::ZERO, // every commit opens a new segment
        retention_bytes: None,
        retention_age: None,
        ..JournalOptions::default()
    };
    let w = JournalWriter::open(tmp.path(), opts.clone()).unwrap();
    let h = w.handle();
    for i in 0..4 {
        h.record(rec(i));
        h.flush();
    }
    w.shutdown();
    assert_eq!(list_segments(tmp.path()).unwrap().len(), 4);
    // Age zero: every closed segment is past retention when the next opens.
    let w = JournalWriter::open(
        tmp.path(),
        JournalOptions {
            retention_age: Some(Duration::ZERO),
            ..opts
        },
    )
    .unwrap();
    let stats = w.handle().stats();
    assert_eq!(stats.segments_deleted, 4, "deleted at open");
    w.shutdown();
}

#[test]
fn failing_disk_never_blocks_counts_losses_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = Faults::default();
    let opts = JournalOptions {
        queue_capacity: 100,
        retry_interval: Duration::from_millis(5),
        faults: Some(faults.clone()),
        ..JournalOptions::default()
    };
    let w = JournalWriter::open(tmp.path(), opts).unwrap();
    let h = w.handle();
    for i in 0..10 {
        assert!(h.record(rec(i)));
    }
    assert_eq!(h.flush(), 10);
    assert_eq!(h.stats().backlog(), 0, "all durable: {:?}", h.stats());

    faults.fail_writes.store(true, Ordering::Relaxed);
    // Producers keep going: record() returns at once whatever the disk does.
    let mut accepted = 0;
    for i in 10..5_000 {
        if h.record(rec(i)) {
            accepted += 1;
        }
    }
    eventually(|| h.stats().failing);
    let stats = h.stats();
    assert!(stats.write_errors >= 1);
    assert!(
        h.dropped() > 0,
        "a bounded backlog must overflow: {stats:?}"
    );
    assert_eq!(h.fsynced_seq(), 10, "nothing durable while failing");
    assert!(accepted < 4_990);
    // What waits for the disk is the backlog: accepted, not durable, not
    // (yet) lost.
    let stats = h.stats();
    assert_eq!(stats.accepted, 10 + accepted);
    assert!(stats.backlog() > 0, "{stats:?}");

    // The disk comes back: the backlog is written, then new records.
    faults.fail_writes.store(false, Ordering::Relaxed);
    eventually(|| {
        !h.stats().failing || {
            h.flush();
            false
        }
    });
    assert!(h.record(rec(10_000)));
    let last = h.flush();
    assert_eq!(h.stats().backlog(), 0, "written once the disk is back");
    let stats = w.shutdown();
    assert!(!stats.failing);
    let idx = indices(tmp.path());
    assert_eq!(
        idx.len() as u64,
        last,
        "every sequence number is in the journal"
    );
    assert_eq!(&idx[..10], (0..10).collect::<Vec<_>>().as_slice());
    assert_eq!(idx.last(), Some(&10_000));
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "in order");
    // Written + dropped = all offered.
    assert_eq!(stats.durable + stats.dropped(), 5_000 + 1);
}

#[test]
fn records_after_shutdown_are_dropped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let w = JournalWriter::open(tmp.path(), JournalOptions::default()).unwrap();
    let h = w.handle();
    h.record(rec(1));
    let stats = w.shutdown();
    assert_eq!(stats.durable, 1, "shutdown flushes");
    assert!(!h.record(rec(2)));
    assert_eq!(h.stats().dropped_closed, 1);
    assert_eq!(h.dropped(), 1);
}
