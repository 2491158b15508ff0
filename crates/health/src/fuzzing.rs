//! An operation-sequence check shared by the `health` cargo-fuzz target and
//! the test that replays its corpus. Bytes are decoded into operations
//! (advance time, answer or lose a probe, report live outcomes, drain,
//! overload, record call progress, reconfigure, select with a ticket)
//! applied to a [`Health`]; after each one the invariants are checked. It
//! panics only when an invariant breaks.
//!
//! Operation bytes below `0xC0` keep the meaning they had before progress
//! and canaries existed (`op % 10`), so the hand-written seeds still say what
//! their names say (a transport error now also says which message it
//! answers: a probe, a call's, or one not known); `0xC0..=0xFF` are the
//! newer operations (`op % 4`). Among the invariants: a transport error
//! takes a trunk Down only within the window of another.
//!
//! [`replay_corpus`] and [`pseudo_random_bytes`] serve the tests of this
//! target and of `lifeline-sim`'s `proxy` target: every committed input, and
//! deterministic sweeps of random ones.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use lifeline_sip::{Message, MessageWriter};

use crate::progress::{bound, bucket};
use crate::{
    AliveCodes, CanaryConfig, Event, EventKind, FlapDamping, Health, Hit, Local, Outcome,
    ProbeConfig, Reason, State, TransportError, TrunkId, TRANSPORT_ERROR_WINDOW,
};

/// Samples before there is an estimate (the documented 8, not the crate's
/// constant: this checks it).
const MIN_SAMPLES: u64 = 8;

/// What a run exercised, so a sweep can show its invariants were not
/// checked in vain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Canaries started.
    pub canaries_started: u64,
    /// Canaries ended, passed.
    pub canaries_passed: u64,
    /// Canaries ended by a Down.
    pub canaries_failed: u64,
    /// Selections made while some trunk of the route was in a canary.
    pub selections_with_canary: u64,
    /// Progress estimates checked (either duration).
    pub estimates: u64,
    /// Progress estimates checked that saturated at the top bucket.
    pub saturated: u64,
    /// Progress estimates checked against the latest 200 samples.
    pub decayed: u64,
}

/// Samples of one duration since the trunk's target last changed: how
/// many, the shortest and longest, and the latest [`RECENT`].
#[derive(Clone, Debug, Default)]
struct Samples {
    count: u64,
    min: Option<Duration>,
    max: Option<Duration>,
    recent: VecDeque<Duration>,
}

/// With a sample `k` calls old weighing (63/64)^k of the newest, the latest
/// 4 always carry more than 5 % of the weight (1 - (63/64)^4 = 6.1 %), and
/// everything before the latest 200 less than 5 % ((63/64)^200 = 4.3 %).
const LATEST: usize = 4;
const RECENT: usize = 200;

impl Samples {
    fn record(&mut self, d: Duration) {
        self.count += 1;
        self.min = Some(self.min.map_or(d, |m| m.min(d)));
        self.max = Some(self.max.map_or(d, |m| m.max(d)));
        if self.recent.len() == RECENT {
            self.recent.pop_back();
        }
        self.recent.push_front(d);
    }

    /// An estimate is there exactly from the 8th sample on. It lies between
    /// the buckets of the shortest and the longest sample: a high percentile
    /// of samples is never below the least of them nor above the greatest.
    /// And it decays: it is at least the bucket of the shortest of the latest
    /// 4 samples (they alone carry over 5 % of the weight), and, once there
    /// are 200, at most the bucket of the longest of the latest 200 (older
    /// ones carry under 5 %).
    fn check(&self, estimate: Option<Duration>, cov: &mut Coverage) {
        assert_eq!(
            estimate.is_some(),
            self.count >= MIN_SAMPLES,
            "estimate after 8 samples"
        );
        let (Some(est), Some(min), Some(max)) = (estimate, self.min, self.max) else {
            return;
        };
        let latest_min = self
            .recent
            .iter()
            .take(LATEST)
            .min()
            .copied()
            .unwrap_or(min);
        assert!(
            est >= bound(bucket(latest_min)),
            "p95 {est:?} below all of the latest {LATEST} samples (>= {latest_min:?})"
        );
        if self.recent.len() == RECENT {
            cov.decayed += 1;
            let recent_max = self.recent.iter().max().copied().unwrap_or(max);
            assert!(
                est <= bound(bucket(recent_max)),
                "p95 {est:?} above all of the latest {RECENT} samples (<= {recent_max:?})"
            );
        }
        cov.estimates += 1;
        let top = bound(usize::MAX);
        if est == top {
            cov.saturated += 1;
        }
        assert!(
            est >= bound(bucket(min)),
            "p95 {est:?} below the shortest sample {min:?}"
        );
        assert!(
            est <= bound(bucket(max)),
            "p95 {est:?} above the longest sample {max:?}"
        );
        assert!(
            est >= min.min(top),
            "a bucket bound is at least its samples"
        );
        assert!(est <= top, "saturates at the top bucket");
    }
}

/// What the run knows about one trunk besides what [`Health`] reports.
#[derive(Clone, Debug)]
struct Shadow {
    state: State,
    /// The last Down from Up or Suspect was on live evidence.
    down_on_live: bool,
    canary_until: Option<Instant>,
    cfg: ProbeConfig,
    target: String,
    invite: Samples,
    trying: Samples,
    calls: u64,
    /// When the last transport error was reported about it.
    last_error: Option<Instant>,
    /// The latest transport error came within the window of another: it
    /// may take the trunk Down.
    corroborable: bool,
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

/// Run the operations encoded in `data`.
pub fn run(data: &[u8]) {
    run_with_coverage(data);
}

/// Run `target` on every committed input of the fuzz target `name`: the
/// files in `seeds/<name>` and `regressions/<name>` under `fuzz_root` (the
/// workspace's `fuzz` folder), so that anything the fuzzer found stays fixed
/// under `cargo test`. Returns how many inputs ran; a missing folder counts
/// as empty. Panics if an input cannot be read.
pub fn replay_corpus(fuzz_root: &Path, name: &str, target: impl Fn(&[u8])) -> usize {
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_root.join(dir).join(name)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("a readable corpus folder").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            target(&data);
            n += 1;
        }
    }
    n
}

/// `n` pseudo-random bytes from xorshift64 (Marsaglia, 2003; shifts 13, 7,
/// 17) whose state `x` moves on with each byte: deterministic inputs for
/// sweeps in plain tests, besides the fuzzer. `x` must not be zero.
pub fn pseudo_random_bytes(x: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            (*x >> 24) as u8
        })
        .collect()
}

/// [`run`], saying what the run exercised.
pub fn run_with_coverage(data: &[u8]) -> Coverage {
    let mut cov = Coverage::default();
    let mut input = Bytes(data);
    let Some(setup) = input.byte() else {
        return cov;
    };
    let n = usize::from(setup % 4) + 1;
    let t0 = Instant::now();
    let mut now = t0;
    let mut h = Health::new(
        Local {
            via: "SIP/2.0/UDP 192.0.2.1:5060".into(),
            from_uri: "sip:lifeline@192.0.2.1".into(),
        },
        u64::from(setup),
    );
    let mut ids = Vec::new();
    let mut shadows = Vec::new();
    for i in 0..n {
        let b = input.byte().unwrap_or(0);
        let cfg = ProbeConfig {
            interval: Duration::from_millis(50 * (u64::from(b % 5) + 1)),
            timeout: Duration::from_millis(50 * (u64::from(b / 5 % 7) + 1)),
            down_after: u32::from(b / 35 % 3) + 1,
            up_after: u32::from(b / 105 % 3) + 1,
            alive: if b & 1 == 0 {
                AliveCodes::Any
            } else {
                AliveCodes::NotServerError
            },
            enabled: b != 255,
            ..ProbeConfig::default()
        };
        let target = format!("sip:t{i}.example.net");
        let id = h
            .add_trunk(now, &format!("t{i}"), &target, cfg.clone())
            .expect("valid trunk");
        ids.push(id);
        shadows.push(Shadow {
            state: State::Up,
            down_on_live: false,
            canary_until: None,
            cfg,
            target,
            invite: Samples::default(),
            trying: Samples::default(),
            calls: 0,
            last_error: None,
            corroborable: false,
        });
    }
    let mut pending: VecDeque<Message> = VecDeque::new();
    let mut step: u64 = 0;

    while let Some(op) = input.byte() {
        step += 1;
        let arg = input.byte().unwrap_or(0);
        let trunk = ids[usize::from(arg) % n];
        if op >= 0xC0 {
            newer_op(
                op,
                &mut input,
                &mut h,
                trunk,
                &ids,
                &mut shadows,
                now,
                &mut cov,
            );
            check(&mut h, &ids, &mut shadows, now, step, &mut cov);
            continue;
        }
        match op % 10 {
            0 => {
                now += Duration::from_millis(u64::from(arg) * 3);
                h.handle_timeout(now);
            }
            1 | 2 => {
                if let Some(probe) = pending.pop_front() {
                    let code = [200, 404, 503, 408, 100, 486][usize::from(arg) % 6];
                    let resp = MessageWriter::response_to(&probe, code, "x", Some(b"t"))
                        .expect("response")
                        .finish();
                    let resp = Message::parse(resp).expect("parses");
                    assert!(
                        h.handle_response(now, &resp),
                        "own probe response recognised"
                    );
                }
            }
            3 => {
                pending.pop_front();
            }
            4 => {
                // A transport error answering a probe, one of four messages
                // of calls, or one not known (possibly forged).
                let hit = match arg / 8 % 6 {
                    0 => Hit::Probe,
                    5 => Hit::Unknown,
                    n => Hit::Message(u64::from(n)),
                };
                let s = &mut shadows[trunk.index()];
                s.corroborable = s
                    .last_error
                    .is_some_and(|at| now.saturating_duration_since(at) <= TRANSPORT_ERROR_WINDOW);
                s.last_error = Some(now);
                h.transport_error(now, trunk, TransportError::PortUnreachable, hit);
            }
            5 => {
                let outcome = match arg % 4 {
                    0 => Outcome::Answered,
                    1 => Outcome::Timeout,
                    2 => Outcome::ProgressTimeout,
                    _ => Outcome::FailureResponse(503),
                };
                h.report(now, trunk, outcome);
            }
            6 => h.drain(now, trunk),
            7 => h.undrain(now, trunk),
            8 => h.set_overloaded(arg & 1 == 1),
            _ => {
                // A response that is not a probe's, or a forged probe branch.
                let text = format!(
                    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-lh{}.{}.{:032x}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                    arg % 5,
                    arg,
                    u128::from(arg) * 7919
                );
                let before: Vec<_> = h
                    .trunks()
                    .map(|t| (t.state, t.consecutive_successes))
                    .collect();
                if let Ok(m) = Message::parse(bytes::Bytes::from(text)) {
                    h.handle_response(now, &m);
                }
                let after: Vec<_> = h
                    .trunks()
                    .map(|t| (t.state, t.consecutive_successes))
                    .collect();
                assert_eq!(before, after, "a forged probe response is not evidence");
            }
        }
        while let Some(tx) = h.poll_transmit() {
            let m = Message::parse(tx.payload).expect("probes parse");
            lifeline_sip::validate(&m).expect("probes validate");
            pending.push_back(m);
            if pending.len() > 64 {
                pending.pop_front();
            }
        }
        check(&mut h, &ids, &mut shadows, now, step, &mut cov);
    }
    cov
}

/// Operations `0xC0..=0xFF`: progress samples, reconfiguration, selection
/// with a ticket over a route of the input's choosing.
#[allow(clippy::too_many_arguments)]
fn newer_op(
    op: u8,
    input: &mut Bytes<'_>,
    h: &mut Health,
    trunk: TrunkId,
    ids: &[TrunkId],
    shadows: &mut [Shadow],
    now: Instant,
    cov: &mut Coverage,
) {
    let shadow = &mut shadows[trunk.index()];
    match op % 4 {
        0 => {
            // A burst of calls' timings: 1..=64 calls around 2^k µs, k up to
            // 35 (9.5 hours, far past the top bucket); with or without a
            // 100 Trying.
            let k = input.byte().unwrap_or(0);
            let scale = input.byte().unwrap_or(0);
            let base = Duration::from_micros(1 << (scale % 36));
            for i in 0..u32::from(k % 64) + 1 {
                let invite = base * (1 + i % 3) + Duration::from_micros(u64::from(i) * 37);
                let trying = (k & 0x40 == 0).then(|| invite / (2 + i % 2));
                h.record_progress(trunk, invite, trying);
                shadow.calls += 1;
                shadow.invite.record(invite);
                if let Some(d) = trying {
                    shadow.trying.record(d);
                }
            }
        }
        1 => {
            // A configuration reload: the same target or (one in four)
            // another; canary and live hold-down settings of the input's
            // choosing.
            let c = input.byte().unwrap_or(0);
            let i = trunk.index();
            let target = if c & 0x41 != 0x41 {
                format!("sip:t{i}.example.net")
            } else {
                format!("sip:t{i}-moved.example.net")
            };
            let cfg = ProbeConfig {
                canary: CanaryConfig {
                    duration: [
                        Duration::ZERO,
                        Duration::from_millis(300),
                        Duration::from_secs(10),
                    ][usize::from(c / 2 % 3)],
                    one_in: [0, 1, 2, 10][usize::from(c / 6 % 4)],
                },
                flap: FlapDamping {
                    live_hold: if c & 0x80 == 0 {
                        FlapDamping::default().live_hold
                    } else {
                        Duration::ZERO
                    },
                    ..FlapDamping::default()
                },
                ..shadow.cfg.clone()
            };
            h.reconfigure(now, trunk, &target, cfg.clone())
                .expect("valid target");
            if target != shadow.target {
                shadow.invite = Samples::default();
                shadow.trying = Samples::default();
                shadow.calls = 0;
            }
            shadow.target = target;
            shadow.cfg = cfg;
        }
        2 => {
            // A call: a route (possibly naming a trunk twice), trunks already
            // tried, emergency or not, and its ticket.
            let c = input.byte().unwrap_or(0);
            let ticket = u64::from(input.byte().unwrap_or(0));
            let route: Vec<TrunkId> = (0..c % 6)
                .map(|_| ids[usize::from(input.byte().unwrap_or(0)) % ids.len()])
                .collect();
            let tried: Vec<TrunkId> = ids
                .iter()
                .copied()
                .filter(|id| (c >> 4) & (1 << (id.index() % 4)) != 0)
                .collect();
            check_selection(h, shadows, &route, &tried, c & 8 != 0, ticket, cov);
        }
        _ => {
            // An answered call with its timings, as the proxy reports them.
            let d = Duration::from_millis(u64::from(input.byte().unwrap_or(0)) * 5);
            h.report(now, trunk, Outcome::Answered);
            h.record_progress(trunk, d, Some(d / 2));
            shadow.calls += 1;
            shadow.invite.record(d);
            shadow.trying.record(d / 2);
        }
    }
}

/// Where a trunk belongs in a call's order: 0 in its place, 1 deferred (a
/// canary whose turn it is not), 2 only as an emergency call's fallback.
fn class(h: &Health, shadows: &[Shadow], id: TrunkId, emergency: bool, ticket: u64) -> u8 {
    let t = h.trunk(id).expect("trunk exists");
    let one_in = u64::from(shadows[id.index()].cfg.canary.one_in);
    if !t.state.usable() {
        2
    } else if t.canary_until.is_some()
        && (emergency || (one_in > 1 && !ticket.is_multiple_of(one_in)))
    {
        1
    } else {
        0
    }
}

/// `select_for` against its specification: the route's distinct trunks that
/// are neither drained nor tried, stably sorted by [`class`], class 2 only
/// for emergency calls.
fn check_selection(
    h: &Health,
    shadows: &[Shadow],
    route: &[TrunkId],
    tried: &[TrunkId],
    emergency: bool,
    ticket: u64,
    cov: &mut Coverage,
) {
    let got: Vec<TrunkId> = h.select_for(route, tried, emergency, ticket).collect();
    for (i, id) in got.iter().enumerate() {
        let t = h.trunk(*id).expect("selected trunk exists");
        assert!(!t.drained, "never a drained trunk");
        assert!(!tried.contains(id), "never a trunk already tried");
        assert!(route.contains(id), "only the route's trunks");
        assert!(!got[..i].contains(id), "never the same trunk twice");
        assert!(
            emergency || t.ready(),
            "ordinary calls only get ready trunks"
        );
    }
    let mut eligible: Vec<TrunkId> = Vec::new();
    for &id in route {
        let t = h.trunk(id).expect("trunk exists");
        if !t.drained && !tried.contains(&id) && !eligible.contains(&id) {
            eligible.push(id);
        }
    }
    if emergency && !eligible.is_empty() {
        assert!(
            !got.is_empty(),
            "an emergency call with a trunk left gets one"
        );
    }
    if eligible
        .iter()
        .any(|&id| h.trunk(id).is_some_and(|t| t.canary_until.is_some()))
    {
        cov.selections_with_canary += 1;
    }
    let mut want = eligible;
    want.retain(|&id| emergency || class(h, shadows, id, emergency, ticket) < 2);
    want.sort_by_key(|&id| class(h, shadows, id, emergency, ticket));
    assert_eq!(
        got, want,
        "selection order (emergency {emergency}, ticket {ticket})"
    );
}

fn check(
    h: &mut Health,
    ids: &[TrunkId],
    shadows: &mut [Shadow],
    now: Instant,
    step: u64,
    cov: &mut Coverage,
) {
    // Events describe exactly the state changes; a canary starts right after
    // a trunk came Up and, if it fails, ends right after it went Down.
    let mut previous: Option<Event> = None;
    // A trunk that came Up after a Down on live evidence: its canary must
    // be the very next event.
    let mut canary_due: Option<(TrunkId, Instant)> = None;
    while let Some(ev) = h.poll_event() {
        assert!(ev.at <= now);
        let due = canary_due.take();
        let s = &mut shadows[ev.trunk.index()];
        match ev.kind {
            EventKind::State { from, to, reason } => {
                assert_eq!(s.state, from, "event starts from the known state");
                assert_ne!(from, to);
                s.state = to;
                if to == State::Down && from.usable() {
                    s.down_on_live = matches!(reason, Reason::Live(_));
                }
                if to == State::Down && matches!(reason, Reason::Live(Outcome::TransportError(_))) {
                    assert!(
                        s.corroborable,
                        "a lone transport error took a trunk Down (from {from:?})"
                    );
                }
                if to == State::Up && !from.usable() {
                    let live = std::mem::take(&mut s.down_on_live);
                    if live && !s.cfg.canary.duration.is_zero() {
                        canary_due = Some((ev.trunk, ev.at));
                    }
                }
            }
            EventKind::CanaryStarted { until } => {
                assert_eq!(
                    due,
                    Some((ev.trunk, ev.at)),
                    "a canary starts exactly as a trunk Down on live evidence comes Up"
                );
                assert_eq!(s.canary_until, None, "one canary at a time");
                assert_eq!(
                    until,
                    ev.at + s.cfg.canary.duration,
                    "a canary lasts `duration`"
                );
                s.canary_until = Some(until);
                cov.canaries_started += 1;
            }
            EventKind::CanaryEnded { passed } => {
                assert!(s.canary_until.is_some(), "only a canary ends");
                s.canary_until = None;
                if passed {
                    cov.canaries_passed += 1;
                } else {
                    cov.canaries_failed += 1;
                    assert!(
                        previous.is_some_and(|p| p.trunk == ev.trunk
                            && p.at == ev.at
                            && matches!(
                                p.kind,
                                EventKind::State {
                                    to: State::Down,
                                    ..
                                }
                            )),
                        "a canary fails as its trunk goes Down"
                    );
                }
            }
            EventKind::Drained | EventKind::Undrained => {}
        }
        if due.is_some() {
            assert!(
                matches!(ev.kind, EventKind::CanaryStarted { .. }),
                "a trunk Down on live evidence came Up without a canary"
            );
        }
        previous = Some(ev);
    }
    assert_eq!(
        canary_due, None,
        "a trunk Down on live evidence came Up without a canary"
    );
    let next_timer = h.poll_timeout();
    for t in h.trunks() {
        let s = &shadows[t.id.index()];
        assert_eq!(s.state, t.state, "every change was reported");
        assert_eq!(s.canary_until, t.canary_until, "every canary was reported");
        if let Some(until) = t.canary_until {
            assert!(t.state.usable(), "only a usable trunk is in a canary");
            assert!(until > now, "a canary past its time has ended");
            assert!(
                next_timer.is_some_and(|n| n <= until),
                "poll_timeout wakes the caller for the canary's end"
            );
        }
        assert_eq!(
            t.progress.samples, s.calls,
            "calls counted since the target changed"
        );
        s.invite.check(t.progress.invite_to_ringing, cov);
        s.trying.check(t.progress.trying_to_ringing, cov);
    }
    // Every call, with this step as its ticket and with ticket 0.
    for emergency in [false, true] {
        for ticket in [0, step] {
            check_selection(h, shadows, ids, &[], emergency, ticket, cov);
        }
    }
    // Selection: never a drained trunk; never a Down one while an Up one exists.
    let any_ready = h.trunks().any(|t| t.ready());
    let first = h.select(ids, &[], false).next();
    match first {
        Some(id) => {
            let t = h.trunk(id).expect("selected trunk exists");
            assert!(t.ready(), "ordinary calls only get ready trunks");
        }
        None => assert!(!any_ready, "a ready trunk exists but none was selected"),
    }
    let emergency: Vec<_> = h.select(ids, &[], true).collect();
    let not_drained = h.trunks().filter(|t| !t.drained).count();
    assert_eq!(
        emergency.len(),
        not_drained,
        "emergency calls may try every non-drained trunk once"
    );
    if let Some(&e) = emergency.first() {
        if any_ready {
            assert!(h.trunk(e).is_some_and(|t| t.ready()));
        }
    }
    for t in h.trunks() {
        assert!(t.probes_outstanding <= 16, "outstanding probes bounded");
    }
}
