//! Memory per live call, measured with a counting allocator: 2,000 calls held
//! ringing at once through the pure core, and 2,000 answered calls whose
//! transactions linger (RFC 6026: 32 s after the 200).
#![allow(unsafe_code)] // a GlobalAlloc wrapper is unsafe by definition

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

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

/// The allocator's count is process-wide: one measurement at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Live heap per call with 2,000 calls answered `code` by the trunk.
fn per_call(code: u16, phrase: &str) -> isize {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
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
    let mut p = Proxy::new(t0, cfg).unwrap();
    const N: usize = 2000;
    // Messages the test keeps (the inputs) are built before counting.
    let invites: Vec<Bytes> = (0..N)
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
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    for (i, inv) in invites.iter().enumerate() {
        let caller = Peer::udp(SocketAddr::from((
            [127, 0, 20, 1],
            5000 + (i % 1000) as u16,
        )));
        p.handle_message(t0, caller, inv.clone());
        let mut fwd = None;
        while let Some(t) = p.poll_transmit() {
            if t.payload.starts_with(b"INVITE") {
                fwd = Some(t.payload);
            }
        }
        while p.poll_event().is_some() {}
        let fwd = Message::parse(fwd.unwrap_or_else(|| panic!("call {i} not forwarded"))).unwrap();
        let w = MessageWriter::dialog_response_to(&fwd, code, phrase, b"t", b"<sip:t@trunk>");
        p.handle_message(t0, trunk, w.unwrap().finish());
        while p.poll_transmit().is_some() {}
        while p.poll_event().is_some() {}
    }
    let st = p.stats();
    assert_eq!(st.calls, N);
    (LIVE.load(Ordering::Relaxed) - before) / N as isize
}
