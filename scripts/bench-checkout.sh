#!/usr/bin/env bash
# Checkout benchmark (docs/BENCHMARKS.md): `mercato loadtest --scenario
# steady-checkout` against a PostgreSQL-backed shop, spread over 1,000 variants and
# then all on one hot variant; a flash sale (BUYERS buyers for STOCK units, all
# checking out at once); plus pgbench's single-row update on the same server as the
# ceiling a one-row-per-checkout design cannot pass. Each run ends with the shop's
# invariants checked; a broken one stops the script.
#
#   cargo build --release && scripts/bench-checkout.sh
#
# Settings: CONCURRENCY (64), STEP_SECONDS (30), BUYERS (20000), STOCK (1000),
# SALE_CONCURRENCY (500), PG_URL (postgres://postgres@127.0.0.1:5432), OUT (reports
# as JSON and HTML into this folder, when set).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/mercato}
CONCURRENCY=${CONCURRENCY:-64}
SECONDS_EACH=${STEP_SECONDS:-30}
BUYERS=${BUYERS:-20000}
STOCK=${STOCK:-1000}
SALE_CONCURRENCY=${SALE_CONCURRENCY:-500}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PORT=18081
WORK=$(mktemp -d)

export RUST_LOG=warn MERCATO_LOG_FORMAT=json MERCATO_LISTEN=127.0.0.1:$PORT MERCATO_DATA_DIR=$WORK
export MERCATO_JWT_SECRET=bench-secret-bench-secret-bench-secret-00
export MERCATO_TEST_PAYMENT_WEBHOOK_SECRET=bench-webhook-secret-bench-webhook
# One load generator stands for thousands of shoppers: lift the per-client limits.
export MERCATO_RATE_LIMIT_READS_PER_SECOND=1000000000 MERCATO_RATE_LIMIT_WRITES_PER_SECOND=1000000000
export DATABASE_URL=$PG_URL/mercato_checkout_bench
export MERCATO_LOADTEST_PASSWORD="load test password 1234"

psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS mercato_checkout_bench WITH (FORCE)' -c 'CREATE DATABASE mercato_checkout_bench'
"$BIN" migrate
printf '%s' "$MERCATO_LOADTEST_PASSWORD" | "$BIN" admin create-staff --email load@example.com --role owner --password-stdin
"$BIN" serve & pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done

load() { # $1: report name, then loadtest flags
  local name=$1; shift
  "$BIN" loadtest --target "http://127.0.0.1:$PORT" --admin-email load@example.com \
    ${OUT:+--json "$OUT/$name.json" --html "$OUT/$name.html"} "$@"
}
[ -n "${OUT:-}" ] && mkdir -p "$OUT"
echo "### no hot spot: 1,000 variants, concurrency $CONCURRENCY, ${SECONDS_EACH}s"
load steady-1000 --scenario steady-checkout --concurrency "$CONCURRENCY" --step-seconds "$SECONDS_EACH" --variants 1000
echo "### one hot variant, concurrency $CONCURRENCY, ${SECONDS_EACH}s"
load steady-hot --scenario steady-checkout --concurrency "$CONCURRENCY" --step-seconds "$SECONDS_EACH" --variants 1
echo "### flash sale: $BUYERS buyers for $STOCK units, concurrency $SALE_CONCURRENCY"
load flash-sale --scenario flash-sale --buyers "$BUYERS" --stock "$STOCK" --concurrency "$SALE_CONCURRENCY"
kill -TERM $pid; wait $pid || true

echo "### pgbench: one row updated by every client, concurrency $CONCURRENCY, ${SECONDS_EACH}s"
psql "$PG_URL/mercato_checkout_bench" -qc 'CREATE TABLE hot_row (id int PRIMARY KEY, n bigint NOT NULL)' -c 'INSERT INTO hot_row VALUES (1, 0)'
echo 'UPDATE hot_row SET n = n + 1 WHERE id = 1;' > "$WORK/hot.sql"
pgbench -n -c "$CONCURRENCY" -j 2 -T "$SECONDS_EACH" -f "$WORK/hot.sql" "$PG_URL/mercato_checkout_bench" | grep -E "tps|latency"
