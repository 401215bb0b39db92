"""The script cache that heals NOSCRIPT (sans-IO)."""

from __future__ import annotations

import hashlib

import hiredis

from redis_ambassador.commands.scripts import ScriptCache


def decode(frame: bytes) -> list[bytes]:
    reader = hiredis.Reader()
    reader.feed(frame)
    return reader.gets()


def sha(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()


def test_a_script_seen_in_eval_or_script_load_can_be_loaded_again_by_its_sha() -> None:
    cache = ScriptCache()
    cache.learn("eval", [b"EVAL", b"return 1", b"0"])
    cache.learn("script|load", [b"SCRIPT", b"LOAD", b"return 2"])
    for body in (b"return 1", b"return 2"):
        load = cache.load_for([b"EVALSHA", sha(body), b"0"])
        assert load is not None and decode(load) == [b"SCRIPT", b"LOAD", body]
    # The sha may come in upper case; EVALSHA_RO too.
    assert cache.load_for([b"evalsha_ro", sha(b"return 1").upper(), b"0"]) is not None


def test_an_unknown_script_or_another_command_is_not_healed() -> None:
    cache = ScriptCache()
    assert cache.load_for([b"EVALSHA", sha(b"never seen"), b"0"]) is None
    cache.learn("eval", [b"EVAL"])  # bad arity: nothing to learn, no error
    assert cache.load_for([b"FCALL", b"f", b"0"]) is None


def test_the_cache_is_bounded_and_forgets_the_least_recently_seen() -> None:
    cache = ScriptCache(capacity=2)
    for body in (b"a", b"b", b"a", b"c"):
        cache.learn("eval", [b"EVAL", body, b"0"])
    assert cache.load_for([b"EVALSHA", sha(b"b"), b"0"]) is None
    assert cache.load_for([b"EVALSHA", sha(b"a"), b"0"]) is not None
    assert cache.load_for([b"EVALSHA", sha(b"c"), b"0"]) is not None
