# redis-ambassador: plain Redis on localhost, a whole Redis Cluster behind it.
#
#   docker build -t redis-ambassador:0.1.0 .
#   docker run --rm --network NET -e REDIS_AMBASSADOR_SEEDS=redis-1:6379 redis-ambassador:0.1.0
#
# Meant to run as a sidecar: in the network namespace of the application it serves (a pod's
# containers share one; docker compose's `network_mode: "service:..."` does the same), so the
# application reaches it on localhost:6379. See docs/deployment.md.
#
# Two stages: the first builds a wheel of this package, the second installs it with its
# dependencies. hiredis and uvloop ship manylinux wheels, so no compiler is needed anywhere.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY redis_ambassador ./redis_ambassador
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 ambassador \
    && useradd --system --uid 10001 --gid ambassador --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ambassador
USER 10001:10001

# The Redis listener stays on the default 127.0.0.1:6379: a sidecar's application shares its
# network namespace and connects to localhost, and nothing outside the pod can reach the
# cluster through it (without server.client_auth it asks clients for no password). To publish
# it from a standalone container (`docker run -p 6379:6379`), set
# REDIS_AMBASSADOR_LISTEN=0.0.0.0:6379, and turn server.client_auth on.
#
# The admin listener (/metrics, /healthz, /readyz) binds every interface instead: kubelet's
# HTTP probes and Prometheus's scrapes come from outside the pod, to the pod's IP. The
# trade-off: anything that can reach the pod's IP can read the metrics and health (no keys,
# no client addresses: nothing secret); restrict port 9090 with a NetworkPolicy if that
# matters. It is set through the environment rather than a flag so that `-e` or a pod's `env`
# can change it (REDIS_AMBASSADOR_ADMIN=off disables it; a config file's server.admin is
# below the environment, so set it here, not there). The HEALTHCHECK follows it.
ENV REDIS_AMBASSADOR_ADMIN=0.0.0.0:9090
EXPOSE 6379 9090

# /healthz: the process is alive and serving (for "is it ready to take traffic", /readyz).
# Plain Python, so the image needs no curl. It reads the admin address the process uses
# (and passes when the admin listener is off: there is nothing to ask).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; a = os.environ.get('REDIS_AMBASSADOR_ADMIN') or '127.0.0.1:9090'; h, _, p = a.rpartition(':'); a == 'off' or u.urlopen('http://%s:%s/healthz' % ('127.0.0.1' if h in ('0.0.0.0', '[::]', '') else h, p), timeout=2)"]

# Exec form: the ambassador is PID 1 and gets SIGTERM itself (it drains: every reply owed is
# written before it exits) and SIGHUP (reloads --config / REDIS_AMBASSADOR_CONFIG).
# Arguments after the image name are flags of `serve`: --seed, --config, --listen, ...
ENTRYPOINT ["redis-ambassador", "serve"]
