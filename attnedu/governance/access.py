"""Access control per user: what PostgreSQL's row-level security lets a role read, in Python.

PostgreSQL decides row by row which rows of a table a role may see once the table has
``ENABLE ROW LEVEL SECURITY``. :func:`authorised_rows` follows the same rules, without a
server, so that they can be read, tried and tested:

* a **policy** names the roles it applies to (``TO analyst``; ``public`` means every role)
  and a condition on the row (``USING (user_id = current_user)``);
* a role is subject to the policies that name it, one of the roles it is a member of, or
  ``public``;
* policies are *permissive* (PostgreSQL's default): a row is visible when **at least one**
  policy that applies accepts it, so policies add up with OR;
* a role that no policy applies to sees **no** row: with row-level security on, the default is
  to deny;
* a superuser (and the table's owner, unless the table says ``FORCE ROW LEVEL SECURITY``)
  bypasses row-level security and sees every row.

``GRANT`` comes first: a role without ``SELECT`` on the table gets an error, not an empty
result. These rules decide which rows among those a role may select.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["authorised_rows", "policy"]


def policy(name: str, to, using: Callable[[Mapping, Mapping], bool]) -> dict:
    """A policy as :func:`authorised_rows` reads it: ``{"name", "to", "using"}``.

    Args:
        name: for messages, e.g. ``"own_messages"``.
        to: the roles it applies to, e.g. ``["analyst"]``, or ``["public"]`` for every role.
        using: ``using(user, row) -> bool``, the condition (PostgreSQL's ``USING`` clause).
    """
    if isinstance(to, str):
        to = [to]
    if not callable(using):
        raise ValueError(f"policy {name!r}: using must be a function (user, row) -> bool")
    return {"name": name, "to": list(to), "using": using}


def _check_user(user) -> tuple[str, set, bool]:
    if not isinstance(user, Mapping) or not isinstance(user.get("name"), str):
        raise ValueError("user must be a dict with a 'name' (str), 'roles' (the roles it is a member of) and "
                         f"'superuser' (bool), got {user!r:.80}")
    return user["name"], set(user.get("roles", ())), bool(user.get("superuser", False))


def authorised_rows(user: Mapping, rows, policies) -> list:
    """The rows of a table with row-level security that ``user`` may read, in their order.

    Args:
        user: ``{"name": "bob", "roles": ["app_user"], "superuser": False}``: the role that
            asks, the roles it is a member of, and whether it is a superuser.
        rows: the table, a list of rows (dicts).
        policies: ``[{"name", "to", "using"}, ...]`` (see :func:`policy`).

    A superuser gets every row. Otherwise a policy applies when its ``to`` names ``user``'s
    name, one of its roles, or ``"public"``; a row is returned when at least one policy
    that applies has ``using(user, row)`` true (none applies: no row).
    """
    name, roles, superuser = _check_user(user)
    rows = list(rows)
    if superuser:
        return rows
    mine = [p for p in policies if {"public", name, *roles} & set(p["to"])]
    return [row for row in rows if any(p["using"](user, row) for p in mine)]
