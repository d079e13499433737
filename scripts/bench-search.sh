#!/usr/bin/env bash
# Search and catalog-cache benchmarks (docs/BENCHMARKS.md §6).
#
#   cargo build --release && scripts/bench-search.sh
#
# 1. Seeds PRODUCTS (1,000,000) demo products into a SQLite shop under WORK
#    (KEEP=1 reuses a seeded one), times `mercato admin reindex` and prints the
#    index size.
# 2. Serves that shop and runs `mercato loadtest --scenario search` (a title word,
#    one in five misspelt, plus two filters, every facet, each query drawn anew)
#    at CONCURRENCY (32) for DURATION seconds (30); prints the server's RSS.
# 3. Product pages on PostgreSQL (PG_PRODUCTS, 100,000 products): wrk over 10,000
#    random product pages at concurrency 64, with the catalog cache off
#    (MERCATO_CACHE_MAX_MB=0) and on (after one warm-up pass), in one run.
# Parts: PARTS="index search pages" (default all).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/mercato}
PRODUCTS=${PRODUCTS:-1000000}
PG_PRODUCTS=${PG_PRODUCTS:-100000}
CONCURRENCY=${CONCURRENCY:-32}
DURATION=${DURATION:-30}
WORK=${WORK:-/tmp/mercato-bench-search}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PARTS=${PARTS:-index search pages}
PORT=18090

export RUST_LOG=warn MERCATO_LOG_FORMAT=json MERCATO_LISTEN=127.0.0.1:$PORT
export MERCATO_RATE_LIMIT_READS_PER_SECOND=1000000000
export MERCATO_JWT_SECRET=bench-secret-bench-secret-bench-secret-00
export MERCATO_WORKERS=0
mkdir -p "$WORK"
[ -x "$BIN" ] || { echo "no mercato binary at $BIN: cargo build --release (same CARGO_TARGET_DIR), or set BIN" >&2; exit 1; }

wait_up() {
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "server did not come up" >&2
  exit 1
}

if [[ " $PARTS " == *" index "* || " $PARTS " == *" search "* ]]; then
  export MERCATO_DATA_DIR=$WORK/sqlite
  unset DATABASE_URL
  if [ "${KEEP:-0}" != 1 ]; then
    rm -rf "$MERCATO_DATA_DIR"
    echo "### seeding $PRODUCTS products (SQLite)"
    /usr/bin/time -f "seed: %e s, max RSS %M KB" "$BIN" seed --demo --products "$PRODUCTS"
  fi
fi

if [[ " $PARTS " == *" index "* ]]; then
  echo "### mercato admin reindex"
  /usr/bin/time -f "reindex: %e s wall, %U s user, max RSS %M KB" "$BIN" admin reindex
  du -sh "$MERCATO_DATA_DIR/search"
fi

if [[ " $PARTS " == *" search "* ]]; then
  echo "### search at concurrency $CONCURRENCY"
  "$BIN" serve & server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  wait_up
  echo "RSS after start: $(ps -o rss= -p $server) KB"
  "$BIN" loadtest --target "http://127.0.0.1:$PORT" --scenario search --concurrency "$CONCURRENCY" \
    --step-seconds "$DURATION" --json "$WORK/search.json" | tail -n 25
  echo "RSS after the run: $(ps -o rss= -p $server) KB"
  kill $server; wait $server || true
  trap - EXIT
fi

if [[ " $PARTS " == *" pages "* ]]; then
  db=mercato_bench_pages
  export MERCATO_DATA_DIR=$WORK/pg
  export DATABASE_URL=$PG_URL/$db
  if [ "${KEEP:-0}" != 1 ]; then
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    rm -rf "$MERCATO_DATA_DIR"
    echo "### seeding $PG_PRODUCTS products (PostgreSQL)"
    /usr/bin/time -f "seed: %e s" "$BIN" seed --demo --products "$PG_PRODUCTS"
  fi
  psql "$DATABASE_URL" -Atc "SELECT '/v1/products/' || slug FROM products WHERE status = 'published' ORDER BY md5(id) LIMIT 10000" > "$WORK/pages.txt"
  cat > "$WORK/pages.lua" <<LUA
local paths = {}
for line in io.lines("$WORK/pages.txt") do paths[#paths + 1] = line end
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
LUA
  for mode in off on; do
    if [ $mode = off ]; then export MERCATO_CACHE_MAX_MB=0; else export MERCATO_CACHE_MAX_MB=256; fi
    "$BIN" serve & server=$!
    trap 'kill $server 2>/dev/null || true' EXIT
    wait_up
    if [ $mode = on ]; then
      wrk -t2 -c64 -d15s -s "$WORK/pages.lua" "http://127.0.0.1:$PORT" >/dev/null
    fi
    echo "### product pages, cache $mode"
    wrk -t2 -c64 -d"${DURATION}s" --latency -s "$WORK/pages.lua" "http://127.0.0.1:$PORT"
    kill $server; wait $server || true
    trap - EXIT
  done
fi
