#!/usr/bin/env bash
# lifeline and Kamailio side by side, in one sitting, with tests/sipp/run.sh:
# the measurements behind docs/PERFORMANCE.md, "Side by side with Kamailio".
# By hand only (about 30 minutes); needs SIPp, tcpdump and Kamailio.
#
#   tests/sipp/kamailio/compare.sh [--lifeline PATH] [--out DIR]
#
#   1. SIPp alone (caller straight to a trunk): the harness's own ceiling.
#   2. Highest rate with zero failed calls, for each proxy: --steps rates,
#      --step-seconds each; a step with failures is run once more, and the
#      climb stops at the second failure. Then the same with the proxy
#      pinned to core 0 and SIPp to core 1 (taskset).
#   3. CPU seconds per 1,000 calls and memory at --cpu-rate calls/s,
#      --cpu-rounds times, alternating; Kamailio with each UDP worker count
#      in --cpu-kamailio-children.
#   4. Every fault (kill, ring-kill, hang, 503, stall, flap) at --fault-rate
#      calls/s, lifeline then Kamailio: for ring-kill (calls ringing on the
#      primary when it is killed) compare ringing_at_kill, rescued and
#      rescue_max_ms side by side.
#   4b. memory: PSS over time at --memory-rates (500 and 3,000 calls/s) for
#      --memory-seconds (60) each, lifeline and Kamailio alternating, twice;
#      pss_chart.py draws DIR/pss-RATE.svg from the runs' pss.tsv.
#   5. lifeline on one core and on two (taskset), SIPp on core 1, at fixed
#      rates (--cores-rates), with its CPU by thread.
#
# Every run's "result:" line goes to DIR/results.txt, prefixed with what the
# run was for; uptime before and after goes to DIR/uptime.txt.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUN="$HERE/../run.sh"
ROOT=$(cd "$HERE/../../.." && pwd)

LIFELINE='' OUT='' STEPS="200 500 1000 1500 2000 3000 4000 5000" STEP_S=20
CORES_RATES="2000 4000" MEMORY_RATES="500 3000" MEMORY_S=60 CPU_RATE=500 CPU_S=30 CPU_ROUNDS=2
CPU_CHILDREN="4" FAULT_RATE=100 FAULT_S=20 PARTS="baseline maxrate pinned cpu memory faults cores"
while [ $# -gt 0 ]; do
    case "$1" in
    --lifeline) LIFELINE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --step-seconds) STEP_S=$2; shift 2 ;;
    --cpu-rate) CPU_RATE=$2; shift 2 ;;
    --cpu-rounds) CPU_ROUNDS=$2; shift 2 ;;
    --cpu-kamailio-children) CPU_CHILDREN=$2; shift 2 ;;
    --fault-rate) FAULT_RATE=$2; shift 2 ;;
    --fault-seconds) FAULT_S=$2; shift 2 ;;
    --cores-rates) CORES_RATES=$2; shift 2 ;;
    --memory-rates) MEMORY_RATES=$2; shift 2 ;;
    --memory-seconds) MEMORY_S=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    *) echo "usage: compare.sh [--lifeline PATH] [--out DIR] [--steps \"200 500 ...\"] [--step-seconds S]" >&2
       echo "       [--cpu-rate N] [--cpu-rounds N] [--cpu-kamailio-children \"4 2\"] [--fault-rate N] [--fault-seconds S] [--cores-rates \"2000 4000\"]" >&2
       echo "       [--memory-rates \"500 3000\"] [--memory-seconds S] [--parts \"baseline maxrate pinned cpu memory faults cores\"]" >&2
       exit 2 ;;
    esac
done
if [ -z "$LIFELINE" ]; then
    (cd "$ROOT" && cargo build --release -p lifeline --quiet)
    LIFELINE="${CARGO_TARGET_DIR:-$ROOT/target}/release/lifeline"
fi
OUT=${OUT:-$(mktemp -d /tmp/lifeline-compare.XXXXXX)}
mkdir -p "$OUT"
RESULTS="$OUT/results.txt"
echo "results: $RESULTS"
{ echo "before: $(date -u +%FT%TZ) $(uptime)"; } >>"$OUT/uptime.txt"
{
    echo "# $(date -u +%FT%TZ) lifeline $("$LIFELINE" --version 2>/dev/null) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null))"
    echo "# $(kamailio -v 2>/dev/null | head -n1); $(sipp -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -n1)"
    echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
} >>"$RESULTS"

n=0
run() { # LABEL ARGS...: one run.sh run; its result line, labelled, to $RESULTS
    local label=$1; shift
    n=$((n + 1))
    local dir line
    dir="$OUT/$(printf '%03d' "$n")-${label// /_}"
    "$RUN" --out "$dir" "$@" >"$dir.out" 2>&1 || true
    line=$(grep '^result: ' "$dir.out" | tail -n 1)
    [ -n "$line" ] || line="result: none (run.sh failed: $(tail -n 1 "$dir.out"))"
    echo "$label | ${line#result: } | load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
    LAST=$line
}
failed_of() { printf '%s\n' "$1" | tr ' ' '\n' | awk -F= '$1 == "failed" { print $2 }'; }

climb() { # LABEL ARGS...: step the rate up until a step fails twice
    local label=$1; shift
    local r f
    for r in $STEPS; do
        run "$label rate=$r" --rate "$r" --duration "$STEP_S" "$@"
        f=$(failed_of "$LAST")
        if [ "$f" != 0 ]; then
            run "$label rate=$r again" --rate "$r" --duration "$STEP_S" "$@"
            f=$(failed_of "$LAST")
            [ "$f" = 0 ] || break
        fi
    done
}

for part in $PARTS; do
    case "$part" in
    baseline) climb "sipp-alone" --proxy none ;;
    maxrate)
        climb "maxrate lifeline" --proxy lifeline --lifeline "$LIFELINE"
        climb "maxrate kamailio" --proxy kamailio
        ;;
    pinned)
        # The same climb with the proxy on core 0 and the three SIPp
        # processes on core 1, so they do not take each other's CPU.
        climb "pinned lifeline cpu0 (sipp cpu1)" --proxy lifeline --lifeline "$LIFELINE" \
            --proxy-cpus 0 --sipp-cpus 1
        climb "pinned kamailio cpu0 (sipp cpu1)" --proxy kamailio --proxy-cpus 0 --sipp-cpus 1
        ;;
    cpu)
        # --cpu-rounds times each, alternating, for the spread; Kamailio
        # once per --cpu-kamailio-children count (its UDP workers: on 2
        # cores, 2 cost less CPU per call than the default 4).
        for round in $(seq "$CPU_ROUNDS"); do
            run "cpu lifeline round=$round" --proxy lifeline --lifeline "$LIFELINE" \
                --rate "$CPU_RATE" --duration "$CPU_S"
            for c in $CPU_CHILDREN; do
                run "cpu kamailio children=$c round=$round" --proxy kamailio \
                    --kamailio-children "$c" --rate "$CPU_RATE" --duration "$CPU_S"
            done
        done
        ;;
    faults)
        for fault in kill ring-kill hang 503 stall flap; do
            for p in lifeline kamailio; do
                run "fault $p $fault" --proxy "$p" --lifeline "$LIFELINE" --fault "$fault" \
                    --rate "$FAULT_RATE" --duration "$FAULT_S" --fault-at 5 --fault-for 10
            done
        done
        ;;
    memory)
        # PSS over time (each run's pss.tsv) at --memory-rates for
        # --memory-seconds, alternating, twice; pss_chart.py draws them.
        for r in $MEMORY_RATES; do
            for round in 1 2; do
                for p in lifeline kamailio; do
                    run "memory $p rate=$r round=$round" --proxy "$p" --lifeline "$LIFELINE" \
                        --rate "$r" --duration "$MEMORY_S"
                done
            done
        done
        python3 "$HERE/pss_chart.py" "$OUT" --out-dir "$OUT"
        ;;
    cores)
        # lifeline on one core (core 0) and on two (cores 0 and 1), SIPp on
        # core 1 throughout, at fixed rates: the CPU by thread (cpu_threads)
        # shows how the work spreads. On two cores SIPp itself is the
        # ceiling (the pinned climb), so the speed-up is read from the
        # threads: one core carries all of them, two cores the busiest.
        for r in $CORES_RATES; do
            for c in 0 0,1; do
                run "cores lifeline cpu$c (sipp cpu1) rate=$r" --proxy lifeline --lifeline "$LIFELINE" \
                    --proxy-cpus "$c" --sipp-cpus 1 --rate "$r" --duration "$STEP_S"
            done
            run "cores lifeline cpu0,1 io-threads=2 (sipp cpu1) rate=$r" --proxy lifeline \
                --lifeline "$LIFELINE" --proxy-cpus 0,1 --sipp-cpus 1 --io-threads 2 --rate "$r" \
                --duration "$STEP_S"
        done
        ;;
    *) echo "compare.sh: unknown part $part" >&2; exit 2 ;;
    esac
done
{ echo "after: $(date -u +%FT%TZ) $(uptime)"; } >>"$OUT/uptime.txt"
cat "$OUT/uptime.txt"
