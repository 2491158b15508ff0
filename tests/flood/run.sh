#!/usr/bin/env bash
# Emergency calls through lifeline while it is flooded.
#
#   tests/flood/run.sh --scenario a --duration 30
#   tests/flood/run.sh --scenario all --limits on --lifeline target/release/lifeline
#
# Starts, all on loopback with free ports:
#   - two counting trunks (`flood trunk`, crate lifeline-flood): primary and
#     backup, each answering every INVITE 100/180/200 and counting the
#     INVITEs that reach it, emergency and other apart;
#   - lifeline (release build, generated config: UDP and TCP on 127.0.0.1,
#     an emergency route and a default route for everything else, both
#     through [primary, backup], so that without limits the flood reaches
#     the trunks);
#   - a SIPp caller on 127.0.0.1 (tests/sipp/scenarios/caller.xml) calling
#     999 at --rate calls/s for --duration seconds, each call answered, held
#     --call-ms and hung up;
#   - the flood of the scenario, from other loopback addresses, starting
#     --warmup seconds before the first call and ending after the last one:
#       none  no flood (the reference)
#       a     10,000 well-formed non-emergency INVITEs/s from one address
#             (127.0.2.1)
#       b     the same spread over 256 addresses (127.0.3.1 - 127.0.4.0)
#       c     5,000 garbage datagrams/s from 4 addresses (127.0.5.1 - .4)
#       d     2,000 TCP connections from 8 addresses (127.0.6.1 - .8), each
#             writing the start of an INVITE one byte a second
#     (rates and counts: --invite-rate, --garbage-rate, --connections,
#     --trickle-sources);
# and prints, per scenario, one line a script can parse and one markdown
# table row:
#
#   result: scenario=a limits=off duration=30 rate=50 attempted=1500
#     connected=1500 connected_pct=100.0 setup_p50_ms=1.2 ... (one line)
#   row: | a | off | 1500/1500 (100.0 %) | ...
#
# Fields of the result line:
#   attempted, connected, connected_pct   emergency calls SIPp placed, and
#                  those answered (a 200 reached the caller: "answered" in
#                  the caller's log); a call not answered within
#                  --call-timeout-ms fails
#   sipp_completed, sipp_failed, failed_reasons   SIPp's own counts
#                  (SuccessfulCall, FailedCall and the non-zero Failed*)
#   setup_p50_ms, setup_p99_ms, setup_max_ms   INVITE sent -> 200 received
#                  per answered call, from the caller's log (SIPp writes both
#                  instants there to the microsecond); setup_samples: how many
#   rtt_p50_ms, rtt_p99_ms   the same from SIPp's response-time trace
#                  (-trace_rtt -rtt_freq 1, the scenario's "setup" timer),
#                  which SIPp keeps in whole milliseconds
#   trunk_emergency_invites, trunk_other_invites   new INVITEs the two trunks
#                  received (retransmissions apart), emergency and other;
#                  primary_*/backup_*: per trunk; trunk_other_retrans:
#                  retransmitted flood INVITEs
#   lifeline_cpu_s, lifeline_cpu_pct   lifeline's CPU (utime + stime, from
#                  /proc/PID/stat) over the window (flood start to the end of
#                  both flood and calls), and as a percentage of one core
#   rss_peak_kib   lifeline's peak RSS (VmHWM) at the end
#   log_lines, log_bytes   what lifeline wrote to its log (stdout and stderr)
#                  during the window
#   flood_*        the flooder's own summary: sent, achieved_rate, skipped
#                  (could not keep pace), responses by status (resp_100,
#                  resp_18x, resp_2xx, resp_503, resp_4xx, resp_other); for d
#                  trickle_connected, trickle_closed_by_server,
#                  trickle_still_open, trickle_first_close_s
#   flood_cpu_s, trunks_cpu_s, sipp_cpu_s   the CPU the load itself took
#   host_busy_pct  the whole machine's busy time over the window, as a
#                  percentage of all its cores (from /proc/stat)
#   unaccounted_cpu_s  the machine's busy time in the window not charged to
#                  lifeline, the flooder, the trunks or SIPp: other work on
#                  the machine, or kernel time charged to no process
#   host_busy_before_pct  the same over the second before the window: other
#                  work on the machine (a build, say) shows here
#   listener_drops  datagrams the kernel dropped at lifeline's UDP sockets
#                  (the listener, and its trunk sockets bound to the same
#                  address) for a full receive buffer (/proc/net/udp, "drops")
#   trunk_socket_drops  the same at the two trunks' sockets
#   host_rcvbuf_errors  the same for every UDP socket of the machine over the
#                  window (/proc/net/snmp, RcvbufErrors): lifeline reads this
#                  host-wide counter to tell whether it is overloaded, so
#                  drops at any socket (the flooder's, SIPp's) count there
#   input_queue_drops, messages_rejected, default_calls_connected,
#   default_calls_failed, trunk_state_changes   from lifeline's /metrics at
#                  the end (lifeline_input_queue_drops_total,
#                  lifeline_messages_rejected_total,
#                  lifeline_calls_total{route="default"}: the flood's calls,
#                  lifeline_trunk_state_changes_total)
#   lifeline_alive  whether lifeline was still running at the end
#
# Every process here shares the machine's cores: the flooder, the trunks
# and SIPp take CPU the gateway would otherwise have. The numbers are those
# of the whole set-up on this machine, not of lifeline alone.
#
# --limits on adds the gateway's per-source limits to the config (the
# `limits:` block below); a lifeline that does not know them refuses the
# file, and the run stops there.
#
# Everything is bounded in time, and an EXIT trap ends every process this
# script started, by PID. Logs stay in --out DIR (default: a new directory
# under /tmp).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SIPP_SCEN="$ROOT/tests/sipp/scenarios"

usage() {
    cat <<'EOF'
usage: tests/flood/run.sh [options]
  --scenario a|b|c|d|none|all   (default all: none, a, b, c, d one after the other)
  --duration S                  seconds of emergency calls (default 30)
  --limits on|off               the per-source limits block in lifeline's config (default off)
  --rate N                      emergency calls per second (default 50)
  --call-ms MS                  call length, ACK to BYE (default 1000)
  --call-timeout-ms MS          a call with no answer this long fails (SIPp -recv_timeout;
                                default 32000, RFC 3261 Timer B)
  --warmup S                    the flood starts this long before the first call (default 2)
  --invite-rate N               a, b: INVITEs per second (default 10000)
  --garbage-rate N              c: datagrams per second (default 5000)
  --connections N               d: TCP connections (default 2000)
  --trickle-sources N           d: source addresses they come from (default 8)
  --out DIR                     where logs go (default: mktemp -d /tmp/lifeline-flood.XXXXXX)
  --lifeline PATH               lifeline binary (default: cargo build --release -p lifeline)
  --flood PATH                  flood binary (default: cargo build --release -p lifeline-flood)
  --wait-idle S                 before each scenario, wait up to S seconds for the machine to
                                be idle (under 15 % busy over 2 s; default 0: do not wait)
EOF
}

SCENARIO=all DURATION=30 LIMITS=off RATE=50 CALL_MS=1000 CALL_TIMEOUT_MS=32000 WARMUP=2
INVITE_RATE=10000 GARBAGE_RATE=5000 CONNECTIONS=2000 TRICKLE_SOURCES=8
OUT='' LIFELINE='' FLOOD='' WAIT_IDLE=0
while [ $# -gt 0 ]; do
    case "$1" in
    --scenario) SCENARIO=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --limits) LIMITS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --call-ms) CALL_MS=$2; shift 2 ;;
    --call-timeout-ms) CALL_TIMEOUT_MS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --invite-rate) INVITE_RATE=$2; shift 2 ;;
    --garbage-rate) GARBAGE_RATE=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --trickle-sources) TRICKLE_SOURCES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --lifeline) LIFELINE=$2; shift 2 ;;
    --flood) FLOOD=$2; shift 2 ;;
    --wait-idle) WAIT_IDLE=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

# shellcheck source=tests/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
case "$SCENARIO" in a | b | c | d | none | all) ;; *) die "--scenario: a, b, c, d, none or all" ;; esac
case "$LIMITS" in on | off) ;; *) die "--limits: on or off" ;; esac
for v in DURATION RATE CALL_MS CALL_TIMEOUT_MS WARMUP INVITE_RATE GARBAGE_RATE CONNECTIONS TRICKLE_SOURCES WAIT_IDLE; do
    isint "${!v}" || die "--$(echo "$v" | tr 'A-Z_' 'a-z-'): a whole number"
done
if [ "$DURATION" -eq 0 ] || [ "$DURATION" -gt 600 ]; then die "--duration: 1..600 seconds"; fi
if [ "$RATE" -eq 0 ]; then die "--rate: > 0"; fi
if [ "$TRICKLE_SOURCES" -eq 0 ] || [ "$TRICKLE_SOURCES" -gt 250 ]; then die "--trickle-sources: 1..250"; fi

command -v sipp >/dev/null 2>&1 ||
    die "sipp not found: install SIPp (Debian/Ubuntu: apt-get install -y sip-tester)"
command -v ss >/dev/null 2>&1 || die "ss not found (iproute2)"

if [ -z "$OUT" ]; then
    OUT=$(mktemp -d /tmp/lifeline-flood.XXXXXX)
else
    mkdir -p "$OUT"
fi
OUT=$(cd "$OUT" && pwd)

# ---- the binaries (built once, also for --scenario all) ----
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "$LIFELINE" ]; then
    (cd "$ROOT" && cargo build --release -p lifeline --quiet)
    LIFELINE="$TARGET_DIR/release/lifeline"
fi
if [ -z "$FLOOD" ]; then
    (cd "$ROOT" && cargo build --release -p lifeline-flood --quiet)
    FLOOD="$TARGET_DIR/release/flood"
fi
[ -x "$LIFELINE" ] || die "no lifeline binary at $LIFELINE"
[ -x "$FLOOD" ] || die "no flood binary at $FLOOD"
LIFELINE=$(cd "$(dirname "$LIFELINE")" && pwd)/$(basename "$LIFELINE")
FLOOD=$(cd "$(dirname "$FLOOD")" && pwd)/$(basename "$FLOOD")

CORES=$(nproc 2>/dev/null || echo '?')
HEADER='| scenario | limits | emergency connected | setup p50 / p99 ms | INVITEs at trunks: emergency / other | lifeline CPU s (% of a core) | peak RSS MiB | log lines | flood |'
RULE='|---|---|---|---|---|---|---|---|---|'

# ---- all: each scenario in a fresh set-up, one after the other ----
if [ "$SCENARIO" = all ]; then
    CHILD_PID=''
    trap '[ -n "$CHILD_PID" ] && kill -TERM "$CHILD_PID" 2>/dev/null; wait 2>/dev/null' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    : >"$OUT/results.txt"
    for s in none a b c d; do
        "$0" --scenario "$s" --duration "$DURATION" --limits "$LIMITS" --rate "$RATE" \
            --call-ms "$CALL_MS" --call-timeout-ms "$CALL_TIMEOUT_MS" --warmup "$WARMUP" \
            --invite-rate "$INVITE_RATE" --garbage-rate "$GARBAGE_RATE" \
            --connections "$CONNECTIONS" --trickle-sources "$TRICKLE_SOURCES" \
            --wait-idle "$WAIT_IDLE" --out "$OUT/$s" --lifeline "$LIFELINE" --flood "$FLOOD" &
        CHILD_PID=$!
        rc=0
        wait "$CHILD_PID" || rc=$?
        CHILD_PID=''
        if [ "$rc" = 2 ]; then
            echo "run.sh: scenario $s could not be set up (see above); stopping" >&2
            exit 2
        elif [ "$rc" != 0 ]; then
            echo "run.sh: scenario $s failed (exit $rc); see $OUT/$s" >&2
        fi
        grep -h '^result: ' "$OUT/$s/result.txt" >>"$OUT/results.txt" 2>/dev/null || true
    done
    echo
    echo "$HEADER"
    echo "$RULE"
    for s in none a b c d; do
        grep -h '^row: ' "$OUT/$s/result.txt" 2>/dev/null | sed 's/^row: //' || true
    done
    echo
    echo "results: $OUT/results.txt"
    exit 0
fi

# ---- processes: every PID we start, ended by the EXIT trap ----
PIDS=() # trunks
LIFELINE_PID='' CALLER_PID='' FLOOD_PID='' SAMPLER_PID=''
cleanup() {
    local rc=$?
    set +e
    for p in "$SAMPLER_PID" "$FLOOD_PID"; do
        [ -n "$p" ] && kill -TERM "$p" 2>/dev/null
    done
    [ -n "$CALLER_PID" ] && kill -KILL "$CALLER_PID" 2>/dev/null
    if [ -n "$LIFELINE_PID" ] && kill -0 "$LIFELINE_PID" 2>/dev/null; then
        kill -TERM "$LIFELINE_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$LIFELINE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$LIFELINE_PID" 2>/dev/null
    fi
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.2
    for p in "${PIDS[@]}" "$FLOOD_PID"; do
        [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
    done
    { wait; } 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 2,000 connections need 2,000 descriptors in lifeline and in the flooder.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

CLK_TCK=$(getconf CLK_TCK)
# CPU ticks (utime + stime) of a process (0 once it is gone).
ticks_of() {
    local line rest fields
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
    rest=${line##*) }
    read -r -a fields <<<"$rest"
    echo $((fields[11] + fields[12]))
}
# "busy total" jiffies of the whole machine, from /proc/stat.
host_ticks() {
    awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}
kib_of() { # PID KEY: "KEY: N kB" from /proc/PID/status
    awk -v k="$2:" '$1 == k { print $2; exit }' "/proc/$1/status" 2>/dev/null || echo 0
}
# key=value from a summary line on stdin ("na" when absent).
field() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { v = substr($i, length(k) + 2) } } END { print (v == "" ? "na" : v) }'; }
# Sum of the series of a Prometheus metric in FILE whose labels hold
# MATCH (optional): 0 when it has none, "na" without the file.
metric_sum() {
    [ -s "$2" ] || { echo na; return; }
    awk -v m="$1" -v want="${3:-}" '($1 == m || index($1, m "{") == 1) && index($1, want) { s += $NF }
        END { print s + 0 }' "$2"
}
# The kernel's UDP receive-buffer drops, whole machine (/proc/net/snmp).
rcvbuf_errors() {
    awk '$1 == "Udp:" { if (!n) { for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") c = i; n = 1 } else { print $c; exit } }' /proc/net/snmp
}
# Datagrams the kernel dropped at the UDP sockets bound to 127.0.0.1:PORT
# (the last column of /proc/net/udp), over the sockets' lives.
udp_drops() {
    local hex
    hex=$(printf '0100007F:%04X' "$1")
    awk -v a="$hex" '$2 == a { d += $NF; n++ } END { print (n ? d : "na") }' /proc/net/udp
}
add() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "na" || b == "na") print "na"; else print a + b }'; }

# Wait (up to WAIT_IDLE seconds) for the machine to be idle: under 15 %
# busy over 2 s.
wait_idle() {
    local until b0 t0 b1 t1 busy
    until=$(($(date +%s) + WAIT_IDLE))
    while :; do
        read -r b0 t0 < <(host_ticks)
        sleep 2
        read -r b1 t1 < <(host_ticks)
        busy=$(((b1 - b0) * 100 / (t1 > t0 ? t1 - t0 : 1)))
        [ "$busy" -lt 15 ] && return 0
        if [ "$(date +%s)" -ge "$until" ]; then
            echo "note: the machine is still $busy % busy after waiting ${WAIT_IDLE} s; running anyway"
            return 0
        fi
    done
}
[ "$WAIT_IDLE" -eq 0 ] || wait_idle

IP=127.0.0.1
pick_port GW_PORT
pick_port ADMIN_PORT
pick_port PRIMARY_PORT
pick_port BACKUP_PORT
pick_port CALLER_PORT

echo "flood run: scenario=$SCENARIO limits=$LIMITS duration=${DURATION}s rate=$RATE calls/s; out: $OUT"
echo "note: the flooder, lifeline, SIPp and both trunks share this machine's $CORES cores: the flooder's and trunks' CPU is CPU lifeline does not get"

# ---- the trunks ----
TRUNK_S=$((WARMUP + DURATION + CALL_TIMEOUT_MS / 1000 + 120))
for t in primary backup; do
    port=$PRIMARY_PORT
    [ "$t" = backup ] && port=$BACKUP_PORT
    "$FLOOD" trunk --listen "$IP:$port" --name "$t" --duration "$TRUNK_S" --stats "$OUT/$t.stats" \
        >"$OUT/$t.out" 2>"$OUT/$t.err" &
    PIDS+=("$!")
done

# ---- lifeline ----
CONFIG="$OUT/lifeline.yaml"
{
    echo "# Generated by tests/flood/run.sh"
    echo "listen:"
    echo "  - udp: $IP:$GW_PORT"
    echo "  - tcp: $IP:$GW_PORT"
    echo "admin: $IP:$ADMIN_PORT"
    echo "journal: $OUT/journal"
    echo "emergency:"
    echo "  numbers: [\"999\", \"112\", \"911\"]"
    # Every loopback address may place calls (the flood included: without
    # limits it reaches the trunks); only SIPp's caller is trusted.
    echo "access: { callers: [127.0.0.0/8], trusted: [$IP/32] }"
    trunks_and_routes_yaml "$IP" "$PRIMARY_PORT" "$BACKUP_PORT"
    echo "log:"
    echo "  level: info"
    echo "  format: human"
    if [ "$LIMITS" = on ]; then
        echo "limits:"
        echo "  per_source: {rate: 100, burst: 200}"
        echo "  per_source_emergency: {rate: 1000, burst: 2000}"
        echo "  over_limit: reject"
        echo "  max_calls: 20000"
        echo "  max_transactions: 100000"
    fi
} >"$CONFIG"
if ! "$LIFELINE" check-config "$CONFIG" >"$OUT/check-config.out" 2>&1; then
    cat "$OUT/check-config.out" >&2
    if [ "$LIMITS" = on ]; then
        die "this lifeline refuses the limits block (--limits on needs a build that has it)"
    fi
    die "lifeline check-config refused $CONFIG"
fi
(exec "$LIFELINE" run --config "$CONFIG" >"$OUT/lifeline.log" 2>&1) &
LIFELINE_PID=$!
ready=0
for _ in $(seq 100); do
    if ready_with_trunks "$ADMIN_PORT"; then ready=1; break; fi
    kill -0 "$LIFELINE_PID" 2>/dev/null || die "lifeline exited: $(tail -n 5 "$OUT/lifeline.log")"
    sleep 0.1
done
[ "$ready" = 1 ] || die "lifeline not ready after 10 s: $(tail -n 5 "$OUT/lifeline.log")"
LL=$LIFELINE_PID
echo "$LL" >"$OUT/lifeline.pid"

# ---- the caller's files: SIPp writes its rtt trace next to the scenario ----
cp "$SIPP_SCEN/caller.xml" "$OUT/caller.xml"
printf 'SEQUENTIAL\nsip:999@emergency.example.net;sip:999@emergency.example.net\n' >"$OUT/callees.csv"
CALLS=$((RATE * DURATION))
LIMIT=$((RATE * (CALL_MS / 1000 + CALL_TIMEOUT_MS / 1000 + 2)))
[ "$LIMIT" -le 15000 ] || LIMIT=15000

# ---- the window starts ----
# How busy the machine was just before (anything else running on it shows
# here: the run's numbers are only as good as this is low).
read -r HB0 HT0 < <(host_ticks)
sleep 1
read -r HB1 HT1 < <(host_ticks)
HOST_BEFORE=$(awk -v b0="$HB0" -v t0="$HT0" -v b1="$HB1" -v t1="$HT1" 'BEGIN { if (t1 > t0) printf "%.0f", (b1 - b0) * 100 / (t1 - t0); else print "na" }')
[ "$HOST_BEFORE" = na ] || [ "$HOST_BEFORE" -lt 20 ] ||
    echo "note: the machine was ${HOST_BEFORE} % busy before the run started (other work on it)"
LOG0=$(wc -l <"$OUT/lifeline.log")
LOGB0=$(wc -c <"$OUT/lifeline.log")
CPU0=$(ticks_of "$LL")
read -r HB0 HT0 < <(host_ticks)
RCVBUF0=$(rcvbuf_errors)
START_MS=$(now_ms)

# ---- the flood ----
TAIL_S=$((CALL_MS / 1000 + 3))
FLOOD_S=$((WARMUP + DURATION + TAIL_S))
case "$SCENARIO" in
a) FLOOD_ARGS=(invite --target "$IP:$GW_PORT" --rate "$INVITE_RATE" --sources 1 --source-base 127.0.2.1 --duration "$FLOOD_S") ;;
b) FLOOD_ARGS=(invite --target "$IP:$GW_PORT" --rate "$INVITE_RATE" --sources 256 --source-base 127.0.3.1 --duration "$FLOOD_S") ;;
c) FLOOD_ARGS=(garbage --target "$IP:$GW_PORT" --rate "$GARBAGE_RATE" --sources 4 --source-base 127.0.5.1 --duration "$FLOOD_S") ;;
d) FLOOD_ARGS=(trickle --target "$IP:$GW_PORT" --connections "$CONNECTIONS" --sources "$TRICKLE_SOURCES" --source-base 127.0.6.1 --duration "$FLOOD_S") ;;
none) FLOOD_ARGS=() ;;
esac
if [ "${#FLOOD_ARGS[@]}" -gt 0 ]; then
    echo "flood: $FLOOD ${FLOOD_ARGS[*]}" >"$OUT/flood.cmd"
    "$FLOOD" "${FLOOD_ARGS[@]}" >"$OUT/flood.out" 2>"$OUT/flood.err" &
    FLOOD_PID=$!
    sleep "$WARMUP"
fi

# ---- SIPp's CPU, sampled (its last reading before it exits) ----
(
    while :; do
        if [ -f "$OUT/caller.pid" ]; then
            t=$(ticks_of "$(cat "$OUT/caller.pid")")
            [ "$t" = 0 ] || echo "$t" >"$OUT/caller.ticks"
        fi
        sleep 0.5
    done
) &
SAMPLER_PID=$!

# ---- the caller ----
SIPP_ARGS=("$IP:$GW_PORT" -sf caller.xml -inf callees.csv
    -i "$IP" -mi "$IP" -ci "$IP" -p "$CALLER_PORT" -nostdin -aa -buff_size 4194304
    -watchdog_minor_maxtriggers 1000000 -watchdog_major_maxtriggers 1000000
    -r "$RATE" -m "$CALLS" -l "$LIMIT" -d "$CALL_MS"
    -recv_timeout "$CALL_TIMEOUT_MS" -timeout "$((DURATION + CALL_TIMEOUT_MS / 1000 + 60))s" -timeout_error
    -trace_stat -stf caller.stat.csv -fd 1
    -trace_rtt -rtt_freq 1
    -trace_screen -screen_file caller.screen.log
    -trace_logs -log_file caller.calls.log
    -trace_err -error_file caller.errors.log)
echo "sipp ${SIPP_ARGS[*]}" >"$OUT/caller.cmd"
(cd "$OUT" && exec sipp "${SIPP_ARGS[@]}" >caller.out 2>&1) &
CALLER_PID=$!
echo "$CALLER_PID" >"$OUT/caller.pid"
CALLER_RC=0
wait "$CALLER_PID" || CALLER_RC=$?
CALLER_PID=''

# ---- the flood ends by itself (bounded: killed 20 s after it should have) ----
if [ -n "$FLOOD_PID" ]; then
    for _ in $(seq $(((FLOOD_S + 20) * 10))); do
        kill -0 "$FLOOD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$FLOOD_PID" 2>/dev/null; then
        echo "run.sh: the flooder outlived its duration; stopped" >&2
        kill -TERM "$FLOOD_PID" 2>/dev/null || true
        sleep 2
        kill -KILL "$FLOOD_PID" 2>/dev/null || true
    fi
    wait "$FLOOD_PID" 2>/dev/null || true
    FLOOD_PID=''
fi
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=''

# ---- the window ends ----
END_MS=$(now_ms)
CPU1=$(ticks_of "$LL")
read -r HB1 HT1 < <(host_ticks)
RSS=$(kib_of "$LL" VmHWM)
RCVBUF1=$(rcvbuf_errors)
GW_DROPS=$(udp_drops "$GW_PORT")
TRUNK_DROPS=$(add "$(udp_drops "$PRIMARY_PORT")" "$(udp_drops "$BACKUP_PORT")")
LOG1=$(wc -l <"$OUT/lifeline.log")
LOGB1=$(wc -c <"$OUT/lifeline.log")
http_get "$ADMIN_PORT" /metrics >"$OUT/metrics.txt" 2>/dev/null || true
LL_ALIVE=yes
kill -0 "$LL" 2>/dev/null || LL_ALIVE=no

# lifeline first (its last retransmissions would find the trunks gone and
# log them as failures), then the trunks, and read their counts.
if [ "$LL_ALIVE" = yes ]; then
    kill -TERM "$LL" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$LL" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$LL" 2>/dev/null || true
fi
wait "$LIFELINE_PID" 2>/dev/null || true
LIFELINE_PID=
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
PIDS=()
# Their final line (stdout), else the last one written to the stats file.
trunk_line() {
    if grep -q '^trunk: ' "$OUT/$1.out" 2>/dev/null; then
        grep -h '^trunk: ' "$OUT/$1.out" | tail -n1
    else
        cat "$OUT/$1.stats" 2>/dev/null || true
    fi
}
P_LINE=$(trunk_line primary)
B_LINE=$(trunk_line backup)
P_EM=$(field invites_emergency <<<"$P_LINE")
B_EM=$(field invites_emergency <<<"$B_LINE")
P_OT=$(field invites_other <<<"$P_LINE")
B_OT=$(field invites_other <<<"$B_LINE")
RETRANS=$(add "$(field invites_other_retrans <<<"$P_LINE")" "$(field invites_other_retrans <<<"$B_LINE")")
TRUNK_EM=$(add "$P_EM" "$B_EM")
TRUNK_OT=$(add "$P_OT" "$B_OT")
TRUNKS_CPU=$(add "$(field cpu_s <<<"$P_LINE")" "$(field cpu_s <<<"$B_LINE")")

# ---- the calls ----
ATTEMPTED=$(stat_col "TotalCallCreated")
COMPLETED=$(stat_col "SuccessfulCall(C)")
FAILED=$(stat_col "FailedCall(C)")
REASONS=$(failed_reasons)
CONNECTED=$(awk '$1 == "answered" { print $2 }' "$OUT/caller.calls.log" 2>/dev/null | sort -u | wc -l)
PCT=$(awk -v c="$CONNECTED" -v a="$ATTEMPTED" 'BEGIN { if (a + 0 > 0) printf "%.1f", c * 100 / a; else print "na" }')
# Setup times, INVITE sent -> 200 received, per call: from the caller's
# log, where SIPp writes both instants to the microsecond (scenario
# caller.xml, gettimeofday); and from SIPp's response-time trace
# (-trace_rtt, one line per answered call, "date_ms;response_time_ms;
# rtd_no"), which SIPp keeps in whole milliseconds.
awk '$1 == "invite" { inv[$2] = $3 + $4 / 1e6 }
    $1 == "answered" && ($2 in inv) { printf "%.3f\n", ($3 + $4 / 1e6 - inv[$2]) * 1000 }' \
    "$OUT/caller.calls.log" >"$OUT/setup_ms.txt" 2>/dev/null || true
RTT_FILE=$(find "$OUT" -maxdepth 1 -name 'caller_*_rtt.csv' | head -n1)
if [ -n "$RTT_FILE" ]; then
    awk -F';' '$3 ~ /setup/ && $2 ~ /^[0-9.]+$/ { print $2 }' "$RTT_FILE" >"$OUT/rtt_setup_ms.txt"
else
    : >"$OUT/rtt_setup_ms.txt"
fi
percentiles() { # FILE: "count p50 p99 max"
    sort -n "$1" | awk '
        { v[NR] = $1 }
        function at(p,  i) { i = int((NR * p + 99) / 100); if (i < 1) i = 1; if (i > NR) i = NR; return v[i] }
        END { if (NR == 0) { print "0 na na na"; exit }
              printf "%d %.1f %.1f %.1f\n", NR, at(50), at(99), v[NR] }'
}
read -r SETUP_N SETUP_P50 SETUP_P99 SETUP_MAX < <(percentiles "$OUT/setup_ms.txt")
read -r RTT_N RTT_P50 RTT_P99 _ < <(percentiles "$OUT/rtt_setup_ms.txt")
SIPP_CPU=$(awk -v t="$(cat "$OUT/caller.ticks" 2>/dev/null || echo na)" -v hz="$CLK_TCK" \
    'BEGIN { if (t == "na") print "na"; else printf "%.2f", t / hz }')

F_LINE=$(grep -h '^flood: ' "$OUT/flood.out" 2>/dev/null | tail -n1 || true)
FLOOD_CPU=$(field cpu_s <<<"$F_LINE")
[ "$SCENARIO" = none ] && FLOOD_CPU=0

# ---- lifeline ----
ELAPSED=$(awk -v a="$START_MS" -v b="$END_MS" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
CPU_S=$(awk -v a="$CPU0" -v b="$CPU1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')
CPU_PCT=$(awk -v c="$CPU_S" -v e="$ELAPSED" 'BEGIN { printf "%.0f", c * 100 / e }')
HOST_PCT=$(awk -v b0="$HB0" -v t0="$HT0" -v b1="$HB1" -v t1="$HT1" 'BEGIN { if (t1 > t0) printf "%.0f", (b1 - b0) * 100 / (t1 - t0); else print "na" }')
# Busy time of the machine not charged to lifeline, the flooder, the trunks
# or SIPp: other work on the machine, or kernel time charged to no process.
UNACCOUNTED=$(awk -v b0="$HB0" -v b1="$HB1" -v hz="$CLK_TCK" -v l="$CPU_S" -v f="$FLOOD_CPU" -v t="$TRUNKS_CPU" -v s="$SIPP_CPU" \
    'BEGIN { if (f == "na" || t == "na" || s == "na") print "na"; else printf "%.2f", (b1 - b0) / hz - l - f - t - s }')
LOG_LINES=$((LOG1 - LOG0))
LOG_BYTES=$((LOGB1 - LOGB0))
QDROPS=$(metric_sum lifeline_input_queue_drops_total "$OUT/metrics.txt")
REJECTED=$(metric_sum lifeline_messages_rejected_total "$OUT/metrics.txt")
DEF_CONNECTED=$(metric_sum lifeline_calls_total "$OUT/metrics.txt" 'route="default",outcome="connected"')
DEF_FAILED=$(metric_sum lifeline_calls_total "$OUT/metrics.txt" 'route="default",outcome="failed"')
STATE_CHANGES=$(metric_sum lifeline_trunk_state_changes_total "$OUT/metrics.txt")

# ---- the flood's own counts ----
FLOOD_FIELDS=''
case "$SCENARIO" in
a | b | c)
    for k in sent achieved_rate skipped resp_100 resp_18x resp_2xx resp_503 resp_4xx resp_other; do
        FLOOD_FIELDS="$FLOOD_FIELDS flood_$k=$(field "$k" <<<"$F_LINE")"
    done
    ;;
d)
    FLOOD_FIELDS=" trickle_connected=$(field connected <<<"$F_LINE") trickle_connect_failed=$(field connect_failed <<<"$F_LINE")"
    FLOOD_FIELDS="$FLOOD_FIELDS trickle_closed_by_server=$(field closed_by_server <<<"$F_LINE") trickle_still_open=$(field still_open <<<"$F_LINE")"
    FLOOD_FIELDS="$FLOOD_FIELDS trickle_first_close_s=$(field first_close_at_s <<<"$F_LINE") trickle_bytes_received=$(field bytes_received <<<"$F_LINE")"
    ;;
esac

echo "logs: $OUT"
[ "$CALLER_RC" = 0 ] || echo "note: the SIPp caller exited with status $CALLER_RC (see $OUT/caller.out)"
[ "$LL_ALIVE" = yes ] || echo "note: lifeline was no longer running at the end (see $OUT/lifeline.log)"
RESULT="result: scenario=$SCENARIO limits=$LIMITS duration=$DURATION rate=$RATE attempted=$ATTEMPTED connected=$CONNECTED connected_pct=$PCT sipp_completed=$COMPLETED sipp_failed=$FAILED failed_reasons=$REASONS setup_p50_ms=$SETUP_P50 setup_p99_ms=$SETUP_P99 setup_max_ms=$SETUP_MAX setup_samples=$SETUP_N rtt_p50_ms=$RTT_P50 rtt_p99_ms=$RTT_P99 rtt_samples=$RTT_N trunk_emergency_invites=$TRUNK_EM trunk_other_invites=$TRUNK_OT primary_emergency=$P_EM backup_emergency=$B_EM primary_other=$P_OT backup_other=$B_OT trunk_other_retrans=$RETRANS lifeline_cpu_s=$CPU_S lifeline_cpu_pct=$CPU_PCT rss_peak_kib=$RSS log_lines=$LOG_LINES log_bytes=$LOG_BYTES${FLOOD_FIELDS} flood_cpu_s=$FLOOD_CPU trunks_cpu_s=$TRUNKS_CPU sipp_cpu_s=$SIPP_CPU host_busy_pct=$HOST_PCT unaccounted_cpu_s=$UNACCOUNTED input_queue_drops=$QDROPS listener_drops=$GW_DROPS trunk_socket_drops=$TRUNK_DROPS host_rcvbuf_errors=$((RCVBUF1 - RCVBUF0)) messages_rejected=$REJECTED default_calls_connected=$DEF_CONNECTED default_calls_failed=$DEF_FAILED trunk_state_changes=$STATE_CHANGES host_busy_before_pct=$HOST_BEFORE lifeline_alive=$LL_ALIVE elapsed_s=$ELAPSED cores=$CORES"
case "$SCENARIO" in
none) FLOOD_CELL="none" ;;
a | b) FLOOD_CELL="$(field sent <<<"$F_LINE") INVITEs sent; answered 503: $(field resp_503 <<<"$F_LINE"), 2xx: $(field resp_2xx <<<"$F_LINE")" ;;
c) FLOOD_CELL="$(field sent <<<"$F_LINE") datagrams sent; 4xx back: $(field resp_4xx <<<"$F_LINE")" ;;
d) FLOOD_CELL="$(field connected <<<"$F_LINE") connected, $(field closed_by_server <<<"$F_LINE") closed by lifeline, $(field still_open <<<"$F_LINE") open at the end" ;;
esac
RSS_MIB=$(awk -v k="$RSS" 'BEGIN { if (k + 0 > 0) printf "%.1f", k / 1024; else print "na" }')
ROW="row: | $SCENARIO | $LIMITS | $CONNECTED/$ATTEMPTED ($PCT %) | $SETUP_P50 / $SETUP_P99 | $TRUNK_EM / $TRUNK_OT | $CPU_S ($CPU_PCT %) | $RSS_MIB | $LOG_LINES | $FLOOD_CELL |"
printf '%s\n%s\n' "$RESULT" "$ROW" | tee "$OUT/result.txt"
