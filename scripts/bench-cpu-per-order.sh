#!/usr/bin/env bash
# CPU per order at a fixed arrival rate (docs/BENCHMARKS.md §5): steady checkout
# (1,000 variants) at RATE orders/s for SECS seconds against each build in turn,
# with the machine's busy CPU time (every process: server, database, load
# generator) read from /proc/stat around the run.
#   scripts/bench-cpu-per-order.sh /path/to/mercato-before /path/to/mercato-after
# Settings: RATE (80), SECS (30), ROUNDS (2), PG_URL, URL_SUFFIX (appended to
# DATABASE_URL, e.g. "?sslmode=require"; empty by default), GEN (the build whose
# load generator drives every run; the last one given by default).
set -uo pipefail
cd "$(dirname "$0")/.."
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
GEN=${GEN:-${!#}}
source scripts/bench-env.sh
export MERCATO_LISTEN=127.0.0.1:18086
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
pid= WORK=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; [ -n "$WORK" ] && rm -rf "$WORK"' EXIT
fail() { echo "$*" >&2; exit 1; }
for round in $(seq 1 "${ROUNDS:-2}"); do
  for BIN in "$@"; do
    WORK=$(mktemp -d)
    export MERCATO_DATA_DIR=$WORK DATABASE_URL=$PG_URL/mercato_cpu${URL_SUFFIX:-}
    psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS mercato_cpu WITH (FORCE)' -c 'CREATE DATABASE mercato_cpu' >/dev/null ||
      fail "cannot create the database at $PG_URL"
    "$BIN" migrate >/dev/null 2>&1 || fail "$BIN migrate failed"
    printf '%s' "$MERCATO_LOADTEST_PASSWORD" |
      "$BIN" admin create-staff --email load@example.com --role owner --password-stdin >/dev/null 2>&1 || fail "create-staff failed"
    "$BIN" serve 2>/dev/null & pid=$!
    ready=
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:18086/readyz" >/dev/null && ready=1 && break; sleep 0.2; done
    [ -n "$ready" ] || fail "$BIN serve did not become ready"
    before=$(busy)
    out=$("$GEN" loadtest --scenario steady-checkout --target http://127.0.0.1:18086 --admin-email load@example.com \
      --variants 1000 --rate "${RATE:-80}" --step-seconds "${SECS:-30}" 2>&1)
    after=$(busy)
    ticks=$(getconf CLK_TCK)
    cpu=$(awk -v t="$((after - before))" -v hz="$ticks" 'BEGIN { printf "%.1f", t / hz }')
    echo "round $round $BIN: busy CPU $cpu s (the load test's own setup of 1,000 variants included);$(echo "$out" | grep '^  checkout' | tr -s ' ')"
    kill -TERM "$pid"; wait "$pid"; pid=
    rm -rf "$WORK"; WORK=
  done
done
