//! `recvmmsg` and `sendmmsg` for [`RealSocket`](super::RealSocket) (and the
//! capture thread's sends) on Linux: many datagrams per syscall.
//!
//! Both call libc directly, in `unsafe` blocks: nix's `recvmmsg` needs its headers and a
//! vector of slots allocated per call (its headers hold raw pointers, so
//! they cannot be kept in a [`RecvBatch`], which the receive task's future
//! holds across an await), and nix's `sendmmsg` reports how many datagrams
//! went out only through an iterator that decodes an address slot it never
//! initialised for sends. Here the headers live on the stack: a receive or
//! a send allocates nothing (a send of more than [`SEND_INLINE`] datagrams
//! excepted).
//!
//! The socket blocks (for its receive thread). `sendmmsg` never waits
//! (`MSG_DONTWAIT`): it stops at the first datagram the kernel will not
//! take now. `recvmmsg` either does not wait either (`MSG_DONTWAIT`, the
//! awaitable receive) or waits for the first datagram only
//! (`MSG_WAITFORONE`, the receive thread); either way it returns what the
//! kernel holds then (one datagram at low rates), never waiting to fill
//! the batch.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{SockaddrLike, SockaddrStorage};
use smallvec::SmallVec;

use super::{RecvBatch, MAX_DATAGRAM, RECV_BATCH, SEND_BATCH};

/// Datagrams a send describes on the stack; a longer run (a burst) puts
/// its headers on the heap. At 500 calls/s a send carries 1.6 datagrams on
/// average.
const SEND_INLINE: usize = 8;

/// The length the kernel may write of a sender's address.
const NAME_LEN: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// One `recvmmsg` into `batch`'s slots (the first [`RECV_BATCH`] of
/// them): how many datagrams it took (`EWOULDBLOCK` when none was waiting,
/// or none came within the socket's receive timeout). `peer`: the socket
/// is connected to it (the sender when the kernel gives no address).
/// `wait`: wait for the first datagram.
#[allow(unsafe_code)]
pub(super) fn recv(
    socket: &impl AsRawFd,
    batch: &mut RecvBatch,
    peer: Option<SocketAddr>,
    wait: bool,
) -> io::Result<usize> {
    let RecvBatch { slab, got, .. } = batch;
    got.clear();
    // Built per call on the stack (2.5 KB of headers and slices; the
    // kernel shortens the address lengths as it fills them). The
    // addresses are left uninitialised: only what the kernel writes of
    // them is read.
    let mut names = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; RECV_BATCH];
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; RECV_BATCH];
    // SAFETY: `mmsghdr` is plain old data (integers and raw pointers, and
    // on some libcs private padding); all zeroes is a valid value of it:
    // no name, no data, no control messages.
    let mut headers: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let mut count: usize = 0;
    for (((slot, iov), name), h) in slab
        .chunks_exact_mut(MAX_DATAGRAM)
        .zip(iovs.iter_mut())
        .zip(names.iter_mut())
        .zip(headers.iter_mut())
    {
        iov.iov_base = slot.as_mut_ptr().cast();
        iov.iov_len = slot.len();
        h.msg_hdr.msg_iov = std::ptr::from_mut(iov);
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_name = name.as_mut_ptr().cast();
        h.msg_hdr.msg_namelen = NAME_LEN;
        count += 1;
    }
    let flags = if wait {
        libc::MSG_WAITFORONE
    } else {
        libc::MSG_DONTWAIT
    };
    // SAFETY: the first `count` headers are initialised, each pointing at
    // one `iovec` of `iovs` (itself pointing at one slot of `slab`, of the
    // length it gives) and at one address of `names`, of `NAME_LEN` bytes.
    // All of them outlive the call and none is touched during it. The
    // kernel writes into the slots and addresses within those lengths, and
    // the headers' `msg_len`, `msg_namelen` and `msg_flags`. No timeout
    // (not a bound on the wait anyway: the kernel looks at it only after
    // each datagram, recvmmsg(2), BUGS).
    let r = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as _,
            flags as _,
            std::ptr::null_mut(),
        )
    };
    let received = usize::try_from(r).map_err(|_| io::Error::last_os_error())?;
    for (i, (h, name)) in headers.iter().zip(&names).take(received).enumerate() {
        // SAFETY: the kernel wrote the first `msg_namelen` bytes of this
        // address (at most `NAME_LEN`; `from_raw` copies no more than that
        // many, and refuses a length too short for an address family or
        // too long for the storage).
        let address =
            unsafe { SockaddrStorage::from_raw(name.as_ptr().cast(), Some(h.msg_hdr.msg_namelen)) };
        let from = address.as_ref().and_then(socket_addr).or(peer);
        // A datagram with no sender (never, on a UDP socket) cannot be
        // answered: it is skipped.
        if let Some(from) = from {
            got.push((i, (h.msg_len as usize).min(MAX_DATAGRAM), from));
        }
    }
    // All skipped: as if nothing had been waiting.
    match got.len() {
        0 => Err(io::ErrorKind::WouldBlock.into()),
        n => Ok(n),
    }
}

fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// One `sendmmsg` of the first [`SEND_BATCH`] datagrams of `batch`, in
/// order: how many the kernel took. `connected`: the socket has a peer,
/// and the addresses are not passed. Linux reports an error only when it
/// is at the first datagram; after that it returns the count so far.
#[allow(unsafe_code)]
pub(crate) fn send(
    socket: &impl AsRawFd,
    batch: &[(&[u8], SocketAddr)],
    connected: bool,
) -> io::Result<usize> {
    let batch = batch.get(..SEND_BATCH).unwrap_or(batch);
    if batch.is_empty() {
        return Ok(0);
    }
    let addrs: SmallVec<[SockaddrStorage; SEND_INLINE]> = if connected {
        SmallVec::new()
    } else {
        batch
            .iter()
            .map(|(_, to)| SockaddrStorage::from(*to))
            .collect()
    };
    let mut iovs: SmallVec<[libc::iovec; SEND_INLINE]> = batch
        .iter()
        .map(|(payload, _)| libc::iovec {
            // The kernel only reads through it (a send).
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        })
        .collect();
    let mut headers: SmallVec<[libc::mmsghdr; SEND_INLINE]> = iovs
        .iter_mut()
        .enumerate()
        .map(|(i, iov)| {
            // SAFETY: `mmsghdr` is plain old data (integers and raw
            // pointers, and on some libcs private padding); all zeroes is a
            // valid value of it: no name, no data, no control messages.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = std::ptr::from_mut(iov);
            h.msg_hdr.msg_iovlen = 1;
            if let Some(to) = addrs.get(i) {
                h.msg_hdr.msg_name = to.as_ptr().cast_mut().cast();
                h.msg_hdr.msg_namelen = to.len();
            }
            h
        })
        .collect();
    let count = u32::try_from(headers.len()).unwrap_or(u32::MAX);
    // SAFETY: `headers` holds `count` initialised `mmsghdr`s, each pointing
    // at one `iovec` of `iovs` and (unconnected) at one address of
    // `addrs`; each `iovec` points at a payload of `batch`. All of them
    // outlive the call and none is moved during it: `iovs` and `addrs`
    // stay where they were when the headers took their addresses (inline
    // or on the heap), and none of the three is touched until it returns.
    // The kernel writes only `msg_len` of each header, which is ours to
    // write; it reads the rest.
    let r = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count,
            libc::MSG_DONTWAIT as _,
        )
    };
    match usize::try_from(r) {
        Ok(n) => Ok(n),
        Err(_) => Err(io::Error::last_os_error()),
    }
}
