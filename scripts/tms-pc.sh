#!/usr/bin/env bash
# Prints tms.pc, the pkg-config file `make install` installs:  scripts/tms-pc.sh PREFIX LIBDIR INCLUDEDIR
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
prefix=$1 libdir=$2 includedir=$3
version=$(scripts/version.sh)

# What a program linking libtms.a statically needs besides it, exactly as rustc reports it when it
# builds the static library with --print native-static-libs. `cargo rustc` passes the flag to this
# crate alone, as a build unit of its own (setting RUSTFLAGS would rebuild every dependency and
# then again for the next plain build), and replays the note from its cache on later runs.
if ! out=$(cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs 2>&1); then
    echo "$out" >&2
    exit 1
fi
static_libs=$(sed -n 's/^note: native-static-libs: //p' <<<"$out" | tail -n 1)
if [[ -z $static_libs ]]; then
    echo "tms-pc.sh: rustc did not print native-static-libs:" >&2
    echo "$out" >&2
    exit 1
fi

# Directories under the prefix are written relative to it, as pkg-config files usually are.
relative() { [[ $1 == "$prefix"/* ]] && echo "\${prefix}${1#"$prefix"}" || echo "$1"; }

cat <<PC
prefix=$prefix
libdir=$(relative "$libdir")
includedir=$(relative "$includedir")

Name: tms
Description: Embedded job-and-audit store of the TMS operator dashboard (C ABI)
Version: $version
Libs: -L\${libdir} -ltms
Cflags: -I\${includedir}
# Linking libtms.a statically (pkg-config --static): the system SQLite, shared with every other
# SQLite user of the process, and what Rust's standard library needs.
Requires.private: sqlite3
Libs.private: $static_libs
PC
