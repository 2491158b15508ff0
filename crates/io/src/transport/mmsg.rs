//! `recvmmsg` and `sendmmsg` for [`RealSocket`](super::RealSocket) (and the
//! capture thread's sends) on Linux: many datagrams per syscall.
//!
//! Receiving goes through nix's safe `recvmmsg`. Sending calls
//! `libc::sendmmsg` here, in one `unsafe` block: nix's `sendmmsg`
//! reports how many datagrams went out only through an iterator that
//! decodes an address slot it never initialised for sends.
//!
//! The socket blocks (for its receive thread). `sendmmsg` never waits
//! (`MSG_DONTWAIT`): it stops at the first datagram the kernel will not
//! take now. `recvmmsg` either does not wait either (`MSG_DONTWAIT`, the
//! awaitable receive) or waits for the first datagram only
//! (`MSG_WAITFORONE`, the receive thread); either way it returns what the
//! kernel holds then (one datagram at low rates), never waiting to fill
//! the batch.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage};

use super::{RecvBatch, MAX_DATAGRAM, SEND_BATCH};

/// One `recvmmsg` into `batch`'s slots: how many datagrams it took
/// (`EWOULDBLOCK` when none was waiting, or none came within the socket's
/// receive timeout). `peer`: the socket is connected to it (the sender
/// when the kernel gives no address). `wait`: wait for the first datagram.
pub(super) fn recv(
    socket: &impl AsRawFd,
    batch: &mut RecvBatch,
    peer: Option<SocketAddr>,
    wait: bool,
) -> io::Result<usize> {
    let RecvBatch { slab, got, .. } = batch;
    got.clear();
    // Built per call (a few hundred bytes per slot): nix's headers hold raw
    // pointers, so they cannot live in the receive task's future across
    // an await, and the kernel shortens their address lengths as it
    // fills them.
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slab.len() / MAX_DATAGRAM, None);
    let mut slots: Vec<[IoSliceMut<'_>; 1]> = slab
        .chunks_exact_mut(MAX_DATAGRAM)
        .map(|slot| [IoSliceMut::new(slot)])
        .collect();
    let received = recvmmsg(
        socket.as_raw_fd(),
        &mut headers,
        slots.iter_mut(),
        if wait {
            MsgFlags::MSG_WAITFORONE
        } else {
            MsgFlags::MSG_DONTWAIT
        },
        // Not a bound on the wait: the kernel looks at it only after each
        // datagram (recvmmsg(2), BUGS).
        None,
    )?;
    for (i, m) in received.enumerate() {
        let from = m.address.as_ref().and_then(socket_addr).or(peer);
        // A datagram with no sender (never, on a UDP socket) cannot be
        // answered: it is skipped.
        if let Some(from) = from {
            got.push((i, m.bytes.min(MAX_DATAGRAM), from));
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
    let addrs: Vec<SockaddrStorage> = if connected {
        Vec::new()
    } else {
        batch
            .iter()
            .map(|(_, to)| SockaddrStorage::from(*to))
            .collect()
    };
    let mut iovs: Vec<libc::iovec> = batch
        .iter()
        .map(|(payload, _)| libc::iovec {
            // The kernel only reads through it (a send).
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovs
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
    // outlive the call and none is moved during it (the vectors are not
    // touched until it returns). The kernel writes only `msg_len` of each
    // header, which is ours to write; it reads the rest.
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
