"""The sans-IO core of transactions (commands/transaction.py): queueing under ``refuse`` and
``per-node``, how a transaction is cut into per-slot parts, and how the parts' EXEC replies
become the one reply one Redis would give."""

from __future__ import annotations

from redis_ambassador import errors
from redis_ambassador.commands.merges import split_by_slot
from redis_ambassador.commands.transaction import QUEUED, Outcome, Transaction, split
from redis_ambassador.protocol.requests import encode_command
from redis_ambassador.slots import key_slot

A, B, C = key_slot(b"{a}"), key_slot(b"{b}"), key_slot(b"{c}")


def _frame(*args: bytes) -> bytes:
    return encode_command(list(args))


def test_refuse_binds_the_first_slot_and_refuses_another_naming_the_setting() -> None:
    tx = Transaction(None, per_node=False)
    assert tx.queue(_frame(b"PING"), []) == QUEUED
    assert tx.slot is None  # no key yet
    assert tx.queue(_frame(b"SET", b"{a}x", b"1"), [A]) == QUEUED
    assert tx.queue(_frame(b"SET", b"{b}x", b"1"), [B]) == errors.CROSSSLOT_TRANSACTION
    assert tx.dirty == errors.CROSSSLOT_TRANSACTION
    assert len(tx.queued) == 2


def test_one_command_over_two_slots_is_crossslot_under_both_settings() -> None:
    for per_node in (False, True):
        tx = Transaction(None, per_node=per_node)
        assert tx.queue(_frame(b"SUNION", b"{a}", b"{b}"), [A, B]) == errors.CROSSSLOT
        assert tx.slot is None  # a refused command binds no slot
        assert tx.dirty == errors.CROSSSLOT


def test_the_first_queue_time_error_is_kept() -> None:
    tx = Transaction(None, per_node=True)
    wrong = errors.wrong_arity("get")
    assert tx.fail(wrong) == wrong
    assert tx.fail(errors.CROSSSLOT) == errors.CROSSSLOT
    assert tx.dirty == wrong


def test_per_node_parts_go_by_slot_in_first_named_order_with_keyless_commands_first() -> None:
    tx = Transaction(None, per_node=True)
    tx.queue(_frame(b"SET", b"{b}1", b"x"), [B])  # 0
    tx.queue(_frame(b"PING"), [])  # 1
    tx.queue(_frame(b"SET", b"{a}1", b"x"), [A])  # 2
    tx.queue(_frame(b"GET", b"{b}1"), [B])  # 3
    tx.queue_answer(_frame(b"CLIENT", b"GETNAME"), lambda: b"_\r\n")  # 4: answered here
    tx.queue(_frame(b"ECHO", b"e"), [])  # 5
    parts = split(tx.queued, None)
    assert [(p.slot, p.places) for p in parts] == [(B, [0, 1, 3, 5]), (A, [2])]


def test_the_watched_slot_runs_first_even_when_named_last() -> None:
    tx = Transaction(C, per_node=True)
    tx.queue(_frame(b"SET", b"{a}1", b"x"), [A])
    tx.queue(_frame(b"SET", b"{c}1", b"x"), [C])
    assert [(p.slot, p.places) for p in split(tx.queued, C)] == [(C, [1]), (A, [0])]


def test_only_keyless_commands_make_one_part_for_any_master() -> None:
    tx = Transaction(None, per_node=True)
    tx.queue(_frame(b"PING"), [])
    tx.queue(_frame(b"TIME"), [])
    assert [(p.slot, p.places) for p in split(tx.queued, None)] == [(None, [0, 1])]
    assert split(Transaction(None, per_node=True).queued, None) == []


def test_replies_are_put_back_in_queued_order_with_local_answers_made_at_exec() -> None:
    tx = Transaction(None, per_node=True)
    name = [b"$-1\r\n"]
    tx.queue(_frame(b"SET", b"{a}1", b"x"), [A])
    tx.queue_answer(_frame(b"CLIENT", b"GETNAME"), lambda: name[0])
    tx.queue(_frame(b"INCR", b"{b}1"), [B])
    tx.queue(_frame(b"GET", b"{a}1"), [A])
    outcome = Outcome(tx)
    first, second = split(tx.queued, None)
    assert outcome.part(first, b"*2\r\n+OK\r\n$1\r\nx\r\n") is None
    assert outcome.part(second, b"*1\r\n:1\r\n") is None
    name[0] = b"$4\r\nlate\r\n"  # made at EXEC, not when queued
    assert outcome.reply() == b"*4\r\n+OK\r\n$4\r\nlate\r\n:1\r\n$1\r\nx\r\n"


def test_the_first_part_aborted_or_refused_is_the_whole_reply() -> None:
    for aborted in (b"*-1\r\n", b"_\r\n", b"-EXECABORT Transaction discarded\r\n"):
        tx = Transaction(None, per_node=True)
        tx.queue(_frame(b"SET", b"{a}1", b"x"), [A])
        tx.queue(_frame(b"SET", b"{b}1", b"x"), [B])
        first, _ = split(tx.queued, None)
        assert Outcome(tx).part(first, aborted) == aborted


def test_a_later_part_failing_marks_its_commands_and_leaves_the_first_applied() -> None:
    tx = Transaction(None, per_node=True)
    tx.queue(_frame(b"INCR", b"{a}1"), [A])
    tx.queue(_frame(b"INCR", b"{b}1"), [B])
    tx.queue(_frame(b"INCR", b"{c}1"), [C])
    outcome = Outcome(tx)
    first, second, third = split(tx.queued, None)
    assert outcome.part(first, b"*1\r\n:1\r\n") is None
    assert outcome.part(second, b"-LOADING Redis is loading the dataset in memory\r\n") is None
    outcome.lost(third, "a part of the transaction before it failed")
    reply = outcome.reply()
    assert reply.startswith(b"*3\r\n:1\r\n")
    assert reply.count(errors.part_failed("LOADING Redis is loading the dataset in memory")) == 1
    assert errors.part_failed("a part of the transaction before it failed") in reply


def test_a_multi_key_command_over_slots_is_split_and_its_pieces_merged_in_place() -> None:
    tx = Transaction(None, per_node=True)
    tx.queue(_frame(b"SET", b"{b}1", b"v"), [B])
    args = [b"MGET", b"{a}1", b"{b}1", b"{a}2"]
    pieces = split_by_slot("mget", args)
    assert pieces is not None
    assert tx.queue_split(*pieces) == QUEUED
    args = [b"DEL", b"{c}1", b"{a}1"]
    pieces = split_by_slot("del", args)
    assert pieces is not None
    tx.queue_split(*pieces)
    parts = split(tx.queued, None)
    assert [p.slot for p in parts] == [B, A, C]
    outcome = Outcome(tx)
    replies = {
        B: b"*2\r\n+OK\r\n*1\r\n$1\r\nv\r\n",  # SET, MGET {b}1
        A: b"*2\r\n*2\r\n$1\r\nx\r\n$-1\r\n:1\r\n",  # MGET {a}1 {a}2, DEL {a}1
        C: b"*1\r\n:0\r\n",  # DEL {c}1
    }
    for part in parts:
        assert outcome.part(part, replies[part.slot]) is None
    assert outcome.reply() == b"*3\r\n+OK\r\n*3\r\n$1\r\nx\r\n$1\r\nv\r\n$-1\r\n:1\r\n"
