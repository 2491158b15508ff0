//! The loader end to end on text: every key, every default, and every
//! error with its place.

use lifeline_health::{AliveCodes, CanaryConfig, FlapDamping, ProbeConfig};
use lifeline_proxy::{IpNet, Peer, RescueRinging, RouteMatch, TrunkShare, UnknownSource};

use super::units::{parse_duration, show_duration};
use super::*;

const ORIGIN: &str = "lifeline.yaml";

/// Names the tests use, without DNS.
fn fake_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let v4 = SocketAddr::from(([192, 0, 2, 30], port));
    let v6 = SocketAddr::new("2001:db8::30".parse().unwrap(), port);
    match host {
        "trunk.example" => Ok(vec![v4]),
        "dual.example" => Ok(vec![v6, v4]),
        "empty.example" => Ok(vec![]),
        _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
    }
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_str_with(text, ORIGIN, &fake_resolve)
}

fn ok(text: &str) -> Config {
    match load(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// Every error, one string each.
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => {
            let lines: Vec<String> = e.to_string().lines().map(str::to_string).collect();
            assert_eq!(lines.len(), e.errors().len(), "one error per line");
            lines
        }
    }
}

/// The one error for `text`.
fn error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.into_iter().next().unwrap()
}

/// Each `(extra, want)`: the minimal file with `extra` appended is refused
/// with one error starting with `want`; every mismatch is reported.
fn assert_each_refused(cases: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (extra, want) in cases {
        let got = error(&min_with(extra));
        if !got.starts_with(want) {
            wrong.push(format!("for {extra:?}:\n got: {got}\nwant: {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A minimal valid file; tests append or replace lines.
const MIN: &str = "\
listen:
  - udp: 127.0.0.1:5060
trunks:
  - name: a
    address: 192.0.2.10:5060
routes:
  - name: r
    match: any
    trunks: [a]
";

/// MIN plus `extra` lines at the end (line 10 onwards).
fn min_with(extra: &str) -> String {
    format!("{MIN}{extra}")
}

/// The example in DESIGN.md, "Configuration (YAML)", verbatim.
const DESIGN_EXAMPLE: &str = r#"listen:
  - udp: 0.0.0.0:5060
  - tcp: 0.0.0.0:5060
admin: 127.0.0.1:9060
journal: /var/lib/lifeline/journal
emergency:
  numbers: ["999", "112", "911"]      # urn:service:sos always counts
trunks:
  - name: primary
    address: 192.0.2.10:5060
    transport: udp
    probe: { interval: 250ms, timeout: 250ms, down_after: 2, up_after: 3 }
  - name: backup
    address: 198.51.100.20:5060
    transport: udp
routes:
  - name: emergency
    match: emergency
    trunks: [primary, backup]          # priority order
    failover_after: 200ms
  - name: default
    match: any
    trunks: [primary, backup]
"#;

#[test]
fn design_example_needs_only_advertise() {
    // It listens on 0.0.0.0, which cannot go in Via: that is the one
    // thing it lacks, and the error says so at the listen address.
    assert_eq!(
        errors(DESIGN_EXAMPLE),
        [
            "lifeline.yaml:2:10: advertise: not set, and the first listen address 0.0.0.0:5060 \
              is a wildcard: set advertise to the address trunks and callers send to, e.g. \
              `advertise: 192.0.2.1:5060`"
        ]
    );
    let text = DESIGN_EXAMPLE.replace(
        "admin: 127.0.0.1:9060\n",
        "advertise: 192.0.2.1:5060\nadmin: 127.0.0.1:9060\n",
    );
    let c = ok(&text);
    assert_eq!(
        c.listen(),
        [
            (Transport::Udp, "0.0.0.0:5060".parse().unwrap()),
            (Transport::Tcp, "0.0.0.0:5060".parse().unwrap()),
        ]
    );
    assert_eq!(c.advertise(), "192.0.2.1:5060".parse().unwrap());
    assert_eq!(c.admin(), "127.0.0.1:9060".parse().unwrap());
    assert_eq!(c.journal(), Some(Path::new("/var/lib/lifeline/journal")));
    assert_eq!(c.emergency.numbers, ["999", "112", "911"]);
    let names: Vec<&str> = c.trunks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["primary", "backup"]);
    assert_eq!(
        c.trunks()[0].peer,
        Peer::udp("192.0.2.10:5060".parse().unwrap())
    );
    assert_eq!(
        c.trunks()[1].peer,
        Peer::udp("198.51.100.20:5060".parse().unwrap())
    );
    assert_eq!(c.trunks()[0].probe, ProbeConfig::default());
    let routes = c.routes();
    assert_eq!(routes.len(), 2);
    assert!(matches!(routes[0].matches, RouteMatch::Emergency));
    assert!(matches!(routes[1].matches, RouteMatch::Any));
    assert_eq!(routes[0].trunks, ["primary", "backup"]);
    assert_eq!(routes[0].failover_after, Duration::from_millis(200));
}

#[test]
fn every_default() {
    let c = ok(MIN);
    assert_eq!(
        c.listen(),
        [(Transport::Udp, "127.0.0.1:5060".parse().unwrap())]
    );
    // advertise: the first listen address, as it is not a wildcard.
    assert_eq!(c.advertise(), "127.0.0.1:5060".parse().unwrap());
    assert_eq!(c.admin(), "127.0.0.1:9060".parse().unwrap());
    assert_eq!(c.journal(), None);
    assert_eq!(c.emergency, EmergencyConfig::default());
    assert_eq!(c.emergency.numbers, ["999", "112", "911"]);
    assert_eq!(*c.access(), AccessConfig::default());
    assert_eq!(c.access().callers, None, "any source");
    assert!(c.access().trusted.is_empty(), "nobody trusted");
    assert_eq!(c.access().unknown, UnknownSource::Drop);
    assert!(!c.access().strip_untrusted_location);
    assert_eq!(c.timers, Timers::default());
    let t = &c.trunks()[0];
    assert_eq!(t.peer.transport, Transport::Udp);
    assert!(!t.large_over_tcp);
    assert_eq!(t.probe, ProbeConfig::default());
    assert_eq!(t.probe.interval, Duration::from_millis(250));
    assert_eq!(t.probe.timeout, Duration::from_millis(250));
    assert_eq!((t.probe.down_after, t.probe.up_after), (2, 3));
    assert_eq!(t.probe.alive, AliveCodes::Any);
    assert!(t.probe.enabled);
    assert_eq!(t.probe.flap, FlapDamping::default());
    assert_eq!((t.max_calls, t.max_cps), (None, None));
    assert_eq!(t.probe.canary, CanaryConfig::default());
    assert_eq!(
        (t.probe.canary.duration, t.probe.canary.one_in),
        (Duration::from_secs(10), 10)
    );
    let r = &c.routes()[0];
    assert_eq!(r.failover_after, Duration::from_millis(200));
    assert_eq!(r.progress_timeout, Duration::from_millis(800));
    assert_eq!(r.progress_timeout_min, Duration::from_millis(100));
    assert_eq!(r.progress_timeout_factor, 4);
    assert_eq!(r.failover_codes, [408, 500, 502, 503, 504]);
    assert_eq!(r.rescue_ringing, RescueRinging::Emergency);
    assert_eq!(r.hedge_after, None);
    assert!(r.shares.is_empty());
    assert!(c.warnings().is_empty());
    assert_eq!(c.all_failed, AllFailed::default());
    assert_eq!(
        (
            c.all_failed.status,
            c.all_failed.reason.as_str(),
            c.all_failed.retry_after
        ),
        (503, "Service Unavailable", Some(5))
    );
    assert_eq!(c.dialog_max_age, Duration::from_secs(12 * 3600));
    assert_eq!(c.tcp_idle_timeout(), Duration::from_secs(120));
    assert_eq!(
        c.log(),
        LogConfig {
            format: LogFormat::Human,
            level: LogLevel::Info
        }
    );
    // And the proxy gets the same, plus the seed.
    let p = c.proxy_config(lifeline_proxy::Seed::from(42));
    let d = ProxyConfig::new(p.advertise, vec![], vec![]);
    assert_eq!(p.seed, lifeline_proxy::Seed::from(42));
    assert_eq!(p.advertise, c.advertise());
    assert_eq!(p.timers, d.timers);
    assert_eq!(p.emergency, d.emergency);
    assert_eq!(p.access, d.access);
    assert_eq!(p.all_failed, d.all_failed);
    assert_eq!(p.dialog_max_age, d.dialog_max_age);
    assert_eq!(p.trunks, c.trunks);
    assert!(p.aliases.is_empty());
}

#[test]
fn every_key_set() {
    let c = ok(r#"
listen:
  - tcp: "[::1]:5070"
  - udp: 127.0.0.1:5060
advertise: "[2001:db8::1]:5070"
admin: "[::1]:9999"
journal: /tmp/journal
emergency:
  numbers: [0112, "+44999", "*99#"]
  trusted_resource_priority: [192.0.2.5, "2001:db8::5"]
access:
  callers: [192.0.2.0/24, "2001:db8::/32", 198.51.100.7]
  trusted: [192.0.2.10/32, "2001:db8:1::/48", 192.0.2.5]
  unknown: reject
  strip_untrusted_location: true
timers: { t1: 100ms, t2: 2s, t4: 3s, timer_c: 4m }
trunks:
  - name: primary
    address: "[2001:db8::10]:5061"
    transport: tcp
    probe: { interval: 1s, timeout: 500ms, down_after: 5, up_after: 100, alive: [200, 405], enabled: false, flap_window: 1m, flap_hold: 2s, flap_max_hold: 1h, live_hold: 0s, canary: 0s, canary_one_in: 3 }
    max_calls: 120
    max_cps: 10
  - name: backup
    address: trunk.example:5062
    transport: udp+tcp
    probe: { alive: not-5xx }
  - name: third
    address: 192.0.2.12:5060
    probe:
      alive: any
routes:
  - name: uk
    match: { uri: "^sip:\\+44" }
    trunks: [backup]
    failover_after: 1s
    progress_timeout: 10s
    failover_codes: [503, 480]
  - name: emergency
    match: emergency
    trunks: [primary, backup, third]
all_failed: { status: 480, retry_after: none }
dialog_max_age: 2h
tcp_idle_timeout: 10m
log: { format: json, level: trace }
node_name: gw-a
"#);
    assert_eq!(
        c.listen(),
        [
            (Transport::Tcp, "[::1]:5070".parse().unwrap()),
            (Transport::Udp, "127.0.0.1:5060".parse().unwrap()),
        ]
    );
    assert_eq!(c.advertise(), "[2001:db8::1]:5070".parse().unwrap());
    assert_eq!(c.admin(), "[::1]:9999".parse().unwrap());
    assert_eq!(c.journal(), Some(Path::new("/tmp/journal")));
    // Numbers as written: the leading zero stays.
    assert_eq!(c.emergency.numbers, ["0112", "+44999", "*99#"]);
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    assert_eq!(
        *c.access(),
        AccessConfig {
            callers: Some(vec![
                net("192.0.2.0/24"),
                net("2001:db8::/32"),
                net("198.51.100.7/32")
            ]),
            // The deprecated emergency.trusted_resource_priority added,
            // once each.
            trusted: vec![
                net("192.0.2.10/32"),
                net("2001:db8:1::/48"),
                net("192.0.2.5/32"),
                net("2001:db8::5/128")
            ],
            unknown: UnknownSource::Reject,
            strip_untrusted_location: true,
        }
    );
    assert_eq!(
        c.proxy_config(lifeline_proxy::Seed::from(1)).access,
        *c.access()
    );
    let w: Vec<String> = c
        .warnings()
        .iter()
        .map(|w| Warning(w).to_string())
        .collect();
    assert_eq!(
        w,
        [
            "lifeline.yaml:10:30: warning: emergency.trusted_resource_priority: deprecated: \
          write these addresses in access.trusted, to which they are added (their \
          P-Asserted-Identity and Resource-Priority are kept, and esnet.* from them makes an \
          emergency call)"
        ]
    );
    assert_eq!(
        c.timers,
        Timers {
            t1: Duration::from_millis(100),
            t2: Duration::from_secs(2),
            t4: Duration::from_secs(3),
            timer_c: Duration::from_secs(240),
        }
    );
    let t = c.trunks();
    assert_eq!(
        t[0].peer,
        Peer {
            addr: "[2001:db8::10]:5061".parse().unwrap(),
            transport: Transport::Tcp
        }
    );
    assert_eq!(
        t[0].probe,
        ProbeConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            down_after: 5,
            up_after: 100,
            alive: AliveCodes::Only(vec![200, 405]),
            flap: FlapDamping {
                window: Duration::from_secs(60),
                hold: Duration::from_secs(2),
                max_hold: Duration::from_secs(3600),
                live_hold: Duration::ZERO,
            },
            enabled: false,
            canary: CanaryConfig {
                duration: Duration::ZERO,
                one_in: 3,
            },
        }
    );
    assert_eq!((t[0].max_calls, t[0].max_cps), (Some(120), Some(10)));
    // The name's only address, though it is not of the advertised family.
    assert_eq!(t[1].peer.addr, "192.0.2.30:5062".parse().unwrap());
    assert_eq!(t[1].peer.transport, Transport::Udp);
    assert!(t[1].large_over_tcp, "udp+tcp: large requests over TCP");
    assert!(!t[0].large_over_tcp && !t[2].large_over_tcp);
    assert_eq!(t[1].probe.alive, AliveCodes::NotServerError);
    assert_eq!(t[2].probe.alive, AliveCodes::Any);
    let r = c.routes();
    match &r[0].matches {
        RouteMatch::Uri(re) => {
            assert!(re.is_match("sip:+441234@example.com"));
            assert!(!re.is_match("sip:+331234@example.com"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r[0].failover_after, Duration::from_secs(1));
    assert_eq!(r[0].progress_timeout, Duration::from_secs(10));
    assert_eq!(r[0].failover_codes, [503, 480]);
    assert_eq!(r[1].trunks, ["primary", "backup", "third"]);
    // Another status without a reason gets its own standard phrase.
    assert_eq!(
        c.all_failed,
        AllFailed {
            status: 480,
            reason: "Temporarily Unavailable".into(),
            retry_after: None
        }
    );
    assert_eq!(c.dialog_max_age, Duration::from_secs(7200));
    assert_eq!(c.tcp_idle_timeout(), Duration::from_secs(600));
    assert_eq!(c.node_name(), "gw-a");
    assert_eq!(
        c.log(),
        LogConfig {
            format: LogFormat::Json,
            level: LogLevel::Trace
        }
    );
    assert_eq!(c.log().level.as_str(), "trace");
}

#[test]
fn durations() {
    let ms = Duration::from_millis;
    assert_eq!(parse_duration("250ms"), Ok(ms(250)));
    assert_eq!(parse_duration("2s"), Ok(ms(2_000)));
    assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
    assert_eq!(parse_duration("12h"), Ok(ms(12 * 3_600_000)));
    assert_eq!(parse_duration("0s"), Ok(ms(0)));
    assert_eq!(
        parse_duration("250"),
        Err("250 has no unit: write 250ms, 250s, 250m or 250h".into())
    );
    for bad in ["", "ms", "2 s", "1.5s", "-1s", "2sec", "1m30s", "2S", "s2"] {
        assert_eq!(
            parse_duration(bad),
            Err(format!(
                "{bad:?} is not a duration: write a whole number and a unit (ms, s, m or \
                     h), e.g. 250ms, 2s, 1m, 12h"
            )),
            "{bad}"
        );
    }
    assert_eq!(
        parse_duration("99999999999999999999h"),
        Err("99999999999999999999h: too long".into())
    );
    assert_eq!(
        parse_duration("9999999999999999h"),
        Err("9999999999999999h: too long".into())
    );
    assert_eq!(show_duration(ms(250)), "250ms");
    assert_eq!(show_duration(ms(60_000)), "1m");
    assert_eq!(show_duration(ms(0)), "0s");
}

#[test]
fn bare_number_durations_are_refused_everywhere() {
    let text = r#"
listen: [udp: 127.0.0.1:5060]
timers: { t1: 500, t2: 4, t4: 5, timer_c: 181 }
trunks:
  - name: a
    address: 192.0.2.10:5060
    probe: { interval: 250, timeout: 250, flap_window: 30, flap_hold: 1, flap_max_hold: 30, live_hold: 5 }
routes:
  - { name: r, match: any, trunks: [a], failover_after: 200, progress_timeout: 2 }
all_failed: { retry_after: 5 }
dialog_max_age: 12
"#;
    let e = errors(text);
    let expect = [
            "lifeline.yaml:3:15: timers.t1: 500 has no unit: write 500ms, 500s, 500m or 500h",
            "lifeline.yaml:3:24: timers.t2: 4 has no unit: write 4ms, 4s, 4m or 4h",
            "lifeline.yaml:3:31: timers.t4: 5 has no unit: write 5ms, 5s, 5m or 5h",
            "lifeline.yaml:3:43: timers.timer_c: 181 has no unit: write 181ms, 181s, 181m or 181h",
            "lifeline.yaml:7:24: trunks[0].probe.interval: 250 has no unit: write 250ms, 250s, 250m or 250h",
            "lifeline.yaml:7:38: trunks[0].probe.timeout: 250 has no unit: write 250ms, 250s, 250m or 250h",
            "lifeline.yaml:7:56: trunks[0].probe.flap_window: 30 has no unit: write 30ms, 30s, 30m or 30h",
            "lifeline.yaml:7:71: trunks[0].probe.flap_hold: 1 has no unit: write 1ms, 1s, 1m or 1h",
            "lifeline.yaml:7:89: trunks[0].probe.flap_max_hold: 30 has no unit: write 30ms, 30s, 30m or 30h",
            "lifeline.yaml:7:104: trunks[0].probe.live_hold: 5 has no unit: write 5ms, 5s, 5m or 5h",
            "lifeline.yaml:9:57: routes[0].failover_after: 200 has no unit: write 200ms, 200s, 200m or 200h",
            "lifeline.yaml:9:80: routes[0].progress_timeout: 2 has no unit: write 2ms, 2s, 2m or 2h",
            "lifeline.yaml:10:28: all_failed.retry_after: 5 has no unit: write 5ms, 5s, 5m or 5h",
            "lifeline.yaml:11:17: dialog_max_age: 12 has no unit: write 12ms, 12s, 12m or 12h",
        ];
    assert_eq!(e, expect);
    // Quoted, it is still a number without a unit.
    assert_eq!(
        error(&min_with("dialog_max_age: \"12\"\n")),
        "lifeline.yaml:10:17: dialog_max_age: 12 has no unit: write 12ms, 12s, 12m or 12h"
    );
}

#[test]
fn tcp_idle_timeout_zero_means_never() {
    assert_eq!(
        ok(&min_with("tcp_idle_timeout: 0\n")).tcp_idle_timeout(),
        Duration::ZERO
    );
    assert_eq!(
        ok(&min_with("tcp_idle_timeout: 0s\n")).tcp_idle_timeout(),
        Duration::ZERO
    );
    assert_eq!(
        ok(&min_with("tcp_idle_timeout: 30s\n")).tcp_idle_timeout(),
        Duration::from_secs(30)
    );
    assert_eq!(
        error(&min_with("tcp_idle_timeout: 30\n")),
        "lifeline.yaml:10:19: tcp_idle_timeout: 30 has no unit: write 30ms, 30s, 30m or 30h"
    );
    assert_eq!(
        error(&min_with("tcp_idle_timeout: never\n")),
        "lifeline.yaml:10:19: tcp_idle_timeout: \"never\" is not a duration: write a whole \
             number and a unit (ms, s, m or h), e.g. 250ms, 2s, 1m, 12h"
    );
}

#[test]
fn node_name_defaults_to_the_host_name() {
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(ok(MIN).node_name(), host);
    assert_eq!(
        ok(&min_with("node_name: gw-a.lon1_2\n")).node_name(),
        "gw-a.lon1_2"
    );
    assert_eq!(
        error(&min_with("node_name: \"gw a\"\n")),
        "lifeline.yaml:10:12: node_name: \"gw a\" contains ' ': use letters, digits, '.', '-' and '_'"
    );
    assert_eq!(
        error(&min_with(&format!("node_name: {}\n", "a".repeat(254)))),
        "lifeline.yaml:10:12: node_name: is 254 characters long; at most 253"
    );
    assert_eq!(
        error(&min_with("node_name: \"\"\n")),
        "lifeline.yaml:10:12: node_name: is empty: write this gateway's name, e.g. gw-a"
    );
}

#[test]
fn unknown_keys_are_refused_where_they_are() {
    let cases = [
        (
            min_with("admn: 127.0.0.1:9060\n"),
            "lifeline.yaml:10:1: admn: unknown field `admn`, expected one of listen, \
                 advertise, admin, journal, node_name, emergency, access, timers, trunks, routes, \
                 all_failed, dialog_max_age, tcp_idle_timeout, limits, log, capture",
        ),
        (
            MIN.replace("    address:", "    adress:"),
            "lifeline.yaml:5:5: trunks[0].adress: unknown field `adress`, expected one of \
                 name, address, transport, probe, max_calls, max_cps",
        ),
        (
            min_with("emergency: { number: [\"112\"] }\n"),
            "lifeline.yaml:10:14: emergency.number: unknown field `number`, expected one of \
                 numbers, trusted_resource_priority",
        ),
        (
            min_with("timers: { t3: 1s }\n"),
            "lifeline.yaml:10:11: timers.t3: unknown field `t3`, expected one of t1, t2, t4, \
                 timer_c",
        ),
        (
            MIN.replace(
                "    address: 192.0.2.10:5060\n",
                "    address: 192.0.2.10:5060\n    probe: { intreval: 1s }\n",
            ),
            "lifeline.yaml:6:14: trunks[0].probe.intreval: unknown field `intreval`, \
                 expected one of interval, timeout, down_after, up_after, alive, enabled, \
                 flap_window, flap_hold, flap_max_hold, live_hold, canary, canary_one_in",
        ),
        (
            MIN.replace("    trunks: [a]\n", "    trunks: [a]\n    failover: 1s\n"),
            "lifeline.yaml:10:5: routes[0].failover: unknown field `failover`, expected one \
                 of name, match, trunks, failover_after, progress_timeout, progress_timeout_min, \
                 progress_timeout_factor, failover_codes, rescue_ringing, hedge_after",
        ),
        (
            MIN.replace(
                "    trunks: [a]\n",
                "    trunks: [{ name: a, priority: 1, wieght: 2 }]\n",
            ),
            "lifeline.yaml:9:38: routes[0].trunks[0].wieght: unknown field `wieght`, expected \
                 one of name, priority, weight",
        ),
        (
            min_with("all_failed: { code: 503 }\n"),
            "lifeline.yaml:10:15: all_failed.code: unknown field `code`, expected one of \
                 status, reason, retry_after",
        ),
        (
            min_with("log: { levle: debug }\n"),
            "lifeline.yaml:10:8: log.levle: unknown field `levle`, expected one of format, \
                 level",
        ),
        (
            // A key named like the location wrapper's own field.
            min_with("log: { value: 1 }\n"),
            "lifeline.yaml:10:8: log.value: unknown field `value`, expected one of format, \
                 level",
        ),
        (
            MIN.replace("    match: any", "    match: { url: x }"),
            "lifeline.yaml:8:14: routes[0].match: unknown field `url`, expected one of uri",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error(&text), want, "{text}");
    }
}

#[test]
fn yaml_errors_have_their_place() {
    let cases = [
        (
            "",
            "lifeline.yaml: is empty: it needs at least listen, trunks and routes",
        ),
        (
            "# nothing\n\n",
            "lifeline.yaml: is empty: it needs at least listen, trunks and routes",
        ),
        (
            "just text\n",
            "lifeline.yaml:1:1: the file must be keys and values (listen:, trunks:, routes: ...)",
        ),
        (
            "listen: udp\n",
            "lifeline.yaml:1:9: listen: expected a list here (`- item` lines or `[a, b]`)",
        ),
        (
            "listen: [udp: 127.0.0.1:5060]\ntrunks: [{name: a\n",
            "lifeline.yaml:2:10: trunks: unclosed bracket '{'",
        ),
        (
            "admin: 127.0.0.1:1\nadmin: 127.0.0.1:2\n",
            "lifeline.yaml:2:1: duplicate mapping key `admin` is not allowed here",
        ),
        (
            "listen:\n  - udp: [127.0.0.1:5060]\n",
            "lifeline.yaml:2:5: listen[0].udp: invalid type: sequence, expected a single value",
        ),
        (
            "trunks:\n  - name: a\n    probe: 5\n",
            "lifeline.yaml:3:12: trunks[0].probe: expected keys and values here (`key: value`)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), want, "{text:?}");
    }
}

#[test]
fn listen_and_addresses() {
    let cases: &[(&str, &str, &str)] = &[
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: 127.0.0.1\n",
                "lifeline.yaml:2:10: listen[0].udp: \"127.0.0.1\" is not ip:port: add the port, e.g. :5060",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: localhost:5060\n",
                "lifeline.yaml:2:10: listen[0].udp: \"localhost:5060\" is not ip:port (an IP \
                 address and a port, e.g. 192.0.2.1:5060)",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: \"::1:5060\"\n",
                "lifeline.yaml:2:10: listen[0].udp: \"::1:5060\" is not ip:port: IPv6 addresses \
                 go in brackets before the port, e.g. \"[::1:5060]:5060\"",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: 127.0.0.1:0\n",
                "lifeline.yaml:2:10: listen[0].udp: \"127.0.0.1:0\": port 0 is not a port",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - sctp: 127.0.0.1:5060\n",
                "lifeline.yaml:2:5: listen[0]: unknown transport \"sctp\": udp or tcp",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - 127.0.0.1:5060\n",
                "lifeline.yaml:2:5: listen[0]: \"127.0.0.1:5060\" has no transport: write `udp: \
                 127.0.0.1:5060` or `tcp: 127.0.0.1:5060`",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: 127.0.0.1:5060\n  - udp: 127.0.0.1:5060\n",
                "lifeline.yaml:3:10: listen[1].udp: 127.0.0.1:5060 is already listed as listen[0]",
            ),
            (
                "listen:\n  - udp: 127.0.0.1:5060\n",
                "listen: []\n",
                "lifeline.yaml:1:9: listen: at least one listen address is needed, e.g. `- udp: \
                 0.0.0.0:5060`",
            ),
            (
                "listen:\n  - udp: 127.0.0.1:5060\n",
                "",
                "lifeline.yaml: listen: at least one listen address is needed, e.g. `- udp: \
                 0.0.0.0:5060`",
            ),
            (
                "  - udp: 127.0.0.1:5060\n",
                "  - udp: 127.0.0.1:5060\n  - udp:\n",
                "lifeline.yaml:3:8: listen[1].udp: no value: write ip:port",
            ),
        ];
    for (from, to, want) in cases {
        let text = MIN.replacen(from, to, 1);
        assert_eq!(error(&text), *want, "{text}");
    }
    let cases = [
        (
            "advertise: 0.0.0.0:5060\n",
            "lifeline.yaml:10:12: advertise: 0.0.0.0:5060 is a wildcard: advertise the \
                 address trunks and callers send to",
        ),
        (
            "advertise:\n",
            "lifeline.yaml:10:10: advertise: no value: write ip:port",
        ),
        (
            "admin: localhost:9060\n",
            "lifeline.yaml:10:8: admin: \"localhost:9060\" is not ip:port (an IP address and \
                 a port, e.g. 192.0.2.1:5060)",
        ),
        (
            "journal: \"\"\n",
            "lifeline.yaml:10:10: journal: is empty: write a directory",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(error(&min_with(extra)), want, "{extra}");
    }
    // advertise with a wildcard listen address: set, it is fine.
    let c = ok(&MIN
        .replace("127.0.0.1:5060", "0.0.0.0:5060")
        .replace("trunks:\n", "advertise: 192.0.2.1:5060\ntrunks:\n"));
    assert_eq!(c.advertise(), "192.0.2.1:5060".parse().unwrap());
    // Unset, with a specific first listen address: that address.
    let c = ok(&MIN.replace(
        "  - udp: 127.0.0.1:5060\n",
        "  - tcp: 127.0.0.2:5070\n  - udp: 0.0.0.0:5060\n",
    ));
    assert_eq!(c.advertise(), "127.0.0.2:5070".parse().unwrap());
}

#[test]
fn trunk_errors() {
    let addr = "    address: 192.0.2.10:5060\n";
    let cases = [
        (
            addr,
            "    address: backup.example:50x60\n",
            "lifeline.yaml:5:14: trunks[0].address: \"backup.example:50x60\" is not host:port",
        ),
        (
            addr,
            "    address: trunk.example\n",
            "lifeline.yaml:5:14: trunks[0].address: \"trunk.example\" is not host:port: add \
                 the port, e.g. :5060",
        ),
        (
            addr,
            "    address: 2001:db8::10:5060\n",
            "lifeline.yaml:5:14: trunks[0].address: \"2001:db8::10:5060\" is not host:port: \
                 write IPv6 addresses in brackets, e.g. \"[2001:db8::1]:5060\"",
        ),
        (
            addr,
            "    address: 192.0.2.10:0\n",
            "lifeline.yaml:5:14: trunks[0].address: \"192.0.2.10:0\": port 0 is not a port",
        ),
        (
            addr,
            "    address: 0.0.0.0:5060\n",
            "lifeline.yaml:5:14: trunks[0].address: \"0.0.0.0:5060\" is a wildcard address, \
                 not one calls can be sent to",
        ),
        (
            addr,
            "    address: nosuch.example:5060\n",
            "lifeline.yaml:5:14: trunks[0].address: cannot resolve \"nosuch.example\" (trunk \
                 \"a\"): no such host",
        ),
        (
            addr,
            "    address: empty.example:5060\n",
            "lifeline.yaml:5:14: trunks[0].address: \"empty.example\" (trunk \"a\") resolves \
                 to no address",
        ),
        (
            addr,
            "",
            "lifeline.yaml:4:5: trunks[0].address: missing: every trunk needs an address \
                 (ip:port or host:port)",
        ),
        (
            addr,
            "    address: 192.0.2.10:5060\n    transport: tls\n",
            "lifeline.yaml:6:16: trunks[0].transport: \"tls\" is not udp, tcp or udp+tcp",
        ),
        (
            "  - name: a\n",
            "  - name: \"\"\n",
            "lifeline.yaml:4:11: trunks[0].name: is empty: write the trunk's name",
        ),
        (
            "trunks:\n  - name: a\n    address: 192.0.2.10:5060\n",
            "trunks: []\n",
            "lifeline.yaml:3:9: trunks: at least one trunk is needed",
        ),
    ];
    for (from, to, want) in cases {
        let text = MIN.replacen(from, to, 1);
        assert_eq!(error(&text), want, "{text}");
    }
    // A trunk without a name: its own error, and the route's trunk is
    // unknown (the file names no trunk "a").
    assert_eq!(
        errors(&MIN.replacen("  - name: a\n    address:", "  - address:", 1)),
        [
            "lifeline.yaml:4:5: trunks[0].name: missing: every trunk needs a name (routes \
                 refer to it)",
        ]
    );
    // Duplicates: reported at the second, once.
    assert_eq!(
        error(&MIN.replacen(
            "routes:",
            "  - name: a\n    address: 192.0.2.11:5060\nroutes:",
            1
        )),
        "lifeline.yaml:6:11: trunks[1].name: \"a\" is already the name of trunks[0]"
    );
}

#[test]
fn probe_errors() {
    let probe = |p: &str| {
        MIN.replacen(
            "    address: 192.0.2.10:5060\n",
            &format!("    address: 192.0.2.10:5060\n    probe: {{ {p} }}\n"),
            1,
        )
    };
    // "    probe: { " is 13 characters: values start at column 14 + key.
    let cases = [
            ("interval: 0ms", "lifeline.yaml:6:24: trunks[0].probe.interval: 0ms: must be more than 0"),
            ("interval: 61s", "lifeline.yaml:6:24: trunks[0].probe.interval: 61s: must be at most 1m"),
            ("timeout: 0s", "lifeline.yaml:6:23: trunks[0].probe.timeout: 0s: must be more than 0"),
            ("timeout: 2m", "lifeline.yaml:6:23: trunks[0].probe.timeout: 2m: must be at most 1m"),
            ("down_after: 0", "lifeline.yaml:6:26: trunks[0].probe.down_after: 0 is not a count from 1 to 100"),
            ("down_after: 101", "lifeline.yaml:6:26: trunks[0].probe.down_after: 101 is not a count from 1 to 100"),
            ("up_after: -1", "lifeline.yaml:6:24: trunks[0].probe.up_after: -1 is not a count from 1 to 100"),
            (
                "up_after: two",
                "lifeline.yaml:6:24: trunks[0].probe.up_after: \"two\" is not a whole number (a count from 1 to 100)",
            ),
            (
                "up_after: 2.5",
                "lifeline.yaml:6:24: trunks[0].probe.up_after: \"2.5\" is not a whole number (a count from 1 to 100)",
            ),
            (
                "alive: sometimes",
                "lifeline.yaml:6:21: trunks[0].probe.alive: \"sometimes\" is not any, not-5xx or a list of status codes such as [200, 405]",
            ),
            (
                "alive: []",
                "lifeline.yaml:6:21: trunks[0].probe.alive: empty list: no answer would count as alive; list codes such as [200, 405], or write any",
            ),
            (
                "alive: [200, 99]",
                "lifeline.yaml:6:27: trunks[0].probe.alive[1]: 99 is not a SIP status code (100-699)",
            ),
            ("enabled: yes", "lifeline.yaml:6:23: trunks[0].probe.enabled: \"yes\" is not true or false"),
            (
                "flap_hold: 1m, flap_max_hold: 30s",
                "lifeline.yaml:6:25: trunks[0].probe.flap_hold: flap_hold (1m) is longer than flap_max_hold (30s)",
            ),
            (
                "flap_max_hold: 500ms",
                "lifeline.yaml:6:29: trunks[0].probe.flap_max_hold: flap_hold (1s) is longer than flap_max_hold (500ms)",
            ),
        ];
    for (p, want) in cases {
        assert_eq!(error(&probe(p)), want, "{p}");
    }
    // Bounds are inclusive; no flap damping at all is allowed.
    let c = ok(&probe(
        "interval: 60s, timeout: 1ms, down_after: 1, up_after: 100, flap_window: 0s, flap_hold: 0s",
    ));
    assert_eq!(c.trunks()[0].probe.interval, Duration::from_secs(60));
    assert_eq!(c.trunks()[0].probe.flap.window, Duration::ZERO);
}

#[test]
fn route_errors() {
    let cases = [
            (
                "    trunks: [a]\n",
                "    trunks: [a, b]\n",
                "lifeline.yaml:9:17: routes[0].trunks[1]: unknown trunk \"b\" (trunks: a)",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a, a]\n",
                "lifeline.yaml:9:17: routes[0].trunks[1]: trunk \"a\" is already listed as routes[0].trunks[0]",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: []\n",
                "lifeline.yaml:9:13: routes[0].trunks: empty: list the trunks to try, in order, e.g. [primary, backup]",
            ),
            (
                "    trunks: [a]\n",
                "",
                "lifeline.yaml:7:5: routes[0].trunks: missing: list the trunks to try, in order, e.g. [primary, backup]",
            ),
            (
                "    match: any\n",
                "",
                "lifeline.yaml:7:5: routes[0].match: missing: write emergency, any or { uri: REGEX }",
            ),
            (
                "    match: any\n",
                "    match: everything\n",
                "lifeline.yaml:8:12: routes[0].match: \"everything\" is not emergency, any or { uri: REGEX }",
            ),
            (
                "    match: any\n",
                "    match: { uri: \"^sip:(999\" }\n",
                "lifeline.yaml:8:19: routes[0].match.uri: \"^sip:(999\" is not a valid regular expression: unclosed group",
            ),
            (
                "  - name: r\n",
                "  - name: \"\"\n",
                "lifeline.yaml:7:11: routes[0].name: is empty: write the route's name",
            ),
            (
                "  - name: r\n",
                "  - name:\n",
                "lifeline.yaml:7:9: routes[0].name: no value: write the route's name",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a]\n    failover_after: 0ms\n",
                "lifeline.yaml:10:21: routes[0].failover_after: 0ms: must be more than 0",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a]\n    progress_timeout: 0s\n",
                "lifeline.yaml:10:23: routes[0].progress_timeout: 0s: must be more than 0",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a]\n    failover_codes: [408, 302]\n",
                "lifeline.yaml:10:27: routes[0].failover_codes[1]: 302 is not a failure status (400-699)",
            ),
            (
                "    trunks: [a]\n",
                "    trunks: [a]\n    failover_codes: [700]\n",
                "lifeline.yaml:10:22: routes[0].failover_codes[0]: 700 is not a failure status (400-699)",
            ),
            (
                "routes:\n  - name: r\n    match: any\n    trunks: [a]\n",
                "routes: []\n",
                "lifeline.yaml:6:9: routes: at least one route is needed, e.g. `- { name: \
                 emergency, match: emergency, trunks: [primary, backup] }`",
            ),
            (
                "routes:\n  - name: r\n    match: any\n    trunks: [a]\n",
                "",
                "lifeline.yaml: routes: at least one route is needed, e.g. `- { name: emergency, \
                 match: emergency, trunks: [primary, backup] }`",
            ),
        ];
    for (from, to, want) in cases {
        let text = MIN.replacen(from, to, 1);
        assert_eq!(error(&text), want, "{text}");
    }
    // An empty failover list is allowed: only timeouts move the call.
    let c = ok(&MIN.replace(
        "    trunks: [a]\n",
        "    trunks: [a]\n    failover_codes: []\n",
    ));
    assert!(c.routes()[0].failover_codes.is_empty());
}

#[test]
fn routes_that_can_never_match() {
    let text = "\
listen: [udp: 127.0.0.1:5060]
trunks: [{ name: a, address: 192.0.2.10:5060 }]
routes:
  - { name: first, match: emergency, trunks: [a] }
  - { name: all, match: any, trunks: [a] }
  - { name: late, match: emergency, trunks: [a] }
  - { name: later, match: { uri: x }, trunks: [a] }
";
    assert_eq!(
            errors(text),
            [
                "lifeline.yaml:6:5: routes[2]: never used: routes[1] (match: any) takes every request first",
                "lifeline.yaml:7:5: routes[3]: never used: routes[1] (match: any) takes every request first",
            ]
        );
    let text = "\
listen: [udp: 127.0.0.1:5060]
trunks: [{ name: a, address: 192.0.2.10:5060 }]
routes:
  - { name: one, match: emergency, trunks: [a] }
  - { name: two, match: emergency, trunks: [a] }
  - { name: one, match: any, trunks: [a] }
";
    assert_eq!(
            errors(text),
            [
                "lifeline.yaml:5:5: routes[1]: never used: routes[0] (match: emergency) takes every emergency call first",
                "lifeline.yaml:6:13: routes[2].name: \"one\" is already the name of routes[0]",
            ]
        );
}

#[test]
fn emergency_timers_all_failed_log_errors() {
    let cases = [
            (
                "emergency: { numbers: [] }\n",
                "lifeline.yaml:10:23: emergency.numbers: empty: list the emergency numbers, e.g. [\"999\", \"112\", \"911\"]",
            ),
            (
                "emergency: { numbers: [\"112\", \"11 2\"] }\n",
                "lifeline.yaml:10:31: emergency.numbers[1]: \"11 2\" is not a dialled number (digits, *, # and + only)",
            ),
            (
                "emergency: { numbers: [\"\"] }\n",
                "lifeline.yaml:10:24: emergency.numbers[0]: \"\" is not a dialled number (digits, *, # and + only)",
            ),
            (
                "emergency: { trusted_resource_priority: [192.0.2.5:5060] }\n",
                "lifeline.yaml:10:42: emergency.trusted_resource_priority[0]: \"192.0.2.5:5060\" is not an IP address (no port, no name)",
            ),
            ("timers: { t1: 0ms }\n", "lifeline.yaml:10:15: timers.t1: 0ms: must be more than 0"),
            (
                "timers: { t1: 5s }\n",
                "lifeline.yaml:10:15: timers.t1: t2 (4s) is shorter than t1 (5s): t2 caps the retransmit interval, which starts at t1",
            ),
            (
                "timers: { t2: 100ms }\n",
                "lifeline.yaml:10:15: timers.t2: t2 (100ms) is shorter than t1 (500ms): t2 caps the retransmit interval, which starts at t1",
            ),
            (
                "all_failed: { status: 200 }\n",
                "lifeline.yaml:10:23: all_failed.status: 200 is not a final failure status (300-699)",
            ),
            (
                "all_failed: { status: 700 }\n",
                "lifeline.yaml:10:23: all_failed.status: 700 is not a final failure status (300-699)",
            ),
            (
                "all_failed: { reason: \"\" }\n",
                "lifeline.yaml:10:23: all_failed.reason: is empty: write a reason phrase such as \"Service Unavailable\"",
            ),
            (
                "all_failed: { reason: \"a\\r\\nb\" }\n",
                "lifeline.yaml:10:23: all_failed.reason: \"a\\r\\nb\" contains control characters",
            ),
            (
                "all_failed: { retry_after: 1500ms }\n",
                "lifeline.yaml:10:28: all_failed.retry_after: 1500ms: Retry-After is whole seconds",
            ),
            (
                "all_failed: { retry_after: never }\n",
                "lifeline.yaml:10:28: all_failed.retry_after: \"never\" is not a duration: write a whole number and a unit (ms, s, m or h), e.g. 250ms, 2s, 1m, 12h",
            ),
            ("dialog_max_age: 0h\n", "lifeline.yaml:10:17: dialog_max_age: 0h: must be more than 0"),
            ("log: { format: xml }\n", "lifeline.yaml:10:16: log.format: \"xml\" is not human or json"),
            (
                "log: { level: verbose }\n",
                "lifeline.yaml:10:15: log.level: \"verbose\" is not error, warn, info, debug or trace",
            ),
        ];
    for (extra, want) in cases {
        assert_eq!(error(&min_with(extra)), want, "{extra}");
    }
    let c = ok(&min_with(
        "all_failed: { status: 503, reason: Overloaded, retry_after: 0s }\n",
    ));
    assert_eq!(
        c.all_failed,
        AllFailed {
            status: 503,
            reason: "Overloaded".into(),
            retry_after: Some(0)
        }
    );
    let c = ok(&min_with("all_failed: { retry_after: 2m }\n"));
    assert_eq!(c.all_failed.retry_after, Some(120));
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = "\
listen:
  - udp: 0.0.0.0:5060
trunks:
  - name: primary
    address: 192.0.2.10:5060
  - name: backup
    address: backup.example:50x60
  - name: primary
    address: 192.0.2.12:5060
    probe: { interval: 250, down_after: 0 }
routes:
  - name: emergency
    match: emergency
    trunks: [primary, bakup]
    failover_after: 2OOms
";
    assert_eq!(
        errors(text),
        [
            "lifeline.yaml:2:10: advertise: not set, and the first listen address \
                 0.0.0.0:5060 is a wildcard: set advertise to the address trunks and callers \
                 send to, e.g. `advertise: 192.0.2.1:5060`",
            "lifeline.yaml:7:14: trunks[1].address: \"backup.example:50x60\" is not host:port",
            "lifeline.yaml:8:11: trunks[2].name: \"primary\" is already the name of trunks[0]",
            "lifeline.yaml:10:24: trunks[2].probe.interval: 250 has no unit: write 250ms, \
                 250s, 250m or 250h",
            "lifeline.yaml:10:41: trunks[2].probe.down_after: 0 is not a count from 1 to 100",
            "lifeline.yaml:14:23: routes[0].trunks[1]: unknown trunk \"bakup\" (trunks: \
                 primary, backup)",
            "lifeline.yaml:15:21: routes[0].failover_after: \"2OOms\" is not a duration: \
                 write a whole number and a unit (ms, s, m or h), e.g. 250ms, 2s, 1m, 12h",
        ]
    );
}

#[test]
fn names_resolve_once_at_load() {
    // The system resolver, on a name every host knows without DNS.
    let text = MIN.replace("192.0.2.10:5060", "localhost:5080");
    let c = Config::from_str(&text, ORIGIN).unwrap();
    let a = c.trunks()[0].peer.addr;
    assert!(a.ip().is_loopback(), "{a}");
    assert_eq!(a.port(), 5080);
    // The advertised address is IPv4, so an IPv4 answer is preferred.
    assert!(a.is_ipv4(), "{a}");
    // With the fake resolver: the first of the advertised family.
    let c = ok(&MIN.replace("192.0.2.10:5060", "dual.example:5060"));
    assert_eq!(c.trunks()[0].peer.addr, "192.0.2.30:5060".parse().unwrap());
}

#[test]
fn display_and_load() {
    let e = ConfigError {
        origin: "f.yaml".into(),
        line: 3,
        column: 7,
        key: "a.b".into(),
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "f.yaml:3:7: a.b: bad");
    let e2 = ConfigError {
        line: 0,
        key: String::new(),
        ..e.clone()
    };
    assert_eq!(e2.to_string(), "f.yaml: bad");
    assert_eq!(
        ConfigErrors(vec![e, e2]).to_string(),
        "f.yaml:3:7: a.b: bad\nf.yaml: bad"
    );

    let dir = std::env::temp_dir().join(format!("lifeline-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, MIN).unwrap();
    assert_eq!(Config::load(&good).unwrap().trunks().len(), 1);
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, MIN.replace("any", "all")).unwrap();
    assert_eq!(
        Config::load(&bad).unwrap_err().to_string(),
        format!(
            "{}:8:12: routes[0].match: \"all\" is not emergency, any or {{ uri: REGEX }}",
            bad.display()
        )
    );
    let binary = dir.join("binary.yaml");
    std::fs::write(&binary, b"listen: \xff\n").unwrap();
    assert_eq!(
        Config::load(&binary).unwrap_err().to_string(),
        format!("{}: is not UTF-8 text", binary.display())
    );
    let missing = dir.join("missing.yaml");
    let msg = Config::load(&missing).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The route and trunk keys of rescue, hedging, the adaptive progress
/// timeout, load sharing, capacity and the canary.
const SHARING: &str = "\
listen: [udp: 127.0.0.1:5060]
trunks:
  - name: primary
    address: 192.0.2.10:5060
    max_calls: 100
    max_cps: 20
    probe: { canary: 30s, canary_one_in: 4 }
  - name: b1
    address: 192.0.2.11:5060
    max_calls: 60
  - name: b2
    address: 192.0.2.12:5060
routes:
  - name: emergency
    match: emergency
    trunks:
      - { name: primary, priority: 1 }
      - { name: b1, priority: 2, weight: 3 }
      - { name: b2, priority: 2, weight: 0 }
    progress_timeout: 2s
    progress_timeout_min: 250ms
    progress_timeout_factor: 6
    rescue_ringing: all
    hedge_after: 300ms
  - name: default
    match: any
    trunks: [primary, { name: b1 }]
    rescue_ringing: off
    progress_timeout: 50ms
";

#[test]
fn rescue_hedging_sharing_capacity_and_canary_keys() {
    let c = ok(SHARING);
    let t = c.trunks();
    assert_eq!((t[0].max_calls, t[0].max_cps), (Some(100), Some(20)));
    assert_eq!((t[1].max_calls, t[1].max_cps), (Some(60), None));
    assert_eq!((t[2].max_calls, t[2].max_cps), (None, None));
    assert_eq!(
        t[0].probe.canary,
        CanaryConfig {
            duration: Duration::from_secs(30),
            one_in: 4
        }
    );
    assert_eq!(t[1].probe.canary, CanaryConfig::default());
    let r = &c.routes()[0];
    assert_eq!(r.trunks, ["primary", "b1", "b2"]);
    assert_eq!(
        r.shares,
        [
            TrunkShare {
                priority: 1,
                weight: 1
            },
            TrunkShare {
                priority: 2,
                weight: 3
            },
            TrunkShare {
                priority: 2,
                weight: 0
            },
        ]
    );
    assert_eq!(r.progress_timeout, Duration::from_secs(2));
    assert_eq!(r.progress_timeout_min, Duration::from_millis(250));
    assert_eq!(r.progress_timeout_factor, 6);
    assert_eq!(r.rescue_ringing, RescueRinging::All);
    assert_eq!(r.hedge_after, Some(Duration::from_millis(300)));
    // A map with only a name is a plain entry: no shares.
    let r = &c.routes()[1];
    assert_eq!(r.trunks, ["primary", "b1"]);
    assert!(r.shares.is_empty());
    // `off` is the word, not YAML 1.1's false.
    assert_eq!(r.rescue_ringing, RescueRinging::Off);
    // The floor defaults to 100 ms, or to a shorter progress timeout.
    assert_eq!(r.progress_timeout_min, Duration::from_millis(50));
    assert_eq!(r.hedge_after, None);
    // The proxy gets all of it (a SIGHUP reload builds it the same way).
    let p = c.proxy_config(lifeline_proxy::Seed::from(1));
    assert_eq!(p.trunks, c.trunks);
    assert_eq!(p.routes[0].shares, c.routes()[0].shares);
    assert_eq!(p.routes[0].hedge_after, Some(Duration::from_millis(300)));
    assert_eq!(p.routes[1].rescue_ringing, RescueRinging::Off);
    // The backups of both routes can carry the primary's 100 calls?
    // b2 is unlimited, so the first can; the second's b1 (60) cannot.
    let w: Vec<String> = c
        .warnings()
        .iter()
        .map(|w| Warning(w).to_string())
        .collect();
    assert_eq!(
        w,
        [
            "lifeline.yaml:27:13: warning: routes[1].trunks: backup capacity is below the \
              primary's: primary \"primary\" takes up to 100 calls, its backups 60 in all \
              (b1 60); if \"primary\" fails, not all of its calls fit"
        ]
    );
}

#[test]
fn under_sized_backups_are_warned_about() {
    let file = |primary: &str, b1: &str, b2: &str| {
        let limit = |m: &str| {
            if m.is_empty() {
                String::new()
            } else {
                format!(", max_calls: {m}")
            }
        };
        format!(
            "\
listen: [udp: 127.0.0.1:5060]
trunks:
  - {{ name: p, address: 192.0.2.10:5060{} }}
  - {{ name: b1, address: 192.0.2.11:5060{} }}
  - {{ name: b2, address: 192.0.2.12:5060{} }}
routes:
  - {{ name: e, match: emergency, trunks: [p, b1, b2] }}
  - {{ name: solo, match: any, trunks: [p] }}
",
            limit(primary),
            limit(b1),
            limit(b2)
        )
    };
    let warnings = |text: &str| -> Vec<String> {
        ok(text)
            .warnings()
            .iter()
            .map(|w| Warning(w).to_string())
            .collect()
    };
    // Limited primary, backups short of it.
    assert_eq!(
        warnings(&file("100", "30", "10")),
        [
            "lifeline.yaml:7:42: warning: routes[0].trunks: backup capacity is below the \
              primary's: primary \"p\" takes up to 100 calls, its backups 40 in all (b1 30, \
              b2 10); if \"p\" fails, not all of its calls fit"
        ]
    );
    // Unlimited primary, limited backups.
    assert_eq!(
        warnings(&file("", "30", "10")),
        [
            "lifeline.yaml:7:42: warning: routes[0].trunks: backup capacity is below the \
              primary's: primary \"p\" has no max_calls, its backups 40 in all (b1 30, b2 10); \
              if \"p\" fails, not all of its calls fit"
        ]
    );
    // Enough, exactly enough, an unlimited backup, no limits at all, and
    // a route with no backup: nothing to say.
    for (p, b1, b2) in [
        ("100", "60", "50"),
        ("100", "60", "40"),
        ("100", "30", ""),
        ("", "", ""),
    ] {
        assert_eq!(
            warnings(&file(p, b1, b2)),
            Vec::<String>::new(),
            "{p} {b1} {b2}"
        );
    }
    // With priorities, the primary is the first of the lowest priority.
    let text = file("100", "300", "10").replace(
        "trunks: [p, b1, b2]",
        "trunks: [{ name: p, priority: 2 }, { name: b1, priority: 1 }, { name: b2, priority: 2 }]",
    );
    assert_eq!(
        warnings(&text),
        [
            "lifeline.yaml:7:42: warning: routes[0].trunks: backup capacity is below the \
              primary's: primary \"b1\" takes up to 300 calls, its backups 110 in all (p 100, \
              b2 10); if \"b1\" fails, not all of its calls fit"
        ]
    );
    // Warnings never make a file invalid, and errors come first.
    let e = errors(&file("100", "30", "0"));
    assert_eq!(
        e,
        ["lifeline.yaml:5:54: trunks[2].max_calls: 0 is not a limit of 1 or more calls"]
    );
}

#[test]
fn rescue_hedging_sharing_capacity_and_canary_errors() {
    let trunk = |extra: &str| {
        MIN.replacen(
            "    address: 192.0.2.10:5060\n",
            &format!("    address: 192.0.2.10:5060\n{extra}"),
            1,
        )
    };
    let route =
        |extra: &str| MIN.replacen("    trunks: [a]\n", &format!("    trunks: [a]\n{extra}"), 1);
    let cases = [
            (
                trunk("    max_calls: 0\n"),
                "lifeline.yaml:6:16: trunks[0].max_calls: 0 is not a limit of 1 or more calls",
            ),
            (
                trunk("    max_calls: 4294967296\n"),
                "lifeline.yaml:6:16: trunks[0].max_calls: 4294967296 is not a limit of 1 or more calls",
            ),
            (
                trunk("    max_cps: ten\n"),
                "lifeline.yaml:6:14: trunks[0].max_cps: \"ten\" is not a whole number (a limit of 1 or more calls per second)",
            ),
            (
                trunk("    max_cps: -5\n"),
                "lifeline.yaml:6:14: trunks[0].max_cps: -5 is not a limit of 1 or more calls per second",
            ),
            (
                trunk("    max_calls:\n"),
                "lifeline.yaml:6:14: trunks[0].max_calls: no value: write a limit of 1 or more calls",
            ),
            (
                trunk("    probe: { canary: 10 }\n"),
                "lifeline.yaml:6:22: trunks[0].probe.canary: 10 has no unit: write 10ms, 10s, 10m or 10h",
            ),
            (
                trunk("    probe: { canary_one_in: 0 }\n"),
                "lifeline.yaml:6:29: trunks[0].probe.canary_one_in: 0 is not a count from 1 to 1000",
            ),
            (
                route("    rescue_ringing: sometimes\n"),
                "lifeline.yaml:10:21: routes[0].rescue_ringing: \"sometimes\" is not emergency, all or off",
            ),
            (
                route("    hedge_after: 0ms\n"),
                "lifeline.yaml:10:18: routes[0].hedge_after: 0ms: must be more than 0 (leave hedge_after out for no hedging)",
            ),
            (
                route("    hedge_after: 300\n"),
                "lifeline.yaml:10:18: routes[0].hedge_after: 300 has no unit: write 300ms, 300s, 300m or 300h",
            ),
            (
                route("    hedge_after: 800ms\n"),
                "lifeline.yaml:10:18: routes[0].hedge_after: hedge_after (800ms) is not shorter than \
                 progress_timeout (800ms): the attempt would be given up before it is hedged",
            ),
            (
                route("    progress_timeout_min: 0s\n"),
                "lifeline.yaml:10:27: routes[0].progress_timeout_min: 0s: must be more than 0",
            ),
            (
                route("    progress_timeout: 1s\n    progress_timeout_min: 2s\n"),
                "lifeline.yaml:11:27: routes[0].progress_timeout_min: progress_timeout_min (2s) is \
                 longer than progress_timeout (1s)",
            ),
            (
                route("    progress_timeout_min: 900ms\n"),
                "lifeline.yaml:10:27: routes[0].progress_timeout_min: progress_timeout_min (900ms) \
                 is longer than progress_timeout (800ms)",
            ),
            (
                route("    progress_timeout_factor: 0\n"),
                "lifeline.yaml:10:30: routes[0].progress_timeout_factor: 0 is not a factor from 1 to 100",
            ),
            (
                route("    progress_timeout_factor: 1.5\n"),
                "lifeline.yaml:10:30: routes[0].progress_timeout_factor: \"1.5\" is not a whole number (a factor from 1 to 100)",
            ),
        ];
    for (text, want) in cases {
        assert_eq!(error(&text), want, "{text}");
    }
    // Bounds are inclusive; a canary of 0s is off.
    let c = ok(&trunk(
            "    max_calls: 4294967295\n    max_cps: 1\n    probe: { canary: 0s, canary_one_in: 1000 }\n",
        ));
    let t = &c.trunks()[0];
    assert_eq!((t.max_calls, t.max_cps), (Some(u32::MAX), Some(1)));
    assert_eq!(t.probe.canary.duration, Duration::ZERO);
    assert_eq!(t.probe.canary.one_in, 1000);
    let c = ok(&route(
            "    progress_timeout_min: 800ms\n    progress_timeout_factor: 100\n    hedge_after: 799ms\n",
        ));
    let r = &c.routes()[0];
    assert_eq!(r.progress_timeout_min, r.progress_timeout);
    assert_eq!(r.progress_timeout_factor, 100);
    assert_eq!(r.hedge_after, Some(Duration::from_millis(799)));
}

#[test]
fn share_errors() {
    let shared = |trunks: &str| {
        format!(
            "\
listen: [udp: 127.0.0.1:5060]
trunks:
  - {{ name: a, address: 192.0.2.10:5060 }}
  - {{ name: b, address: 192.0.2.11:5060 }}
routes:
  - name: r
    match: any
    trunks: {trunks}
"
        )
    };
    let cases = [
            (
                "[a, { name: b, priority: 2 }]",
                vec!["lifeline.yaml:8:14: routes[0].trunks[0]: \"a\" has no priority: when a trunk \
                      of the route has a priority or weight, every one needs a priority, e.g. \
                      { name: a, priority: 1 }"],
            ),
            (
                "[{ name: a }, { name: b, weight: 2 }]",
                vec![
                    "lifeline.yaml:8:14: routes[0].trunks[0].priority: missing: when a trunk of \
                     the route has a priority or weight, every one needs a priority",
                    "lifeline.yaml:8:27: routes[0].trunks[1].priority: missing: when a trunk of \
                     the route has a priority or weight, every one needs a priority",
                ],
            ),
            (
                "[{ name: a, priority: 1, weight: 0 }, { name: b, priority: 1, weight: 0 }]",
                vec!["lifeline.yaml:8:13: routes[0].trunks: every weight is 0: give at least one \
                      trunk a weight above 0"],
            ),
            (
                "[{ name: a, priority: 1001 }, { name: b, priority: -1, weight: 1001 }]",
                vec![
                    "lifeline.yaml:8:35: routes[0].trunks[0].priority: 1001 is not a priority from \
                     0 to 1000 (lower first)",
                    "lifeline.yaml:8:64: routes[0].trunks[1].priority: -1 is not a priority from \
                     0 to 1000 (lower first)",
                    "lifeline.yaml:8:76: routes[0].trunks[1].weight: 1001 is not a weight from 0 \
                     to 1000",
                ],
            ),
            (
                "[{ priority: 1 }, { name: c, priority: 2 }, { name: a, priority: 3 }, { name: a, priority: 4 }]",
                vec![
                    "lifeline.yaml:8:14: routes[0].trunks[0].name: missing: write the trunk's \
                     name, e.g. { name: backup, priority: 2 }",
                    "lifeline.yaml:8:39: routes[0].trunks[1].name: unknown trunk \"c\" (trunks: a, b)",
                    "lifeline.yaml:8:91: routes[0].trunks[3].name: trunk \"a\" is already listed as \
                     routes[0].trunks[2]",
                ],
            ),
        ];
    for (trunks, want) in cases {
        let text = shared(trunks);
        assert_eq!(errors(&text), want, "{text}");
    }
}

#[test]
fn the_proxy_core_accepts_what_validation_accepts() {
    let text = DESIGN_EXAMPLE.replace("admin:", "advertise: 192.0.2.1:5060\nadmin:");
    let c = ok(&text);
    Proxy::new(
        Instant::now(),
        c.proxy_config(lifeline_proxy::Seed::from(7)),
    )
    .expect("the proxy accepts it");
    let c = ok(SHARING);
    Proxy::new(
        Instant::now(),
        c.proxy_config(lifeline_proxy::Seed::from(7)),
    )
    .expect("the proxy accepts shares");
}

// ---------------------------------------------------------------------------
// admin: the short form, the mapping, the token file and open paths.

mod admin {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::admin::DEFAULT_OPEN_PATHS;

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "lifeline-admin-config-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// A token file `name` holding `text`, with `mode`.
        fn token(&self, name: &str, text: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn warnings(c: &Config) -> Vec<String> {
        c.warnings()
            .iter()
            .map(|w| Warning(w).to_string())
            .collect()
    }

    fn open_defaults() -> Vec<String> {
        DEFAULT_OPEN_PATHS.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_short_form_and_the_mapping() {
        let c = ok(MIN);
        assert_eq!(c.admin(), "127.0.0.1:9060".parse().unwrap());
        assert_eq!(c.admin_access().token, None);
        let c = ok(&min_with("admin: \"[::1]:9061\"\n"));
        assert_eq!(c.admin(), "[::1]:9061".parse().unwrap());
        assert_eq!(c.admin_access().token, None);
        let c = ok(&min_with("admin:\n  listen: 127.0.0.2:9062\n"));
        assert_eq!(c.admin(), "127.0.0.2:9062".parse().unwrap());
        assert_eq!(c.admin_access().open_paths, open_defaults());
        // The mapping without listen: the default address.
        let c = ok(&min_with("admin: {}\n"));
        assert_eq!(c.admin(), "127.0.0.1:9060".parse().unwrap());
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn a_token_file_guards_everything_but_the_open_paths() {
        let scratch = Scratch::new();
        let path = scratch.token("t1.token", "  0123456789abcdef0123456789abcdef\n\n", 0o640);
        let c = ok(&min_with(&format!(
            "admin:\n  listen: 0.0.0.0:9060\n  token_file: {}\n",
            path.display()
        )));
        assert_eq!(c.admin(), "0.0.0.0:9060".parse().unwrap());
        let access = c.admin_access();
        let token = access.token.as_ref().expect("a token");
        assert!(
            token.matches(b"0123456789abcdef0123456789abcdef"),
            "trimmed"
        );
        assert!(!token.matches(b"0123456789abcdef0123456789abcdeF"));
        assert_eq!(access.open_paths, open_defaults());
        assert_eq!(c.admin_config().token_file.as_deref(), Some(path.as_path()));
        assert!(c.warnings().is_empty(), "{:?}", warnings(&c));
        // open_paths as written; an empty list guards every path.
        let c = ok(&min_with(&format!(
            "admin:\n  token_file: {}\n  open_paths: [/healthz, /status]\n",
            path.display()
        )));
        assert_eq!(c.admin_access().open_paths, ["/healthz", "/status"]);
        let c = ok(&min_with(&format!(
            "admin: {{ token_file: {}, open_paths: [] }}\n",
            path.display()
        )));
        assert!(c.admin_access().open_paths.is_empty());
    }

    #[test]
    fn a_relative_token_file_is_beside_the_configuration() {
        let scratch = Scratch::new();
        let path = scratch.token("t1.token", "0123456789abcdef0123456789abcdef", 0o600);
        let dir = path.parent().unwrap();
        let origin = dir.join("lifeline.yaml");
        let text = min_with("admin: { token_file: t1.token }\n");
        let c = Config::from_str_with(&text, &origin.display().to_string(), &fake_resolve)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.admin_config().token_file.as_deref(), Some(path.as_path()));
        assert!(c.admin_access().token.is_some());
    }

    #[test]
    fn a_public_address_needs_a_token() {
        assert_eq!(
            error(&min_with("admin: 0.0.0.0:9060\n")),
            "lifeline.yaml:10:8: admin: 0.0.0.0:9060 is not a loopback address, and there is \
             no admin.token_file: anyone who can reach it could drain every trunk and read \
             callers' identities and locations. Set token_file (see docs/SECURITY.md) or \
             listen on 127.0.0.1"
        );
        let e = error(&min_with("admin:\n  listen: 192.0.2.1:9060\n"));
        assert!(
            e.starts_with("lifeline.yaml:11:11: admin.listen: 192.0.2.1:9060 is not a loopback"),
            "{e}"
        );
        let e = error(&min_with(
            "admin: { listen: \"[::]:9060\", open_paths: [/metrics] }\n",
        ));
        assert!(e.contains("[::]:9060 is not a loopback address"), "{e}");
        // Loopback in either family needs none.
        ok(&min_with("admin: 127.10.0.1:9060\n"));
        ok(&min_with("admin: \"[::1]:9060\"\n"));
    }

    #[test]
    fn token_file_errors_say_why() {
        let scratch = Scratch::new();
        let missing = scratch.0.join("absent.token");
        let dir = scratch.0.join("a-directory");
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            (missing.clone(), "cannot read"),
            (dir.clone(), "is not a file"),
            (
                scratch.token("t1.token", "", 0o600),
                "is empty: put a long random token in it",
            ),
            (scratch.token("t2.token", " \n\t\n", 0o600), "is empty"),
            (
                scratch.token("t3.token", "0123456789abcdef0123456789abcdef", 0o644),
                "can be read by every user (mode 0644), so its token is no secret",
            ),
            (
                scratch.token("t4.token", "0123456789abcdef 0123456789abcdef", 0o600),
                "holds white space, control or non-ASCII characters",
            ),
            (
                scratch.token("t5.token", "0123456789abcdef\u{e9}0123456789abcdef", 0o600),
                "holds white space, control or non-ASCII characters",
            ),
            (
                scratch.token("t6.token", &"x".repeat(5000), 0o600),
                "holds 5000 bytes: a token file holds one token",
            ),
        ];
        for (path, want) in cases {
            let e = error(&min_with(&format!(
                "admin:\n  token_file: {}\n",
                path.display()
            )));
            assert!(
                e.starts_with("lifeline.yaml:11:15: admin.token_file: "),
                "{e}"
            );
            assert!(e.contains(want), "{}: {e}", path.display());
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
        // Unreadable by the daemon's user: root reads anything, so this
        // case is only checked as another user.
        let unreadable = scratch.token("t7.token", "0123456789abcdef0123456789abcdef", 0o000);
        if std::fs::read(&unreadable).is_err() {
            let e = error(&min_with(&format!(
                "admin:\n  token_file: {}\n",
                unreadable.display()
            )));
            assert!(e.contains("cannot be read"), "{e}");
        }
        assert_eq!(
            error(&min_with("admin:\n  token_file:\n")),
            "lifeline.yaml:11:13: admin.token_file: no value: write the path of a file \
             holding the admin API's token"
        );
    }

    #[test]
    fn shape_and_path_errors() {
        let scratch = Scratch::new();
        assert_eq!(
            error(&min_with("admin:\n")),
            "lifeline.yaml:10:6: admin: no value: write ip:port"
        );
        let e = error(&min_with("admin: { listen: 127.0.0.1:9060, token: x }\n"));
        assert!(e.contains("unknown field `token`"), "{e}");
        let path = scratch.token("t1.token", "0123456789abcdef0123456789abcdef", 0o600);
        let text = min_with(&format!(
            "admin:\n  token_file: {}\n  open_paths: [metrics, \"/a b\", \"/x?y\", 9]\n",
            path.display()
        ));
        let e = errors(&text);
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(
            e[0].starts_with("lifeline.yaml:12:16: admin.open_paths[0]: \"metrics\" is not a path"),
            "{e:#?}"
        );
        assert!(
            e[1].contains("admin.open_paths[1]: \"/a b\" is not a path"),
            "{e:#?}"
        );
        assert!(
            e[2].contains("admin.open_paths[2]: \"/x?y\" is not a path"),
            "{e:#?}"
        );
        assert!(
            e[3].contains("admin.open_paths[3]: \"9\" is not a path"),
            "{e:#?}"
        );
    }

    #[test]
    fn warnings_for_weak_settings() {
        let scratch = Scratch::new();
        let path = scratch.token("t1.token", "short", 0o600);
        let c = ok(&min_with(&format!(
            "admin:\n  token_file: {}\n  open_paths: [/metrics, /calls/failed]\n",
            path.display()
        )));
        let w = warnings(&c);
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(
            w[0].starts_with("lifeline.yaml:11:15: warning: admin.token_file: the token in ")
                && w[0].contains("has 5 characters, which is easy to guess"),
            "{w:#?}"
        );
        assert!(
            w[1].starts_with(
                "lifeline.yaml:12:26: warning: admin.open_paths[1]: /calls/failed opens"
            ),
            "{w:#?}"
        );
        let c = ok(&min_with("admin: { open_paths: [/metrics] }\n"));
        assert_eq!(
            warnings(&c),
            ["lifeline.yaml:10:22: warning: admin.open_paths: has no effect without token_file: \
              every path is open"]
        );
    }
}

// ---------------------------------------------------------------------------
// access: who may call, whose identity and priority headers are kept.

#[test]
fn the_deployed_example_restricts_callers() {
    let c = ok(include_str!("../../../../deploy/lifeline.yaml"));
    let callers = c.access().callers.as_deref().unwrap_or_default();
    assert!(
        !callers.is_empty(),
        "deploy/lifeline.yaml sets access.callers"
    );
    assert!(!c.access().trusted.is_empty());
}

#[test]
fn access_prefixes_and_words() {
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let c = ok(&min_with(
        "access:\n  callers: [192.0.2.7, \"2001:db8::7\", 10.1.0.0/16]\n  unknown: drop\n",
    ));
    assert_eq!(
        c.access().callers,
        Some(vec![
            net("192.0.2.7/32"),
            net("2001:db8::7/128"),
            net("10.1.0.0/16")
        ])
    );
    assert!(c.access().trusted.is_empty());
    assert!(c.warnings().is_empty());
    // trusted alone: any source may call, these are believed.
    let c = ok(&min_with("access: { trusted: [192.0.2.10/32] }\n"));
    assert_eq!(c.access().callers, None);
    assert_eq!(c.access().trusted, [net("192.0.2.10/32")]);
}

#[test]
fn access_errors() {
    let cases = [
        (
            "access:\n  callers: []\n",
            "lifeline.yaml:11:12: access.callers: empty: nobody could place a call. List the \
             originating networks' prefixes, e.g. [192.0.2.0/24], or leave callers out to take \
             calls from any source",
        ),
        (
            "access: { callers: [192.0.2.0/33] }\n",
            "lifeline.yaml:10:21: access.callers[0]: \"192.0.2.0/33\" is not an IP prefix: \
             write an address and a length, e.g. 192.0.2.0/24 or \"2001:db8::/32\", or one \
             address (no port, no name)",
        ),
        (
            "access: { callers: [192.0.2.1:5060] }\n",
            "lifeline.yaml:10:21: access.callers[0]: \"192.0.2.1:5060\" is not an IP prefix: \
             write an address and a length, e.g. 192.0.2.0/24 or \"2001:db8::/32\", or one \
             address (no port, no name)",
        ),
        (
            "access: { trusted: [192.0.2.0/24, gw.example.net] }\n",
            "lifeline.yaml:10:35: access.trusted[1]: \"gw.example.net\" is not an IP prefix: \
             write an address and a length, e.g. 192.0.2.0/24 or \"2001:db8::/32\", or one \
             address (no port, no name)",
        ),
        (
            "access: { trusted: [192.0.2.10/24] }\n",
            "lifeline.yaml:10:21: access.trusted[0]: \"192.0.2.10/24\" has address bits set \
             past the /24: write 192.0.2.0/24 for the network, or 192.0.2.10/32 for the one \
             address",
        ),
        (
            "access: { unknown: ignore }\n",
            "lifeline.yaml:10:20: access.unknown: \"ignore\" is not drop or reject",
        ),
        (
            "access: { strip_untrusted_location: maybe }\n",
            "lifeline.yaml:10:37: access.strip_untrusted_location: \"maybe\" is not true or false",
        ),
        (
            "access: { caller: [192.0.2.0/24] }\n",
            "lifeline.yaml:10:11: access.caller: unknown field `caller`, expected one of \
             callers, trusted, unknown, strip_untrusted_location",
        ),
        (
            "emergency: { trusted_resource_priority: [192.0.2.0/24] }\n",
            "lifeline.yaml:10:42: emergency.trusted_resource_priority[0]: \"192.0.2.0/24\" is \
             not an IP address (no port, no name)",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(error(&min_with(extra)), want, "{extra}");
    }
}

#[test]
fn limits_every_key_and_the_defaults() {
    let none = ok(MIN);
    assert_eq!(
        none.limits,
        LimitsConfig::default(),
        "no limit unless written"
    );
    assert_eq!(none.tcp_limits, lifeline_io::TcpLimits::default());
    let c = ok(&min_with(
        "limits:
  per_source: {rate: 100, burst: 200}
  per_source_emergency: {rate: 1000, burst: 2000}
  over_limit: drop
  max_calls: 20000
  max_transactions: 100000
  tcp: {max_connections: 100, max_connections_per_ip: 8, message_timeout: 2s, write_queue_bytes: 65536}
",
    ));
    use lifeline_proxy::{OverLimit, Rate};
    assert_eq!(
        c.limits,
        LimitsConfig {
            per_source: Some(Rate {
                rate: 100,
                burst: 200
            }),
            per_source_emergency: Some(Rate {
                rate: 1000,
                burst: 2000
            }),
            over_limit: OverLimit::Drop,
            max_calls: Some(20_000),
            max_transactions: Some(100_000),
        }
    );
    assert_eq!(
        c.proxy_config(lifeline_proxy::Seed::from(1)).limits,
        c.limits
    );
    assert_eq!(
        c.tcp_limits,
        lifeline_io::TcpLimits {
            max_connections: 100,
            max_connections_per_ip: 8,
            message_timeout: Duration::from_secs(2),
            write_queue_bytes: 65_536,
        }
    );
    // A burst defaults to one second's worth.
    let c = ok(&min_with("limits: {per_source: {rate: 50}}\n"));
    assert_eq!(
        c.limits.per_source,
        Some(Rate {
            rate: 50,
            burst: 50
        })
    );
    assert_eq!(c.limits.over_limit, OverLimit::Reject);
}

#[test]
fn limits_errors() {
    let cases = [
        (
            "limits: {per_source: {burst: 5}}\n",
            "lifeline.yaml:10:22: limits.per_source: no rate: write {rate: 100, burst: 200} (requests a second, and how many may come at once)",
        ),
        (
            "limits: {per_source: {rate: 0}}\n",
            "lifeline.yaml:10:29: limits.per_source.rate: 0 is not 1 to 1000000 a second",
        ),
        (
            "limits: {over_limit: later}\n",
            "lifeline.yaml:10:22: limits.over_limit: \"later\" is not reject or drop",
        ),
        (
            "limits: {max_calls: -1}\n",
            "lifeline.yaml:10:21: limits.max_calls: -1 is not a limit of 1 or more calls",
        ),
        (
            "limits: {tcp: {message_timeout: 0s}}\n",
            "lifeline.yaml:10:33: limits.tcp.message_timeout: 0s: must be more than 0",
        ),
        (
            "limits: {per_source_emergancy: {rate: 1}}\n",
            "lifeline.yaml:10:10: limits.per_source_emergancy: unknown field `per_source_emergancy`, expected one of per_source, per_source_emergency, over_limit, max_calls, max_transactions, tcp",
        ),
    ];
    assert_each_refused(&cases);
    // Allowed, but transactions would run out before calls do.
    let c = ok(&min_with(
        "limits: {max_calls: 100, max_transactions: 50}\n",
    ));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn capture_every_key_and_the_defaults() {
    use lifeline_io::{CaptureCalls, CaptureConfig};
    assert_eq!(ok(MIN).capture, None, "no capture unless written");
    let c = ok(&min_with("capture: { hep: 127.0.0.1:9061 }\n"));
    let collector: SocketAddr = "127.0.0.1:9061".parse().unwrap();
    assert_eq!(c.capture, Some(CaptureConfig::new(collector)));
    let d = CaptureConfig::new(collector);
    assert_eq!(
        (d.calls, d.node_id, d.password, d.queue),
        (CaptureCalls::All, 1, None, 8192)
    );
    let c = ok(&min_with(
        "capture:
  hep: \"[2001:db8::9]:9060\"
  calls: failed
  node_id: 2001
  password: s3cret
  queue: 100
  hold: 2m
  hold_bytes: 1048576
",
    ));
    assert_eq!(
        c.capture,
        Some(CaptureConfig {
            collector: "[2001:db8::9]:9060".parse().unwrap(),
            calls: CaptureCalls::Failed,
            node_id: 2001,
            password: Some("s3cret".into()),
            queue: 100,
            hold: Duration::from_secs(120),
            hold_bytes: 1_048_576,
        })
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = ok(&min_with(
        "capture: { hep: 127.0.0.1:9061, calls: emergency }\n",
    ));
    assert_eq!(c.capture.unwrap().calls, CaptureCalls::Emergency);
    // Held only for emergency and failed: with all, a warning.
    let c = ok(&min_with("capture: { hep: 127.0.0.1:9061, hold: 1m }\n"));
    assert_eq!(
        c.warnings
            .iter()
            .map(|w| Warning(w).to_string())
            .collect::<Vec<_>>(),
        [
            "lifeline.yaml:10:39: warning: capture.hold: has no effect with `calls: all`: nothing \
          is held, every message is exported as it comes"
        ]
    );
}

#[test]
fn capture_errors() {
    let cases = [
        (
            "capture: { calls: all }\n",
            "lifeline.yaml:10:10: capture.hep: missing: write the HEP collector's ip:port, e.g. `hep: 127.0.0.1:9060`",
        ),
        (
            "capture: { hep: homer.example:9060 }\n",
            "lifeline.yaml:10:17: capture.hep: \"homer.example:9060\" is not ip:port",
        ),
        (
            "capture: { hep: 0.0.0.0:9060 }\n",
            "lifeline.yaml:10:17: capture.hep: 0.0.0.0:9060 is a wildcard: write the collector's address",
        ),
        (
            "capture: { hep: 127.0.0.1:9060, calls: some }\n",
            "lifeline.yaml:10:40: capture.calls: \"some\" is not all, emergency or failed",
        ),
        (
            "capture: { hep: 127.0.0.1:9060, node_id: -1 }\n",
            "lifeline.yaml:10:42: capture.node_id: -1 is not a capture agent id, 0 to 4294967295",
        ),
        (
            "capture: { hep: 127.0.0.1:9060, password: \"\" }\n",
            "lifeline.yaml:10:43: capture.password: is empty: write the collector's authentication key",
        ),
        (
            "capture: { hep: 127.0.0.1:9060, queue: 0 }\n",
            "lifeline.yaml:10:40: capture.queue: 0 is not 1 to 1048576 messages",
        ),
        (
            "capture: { hep: 127.0.0.1:9060, calls: failed, hold: 500ms }\n",
            "lifeline.yaml:10:54: capture.hold: 500ms: must be at least 1s",
        ),
        (
            "capture: { hep: 127.0.0.1:9060, hold_bytes: 10 }\n",
            "lifeline.yaml:10:45: capture.hold_bytes: 10 is not 65536 (64 KiB) to 1073741824 (1 GiB)",
        ),
        (
            "capture: { hep: 127.0.0.1:9060, nodeid: 5 }\n",
            "lifeline.yaml:10:33: capture.nodeid: unknown field `nodeid`, expected one of hep, calls, node_id, password, queue, hold, hold_bytes",
        ),
    ];
    assert_each_refused(&cases);
    // Every error in the section, not just the first.
    let e = errors(&min_with(
        "capture: { hep: 127.0.0.1:0, calls: x, queue: many }\n",
    ));
    assert_eq!(e.len(), 3, "{e:#?}");
}
