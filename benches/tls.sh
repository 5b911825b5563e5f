#!/usr/bin/env bash
# TLS and HTTP/2 cache hits, verge vs nginx proxy_cache, with the same certificate (ECDSA P-256), in one run.
# Each server has one worker pinned to CPU 0; the load generator runs on CPU 1. Three measures:
#   tls-hits     1 KiB hits over kept-alive HTTPS connections (wrk, 32 connections)
#   handshakes   a new TLS connection per request (wrk with `Connection: close`, 16 connections): full
#                handshakes per second, no resumption (wrk does not resume)
#   h2-hits      1 KiB hits over HTTP/2 (h2load, 32 connections x 10 streams)
# Usage: benches/tls.sh [seconds-per-run]   (needs wrk, h2load, nginx, openssl:
#        apt-get install wrk nghttp2-client nginx openssl)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
. benches/common.sh
need wrk h2load nginx openssl taskset -- wrk nghttp2-client nginx openssl util-linux
cargo build --release -q -p verge
bench_workdir

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
ORIGIN=$(free_port); NGINX=$(free_port); VERGE=$(free_port)
cat > "$WORK/nginx.conf" <<CONF
$(nginx_head)
  server {
    listen 127.0.0.1:$ORIGIN;
    root $WORK/www;
    add_header Cache-Control "max-age=3600";
  }
  server {
    listen 127.0.0.1:$NGINX ssl http2;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
$(nginx_edge "$ORIGIN")
  }
}
CONF
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" &
cat > "$WORK/verge.yaml" <<YAML
server:
  listen: [{ address: "127.0.0.1:$VERGE", tls: true }]
  certificates: [{ certificate_file: cert.pem, private_key_file: key.pem }]
  threads: 1
  cache: { memory_mb: 256, max_object_mb: 8 }
origins:
  - { id: origin, domain_name: 127.0.0.1, http_port: $ORIGIN }
default_cache_behavior: { target_origin_id: origin, cache_policy: CachingOptimized }
YAML
VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/verge.yaml" > "$WORK/verge.log" 2>&1 &
wait_port $ORIGIN; wait_port $NGINX; wait_port $VERGE

fill() { curl -sk -o /dev/null "$1"; curl -sk -o /dev/null "$1"; }
tls_hits() { fill "$1"; taskset -c 1 wrk -t1 -c32 -d"${DURATION}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
handshakes() {
  fill "$1"
  taskset -c 1 wrk -t1 -c16 -d"${DURATION}s" -H "Connection: close" "$1" | awk '/Requests\/sec/ {print $2}'
}
h2_hits() {
  fill "$1"
  taskset -c 1 h2load -c32 -m10 -D"$DURATION" "$1" 2>/dev/null | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}
printf "%-12s %12s %12s %12s\n" measure nginx verge verge/nginx
for measure in tls_hits handshakes h2_hits; do
  n=$($measure "https://127.0.0.1:$NGINX/1k.bin")
  v=$($measure "https://127.0.0.1:$VERGE/1k.bin")
  printf "%-12s %12.0f %12.0f %12.2f\n" "${measure/_/-}" "$n" "$v" "$(echo "$v / $n" | bc -l)"
done
curl -sk --http2 -D - -o /dev/null "https://127.0.0.1:$VERGE/1k.bin" | grep -i '^x-cache\|^HTTP'
