#!/usr/bin/env bash
# The benchmark suite (issue 4). Not part of the tests: it never fails on a missed target.
# Installs pgbouncer and sysbench if missing, builds torpor and the bench driver in release,
# runs every measure, prints one line per measure and writes BENCHMARKS.md.
#
#   scripts/bench.sh                  # whole suite, about 20 minutes on 2 cores
#   BENCH_SECONDS=5 BENCH_RUNS=3 scripts/bench.sh pgbench   # only some groups:
#                                     # pgbench wake idle restore memory mass sysbench mywake
#                                     # idlepool probe freeze
#   BENCH_THAW_SAMPLES=50 BENCH_FROZEN_SECONDS=10 scripts/bench.sh freeze
#                                     # the frozen tier (issue 13): first query after a freeze
#                                     # (samples per protocol) and CPU while frozen (windows
#                                     # of that many seconds), PostgreSQL and MariaDB
#   BENCH_COMPARE="before=/tmp/a/release/torpor after=/tmp/b/release/torpor" \
#       scripts/bench.sh compare      # two torpor builds, pgbench -S and -M prepared interleaved:
#                                     # torpor's CPU per transaction, after ÷ before (not in the
#                                     # default groups; BENCH_COMPARE_LIMIT, default 1.05;
#                                     # BENCH_COMPARE_LOADS, default "select prepared")
#   scripts/bench.sh tls              # TLS from clients (issue 12, not in the default groups;
#                                     # about 5 minutes): pgbench -S with sslmode=require against
#                                     # postgres ssl=on, PgBouncer client_tls_* and torpor [tls],
#                                     # and the same three in plaintext, interleaved; then a cold
#                                     # wake of a TLS session and a new TLS connection vs plaintext
#   scripts/bench.sh docker           # driver = "docker" (issue 13, not in the default groups;
#                                     # needs docker.io, installed if missing; about a minute):
#                                     # cold wake vs docker start → first query of the same
#                                     # container, and the pause tier vs docker unpause → query
#   scripts/bench.sh pool             # session-preserving pooling (not in the default groups;
#                                     # 7-10 minutes): BENCH_POOLING_CLIENTS (1000) clients that
#                                     # each hold session state, checked every 5-15 s for
#                                     # BENCH_POOLING_SECONDS (60), against a server with
#                                     # max_connections BENCH_POOLING_MAX_CONNECTIONS (50), through
#                                     # torpor and PgBouncer (transaction pooling); then pgbench -S
#                                     # -c BENCH_POOLING_THREADS (200) through both, interleaved;
#                                     # then MariaDB: the same clients and sysbench oltp_read_only
#                                     # --threads BENCH_POOLING_THREADS through torpor.
#                                     # BENCH_POOLING_RAMP (5): seconds over which clients connect
#   BENCH_QUIET_LOAD=1.5 ...          # before each throughput run, wait (polling every 30 s, at
#                                     # most BENCH_QUIET_WAIT s, default 1200) until the 1-minute
#                                     # load average is below 1.5; each run logs the load it saw
#
# Every throughput run also reads the CPU time (utime + stime, /proc/<pid>/stat fields 14-15)
# of the proxy it goes through, before and after, and divides by the transactions the load
# tool reports: µs of proxy CPU per transaction, steadier than tps on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
. scripts/apt.sh

RUNS=${BENCH_RUNS:-3}          # runs per configuration (median, min, max reported)
# runs per throughput configuration (pgbench, sysbench, compare): at least 5 for the CPU figure
LOAD_RUNS=${BENCH_LOAD_RUNS:-$((RUNS > 5 ? RUNS : 5))}
SECS=${BENCH_SECONDS:-8}       # seconds per pgbench / sysbench run
SCALE=${BENCH_SCALE:-10}       # pgbench scale factor
CONNS=${BENCH_CONNS:-10000}    # parked connections for the memory measure
MASS=${BENCH_MASS:-1000}       # sessions in the mass wake
POOL_RUNS=${BENCH_POOL_RUNS:-1}        # 3-minute windows of the idle pool (PG and MariaDB at once)
POOL_SECONDS=${BENCH_POOL_SECONDS:-180}
THAW_SAMPLES=${BENCH_THAW_SAMPLES:-50}   # timed thaws per protocol in the freeze group
FROZEN_SECONDS=${BENCH_FROZEN_SECONDS:-10}  # each CPU window of the freeze group
POOLING_CLIENTS=${BENCH_POOLING_CLIENTS:-1000}       # stateful clients in the pool group
POOLING_SECONDS=${BENCH_POOLING_SECONDS:-60}         # how long they keep checking their state
POOLING_RAMP=${BENCH_POOLING_RAMP:-5}                # seconds over which they connect
POOLING_MAX_CONN=${BENCH_POOLING_MAX_CONNECTIONS:-50}  # the servers' max_connections
POOLING_THREADS=${BENCH_POOLING_THREADS:-200}        # pgbench -c and sysbench --threads
all_groups="pgbench wake idle restore memory mass sysbench mywake idlepool probe freeze"
groups=${*:-$all_groups}
want() { [[ " $groups " == *" $1 "* ]]; }
if want compare && [ -z "${BENCH_COMPARE:-}" ]; then
    echo "compare needs BENCH_COMPARE=\"LABEL=/path/to/torpor LABEL=/path/to/torpor\" (base first)" >&2
    exit 2
fi

started=$(date +%s)
if [ "$(id -u)" != 0 ]; then
    echo "bench.sh runs as root (it starts servers as the postgres and mysql users)" >&2
    exit 2
fi

# --- what the suite needs -------------------------------------------------------------------
need_apt=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v pgbench >/dev/null 2>&1 || need_apt+=(postgresql-contrib)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v pgbouncer >/dev/null 2>&1 || need_apt+=(pgbouncer)
command -v sysbench >/dev/null 2>&1 || need_apt+=(sysbench)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null 2>&1 || need_apt+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need_apt+=(mariadb-client)
want docker && ! command -v dockerd >/dev/null 2>&1 && need_apt+=(docker.io)
apt_install "${need_apt[@]}"
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
id mysql >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin mysql

target=${CARGO_TARGET_DIR:-$repo/target}
if [ -n "${BENCH_TORPOR:-}" ]; then
    # A torpor built elsewhere (another commit, its own target dir); only the driver here.
    echo "building torpor-bench (release); torpor is $BENCH_TORPOR"
    cargo build --release -q -p torpor-bench
    TORPOR=$BENCH_TORPOR
else
    echo "building torpor and torpor-bench (release)"
    cargo build --release -q -p torpor -p torpor-bench
    TORPOR=$target/release/torpor
fi
DRIVER=$target/release/torpor-bench

# 10,000 parked clients need as many descriptors in torpor and in the driver.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# --- scratch space and cleanup ----------------------------------------------------------------
# Under /tmp: the postgres and mysql users must reach the data dirs (a clone under /root is 0700).
work=$(mktemp -d /tmp/torpor-bench.XXXXXX)
chmod 755 "$work"
export BENCH_RESULTS=$work/results
: > "$BENCH_RESULTS"
pids=()
cleanup() {
    set +e
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    # Backends torpor started, in case torpor itself died.
    for f in "$work"/*/pgdata/postmaster.pid "$work"/*/mydata/mariadbd.pid; do
        [ -f "$f" ] || continue
        pid=$(head -1 "$f")
        kill -TERM "$pid" 2>/dev/null
    done
    sleep 1
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    local p
    while :; do
        p=$((15000 + RANDOM % 17000))
        (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "$p"; return; }
    done
}

# Waits, at most 10 s, until something listens on the port (PgBouncer, the forwarder).
wait_port() { # port
    for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done
}

USER_NAME=bench
PASS=bench-secret-pw
commands=()
note_cmd() { commands+=("$1"); }

# Starts torpor with one cluster; sets LISTEN, ADMIN, BACKEND, TPID. extra toml goes at the
# end of the config (top-level tables such as [tls]).
start_torpor() { # dir protocol settings [torpor binary] [extra toml]
    local dir=$1 proto=$2 settings=$3 bin=${4:-$TORPOR} extra=${5:-} cluster data
    mkdir -p "$dir"
    chmod 755 "$dir"
    if [ "$proto" = postgres ]; then cluster=pg data=pgdata; else cluster=my data=mydata; fi
    LISTEN=$(free_port); ADMIN=$(free_port); BACKEND=$(free_port)
    # Snapshots are sealed: each torpor its own key, beside its store, not in the repo.
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$dir/torpor.key"; echo >> "$dir/torpor.key")
    cat > "$dir/torpor.toml" <<EOF
[admin]
listen = "127.0.0.1:$ADMIN"

[state_store]
url = "file://$dir/state"
key_file = "$dir/torpor.key"

[[cluster]]
name = "$cluster"
protocol = "$proto"
listen = "127.0.0.1:$LISTEN"
idle_timeout = "1h"

[cluster.backend]
driver = "process"
data_dir = "$dir/$data"
port = $BACKEND
settings = $settings

[[cluster.users]]
name = "$USER_NAME"
password = "$PASS"
superuser = true
$extra
EOF
    TORPOR_LOG=warn "$bin" up --config "$dir/torpor.toml" > "$dir/torpor.log" 2>&1 &
    TPID=$!
    pids+=("$TPID")
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$ADMIN/api/clusters" >/dev/null 2>&1 && return 0
        kill -0 "$TPID" 2>/dev/null || { cat "$dir/torpor.log"; return 1; }
        sleep 0.1
    done
    echo "torpor did not start" >&2
    return 1
}

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

join() { local IFS=,; echo "$*"; }

# --- CPU per transaction of a proxy process -------------------------------------------------------
HZ=$(getconf CLK_TCK)
# utime + stime of a process, all its threads, in clock ticks: fields 14 and 15 of
# /proc/<pid>/stat, counted after the ")" that closes the command name (which may hold spaces).
cpu_ticks() { # pid
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo ERR
}
# µs of CPU per transaction from two tick readings; "-" when there is no reading.
per_tx_us() { # ticks-before ticks-after transactions
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$HZ" 'BEGIN {
        if (a !~ /^[0-9]+$/ || b !~ /^[0-9]+$/ || n !~ /^[0-9]+$/ || n == 0) print "-"
        else printf "%.2f\n", (b - a) * 1e6 / hz / n }'
}
# One throughput run, once the machine is quiet enough (quiet_load): runs the load command while
# reading the CPU of the proxy it goes through (pid, or - for none) before and after. Sets
# RUN_TPS (ERR when the tool printed none), RUN_US (µs of proxy CPU per transaction, or -),
# RUN_ERRORS (failed transactions and clients the tool lost, see run_errors),
# appends the load average it started at to RUN_LOADS, and prints a progress line that starts
# with label. kind says how to read the tool's summary.
load_run() { # label pgbench|sysbench pid|- command...
    local label=$1 kind=$2 pid=$3 out before=- after=- tx; shift 3
    quiet_load
    [ "$pid" = - ] || before=$(cpu_ticks "$pid")
    out=$("$@" 2>&1) || true
    [ "$pid" = - ] || after=$(cpu_ticks "$pid")
    case $kind in
        pgbench)
            RUN_TPS=$(awk '/^tps = / { print $3; f=1 } END { if (!f) print "ERR" }' <<<"$out")
            # "number of transactions actually processed: 123456" (or 123456/200000 with -t)
            tx=$(awk -F': *' '/^number of transactions actually processed:/ { split($2, p, "/"); print p[1] }' <<<"$out") ;;
        sysbench)
            # "    transactions:   12345  (1543.12 per sec.)"
            RUN_TPS=$(awk '/transactions:/ { gsub(/[()]/, "", $3); print $3; f=1 } END { if (!f) print "ERR" }' <<<"$out")
            tx=$(awk '/transactions:/ { print $2 }' <<<"$out") ;;
    esac
    RUN_US=$(per_tx_us "$before" "$after" "${tx:-0}")
    RUN_ERRORS=$(run_errors "$kind" <<<"$out")
    # A run the tool gave no figure for is at least one error.
    [ "$RUN_TPS" != ERR ] || [ "$RUN_ERRORS" != 0 ] || RUN_ERRORS=1
    [ "$RUN_TPS" != ERR ] || echo "$out" | tail -3 | sed 's/^/      /' >&2
    RUN_LOADS+="$RUN_LOAD,"
    echo "   $label: $RUN_TPS tps$(us_note)$([ "$RUN_ERRORS" = 0 ] || echo ", $RUN_ERRORS errors"), load $RUN_LOAD"
}
# What went wrong in one run, from the tool's output on stdin: pgbench's failed transactions
# plus each client it aborted or could not connect; sysbench's ignored errors plus each thread
# whose init or run failed (a refused connection stops a thread).
run_errors() { # pgbench|sysbench
    case $1 in
        pgbench) awk '/^number of failed transactions:/ { n += $5 }
                      /aborted in command|could not create connection for client/ { n++ }
                      END { print n + 0 }' ;;
        sysbench) awk '/ignored errors:/ { n += $3 }
                       /FATAL: .thread_(init|run). function failed/ { n++ }
                       END { print n + 0 }' ;;
    esac
}
# " (24.31 µs/tx)" for the progress lines, or nothing.
us_note() { [ "$RUN_US" = - ] || echo " ($RUN_US µs/tx)"; }
# The 1-minute load average now. With BENCH_QUIET_LOAD set, first waits until it is below
# that (others build and test on the machine), polling every 30 s for at most
# BENCH_QUIET_WAIT s, then goes on anyway and says so. Sets RUN_LOAD.
quiet_load() {
    RUN_LOAD=$(cut -d' ' -f1 /proc/loadavg)
    [ -n "${BENCH_QUIET_LOAD:-}" ] || return 0
    local waited=0 limit=${BENCH_QUIET_WAIT:-1200}
    while awk -v l="$RUN_LOAD" -v q="$BENCH_QUIET_LOAD" 'BEGIN { exit !(l >= q) }'; do
        if [ "$waited" -ge "$limit" ]; then
            echo "   load average still $RUN_LOAD after ${waited} s: measuring anyway" >&2
            return 0
        fi
        sleep 30
        waited=$((waited + 30))
        RUN_LOAD=$(cut -d' ' -f1 /proc/loadavg)
    done
}

# --- 1-3: pgbench, direct vs PgBouncer vs torpor, interleaved ------------------------------------
pgbench_cmd() { # port extra-args...
    local port=$1; shift
    PGPASSWORD=$PASS pgbench -h 127.0.0.1 -p "$port" -U $USER_NAME -n -c 8 -j 2 -T "$SECS" "$@" $USER_NAME
}
# pgbench -i on a torpor cluster's backend, once the first client has woken it.
pgbench_init() { # listen-port backend-port
    PGPASSWORD=$PASS psql -h 127.0.0.1 -p "$1" -U $USER_NAME -d $USER_NAME -qAtc 'select 1' >/dev/null
    PGPASSWORD=$PASS pgbench -h 127.0.0.1 -p "$2" -U $USER_NAME -i -q -s "$SCALE" $USER_NAME >/dev/null 2>&1
}

# PgBouncer as the postgres user, in front of the server torpor runs: like torpor, it reaches
# the server over its Unix socket in the data dir. extra: more [pgbouncer] lines (client_tls_*).
# Sets BPID; the caller waits for the port.
start_pgbouncer() { # dir name pool_mode port data-dir backend-port [extra]
    local bdir=$1 name=$2 mode=$3 port=$4 data=$5 backend=$6 extra=${7:-}
    mkdir -p "$bdir"
    # Written once: an instance started before may be reading it.
    [ -f "$bdir/users.txt" ] || printf '"%s" "%s"\n' $USER_NAME "$PASS" > "$bdir/users.txt"
    cat > "$bdir/$name.ini" <<EOF
[databases]
$USER_NAME = host=$data port=$backend dbname=$USER_NAME
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $bdir/users.txt
pool_mode = $mode
default_pool_size = 20
max_client_conn = 200
logfile = $bdir/$name.log
pidfile = $bdir/$name.pid
$extra
EOF
    chown -R postgres: "$bdir"
    chmod 600 "$bdir/users.txt"
    # setpriv execs pgbouncer (in the foreground, no -d): $! is pgbouncer's own pid.
    setpriv --reuid=postgres --regid=postgres --init-groups pgbouncer -q "$bdir/$name.ini" &
    BPID=$!
    pids+=("$BPID")
}

if want pgbench; then
    echo "== pgbench: direct, PgBouncer, forwarder, torpor (${LOAD_RUNS} x ${SECS}s each, scale $SCALE)"
    dir=$work/pgbench
    start_torpor "$dir" postgres '{ fsync = "off" }'
    PG_TORPOR=$TPID
    # The first client wakes the backend; the others then reach it directly.
    pgbench_init "$LISTEN" "$BACKEND"

    # PgBouncer 1.18 has no prepared statements in transaction pooling, so -M prepared runs go
    # through a second instance in session pooling.
    bdir=$dir/pgbouncer
    BOUNCER_TX=$(free_port); BOUNCER_SESSION=$(free_port)
    declare -A bouncer_pid
    for mode in transaction session; do
        port=$BOUNCER_TX; [ $mode = session ] && port=$BOUNCER_SESSION
        start_pgbouncer "$bdir" $mode $mode "$port" "$dir/pgdata" "$BACKEND"
        bouncer_pid[$mode]=$BPID
    done
    # The floor for any proxy hop: a forwarder that only copies bytes (bench/src/forward.rs).
    FORWARD=$(free_port)
    "$DRIVER" forward "127.0.0.1:$FORWARD" "$dir/pgdata/.s.PGSQL.$BACKEND" &
    PG_FORWARD=$!
    pids+=($PG_FORWARD)
    for port in $BOUNCER_TX $BOUNCER_SESSION $FORWARD; do
        wait_port "$port"
    done

    declare -A tps cpu
    RUN_LOADS=""
    for mode in select prepared tpcb; do
        case $mode in
            select) args=(-S); bouncer=transaction ;;
            prepared) args=(-S -M prepared); bouncer=session ;;
            tpcb) args=(); bouncer=transaction ;;
        esac
        for who in direct pgbouncer forwarder torpor; do tps[$mode,$who]=""; cpu[$mode,$who]=""; done
        for i in $(seq "$LOAD_RUNS"); do
            for who in direct pgbouncer forwarder torpor; do
                case $who in
                    direct) port=$BACKEND pid=- ;;
                    pgbouncer)
                        port=$BOUNCER_TX; [ $bouncer = session ] && port=$BOUNCER_SESSION
                        pid=${bouncer_pid[$bouncer]} ;;
                    forwarder) port=$FORWARD pid=$PG_FORWARD ;;
                    torpor) port=$LISTEN pid=$PG_TORPOR ;;
                esac
                load_run "$mode run $i $who" pgbench "$pid" pgbench_cmd "$port" "${args[@]}"
                [ "$RUN_TPS" = ERR ] || tps[$mode,$who]+="$RUN_TPS,"
                [ "$RUN_US" = - ] || cpu[$mode,$who]+="$RUN_US,"
            done
        done
    done
    note_cmd "PGPASSWORD=… pgbench -h 127.0.0.1 -p <direct|pgbouncer|torpor port> -U bench -n -c 8 -j 2 -T $SECS -S bench   (scale $SCALE, fsync=off; PgBouncer 1.18 pool_mode=transaction)"
    note_cmd "… the same with -S -M prepared   (PgBouncer in pool_mode=session: 1.18 cannot keep protocol-level prepared statements in transaction pooling)"
    note_cmd "… the same without -S (TPC-B-like read/write; PgBouncer pool_mode=transaction)"
    note_cmd "target/release/torpor-bench forward 127.0.0.1:<port> <data dir>/.s.PGSQL.<backend port>   (the byte-copying floor, run beside them)"
    for mode in select prepared tpcb; do
        case $mode in
            select) name=pgbench_select target=0.90 ;;
            prepared) name=pgbench_select_prepared target=0.85 ;;
            tpcb) name=pgbench_tpcb target=0.90 ;;
        esac
        if [ -z "${tps[$mode,torpor]}" ] || [ -z "${tps[$mode,direct]}" ]; then
            echo "$name not-measured - ratio=- (pgbench failed; see $dir)"
            echo "$name|-|-|-|0|-|-|-|-|≥ $target× direct|not measured|pgbench failed" >> "$BENCH_RESULTS"
            continue
        fi
        "$DRIVER" summarize "$name" tps "$target" "${tps[$mode,torpor]}" "${tps[$mode,direct]}" \
            "pgbouncer=${tps[$mode,pgbouncer]}" "forwarder=${tps[$mode,forwarder]}" \
            "cpu:torpor=${cpu[$mode,torpor]}" "cpu:pgbouncer=${cpu[$mode,pgbouncer]}" "cpu:forwarder=${cpu[$mode,forwarder]}" \
            "load=$RUN_LOADS"
    done
    for f in "$bdir"/*.pid; do [ -f "$f" ] && stop_pid "$(cat "$f")"; done
    stop_pid "$PG_TORPOR"
fi

# --- 4-8, 10: the driver starts its own torpor for each ----------------------------------------
driver() { # measure extra-args...
    local m=$1; shift
    echo "== $m"
    note_cmd "target/release/torpor-bench $m --torpor target/release/torpor --work <tmp> --runs $RUNS $*"
    "$DRIVER" "$m" --torpor "$TORPOR" --work "$work/$m" --runs "$RUNS" "$@" || true
}
want wake && driver pg-wake --runs $((RUNS > 5 ? RUNS : 5))
want idle && driver pg-idle --runs $((RUNS > 5 ? RUNS : 5))
want restore && driver pg-restore
want memory && driver pg-memory --conns "$CONNS"
want mass && driver pg-mass-wake --conns "$MASS"

# --- 9: sysbench oltp_read_only, direct vs torpor (MariaDB) ----------------------------------
# sysbench against a torpor MySQL cluster's database; the port and the command follow.
sb=(sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=$USER_NAME
    --mysql-password="$PASS" --mysql-db=my --tables=4 --table-size=10000)
# torpor with a MySQL cluster, woken by a client through torpor, and sysbench's tables made on
# its backend directly. Sets what start_torpor sets, and SB_ERR (empty when all went well);
# fails only when torpor did not start.
start_sysbench_torpor() { # dir settings
    local out
    SB_ERR=""
    if ! start_torpor "$1" mysql "$2"; then
        SB_ERR="torpor with a mysql cluster did not start"
        return 1
    fi
    if ! out=$(mariadb -h 127.0.0.1 -P "$LISTEN" -u $USER_NAME -p"$PASS" my -e 'select 1' 2>&1); then
        SB_ERR="connect through torpor: $out"
    elif ! out=$("${sb[@]}" --mysql-port="$BACKEND" prepare 2>&1); then
        SB_ERR="sysbench prepare: $(echo "$out" | tail -2)"
    fi
}

if want sysbench; then
    echo "== sysbench oltp_read_only: direct, forwarder, torpor (${LOAD_RUNS} x ${SECS}s each)"
    dir=$work/sysbench
    if start_sysbench_torpor "$dir" '{ innodb_flush_log_at_trx_commit = "0" }'; then
        MY_TORPOR=$TPID
        sb_err=$SB_ERR
        FORWARD=$(free_port)
        "$DRIVER" forward "127.0.0.1:$FORWARD" "$dir/mydata/mysqld.sock" &
        MY_FORWARD=$!
        pids+=($MY_FORWARD)
        direct=""; through=""; forwarded=""; cpu_torpor=""; cpu_forwarder=""; RUN_LOADS=""
        if [ -z "$sb_err" ]; then
            for i in $(seq "$LOAD_RUNS"); do
                for who in direct forwarder torpor; do
                    case $who in
                        direct) port=$BACKEND pid=- ;;
                        forwarder) port=$FORWARD pid=$MY_FORWARD ;;
                        torpor) port=$LISTEN pid=$MY_TORPOR ;;
                    esac
                    load_run "run $i $who" sysbench "$pid" "${sb[@]}" --mysql-port="$port" --threads=8 --time="$SECS" run
                    if [ "$RUN_TPS" = ERR ]; then
                        sb_err="sysbench run through $who failed"
                    else
                        case $who in
                            direct) direct+="$RUN_TPS," ;;
                            forwarder) forwarded+="$RUN_TPS,"; [ "$RUN_US" = - ] || cpu_forwarder+="$RUN_US," ;;
                            torpor) through+="$RUN_TPS,"; [ "$RUN_US" = - ] || cpu_torpor+="$RUN_US," ;;
                        esac
                    fi
                done
            done
        fi
        stop_pid "$MY_FORWARD"
        stop_pid "$MY_TORPOR"
    else
        sb_err=$SB_ERR
    fi
    note_cmd "target/release/torpor-bench forward 127.0.0.1:<port> <data dir>/mysqld.sock   (the byte-copying floor)"
    note_cmd "sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port=<direct|torpor> --mysql-user=bench --mysql-db=my --tables=4 --table-size=10000 --threads=8 --time=$SECS run"
    if [ -n "$through" ] && [ -n "$direct" ]; then
        "$DRIVER" summarize sysbench_oltp_read_only tps 0.85 "$through" "$direct" "forwarder=$forwarded" \
            "cpu:torpor=$cpu_torpor" "cpu:forwarder=$cpu_forwarder" "load=$RUN_LOADS"
        [ -z "$sb_err" ] || echo "   (some runs failed: $sb_err)"
    else
        sb_err=${sb_err:-no runs}
        echo "sysbench_oltp_read_only not-measured - ratio=- target=\"≥ 0.85× direct\" ($sb_err)"
        echo "sysbench_oltp_read_only|-|-|-|0|-|-|-|-|≥ 0.85× direct|not measured|$(echo "$sb_err" | tr '\n|' '  ' | cut -c1-300)" >> "$BENCH_RESULTS"
    fi
fi

want mywake && driver my-wake --runs $((RUNS > 5 ? RUNS : 5))
want docker && driver docker-wake --runs $((RUNS > 5 ? RUNS : 5))

# --- idle means idle: a pool that only probes, and probe answers while asleep -----------------
want idlepool && driver idle-pool --runs "$POOL_RUNS" --seconds "$POOL_SECONDS" --conns 20
want probe && driver probe --samples 2000

# --- the frozen tier (issue 13): first query after a freeze, CPU while frozen ---------------------
# Each measure prints two lines; the load average is printed since the machine is shared.
if want freeze; then
    for m in pg-thaw my-thaw; do
        echo "   1-min load before $m: $(cut -d' ' -f1-3 /proc/loadavg)"
        driver $m --runs $((RUNS > 5 ? RUNS : 5)) --samples "$THAW_SAMPLES" --seconds "$FROZEN_SECONDS"
    done
fi

# --- compare: torpor's CPU per transaction, one build against another -----------------------------
# Each build gets its own torpor and PostgreSQL cluster (pgbench -i at the same scale); the runs
# go to them in turn, base first, so drift on the machine falls on both alike.
if want compare; then
    read -r -a entries <<<"$BENCH_COMPARE"
    limit=${BENCH_COMPARE_LIMIT:-1.05}
    labels=()
    declare -A cmp_port cmp_pid cmp_tps cmp_cpu
    for e in "${entries[@]}"; do
        label=${e%%=*}; bin=${e#*=}
        if [ "$label" = "$e" ] || [ ! -x "$bin" ]; then
            echo "compare: \"$e\" is not LABEL=/path/to/an/executable/torpor" >&2
            exit 2
        fi
        start_torpor "$work/compare-$label" postgres '{ fsync = "off" }' "$bin"
        labels+=("$label"); cmp_port[$label]=$LISTEN; cmp_pid[$label]=$TPID
        pgbench_init "$LISTEN" "$BACKEND"
        echo "   $label: $bin (pid $TPID, $(sha256sum "$bin" | cut -c1-12))"
    done
    echo "== compare: torpor's CPU per transaction, ${labels[*]} (${LOAD_RUNS} x ${SECS}s each, interleaved, scale $SCALE)"
    for mode in ${BENCH_COMPARE_LOADS:-select prepared}; do
        case $mode in
            select) args=(-S) ;;
            prepared) args=(-S -M prepared) ;;
            tpcb) args=() ;;
            *) echo "compare: unknown load $mode (select, prepared, tpcb)" >&2; continue ;;
        esac
        # One unmeasured 2 s run each first: every server's cache and every torpor warm.
        for label in "${labels[@]}"; do
            PGPASSWORD=$PASS pgbench -h 127.0.0.1 -p "${cmp_port[$label]}" -U $USER_NAME -n -c 8 -j 2 -T 2 "${args[@]}" $USER_NAME >/dev/null 2>&1 || true
        done
        RUN_LOADS=""
        for label in "${labels[@]}"; do cmp_tps[$mode,$label]=""; cmp_cpu[$mode,$label]=""; done
        for i in $(seq "$LOAD_RUNS"); do
            for label in "${labels[@]}"; do
                load_run "$mode run $i $label" pgbench "${cmp_pid[$label]}" pgbench_cmd "${cmp_port[$label]}" "${args[@]}"
                [ "$RUN_TPS" = ERR ] || cmp_tps[$mode,$label]+="$RUN_TPS,"
                [ "$RUN_US" = - ] || cmp_cpu[$mode,$label]+="$RUN_US,"
            done
        done
        base=${labels[0]}
        for label in "${labels[@]:1}"; do
            "$DRIVER" compare "pgbench_${mode}_cpu" µs/tx "$limit" \
                "$base=${cmp_cpu[$mode,$base]}" "$label=${cmp_cpu[$mode,$label]}" \
                "tps:$base=${cmp_tps[$mode,$base]}" "tps:$label=${cmp_tps[$mode,$label]}" "load=$RUN_LOADS" || true
        done
    done
    for label in "${labels[@]}"; do stop_pid "${cmp_pid[$label]}"; done
    note_cmd "BENCH_COMPARE=\"$BENCH_COMPARE\" scripts/bench.sh compare   (each build its own torpor + PostgreSQL, pgbench -i -s $SCALE; then pgbench -h 127.0.0.1 -p <torpor port> -U bench -n -c 8 -j 2 -T $SECS -S [-M prepared] bench, $LOAD_RUNS runs per build, interleaved; torpor's utime+stime from /proc/<pid>/stat ÷ transactions)"
fi

# --- tls: pgbench -S over TLS, direct vs PgBouncer vs torpor, and the handshake in a wake ---------
# Client TLS only: torpor and PgBouncer reach the server over its Unix socket, as in pgbench.
# The same run also measures the three without TLS, so the cost of TLS per hop is read from
# one run.
if want tls; then
    echo "== tls: pgbench -S with sslmode=require and plaintext: direct, PgBouncer, torpor (${LOAD_RUNS} x ${SECS}s each, scale $SCALE)"
    dir=$work/tls
    mkdir -p "$dir"
    chmod 755 "$dir"
    # One certificate for the three servers: ECDSA P-256, like torpor's own self-signed one.
    # postgres and PgBouncer (both the postgres user) want their key owned by them, mode 0600.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/server.key" -out "$dir/server.crt" 2>/dev/null
    chown postgres: "$dir/server.key" "$dir/server.crt"
    chmod 600 "$dir/server.key"
    start_torpor "$dir" postgres \
        "{ fsync = \"off\", ssl = \"on\", ssl_cert_file = \"$dir/server.crt\", ssl_key_file = \"$dir/server.key\" }" \
        "$TORPOR" "$(printf '[tls]\ncert = "%s"\nkey = "%s"' "$dir/server.crt" "$dir/server.key")"
    TLS_TORPOR=$TPID
    pgbench_init "$LISTEN" "$BACKEND"
    # Two PgBouncers in transaction pooling, as for plaintext pgbench -S: one requiring TLS from
    # its clients, one without.
    TLS_BOUNCER=$(free_port); PLAIN_BOUNCER=$(free_port)
    start_pgbouncer "$dir/pgbouncer" tls transaction "$TLS_BOUNCER" "$dir/pgdata" "$BACKEND" \
        "$(printf 'client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s' "$dir/server.crt" "$dir/server.key")"
    TLS_BOUNCER_PID=$BPID
    start_pgbouncer "$dir/pgbouncer" plain transaction "$PLAIN_BOUNCER" "$dir/pgdata" "$BACKEND"
    PLAIN_BOUNCER_PID=$BPID
    for port in $TLS_BOUNCER $PLAIN_BOUNCER; do
        wait_port "$port"
    done
    # What each server negotiates (sslmode=require fails rather than fall back to plaintext).
    for port in $BACKEND $TLS_BOUNCER $LISTEN; do
        echo "   port $port: $(PGSSLMODE=require PGPASSWORD=$PASS psql -h 127.0.0.1 -p "$port" -U $USER_NAME -d $USER_NAME -c '\conninfo' 2>&1 | grep -o 'SSL connection.*' || echo 'no TLS')"
    done

    declare -A tls_tps tls_cpu
    all_who="direct_tls pgbouncer_tls torpor_tls direct pgbouncer torpor"
    for who in $all_who; do tls_tps[$who]=""; tls_cpu[$who]=""; done
    RUN_LOADS=""
    for i in $(seq "$LOAD_RUNS"); do
        for who in $all_who; do
            case $who in
                direct*) port=$BACKEND pid=- ;;
                pgbouncer_tls) port=$TLS_BOUNCER pid=$TLS_BOUNCER_PID ;;
                pgbouncer) port=$PLAIN_BOUNCER pid=$PLAIN_BOUNCER_PID ;;
                torpor*) port=$LISTEN pid=$TLS_TORPOR ;;
            esac
            # Explicit both ways: libpq's default (prefer) would take TLS from this server.
            if [[ $who == *_tls ]]; then export PGSSLMODE=require; else export PGSSLMODE=disable; fi
            load_run "run $i $who" pgbench "$pid" pgbench_cmd "$port" -S
            [ "$RUN_TPS" = ERR ] || tls_tps[$who]+="$RUN_TPS,"
            [ "$RUN_US" = - ] || tls_cpu[$who]+="$RUN_US,"
        done
    done
    unset PGSSLMODE
    note_cmd "PGSSLMODE=require|disable PGPASSWORD=… pgbench -h 127.0.0.1 -p <direct|pgbouncer|torpor port> -U bench -n -c 8 -j 2 -T $SECS -S bench   (tls group: postgres ssl=on, PgBouncer 1.18 client_tls_sslmode=require in pool_mode=transaction, torpor [tls]; one ECDSA P-256 certificate)"
    if [ -z "${tls_tps[torpor_tls]}" ] || [ -z "${tls_tps[direct_tls]}" ] || [ -z "${tls_tps[pgbouncer_tls]}" ]; then
        echo "pgbench_select_tls not-measured - ratio=- (pgbench failed; see $dir)"
        echo "pgbench_select_tls|-|-|-|0|-|-|-|-|≥ 1.00× pgbouncer|not measured|pgbench failed" >> "$BENCH_RESULTS"
    else
        cpu_tls=("cpu:torpor=${tls_cpu[torpor_tls]}" "cpu:pgbouncer=${tls_cpu[pgbouncer_tls]}")
        "$DRIVER" summarize pgbench_select_tls tps 0.90 "${tls_tps[torpor_tls]}" "${tls_tps[direct_tls]}" \
            "pgbouncer=${tls_tps[pgbouncer_tls]}" "${cpu_tls[@]}" "load=$RUN_LOADS" || true
        # The issue's target: torpor at least PgBouncer's throughput over TLS.
        "$DRIVER" summarize pgbench_select_tls_vs_pgbouncer tps 1.00 "${tls_tps[torpor_tls]}" \
            "pgbouncer=${tls_tps[pgbouncer_tls]}" "${cpu_tls[@]}" "load=$RUN_LOADS" || true
        # The same servers without TLS, in the same runs.
        "$DRIVER" summarize pgbench_select_plain_beside_tls tps 0.90 "${tls_tps[torpor]}" "${tls_tps[direct]}" \
            "pgbouncer=${tls_tps[pgbouncer]}" "cpu:torpor=${tls_cpu[torpor]}" "cpu:pgbouncer=${tls_cpu[pgbouncer]}" \
            "load=$RUN_LOADS" || true
    fi
    # Anything torpor logged (TORPOR_LOG=warn) while serving TLS under load, beyond the lines
    # it prints at start ("torpor: cluster … ready at …").
    echo "   torpor.log: $(grep -vc '^torpor: ' "$dir/torpor.log" || true) lines at warn or above"
    grep -v '^torpor: ' "$dir/torpor.log" | tail -5 | cut -c1-300 | sed 's/^/      /' || true
    for p in $TLS_BOUNCER_PID $PLAIN_BOUNCER_PID $TLS_TORPOR; do stop_pid "$p"; done
    driver pg-tls-wake --runs $((RUNS > 5 ? RUNS : 5))
fi

# --- pool: more client sessions than the server has connections ---------------------------------
# Session-preserving pooling: when a session needs a backend connection and none is free,
# torpor parks the session quiet the longest and hands its connection over. The servers get
# max_connections through the process driver's settings; torpor runs with its default cap (the
# server's max_connections less its reserved slots). PgBouncer, in transaction pooling, gets as
# many server connections as that cap.

# Client connections a server holds besides the asker's own; "?" when it refuses the asker.
backend_conns() { # postgres|mysql port
    if [ "$1" = postgres ]; then
        PGPASSWORD=$PASS psql -h 127.0.0.1 -p "$2" -U $USER_NAME -d $USER_NAME -qAtc \
            "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()" \
            2>/dev/null || echo "?"
    else
        mariadb -h 127.0.0.1 -P "$2" -u $USER_NAME -p"$PASS" -N -e \
            "select count(*) from information_schema.processlist where command <> 'Daemon' and id <> connection_id()" \
            2>/dev/null || echo "?"
    fi
}
# Waits, at most 30 s, until the server holds at most one other client connection: the server
# connections one proxy keeps must not take the slots the next one is measured with.
backend_settle() { # postgres|mysql port
    local n="?" i
    for i in $(seq 150); do
        n=$(backend_conns "$1" "$2")
        if [ "$n" != "?" ] && [ "$n" -le 1 ]; then
            [ "$i" -le 25 ] || echo "   (the server on port $2 took $((i / 5)) s to let go of the connections)"
            return 0
        fi
        sleep 0.2
    done
    echo "   (the server on port $2 still had $n other connections after 30 s)"
}
# The stateful clients (bench/src/pool.rs) against one address: a result row, and a row of the
# group's own table in $BENCH_POOL_TABLE.
pool_clients() { # label row-name postgres|mysql port db seconds about
    "$DRIVER" pool-clients --label "$1" --name "$2" --proto "$3" --addr "127.0.0.1:$4" --db "$5" \
        --seconds "$6" --about "$7" --clients "$POOLING_CLIENTS" --ramp "$POOLING_RAMP" || true
}
not_measured() { # name target reason
    echo "$1 not-measured - ratio=- target=\"$2\" ($3)"
    echo "$1|-|-|-|0|-|-|-|-|$2|not measured|$(echo "$3" | tr '\n|' '  ' | cut -c1-300)" >> "$BENCH_RESULTS"
}
# The median of comma-separated numbers, or "-".
median_of() { # values
    tr ',' '\n' <<<"$1" | { grep . || true; } | sort -g | awk '{ v[NR] = $1 } END {
        if (!NR) { print "-"; exit }
        print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
# A number rounded to a whole one; anything else as it is.
whole() { # value
    awk -v v="$1" 'BEGIN { if (v ~ /^[0-9.]+$/) printf "%.0f\n", v; else print v }'
}
sum_of() { # values
    tr ',' '\n' <<<"$1" | awk 'NF { s += $1 } END { print s + 0 }'
}
# A row of the group's throughput table from one proxy's runs.
pool_load_row() { # load who tps-values errors-values cpu-values [runs, default LOAD_RUNS]
    local n
    n=$(tr ',' '\n' <<<"$3" | grep -c . || true)
    pool_loads+=("$1|$2|$n of ${6:-$LOAD_RUNS}|$(whole "$(median_of "$3")")|$(sum_of "$4")|$(median_of "$5")")
}

if want pool; then
    echo "== pool: $POOLING_CLIENTS stateful clients ($POOLING_SECONDS s), then $POOLING_THREADS-client load (${LOAD_RUNS} x ${SECS}s), against max_connections $POOLING_MAX_CONN"
    export BENCH_POOL_TABLE=$work/pool-table
    : > "$BENCH_POOL_TABLE"
    pool_loads=()
    # Room for every client of the load or of the stateful run: PgBouncer must refuse none.
    pool_max_clients=$(( (POOLING_CLIENTS > POOLING_THREADS ? POOLING_CLIENTS : POOLING_THREADS) + 100 ))
    echo "   open file limit: $(ulimit -n) (raised for the clients, torpor, PgBouncer and the servers)"

    # -- PostgreSQL: torpor, PgBouncer (transaction pooling), direct ------------------------------
    dir=$work/pool-pg
    start_torpor "$dir" postgres "{ fsync = \"off\", max_connections = \"$POOLING_MAX_CONN\" }"
    POOL_TORPOR=$TPID
    pgbench_init "$LISTEN" "$BACKEND"
    reserved=$(PGPASSWORD=$PASS psql -h 127.0.0.1 -p "$BACKEND" -U $USER_NAME -d $USER_NAME -qAtc 'show superuser_reserved_connections')
    cap=$((POOLING_MAX_CONN - reserved))
    echo "   PostgreSQL max_connections $POOLING_MAX_CONN, superuser_reserved_connections $reserved: torpor's default cap and PgBouncer's default_pool_size are $cap"
    # These lines come after start_pgbouncer's own and override them.
    bouncer_pool=$(printf 'default_pool_size = %s\nmax_client_conn = %s' "$cap" "$pool_max_clients")
    about="PostgreSQL max_connections $POOLING_MAX_CONN"

    pool_clients "pg torpor" pg_pooled_sessions_p99 postgres "$LISTEN" $USER_NAME "$POOLING_SECONDS" \
        "$about, through torpor (default cap)"
    backend_settle postgres "$BACKEND"
    BOUNCER=$(free_port)
    start_pgbouncer "$dir/pgbouncer" state transaction "$BOUNCER" "$dir/pgdata" "$BACKEND" "$bouncer_pool"
    wait_port "$BOUNCER"
    pool_clients "pg pgbouncer" pg_pooled_sessions_p99_pgbouncer postgres "$BOUNCER" $USER_NAME "$POOLING_SECONDS" \
        "$about, through PgBouncer pool_mode=transaction, default_pool_size $cap"
    stop_pid "$BPID"
    backend_settle postgres "$BACKEND"
    # Direct: the clients only connect and take their state; the server refuses the rest.
    pool_clients "pg direct" pg_pooled_sessions_direct postgres "$BACKEND" $USER_NAME 0 "$about, direct connections"
    backend_settle postgres "$BACKEND"

    # pgbench -S through PgBouncer and torpor, interleaved. This PgBouncer drops a server
    # connection idle for 1 s, so between runs its pool leaves the slots to torpor.
    BOUNCER=$(free_port)
    start_pgbouncer "$dir/pgbouncer" pgbench transaction "$BOUNCER" "$dir/pgdata" "$BACKEND" \
        "$(printf '%s\nserver_idle_timeout = 1' "$bouncer_pool")"
    POOL_BOUNCER=$BPID
    wait_port "$BOUNCER"
    declare -A pool_tps pool_cpu pool_err
    for who in pgbouncer torpor; do pool_tps[$who]=""; pool_cpu[$who]=""; pool_err[$who]=""; done
    RUN_LOADS=""
    for i in $(seq "$LOAD_RUNS"); do
        for who in pgbouncer torpor; do
            case $who in
                pgbouncer) port=$BOUNCER pid=$POOL_BOUNCER ;;
                torpor) port=$LISTEN pid=$POOL_TORPOR ;;
            esac
            backend_settle postgres "$BACKEND"
            load_run "run $i $who" pgbench "$pid" pgbench_cmd "$port" -S -c "$POOLING_THREADS"
            [ "$RUN_TPS" = ERR ] || pool_tps[$who]+="$RUN_TPS,"
            [ "$RUN_US" = - ] || pool_cpu[$who]+="$RUN_US,"
            pool_err[$who]+="$RUN_ERRORS,"
        done
    done
    name=pgbench_select_c${POOLING_THREADS}_pooled
    if [ -z "${pool_tps[torpor]}" ] || [ -z "${pool_tps[pgbouncer]}" ]; then
        not_measured "$name" "≥ 1.00× pgbouncer, 0 errors" \
            "pgbench failed (errors torpor ${pool_err[torpor]} pgbouncer ${pool_err[pgbouncer]}); see the lines above"
    else
        "$DRIVER" summarize "$name" tps 1.00 "${pool_tps[torpor]}" "pgbouncer=${pool_tps[pgbouncer]}" \
            "cpu:torpor=${pool_cpu[torpor]}" "cpu:pgbouncer=${pool_cpu[pgbouncer]}" \
            "errors:torpor=${pool_err[torpor]}" "errors:pgbouncer=${pool_err[pgbouncer]}" "load=$RUN_LOADS" || true
    fi
    for who in pgbouncer torpor; do
        pool_load_row "pgbench -S -c $POOLING_THREADS" "$who" "${pool_tps[$who]}" "${pool_err[$who]}" "${pool_cpu[$who]}"
    done
    stop_pid "$POOL_BOUNCER"
    stop_pid "$POOL_TORPOR"
    note_cmd "pool group: torpor with a PostgreSQL cluster, settings { fsync = \"off\", max_connections = \"$POOLING_MAX_CONN\" }, no max_backend_connections (the default cap); PgBouncer 1.18 pool_mode=transaction, default_pool_size $cap, max_client_conn $pool_max_clients, in front of the same server"
    note_cmd "target/release/torpor-bench pool-clients --proto postgres --addr 127.0.0.1:<torpor|pgbouncer|server port> --db bench --clients $POOLING_CLIENTS --ramp $POOLING_RAMP --seconds $POOLING_SECONDS (0 for the server: connect and state only) --name <row> --label <who>"
    note_cmd "PGPASSWORD=… pgbench -h 127.0.0.1 -p <pgbouncer|torpor port> -U bench -n -c $POOLING_THREADS -j 2 -T $SECS -S bench   (scale $SCALE; this PgBouncer also server_idle_timeout = 1)"

    # -- MariaDB: torpor, direct ------------------------------------------------------------------
    dir=$work/pool-my
    about="MariaDB max_connections $POOLING_MAX_CONN"
    name=sysbench_oltp_read_only_t${POOLING_THREADS}_pooled
    if start_sysbench_torpor "$dir" "{ innodb_flush_log_at_trx_commit = \"0\", max_connections = \"$POOLING_MAX_CONN\" }"; then
        POOL_TORPOR=$TPID
        pool_clients "my torpor" my_pooled_sessions_p99 mysql "$LISTEN" my "$POOLING_SECONDS" \
            "$about, through torpor (default cap)"
        backend_settle mysql "$BACKEND"
        pool_clients "my direct" my_pooled_sessions_direct mysql "$BACKEND" my 0 "$about, direct connections"
        backend_settle mysql "$BACKEND"
        if [ -n "$SB_ERR" ]; then
            not_measured "$name" "0 errors" "$SB_ERR"
        else
            # One short run straight to the server: what it says to that many clients.
            load_run "direct, once" sysbench - "${sb[@]}" --mysql-port="$BACKEND" \
                --threads="$POOLING_THREADS" --time=2 run
            pool_load_row "sysbench -t $POOLING_THREADS" direct "${RUN_TPS/ERR/}" "$RUN_ERRORS" "" 1
            backend_settle mysql "$BACKEND"
            tps=""; cpu=""; errs=""; RUN_LOADS=""
            for i in $(seq "$LOAD_RUNS"); do
                backend_settle mysql "$BACKEND"
                load_run "run $i torpor" sysbench "$POOL_TORPOR" "${sb[@]}" --mysql-port="$LISTEN" \
                    --threads="$POOLING_THREADS" --time="$SECS" run
                [ "$RUN_TPS" = ERR ] || tps+="$RUN_TPS,"
                [ "$RUN_US" = - ] || cpu+="$RUN_US,"
                errs+="$RUN_ERRORS,"
            done
            if [ -z "$tps" ]; then
                not_measured "$name" "0 errors" "sysbench failed through torpor (errors $errs); see the lines above"
            else
                "$DRIVER" summarize "$name" tps 1.00 "$tps" none "cpu:torpor=$cpu" "errors:torpor=$errs" \
                    "load=$RUN_LOADS" || true
            fi
            pool_load_row "sysbench -t $POOLING_THREADS" torpor "$tps" "$errs" "$cpu"
        fi
        stop_pid "$POOL_TORPOR"
    else
        for n in my_pooled_sessions_p99 my_pooled_sessions_direct "$name"; do not_measured "$n" "0 errors" "$SB_ERR"; done
    fi
    note_cmd "target/release/torpor-bench pool-clients --proto mysql --addr 127.0.0.1:<torpor|server port> --db my …   (as above; MariaDB settings { innodb_flush_log_at_trx_commit = \"0\", max_connections = \"$POOLING_MAX_CONN\" })"
    note_cmd "sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port=<torpor> --mysql-user=bench --mysql-db=my --tables=4 --table-size=10000 --threads=$POOLING_THREADS --time=$SECS run"

    echo "   stateful clients: $POOLING_CLIENTS each, checks every 5-15 s for $POOLING_SECONDS s (direct: connect and state only)"
    { echo "who|clients|connected|checks|p50 ms|p99 ms|errors|mismatches"; cat "$BENCH_POOL_TABLE"; } |
        column -t -s'|' | sed 's/^/      /'
    echo "   load, $POOLING_THREADS clients:"
    { echo "load|who|runs with a figure|median tps|errors|median µs/tx"; printf '%s\n' "${pool_loads[@]}"; } |
        column -t -s'|' | sed 's/^/      /'
fi

# --- BENCHMARKS.md -----------------------------------------------------------------------------
elapsed=$(( $(date +%s) - started ))
{
    echo "# Benchmarks"
    echo
    echo "Written by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in ${elapsed} s."
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
    echo "- PostgreSQL $(pgbench --version | awk '{print $3}'), PgBouncer $(pgbouncer --version | awk 'NR==1 {print $2}'), MariaDB $(mariadbd --version 2>/dev/null | awk '{print $3}' || true), sysbench $(sysbench --version | awk '{print $2}')"
    echo "- runs per configuration: $RUNS (load runs: $LOAD_RUNS; wake and idle measures: at least 5; idle pool: $POOL_RUNS window(s) of ${POOL_SECONDS} s), ${SECS} s per load run; ratios compare runs of this invocation, load runs interleaved (direct, PgBouncer, forwarder, torpor, direct, …)"
    echo "- CPU µs/tx: each proxy process's utime + stime (/proc/<pid>/stat, $HZ ticks/s) over a load run ÷ the transactions pgbench or sysbench reported; median (min–max) over the load runs"
    echo "- the machine is shared and noisy: read ratios and CPU per transaction, not absolute throughput"
    echo
    echo "| measure | median | min | max | runs | unit | ratio | CPU µs/tx | compared with | target | result | note |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'|' '{ printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; print "" }' "$BENCH_RESULTS"
    echo
    # Runs of single groups and what they showed, kept by hand (after its comment line).
    if [ -f "$repo/bench/RUNS.md" ]; then
        tail -n +3 "$repo/bench/RUNS.md"
        echo
    fi
    echo "## How each measure is taken"
    echo
    cat <<'EOF'
- **pgbench_select, pgbench_select_prepared, pgbench_tpcb** (1-3): one torpor with one PostgreSQL cluster (fsync=off); pgbench runs over TCP against
  the backend port (direct), PgBouncer, a forwarder, and torpor's port, in turn. The forwarder
  (`torpor-bench forward`, tokio `copy_bidirectional`) only copies bytes: it is the floor for any
  proxy hop on this machine. torpor, PgBouncer and the forwarder all reach the server over its
  Unix socket. The ratio is median(torpor) ÷ median(direct); the peers' ratios are in the note.
  **CPU µs/tx**: before and after each run the script reads utime + stime (fields 14 and 15 of
  `/proc/<pid>/stat`, all threads) of the process the run goes through — torpor, the PgBouncer
  instance in use, or the forwarder — and divides the difference by the transactions pgbench
  reports ("number of transactions actually processed"), connection setup included. It is far
  steadier than tps on a shared machine. The column gives each proxy's median (min–max) over
  the load runs and torpor's median over each peer's.
- **pg_cold_wake** (4): one session holds 10 protocol-level prepared statements, 5 settings and a
  1,000-row temp table. Each run: forced sleep (admin API) until the postmaster pid is gone; then
  a bare `postgres` on the same data dir (same flags as the process driver) is started, polled
  with a connection every 1 ms, asked `SELECT 1`, and stopped; then the session's `SELECT 1`
  through torpor is timed (wake + connect + snapshot load + replay + query). The state is checked
  after the last run.
- **pg_thaw_first_query, my_thaw_first_query** (frozen tier, issue 13): one torpor whose first cluster has
  `freeze_after = "200ms"` and `idle_timeout = "1h"`; one session with the cold wake's
  state. Each sample waits until `/api/clusters` says `frozen` (and `backend.frozen`) and the
  server's cgroup.events says `frozen 1`, then times the session's `SELECT 2` (`SELECT 1` is a
  probe torpor answers itself); each sample must be exactly one thaw (`torpor_thaws_total`) of
  the same server pid. Spread over the samples, in the same run: forced sleep, a bare server
  start → first query on the same data dir (as pg_cold_wake / my_cold_wake), and the cold wake
  of the same session through torpor. Value = p50 of the samples; ratio = thaw p50 ÷ bare
  start p50. The state is checked at the end.
- **pg_frozen_cpu, my_frozen_cpu**: the same torpor has a second cluster of the same kind
  (`freeze_after = "50m"`, so it has a cgroup but stays up) with a session holding the same
  state. Over each window of BENCH_FROZEN_SECONDS, utime + stime (/proc/<pid>/stat fields 14-15)
  summed over every pid in each cgroup's cgroup.procs, each cgroup's cpu.stat `usage_usec`
  (exact) and how often any of their threads was put on a CPU (/proc/<pid>/task/*/schedstat),
  at the start and the end; each window starts 1 s after `frozen 1` (µs were once counted just
  after it; that second is shown apart) and counts only
  if `torpor_thaws_total` did not move, the kernel still says `frozen 1` and the processes are
  the same. Value = ticks used by the frozen backend per window (target 0, cpu.stat too); the
  idle, not frozen backend over the same window is the contrast. After each window the first
  query is timed too.
- **pg_idle_to_stop** (5): 100 connected sessions, idle_timeout 200 ms. All 100 run `SELECT 1`;
  the time runs from the last answer until /proc/<postmaster pid> is gone (polled every 1 ms).
  The next run's queries wake the cluster again. **pg_idle_to_stop_stateful**: the same, but
  each session first sets application_name (new each run) and work_mem and prepares a
  statement, so every stop has state to capture and store (by the early snapshot, ahead of the
  drain); the state is checked afterwards.
- **pg_temp_restore** (6): one session holds a 1,000,000-row temp table (int, text, float8), a
  second session holds nothing. Each run: sleep, wake the backend through the admin API, time the
  empty session's first query, then the big session's first query; restore time = the
  difference (both pay connect + auth + snapshot load, only one pays the rows). Baseline: the same
  rows as `COPY … FROM STDIN (FORMAT binary)` into a fresh temp table over a direct connection,
  in the same run. Value = rows/s of the restore; ratio = restore rate ÷ raw COPY rate.
- **pg_parked_conn_memory** (7): a fresh torpor per run; one session wakes the cluster (so torpor
  knows the server's ParameterStatus values), the cluster is put to sleep, VmRSS of torpor is
  read, then the clients connect (SCRAM, 32 at a time) and are greeted without waking the
  database; VmRSS is read again. Value = growth ÷ connections. ulimit -n is 65536.
- **pg_mass_wake_p99** (8): the sessions connect while the cluster sleeps; each run, all of them
  send `SELECT 2` at once (a barrier; `SELECT 1` is a probe torpor answers asleep) and each latency is recorded; between runs a forced sleep
  parks them all again. Value = p99 of each run. Baseline in the same invocation: 1,000 direct
  connections to the running server opened at once, each running one query (PostgreSQL's own
  fork and login cost). **pg_mass_wake_p99_stateful**: 1,000 sessions that each hold two
  settings and a prepared statement, so every wake loads and replays a snapshot.
- **sysbench_oltp_read_only** (9): sysbench prepare on the backend directly (4 tables × 10,000
  rows), then runs over TCP against the backend, the forwarder and torpor in turn (the
  forwarder and torpor reach mariadbd over its Unix socket). CPU µs/tx as for pgbench, with the
  transactions sysbench reports.
- **pgbench_select_cpu_*, pgbench_prepared_cpu_*** (`compare`, only when asked for, with
  `BENCH_COMPARE="before=<torpor> after=<torpor>"`): two torpor builds, each with its own
  PostgreSQL cluster initialised by `pgbench -i` at the same scale, one unmeasured 2 s run each,
  then `pgbench -S` (and `-S -M prepared`) runs against them in turn, base first. Value =
  torpor's CPU µs/tx; ratio = the other build's median ÷ the base's; target ≤
  BENCH_COMPARE_LIMIT (1.05) × the base.
- **my_cold_wake** (10): as pg_cold_wake, with mysql_async: 10 COM_STMT_PREPARE statements, 5
  session variables, a 1,000-row TEMPORARY table; baseline is a bare `mariadbd` with the process
  driver's flags on the same data dir.
- **pg_pool_asleep_fraction, my_pool_asleep_fraction** (idle means idle): one torpor with a
  PostgreSQL and a MariaDB cluster (like examples/torpor.toml), idle_timeout 5 s. First a
  connection through torpor makes a table in each (so each server has run once and torpor has
  learned its settings catalog), then both are put to sleep and each app's pool opens 20
  connections the way its driver does: PostgreSQL `SET extra_float_digits = 3`, `SET
  application_name = 'PostgreSQL JDBC Driver'` and the empty query (pgjdbc, isValid); MariaDB
  `SET NAMES utf8mb4`, `SET autocommit = 0` and COM_PING (PyMySQL). Then, for 3 minutes, both
  apps at once: each pooled connection sends a probe every 2-3 s (random; PostgreSQL `SELECT 1`
  or the empty query, MariaDB COM_PING or `SELECT 1`), every 20 s one connection is closed and
  replaced by a new one opened as above, and once a minute one pooled connection runs a real
  query (`SELECT count(*)` and an `INSERT`, plus `COMMIT` on MariaDB). The phases of the
  reconnects and the real queries are drawn at random per cluster and run (the real query's in
  5-50 s, so its awake time ends inside the window). Every 50 ms the sampler reads each
  cluster's `backend_pid` from `GET /api/clusters` and its pid file and checks /proc/<pid>.
  Value = share of the window no backend process existed; wakes are `torpor_wakes_total`
  during the window; client errors count every failed probe, connect, close or query.
- **pg_pooled_sessions_p99, my_pooled_sessions_p99** (`pool`, only when asked for): more
  client sessions than the server has connections. The server has `max_connections = 50`
  (BENCH_POOLING_MAX_CONNECTIONS, a `[cluster.backend] settings` entry); torpor has no
  `max_backend_connections`, so its cap is the server's max_connections less its reserved slots.
  `torpor-bench pool-clients` opens 1,000 connections (BENCH_POOLING_CLIENTS) over 5 s; client
  i runs `SET application_name = 'c<i>'` (MariaDB: `SET @v = <i>`) and `PREPARE q AS SELECT
  $1::int + <i>` (MariaDB: `PREPARE q FROM 'SELECT ? + <i>'`), and one client in ten makes a
  temp table `t<i>` of 100 rows. Once all have, for 60 s (BENCH_POOLING_SECONDS) each client
  sleeps 5-15 s at random and runs one of its checks at random: `SHOW application_name` (`SELECT
  @v`), `EXECUTE q(1)` (`EXECUTE q USING 1`) = 1 + i, `SELECT count(*) FROM t<i>` = 100. A wrong
  answer, or an error that says the state is gone or another session's is there (SQLSTATE
  26000, 42P01, 42P05; MariaDB 1243, 1146), is a mismatch; any other failure, a refused
  connection included, is an error. Value = p99 of the checks' latency; target 0 errors and
  0 mismatches. **pg_pooled_sessions_p99_pgbouncer**: the same clients through PgBouncer 1.18
  in `pool_mode = transaction` in front of the same server, `default_pool_size` = torpor's cap,
  which keeps no session state (it tracks `application_name` itself). **…_direct**: the same
  clients straight to the server, connect and state only: the server's refusals.
- **pgbench_select_c200_pooled, sysbench_oltp_read_only_t200_pooled** (`pool`): `pgbench -S -c
  200 -j 2` through PgBouncer (as above, and `server_idle_timeout = 1`) and torpor, interleaved;
  `sysbench oltp_read_only --threads=200` through torpor on a MariaDB with max_connections 50
  (one 2 s run straight to the server shows its refusals). Before each run the script waits
  until the server holds at most one other client connection, so one proxy's idle server
  connections don't take the slots of the next. Errors: pgbench's failed transactions plus the
  clients it aborted or could not connect (pgbench stops a thread at its first failed connect);
  sysbench's ignored errors plus each thread whose init or run failed; a run with no figure
  counts as at least one. CPU µs/tx as for pgbench.
- **pg_probe_asleep_p50, my_probe_asleep_p50** (idle means idle): one torpor with both
  clusters; a session through torpor wakes each once (the settings catalog is learned), then
  the cluster sleeps and the parked session sends `SELECT 1` (tokio-postgres `simple_query`,
  mysql_async `query_drop`), answered by torpor. Baseline: the same client code sending
  `SELECT 1` over a direct TCP connection to the running server. 2,000 sequential round trips
  each per run, in 4 alternating blocks of 500 (asleep, direct, direct, asleep, …) with 20
  unmeasured ones before each block; the cluster is slept before each asleep block and woken
  through the admin API before each direct one. Value = p50 of each run; p99 in the note;
  wakes during the asleep blocks must be 0.
EOF
    echo
    echo "## Commands"
    echo
    echo '```'
    echo "scripts/bench.sh   # BENCH_RUNS=$RUNS BENCH_SECONDS=$SECS BENCH_SCALE=$SCALE BENCH_CONNS=$CONNS BENCH_MASS=$MASS BENCH_POOL_RUNS=$POOL_RUNS BENCH_POOL_SECONDS=$POOL_SECONDS"
    for c in "${commands[@]}"; do echo "$c"; done
    echo '```'
    # Why the missed targets are missed, kept by hand beside the driver.
    if [ -f "$repo/bench/PROFILE.md" ]; then
        echo
        cat "$repo/bench/PROFILE.md"
    fi
} > "$repo/BENCHMARKS.md.new"
if [ "$groups" = "$all_groups" ]; then
    mv "$repo/BENCHMARKS.md.new" "$repo/BENCHMARKS.md"
    echo "wrote BENCHMARKS.md (${elapsed} s)"
else
    # A partial run must not overwrite the full table.
    mv "$repo/BENCHMARKS.md.new" "$work/BENCHMARKS.partial.md"
    sed -n '/^| measure | median/,/^$/p' "$work/BENCHMARKS.partial.md"
    echo "partial run (${elapsed} s): BENCHMARKS.md left as it was"
fi
