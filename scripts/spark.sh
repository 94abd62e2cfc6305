#!/usr/bin/env bash
# Apache Spark for musicrec's distributed data preparation (engines/spark/), from PyPI's
# pyspark (Spark's jars and launch scripts; needs Java 17+ on the PATH).
#
#   scripts/spark.sh ensure          # idempotent: creates the venv once (~40 s, ~520 MB)
#   scripts/spark.sh submit ARGS...  # spark-submit from that venv, e.g.
#       scripts/spark.sh submit --master 'local-cluster[2,1,1024]' \
#           engines/spark/preprocess.py --data DATA --artifacts ARTIFACTS
#   scripts/spark.sh home            # prints SPARK_HOME of the venv
#
# On a real cluster use that cluster's spark-submit with --master spark://HOST:7077 (see
# docs/scale.md); this script only gives a machine without Spark the same version.
# State lives in $MUSICREC_SPARK_DIR (default ~/.cache/musicrec-spark), outside the clone.
set -euo pipefail

STATE="${MUSICREC_SPARK_DIR:-$HOME/.cache/musicrec-spark}"
VENV="$STATE/venv"
# Pinned so CI on a machine with nothing cached gets what was tested here.
PACKAGES=("pyspark==4.3.0")

log() { echo "spark: $*" >&2; }

ensure() {
    # Tests start several Spark jobs at once on a fresh machine: one creates the venv while
    # the others wait on the lock, and only a venv whose install finished (the marker file,
    # written last) is used; a half-installed pyspark once ran without its zstd jar.
    mkdir -p "$STATE"
    exec 9>"$STATE/venv.lock"
    flock 9
    if [[ -f "$VENV/.installed" ]]; then
        flock -u 9
        return
    fi
    command -v java >/dev/null || { log "java is not on the PATH (Spark 4 needs Java 17+)"; exit 1; }
    log "creating $VENV (pyspark; about 40 s)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}"
    touch "$VENV/.installed"
    flock -u 9
}

home() {
    "$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'
}

case "${1:-}" in
ensure) ensure ;;
home)
    ensure
    home
    ;;
submit)
    shift
    ensure
    SPARK_HOME="$(home)"
    export SPARK_HOME
    # The driver and the executors run this venv's Python, whatever python is on the PATH.
    export PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python"
    export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
    exec "$VENV/bin/spark-submit" "$@"
    ;;
*)
    echo "usage: $0 ensure | home | submit SPARK-SUBMIT-ARGS..." >&2
    exit 2
    ;;
esac
