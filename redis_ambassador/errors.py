"""Every error reply the ambassador writes itself, worded as Redis words it.

Errors that come from a node are forwarded untouched; only the ones produced here live here.
"""

from __future__ import annotations

from redis_ambassador.protocol.replies import error


def _c_string(arg: bytes) -> bytes:
    """An argument as C's ``%s`` prints it: up to its first NUL byte."""
    end = arg.find(b"\0")
    return bytes(arg if end < 0 else arg[:end])


def _shown(arg: bytes) -> str:
    return arg.decode("utf-8", "replace")


CROSSSLOT = error("CROSSSLOT Keys in request don't hash to the same slot")
# A transaction whose keys span slots, under commands.cross_slot_transactions = "refuse".
CROSSSLOT_TRANSACTION = error(
    "CROSSSLOT Keys in request don't hash to the same slot "
    "(commands.cross_slot_transactions = refuse)"
)
WATCH_SEVERAL_NODES = error(
    "CROSSSLOT redis-ambassador: watched keys must live on one node: a transaction that "
    "commits on one node could not be undone on another"
)


def part_failed(why: str) -> bytes:
    """A command of a per-node transaction whose node's part could not run (or may not have):
    the parts before it were applied, as the reply's other items show."""
    return error(
        f"ERR redis-ambassador: this command's part of the transaction failed ({why}); "
        "the parts before it were applied"
    )


INVALID_CURSOR = error("ERR invalid cursor")
CLUSTERDOWN_UNCOVERED = error("CLUSTERDOWN Hash slot not served")
SELECT_IN_CLUSTER = error("ERR SELECT is not allowed in cluster mode")
# In front of one server there is no "cluster mode" to blame: the shared connections are why.
SELECT_ONE_SERVER = error(
    "ERR redis-ambassador serves database 0 only: its connections to the server are shared "
    "by every client"
)
NOT_AN_INTEGER = error("ERR value is not an integer or out of range")
INT_OUT_OF_RANGE = error("ERR value is out of range, value must between -2147483648 and 2147483647")
NOPROTO = error("NOPROTO unsupported protocol version")
HELLO_PROTO_NOT_INTEGER = error("ERR Protocol version is not an integer or out of range")
MAX_CLIENTS = error("ERR max number of clients reached")
CLIENT_NAME_CHARS = error("ERR Client names cannot contain spaces, newlines or special characters.")


def wrong_arity(name: str) -> bytes:
    """Redis's arity error; ``name`` as Redis names it (``client|setname`` for a subcommand)."""
    return error(f"ERR wrong number of arguments for '{name}' command")


def unknown_subcommand(sub: bytes, command: str) -> bytes:
    """Redis's reply to an unknown subcommand of a container command."""
    return error(f"ERR unknown subcommand '{_shown(sub)[:128]}'. Try {command.upper()} HELP.")


def not_supported(args: list[bytes], why: str) -> bytes:
    """A command the ambassador refuses for now, with the reason."""
    return error(f"ERR redis-ambassador does not support '{_shown(args[0]).lower()}': {why}")


def node_unavailable(address: str, detail: str) -> bytes:
    """The node that owns the command's slot cannot be reached or failed mid-command."""
    return error(f"ERR redis-ambassador: node {address} unavailable: {detail}")


def no_master(backend: str) -> bytes:
    """A standalone or Sentinel backend has no usable master now (what CLUSTERDOWN says of a
    slot in front of a cluster)."""
    return error(f"MASTERDOWN redis-ambassador: no reachable master ({backend} backend)")


def no_replica(master: str) -> bytes:
    """``read_policy = "replica"`` and no replica of the slot's master is usable."""
    return error(f"ERR redis-ambassador: no replica of {master} available (read_policy replica)")


def too_many_redirects(last_error: bytes) -> bytes:
    """Redirections kept coming; the last one is shown so the cause is visible."""
    text = last_error[1:].rstrip(b"\r\n").decode("utf-8", "replace")
    return error(f"ERR redis-ambassador: too many redirections, last was: {text}")


def unknown_command(args: list[bytes]) -> bytes:
    """Redis's reply to a command it does not know, with the first arguments quoted (up to
    about 128 bytes, as processCommand builds it; each as C reads it: up to a NUL byte)."""
    quoted = b""
    for arg in args[1:]:
        if len(quoted) >= 128:
            break
        quoted += b"'%b' " % _c_string(arg)[: 128 - len(quoted)]
    name = _c_string(args[0])[:128]
    text = b"-ERR unknown command '%b', with args beginning with: %b" % (name, quoted)
    return text.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


MULTI_NESTED = error("ERR MULTI calls can not be nested")
EXEC_WITHOUT_MULTI = error("ERR EXEC without MULTI")
DISCARD_WITHOUT_MULTI = error("ERR DISCARD without MULTI")
WATCH_IN_MULTI = error("ERR WATCH inside MULTI is not allowed")
EXECABORT = error("EXECABORT Transaction discarded because of previous errors.")


def exec_aborted(refusal: bytes) -> bytes:
    """EXEC itself refused (its arity, NOAUTH): Redis discards the transaction and says why,
    with the refusal's text (an ``ERR`` prefix dropped, as Redis's own message has none)."""
    text = refusal[1:].rstrip(b"\r\n").decode("utf-8", "replace").removeprefix("ERR ")
    return error(f"EXECABORT Transaction discarded because of: {text}")


def subscribed_context(name: str) -> bytes:
    """A RESP2 client in subscribed mode sent something other than pub/sub commands."""
    return error(
        f"ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
        "RESET are allowed in this context"
    )


def not_in_transaction(args: list[bytes], why: str) -> bytes:
    """A command that cannot be part of a transaction through the ambassador."""
    return error(
        f"ERR redis-ambassador cannot queue '{_shown(args[0]).lower()}' in a transaction: {why}"
    )


def protocol(text: str) -> bytes:
    """A protocol error; ``text`` starts with ``Protocol error:``, as Redis's does."""
    return error(f"ERR {text}")


def unrecognized_option(option: bytes) -> bytes:
    """CLIENT SETINFO with an attribute Redis does not know."""
    return error(f"ERR Unrecognized option '{_shown(option)}'")


def hello_syntax(option: bytes) -> bytes:
    """HELLO with an option Redis does not know."""
    return error(f"ERR Syntax error in HELLO option '{_shown(option)}'")


def bad_client_attribute(option: bytes) -> bytes:
    """CLIENT SETINFO with a value Redis 7.2 refuses (the option quoted as typed)."""
    return error(f"ERR {_shown(option)} cannot contain spaces, newlines or special characters.")


# -- connection handshake, CLIENT and CLUSTER answered by the ambassador ---------------------------

SYNTAX = error("ERR syntax error")
INVALID_CLIENT_ID = error("ERR Invalid client ID")


def unknown_client_type(name: bytes) -> bytes:
    """CLIENT LIST TYPE with a type Redis does not know (quoted as typed)."""
    return error(f"ERR Unknown client type '{_shown(name)}'")


def unknown_node(node_id: bytes) -> bytes:
    """A CLUSTER subcommand naming a node other than the one the ambassador presents."""
    return error(f"ERR Unknown node {_shown(node_id)}")


# -- the command policy and admin commands -------------------------------------------------------


def command_denied(name: str) -> bytes:
    """A command the ambassador's command policy denies: NOPERM, as Redis answers a command the
    user's ACL forbids, naming the config keys that decide it."""
    return error(
        f"NOPERM redis-ambassador's command policy denies '{name}' (commands.deny); "
        f"to allow it, add '{name}' to commands.allow"
    )


def debug_unknown_subcommand(sub: bytes) -> bytes:
    """DEBUG with a subcommand Redis does not know (DEBUG has its own wording)."""
    return error(
        f"ERR unknown subcommand or wrong number of arguments for '{_shown(sub)}'. Try DEBUG HELP."
    )


CHAOS_NOAUTH = error(
    "NOAUTH CHAOS needs the admin token (server.admin_token): send CHAOS AUTH <token> first"
)
CHAOS_WRONG_TOKEN = error("WRONGPASS invalid admin token")
CHAOS_NO_TOKEN = error("ERR CHAOS AUTH called without server.admin_token configured")


def invalid_rule(problem: str) -> bytes:
    """CHAOS ADD with a rule that does not validate; the problem names the field."""
    return error(f"ERR invalid chaos rule: {problem}")


# Authentication, worded as Redis 7 words it (server.c, acl.c).
NOAUTH = error("NOAUTH Authentication required.")
NOAUTH_EXEC = exec_aborted(NOAUTH)
NOAUTH_HELLO = error(
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and select the "
    "RESP protocol version at the same time"
)
WRONGPASS = error("WRONGPASS invalid username-password pair or user is disabled.")
AUTH_WITHOUT_PASSWORD = error(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
