"""Commands the ambassador answers itself, per client (commands/local.py holds the answers):
the connection commands, and those that change how the client's later commands go (QUIT,
RESET, MONITOR, CLIENT REPLY)."""

from __future__ import annotations

from collections.abc import Callable

from redis_ambassador import errors
from redis_ambassador.commands.local import LOCAL
from redis_ambassador.commands.state import ServerFacts
from redis_ambassador.protocol.replies import OK, bulk
from redis_ambassador.routing.call import Call
from redis_ambassador.routing.chaos import ChaosHooks
from redis_ambassador.routing.monitor import Monitors
from redis_ambassador.routing.transactions import Transactions


class LocalAnswers:
    """Handlers of the commands answered here."""

    def __init__(
        self,
        facts: ServerFacts,
        monitors: Monitors,
        transactions: Transactions,
        chaos: ChaosHooks | None,
    ) -> None:
        self._facts = facts
        self._monitors = monitors
        self._transactions = transactions
        self.chaos = chaos  # fault rules may concern commands answered here too

    def answer(self, call: Call) -> bool:
        """PING, ECHO, SELECT, CLIENT, CLUSTER, ROLE, ...: the answer of commands/local.py."""
        answer = self.deferred(call)
        chaos = self.chaos
        if chaos is None or not chaos.before_answer(call, answer):
            call.answer(answer())
        return False

    def deferred(self, call: Call) -> Callable[[], bytes]:
        """The command's answer, to be made when called (at once, or at EXEC when queued)."""
        local, session, args = LOCAL[call.base], call.session, call.args
        return lambda: local(session, args, self._facts)

    def reset(self, call: Call) -> bool:
        """RESET: a new connection's state; answered even under CLIENT REPLY OFF, which it
        turns off first, as Redis does (a CLIENT REPLY SKIP before it still skips its reply)."""
        session = call.session
        self._transactions.end(session)
        session.unsubscribed()
        self._monitors.stop(session)
        session.sign_out()
        if session.reply_mode == "off":
            session.reply_mode = "on"
            if call.batch.silent is not None:
                call.batch.silent.discard(call.index)
        call.answer(LOCAL["reset"](session, call.args, self._facts))
        return True  # the client's identity and protocol may have changed

    def monitor(self, call: Call) -> bool:
        self._monitors.start(call.session)
        call.answer(OK)
        return True

    @staticmethod
    def quit(call: Call) -> bool:
        """Redis closes after +OK and never runs what the client sent after QUIT."""
        call.session.client.close_after_reply(call.batch)
        call.batch.cut_after(call.index)
        call.answer(OK)
        return True

    @staticmethod
    def client_reply(call: Call) -> bool:
        """CLIENT REPLY ON|OFF|SKIP: which replies the client gets (the commands all run)."""
        session, batch, i = call.session, call.batch, call.index
        mode = bytes(call.args[2]).lower()
        if mode == b"on":
            session.reply_mode = "on"
            if batch.silent is not None:
                batch.silent.discard(i)  # ON is answered, even after OFF
        elif mode in (b"off", b"skip"):
            session.reply_mode = mode.decode()
            batch.silence(i)
        else:
            call.answer(errors.SYNTAX)
            return False
        call.answer(OK)
        return True

    @staticmethod
    def whoami(call: Call) -> bool:
        """ACL WHOAMI: who the client signed in as (the rest of ACL is refused)."""
        call.answer(bulk(call.session.user))
        return False
