#!/usr/bin/env bash
# Prints the path of the project's Python (a venv under target/ with pytest, Flask and mypy,
# prometheus_client for the metrics test, and gunicorn, matplotlib and requests for
# bench/route.py), creating it on first use. The binding itself needs only the standard
# library.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
  echo "creating the Python venv $venv (once)" >&2
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c "import pytest, flask, mypy, gunicorn, matplotlib, requests, prometheus_client" 2>/dev/null; then
  echo "installing pytest, Flask, mypy, gunicorn, matplotlib, requests and prometheus_client into $venv (once; needs PyPI)" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bindings/python/requirements-dev.txt >&2
fi
echo "$PWD/$venv/bin/python"
