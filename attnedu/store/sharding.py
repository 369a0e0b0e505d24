"""Which shard holds a key, and what moves when a shard is added: modulo against a hash ring.

A sharded table sends each row to a shard chosen from its *key* (chapter 14 shards
conversations by user). Two ways to choose:

* **modulo**: ``shard = hash(key) mod n`` (:func:`modulo_shard`; PostgreSQL's hash
  partitioning, which :class:`~attnedu.store.cluster.ShardedCluster` uses, works so). It
  spreads keys evenly, but with ``n + 1`` shards almost every key gets another remainder:
  going from ``n`` to ``n + 1`` shards moves about ``n / (n + 1)`` of the keys, most of
  them between shards that were there before.
* **consistent hashing** (Karger et al., 1997): every shard owns many points on a ring of
  positions ``0 .. 2**32 - 1`` (:func:`hash_ring`), and a key belongs to the first point at
  or after its own position, wrapping past the end (:func:`ring_owner`,
  :func:`ring_shard`). A new shard takes over only the arcs before its own points, about
  ``1 / (n + 1)`` of the keys, and every key that moves goes to the new shard. Dynamo,
  Cassandra and many caches place data so.

:func:`measure_movement` compares two assignments of the same keys. The hash is
:func:`stable_hash` (SHA-256): Python's built-in ``hash()`` of a string changes from one
process to the next (``PYTHONHASHSEED``), so two servers would disagree about every key.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping

from .._validate import positive_int

__all__ = ["RING_SIZE", "stable_hash", "modulo_shard", "hash_ring", "ring_owner", "ring_shard", "measure_movement"]

RING_SIZE = 2**32  # positions on the ring: 0 .. RING_SIZE - 1


def stable_hash(key: str) -> int:
    """The key's position, ``0 .. 2**32 - 1``: the first 4 bytes of SHA-256 of its UTF-8, big-endian.
    The same on every machine and in every process."""
    if not isinstance(key, str):
        raise ValueError(f"key must be a string (use str(...)), got {type(key).__name__}")
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big")


def modulo_shard(key: str, n_shards: int) -> int:
    """``stable_hash(key) mod n_shards``: 0 .. n_shards - 1."""
    return stable_hash(key) % positive_int(n_shards, "n_shards")


def hash_ring(shards, points_per_shard: int = 64) -> list[tuple[int, int]]:
    """The ring: ``[(position, shard), ...]`` sorted by position, ``points_per_shard`` points for
    each shard in ``shards`` (an int ``n`` means shards 0 .. n - 1), at ``stable_hash(f"shard
    {s} point {i}")``. Many points per shard even out the arcs that each shard owns."""
    shards = list(range(positive_int(shards, "shards"))) if isinstance(shards, int) else list(shards)
    if not shards:
        raise ValueError("a ring needs at least one shard")
    points = positive_int(points_per_shard, "points_per_shard")
    return sorted((stable_hash(f"shard {s} point {i}"), s) for s in shards for i in range(points))


def ring_owner(position: int, ring) -> int:
    """The shard of the first point of ``ring`` at or after ``position``, wrapping past the last
    point to the first.

    Args:
        position: a position on the ring, e.g. ``stable_hash(key)``.
        ring: ``[(point, shard), ...]`` sorted by point (:func:`hash_ring`), not empty.

    >>> ring_owner(30, [(10, 0), (50, 1), (90, 2)]), ring_owner(50, [(10, 0), (50, 1), (90, 2)])
    (1, 1)
    >>> ring_owner(95, [(10, 0), (50, 1), (90, 2)])  # past the last point: the first
    0
    """
    if not ring:
        raise ValueError("ring must hold at least one (point, shard) pair")
    i = bisect.bisect_left(ring, (position,))  # the first point >= position
    return ring[i % len(ring)][1]


def ring_shard(key: str, ring) -> int:
    """The shard of ``key`` on ``ring``: :func:`ring_owner` of its :func:`stable_hash`."""
    return ring_owner(stable_hash(key), ring)


def measure_movement(before: Mapping, after: Mapping) -> tuple[float, float]:
    """What adding shards did to the keys: ``(moved, to_new)``, shares of all keys.

    Args:
        before, after: ``{key: shard}``, the same keys assigned before and after the change.

    Returns:
        ``moved``: the share of the keys whose shard changed; ``to_new``: the share of the keys
        that moved to a shard that held no key before. Consistent hashing moves keys only to
        the new shard (``moved == to_new``); modulo moves many more, mostly between old shards.
    """
    if not isinstance(before, Mapping) or not isinstance(after, Mapping) or set(before) != set(after):
        raise ValueError("before and after must be dicts {key: shard} with the same keys")
    if not before:
        raise ValueError("before and after hold no key: there is nothing to measure")
    old = set(before.values())
    moved = [k for k in before if after[k] != before[k]]
    return len(moved) / len(before), sum(after[k] not in old for k in moved) / len(before)
