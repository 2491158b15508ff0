//! The writer thread: group commit, rotation, retention, and riding out a
//! failing disk without ever blocking the producers.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::format::{encode_frame, encode_header, header_len, segment_name};
use crate::reader::{list_segments, read_segment};
use crate::record::JournalRecord;

/// Writer settings.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// Start a new segment once the current one holds this many bytes
    /// (default 64 MiB).
    pub max_segment_bytes: u64,
    /// Start a new segment at the first write after the current one is this
    /// old (default 1 h), so closed segments can be shipped.
    pub max_segment_age: Duration,
    /// Delete the oldest closed segments while all segments together exceed
    /// this (default 1 GiB; `None`: no limit).
    pub retention_bytes: Option<u64>,
    /// Delete closed segments last written longer ago than this (default 90
    /// days; `None`: no limit).
    pub retention_age: Option<Duration>,
    /// Write and fsync at least this often while records wait (default 20 ms).
    pub group_commit_interval: Duration,
    /// ... or as soon as this many records wait (default 512).
    pub group_commit_records: usize,
    /// Records that may wait for the writer thread (default 65,536); beyond
    /// that [`JournalHandle::record`] drops and counts. While the disk fails,
    /// the writer holds up to this many more in its backlog.
    pub queue_capacity: usize,
    /// After a write or fsync error, try again after this long (default 1 s).
    pub retry_interval: Duration,
    /// The gateway's name, written in every segment's header so that the
    /// journals of several gateways can be told apart when reported on
    /// together (default: none).
    pub node_name: String,
    /// Fault injection for tests.
    #[doc(hidden)]
    pub faults: Option<Faults>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            max_segment_bytes: 64 << 20,
            max_segment_age: Duration::from_secs(3600),
            retention_bytes: Some(1 << 30),
            retention_age: Some(Duration::from_secs(90 * 24 * 3600)),
            group_commit_interval: Duration::from_millis(20),
            group_commit_records: 512,
            queue_capacity: 65_536,
            retry_interval: Duration::from_secs(1),
            node_name: String::new(),
            faults: None,
        }
    }
}

/// Fault injection for tests: while `fail_writes` is set, every write and
/// fsync fails as if the disk were full.
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Fail writes and fsyncs.
    pub fail_writes: Arc<AtomicBool>,
}

impl Faults {
    fn check(&self) -> io::Result<()> {
        if self.fail_writes.load(Ordering::Relaxed) {
            Err(io::Error::other("injected fault: no space left on device"))
        } else {
            Ok(())
        }
    }
}

/// Counters, readable from any thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records queued for the writer since open (`record` returned `true`).
    pub accepted: u64,
    /// Records made durable (written and fsynced) since open.
    pub durable: u64,
    /// The sequence number of the last durable record (0: none yet).
    pub fsynced_seq: u64,
    /// Bytes written (and fsynced) since open.
    pub bytes: u64,
    /// Records dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Records dropped because the writer had stopped.
    pub dropped_closed: u64,
    /// Records dropped because the disk failed for longer than the backlog
    /// could hold (or was still failing at shutdown).
    pub dropped_disk: u64,
    /// Failed writes or fsyncs.
    pub write_errors: u64,
    /// Whether the last write or fsync failed (writing is being retried).
    pub failing: bool,
    /// Segments created since open.
    pub segments_created: u64,
    /// Segments deleted by retention since open.
    pub segments_deleted: u64,
}

impl JournalStats {
    /// Every record lost, for whatever reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_closed + self.dropped_disk
    }

    /// Records accepted and not yet durable nor lost: queued, in the batch
    /// being written, or held while the disk fails. It grows while the
    /// writer falls behind, before anything is lost: the metric
    /// `lifeline_journal_backlog`. (The counters are read one by one while
    /// the writer runs, so it may be off by the records of one batch.)
    pub fn backlog(&self) -> u64 {
        self.accepted
            .saturating_sub(self.durable.saturating_add(self.dropped_disk))
    }
}

#[derive(Debug, Default)]
struct Shared {
    accepted: AtomicU64,
    durable: AtomicU64,
    fsynced_seq: AtomicU64,
    bytes: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_closed: AtomicU64,
    dropped_disk: AtomicU64,
    write_errors: AtomicU64,
    failing: AtomicBool,
    segments_created: AtomicU64,
    segments_deleted: AtomicU64,
}

#[derive(Debug)]
enum Msg {
    Record(JournalRecord),
    Flush(mpsc::Sender<u64>),
    Shutdown,
}

/// The producers' side: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct JournalHandle {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl JournalHandle {
    /// Queue a record. Never blocks: if the queue is full or the writer has
    /// stopped, the record is dropped, counted, and `false` returned.
    pub fn record(&self, record: JournalRecord) -> bool {
        match self.tx.try_send(Msg::Record(record)) {
            Ok(()) => {
                self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) => {
                self.shared
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped_closed.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Records lost so far (queue full, writer stopped, disk failing past
    /// the backlog): the metric `lifeline_journal_dropped_total`.
    pub fn dropped(&self) -> u64 {
        self.stats().dropped()
    }

    /// The sequence number of the last record known durable (0: none).
    /// Records are numbered in the order the writer receives them; with one
    /// producer, that is the order of `record` calls that returned `true`.
    pub fn fsynced_seq(&self) -> u64 {
        self.shared.fsynced_seq.load(Ordering::Acquire)
    }

    /// Records made durable since open.
    pub fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// All counters.
    pub fn stats(&self) -> JournalStats {
        let s = &self.shared;
        JournalStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            durable: s.durable.load(Ordering::Acquire),
            fsynced_seq: s.fsynced_seq.load(Ordering::Acquire),
            bytes: s.bytes.load(Ordering::Relaxed),
            dropped_queue_full: s.dropped_queue_full.load(Ordering::Relaxed),
            dropped_closed: s.dropped_closed.load(Ordering::Relaxed),
            dropped_disk: s.dropped_disk.load(Ordering::Relaxed),
            write_errors: s.write_errors.load(Ordering::Relaxed),
            failing: s.failing.load(Ordering::Relaxed),
            segments_created: s.segments_created.load(Ordering::Relaxed),
            segments_deleted: s.segments_deleted.load(Ordering::Relaxed),
        }
    }

    /// Block until every record queued before this call has been written and
    /// fsynced (or the write failed); returns [`fsynced_seq`](Self::fsynced_seq).
    /// For tests, the demo and shutdown paths: never call it on the routing
    /// path.
    pub fn flush(&self) -> u64 {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return self.fsynced_seq();
        }
        rx.recv().unwrap_or_else(|_| self.fsynced_seq())
    }
}

/// Owns the writer thread. Dropping it shuts the writer down like
/// [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct JournalWriter {
    handle: JournalHandle,
    thread: Option<JoinHandle<()>>,
    first_seq: u64,
    dir: PathBuf,
}

impl JournalWriter {
    /// Open (creating it if needed) the journal directory and start the
    /// writer thread. Existing segments are never appended to: the first
    /// record of this run opens a new segment, numbered after the last
    /// record found. One writer per directory.
    ///
    /// The journal holds callers' identities and locations, so it is kept
    /// private to the user the gateway runs as: the directory is created
    /// with mode 0700 and segments with 0600. A directory or segment found
    /// more open is tightened, with a WARN; a directory that cannot be
    /// tightened (owned by another user) is an error rather than a journal
    /// others can read.
    pub fn open(dir: impl Into<PathBuf>, opts: JournalOptions) -> io::Result<Self> {
        let dir = dir.into();
        private_dir(&dir)?;
        let next_seq = next_seq_in(&dir)?;
        private_segments(&dir);
        let shared = Arc::new(Shared::default());
        shared
            .fsynced_seq
            .store(next_seq.saturating_sub(1), Ordering::Release);
        let (tx, rx) = mpsc::sync_channel(opts.queue_capacity.max(1));
        let mut worker = Worker {
            dir: dir.clone(),
            opts,
            shared: shared.clone(),
            next_seq,
            active: None,
            batch: Batch::default(),
            failure: None,
        };
        worker.enforce_retention();
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || worker.run(rx))?;
        Ok(Self {
            handle: JournalHandle { tx, shared },
            thread: Some(thread),
            first_seq: next_seq,
            dir,
        })
    }

    /// A handle for producers.
    pub fn handle(&self) -> JournalHandle {
        self.handle.clone()
    }

    /// The sequence number the first record of this run gets.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write and fsync everything queued, stop the thread, and return the
    /// final counters. Records sent afterwards through remaining handles are
    /// dropped and counted.
    pub fn shutdown(mut self) -> JournalStats {
        self.stop();
        self.handle.stats()
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.handle.tx.send(Msg::Shutdown);
            if t.join().is_err() {
                tracing::error!("journal writer thread panicked");
            }
        }
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Mode of the journal directory: its owner only.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of a journal segment: its owner may read and write it.
pub(crate) const FILE_MODE: u32 = 0o600;

/// A new segment file, readable and writable by its owner only
/// ([`FILE_MODE`], whatever the umask allows beyond it).
fn new_segment_file(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create_new(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(FILE_MODE);
    }
    opts.open(path)
}

/// Create `dir` (and missing parents) with [`DIR_MODE`], or tighten an
/// existing one that others may enter.
fn private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
        let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            let tight = mode & !0o077;
            fs::set_permissions(dir, fs::Permissions::from_mode(tight)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "journal directory {} can be read by other users (mode {mode:04o}) and \
                         cannot be made private: {e}",
                        dir.display()
                    ),
                )
            })?;
            tracing::warn!(
                dir = %dir.display(),
                was = format!("{mode:04o}"),
                now = format!("{tight:04o}"),
                "journal directory was open to other users: made private to its owner"
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

/// Tighten segments of earlier runs that others may read to [`FILE_MODE`].
/// A failure is logged, not fatal: the private directory already keeps
/// other users out.
fn private_segments(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(segments) = list_segments(dir) else {
            return;
        };
        let mut tightened = 0usize;
        for path in segments {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 == 0 {
                continue;
            }
            match fs::set_permissions(&path, fs::Permissions::from_mode(mode & !0o077)) {
                Ok(()) => tightened += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "journal segment readable by other users could not be made private")
                }
            }
        }
        if tightened > 0 {
            tracing::warn!(
                dir = %dir.display(),
                segments = tightened,
                "journal segments were readable by other users: made private to their owner"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// The sequence number the next record in `dir` gets.
fn next_seq_in(dir: &Path) -> io::Result<u64> {
    let segments = list_segments(dir)?;
    let Some(last) = segments.last() else {
        return Ok(1);
    };
    let named = last
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(crate::format::parse_segment_name)
        .map_or(1, |(first, _)| first);
    let seg = read_segment(last);
    for issue in &seg.issues {
        tracing::warn!(%issue, "journal: found on open");
    }
    let after_last = seg.entries.last().map_or(0, |e| e.seq.saturating_add(1));
    Ok(named.max(after_last).max(seg.first_seq).max(1))
}

/// Framed records waiting to be written.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    first_seq: u64,
    count: u64,
    /// When the oldest waiting record arrived.
    since: Option<Instant>,
}

#[derive(Debug)]
struct Active {
    file: File,
    path: PathBuf,
    /// Bytes known written and fsynced.
    len: u64,
    opened: Instant,
}

#[derive(Debug)]
struct Failure {
    retry_at: Instant,
    since: Instant,
    errors: u64,
    last_logged: Instant,
}

#[derive(Debug)]
struct Worker {
    dir: PathBuf,
    opts: JournalOptions,
    shared: Arc<Shared>,
    next_seq: u64,
    active: Option<Active>,
    batch: Batch,
    failure: Option<Failure>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let now = Instant::now();
            let wait = self.next_wake().map(|t| t.saturating_duration_since(now));
            let msg = match wait {
                Some(w) => rx.recv_timeout(w),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(Msg::Record(r)) => {
                    self.push(r);
                    // Records arriving until the batch is due are taken
                    // together then: one wake-up per commit rather than
                    // one per record.
                    self.linger();
                    loop {
                        match rx.try_recv() {
                            Ok(Msg::Record(r)) => {
                                self.push(r);
                                if self.batch.count >= self.opts.group_commit_records as u64 {
                                    self.commit(false);
                                }
                            }
                            Ok(Msg::Flush(reply)) => {
                                self.commit(true);
                                let _ = reply.send(self.shared.fsynced_seq.load(Ordering::Acquire));
                            }
                            Ok(Msg::Shutdown) => return self.finish(&rx),
                            Err(_) => break,
                        }
                    }
                    self.commit(false);
                }
                Ok(Msg::Flush(reply)) => {
                    self.commit(true);
                    let _ = reply.send(self.shared.fsynced_seq.load(Ordering::Acquire));
                }
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    return self.finish(&rx);
                }
                Err(RecvTimeoutError::Timeout) => self.commit(false),
            }
        }
    }

    /// Wait until the open batch is due (not while the disk is failing:
    /// then the retry time decides).
    fn linger(&self) {
        if self.failure.is_some() {
            return;
        }
        if let Some(due) = self.next_wake() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }

    /// When the loop must wake up without a message.
    fn next_wake(&self) -> Option<Instant> {
        if let Some(f) = &self.failure {
            return (self.batch.count > 0).then_some(f.retry_at);
        }
        self.batch
            .since
            .map(|s| s + self.opts.group_commit_interval)
    }

    fn finish(mut self, rx: &Receiver<Msg>) {
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Record(r) => self.push(r),
                Msg::Flush(reply) => {
                    let _ = reply.send(self.shared.fsynced_seq.load(Ordering::Acquire));
                }
                Msg::Shutdown => {}
            }
        }
        self.commit(true);
        if self.batch.count > 0 {
            tracing::error!(
                records = self.batch.count,
                "journal: disk still failing at shutdown; records lost"
            );
            self.shared
                .dropped_disk
                .fetch_add(self.batch.count, Ordering::Relaxed);
        }
    }

    fn push(&mut self, r: JournalRecord) {
        // While the disk fails, the batch is the backlog; bounded.
        if self.failure.is_some() && self.batch.count >= self.opts.queue_capacity as u64 {
            self.shared.dropped_disk.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seq = self.next_seq;
        match encode_frame(seq, &r, &mut self.batch.bytes) {
            Ok(()) => {
                if self.batch.count == 0 {
                    self.batch.first_seq = seq;
                    self.batch.since = Some(Instant::now());
                }
                self.batch.count += 1;
                self.next_seq += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, "journal: record not written");
                self.shared.dropped_disk.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Write and fsync the batch if it is due (or `force`).
    fn commit(&mut self, force: bool) {
        if self.batch.count == 0 {
            return;
        }
        let now = Instant::now();
        if !force {
            let due = match &self.failure {
                Some(f) => now >= f.retry_at,
                None => {
                    self.batch.count >= self.opts.group_commit_records as u64
                        || self
                            .batch
                            .since
                            .is_some_and(|s| now >= s + self.opts.group_commit_interval)
                }
            };
            if !due {
                return;
            }
        }
        match self.write_batch(now) {
            Ok(()) => {
                let last = self.batch.first_seq + self.batch.count - 1;
                self.shared
                    .bytes
                    .fetch_add(self.batch.bytes.len() as u64, Ordering::Relaxed);
                self.shared
                    .durable
                    .fetch_add(self.batch.count, Ordering::AcqRel);
                self.shared.fsynced_seq.store(last, Ordering::Release);
                self.batch = Batch::default();
                if let Some(f) = self.failure.take() {
                    self.shared.failing.store(false, Ordering::Relaxed);
                    tracing::warn!(
                        failed_for_ms = now.duration_since(f.since).as_millis() as u64,
                        errors = f.errors,
                        dropped_total = self.dropped_total(),
                        "journal: writing resumed"
                    );
                }
            }
            Err(e) => self.failed(now, e),
        }
    }

    fn dropped_total(&self) -> u64 {
        self.shared.dropped_disk.load(Ordering::Relaxed)
            + self.shared.dropped_queue_full.load(Ordering::Relaxed)
    }

    fn failed(&mut self, now: Instant, e: io::Error) {
        self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
        self.shared.failing.store(true, Ordering::Relaxed);
        // After a failed write or fsync nothing past the last good fsync in
        // that file can be trusted (a failed fsync may have dropped dirty
        // pages): cut the file back to it and start a new segment next time.
        if let Some(a) = self.active.take() {
            if a.len <= header_len(&self.opts.node_name) as u64 {
                let _ = fs::remove_file(&a.path);
            } else if let Err(te) = a.file.set_len(a.len) {
                tracing::warn!(path = %a.path.display(), error = %te,
                    "journal: cannot cut back a failed segment; its tail will read as torn");
            }
        }
        match &mut self.failure {
            Some(f) => {
                f.errors += 1;
                f.retry_at = now + self.opts.retry_interval;
                if now.duration_since(f.last_logged) >= Duration::from_secs(10) {
                    f.last_logged = now;
                    tracing::error!(error = %e, backlog = self.batch.count,
                        dropped_total = self.dropped_total(),
                        "journal: still cannot write; calls continue, records wait in the backlog");
                }
            }
            None => {
                tracing::error!(error = %e, backlog = self.batch.count,
                    "journal: write failed; calls continue, records wait in the backlog and are dropped (counted) when it is full");
                self.failure = Some(Failure {
                    retry_at: now + self.opts.retry_interval,
                    since: now,
                    errors: 1,
                    last_logged: now,
                });
            }
        }
    }

    fn write_batch(&mut self, now: Instant) -> io::Result<()> {
        if let Some(f) = &self.opts.faults {
            f.check()?;
        }
        let rotate = self.active.as_ref().is_some_and(|a| {
            a.len >= self.opts.max_segment_bytes
                || now.duration_since(a.opened) >= self.opts.max_segment_age
        });
        if rotate {
            self.active = None;
            self.enforce_retention_keep(None);
        }
        if self.active.is_none() {
            self.active = Some(self.create_segment(now)?);
        }
        let Some(active) = self.active.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        active.file.write_all(&self.batch.bytes)?;
        active.file.sync_data()?;
        active.len += self.batch.bytes.len() as u64;
        Ok(())
    }

    fn create_segment(&mut self, now: Instant) -> io::Result<Active> {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A segment with this first record may exist already: one created
        // just before a crash, before any record reached it. The time in the
        // name only breaks the tie, so take the next free one.
        let mut attempt = 0;
        let (path, mut file) = loop {
            let path = self
                .dir
                .join(segment_name(self.batch.first_seq, unix + attempt));
            match new_segment_file(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let res = file
            .write_all(&encode_header(self.batch.first_seq, &self.opts.node_name))
            .and_then(|()| file.sync_data())
            .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = res {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.shared.segments_created.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(path = %path.display(), "journal: new segment");
        Ok(Active {
            file,
            path,
            len: header_len(&self.opts.node_name) as u64,
            opened: now,
        })
    }

    fn enforce_retention(&mut self) {
        let keep = self.active.as_ref().map(|a| a.path.clone());
        self.enforce_retention_keep(keep.as_deref());
    }

    /// Delete the oldest segments beyond the retention limits, never `keep`.
    fn enforce_retention_keep(&mut self, keep: Option<&Path>) {
        if self.opts.retention_bytes.is_none() && self.opts.retention_age.is_none() {
            return;
        }
        let segments = match list_segments(&self.dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "journal: cannot list segments for retention");
                return;
            }
        };
        let mut sized: VecDeque<(PathBuf, u64, Option<SystemTime>)> = segments
            .into_iter()
            .filter_map(|p| {
                let m = fs::metadata(&p).ok()?;
                Some((p, m.len(), m.modified().ok()))
            })
            .collect();
        let mut total: u64 = sized.iter().map(|s| s.1).sum();
        let now = SystemTime::now();
        let mut deleted = false;
        while let Some((path, len, modified)) = sized.front().cloned() {
            if keep == Some(path.as_path()) {
                break;
            }
            let too_big = self.opts.retention_bytes.is_some_and(|max| total > max);
            let too_old = match (self.opts.retention_age, modified) {
                (Some(age), Some(m)) => now.duration_since(m).is_ok_and(|d| d > age),
                _ => false,
            };
            if !too_big && !too_old {
                break;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), bytes = len, "journal: retention deleted segment");
                    self.shared.segments_deleted.fetch_add(1, Ordering::Relaxed);
                    deleted = true;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "journal: retention cannot delete");
                    break;
                }
            }
            total = total.saturating_sub(len);
            sized.pop_front();
        }
        if deleted {
            let _ = sync_dir(&self.dir);
        }
    }
}

/// fsync a directory so a created or deleted file's entry is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
