#!/usr/bin/env bash
# The Debian package, end to end: built with cargo-deb, inspected, then
# installed, run, upgraded, removed and purged in a throwaway root, so the
# host is not changed.
#
#  1. `cargo deb -p lifeline` (cargo-deb installed with `cargo install
#     cargo-deb --locked` when missing); DEB_NO_BUILD=1 packages the release
#     binary already in ${CARGO_TARGET_DIR:-target}/release (--no-build).
#  2. The package: its name, control fields and Depends, conffiles, every
#     file and its mode; the unit, sysusers file and configuration identical
#     to deploy/'s; the binary stripped; the configuration's journal under
#     the unit's StateDirectory; `systemd-analyze security` finds nothing
#     to count against the unit but what a network service needs.
#  3. As root: an overlay over / (changes go to a tmpfs) in new mount, PID,
#     network, UTS, IPC and cgroup namespaces. When the host allows it
#     (cgroup2 writable, /lib/systemd/systemd), systemd boots in there as
#     PID 1, with the capabilities that could reach the host (modules,
#     clock, MAC, raw IO ...) dropped and /proc/sys and /sys read-only;
#     otherwise nothing runs in it but the commands below (DEB_BOOT=0 forces
#     that). In it:
#     - dpkg -i: the lifeline user and group exist, the unit is neither
#       enabled nor started; the installed binary passes the installed
#       configuration (`check-config`, as the lifeline user);
#       `systemd-analyze verify` passes on the installed unit;
#     - with systemd: `systemctl start lifeline` under the unit's whole
#       sandbox with the configuration as installed: READY (Type=notify),
#       /readyz 200, the watchdog fed, /var/lib/lifeline created 0700 for
#       lifeline; an emergency call from 192.0.2.5 (an access.callers
#       address, put on the namespace's loopback) answered 503 and on the
#       callback list of `lifeline report` (the example trunks' addresses
#       are in a second network namespace, behind a veth pair, where nothing
#       listens: nothing leaves the namespaces); `systemctl reload` keeps
#       the process; the running unit's `systemd-analyze security` score;
#     - an upgrade (the same package as version ...-1+debtest): the edited
#       configuration, the journal and the enabled state are kept, a running
#       service is restarted;
#     - dpkg -r stops the service and keeps the configuration and journal;
#       dpkg --purge removes the configuration, keeps the journal.
#     Without root (or without the right to mount), step 3 is skipped with a
#     message.
#
# Everything it creates (the package directory, namespaces, mounts, the
# cgroup, processes) is removed on exit. About 30 s with DEB_NO_BUILD=1
# (most of it cargo-deb compressing the packages). Environment:
# DEB_NO_BUILD, DEB_BOOT (1: boot systemd if the host allows; 0: never),
# DEB_OUT (a directory to keep the built packages in).
#
# shellcheck disable=SC2015,SC2016 # `A && B || fail`: fail exits; '${Status}' is dpkg-query's
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib/ci.sh
. tests/lib/ci.sh
ROOT=$PWD

# The inside of the namespaces (PID 1 until it execs systemd or a sleep):
# mounts the throwaway root at $2/root and starts it.
if [ "${1:-}" = --container ]; then
    t=$2 boot=$3
    mount -t tmpfs -o size=2g,mode=0755 lifeline-deb "$t"
    mkdir "$t/upper" "$t/work" "$t/root"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$t/root"
    r=$t/root
    mount -t proc proc "$r/proc"
    for p in sys sysrq-trigger; do
        [ -e "$r/proc/$p" ] || continue
        mount --bind "$r/proc/$p" "$r/proc/$p"
        mount -o remount,bind,ro "$r/proc/$p"
    done
    mount -t sysfs -o ro sysfs "$r/sys"
    mount -t tmpfs -o mode=0755 dev "$r/dev"
    for d in null zero full random urandom tty; do
        touch "$r/dev/$d"
        mount --bind "/dev/$d" "$r/dev/$d"
    done
    mkdir "$r/dev/pts" "$r/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts"
    ln -s pts/ptmx "$r/dev/ptmx"
    mount -t tmpfs -o mode=1777 shm "$r/dev/shm"
    touch "$t/console" "$r/dev/console"
    mount --bind "$t/console" "$r/dev/console"
    mount -t tmpfs -o mode=0755 run "$r/run"
    mount -t tmpfs -o mode=1777 tmp "$r/tmp"
    ip link set lo up
    if [ "$boot" = 1 ]; then
        mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup"
        u=$r/etc/systemd/system
        cat >"$u/lifeline-deb-test.target" <<'EOF'
[Unit]
Description=Throwaway boot for tests/deb/run.sh
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
EOF
        # Early-boot units that would touch the host's kernel or devices
        # (the capabilities dropped below stop them anyway).
        for m in systemd-sysctl.service systemd-modules-load.service systemd-binfmt.service \
            proc-sys-fs-binfmt_misc.automount systemd-timesyncd.service systemd-random-seed.service \
            systemd-pstore.service apparmor.service systemd-udevd.service systemd-udev-trigger.service \
            sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
            sys-fs-fuse-connections.mount dev-hugepages.mount systemd-remount-fs.service; do
            ln -sf /dev/null "$u/$m"
        done
        # systemd-nspawn's set, less what is not needed here.
        caps=-all,+chown,+dac_override,+dac_read_search,+fowner,+fsetid,+ipc_owner,+kill,+lease
        caps=$caps,+mknod,+net_admin,+net_bind_service,+net_broadcast,+net_raw,+setfcap,+setgid
        caps=$caps,+setpcap,+setuid,+sys_admin,+sys_chroot,+sys_nice,+sys_ptrace,+sys_resource
        caps=$caps,+sys_boot,+audit_write
    fi
    # pivot_root, not chroot: the kernel refuses user namespaces
    # (PrivateUsers=) to a chrooted process.
    cd "$r"
    pivot_root . .
    umount -l .
    cd /
    echo "throwaway root ready"
    if [ "$boot" = 1 ]; then
        exec setpriv --bounding-set="$caps" \
            env container=lifeline-deb-test /lib/systemd/systemd --unit=lifeline-deb-test.target
    fi
    exec sleep infinity
fi

step() { printf -- '--- %s\n' "$*"; }
fail() {
    echo "deb/run.sh: FAIL: $*" >&2
    if [ "$boot" = 1 ] && [ -n "$pid1" ]; then
        echo "--- the service's log (journalctl -u lifeline, last 40 lines)" >&2
        inroot journalctl -u lifeline --no-pager -n 40 >&2 || true
    fi
    exit 1
}
check() { # DESCRIPTION COMMAND...: run COMMAND, fail with DESCRIPTION if it fails
    local what=$1
    shift
    "$@" || fail "$what"
}

work=$(mktemp -d /tmp/lifeline-deb.XXXXXX)
t="" cg="" up="" pid1="" boot=0
cleanup() {
    set +e
    # PID 1 of the namespace: the kernel kills everything else in it. (unshare
    # --kill-child kills it when unshare itself is stopped.)
    if [ -n "$pid1" ]; then
        kill -KILL "$pid1" 2>/dev/null
    elif [ -n "$up" ]; then
        kill "$up" 2>/dev/null
    fi
    if [ -n "$up" ]; then
        wait "$up" 2>/dev/null
    fi
    if [ -n "$cg" ] && [ -d "$cg" ]; then
        # systemd's cgroups, once their processes are gone.
        for _ in $(seq 100); do
            find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$cg" ] || break
            sleep 0.1
        done
        [ -d "$cg" ] && echo "deb/run.sh: could not remove cgroup $cg" >&2
    fi
    [ -n "$t" ] && rmdir "$t"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in dpkg dpkg-deb systemd-analyze; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool not found: this test needs a Debian-like host"
done
# cargo-deb needs dpkg-shlibdeps for the package's Depends (libc6) and
# objcopy to move the debug symbols into the -dbgsym package.
missing=()
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v objcopy >/dev/null 2>&1 || missing+=(binutils)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || fail "install ${missing[*]}"
    step "installing ${missing[*]}"
    apt_install "${missing[@]}" >/dev/null || fail "cannot install ${missing[*]}"
fi

# 1. Build.
if ! command -v cargo-deb >/dev/null 2>&1; then
    step "cargo-deb not found: cargo install cargo-deb --locked"
    cargo install cargo-deb --locked
fi
version=$(cargo pkgid -p lifeline | sed 's/.*[#@]//')
arch=$(dpkg --print-architecture)
deb_args=(-p lifeline -o "$work/")
if [ "${DEB_NO_BUILD:-0}" = 1 ]; then
    deb_args+=(--no-build)
    [ -x "${CARGO_TARGET_DIR:-$ROOT/target}/release/lifeline" ] ||
        fail "DEB_NO_BUILD=1 but no ${CARGO_TARGET_DIR:-$ROOT/target}/release/lifeline"
fi
step "cargo deb ${deb_args[*]}"
cargo deb "${deb_args[@]}" >"$work/cargo-deb.log" 2>&1 || {
    cat "$work/cargo-deb.log" >&2
    fail "cargo deb failed"
}
deb=$work/lifeline_${version}-1_${arch}.deb
[ -f "$deb" ] || fail "no $(basename "$deb"); built: $(cd "$work" && ls ./*deb)"
if [ -n "${DEB_OUT:-}" ]; then
    mkdir -p "$DEB_OUT"
    cp "$work"/*.deb "$work"/*.ddeb "$DEB_OUT/" 2>/dev/null || true
fi
echo "$(basename "$deb"): $(stat -c %s "$deb") bytes"

# 2. The package's contents.
step "control fields, Depends, conffiles"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = lifeline ] || fail "Package: $(field Package)"
[ "$(field Version)" = "${version}-1" ] || fail "Version: $(field Version), not ${version}-1"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture: $(field Architecture)"
depends=$(field Depends)
echo "Depends: $depends"
[[ $depends =~ (^|, )libc6( |,|$) ]] || fail "Depends lacks libc6: $depends"
[[ $depends == *"systemd | systemd-sysusers"* ]] || fail "Depends lacks 'systemd | systemd-sysusers': $depends"
synopsis=$(dpkg-deb -I "$deb" | sed -n 's/^ Description: //p')
[ -n "$synopsis" ] && [ "${#synopsis}" -le 80 ] || fail "the synopsis is not one line under 80 characters: '$synopsis'"
dpkg-deb -e "$deb" "$work/control"
[ "$(cat "$work/control/conffiles")" = /etc/lifeline/lifeline.yaml ] ||
    fail "conffiles: $(tr '\n' ' ' <"$work/control/conffiles")"
grep -q 'systemd-sysusers.*lifeline.conf' "$work/control/postinst" || fail "postinst does not create the user"

step "files and modes (dpkg-deb -c)"
# Mode, owner and path of every file (directories left out).
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $1, $2, $6 }' | sort -k3 >"$work/files"
sort -k3 >"$work/files.want" <<'EOF'
-rw-r--r-- 0/0 ./etc/lifeline/lifeline.yaml
-rwxr-xr-x 0/0 ./usr/bin/lifeline
-rw-r--r-- 0/0 ./usr/lib/systemd/system/lifeline.service
-rw-r--r-- 0/0 ./usr/lib/sysusers.d/lifeline.conf
-rw-r--r-- 0/0 ./usr/share/doc/lifeline/CONFIG.md
-rw-r--r-- 0/0 ./usr/share/doc/lifeline/OPERATIONS.md
-rw-r--r-- 0/0 ./usr/share/doc/lifeline/README.md
-rw-r--r-- 0/0 ./usr/share/doc/lifeline/SECURITY.md
-rw-r--r-- 0/0 ./usr/share/doc/lifeline/copyright
-rw-r--r-- 0/0 ./usr/share/doc/lifeline/examples/alerts.yml
-rw-r--r-- 0/0 ./usr/share/doc/lifeline/examples/keepalived.conf
EOF
diff -u "$work/files.want" "$work/files" || fail "the package's files differ from the list above"
dpkg-deb -x "$deb" "$work/x"
check "the packaged unit is not deploy/lifeline.service" cmp "$work/x/usr/lib/systemd/system/lifeline.service" deploy/lifeline.service
check "the packaged sysusers file is not deploy/lifeline.sysusers" cmp "$work/x/usr/lib/sysusers.d/lifeline.conf" deploy/lifeline.sysusers
check "the packaged configuration is not deploy/lifeline.yaml" cmp "$work/x/etc/lifeline/lifeline.yaml" deploy/lifeline.yaml
if command -v readelf >/dev/null 2>&1; then
    ! readelf -S "$work/x/usr/bin/lifeline" | grep -q '\.debug_info' || fail "/usr/bin/lifeline carries debug info: not stripped"
fi
[ "$("$work/x/usr/bin/lifeline" --version)" = "lifeline $version" ] || fail "the packaged binary is not version $version"

step "the configuration's journal is in the unit's StateDirectory"
unit=$work/x/usr/lib/systemd/system/lifeline.service
state=$(sed -n 's/^StateDirectory=//p' "$unit")
journal=$(sed -n 's/^journal: *//p' "$work/x/etc/lifeline/lifeline.yaml")
[ -n "$state" ] && [[ $journal == /var/lib/$state/* ]] || fail "journal: $journal is not under StateDirectory=$state"
echo "journal: $journal (StateDirectory=$state)"

step "systemd-analyze security (offline)"
# The settings it still counts against the unit: those a SIP gateway needs
# (docs/OPERATIONS.md, "The systemd unit"). Any other is a hardening
# setting lost.
security() { LC_ALL=C systemd-analyze security --no-pager "$@" 2>&1; }
security --offline=true "$unit" >"$work/security"
exposure=$(sed -n 's/.*Overall exposure level for lifeline.service: \([0-9.]*\).*/\1/p' "$work/security")
[ -n "$exposure" ] || fail "no exposure level from systemd-analyze security: $(cat "$work/security")"
exposed=$(awk 'NF >= 3 && $NF ~ /^[0-9]+\.[0-9]+$/ { print $2 }' "$work/security" | sort | tr '\n' ' ')
expected="DeviceAllow= IPAddressDeny= PrivateNetwork= RestrictAddressFamilies=~AF_(INET|INET6) RestrictAddressFamilies=~AF_UNIX RootDirectory=/RootImage= "
echo "exposure $exposure; counted against it: $exposed"
[ "$exposed" = "$expected" ] || fail "systemd-analyze security counts against the unit: $exposed; expected only: $expected"

# 3. The throwaway root.
if [ "$(id -u)" != 0 ]; then
    echo "deb/run.sh: SKIP installing: needs root (mount and PID namespaces, an overlay over /)"
    echo "deb/run.sh: package checks passed"
    exit 0
fi
if ! unshare --mount --fork --propagation private sh -c \
    'd=$(mktemp -d) && mount -t tmpfs probe "$d" && mkdir "$d/u" "$d/w" "$d/m" &&
     mount -t overlay overlay -o "lowerdir=/,upperdir=$d/u,workdir=$d/w" "$d/m"; r=$?; umount -R "$d" 2>/dev/null; rmdir "$d"; exit $r' \
    >/dev/null 2>&1; then
    echo "deb/run.sh: SKIP installing: cannot mount an overlay over / in a new mount namespace (no CAP_SYS_ADMIN?)"
    echo "deb/run.sh: package checks passed"
    exit 0
fi

if [ "${DEB_BOOT:-1}" = 1 ] && [ -x /lib/systemd/systemd ]; then
    if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        base=/sys/fs/cgroup
    elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
        base=/sys/fs/cgroup/unified
    else
        base=""
    fi
    own=$(sed -n 's/^0:://p' /proc/self/cgroup)
    if [ -n "$base" ] && mkdir "$base${own%/}/lifeline-deb-test.$$" 2>/dev/null; then
        cg=$base${own%/}/lifeline-deb-test.$$
        boot=1
    else
        echo "deb/run.sh: no writable cgroup2 hierarchy: systemd is not booted in the throwaway root; the service is not started"
    fi
fi

t=$(mktemp -d /tmp/lifeline-deb-root.XXXXXX)
ns=(--mount --pid --net --uts --ipc --fork --kill-child --propagation private)
if [ "$boot" = 1 ]; then
    ns+=(--cgroup)
    step "booting systemd in a throwaway root (overlay over /, new namespaces)"
else
    step "a throwaway root (overlay over /, new namespaces), without systemd"
fi
(
    [ -z "$cg" ] || echo "$BASHPID" >"$cg/cgroup.procs"
    exec unshare "${ns[@]}" bash "$ROOT/tests/deb/run.sh" --container "$t" "$boot"
) >"$work/container.log" 2>&1 &
up=$!
for _ in $(seq 100); do
    if grep -q '^throwaway root ready' "$work/container.log"; then
        pid1=$(awk '{ print $1 }' "/proc/$up/task/$up/children" 2>/dev/null || true)
        break
    fi
    kill -0 "$up" 2>/dev/null || break
    sleep 0.1
done
[ -n "$pid1" ] || {
    cat "$work/container.log" >&2
    fail "the throwaway root did not start"
}
# A command in the throwaway root; innet: in its network namespace only
# (with the host's files: this checkout, python3).
inroot() { nsenter -t "$pid1" -m -u -i -n -p -r -w "$@"; }
innet() { nsenter -t "$pid1" -n "$@"; }
if [ "$boot" = 1 ]; then
    booted=""
    for _ in $(seq 300); do
        booted=$(inroot systemctl is-system-running 2>/dev/null || true)
        case "$booted" in running | degraded) break ;; esac
        sleep 0.2
    done
    case "$booted" in
        running | degraded) echo "systemd: $booted" ;;
        *)
            tail -n 40 "$work/container.log" >&2
            fail "systemd did not boot in the throwaway root (state: ${booted:-none})"
            ;;
    esac
    # A policy-rc.d that forbids starting services (container images have
    # one) would keep the package's scripts from restarting and stopping
    # the service: gone from the throwaway root, as on a server.
    inroot rm -f /usr/sbin/policy-rc.d
fi

# What the unit says about the service (systemctl show -p NAME --value).
prop() { inroot systemctl show -p "$1" --value lifeline.service; }
dpkg_i() { # FILE: install or upgrade with the package FILE
    inroot sh -c 'cat >/tmp/lifeline.deb' <"$1"
    inroot env DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold /tmp/lifeline.deb </dev/null >"$work/dpkg.log" 2>&1 || {
        cat "$work/dpkg.log" >&2
        fail "dpkg -i $(basename "$1") failed"
    }
}

step "dpkg -i $(basename "$deb")"
dpkg_i "$deb"
sed 's/^/    /' "$work/dpkg.log"
passwd=$(inroot getent passwd lifeline) || fail "no lifeline user after dpkg -i"
IFS=: read -r _ _ uid gid _ home shell <<<"$passwd"
echo "user: $passwd"
[ "$uid" -lt 1000 ] || fail "lifeline is not a system user (uid $uid)"
[ "$home" = /var/lib/lifeline ] || fail "lifeline's home is $home"
[[ $shell == */nologin ]] || fail "lifeline can log in (shell $shell)"
[ "$(inroot getent group lifeline | cut -d: -f3)" = "$gid" ] || fail "no lifeline group with gid $gid"
[ "$(inroot dpkg-query -W -f '${Status}' lifeline)" = "install ok installed" ] || fail "dpkg does not list lifeline installed"
check "the installed binary refuses the installed configuration (as user lifeline)" \
    inroot setpriv --reuid=lifeline --regid=lifeline --init-groups /usr/bin/lifeline check-config /etc/lifeline/lifeline.yaml
inroot systemd-analyze verify /usr/lib/systemd/system/lifeline.service >"$work/verify.log" 2>&1 || {
    cat "$work/verify.log" >&2
    fail "systemd-analyze verify failed on the installed unit"
}
echo "systemd-analyze verify: ok"
! inroot test -e /etc/systemd/system/multi-user.target.wants/lifeline.service ||
    fail "the package enabled the unit on a first install"

if [ "$boot" = 1 ]; then
    [ "$(inroot systemctl is-enabled lifeline.service || true)" = disabled ] || fail "lifeline.service is not 'disabled' after install"
    [ "$(prop ActiveState)" = inactive ] || fail "the package started the service on a first install"

    step "systemctl start lifeline (the installed unit and configuration)"
    # The caller: an access.callers address (trusted) on the namespace's
    # loopback. The example trunks' addresses: in a second network
    # namespace (its handle in the throwaway root's /run) behind a veth
    # pair, where no SIP server listens: their answer is ICMP port
    # unreachable, and nothing leaves the namespaces.
    innet ip addr add 192.0.2.5/32 dev lo
    inroot ip netns add trunks
    inroot ip link add lifeline-a type veth peer name lifeline-b netns trunks
    innet ip addr add 203.0.113.1/32 dev lifeline-a
    innet ip link set lifeline-a up
    innet ip route add default dev lifeline-a
    for a in 192.0.2.10 198.51.100.20; do inroot ip -n trunks addr add "$a/32" dev lifeline-b; done
    inroot ip -n trunks link set lifeline-b up
    inroot ip -n trunks route add default dev lifeline-b
    # Every message answered with its ICMP error, not one a second: the
    # calls' attempts end at once rather than at Timer B (32 s), which a
    # graceful stop waits for.
    nsenter --net="/proc/$pid1/root/run/netns/trunks" sysctl -qw net.ipv4.icmp_ratelimit=0
    inroot timeout 60 systemctl start lifeline.service || fail "systemctl start lifeline failed"
    [ "$(prop ActiveState)/$(prop SubState)" = active/running ] || fail "lifeline is $(prop ActiveState)/$(prop SubState) after start"
    pid=$(prop MainPID)
    echo "active (READY received), MainPID $pid, WatchdogUSec $(prop WatchdogUSec)"
    ready=$(innet bash -c ". '$ROOT/tests/lib/common.sh'; http_get 9060 /readyz") || fail "/readyz is not 200: $ready"
    echo "/readyz: $ready"
    w1=$(prop WatchdogTimestampMonotonic)
    for _ in $(seq 100); do
        [ "$(prop WatchdogTimestampMonotonic)" != "$w1" ] && break
        sleep 0.1
    done
    [ "$(prop WatchdogTimestampMonotonic)" != "$w1" ] || fail "the watchdog is not fed (WatchdogTimestamp stays $w1)"
    echo "watchdog: fed"
    perms=$(inroot stat -c '%a %U:%G' /var/lib/lifeline)
    [ "$perms" = "700 lifeline:lifeline" ] || fail "/var/lib/lifeline is $perms, not 700 lifeline:lifeline"

    step "an emergency call from 192.0.2.5 (no trunk answers: 503, on the callback list)"
    answer=$(innet python3 "$ROOT/tests/deb/call.py" --source 192.0.2.5 --gateway 192.0.2.5:5060 --timeout 60) ||
        fail "no final response to the emergency call"
    read -r status call_id <<<"$answer"
    echo "final response $status for $call_id"
    [ "$status" = 503 ] || fail "the call got $status, not 503 (no trunk answers)"
    found=0
    for _ in $(seq 100); do
        if inroot setpriv --reuid=lifeline --regid=lifeline --init-groups \
            /usr/bin/lifeline report --journal /var/lib/lifeline/journal --format csv 2>/dev/null |
            grep -qF "$call_id"; then
            found=1
            break
        fi
        sleep 0.1
    done
    [ "$found" = 1 ] || fail "the failed call $call_id is not on the callback list"
    echo "callback list: $call_id"
    perms=$(inroot stat -c '%a %U' /var/lib/lifeline/journal)
    [ "$perms" = "700 lifeline" ] || fail "the journal directory is $perms"

    step "systemctl reload lifeline"
    inroot systemctl reload lifeline.service || fail "systemctl reload failed"
    [ "$(prop MainPID)" = "$pid" ] && [ "$(prop ActiveState)" = active ] || fail "the reload did not keep the process"
    for _ in $(seq 50); do
        inroot journalctl -u lifeline --no-pager -o cat | grep -q 'configuration reloaded' && break
        sleep 0.1
    done
    inroot journalctl -u lifeline --no-pager -o cat | grep -q 'configuration reloaded' || fail "no 'configuration reloaded' in the log"
    echo "reloaded, MainPID $pid"
    live=$(inroot env LC_ALL=C systemd-analyze security --no-pager lifeline.service 2>&1 |
        sed -n 's/.*Overall exposure level for lifeline.service: \([0-9.]*\).*/\1/p')
    echo "systemd-analyze security (running): ${live:-?}"
    [ "$live" = "$exposure" ] || fail "the running unit's exposure ($live) is not the file's ($exposure)"
else
    # What the service would have written.
    inroot install -d -m 0700 -o lifeline -g lifeline /var/lib/lifeline /var/lib/lifeline/journal
    inroot install -m 0600 -o lifeline -g lifeline /dev/null /var/lib/lifeline/journal/journal-00000000000000000001-0.log
fi

step "upgrade to ${version}-1+debtest (enabled, configuration edited, journal there)"
wants=/etc/systemd/system/multi-user.target.wants/lifeline.service
inroot systemctl enable lifeline.service 2>/dev/null
inroot test -L "$wants" || fail "systemctl enable lifeline did not enable it"
inroot sh -c 'echo "# edited by the operator" >>/etc/lifeline/lifeline.yaml'
segments=$(inroot ls /var/lib/lifeline/journal)
[ -n "$segments" ] || fail "no journal segment before the upgrade"
dpkg-deb -R "$deb" "$work/next"
sed -i "s/^Version: .*/Version: ${version}-1+debtest/" "$work/next/DEBIAN/control"
dpkg-deb -Znone -b "$work/next" "$work/next.deb" >/dev/null
dpkg_i "$work/next.deb"
[ "$(inroot dpkg-query -W -f '${Version}' lifeline)" = "${version}-1+debtest" ] || fail "the upgrade did not install"
inroot grep -q '^# edited by the operator' /etc/lifeline/lifeline.yaml || fail "the upgrade replaced the edited configuration"
# Every segment of the journal, at the end (after remove and purge too).
journal_kept() { # WHEN
    local f
    for f in $segments; do
        inroot test -f "/var/lib/lifeline/journal/$f" || fail "$1 lost the journal segment $f"
    done
}
journal_kept "the upgrade"
inroot test -L "$wants" || fail "the upgrade did not keep the unit enabled"
echo "configuration, journal ($(echo "$segments" | wc -w) segment(s)) and enablement kept"
if [ "$boot" = 1 ]; then
    [ "$(prop ActiveState)" = active ] || fail "lifeline is not running after the upgrade"
    [ "$(prop MainPID)" != "$pid" ] || fail "the upgrade did not restart the running service"
    inroot setpriv --reuid=lifeline --regid=lifeline --init-groups \
        /usr/bin/lifeline report --journal /var/lib/lifeline/journal --format csv 2>/dev/null |
        grep -qF "$call_id" || fail "the call $call_id is no longer on the callback list after the upgrade"
    echo "restarted (MainPID $pid -> $(prop MainPID)); $call_id still on the callback list"
fi

step "dpkg -r lifeline"
inroot dpkg -r lifeline >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    fail "dpkg -r failed"
}
! inroot test -e /usr/bin/lifeline || fail "/usr/bin/lifeline is still there after dpkg -r"
inroot test -f /etc/lifeline/lifeline.yaml || fail "dpkg -r removed the configuration"
journal_kept "dpkg -r"
if [ "$boot" = 1 ]; then
    [ "$(prop ActiveState)" != active ] || fail "dpkg -r left the service running"
    echo "service stopped"
fi

step "dpkg --purge lifeline"
inroot dpkg --purge lifeline >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    fail "dpkg --purge failed"
}
sed 's/^/    /' "$work/dpkg.log"
! inroot test -e /etc/lifeline/lifeline.yaml || fail "the configuration is still there after purge"
! inroot dpkg-query -W lifeline >/dev/null 2>&1 || fail "dpkg still knows lifeline after purge"
! inroot test -e "$wants" || fail "the unit is still enabled after purge"
journal_kept "dpkg --purge"

echo "deb/run.sh: passed (package, install, $([ "$boot" = 1 ] && echo "service under systemd, ")upgrade, remove, purge)"
