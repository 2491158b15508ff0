# shellcheck shell=bash
# Shell helpers shared by the CI runners (tests/sipp/ci.sh, tests/ha/ci.sh,
# tests/deb/run.sh): source it.

# apt_install PACKAGE...: install with apt-get, updating the package lists
# once if the first try fails (a fresh machine has none).
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
    fi
}

# ci_lifeline GIVEN: the lifeline binary to run: GIVEN if set, else a
# release build made now.
ci_lifeline() {
    if [ -n "$1" ]; then
        echo "$1"
    else
        cargo build --release -p lifeline --quiet >&2
        echo "${CARGO_TARGET_DIR:-$PWD/target}/release/lifeline"
    fi
}

# ci_out GIVEN PREFIX: the directory for the run's logs (GIVEN if set, else
# a new one under /tmp), created and announced.
ci_out() {
    local dir=${1:-$(mktemp -d "/tmp/$2.XXXXXX")}
    mkdir -p "$dir"
    echo "logs: $dir" >&2
    echo "$dir"
}

field() { # NAME LINE: the value of NAME=... in a result line
    printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2; exit }'
}
isnum() { [[ $1 =~ ^[0-9]+$ ]]; }
