"""Quorum replication, simulated: N copies, a write waits for W of them, a read asks R.

PostgreSQL's streaming replication (:class:`~attnedu.store.cluster.Replica`) has one
primary that takes every write. Dynamo-style databases (DeCandia et al., 2007; Cassandra,
Riak) have no primary: a key lives on ``n`` replicas, a write is sent to all of them and
confirmed once ``w`` have stored it (the others get it later), and a read asks ``r`` of them
and keeps the newest version it gets. When ``r + w > n``, every set of ``r`` replicas
shares at least one with every set of ``w``, so a read always sees the latest confirmed
write; when ``r + w <= n`` the two sets can miss each other, and a read can return the
old value.

:class:`QuorumStore` simulates that on one machine, with seeded randomness: which ``w``
replicas have a write when it is confirmed, and which ``r`` a read asks, are random.
"""

from __future__ import annotations

import numpy as np

from .._validate import positive_int

__all__ = ["QuorumStore", "stale_read_share"]


class QuorumStore:
    """``n`` replicas of a key-value store; writes confirmed by ``w``, reads answered by ``r``.

    Example::

        db = QuorumStore(n=3, w=2, r=2, seed=0)
        db.write("x", "old"); db.sync()      # every replica has "old"
        db.write("x", "new")                 # confirmed: 2 of 3 replicas have "new"
        db.read("x")                         # 'new': any 2 replicas include one of those
    """

    def __init__(self, n: int, w: int, r: int, *, seed: int = 0):
        self.n, self.w, self.r = (positive_int(v, k) for k, v in (("n", n), ("w", w), ("r", r)))
        if self.w > self.n or self.r > self.n:
            raise ValueError(f"w and r must be at most n: got n={n}, w={w}, r={r}")
        self.replicas: list[dict] = [{} for _ in range(self.n)]  # key -> (version, value)
        self.version = 0
        self.rng = np.random.default_rng(seed)

    def write(self, key, value) -> list[int]:
        """Store ``value`` with a new version; returns the replicas that have it when the
        write is confirmed (``w`` of them, at random; the others only after :meth:`sync`)."""
        self.version += 1
        reached = sorted(int(i) for i in self.rng.choice(self.n, size=self.w, replace=False))
        for i in reached:
            self.replicas[i][key] = (self.version, value)
        return reached

    def read(self, key):
        """Ask ``r`` replicas at random; the value of the newest version among them (None if none has the key)."""
        asked = self.rng.choice(self.n, size=self.r, replace=False)
        found = [self.replicas[int(i)][key] for i in asked if key in self.replicas[int(i)]]
        return max(found, key=lambda vv: vv[0])[1] if found else None

    def sync(self) -> None:
        """Bring every replica up to date (what anti-entropy and hinted handoff do, later)."""
        for key in {k for rep in self.replicas for k in rep}:
            newest = max((rep[key] for rep in self.replicas if key in rep), key=lambda vv: vv[0])
            for rep in self.replicas:
                rep[key] = newest

    def __repr__(self) -> str:
        return f"QuorumStore(n={self.n}, w={self.w}, r={self.r})"


def stale_read_share(n: int, w: int, r: int, *, trials: int = 1000, seed: int = 0) -> float:
    """The share of ``trials`` reads, each right after a confirmed write, that return the old value
    (on a :class:`QuorumStore` synced before each write)."""
    db, stale = QuorumStore(n, w, r, seed=seed), 0
    for t in range(positive_int(trials, "trials")):
        db.write("x", t)
        db.sync()
        db.write("x", t + 0.5)
        stale += db.read("x") != t + 0.5
    return stale / trials
