//! Lingering transactions: what is left of a transaction once its final
//! response has passed and all it still does is absorb retransmissions
//! until its timer ends it.
//!
//! A transaction that reaches one of these states leaves the transaction
//! tables (and no longer keeps its call record alive) for one compact table:
//!
//! | state (RFC 3261 / 6026) | timer | kept | what a retransmission gets |
//! |---|---|---|---|
//! | INVITE server Accepted | L (64·T1) | key | INVITE absorbed; a CANCEL is answered 200 |
//! | INVITE server Confirmed | I (T4) | key | INVITE and ACK absorbed |
//! | non-INVITE server Completed | J (64·T1) | key, peer, the last response sent (the same `Bytes`) | the response is sent again |
//! | INVITE client Accepted | M (64·T1) | key, where the 2xx went, the dialog | a 2xx goes to the caller (Via popped); anything else absorbed |
//! | INVITE client Completed | D (32 s) | key, the ACK sent, trunk | a non-2xx final gets the ACK again |
//! | non-INVITE client Completed | K (T4) | key | absorbed |
//!
//! Over a reliable transport D, I, J and K are zero: such a transaction is
//! not kept at all.
//!
//! **Keys.** A lingering transaction is found by a 128-bit hash of its
//! transaction key (for a client transaction, with the peer it was sent to:
//! a response from anyone else does not match it), keyed with the proxy's
//! secret `hash_key` (two SipHash-1-3 runs, see `Proxy::linger_key`). No
//! byte of a received message is kept: a key sliced from a datagram would
//! keep the whole datagram alive. Two live keys colliding, or anyone
//! choosing a request that matches another's lingering transaction, would
//! need the secret or about 2^64 live entries.
//!
//! **Expiry.** Each state has its own FIFO of `(deadline, key, data)`: the
//! durations are constant per state, so entries join their queue in
//! deadline order and expire from its front, with no heap. (After a reload
//! that shortens T1 or T4, an entry queued behind older, longer ones
//! expires when they do: late, never early.) The index maps a key to its
//! queue and position.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

use bytes::Bytes;
use lifeline_health::TrunkId;

use crate::config::Peer;

/// A lingering transaction's key: a keyed 128-bit hash of its transaction key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LingerKey(pub(super) u64, pub(super) u64);

impl Hash for LingerKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // Already a keyed hash: half of it is a fine table hash.
        h.write_u64(self.0);
    }
}

/// The index's hasher: passes [`LingerKey`]'s first half through.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A non-INVITE server transaction in Completed (Timer J).
#[derive(Debug)]
pub(super) struct Resend {
    /// Where the request came from.
    pub(super) peer: Peer,
    /// The final response as sent.
    pub(super) response: Bytes,
}

/// The dialog an accepted INVITE established (its key and nonce), kept so
/// a 2xx retransmission keeps it alive as it did before the 2xx was ACKed.
#[derive(Clone, Copy, Debug)]
pub(super) struct LingerDialog {
    pub(super) key: u32,
    pub(super) nonce: (u64, u64),
    pub(super) emergency: bool,
}

impl LingerDialog {
    pub(super) fn new((key, nonce): (usize, u128), emergency: bool) -> Option<Self> {
        Some(Self {
            key: u32::try_from(key).ok()?,
            nonce: ((nonce >> 64) as u64, nonce as u64),
            emergency,
        })
    }

    pub(super) fn dialog_ref(&self) -> (usize, u128) {
        let nonce = (u128::from(self.nonce.0) << 64) | u128::from(self.nonce.1);
        (self.key as usize, nonce)
    }
}

/// An INVITE client transaction in Accepted (Timer M).
#[derive(Debug)]
pub(super) struct Forward {
    /// Where the first 2xx was forwarded (the caller), if it was.
    pub(super) caller: Option<Peer>,
    pub(super) dialog: Option<LingerDialog>,
}

/// An INVITE client transaction in Completed (Timer D).
#[derive(Debug)]
pub(super) struct AckResend {
    /// The ACK sent for the non-2xx final.
    pub(super) ack: Option<Bytes>,
    pub(super) trunk: Option<TrunkId>,
    /// The transaction's serial (what a transport error is matched to).
    pub(super) serial: u64,
}

/// What is kept of a transaction when it starts to linger.
#[derive(Debug)]
pub(super) enum Linger {
    ServerAccepted,
    ServerConfirmed,
    ServerCompleted(Resend),
    ClientAccepted(Forward),
    ClientInviteCompleted(AckResend),
    ClientCompleted,
}

/// What a lookup found.
#[derive(Debug)]
pub(super) enum Found<'a> {
    ServerAccepted,
    ServerConfirmed,
    ServerCompleted(&'a Resend),
    ClientAccepted(&'a Forward),
    ClientInviteCompleted(&'a AckResend),
    ClientCompleted,
}

/// One state's entries, in the order they joined (deadline order).
#[derive(Debug)]
struct Fifo<T> {
    /// The position of the front entry since the table began.
    first: u64,
    items: VecDeque<(Instant, LingerKey, T)>,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Self {
            first: 0,
            items: VecDeque::new(),
        }
    }
}

impl<T> Fifo<T> {
    fn push(&mut self, until: Instant, key: LingerKey, v: T) -> u64 {
        let seq = self.first + self.items.len() as u64;
        self.items.push_back((until, key, v));
        seq
    }

    fn get(&self, seq: u64) -> Option<&T> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.items.get(i).map(|(_, _, v)| v)
    }

    fn next(&self) -> Option<Instant> {
        self.items.front().map(|(t, _, _)| *t)
    }

    /// The front entry, if due at `now`: its position and key.
    fn pop_due(&mut self, now: Instant) -> Option<(u64, LingerKey)> {
        if self.next()? > now {
            return None;
        }
        let (_, key, _) = self.items.pop_front()?;
        let seq = self.first;
        self.first += 1;
        Some((seq, key))
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    /// Give back memory a burst left behind.
    fn shrink(&mut self) {
        if self.items.capacity() > 64 && self.items.len() < self.items.capacity() / 4 {
            self.items.shrink_to(self.items.len() * 2);
        }
    }
}

const SERVER_ACCEPTED: u64 = 0;
const SERVER_CONFIRMED: u64 = 1;
const SERVER_COMPLETED: u64 = 2;
const CLIENT_ACCEPTED: u64 = 3;
const CLIENT_INVITE_COMPLETED: u64 = 4;
const CLIENT_COMPLETED: u64 = 5;

/// The lingering transactions: an index from key to (state, position), and
/// one FIFO per state.
#[derive(Debug, Default)]
pub(super) struct LingerTable {
    /// Key to `position << 3 | state`.
    index: HashMap<LingerKey, u64, BuildHasherDefault<PassThrough>>,
    server_accepted: Fifo<()>,
    server_confirmed: Fifo<()>,
    server_completed: Fifo<Resend>,
    client_accepted: Fifo<Forward>,
    client_invite_completed: Fifo<AckResend>,
    client_completed: Fifo<()>,
}

impl LingerTable {
    /// Keep `what` under `key` until `until`. A key already lingering keeps
    /// its first entry (two live transactions with one key cannot both
    /// linger: the second would have matched the first as a retransmission).
    pub(super) fn insert(&mut self, key: LingerKey, until: Instant, what: Linger) {
        if self.index.contains_key(&key) {
            return;
        }
        let (state, seq) = match what {
            Linger::ServerAccepted => (SERVER_ACCEPTED, self.server_accepted.push(until, key, ())),
            Linger::ServerConfirmed => {
                (SERVER_CONFIRMED, self.server_confirmed.push(until, key, ()))
            }
            Linger::ServerCompleted(r) => {
                (SERVER_COMPLETED, self.server_completed.push(until, key, r))
            }
            Linger::ClientAccepted(f) => {
                (CLIENT_ACCEPTED, self.client_accepted.push(until, key, f))
            }
            Linger::ClientInviteCompleted(a) => (
                CLIENT_INVITE_COMPLETED,
                self.client_invite_completed.push(until, key, a),
            ),
            Linger::ClientCompleted => {
                (CLIENT_COMPLETED, self.client_completed.push(until, key, ()))
            }
        };
        self.index.insert(key, (seq << 3) | state);
    }

    pub(super) fn get(&self, key: LingerKey) -> Option<Found<'_>> {
        let v = *self.index.get(&key)?;
        let seq = v >> 3;
        Some(match v & 7 {
            SERVER_ACCEPTED => Found::ServerAccepted,
            SERVER_CONFIRMED => Found::ServerConfirmed,
            SERVER_COMPLETED => Found::ServerCompleted(self.server_completed.get(seq)?),
            CLIENT_ACCEPTED => Found::ClientAccepted(self.client_accepted.get(seq)?),
            CLIENT_INVITE_COMPLETED => {
                Found::ClientInviteCompleted(self.client_invite_completed.get(seq)?)
            }
            _ => Found::ClientCompleted,
        })
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        [
            self.server_accepted.next(),
            self.server_confirmed.next(),
            self.server_completed.next(),
            self.client_accepted.next(),
            self.client_invite_completed.next(),
            self.client_completed.next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// End every entry whose timer is due at `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        let index = &mut self.index;
        let mut end = |state: u64, due: Option<(u64, LingerKey)>| match due {
            Some((seq, key)) => {
                if index.get(&key) == Some(&((seq << 3) | state)) {
                    index.remove(&key);
                }
                true
            }
            None => false,
        };
        while end(SERVER_ACCEPTED, self.server_accepted.pop_due(now)) {}
        while end(SERVER_CONFIRMED, self.server_confirmed.pop_due(now)) {}
        while end(SERVER_COMPLETED, self.server_completed.pop_due(now)) {}
        while end(CLIENT_ACCEPTED, self.client_accepted.pop_due(now)) {}
        while end(
            CLIENT_INVITE_COMPLETED,
            self.client_invite_completed.pop_due(now),
        ) {}
        while end(CLIENT_COMPLETED, self.client_completed.pop_due(now)) {}
        if self.index.capacity() > 64 && self.index.len() < self.index.capacity() / 4 {
            self.index.shrink_to(self.index.len() * 2);
        }
        self.server_accepted.shrink();
        self.server_confirmed.shrink();
        self.server_completed.shrink();
        self.client_accepted.shrink();
        self.client_invite_completed.shrink();
        self.client_completed.shrink();
    }

    /// Lingering server transactions.
    pub(super) fn servers(&self) -> usize {
        self.server_accepted.len() + self.server_confirmed.len() + self.server_completed.len()
    }

    /// Lingering client transactions.
    pub(super) fn clients(&self) -> usize {
        self.client_accepted.len()
            + self.client_invite_completed.len()
            + self.client_completed.len()
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// One line per state with entries, for debugging.
    pub(super) fn describe(&self) -> Vec<String> {
        let line = |name: &str, n: usize, next: Option<Instant>| {
            (n > 0).then(|| format!("lingering {name}: {n}, next ends {next:?}"))
        };
        [
            line(
                "server INVITE Accepted",
                self.server_accepted.len(),
                self.server_accepted.next(),
            ),
            line(
                "server INVITE Confirmed",
                self.server_confirmed.len(),
                self.server_confirmed.next(),
            ),
            line(
                "server non-INVITE Completed",
                self.server_completed.len(),
                self.server_completed.next(),
            ),
            line(
                "client INVITE Accepted",
                self.client_accepted.len(),
                self.client_accepted.next(),
            ),
            line(
                "client INVITE Completed",
                self.client_invite_completed.len(),
                self.client_invite_completed.next(),
            ),
            line(
                "client non-INVITE Completed",
                self.client_completed.len(),
                self.client_completed.next(),
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;
    use std::time::Duration;

    /// What one lingering transaction costs, besides the response or ACK
    /// it keeps: its queue entry, and its index slot (24 B plus a control
    /// byte, the table at most 7/8 and at least 7/32 full).
    #[test]
    fn entries_stay_small() {
        let sizes = [
            size_of::<(Instant, LingerKey, ())>(),
            size_of::<(Instant, LingerKey, Resend)>(),
            size_of::<(Instant, LingerKey, Forward)>(),
            size_of::<(Instant, LingerKey, AckResend)>(),
            size_of::<(LingerKey, u64)>(),
        ];
        println!(
            "queue entries {:?}, index slot {} bytes",
            &sizes[..4],
            sizes[4]
        );
        if cfg!(target_pointer_width = "64") {
            assert!(sizes[..4].iter().all(|s| *s <= 112), "{sizes:?}");
            assert_eq!(sizes[4], 24);
        }
    }

    #[test]
    fn entries_expire_from_their_queue_in_order() {
        let t0 = Instant::now();
        let mut t = LingerTable::default();
        let s = Duration::from_secs(1);
        t.insert(LingerKey(1, 1), t0 + 32 * s, Linger::ServerAccepted);
        t.insert(LingerKey(2, 2), t0 + 5 * s, Linger::ClientCompleted);
        t.insert(LingerKey(3, 3), t0 + 33 * s, Linger::ServerAccepted);
        t.insert(LingerKey(1, 1), t0 + 40 * s, Linger::ClientCompleted);
        assert_eq!((t.len(), t.servers(), t.clients()), (3, 2, 1));
        assert!(matches!(
            t.get(LingerKey(1, 1)),
            Some(Found::ServerAccepted)
        ));
        assert!(t.get(LingerKey(1, 2)).is_none());
        assert_eq!(t.next_deadline(), Some(t0 + 5 * s));
        t.expire(t0 + 5 * s);
        assert!(t.get(LingerKey(2, 2)).is_none());
        assert_eq!(t.next_deadline(), Some(t0 + 32 * s));
        t.expire(t0 + 32 * s);
        assert_eq!(t.len(), 1);
        assert!(matches!(
            t.get(LingerKey(3, 3)),
            Some(Found::ServerAccepted)
        ));
        t.expire(t0 + 33 * s);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }
}
