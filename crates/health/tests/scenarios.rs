//! Trunk health in virtual time: a simulated clock, trunks that answer probes
//! (or not), and exact assertions on when each state change happens.

use std::time::{Duration, Instant};

use bytes::Bytes;
use lifeline_health::{
    AliveCodes, CanaryConfig, EventKind, Health, Hit, Local, Outcome, ProbeConfig, Progress,
    Reason, State, TransportError, TrunkId,
};
use lifeline_sip::{Message, MessageWriter};

/// How a simulated trunk treats probes from `from` onwards.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Answer with `code` after `rtt`.
    Answer { rtt: Duration, code: u16 },
    /// Never answer (hung, or packets black-holed).
    Silent,
    /// Every probe is refused at once (ICMP port unreachable answering it).
    Icmp,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const OK: Behaviour = Behaviour::Answer {
    rtt: ms(10),
    code: 200,
};

struct Sim {
    h: Health,
    t0: Instant,
    now: Instant,
    /// Per trunk: (from, behaviour) changes, in time order.
    script: Vec<Vec<(Duration, Behaviour)>>,
    /// Responses in flight: (arrival, bytes).
    in_flight: Vec<(Instant, Bytes)>,
    /// (time since t0, trunk, from, to, reason)
    changes: Vec<(Duration, TrunkId, State, State, Reason)>,
    /// Every event, in order: (time since t0, trunk, kind).
    log: Vec<(Duration, TrunkId, EventKind)>,
    probes_sent: Vec<usize>,
}

impl Sim {
    fn new() -> Self {
        let t0 = Instant::now();
        let local = Local {
            via: "SIP/2.0/UDP 192.0.2.1:5060".into(),
            from_uri: "sip:lifeline@192.0.2.1".into(),
        };
        Sim {
            h: Health::new(local, 7),
            t0,
            now: t0,
            script: vec![],
            in_flight: vec![],
            changes: vec![],
            log: vec![],
            probes_sent: vec![],
        }
    }

    /// A simulation with one trunk, `primary`, probed by default and
    /// answering in 10 ms.
    fn primary() -> (Self, TrunkId) {
        let mut s = Sim::new();
        let a = s.trunk("primary", ProbeConfig::default(), OK);
        (s, a)
    }

    /// [`Sim::primary`], behaving as `b` from `at` (since t0) on.
    fn primary_from(at: Duration, b: Behaviour) -> (Self, TrunkId) {
        let (mut s, a) = Sim::primary();
        s.at(at, a, b);
        (s, a)
    }

    /// A simulation with one trunk, `primary`, never probed
    /// ([`without_probes`]: live evidence alone) and answering in 10 ms.
    fn unprobed_primary() -> (Self, TrunkId) {
        let mut s = Sim::new();
        let a = s.trunk("primary", without_probes(), OK);
        (s, a)
    }

    /// [`Sim::primary`] and a `backup` like it.
    fn primary_and_backup() -> (Self, TrunkId, TrunkId) {
        let (mut s, a) = Sim::primary();
        let b = s.trunk("backup", ProbeConfig::default(), OK);
        (s, a, b)
    }

    fn trunk(&mut self, name: &str, cfg: ProbeConfig, behaviour: Behaviour) -> TrunkId {
        let id = self
            .h
            .add_trunk(self.now, name, &format!("sip:{name}.example.net:5060"), cfg)
            .unwrap();
        self.script.push(vec![(Duration::ZERO, behaviour)]);
        self.probes_sent.push(0);
        id
    }

    /// From `at` (since t0) on, `trunk` behaves as `b`.
    fn at(&mut self, at: Duration, trunk: TrunkId, b: Behaviour) {
        self.script[trunk.index()].push((at, b));
    }

    fn behaviour(&self, trunk: TrunkId, now: Instant) -> Behaviour {
        let since = now - self.t0;
        self.script[trunk.index()]
            .iter()
            .rev()
            .find(|(from, _)| *from <= since)
            .map(|(_, b)| *b)
            .unwrap()
    }

    /// Advance virtual time to `until` (since t0), processing every timer and
    /// every response in order.
    fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        loop {
            let next_resp = self.in_flight.iter().map(|(t, _)| *t).min();
            let next = [self.h.poll_timeout(), next_resp]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|n| *n <= end) else {
                break;
            };
            self.now = next;
            // Responses first, then timers, as a gateway's loop would find them.
            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(t, _)| *t <= next);
            self.in_flight = later;
            for (_, bytes) in due {
                let m = Message::parse(bytes).unwrap();
                assert!(
                    self.h.handle_response(self.now, &m),
                    "a probe response is recognised"
                );
            }
            self.h.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn drain(&mut self) {
        while let Some(tx) = self.h.poll_transmit() {
            self.probes_sent[tx.trunk.index()] += 1;
            let probe = Message::parse(tx.payload).unwrap();
            lifeline_sip::validate(&probe).unwrap();
            match self.behaviour(tx.trunk, self.now) {
                Behaviour::Answer { rtt, code } => {
                    let resp = MessageWriter::response_to(&probe, code, "Whatever", Some(b"t"))
                        .unwrap()
                        .finish();
                    self.in_flight.push((self.now + rtt, resp));
                }
                Behaviour::Silent => {}
                Behaviour::Icmp => self.h.transport_error(
                    self.now,
                    tx.trunk,
                    TransportError::PortUnreachable,
                    Hit::Probe,
                ),
            }
        }
        while let Some(ev) = self.h.poll_event() {
            self.log.push((ev.at - self.t0, ev.trunk, ev.kind));
            if let EventKind::State { from, to, reason } = ev.kind {
                self.changes
                    .push((ev.at - self.t0, ev.trunk, from, to, reason));
            }
        }
    }

    fn report(&mut self, at: Duration, trunk: TrunkId, outcome: Outcome) {
        self.run_until(at);
        self.h.report(self.now, trunk, outcome);
        // A gateway re-arms its timer at poll_timeout() after every input.
        self.h.handle_timeout(self.now);
        self.drain();
    }

    fn state(&self, t: TrunkId) -> State {
        self.h.trunk(t).unwrap().state
    }

    /// When (since t0) `t` changed to `to`, in order.
    fn times(&self, t: TrunkId, to: State) -> Vec<Duration> {
        self.changes
            .iter()
            .filter(|c| c.1 == t && c.3 == to)
            .map(|c| c.0)
            .collect()
    }

    /// Every event at `at` (since t0), in order.
    fn events_at(&self, at: Duration) -> Vec<(Duration, TrunkId, EventKind)> {
        self.log.iter().filter(|e| e.0 == at).copied().collect()
    }

    fn selected(&self, route: &[TrunkId], tried: &[TrunkId], emergency: bool) -> Vec<TrunkId> {
        self.h.select(route, tried, emergency).collect()
    }

    fn first_choice(&self, route: &[TrunkId], emergency: bool) -> Option<TrunkId> {
        self.h.select(route, &[], emergency).next()
    }

    fn choices(&self, route: &[TrunkId], emergency: bool, ticket: u64) -> Vec<TrunkId> {
        self.h.select_for(route, &[], emergency, ticket).collect()
    }

    /// Canary events so far: (time since t0, trunk, kind).
    fn canaries(&self) -> Vec<(Duration, TrunkId, EventKind)> {
        self.log
            .iter()
            .filter(|e| !matches!(e.2, EventKind::State { .. }))
            .copied()
            .collect()
    }

    fn canary_until(&self, t: TrunkId) -> Option<Duration> {
        self.h.trunk(t).unwrap().canary_until.map(|u| u - self.t0)
    }

    /// The log entry of `t`'s canary starting at `at`, until `until` (both
    /// since t0).
    fn started(&self, at: Duration, t: TrunkId, until: Duration) -> (Duration, TrunkId, EventKind) {
        let until = self.t0 + until;
        (at, t, EventKind::CanaryStarted { until })
    }
}

/// The log entry of `t`'s canary ending at `at` (since t0).
fn ended(at: Duration, t: TrunkId, passed: bool) -> (Duration, TrunkId, EventKind) {
    (at, t, EventKind::CanaryEnded { passed })
}

/// Live evidence only: no probes.
fn without_probes() -> ProbeConfig {
    ProbeConfig {
        enabled: false,
        ..ProbeConfig::default()
    }
}

#[test]
fn silent_trunk_is_down_exactly_when_the_rules_say() {
    let (mut s, a) = Sim::primary();
    // Probes go out at 0, 250, 500 ... and are answered 10 ms later. The trunk
    // dies right after answering the 1000 ms probe.
    s.at(ms(1010), a, Behaviour::Silent);
    s.run_until(ms(3000));
    // The 1250 probe times out at 1500 (Suspect; the 1500 probe goes out at
    // once); that one times out at 1750: Down. Worst case from death to Down:
    // down_after * interval + timeout - rtt = 2 * 250 + 250 - 10 = 740 ms.
    assert_eq!(
        s.changes,
        vec![
            (ms(1500), a, State::Up, State::Suspect, Reason::ProbeTimeout),
            (
                ms(1750),
                a,
                State::Suspect,
                State::Down,
                Reason::ProbeTimeout
            ),
        ]
    );
    let st = s.h.trunk(a).unwrap();
    assert_eq!(st.rtt.last, Some(ms(10)));
    assert_eq!(st.rtt.max, Some(ms(10)));
    assert_eq!(s.probes_sent[0], 13, "one probe every 250 ms, 0..=3000");
}

#[test]
fn icmp_errors_take_a_trunk_down_without_waiting_for_probes() {
    // Probes disabled: live evidence alone.
    let (mut s, a) = Sim::unprobed_primary();
    let err = Outcome::TransportError(TransportError::PortUnreachable);
    s.report(ms(300), a, err);
    assert_eq!(s.state(a), State::Suspect);
    s.report(ms(320), a, err);
    assert_eq!(
        s.changes,
        vec![
            (ms(300), a, State::Up, State::Suspect, Reason::Live(err)),
            (ms(320), a, State::Suspect, State::Down, Reason::Live(err)),
        ]
    );
    assert_eq!(s.probes_sent[0], 0);

    // With probes on, the first call's ICMP makes the trunk Suspect and an
    // immediate probe confirms it (its ICMP comes back at once): Down at the
    // same instant.
    let (mut s, a) = Sim::primary_from(ms(260), Behaviour::Icmp);
    s.report(ms(300), a, err);
    assert_eq!(s.state(a), State::Down);
    assert_eq!(s.changes.last().unwrap().0, ms(300));
}

#[test]
fn failure_responses_and_timeouts_from_calls_count() {
    let (mut s, a) = Sim::primary();
    s.report(ms(100), a, Outcome::FailureResponse(503));
    s.report(ms(101), a, Outcome::Answered);
    assert_eq!(s.state(a), State::Up, "not consecutive");
    s.report(ms(102), a, Outcome::Timeout);
    // The Suspect probe is answered at 112, but an answered OPTIONS does not
    // clear a failed call: still Suspect.
    s.run_until(ms(112));
    assert_eq!(s.state(a), State::Suspect);
    assert_eq!(s.h.trunk(a).unwrap().live_failures, 1);
    s.report(ms(120), a, Outcome::ProgressTimeout);
    assert_eq!(s.state(a), State::Down);
    assert_eq!(s.changes.last().unwrap().0, ms(120));
}

#[test]
fn answered_calls_clear_live_failures() {
    let (mut s, a) = Sim::primary();
    s.report(ms(100), a, Outcome::Timeout);
    s.report(ms(150), a, Outcome::Answered);
    assert_eq!(s.state(a), State::Up);
    s.report(ms(160), a, Outcome::FailureResponse(503));
    assert_eq!(
        s.state(a),
        State::Suspect,
        "one failure after an answered call"
    );
}

#[test]
fn flapping_trunk_waits_for_up_after_and_is_held_down_longer() {
    let (mut s, a) = Sim::primary();
    let route = [a];
    s.at(ms(1010), a, Behaviour::Silent); // Down at 1750 (see above)
    s.at(ms(1990), a, OK); // back before the 2000 probe
                           // Then it fails again soon after: a flap. Silent from 2520: the 2750 probe
                           // times out at 3000 (Suspect), the 3000 probe at 3250 (Down), and the
                           // trunk is held down for 1 s, until 4250.
    s.at(ms(2520), a, Behaviour::Silent);
    s.at(ms(3260), a, OK);
    s.run_until(ms(2400));
    assert_eq!(s.state(a), State::Recovering);
    assert_eq!(s.first_choice(&route, false), None, "not trusted yet");
    s.run_until(ms(2515));
    // Answers at 2010, 2260 and 2510: up_after = 3.
    let ups = s.times(a, State::Up);
    assert_eq!(ups, vec![ms(2510)]);
    assert_eq!(s.first_choice(&route, false), Some(a));
    s.run_until(ms(5000));
    let downs = s.times(a, State::Down);
    assert_eq!(downs, vec![ms(1750), ms(3250)], "{:?}", s.changes);
    // Answers at 3510, 3760 and 4010 would be enough, but the hold lasts to
    // 4250: the 4250 probe's answer at 4260 brings it Up.
    let ups = s.times(a, State::Up);
    assert_eq!(ups, vec![ms(2510), ms(4260)]);
}

#[test]
fn drained_trunks_are_probed_but_never_selected() {
    let (mut s, a, b) = Sim::primary_and_backup();
    let route = [a, b];
    s.run_until(ms(100));
    s.h.drain(s.now, a);
    assert_eq!(s.h.poll_event().map(|e| e.kind), Some(EventKind::Drained));
    let before = s.probes_sent[0];
    s.run_until(ms(1100));
    assert_eq!(
        s.probes_sent[0],
        before + 4,
        "still probed: 250, 500, 750, 1000"
    );
    assert_eq!(s.state(a), State::Up, "measured health unaffected");
    assert_eq!(s.selected(&route, &[], false), vec![b]);
    // Even an emergency call with the backup down does not use a drained trunk.
    s.at(ms(1100), b, Behaviour::Silent);
    s.run_until(ms(2500));
    assert_eq!(s.state(b), State::Down);
    assert_eq!(s.selected(&route, &[], true), vec![b]);
    s.h.undrain(s.now, a);
    assert_eq!(s.first_choice(&route, false), Some(a));
}

#[test]
fn selection_order_and_emergency_fallback() {
    let mut s = Sim::new();
    let cfg = without_probes();
    let a = s.trunk("a", cfg.clone(), OK);
    let b = s.trunk("b", cfg.clone(), OK);
    let c = s.trunk("c", cfg, OK);
    let route = [a, b, c];
    assert_eq!(s.selected(&route, &[], false), vec![a, b, c]);
    assert_eq!(s.selected(&route, &[a], false), vec![b, c]);
    let fail = Outcome::FailureResponse(503);
    for t in [a, c] {
        s.report(ms(10), t, fail);
        s.report(ms(10), t, fail);
    }
    assert_eq!(s.selected(&route, &[], false), vec![b]);
    // Emergency: usable trunks first, then the rest in priority order.
    assert_eq!(s.selected(&route, &[], true), vec![b, a, c]);
    s.report(ms(10), b, fail);
    s.report(ms(10), b, fail);
    assert_eq!(
        s.h.select(&route, &[], false).next(),
        None,
        "ordinary calls: nothing usable"
    );
    assert_eq!(
        s.selected(&route, &[], true),
        vec![a, b, c],
        "emergency: try them all"
    );
    assert_eq!(s.selected(&route, &[a, b], true), vec![c]);
}

#[test]
fn overloaded_gateway_does_not_blame_trunks_for_timeouts() {
    let mut s = Sim::new();
    let a = s.trunk("primary", ProbeConfig::default(), Behaviour::Silent);
    s.h.set_overloaded(true);
    s.run_until(ms(2000));
    s.report(ms(2001), a, Outcome::Timeout);
    assert_eq!(s.state(a), State::Up);
    let st = s.h.trunk(a).unwrap();
    assert_eq!(
        st.stats.probe_timeouts, 8,
        "probes at 0..=1750 timed out by 2000"
    );
    assert_eq!(st.stats.ignored_while_overloaded, 9);
    // A transport error is not the gateway's doing: it still counts.
    s.report(
        ms(2002),
        a,
        Outcome::TransportError(TransportError::ConnectionReset),
    );
    assert_eq!(s.state(a), State::Suspect);
    s.h.set_overloaded(false);
    s.run_until(ms(2500));
    assert_eq!(s.state(a), State::Down);
}

#[test]
fn which_probe_answers_count_as_alive_is_configurable() {
    let mut s = Sim::new();
    let any = s.trunk(
        "any",
        ProbeConfig::default(),
        Behaviour::Answer {
            rtt: ms(5),
            code: 404,
        },
    );
    let only = ProbeConfig {
        alive: AliveCodes::Only(vec![200]),
        ..ProbeConfig::default()
    };
    let strict = s.trunk(
        "strict",
        only,
        Behaviour::Answer {
            rtt: ms(5),
            code: 404,
        },
    );
    s.run_until(ms(1000));
    assert_eq!(s.state(any), State::Up, "404 to OPTIONS: alive by default");
    assert_eq!(s.state(strict), State::Down);
    // The 0 ms probe's 404 arrives at 5 ms (Suspect), which sends the next
    // probe at once; its 404 at 10 ms makes it Down.
    let strict_changes: Vec<_> = s
        .changes
        .iter()
        .filter(|c| c.1 == strict)
        .map(|c| (c.0, c.3))
        .collect();
    assert_eq!(
        strict_changes,
        vec![(ms(5), State::Suspect), (ms(10), State::Down)]
    );
}

#[test]
fn events_follow_the_states() {
    let (mut s, a) = Sim::primary_from(ms(500), Behaviour::Silent);
    s.at(ms(2000), a, OK);
    s.at(ms(4000), a, Behaviour::Icmp);
    s.at(ms(5000), a, OK);
    s.run_until(ms(8000));
    let mut state = State::Up;
    for (_, _, from, to, _) in &s.changes {
        assert_eq!(*from, state);
        assert_ne!(from, to);
        state = *to;
    }
    assert_eq!(state, s.state(a));
    assert_eq!(state, State::Up);
}

#[test]
fn failed_calls_probes_cannot_see_hold_the_trunk_down() {
    // The trunk answers OPTIONS throughout but rejects calls with 503.
    let (mut s, a) = Sim::primary();
    s.report(ms(100), a, Outcome::FailureResponse(503)); // Suspect; probe at 100, answered at 110
    s.report(ms(120), a, Outcome::FailureResponse(503)); // Down, held for live_hold = 5 s
    assert_eq!(s.state(a), State::Down);
    s.run_until(ms(6000));
    // Probes go out at 100 + 250k and are answered 10 ms later; the first
    // answer after 120 + 5000 ms is the 5350 probe's, at 5360.
    let ups = s.times(a, State::Up);
    assert_eq!(ups, vec![ms(5360)]);
}

#[test]
fn an_outage_probes_also_see_is_not_held() {
    // Calls time out and so do probes (a hung trunk): when it recovers,
    // answered probes bring it back without the live hold.
    let (mut s, a) = Sim::primary_from(ms(90), Behaviour::Silent);
    s.at(ms(1000), a, OK);
    s.report(ms(100), a, Outcome::Timeout); // Suspect; probe at 100 (unanswered)
    s.report(ms(120), a, Outcome::Timeout); // Down
    s.run_until(ms(3000));
    // The 100 probe times out at 350: probes see the outage. Probes at
    // 350 and 600 go unanswered; 850 too (silent until 1000); answers to the
    // 1100, 1350 and 1600 probes at 1110, 1360, 1610: Up at 1610.
    let ups = s.times(a, State::Up);
    assert_eq!(ups, vec![ms(1610)]);
}

/// A primary `a` and a backup `b`, both answering probes in 10 ms. `a`
/// rejects calls with 503 at 100 and 120 ms: Down at 120 on live evidence,
/// held for `live_hold` (5 s), Up on the 5350 probe's answer at 5360 (see
/// `failed_calls_probes_cannot_see_hold_the_trunk_down`).
fn recovered_after_503s(canary: CanaryConfig) -> (Sim, TrunkId, TrunkId) {
    let mut s = Sim::new();
    let cfg = ProbeConfig {
        canary,
        ..ProbeConfig::default()
    };
    let a = s.trunk("primary", cfg.clone(), OK);
    let b = s.trunk("backup", cfg, OK);
    s.report(ms(100), a, Outcome::FailureResponse(503));
    s.report(ms(120), a, Outcome::FailureResponse(503));
    assert_eq!(s.state(a), State::Down);
    s.run_until(ms(5359));
    assert_eq!(s.state(a), State::Recovering);
    assert_eq!(s.canaries(), vec![]);
    s.run_until(ms(5360));
    assert_eq!(s.state(a), State::Up);
    (s, a, b)
}

#[test]
fn a_trunk_back_from_a_live_outage_is_a_canary() {
    let (mut s, a, b) = recovered_after_503s(CanaryConfig::default());
    let route = [a, b];
    // The canary starts with the Up, right after it, for 10 s.
    let at_up = s.events_at(ms(5360));
    assert_eq!(
        at_up,
        vec![
            (
                ms(5360),
                a,
                EventKind::State {
                    from: State::Recovering,
                    to: State::Up,
                    reason: Reason::ProbeAnswered(200),
                }
            ),
            s.started(ms(5360), a, ms(15_360)),
        ]
    );
    assert_eq!(s.canary_until(a), Some(ms(15_360)));
    assert_eq!(s.canary_until(b), None);

    // Emergency calls stay on the backup while it is usable; the canary
    // trunk comes next, before any fallback.
    s.run_until(ms(5400));
    for ticket in 0..20 {
        assert_eq!(
            s.choices(&route, true, ticket),
            vec![b, a],
            "ticket {ticket}"
        );
    }
    // Non-emergency calls: one in ten tries it first.
    let firsts: Vec<u64> = (0..20)
        .filter(|&ticket| s.choices(&route, false, ticket) == vec![a, b])
        .collect();
    assert_eq!(firsts, vec![0, 10]);
    assert_eq!(s.choices(&route, false, 7), vec![b, a]);
    assert_eq!(
        s.selected(&route, &[], false),
        vec![b, a],
        "select is ticket 1"
    );
    assert_eq!(
        s.h.select_for(&route, &[b], true, 0).collect::<Vec<_>>(),
        vec![a]
    );

    // The backup dies (its 5500 probe goes unanswered): Suspect at 5750,
    // still preferred; Down at 6000, and the canary trunk is all that is left.
    s.at(ms(5500), b, Behaviour::Silent);
    s.run_until(ms(5750));
    assert_eq!(s.state(b), State::Suspect);
    assert_eq!(s.choices(&route, true, 1), vec![b, a]);
    s.run_until(ms(6000));
    assert_eq!(s.state(b), State::Down);
    assert_eq!(s.choices(&route, true, 1), vec![a, b]);
    assert_eq!(s.choices(&route, false, 1), vec![a]);

    // up_after = 3 answered calls in a row pass it.
    s.report(ms(6100), a, Outcome::Answered);
    s.report(ms(6200), a, Outcome::Answered);
    assert_eq!(s.canary_until(a), Some(ms(15_360)));
    s.report(ms(6300), a, Outcome::Answered);
    assert_eq!(s.canary_until(a), None);
    assert_eq!(
        s.canaries(),
        vec![s.started(ms(5360), a, ms(15_360)), ended(ms(6300), a, true),]
    );
    // Its old deadline fires at 15360 and is stale: nothing more.
    s.at(ms(6300), b, OK);
    s.run_until(ms(16_000));
    assert_eq!(s.canaries().len(), 2);
    assert_eq!(s.choices(&route, true, 1), vec![a, b]);
}

#[test]
fn a_canary_that_runs_its_time_passes() {
    let canary = CanaryConfig {
        duration: ms(2345),
        ..CanaryConfig::default()
    };
    let (mut s, a, b) = recovered_after_503s(canary);
    assert_eq!(s.canary_until(a), Some(ms(7705)));
    // Two answered calls are not enough; the deadline is the next timer
    // (a's next probe is at 7850, b's at 7750).
    s.report(ms(6000), a, Outcome::Answered);
    s.report(ms(6100), a, Outcome::Answered);
    s.run_until(ms(7704));
    assert_eq!(s.h.poll_timeout(), Some(s.t0 + ms(7705)));
    assert_eq!(s.canary_until(a), Some(ms(7705)));
    s.run_until(ms(7705));
    assert_eq!(s.canary_until(a), None);
    assert_eq!(s.canaries().last(), Some(&ended(ms(7705), a, true)));
    assert_eq!(s.choices(&[a, b], true, 1), vec![a, b]);
}

#[test]
fn a_failed_call_restarts_the_canarys_count() {
    let (mut s, a, _) = recovered_after_503s(CanaryConfig::default());
    s.report(ms(6000), a, Outcome::Answered);
    s.report(ms(6100), a, Outcome::Answered);
    s.report(ms(6200), a, Outcome::FailureResponse(503));
    assert_eq!(s.state(a), State::Suspect, "the normal state machine");
    s.report(ms(6300), a, Outcome::Answered);
    assert_eq!(s.state(a), State::Up);
    s.report(ms(6400), a, Outcome::Answered);
    assert_eq!(s.canary_until(a), Some(ms(15_360)));
    s.report(ms(6500), a, Outcome::Answered);
    assert_eq!(s.canary_until(a), None);
    assert_eq!(s.canaries().last(), Some(&ended(ms(6500), a, true)));
}

#[test]
fn a_trunk_that_fails_again_fails_its_canary() {
    let (mut s, a, _) = recovered_after_503s(CanaryConfig::default());
    s.report(ms(6000), a, Outcome::FailureResponse(503));
    s.report(ms(6010), a, Outcome::FailureResponse(503));
    let at_down = s.events_at(ms(6010));
    let fail = Reason::Live(Outcome::FailureResponse(503));
    assert_eq!(
        at_down,
        vec![
            (
                ms(6010),
                a,
                EventKind::State {
                    from: State::Suspect,
                    to: State::Down,
                    reason: fail,
                }
            ),
            ended(ms(6010), a, false),
        ]
    );
    assert_eq!(s.canary_until(a), None);
    // Down on live evidence again: held for live_hold, to 11010. The Suspect
    // at 6000 was probed at once, so probes now go out at 6000 + 250k: the
    // 11000 probe's answer at 11010, as the hold ends, brings it Up, into a
    // new canary.
    s.run_until(ms(16_000));
    let ups = s.times(a, State::Up);
    assert_eq!(ups, vec![ms(5360), ms(11_010)]);
    assert_eq!(
        s.canaries(),
        vec![
            s.started(ms(5360), a, ms(15_360)),
            ended(ms(6010), a, false),
            s.started(ms(11_010), a, ms(21_010)),
        ]
    );
}

#[test]
fn a_down_probes_alone_caused_starts_no_canary() {
    // Probe timeouts only: Down at 1750, Up at 2510 (see the flapping test).
    let (mut s, a, b) = Sim::primary_and_backup();
    s.at(ms(1010), a, Behaviour::Silent);
    s.at(ms(1990), a, OK);
    s.run_until(ms(3000));
    let ups = s.times(a, State::Up);
    assert_eq!(ups, vec![ms(2510)]);
    assert_eq!(s.canaries(), vec![]);
    assert_eq!(s.canary_until(a), None);
    assert_eq!(s.choices(&[a, b], true, 1), vec![a, b]);

    // Calls timing out took it Down, even though probes saw the outage too:
    // a canary (compare `an_outage_probes_also_see_is_not_held`).
    let (mut s, a) = Sim::primary_from(ms(90), Behaviour::Silent);
    s.at(ms(1000), a, OK);
    s.report(ms(100), a, Outcome::Timeout);
    s.report(ms(120), a, Outcome::Timeout);
    s.run_until(ms(3000));
    assert_eq!(s.canaries(), vec![s.started(ms(1610), a, ms(11_610))]);
}

#[test]
fn canary_settings() {
    // Zero duration: no canary at all.
    let off = CanaryConfig {
        duration: Duration::ZERO,
        ..CanaryConfig::default()
    };
    let (s, a, b) = recovered_after_503s(off);
    assert_eq!(s.canaries(), vec![]);
    assert_eq!(s.choices(&[a, b], true, 1), vec![a, b]);

    // one_in 1 (or 0): every non-emergency call keeps it in its place;
    // emergency calls still defer it.
    for one_in in [0, 1] {
        let every = CanaryConfig {
            one_in,
            ..CanaryConfig::default()
        };
        let (s, a, b) = recovered_after_503s(every);
        assert_eq!(s.canary_until(a), Some(ms(15_360)));
        for ticket in [0, 1, 7, u64::MAX] {
            assert_eq!(s.choices(&[a, b], false, ticket), vec![a, b]);
            assert_eq!(s.choices(&[a, b], true, ticket), vec![b, a]);
        }
    }
}

#[test]
fn selection_never_offers_a_trunk_twice() {
    let (mut s, a, b) = recovered_after_503s(CanaryConfig::default());
    let route = [a, b, a, b, a];
    assert_eq!(s.choices(&route, false, 0), vec![a, b]);
    assert_eq!(s.choices(&route, false, 1), vec![b, a]);
    assert_eq!(s.choices(&route, true, 1), vec![b, a]);
    s.at(ms(5500), b, Behaviour::Silent);
    s.run_until(ms(6000));
    assert_eq!(s.state(b), State::Down);
    assert_eq!(s.choices(&route, true, 1), vec![a, b]);
    assert_eq!(s.choices(&route, false, 1), vec![a]);
}

#[test]
fn progress_is_learned_per_trunk_and_forgotten_with_its_target() {
    let (mut s, a, b) = Sim::primary_and_backup();
    for i in 0..8 {
        assert_eq!(s.h.trunk(a).unwrap().progress.invite_to_ringing, None);
        let trying = (i % 2 == 0).then_some(ms(3));
        s.h.record_progress(a, ms(5), trying);
    }
    assert_eq!(
        s.h.trunk(a).unwrap().progress,
        Progress {
            invite_to_ringing: Some(Duration::from_micros(5_837)),
            trying_to_ringing: None,
            samples: 8,
        },
        "four calls had a 100 Trying: too few"
    );
    for _ in 0..4 {
        s.h.record_progress(a, ms(5), Some(ms(3)));
    }
    let learned = s.h.trunk(a).unwrap().progress;
    assert_eq!(
        learned.trying_to_ringing,
        Some(Duration::from_micros(3_454))
    );
    assert_eq!(learned.samples, 12);
    assert_eq!(s.h.trunk(b).unwrap().progress, Progress::default());

    // A new cadence for the same target keeps what was learned ...
    let faster = ProbeConfig {
        interval: ms(100),
        ..ProbeConfig::default()
    };
    s.h.reconfigure(s.now, a, "sip:primary.example.net:5060", faster.clone())
        .unwrap();
    assert_eq!(s.h.trunk(a).unwrap().progress, learned);
    // ... another target is another trunk.
    s.h.reconfigure(s.now, a, "sip:elsewhere.example.net:5060", faster)
        .unwrap();
    assert_eq!(s.h.trunk(a).unwrap().progress, Progress::default());
}

/// A transport error answering message `n` of a call, at `at`.
fn icmp(s: &mut Sim, at: Duration, trunk: TrunkId, n: u64) {
    s.run_until(at);
    let now = s.now;
    s.h.transport_error(now, trunk, TransportError::PortUnreachable, Hit::Message(n));
    s.h.handle_timeout(now);
    s.drain();
}

const PORT_UNREACHABLE: Reason =
    Reason::Live(Outcome::TransportError(TransportError::PortUnreachable));

#[test]
fn a_lone_transport_error_makes_a_trunk_suspect_until_its_immediate_probe_answers() {
    // A forged ICMP error: the trunk is fine and answers the probe sent at
    // once, 10 ms later.
    let (mut s, a) = Sim::primary();
    icmp(&mut s, ms(300), a, 1);
    s.run_until(ms(1000));
    assert_eq!(
        s.changes,
        vec![
            (ms(300), a, State::Up, State::Suspect, PORT_UNREACHABLE),
            (
                ms(310),
                a,
                State::Suspect,
                State::Up,
                Reason::ProbeAnswered(200)
            ),
        ]
    );
    // The probe went out at the error, not at the next interval (500), and
    // the cadence follows it.
    assert_eq!(s.probes_sent[0], 5, "0, 250, 300, 550, 800");
}

#[test]
fn a_trunk_goes_down_on_errors_answering_two_messages_within_the_window() {
    let (mut s, a) = Sim::unprobed_primary();
    icmp(&mut s, ms(300), a, 1);
    icmp(&mut s, ms(310), a, 1); // the same message again: nothing new
    assert_eq!(s.state(a), State::Suspect);
    assert_eq!(s.h.trunk(a).unwrap().consecutive_failures, 1);
    icmp(&mut s, ms(320), a, 2);
    assert_eq!(
        s.changes,
        vec![
            (ms(300), a, State::Up, State::Suspect, PORT_UNREACHABLE),
            (ms(320), a, State::Suspect, State::Down, PORT_UNREACHABLE),
        ]
    );

    // Further apart than the window, two errors do not corroborate.
    let (mut s, a) = Sim::unprobed_primary();
    icmp(&mut s, ms(300), a, 1);
    icmp(&mut s, ms(1301), a, 2);
    assert_eq!(s.state(a), State::Suspect);
    assert_eq!(s.h.trunk(a).unwrap().consecutive_failures, 2);
    // A third within the window of the second does.
    icmp(&mut s, ms(2301), a, 3);
    assert_eq!(s.state(a), State::Down);
    assert_eq!(s.changes.last().unwrap().0, ms(2301));
}

#[test]
fn the_immediate_probe_refused_too_corroborates_at_once() {
    // A trunk killed at 260: the first call's error at 300 sends a probe at
    // once, refused at once: Down at 300, no probe timeout waited for.
    let (mut s, a) = Sim::primary_from(ms(260), Behaviour::Icmp);
    icmp(&mut s, ms(300), a, 1);
    assert_eq!(
        s.changes,
        vec![
            (ms(300), a, State::Up, State::Suspect, PORT_UNREACHABLE),
            (ms(300), a, State::Suspect, State::Down, PORT_UNREACHABLE),
        ]
    );
    // The refused probe is over: it does not time out later as well.
    assert_eq!(s.h.trunk(a).unwrap().probes_outstanding, 0);
    s.run_until(ms(560));
    assert_eq!(s.h.trunk(a).unwrap().stats.probe_timeouts, 0);
}

#[test]
fn the_immediate_probe_timing_out_corroborates_at_its_timeout() {
    // A hung trunk that a forged (or real) error points at: the probe sent
    // at the error times out 250 ms later, and that is the second failure.
    let (mut s, a) = Sim::primary_from(ms(260), Behaviour::Silent);
    icmp(&mut s, ms(300), a, 1);
    s.run_until(ms(1000));
    assert_eq!(
        s.changes,
        vec![
            (ms(300), a, State::Up, State::Suspect, PORT_UNREACHABLE),
            (
                ms(550),
                a,
                State::Suspect,
                State::Down,
                Reason::ProbeTimeout
            ),
        ]
    );
}

#[test]
fn forged_errors_cannot_send_a_recovering_trunk_back_down_alone() {
    // Down on probe timeouts (silent 10..1000), then answering: Recovering
    // from the 1010 answer. A lone error at 1100 resets its count of
    // answers but leaves it Recovering; it comes Up three answers later.
    let (mut s, a) = Sim::primary_from(ms(10), Behaviour::Silent);
    s.at(ms(1000), a, OK);
    s.run_until(ms(1050));
    assert_eq!(s.state(a), State::Recovering);
    icmp(&mut s, ms(1100), a, 1);
    assert_eq!(s.state(a), State::Recovering);
    s.run_until(ms(3000));
    let downs = s.times(a, State::Down);
    assert_eq!(downs.len(), 1, "{:?}", s.changes);
    // Answers at 1010; at 1110 (the probe sent at the error), 1360 and
    // 1610: Up at the third answer after the error.
    assert_eq!(s.times(a, State::Up), vec![ms(1610)]);
}
