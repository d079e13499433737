#!/usr/bin/env bash
# Catalog list benchmark (docs/BENCHMARKS.md): GET /v1/products with a category
# filter on a seeded catalog, on SQLite and on PostgreSQL, measured with wrk, plus
# the query plans of the list queries.
#
#   cargo build --release && scripts/bench-catalog.sh
#
# Settings: PRODUCTS (100000), CONCURRENCY (64), DURATION (30s), PG_URL
# (postgres://postgres@127.0.0.1:5432), KEEP=1 to reuse an already seeded catalog.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/mercato}
PRODUCTS=${PRODUCTS:-100000}
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-30s}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
WORK=${WORK:-/tmp/mercato-bench}
PORT=18080

export RUST_LOG=warn MERCATO_LOG_FORMAT=json MERCATO_LISTEN=127.0.0.1:$PORT
# The benchmark measures the catalog, not the per-client limiter.
export MERCATO_RATE_LIMIT_READS_PER_SECOND=1000000000
export MERCATO_JWT_SECRET=bench-secret-bench-secret-bench-secret-00
export MERCATO_DATA_DIR=$WORK

QUERIES=(
  "category=women"
  "category=women-dresses"
  "category=women&sort=price_asc"
)

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
mkdir -p "$WORK"

bench() { # label, DATABASE_URL
  local label=$1 url=$2
  export DATABASE_URL=$url
  if [ "${KEEP:-0}" != 1 ]; then
    echo "### seeding $PRODUCTS products on $label"
    /usr/bin/time -f "seed: %e s, max RSS %M KB" "$BIN" seed --demo --products "$PRODUCTS"
  fi
  "$BIN" serve & local pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done
  for q in "${QUERIES[@]}"; do
    echo "### $label  GET /v1/products?$q  (wrk -t2 -c$CONCURRENCY -d$DURATION)"
    curl -fs "http://127.0.0.1:$PORT/v1/products?$q" | head -c 200; echo
    wrk -t2 -c"$CONCURRENCY" -d"$DURATION" --latency "http://127.0.0.1:$PORT/v1/products?$q"
    echo "### plan ($label): mercato admin explain-products '$q'"
    "$BIN" admin explain-products "$q"
  done
  echo "### $label server RSS: $(ps -o rss= -p $pid) KB"
  kill -TERM $pid; wait $pid || true
}

if [ "${KEEP:-0}" != 1 ]; then
  rm -f "$WORK"/mercato.db*
  psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS mercato_bench WITH (FORCE)' -c 'CREATE DATABASE mercato_bench'
fi
bench sqlite "sqlite://$WORK/mercato.db?mode=rwc"
bench postgres "$PG_URL/mercato_bench"
