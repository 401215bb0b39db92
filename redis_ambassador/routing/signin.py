"""AUTH, and HELLO (which may carry AUTH), as Redis answers them.

Under ``server.client_auth`` ``off`` and ``password`` the ambassador checks the password itself
(commands/auth.py); under ``acl`` a master checks the user, over a connection opened for that one
AUTH (an AUTH on a shared connection would change its user), and what the client sent after it
waits for the verdict. A failed AUTH is answered late once its connection has failed too often.
"""

from __future__ import annotations

from redis_ambassador import errors
from redis_ambassador.commands.auth import ClientAuth, parse_auth
from redis_ambassador.commands.local import Hello, hello_options, hello_reply, parse_hello
from redis_ambassador.commands.state import ServerFacts
from redis_ambassador.loop import Scheduler
from redis_ambassador.protocol.requests import encode_command
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.owners import Owners
from redis_ambassador.routing.session import Batch
from redis_ambassador.upstream.collector import Reply
from redis_ambassador.upstream.connection import NodeConnection
from redis_ambassador.upstream.credentials import Credentials
from redis_ambassador.upstream.pool import Upstream


class SignIn:
    """The sign-in commands' handler."""

    def __init__(
        self,
        client_auth: ClientAuth,
        upstream: Upstream,
        owners: Owners,
        facts: ServerFacts,
        scheduler: Scheduler,
    ) -> None:
        self.client_auth = client_auth
        self._upstream = upstream
        self._owners = owners
        self._facts = facts
        self._scheduler = scheduler

    def upstream_auth(self, block: int) -> bytes:
        """The AUTH frame a client's own node connection signs in with, opened now for a client
        on the lanes of ``block``: its ACL user's, or for block 0 the ambassador's (current)."""
        return self._upstream.blocks[block].auth_frame

    def handle(self, call: Call) -> bool:
        """AUTH or HELLO; True when the client's identity or protocol may have changed, or what
        it sent after waits for a verdict."""
        if call.base == "hello":
            hello = parse_hello(call.args)
            if isinstance(hello, bytes):
                call.answer(hello)
                return False
            return self._hello(call.batch, call.index, hello, 0, call)
        parsed = parse_auth(call.args)
        if isinstance(parsed, bytes):
            call.answer(parsed)
            return False
        user, password = parsed
        if self.client_auth.by_cluster:
            return self._verify(call.batch, call.index, user, password, None, call)
        verdict = self.client_auth.check(user, password)
        if verdict.failed:
            # Guesses on one connection never overlap: what follows waits for the answer.
            return self._refuse(call.batch, call.index, verdict.reply) and call.hold(call.index + 1)
        if verdict.signed_in:
            call.session.sign_in(b"default", 0)
        call.answer(verdict.reply)
        return verdict.signed_in

    def _hello(self, batch: Batch, index: int, hello: Hello, start: int, call: Call | None) -> bool:
        """HELLO's options in order, as Redis applies them: a SETNAME names the client, an AUTH
        signs it in (or fails the HELLO) before the next option is looked at; then, if the
        client is in, the new protocol and the server map. ``call``: the command being routed
        (None: going on after the cluster's verdict, what followed it already held back)."""
        session = batch.session
        while True:
            at, failed = hello_options(session, hello, start)
            if failed is not None:
                batch.fill(index, failed)
                return False
            if at == len(hello.options):
                break
            _, user, password = hello.options[at]
            if self.client_auth.by_cluster:
                return self._verify(batch, index, user, password, (hello, at + 1), call)
            verdict = self.client_auth.check(user, password)
            if not verdict.signed_in:
                if not verdict.failed:
                    batch.fill(index, verdict.reply)
                    return False
                return self._refuse(batch, index, verdict.reply) and _hold_rest(call)
            session.sign_in(b"default", 0)
            start = at + 1
        if not session.authenticated:
            batch.fill(index, errors.NOAUTH_HELLO)
            return False
        batch.fill(index, hello_reply(session, hello.protocol, self._facts))
        return True  # a new protocol: the rest of the read uses its lanes

    def _verify(
        self,
        batch: Batch,
        index: int,
        user: bytes | None,
        password: bytes,
        then: tuple[Hello, int] | None,
        call: Call | None,
    ) -> bool:
        """ACL mode: AUTH on a master, over a connection opened for it; what the client sent
        after it (and reading more) waits for the verdict. ``then``: the HELLO to go on with
        (from which option) once the user is in."""
        master = self._owners.any_master()
        if master is None:
            batch.fill(index, self._owners.uncovered)
            return False
        credentials = Credentials(user if user is not None else b"default", password)
        conn = self._upstream.private(master.address, 2, b"")
        check = _Verification(self, conn, batch, index, credentials, then)
        auth = [b"AUTH", *([user] if user is not None else []), password]
        conn.send(check, 0, encode_command(auth))
        return _hold_rest(call)

    def verified(self, check: _Verification, reply: bytes) -> None:
        """The cluster's verdict on an ACL-mode AUTH: the client is in as that user (its
        commands now travel that user's lanes), or it gets the node's error."""
        batch, index = check.batch, check.index
        if reply.startswith(b"-WRONGPASS"):
            self._refuse(batch, index, reply)
            return
        if reply.startswith(b"+OK"):
            block = self._upstream.block_for(check.credentials)
            batch.session.sign_in(check.credentials.username, block)
            if check.then is not None:
                hello, start = check.then
                self._hello(batch, index, hello, start, None)
                return
        batch.fill(index, reply)

    def _refuse(self, batch: Batch, i: int, reply: bytes) -> bool:
        """A failed AUTH, counted on its connection: answered now, or (True) late once the
        connection has failed too often; the caller holds what the client sent after it."""
        session = batch.session
        session.failed_auths += 1
        failures = self.client_auth.failures
        now = self._scheduler.time()
        wait = failures.failed(session.client.describe(), session.failed_auths, now)
        if not wait:
            batch.fill(i, reply)
            return False
        batch.read_at = 0.0  # slow on purpose: not a slow request
        self._scheduler.call_later(wait, batch.fill, i, reply)
        return True


class _Verification:
    """One ACL-mode AUTH on its way to a node (a Collector of one reply); its reply goes to
    ``SignIn.verified``, which answers the client."""

    __slots__ = ("_conn", "_signin", "batch", "credentials", "index", "remaining", "replies",
                 "then")  # fmt: skip

    def __init__(
        self,
        signin: SignIn,
        conn: NodeConnection,
        batch: Batch,
        index: int,
        credentials: Credentials,
        then: tuple[Hello, int] | None,
    ) -> None:
        self.replies: list[Reply | None] = [None]
        self.remaining = 1
        self._signin = signin
        self._conn = conn
        self.batch = batch
        self.index = index
        self.credentials = credentials
        self.then = then

    @property
    def lane(self) -> int:
        return self.batch.lane

    def fill(self, index: int, reply: Reply) -> None:
        self.replies[index] = reply
        self.remaining -= 1
        self.complete()

    def complete(self) -> None:
        self._conn.close()
        self._signin.verified(self, bytes(self.replies[0]))  # type: ignore[arg-type]

    def large_reply(self, size: int) -> None:
        """A long reply to an AUTH is an error text: nothing to count it against."""


def _hold_rest(call: Call | None) -> bool:
    """What the client sent after the command waits until its reply is written, and no more
    is read meanwhile (None: held back already); True."""
    return call is None or call.hold(call.index + 1)
