//! `lifeline-journal`: the crash-safe record of every call and every trunk
//! state change, and the incident report and callback list made from it.
//!
//! # Pieces
//!
//! - [`CallAggregator`] (pure, no IO, no clock): fed the proxy's
//!   [`lifeline_proxy::Event`]s, it builds one [`CallRecord`] per call when
//!   the call ends (connected, failed, cancelled, no route; with its
//!   [`CallNote`]s: rescues, hedges, trunks skipped for capacity), one
//!   [`TrunkRecord`] per trunk state change, drain or canary, and keeps the recent
//!   failed emergency calls in a bounded [`FailedCalls`] ring for the admin
//!   API's `GET /calls/failed`. What never reached a trunk (non-emergency
//!   calls with no route, messages refused outside any call) it counts
//!   instead: one [`RefusedRecord`] per source address and [`Refusal`] per
//!   interval (60 s), with a bounded number of sources, so a flood of junk
//!   cannot push real calls out of the journal's retention.
//! - [`JournalWriter`]: a dedicated thread that appends records to segment
//!   files and group commits them (write + `fsync` at least every 20 ms or N
//!   records). [`JournalHandle::record`] never blocks: when the queue is full
//!   the record is dropped and counted; when the disk fails, the error is
//!   logged at ERROR, records wait in a bounded backlog (then are dropped and
//!   counted), and writing resumes when the disk does.
//! - [`format`](mod@format) and [`reader`]: the framing (`[u32 len][u32 crc32c][payload]`),
//!   and a reader that never panics on a corrupt file, skips a torn final
//!   record and resynchronises past corruption in the middle.
//! - [`report`]: the incident timeline, outages and the calls they touched,
//!   the callback list and totals, as table, CSV or JSON.
//!
//! # Wiring (the daemon)
//!
//! ```no_run
//! # use std::time::{Instant, SystemTime};
//! # fn demo(proxy: &mut lifeline_proxy::Proxy) -> std::io::Result<()> {
//! use lifeline_journal::{CallAggregator, JournalOptions, JournalWriter, Names, TimeAnchor};
//! let writer = JournalWriter::open("/var/lib/lifeline/journal", JournalOptions::default())?;
//! let journal = writer.handle();
//! let mut agg = CallAggregator::new(
//!     Names::from_proxy(proxy),
//!     TimeAnchor::new(Instant::now(), SystemTime::now()),
//!     Default::default(),
//! );
//! let failed = agg.failed_calls(); // clone into the admin API
//! while let Some(ev) = proxy.poll_event() {
//!     agg.handle(&ev);
//!     while let Some(rec) = agg.poll_record() {
//!         journal.record(rec);
//!     }
//! }
//! // Every housekeeping tick: the counts of refusals whose interval ended.
//! agg.handle_timeout(Instant::now());
//! while let Some(rec) = agg.poll_record() {
//!     journal.record(rec);
//! }
//! # let _ = failed;
//! // At shutdown (calls in progress, and the refusals counted so far):
//! agg.finish_all(Instant::now());
//! while let Some(rec) = agg.poll_record() {
//!     journal.record(rec);
//! }
//! writer.shutdown();
//! # Ok(()) }
//! ```

mod aggregate;
pub mod format;
pub mod reader;
mod record;
pub mod report;
#[doc(hidden)]
pub mod testing;
mod writer;

pub use aggregate::{
    AggregatorLimits, AggregatorStats, CallAggregator, CallbackEntry, FailedCalls, Names,
    TimeAnchor, TriedTrunk,
};
pub use format::{Entry, Issue};
pub use reader::{JournalReader, Origin};
pub use record::{
    AttemptRecord, AttemptResult, CallNote, CallOutcome, CallRecord, Caller, EmergencyRule,
    FailReason, JournalRecord, LateRecord, LocationRecord, Micros, NoteRecord, Refusal,
    RefusedRecord, SkipReason, TrunkChange, TrunkRecord, TrunkState, WallTime,
};
pub use writer::{Faults, JournalHandle, JournalOptions, JournalStats, JournalWriter};
