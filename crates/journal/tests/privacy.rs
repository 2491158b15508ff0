//! The journal holds callers' identities and locations: its directory is
//! its owner's alone (0700) and so is every segment (0600), whatever the
//! umask, and a directory or segment left more open by an earlier install
//! is tightened when the writer opens.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lifeline_journal::reader::list_segments;
use lifeline_journal::{
    JournalOptions, JournalRecord, JournalWriter, TrunkChange, TrunkRecord, WallTime,
};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn rec(i: u64) -> JournalRecord {
    JournalRecord::Trunk(TrunkRecord {
        at: WallTime(i as i64),
        trunk: format!("trunk-{i}"),
        change: TrunkChange::Drained,
    })
}

/// Open a writer on `dir`, write and flush one record, shut it down.
fn write_one(dir: &Path, i: u64) {
    let w = JournalWriter::open(dir, JournalOptions::default()).unwrap();
    w.handle().record(rec(i));
    w.handle().flush();
    w.shutdown();
}

#[test]
fn a_new_journal_is_private_to_its_owner() {
    let tmp = tempfile::tempdir().unwrap();
    // Missing parents are created private too.
    let dir = tmp.path().join("var/journal");
    write_one(&dir, 1);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(dir.parent().unwrap()), 0o700);
    let segments = list_segments(&dir).unwrap();
    assert_eq!(segments.len(), 1);
    for s in &segments {
        assert_eq!(mode(s), 0o600, "{}", s.display());
    }
}

#[test]
fn an_open_directory_and_old_segments_are_tightened() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    write_one(&dir, 1);
    // An earlier install (or an operator) left it all readable.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let old = list_segments(&dir).unwrap();
    for s in &old {
        fs::set_permissions(s, fs::Permissions::from_mode(0o644)).unwrap();
    }
    write_one(&dir, 2);
    assert_eq!(mode(&dir), 0o700);
    let all = list_segments(&dir).unwrap();
    assert_eq!(all.len(), 2, "the second run writes a new segment");
    for s in &all {
        assert_eq!(mode(s), 0o600, "{}", s.display());
    }
    // Group access alone is taken away too; the owner's stays.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o770)).unwrap();
    write_one(&dir, 3);
    assert_eq!(mode(&dir), 0o700);
}
