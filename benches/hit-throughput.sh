#!/usr/bin/env bash
# Cache-hit throughput of verge vs nginx proxy_cache vs the origin served directly, same machine, same run.
# Each server under test is pinned to CPU 0 with one worker; wrk runs on CPU 1. Prints req/s, ratios and
# the 99th percentile latency at $CONNS (32) connections.
# Usage: benches/hit-throughput.sh [seconds-per-run]   (needs wrk and nginx: apt-get install wrk nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNS=${CONNS:-32}
. benches/common.sh
need wrk nginx taskset -- wrk nginx util-linux
cargo build --release -q -p verge
bench_workdir

ORIGIN=$(free_port); NGINX=$(free_port); VERGE=$(free_port)
cat > "$WORK/nginx.conf" <<CONF
$(nginx_head)
  server {
    listen 127.0.0.1:$ORIGIN;
    root $WORK/www;
    add_header Cache-Control "max-age=3600";
  }
  server {
    listen 127.0.0.1:$NGINX;
$(nginx_edge "$ORIGIN" 'add_header X-Cache $upstream_cache_status;')
  }
}
CONF
# nginx serves both the origin and the nginx edge with a single worker pinned to CPU 0.
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" &
verge_hit_config "$VERGE" "$ORIGIN" "$WORK/verge.yaml"
VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/verge.yaml" > "$WORK/verge.log" 2>&1 &
wait_port $ORIGIN; wait_port $NGINX; wait_port $VERGE

# measure URL: "requests/s p99-ms" of one wrk run.
measure() {
  curl -s -o /dev/null "$1"; curl -s -o /dev/null "$1"   # fill the cache
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$1" | awk '
    /Requests\/sec/ { rate = $2 }
    $1 == "99%" { v = $2; ms = v + 0; if (v ~ /us$/) ms /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) ms *= 1000 }
    END { print rate, ms }'
}
printf "%-6s %12s %12s %12s %14s %14s %14s %14s\n" size origin nginx-cache verge verge/nginx verge/origin \
  "nginx p99 ms" "verge p99 ms"
for size in 1k 100k; do
  read -r o _ <<< "$(measure "http://127.0.0.1:$ORIGIN/$size.bin")"
  read -r n np99 <<< "$(measure "http://127.0.0.1:$NGINX/$size.bin")"
  read -r v vp99 <<< "$(measure "http://127.0.0.1:$VERGE/$size.bin")"
  printf "%-6s %12.0f %12.0f %12.0f %14.2f %14.2f %14.2f %14.2f\n" "$size" "$o" "$n" "$v" "$(echo "$v / $n" | bc -l)" \
    "$(echo "$v / $o" | bc -l)" "$np99" "$vp99"
done
curl -s -D - -o /dev/null "http://127.0.0.1:$VERGE/1k.bin" | grep -i '^x-cache'
