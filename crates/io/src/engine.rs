//! The core behind its combining lock, the send queue, the timer thread,
//! and what happens when any of them panics.
//!
//! The core — the proxy (every transaction, every dialog, the trunks'
//! health) and what its output goes to — is one object, used by one thread
//! at a time: the IO thread that received a message handles it to
//! completion when the core is free, and otherwise leaves it queued for the
//! thread holding the core, which takes it before it lets go
//! ([`crate::combiner`]). What the core produces goes to an ordered send
//! queue, drained the same way outside the core's lock by whichever thread
//! finds it free; its events go, in order too, to the event stage
//! ([`crate::observe`]: metrics, logs, the journal), also outside the
//! lock. A timer thread sleeps until the core's next deadline.
//!
//! This replaced a dedicated core thread fed by a channel: waking that
//! thread for every message (futex, context switch) was a fifth of the
//! gateway's CPU at 500 calls/s (docs/PERFORMANCE.md). The core is still
//! one thing, used by one thread at a time, in the order inputs arrive.
//!
//! This module knows nothing of sockets: the send queue drains into a
//! [`Wire`] (`crate::net::Outbound` in the gateway).

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread::Thread;
use std::time::{Duration, Instant};

use lifeline_proxy::{Peer, Proxy, ProxyConfig, Transmit, TransportError, TrunkId};
use lifeline_sip::{Message, Verdict};

use crate::admission::{Admit, Gate, INPUT_QUEUE_BYTES};
use crate::capture::Capture;
use crate::clock::Clock;
use crate::combiner::Combiner;
use crate::observe::{Observed, ProxyNames, Stage};
use crate::overload::Overload;
use crate::stats::IoStats;

/// Inputs queued for the core (while another thread holds it) before new
/// ones are dropped.
pub const INPUT_QUEUE: usize = 64 * 1024;

/// The timer thread's grain: it wakes on a grid of this step, and runs
/// every timer due by then, so timers that fall due close together (at
/// 500 calls/s, thousands a second: retransmission, failover and linger
/// timers, most of them already stale) share one wake-up instead of one
/// each. A timer fires at most this much late; RFC 3261's shortest timer
/// is T1 (500 ms), a call's `failover_after` 200 ms by default. Inputs
/// handled meanwhile still run whatever is due first (`run_queued`).
pub const TIMER_GRAIN: Duration = Duration::from_millis(4);

/// Where the core's output goes: sends messages, and returns each failure
/// to reach a trunk as evidence against it.
pub(crate) trait Wire: Send + Sync + fmt::Debug {
    /// Send every message `ts` yields (the send queue, as long as it has
    /// any), keeping their order to each destination; it may hold a few
    /// back to send them together (one syscall for many datagrams), but
    /// sends them all before it returns. Each refusal by a trunk (ICMP,
    /// ...) goes to `refused`.
    fn send_all(
        &self,
        ts: &mut dyn Iterator<Item = Transmit>,
        refused: &mut dyn FnMut(TrunkId, TransportError),
    );
}

/// A message off the wire, parsed and validated on an IO thread.
#[derive(Debug)]
pub struct Received {
    /// Who sent it, and over what.
    pub from: Peer,
    /// The message, if it parsed.
    pub msg: Option<Message>,
    /// What validation made of it.
    pub verdict: Verdict,
}

/// Work for the core: runs against the proxy with the current time.
pub type CoreFn = Box<dyn FnOnce(&mut Proxy, Instant) + Send>;

/// Called by the core, under its lock, every housekeeping tick
/// (`Options::tick_every`); what must be ordered with the events instead
/// is a [`crate::SinkTick`].
pub type Tick = Box<dyn FnMut(&mut Proxy, Instant, &IoStats) + Send>;

/// What reaches the core.
pub enum Input {
    /// A message, already parsed and validated on an IO thread.
    Message(Box<Received>),
    /// A send to (or receive from) a trunk failed.
    TransportError {
        /// The trunk.
        trunk: TrunkId,
        /// How it failed.
        kind: TransportError,
    },
    /// Run a closure against the proxy (admin commands, reloads, status,
    /// tests). If it changed the trunks' or routes' names, the event
    /// sinks get the new ones ahead of the events that follow.
    Call(CoreFn),
    /// Stop taking new calls, finish the rest (for at most `grace`), then
    /// stop.
    Shutdown {
        /// The longest the calls in progress are given.
        grace: Duration,
    },
}

impl Input {
    /// The bytes it holds, for the queue's byte bound.
    fn size(&self) -> usize {
        match self {
            Input::Message(r) => r.msg.as_ref().map_or(0, |m| m.as_bytes().len()),
            _ => 0,
        }
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Message(r) => write!(f, "Message({:?}, {:?})", r.from, r.verdict),
            Input::TransportError { trunk, kind } => {
                write!(f, "TransportError({trunk:?}, {kind:?})")
            }
            Input::Call(_) => f.write_str("Call"),
            Input::Shutdown { grace } => write!(f, "Shutdown({grace:?})"),
        }
    }
}

/// The way into the core: queue an input and see it handled.
///
/// An IO thread that has received and parsed a message queues it and, if
/// the core is free, takes it and handles everything queued itself (run to
/// completion: no hand-off to another thread, no second wake-up); if
/// another thread holds the core, that thread takes the input before it
/// lets go. The timer thread is woken only when an input makes a deadline
/// earlier.
#[derive(Clone, Debug)]
pub struct InputTx {
    pub(crate) shared: Arc<Shared>,
}

impl InputTx {
    /// Queue an input unless the queue is full, in entries or bytes (then
    /// it comes back), and handle it now if the core is free.
    pub fn try_send(&self, input: Input) -> Result<(), Input> {
        self.try_queue(input)?;
        self.shared.combine();
        Ok(())
    }

    /// [`try_send`](Self::try_send) without handling it yet: the caller
    /// calls [`handle_queued`](Self::handle_queued) once it has queued the
    /// rest of what one wake-up received, with no await in between, so
    /// that the core handles them together and their output leaves in one
    /// batch.
    pub(crate) fn try_queue(&self, input: Input) -> Result<(), Input> {
        let size = input.size();
        let bytes = &self.shared.stats.queued_bytes;
        if size > 0 && bytes.load(Ordering::Relaxed) + size > INPUT_QUEUE_BYTES {
            return Err(input);
        }
        self.shared.core.queue().try_push(input)?;
        bytes.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// Handle what is queued now if the core is free (see
    /// [`try_queue`](Self::try_queue)).
    pub(crate) fn handle_queued(&self) {
        self.shared.combine();
    }

    /// Queue an input, waiting for room, and handle it now if the core is
    /// free.
    pub fn send(&self, input: Input) {
        let size = input.size();
        self.shared.core.queue().push(input);
        self.shared
            .stats
            .queued_bytes
            .fetch_add(size, Ordering::Relaxed);
        self.shared.combine();
    }

    /// Put `cfg`'s `limits` in force on the IO threads' admission (the
    /// gateway does at start-up; the daemon again on every reload).
    pub fn set_limits(&self, cfg: &ProxyConfig) {
        self.shared.admit.configure(cfg);
    }

    /// What an IO thread does with request `m` from `from` before queuing
    /// it (see [`crate::admission`]).
    pub(crate) fn gate(&self, from: Peer, m: &Message) -> Gate {
        let queue = self.shared.core.queue();
        self.shared.admit.check(
            self.shared.clock.now(),
            from.addr.ip(),
            m,
            queue.len(),
            self.shared.stats.queued_bytes.load(Ordering::Relaxed),
            &self.shared.stats,
        )
    }

    /// The capture, if configured: one load and a branch when it is not.
    #[inline]
    pub(crate) fn capture(&self) -> Option<&Capture> {
        self.shared.capture.get().map(|c| &**c)
    }

    /// `fut` as a task whose panic stops the engine (see
    /// [`Shared::fail`]) rather than ending only that task.
    pub(crate) fn supervise<F: Future<Output = ()>>(&self, fut: F) -> Supervised<F> {
        Supervised {
            fut: Box::pin(fut),
            input: self.clone(),
        }
    }
}

/// The core, its input queue, the send queue and the timer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    core: Combiner<Input, Slot>,
    /// What the core produced, in order, waiting to be sent; the state is
    /// where to (`None` before the start and after the stop).
    sends: Combiner<Transmit, Option<Arc<dyn Wire>>>,
    /// The core's events, in order, waiting for the sinks.
    stage: Arc<Stage>,
    timer: OnceLock<Thread>,
    stats: Arc<IoStats>,
    clock: Arc<dyn Clock>,
    /// Why the engine stopped by itself (a panic), if it did.
    failure: OnceLock<String>,
    /// Admission on the IO threads.
    admit: Admit,
    /// The origin of the timer thread's grid ([`TIMER_GRAIN`]).
    epoch: Instant,
    /// Capture to a HEP collector, when configured (set once, before the
    /// sockets start receiving).
    pub(crate) capture: OnceLock<Arc<Capture>>,
}

/// What the core lock guards.
#[derive(Debug)]
struct Slot {
    /// `None` before the start (inputs wait) and after the stop.
    core: Option<Core>,
    /// Stopped: inputs are dropped.
    stopped: bool,
    /// When the timer thread means to wake up.
    timer_at: Option<Instant>,
}

/// A new core entry: inputs queue until [`Shared::install`] puts a core
/// behind it.
pub(crate) fn core_entry(stats: Arc<IoStats>, clock: Arc<dyn Clock>) -> (InputTx, Arc<Shared>) {
    let shared = Arc::new(Shared {
        core: Combiner::bounded(
            Slot {
                core: None,
                stopped: false,
                timer_at: None,
            },
            INPUT_QUEUE,
        ),
        sends: Combiner::unbounded(None),
        stage: Arc::new(Stage::new()),
        timer: OnceLock::new(),
        stats,
        failure: OnceLock::new(),
        admit: Admit::new(),
        epoch: clock.now(),
        capture: OnceLock::new(),
        clock,
    });
    (
        InputTx {
            shared: shared.clone(),
        },
        shared,
    )
}

impl Shared {
    /// Put the core in place, with where its output goes, and handle what
    /// arrived meanwhile.
    pub(crate) fn install(&self, core: Core, wire: Arc<dyn Wire>) {
        *self.sends.lock() = Some(wire);
        self.core.lock().core = Some(core);
        self.combine();
    }

    /// The event stage (its observers are put in place before the core).
    pub(crate) fn stage(&self) -> &Arc<Stage> {
        &self.stage
    }

    /// Why the engine stopped by itself, if it did.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Handle what is queued if nobody else is: whoever holds the core looks
    /// at the queue again after letting go, so an input never waits for
    /// the next message.
    fn combine(&self) {
        self.guarded(|| {
            self.core.combine(
                |slot| {
                    let now = self.clock.now();
                    self.run_queued(slot, now);
                    now
                },
                |held_since| {
                    self.busy(held_since);
                    self.stage.run(&self.stats.stage_waits);
                    self.send_queued();
                },
            );
        });
    }

    /// Send what the core produced, in the order it produced it, if no
    /// other thread is sending: the one that is takes these too before it
    /// stops. Sends (a syscall each, on loopback the receiver's work too)
    /// are outside the core's lock, so one thread sends while another
    /// routes.
    fn send_queued(&self) {
        let mut refused = false;
        self.sends.combine(
            |wire| {
                let queue = self.sends.queue();
                let Some(wire) = wire.as_ref() else {
                    while queue.pop().is_some() {} // stopped: nothing to send on
                    return;
                };
                // The whole queue in one go, so that the wire can batch.
                wire.send_all(
                    &mut std::iter::from_fn(|| queue.pop()),
                    &mut |trunk, kind| {
                        // Evidence against the trunk, through the core.
                        if self
                            .core
                            .queue()
                            .try_push(Input::TransportError { trunk, kind })
                            .is_err()
                        {
                            self.stats.queue_drops.fetch_add(1, Ordering::Relaxed);
                        }
                        refused = true;
                    },
                );
            },
            |()| {},
        );
        if refused {
            self.combine();
        }
    }

    /// Under the core's lock: hand what the core produced to the send queue
    /// and its events to the event stage.
    fn hand_over(&self, core: &mut Core) {
        if !core.pending.is_empty() {
            self.sends.queue().extend(core.pending.drain(..));
        }
        if !core.observed.is_empty() {
            self.stage.hand_over(core.observed.drain(..));
        }
    }

    /// Count the time the core was held since `from`.
    fn busy(&self, from: Instant) {
        let held = self.clock.now().saturating_duration_since(from);
        self.stats
            .core_busy_ns
            .fetch_add(held.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Under the lock: every queued input in order, then the timers if any
    /// is due; wake the timer thread if its sleep now ends too late.
    fn run_queued(&self, slot: &mut Slot, now: Instant) {
        let queue = self.core.queue();
        let Some(core) = slot.core.as_mut() else {
            if slot.stopped {
                while queue.pop().is_some() {}
            }
            return;
        };
        // What fell due before these inputs arrived happens first: a timer
        // due at `now` fires before an input handled at `now` sees the
        // state, so an input never observes a timer that is already late.
        if core.deadline() <= now {
            core.timers(now, queue.len());
        }
        // Each input is handled at the time it is taken off the queue: a
        // long batch (a backlog, or a slow admin call) must not hand later
        // inputs a time already past, or their timers (a call's failover
        // timer above all) would be armed late and fire early.
        let mut now = now;
        let mut n = 0;
        while let Some(i) = queue.pop() {
            self.stats
                .queued_bytes
                .fetch_sub(i.size(), Ordering::Relaxed);
            let slow = matches!(i, Input::Call(_));
            core.input(now, i);
            n += 1;
            if slow || n % 16 == 0 {
                now = self.clock.now();
                // As above: what fell due meanwhile fires first.
                if core.deadline() <= now {
                    core.timers(now, queue.len());
                }
            }
        }
        let mut next = core.deadline();
        if next <= now {
            core.timers(now, queue.len());
            next = core.deadline();
        }
        self.hand_over(core);
        if core.draining.is_some() {
            next = now; // the timer thread decides when the drain is over
        }
        let wake = self.wake_at(next);
        if slot.timer_at.is_none_or(|t| wake < t) {
            slot.timer_at = Some(wake);
            if let Some(t) = self.timer.get() {
                t.unpark();
            }
        }
    }

    /// When the timer thread wakes for a deadline: the first point of the
    /// [`TIMER_GRAIN`] grid at or after it.
    fn wake_at(&self, deadline: Instant) -> Instant {
        let Some(after) = deadline.checked_duration_since(self.epoch) else {
            return deadline;
        };
        let grain = TIMER_GRAIN.as_nanos();
        let steps = after.as_nanos().div_ceil(grain);
        let wake = Duration::from_nanos(u64::try_from(steps * grain).unwrap_or(u64::MAX));
        self.epoch.checked_add(wake).unwrap_or(deadline)
    }

    /// The timer thread: run the core's timers when due, until it stops
    /// (or the engine fails).
    pub(crate) fn timer_loop(&self) {
        let _ = self.timer.set(std::thread::current());
        self.guarded(|| self.timers_until_stopped());
    }

    fn timers_until_stopped(&self) {
        loop {
            let mut slot = self.core.lock();
            let now = self.clock.now();
            let woke_for = slot.timer_at;
            self.run_queued(&mut slot, now);
            let Some(core) = slot.core.as_mut() else {
                return;
            };
            if let Some(at) = woke_for {
                // Woke for a timer: how late?
                core.overload.lag = core.overload.lag.max(now.saturating_duration_since(at));
            }
            if core.timers(now, self.core.queue().len()) {
                self.hand_over(core);
                slot.stopped = true;
                let core = slot.core.take();
                drop(slot);
                // The last events are observed (the sinks let go), the
                // last answers go out; then the sockets are let go.
                self.stage.stop();
                self.send_queued();
                let wire = self.sends.lock().take();
                drop(core);
                drop(wire);
                return;
            }
            self.hand_over(core);
            let wake = self.wake_at(core.deadline());
            slot.timer_at = Some(wake);
            drop(slot);
            self.busy(now);
            self.stage.run(&self.stats.stage_waits);
            self.send_queued();
            if self.core.pending() {
                continue;
            }
            let now = self.clock.now();
            if wake > now {
                std::thread::park_timeout(wake - now);
            }
        }
    }

    /// Run `f`; if it panics, the engine fails.
    fn guarded(&self, f: impl FnOnce()) {
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
            self.fail(format!("panic in the core: {}", panic_message(&*panic)));
        }
    }

    /// Stop for good after a panic: the core (every transaction, the
    /// trunks' health) may be half-updated, so it is dropped rather than
    /// trusted; later inputs are dropped; the timer thread ends, so the
    /// housekeeping tick (readiness, the systemd watchdog) stops and
    /// [`crate::Gateway::join`] returns the failure. The process is
    /// expected to exit and be restarted: a gateway that lost its core
    /// must not look alive. (Release builds abort on a panic before any of
    /// this runs; this is what test and debug builds do.)
    pub(crate) fn fail(&self, what: String) {
        if self.failure.set(what.clone()).is_ok() {
            tracing::error!(error = %what, "the engine failed and stopped: the process must exit");
        }
        let core = {
            let mut slot = self.core.lock();
            slot.stopped = true;
            slot.core.take()
        };
        drop(core);
        self.stage.abandon();
        let wire = self.sends.lock().take();
        drop(wire);
        while self.core.queue().pop().is_some() {}
        if let Some(t) = self.timer.get() {
            t.unpark();
        }
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// An IO task whose panic fails the engine (see [`Shared::fail`]) instead
/// of silently ending that task alone — which, for a socket's receive
/// task, would leave the gateway deaf on that socket while its timer
/// thread kept reporting it healthy.
pub(crate) struct Supervised<F> {
    fut: Pin<Box<F>>,
    input: InputTx,
}

impl<F> fmt::Debug for Supervised<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervised").finish_non_exhaustive()
    }
}

impl<F: Future<Output = ()>> Future for Supervised<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(panic) => {
                this.input
                    .shared
                    .fail(format!("panic on an IO task: {}", panic_message(&*panic)));
                Poll::Ready(())
            }
        }
    }
}

/// The proxy core and what its output goes to; used by one thread at a
/// time (see [`InputTx`]).
pub(crate) struct Core {
    proxy: Proxy,
    /// Transmits produced while the core was held, for the send queue.
    pending: Vec<Transmit>,
    /// Events (and names, and ticks) produced while the core was held, for
    /// the event stage.
    observed: Vec<Observed>,
    /// Where `observed` goes; `None` if nothing observes.
    stage: Option<Arc<Stage>>,
    /// Items produced for the stage so far.
    produced: u64,
    /// The names as last handed to the stage.
    names: Arc<ProxyNames>,
    ticks: Vec<Tick>,
    tick_every: Duration,
    next_tick: Instant,
    draining: Option<Instant>,
    overload: Overload,
    accepting: Arc<AtomicBool>,
    stats: Arc<IoStats>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core around `proxy`, started at `now`: its events go to `stage`
    /// (if it has observers: put them in place first), `ticks` run every
    /// `tick_every` (the first at `now`); `accepting` is cleared when it
    /// starts draining.
    pub(crate) fn new(
        proxy: Proxy,
        now: Instant,
        stage: Arc<Stage>,
        ticks: Vec<Tick>,
        tick_every: Duration,
        accepting: Arc<AtomicBool>,
        stats: Arc<IoStats>,
    ) -> Self {
        let names = Arc::new(ProxyNames::of(&proxy));
        let mut core = Self {
            proxy,
            pending: Vec::new(),
            observed: Vec::new(),
            stage: stage.observing().then_some(stage),
            produced: 0,
            names: names.clone(),
            ticks,
            tick_every,
            next_tick: now,
            draining: None,
            overload: Overload::default(),
            accepting,
            stats,
        };
        // The sinks' first item: the names the core starts with.
        core.observe(Observed::Names(names));
        core.counted();
        core
    }

    /// Handle one input and collect what it produced.
    fn input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Message(r) => {
                let Received { from, msg, verdict } = *r;
                self.proxy.handle_checked(now, from, msg, verdict);
            }
            Input::TransportError { trunk, kind } => {
                tracing::debug!(?trunk, ?kind, "transport error");
                self.proxy.handle_transport_error(now, trunk, kind);
            }
            Input::Call(f) => {
                f(&mut self.proxy, now);
                self.renamed();
            }
            Input::Shutdown { grace } => {
                self.accepting.store(false, Ordering::Relaxed);
                self.proxy.set_accepting(false);
                self.draining = Some(now + grace);
            }
        }
        self.flush(now);
    }

    /// The next instant the timers need running.
    fn deadline(&self) -> Instant {
        self.proxy
            .poll_timeout()
            .map_or(self.next_tick, |t| t.min(self.next_tick))
    }

    /// Run the timers due at `now` and, when due, the housekeeping tick.
    /// Returns whether the core has finished (drained after a shutdown).
    fn timers(&mut self, now: Instant, queued: usize) -> bool {
        self.proxy.handle_timeout(now);
        self.flush(now);
        if now >= self.next_tick {
            let (overloaded, shed) = self.overload.check(now, queued, INPUT_QUEUE, &self.stats);
            self.stats.shedding.store(shed, Ordering::Relaxed);
            if overloaded != self.overload.reported {
                self.overload.reported = overloaded;
                if overloaded {
                    tracing::warn!(
                        queue = queued,
                        "gateway overloaded: timeouts are not held against trunks until it clears"
                    );
                } else {
                    tracing::info!("gateway no longer overloaded");
                }
            }
            self.proxy.health_mut().set_overloaded(overloaded);
            for t in &mut self.ticks {
                t(&mut self.proxy, now, &self.stats);
            }
            self.renamed();
            // After every event produced before the tick, before those it
            // produced: where the sinks used to see the tick.
            self.observe(Observed::Tick(now));
            self.flush(now);
            self.next_tick = now + self.tick_every;
        }
        self.draining
            .is_some_and(|until| self.proxy.is_settled() || now >= until)
    }

    /// Collect what the proxy produced: transmits for the send queue,
    /// events for the event stage.
    fn flush(&mut self, now: Instant) {
        loop {
            let mut any = false;
            while let Some(t) = self.proxy.poll_transmit() {
                any = true;
                self.pending.push(t);
            }
            while let Some(ev) = self.proxy.poll_event() {
                any = true;
                self.observe(Observed::Event(ev, now));
            }
            if !any {
                break;
            }
        }
        self.counted();
    }

    /// Queue `item` for the event stage, if anything observes.
    fn observe(&mut self, item: Observed) {
        if self.stage.is_some() {
            self.observed.push(item);
            self.produced += 1;
        }
    }

    /// Tell the stage how many items the core has produced (for
    /// [`crate::Gateway::with_proxy`], which waits for the sinks).
    fn counted(&self) {
        if let Some(stage) = &self.stage {
            stage.produced(self.produced);
        }
    }

    /// After the proxy was lent out (an [`Input::Call`], a tick): if the
    /// trunks' or routes' names changed, the sinks get the new ones ahead
    /// of the events that follow.
    fn renamed(&mut self) {
        if self.stage.is_none() {
            return;
        }
        let names = ProxyNames::of(&self.proxy);
        if names != *self.names {
            self.names = Arc::new(names);
            self.observe(Observed::Names(self.names.clone()));
        }
    }
}
