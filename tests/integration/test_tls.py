"""TLS both ways, against a real TLS-only Redis Cluster (``port 0``, ``tls-port``, ``tls-cluster
yes``, ``tls-replication yes``, ``tls-auth-clients yes``) with certificates made at test time.

The ambassador connects to the nodes over TLS with a client certificate (pools, private
connections, health checks, discovery), and serves plain clients and TLS clients at once; its
TLS listener's mutual TLS refuses a client without a certificate or with one from another CA.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme
from conftest import Ambassador
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from redis_ambassador.localcluster import ClusterTLS, LocalCluster


@dataclass(frozen=True)
class Certs:
    """PEM files: ``ca`` signs everything trusted; ``rogue_ca`` is a CA nobody is told of."""

    ca: Path
    rogue_ca: Path
    nodes_ca: Path  # what the nodes trust: both CAs (a node's certificate is swapped below)
    node: tuple[Path, Path]  # the nodes' certificate and key (names 127.0.0.1 and localhost)
    named_node: tuple[Path, Path]  # a node's that names "localhost" only, not its IP
    rogue_node: tuple[Path, Path]  # the same names, signed by rogue_ca
    ambassador: tuple[Path, Path]  # the ambassador's: to the nodes, and to its TLS clients
    app: tuple[Path, Path]  # a client of the ambassador's TLS listener
    rogue_app: tuple[Path, Path]  # a client whose certificate comes from rogue_ca


def _write(directory: Path, name: str, ca: trustme.CA, *identities: str) -> tuple[Path, Path]:
    leaf = ca.issue_cert(*identities)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("pki")
    ca, rogue = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    rogue.cert_pem.write_to_path(str(directory / "rogue-ca.pem"))
    (directory / "nodes-ca.pem").write_bytes(ca.cert_pem.bytes() + rogue.cert_pem.bytes())
    return Certs(
        ca=directory / "ca.pem",
        rogue_ca=directory / "rogue-ca.pem",
        nodes_ca=directory / "nodes-ca.pem",
        node=_write(directory, "node", ca, "127.0.0.1", "localhost"),
        named_node=_write(directory, "named-node", ca, "localhost"),
        rogue_node=_write(directory, "rogue-node", rogue, "127.0.0.1", "localhost"),
        ambassador=_write(directory, "ambassador", ca, "127.0.0.1", "localhost"),
        app=_write(directory, "app", ca, "app.example"),
        rogue_app=_write(directory, "rogue-app", rogue, "app.example"),
    )


@pytest.fixture(scope="module")
def tls_cluster(certs: Certs) -> Iterator[LocalCluster]:
    cert, key = certs.node
    with LocalCluster(tls=ClusterTLS(cert, key, certs.nodes_ca, auth_clients=True)) as local:
        yield local


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _upstream_flags(certs: Certs, ca: Path | None = None) -> tuple[str, ...]:
    cert, key = certs.ambassador
    ca_file = ca or certs.ca
    return ("--tls", "--tls-ca-file", str(ca_file), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key))  # fmt: skip


def _listener_flags(certs: Certs, port: int, mutual: bool) -> tuple[str, ...]:
    cert, key = certs.ambassador
    flags = ("--tls-listen", f"127.0.0.1:{port}", "--tls-listen-cert-file", str(cert),
             "--tls-listen-key-file", str(key))  # fmt: skip
    return (*flags, "--tls-listen-ca-file", str(certs.ca)) if mutual else flags


@dataclass
class TLSAmbassador:
    """An ambassador with both listeners."""

    process: Ambassador
    tls_port: int

    def tls_client(
        self, certs: Certs, cert: tuple[Path, Path] | None, **options: Any
    ) -> redis.Redis:
        extra = {} if cert is None else {"ssl_certfile": str(cert[0]), "ssl_keyfile": str(cert[1])}
        return redis.Redis(
            host="127.0.0.1",
            port=self.tls_port,
            ssl=True,
            ssl_ca_certs=str(certs.ca),
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),  # one handshake per call: the refusals are counted
            **extra,
            **options,
        )


@pytest.fixture(scope="module")
def mutual(
    tls_cluster: LocalCluster, certs: Certs, start_ambassador: Callable[..., Ambassador]
) -> TLSAmbassador:
    """TLS to the nodes, a plain listener, and a mutual-TLS listener; admin on; debug logs
    (a health check's failure is a debug line)."""
    port = _free_port()
    extra = (
        *_upstream_flags(certs),
        *_listener_flags(certs, port, mutual=True),
        "--log-level",
        "debug",
    )
    return TLSAmbassador(start_ambassador(tls_cluster, extra_args=extra, admin=True), port)


def _metric(ambassador: Ambassador, name: str, **labels: str) -> float:
    url = f"http://127.0.0.1:{ambassador.admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def _wait_for(what: str, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_the_cluster_serves_tls_only(tls_cluster: LocalCluster) -> None:
    node = tls_cluster.nodes[0]
    config = tls_cluster.client(node, decode_responses=True).config_get("*port")
    assert config["port"] == "0"  # no plain port at all
    assert config["tls-port"] == str(node.port)
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=node.port, socket_timeout=2).ping()


def test_plain_and_tls_clients_through_a_tls_cluster(mutual: TLSAmbassador, certs: Certs) -> None:
    plain = mutual.process.client()
    secure = mutual.tls_client(certs, certs.app)
    keys = [f"tls:{i}" for i in range(64)]  # every master's slots
    for i, key in enumerate(keys):
        (plain if i % 2 else secure).set(key, i)
    assert plain.mget(keys) == secure.mget(keys) == [str(i).encode() for i in range(64)]
    big = bytes(range(256)) * 4096  # 1 MiB: many TLS records each way
    secure.set("tls:big", big)
    assert plain.get("tls:big") == big
    pipe = secure.pipeline(transaction=False)
    for key in keys:
        pipe.incr(key)
    assert pipe.execute() == list(range(1, 65))


def test_a_blocked_client_s_own_node_connection_uses_tls(
    mutual: TLSAmbassador, certs: Certs
) -> None:
    secure = mutual.tls_client(certs, certs.app)
    plain = mutual.process.client()
    plain.delete("tls:queue")
    secure.set("tls:ready", 1)  # the pools are up; BLPOP then opens a private connection
    pusher = subprocess.Popen(
        [sys.executable, "-c",
         f"import redis, time; time.sleep(0.3); redis.Redis(port={mutual.process.port})"
         ".rpush('tls:queue', 'job')"],
    )  # fmt: skip
    try:
        assert secure.blpop(["tls:queue"], timeout=5) == (b"tls:queue", b"job")
    finally:
        pusher.wait(timeout=10)


def test_mutual_tls_refuses_a_client_without_a_certificate_and_counts_it(
    mutual: TLSAmbassador, certs: Certs
) -> None:
    failures = "redis_ambassador_client_tls_handshake_failures_total"
    before = _metric(mutual.process, failures)
    with pytest.raises(redis.ConnectionError):
        mutual.tls_client(certs, None).ping()
    _wait_for("the refusal counted", lambda: _metric(mutual.process, failures) == before + 1)
    assert (
        "TLS client refused: TLS handshake failed: peer did not return a certificate; closed"
        in mutual.process.stderr_text()
    )
    assert mutual.tls_client(certs, certs.app).ping() is True  # the listener goes on


def test_mutual_tls_refuses_a_certificate_from_another_ca(
    mutual: TLSAmbassador, certs: Certs
) -> None:
    failures = "redis_ambassador_client_tls_handshake_failures_total"
    before = _metric(mutual.process, failures)
    with pytest.raises(redis.ConnectionError):
        mutual.tls_client(certs, certs.rogue_app).ping()
    _wait_for("the refusal counted", lambda: _metric(mutual.process, failures) == before + 1)
    assert "certificate verify failed" in mutual.process.stderr_text()


def test_a_plain_client_on_the_tls_port_is_closed(mutual: TLSAmbassador) -> None:
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=mutual.tls_port, socket_timeout=5, retry=Retry(NoBackoff(), 0)).ping()


def test_tls_listener_without_mutual_tls_takes_clients_without_certificates(
    tls_cluster: LocalCluster, certs: Certs, start_ambassador: Callable[..., Ambassador]
) -> None:
    port = _free_port()
    extra = (*_upstream_flags(certs), *_listener_flags(certs, port, mutual=False))
    ambassador = TLSAmbassador(start_ambassador(tls_cluster, extra_args=extra), port)
    secure = ambassador.tls_client(certs, None)
    secure.set("tls:anonymous", "yes")
    assert ambassador.process.client().get("tls:anonymous") == b"yes"
    # A client that does not trust the ambassador's CA refuses it, on its side.
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis(port=port, ssl=True, ssl_ca_certs=str(certs.rogue_ca)).ping()


def _serve(cluster: LocalCluster, *flags: str, timeout: float = 30) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        "-m",
        "redis_ambassador",
        "serve",
        "--listen",
        f"127.0.0.1:{_free_port()}",
    ]
    return subprocess.run(
        [*args, "--seed", cluster.seeds[0], *flags],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        (
            "wrong CA",
            r"TLS handshake failed: certificate verify failed: self.signed certificate in "
            r"certificate chain",
        ),
        ("no client certificate", r"certificate required|closes connections without a client cert"),
        ("wrong name", r"certificate verify failed: Hostname mismatch.*'wrong\.example'"),
        ("plain", r""),  # a node that does not speak plain TCP closes the connection
    ],
)
def test_a_node_that_fails_the_handshake_is_reported_in_one_line(
    tls_cluster: LocalCluster, certs: Certs, problem: str, expected: str
) -> None:
    flags = {
        "wrong CA": _upstream_flags(certs, ca=certs.rogue_ca),
        "no client certificate": ("--tls", "--tls-ca-file", str(certs.ca)),
        "wrong name": (*_upstream_flags(certs), "--tls-server-name", "wrong.example"),
        "plain": (),
    }[problem]
    done = _serve(tls_cluster, *flags)
    assert done.returncode == 1, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("redis-ambassador:")]
    assert line.startswith("redis-ambassador: no cluster node answered: 127.0.0.1:")
    assert re.search(expected, line), line


def test_hostname_checks_can_be_turned_off_but_not_chain_checks(
    tls_cluster: LocalCluster, certs: Certs, start_ambassador: Callable[..., Ambassador]
) -> None:
    named_elsewhere = (*_upstream_flags(certs), "--tls-server-name", "wrong.example")
    ambassador = start_ambassador(
        tls_cluster, extra_args=(*named_elsewhere, "--tls-no-check-hostname")
    )
    client = ambassador.client()
    client.set("tls:unchecked-name", 1)
    assert client.get("tls:unchecked-name") == b"1"
    done = _serve(
        tls_cluster, *_upstream_flags(certs, ca=certs.rogue_ca), "--tls-no-check-hostname"
    )
    assert done.returncode == 1
    assert "certificate verify failed" in done.stderr


def test_a_certificate_file_that_cannot_be_loaded_is_a_config_error(
    tls_cluster: LocalCluster, certs: Certs, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    done = _serve(tls_cluster, "--tls", "--tls-ca-file", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"config error: upstream.tls_ca_file = '{missing}': cannot load it: "
        "No such file or directory"
    )
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello\n")
    cert, _ = certs.ambassador
    listen = f"127.0.0.1:{_free_port()}"
    done = _serve(tls_cluster, "--tls-listen", listen, "--tls-listen-cert-file", str(cert),
                  "--tls-listen-key-file", str(not_a_key))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("config error: server.tls_listen_cert_file = ")
    assert "cannot load them" in done.stderr


def test_a_node_whose_certificate_stops_verifying_opens_its_breaker_until_fixed(
    tls_cluster: LocalCluster, mutual: TLSAmbassador, certs: Certs
) -> None:
    """A node is given a certificate the ambassador does not trust (a botched rotation): its
    connections fail the handshake, its breaker opens, and health checks close it again once
    the node's certificate is put back."""
    node = tls_cluster.masters()[0]
    name = node.address
    state = "redis_ambassador_breaker_state"
    client = mutual.process.client()
    admin = tls_cluster.client(node)
    owned = [(int(r[0]), int(r[1])) for r in admin.execute_command("CLUSTER", "SLOTS")
             if int(r[2][1]) == node.port]  # fmt: skip
    key = next(k for k in (f"tls:rotated:{i}" for i in range(1000))
               if any(lo <= key_slot(k.encode()) <= hi for lo, hi in owned))  # fmt: skip
    client.set(key, 1)
    rogue_cert, rogue_key = certs.rogue_node
    good_cert, good_key = certs.node
    try:
        admin.execute_command(
            "CONFIG", "SET", "tls-cert-file", str(rogue_cert), "tls-key-file", str(rogue_key)
        )
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal")  # our connections reconnect

        # Whichever fails first (a pool connection, a health check) says why in the log.
        why = re.compile(
            rf"(cannot connect to node|health check of) {re.escape(name)}:? (failed: )?TLS "
            r"handshake failed: certificate verify failed: self.signed certificate in "
            r"certificate chain"
        )

        def refused() -> bool:
            with contextlib.suppress(redis.ResponseError):  # the node's failure, as an error
                client.get(key)
            return bool(why.search(mutual.process.stderr_text()))

        _wait_for("a failed handshake", refused)
        _wait_for("the breaker to open", lambda: _metric(mutual.process, state, node=name) == 2)
    finally:
        admin = tls_cluster.client(node)
        admin.execute_command(
            "CONFIG", "SET", "tls-cert-file", str(good_cert), "tls-key-file", str(good_key)
        )
    _wait_for("the breaker to close", lambda: _metric(mutual.process, state, node=name) == 0)
    keys = [f"tls:after:{i}" for i in range(32)]
    for key in keys:
        client.set(key, 1)
    assert client.mget(keys) == [b"1"] * 32


def test_subscribers_and_transactions_over_tls_both_ways(
    mutual: TLSAmbassador, certs: Certs
) -> None:
    """Pub/sub and WATCH/MULTI get node connections of their own: TLS ones too."""
    secure = mutual.tls_client(certs, certs.app)
    plain = mutual.process.client()
    pubsub = secure.pubsub()
    pubsub.subscribe("tls:news")
    pubsub.ssubscribe("tls:shard-news")
    for _ in range(2):
        assert pubsub.get_message(timeout=5)["type"] in ("subscribe", "ssubscribe")
    assert plain.publish("tls:news", "hello") == 1
    assert plain.spublish("tls:shard-news", "sharded") == 1
    got = [pubsub.get_message(timeout=5) for _ in range(2)]
    assert sorted(m["data"] for m in got) == [b"hello", b"sharded"]
    pubsub.close()
    with secure.pipeline(transaction=True) as pipe:
        pipe.watch("tls:counter")
        pipe.multi()
        pipe.incr("tls:counter")
        assert pipe.execute() == [int(plain.get("tls:counter"))]


def test_config_check_loads_the_certificates(certs: Certs, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "redis_ambassador", "config", "check", "--seed", "a:1", "--tls"]
    cert, key = certs.ambassador
    good = subprocess.run(
        [*args, "--tls-ca-file", str(certs.ca), "--tls-cert-file", str(cert),
         "--tls-key-file", str(key)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert f'upstream.tls_ca_file = "{certs.ca}"' in good.stdout
    assert re.search(r"upstream\.tls = true\s+# flag --tls\n", good.stdout)
    bad = subprocess.run(
        [*args, "--tls-cert-file", str(cert)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr == (
        "config error: upstream.tls_key_file is empty: it is required with upstream.tls_cert_file\n"
    )


def test_nodes_announced_by_host_name_are_checked_for_that_name(
    certs: Certs, tmp_path: Path
) -> None:
    """A node announced by name (cluster-preferred-endpoint-type hostname) whose certificate
    names only that: every connection checks the name (discovery by a seed name, the start-up
    queries, the pools, the health checks); the same node dialed by its IP is refused."""
    cert, key = certs.named_node
    with LocalCluster(1, 0, tls=ClusterTLS(cert, key, certs.nodes_ca)) as local:
        node = local.nodes[0]
        admin = local.client(node)
        admin.config_set("cluster-announce-hostname", "localhost")
        admin.config_set("cluster-preferred-endpoint-type", "hostname")
        shards = admin.execute_command("CLUSTER", "SHARDS")
        assert shards[0][b"nodes"][0][b"endpoint"] == b"localhost"
        ambassador = Ambassador.start(
            [f"localhost:{node.port}"], tmp_path, extra_args=_upstream_flags(certs), admin=True
        )
        try:
            client = ambassador.client()
            for i in range(20):
                client.set(f"tls:named:{i}", i)
            assert client.get("tls:named:7") == b"7"
            time.sleep(1.5)  # health checks, on connections of their own
            assert (
                _metric(ambassador, "redis_ambassador_breaker_state", node=f"localhost:{node.port}")
                == 0
            )
            assert "Hostname mismatch" not in ambassador.stderr_text()
        finally:
            ambassador.stop()
        done = _serve(local, *_upstream_flags(certs))  # seeds by IP
        assert done.returncode == 1
        assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in done.stderr


# -- rotation: SIGHUP reads the certificate, key and CA files again --------------------------------


def _der(pem: Path) -> bytes:
    """The first certificate of a PEM file, DER-encoded (as a peer presents it)."""
    first = pem.read_text().split("-----END CERTIFICATE-----")[0]
    return ssl.PEM_cert_to_DER_cert(first + "-----END CERTIFICATE-----\n")


def _copy(sources: tuple[Path, ...], targets: tuple[Path, ...]) -> None:
    for source, target in zip(sources, targets, strict=True):
        shutil.copy(source, target)


def _presented(port: int, trust: Path, cert: tuple[Path, Path]) -> bytes | None:
    """The certificate the TLS listener presents to a new client with ``cert`` that trusts
    ``trust``, once a PING was answered over it; None if the listener refused the client."""
    context = ssl.create_default_context(cafile=str(trust))
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"*1\r\n$4\r\nPING\r\n")
                # TLS 1.3: a refused client certificate shows on the first read.
                if tls.recv(64) != b"+PONG\r\n":
                    return None
                return tls.getpeercert(binary_form=True)
        except (ssl.SSLError, ConnectionResetError):
            return None


def test_sighup_rotates_the_listener_s_certificate_and_client_ca_for_new_handshakes(
    tls_cluster: LocalCluster,
    certs: Certs,
    start_ambassador: Callable[..., Ambassador],
    tmp_path: Path,
) -> None:
    files = cert, key, clients_ca = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca"
    _copy((*certs.ambassador, certs.ca), files)
    port = _free_port()
    listener = ("--tls-listen", f"127.0.0.1:{port}", "--tls-listen-cert-file", str(cert),
                "--tls-listen-key-file", str(key),
                "--tls-listen-ca-file", str(clients_ca))  # fmt: skip
    ambassador = start_ambassador(tls_cluster, extra_args=(*_upstream_flags(certs), *listener))
    connected = TLSAmbassador(ambassador, port).tls_client(certs, certs.app)
    assert connected.set("tls:rotation", "before") is True
    assert _presented(port, certs.ca, certs.app) == _der(certs.ambassador[0])

    # New files in place (as a renewed Kubernetes TLS secret): another certificate, from another
    # CA, which also signs the clients' certificates from now on.
    _copy((*certs.rogue_node, certs.rogue_ca), files)
    line = ambassador.reload("config reload")
    assert line.endswith(
        "config reloaded: server.tls_listen_cert_file, server.tls_listen_key_file, "
        "server.tls_listen_ca_file now in effect"
    ), line
    assert _presented(port, certs.rogue_ca, certs.rogue_app) == _der(certs.rogue_node[0])
    assert _presented(port, certs.rogue_ca, certs.app) is None  # its CA is no longer trusted
    assert connected.get("tls:rotation") == b"before"  # a client connected before stays


def test_sighup_rotates_the_ca_the_nodes_are_verified_with(
    tls_cluster: LocalCluster,
    certs: Certs,
    start_ambassador: Callable[..., Ambassador],
    tmp_path: Path,
) -> None:
    nodes_ca = tmp_path / "nodes-ca.pem"
    shutil.copy(certs.ca, nodes_ca)
    ambassador = start_ambassador(tls_cluster, extra_args=_upstream_flags(certs, ca=nodes_ca))
    client = ambassador.client()
    assert client.set("tls:verified", 1) is True

    shutil.copy(certs.rogue_ca, nodes_ca)  # a CA the nodes' certificates do not chain to
    line = ambassador.reload("config reload")
    assert line.endswith("config reloaded: upstream.tls_ca_file now in effect"), line
    # A connection opened now (a blocking command's own) verifies the node with it: refused.
    with pytest.raises(redis.ResponseError, match="unavailable: cannot connect"):
        client.blpop(["tls:rotated-queue"], timeout=0.1)
    assert "TLS handshake failed: certificate verify failed" in ambassador.stderr_text()
    assert client.get("tls:verified") == b"1"  # the pool's connections, open, stay

    shutil.copy(certs.ca, nodes_ca)
    ambassador.reload("config reloaded: upstream.tls_ca_file now in effect")
    assert client.blpop(["tls:rotated-queue"], timeout=0.1) is None
