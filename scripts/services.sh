#!/usr/bin/env bash
# The real services musicrec's storage and tracking talk to, on 127.0.0.1 only:
#   - an S3-compatible server (moto, with IAM authentication on, so wrong credentials fail
#     as they would on AWS),
#   - a PostgreSQL database for MLflow (the server that already runs on 127.0.0.1:5432),
#   - an MLflow tracking server with that Postgres backend, serving artifacts from an S3 root;
# and the browser the web page's test drives: Debian's chromium and chromedriver, installed
# when missing (each test starts its own chromedriver on a free port and stops it).
#
#   scripts/services.sh start    # idempotent: starts what is not running, creates the venv once
#   scripts/services.sh stop     # kills only the PIDs this script started
#   scripts/services.sh status
#   scripts/services.sh env      # prints the exports a client needs (source it: eval "$(... env)")
#
# State (venv, PID files, logs, credentials) lives in $MUSICREC_SERVICES_DIR
# (default ~/.cache/musicrec-services), outside the clone.
set -euo pipefail

STATE="${MUSICREC_SERVICES_DIR:-$HOME/.cache/musicrec-services}"
S3_PORT="${MUSICREC_S3_PORT:-9000}"
MLFLOW_PORT="${MUSICREC_MLFLOW_PORT:-5000}"
PG_URL="${MUSICREC_PG_URL:-postgresql://postgres@127.0.0.1:5432}"
MLFLOW_DB="${MUSICREC_MLFLOW_DB:-musicrec_mlflow}"
VENV="$STATE/venv"
PY="$VENV/bin/python"
# Pinned so CI on a machine with nothing cached gets what was tested here.
PACKAGES=("mlflow==3.17.2" "psycopg[binary]==3.3.9" "boto3==1.44.8" "moto[server]==5.2.5"
          "openapi-spec-validator==0.7.2")
DATA_BUCKET=musicrec
MLFLOW_BUCKET=mlflow

log() { echo "services: $*" >&2; }

running() { # name
    local pidfile="$STATE/$1.pid"
    [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_http() { # name url seconds
    local deadline=$((SECONDS + $3))
    until curl -fsS -o /dev/null "$2" 2>/dev/null; do
        if ((SECONDS > deadline)); then
            log "$1 did not answer at $2 within $3 s; its log:"
            tail -n 30 "$STATE/$1.log" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
}

ensure_venv() {
    if [[ -x "$PY" ]] && "$PY" -c 'import mlflow, moto, boto3, psycopg, openapi_spec_validator' 2>/dev/null; then
        return
    fi
    log "creating $VENV (MLflow, moto, boto3, psycopg, openapi-spec-validator; about 2 minutes)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}"
}

ensure_browser() {
    if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
        return
    fi
    log "installing chromium and chromedriver (Debian packages)"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
}

# Runs a server in the state directory, replacing the calling (background) shell so `$!` is
# the server's pid. Not the caller's directory: a server started from a checkout that is later
# deleted fails every request that resolves a path (MLflow's artifact listing calls getcwd).
serve_from_state() {
    cd "$STATE" && exec nohup "$@"
}

start_s3() {
    if running s3; then return; fi
    log "starting the S3 server on 127.0.0.1:$S3_PORT"
    # The first actions (creating the IAM user, its key, its policy) run unauthenticated;
    # everything after them must be signed with that user's key.
    serve_from_state env INITIAL_NO_AUTH_ACTION_COUNT=3 "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" \
        >"$STATE/s3.log" 2>&1 &
    echo $! >"$STATE/s3.pid"
    wait_http s3 "http://127.0.0.1:$S3_PORT/moto-api/" 30
    "$PY" - "$S3_PORT" "$STATE/credentials" "$DATA_BUCKET" "$MLFLOW_BUCKET" <<'EOF'
import json, sys, boto3
port, out, *buckets = sys.argv[1:]
endpoint = f"http://127.0.0.1:{port}"
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="musicrec")
key = iam.create_access_key(UserName="musicrec")["AccessKey"]
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
iam.put_user_policy(UserName="musicrec", PolicyName="all", PolicyDocument=json.dumps(policy))
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
for bucket in buckets:
    s3.create_bucket(Bucket=bucket)
with open(out, "w") as f:
    f.write(f"{key['AccessKeyId']}\n{key['SecretAccessKey']}\n")
EOF
}

credentials() { # prints "KEY SECRET"
    tr '\n' ' ' <"$STATE/credentials"
}

start_mlflow() {
    if running mlflow; then return; fi
    local db="$PG_URL/$MLFLOW_DB"
    if ! psql "$PG_URL/postgres" -tAc "select 1 from pg_database where datname = '$MLFLOW_DB'" | grep -q 1; then
        log "creating database $MLFLOW_DB"
        psql "$PG_URL/postgres" -qc "create database $MLFLOW_DB"
    fi
    read -r key secret <<<"$(credentials)"
    log "starting MLflow on 127.0.0.1:$MLFLOW_PORT (backend $db, artifacts s3://$MLFLOW_BUCKET/)"
    serve_from_state env AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" AWS_DEFAULT_REGION=us-east-1 \
        MLFLOW_S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" \
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
        "$VENV/bin/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
        --backend-store-uri "${db/postgresql:/postgresql+psycopg:}" \
        --serve-artifacts --artifacts-destination "s3://$MLFLOW_BUCKET/artifacts" \
        >"$STATE/mlflow.log" 2>&1 &
    echo $! >"$STATE/mlflow.pid"
    wait_http mlflow "http://127.0.0.1:$MLFLOW_PORT/health" 120
}

stop_one() { # name
    local pidfile="$STATE/$1.pid"
    [[ -f "$pidfile" ]] || return 0
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $1 (pid $pid)"
        # MLflow forks workers: end the whole group the script started, and nothing else.
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

print_env() {
    read -r key secret <<<"$(credentials)"
    cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$key
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_REGION=us-east-1
export AWS_ALLOW_HTTP=true
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export MUSICREC_S3_BUCKET=$DATA_BUCKET
export MUSICREC_MLFLOW_BUCKET=$MLFLOW_BUCKET
export MUSICREC_SERVICES_PYTHON=$PY
EOF
}

mkdir -p "$STATE"
case "${1:-}" in
start)
    ensure_venv
    ensure_browser
    # The S3 server keeps everything in memory: a restarted one has new credentials, so MLflow
    # (which holds the old ones) restarts with it.
    if ! running s3; then stop_one mlflow; fi
    start_s3
    start_mlflow
    print_env >"$STATE/env"
    log "ready; eval \"\$($0 env)\" to use them"
    ;;
stop)
    stop_one mlflow
    stop_one s3
    ;;
status)
    for name in s3 mlflow; do
        if running "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; fi
    done
    ;;
env)
    [[ -f "$STATE/credentials" ]] || { log "not started: run $0 start"; exit 1; }
    print_env
    ;;
*)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
