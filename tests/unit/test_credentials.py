"""Upstream credentials (upstream/credentials.py) and their config keys: used everywhere,
printed nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from redis_ambassador.config import ConfigError, explain_config, load_config
from redis_ambassador.rotation import Secrets
from redis_ambassador.upstream.credentials import Credentials, read_secret_file


def test_the_auth_frame_names_the_user_only_when_one_is_configured() -> None:
    assert Credentials().auth_frame == b""
    assert Credentials(b"", b"pw").auth_frame == b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
    assert Credentials(b"amb", b"pw").auth_frame == (
        b"*3\r\n$4\r\nAUTH\r\n$3\r\namb\r\n$2\r\npw\r\n"
    )
    assert Credentials(b"amb", b"pw").redis_options() == {"username": "amb", "password": "pw"}
    assert Credentials().redis_options() == {}
    # A nopass user signs in with any password: an empty one.
    assert Credentials(b"amb", b"").auth_frame == b"*3\r\n$4\r\nAUTH\r\n$3\r\namb\r\n$0\r\n\r\n"


def test_the_password_never_shows_in_a_repr() -> None:
    shown = repr(Credentials(b"amb", b"hunter2"))
    assert "hunter2" not in shown and "amb" in shown


def test_the_password_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    config = load_config(env={"REDIS_AMBASSADOR_PASSWORD_FILE": str(secret)})
    assert Secrets.load(config).upstream == Credentials(b"", b"hunter2")


def test_an_unreadable_password_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"upstream.password_file: .*missing not found"):
        read_secret_file(str(tmp_path / "missing"), "upstream.password_file")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret_file(str(tmp_path / "empty"), "upstream.password_file")


def test_config_check_masks_the_passwords_and_their_errors(tmp_path: Path) -> None:
    env = {"REDIS_AMBASSADOR_PASSWORD": "hunter2", "REDIS_AMBASSADOR_REQUIREPASS": "swordfish"}
    _, settings = explain_config(env=env)
    shown = "\n".join(f"{s.key} = {s.shown}" for s in settings)
    assert "hunter2" not in shown and "swordfish" not in shown
    assert 'upstream.password = "<secret>"' in shown
    path = tmp_path / "bad.toml"
    path.write_text('[upstream]\npassword = ["hunter2"]\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert "hunter2" not in str(raised.value) and "<secret>" in str(raised.value)


def test_a_password_given_two_ways_or_missing_for_password_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="both set"):
        load_config(env={"REDIS_AMBASSADOR_PASSWORD": "a", "REDIS_AMBASSADOR_PASSWORD_FILE": "/x"})
    with pytest.raises(ConfigError, match=r"needs server\.requirepass"):
        load_config(env={"REDIS_AMBASSADOR_CLIENT_AUTH": "password"})
    config = load_config(
        env={"REDIS_AMBASSADOR_CLIENT_AUTH": "password", "REDIS_AMBASSADOR_REQUIREPASS": "x"}
    )
    assert (config.server.client_auth, config.server.requirepass) == ("password", "x")
