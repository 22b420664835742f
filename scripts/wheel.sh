#!/usr/bin/env bash
# `make wheel`: builds the Python wheel once, into target/wheels/ (under CARGO_TARGET_DIR when
# that is set), and prints its path last. Installing that wheel needs no Rust and no build:
# `pip install target/wheels/tms_core-*.whl`. Nothing is written into the checkout, so it builds
# from a read-only one given a CARGO_TARGET_DIR outside it: cargo builds there, and
# bindings/python/_build_backend.py keeps setuptools' build tree in a temporary directory.
# pip runs from a venv of its own in the target directory (made on first use; Debian's python3
# has venv but not always pip) and fetches setuptools for the build, as `pip wheel` does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Relative to the repository root, as cargo (run from here by the backend) reads it.
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target/wheels"
target=$(cd "$target" && pwd)
if [ -n "${CARGO_TARGET_DIR:-}" ]; then export CARGO_TARGET_DIR=$target; fi
venv=$target/wheel-venv
if [ ! -x "$venv/bin/python" ]; then
  echo "creating the venv $venv for pip (once)" >&2
  python3 -m venv "$venv" >&2
fi
# One wheel in target/wheels/, so that `pip install target/wheels/tms_core-*.whl` names one file.
rm -f "$target/wheels"/tms_core-*.whl
# No __pycache__ of _build_backend.py in bindings/python.
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check \
  --no-deps --wheel-dir "$target/wheels" ./bindings/python >&2
ls "$target/wheels"/tms_core-*.whl
