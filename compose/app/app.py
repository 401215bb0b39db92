"""The example application: plain redis-py against REDIS_HOST (the ambassador on localhost).

It knows nothing of the cluster: no cluster-aware client, no MOVED handling. Each round SETs a
key, GETs it back and INCRs a counter, with keys spread over the cluster's slots, and prints one
line per round. APP_ITERATIONS bounds the rounds (0: forever), APP_INTERVAL spaces them.
"""

from __future__ import annotations

import os
import sys
import time

import redis


def main() -> int:
    host, _, port = os.environ.get("REDIS_HOST", "localhost:6379").rpartition(":")
    iterations = int(os.environ.get("APP_ITERATIONS", "0"))
    interval = float(os.environ.get("APP_INTERVAL", "1"))
    client = redis.Redis(host=host or "localhost", port=int(port), socket_timeout=5)
    print(f"app: using Redis at {host}:{port}", flush=True)
    errors = 0
    n = 0
    while iterations == 0 or n < iterations:
        n += 1
        key = f"example:{n % 100}"
        try:
            client.set(key, f"value-{n}")
            value = client.get(key)
            hits = client.incr("example:hits")
        except redis.RedisError as e:
            errors += 1
            print(f"app: round {n}: error: {e}", flush=True)
        else:
            status = "ok" if value == f"value-{n}".encode() else "MISMATCH"
            print(
                f"app: round {n}: {status} SET/GET {key}={value.decode()} INCR example:hits={hits}",
                flush=True,
            )
        time.sleep(interval)
    print(f"app: done: {n} rounds, {errors} errors", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
