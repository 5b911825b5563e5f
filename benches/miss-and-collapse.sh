#!/usr/bin/env bash
# Miss path and request collapsing, verge vs nginx proxy_cache, same machine, same run.
#  1. miss path: every request a new URL (wrk + Lua), so every request goes to the origin; req/s and ratio.
#  2. collapsing: 100 concurrent requests for one cold key to an origin that takes 1 s; origin request count.
# Each server under test is pinned to CPU 0 with one worker; wrk/curl run on CPU 1.
# Usage: benches/miss-and-collapse.sh [seconds-per-run]   (needs wrk, nginx, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
for tool in wrk nginx taskset python3 curl; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx curl" >&2; exit 1; }
done
cargo build --release -q -p verge
WORK=$(mktemp -d); chmod 755 "$WORK"; mkdir -p "$WORK/cache"; chmod 777 "$WORK/cache"
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
ORIGIN=$(free_port); SLOW=$(free_port); NGINX=$(free_port); VERGE=$(free_port)

# The fast origin (nginx, CPU 1) answers any path with 1 KiB; the slow origin (python) takes 1 s and counts.
cat > "$WORK/origin.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/origin.pid; error_log $WORK/origin-error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN; location / { add_header Cache-Control "max-age=3600"; return 200 "$(head -c 1024 /dev/zero | tr '\0' x)"; } } }
CONF
taskset -c 1 nginx -c "$WORK/origin.conf" -p "$WORK" &
cat > "$WORK/slow.py" <<'PY'
import http.server, sys, threading, time
count = 0
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        global count
        if self.path == "/count":
            body = str(count).encode()
        else:
            with lock:
                count += 1
            time.sleep(1)
            body = b"slow"
        self.send_response(200); self.send_header("cache-control", "max-age=3600")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
taskset -c 1 python3 "$WORK/slow.py" "$SLOW" &
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  proxy_cache_path $WORK/cache levels=1:2 keys_zone=edge:50m max_size=256m inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server { listen 127.0.0.1:$NGINX;
    location /slow/ { proxy_pass http://127.0.0.1:$SLOW; proxy_cache edge; proxy_cache_lock on; proxy_cache_lock_timeout 10s; }
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_cache edge; } } }
CONF
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" &
cat > "$WORK/verge.yaml" <<YAML
server: { listen: ["127.0.0.1:$VERGE"], threads: 1, cache: { memory_mb: 256 } }
origins:
  - { id: origin, domain_name: 127.0.0.1, http_port: $ORIGIN }
  - { id: slow, domain_name: 127.0.0.1, http_port: $SLOW }
default_cache_behavior: { target_origin_id: origin }
cache_behaviors:
  - { path_pattern: /slow/*, target_origin_id: slow }
YAML
VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/verge.yaml" > "$WORK/verge.log" 2>&1 &
wait_port $ORIGIN; wait_port $SLOW; wait_port $NGINX; wait_port $VERGE

cat > "$WORK/unique.lua" <<'LUA'
local n = 0
request = function() n = n + 1; return wrk.format("GET", "/miss/" .. math.random(1, 1e9) .. "/" .. n) end
LUA
miss() { taskset -c 1 wrk -t1 -c32 -d"${DURATION}s" -s "$WORK/unique.lua" "$1" | awk '/Requests\/sec/ {print $2}'; }
n=$(miss "http://127.0.0.1:$NGINX"); v=$(miss "http://127.0.0.1:$VERGE")
printf "miss path (unique URLs, 1 KiB): nginx %.0f req/s, verge %.0f req/s, verge/nginx %.2f\n" "$n" "$v" "$(echo "$v / $n" | bc -l)"

collapse() { # server port, key -> origin requests made for 100 concurrent viewers
  local before after
  before=$(curl -s "http://127.0.0.1:$SLOW/count")
  seq 1 100 | taskset -c 1 xargs -P 100 -I{} curl -s -o /dev/null "http://127.0.0.1:$1/slow/$2"
  after=$(curl -s "http://127.0.0.1:$SLOW/count")
  echo $((after - before))
}
printf "collapsing (100 concurrent requests, one cold key, 1 s origin): origin requests: nginx %s, verge %s\n" \
  "$(collapse $NGINX cold-nginx)" "$(collapse $VERGE cold-verge)"
