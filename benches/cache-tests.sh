#!/usr/bin/env bash
# RFC 9111 conformance: the public HTTP cache test suite (http-tests/cache-tests, npm `http-cache-tests`)
# run against verge with the managed UseOriginCacheControlHeaders-QueryStrings policy in front of the
# suite's own origin (AllViewer forwards the suite's request headers), errors cached as the origin says
# (error_caching_min_ttl: 0). Prints the number of tests passed, and each failure with the suite's message.
# Usage: benches/cache-tests.sh [TEST-ID]   (needs node and npm: apt-get install nodejs npm; the suite comes
# from the npm registry)  RESULTS=file keeps the suite's JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.4.5
. benches/common.sh
need node npm python3 -- nodejs npm python3
cargo build --release -q -p verge
bench_workdir
npm install --silent --no-audit --no-fund --prefix "$WORK/suite" "http-cache-tests@$VERSION" > /dev/null
SUITE=$WORK/suite/node_modules/http-cache-tests

ORIGIN=$(free_port); VERGE=$(free_port)
(cd "$SUITE" && npm_config_protocol=http npm_config_port=$ORIGIN npm_config_pidfile="$WORK/suite.pid" \
  exec node server/server.mjs > "$WORK/suite-server.log" 2>&1) &
cat > "$WORK/verge.yaml" <<YAML
server: { listen: ["127.0.0.1:$VERGE"], threads: 1 }
origins:
  - { id: suite, domain_name: 127.0.0.1, http_port: $ORIGIN }
default_cache_behavior:
  target_origin_id: suite
  cache_policy: UseOriginCacheControlHeaders-QueryStrings
  origin_request_policy: AllViewer   # the suite reads its own request headers (Req-Num, Test-ID) at the origin
  allowed_methods: [GET, HEAD, OPTIONS, PUT, POST, PATCH, DELETE]
# CloudFront keeps errors for ErrorCachingMinTTL (10 s) whatever the origin says; 0 lets the origin's
# freshness decide, as RFC 9111 does.
custom_error_responses:
$(for code in 400 403 404 405 414 416 500 501 502 503 504; do echo "  - { error_code: $code, error_caching_min_ttl: 0 }"; done)
YAML
VERGE_LOG=warn target/release/verge serve --config "$WORK/verge.yaml" > "$WORK/verge.log" 2>&1 &
wait_port "$ORIGIN"; wait_port "$VERGE"

(cd "$SUITE" && npm_config_base="http://127.0.0.1:$VERGE" npm_config_id="${1:-}" npm_package_config_id="" node --no-warnings cli.mjs) \
  > "$WORK/results.json"
if [ -n "${1:-}" ]; then cat "$WORK/results.json"; exit 0; fi
[ -z "${RESULTS:-}" ] || cp "$WORK/results.json" "$RESULTS"
python3 - "$WORK/results.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
passed = [k for k, v in results.items() if v is True]
failed = {k: v for k, v in results.items() if v is not True}
for k, v in sorted(failed.items()):
    print(f"  {k}: {v}")
print(f"cache-tests: {len(passed)} of {len(results)} passed")
PY
