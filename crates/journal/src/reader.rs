//! Reading journals back: one directory (or file) or several, one segment in
//! memory at a time.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::format::{parse_segment, parse_segment_name, Entry, Issue, Segment};

/// The segment files of a journal directory, in record order (by first
/// sequence number, then creation time). Files that are not segments are
/// ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<((u64, u64), PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(key) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        if entry.file_type()?.is_file() {
            found.push((key, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Read and parse one segment file. An IO error becomes an
/// [`Issue::Unreadable`].
pub fn read_segment(path: &Path) -> Segment {
    match fs::read(path) {
        Ok(data) => parse_segment(path, &data),
        Err(e) => Segment {
            issues: vec![Issue::Unreadable {
                path: path.to_path_buf(),
                error: e.to_string(),
            }],
            ..Segment::default()
        },
    }
}

/// A set of journals to read: each source is a journal directory (every
/// segment in it) or a single segment file. Sequence numbers are checked per
/// source (each gateway numbers its own records).
#[derive(Debug, Clone)]
pub struct JournalReader {
    sources: Vec<Vec<PathBuf>>,
}

impl JournalReader {
    /// List the segments of each path (a directory or a file).
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> io::Result<Self> {
        let mut sources = Vec::new();
        for p in paths {
            let p = p.as_ref();
            let meta = fs::metadata(p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            if meta.is_dir() {
                sources.push(list_segments(p)?);
            } else {
                sources.push(vec![p.to_path_buf()]);
            }
        }
        Ok(Self { sources })
    }

    /// Every segment file that will be read.
    pub fn segments(&self) -> impl Iterator<Item = &Path> + '_ {
        self.sources.iter().flatten().map(PathBuf::as_path)
    }

    /// Read every record, in order within each source, calling `f` for each;
    /// returns what was wrong. A record whose sequence number is not above
    /// the last one read from the same source is skipped as a duplicate.
    pub fn for_each(&self, mut f: impl FnMut(&Entry)) -> Vec<Issue> {
        let mut issues = Vec::new();
        for source in &self.sources {
            let mut last: Option<u64> = None;
            for path in source {
                let seg = read_segment(path);
                issues.extend(seg.issues);
                for e in &seg.entries {
                    if last.is_some_and(|l| e.seq <= l) {
                        issues.push(Issue::Duplicate {
                            path: path.clone(),
                            offset: e.offset,
                            seq: e.seq,
                        });
                        continue;
                    }
                    last = Some(e.seq);
                    f(e);
                }
            }
        }
        issues
    }

    /// Read everything into memory.
    pub fn read_all(&self) -> (Vec<Entry>, Vec<Issue>) {
        let mut entries = Vec::new();
        let issues = self.for_each(|e| entries.push(e.clone()));
        (entries, issues)
    }
}
