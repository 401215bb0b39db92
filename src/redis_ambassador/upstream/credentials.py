"""Who the ambassador is on the nodes: the user and password every node connection signs in with.

Configured by ``upstream.username`` / ``upstream.password`` / ``upstream.password_file`` (read at
start and on each reload: rotation.py) and used by every connection to a node opened while they
are current: pool lanes, clients' own connections, subscriber and probe connections, and redis-py's
control clients. ACL-mode clients bring credentials of their own
(``server.client_auth = "acl"``); theirs take the same shape. A password is never logged: the
object's repr masks it, and Redis's replies to a failed AUTH do not repeat it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis_ambassador.config import ConfigError
from redis_ambassador.protocol.requests import encode_command


@dataclass(frozen=True, repr=False)
class Credentials:
    """A user (b"": the default user) and its password. Neither: no AUTH is sent; a user
    without a password signs in with an empty one (what a ``nopass`` user accepts)."""

    username: bytes = b""
    password: bytes = b""

    def __repr__(self) -> str:
        shown = "<secret>" if self.password else "none"
        return f"Credentials(user={self.user!r}, password={shown})"

    @property
    def user(self) -> str:
        """The user name as Redis calls it ("default" when none is given)."""
        return (self.username or b"default").decode(errors="replace")

    @property
    def auth_frame(self) -> bytes:
        """The AUTH command a new connection sends first (b"": nothing to send)."""
        if self.username:
            return encode_command([b"AUTH", self.username, self.password])
        return encode_command([b"AUTH", self.password]) if self.password else b""

    def redis_options(self) -> dict[str, Any]:
        """redis-py's keyword arguments for these credentials."""
        if not self.username and not self.password:
            return {}
        return {
            "username": self.username.decode() or None,
            "password": self.password.decode(),
        }


def read_secret_file(path: str, key: str) -> str:
    """A password kept in a file (a mounted Kubernetes secret): its text without the trailing
    newline an editor or ``echo`` leaves. Problems name the file, never its content."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        problem = "not found"
    except IsADirectoryError:
        problem = "is a directory"
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror or exc}"
    else:
        secret = text.removesuffix("\n").removesuffix("\r")
        if not secret:
            raise ConfigError(f"{key}: {path} is empty", key=key, source=path)
        return secret
    raise ConfigError(f"{key}: {path} {problem}", key=key, source=path)
