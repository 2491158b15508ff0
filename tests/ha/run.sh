#!/usr/bin/env bash
# A keepalived pair of lifeline gateways under load, in network namespaces:
# the active gateway's lifeline is killed, the other takes the service
# address, the first comes back as standby, and then the second is killed.
#
#   tests/ha/run.sh                  # the shipped deploy/keepalived.conf
#   tests/ha/run.sh --timers fast    # the sub-second settings (below)
#   tests/ha/run.sh --ring-ms 1500   # trunks ring 1.5 s before they answer
#   tests/ha/run.sh --fault link     # the active gateway's link goes down
#
# Needs root (namespaces), keepalived, SIPp (sip-tester), tcpdump, curl.
# docs/OPERATIONS.md ("High availability") has the results and what they
# mean; tests/ha/ci.sh is the CI run.
#
# What it builds, all inside namespaces named llha-<pid>-*, so nothing is
# added to the host's own network (the root namespace):
#
#   llha-<pid>-hub     the Linux bridge br0 (one veth port per node)
#   llha-<pid>-gwa     10.211.0.11  gw-a: lifeline + keepalived (priority 100)
#   llha-<pid>-gwb     10.211.0.12  gw-b: lifeline + keepalived (priority 90)
#   llha-<pid>-trunk1  10.211.0.21  trunk-1: SIPp UAS (tests/sipp/scenarios/trunk.xml,
#   llha-<pid>-trunk2  10.211.0.22  trunk-2:  or trunk-ring.xml with --ring-ms)
#   llha-<pid>-caller  10.211.0.31  SIPp UAC (tests/sipp/scenarios/caller.xml)
#   service address    10.211.0.10  keepalived's virtual address
#
# keepalived runs deploy/keepalived.conf as shipped, with only the
# interface (ha0), the virtual address and gw-b's priority (90) replaced;
# each replacement must change exactly one line, or the run stops, so a
# change to the shipped file cannot go untested. --timers replaces more:
#
#   shipped  nothing more: advert_int 1, the check every 1 s, fall 2, rise 2
#   tuned    vrrp_version 3, advert_int 0.1, fall 1 (keepalived 2.2 runs a
#            check at most once a second: interval stays 1)
#   fast     tuned, and the check asks /readyz four times, 200 ms apart, in
#            each run (the same curl command; timeout 2 for the run)
#
# Each gateway runs lifeline with listen 0.0.0.0:5060, advertise
# 10.211.0.10:5060 (Via and Record-Route carry the service address) and the
# admin API on 127.0.0.1:9060 in its namespace, where keepalived's curl
# finds it. Both gateways probe both trunks all the time: the standby is
# warm (its /status is read before each kill: standby_trunks).
#
# Timeline: the caller places --rate calls/s (emergency calls, --call-ms
# long) at the service address. At --duration/4, gw-a's lifeline is
# SIGKILLed (keepalived on gw-a stays up: its check fails and it gives up
# the address). Once gw-b holds the address, gw-a's lifeline is started
# again and its keepalived comes back as BACKUP (nopreempt: gw-b keeps the
# address; the run fails if not). At 5/8 of --duration (or 2 s after that
# settled, if later), gw-b's lifeline is SIGKILLed and gw-a takes the
# address back. With --fault link, the active gateway's interface is taken
# down instead (ip link set ha0 down: its keepalived and lifeline keep
# running but reach nobody, as a dead host or a cut cable looks to the
# other gateway, which waits out VRRP's master-down interval), and brought
# back up where lifeline would be restarted. The caller stops placing calls at --duration (or
# --duration/4 after the second takeover, if later) and finishes the calls
# it has; a call that never gets an answer fails after 10 s.
#
# How takeover is timed: tcpdump in the caller's namespace records every
# datagram the gateways send to the caller, and ARP, time-stamped by the
# caller's kernel as they arrive; it tells the gateways apart by their MAC
# address (not by IP: the service address moves between them). For each
# kill (the instant kill -KILL, or ip link set down, returned):
#
#   takeover_ms   the last 200 to an INVITE the caller received from the old
#                 active gateway -> the first 200 to an INVITE from the new
#                 one (with --ring-ms, the ringing time is part of it)
#   answer_ms     the kill -> the first 200 from the new gateway
#   trying_ms     the kill -> the first 100 Trying from the new gateway
#   vip_ms        the kill -> the first gratuitous ARP for the service
#                 address from the new gateway (keepalived took it)
#   vip_moves     times the address was added on a gateway after the kill
#                 (ip monitor in each namespace): 1, or the pair flapped
#   gap_max_ms    the longest time without a 200 from either gateway
#
# and, for the calls of the window (INVITE first sent from 1 s before the
# kill, plus --ring-ms, to the same before the next kill, or the end):
#
#   calls         calls placed
#   failed        calls never answered (no 200), of which
#     rejected      a gateway answered an error
#     lost_held     the gateway that died had taken them (it had sent 100
#                   Trying): the caller no longer retransmits, and the
#                   answer went to the dead gateway (docs/OPERATIONS.md)
#     lost_other    anything else (must be 0)
#   delayed       calls answered more than 500 ms (plus --ring-ms) after
#                 their INVITE first left: the caller retransmitted it
#                 until the new gateway held the address
#   setup_max_ms  the slowest of the calls answered
#   bye_481       calls the old gateway answered since the previous kill
#                 whose BYE failed: up at the kill, their BYE reached the
#                 new gateway, which has no dialog state and answers 481
#   answered_by_new  calls of the window the new gateway answered
#
# The baseline (calls before the first window) shows the same for calls no
# kill touched. Prints a table, one "result:" line per direction and a
# "baseline:" line for scripts (tests/ha/ci.sh). Exit status: 0 when the
# run completed (whatever the numbers), 2 for a bad option or a missing
# tool, 1 when the pair could not be set up, a takeover did not happen
# within 30 s, or a gateway that came back took the address (no nopreempt).
#
# Everything is bounded: every wait has a limit, SIPp has a global timeout,
# and an EXIT trap ends every process started here (by PID, then anything
# left inside the namespaces it created) and deletes those namespaces.
# Logs stay in --out DIR (default: a new directory under /tmp).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCEN="$ROOT/tests/sipp/scenarios"
SHIPPED_KEEPALIVED="$ROOT/deploy/keepalived.conf"

usage() {
    cat <<'EOF'
usage: tests/ha/run.sh [options]   (as root)
  --timers shipped|tuned|fast
                    shipped: deploy/keepalived.conf as it is (default); tuned:
                    vrrp_version 3, advert_int 0.1, the check's fall 1; fast: tuned,
                    and the check samples /readyz every 200 ms (see above)
  --tuned, --fast   --timers tuned, --timers fast
  --fault lifeline|link
                    lifeline: SIGKILL the active gateway's lifeline (default);
                    link: take the active gateway's link down (a dead host or a
                    cut cable, as the network sees it; its lifeline keeps running)
  --rate N          calls per second (default 50)
  --duration S      seconds of calls (default 30; at least 12): gw-a killed at S/4,
                    gw-b at 5S/8 or once the pair settled
  --call-ms MS      call length, ACK to BYE (default 1000)
  --ring-ms MS      trunks ring this long before they answer (default 0: at once)
  --out DIR         where logs go (default: mktemp -d /tmp/lifeline-ha.XXXXXX)
  --lifeline PATH   lifeline binary (default: cargo build --release -p lifeline)
EOF
}

TIMERS=shipped FAULT=lifeline RATE=50 DURATION=30 CALL_MS=1000 RING_MS=0 OUT='' LIFELINE=''
while [ $# -gt 0 ]; do
    case "$1" in
    --timers) TIMERS=$2; shift 2 ;;
    --fault) FAULT=$2; shift 2 ;;
    --tuned) TIMERS=tuned; shift ;;
    --fast) TIMERS=fast; shift ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --call-ms) CALL_MS=$2; shift 2 ;;
    --ring-ms) RING_MS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --lifeline) LIFELINE=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

# shellcheck source=tests/lib/common.sh
. "$ROOT/tests/lib/common.sh"
case "$TIMERS" in shipped | tuned | fast) ;; *) die "--timers: shipped, tuned or fast" ;; esac
case "$FAULT" in lifeline | link) ;; *) die "--fault: lifeline or link" ;; esac
if ! isint "$RATE" || [ "$RATE" -eq 0 ] || [ "$RATE" -gt 500 ]; then die "--rate: 1..500"; fi
if ! isint "$DURATION" || [ "$DURATION" -lt 12 ] || [ "$DURATION" -gt 600 ]; then
    die "--duration: 12..600 seconds"
fi
isint "$CALL_MS" || die "--call-ms: milliseconds"
if ! isint "$RING_MS" || [ "$RING_MS" -gt 8000 ]; then die "--ring-ms: 0..8000 milliseconds"; fi
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, keepalived)"
for tool in ip keepalived sipp tcpdump curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Debian: apt-get install -y iproute2 keepalived sip-tester tcpdump curl)"
done
[ -f "$SHIPPED_KEEPALIVED" ] || die "no $SHIPPED_KEEPALIVED"

if [ -z "$OUT" ]; then
    OUT=$(mktemp -d /tmp/lifeline-ha.XXXXXX)
else
    mkdir -p "$OUT"
fi
OUT=$(cd "$OUT" && pwd)

if [ -z "$LIFELINE" ]; then
    (cd "$ROOT" && cargo build --release -p lifeline --quiet)
    LIFELINE="${CARGO_TARGET_DIR:-$ROOT/target}/release/lifeline"
fi
[ -x "$LIFELINE" ] || die "no lifeline binary at $LIFELINE"

# ---- names and addresses ----
NS="llha-$$"
HUB="$NS-hub"
NODES=(gwa gwb trunk1 trunk2 caller)
declare -A IPOF=([gwa]=10.211.0.11 [gwb]=10.211.0.12 [trunk1]=10.211.0.21 [trunk2]=10.211.0.22 [caller]=10.211.0.31)
# Fixed MAC addresses, so the capture tells the gateways apart.
declare -A MACOF=([gwa]=02:4c:4c:00:00:0a [gwb]=02:4c:4c:00:00:0b)
declare -A NAMEOF=([gwa]=gw-a [gwb]=gw-b)
VIP=10.211.0.10
# Not the shipped file's eth0: the interface is replaced like the rest.
IFACE=ha0
CREATED_NS=()

# ---- processes: every PID we start, ended by the EXIT trap ----
declare -A LL_PID=() KA_PID=() MON_PID=()
TRUNK_PIDS=() CALLER_PID='' CAPTURE_PID=''
cleanup() {
    local rc=$?
    set +e
    # (bash reports each killed job on stderr: not of interest here.)
    exec 2>/dev/null
    [ -n "$CALLER_PID" ] && kill -KILL "$CALLER_PID" 2>/dev/null
    for g in gwa gwb; do
        # keepalived: TERM lets it remove the address and stop its VRRP child.
        [ -n "${KA_PID[$g]:-}" ] && kill -TERM "${KA_PID[$g]}" 2>/dev/null
        [ -n "${LL_PID[$g]:-}" ] && kill -KILL "${LL_PID[$g]}" 2>/dev/null
    done
    for p in "${TRUNK_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    if [ -n "$CAPTURE_PID" ]; then
        kill -INT "$CAPTURE_PID" 2>/dev/null
        for _ in $(seq 30); do kill -0 "$CAPTURE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CAPTURE_PID" 2>/dev/null
    fi
    for g in gwa gwb; do
        [ -n "${MON_PID[$g]:-}" ] && kill -KILL "${MON_PID[$g]}" 2>/dev/null
        if [ -n "${KA_PID[$g]:-}" ]; then
            for _ in $(seq 30); do kill -0 "${KA_PID[$g]}" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "${KA_PID[$g]}" 2>/dev/null
        fi
    done
    # Anything still running inside our namespaces (keepalived's VRRP child
    # and its check scripts) is ours: end it, then delete the namespaces.
    local ns pid
    for ns in "${CREATED_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    { wait; } 2>/dev/null
    for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "run.sh: $*" >&2; exit 1; }
in_ns() { local n=$1; shift; ip netns exec "$NS-$n" "$@"; }
# Sleep until a Unix time in milliseconds.
sleep_until_ms() {
    local d=$(($1 - $(now_ms)))
    [ "$d" -le 0 ] || sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
}
# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 50 ms.
wait_for() {
    local limit=$1 what=$2 end
    shift 2
    end=$(($(now_ms) + limit * 1000))
    while [ "$(now_ms)" -lt "$end" ]; do
        "$@" && return 0
        sleep 0.05
    done
    echo "run.sh: no $what after ${limit} s" >&2
    return 1
}
log() { printf '%s %s\n' "$(date +%T.%3N)" "$*"; }
mark() { echo "$1 $(now_ms)" >>"$OUT/timeline"; }

# ---- the network ----
ip netns add "$HUB"
CREATED_NS+=("$HUB")
ip -n "$HUB" link add br0 type bridge
ip -n "$HUB" link set br0 up
for n in "${NODES[@]}"; do
    ip netns add "$NS-$n"
    CREATED_NS+=("$NS-$n")
    ip -n "$NS-$n" link set lo up
    ip -n "$HUB" link add "p-$n" type veth peer name "$IFACE" netns "$NS-$n"
    [ -n "${MACOF[$n]:-}" ] && ip -n "$NS-$n" link set "$IFACE" address "${MACOF[$n]}"
    ip -n "$HUB" link set "p-$n" master br0 up
    ip -n "$NS-$n" addr add "${IPOF[$n]}/24" dev "$IFACE"
    ip -n "$NS-$n" link set "$IFACE" up
done
log "network: bridge in $HUB, namespaces $NS-{$(IFS=,; echo "${NODES[*]}")}"

# ---- the trunks ----
TRUNK_SCEN="$SCEN/trunk.xml"
if [ "$RING_MS" -gt 0 ]; then
    # As tests/sipp/run.sh does: the ringing time is the scenario's CANCEL
    # wait, which SIPp takes no variable for.
    TRUNK_SCEN="$OUT/trunk-ring.xml"
    sed "s/timeout=\"1500\" ontimeout=\"answer\"/timeout=\"$RING_MS\" ontimeout=\"answer\"/" \
        "$SCEN/trunk-ring.xml" >"$TRUNK_SCEN"
    grep -q "timeout=\"$RING_MS\" ontimeout=\"answer\"" "$TRUNK_SCEN" ||
        die "scenarios/trunk-ring.xml: no timeout=\"1500\" ontimeout=\"answer\" to set --ring-ms in"
fi
for t in trunk1 trunk2; do
    ip netns exec "$NS-$t" sipp -sf "$TRUNK_SCEN" -i "${IPOF[$t]}" -p 5060 -aa -nostdin -buff_size 4194304 \
        -timeout "$((DURATION * 3 + 300))s" -trace_logs -log_file "$OUT/$t.calls.log" \
        >"$OUT/$t.out" 2>&1 &
    TRUNK_PIDS+=($!)
done

# ---- lifeline on both gateways ----
for g in gwa gwb; do
    mkdir -p "$OUT/$g"
    cat >"$OUT/$g/lifeline.yaml" <<EOF
# Generated by tests/ha/run.sh for ${NAMEOF[$g]}
listen:
  - udp: 0.0.0.0:5060
advertise: $VIP:5060
admin: 127.0.0.1:9060
journal: $OUT/$g/journal
access: { callers: [${IPOF[caller]}/32], trusted: [${IPOF[caller]}/32] }
trunks:
  - name: trunk-1
    address: ${IPOF[trunk1]}:5060
  - name: trunk-2
    address: ${IPOF[trunk2]}:5060
routes:
  - name: emergency
    match: emergency
    trunks: [trunk-1, trunk-2]
  - name: default
    match: any
    trunks: [trunk-1, trunk-2]
log:
  level: info
EOF
    "$LIFELINE" check-config "$OUT/$g/lifeline.yaml" >/dev/null
done
declare -A LL_GEN=([gwa]=0 [gwb]=0)
start_lifeline() { # GW
    local g=$1
    LL_GEN[$g]=$((LL_GEN[$g] + 1))
    # ip netns exec execs lifeline in place: $! is lifeline itself (not so
    # for a shell function run in the background, hence no in_ns here).
    ip netns exec "$NS-$g" "$LIFELINE" run --config "$OUT/$g/lifeline.yaml" >"$OUT/$g/lifeline.${LL_GEN[$g]}.log" 2>&1 &
    LL_PID[$g]=$!
}
# Ready to take calls and every route has a usable trunk (both trunks
# answered its probes): what tests/lib/common.sh's ready_with_trunks asks,
# over curl in the gateway's namespace.
admin_get() { in_ns "$1" curl -sf --max-time 2 "http://127.0.0.1:9060$2"; }
ready_with_trunks_in() {
    admin_get "$1" /readyz >/dev/null 2>&1 && admin_get "$1" /status 2>/dev/null | grep -q '"routes_usable":true'
}
# "trunk-1=up,trunk-2=up" from the gateway's /status.
trunk_states() {
    admin_get "$1" /status 2>/dev/null | tr '{},' '\n' | awk -F'"' '
        $2 == "name" { n = $4 } $2 == "state" && n != "" { s = s (s ? "," : "") n "=" $4; n = "" }
        END { print (s ? s : "unknown") }'
}
for g in gwa gwb; do start_lifeline "$g"; done
for g in gwa gwb; do
    wait_for 15 "${NAMEOF[$g]} ready with both trunks" ready_with_trunks_in "$g" ||
        fail "${NAMEOF[$g]}: $(tail -n 5 "$OUT/$g/lifeline.1.log")"
done
log "lifeline ready on both gateways, both trunks up on each"

# ---- keepalived on both gateways, from the shipped file ----
# replace FILE WHAT SED-EXPR GREP: apply SED-EXPR, which must change exactly
# one line, and check GREP matches the result.
replace() {
    local file=$1 what=$2 expr=$3 check=$4 before
    before=$(cat "$file")
    sed -i -e "$expr" "$file"
    local changed
    changed=$(diff <(printf '%s\n' "$before") "$file" | grep -c '^>' || true)
    if [ "$changed" != 1 ] || ! grep -qE -- "$check" "$file"; then
        fail "deploy/keepalived.conf: cannot set $what (sed '$expr' changed $changed lines): the test must follow the shipped file"
    fi
}
for g in gwa gwb; do
    conf="$OUT/$g/keepalived.conf"
    cp "$SHIPPED_KEEPALIVED" "$conf"
    replace "$conf" interface "s/^\([[:space:]]*interface[[:space:]]\+\)eth0\b/\1$IFACE/" "^[[:space:]]*interface[[:space:]]+$IFACE\b"
    replace "$conf" "virtual address" "s#^\([[:space:]]*\)192\.0\.2\.1/24\b#\1$VIP/24#" "^[[:space:]]*$VIP/24"
    if [ "$g" = gwb ]; then
        replace "$conf" priority "s/^\([[:space:]]*priority[[:space:]]\+\)100\b/\190/" "^[[:space:]]*priority[[:space:]]+90\b"
    fi
    if [ "$TIMERS" != shipped ]; then
        replace "$conf" vrrp_version "s/^\([[:space:]]*\)enable_script_security\b.*/&\n\1vrrp_version 3/" "^[[:space:]]*vrrp_version 3$"
        replace "$conf" advert_int "s/^\([[:space:]]*advert_int[[:space:]]\+\)1\b/\10.1/" "^[[:space:]]*advert_int[[:space:]]+0\.1\b"
        replace "$conf" fall "s/^\([[:space:]]*fall[[:space:]]\+\)2\b/\11/" "^[[:space:]]*fall[[:space:]]+1\b"
    fi
    if [ "$TIMERS" = fast ]; then
        # The same request, four times 200 ms apart in each run of the
        # check (keepalived runs it at most once a second), and 2 s for a
        # run to finish.
        replace "$conf" "sampling check" \
            "s#^\([[:space:]]*script[[:space:]]\+\)\"\(/usr/bin/curl [^\"]*\)\"\$#\1\"/bin/sh -c 'c() { \2; }; c \&\& sleep 0.2 \&\& c \&\& sleep 0.2 \&\& c \&\& sleep 0.2 \&\& c'\"#" \
            "^[[:space:]]*script[[:space:]]+\"/bin/sh -c 'c\(\) \{ /usr/bin/curl "
        replace "$conf" timeout "s/^\([[:space:]]*\)interval 1\$/&\n\1timeout 2/" "^[[:space:]]*timeout 2$"
    fi
    diff -u "$SHIPPED_KEEPALIVED" "$conf" >"$OUT/$g/keepalived.diff" || true
done
start_keepalived() { # GW
    local g=$1
    # -n: no fork (this is the parent's PID), -P: VRRP only, -l -G: log to
    # the console, not syslog; pid files of its own, not /run's.
    ip netns exec "$NS-$g" keepalived -n -P -l -D -G -f "$OUT/$g/keepalived.conf" \
        -p "$OUT/$g/keepalived.pid" -r "$OUT/$g/keepalived-vrrp.pid" \
        >"$OUT/$g/keepalived.log" 2>&1 &
    KA_PID[$g]=$!
}
# The service address, added or deleted, with microsecond timestamps.
for g in gwa gwb; do
    ip netns exec "$NS-$g" ip -ts monitor address >"$OUT/$g/addresses.log" 2>&1 &
    MON_PID[$g]=$!
done
has_vip() { ip -n "$NS-$1" -4 -o addr show dev "$IFACE" | grep -q " $VIP/"; }
ka_state_count() { # GW STATE: how many times keepalived entered STATE
    grep -c "Entering $2 STATE" "$OUT/$1/keepalived.log" 2>/dev/null || true
}
in_backup() { [ "$(ka_state_count "$1" BACKUP)" -gt "$2" ] && ! has_vip "$1"; }
start_keepalived gwa
wait_for 20 "service address on gw-a" has_vip gwa || fail "keepalived on gw-a: $(tail -n 5 "$OUT/gwa/keepalived.log")"
start_keepalived gwb
wait_for 20 "keepalived BACKUP on gw-b" in_backup gwb 0 || fail "keepalived on gw-b: $(tail -n 5 "$OUT/gwb/keepalived.log")"
has_vip gwa || fail "gw-a lost the service address when gw-b started"
log "keepalived: gw-a MASTER with $VIP, gw-b BACKUP"

# ---- the capture: what the gateways send the caller, and ARP ----
ip netns exec "$NS-caller" tcpdump -i "$IFACE" -nn -e -s 2048 -U -w "$OUT/caller.pcap" \
    "arp or (udp and src port 5060 and dst host ${IPOF[caller]})" >"$OUT/tcpdump.out" 2>&1 &
CAPTURE_PID=$!
wait_for 5 "tcpdump listening" grep -q "listening on" "$OUT/tcpdump.out" || fail "tcpdump: $(tail -n 2 "$OUT/tcpdump.out")"

# ---- the caller ----
: >"$OUT/timeline"
# recv_timeout: a call whose INVITE got 100 Trying from a gateway that then
# died is never retransmitted (RFC 3261 17.1.1.2) and never answered: it
# fails after 10 s, which also bounds the wait at the end.
RECV_TIMEOUT_MS=10000
LIMIT=$((RATE * (CALL_MS / 1000 + RING_MS / 1000 + 15)))
T0=$(($(now_ms) + 500))
sleep_until_ms "$T0"
ip netns exec "$NS-caller" sipp "$VIP:5060" -sf "$SCEN/caller.xml" -inf "$SCEN/callees.csv" \
    -i "${IPOF[caller]}" -p 5060 -nostdin -aa -buff_size 4194304 \
    -r "$RATE" -m "$((RATE * (DURATION + 120)))" -l "$LIMIT" -d "$CALL_MS" \
    -recv_timeout "$RECV_TIMEOUT_MS" -timeout "$((DURATION + 200))s" -timeout_error \
    -trace_stat -stf "$OUT/caller.stat.csv" -fd 1 \
    -trace_logs -log_file "$OUT/caller.calls.log" \
    -trace_err -error_file "$OUT/caller.errors.log" \
    >"$OUT/caller.out" 2>&1 &
CALLER_PID=$!
mark start
log "caller: $RATE calls/s to $VIP:5060 ($TIMERS keepalived timers, fault: $FAULT)"

# kill_active OLD NEW N: SIGKILL OLD's lifeline (--fault link: take its
# link down), wait for NEW to hold the service address. The standby's
# trunks are read just before.
kill_active() {
    local old=$1 new=$2 n=$3
    local warm
    warm=$(trunk_states "$new")
    echo "$n standby ${NAMEOF[$new]} ${warm//=/:}" >>"$OUT/warm"
    has_vip "$old" || fail "${NAMEOF[$old]} does not hold the service address before kill $n"
    if [ "$FAULT" = link ]; then
        ip -n "$NS-$old" link set "$IFACE" down
        mark "kill$n"
        log "kill $n: ${NAMEOF[$old]}'s link down (standby ${NAMEOF[$new]}: $warm)"
    else
        kill -KILL "${LL_PID[$old]}"
        mark "kill$n"
        wait "${LL_PID[$old]}" 2>/dev/null || true
        LL_PID[$old]=''
        log "kill $n: ${NAMEOF[$old]}'s lifeline SIGKILLed (standby ${NAMEOF[$new]}: $warm)"
    fi
    wait_for 30 "takeover by ${NAMEOF[$new]}" has_vip "$new" || fail "kill $n: ${NAMEOF[$new]} did not take the service address"
    mark "vip$n"
    log "kill $n: ${NAMEOF[$new]} holds $VIP"
}

LEAD=$((DURATION * 1000 / 4))
sleep_until_ms $((T0 + LEAD))
kill_active gwa gwb 1
# gw-a comes back as standby: lifeline ready with its trunks, keepalived
# BACKUP (not MASTER: nopreempt).
backups_before=$(ka_state_count gwa BACKUP)
if [ "$FAULT" = link ]; then
    ip -n "$NS-gwa" link set "$IFACE" up
    wait_for 15 "gw-a's trunks up again" ready_with_trunks_in gwa || fail "gw-a's link back: $(tail -n 5 "$OUT/gwa/lifeline.1.log")"
else
    start_lifeline gwa
    wait_for 15 "gw-a's lifeline ready again" ready_with_trunks_in gwa || fail "gw-a restart: $(tail -n 5 "$OUT/gwa/lifeline.2.log")"
fi
wait_for 20 "keepalived BACKUP on gw-a" in_backup gwa "$backups_before" || fail "gw-a did not come back as BACKUP"
has_vip gwb || fail "gw-b lost the service address when gw-a came back"
mark settled
log "gw-a back as BACKUP; gw-b keeps $VIP"
sleep_until_ms "$(( $(now_ms) + 2000 > T0 + DURATION * 5000 / 8 ? $(now_ms) + 2000 : T0 + DURATION * 5000 / 8 ))"
kill_active gwb gwa 2
STOP=$(( $(now_ms) + LEAD > T0 + DURATION * 1000 ? $(now_ms) + LEAD : T0 + DURATION * 1000 ))
sleep_until_ms "$STOP"
# SIGUSR1: SIPp places no new call and ends when its calls have.
kill -USR1 "$CALLER_PID" 2>/dev/null || true
mark stop
log "caller: no new calls; waiting for the calls in progress"
CALLER_RC=0
wait "$CALLER_PID" || CALLER_RC=$?
CALLER_PID=
sleep 0.2
kill -INT "$CAPTURE_PID" 2>/dev/null || true
wait "$CAPTURE_PID" 2>/dev/null || true
CAPTURE_PID=
log "caller done (exit status $CALLER_RC)"

# ---- evidence ----
# The capture, one line per response to an INVITE (the first one per
# Call-ID, gateway and status): "<unix seconds> <gw> <Call-ID> <status>".
tcpdump -r "$OUT/caller.pcap" -nn -e -tt -A 2>/dev/null | awk -v a="${MACOF[gwa]}" -v b="${MACOF[gwb]}" '
    function flush() {
        if (st && cseq && cid != "" && gw != "" && !((cid, gw, st) in seen)) {
            seen[cid, gw, st] = 1; print ts, gw, cid, st
        }
        st = 0; cseq = 0; cid = ""; gw = ""
    }
    /^[0-9]+\.[0-9]+ [0-9a-f:]+ > / { flush(); ts = $1; gw = ($2 == a ? "gwa" : ($2 == b ? "gwb" : "")); next }
    match($0, /SIP\/2\.0 [1-6][0-9][0-9] /) { st = substr($0, RSTART + 8, 3) + 0 }
    /^CSeq: *[0-9]+ INVITE/ { cseq = 1 }
    /^(Call-ID|i):/ { cid = $2; sub(/\.$/, "", cid) }
    END { flush() }' | sort -n >"$OUT/responses.txt"

# The instants (ms) of the kills; every gratuitous ARP for the service
# address the caller saw ("<ms> <gw>": keepalived announcing it from the
# gateway that took it); every time it was added on a gateway ("<ms> <gw>",
# from ip monitor: local time, microseconds).
tl() { awk -v k="$1" '$1 == k { print $2; exit }' "$OUT/timeline"; }
K1=$(tl kill1) K2=$(tl kill2) END_MS=$(tl stop)
tcpdump -r "$OUT/caller.pcap" -nn -e -tt arp 2>/dev/null | awk -v a="${MACOF[gwa]}" -v b="${MACOF[gwb]}" -v vip="$VIP" '
    $0 ~ ("who-has " vip " .*tell " vip ",") || $0 ~ ("Reply " vip " is-at") {
        gw = ($2 == a ? "gwa" : ($2 == b ? "gwb" : "")); if (gw != "") printf "%.0f %s\n", $1 * 1000, gw }' >"$OUT/garp.txt"
for g in gwa gwb; do
    grep -v Deleted "$OUT/$g/addresses.log" | grep " $VIP/" | sed -n 's/^\[\([^]]*\)\].*/\1/p' |
        while read -r stamp; do echo "$(date -d "$stamp" +%s%3N) $g"; done
done | sort -n >"$OUT/vip-added.txt"

# A call belongs to the takeover whose kill came less than WINDOW ms after
# its INVITE first left (1 s, plus the ringing time: a call ringing on the
# gateway that dies is that kill's), and before the next one's window.
WINDOW=$((RING_MS + 1000))
# Setup longer than this: delayed (the ringing time is the trunk's).
DELAYED_MS=$((RING_MS + 500))

# direction N OLD NEW KILL PREV_KILL NEXT: one takeover's numbers, as a
# "result:" line. (mawk's %d stops at 2^31: Unix milliseconds use %.0f.)
direction() {
    local n=$1 old=$2 new=$3 kill=$4 prev=$5 next=$6 warm
    warm=$(awk -v n="$n" '$1 == n { print $4 }' "$OUT/warm")
    awk -v old="$old" -v new="$new" -v k="$kill" -v prev="$prev" -v lo=$((kill - WINDOW)) -v hi=$((next - WINDOW)) \
        -v nx="$next" -v late="$DELAYED_MS" '
        FILENAME == ARGV[1] {            # responses.txt
            t = $1 * 1000
            if ($4 == 200) {
                by[$3] = by[$3] " " $2; at200[$3, $2] = t
                if ($2 == new && t >= k && first_new == "") first_new = t
                if (t >= k - 1000 && t < hi + 0) { if (p != "" && t - p > gap) gap = t - p; p = t }
                if ($2 == old) old200[++n_old] = t
            } else if ($4 == 100) {
                resp[$3, $2] = 1
                if ($2 == new && t >= k && first_trying == "") first_trying = t
            } else {
                resp[$3, $2] = 1
                if ($4 >= 300) rej[$3] = $4
            }
            next
        }
        FILENAME == ARGV[2] {            # vip-added.txt
            if ($1 >= k && $1 < nx) moves++
            next
        }
        FILENAME == ARGV[3] {            # garp.txt
            if ($1 >= k && $2 == new && vip == "") vip = $1 - k
            next
        }
        $1 == "invite" { if (!($2 in inv)) inv[$2] = $3 * 1000 + $4 / 1000; next }
        $1 == "answered" { ans[$2] = $3 * 1000 + $4 / 1000; next }
        $1 == "bye-failed" { byef[$2] = 1; next }
        END {
            last_old = ""
            for (i = 1; i <= n_old; i++) if (first_new == "" || old200[i] <= first_new) last_old = old200[i]
            calls = failed = rejected = held = other = delayed = max = by_new = bye = 0
            for (c in inv) {
                if (inv[c] < lo || inv[c] >= hi) continue
                calls++
                if (!(c in ans)) {
                    # Never answered: refused by a gateway, held by the one
                    # that died (it had answered 100 Trying), or neither.
                    failed++
                    if (c in rej) rejected++
                    else if ((c, old) in resp) held++
                    else other++
                    continue
                }
                d = ans[c] - inv[c]
                if (d > max) max = d
                if (d > late) delayed++
                if (index(by[c], " " new)) by_new++
            }
            # Calls the old gateway answered since the previous kill and
            # whose BYE failed: up at the kill, their dialog died with it.
            for (c in byef) if (((c, old) in at200) && at200[c, old] >= prev && at200[c, old] < k) bye++
            printf "takeover_ms=%s answer_ms=%s trying_ms=%s vip_ms=%s vip_moves=%d gap_max_ms=%d ",
                (first_new != "" && last_old != "" ? sprintf("%.0f", first_new - last_old) : "na"),
                (first_new != "" ? sprintf("%.0f", first_new - k) : "na"),
                (first_trying != "" ? sprintf("%.0f", first_trying - k) : "na"),
                (vip != "" ? sprintf("%.0f", vip) : "na"), moves, gap
            printf "calls=%d failed=%d rejected=%d lost_held=%d lost_other=%d delayed=%d setup_max_ms=%d bye_481=%d answered_by_new=%d\n",
                calls, failed, rejected, held, other, delayed, max, bye, by_new
        }' "$OUT/responses.txt" "$OUT/vip-added.txt" "$OUT/garp.txt" "$OUT/caller.calls.log" |
        sed "s/^/result: direction=${NAMEOF[$old]}->${NAMEOF[$new]} fault=$FAULT timers=$TIMERS rate=$RATE ring_ms=$RING_MS /; s/\$/ standby_trunks=$warm/"
}
# Baseline: calls before the first window, which no kill touched.
BASE=$(awk -v hi=$((K1 - WINDOW)) -v late="$DELAYED_MS" '
    $1 == "invite" { if (!($2 in inv)) inv[$2] = $3 * 1000 + $4 / 1000; next }
    $1 == "answered" { ans[$2] = $3 * 1000 + $4 / 1000 }
    END { n = 0; f = 0; d = 0
          for (c in inv) if (inv[c] < hi) { n++; if (!(c in ans)) f++; else if (ans[c] - inv[c] > late) d++ }
          printf "calls=%d failed=%d delayed=%d\n", n, f, d }' "$OUT/caller.calls.log")

R1=$(direction 1 gwa gwb "$K1" 0 "$K2")
R2=$(direction 2 gwb gwa "$K2" "$K1" "$END_MS")
ATTEMPTED=$(stat_col "TotalCallCreated")
FAILED=$(stat_col "FailedCall(C)")
REASONS=$(failed_reasons)

field() { printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2; exit }'; }
echo
echo "logs: $OUT"
[ "$CALLER_RC" = 0 ] || echo "note: the SIPp caller exited with status $CALLER_RC (failed calls: see $OUT/caller.errors.log)"
echo "baseline (before the first kill): $BASE"
echo "caller totals: attempted=$ATTEMPTED failed=$FAILED failed_reasons=$REASONS"
echo
COLS=(direction fault timers ring_ms takeover_ms answer_ms vip_ms vip_moves gap_max_ms calls failed lost_held delayed setup_max_ms bye_481 standby_trunks)
fmt='%-10s %-8s %-7s %7s %11s %9s %6s %9s %10s %5s %6s %9s %7s %12s %7s %s\n'
# shellcheck disable=SC2059
printf "$fmt" "${COLS[@]}"
for r in "$R1" "$R2"; do
    vals=()
    for c in "${COLS[@]}"; do vals+=("$(field "$c" "$r")"); done
    # shellcheck disable=SC2059
    printf "$fmt" "${vals[@]}"
done
echo
echo "$R1"
echo "$R2"
echo "baseline: $BASE"
