# Shared by the bench scripts (sourced, not run): tool checks, a work directory removed on exit, the
# cached objects, and loopback port helpers.

# need TOOL... -- PACKAGES: exits with the apt-get line when a tool is missing.
need() {
  local tools=() packages=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do tools+=("$1"); shift; done
  shift; packages=("$@")
  for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y ${packages[*]}" >&2; exit 1; }
  done
}

# A work directory with www/ (1k.bin, 100k.bin, 2k.txt: 2.5 KB of compressible text) and cache/, removed on exit with the servers started
# in the background (KEEP=1 keeps it for a look).
bench_workdir() {
  WORK=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
  mkdir -p "$WORK/www" "$WORK/cache"
  chmod 755 "$WORK" "$WORK/www"; chmod 777 "$WORK/cache"
  head -c 1024 /dev/urandom > "$WORK/www/1k.bin"
  head -c 102400 /dev/urandom > "$WORK/www/100k.bin"
  for i in $(seq 1 80); do printf '.c%d{color:#%06x;margin:%dpx}\n' "$i" $((i * 40503 % 16777216)) $((i % 17)); done > "$WORK/www/2k.txt"
  chmod 644 "$WORK"/www/*
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT [TRIES] [INTERVAL]: waits until something listens (a server under valgrind takes seconds).
wait_port() {
  local tries=${2:-100} interval=${3:-0.1}
  for _ in $(seq 1 "$tries"); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep "$interval"; done
  echo "port $1 never opened" >&2; exit 1
}

# nginx_edge ORIGIN_PORT [DIRECTIVE]: the `location /` of an nginx proxy_cache edge in front of the origin
# (uses the `edge` keys_zone the caller's http block declares), with one more directive if given.
nginx_edge() {
  cat <<LOCATION
    location / {
      proxy_pass http://127.0.0.1:$1;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_valid 200 1h;
      ${2:-}
    }
LOCATION
}

# verge_hit_config LISTEN_PORT ORIGIN_PORT FILE: the verge distribution the hit benches measure (one
# worker, CachingOptimized in front of the origin).
verge_hit_config() {
  cat > "$3" <<YAML
server: { listen: ["127.0.0.1:$1"], threads: 1, cache: { memory_mb: 256, max_object_mb: 8 } }
origins:
  - { id: origin, domain_name: 127.0.0.1, http_port: $2 }
default_cache_behavior: { target_origin_id: origin, cache_policy: CachingOptimized }
YAML
}

# alternate_rounds LABEL_A URL_A LABEL_B URL_B: ROUNDS alternating wrk runs (DURATION s, 32 connections,
# wrk on CPU 1) of A then B; prints each round and the median of B/A.
alternate_rounds() {
  local label_a=$1 url_a=$2 label_b=$3 url_b=$4 ratios=() a b r
  for url in "$url_a" "$url_b"; do curl -s -o /dev/null "$url"; curl -s -o /dev/null "$url"; done
  for round in $(seq 1 "$ROUNDS"); do
    a=$(taskset -c 1 wrk -t1 -c32 -d"${DURATION}s" "$url_a" | awk '/Requests\/sec/ {print $2}')
    b=$(taskset -c 1 wrk -t1 -c32 -d"${DURATION}s" "$url_b" | awk '/Requests\/sec/ {print $2}')
    r=$(echo "$b / $a" | bc -l)
    ratios+=("$r")
    printf "round %d: %s %.0f req/s, %s %.0f req/s, ratio %.3f\n" "$round" "$label_a" "$a" "$label_b" "$b" "$r"
  done
  printf "%s / %s (median of %d rounds): %.2f\n" "$label_b" "$label_a" "$ROUNDS" \
    "$(printf "%s\n" "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
}

# nginx_origin PORT [PREFIX...]: a one-worker nginx origin serving www/ with `Cache-Control: max-age=3600`
# on PORT (and 1k.bin for any path under /m/, so that every request can be a new object), started in the
# background (run under PREFIX, e.g. `taskset -c 1`).
nginx_origin() {
  local port=$1; shift
  cat > "$WORK/origin.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/origin.pid; error_log $WORK/origin-error.log warn;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$port; root $WORK/www; add_header Cache-Control "max-age=3600"; location /m/ { try_files /1k.bin =404; } } }
CONF
  "$@" nginx -c "$WORK/origin.conf" -p "$WORK" &
}

# origin_and_two_verges SED_EXPR: an nginx origin serving www/ (CPU 1) and two one-worker verges in front
# of it (CPU 0): on $PLAIN the hit config, on $VARIANT the same config with SED_EXPR applied.
origin_and_two_verges() {
  ORIGIN=$(free_port); PLAIN=$(free_port); VARIANT=$(free_port)
  nginx_origin "$ORIGIN" taskset -c 1
  verge_hit_config "$PLAIN" "$ORIGIN" "$WORK/plain.yaml"
  verge_hit_config "$VARIANT" "$ORIGIN" "$WORK/variant.yaml"
  sed -i "$1" "$WORK/variant.yaml"
  VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/plain.yaml" > "$WORK/plain.log" 2>&1 &
  VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/variant.yaml" > "$WORK/variant.log" 2>&1 &
  wait_port "$ORIGIN"; wait_port "$PLAIN"; wait_port "$VARIANT"
}

# nginx_head: the start of the one-worker nginx.conf the nginx-vs-verge benches share, up to and including
# the `edge` proxy_cache zone inside `http {` (the caller adds its servers and the closing braces).
nginx_head() {
  cat <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  proxy_cache_path $WORK/cache levels=1:2 keys_zone=edge:10m max_size=256m inactive=1h use_temp_path=off;
CONF
}
