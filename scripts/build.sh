#!/usr/bin/env bash
# Builds libtms (target/release/libtms.so and libtms.a) and the `tms` tool, and gives the in-tree shared library its
# SONAME link: a program linked here with -Ltarget/release -ltms records NEEDED libtms.so.<major>
# (build.rs sets the SONAME), so that name must exist beside libtms.so for the loader to find it
# through an rpath into target/release. `make install` makes the same link in the install tree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release "$@"
# The operator's tool, a workspace member of its own, built in a target directory of its own:
# built beside libtms, its dependencies would switch on features of shared crates and libtms
# would be compiled again (and differently) each time the two builds alternate.
cargo build --release -p tms-cli --target-dir target/cli
cp -f target/cli/release/tms target/release/tms
major=$(scripts/version.sh | cut -d. -f1)
ln -sfn libtms.so "target/release/libtms.so.$major"
