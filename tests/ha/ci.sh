#!/usr/bin/env bash
# CI: the keepalived pair (tests/ha/run.sh), two short runs at 50 calls/s:
# the shipped deploy/keepalived.conf, then the fast settings of
# docs/OPERATIONS.md ("High availability"). About 25 s each.
#
# Needs root and network namespaces: without them (not root, or `ip netns
# add` refused, as in an unprivileged container) it prints SKIPPED and
# exits 0; so it does when keepalived is missing and cannot be installed.
# Installs keepalived, SIPp (sip-tester), tcpdump and curl with apt-get
# when they are missing.
#
# Fails (exit 1) when, in either run and either direction (gw-a -> gw-b,
# then gw-b -> gw-a):
#   - run.sh failed: the pair could not be set up, the new gateway did not
#     take the address within 30 s, or the old one came back and took the
#     address again (nopreempt broken);
#   - the standby's trunks were not both up before the kill (warm standby);
#   - the new gateway answered no call after the kill (answered_by_new);
#   - a call was never answered although the dead gateway did not hold it
#     (lost_other: calls the dead gateway had taken, lost_held, are the
#     price of a takeover and are only reported), or a gateway refused a
#     call (rejected);
#   - more BYEs failed than calls were up on the dead gateway: rate x call
#     length + 10% (bye_481; their dialogs died with it);
#   - no call was answered for more than HA_MAX_GAP_MS (10000) anywhere in
#     the window (gap_max_ms, which takeover_ms is part of). This is wall
#     clock, so the bound is far above what is measured (about 2.3 s with
#     the shipped timers, 0.3 s with the fast ones): it catches a pair that
#     does not take over, or flaps, not a slow machine;
#   - a call failed before the first kill (the baseline).
#
# Environment: HA_RATE (50), HA_DURATION (16), HA_TIMERS ("shipped fast"),
# HA_MAX_GAP_MS (10000), HA_LIFELINE (a lifeline binary; default: cargo
# build --release -p lifeline), HA_OUT (logs; default a new directory
# under /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${HA_RATE:-50}
DURATION=${HA_DURATION:-16}
TIMERS=${HA_TIMERS:-shipped fast}
MAX_GAP=${HA_MAX_GAP_MS:-10000}
CALL_MS=1000

skip() {
    echo "SKIPPED: the keepalived pair test (tests/ha/ci.sh) needs $*"
    exit 0
}
[ "$(id -u)" = 0 ] || skip "root (network namespaces, keepalived)"
command -v ip >/dev/null 2>&1 || skip "ip (iproute2)"
probe="llha-probe-$$"
if ! ip netns add "$probe" 2>/dev/null; then
    skip "network namespaces: 'ip netns add' was refused (no CAP_SYS_ADMIN?)"
fi
ip netns del "$probe"

# shellcheck source=tests/lib/ci.sh
. tests/lib/ci.sh
if ! command -v keepalived >/dev/null 2>&1; then
    echo "keepalived not found: installing it"
    apt_install keepalived >/dev/null || skip "keepalived, which apt-get could not install"
fi
for pair in sipp:sip-tester tcpdump:tcpdump curl:curl; do
    if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
        echo "${pair%%:*} not found: installing ${pair#*:}"
        apt_install "${pair#*:}" >/dev/null || { echo "ci.sh: cannot install ${pair#*:}" >&2; exit 1; }
    fi
done

LIFELINE=$(ci_lifeline "${HA_LIFELINE:-}")
OUT=$(ci_out "${HA_OUT:-}" lifeline-ha-ci)

status=0
rows=()
max_bye=$((RATE * CALL_MS / 1000 + RATE / 10))
for timers in $TIMERS; do
    echo
    echo "==> timers=$timers rate=$RATE duration=${DURATION}s"
    log="$OUT/$timers.out"
    if ! tests/ha/run.sh --timers "$timers" --rate "$RATE" --duration "$DURATION" \
        --call-ms "$CALL_MS" --lifeline "$LIFELINE" --out "$OUT/$timers" >"$log" 2>&1; then
        tail -n 20 "$log"
        echo "FAIL: run.sh failed for timers=$timers" >&2
        rows+=("- $timers run.sh-error - - - - - - -")
        status=1
        continue
    fi
    sed -n '/^direction /,/^$/p' "$log"
    base=$(sed -n 's/^baseline: //p' "$log")
    lines=$(grep -c '^result: ' "$log" || true)
    if [ "$lines" != 2 ]; then
        echo "FAIL: timers=$timers: $lines result lines, expected 2" >&2
        status=1
        continue
    fi
    while read -r line; do
        dir=$(field direction "$line")
        why=()
        [ "$(field standby_trunks "$line")" = "trunk-1:up,trunk-2:up" ] ||
            why+=("standby not warm: $(field standby_trunks "$line")")
        by_new=$(field answered_by_new "$line")
        if ! isnum "$by_new" || [ "$by_new" = 0 ]; then why+=("answered_by_new=$by_new"); fi
        for k in lost_other rejected; do
            [ "$(field "$k" "$line")" = 0 ] || why+=("$k=$(field "$k" "$line")")
        done
        bye=$(field bye_481 "$line")
        if ! isnum "$bye" || [ "$bye" -gt "$max_bye" ]; then why+=("bye_481=$bye > $max_bye"); fi
        for k in takeover_ms gap_max_ms; do
            v=$(field "$k" "$line")
            if ! isnum "$v" || [ "$v" -gt "$MAX_GAP" ]; then why+=("$k=$v > $MAX_GAP"); fi
        done
        [ "$(field failed "$base")" = 0 ] || why+=("baseline: $base")
        verdict=ok
        if [ ${#why[@]} -gt 0 ]; then
            verdict=FAIL
            status=1
            echo "FAIL: timers=$timers $dir: ${why[*]} (logs: $OUT/$timers)" >&2
        fi
        rows+=("$dir $timers $verdict $(field takeover_ms "$line") $(field gap_max_ms "$line") $(field failed "$line") $(field lost_held "$line") $(field delayed "$line") $(field bye_481 "$line")")
    done < <(grep '^result: ' "$log")
done

echo
fmt='%-10s %-8s %-7s %11s %10s %6s %9s %7s %7s\n'
# shellcheck disable=SC2059
printf "$fmt" direction timers status takeover_ms gap_max_ms failed lost_held delayed bye_481
for r in "${rows[@]}"; do
    # shellcheck disable=SC2059,SC2086
    printf "$fmt" $r
done
if [ "$status" = 0 ]; then
    echo "keepalived pair: both takeovers passed"
else
    echo "keepalived pair FAILED (logs: $OUT)" >&2
fi
exit "$status"
