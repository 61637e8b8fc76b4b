#!/usr/bin/env bash
# The soak (issue 11): sleep/wake cycles of one torpor with a PostgreSQL and a MariaDB cluster
# under a real client mix (tokio-postgres, psycopg 3, pgjdbc, mysql_async, PyMySQL), every
# session checking all of its state after every wake. Not part of CI. Runs as root (the
# servers run as the postgres and mysql users); installs what it needs if missing.
#
#   scripts/soak.sh [CYCLES]                      # default 1000
#   SOAK_IDLE_TIMEOUT=500ms scripts/soak.sh 20    # the clusters' idle_timeout (default 300ms)
#   SOAK_TORPOR_LOG=debug ...                     # torpor's log level (default info)
#   SOAK_KEEP=1 ...                               # keep the work dir even when all went well
#
# Prints, per client, its checks, errors and mismatches; per cluster, its wakes and drains; how
# long the sleeps and wakes took; last `cycles=N client_errors=E state_mismatches=M ...`. Exits
# non-zero when E or M is above 0 or a cycle did not sleep or wake; the work dir (torpor.log,
# the snapshots) is then kept. Then torpor's warnings and errors. What each session holds:
# bench/src/soak.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
. scripts/apt.sh

cycles=${1:-1000}
if [ "$(id -u)" != 0 ]; then
    echo "soak.sh runs as root (it starts servers as the postgres and mysql users)" >&2
    exit 2
fi

need_apt=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null 2>&1 || need_apt+=(mariadb-server)
[ -e /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
apt_install "${need_apt[@]}"
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
id mysql >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin mysql

target=${CARGO_TARGET_DIR:-$repo/target}
echo "building torpor and torpor-bench (release)"
cargo build --release -q -p torpor -p torpor-bench
# psycopg 3 and PyMySQL from PyPI, pinned as in the client tests, in a virtualenv of their own.
venv=$target/soak-venv
if ! "$venv/bin/python" -c 'import psycopg, pymysql' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q 'psycopg[binary]==3.3.9' 'PyMySQL==1.1.1'
fi
jdbc=/usr/share/java/postgresql.jar
classes=$target/soak-java
mkdir -p "$classes"
javac -cp "$jdbc" -d "$classes" bench/clients/SoakJdbc.java

# Under /tmp: the postgres and mysql users must reach the data dirs.
work=$(mktemp -d /tmp/torpor-soak.XXXXXX)
chmod 755 "$work"
status=0
cleanup() {
    # Backends left behind if the driver itself died (it stops torpor and them otherwise).
    for f in "$work"/pgdata/postmaster.pid "$work"/mydata/mariadbd.pid; do
        if [ -f "$f" ]; then kill -TERM "$(head -1 "$f")" 2>/dev/null || true; fi
    done
    # What torpor itself complained about (its log has every wake and drain at info).
    local log=$work/torpor.log
    if [ -f "$log" ]; then
        echo "torpor log: $(grep -c ' WARN' "$log" || true) warnings, $(grep -c ' ERROR' "$log" || true) errors"
        grep ' WARN\| ERROR' "$log" | sed 's/\x1b\[[0-9;]*m//g' | head -20 || true
    fi
    if [ "$status" = 0 ] && [ -z "${SOAK_KEEP:-}" ]; then
        rm -rf "$work"
    else
        echo "kept $work (torpor.log, the snapshots)" >&2
    fi
}
trap cleanup EXIT
trap 'status=130; exit 130' INT TERM

BENCH_TORPOR_LOG=${SOAK_TORPOR_LOG:-info} "$target/release/torpor-bench" soak \
    --torpor "$target/release/torpor" --work "$work" --cycles "$cycles" \
    --idle-timeout "${SOAK_IDLE_TIMEOUT:-300ms}" \
    --python "$venv/bin/python" --scripts "$repo/bench/clients" \
    --java-cp "$classes:$jdbc" || status=$?
exit "$status"
