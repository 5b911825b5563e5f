#!/usr/bin/env bash
# Resident memory per idle keep-alive viewer connection (each served one 1 KiB cache hit, then left open)
# and per in-flight request (a miss whose origin never answers), verge vs nginx proxy_cache, one worker
# each, in one run. The figure is the edge process's RSS growth divided by the count (nginx: its worker).
# Usage: [IDLE=10000 INFLIGHT=1000] benches/connection-memory.sh   (needs nginx, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-10000}
INFLIGHT=${INFLIGHT:-1000}
. benches/common.sh
need nginx python3 -- nginx python3
cargo build --release -q -p verge
bench_workdir
# Each idle connection is one descriptor in the client and one in the server; an in-flight request two
# in the server.
ulimit -n $(( IDLE * 2 + INFLIGHT * 4 + 1024 )) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

ORIGIN=$(free_port); HOLD=$(free_port); NGINX=$(free_port); VERGE=$(free_port)
python3 benches/connection_memory.py hold-origin "$HOLD" "$WORK/held" &
nginx_origin "$ORIGIN"
cat > "$WORK/edge.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/edge.pid; error_log $WORK/edge-error.log warn;
worker_rlimit_nofile $(( IDLE * 2 + INFLIGHT * 4 + 1024 ));
events { worker_connections $(( IDLE + INFLIGHT * 2 + 512 )); }
http {
  access_log off;
  keepalive_timeout 300s;
  proxy_cache_path $WORK/cache levels=1:2 keys_zone=edge:10m max_size=256m inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:$NGINX backlog=4096;
    location /hold/ { proxy_pass http://127.0.0.1:$HOLD; proxy_read_timeout 120s; proxy_cache edge; }
$(nginx_edge "$ORIGIN")
  }
}
CONF
nginx -c "$WORK/edge.conf" -p "$WORK" &
cat > "$WORK/verge.yaml" <<YAML
server: { listen: ["127.0.0.1:$VERGE"], threads: 1, viewer_idle_timeout: 300, max_connections: $(( IDLE + INFLIGHT + 512 )) }
origins:
  - { id: origin, domain_name: 127.0.0.1, http_port: $ORIGIN }
  - { id: hold, domain_name: 127.0.0.1, http_port: $HOLD, read_timeout: 120 }
default_cache_behavior: { target_origin_id: origin, cache_policy: CachingOptimized }
cache_behaviors:
  - { path_pattern: /hold/*, target_origin_id: hold, cache_policy: CachingOptimized }
YAML
VERGE_LOG=warn target/release/verge serve --config "$WORK/verge.yaml" > "$WORK/verge.log" 2>&1 &
VERGE_PID=$!
wait_port $ORIGIN; wait_port $HOLD; wait_port $NGINX; wait_port $VERGE
NGINX_WORKER=$(pgrep -P "$(cat "$WORK/edge.pid")" | head -1)
for url in "http://127.0.0.1:$NGINX/1k.bin" "http://127.0.0.1:$VERGE/1k.bin"; do
  curl -s -o /dev/null "$url"; curl -s -o /dev/null "$url"
done

measure() { # label pid port -> KB per idle connection, KB per in-flight request
  echo 0 > "$WORK/held"
  echo "$1 $(python3 benches/connection_memory.py measure "$2" "$3" "$IDLE" /1k.bin "$INFLIGHT" "$WORK/held")"
}
n=$(measure nginx "$NGINX_WORKER" "$NGINX")
v=$(measure verge "$VERGE_PID" "$VERGE")
printf "%-8s %22s %24s\n" server "KB per idle conn" "KB per in-flight req"
for line in "$n" "$v"; do
  read -r name idle inflight <<< "$line"
  printf "%-8s %22s %24s\n" "$name" "$idle" "$inflight"
done
read -r _ n_idle n_inflight <<< "$n"; read -r _ v_idle v_inflight <<< "$v"
printf "verge/nginx: idle %.2f, in-flight %.2f\n" "$(echo "$v_idle / $n_idle" | bc -l)" "$(echo "$v_inflight / $n_inflight" | bc -l)"
