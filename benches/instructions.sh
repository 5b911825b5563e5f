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
. benches/common.sh
need valgrind nginx ab -- valgrind nginx apache2-utils
cargo build --release -q -p verge
bench_workdir

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
  ab -q -k -c 4 -n "$n" "http://127.0.0.1:$PORT$path" > /dev/null
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

verge_server() {
  PORT=$(free_port)
  verge_hit_config "$PORT" "$ORIGIN" "$WORK/verge.yaml"
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
$(nginx_edge "$ORIGIN")
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
