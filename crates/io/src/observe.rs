//! The event stage: the proxy's events observed outside the core's lock.
//!
//! Metrics, log lines and the journal's aggregation of call records are
//! not routing, yet they used to run under the core's lock, once per event
//! the proxy produced. Now the core only queues, under its lock and in the
//! order it produced them, what the observers need:
//!
//! ```text
//!  core (locked)                        event stage (one thread at a time)
//!  -------------                        ----------------------------------
//!  poll_event   -> Event(ev, now)  --+
//!  reload       -> Names(snapshot) --+--> queue --> every EventSink, in order
//!  housekeeping -> Tick(now)       --+              every SinkTick, in order
//! ```
//!
//! and whichever thread lets go of the core drains the queue through the
//! sinks (the same flat combining as the core and the send queue,
//! [`crate::combiner`]): if another thread is draining it, that thread
//! takes these too before it stops. So the sinks see every event once, in
//! the order the core produced them, one thread at a time, while another
//! thread routes.
//!
//! The sinks do not see the proxy: what they need of it, the names of the
//! trunks and routes events refer to by number, comes as a
//! [`ProxyNames`] snapshot, taken by the core at the start and again after
//! every [`Input::Call`](crate::Input::Call) (or core `Tick`) that changed
//! them (a reload), queued ahead of the events that followed it. A
//! housekeeping tick's [`SinkTick`]s run in the same order: after every
//! event the core produced before the tick, so a journal interval never
//! ends before an event that fell in it is counted.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lifeline_proxy::{Event, Proxy, TrunkId};

use crate::combiner::Combiner;

/// Observers of the proxy's events (metrics, journal, logs, the demo).
/// They run outside the core's lock, one thread at a time, and see every
/// event once, in the order the core produced them, with the instant the
/// core handled it and the proxy's names as of then.
pub type EventSink = Box<dyn FnMut(&Event, Instant, &Arc<ProxyNames>) + Send>;

/// Called in the event stage every housekeeping tick, after the sinks have
/// seen every event produced before the tick: work that must not run ahead
/// of the events (closing the journal's refusal intervals, summing up
/// suppressed log lines).
pub type SinkTick = Box<dyn FnMut(Instant) + Send>;

/// The proxy's names for what its events refer to by number: every trunk
/// by [`TrunkId`] (retired ones too: ids are never reused), every route
/// with its trunks in priority order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyNames {
    /// In id order.
    trunks: Vec<(TrunkId, String)>,
    routes: Vec<(String, Vec<TrunkId>)>,
}

impl ProxyNames {
    /// The names `proxy` knows now.
    pub fn of(proxy: &Proxy) -> Self {
        Self {
            trunks: proxy
                .health()
                .trunks()
                .map(|t| (t.id, t.name.to_string()))
                .collect(),
            routes: proxy
                .routes()
                .map(|(name, trunks)| (name.to_string(), trunks.to_vec()))
                .collect(),
        }
    }

    /// A trunk's name, if the proxy has (had) that trunk.
    pub fn trunk(&self, id: TrunkId) -> Option<&str> {
        match self.trunks.get(id.index()) {
            Some((i, name)) if *i == id => Some(name),
            _ => self
                .trunks
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, n)| n.as_str()),
        }
    }

    /// Every trunk, in id order (the order they were added).
    pub fn trunks(&self) -> impl Iterator<Item = (TrunkId, &str)> + '_ {
        self.trunks.iter().map(|(id, n)| (*id, n.as_str()))
    }

    /// Every route, with its trunks in priority order.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &[TrunkId])> + '_ {
        self.routes.iter().map(|(n, t)| (n.as_str(), t.as_slice()))
    }
}

/// Items the event stage may hold before a thread that hands it more waits
/// for it. Normally the stage keeps up and holds a few; a sink that blocks
/// (a log pipe nobody reads) would otherwise let events pile up with the
/// call rate while routing goes on. Past this, the threads that let go of
/// the core wait for the stage, so the bounded input queue fills and sheds
/// instead, as when the sinks ran under the core's lock.
pub const STAGE_BACKLOG: usize = 65_536;

/// What the core hands the event stage, in the order it happened.
pub(crate) enum Observed {
    /// An event, and the instant the core handled it.
    Event(Event, Instant),
    /// The names changed (a reload): events from here on use these.
    Names(Arc<ProxyNames>),
    /// A housekeeping tick ran at this instant.
    Tick(Instant),
}

/// The sinks and what they need between items.
pub(crate) struct Observers {
    sinks: Vec<EventSink>,
    ticks: Vec<SinkTick>,
    names: Arc<ProxyNames>,
}

impl Observers {
    /// `sinks` and `ticks` (the core hands them its names first).
    pub(crate) fn new(sinks: Vec<EventSink>, ticks: Vec<SinkTick>) -> Self {
        Self {
            sinks,
            ticks,
            names: Arc::default(),
        }
    }

    fn any(&self) -> bool {
        !self.sinks.is_empty() || !self.ticks.is_empty()
    }

    fn observe(&mut self, item: Observed) {
        match item {
            Observed::Event(ev, now) => {
                for s in &mut self.sinks {
                    s(&ev, now, &self.names);
                }
            }
            Observed::Names(n) => self.names = n,
            Observed::Tick(now) => {
                for t in &mut self.ticks {
                    t(now);
                }
            }
        }
    }
}

/// The event stage: its queue, the observers (`None` before the start and
/// after the stop) and how far it has got.
pub(crate) struct Stage {
    queue: Combiner<Observed, Option<Observers>>,
    /// Items the core has produced for the stage (counted under the core's
    /// lock, when produced, before they are handed over).
    produced: AtomicU64,
    /// Items the stage has taken off its queue and observed (or dropped,
    /// stopped).
    observed: AtomicU64,
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage")
            .field("queue", &self.queue)
            .field("produced", &self.produced)
            .field("observed", &self.observed)
            .finish()
    }
}

impl Stage {
    pub(crate) fn new() -> Self {
        Self {
            queue: Combiner::unbounded(None),
            produced: AtomicU64::new(0),
            observed: AtomicU64::new(0),
        }
    }

    /// Put the observers in place (before the core produces anything).
    pub(crate) fn install(&self, observers: Observers) {
        *self.queue.lock() = Some(observers);
    }

    /// Whether anything observes (otherwise the core queues nothing).
    pub(crate) fn observing(&self) -> bool {
        self.queue.lock().as_ref().is_some_and(Observers::any)
    }

    /// Under the core's lock: the core has produced `total` items so far
    /// (handed over later, in order, with [`Stage::hand_over`]).
    pub(crate) fn produced(&self, total: u64) {
        self.produced.store(total, Ordering::Relaxed);
    }

    /// Under the core's lock: queue what the core produced, in order.
    pub(crate) fn hand_over(&self, items: impl IntoIterator<Item = Observed>) {
        self.queue.queue().extend(items);
    }

    /// How many items the core has produced so far (read under the core's
    /// lock, this counts every event of the inputs handled before).
    pub(crate) fn produced_count(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }

    /// Whether the stage has observed the first `mark` items.
    pub(crate) fn reached(&self, mark: u64) -> bool {
        self.observed.load(Ordering::Acquire) >= mark
    }

    /// Observe what is queued if no other thread is: the one that is takes
    /// these too before it stops.
    /// Past [`STAGE_BACKLOG`] queued, wait for the thread that is at it
    /// (counted in `waits`, before the wait).
    pub(crate) fn run(&self, waits: &AtomicU64) {
        self.queue
            .combine(|observers| self.drain(observers), |()| {});
        let backlog = self
            .produced
            .load(Ordering::Relaxed)
            .saturating_sub(self.observed.load(Ordering::Acquire));
        if backlog > STAGE_BACKLOG as u64 {
            waits.fetch_add(1, Ordering::Relaxed);
            let mut observers = self.queue.lock();
            self.drain(&mut observers);
        }
    }

    /// Observe everything queued, waiting for a thread that is at it; then
    /// let the observers go (the core has stopped: nothing more comes).
    pub(crate) fn stop(&self) {
        let mut observers = self.queue.lock();
        self.drain(&mut observers);
        *observers = None;
    }

    /// Let the observers go without observing what is queued (the engine
    /// failed).
    pub(crate) fn abandon(&self) {
        let mut observers = self.queue.lock();
        *observers = None;
        while self.queue.queue().pop().is_some() {
            self.observed.fetch_add(1, Ordering::Release);
        }
    }

    fn drain(&self, observers: &mut Option<Observers>) {
        while let Some(item) = self.queue.queue().pop() {
            if let Some(o) = observers.as_mut() {
                o.observe(item);
            }
            self.observed.fetch_add(1, Ordering::Release);
        }
    }
}
