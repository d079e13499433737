#!/usr/bin/env bash
# A/B (docs/BENCHMARKS.md §5): steady checkout, 1,000 variants, c=64, 20 s, against two
# builds of the server in turn (BEFORE, AFTER), the load generator of AFTER for both.
#   git worktree add /tmp/before <rev> && (cd /tmp/before && cargo build --release)
#   BEFORE=/tmp/before/target/release/mercato scripts/bench-ab-steady.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OLD=${BEFORE:?path of the mercato binary before}
NEW=${AFTER:-target/release/mercato}
GEN=$NEW
PG_URL=postgres://postgres@127.0.0.1:5432
source scripts/bench-env.sh
export MERCATO_LISTEN=127.0.0.1:18085
for round in 1 2; do
for which in OLD NEW; do
  BIN=${!which}
  WORK=$(mktemp -d); export MERCATO_DATA_DIR=$WORK
  export DATABASE_URL=$PG_URL/mercato_ab
  psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS mercato_ab WITH (FORCE)' -c 'CREATE DATABASE mercato_ab' 2>/dev/null
  $BIN migrate >/dev/null
  printf '%s' "$MERCATO_LOADTEST_PASSWORD" | $BIN admin create-staff --email load@example.com --role owner --password-stdin >/dev/null
  $BIN serve 2>/dev/null & pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:18085/readyz" >/dev/null && break; sleep 0.2; done
  echo "== round $round $which"
  $GEN loadtest --scenario steady-checkout --target http://127.0.0.1:18085 --admin-email load@example.com --variants 1000 --concurrency 64 --step-seconds 20 2>&1 | grep -E "^c=64|checkout |verdict"
  kill -TERM $pid; wait $pid
done
done
