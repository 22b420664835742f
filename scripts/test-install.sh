#!/usr/bin/env bash
# Installs libtms as a user would, into temporary directories, and uses the result from outside
# the repository:
#  - Python: `pip install ./bindings/python` into a fresh venv, then `import tms` from another
#    directory with TMS_LIB unset, a store and a job; the wheel (`pip wheel`) holds libtms.so and
#    no SQLite, and the library links the system libsqlite3.
#  - C: `make install PREFIX=...`, the README's main.c built with pkg-config (shared with an rpath,
#    and static), the README's CMakeLists.txt, the SONAME and its links, DESTDIR, make uninstall.
# Both builds reuse target/release (pip's runs the same `cargo build --release`, so nothing is
# compiled again). Prints "install: N passed, M failed" last; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0

# check WHAT COMMAND...: run one check, its output shown only when it fails.
check() {
    local what=$1
    shift
    if "$@" >"$TMP/check.log" 2>&1; then
        passed=$((passed + 1))
        echo "ok    $what"
    else
        failed=$((failed + 1))
        echo "FAIL  $what"
        sed 's/^/      /' "$TMP/check.log"
    fi
}

# README block: the first fenced block of LANGUAGE after the heading HEADING.
readme_block() {
    awk -v heading="$1" -v fence="\`\`\`$2" '
        $0 == heading { in_section = 1; next }
        in_section && $0 == fence { in_block = 1; next }
        in_block && $0 == "```" { exit }
        in_block { print }' README.md
}

version=$(scripts/version.sh)
major=${version%%.*}
arch=$(uname -m)
scripts/build.sh --quiet

# --- Python ---------------------------------------------------------------------------------------

echo "== pip install ./bindings/python into a fresh venv"
python3 -m venv "$TMP/venv"
venv_python=$TMP/venv/bin/python
PIP=("$venv_python" -m pip --disable-pip-version-check --quiet)
check "pip install ./bindings/python" "${PIP[@]}" install ./bindings/python

mkdir -p "$TMP/elsewhere"
use_installed_package() (
    cd "$TMP/elsewhere" && env -u TMS_LIB -u PYTHONPATH "$venv_python" - "$version" <<'PY'
import os, sys
import tms, tms._native

package = os.path.dirname(tms.__file__)
assert package.startswith(sys.prefix + os.sep), f"tms imported from {package}, not the venv"
assert tms._native.library_path == os.path.join(package, "libtms.so"), tms._native.library_path
assert tms.__version__ == tms.version() == sys.argv[1], (tms.__version__, tms.version())
with tms.Store("jobs.db", "audit.db") as store:
    job = store.create_job("alice", tms.map_action("Trans-Begin"), "Trans-Begin", ["c1", "c2", "c1"])
    assert store.get_job_customers(job["job_id"]) == ["c1", "c2"]
    store.update_job(job["job_id"], "SUCCESS", http_status=200)
    assert store.record_audit("alice", "Trans-Begin", ["c1", "c2"]) > 0
    assert store.verify_audit()["ok"]
print("store and job in", os.getcwd())
PY
)
check "import tms from another directory, TMS_LIB unset: a store and a job" use_installed_package

installed_lib=$("$venv_python" -c 'import os, tms; print(os.path.join(os.path.dirname(tms.__file__), "libtms.so"))' 2>/dev/null)
check "py.typed is installed" test -f "$(dirname "$installed_lib")/py.typed"
check "the installed libtms.so NEEDs the system libsqlite3.so.0" \
    grep -q 'NEEDED.*\[libsqlite3\.so\.0\]' <(readelf -d "$installed_lib")
check "the installed libtms.so defines no sqlite3_ function (no SQLite of its own)" \
    bash -c "! nm -D --defined-only '$installed_lib' | grep -w 'sqlite3_[a-z0-9_]*'"
check "the installed libtms.so has the SONAME libtms.so.$major" \
    grep -q "SONAME.*\[libtms\.so\.$major\]" <(readelf -d "$installed_lib")

echo "== pip wheel ./bindings/python"
check "pip wheel ./bindings/python" "${PIP[@]}" wheel --no-deps ./bindings/python -w "$TMP/wheel"
inspect_wheel() {
    "$venv_python" - "$TMP"/wheel/*.whl "$version" "$arch" <<'PY'
import os, sys, zipfile

wheel, version, arch = sys.argv[1:]
name = os.path.basename(wheel)
assert name == f"tms_core-{version}-py3-none-linux_{arch}.whl", name
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    meta = z.read(f"tms_core-{version}.dist-info/WHEEL").decode()
assert "tms/libtms.so" in names and "tms/py.typed" in names, names
assert not [n for n in names if "sqlite" in n.lower()], names
assert not [n for n in names if ".data/" in n], "everything belongs at the wheel's root (platlib)"
assert "Root-Is-Purelib: false" in meta and f"Tag: py3-none-linux_{arch}" in meta, meta
print(name, "holds", len(names), "files")
PY
}
check "the wheel is py3-none-linux_$arch, not pure, with libtms.so and py.typed and no SQLite" inspect_wheel

# --- C and C++ ------------------------------------------------------------------------------------

echo "== make install PREFIX=<temp dir>"
prefix=$TMP/prefix
lib=$prefix/lib
check "make install PREFIX=$prefix" make --no-print-directory install PREFIX="$prefix"
installed_layout() {
    test -f "$lib/libtms.so.$version" && test ! -L "$lib/libtms.so.$version" &&
        test "$(readlink "$lib/libtms.so.$major")" = "libtms.so.$version" &&
        test "$(readlink "$lib/libtms.so")" = "libtms.so.$major" &&
        test -f "$lib/libtms.a" && test -f "$lib/pkgconfig/tms.pc" &&
        cmp include/tms.h "$prefix/include/tms.h"
}
check "lib/libtms.so.$version, its links libtms.so.$major and libtms.so, libtms.a, tms.pc, tms.h" installed_layout
check "readelf -d shows the SONAME libtms.so.$major" \
    grep -q "SONAME.*\[libtms\.so\.$major\]" <(readelf -d "$lib/libtms.so.$version")
check "bin/tms is installed" test -x "$prefix/bin/tms"

# The installed tool on a store an app is writing to: a writer keeps adding jobs and audit rows
# while `tms backup` copies the files, and the copies are whole and verify.
live=$TMP/live
mkdir -p "$live"
writer() {
    cd "$live" && exec env -u TMS_LIB "$venv_python" -c '
import itertools, time, tms
s = tms.Store("jobs.db", "audit.db")
for i in itertools.count():
    s.create_job("app", 1, "Trans-Begin", [f"c{i}-{k}" for k in range(20)])
    s.record_audit("app", "Trans-Begin", [f"c{i}"])
    if i == 50:
        open("ready", "w").close()
'
}
writer &
writer_pid=$!
for _ in $(seq 300); do [[ -e $live/ready ]] && break; sleep 0.1; done
backup_live() { (cd "$live" && "$prefix/bin/tms" backup "$TMP/live-backup") | grep -q '"ok": true'; }
verify_live() { (cd "$live" && "$prefix/bin/tms" verify-audit) >/dev/null; }
stats_live() { (cd "$live" && "$prefix/bin/tms" stats) | grep -qE '"jobs": [1-9]'; }
check "tms backup of a store the app is writing to: integrity ok, the copy's audit log verifies" backup_live
check "tms verify-audit on the live store exits 0" verify_live
check "tms stats on the live store counts its jobs" stats_live
kill "$writer_pid" 2>/dev/null || true
wait "$writer_pid" 2>/dev/null || true
check "tms verify-audit on the backup exits 0" \
    "$prefix/bin/tms" --jobs-db "$TMP/live-backup/jobs.db" --audit-db "$TMP/live-backup/audit.db" verify-audit

pc() { PKG_CONFIG_PATH=$lib/pkgconfig pkg-config "$@"; }
check "pkg-config knows tms $version" test "$(pc --modversion tms)" = "$version"
check "tms.pc: Requires.private sqlite3, and Libs.private for a static link" \
    bash -c "grep -qx 'Requires.private: sqlite3' '$lib/pkgconfig/tms.pc' &&
             grep -qE '^Libs.private: .*-lpthread' '$lib/pkgconfig/tms.pc'"

mkdir -p "$TMP/c/run"
readme_block "## C and C++" c >"$TMP/c/main.c"
readme_block "## C and C++" cmake >"$TMP/CMakeLists.txt"
check "README's C section has a main.c and a CMakeLists.txt" \
    bash -c "grep -q 'int main' '$TMP/c/main.c' && grep -q pkg_check_modules '$TMP/CMakeLists.txt'"
build_c_shared() {
    # shellcheck disable=SC2046  # pkg-config's flags are meant to split
    cc -Wall -Wextra -Werror "$TMP/c/main.c" $(pc --cflags --libs tms) -Wl,-rpath,"$(pc --variable=libdir tms)" \
        -o "$TMP/c/main"
}
check "the README's main.c builds with cc main.c \$(pkg-config --cflags --libs tms) -Wl,-rpath,..." build_c_shared
run_c() (
    cd "$TMP/c/run" && rm -f ./*.db* && env -u LD_LIBRARY_PATH "$1" | tee /dev/stderr |
        grep -q "^job .* with libtms $version (built against $version)\$" && test -s jobs.db
)
check "it runs from another directory, opens a store and records a job" run_c "$TMP/c/main"
check "it NEEDs libtms.so.$major (the SONAME), found through the rpath in $lib" \
    bash -c "readelf -d '$TMP/c/main' | grep -q 'NEEDED.*\[libtms\.so\.$major\]' &&
             ldd '$TMP/c/main' | grep -q 'libtms\.so\.$major => $lib/libtms\.so\.$major'"

build_c_static() {
    # shellcheck disable=SC2046
    cc "$TMP/c/main.c" $(pc --cflags tms) "$(pc --variable=libdir tms)/libtms.a" \
        $(pc --static --libs tms | sed 's/-ltms//') -o "$TMP/c/main-static"
}
check "the README's static link: libtms.a with pkg-config --static" build_c_static
check "the static program runs without libtms.so" \
    bash -c "! readelf -d '$TMP/c/main-static' | grep -q 'NEEDED.*libtms' && cd '$TMP/c/run' && rm -f ./*.db* &&
             '$TMP/c/main-static' | grep -q '^job '"

mkdir -p "$TMP/cmake"
cp "$TMP/c/main.c" "$TMP/CMakeLists.txt" "$TMP/cmake/"
build_cmake() {
    cmake -S "$TMP/cmake" -B "$TMP/cmake/build" -DCMAKE_PREFIX_PATH="$prefix" &&
        cmake --build "$TMP/cmake/build"
}
check "the README's CMakeLists.txt (pkg_check_modules) configures and builds" build_cmake
check "the CMake-built program runs" run_c "$TMP/cmake/build/main"

echo "== make install DESTDIR=<staging> PREFIX=/usr, make uninstall"
stage=$TMP/stage
check "make install DESTDIR=$stage PREFIX=/usr" make --no-print-directory install DESTDIR="$stage" PREFIX=/usr
check "staged under DESTDIR, tms.pc naming the final prefix /usr" \
    bash -c "test -f '$stage/usr/lib/libtms.so.$version' && grep -qx 'prefix=/usr' '$stage/usr/lib/pkgconfig/tms.pc'"
check "make uninstall PREFIX=$prefix" make --no-print-directory uninstall PREFIX="$prefix"
check "make uninstall DESTDIR=$stage PREFIX=/usr" make --no-print-directory uninstall DESTDIR="$stage" PREFIX=/usr
check "make uninstall leaves no file or link behind" \
    bash -c "left=\$(find '$prefix' '$stage' ! -type d); echo \"\$left\"; test -z \"\$left\""

echo "install: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
