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
# PARTS ("pgbench roundtrip flash floor split flash2 steady browse": which parts to run;
# floor needs flash).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/mercato}
BUYERS=${BUYERS:-20000}
STOCK=${STOCK:-1000}
CONCURRENCY=${CONCURRENCY:-500}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PARTS=${PARTS:-pgbench roundtrip flash floor split flash2 steady browse}
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

# CPU time of every thread (ns, /proc/*/task/*/schedstat): "pid tid ns comm",
# read without starting a process per thread.
threads_cpu() {
  local t p c ns
  for t in /proc/[0-9]*/task/[0-9]*; do
    p=${t#/proc/}
    { read -r ns _ <"$t/schedstat" && read -r c <"$t/comm"; } 2>/dev/null && echo "${p%%/*} ${t##*/} $ns $c"
  done
}

# While a paying-only flash sale runs on one instance: the CPU its storm took
# per paid order, by process (server, load generator, PostgreSQL), from the
# moment every cart holds the variant until every order is paid (the watcher's
# own database session left out; a thread born in between counts from zero, one
# that ended in between is missed). Gives up after 5 minutes.
storm_cpu() { # database, orders
  local db=$1 orders=$2 n=0 t0 t1 own deadline=$((SECONDS + 300))
  coproc WATCH { psql "$PG_URL/$db" -At 2>/dev/null; }
  echo "SELECT pg_backend_pid();" >&"${WATCH[1]}"; read -r own <&"${WATCH[0]}"
  until [ "$n" -ge "$orders" ]; do
    sleep 0.01
    echo "SELECT count(*) FROM cart_items;" >&"${WATCH[1]}"; read -r n <&"${WATCH[0]}" || { echo "split: lost the database" >&2; return; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "split: the carts never all held the variant" >&2; return; }
  done
  threads_cpu >"$WORK/cpu0"; t0=$(date +%s%N); n=0
  until [ "$n" -ge "$orders" ]; do
    sleep 0.01
    echo "SELECT count(*) FROM orders WHERE status = 'paid';" >&"${WATCH[1]}"; read -r n <&"${WATCH[0]}" || { echo "split: lost the database" >&2; return; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "split: only $n of $orders orders were paid" >&2; return; }
  done
  threads_cpu >"$WORK/cpu1"; t1=$(date +%s%N)
  eval "exec ${WATCH[1]}>&-"
  awk -v srv="$(pgrep -f "$BIN serve" | head -1)" -v lg="$(pgrep -f "$BIN loadtest" | head -1)" -v own="$own" -v orders="$orders" -v wall=$((t1 - t0)) '
    NR == FNR { before[$2] = $3; next }
    $1 != own { d = $3 - before[$2]; g = $1 == srv ? "server" : $1 == lg ? "load generator" : $4 == "postgres" ? "PostgreSQL" : "other"; cpu[g] += d; all += d }
    END { printf "storm %.0f ms; CPU per paid order (ms):", wall / 1e6
          for (g in cpu) printf " %s %.3f,", g, cpu[g] / 1e6 / orders
          printf " all %.3f\n", all / 1e6 / orders }' "$WORK/cpu0" "$WORK/cpu1"
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
  floor)
    # After `flash`: the rows of a batch of paid checkouts, sent by pgbench as the
    # claims, the placing transaction and the paid transition with nothing else
    # around them (scripts/paid-order-writes.sql), two batches at a time, on a copy
    # of the flash shop. What the database needs per paid order, whatever the
    # server does (the busy share includes pgbench itself: a generous floor).
    batch=250
    echo "### floor: a paid order's rows alone, $batch orders per batch, 2 clients, 20 s"
    [ "$(psql "$PG_URL/postgres" -Atc "SELECT count(*) FROM pg_database WHERE datname = 'mercato_bench_flash'")" = 1 ] ||
      { echo "floor copies the flash part's shop: run PARTS=\"flash floor\"" >&2; exit 2; }
    psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS mercato_bench_floor WITH (FORCE)' \
      -c 'CREATE DATABASE mercato_bench_floor TEMPLATE mercato_bench_flash' 2>/dev/null
    psql "$PG_URL/mercato_bench_floor" -qc 'UPDATE stock_levels SET on_hand = 1000000000000, reserved = 0' \
      -c 'CREATE TABLE floor_carts AS SELECT row_number() OVER (ORDER BY id) AS n, id FROM carts' -c 'CREATE INDEX ON floor_carts (n)' -c 'ANALYZE'
    variant=$(psql "$PG_URL/mercato_bench_floor" -Atc "SELECT variant_id FROM order_lines LIMIT 1")
    location=$(psql "$PG_URL/mercato_bench_floor" -Atc "SELECT location_id FROM stock_levels WHERE variant_id = '$variant' LIMIT 1")
    carts=$(psql "$PG_URL/mercato_bench_floor" -Atc "SELECT count(*) FROM floor_carts")
    [ "$carts" -ge $((2 * batch + 2)) ] || { echo "floor needs at least $((2 * batch + 2)) carts (BUYERS)" >&2; exit 2; }
    read -r _ u0 n0 s0 i0 w0 q0 sq0 _ </proc/stat
    pgbench -n -M prepared -c 2 -j 2 -T 20 -D n="$batch" -D carts="$carts" -D V="$variant" -D L="$location" \
      -f scripts/paid-order-writes.sql "$PG_URL/mercato_bench_floor" >"$WORK/floor.txt"
    read -r _ u1 n1 s1 i1 w1 q1 sq1 _ </proc/stat
    grep -E "^tps" "$WORK/floor.txt"
    busy=$(( (u1 + n1 + s1 + q1 + sq1) - (u0 + n0 + s0 + q0 + sq0) )) all=$(( busy + (i1 + w1) - (i0 + w0) ))
    batches=$(awk '/^number of transactions actually processed/ { split($NF, f, "/"); print f[1] }' "$WORK/floor.txt")
    paid=$(psql "$PG_URL/mercato_bench_floor" -Atc "SELECT count(*) FROM orders WHERE id LIKE 'o%' AND status = 'paid'")
    [ "$paid" -eq $((batches * batch)) ] || { echo "floor: $paid orders paid for $batches batches of $batch" >&2; exit 1; }
    awk -v busy="$busy" -v all="$all" -v batch="$batch" \
      '/^tps/ { printf "paid orders/s: %.0f; machine busy %.0f %%\n", $3 * batch, 100 * busy / all }' "$WORK/floor.txt"
    ;;
  split)
    # Every buyer pays (buyers = stock), job workers off: where a paid checkout's CPU goes.
    echo "### flash sale: $STOCK buyers, $STOCK units, concurrency $CONCURRENCY, CPU by process"
    fresh_shop mercato_bench_split
    MERCATO_WORKERS=0 serve 18081
    storm_cpu mercato_bench_split "$STOCK" &
    pids+=($!)
    "$BIN" loadtest --scenario flash-sale --target http://127.0.0.1:18081 --admin-email load@example.com \
      --buyers "$STOCK" --stock "$STOCK" --concurrency "$CONCURRENCY" >"$WORK/split.txt" || true
    grep -A1 "^checkout" "$WORK/split.txt" || cat "$WORK/split.txt"
    wait "${pids[-1]}" || true
    stop_all
    ;;
  roundtrip)
    # What one client/database round trip costs this machine in CPU, everything
    # included: pgbench's prepared `SELECT 1` with both cores kept busy.
    echo "### round trip: pgbench -M prepared, SELECT 1, 32 clients, 5 s"
    echo 'SELECT 1;' >"$WORK/select1.sql"
    read -r _ u0 n0 s0 i0 w0 q0 sq0 _ </proc/stat
    tps=$(pgbench -n -M prepared -c 32 -j 2 -T 5 -f "$WORK/select1.sql" "$PG_URL/postgres" | awk '/^tps/ { print $3 }')
    read -r _ u1 n1 s1 i1 w1 q1 sq1 _ </proc/stat
    busy=$(( (u1 + n1 + s1 + q1 + sq1) - (u0 + n0 + s0 + q0 + sq0) ))
    awk -v tps="$tps" -v busy="$busy" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "round trips/s: %.0f; CPU per round trip: %.1f us\n", tps, busy / hz * 1e6 / (tps * 5) }'
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
