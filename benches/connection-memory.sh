#!/usr/bin/env bash
# Resident memory per idle keep-alive viewer connection (each served one 1 KiB cache hit, then left open),
# per in-flight request (a miss whose origin never answers) and per idle TLS connection, verge vs nginx
# proxy_cache, one worker each, in one run. The figure is the edge process's RSS growth divided by the
# count (nginx: its worker).
# Usage: [IDLE=10000 INFLIGHT=1000 TLS_IDLE=2000] benches/connection-memory.sh   (needs nginx, python3, openssl)
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-10000}
INFLIGHT=${INFLIGHT:-1000}
TLS_IDLE=${TLS_IDLE:-2000}
. benches/common.sh
need nginx python3 openssl -- nginx python3 openssl
cargo build --release -q -p verge
bench_workdir
# Each idle connection is one descriptor in the client and one in the server; an in-flight request two
# in the server.
FDS=$(( (IDLE + TLS_IDLE) * 2 + INFLIGHT * 4 + 1024 ))
ulimit -n $FDS 2>/dev/null || ulimit -n "$(ulimit -Hn)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

ORIGIN=$(free_port); HOLD=$(free_port); NGINX=$(free_port); VERGE=$(free_port)
NGINX_TLS=$(free_port); VERGE_TLS=$(free_port)
python3 benches/connection_memory.py hold-origin "$HOLD" "$WORK/held" &
nginx_origin "$ORIGIN"
cat > "$WORK/edge.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/edge.pid; error_log $WORK/edge-error.log warn;
worker_rlimit_nofile $FDS;
events { worker_connections $(( IDLE + TLS_IDLE + INFLIGHT * 2 + 512 )); }
http {
  access_log off;
  keepalive_timeout 300s;
  proxy_cache_path $WORK/cache levels=1:2 keys_zone=edge:10m max_size=256m inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:$NGINX backlog=4096;
    listen 127.0.0.1:$NGINX_TLS ssl backlog=4096;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    location /hold/ { proxy_pass http://127.0.0.1:$HOLD; proxy_read_timeout 120s; proxy_cache edge; }
$(nginx_edge "$ORIGIN")
  }
}
CONF
nginx -c "$WORK/edge.conf" -p "$WORK" &
cat > "$WORK/verge.yaml" <<YAML
server:
  listen: ["127.0.0.1:$VERGE", { address: "127.0.0.1:$VERGE_TLS", tls: true }]
  certificates: [{ certificate_file: cert.pem, private_key_file: key.pem }]
  threads: 1
  viewer_idle_timeout: 300
  max_connections: $(( IDLE + TLS_IDLE + INFLIGHT + 512 ))
origins:
  - { id: origin, domain_name: 127.0.0.1, http_port: $ORIGIN }
  - { id: hold, domain_name: 127.0.0.1, http_port: $HOLD, read_timeout: 120 }
default_cache_behavior: { target_origin_id: origin, cache_policy: CachingOptimized }
cache_behaviors:
  - { path_pattern: /hold/*, target_origin_id: hold, cache_policy: CachingOptimized }
YAML
VERGE_LOG=warn target/release/verge serve --config "$WORK/verge.yaml" > "$WORK/verge.log" 2>&1 &
VERGE_PID=$!
wait_port $ORIGIN; wait_port $HOLD; wait_port $NGINX; wait_port $VERGE; wait_port $NGINX_TLS; wait_port $VERGE_TLS
NGINX_WORKER=$(pgrep -P "$(cat "$WORK/edge.pid")" | head -1)
for url in "http://127.0.0.1:$NGINX/1k.bin" "http://127.0.0.1:$VERGE/1k.bin"; do
  curl -s -o /dev/null "$url"; curl -s -o /dev/null "$url"
done

measure() { # label pid port tls_port -> KB per idle connection, per in-flight request, per idle TLS connection
  echo 0 > "$WORK/held"
  echo "$1 $(python3 benches/connection_memory.py measure "$2" "$3" "$IDLE" /1k.bin "$INFLIGHT" "$WORK/held" "$4" "$TLS_IDLE")"
}
n=$(measure nginx "$NGINX_WORKER" "$NGINX" "$NGINX_TLS")
v=$(measure verge "$VERGE_PID" "$VERGE" "$VERGE_TLS")
printf "%-8s %22s %24s %22s\n" server "KB per idle conn" "KB per in-flight req" "KB per idle TLS conn"
for line in "$n" "$v"; do
  read -r name idle inflight tls <<< "$line"
  printf "%-8s %22s %24s %22s\n" "$name" "$idle" "$inflight" "$tls"
done
read -r _ n_idle n_inflight n_tls <<< "$n"; read -r _ v_idle v_inflight v_tls <<< "$v"
printf "verge/nginx: idle %.2f, in-flight %.2f, idle TLS %.2f\n" "$(echo "$v_idle / $n_idle" | bc -l)" \
  "$(echo "$v_inflight / $n_inflight" | bc -l)" "$(echo "$v_tls / $n_tls" | bc -l)"
