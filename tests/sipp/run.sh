#!/usr/bin/env bash
# SIPp load and failover run against lifeline (or, by hand, Kamailio).
#
#   tests/sipp/run.sh --fault hang --rate 100 --duration 20
#
# Starts, all on 127.0.0.1 with free ports:
#   - two SIPp trunks (UAS): primary and backup (scenarios/trunk*.xml);
#   - the proxy: lifeline (release build, generated config) or Kamailio
#     (kamailio/kamailio.cfg);
#   - a SIPp caller (scenarios/caller.xml) placing rate x duration emergency
#     calls at --rate calls/s;
# injects a fault into the primary at --fault-at seconds for --fault-for
# seconds, and prints one line a script can parse:
#
#   result: proxy=lifeline fault=hang rate=100 duration=20 attempted=2000
#     completed=2000 failed=0 bye_failed=0 switch_ms=212 failback_ms=640 ...
#
# (one line; wrapped here). Fields:
#   attempted, completed, failed   SIPp's own counts (caller's -trace_stat:
#                                  TotalCallCreated, SuccessfulCall(C),
#                                  FailedCall(C)); failed_reasons= names the
#                                  non-zero Failed*(C) counters
#   late_msgs      messages for calls the caller had already finished
#                  (SIPp's DeadCallMsgs: a late 200 from a trunk given up on)
#   stray_1xx      provisional responses that came after the 200 (reordered
#                  or relayed late), ignored as a real caller does
#   retrans        the caller's retransmissions (SIPp's Retransmissions)
#   bye_failed     calls set up and hung up, but whose BYE got 408/48x/5xx
#                  because the trunk holding the dialog was dead (counted as
#                  completed by SIPp; listed apart, see scenarios/caller.xml)
#   switch_ms      fault -> the last new INVITE the proxy sent to the primary
#                  before it stopped sending (the last one before a gap of
#                  max(0.5 s, 5 calls' time); see "How switch and failback
#                  are timed" below)
#   primary_invites_after_switch  new INVITEs the proxy still sent to the
#                  primary later in the fault window (re-tries of the faulty
#                  trunk after the switch)
#   both_trunks    calls whose INVITE reached both trunks (after hang or
#                  flap: the primary answered late too; see the code below)
#   failback_ms    recovery -> the first new INVITE sent to the primary
#                  ("none" if none came before the calls ended)
#   setup_max_ms, setup_p99_ms, delayed_calls: INVITE -> 200 at the caller;
#                  delayed_calls counts setups over 100 ms (for stall: the
#                  calls that waited for the stalled primary; for ring-kill
#                  every call to the ringing primary counts)
#   ringing_at_kill  kill and ring-kill: calls whose INVITE the proxy had
#                  sent to the primary before the kill and that were not
#                  answered then (no 200 from the primary, none at the
#                  caller): the calls the dead trunk held unanswered
#   rescued        of those, the calls answered after all (the caller
#                  received a 200: the backup's, the primary being dead):
#                  rescued == ringing_at_kill when no call was left behind
#   rescue_max_ms  the worst, over the rescued calls, of kill -> the caller
#                  receiving the 200 ("none" when calls were ringing and
#                  none was rescued)
#   ringing_bye_failed  rescued calls whose BYE failed anyway (must be 0:
#                  unlike calls answered on the primary before it died,
#                  their dialog is on the backup)
#                  These four need the capture (below) and are "na" for
#                  other faults or without it.
#   cpu_s          proxy CPU (utime+stime, every process of it) while the
#                  caller ran; cpu_ms_per_call = cpu_s / attempted * 1000
#                  (= CPU seconds per 1,000 calls)
#   cpu_threads    lifeline: the same CPU by thread (io, timer, journal,
#                  main), seconds
#   core_busy_s    lifeline: of that, the time its core (routing, one
#                  thread at a time) was held: the part that does not
#                  spread over cores (lifeline_core_busy_seconds_total)
#   rss_kib        lifeline: peak RSS (VmHWM); Kamailio: sum of VmHWM over
#                  its processes (counts shared memory once per process)
#   pss_kib        peak of the proportional set size summed over the proxy's
#                  processes (sampled every 0.5 s): the like-for-like memory
#
# Faults (--fault):
#   none   no fault (load runs)
#   kill   SIGKILL the primary SIPp: its port answers ICMP port unreachable;
#          restarted on the same port at recovery
#   ring-kill  as kill, but the primary rings before it answers (100, 180,
#          --ring-ms of ringing, then 200: scenarios/trunk-ring.xml; the
#          backup still answers at once), so at the kill about rate x
#          ring-ms calls are ringing on it: they must be moved to the
#          backup (rescued, rescue_max_ms above), not left to time out
#   hang   SIGSTOP the primary (no answer, no ICMP: the hard case); SIGCONT
#          at recovery
#   503    the primary answers INVITE 503 (OPTIONS still 200) inside the
#          fault window (scenarios/trunk-503.xml, -set fault_from_ms ...)
#   stall  the primary answers INVITE 100 and then nothing (OPTIONS still
#          200) inside the window (scenarios/trunk-stall.xml)
#   flap   SIGSTOP / SIGCONT the primary every second through the window
#
# How switch and failback are timed: tcpdump on lo records every datagram
# sent to the primary's port (udp dst 127.0.0.1:PRIMARY), time-stamped by
# the kernel when the proxy sent it - also while the primary is stopped
# (its datagrams wait in its socket) or dead (they bounce with ICMP), which
# the primary's own trace cannot show. Each INVITE is counted once, by
# Call-ID (retransmissions ignored). Without tcpdump (or the right to
# capture) the run falls back to the Call-IDs the primary logged, timed by
# when the caller sent each INVITE; that cannot see INVITEs sent to a killed
# primary, so switch_ms is then "na" for kill; method= says which was used.
# The capture also holds what the primary sends (udp src port PRIMARY): its
# 200s to INVITE tell which calls it had answered before the kill.
#
# How rescues are timed (kill, ring-kill): the kill instant is written to
# the timeline right after kill -KILL returns (so no 200 from the primary
# can be later). A call was ringing at the kill when the capture shows its
# INVITE sent to the primary before that instant and no 200 from the
# primary before it, and the caller had no 200 before it; it was rescued
# when the caller logged "answered" for it after all (the primary was dead:
# the 200 came from the backup, unless a proxy waited for the primary's
# restart, which the time would show); the rescue time is the caller's "answered" time (its gettimeofday, the same
# clock as the timeline) minus the kill instant: what the caller waited
# after the trunk died.
#
# Everything is bounded: rate x duration calls (-m), a global SIPp timeout,
# and an EXIT trap that ends every process this script started, by PID.
# Nothing but 127.0.0.1 is used. Logs stay in --out DIR (default: a new
# directory under /tmp).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCEN="$HERE/scenarios"

usage() {
    cat <<'EOF'
usage: tests/sipp/run.sh [options]
  --proxy lifeline|kamailio|none
                              system under test (default lifeline); none: the caller
                              calls the primary trunk directly (SIPp's own ceiling)
  --fault none|kill|ring-kill|hang|503|stall|flap   (default none)
  --rate N                    calls per second (default 100)
  --duration S                seconds of calls: rate x duration calls (default 20)
  --fault-at S                fault this long after the first call (default duration/4)
  --fault-for S               fault lasts this long (default duration/2)
  --call-ms MS                call length, ACK to BYE (default 1000)
  --ring-ms MS                ring-kill: the primary rings this long before its 200
                              (default 1500)
  --limit N                   SIPp -l, most calls open at once (default rate x (call + 40 s))
  --out DIR                   where logs go (default: mktemp -d /tmp/lifeline-sipp.XXXXXX)
  --lifeline PATH             lifeline binary (default: cargo build --release -p lifeline)
  --io-threads N              lifeline --io-threads
  --proxy-cpus LIST           run the proxy under taskset -c LIST
  --sipp-cpus LIST            run every SIPp under taskset -c LIST
  --kamailio-children N       Kamailio UDP workers (default 4)
  --kamailio-fr-timer MS      Kamailio tm fr_timer (default 500)
  --kamailio-fr-inv-timer MS  Kamailio tm fr_inv_timer (default 2000)
  --no-journal                lifeline without its journal
  --hep ADDR:PORT             lifeline: capture SIP messages to this HEP collector
                              (capture: in its configuration; for measuring its cost)
  --hep-calls all|emergency|failed   which messages (default all)
  --no-capture                do not run tcpdump (switch timed from the trunk's log)
  --trace                     every SIPp also writes each message it sends and receives
                              (-trace_msg: NAME.messages.log in --out; for debugging)
EOF
}

PROXY=lifeline FAULT=none RATE=100 DURATION=20 FAULT_AT='' FAULT_FOR='' CALL_MS=1000 RING_MS=1500
LIMIT='' OUT='' LIFELINE='' IO_THREADS='' PROXY_CPUS='' SIPP_CPUS='' KAM_CHILDREN=4
KAM_FR=500 KAM_FR_INV=2000 JOURNAL=1 CAPTURE=1 TRACE=0 HEP='' HEP_CALLS=all
while [ $# -gt 0 ]; do
    case "$1" in
    --proxy) PROXY=$2; shift 2 ;;
    --fault) FAULT=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --fault-at) FAULT_AT=$2; shift 2 ;;
    --fault-for) FAULT_FOR=$2; shift 2 ;;
    --call-ms) CALL_MS=$2; shift 2 ;;
    --ring-ms) RING_MS=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --lifeline) LIFELINE=$2; shift 2 ;;
    --io-threads) IO_THREADS=$2; shift 2 ;;
    --proxy-cpus) PROXY_CPUS=$2; shift 2 ;;
    --sipp-cpus) SIPP_CPUS=$2; shift 2 ;;
    --kamailio-children) KAM_CHILDREN=$2; shift 2 ;;
    --kamailio-fr-timer) KAM_FR=$2; shift 2 ;;
    --kamailio-fr-inv-timer) KAM_FR_INV=$2; shift 2 ;;
    --no-journal) JOURNAL=0; shift ;;
    --hep) HEP=$2; shift 2 ;;
    --hep-calls) HEP_CALLS=$2; shift 2 ;;
    --no-capture) CAPTURE=0; shift ;;
    --trace) TRACE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

# shellcheck source=tests/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
case "$PROXY" in lifeline | kamailio | none) ;; *) die "--proxy: lifeline, kamailio or none" ;; esac
[ "$PROXY" != none ] || [ "$FAULT" = none ] || die "--proxy none: no fault (nothing would fail over)"
case "$FAULT" in none | kill | ring-kill | hang | 503 | stall | flap) ;; *) die "--fault: none, kill, ring-kill, hang, 503, stall or flap" ;; esac
if ! isint "$RATE" || [ "$RATE" -eq 0 ]; then die "--rate: a whole number > 0"; fi
if ! isint "$DURATION" || [ "$DURATION" -eq 0 ] || [ "$DURATION" -gt 600 ]; then
    die "--duration: 1..600 seconds"
fi
isint "$CALL_MS" || die "--call-ms: milliseconds"
isint "$RING_MS" || die "--ring-ms: milliseconds"
if [ "$FAULT" = ring-kill ] && [ "$PROXY" = kamailio ] && [ "$RING_MS" -ge "$KAM_FR_INV" ]; then
    echo "run.sh: warning: --ring-ms $RING_MS >= --kamailio-fr-inv-timer $KAM_FR_INV: Kamailio gives up on every ringing call" >&2
fi
[ -n "$FAULT_AT" ] || FAULT_AT=$(( DURATION / 4 > 1 ? DURATION / 4 : 1 ))
[ -n "$FAULT_FOR" ] || FAULT_FOR=$(( DURATION / 2 > 1 ? DURATION / 2 : 1 ))
if ! isint "$FAULT_AT" || ! isint "$FAULT_FOR"; then die "--fault-at, --fault-for: whole seconds"; fi
[ "$FAULT" = none ] || [ $((FAULT_AT + FAULT_FOR)) -le "$DURATION" ] ||
    die "the fault (--fault-at + --fault-for) must end within --duration"
CALLS=$((RATE * DURATION))
# Room for every call that may be open (calls waiting out a hung trunk
# included), within SIPp's open-files budget.
[ -n "$LIMIT" ] || LIMIT=$((RATE * (CALL_MS / 1000 + 40)))
[ "$LIMIT" -le 15000 ] || LIMIT=15000

command -v sipp >/dev/null 2>&1 ||
    die "sipp not found: install SIPp (Debian/Ubuntu: apt-get install -y sip-tester)"
command -v ss >/dev/null 2>&1 || die "ss not found (iproute2)"

if [ -z "$OUT" ]; then
    OUT=$(mktemp -d /tmp/lifeline-sipp.XXXXXX)
else
    mkdir -p "$OUT"
fi
OUT=$(cd "$OUT" && pwd)

# ---- processes: every PID we start, ended by the EXIT trap ----
PIDS=()
PRIMARY_PID='' BACKUP_PID='' PROXY_PID='' CAPTURE_PID='' INJECT_PID='' SAMPLER_PID='' CALLER_PID=''
cleanup() {
    local rc=$?
    set +e
    for p in "$INJECT_PID" "$SAMPLER_PID"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null
    done
    if [ -n "$CALLER_PID" ]; then kill -KILL "$CALLER_PID" 2>/dev/null; fi
    if [ -n "$PROXY_PID" ] && kill -0 "$PROXY_PID" 2>/dev/null; then
        if [ "$PROXY" = kamailio ]; then
            kill -TERM -- "-$PROXY_PID" 2>/dev/null
        else
            kill -TERM "$PROXY_PID" 2>/dev/null
        fi
        for _ in $(seq 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
        if [ "$PROXY" = kamailio ]; then
            kill -KILL -- "-$PROXY_PID" 2>/dev/null
        else
            kill -KILL "$PROXY_PID" 2>/dev/null
        fi
    fi
    for p in "${PIDS[@]}"; do
        # (CONT first: a stopped primary is left running for nothing.)
        kill -CONT "$p" 2>/dev/null
        kill -KILL "$p" 2>/dev/null
    done
    if [ -n "$CAPTURE_PID" ]; then
        kill -INT "$CAPTURE_PID" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$CAPTURE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CAPTURE_PID" 2>/dev/null
    fi
    { wait; } 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers ----
# Sleep until a Unix time in milliseconds.
sleep_until_ms() {
    local d=$(( $1 - $(now_ms) ))
    [ "$d" -le 0 ] || sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
}
run_pinned() { # CPUS CMD...: exec CMD under taskset when CPUS is set
    local cpus=$1; shift
    if [ -n "$cpus" ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}
CLK_TCK=$(getconf CLK_TCK)
# Every PID of the proxy: lifeline is one process; Kamailio is started as a
# process group leader (setsid) and forks its workers into that group once,
# at start-up, so the list is taken once, when it is ready (bash builtins
# only: this runs while the proxy is being measured).
PROXY_PIDS=()
find_proxy_pids() {
    PROXY_PIDS=()
    if [ "$PROXY" = none ]; then
        return
    elif [ "$PROXY" = lifeline ]; then
        PROXY_PIDS=("$PROXY_PID")
        return
    fi
    local f line rest fields
    for f in /proc/[0-9]*/stat; do
        read -r line <"$f" 2>/dev/null || continue
        rest=${line##*) }
        read -r -a fields <<<"$rest"
        [ "${fields[2]}" = "$PROXY_PID" ] || continue
        f=${f#/proc/}
        PROXY_PIDS+=("${f%/stat}")
    done
}
# CPU ticks (utime + stime) summed over the proxy's processes.
proxy_ticks() {
    local t=0 p line rest fields
    for p in "${PROXY_PIDS[@]}"; do
        read -r line <"/proc/$p/stat" 2>/dev/null || continue
        rest=${line##*) }
        read -r -a fields <<<"$rest"
        t=$((t + fields[11] + fields[12]))
    done
    echo "$t"
}
# CPU ticks per thread of lifeline, as "name=ticks" words (threads of one
# name summed), for where the CPU went: core, IO, journal.
thread_ticks() {
    [ "$PROXY" = lifeline ] || return 0
    local f line name rest fields
    declare -A t=()
    for f in /proc/"$PROXY_PID"/task/*/stat; do
        read -r line <"$f" 2>/dev/null || continue
        name=${line#*(}
        name=${name%%)*}
        rest=${line##*) }
        read -r -a fields <<<"$rest"
        t[$name]=$((${t[$name]:-0} + fields[11] + fields[12]))
    done
    for name in "${!t[@]}"; do echo "$name=${t[$name]}"; done
}
# lifeline's lifeline_core_busy_seconds_total (published every 250 ms).
core_busy() {
    [ "$PROXY" = lifeline ] || return 0
    http_get "$ADMIN_PORT" /metrics 2>/dev/null | awk '$1 == "lifeline_core_busy_seconds_total" { print $2 }'
}
# Sum of a "Name: N kB" line over the proxy's processes, from FILE
# (status or smaps_rollup).
proxy_kib() {
    local file=$1 key=$2 t=0 p k v _
    for p in "${PROXY_PIDS[@]}"; do
        while read -r k v _; do
            if [ "$k" = "$key:" ]; then t=$((t + v)); break; fi
        done <"/proc/$p/$file" 2>/dev/null || true
    done
    echo "$t"
}

# ---- ports and addresses ----
IP=127.0.0.1
pick_port GW_PORT
pick_port ADMIN_PORT
pick_port PRIMARY_PORT
pick_port BACKUP_PORT
pick_port CALLER_PORT

# ---- the trunks ----
# SIPp's watchdog ends a process stopped too often or too long: not here,
# where stopping the primary is the point.
WATCHDOG=(-watchdog_minor_maxtriggers 1000000 -watchdog_major_maxtriggers 1000000)
TRUNK_COMMON=(-i "$IP" -mi "$IP" -ci "$IP" -aa -nostdin -buff_size 4194304
    -timeout "$((DURATION + 180))s" -trace_logs "${WATCHDOG[@]}")
PRIMARY_SCEN="$SCEN/trunk.xml"
PRIMARY_SET=()
T0_MS=$(( $(now_ms) + 4000 )) # the first call, once everything is up
FAULT_MS=$((T0_MS + FAULT_AT * 1000))
RECOVER_MS=$((FAULT_MS + FAULT_FOR * 1000))
case "$FAULT" in
503) PRIMARY_SCEN="$SCEN/trunk-503.xml" ;;
stall) PRIMARY_SCEN="$SCEN/trunk-stall.xml" ;;
ring-kill)
    # The ringing time is the timeout of the scenario's CANCEL wait (SIPp
    # takes no variable there): a copy with --ring-ms in it.
    PRIMARY_SCEN="$OUT/trunk-ring.xml"
    sed "s/timeout=\"1500\" ontimeout=\"answer\"/timeout=\"$RING_MS\" ontimeout=\"answer\"/" \
        "$SCEN/trunk-ring.xml" >"$PRIMARY_SCEN"
    grep -q "timeout=\"$RING_MS\" ontimeout=\"answer\"" "$PRIMARY_SCEN" ||
        die "scenarios/trunk-ring.xml: no timeout=\"1500\" ontimeout=\"answer\" to set --ring-ms in"
    ;;
esac
if [ "$FAULT" = 503 ] || [ "$FAULT" = stall ]; then
    PRIMARY_SET=(-set fault_from_ms "$FAULT_MS" -set fault_until_ms "$RECOVER_MS")
fi
# -trace_msg for one SIPp (--trace): its messages in NAME.messages.log.
trace_opts() { if [ "$TRACE" = 1 ]; then echo "-trace_msg -message_file $OUT/$1.messages.log"; fi; }
PRIMARY_GEN=0
start_primary() {
    PRIMARY_GEN=$((PRIMARY_GEN + 1))
    local tag="primary.$PRIMARY_GEN"
    # shellcheck disable=SC2046
    (run_pinned "$SIPP_CPUS" sipp -sf "$PRIMARY_SCEN" -p "$PRIMARY_PORT" "${TRUNK_COMMON[@]}" "${PRIMARY_SET[@]}" $(trace_opts "$tag") \
        -log_file "$OUT/$tag.calls.log" >"$OUT/$tag.out" 2>&1) &
    PRIMARY_PID=$!
    PIDS+=("$PRIMARY_PID")
}
start_primary
# shellcheck disable=SC2046
(run_pinned "$SIPP_CPUS" sipp -sf "$SCEN/trunk.xml" -p "$BACKUP_PORT" "${TRUNK_COMMON[@]}" $(trace_opts backup) \
    -log_file "$OUT/backup.calls.log" >"$OUT/backup.out" 2>&1) &
BACKUP_PID=$!
PIDS+=("$BACKUP_PID")

# ---- capture of what the proxy sends to the primary (and its answers) ----
METHOD=trunk-log
if [ "$FAULT" != none ] && [ "$CAPTURE" = 1 ] && command -v tcpdump >/dev/null 2>&1; then
    (exec tcpdump -i lo -nn -s 4096 -U -w "$OUT/primary.pcap" \
        "udp and host $IP and (dst port $PRIMARY_PORT or src port $PRIMARY_PORT)" >"$OUT/tcpdump.out" 2>&1) &
    CAPTURE_PID=$!
    for _ in $(seq 50); do
        grep -q "listening on" "$OUT/tcpdump.out" 2>/dev/null && break
        kill -0 "$CAPTURE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q "listening on" "$OUT/tcpdump.out" 2>/dev/null; then
        METHOD=pcap
    else
        echo "run.sh: tcpdump cannot capture on lo ($(tail -n1 "$OUT/tcpdump.out")); timing from the trunk's log" >&2
        kill "$CAPTURE_PID" 2>/dev/null || true
        CAPTURE_PID=
    fi
fi

# ---- the proxy ----
if [ "$PROXY" = lifeline ]; then
    if [ -z "$LIFELINE" ]; then
        (cd "$ROOT" && cargo build --release -p lifeline --quiet)
        LIFELINE="${CARGO_TARGET_DIR:-$ROOT/target}/release/lifeline"
    fi
    [ -x "$LIFELINE" ] || die "no lifeline binary at $LIFELINE"
    CONFIG="$OUT/lifeline.yaml"
    {
        echo "# Generated by tests/sipp/run.sh"
        echo "listen:"
        echo "  - udp: $IP:$GW_PORT"
        if [ -n "${LIFELINE_ADMIN_TOKEN_FILE:-}" ]; then
            echo "admin: { listen: $IP:$ADMIN_PORT, token_file: $LIFELINE_ADMIN_TOKEN_FILE }"
        else
            echo "admin: $IP:$ADMIN_PORT"
        fi
        [ "$JOURNAL" = 1 ] && echo "journal: $OUT/journal"
        [ -n "$HEP" ] && echo "capture: { hep: $HEP, calls: $HEP_CALLS }"
        # SIPp's caller is the originating network, and its trust domain:
        # its P-Asserted-Identity reaches the trunks as sent.
        echo "access: { callers: [$IP/32], trusted: [$IP/32] }"
        trunks_and_routes_yaml "$IP" "$PRIMARY_PORT" "$BACKUP_PORT"
        echo "log:"
        echo "  level: info"
    } >"$CONFIG"
    "$LIFELINE" check-config "$CONFIG" >/dev/null
    LL_ARGS=(run --config "$CONFIG")
    [ -n "$IO_THREADS" ] && LL_ARGS+=(--io-threads "$IO_THREADS")
    (run_pinned "$PROXY_CPUS" "$LIFELINE" "${LL_ARGS[@]}" >"$OUT/lifeline.log" 2>&1) &
    PROXY_PID=$!
    # Ready, and both trunks answered probes.
    ready=0
    for _ in $(seq 100); do
        if ready_with_trunks "$ADMIN_PORT"; then ready=1; break; fi
        kill -0 "$PROXY_PID" 2>/dev/null || die "lifeline exited: $(tail -n 5 "$OUT/lifeline.log")"
        sleep 0.1
    done
    [ "$ready" = 1 ] || die "lifeline not ready after 10 s: $(tail -n 5 "$OUT/lifeline.log")"
elif [ "$PROXY" = none ]; then
    # No proxy: the caller sends straight to the primary trunk.
    GW_PORT=$PRIMARY_PORT
    sleep 0.5
else
    command -v kamailio >/dev/null 2>&1 || die "kamailio not found (Debian: apt-get install -y kamailio)"
    KAM_MODULES=${KAMAILIO_MODULES:-}
    if [ -z "$KAM_MODULES" ]; then
        for d in /usr/lib/x86_64-linux-gnu/kamailio/modules /usr/lib/kamailio/modules /usr/local/lib64/kamailio/modules /usr/local/lib/kamailio/modules; do
            [ -f "$d/dispatcher.so" ] && KAM_MODULES=$d && break
        done
    fi
    [ -n "$KAM_MODULES" ] || die "Kamailio modules not found; set KAMAILIO_MODULES"
    CONFIG="$OUT/kamailio.cfg"
    printf '1 sip:%s:%s 0 10\n1 sip:%s:%s 0 5\n' "$IP" "$PRIMARY_PORT" "$IP" "$BACKUP_PORT" >"$OUT/dispatcher.list"
    sed -e "s|@LISTEN_IP@|$IP|g; s|@LISTEN_PORT@|$GW_PORT|g; s|@CHILDREN@|$KAM_CHILDREN|g" \
        -e "s|@MODULES@|$KAM_MODULES|g; s|@FR_TIMER@|$KAM_FR|g; s|@FR_INV_TIMER@|$KAM_FR_INV|g" \
        -e "s|@DS_LIST@|$OUT/dispatcher.list|g; s|@PRIMARY@|$IP:$PRIMARY_PORT|g; s|@BACKUP@|$IP:$BACKUP_PORT|g" \
        "$HERE/kamailio/kamailio.cfg" >"$CONFIG"
    kamailio -c -f "$CONFIG" >"$OUT/kamailio-check.out" 2>&1 || die "kamailio -c failed: $(tail -n 5 "$OUT/kamailio-check.out")"
    mkdir -p "$OUT/kamailio-run"
    # Foreground (-DD), logs to stderr (-E), its own process group (setsid),
    # pid file and runtime directory in $OUT: never a system service.
    (run_pinned "$PROXY_CPUS" setsid kamailio -DD -E -f "$CONFIG" -m 256 -Y "$OUT/kamailio-run" \
        -P "$OUT/kamailio-run/kamailio.pid" >"$OUT/kamailio.log" 2>&1) &
    PROXY_PID=$!
    ready=0
    for _ in $(seq 100); do
        if [ -n "$(ss -Hlnu "sport = :$GW_PORT" 2>/dev/null)" ]; then ready=1; break; fi
        kill -0 "$PROXY_PID" 2>/dev/null || die "kamailio exited: $(tail -n 5 "$OUT/kamailio.log")"
        sleep 0.1
    done
    [ "$ready" = 1 ] || die "kamailio not listening after 10 s"
    sleep 2 # the first probes (every second) mark both trunks up
fi

find_proxy_pids
echo "${PROXY_PIDS[*]}" >"$OUT/proxy.pids"

# ---- memory sampler ----
# Peak PSS, and PSS over time in $OUT/pss.tsv: "seconds since the first
# call<TAB>KiB", every 0.5 s (tests/sipp/kamailio/pss_chart.py draws it).
(
    peak=0
    printf 's\tpss_kib\n' >"$OUT/pss.tsv"
    while :; do
        v=$(proxy_kib smaps_rollup Pss)
        [ "$v" -gt "$peak" ] && peak=$v && echo "$peak" >"$OUT/pss_peak_kib"
        awk -v t="$(now_ms)" -v t0="$T0_MS" -v v="$v" \
            'BEGIN { printf "%.1f\t%d\n", (t - t0) / 1000, v }' >>"$OUT/pss.tsv"
        sleep 0.5
    done
) &
SAMPLER_PID=$!

# ---- the fault ----
: >"$OUT/timeline"
if [ "$FAULT" != none ]; then
    case "$FAULT" in
    503 | stall)
        # The primary switches itself at these instants (its -set window).
        printf 'fault %s\nrecover %s\n' "$FAULT_MS" "$RECOVER_MS" >>"$OUT/timeline"
        ;;
    *)
        (
            trap - EXIT
            sleep_until_ms "$FAULT_MS"
            case "$FAULT" in
            kill | ring-kill)
                # The instant after the kill: nothing the primary sent can
                # be later (see "How rescues are timed").
                kill -KILL "$PRIMARY_PID"
                echo "fault $(now_ms)" >>"$OUT/timeline"
                sleep_until_ms "$RECOVER_MS"
                echo "recover $(now_ms)" >>"$OUT/timeline"
                echo restart >"$OUT/restart-primary"
                ;;
            hang)
                echo "fault $(now_ms)" >>"$OUT/timeline"
                kill -STOP "$PRIMARY_PID"
                sleep_until_ms "$RECOVER_MS"
                echo "recover $(now_ms)" >>"$OUT/timeline"
                kill -CONT "$PRIMARY_PID"
                ;;
            flap)
                echo "fault $(now_ms)" >>"$OUT/timeline"
                t=$FAULT_MS
                while [ "$t" -lt "$RECOVER_MS" ]; do
                    kill -STOP "$PRIMARY_PID"
                    echo "stop $(now_ms)" >>"$OUT/timeline"
                    t=$((t + 1000))
                    sleep_until_ms "$(( t < RECOVER_MS ? t : RECOVER_MS ))"
                    kill -CONT "$PRIMARY_PID"
                    echo "cont $(now_ms)" >>"$OUT/timeline"
                    t=$((t + 1000))
                    [ "$t" -lt "$RECOVER_MS" ] && sleep_until_ms "$t"
                done
                echo "recover $(now_ms)" >>"$OUT/timeline"
                ;;
            esac
        ) &
        INJECT_PID=$!
        ;;
    esac
fi

# ---- the caller ----
sleep_until_ms "$T0_MS"
CPU0=$(proxy_ticks)
THREADS0=$(thread_ticks)
BUSY0=$(core_busy)
START_MS=$(now_ms)
# shellcheck disable=SC2046
(run_pinned "$SIPP_CPUS" sipp "$IP:$GW_PORT" -sf "$SCEN/caller.xml" -inf "$SCEN/callees.csv" $(trace_opts caller) \
    -i "$IP" -mi "$IP" -ci "$IP" -p "$CALLER_PORT" -nostdin -aa -buff_size 4194304 "${WATCHDOG[@]}" \
    -r "$RATE" -m "$CALLS" -l "$LIMIT" -d "$CALL_MS" \
    -recv_timeout 40000 -timeout "$((DURATION + 90))s" -timeout_error \
    -trace_stat -stf "$OUT/caller.stat.csv" -fd 1 \
    -trace_screen -screen_file "$OUT/caller.screen.log" \
    -trace_logs -log_file "$OUT/caller.calls.log" \
    -trace_err -error_file "$OUT/caller.errors.log" \
    >"$OUT/caller.out" 2>&1) &
CALLER_PID=$!
# The killed primary comes back (a new process on the same port) when the
# injector says so; the rest is waiting for the caller. (stderr off: bash
# would report the killed primary as "Killed".)
{
    while kill -0 "$CALLER_PID" 2>/dev/null; do
        if [ -f "$OUT/restart-primary" ]; then
            rm -f "$OUT/restart-primary"
            start_primary
        fi
        sleep 0.05
    done
    CALLER_RC=0
    wait "$CALLER_PID" || CALLER_RC=$?
} 2>/dev/null
CALLER_PID=
END_MS=$(now_ms)
CPU1=$(proxy_ticks)
THREADS1=$(thread_ticks)
RSS=$(proxy_kib status VmHWM)
if [ "$PROXY" = lifeline ]; then
    http_get "$ADMIN_PORT" /metrics >"$OUT/metrics.txt" 2>/dev/null || true
    BUSY1=$(awk '$1 == "lifeline_core_busy_seconds_total" { print $2 }' "$OUT/metrics.txt")
    http_get "$ADMIN_PORT" /status >"$OUT/status.json" 2>/dev/null || true
fi
kill "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
PSS=$(cat "$OUT/pss_peak_kib" 2>/dev/null || echo 0)
if [ -n "$INJECT_PID" ]; then
    kill "$INJECT_PID" 2>/dev/null || true
    wait "$INJECT_PID" 2>/dev/null || true
    INJECT_PID=
    kill -CONT "$PRIMARY_PID" 2>/dev/null || true
fi
if [ -n "$CAPTURE_PID" ]; then
    sleep 0.2
    kill -INT "$CAPTURE_PID" 2>/dev/null || true
    wait "$CAPTURE_PID" 2>/dev/null || true
    CAPTURE_PID=
fi

# ---- counts ----
# The last line of the caller's statistics, by column name.
ATTEMPTED=$(stat_col "TotalCallCreated")
COMPLETED=$(stat_col "SuccessfulCall(C)")
FAILED=$(stat_col "FailedCall(C)")
REASONS=$(failed_reasons)
BYE_FAILED=$(grep -c '^bye-failed ' "$OUT/caller.calls.log" 2>/dev/null || true)
STRAY=$(grep -c '^stray-1xx ' "$OUT/caller.calls.log" 2>/dev/null || true)
# Messages for calls SIPp had already finished (e.g. a late 200 from a trunk
# given up on, forwarded after the call ended), and SIPp's retransmissions.
LATE=$(stat_col "DeadCallMsgs(C)")
RETRANS=$(stat_col "Retransmissions(C)")

# Setup times: INVITE sent -> 200 received, per Call-ID, from the caller's log.
read -r SETUP_MAX SETUP_P99 DELAYED < <(awk '
    $1 == "invite" { inv[$2] = $3 + $4 / 1e6 }
    $1 == "answered" && ($2 in inv) { d = ($3 + $4 / 1e6 - inv[$2]) * 1000; print d }' \
    "$OUT/caller.calls.log" 2>/dev/null | sort -n | awk '
    { v[NR] = $1; if ($1 > 100) late++ }
    END { if (NR == 0) { print "na na 0"; exit }
          i = int(NR * 0.99); if (i < 1) i = 1
          printf "%d %d %d\n", v[NR], v[i], late }')

# The capture, one line per datagram of interest: "<unix seconds> invite
# <Call-ID>" for a new INVITE sent to the primary (first sending only),
# "<unix seconds> answer <Call-ID>" for a 200 to INVITE the primary sent
# (first one only).
capture_index() {
    # tcpdump -A prints the IP and UDP headers as text too; their bytes
    # may hold a newline, so the start line is looked for on any line, and
    # the CSeq must say INVITE as well.
    tcpdump -r "$OUT/primary.pcap" -nn -tt -A 2>/dev/null | awk -v port="$PRIMARY_PORT" '
        /^[0-9]+\.[0-9]+ IP / {
            flush(); ts = $1
            d = $5; sub(/:$/, "", d); sub(/.*\./, "", d)
            s = $3; sub(/.*\./, "", s)
            to = (d == port); from = (s == port)
            next
        }
        /INVITE [a-zA-Z]+:[^ ]* SIP\/2\.0/ { req = 1 }
        /SIP\/2\.0 200 / { ok = 1 }
        /^CSeq: *[0-9]+ INVITE/ { cseq = 1 }
        /^(Call-ID|i):/ { cid = $2; sub(/\.$/, "", cid) }
        function flush() {
            if (cseq && cid != "") {
                if (to && req && !((cid, "i") in seen)) { seen[cid, "i"] = 1; print ts, "invite", cid }
                if (from && ok && !req && !((cid, "a") in seen)) { seen[cid, "a"] = 1; print ts, "answer", cid }
            }
            req = 0; ok = 0; cseq = 0; cid = ""; to = 0; from = 0
        }
        END { flush() }' >"$OUT/primary-capture.txt"
}
# New INVITEs sent to the primary: "<unix seconds> <Call-ID>", first sending only.
primary_invites() {
    if [ "$METHOD" = pcap ]; then
        awk '$2 == "invite" { print $1, $3 }' "$OUT/primary-capture.txt"
    else
        # The Call-IDs the primary logged, timed by when the caller sent them.
        awk 'FNR == NR { if ($1 == "invite") t[$2] = $3 + $4 / 1e6; next }
             $1 == "invite" && ($2 in t) && !(($2) in seen) { seen[$2] = 1; printf "%.6f %s\n", t[$2], $2 }' \
            "$OUT/caller.calls.log" "$OUT"/primary.*.calls.log 2>/dev/null
    fi
}
SWITCH=na FAILBACK=na AFTER=na
if [ "$FAULT" != none ]; then
    [ "$METHOD" != pcap ] || capture_index
    primary_invites | sort -n >"$OUT/primary-invites.txt"
    F=$(awk '$1 == "fault" {print $2; exit}' "$OUT/timeline")
    R=$(awk '$1 == "recover" {print $2; exit}' "$OUT/timeline")
    if [ -n "$F" ] && [ -n "$R" ]; then
        # The switch is the end of the first run of INVITEs after the fault:
        # the last one before a gap of more than max(0.5 s, 5 calls' time).
        read -r SWITCH AFTER FAILBACK < <(awk -v f="$F" -v r="$R" -v rate="$RATE" '
            BEGIN { f /= 1000; r /= 1000; prev = f; broke = 0; after = 0; back = "none"
                    gap = 5 / rate; if (gap < 0.5) gap = 0.5 }
            $1 >= f && $1 < r {
                if (!broke && $1 - prev > gap) broke = 1
                if (!broke) prev = $1; else after++
            }
            $1 >= r && back == "none" { back = sprintf("%d", ($1 - r) * 1000) }
            END { printf "%d %d %s\n", (prev - f) * 1000, after, back }' "$OUT/primary-invites.txt")
        if [ "$METHOD" = trunk-log ] && { [ "$FAULT" = kill ] || [ "$FAULT" = ring-kill ]; }; then SWITCH=na; fi
    fi
fi

# Calls ringing on the primary when it was killed, and their rescue (see
# "How rescues are timed" at the top).
RINGING=na RESCUED=na RESCUE_MAX=na RINGING_BYE=na
if { [ "$FAULT" = kill ] || [ "$FAULT" = ring-kill ]; } && [ "$METHOD" = pcap ] && [ -n "${F:-}" ]; then
    read -r RINGING RESCUED RESCUE_MAX RINGING_BYE < <(awk -v f="$F" '
        BEGIN { f /= 1000 }
        FILENAME == ARGV[1] { if ($1 < f) { if ($2 == "invite") sent[$3] = 1; else if ($2 == "answer") ans[$3] = 1 }; next }
        $1 == "answered" { at[$2] = $3 + $4 / 1e6 }
        $1 == "bye-failed" { byef[$2] = 1 }
        END {
            ringing = 0; rescued = 0; max = -1; rb = 0
            for (c in sent) {
                if ((c in ans) || ((c in at) && at[c] < f)) continue
                ringing++
                if (c in at) {
                    rescued++
                    d = (at[c] - f) * 1000; if (d > max) max = d
                    if (c in byef) rb++
                }
            }
            printf "%d %d %s %d\n", ringing, rescued,
                (ringing == 0 ? "na" : (rescued == 0 ? "none" : sprintf("%d", max))), rb
        }' "$OUT/primary-capture.txt" "$OUT/caller.calls.log")
fi

# Calls whose INVITE reached both trunks (by Call-ID, from the trunks'
# logs). After 503 or stall that is the failover itself; after hang or
# flap it also means the primary answered late, the proxy forwarded that
# 2xx (RFC 3261 16.7) and the primary holds a dialog nobody will ACK.
BOTH=$(awk '$1 == "invite" { print $2 }' "$OUT"/primary.*.calls.log 2>/dev/null | sort -u |
    comm -12 - <(awk '$1 == "invite" { print $2 }' "$OUT/backup.calls.log" 2>/dev/null | sort -u) | wc -l)

CPU_S=$(awk -v a="$CPU0" -v b="$CPU1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }')
PER_CALL=$(awk -v c="$CPU_S" -v n="$ATTEMPTED" 'BEGIN { if (n + 0 > 0) printf "%.3f", c / n * 1000; else print "na" }')
# Per thread: "core:1.23,io:0.80,journal:0.10" (seconds), lifeline only.
THREADS=$(awk -v hz="$CLK_TCK" 'NR == FNR { split($0, a, "="); before[a[1]] = a[2]; next }
    { split($0, a, "="); n = a[1]; sub(/^lifeline-/, "", n); sub(/-writer$/, "", n)
      if (n == "lifeline") n = "main"
      d = (a[2] - before[a[1]]) / hz; if (d > 0) out = out (out ? "," : "") sprintf("%s:%.2f", n, d) }
    END { print (out ? out : "na") }' <(printf '%s\n' "$THREADS0") <(printf '%s\n' "$THREADS1"))
# Time the core was held: the serial part of the work (lifeline only).
CORE_BUSY=$(awk -v a="${BUSY0:-}" -v b="${BUSY1:-}" 'BEGIN { if (a == "" || b == "") print "na"; else printf "%.2f", b - a }')
ELAPSED=$(awk -v a="$START_MS" -v b="$END_MS" 'BEGIN { printf "%.1f", (b - a) / 1000 }')

echo "logs: $OUT"
[ "$CALLER_RC" = 0 ] || echo "note: the SIPp caller exited with status $CALLER_RC (see $OUT/caller.out)"
echo "result: proxy=$PROXY fault=$FAULT rate=$RATE duration=$DURATION attempted=$ATTEMPTED completed=$COMPLETED failed=$FAILED bye_failed=$BYE_FAILED failed_reasons=$REASONS late_msgs=$LATE stray_1xx=$STRAY retrans=$RETRANS switch_ms=$SWITCH primary_invites_after_switch=$AFTER both_trunks=$BOTH failback_ms=$FAILBACK ringing_at_kill=$RINGING rescued=$RESCUED rescue_max_ms=$RESCUE_MAX ringing_bye_failed=$RINGING_BYE setup_max_ms=$SETUP_MAX setup_p99_ms=$SETUP_P99 delayed_calls=$DELAYED cpu_s=$CPU_S cpu_ms_per_call=$PER_CALL rss_kib=$RSS pss_kib=$PSS elapsed_s=$ELAPSED method=$METHOD cpu_threads=$THREADS core_busy_s=$CORE_BUSY"
