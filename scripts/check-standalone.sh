#!/usr/bin/env bash
# Fails when a tracked file refers to something that does not ship with the repository:
# the reading material the project was started from (a sibling `shared` folder, section
# citations of its spec) or a path of the machine it was built on. The project's reference is
# docs/; write there instead. The patterns are written so that they do not match themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
hits=$(git grep -nIE \
    -e '\.\./shar[e]d' \
    -e '\bSPE[C]\b' \
    -e '/(work|root)/' \
    -e '/home/[A-Za-z0-9_.-]+' \
    -e '/tm[p]\b' \
    -- . ':!Cargo.lock' || true)
if [[ -n "$hits" ]]; then
    echo "check-standalone: these lines refer to files or machine paths outside the repository:" >&2
    echo "$hits" >&2
    exit 1
fi
echo "check-standalone: ok"
