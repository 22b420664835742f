#!/usr/bin/env bash
# Every test suite, against a freshly built library, the storage suites on SQLite and on a real
# PostgreSQL server: Rust (unit, integration, engines, header, fuzz), C and
# C++ consumers (ASan + UBSan), installing (pip into a fresh venv, make install with pkg-config and
# CMake, each used from outside the repository), the Python binding (pytest in a private venv
# under target/; it includes the power-loss rounds of tests/python/test_power_loss.py, which build
# the crashvfs shim with gcc against the system libsqlite3 and print their figures, also kept in
# target/power_loss/figures.json; see tests/power_loss/README.md), and
# the binding under valgrind. TMS_STRESS=1 lengthens the stress tests (and runs five times as
# many power cuts); TMS_FUZZ_SECONDS the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The PostgreSQL suites need a server: TMS_TEST_PG_URL's, or a throwaway one started (and
# removed) around this whole run.
if [ -z "${TMS_TEST_PG_URL:-}" ]; then
  exec scripts/with-postgres.sh "$0" "$@"
fi

echo "== build"
scripts/build.sh

echo "== Rust"
cargo test --release 2>&1 | tee target/rust-tests.log
# The header check is a crate of its own (cbindgen would otherwise change libtms's build).
cargo test --release -p tms-header-check 2>&1 | tee -a target/rust-tests.log
rust_passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' target/rust-tests.log | awk '{s+=$4} END {print s+0}')
if grep -Eq '[1-9][0-9]* ignored' target/rust-tests.log; then
  echo "a Rust test was ignored (nothing here may pass by not running)" >&2
  exit 1
fi

echo "== C and C++"
scripts/test-c.sh 2>&1 | tee target/c-tests.log

echo "== Installing: make wheel, pip install of it without cargo, from a read-only checkout; make install + pkg-config; used from outside the repo"
scripts/test-install.sh 2>&1 | tee target/install-tests.log
install_passed=$(grep -Eo '^install: [0-9]+ passed' target/install-tests.log | awk '{print $2}')

echo "== Python"
python=$(scripts/venv.sh)
TMS_LIB="$PWD/target/release/libtms.so" "$python" -m pytest -q tests/python 2>&1 | tee target/py-tests.log
py_passed=$(grep -Eo '^[0-9]+ passed' target/py-tests.log | tail -1 | awk '{print $1}')
py_deselected=$({ grep -Eo '[0-9]+ deselected' target/py-tests.log || true; } | tail -1 | awk '{print $1}')

echo "== Python again, on PostgreSQL: the store, Set Action, hostile-input, drop-in, adoption, checkpoint and metrics suites"
TMS_TEST_ENGINE=postgres TMS_LIB="$PWD/target/release/libtms.so" "$python" -m pytest -q \
  tests/python/test_store.py tests/python/test_set_action.py tests/python/test_hostile.py \
  tests/python/test_dropin.py tests/python/test_adopt.py tests/python/test_checkpoints.py tests/python/test_metrics.py \
  2>&1 | tee target/py-pg-tests.log
py_pg_passed=$(grep -Eo '^[0-9]+ passed' target/py-pg-tests.log | tail -1 | awk '{print $1}')
py_pg_deselected=$({ grep -Eo '[0-9]+ deselected' target/py-pg-tests.log || true; } | tail -1 | awk '{print $1}')
# conftest.py fails a skipped test; a summary that still says "skipped" (or "xfailed") is a failure
# of its own: nothing here may pass by not running.
if grep -Eq '^[0-9]+ passed.*(skipped|xfail)' target/py-tests.log target/py-pg-tests.log; then
  echo "a Python test was skipped: $(grep -Eh '^[0-9]+ passed' target/py-tests.log target/py-pg-tests.log)" >&2
  exit 1
fi

echo "== Memory: the Python binding under valgrind (no library string leaked)"
PYTHON="$python" tests/memory/valgrind_python.sh 40
cabi_passed=$(grep -Eo '^c-abi: [0-9]+ passed' target/c-tests.log | awk '{print $2}')

echo "== Benchmark smoke run (small sizes; keeps bench/ from rotting): calls, route, PostgreSQL, syncs per call"
cargo build --release --example bench
"$python" bench/run.py --quick > target/bench-smoke.log
"$python" bench/route.py --quick >> target/bench-smoke.log
"$python" bench/postgres.py --quick >> target/bench-smoke.log
"$python" bench/failover.py --quick >> target/bench-smoke.log 2>&1
"$python" bench/syncs.py --n 10 >> target/bench-smoke.log
tail -3 target/bench-smoke.log

# set -e and pipefail stopped the script at the first failing suite, so reaching here means 0 failed.
echo "== Rust $rust_passed, C/C++ checks $cabi_passed, install $install_passed, Python $py_passed (deselected ${py_deselected:-0}), Python on PostgreSQL $py_pg_passed (deselected ${py_pg_deselected:-0}: the sqlite_only tests, which look inside SQLite files), memory 1"
echo "all suites: $((rust_passed + cabi_passed + install_passed + py_passed + py_pg_passed + 1)) passed, 0 failed"
