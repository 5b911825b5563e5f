#!/usr/bin/env bash
# 1 KiB cache-hit throughput with CloudFront's standard access log written to a file vs no log, one verge
# each (one worker, CPU 0), wrk on CPU 1, alternating rounds; prints each round and the median ratio
# (target >= 0.9).
# Usage: benches/access-log.sh [seconds-per-run]   (ROUNDS=3; needs wrk, nginx: apt-get install wrk nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-8}
ROUNDS=${ROUNDS:-3}
. benches/common.sh
need wrk nginx taskset -- wrk nginx util-linux
cargo build --release -q -p verge
bench_workdir
origin_and_two_verges "s|^server: { |server: { access_log: { file: $WORK/access.log }, |"
curl -s -o /dev/null "http://127.0.0.1:$VARIANT/1k.bin"
for _ in $(seq 1 50); do grep -q '1k.bin' "$WORK/access.log" 2>/dev/null && break; sleep 0.1; done
grep -q '1k.bin' "$WORK/access.log" || { echo "no access log written" >&2; exit 1; }
alternate_rounds "no log" "http://127.0.0.1:$PLAIN/1k.bin" "CloudFront access log" "http://127.0.0.1:$VARIANT/1k.bin"
