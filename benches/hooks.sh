#!/usr/bin/env bash
# Hook costs, measured against baselines in the same run:
#  1. per-invocation latency of the security-headers hook: SDK ABI warm / fresh instance, WASI command;
#  2. 1 KiB cache-hit throughput of verge with the security-headers viewer-response hook vs without.
# Servers pinned to CPU 0 (one worker each), wrk on CPU 1.
# Usage: [ROUNDS=3] benches/hooks.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
for tool in wrk nginx taskset; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx util-linux" >&2; exit 1; }
done
cargo build --release -q --target wasm32-wasip1 --manifest-path examples/Cargo.toml
cargo build --release -q -p verge
echo "== per-invocation latency (single thread)"
env -u RUST_BACKTRACE cargo bench -q -p verge-hooks --bench invoke 2>/dev/null | grep -E 'p50'

WORK=$(mktemp -d); chmod 755 "$WORK"; mkdir -p "$WORK/www"; chmod 755 "$WORK/www"
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT
head -c 1024 /dev/urandom > "$WORK/www/1k.bin"; chmod 644 "$WORK/www/1k.bin"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
ORIGIN=$(free_port); PLAIN=$(free_port); HOOKED=$(free_port)
cat > "$WORK/origin.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/origin.pid; error_log $WORK/origin-error.log warn;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; root $WORK/www; add_header Cache-Control "max-age=3600"; } }
CONF
taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" &
target/release/verge functions publish security-headers examples/target/wasm32-wasip1/release/security_headers.wasm --store "$WORK/functions" >/dev/null
for variant in plain hooked; do
  port=$PLAIN; [ $variant = hooked ] && port=$HOOKED
  {
    echo "server: { listen: [\"127.0.0.1:$port\"], threads: 1 }"
    echo "functions: { store: $WORK/functions }"
    echo "origins: [ { id: origin, domain_name: 127.0.0.1, http_port: $ORIGIN } ]"
    echo "default_cache_behavior:"
    echo "  target_origin_id: origin"
    if [ $variant = hooked ]; then
      echo "  lambda_function_associations:"
      echo "    - { event_type: viewer-response, lambda_function_arn: 'arn:aws:lambda:us-east-1:000000000000:function:security-headers:1' }"
    fi
  } > "$WORK/$variant.yaml"
done
# Both servers run at once (the idle one costs nothing) and are measured in alternating rounds, so
# drift in the machine's speed hits both alike; the ratio reported is the median of the rounds.
VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/plain.yaml" > "$WORK/plain.log" 2>&1 &
VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/hooked.yaml" > "$WORK/hooked.log" 2>&1 &
wait_port $ORIGIN; wait_port $PLAIN; wait_port $HOOKED
curl -s -D - -o /dev/null "http://127.0.0.1:$HOOKED/1k.bin" | grep -qi '^x-frame-options: DENY' || { echo "hook did not run" >&2; exit 1; }
measure() {
  curl -s -o /dev/null "$1"; curl -s -o /dev/null "$1"
  taskset -c 1 wrk -t1 -c32 -d"${DURATION}s" "$1" | awk '/Requests\/sec/ {print $2}'
}
echo "== 1 KiB cache hits, one core (${ROUNDS} alternating rounds of ${DURATION} s)"
ratios=()
for round in $(seq 1 "$ROUNDS"); do
  p=$(measure "http://127.0.0.1:$PLAIN/1k.bin")
  h=$(measure "http://127.0.0.1:$HOOKED/1k.bin")
  r=$(echo "$h / $p" | bc -l)
  ratios+=("$r")
  printf "round %d: without hook %.0f req/s, with security-headers viewer-response hook %.0f req/s, ratio %.3f\n" "$round" "$p" "$h" "$r"
done
median=$(printf "%s\n" "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
printf "hook throughput ratio (median of %d rounds): %.2f\n" "$ROUNDS" "$median"
