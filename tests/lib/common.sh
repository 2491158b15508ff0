# shellcheck shell=bash
# Shell helpers shared by the runners (tests/sipp/run.sh, tests/ha/run.sh,
# tests/flood/run.sh): source it, after setting OUT (the run's directory).

die() { echo "run.sh: $*" >&2; exit 2; }
isint() { [[ $1 =~ ^[0-9]+$ ]]; }
now_ms() { date +%s%3N; }

TAKEN=" "
port_in_use() {
    [ -n "$(ss -Hlnu "sport = :$1" 2>/dev/null)" ] || [ -n "$(ss -Hlnt "sport = :$1" 2>/dev/null)" ]
}
pick_port() { # VAR: set VAR to a port free for UDP and TCP, never one picked before
    local p
    for _ in $(seq 500); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        case "$TAKEN" in *" $p "*) continue ;; esac
        if ! port_in_use "$p"; then
            TAKEN="$TAKEN$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free port found"
}

# A one-shot HTTP GET on loopback with bash's /dev/tcp (no curl needed):
# prints the body, returns 0 on a 2xx. With LIFELINE_ADMIN_TOKEN_FILE set,
# every request carries that token (admin.token_file; docs/SECURITY.md).
http_get() {
    local port=$1 path=$2 status body auth=""
    if [ -n "${LIFELINE_ADMIN_TOKEN_FILE:-}" ]; then
        auth="Authorization: Bearer $(tr -d ' \t\r\n' <"$LIFELINE_ADMIN_TOKEN_FILE")"$'\r\n'
    fi
    exec 9<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n' "$path" "$auth" >&9
    body=$(timeout 5 cat <&9) || true
    exec 9<&- 9>&-
    status=$(printf '%s' "$body" | head -n1 | awk '{print $2}')
    printf '%s' "$body" | sed '1,/^\r\{0,1\}$/d'
    [[ $status == 2* ]]
}

# Whether the gateway on admin PORT takes calls (/readyz) and every route
# has a usable trunk (/status: the trunks answered their probes). /readyz
# alone says nothing of the trunks.
ready_with_trunks() {
    http_get "$1" /readyz >/dev/null 2>&1 &&
        http_get "$1" /status 2>/dev/null | grep -q '"routes_usable":true'
}

# The SIPp caller's statistics ($OUT/caller.stat.csv, -trace_stat): the
# last value of column NAME, or "na".
stat_col() {
    awk -F';' -v want="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == want) c = i; next }
        { last = $c } END { print (c && last != "" ? last : "na") }' "$OUT/caller.stat.csv" 2>/dev/null || echo na
}

# The non-zero Failed*(C) counters of the caller's statistics, as
# "Name:N,Name:N" ("none" if none).
failed_reasons() {
    awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) name[i] = $i; next } { for (i = 1; i <= NF; i++) v[i] = $i }
    END { s = ""; for (i in name) if (name[i] ~ /^Failed.*\(C\)$/ && name[i] != "FailedCall(C)" && v[i] + 0 > 0) {
            n = name[i]; sub(/^Failed/, "", n); sub(/\(C\)$/, "", n); s = s (s ? "," : "") n ":" v[i] }
          print (s ? s : "none") }' "$OUT/caller.stat.csv" 2>/dev/null || echo na
}

# The configuration's trunks (primary and backup at IP:PRIMARY and IP:BACKUP)
# and its two routes through them, emergency and default, as YAML.
trunks_and_routes_yaml() { # IP PRIMARY BACKUP
    cat <<YAML
trunks:
  - name: primary
    address: $1:$2
  - name: backup
    address: $1:$3
routes:
  - name: emergency
    match: emergency
    trunks: [primary, backup]
  - name: default
    match: any
    trunks: [primary, backup]
YAML
}
