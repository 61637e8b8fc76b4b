#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then lints and runs every
# test (real postgres and mariadbd processes, an in-process S3 server, real client libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

need_apt=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need_apt+=(mariadb-client)
command -v sysbench >/dev/null 2>&1 || need_apt+=(sysbench)
# pgjdbc for the Java client tests, and javac to compile them (node and npm come with the machine).
[ -e /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
# HikariCP (with slf4j) for the pool test of tests/tests/pg_idle_clients.rs.
[ -e /usr/share/java/HikariCP.jar ] || need_apt+=(libhikaricp-java)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
# The docker driver's tests start a dockerd of their own (tests/src/docker.rs) and build their
# images from this machine's postgres and mariadbd, with busybox for a shell.
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
# Debian's docker-compose (1.29) runs docker-compose.yml in tests/tests/compose.rs.
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
apt_install "${need_apt[@]}"
# postgres refuses to run as root; the process driver runs it as this user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

# A clean build needs no incremental state, and it would double the target dir on disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo fmt --all --check
cargo build --workspace --all-targets
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The state tests again with a config that holds only password_hash values (issue 12): torpor
# then logs in to the servers with the keys each client's own login reveals.
TORPOR_TEST_PASSWORD_HASH=1 cargo test -p torpor-tests --no-fail-fast --test e2e -- pg_state:: \
    mysql_state:: pg_transactions:: pg_listen:: mysql_commands:: 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
# Each fuzz target for 30 s; a crash fails the run. The fuzz build is about 7 minutes of CPU
# (the targets, protocols, state-store and its dependencies, instrumented), the runs 2.5 minutes.
./scripts/fuzz.sh short || status=1
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
