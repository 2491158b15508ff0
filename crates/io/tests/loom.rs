//! Model checks of the flat-combining lock the engine's core and send queue
//! run behind ([`lifeline_io::combiner`]), in every interleaving loom
//! explores:
//!
//! - every submitted input is handled exactly once;
//! - inputs from one submitter are handled in the order it submitted them;
//! - none is stranded: once every submitter has returned, the queue is
//!   empty (a submitter that found the lock held left its input to the
//!   holder, and the holder took it before letting go for good);
//! - the core's output, handed to the send queue under the core's lock, is
//!   sent in the order the core produced it, each message once.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p lifeline-io --release --test loom
//! ```
//!
//! The models do catch the bugs they are for: with the holder's second
//! look at the queue removed, every one of them fails ("stranded"); with
//! the two fences removed, the one with a timer thread does.
//!
//! Each model explores every interleaving with at most three preemptions
//! (loom's usual bound; `LOOM_MAX_PREEMPTIONS` overrides it) — the bugs a
//! combining lock can have (an item pushed between the holder's last look
//! and its unlock) need one or two. (Without `--cfg loom` this file is
//! empty.)
#![cfg(loom)]

use lifeline_io::combiner::Combiner;
use loom::sync::Arc;
use loom::thread;

/// Check `f` in every interleaving within the preemption bound.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// (submitter, sequence number).
type Item = (usize, usize);

/// Handle everything queued: the state is the log of what was handled.
fn drain(c: &Combiner<Item, Vec<Item>>) {
    c.combine(
        |log| {
            while let Some(i) = c.queue().pop() {
                log.push(i);
            }
        },
        |()| {},
    );
}

/// `log` holds `per` items of each of `submitters`, once each, each
/// submitter's in order.
fn check(log: &[Item], submitters: usize, per: usize) {
    assert_eq!(log.len(), submitters * per, "{log:?}");
    for who in 0..submitters {
        let mine: Vec<usize> = log.iter().filter(|i| i.0 == who).map(|i| i.1).collect();
        assert_eq!(mine, (0..per).collect::<Vec<_>>(), "{log:?}");
    }
}

#[test]
fn submitters_alone() {
    model(|| {
        let c = Arc::new(Combiner::bounded(Vec::new(), 8));
        let threads: Vec<_> = (0..2)
            .map(|who| {
                let c = c.clone();
                thread::spawn(move || {
                    for seq in 0..2 {
                        c.queue().try_push((who, seq)).unwrap();
                        drain(&c);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(c.queue().is_empty(), "an input was stranded");
        check(&c.lock(), 2, 2);
    });
}

#[test]
fn submitters_and_a_timer_thread_that_waits_for_the_lock() {
    model(|| {
        let c = Arc::new(Combiner::bounded(Vec::new(), 8));
        let submitters: Vec<_> = (0..2)
            .map(|who| {
                let c = c.clone();
                thread::spawn(move || {
                    c.queue().try_push((who, 0)).unwrap();
                    drain(&c);
                })
            })
            .collect();
        // The timer thread: takes the lock blocking, handles what is
        // queued, lets go, and looks again (as the engine's timer loop).
        let timer = {
            let c = c.clone();
            thread::spawn(move || loop {
                {
                    let mut log = c.lock();
                    while let Some(i) = c.queue().pop() {
                        log.push(i);
                    }
                }
                if !c.pending() {
                    break;
                }
            })
        };
        for t in submitters {
            t.join().unwrap();
        }
        timer.join().unwrap();
        assert!(c.queue().is_empty(), "an input was stranded");
        check(&c.lock(), 2, 1);
    });
}

#[test]
fn the_core_output_is_sent_in_order_once() {
    model(|| {
        // The core: handles inputs, producing one output each, numbered in
        // the order it handled them; the send queue behind it.
        let core = Arc::new(Combiner::bounded((Vec::new(), 0usize), 8));
        let sends: Arc<Combiner<usize, Vec<usize>>> = Arc::new(Combiner::unbounded(Vec::new()));
        let threads: Vec<_> = (0..2)
            .map(|who| {
                let (core, sends) = (core.clone(), sends.clone());
                thread::spawn(move || {
                    core.queue().try_push((who, 0)).unwrap();
                    core.combine(
                        |(log, produced): &mut (Vec<Item>, usize)| {
                            while let Some(i) = core.queue().pop() {
                                log.push(i);
                                // Handed over under the core's lock.
                                sends.queue().extend([*produced]);
                                *produced += 1;
                            }
                        },
                        |()| {
                            sends.combine(
                                |sent| {
                                    while let Some(m) = sends.queue().pop() {
                                        sent.push(m);
                                    }
                                },
                                |()| {},
                            );
                        },
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(core.queue().is_empty(), "an input was stranded");
        assert!(sends.queue().is_empty(), "an output was stranded");
        let (log, produced) = &*core.lock();
        check(log, 2, 1);
        assert_eq!(*sends.lock(), (0..*produced).collect::<Vec<_>>());
    });
}
