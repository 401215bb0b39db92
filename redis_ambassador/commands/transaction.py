"""MULTI/EXEC as the ambassador runs it: queued here, sent at EXEC as MULTI ... EXEC blocks.

Between MULTI and EXEC Redis only checks each command (does it exist, is its arity right, in a
cluster: is its slot served here) and answers ``+QUEUED``. The ambassador does the same checks
itself and keeps the frames; at EXEC it writes ``MULTI``, the frames and ``EXEC`` back to back on
one connection to a node, so nothing can land between them, and only the EXEC reply reaches the
client. Commands the ambassador answers itself (``CLIENT SETNAME``, ``PING``) are queued too,
and answered at EXEC in their place, as one Redis would.

Keys in several slots (``commands.cross_slot_transactions``):

- ``per-node`` (the default): the commands are grouped by slot, as a cluster node runs a
  MULTI only over keys of one slot (those without keys join the first group); each group runs
  as one MULTI/EXEC on the node that owns its slot, the groups one after another (the watched
  keys' first, which decides), and the client gets one EXEC reply with every command's reply
  where it queued it. Each part is atomic, and every command runs once; two parts are not
  isolated from each other, and a part that cannot run leaves the parts before it applied: its
  commands' replies say so.
- ``refuse``: Redis Cluster's own rule: every key of a transaction in one slot, else CROSSSLOT
  (naming the setting), which makes EXEC fail with EXECABORT.

One command whose keys span slots is refused under ``refuse``, as Redis Cluster refuses it;
under ``per-node`` the multi-key commands the ambassador splits outside a transaction (``MGET``,
``MSET``, ``DEL``, ...; commands/merges.py) are split inside one too: each slot's piece joins
its slot's part, and the pieces' replies are merged into the command's one reply. Sans-IO: the
router does the sending (routing/transactions.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redis_ambassador import errors
from redis_ambassador.commands.merges import Merge
from redis_ambassador.commands.table import CommandSpec, arity_ok
from redis_ambassador.protocol.replies import array, elements

MULTI_FRAME = b"*1\r\n$5\r\nMULTI\r\n"
EXEC_FRAME = b"*1\r\n$4\r\nEXEC\r\n"
UNWATCH_FRAME = b"*1\r\n$7\r\nUNWATCH\r\n"
QUEUED = b"+QUEUED\r\n"
MODES = ("per-node", "refuse")

Reply = bytes | bytearray
# A command answered here at EXEC: its reply, made then (a name set by CLIENT SETNAME before
# EXEC is the name CLIENT GETNAME sees after it).
Answer = Callable[[], bytes]


@dataclass(slots=True)
class Queued:
    """One command between MULTI and EXEC: its frame and slot (None: no keys), or the answer
    the ambassador gives it itself."""

    frame: bytes
    slot: int | None
    answer: Answer | None = None


class Transaction:
    """One client's transaction between MULTI and EXEC/DISCARD."""

    __slots__ = ("dirty", "merges", "per_node", "queued", "slot")

    def __init__(self, slot: int | None, per_node: bool) -> None:
        self.queued: list[Queued] = []
        # A command split by slot: its first piece's place -> its number of pieces, the merge.
        self.merges: dict[int, tuple[int, Merge]] = {}
        # Under ``refuse``, every key must hash here (None until the first key, or WATCH's).
        self.slot = slot
        self.per_node = per_node
        self.dirty: bytes | None = None  # the first queue-time error: EXEC then aborts

    def queue(self, frame: bytes, slots: list[int]) -> bytes:
        """Queue a valid command with its keys' slots; ``+QUEUED``, or CROSSSLOT (which
        aborts the transaction, as it does in Redis Cluster). A command refused so binds no
        slot: only a queued one does."""
        wanted = set(slots)
        if len(wanted) > 1:
            return self.fail(errors.CROSSSLOT)
        if not self.per_node and self.slot is not None and wanted - {self.slot}:
            return self.fail(errors.CROSSSLOT_TRANSACTION)
        slot = wanted.pop() if wanted else None
        if self.slot is None:
            self.slot = slot
        self.queued.append(Queued(frame, slot))
        return QUEUED

    def queue_split(self, pieces: Sequence[tuple[int, bytes]], merge: Merge) -> bytes:
        """Queue a multi-key command split by slot (per-node only): one piece per slot, their
        replies merged at EXEC into the command's one reply."""
        assert self.per_node
        self.merges[len(self.queued)] = (len(pieces), merge)
        self.queued.extend(Queued(frame, slot) for slot, frame in pieces)
        if self.slot is None:
            self.slot = pieces[0][0]
        return QUEUED

    def queue_answer(self, frame: bytes, answer: Answer) -> bytes:
        """Queue a command the ambassador answers itself, at EXEC."""
        self.queued.append(Queued(frame, None, answer))
        return QUEUED

    def fail(self, reply: bytes) -> bytes:
        """A command refused at queue time: the reply for it; EXEC will abort."""
        if self.dirty is None:
            self.dirty = reply
        return reply


@dataclass(slots=True)
class Part:
    """The commands of a transaction that run as one MULTI/EXEC: those of one slot (``slot``
    None: commands without keys alone, for any master), by their places in the transaction."""

    slot: int | None
    places: list[int] = field(default_factory=list)

    def frames(self, queued: Sequence[Queued]) -> list[bytes]:
        return [queued[k].frame for k in self.places]


def split(queued: Sequence[Queued], first: int | None) -> list[Part]:
    """The transaction's parts, in the order they run: the ``first`` slot's (the watched keys':
    it decides) if given, then each slot's in the order the transaction first names it;
    commands without keys join the first part."""
    parts: dict[int | None, Part] = {}
    if first is not None:
        parts[first] = Part(first)
    keyless: list[int] = []
    for place, command in enumerate(queued):
        if command.answer is not None:
            continue
        if command.slot is None:
            keyless.append(place)
        else:
            parts.setdefault(command.slot, Part(command.slot)).places.append(place)
    if not parts:
        return [Part(None, keyless)] if keyless else []
    head = next(iter(parts.values()))
    head.places = sorted(head.places + keyless)
    return list(parts.values())


class Outcome:
    """The one EXEC reply made of the parts' replies, each command's reply in its place."""

    def __init__(self, tx: Transaction) -> None:
        queued = tx.queued
        self._replies: list[Reply | None] = [None] * len(queued)
        self._answers = [(k, q.answer) for k, q in enumerate(queued) if q.answer is not None]
        self._merges = tx.merges
        self.ran = 0  # parts that ran

    def part(self, part: Part, reply: Reply) -> Reply | None:
        """A part's EXEC reply. Returns the client's whole reply instead when the first part
        did not commit: a WATCH aborted it (nil), or it was refused (EXECABORT, ...); a later
        part refused leaves the earlier applied, and its commands say they did not run."""
        if reply[:1] in (b"-", b"!") or reply in (b"*-1\r\n", b"_\r\n"):
            if not self.ran:
                return bytes(reply)
            text = bytes(reply)[1:].decode("utf-8", "replace").strip() or "aborted"
            self._fill(part, errors.part_failed(text))
            return None
        self.ran += 1
        for place, item in zip(part.places, elements(reply), strict=True):
            self._replies[place] = item
        return None

    def lost(self, part: Part, why: str) -> None:
        """A part that could not run: its node unavailable, or a part before it failed."""
        self._fill(part, errors.part_failed(why))

    def reply(self) -> bytes:
        """The EXEC reply: the answers made here now, in their places, and each split
        command's pieces merged into its one reply (the first error among them, if any)."""
        replies = self._replies
        for place, answer in self._answers:
            replies[place] = answer()
        whole: list[bytes] = []
        place = 0
        while place < len(replies):
            count, merge = self._merges.get(place, (1, None))
            pieces = replies[place : place + count]
            if merge is not None:
                whole.append(bytes(merge(pieces)))  # type: ignore[arg-type]
            elif pieces[0] is not None:
                whole.append(bytes(pieces[0]))
            place += count
        return array(whole)

    def _fill(self, part: Part, reply: bytes) -> None:
        for place in part.places:
            self._replies[place] = reply


def check(spec: CommandSpec | None, args: list[bytes]) -> bytes | None:
    """Redis's own checks before queueing (processCommand): the error for an unknown command,
    an unknown subcommand or a wrong arity, else None."""
    if spec is None:
        return errors.unknown_command(args)
    if spec.subcommands:
        if len(args) > 1:
            return errors.unknown_subcommand(args[1], spec.name)
        # The container alone: COMMAND runs so, CONFIG is short of arguments.
        return None if arity_ok(spec.arity, 1) else errors.wrong_arity(spec.name)
    if not arity_ok(spec.arity, len(args)):
        return errors.wrong_arity(spec.name)
    return None
