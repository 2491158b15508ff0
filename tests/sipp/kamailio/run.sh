#!/usr/bin/env bash
# The SIPp load and failover runs against Kamailio instead of lifeline, with
# the same scenarios and the same measurements: tests/sipp/run.sh
# --proxy kamailio, which fills in kamailio.cfg (loopback ports, a run
# directory under --out) and starts Kamailio in the foreground as the
# current user (kamailio -DD -E -f FILE -Y DIR -P FILE): never a system
# service. By hand only, not in CI. Needs Debian's kamailio package
# (apt-get install -y kamailio; the service it installs may stay disabled).
#
#   tests/sipp/kamailio/run.sh --fault hang --rate 100 --duration 20
#   tests/sipp/kamailio/run.sh --fault ring-kill --rate 100 --duration 20 --fault-at 5 --fault-for 10
#
# Every fault works the same against Kamailio, ring-kill included (the
# primary rings --ring-ms, 1500 by default, under Kamailio's fr_inv_timer;
# Kamailio moves a call ringing on the dead primary to the backup when
# fr_inv_timer, 2 s, expires).
#
# Takes every option of tests/sipp/run.sh (--kamailio-children N,
# --kamailio-fr-timer MS, --kamailio-fr-inv-timer MS for Kamailio's own).
exec "$(dirname "$0")/../run.sh" --proxy kamailio "$@"
