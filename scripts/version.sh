#!/usr/bin/env bash
# Prints libtms's version (e.g. 0.1.0) as Cargo resolves it: Cargo.toml is the single source of
# the version for the SONAME, the install file names, tms.pc, the header macros and the wheel.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# `cargo pkgid` prints path+file:///...#tms-core@0.1.0 (or ...#0.1.0 when the directory is named
# like the package); asking by name keeps working if the repository becomes a workspace.
cargo pkgid --quiet -p tms-core | sed -E 's/.*[#@]//'
