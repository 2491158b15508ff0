//! Crash safety: torn and corrupt tails, corruption in the middle, a zero-
//! filled tail, and a writer process killed with SIGKILL while writing.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifeline_journal::format::FRAME_HEADER_LEN;
use lifeline_journal::reader::{list_segments, read_segment};
use lifeline_journal::{
    Issue, JournalOptions, JournalReader, JournalRecord, JournalWriter, TrunkChange, TrunkRecord,
    WallTime,
};

fn rec(i: u64) -> JournalRecord {
    JournalRecord::Trunk(TrunkRecord {
        at: WallTime(1_700_000_000_000_000 + i as i64),
        trunk: format!("trunk-{i}"),
        change: TrunkChange::State {
            from: lifeline_journal::TrunkState::Up,
            to: lifeline_journal::TrunkState::Down,
            reason: format!("live: no response (record {i})"),
        },
    })
}

fn index_of(r: &JournalRecord) -> Option<u64> {
    match r {
        JournalRecord::Trunk(t) => t.trunk.strip_prefix("trunk-")?.parse().ok(),
        _ => None,
    }
}

/// Write records 0..n through a writer and shut it down.
fn write_journal(dir: &Path, n: u64) {
    let w = JournalWriter::open(dir, JournalOptions::default()).unwrap();
    let h = w.handle();
    for i in 0..n {
        assert!(h.record(rec(i)));
    }
    let stats = w.shutdown();
    assert_eq!(stats.durable, n);
    assert_eq!(stats.dropped(), 0);
}

fn read_dir(dir: &Path) -> (Vec<u64>, Vec<u64>, Vec<Issue>) {
    let (entries, issues) = JournalReader::open(&[dir]).unwrap().read_all();
    let idx = entries
        .iter()
        .map(|e| index_of(&e.record).unwrap())
        .collect();
    let seqs = entries.iter().map(|e| e.seq).collect();
    (idx, seqs, issues)
}

fn only_segment(dir: &Path) -> PathBuf {
    let segs = list_segments(dir).unwrap();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.into_iter().next().unwrap()
}

#[test]
fn torn_final_record_at_every_offset_is_skipped_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_journal(&src, 5);
    let seg_path = only_segment(&src);
    let full = fs::read(&seg_path).unwrap();
    let seg = read_segment(&seg_path);
    assert_eq!(seg.entries.len(), 5);
    let last_off = seg.entries.last().unwrap().offset as usize;
    let name = seg_path.file_name().unwrap();

    for cut in last_off..full.len() {
        let dir = tmp.path().join(format!("cut-{cut}"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(name), &full[..cut]).unwrap();

        let (idx, seqs, issues) = read_dir(&dir);
        assert_eq!(idx, [0, 1, 2, 3], "cut at {cut}");
        assert_eq!(seqs, [1, 2, 3, 4]);
        if cut == last_off {
            assert!(
                issues.is_empty(),
                "a cut on a record boundary is clean: {issues:?}"
            );
        } else {
            assert_eq!(
                issues,
                [Issue::TornTail {
                    path: dir.join(name),
                    offset: last_off as u64,
                    bytes: (cut - last_off) as u64,
                }],
                "cut at {cut}"
            );
        }

        // The journal opens cleanly for writing and numbering continues
        // after the last intact record.
        let w = JournalWriter::open(&dir, JournalOptions::default()).unwrap();
        assert_eq!(w.first_seq(), 5, "cut at {cut}");
        assert!(w.handle().record(rec(100)));
        w.shutdown();
        let (idx, seqs, issues) = read_dir(&dir);
        assert_eq!(idx, [0, 1, 2, 3, 100], "cut at {cut}");
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert!(issues.iter().all(Issue::is_torn_tail), "{issues:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn corrupt_byte_anywhere_in_final_record_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path(), 4);
    let seg_path = only_segment(tmp.path());
    let full = fs::read(&seg_path).unwrap();
    let last_off = read_segment(&seg_path).entries.last().unwrap().offset as usize;
    for pos in last_off..full.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut data = full.clone();
            data[pos] ^= flip;
            fs::write(&seg_path, &data).unwrap();
            let (idx, _, issues) = read_dir(tmp.path());
            assert_eq!(idx, [0, 1, 2], "byte {pos} ^ {flip:#x}");
            assert_eq!(issues.len(), 1, "byte {pos}: {issues:?}");
            assert!(
                matches!(issues[0], Issue::TornTail { offset, .. } if offset == last_off as u64),
                "byte {pos}: {issues:?}"
            );
        }
    }
}

#[test]
fn corrupt_record_in_the_middle_is_skipped_and_reading_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path(), 6);
    let seg_path = only_segment(tmp.path());
    let seg = read_segment(&seg_path);
    let (off2, off3) = (seg.entries[2].offset, seg.entries[3].offset);
    let mut data = fs::read(&seg_path).unwrap();
    // A flipped bit in record 2's payload.
    data[off2 as usize + FRAME_HEADER_LEN + 3] ^= 0x10;
    fs::write(&seg_path, &data).unwrap();
    let (idx, _, issues) = read_dir(tmp.path());
    assert_eq!(idx, [0, 1, 3, 4, 5]);
    assert_eq!(
        issues,
        [Issue::Corrupt {
            path: seg_path.clone(),
            offset: off2,
            bytes: off3 - off2,
        }]
    );

    // A wrecked length field: the reader still finds record 3.
    let mut data = fs::read(&seg_path).unwrap();
    data[off2 as usize..off2 as usize + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&seg_path, &data).unwrap();
    let (idx, _, issues) = read_dir(tmp.path());
    assert_eq!(idx, [0, 1, 3, 4, 5]);
    assert!(matches!(issues[..], [Issue::Corrupt { offset, .. }] if offset == off2));
}

#[test]
fn zero_filled_tail_after_power_loss_reads_as_torn() {
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path(), 3);
    let seg_path = only_segment(tmp.path());
    let mut data = fs::read(&seg_path).unwrap();
    let len = data.len() as u64;
    data.extend_from_slice(&[0u8; 4096]);
    fs::write(&seg_path, &data).unwrap();
    let (idx, _, issues) = read_dir(tmp.path());
    assert_eq!(idx, [0, 1, 2]);
    assert!(matches!(issues[..], [Issue::TornTail { offset, bytes: 4096, .. }] if offset == len));
}

#[test]
fn random_garbage_never_panics_the_reader() {
    // A small deterministic generator (no extra dependency).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path(), 20);
    let seg_path = only_segment(tmp.path());
    let good = fs::read(&seg_path).unwrap();
    for _ in 0..300 {
        let mut data = good.clone();
        for _ in 0..(next() % 8 + 1) {
            let pos = (next() % data.len() as u64) as usize;
            data[pos] = next() as u8;
        }
        let cut = (next() % (data.len() as u64 + 1)) as usize;
        data.truncate(cut);
        let seg = lifeline_journal::format::parse_segment(Path::new("x"), &data);
        // Whatever survives is in order and is a record that was written.
        let idx: Vec<u64> = seg
            .entries
            .iter()
            .map(|e| index_of(&e.record).unwrap())
            .collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");
        assert!(idx.iter().all(|&i| i < 20));
    }
}

const CHILD_ENV: &str = "LIFELINE_JOURNAL_CRASH_CHILD";

/// Not a test on its own: the child process of
/// `sigkill_during_writes_loses_nothing_reported_durable`. It writes records
/// without pause and prints `durable N` each time the writer reports more
/// records fsynced, until it is killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let opts = JournalOptions {
        max_segment_bytes: 64 << 10, // several segments: rotation under a kill too
        ..JournalOptions::default()
    };
    let w = JournalWriter::open(&dir, opts).unwrap();
    let h = w.handle();
    let mut reported = 0;
    let mut i = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if h.record(rec(i)) {
            i += 1;
        } else {
            // Queue full: a producer would drop; this one waits so that
            // record i is always sequence number i + 1.
            std::thread::sleep(Duration::from_micros(200));
        }
        let d = h.durable();
        if d > reported {
            reported = d;
            println!("durable {d}");
        }
    }
    eprintln!("crash child: not killed within 60 s");
    std::process::exit(3);
}

#[test]
fn sigkill_during_writes_loses_nothing_reported_durable() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a few thousand records were reported durable in this
        // round (a handful of group commits and several segment rotations).
        let mut durable = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("durable ") {
                durable = n.parse::<u64>().unwrap();
                if durable >= 3000 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        assert!(durable >= 3000, "round {round}: child stopped early");

        let (idx, seqs, issues) = read_dir(tmp.path());
        // Every round restarts numbering of its records at 0; sequence
        // numbers run on across rounds without a gap.
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "round {round}: sequence numbers not contiguous"
        );
        // This round's records: 0, 1, 2 ... and at least all reported durable.
        let start = idx.iter().rposition(|&i| i == 0).unwrap();
        let this_round = &idx[start..];
        assert!(
            this_round.len() as u64 >= durable,
            "round {round}: {} records read, {durable} reported durable",
            this_round.len()
        );
        if let Some(k) = this_round
            .iter()
            .enumerate()
            .position(|(k, &i)| k as u64 != i)
        {
            for p in list_segments(tmp.path()).unwrap() {
                let seg = read_segment(&p);
                let f = seg.entries.first().map(|e| (e.seq, index_of(&e.record)));
                let l = seg.entries.last().map(|e| (e.seq, index_of(&e.record)));
                eprintln!(
                    "{} n={} first={f:?} last={l:?} issues={:?}",
                    p.file_name().unwrap().to_string_lossy(),
                    seg.entries.len(),
                    seg.issues
                );
            }
            panic!(
                "round {round}: record {k} is {:?}; around: {:?}; issues {issues:?}",
                this_round[k],
                &this_round[k.saturating_sub(3)..(k + 3).min(this_round.len())]
            );
        }
        // The only acceptable damage is a torn tail (a record being written
        // when the process died).
        assert!(
            issues.iter().all(Issue::is_torn_tail),
            "round {round}: {issues:?}"
        );
        // And a writer opens it cleanly and continues the numbering.
        let w = JournalWriter::open(tmp.path(), JournalOptions::default()).unwrap();
        assert_eq!(w.first_seq(), seqs.last().unwrap() + 1);
        w.shutdown();
    }
}
