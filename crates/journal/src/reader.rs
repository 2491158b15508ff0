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
    /// Each source as given, with its segments.
    sources: Vec<(PathBuf, Vec<PathBuf>)>,
}

/// Where an entry was read: which source, which segment, which gateway.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// The index of the source, in the order given to [`JournalReader::open`].
    pub source: usize,
    /// The source's path, as given.
    pub path: &'a Path,
    /// The gateway named in the segment's header (format version 3 on).
    pub node: Option<&'a str>,
}

impl Origin<'_> {
    /// The gateway the entry comes from: the name in its segment's header;
    /// for segments written before names were (format versions 1 and 2),
    /// the name of the journal's directory (`/srv/journals/gw-a` -> `gw-a`),
    /// since that is how shipped journals are laid out.
    pub fn gateway(&self) -> String {
        if let Some(n) = self.node {
            return n.to_string();
        }
        let dir = if self.path.is_dir() {
            Some(self.path)
        } else {
            self.path.parent()
        };
        dir.and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .map_or_else(|| self.path.display().to_string(), str::to_string)
    }
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
                sources.push((p.to_path_buf(), list_segments(p)?));
            } else {
                sources.push((p.to_path_buf(), vec![p.to_path_buf()]));
            }
        }
        Ok(Self { sources })
    }

    /// Every segment file that will be read.
    pub fn segments(&self) -> impl Iterator<Item = &Path> + '_ {
        self.sources
            .iter()
            .flat_map(|(_, segs)| segs)
            .map(PathBuf::as_path)
    }

    /// Read every record, in order within each source, calling `f` for each;
    /// returns what was wrong. A record whose sequence number is not above
    /// the last one read from the same source is skipped as a duplicate.
    pub fn for_each(&self, mut f: impl FnMut(&Entry)) -> Vec<Issue> {
        self.for_each_from(|_, e| f(e))
    }

    /// As [`for_each`](Self::for_each), also telling where each entry was
    /// read.
    pub fn for_each_from(&self, mut f: impl FnMut(&Origin<'_>, &Entry)) -> Vec<Issue> {
        let mut issues = Vec::new();
        for (index, (source, segments)) in self.sources.iter().enumerate() {
            let mut last: Option<u64> = None;
            for path in segments {
                let seg = read_segment(path);
                issues.extend(seg.issues);
                let origin = Origin {
                    source: index,
                    path: source,
                    node: seg.node.as_deref(),
                };
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
                    f(&origin, e);
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
