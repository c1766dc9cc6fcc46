#!/usr/bin/env bash
# Create .venv (Python 3.11) if needed and install the package with the given extras.
# Re-installs only when pyproject.toml or the extras change. Usage: scripts/venv.sh [EXTRAS]  e.g. "test,onnx"
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    echo "installing shunted-paddle${extras:+ [$extras]} into .venv (first run takes a few minutes) ..." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
    touch "$stamp"
fi
