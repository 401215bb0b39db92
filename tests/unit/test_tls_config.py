"""TLS settings made into contexts: what is verified by default, and one-line errors for files
that are missing, incomplete or wrong."""

from __future__ import annotations

import ssl
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme

from redis_ambassador.config import Address, ConfigError, load_config
from redis_ambassador.tls import NodeTLS, connect_options, listener_context, node_tls


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("pem")
    ca = trustme.CA()
    leaf, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    files = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
        "other_key": directory / "other-key.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    return {name: str(path) for name, path in files.items()}


def tls_of(**overrides: object) -> object:
    config = load_config(None, env={}, overrides=overrides)
    return SimpleNamespace(nodes=node_tls(config), listener=listener_context(config))


def test_tls_is_off_unless_asked_for() -> None:
    tls = tls_of()
    assert tls.nodes is None and tls.listener is None  # type: ignore[attr-defined]


def test_nodes_are_verified_by_chain_and_name_by_default() -> None:
    nodes = tls_of(**{"upstream.tls": "true"}).nodes  # type: ignore[attr-defined]
    assert nodes.context.verify_mode is ssl.CERT_REQUIRED
    assert nodes.context.check_hostname is True
    assert nodes.context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert nodes.server_hostname(Address("10.0.0.7", 6379)) == "10.0.0.7"


def test_hostname_checks_can_be_turned_off_but_the_chain_is_still_verified() -> None:
    overrides = {"upstream.tls": "true", "upstream.tls_check_hostname": "false"}
    nodes = tls_of(**overrides).nodes  # type: ignore[attr-defined]
    assert nodes.context.check_hostname is False
    assert nodes.context.verify_mode is ssl.CERT_REQUIRED


def test_one_server_name_for_every_node() -> None:
    overrides = {"upstream.tls": "true", "upstream.tls_server_name": "redis.internal"}
    nodes: NodeTLS = tls_of(**overrides).nodes  # type: ignore[attr-defined]
    assert nodes.server_hostname(Address("10.0.0.7", 6379)) == "redis.internal"
    options = connect_options(nodes, Address("10.0.0.7", 6379), 2.0)
    assert options == {
        "ssl": nodes.context,
        "server_hostname": "redis.internal",
        "ssl_handshake_timeout": 2.0,
    }
    assert connect_options(None, Address("10.0.0.7", 6379), 2.0) == {}


def test_a_client_certificate_needs_its_key(pem: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        tls_of(**{"upstream.tls": "true", "upstream.tls_cert_file": pem["cert"]})
    assert str(caught.value) == (
        "config error: upstream.tls_key_file is empty: it is required with upstream.tls_cert_file"
    )


def test_a_key_that_does_not_match_its_certificate_is_refused(pem: dict[str, str]) -> None:
    overrides = {
        "upstream.tls": "true",
        "upstream.tls_cert_file": pem["cert"],
        "upstream.tls_key_file": pem["other_key"],
    }
    with pytest.raises(ConfigError, match=r"cannot load them: key values mismatch"):
        tls_of(**overrides)


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError) as caught:
        tls_of(**{"upstream.tls": "true", "upstream.tls_ca_file": str(missing)})
    assert str(caught.value) == (
        f"config error: upstream.tls_ca_file = '{missing}': cannot load it: "
        "No such file or directory"
    )
    assert "\n" not in str(caught.value)


def test_tls_files_without_tls_on_are_a_mistake(pem: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"upstream.tls_ca_file is set but upstream.tls is false"):
        tls_of(**{"upstream.tls_ca_file": pem["ca"]})
    with pytest.raises(ConfigError, match=r"server.tls_listen_cert_file is set but server.tls_"):
        tls_of(**{"server.tls_listen_cert_file": pem["cert"]})


def test_the_tls_listener_needs_a_certificate(pem: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"server.tls_listen_cert_file is empty"):
        tls_of(**{"server.tls_listen": "127.0.0.1:6380"})


def test_mutual_tls_requires_client_certificates_only_with_a_ca(pem: dict[str, str]) -> None:
    listener = {
        "server.tls_listen": "127.0.0.1:6380",
        "server.tls_listen_cert_file": pem["cert"],
        "server.tls_listen_key_file": pem["key"],
    }
    plain = tls_of(**listener).listener  # type: ignore[attr-defined]
    assert plain.verify_mode is ssl.CERT_NONE
    mutual = tls_of(**listener, **{"server.tls_listen_ca_file": pem["ca"]})
    assert mutual.listener.verify_mode is ssl.CERT_REQUIRED  # type: ignore[attr-defined]
