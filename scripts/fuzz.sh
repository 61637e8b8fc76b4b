#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ (cargo-fuzz layout, libFuzzer) and runs each in turn.
#
#   scripts/fuzz.sh short [TARGET...]   each target for 30 s (FUZZ_SECONDS); scripts/test.sh runs it
#   scripts/fuzz.sh long [TARGET...]    each target to 10 million executions (FUZZ_RUNS), or
#                                       for at most FUZZ_MAX_SECONDS when that is set
#   scripts/fuzz.sh build               build only
#
# A crash (a panic, a failed check), an input that runs over 1 s (-timeout=1; FUZZ_TIMEOUT
# seconds when set: the timeout is wall-clock time, which a loaded machine stretches) or one
# that needs over 2 GiB fails the script; libFuzzer leaves the input in fuzz/artifacts/<target>/. Per target
# it prints the executions, executions per second, and the slowest input of the run: its CPU time
# as the target measured it, its time run again alone (best of 10, whole ms), its size, and a
# copy under fuzz/target/slowest/. The corpus grows in fuzz/target/corpus/<target>/, which starts
# from the seeds in fuzz/corpus/<target>/ (those are never written).
#
# Built without a sanitizer: the crates under test have no unsafe code, so AddressSanitizer
# would only slow the runs; debug assertions and overflow checks are on.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-short}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pg_messages scram mysql_packets sql_scan envelope)
case $mode in
short) limit=(-max_total_time="${FUZZ_SECONDS:-30}") ;;
long) limit=(-runs="${FUZZ_RUNS:-10000000}" -max_total_time="${FUZZ_MAX_SECONDS:-0}") ;;
build) limit=() ;;
*)
    echo "usage: $0 short|long|build [TARGET...]" >&2
    exit 2
    ;;
esac

host=$(rustc -vV | sed -n 's/^host: //p')
# The build goes to fuzz/target unless CARGO_TARGET_DIR says otherwise; the corpus, the logs
# and the slowest inputs always go to fuzz/target.
build_dir=${CARGO_TARGET_DIR:-fuzz/target}
if cargo fuzz --version >/dev/null 2>&1; then
    # Nightly when rustup has it, else the stable toolchain told to take nightly flags.
    if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        fuzz=(cargo +nightly fuzz)
    else
        export RUSTC_BOOTSTRAP=1
        fuzz=(cargo fuzz)
    fi
    "${fuzz[@]}" build --sanitizer none --target "$host" --target-dir "$build_dir"
else
    # No cargo-fuzz (a fresh CI machine; installing it takes minutes): the same build, with the
    # coverage flags `cargo fuzz build --sanitizer none` passes, all of them stable, but several
    # codegen units per crate (cargo fuzz asks for one), which builds faster and fuzzes a little
    # slower.
    flags=(-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
        -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares
        --cfg fuzzing -Cllvm-args=-simplifycfg-branch-fold-threshold=0
        -Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions)
    RUSTFLAGS="${flags[*]}" cargo build --manifest-path fuzz/Cargo.toml --release --bins \
        --target "$host" --target-dir "$build_dir"
fi
[ "$mode" != build ] || exit 0

out=fuzz/target
mkdir -p "$out/slowest" "$out/logs"
summary=()
failed=()
for t in "${targets[@]}"; do
    bin=$build_dir/$host/release/$t
    log=$out/logs/$t.log
    slowest=$out/slowest/$t
    mkdir -p "$out/corpus/$t" "fuzz/artifacts/$t"
    rm -f "$slowest" "$slowest.us"
    echo "fuzz: $t (${limit[*]})"
    status=0
    TORPOR_FUZZ_SLOWEST=$slowest "$bin" "${limit[@]}" -timeout="${FUZZ_TIMEOUT:-1}" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
        "$out/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1 || status=$?
    final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    alone=$("$bin" -runs=10 "$slowest" 2>&1 | sed -n 's/^Executed .* in \([0-9]*\) ms$/\1/p' |
        sort -n | head -1)
    line="$t: $(final_stat number_of_executed_units) executions"
    line+=", $(final_stat average_exec_per_sec)/s"
    line+=", slowest input $(cat "$slowest.us" 2>/dev/null || echo '?') µs CPU"
    line+=" (alone: ${alone:-?} ms, $(wc -c <"$slowest" 2>/dev/null || echo '?') bytes)"
    line+=", corpus $(find "$out/corpus/$t" -type f | wc -l) inputs"
    if [ "$status" -ne 0 ]; then
        grep -E -B2 -A12 "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -60 || tail -40 "$log"
        line+=", FAILED (exit $status; input in fuzz/artifacts/$t/, log in $log)"
        failed+=("$t")
    else
        line+=", 0 crashes"
    fi
    echo "$line"
    summary+=("$line")
done
echo
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
