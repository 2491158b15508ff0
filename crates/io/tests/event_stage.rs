//! The event stage: the sinks see every event the core produced, once, in
//! the order it produced them, with the housekeeping ticks where they fell,
//! though they run outside the core's lock on whichever thread lets go of
//! it; and they do run outside it: a sink that blocks does not stop the
//! core. Waits are bounded; nothing here measures time.
#![cfg(not(loom))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lifeline_io::{EventSink, Gateway, Input, Options, SinkTick, Tick, STAGE_BACKLOG};
use lifeline_kit::{one_route, unprobed};
use lifeline_proxy::{Event, Peer, Proxy, Transport};
use lifeline_sip::Verdict;

/// What happened, in the order it happened: under the core's lock (the
/// core's view) or in the sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// The event of input `n`.
    Event(u32),
    /// A housekeeping tick.
    Tick(Instant),
}

type Log = Arc<Mutex<Vec<Mark>>>;

/// Input `n` comes from a made-up address that says `n`.
fn peer(n: u32) -> Peer {
    Peer::udp(SocketAddr::from((
        [10, (n >> 16) as u8, (n >> 8) as u8, n as u8],
        5060,
    )))
}

fn number(p: &Peer) -> Option<u32> {
    match p.addr {
        SocketAddr::V4(a) => {
            let [_, b, c, d] = a.ip().octets();
            Some(u32::from(b) << 16 | u32::from(c) << 8 | u32::from(d))
        }
        SocketAddr::V6(_) => None,
    }
}

/// Under the core's lock: input `n` produces exactly one event (a
/// datagram that is not SIP, dropped: `Event::Rejected` from `peer(n)`),
/// and the core's log says so at the same point.
fn reject(p: &mut Proxy, now: Instant, n: u32, core: &Log) {
    core.lock().unwrap().push(Mark::Event(n));
    p.handle_checked(now, peer(n), None, Verdict::Accept);
}

fn gateway(
    io_threads: usize,
    sinks: Vec<EventSink>,
    sink_ticks: Vec<SinkTick>,
    ticks: Vec<Tick>,
) -> Gateway {
    let listen = vec![(Transport::Udp, "127.0.0.1:0".parse().unwrap())];
    let trunk = unprobed("t", Peer::udp("127.0.0.1:9".parse().unwrap()));
    Gateway::start(Options {
        io_threads,
        sinks,
        sink_ticks,
        ticks,
        tick_every: Duration::from_millis(1),
        ..Options::new(listen, |adv| one_route(adv, vec![trunk]))
    })
    .unwrap()
}

#[test]
fn sinks_see_every_event_once_in_the_order_the_core_produced_them() {
    const THREADS: u32 = 4;
    const EACH: u32 = 2_000;
    let (core, seen): (Log, Log) = Default::default();
    // The core's view of the ticks, under its lock; the sinks' after the
    // events before them.
    let tick: Tick = {
        let core = core.clone();
        Box::new(move |_, now, _| core.lock().unwrap().push(Mark::Tick(now)))
    };
    let sink_tick: SinkTick = {
        let seen = seen.clone();
        Box::new(move |now| seen.lock().unwrap().push(Mark::Tick(now)))
    };
    // One thread at a time in the sinks, whichever it is.
    let inside = Arc::new(AtomicBool::new(false));
    let sink: EventSink = {
        let (seen, inside) = (seen.clone(), inside.clone());
        Box::new(move |ev, _, _| {
            assert!(
                !inside.swap(true, Ordering::SeqCst),
                "two threads in the sinks"
            );
            if let Event::Rejected { from, .. } = ev {
                if let Some(n) = number(from) {
                    seen.lock().unwrap().push(Mark::Event(n));
                }
            }
            inside.store(false, Ordering::SeqCst);
        })
    };
    let gw = gateway(2, vec![sink], vec![sink_tick], vec![tick]);

    // Many threads feed the core at once; each runs it, or leaves its
    // input to the thread that does, then drains the sinks if it can.
    let feeders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (input, core) = (gw.input.clone(), core.clone());
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let core = core.clone();
                    let n = t * EACH + i;
                    input.send(Input::Call(Box::new(move |p, now| {
                        reject(p, now, n, &core)
                    })));
                }
            })
        })
        .collect();
    // Meanwhile: once `with_proxy` returns, the sinks have seen everything
    // the core had produced before it.
    for _ in 0..20 {
        let c = core.clone();
        let before = gw
            .with_proxy(move |_, _| c.lock().unwrap().len())
            .expect("the core answers");
        let seen = seen.lock().unwrap().len();
        assert!(
            seen >= before,
            "with_proxy returned with {seen} of {before} observed"
        );
    }
    for f in feeders {
        f.join().unwrap();
    }
    // The stop observes what is left before it returns.
    gw.shutdown(Duration::ZERO).unwrap();

    let core = core.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    let events = seen.iter().filter(|m| matches!(m, Mark::Event(_))).count();
    assert_eq!(events, (THREADS * EACH) as usize, "every event once");
    assert!(
        seen.iter().any(|m| matches!(m, Mark::Tick(_))),
        "ticks interleaved"
    );
    if let Some(i) = core.iter().zip(&seen).position(|(c, s)| c != s) {
        panic!(
            "out of order at {i}: core {:?}, sinks {:?}",
            &core[i..(i + 5).min(core.len())],
            &seen[i..(i + 5).min(seen.len())]
        );
    }
    assert_eq!(core.len(), seen.len());
}

/// A sink that counts the rejections it sees and blocks on the first
/// until released (for at most 10 s, so a failure is a failed assertion,
/// not a hung test), and its handles: `entered` says it is blocking.
struct Stuck {
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
    seen: Arc<AtomicU64>,
}

fn stuck_sink() -> (EventSink, Stuck) {
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let (entered_tx, release_rx) = (Mutex::new(entered_tx), Mutex::new(release_rx));
    let seen = Arc::new(AtomicU64::new(0));
    let counted = seen.clone();
    let sink: EventSink = Box::new(move |ev, _, _| {
        if matches!(ev, Event::Rejected { .. }) && counted.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = entered_tx.lock().unwrap().send(());
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
        }
    });
    (
        sink,
        Stuck {
            entered,
            release,
            seen,
        },
    )
}

/// A thread that feeds the core `n` rejections in one input: it routes
/// them, lets go of the core, then runs the sinks (or waits for the thread
/// that is); `done` hears when it is through.
fn feed(gw: &Gateway, core: &Log, first: u32, n: u32, done: mpsc::Sender<()>) -> JoinHandle<()> {
    let (input, core) = (gw.input.clone(), core.clone());
    std::thread::spawn(move || {
        input.send(Input::Call(Box::new(move |p, now| {
            for k in first..first + n {
                reject(p, now, k, &core);
            }
        })));
        let _ = done.send(());
    })
}

/// A gateway whose one sink is stuck in its first event (fed by the
/// thread returned, which the caller joins).
fn stuck_gateway() -> (Stuck, Gateway, Log, JoinHandle<()>) {
    let (sink, stuck) = stuck_sink();
    let gw = gateway(1, vec![sink], vec![], vec![]);
    let core: Log = Arc::default();
    let feeder = feed(&gw, &core, 1, 1, mpsc::channel().0);
    stuck
        .entered
        .recv_timeout(Duration::from_secs(5))
        .expect("the sink ran");
    (stuck, gw, core, feeder)
}

#[test]
fn a_sink_that_blocks_does_not_hold_the_core() {
    let (stuck, gw, _, feeder) = stuck_gateway();

    // While it blocks, the core takes another input and answers.
    let (tx, rx) = mpsc::channel();
    gw.input.send(Input::Call(Box::new(move |p, _| {
        let _ = tx.send(p.stats().requests);
    })));
    let answered = rx.recv_timeout(Duration::from_secs(5));
    stuck.release.send(()).unwrap();
    feeder.join().unwrap();
    assert!(answered.is_ok(), "the core was held while a sink blocked");
    gw.shutdown(Duration::ZERO).unwrap();
}

#[test]
fn past_its_backlog_the_stage_is_waited_for() {
    let (stuck, gw, core, feeder) = stuck_gateway();

    // More events than the stage may hold, while its sink is stuck: the
    // thread that routed them (the feeder, or another that held the core
    // then: the timer thread) waits for the stage instead of piling more
    // on.
    let over = u32::try_from(STAGE_BACKLOG).unwrap() + 1_000;
    let (done_tx, done) = mpsc::channel();
    let flood = feed(&gw, &core, 2, over, done_tx);
    let waits = || gw.stats.stage_waits.load(Ordering::Relaxed);
    for _ in 0..500 {
        if waits() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        waits() > 0,
        "no thread waited while the stage held more than its backlog"
    );
    stuck.release.send(()).unwrap();
    done.recv_timeout(Duration::from_secs(10))
        .expect("the thread went on once the stage caught up");
    feeder.join().unwrap();
    flood.join().unwrap();
    assert_eq!(gw.with_proxy(|_, _| ()), Some(()));
    assert_eq!(stuck.seen.load(Ordering::SeqCst), u64::from(over) + 1);
    gw.shutdown(Duration::ZERO).unwrap();
}
