//! Flat combining: many threads hand work to one piece of state, and
//! whichever thread finds the state free does all the queued work itself.
//!
//! ```text
//!  submitter:  push(item)          holder (whoever took the lock):
//!              fence                 hold: drain the queue into the state
//!              try_lock --busy--> return   unlock
//!                 |                  released(..)   (e.g. send what it produced)
//!                 free               fence
//!                 v                  queue empty? --no--> try_lock again
//!              become the holder          |
//!                                        yes: return
//! ```
//!
//! A submitter never waits for the lock: if another thread holds the
//! state, that thread looks at the queue again after letting go and takes
//! the item. The two fences pair up (a Dekker-style handshake): either the
//! submitter's `try_lock` sees the state free, or the holder's look at the
//! queue after unlocking sees the item. So no item is left in the queue
//! after every [`Combiner::combine`] call has returned, items are handled
//! once each, and items from one submitter in the order it pushed them.
//!
//! The engine runs two of these: the proxy core (inputs in, one thread
//! routing at a time) and the send queue (what the core produced, sent in
//! order by one thread at a time, outside the core's lock).
//!
//! # Model checking
//!
//! With `--cfg loom` the lock, the queue and the fences are
//! [loom](https://docs.rs/loom)'s, and `tests/loom.rs` checks every
//! interleaving of a few submitters (and a thread that takes the lock
//! blocking, like the timer thread) for those three properties:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p lifeline-io --release --test loom
//! ```
//!
//! The model is faithful where it matters: under loom the state's lock is
//! what std's futex mutex is, a flag taken by compare-and-swap (acquire)
//! and let go by a store (release) — loom's own mutex does not make its
//! release a scheduling point, and so never lets a submitter arrive
//! between the holder's last look at the queue and its unlock, the one
//! interleaving that strands an item. The queue is a deque whose length
//! is a `SeqCst` atomic (as crossbeam's indices are), each push and pop one
//! atomic step; the model checks the handshake, not crossbeam's queue.

use std::collections::VecDeque;
use std::fmt;

#[cfg(not(loom))]
mod sync {
    pub(super) use std::sync::atomic::{fence, Ordering};
    pub(super) use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
}

#[cfg(loom)]
mod sync {
    //! The lock and the queue as loom sees them (see the module's doc).

    use std::ops::{Deref, DerefMut};

    pub(super) use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
    pub(super) use std::sync::{PoisonError, TryLockError};

    /// A lock taken by CAS on a loom flag and let go by a store to it; the
    /// data sits in a std mutex only its flag's holder ever locks.
    #[derive(Debug, Default)]
    #[allow(unreachable_pub, reason = "named by Guard, a public alias")]
    pub struct Mutex<T> {
        held: AtomicBool,
        data: std::sync::Mutex<T>,
    }

    /// Holds a [`Mutex`]; lets it go when dropped.
    #[derive(Debug)]
    #[allow(unreachable_pub, reason = "named by Guard, a public alias")]
    pub struct MutexGuard<'a, T> {
        data: Option<std::sync::MutexGuard<'a, T>>,
        held: &'a AtomicBool,
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(t: T) -> Self {
            Self {
                held: AtomicBool::new(false),
                data: std::sync::Mutex::new(t),
            }
        }

        pub(crate) fn try_lock(&self) -> std::sync::TryLockResult<MutexGuard<'_, T>> {
            match self
                .held
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => Ok(MutexGuard {
                    data: Some(self.data.lock().unwrap_or_else(PoisonError::into_inner)),
                    held: &self.held,
                }),
                Err(_) => Err(TryLockError::WouldBlock),
            }
        }

        pub(crate) fn lock(&self) -> std::sync::LockResult<MutexGuard<'_, T>> {
            loop {
                if let Ok(g) = self.try_lock() {
                    return Ok(g);
                }
                loom::thread::yield_now();
            }
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.data.as_deref().expect("held until dropped")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.data.as_deref_mut().expect("held until dropped")
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            self.data = None;
            self.held.store(false, Ordering::Release);
        }
    }
}

#[cfg(loom)]
use sync::AtomicUsize;
use sync::{fence, Mutex, MutexGuard, Ordering, PoisonError, TryLockError};

/// The state of a [`Combiner`], held ([`Combiner::lock`]); let go when
/// dropped.
pub type Guard<'a, S> = MutexGuard<'a, S>;

/// Work queued for a [`Combiner`]'s state.
pub struct Queue<T> {
    inner: Inner<T>,
}

#[cfg(not(loom))]
enum Inner<T> {
    /// A lock-free bounded channel (the core's inputs: many producers).
    Channel(crossbeam_channel::Sender<T>, crossbeam_channel::Receiver<T>),
    /// A locked, unbounded deque (the send queue: filled in batches, by
    /// the core's holder only).
    Locked(Mutex<VecDeque<T>>),
}

#[cfg(loom)]
struct Inner<T> {
    /// The items, in a std mutex never held across a loom operation: loom
    /// sees only `len`.
    items: std::sync::Mutex<VecDeque<T>>,
    /// `items.len()`: each push and pop is one atomic step on it.
    len: AtomicUsize,
    capacity: usize,
}

impl<T> Queue<T> {
    #[cfg(not(loom))]
    fn bounded(capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Self {
            inner: Inner::Channel(tx, rx),
        }
    }

    #[cfg(not(loom))]
    fn unbounded() -> Self {
        Self {
            inner: Inner::Locked(Mutex::default()),
        }
    }

    #[cfg(loom)]
    fn bounded(capacity: usize) -> Self {
        Self {
            inner: Inner {
                items: std::sync::Mutex::default(),
                len: AtomicUsize::new(0),
                capacity,
            },
        }
    }

    #[cfg(loom)]
    fn unbounded() -> Self {
        Self::bounded(usize::MAX)
    }

    /// Queue `item` unless the queue is full (then it is handed back).
    pub fn try_push(&self, item: T) -> Result<(), T> {
        #[cfg(not(loom))]
        match &self.inner {
            Inner::Channel(tx, _) => tx.try_send(item).map_err(|e| e.into_inner()),
            Inner::Locked(q) => {
                lock(q).push_back(item);
                Ok(())
            }
        }
        #[cfg(loom)]
        {
            let cap = self.inner.capacity;
            let room = self
                .inner
                .len
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < cap).then_some(n + 1)
                });
            if room.is_err() {
                return Err(item);
            }
            // No loom operation between the length and the item: one step.
            lock_std(&self.inner.items).push_back(item);
            Ok(())
        }
    }

    /// Queue `item`, waiting for room.
    pub fn push(&self, item: T) {
        #[cfg(not(loom))]
        match &self.inner {
            // The receiver lives as long as the sender (both are here):
            // sending cannot fail.
            Inner::Channel(tx, _) => drop(tx.send(item)),
            Inner::Locked(q) => lock(q).push_back(item),
        }
        #[cfg(loom)]
        {
            let mut item = item;
            while let Err(back) = self.try_push(item) {
                item = back;
                loom::thread::yield_now();
            }
        }
    }

    /// Queue every item, in order (waiting for room if bounded).
    pub fn extend(&self, items: impl IntoIterator<Item = T>) {
        #[cfg(not(loom))]
        if let Inner::Locked(q) = &self.inner {
            lock(q).extend(items);
            return;
        }
        for item in items {
            self.push(item);
        }
    }

    /// Take the oldest item.
    pub fn pop(&self) -> Option<T> {
        #[cfg(not(loom))]
        match &self.inner {
            Inner::Channel(_, rx) => rx.try_recv().ok(),
            Inner::Locked(q) => lock(q).pop_front(),
        }
        #[cfg(loom)]
        {
            let taken = self
                .inner
                .len
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            match taken {
                Ok(_) => lock_std(&self.inner.items).pop_front(),
                Err(_) => None,
            }
        }
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        #[cfg(not(loom))]
        match &self.inner {
            Inner::Channel(_, rx) => rx.len(),
            Inner::Locked(q) => lock(q).len(),
        }
        #[cfg(loom)]
        self.inner.len.load(Ordering::SeqCst)
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("len", &self.len()).finish()
    }
}

/// A lock a panicking holder poisoned is still usable: the state is what
/// the holder left, and the engine decides what a panic means.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(loom)]
fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State used by one thread at a time, and the queue of work for it.
pub struct Combiner<T, S> {
    queue: Queue<T>,
    state: Mutex<S>,
}

impl<T, S> fmt::Debug for Combiner<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Combiner")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl<T, S> Combiner<T, S> {
    /// `state`, with a queue that holds at most `capacity` items.
    pub fn bounded(state: S, capacity: usize) -> Self {
        Self {
            queue: Queue::bounded(capacity),
            state: Mutex::new(state),
        }
    }

    /// `state`, with a queue that never refuses an item.
    pub fn unbounded(state: S) -> Self {
        Self {
            queue: Queue::unbounded(),
            state: Mutex::new(state),
        }
    }

    /// The queue: push to it, then [`Combiner::combine`]; the holder pops.
    pub fn queue(&self) -> &Queue<T> {
        &self.queue
    }

    /// If no other thread holds the state, hold it and run `hold` (which
    /// should handle everything queued), let go, run `released` with what
    /// `hold` returned, and do it all again while items are queued. If
    /// another thread holds it, return at once: that thread looks at the
    /// queue after it lets go.
    pub fn combine<R>(&self, mut hold: impl FnMut(&mut S) -> R, mut released: impl FnMut(R)) {
        loop {
            // Pairs with the fence in `pending`: either this thread sees
            // the state free, or the holder sees what was queued before.
            fence(Ordering::SeqCst);
            let mut state = match self.state.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            let r = hold(&mut state);
            drop(state);
            released(r);
            if !self.pending() {
                return;
            }
        }
    }

    /// Wait for the state and hold it (the timer thread). After letting
    /// go, call [`Combiner::pending`] and handle what it reports: a
    /// submitter may have found the state held meanwhile and left its item.
    pub fn lock(&self) -> Guard<'_, S> {
        lock(&self.state)
    }

    /// After letting go of the state: whether items are queued that their
    /// submitters left for the holder (then take the state again).
    pub fn pending(&self) -> bool {
        fence(Ordering::SeqCst);
        !self.queue.is_empty()
    }
}
