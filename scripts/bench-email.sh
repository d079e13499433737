#!/usr/bin/env bash
# End-to-end notification benchmark (docs/BENCHMARKS.md §4): a steady checkout
# load against a PostgreSQL-backed shop whose in-process workers send every
# order's confirmation e-mail, and the time from each checkout answer to that
# e-mail being handed over — to a real SMTP server (the aiosmtpd sink of the
# tests) and to the `.eml` outbox of the embedded default.
#
#   cargo build --release && scripts/bench-email.sh
#
# Settings: CONCURRENCY ("8 32"), STEP_SECONDS (30), PG_URL (postgres://postgres@127.0.0.1:5432), BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/mercato}
CONCURRENCY=${CONCURRENCY:-8 32}
SECONDS_EACH=${STEP_SECONDS:-30}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PORT=18082
SMTP_PORT=18025
WORK=$(mktemp -d)

export RUST_LOG=warn MERCATO_LOG_FORMAT=json MERCATO_LISTEN=127.0.0.1:$PORT MERCATO_DATA_DIR=$WORK
export MERCATO_JWT_SECRET=bench-secret-bench-secret-bench-secret-00
export MERCATO_TEST_PAYMENT_WEBHOOK_SECRET=bench-webhook-secret-bench-webhook
export MERCATO_RATE_LIMIT_READS_PER_SECOND=1000000000 MERCATO_RATE_LIMIT_WRITES_PER_SECOND=1000000000
export DATABASE_URL=$PG_URL/mercato_email_bench
export MERCATO_LOADTEST_PASSWORD="load test password 1234"

# The sink runs until its standard input closes: a fifo this script holds open.
mkfifo "$WORK/hold"
python3 tests/support/smtp_sink.py "$SMTP_PORT" "$WORK/smtp" < "$WORK/hold" > "$WORK/smtp.log" 2>&1 & sink=$!
exec 3> "$WORK/hold"
pids="$sink"
trap 'kill -TERM $pids 2>/dev/null || true' EXIT

run() { # $1: label, then env assignments for the server
  local label=$1; shift
  psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS mercato_email_bench WITH (FORCE)' -c 'CREATE DATABASE mercato_email_bench'
  "$BIN" migrate
  printf '%s' "$MERCATO_LOADTEST_PASSWORD" | "$BIN" admin create-staff --email load@example.com --role owner --password-stdin
  env "$@" "$BIN" serve & local pid=$!
  pids="$sink $pid"
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done
  for c in $CONCURRENCY; do
    echo "### $label: 1,000 variants, concurrency $c, ${SECONDS_EACH}s"
    "$BIN" loadtest --target "http://127.0.0.1:$PORT" --admin-email load@example.com --scenario steady-checkout \
      --concurrency "$c" --step-seconds "$SECONDS_EACH" --variants 1000 --emails
  done
  kill -TERM "$pid"; wait "$pid" || true
}

for _ in $(seq 1 50); do grep -q ready "$WORK/smtp.log" && break; sleep 0.2; done
run "SMTP (aiosmtpd on 127.0.0.1:$SMTP_PORT)" SMTP_URL="smtp://127.0.0.1:$SMTP_PORT"
run ".eml outbox" SMTP_URL=
