"""What the commands the ambassador answers itself may know: the state of the client that sent
one (``ClientState``), and the server that client believes it talks to (``ServerFacts``)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol


class ClientState(Protocol):
    """What a local command may read or change about the client that sent it."""

    id: int
    name: bytes
    protocol: int
    lib_name: bytes  # CLIENT SETINFO; b"" when unset
    lib_ver: bytes
    no_evict: bool  # CLIENT NO-EVICT / NO-TOUCH: stored and shown, nothing here acts on them
    no_touch: bool
    peer: str  # the client's address, "host:port"
    user: bytes  # the user it authenticated as (b"default" until it does)
    local_address: tuple[str, int]  # the address the client dialed (our side of its socket)
    fd: int
    connected_at: float  # time.monotonic() when it connected
    last_read: float  # time.monotonic() of its last read (CLIENT LIST's idle)

    def set_protocol(self, protocol: int) -> None: ...


class ServerFacts:
    """What the ambassador tells clients about "the server": HELLO's version (the lowest among
    the cluster's nodes), whether one server is behind (a standalone or Sentinel backend, not a
    cluster), and every client connected (CLIENT LIST)."""

    __slots__ = ("_clients", "one_server", "version")

    def __init__(
        self,
        version: bytes,
        one_server: bool = False,
        clients: Callable[[], Collection[ClientState]] = tuple,
    ) -> None:
        self.version = version
        self.one_server = one_server
        self._clients = clients

    @property
    def clients(self) -> Collection[ClientState]:
        return self._clients()


Handler = Callable[[ClientState, list[bytes], ServerFacts], bytes]
