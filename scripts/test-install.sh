#!/usr/bin/env bash
# Installs libtms as a user would, into temporary directories, and uses the result from outside
# the repository:
#  - Python: `make wheel`, the wheel installed into a fresh venv with no cargo on PATH, then
#    `import tms` from another directory with TMS_LIB unset, a store and a job; the wheel holds
#    libtms.so, stripped, exporting the header's functions, and no SQLite, and the library links
#    the system libsqlite3. `make wheel` and `pip wheel` from a read-only copy of the checkout,
#    with CARGO_TARGET_DIR outside it, change nothing in it.
#  - C: `make install PREFIX=...`, the README's main.c built with pkg-config (shared with an rpath,
#    and static), the README's CMakeLists.txt, the SONAME and its links, the files stripped,
#    DESTDIR, make uninstall.
# Every build reuses target/release (the wheel's runs the same `cargo build --release`, so nothing
# is compiled again). Prints "install: N passed, M failed" last; exits non-zero on any failure.
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

# Every function include/tms.h declares, which a packaged or installed libtms must export.
header_functions() { grep -oE '\btms_[a-z0-9_]+ *\(' include/tms.h | tr -d ' (' | sort -u; }
# exports_the_header LIBRARY: every header function is a defined dynamic symbol of LIBRARY.
exports_the_header() {
    local missing
    missing=$(comm -23 <(header_functions) <(nm -D --defined-only "$1" | awk '{print $3}' | sort -u))
    echo "missing: $missing"
    test -z "$missing" && test "$(header_functions | wc -l)" -ge 20
}
# defines_no_sqlite LIBRARY: LIBRARY's dynamic symbols (read: a missing or unreadable file fails)
# include tms_ functions and no sqlite3_ function.
defines_no_sqlite() {
    local symbols
    symbols=$(nm -D --defined-only "$1") || return 1
    grep -q ' tms_' <<<"$symbols" && ! grep -w 'sqlite3_[a-z0-9_]*' <<<"$symbols"
}
# has_no_debug_info FILE: no .debug_* section (readelf -S lists each member of an archive) but
# .debug_gdb_scripts, which is not debug info: a few loaded bytes naming Rust's gdb pretty-printers
# in an executable, which strip keeps.
has_no_debug_info() {
    readelf -S --wide "$1" >"$TMP/sections" || return 1
    ! grep -E '\] +\.z?debug_' "$TMP/sections" | grep -v '\] \.debug_gdb_scripts '
}
# near_the_readme_size FILE: FILE's size is within 20% of what the README's Python section says
# the wheel's libtms.so weighs ("the `libtms.so` in it is N MB").
near_the_readme_size() {
    local said size
    said=$(tr '\n' ' ' <README.md | sed -nE 's/.*the `libtms\.so` in it is +([0-9.]+) MB.*/\1/p')
    size=$(stat -c %s "$1")
    echo "README: ${said:-nothing} MB, $1: $size bytes"
    [[ -n $said ]] && awk -v said="$said" -v size="$size" 'BEGIN { d = size / 1e6 / said; exit !(d > 0.8 && d < 1.2) }'
}

echo "== make wheel, then pip install of that wheel into a fresh venv with no cargo on PATH"
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
wheel_name=tms_core-$version-py3-none-linux_$arch.whl
check "make wheel" make --no-print-directory wheel
made_wheel=$(tail -1 "$TMP/check.log")
check "make wheel prints the path of the wheel, target/wheels/$wheel_name" \
    test "$made_wheel" = "$target_dir/wheels/$wheel_name" -a -f "$made_wheel"
mkdir -p "$TMP/wheel"
cp "$made_wheel" "$TMP/wheel/" 2>/dev/null
wheel=$TMP/wheel/$wheel_name

python3 -m venv "$TMP/venv"
venv_python=$TMP/venv/bin/python
PIP=("$venv_python" -m pip --disable-pip-version-check --quiet)
# PATH without any directory holding cargo or rustc (rustup's ~/.cargo/bin among them).
no_rust_path=$(IFS=:; for d in $PATH; do [[ -e $d/cargo || -e $d/rustc ]] || printf '%s:' "$d"; done)
no_rust_path=${no_rust_path%:}
install_without_rust() {
    env PATH="$no_rust_path" bash -c '! command -v cargo && ! command -v rustc' &&
        env PATH="$no_rust_path" CARGO=/nonexistent/cargo RUSTC=/nonexistent/rustc \
            "${PIP[@]}" install --no-index --no-deps "$wheel"
}
check "pip install target/wheels/$wheel_name with no cargo or rustc on PATH, no index" install_without_rust

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
check "the installed libtms.so defines no sqlite3_ function (no SQLite of its own)" defines_no_sqlite "$installed_lib"
check "the installed libtms.so has the SONAME libtms.so.$major" \
    grep -q "SONAME.*\[libtms\.so\.$major\]" <(readelf -d "$installed_lib")
check "the installed libtms.so has no .debug_* section (stripped)" has_no_debug_info "$installed_lib"
check "the installed libtms.so exports every tms_ function of include/tms.h" exports_the_header "$installed_lib"
check "the installed libtms.so weighs what the README says (within 20%)" near_the_readme_size "$installed_lib"

inspect_wheel() {
    "$venv_python" - "$1" "$version" "$arch" <<'PY'
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
check "the wheel is py3-none-linux_$arch, not pure, with libtms.so and py.typed and no SQLite" inspect_wheel "$wheel"

# A copy of the checkout as a user might have it: the tracked files (and new ones not ignored) of
# this working tree, without target/ or any other build product, their times kept so that cargo,
# pointed at this target/ through CARGO_TARGET_DIR, finds its build fresh and compiles nothing.
# Each build sees it read-only: through a read-only bind mount in a mount namespace of its own
# when run as root (root ignores write bits), else through chmod. Where root cannot mount (a
# container without CAP_SYS_ADMIN), only the listing with hashes taken before and after, which
# must be the same in every case, says that nothing was written.
echo "== make wheel and pip wheel from a read-only copy of the checkout, CARGO_TARGET_DIR outside it"
copy=$TMP/checkout
mkdir -p "$copy"
git ls-files -z --cached --others --exclude-standard |
    tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$copy"
read_only_mount() {
    unshare -m -- bash -c 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"' \
        _ "$copy" "$@"
}
if [[ $EUID -ne 0 ]]; then
    chmod -R a-w "$copy"
    read_only() { "$@"; }
elif read_only_mount true 2>/dev/null; then
    read_only() { read_only_mount "$@"; }
else
    echo "note: root cannot mount here; the copy stays writable and only the listing checks it"
    read_only() { "$@"; }
fi
snapshot() (
    cd "$copy" && find . -printf '%p %y %m %s %T@ %l\n' | sort && find . -type f -print0 | sort -z |
        xargs -0 sha256sum
)
snapshot >"$TMP/before"
if [[ $EUID -ne 0 ]] || read_only_mount true 2>/dev/null; then
    check "the copy is read-only to the builds (a file cannot be created in bindings/python)" \
        read_only bash -c "! touch '$copy/bindings/python/probe' 2>/dev/null"
fi
check "make wheel in the read-only copy, CARGO_TARGET_DIR=$target_dir" \
    read_only env CARGO_TARGET_DIR="$target_dir" make -C "$copy" --no-print-directory wheel
check "it prints the wheel's path under CARGO_TARGET_DIR" \
    test "$(tail -1 "$TMP/check.log")" = "$target_dir/wheels/$wheel_name"
# PYTHONDONTWRITEBYTECODE: Python's bytecode cache of the backend, which a read-only directory
# goes without, would otherwise be the one write that the chmod case cannot stop.
check "pip wheel of the read-only copy's bindings/python" \
    read_only env CARGO_TARGET_DIR="$target_dir" PYTHONDONTWRITEBYTECODE=1 \
        "${PIP[@]}" wheel --no-deps "$copy/bindings/python" -w "$TMP/ro-wheel"
check "the wheel pip built from the copy holds the same stripped libtms.so as make wheel's" \
    bash -c "mkdir -p '$TMP/ro-lib' && cd '$TMP/ro-lib' &&
             '$venv_python' -m zipfile -e '$TMP/ro-wheel/$wheel_name' . && cmp tms/libtms.so '$installed_lib'"
snapshot >"$TMP/after"
chmod -R u+w "$copy"
check "nothing in the copy of the checkout changed (listing and hashes before and after)" \
    diff "$TMP/before" "$TMP/after"
check "the copy holds no build product (build/, *.egg-info, target/, __pycache__)" \
    bash -c "found=\$(find '$copy' -name build -o -name '*.egg-info' -o -name target -o -name __pycache__); echo \"\$found\"; test -z \"\$found\""

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
check "the installed libtms.so.$version has no .debug_* section (stripped)" has_no_debug_info "$lib/libtms.so.$version"
others_stripped() { has_no_debug_info "$lib/libtms.a" && has_no_debug_info "$prefix/bin/tms"; }
check "the installed libtms.a and bin/tms have no .debug_* section either" others_stripped
check "the installed libtms.so.$version exports every tms_ function of include/tms.h" \
    exports_the_header "$lib/libtms.so.$version"
check "the installed libtms.so.$version weighs what the README says (within 20%)" \
    near_the_readme_size "$lib/libtms.so.$version"
load_installed_library() (
    cd "$TMP/elsewhere" && TMS_LIB=$lib/libtms.so.$version "$venv_python" -c \
        'import sys, tms, tms._native as n; assert n.library_path == sys.argv[1]; print(tms.version())' \
        "$lib/libtms.so.$version"
)
check "Python loads the installed libtms.so.$version (TMS_LIB) and calls it" load_installed_library

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
