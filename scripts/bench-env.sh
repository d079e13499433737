# Sourced by the checkout bench scripts: the shop settings every bench server and
# load generator shares. One load generator stands for thousands of shoppers, so
# the per-client rate limits are lifted.
export RUST_LOG=${RUST_LOG:-warn} MERCATO_LOG_FORMAT=json
export MERCATO_JWT_SECRET=bench-secret-bench-secret-bench-secret-00
export MERCATO_TEST_PAYMENT_WEBHOOK_SECRET=bench-webhook-secret-bench-webhook
export MERCATO_RATE_LIMIT_READS_PER_SECOND=1000000000 MERCATO_RATE_LIMIT_WRITES_PER_SECOND=1000000000
export MERCATO_DATABASE_MAX_CONNECTIONS=${POOL:-32}
export MERCATO_LOADTEST_PASSWORD="load test password 1234"
