"""One ``CREATE TABLE`` for both backends of :mod:`attnedu.store`.

SQLite and PostgreSQL agree on most of SQL but name some types differently. A table
written with four placeholders works on both::

    {id}    INTEGER PRIMARY KEY                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY
    {blob}  BLOB                                bytea
    {json}  TEXT (checked by json_valid)        jsonb
    {time}  TEXT, ISO 8601 in UTC               timestamptz
    {now}   the current time, as a column DEFAULT

Two expressions differ too: a field of a JSON column (:func:`json_field`) and the day of a
timestamp (:func:`day_of`).

Queries are written with ``?`` placeholders and run with :meth:`attnedu.store.Store.query`,
which turns them into ``%s`` for PostgreSQL.
"""

from __future__ import annotations

import re

__all__ = ["ddl", "json_field", "day_of", "TYPES"]

TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY", "blob": "BLOB", "json": "TEXT", "time": "TEXT",
               "now": "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"},
    "postgresql": {"id": "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "blob": "bytea", "json": "jsonb",
                   "time": "timestamptz", "now": "now()"},
}


def ddl(backend, template: str) -> str:
    """``template`` with ``{id}``, ``{blob}``, ``{json}``, ``{time}`` and ``{now}`` replaced by the types of
    ``backend`` (``"sqlite"``, ``"postgresql"``, or a store, whose ``.backend`` is used)."""
    backend = _backend(backend)
    if not isinstance(template, str):
        raise ValueError(f"template must be a string of SQL, got {type(template).__name__}")
    out = template
    for name, sql_type in TYPES[backend].items():
        out = out.replace("{" + name + "}", sql_type)
    return out


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _backend(backend) -> str:
    backend = getattr(backend, "backend", backend)
    if backend not in TYPES:
        raise ValueError(f"backend must be 'sqlite' or 'postgresql' (or a store), got {backend!r}")
    return backend


def json_field(backend, column: str, key: str) -> str:
    """SQL for the value of ``key`` in the JSON object in ``column``, as text on PostgreSQL
    (``column ->> 'key'``) and as its own type on SQLite (``json_extract(column, '$.key')``)."""
    backend = _backend(backend)
    if not _NAME.fullmatch(column or "") or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key or ""):
        raise ValueError(f"column and key must be plain names (letters, digits, _), got {column!r}, {key!r}")
    return f"json_extract({column}, '$.{key}')" if backend == "sqlite" else f"({column} ->> '{key}')"


def day_of(backend, column: str) -> str:
    """SQL for the UTC day of a timestamp column, as text ``'2026-01-05'``."""
    backend = _backend(backend)
    if not _NAME.fullmatch(column or ""):
        raise ValueError(f"column must be a plain name (letters, digits, _), got {column!r}")
    return (f"substr({column}, 1, 10)" if backend == "sqlite"
            else f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
