#!/usr/bin/env bash
# Build libtms and run the C and C++ consumer tests (tests/c, tests/cpp) under ASan + UBSan
# with leak detection. Prints "c-abi: N passed, M failed" last; exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

scripts/build.sh --quiet

OUT=target/c-tests
mkdir -p "$OUT"

SAN=(-fsanitize=address,undefined -fno-omit-frame-pointer -g)
LINK=(-Ltarget/release -ltms "-Wl,-rpath,$ROOT/target/release")

gcc -std=c11 -Wall -Wextra -Werror -pedantic "${SAN[@]}" -pthread -Iinclude \
    tests/c/test_tms.c "${LINK[@]}" -lsqlite3 -o "$OUT/test_tms_c"
g++ -std=c++17 -Wall -Wextra -Werror -pedantic "${SAN[@]}" -Iinclude \
    tests/cpp/test_tms.cpp "${LINK[@]}" -o "$OUT/test_tms_cpp"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Each program gets its own fresh directory; the legacy fixtures are copied (SQLite needs to
# write -wal/-shm files beside them and the migration changes them in place).
mkdir -p "$TMP/c" "$TMP/cpp" "$TMP/legacy"
cp tests/fixtures/legacy/jobs.db tests/fixtures/legacy/audit.db "$TMP/legacy/"
chmod u+w "$TMP/legacy/jobs.db" "$TMP/legacy/audit.db"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

total_passed=0
total_failed=0

# run NAME BINARY ARGS...: run one program, add its "<name>: N passed, M failed" line to the totals.
# A program that prints no summary, or exits non-zero without reporting a failure (a sanitizer
# abort, a crash), counts as one failure.
run() {
    local name=$1
    shift
    local log="$TMP/$name.log"
    local rc=0
    "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
    local summary passed=0 failed=0
    summary=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed\$" "$log" | tail -n 1 || true)
    if [[ -n $summary ]]; then
        passed=$(sed -E 's/^.*: ([0-9]+) passed, ([0-9]+) failed$/\1/' <<<"$summary")
        failed=$(sed -E 's/^.*: ([0-9]+) passed, ([0-9]+) failed$/\2/' <<<"$summary")
    else
        echo "$name: no summary line (exit status $rc)" >&2
        failed=1
    fi
    if [[ $rc -ne 0 && $failed -eq 0 ]]; then
        echo "$name: exited with status $rc" >&2
        failed=1
    fi
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
}

run c "$OUT/test_tms_c" "$TMP/c" "$TMP/legacy"
run cpp "$OUT/test_tms_cpp" "$TMP/cpp"

echo "c-abi: $total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
