#!/usr/bin/env bash
# CI: a short run of every fault scenario through lifeline with SIPp
# (tests/sipp/run.sh), about 15 s each at 50 calls/s: 1.5 minutes in all
# plus the release build.
#
# Fails (exit 1) when, in any scenario:
#   - a call failed (SIPp's FailedCall), or
#   - new calls kept going to the faulty primary for more than 1000 ms
#     (switch_ms > SIPP_MAX_SWITCH_MS, default 1000), or
#   - a BYE failed where the trunk holding the call was not killed (for the
#     kill scenario, BYEs of calls already up on the killed primary cannot
#     reach it whatever the proxy does: at most rate x call length of them).
# Every scenario runs even when one fails; a table at the end shows them all.
#
# Runs on a clean clone: builds lifeline with cargo; installs SIPp
# (sip-tester) and tcpdump with apt-get when they are missing (CI runs as
# root). Environment: SIPP_RATE (50), SIPP_DURATION (15), SIPP_MAX_SWITCH_MS
# (1000), SIPP_OUT (logs; default a new directory under /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${SIPP_RATE:-50}
DURATION=${SIPP_DURATION:-15}
MAX_SWITCH=${SIPP_MAX_SWITCH_MS:-1000}
CALL_MS=1000
FAULT_AT=3
FAULT_FOR=7

apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
    fi
}
if ! command -v sipp >/dev/null 2>&1; then
    echo "sipp not found: installing sip-tester"
    apt_install sip-tester || { echo "ci.sh: cannot install SIPp (sip-tester)" >&2; exit 1; }
fi
if ! command -v tcpdump >/dev/null 2>&1; then
    # Times the switch even for a killed trunk (see run.sh); without it the
    # kill scenario cannot be timed and fails below.
    echo "tcpdump not found: installing it"
    apt_install tcpdump || echo "ci.sh: cannot install tcpdump; switch times come from the trunks' logs" >&2
fi

cargo build --release -p lifeline --quiet
LIFELINE="${CARGO_TARGET_DIR:-$PWD/target}/release/lifeline"

OUT=${SIPP_OUT:-$(mktemp -d /tmp/lifeline-sipp-ci.XXXXXX)}
mkdir -p "$OUT"
echo "logs: $OUT"

field() { # NAME LINE: the value of NAME=... in a result line
    printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2; exit }'
}

status=0
rows=()
for fault in kill hang 503 stall flap; do
    echo
    echo "==> fault=$fault rate=$RATE duration=${DURATION}s (fault at ${FAULT_AT}s for ${FAULT_FOR}s)"
    log="$OUT/$fault.out"
    if ! tests/sipp/run.sh --fault "$fault" --rate "$RATE" --duration "$DURATION" \
        --fault-at "$FAULT_AT" --fault-for "$FAULT_FOR" --call-ms "$CALL_MS" \
        --lifeline "$LIFELINE" --out "$OUT/$fault" >"$log" 2>&1; then
        tail -n 20 "$log"
        echo "FAIL: run.sh failed for fault=$fault" >&2
        rows+=("$fault run.sh-error")
        status=1
        continue
    fi
    line=$(grep '^result: ' "$log" | tail -n 1)
    echo "$line"
    failed=$(field failed "$line")
    attempted=$(field attempted "$line")
    switch=$(field switch_ms "$line")
    bye=$(field bye_failed "$line")
    why=()
    if [ "$failed" != 0 ]; then why+=("failed=$failed ($(field failed_reasons "$line"))"); fi
    if ! [[ $attempted =~ ^[0-9]+$ ]] || [ "$attempted" -lt $((RATE * DURATION)) ]; then
        why+=("attempted=$attempted, expected $((RATE * DURATION))")
    fi
    if ! [[ $switch =~ ^[0-9]+$ ]]; then
        why+=("switch_ms=$switch (not measured)")
    elif [ "$switch" -gt "$MAX_SWITCH" ]; then
        why+=("switch_ms=$switch > $MAX_SWITCH")
    fi
    if [ "$fault" = kill ]; then
        # Calls up on the primary when it died: rate x call length, plus 10%.
        max_bye=$((RATE * CALL_MS / 1000 + RATE / 10))
        [ "$bye" -le "$max_bye" ] || why+=("bye_failed=$bye > $max_bye")
    elif [ "$bye" != 0 ]; then
        why+=("bye_failed=$bye")
    fi
    if [ ${#why[@]} -eq 0 ]; then
        echo "ok: fault=$fault"
        rows+=("$fault ok $attempted $failed $switch $bye")
    else
        echo "FAIL: fault=$fault: ${why[*]} (logs: $OUT/$fault)" >&2
        rows+=("$fault FAIL $attempted $failed $switch $bye")
        status=1
    fi
done

echo
printf '%-6s %-6s %9s %6s %9s %10s\n' fault status attempted failed switch_ms bye_failed
for r in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-6s %-6s %9s %6s %9s %10s\n' $r
done
if [ "$status" = 0 ]; then
    echo "SIPp fault scenarios passed"
else
    echo "SIPp fault scenarios FAILED (logs: $OUT)" >&2
fi
exit "$status"
