//! Memory per live call, measured with a counting allocator: 2,000 calls held
//! ringing at once through the pure core, 2,000 answered calls whose
//! transactions linger (RFC 6026: 32 s after the 200), and 2,000 finished
//! calls (INVITE, 200, ACK, BYE, 200) whose transactions linger.
#![allow(unsafe_code)] // a GlobalAlloc wrapper is unsafe by definition

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_proxy::{Peer, ProbeConfig, Proxy, ProxyConfig, RouteConfig, RouteMatch, TrunkConfig};
use lifeline_sip::{Message, MessageWriter};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const INVITE: &str = include_str!("../../sip/testdata/bench/emergency-invite.sip");

#[test]
fn memory_per_ringing_call() {
    let per_call = per_call(180, "Ringing");
    println!(
        "live heap per ringing call: {per_call} bytes (2000 calls, {} B INVITE)",
        INVITE.len()
    );
    // The INVITE itself (kept by the server transaction and, edited, by the
    // client transaction) dominates; the bound catches a leak or a blow-up.
    assert!(per_call < 16 * 1024, "{per_call} bytes per call");
}

#[test]
fn memory_per_answered_call() {
    let per_call = per_call(200, "OK");
    println!(
        "live heap per answered call: {per_call} bytes (2000 calls, {} B INVITE)",
        INVITE.len()
    );
    // Past the final response the transactions let go of the INVITE; what
    // stays is the dialog, the call record and the 200 to resend.
    assert!(per_call < 6 * 1024, "{per_call} bytes per call");
}

#[test]
fn memory_per_finished_call() {
    let (lingering, after) = per_finished_call();
    println!(
        "live heap per finished call: {lingering} bytes while its transactions linger, \
         {after} bytes once they have ended (2000 calls, {} B INVITE)",
        INVITE.len()
    );
    // What lingers: the keys and timers of four transactions and the 200
    // to the BYE (resent if the BYE is retransmitted, Timer J); no
    // request, no call record, no dialog.
    assert!(lingering < 1024, "{lingering} bytes per call");
    assert!(after < 64, "{after} bytes per call left after 32 s");
}

/// The allocator's count is process-wide: one measurement at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const N: usize = 2000;

/// The trunk's address, and a proxy with one emergency route to it.
fn proxy(t0: Instant) -> (Proxy, Peer) {
    let gw: SocketAddr = "127.0.10.1:5060".parse().unwrap();
    let trunk = Peer::udp("127.0.30.1:5060".parse().unwrap());
    let probe = ProbeConfig {
        enabled: false,
        ..ProbeConfig::default()
    };
    let cfg = ProxyConfig::new(
        gw,
        vec![TrunkConfig {
            large_over_tcp: false,
            probe,
            ..TrunkConfig::new("primary", trunk)
        }],
        vec![RouteConfig::new(
            "emergency",
            RouteMatch::Emergency,
            &["primary"],
        )],
    );
    (Proxy::new(t0, cfg).unwrap(), trunk)
}

/// `N` distinct INVITEs.
fn invites() -> Vec<Bytes> {
    (0..N)
        .map(|i| {
            Bytes::from(
                INVITE
                    .replace("3848276298220188511@", &format!("{i}-3848276298220188511@"))
                    .replace(
                        "z9hG4bK77ef4c2312983.1",
                        &format!("z9hG4bK77ef4c2312983.{i}"),
                    ),
            )
        })
        .collect()
}

fn caller(i: usize) -> Peer {
    Peer::udp(SocketAddr::from((
        [127, 0, 20, 1],
        5000 + (i % 1000) as u16,
    )))
}

/// Live heap per call with 2,000 calls answered `code` by the trunk.
fn per_call(code: u16, phrase: &str) -> isize {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let (mut p, trunk) = proxy(t0);
    // Messages the test keeps (the inputs) are built before counting.
    let invites = invites();
    let before = LIVE.load(Ordering::Relaxed);
    for (i, inv) in invites.iter().enumerate() {
        let caller = caller(i);
        p.handle_message(t0, caller, inv.clone());
        let fwd = take(&mut p, b"INVITE").unwrap_or_else(|| panic!("call {i} not forwarded"));
        let fwd = Message::parse(fwd).unwrap();
        let w = MessageWriter::dialog_response_to(&fwd, code, phrase, b"t", b"<sip:t@trunk>");
        p.handle_message(t0, trunk, w.unwrap().finish());
        while p.poll_transmit().is_some() {}
        while p.poll_event().is_some() {}
    }
    let st = p.stats();
    if code < 200 {
        assert_eq!(st.calls, N);
    } else {
        // Answered: a dialog each; the call records went with the final
        // response (their transactions linger without them).
        assert_eq!((st.calls, st.dialogs, st.lingering), (0, N, 2 * N));
    }
    (LIVE.load(Ordering::Relaxed) - before) / N as isize
}

/// Live heap per call with 2,000 calls each set up and ended (INVITE, the
/// trunk's 200, the caller's ACK and BYE, the trunk's 200 to the BYE), all
/// at one instant: while their transactions linger, and after 40 s.
fn per_finished_call() -> (isize, isize) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let (mut p, trunk) = proxy(t0);
    let invites = invites();
    let before = LIVE.load(Ordering::Relaxed);
    for (i, inv) in invites.iter().enumerate() {
        let caller = caller(i);
        p.handle_message(t0, caller, inv.clone());
        let fwd = take(&mut p, b"INVITE").unwrap_or_else(|| panic!("call {i} not forwarded"));
        let fwd = Message::parse(fwd).unwrap();
        let ok = MessageWriter::dialog_response_to(&fwd, 200, "OK", b"t", b"<sip:t@trunk>");
        p.handle_message(t0, trunk, ok.unwrap().finish());
        let ok = Message::parse(take(&mut p, b"SIP/2.0 200").expect("200 relayed")).unwrap();
        // The caller's ACK and BYE, along the Record-Route of the 200.
        p.handle_message(t0, caller, support::in_dialog(&ok, "ACK", 31862, i));
        take(&mut p, b"ACK").expect("ACK forwarded");
        p.handle_message(t0, caller, support::in_dialog(&ok, "BYE", 31863, i));
        let bye = Message::parse(take(&mut p, b"BYE").expect("BYE forwarded")).unwrap();
        let ok = MessageWriter::response_to(&bye, 200, "OK", None).unwrap();
        p.handle_message(t0, trunk, ok.finish());
        take(&mut p, b"SIP/2.0 200").expect("200 to the BYE relayed");
    }
    let st = p.stats();
    assert_eq!((st.calls, st.dialogs), (0, 0), "{st:?}");
    assert_eq!(st.lingering, 4 * N, "{st:?}");
    let lingering = (LIVE.load(Ordering::Relaxed) - before) / N as isize;
    // Timers J, L and M (64 x T1 = 32 s) and K (T4 = 5 s) end them all.
    let end = t0 + Duration::from_secs(40);
    while let Some(at) = p.poll_timeout().filter(|at| *at <= end) {
        p.handle_timeout(at);
        while p.poll_transmit().is_some() {}
        while p.poll_event().is_some() {}
    }
    let st = p.stats();
    assert_eq!(
        (st.lingering, st.server_transactions, st.client_transactions),
        (0, 0, 0),
        "{st:?}"
    );
    let after = (LIVE.load(Ordering::Relaxed) - before) / N as isize;
    (lingering, after)
}

/// Drain what the proxy sends and its events; the last message sent that
/// starts with `start`.
fn take(p: &mut Proxy, start: &[u8]) -> Option<Bytes> {
    let mut found = None;
    while let Some(t) = p.poll_transmit() {
        if t.payload.starts_with(start) {
            found = Some(t.payload);
        }
    }
    while p.poll_event().is_some() {}
    found
}
