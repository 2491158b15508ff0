//! Parsing and reading a message must not touch the heap: `Message::parse`,
//! iterating the headers, the typed accessors a proxy uses on every message
//! and `validate` perform zero allocations. Building the edits that forward
//! a message (`Edit`) allocates nothing either: writing it out takes the
//! one buffer it is written into.
//!
//! A counting `#[global_allocator]` wraps `std::alloc::System`. The counter is
//! thread-local, so tests running on other threads (and the harness) do not
//! disturb the count of the thread being measured.

// `GlobalAlloc` is an unsafe trait, so implementing the counting allocator
// needs `unsafe`; the workspace denies unsafe code, so it is allowed for this
// test file only. The impl only forwards to `System` after bumping a counter.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use lifeline_sip::{validate, Edit, Message};

thread_local! {
    // const-initialised and without a destructor: reading it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the allocator may be called while the thread is being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread. `f` runs once first, uncounted, so
/// one-off lazy initialisation (and `Bytes` promoting a vector to shared
/// storage on its first clone) does not count.
fn allocations(mut f: impl FnMut()) -> u64 {
    f();
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Everything a proxy reads from a message before routing it.
fn read_everything(buf: &Bytes) {
    let m = Message::parse(buf.clone()).expect("parses");
    for h in m.headers() {
        black_box((h.name, h.raw_name, h.value));
        for v in h.values() {
            black_box(v);
        }
    }
    let via = m.top_via().expect("top Via");
    black_box(via.branch().expect("branch"));
    black_box(via.is_rfc3261_branch());
    for v in m.vias() {
        let v = v.expect("Via parses");
        black_box((v.host, v.port, v.branch(), v.received(), v.rport()));
    }
    let cseq = m.cseq().expect("CSeq");
    black_box((cseq.seq, cseq.method));
    black_box(m.call_id().expect("Call-ID"));
    let (from, to) = (m.from().expect("From"), m.to().expect("To"));
    black_box((from.tag(), from.uri_text, from.uri(), to.tag(), to.uri_text));
    if m.is_request() {
        black_box(
            m.request_uri()
                .expect("request")
                .expect("Request-URI parses"),
        );
    }
    black_box((m.method(), m.method_bytes(), m.status(), m.reason()));
    black_box(m.max_forwards().expect("Max-Forwards"));
    black_box(m.content_type().map(|c| c.expect("Content-Type")));
    for r in m.record_routes() {
        black_box(r.expect("Record-Route"));
    }
    black_box(m.body());
    validate(&m).expect("validates");
}

const FIXTURES: &[(&str, &[u8])] = &[
    (
        "emergency-invite.sip",
        include_bytes!("../testdata/bench/emergency-invite.sip"),
    ),
    (
        "emergency-invite-999.sip",
        include_bytes!("../testdata/bench/emergency-invite-999.sip"),
    ),
    (
        "ringing-180.sip",
        include_bytes!("../testdata/bench/ringing-180.sip"),
    ),
];

/// The counter works (so the zero counts below mean something).
#[test]
fn counter_counts() {
    assert_eq!(allocations(|| drop(black_box(vec![1u8; 16]))), 1);
    assert_eq!(allocations(|| drop(black_box(String::from("x") + "yz"))), 2);
}

#[test]
fn fixtures_static_bytes() {
    for (name, data) in FIXTURES {
        let buf = Bytes::from_static(data);
        assert_eq!(allocations(|| read_everything(&buf)), 0, "{name}");
    }
}

#[test]
fn fixtures_shared_bytes() {
    // A buffer as a transport would hand it over: heap-backed, then shared.
    for (name, data) in FIXTURES {
        let buf = Bytes::copy_from_slice(data);
        assert_eq!(allocations(|| read_everything(&buf)), 0, "{name}");
    }
}

/// A proxy's edits of a request (Via and Record-Route pushed, Route
/// popped, Max-Forwards decremented, Content-Length ensured) and of a
/// response (top Via popped): building them and writing them into a buffer
/// with room allocates nothing; `to_bytes` allocates its buffer alone.
#[test]
fn forwarding_edits() {
    let via = b"SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bK-lp0123456789abcdef.0123456789abcdef0123456789abcdef0;oc;oc-algo=\"loss\"";
    let rr = b"<sip:127.0.10.1:5060;lr;ll=1234.0123456789abcdef0123456789abcdef>";
    for (name, data) in FIXTURES {
        let m = Message::parse(Bytes::from_static(data)).expect("parses");
        let edit = || {
            let mut e = Edit::new(&m);
            if m.is_request() {
                e.remove_first_route().decrement_max_forwards();
                e.push_via(via).expect("via");
                e.add_record_route(rr).expect("record-route");
                e.ensure_content_length();
            } else {
                e.pop_via();
            }
            e
        };
        let mut out = Vec::with_capacity(2 * data.len() + 1024);
        let n = allocations(|| {
            out.clear();
            let e = edit();
            e.write_to(&mut out);
            black_box(&out);
        });
        assert_eq!(n, 0, "{name}: build and write");
        let n = allocations(|| drop(black_box(edit().to_bytes())));
        assert_eq!(n, 1, "{name}: to_bytes");
    }
}

#[test]
fn parse_alone() {
    for (name, data) in FIXTURES {
        let buf = Bytes::from_static(data);
        let n = allocations(|| {
            black_box(Message::parse(buf.clone()).expect("parses"));
        });
        assert_eq!(n, 0, "{name}");
    }
}

/// Every RFC 4475/5118 message that lifeline accepts is read without
/// allocating too (the torture corpus exercises folding, compact names,
/// IPv6 references, escapes and long values).
#[test]
fn accepted_corpus_messages() {
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut checked = 0;
    for dir in ["rfc4475", "rfc4475/derived", "rfc5118"] {
        let mut files: Vec<_> = std::fs::read_dir(testdata.join(dir))
            .expect("corpus directory")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "dat"))
            .collect();
        files.sort();
        for path in files {
            let buf = Bytes::from(std::fs::read(&path).expect("read corpus file"));
            let ok = Message::parse(buf.clone())
                .ok()
                .is_some_and(|m| validate(&m).is_ok());
            if !ok {
                continue;
            }
            // Only what every accepted message has: no fixture-specific expects.
            let n = allocations(|| {
                let m = Message::parse(buf.clone()).expect("parses");
                for h in m.headers() {
                    black_box((h.name, h.raw_name, h.value));
                }
                black_box(m.top_via().map(|v| v.branch()).ok());
                for v in m.vias() {
                    black_box(v.ok());
                }
                black_box(m.cseq().ok());
                black_box(m.call_id());
                black_box((m.from().ok().map(|f| f.tag()), m.to().ok().map(|t| t.tag())));
                black_box(m.request_uri().map(|u| u.ok()));
                black_box(validate(&m).ok());
            });
            assert_eq!(n, 0, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} corpus messages accepted");
}
