#!/usr/bin/env bash
# 1 KiB cache-hit throughput with CloudFront's standard access log written to a file vs no log, one
# verge each (one worker, CPU 0), wrk on CPU 1, alternating rounds; prints each round and the median
# ratio (target >= 0.9).
# Usage: benches/access-log.sh [seconds-per-run]   (ROUNDS=3; needs wrk, nginx: apt-get install wrk nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-8}
ROUNDS=${ROUNDS:-3}
. benches/common.sh
need wrk nginx taskset -- wrk nginx util-linux
cargo build --release -q -p verge
bench_workdir
ORIGIN=$(free_port); PLAIN=$(free_port); POLICY=$(free_port)
cat > "$WORK/origin.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/origin.pid; error_log $WORK/origin-error.log warn;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; root $WORK/www; add_header Cache-Control "max-age=3600"; } }
CONF
taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" &
verge_hit_config "$PLAIN" "$ORIGIN" "$WORK/plain.yaml"
verge_hit_config "$POLICY" "$ORIGIN" "$WORK/policy.yaml"
sed -i "s|^server: { |server: { access_log: { file: $WORK/access.log }, |" "$WORK/policy.yaml"
VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/plain.yaml" > "$WORK/plain.log" 2>&1 &
VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/policy.yaml" > "$WORK/policy.log" 2>&1 &
wait_port $ORIGIN; wait_port $PLAIN; wait_port $POLICY
curl -s -o /dev/null "http://127.0.0.1:$POLICY/1k.bin"
for _ in $(seq 1 50); do grep -q '1k.bin' "$WORK/access.log" 2>/dev/null && break; sleep 0.1; done
grep -q '1k.bin' "$WORK/access.log" || { echo "no access log written" >&2; exit 1; }
alternate_rounds "no log" "http://127.0.0.1:$PLAIN/1k.bin" "CloudFront access log" "http://127.0.0.1:$POLICY/1k.bin"
