#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind (repeatable to the instruction for the same
# binary and input, unlike wall-clock rates on a shared VM): verge vs nginx proxy_cache, one worker each,
# cached 1 KiB and 100 KiB objects. Each figure is (I(N2) - I(N1)) / (N2 - N1) over two runs of
# `ab -k -c 4`, so start-up and shutdown cancel out.
# Usage: [N1=1000 N2=3000] benches/instructions.sh      (needs valgrind, nginx, ab: apt-get install
# valgrind nginx apache2-utils)
#
# Not measured here yet: a hit with a hook (the wasmtime instance pool reserves more address space than
# valgrind maps) and the miss path (ab repeats one URL).
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-1000}
N2=${N2:-3000}
export VERGE_LOG=warn   # no access lines (nginx runs with access_log off)
for tool in valgrind nginx ab; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install -y valgrind nginx apache2-utils" >&2; exit 1; }
done
cargo build --release -q -p verge
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
mkdir -p "$WORK/www" "$WORK/cache"
chmod 755 "$WORK" "$WORK/www"; chmod 777 "$WORK/cache"
head -c 1024 /dev/urandom > "$WORK/www/1k.bin"
head -c 102400 /dev/urandom > "$WORK/www/100k.bin"
chmod 644 "$WORK"/www/*.bin

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Under valgrind a server takes seconds to start.
wait_port() { for _ in $(seq 1 1200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.25; done; echo "port $1 never opened" >&2; exit 1; }

ORIGIN=$(free_port)
cat > "$WORK/origin.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/origin.pid; error_log $WORK/origin-error.log warn;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; root $WORK/www; add_header Cache-Control "max-age=3600"; } }
CONF
nginx -c "$WORK/origin.conf" -p "$WORK" &
wait_port "$ORIGIN"

# Total instructions of one server process run under callgrind for `n` keep-alive hits on `path`.
# $1 name, $2 n, $3 path, $4.. the server command line; the server listens on $PORT.
count() {
  local name=$1 n=$2 path=$3; shift 3
  local out="$WORK/cg.$name.$n"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" > "$WORK/$name.$n.log" 2>&1 &
  local pid=$!
  wait_port "$PORT"
  curl -s -o /dev/null "http://127.0.0.1:$PORT$path"; curl -s -o /dev/null "http://127.0.0.1:$PORT$path"
  ab -q -k -c 4 -n "$n" "http://127.0.0.1:$PORT$path" > /dev/null
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

verge_server() {
  PORT=$(free_port)
  cat > "$WORK/verge.yaml" <<YAML
server: { listen: ["127.0.0.1:$PORT"], threads: 1, cache: { memory_mb: 256, max_object_mb: 8 } }
origins:
  - { id: origin, domain_name: 127.0.0.1, http_port: $ORIGIN }
default_cache_behavior: { target_origin_id: origin, cache_policy: CachingOptimized }
YAML
  VERGE_CMD=(target/release/verge serve --config "$WORK/verge.yaml")
}

nginx_server() {
  PORT=$(free_port)
  rm -rf "$WORK/cache"/*
  cat > "$WORK/edge.conf" <<CONF
worker_processes 1; master_process off; daemon off; pid $WORK/edge.pid; error_log $WORK/edge-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  proxy_cache_path $WORK/cache levels=1:2 keys_zone=edge:10m max_size=256m inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:$PORT;
    location / {
      proxy_pass http://127.0.0.1:$ORIGIN;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_valid 200 1h;
    }
  }
}
CONF
  NGINX_CMD=(nginx -c "$WORK/edge.conf" -p "$WORK")
}

per_request() { echo $(( ($2 - $1) / (N2 - N1) )); }

printf "%-8s %16s %16s %10s\n" object "nginx instr/req" "verge instr/req" verge/nginx
for path in /1k.bin /100k.bin; do
  nginx_server; n1=$(count nginx "$N1" "$path" "${NGINX_CMD[@]}")
  nginx_server; n2=$(count nginx "$N2" "$path" "${NGINX_CMD[@]}")
  verge_server; v1=$(count verge "$N1" "$path" "${VERGE_CMD[@]}")
  verge_server; v2=$(count verge "$N2" "$path" "${VERGE_CMD[@]}")
  n=$(per_request "$n1" "$n2"); v=$(per_request "$v1" "$v2")
  printf "%-8s %16d %16d %10.2f\n" "${path#/}" "$n" "$v" "$(echo "$v / $n" | bc -l)"
done
