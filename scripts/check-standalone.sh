#!/usr/bin/env bash
# Fails when a tracked file refers to something that does not ship with the repository: the
# reading material the project was started from (`../shared`, "SPEC §" citations) or a path of
# the machine it was built on. The project's reference is docs/; write there instead.
set -euo pipefail
cd "$(dirname "$0")/.."
# This script names the patterns, so it is the one file not searched.
hits=$(git grep -nIE \
    -e '\.\./shared' \
    -e 'SPEC §' \
    -e '\bSPEC\b' \
    -e '/(work|root)/' \
    -e '/home/[A-Za-z0-9_.-]+' \
    -e '/tmp\b' \
    -- . ':!Cargo.lock' ':!scripts/check-standalone.sh' || true)
if [[ -n "$hits" ]]; then
    echo "check-standalone: these lines refer to files or machine paths outside the repository:" >&2
    echo "$hits" >&2
    exit 1
fi
echo "check-standalone: ok"
