#!/usr/bin/env bash
# Issue 23 A, reproduced: a ReplicaSet of 2 in a namespace whose quota allows 1 pod. Prints how
# many store writes the server made in 10 s once the ReplicaSet is there (the cluster-wide
# revision counts every write), beside an idle server's 10 s in the same run as the baseline.
# Usage: refused-create.sh [MINIK_BINARY]   (default: target/release/minik). Loopback only.
set -euo pipefail
minik=${1:-target/release/minik}
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
base=http://127.0.0.1:$port
"$minik" server --listen 127.0.0.1:$port --data-dir "$dir" --allow-anonymous-loopback >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
revision() { curl -sf "$base/api/v1/namespaces" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])'; }
writes_in_10s() { local a b; a=$(revision); sleep 10; b=$(revision); echo $((b - a)); }
idle=$(writes_in_10s)
curl -sf -XPOST -H 'content-type: application/json' "$base/api/v1/namespaces/default/resourcequotas" \
  -d '{"metadata":{"name":"one-pod"},"spec":{"hard":{"pods":"1"}}}' >/dev/null
curl -sf -XPOST -H 'content-type: application/json' "$base/apis/apps/v1/namespaces/default/replicasets" \
  -d '{"metadata":{"name":"web"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
       "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}}}' >/dev/null
sleep 2
refused=$(writes_in_10s)
replicas=$(curl -sf "$base/apis/apps/v1/namespaces/default/replicasets/web" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"].get("replicas", 0))')
echo "store writes in 10 s: idle server $idle (baseline), refused ReplicaSet $refused; status.replicas $replicas"
