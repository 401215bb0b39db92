"""Redis Cluster's hash slots: 16384 of them, a key's being CRC16 of the key (of its
``{hashtag}`` if it has one), modulo 16384. The one slot function of the package."""

from __future__ import annotations

from binascii import crc_hqx

SLOTS = 16384


def key_slot(key: bytes) -> int:
    """The hash slot of a key, as Redis Cluster computes it. A large argument may be a view
    (see ``protocol.requests.ExactReader``): it is copied first."""
    if key.__class__ is not bytes:
        key = bytes(key)
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key, 0) & 16383


def only_slot(key: bytes) -> int:
    """The slot of every key when one server holds them all (a standalone or Sentinel
    backend): nothing is ever refused or split for its keys' slots."""
    return 0
