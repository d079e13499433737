#!/usr/bin/env bash
# Flash-sale benchmark (docs/BENCHMARKS.md §5): pgbench's single-row conditional
# update at the sale's concurrency (the ceiling of one transaction per buyer), then
# `mercato loadtest --scenario flash-sale` against PostgreSQL-backed shops: one
# `mercato serve`, then two on the same database. Then steady checkout (1,000
# variants) next to pgbench's TPC-B, and browsing a 100,000-product catalog.
#
#   cargo build --release && scripts/bench-flash-sale.sh
#
# PostgreSQL needs max_connections above the concurrency (700 here:
# ALTER SYSTEM SET max_connections = 700, then a restart).
# Settings: BUYERS (20000), STOCK (1000), CONCURRENCY (500), PG_URL,
# PARTS ("pgbench flash flash2 steady browse": which parts to run).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/mercato}
BUYERS=${BUYERS:-20000}
STOCK=${STOCK:-1000}
CONCURRENCY=${CONCURRENCY:-500}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PARTS=${PARTS:-pgbench flash flash2 steady browse}
WORK=$(mktemp -d)
OUT=${OUT:-$WORK}

source scripts/bench-env.sh
export MERCATO_DATA_DIR=$WORK
# pgbench and psql on the loopback without TLS, as the shop itself connects there.
export PGSSLMODE=${PGSSLMODE:-disable}
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done' EXIT

fresh_shop() { # database name
  export DATABASE_URL=$PG_URL/$1
  psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" 2>/dev/null
  "$BIN" migrate >/dev/null
  printf '%s' "$MERCATO_LOADTEST_PASSWORD" | "$BIN" admin create-staff --email load@example.com --role owner --password-stdin >/dev/null
}

serve() { # port
  # Each instance keeps its own search index (one process may hold an index).
  MERCATO_LISTEN=127.0.0.1:$1 MERCATO_SEARCH_PATH=$WORK/search-$1 "$BIN" serve 2>>"$WORK/serve-$1.log" &
  pids+=($!)
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.2; done
  echo "serve on $1 did not start" >&2; exit 1
}

stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}

for part in $PARTS; do
  case $part in
  pgbench)
    echo "### pgbench: one row, conditional update, concurrency $CONCURRENCY, 20 s"
    psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS mercato_bench_hot WITH (FORCE)' -c 'CREATE DATABASE mercato_bench_hot' 2>/dev/null
    psql "$PG_URL/mercato_bench_hot" -qc 'CREATE TABLE hot (id int PRIMARY KEY, on_hand bigint NOT NULL, reserved bigint NOT NULL, CHECK (reserved <= on_hand))' \
      -c 'INSERT INTO hot VALUES (1, 1000000000000, 0)'
    echo 'UPDATE hot SET reserved = reserved + 1 WHERE id = 1 AND on_hand - reserved >= 1;' >"$WORK/hot.sql"
    pgbench -n -c "$CONCURRENCY" -j 2 -T 20 -f "$WORK/hot.sql" "$PG_URL/mercato_bench_hot" | grep -E "^tps|latency average"
    ;;
  flash)
    echo "### flash sale: $BUYERS buyers, $STOCK units, concurrency $CONCURRENCY, one instance"
    fresh_shop mercato_bench_flash
    serve 18081
    "$BIN" loadtest --scenario flash-sale --target http://127.0.0.1:18081 --admin-email load@example.com \
      --buyers "$BUYERS" --stock "$STOCK" --concurrency "$CONCURRENCY" --json "$OUT/flash-sale.json" --html "$OUT/flash-sale.html"
    stop_all
    ;;
  flash2)
    echo "### flash sale: $BUYERS buyers, $STOCK units, concurrency $CONCURRENCY, two instances on one database"
    fresh_shop mercato_bench_flash2
    serve 18081
    serve 18082
    "$BIN" loadtest --scenario flash-sale --target http://127.0.0.1:18081,http://127.0.0.1:18082 --admin-email load@example.com \
      --buyers "$BUYERS" --stock "$STOCK" --concurrency "$CONCURRENCY" --json "$OUT/flash-sale-2.json"
    stop_all
    ;;
  steady)
    echo "### pgbench TPC-B (scale 10), concurrency 64, 30 s"
    psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS mercato_bench_tpcb WITH (FORCE)' -c 'CREATE DATABASE mercato_bench_tpcb' 2>/dev/null
    pgbench -i -s 10 -q "$PG_URL/mercato_bench_tpcb" 2>/dev/null
    pgbench -n -c 64 -j 2 -T 30 "$PG_URL/mercato_bench_tpcb" | grep -E "^tps|latency average"
    echo "### steady checkout: 1,000 variants, concurrency 64, 30 s"
    fresh_shop mercato_bench_steady
    serve 18081
    "$BIN" loadtest --scenario steady-checkout --target http://127.0.0.1:18081 --admin-email load@example.com \
      --variants 1000 --concurrency 64 --step-seconds 30 --json "$OUT/steady.json"
    stop_all
    ;;
  browse)
    echo "### browse: 100,000 products, concurrency 64, 30 s"
    fresh_shop mercato_bench_browse
    "$BIN" seed --demo --products 100000 >/dev/null
    serve 18081
    "$BIN" loadtest --scenario browse --target http://127.0.0.1:18081 --concurrency 64 --step-seconds 30 --json "$OUT/browse.json"
    stop_all
    ;;
  esac
done
echo "reports in $OUT"
