"""Secrets read again on reload (rotation.py): a file rewritten in place is a change, a file that
cannot be read keeps the running secret and is named in one error line (its content never is)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trustme

from redis_ambassador.config import Config, load_config
from redis_ambassador.reload import LIVE_KEYS, plan_reload
from redis_ambassador.rotation import ROTATED_KEYS, Secrets
from redis_ambassador.upstream.credentials import Credentials


def config_of(**env: str) -> Config:
    return load_config(env={f"REDIS_AMBASSADOR_{k.upper()}": v for k, v in env.items()})


def test_the_rotated_keys_are_live_but_switching_tls_on_or_off_needs_a_restart() -> None:
    assert ROTATED_KEYS <= LIVE_KEYS
    assert "server.requirepass_file" in ROTATED_KEYS and "upstream.username" in ROTATED_KEYS
    assert not {"upstream.tls", "server.tls_listen", "server.client_auth"} & LIVE_KEYS


def test_nothing_changed_rereads_to_the_same_secrets(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("S3CRET-one\n")
    config = config_of(requirepass_file=str(tmp_path / "pw"), password="cluster-pw")
    secrets = Secrets.load(config)
    assert secrets.requirepass == b"S3CRET-one"
    assert secrets.upstream == Credentials(b"", b"cluster-pw")
    reread = secrets.reread(config)
    assert reread.secrets is secrets and reread.changed == reread.failed == ()


def test_a_password_file_rewritten_in_place_is_a_change_of_its_key(tmp_path: Path) -> None:
    for name in ("pw", "cluster-pw", "sentinel-pw"):
        (tmp_path / name).write_text(f"{name}-1")
    config = config_of(
        requirepass_file=str(tmp_path / "pw"),
        password_file=str(tmp_path / "cluster-pw"),
        sentinel_password_file=str(tmp_path / "sentinel-pw"),
    )
    secrets = Secrets.load(config)
    (tmp_path / "pw").write_text("pw-2\n")
    (tmp_path / "cluster-pw").write_text("cluster-pw-2")
    reread = secrets.reread(config)
    assert reread.changed == ("server.requirepass_file", "upstream.password_file")
    assert reread.secrets.requirepass == b"pw-2"
    assert reread.secrets.upstream == Credentials(b"", b"cluster-pw-2")
    assert reread.secrets.sentinel is secrets.sentinel  # its file is unchanged
    plan = plan_reload(config, config).amended(config, reread.changed, reread.failed)
    assert plan.applied == ("server.requirepass_file", "upstream.password_file")


def test_a_file_that_cannot_be_read_keeps_the_running_secret_and_its_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "pw").write_text("S3CRET-kept")
    running = config_of(requirepass_file=str(tmp_path / "pw"), admin_token="token-1")
    secrets = Secrets.load(running)
    loaded = config_of(requirepass_file=str(tmp_path / "gone"), admin_token="token-2")
    with caplog.at_level(logging.ERROR):
        reread = secrets.reread(plan_reload(running, loaded).config)
    assert reread.failed == ("server.requirepass", "server.requirepass_file")
    assert reread.changed == ("server.admin_token",)  # the other secrets still rotate
    assert reread.secrets.requirepass == b"S3CRET-kept"
    assert reread.secrets.admin_token == "token-2"
    assert [r.getMessage() for r in caplog.records] == [
        f"config reload: config error: server.requirepass_file: {tmp_path / 'gone'} not found; "
        "still using the running clients' password"
    ]
    plan = plan_reload(running, loaded).amended(running, reread.changed, reread.failed)
    assert plan.applied == ("server.admin_token",)
    assert plan.config.server.requirepass_file == str(tmp_path / "pw")  # what is in use
    # The same broken config is tried (and reported) again at the next reload.
    assert reread.secrets.reread(plan_reload(running, loaded).config).failed != ()

    (tmp_path / "pw").write_text("")  # emptied in place: refused, never used as a password
    assert secrets.reread(running).secrets.requirepass == b"S3CRET-kept"
    assert "S3CRET" not in caplog.text


def test_tls_files_rewritten_in_place_make_a_new_context(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"

    def issue() -> None:
        leaf = ca.issue_cert("127.0.0.1")
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))

    issue()
    config = load_config(
        env={},
        overrides={
            "server.tls_listen": "127.0.0.1:6380",
            "server.tls_listen_cert_file": str(cert),
            "server.tls_listen_key_file": str(key),
        },
    )
    secrets = Secrets.load(config)
    issue()
    reread = secrets.reread(config)
    assert reread.changed == ("server.tls_listen_cert_file", "server.tls_listen_key_file")
    assert reread.secrets.listener_tls is not secrets.listener_tls
    assert reread.secrets.node_tls is secrets.node_tls is None

    key.write_text("not a key")
    assert reread.secrets.reread(config).failed == (
        "server.tls_listen",
        "server.tls_listen_cert_file",
        "server.tls_listen_key_file",
        "server.tls_listen_ca_file",
    )
