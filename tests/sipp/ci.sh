#!/usr/bin/env bash
# CI: a short run of every fault scenario through lifeline with SIPp
# (tests/sipp/run.sh), 15 s each: kill, hang, 503 and flap at 50 calls/s;
# stall and ring-kill at 100 calls/s (the rate their targets are set at).
# About 2.5 minutes in all plus the release build (a run that loses calls
# takes 40 s longer: the caller waits that long for an answer).
#
# Fails (exit 1) when, in any scenario:
#   - a call failed (SIPp's FailedCall), or
#   - new calls kept going to the faulty primary for more than 1000 ms
#     (switch_ms > SIPP_MAX_SWITCH_MS, default 1000), or
#   - a BYE failed where the trunk holding the call was not killed (for the
#     kill and ring-kill scenarios, BYEs of calls already answered on the
#     killed primary cannot reach it whatever the proxy does: at most rate x
#     call length of them; a call that was still ringing on it, and was
#     rescued by the backup, must not lose its BYE: ringing_bye_failed 0);
#   - ring-kill (the primary rings 1.5 s before answering and is killed
#     with calls ringing on it): a ringing call was not rescued by the
#     backup (rescued < ringing_at_kill), or the slowest rescue, kill ->
#     the caller's 200, took over SIPP_MAX_RESCUE_MS (default 1000);
#   - stall (the primary answers 100, then nothing): more than
#     SIPP_MAX_STALL_DELAYED calls (default 5) took over 100 ms to set up
#     (delayed_calls), or the slowest setup took over
#     SIPP_MAX_STALL_SETUP_MS (default 250; setup_max_ms).
# Every scenario runs even when one fails; a table at the end shows them all
# (rescue_max_ms: ring-kill and kill; delayed: calls set up in over 100 ms,
# which for ring-kill is every call the ringing primary answered).
#
# Runs on a clean clone: builds lifeline with cargo; installs SIPp
# (sip-tester) and tcpdump with apt-get when they are missing (CI runs as
# root). Environment: SIPP_RATE (50), SIPP_RATE_STALL (100),
# SIPP_RATE_RING_KILL (100), SIPP_DURATION (15), SIPP_MAX_SWITCH_MS (1000),
# SIPP_MAX_RESCUE_MS (1000), SIPP_MAX_STALL_DELAYED (5),
# SIPP_MAX_STALL_SETUP_MS (250), SIPP_FAULTS (the scenarios to run, default
# "kill ring-kill hang 503 stall flap"), SIPP_LIFELINE (a lifeline binary
# to test instead of building one), SIPP_OUT (logs; default a new directory
# under /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${SIPP_RATE:-50}
RATE_STALL=${SIPP_RATE_STALL:-100}
RATE_RING_KILL=${SIPP_RATE_RING_KILL:-100}
DURATION=${SIPP_DURATION:-15}
MAX_SWITCH=${SIPP_MAX_SWITCH_MS:-1000}
MAX_RESCUE=${SIPP_MAX_RESCUE_MS:-1000}
MAX_STALL_DELAYED=${SIPP_MAX_STALL_DELAYED:-5}
MAX_STALL_SETUP=${SIPP_MAX_STALL_SETUP_MS:-250}
FAULTS=${SIPP_FAULTS:-kill ring-kill hang 503 stall flap}
CALL_MS=1000
FAULT_AT=3
FAULT_FOR=7

# shellcheck source=tests/lib/ci.sh
. tests/lib/ci.sh
if ! command -v sipp >/dev/null 2>&1; then
    echo "sipp not found: installing sip-tester"
    apt_install sip-tester || { echo "ci.sh: cannot install SIPp (sip-tester)" >&2; exit 1; }
fi
if ! command -v tcpdump >/dev/null 2>&1; then
    # Times the switch even for a killed trunk (see run.sh), and tells the
    # calls ringing on it; without it the kill and ring-kill scenarios
    # cannot be measured and fail below.
    echo "tcpdump not found: installing it"
    apt_install tcpdump || echo "ci.sh: cannot install tcpdump; switch times come from the trunks' logs" >&2
fi

LIFELINE=$(ci_lifeline "${SIPP_LIFELINE:-}")
OUT=$(ci_out "${SIPP_OUT:-}" lifeline-sipp-ci)

status=0
rows=()
for fault in $FAULTS; do
    case "$fault" in
    stall) rate=$RATE_STALL ;;
    ring-kill) rate=$RATE_RING_KILL ;;
    *) rate=$RATE ;;
    esac
    echo
    echo "==> fault=$fault rate=$rate duration=${DURATION}s (fault at ${FAULT_AT}s for ${FAULT_FOR}s)"
    log="$OUT/$fault.out"
    if ! tests/sipp/run.sh --fault "$fault" --rate "$rate" --duration "$DURATION" \
        --fault-at "$FAULT_AT" --fault-for "$FAULT_FOR" --call-ms "$CALL_MS" \
        --lifeline "$LIFELINE" --out "$OUT/$fault" >"$log" 2>&1; then
        tail -n 20 "$log"
        echo "FAIL: run.sh failed for fault=$fault" >&2
        rows+=("$fault run.sh-error $rate - - - - - -")
        status=1
        continue
    fi
    line=$(grep '^result: ' "$log" | tail -n 1)
    echo "$line"
    failed=$(field failed "$line")
    attempted=$(field attempted "$line")
    switch=$(field switch_ms "$line")
    bye=$(field bye_failed "$line")
    rescue=$(field rescue_max_ms "$line")
    rescued=$(field rescued "$line")
    ringing=$(field ringing_at_kill "$line")
    ringing_bye=$(field ringing_bye_failed "$line")
    delayed=$(field delayed_calls "$line")
    setup_max=$(field setup_max_ms "$line")
    why=()
    if [ "$failed" != 0 ]; then why+=("failed=$failed ($(field failed_reasons "$line"))"); fi
    if ! isnum "$attempted" || [ "$attempted" -lt $((rate * DURATION)) ]; then
        why+=("attempted=$attempted, expected $((rate * DURATION))")
    fi
    if ! isnum "$switch"; then
        why+=("switch_ms=$switch (not measured)")
    elif [ "$switch" -gt "$MAX_SWITCH" ]; then
        why+=("switch_ms=$switch > $MAX_SWITCH")
    fi
    case "$fault" in
    kill | ring-kill)
        # Calls answered on the primary and up when it died: rate x call
        # length, plus 10%. Their BYE cannot reach it; a rescued call's can.
        max_bye=$((rate * CALL_MS / 1000 + rate / 10))
        [ "$bye" -le "$max_bye" ] || why+=("bye_failed=$bye > $max_bye")
        [ "$ringing_bye" = 0 ] || why+=("ringing_bye_failed=$ringing_bye (BYEs of rescued calls)")
        ;;
    *)
        [ "$bye" = 0 ] || why+=("bye_failed=$bye")
        ;;
    esac
    if [ "$fault" = ring-kill ]; then
        if ! isnum "$ringing" || [ "$ringing" = 0 ]; then
            why+=("ringing_at_kill=$ringing (no call ringing at the kill: nothing tested)")
        elif [ "$rescued" != "$ringing" ]; then
            why+=("rescued=$rescued of ringing_at_kill=$ringing")
        fi
        if ! isnum "$rescue"; then
            why+=("rescue_max_ms=$rescue")
        elif [ "$rescue" -gt "$MAX_RESCUE" ]; then
            why+=("rescue_max_ms=$rescue > $MAX_RESCUE")
        fi
    fi
    if [ "$fault" = stall ]; then
        if ! isnum "$delayed" || [ "$delayed" -gt "$MAX_STALL_DELAYED" ]; then
            why+=("delayed_calls=$delayed > $MAX_STALL_DELAYED")
        fi
        if ! isnum "$setup_max" || [ "$setup_max" -gt "$MAX_STALL_SETUP" ]; then
            why+=("setup_max_ms=$setup_max > $MAX_STALL_SETUP")
        fi
    fi
    if [ ${#why[@]} -eq 0 ]; then
        echo "ok: fault=$fault"
        rows+=("$fault ok $rate $attempted $failed $switch $bye $rescue $delayed")
    else
        echo "FAIL: fault=$fault: ${why[*]} (logs: $OUT/$fault)" >&2
        rows+=("$fault FAIL $rate $attempted $failed $switch $bye $rescue $delayed")
        status=1
    fi
done

echo
fmt='%-9s %-12s %4s %9s %6s %9s %10s %13s %7s\n'
# shellcheck disable=SC2059
printf "$fmt" fault status rate attempted failed switch_ms bye_failed rescue_max_ms delayed
for r in "${rows[@]}"; do
    # shellcheck disable=SC2059,SC2086
    printf "$fmt" $r
done
if [ "$status" = 0 ]; then
    echo "SIPp fault scenarios passed"
else
    echo "SIPp fault scenarios FAILED (logs: $OUT)" >&2
fi
exit "$status"
