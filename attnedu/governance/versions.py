"""Versions of data and models, named by what they contain.

A **content hash** (SHA-256) names a file or a data set by its bytes: change one byte, one
row, and the name changes; change nothing, and it stays, on any machine. Recording which
hash of the data trained which hash of the model makes a result reproducible.

* :func:`hash_bytes`, :func:`hash_file`: a blob, a file (read in blocks: a model may not
  fit in memory twice).
* :func:`hash_rows`: a table's rows, as canonical JSON, in any order (a set of rows; pass
  ``ordered=True`` when the order matters).
* :class:`VersionRegistry`: a ``versions`` table in a store: each data set or model
  version, its hash, the version it came from and free metadata (e.g. which data set
  version trained a model).
* :func:`dvc_pointer`: the small ``.dvc`` file that DVC keeps in git in place of a large
  file (DVC names content by MD5). DVC versions files beside the code; MLflow records
  runs, their parameters and metrics, and registers model versions. Both keep the bytes
  in a cache or object store and only their names in git or a database, as this module does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import date, datetime
from pathlib import Path

from .portable import ddl

__all__ = ["hash_bytes", "hash_file", "hash_rows", "VersionRegistry", "dvc_pointer", "VERSIONS_TABLE"]

BLOCK = 1 << 20  # read files 1 MiB at a time


def hash_bytes(data) -> str:
    """SHA-256 of ``data`` (bytes), 64 hex digits."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"data must be bytes, got {type(data).__name__}: encode text first (text.encode('utf-8'))")
    return hashlib.sha256(data).hexdigest()


def hash_file(path, algorithm: str = "sha256") -> str:
    """The hash of a file's bytes (``"sha256"``, or ``"md5"`` as DVC uses), read in 1 MiB blocks."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    if algorithm not in ("sha256", "md5"):
        raise ValueError(f"algorithm must be 'sha256' or 'md5', got {algorithm!r}")
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _plain(value):
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return value.item()
    raise ValueError(f"cannot hash a value of type {type(value).__name__}: use str, numbers, bytes, None, "
                     "lists or dicts")


def _row_digest(row) -> bytes:
    if isinstance(row, dict):
        row = dict(row)
    elif isinstance(row, (list, tuple)):
        row = list(row)
    else:
        raise ValueError(f"a row must be a tuple, list or dict, got {type(row).__name__}")
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).digest()


def hash_rows(rows, *, ordered: bool = False) -> str:
    """SHA-256 of a table's rows (tuples, lists or dicts of JSON values, bytes, datetimes).

    Each row is written as canonical JSON and hashed; the data set's hash is the hash of
    those row hashes, sorted (``ordered=False``: a set of rows, whatever order a query
    returns them in) or in the given order (``ordered=True``). ``1`` and ``1.0`` hash alike.
    """
    digests = [_row_digest(r) for r in rows]
    if not ordered:
        digests.sort()
    h = hashlib.sha256(b"attnedu-rows-v1:" + (b"list" if ordered else b"set"))
    for d in digests:
        h.update(d)
    return h.hexdigest()


VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS versions (
    id           {id},
    kind         TEXT NOT NULL CHECK (kind IN ('data', 'model')),
    name         TEXT NOT NULL,          -- e.g. 'feedback-set', 'gpt-python'
    content_hash TEXT NOT NULL,          -- SHA-256 of the bytes or rows
    parent_hash  TEXT,                   -- the version this one replaced
    metadata     {json} NOT NULL,        -- e.g. {"rows": 120, "trained_on": "<data hash>"}
    created_at   {time} NOT NULL DEFAULT {now},
    UNIQUE (name, content_hash)
)
"""


class VersionRegistry:
    """The versions of named data sets and models, in a ``versions`` table of a store.

    >>> reg = VersionRegistry(store)
    >>> reg.register("feedback-set", "data", hash_rows(rows), {"rows": len(rows)})
    """

    def __init__(self, store):
        self.store = store
        store.query(ddl(store, VERSIONS_TABLE))

    def register(self, name: str, kind: str, content_hash: str, metadata: dict | None = None) -> dict:
        """Record a version, unless that name already has that hash; the version as a dict
        (``new`` says whether it was just added). Its parent is the name's latest version."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if kind not in ("data", "model"):
            raise ValueError(f"kind must be 'data' or 'model', got {kind!r}")
        if not isinstance(content_hash, str) or len(content_hash) != 64 or \
                any(c not in "0123456789abcdef" for c in content_hash):
            raise ValueError(f"content_hash must be 64 lower-case hex digits (SHA-256), got {content_hash!r}")
        metadata = dict(metadata or {})
        existing = self._select("WHERE name = ? AND content_hash = ?", [name, content_hash])
        if existing:
            return {**existing[0], "new": False}
        latest = self.latest(name)
        with self.store.transaction():
            self.store.query("INSERT INTO versions (kind, name, content_hash, parent_hash, metadata) "
                             "VALUES (?, ?, ?, ?, ?)",
                             [kind, name, content_hash, latest["content_hash"] if latest else None,
                              json.dumps(metadata, sort_keys=True)])
        return {**self._select("WHERE name = ? AND content_hash = ?", [name, content_hash])[0], "new": True}

    def _select(self, where: str, params) -> list[dict]:
        rows = self.store.query("SELECT id, kind, name, content_hash, parent_hash, metadata FROM versions "
                                f"{where} ORDER BY id", params)  # `where`: our own SQL
        return [{"id": r[0], "kind": r[1], "name": r[2], "content_hash": r[3], "parent_hash": r[4],
                 "metadata": json.loads(r[5]) if isinstance(r[5], str) else r[5]} for r in rows]

    def history(self, name: str) -> list[dict]:
        """Every version of ``name``, oldest first."""
        return self._select("WHERE name = ?", [name])

    def latest(self, name: str) -> dict | None:
        versions = self.history(name)
        return versions[-1] if versions else None

    def find(self, content_hash: str) -> list[dict]:
        """The versions with this hash (the same bytes may be registered under several names)."""
        return self._select("WHERE content_hash = ?", [content_hash])


def dvc_pointer(path) -> str:
    """The ``.dvc`` file DVC 3 writes for ``dvc add path``: the file's MD5, size and name, in YAML.

    git keeps this small file; the large file goes to DVC's cache and remote storage,
    under its MD5."""
    path = Path(path)
    md5 = hash_file(path, "md5")
    return f"outs:\n- md5: {md5}\n  size: {os.path.getsize(path)}\n  hash: md5\n  path: {path.name}\n"
