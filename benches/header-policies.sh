#!/usr/bin/env bash
# 1 KiB cache-hit throughput with the managed SecurityHeadersPolicy on the behavior vs without it, one
# verge each (one worker, CPU 0), wrk on CPU 1, alternating rounds; prints each round and the median
# ratio (target >= 0.95).
# Usage: benches/header-policies.sh [seconds-per-run]   (ROUNDS=3; needs wrk, nginx: apt-get install wrk nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-8}
ROUNDS=${ROUNDS:-3}
. benches/common.sh
need wrk nginx taskset -- wrk nginx util-linux
cargo build --release -q -p verge
bench_workdir
origin_and_two_verges 's/cache_policy: CachingOptimized }/cache_policy: CachingOptimized, response_headers_policy: SecurityHeadersPolicy }/'
curl -s -D - -o /dev/null "http://127.0.0.1:$VARIANT/1k.bin" | grep -qi '^strict-transport-security' || { echo "policy not applied" >&2; exit 1; }
alternate_rounds "no policy" "http://127.0.0.1:$PLAIN/1k.bin" "SecurityHeadersPolicy" "http://127.0.0.1:$VARIANT/1k.bin"
