#!/bin/sh
# One-shot: form the 3-master, 3-replica cluster from the six nodes, unless it already is one
# (`docker compose up` again on a running stack). Exits 0 once every node says cluster_state:ok.
set -eu

nodes="redis-1 redis-2 redis-3 redis-4 redis-5 redis-6"

state() { redis-cli -h "$1" -p 6379 cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p'; }

if [ "$(redis-cli -h redis-1 -p 6379 cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = 6 ]; then
    echo "cluster-init: the cluster already has its 6 nodes"
else
    # CLUSTER MEET takes IP addresses: resolve the service names (the nodes still announce
    # their names, see redis-node.conf).
    addresses=""
    for node in $nodes; do
        ip="$(getent hosts "$node" | awk '{ print $1; exit }')"
        [ -n "$ip" ] || { echo "cluster-init: cannot resolve $node" >&2; exit 1; }
        addresses="$addresses $ip:6379"
    done
    echo "cluster-init: creating the cluster from$addresses"
    # shellcheck disable=SC2086
    redis-cli --cluster create $addresses --cluster-replicas 1 --cluster-yes
fi

for _ in $(seq 1 60); do
    ok=0
    for node in $nodes; do
        [ "$(state "$node")" = ok ] && ok=$((ok + 1))
    done
    if [ "$ok" = 6 ]; then
        echo "cluster-init: cluster_state:ok on all 6 nodes"
        exit 0
    fi
    sleep 1
done
echo "cluster-init: the cluster did not reach cluster_state:ok within 60s" >&2
exit 1
