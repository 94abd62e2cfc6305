#!/usr/bin/env bash
# Creates (or brings up to date) the virtual environment of the Python reference pipeline.
# Idempotent: a second run with unchanged requirements does nothing.
#
#   bench/reference/setup.sh
#
# MUSICREC_REFERENCE_VENV  where the venv lives (default ~/.cache/musicrec/reference-venv;
#                          `musicrec bench models` looks in the same place)
# PYTHON                   the interpreter the venv is made from (default python3; 3.11 or 3.12)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
requirements="$here/requirements.txt"
venv=${MUSICREC_REFERENCE_VENV:-$HOME/.cache/musicrec/reference-venv}
python=${PYTHON:-python3}
# A stamp of the requirements the venv was last filled from, so reruns can skip pip.
stamp="$venv/.musicrec-requirements"

if ! command -v "$python" >/dev/null; then
    echo "setup.sh: $python not found; install Python 3.11 or 3.12, or set PYTHON" >&2
    exit 2
fi
if ! "$python" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
    echo "setup.sh: $python is Python $("$python" -c 'import platform; print(platform.python_version())'); the pinned wheels need 3.11 or 3.12 (set PYTHON)" >&2
    exit 2
fi

if [ -f "$stamp" ] && cmp -s "$stamp" "$requirements" && [ -x "$venv/bin/python" ]; then
    echo "reference venv up to date: $venv"
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
# Wheels only: building implicit or catboost from source takes long and needs a toolchain.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$requirements"
cp "$requirements" "$stamp"
echo "reference venv ready: $venv/bin/python"
