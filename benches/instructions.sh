#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind (repeatable to the instruction for the same
# binary and input, unlike wall-clock rates on a shared VM): verge vs nginx, one worker each. Each figure
# is (I(N2) - I(N1)) / (N2 - N1) over two runs of `ab -k -c 4`, so start-up and shutdown cancel out.
# Rows:
#   1k.bin, 100k.bin  cached objects: verge (CachingOptimized) vs nginx proxy_cache;
#   1k.bin+hook       a cached 1 KiB object with the security-headers viewer-response hook vs nginx
#                     adding the same five headers with add_header (the hook's cost is this row's verge
#                     figure minus the 1k.bin row's);
#   1k.bin miss       every request to the origin, nothing stored: verge with CachingDisabled vs nginx
#                     with proxy_cache off, both on kept-alive origin connections;
#   1k.bin stored-miss every request a new path (one connection, `h2load --h1 -c 1 -i`), each a miss
#                     fetched and stored: verge with CachingOptimized (in memory) vs nginx proxy_cache
#                     (a file per object: its user-space side only, as everywhere here);
#   1k.bin h2         cached 1 KiB hits over HTTP/2 without TLS (h2c, prior knowledge; `h2load -c 4 -m 10`);
#   2k.txt gzip       cached hits on 2.5 KB of text for viewers that accept gzip (`h2load --h1 -c 4`):
#                     verge with `compress: true` (the compressed variant is stored, hits send it as it is)
#                     vs nginx with `gzip on` (its gzip filter runs after the cache, on every hit).
# Usage: [N1=1000 N2=3000] [ROWS="1k.bin:hit 1k.bin:miss"] benches/instructions.sh      (needs valgrind, nginx, ab: apt-get install
# valgrind nginx apache2-utils nghttp2-client; the hook row builds the examples for wasm32-wasip1)
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-1000}
N2=${N2:-3000}
export VERGE_LOG=warn   # no access lines (nginx runs with access_log off)
. benches/common.sh
need valgrind nginx ab h2load -- valgrind nginx apache2-utils nghttp2-client
cargo build --release -q -p verge
cargo build --release -q --target wasm32-wasip1 --manifest-path examples/Cargo.toml
bench_workdir
target/release/verge functions publish security-headers \
  examples/target/wasm32-wasip1/release/security_headers.wasm --store "$WORK/functions" > /dev/null
# Each wasmtime instance slot reserves its memory's whole address range; valgrind maps far less address
# space than the default pool (256 slots) asks for.
export VERGE_HOOK_INSTANCE_SLOTS=8

ORIGIN=$(free_port)
nginx_origin "$ORIGIN"
wait_port "$ORIGIN"

# Total instructions of one server process run under callgrind for `n` keep-alive hits on `path`.
# $1 name, $2 n, $3 path, $4.. the server command line; the server listens on $PORT.
count() {
  local name=$1 n=$2 path=$3; shift 3
  local out="$WORK/cg.$name.$n"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" > "$WORK/$name.$n.log" 2>&1 &
  local pid=$!
  wait_port "$PORT" 1200 0.25   # under valgrind a server takes seconds to start
  curl -s -o /dev/null "http://127.0.0.1:$PORT$path"; curl -s -o /dev/null "http://127.0.0.1:$PORT$path"
  if [ "${KIND:-}" = stored-miss ]; then
    seq 1 "$n" | sed "s|^|http://127.0.0.1:$PORT/m/$name-$n/|" > "$WORK/urls"
    h2load --h1 -c 1 -n "$n" -i "$WORK/urls" > /dev/null
  elif [ "${KIND:-}" = h2 ]; then
    h2load -c 4 -m 10 -n "$n" "http://127.0.0.1:$PORT$path" > /dev/null
  elif [ "${KIND:-}" = gzip ]; then
    h2load --h1 -c 4 -n "$n" -H "Accept-Encoding: gzip" "http://127.0.0.1:$PORT$path" > /dev/null
  else
    ab -q -k -c 4 -n "$n" "http://127.0.0.1:$PORT$path" > /dev/null
  fi
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

# verge_server KIND: the verge under test for a row (hit, hook, miss), on a fresh $PORT.
verge_server() {
  PORT=$(free_port)
  verge_hit_config "$PORT" "$ORIGIN" "$WORK/verge.yaml"
  case $1 in
    hook)
      sed -i "s|^origins:|functions: { store: $WORK/functions }\norigins:|" "$WORK/verge.yaml"
      sed -i "s|cache_policy: CachingOptimized }|cache_policy: CachingOptimized, lambda_function_associations: [ { event_type: viewer-response, lambda_function_arn: 'arn:aws:lambda:us-east-1:000000000000:function:security-headers:1' } ] }|" "$WORK/verge.yaml"
      ;;
    miss) sed -i "s|cache_policy: CachingOptimized|cache_policy: CachingDisabled|" "$WORK/verge.yaml" ;;
    h2) sed -i "s|threads: 1,|threads: 1, h2c: true,|" "$WORK/verge.yaml" ;;
    gzip) sed -i "s|cache_policy: CachingOptimized }|cache_policy: CachingOptimized, compress: true }|" "$WORK/verge.yaml" ;;
  esac
  VERGE_CMD=(target/release/verge serve --config "$WORK/verge.yaml")
}

# nginx_server KIND: the nginx baseline for a row, on a fresh $PORT.
nginx_server() {
  PORT=$(free_port)
  rm -rf "$WORK/cache"/*
  local location listen_options=""
  case $1 in
    hit|stored-miss) location=$(nginx_edge "$ORIGIN") ;;
    h2) location=$(nginx_edge "$ORIGIN"); listen_options=" http2" ;;
    hook) location=$(nginx_edge "$ORIGIN" "add_header Strict-Transport-Security \"max-age=63072000; includeSubDomains; preload\"; add_header X-Content-Type-Options nosniff; add_header X-Frame-Options DENY; add_header X-XSS-Protection \"1; mode=block\"; add_header Content-Security-Policy \"default-src 'self'; img-src 'self' data:; object-src 'none'\";") ;;
    gzip) location=$(nginx_edge "$ORIGIN" "gzip on; gzip_types text/plain; gzip_min_length 1000; gzip_proxied any;") ;;
    miss) location="location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; }" ;;
  esac
  cat > "$WORK/edge.conf" <<CONF
worker_processes 1; master_process off; daemon off; pid $WORK/edge.pid; error_log $WORK/edge-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  proxy_cache_path $WORK/cache levels=1:2 keys_zone=edge:10m max_size=256m inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 16; }
  server {
    listen 127.0.0.1:$PORT$listen_options;
$location
  }
}
CONF
  NGINX_CMD=(nginx -c "$WORK/edge.conf" -p "$WORK")
}

per_request() { echo $(( ($2 - $1) / (N2 - N1) )); }

printf "%-18s %16s %16s %10s\n" row "nginx instr/req" "verge instr/req" verge/nginx
for row in ${ROWS:-1k.bin:hit 100k.bin:hit 1k.bin:hook 1k.bin:miss 1k.bin:stored-miss 1k.bin:h2 2k.txt:gzip}; do
  path=/${row%%:*}; kind=${row#*:}; KIND=$kind
  nginx_server "$kind"; n1=$(count nginx "$N1" "$path" "${NGINX_CMD[@]}")
  nginx_server "$kind"; n2=$(count nginx "$N2" "$path" "${NGINX_CMD[@]}")
  if [ "$kind" = hook ]; then
    # Compile the function once into the store's code cache first, under valgrind too (the cache is keyed
    # by the CPU features wasmtime sees, which valgrind changes): otherwise only the first of the two runs
    # compiles it, and the difference between them comes out short by the compile (~3.7k per request).
    verge_server hook; count verge 10 "$path" "${VERGE_CMD[@]}" > /dev/null
  fi
  verge_server "$kind"; v1=$(count verge "$N1" "$path" "${VERGE_CMD[@]}")
  verge_server "$kind"; v2=$(count verge "$N2" "$path" "${VERGE_CMD[@]}")
  n=$(per_request "$n1" "$n2"); v=$(per_request "$v1" "$v2")
  label=${path#/}; [ "$kind" = hit ] || label="$label $kind"
  printf "%-18s %16d %16d %10.2f\n" "$label" "$n" "$v" "$(echo "$v / $n" | bc -l)"
done
