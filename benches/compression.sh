#!/usr/bin/env bash
# Compressible 100 KiB text/html cache hits for a gzip-accepting client: verge (compress: true, the
# compressed variant stored once) vs nginx proxy_cache with `gzip on` (compresses every response), one
# worker each on CPU 0, wrk on CPU 1, in one run. Target: >= 3x.
# Usage: benches/compression.sh [seconds-per-run]   (needs wrk, nginx: apt-get install wrk nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
. benches/common.sh
need wrk nginx taskset python3 -- wrk nginx util-linux python3
cargo build --release -q -p verge
bench_workdir
# ~100 KiB of HTML made of words (compresses about 4x with gzip, like real pages).
python3 - "$WORK/www/page.html" <<'PY'
import random, sys
random.seed(7)
words = [''.join(random.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(random.randint(2, 9))) for _ in range(2000)]
out = ['<!doctype html><html><head><title>bench</title></head><body>']
while sum(len(x) for x in out) < 102400:
    out.append('<p class="c%d">%s</p>\n' % (random.randint(0, 9), ' '.join(random.choice(words) for _ in range(20))))
open(sys.argv[1], 'w').write(''.join(out)[:102400])
PY
chmod 644 "$WORK/www/page.html"
ORIGIN=$(free_port); NGINX=$(free_port); VERGE=$(free_port)
cat > "$WORK/nginx.conf" <<CONF
$(nginx_head)
  types { text/html html; }
  server {
    listen 127.0.0.1:$ORIGIN;
    root $WORK/www;
    add_header Cache-Control "max-age=3600";
  }
  server {
    listen 127.0.0.1:$NGINX;
    gzip on;
    gzip_proxied any;
$(nginx_edge "$ORIGIN")
  }
}
CONF
taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK" &
cat > "$WORK/verge.yaml" <<YAML
server: { listen: ["127.0.0.1:$VERGE"], threads: 1, cache: { memory_mb: 256, max_object_mb: 8 } }
origins:
  - { id: origin, domain_name: 127.0.0.1, http_port: $ORIGIN }
default_cache_behavior: { target_origin_id: origin, cache_policy: CachingOptimized, compress: true }
YAML
VERGE_LOG=warn taskset -c 0 target/release/verge serve --config "$WORK/verge.yaml" > "$WORK/verge.log" 2>&1 &
wait_port $ORIGIN; wait_port $NGINX; wait_port $VERGE

measure() { # url -> requests/s
  curl -s -H 'Accept-Encoding: gzip' -o /dev/null "$1"; curl -s -H 'Accept-Encoding: gzip' -o /dev/null "$1"
  taskset -c 1 wrk -t1 -c32 -d"${DURATION}s" -H 'Accept-Encoding: gzip' "$1" | awk '/Requests\/sec/ {print $2}'
}
for url in "http://127.0.0.1:$NGINX/page.html" "http://127.0.0.1:$VERGE/page.html"; do
  curl -s -H 'Accept-Encoding: gzip' -D - -o /dev/null "$url" | grep -i '^content-encoding: gzip' >/dev/null \
    || { echo "$url is not gzip-compressed" >&2; exit 1; }
done
n=$(measure "http://127.0.0.1:$NGINX/page.html")
v=$(measure "http://127.0.0.1:$VERGE/page.html")
printf "%-28s %12s %12s %12s\n" measure nginx verge verge/nginx
printf "%-28s %12.0f %12.0f %12.2f\n" "100 KiB html, gzip hits" "$n" "$v" "$(echo "$v / $n" | bc -l)"
printf "bytes per response: %s (nginx), %s (verge), from %s\n" \
  "$(curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$NGINX/page.html" | wc -c)" \
  "$(curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$VERGE/page.html" | wc -c)" "$(wc -c < "$WORK/www/page.html")"
